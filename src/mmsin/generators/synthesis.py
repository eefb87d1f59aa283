"""Signal functions of the free-frequency partials generator: peaks of the scalogram, phase
integration, oscillators and filtered noise (pure functions, as ``ddsp/core.py``).

Controls run at the frame rate (one value every ``h`` = 2^J samples); the signal is made
sample by sample. Block n (samples n h .. (n + 1) h - 1) interpolates every control linearly
and causally between frames n - 1 and n: for u = 0 .. h - 1, w_u = (u + 1) / h and
``c(n, u) = (1 - w_u) c[n-1] + w_u c[n]`` (``c[-1]`` comes from the caller's state), so block
n needs frames n - 1 and n only, and the last sample of block n is frame n's value.

Phase. An oscillator whose angular frequency (radians per sample) moves linearly from
omega' = omega[n-1] to omega[n] over block n has, at sample u of the block,

    phi(n, u) = Phi_n + (u + 1) omega' + (omega[n] - omega') (u + 1)(u + 2) / (2 h),

the running sum of the per-sample frequencies (exact, no approximation), and the next block
starts at Phi_{n+1} = phi(n, h - 1). The block-start phases Phi_n are summed in float64 and
wrapped, so a stream of hours keeps its precision; an oscillator that was silent at frame
n - 1 (amplitude exactly 0) restarts at its fixed offset and takes frame n's frequency for the
whole block (no glide in from a meaningless value). That restart is what makes a clip decoded
after silence equal to the same clip decoded alone (the training loop's zero state).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

_R = TypeVar("_R")

__all__ = [
    "band_noise",
    "band_noise_tables",
    "block_phases",
    "envelope_knots",
    "interpolate_blocks",
    "made_once",
    "parabolic_peaks",
    "polyval",
    "sum_oscillators",
]

TWO_PI = 2 * math.pi


def made_once(fn: Callable[..., _R]) -> Callable[..., _R]:
    """``functools.lru_cache`` for the small constant tensors of the hot paths (ramps,
    exponents, masks), made once per size, device and dtype; traced by ``torch.compile`` (a
    compiled stream), the function itself runs and its values become the graph's constants."""
    cached = functools.lru_cache(maxsize=64)(fn)

    @functools.wraps(fn)
    def call(*args: Hashable) -> _R:
        if torch.compiler.is_compiling():
            return fn(*args)
        return cached(*args)

    return call


def polyval(coefficients: Tensor, x: Tensor) -> Tensor:
    """Polynomials at x, highest power first (numpy.polyfit's order): coefficients (D + 1,)
    give x's shape, (D + 1, P) give P polynomials at once, shape (..., P).

    The powers of x times the coefficients: two tensor operations whatever D and P (a streamed
    frame's cost is mostly such small operations; Horner's rule takes 2 D + 1 per polynomial).
    For the calibrations' degrees and ranges (5, |x| < 2) the sums differ from Horner's in
    float64 rounding only.
    """
    powers = x[..., None] ** _exponents(coefficients.shape[0], x.device, x.dtype)
    if torch.compiler.is_compiling():
        # a product and a sum that Inductor fuses into its kernels: as a matrix product each
        # call is a GEMM of a few hundred multiply-adds (about 30 us each on one core, ten of
        # them a streamed frame)
        return (powers[..., None] * coefficients.to(x)).sum(-2)
    return powers @ coefficients.to(x)


@made_once
def _exponents(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """n - 1, ..., 1, 0: the powers :func:`polyval` raises x to, made once."""
    with torch.inference_mode(False), torch.no_grad():
        return torch.arange(n - 1, -1, -1, device=device, dtype=dtype)


@made_once
def _ramps(h: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(w_u = (u + 1) / h, u + 1 in float32, (u + 1)(u + 2) / (2 h) in float32) for u < h,
    made once per block length, device and dtype (the same values as made on each call)."""
    with torch.inference_mode(False), torch.no_grad():  # usable later by autograd
        w = (torch.arange(h, device=device, dtype=dtype) + 1) / h
        u1 = torch.arange(1, h + 1, device=device, dtype=torch.float32)
        quad = u1 * (u1 + 1) / (2 * h)
    return w, u1, quad


def parabolic_peaks(log_u: Tensor, floor: float) -> tuple[Tensor, Tensor, Tensor]:
    """Local maxima along the bins of a log-scalogram, refined by a parabola through 3 bins.

    Parameters
    ----------
    log_u : Tensor (B, F, T)
        log of the scalogram's bins (increasing frequency along F).
    floor : float
        A bin counts only where log_u > floor (silence otherwise).

    Returns
    -------
    peak : Tensor (B, F, T) bool
        Bin b is a strict local maximum (u_b > u_{b-1}, u_b >= u_{b+1}) above the floor; the
        first and last bins never are.
    offset : Tensor (B, F, T)
        The parabola's vertex in bins from b, in [-0.5, 0.5] at a peak (clamped elsewhere).
    level : Tensor (B, F, T)
        The parabola's value at its vertex (a log level).
    """
    lo, mid, hi = log_u[:, :-2], log_u[:, 1:-1], log_u[:, 2:]
    diff = lo - hi
    # the mask over every bin from neighbours padded with +inf (the first and last bins are
    # never peaks), not by padding a bool tensor: Inductor's vectorised C++ (a compiled
    # stream of several frames a push) fails to compile a padded bool mask in torch 2.13
    walls = torch.nn.functional.pad(log_u, (0, 0, 1, 1), value=math.inf)
    peak = (log_u > walls[:, :-2]) & (log_u >= walls[:, 2:]) & (log_u > floor)
    peak_inner = peak[:, 1:-1]
    curv = torch.where(peak_inner, torch.clamp(torch.add(lo, mid, alpha=-2) + hi, max=-1e-9), -1.0)
    d = torch.clamp(0.5 * diff / curv, -0.5, 0.5)
    # A pure tone's vertex lies at most 0.19 nepers above its peak bin (Gammatone, Q = 12);
    # next to a silent bin (log u at the floor, as in frames drawn from noise) the parabola
    # would extrapolate by several nepers: bounded to 0.25.
    level = mid + torch.clamp(-0.25 * diff * d, 0.0, 0.25)
    pad = (0, 0, 1, 1)
    return (
        peak,
        torch.nn.functional.pad(d, pad),
        torch.nn.functional.pad(level, pad, value=float(floor)),
    )


def _before(c: Tensor, prev: Tensor) -> Tensor:
    """Each frame's predecessor: ``prev`` (B, N) then c's frames but the last, (B, N, T)."""
    return torch.cat([prev[..., None].to(c), c[..., :-1]], dim=-1)


def interpolate_blocks(c: Tensor, prev: Tensor, h: int) -> Tensor:
    """Controls per frame (B, N, T) to per sample (B, N, T, h), linearly between frames n - 1
    and n (``prev`` (B, N): the frame before the first; module docstring)."""
    before = _before(c, prev)
    return torch.lerp(before[..., None], c[..., None], _ramps(h, c.device, c.dtype)[0])


def _interpolated_sum(values: Tensor, prev: Tensor, carriers: Tensor, h: int) -> Tensor:
    """sum_k c_k(s) carrier_k(s) over blocks, c interpolated as :func:`interpolate_blocks`:
    values (B, N, T), prev (B, N), carriers (B or 1, T, N, h) -> (B, T, h). The sums at
    both ends of each block, then the line between them (the sum is linear in c)."""
    before = _before(values, prev)
    ends = torch.stack([before.transpose(1, 2), values.transpose(1, 2)], dim=2)  # (B, T, 2, N)
    sums = ends @ carriers  # (B, T, 2, h)
    return torch.lerp(sums[:, :, 0], sums[:, :, 1], _ramps(h, values.device, values.dtype)[0])


def block_phases(
    omega: Tensor,
    active: Tensor,
    omega_prev: Tensor,
    active_prev: Tensor,
    phase_prev: Tensor,
    offset: Tensor,
    h: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Block-start phases of oscillators with per-frame frequencies (module docstring).

    Parameters
    ----------
    omega : Tensor (B, N, T)
        Angular frequency at each frame, radians per sample.
    active : Tensor (B, N, T) bool
        Amplitude non-zero at each frame.
    omega_prev, active_prev : Tensor (B, N)
        The same at the frame before the first.
    phase_prev : Tensor (B, N) float64
        Phase at the start of block 0, used where ``active_prev``.
    offset : Tensor (N,) float64
        Restart phase of each oscillator.
    h : int
        Samples per block.

    Returns
    -------
    start : Tensor (B, N, T) float64
        Phi_n, wrapped to [0, 2 pi).
    omega_from : Tensor (B, N, T)
        omega' of each block (the previous frame's frequency, or this frame's after silence).
    phase_next : Tensor (B, N) float64
        Phi_T: where the block after the last starts (wrapped).
    """
    om = omega.double()
    before_active = _before(active, active_prev)
    before = _before(om, omega_prev)
    om_from = torch.where(before_active, before, om)
    # the phase advance over each block: h om' + (om - om') (h + 1) / 2
    inc = torch.add(h * om_from, om - om_from, alpha=(h + 1) / 2)
    T = om.shape[-1]
    excl = torch.cumsum(inc, dim=-1) - inc  # sum of inc over blocks before n
    idx = torch.arange(T, device=om.device).expand_as(om)
    last_reset = torch.cummax(torch.where(before_active, 0, idx), dim=-1)[0]
    excl_at_reset = torch.gather(excl, -1, last_reset)
    # a block continues the caller's phase only if no silence came before it since block 0
    carried = (last_reset == 0) & before_active[..., :1]
    offset = offset.to(om)
    base = torch.where(carried, phase_prev.to(om)[..., None], offset[:, None])
    start = torch.remainder(base + excl - excl_at_reset, TWO_PI)
    after = start[..., -1] + inc[..., -1]
    phase_next = torch.remainder(torch.where(active[..., -1], after, offset), TWO_PI)
    return start, om_from.to(omega.dtype), phase_next


def envelope_knots(c: Tensor, prev: Tensor, env: Tensor) -> Tensor:
    """Controls per frame (B, N, T) and the frame before (B, N), shaped by envelopes of P
    multipliers per frame (B, N, T, P): the P points of each block, point p of block n
    ``lerp(c[n-1], c[n], (p + 1) / P) env[n, p]`` (flat envelopes give the line between the
    frames at P points), as controls at P times the frame rate (B, N, T P)."""
    P = env.shape[-1]
    w = (torch.arange(P, device=c.device, dtype=c.dtype) + 1) / P
    knots = torch.lerp(_before(c, prev)[..., None], c[..., None], w) * env
    return knots.reshape(c.shape[0], c.shape[1], -1)


def sum_oscillators(
    amp: Tensor,
    amp_prev: Tensor,
    omega: Tensor,
    omega_from: Tensor,
    start: Tensor,
    h: int,
    sub: int = 1,
) -> Tensor:
    """sum_k a_k(s) cos(phi_k(s)) over blocks: (B, N, T) controls -> (B, T, h).

    ``a`` is interpolated linearly between frames (``amp_prev`` (B, N) before the first); the
    phase is the module docstring's closed form from the block starts ``start`` (float64) and
    the frequencies ``omega_from`` -> ``omega``. The phases carry no gradient (the frequencies
    are read from the encoder, not learned); the amplitudes do.

    An oscillator silent throughout (amplitude exactly 0 at every frame and before) adds
    exactly 0: on the CPU, where no gradient is asked for, only the others' cosines are
    computed (a frame of the free head sounds a handful of its oscillators; a zero
    amplitude still has a gradient, and on a GPU the count would wait for the device).

    ``sub`` > 1: ``amp`` holds ``sub`` points a frame (B, N, T sub, :func:`envelope_knots`),
    interpolated linearly over blocks of h / sub samples; the phases stay per frame.
    """
    if (
        amp.device.type == "cpu"
        and not (torch.is_grad_enabled() and amp.requires_grad)
        and not torch.compiler.is_compiling()  # a compiled stream: fixed shapes, no branch
    ):
        sounding = ((amp != 0).any(dim=-1) | (amp_prev != 0)).any(dim=0).nonzero()[:, 0]
        if sounding.shape[0] < amp.shape[1]:
            amp, amp_prev, omega, omega_from, start = (
                t.index_select(1, sounding) for t in (amp, amp_prev, omega, omega_from, start)
            )
    with torch.no_grad():
        _, u1, quad = _ramps(h, amp.device, amp.dtype)
        # (B, T, N, h): frames outer, the sum over oscillators one matrix product per sample
        w0 = omega_from.float().transpose(1, 2)[..., None]
        dw = (omega.float() - omega_from.float()).transpose(1, 2)[..., None]
        phi = start.float().transpose(1, 2)[..., None] + u1 * w0 + quad * dw
        carrier = torch.cos(phi).to(amp.dtype)
        if sub > 1:  # (B, T, N, h) -> (B, T sub, N, h / sub)
            B, T, N = carrier.shape[:3]
            carrier = carrier.reshape(B, T, N, sub, h // sub).transpose(2, 3)
            carrier = carrier.reshape(B, T * sub, N, h // sub)
    return _interpolated_sum(amp, amp_prev, carrier, h // sub).reshape(amp.shape[0], -1, h)


def band_noise_tables(fs: float, length: int, num_bands: int, seed: int = 0) -> np.ndarray:
    """Fixed noise tables, one per octave band, unit RMS, periodic with period ``length``.

    Band b covers about one octave below fs / 2^(b+1) (raised-cosine edges on a log-frequency
    axis, the bands summing to one); the lowest band also holds everything below it, down to
    0 Hz (a recording's rumble). An octave of noise can carry a hammer, breath or bow, but
    never a partial. White Gaussian noise from ``seed``, shaped in the FFT domain.

    Returns
    -------
    ndarray (num_bands, length), float32
    """
    if length < 16 or num_bands < 1:
        raise ValueError(f"need length >= 16 and num_bands >= 1, got {length}, {num_bands}")
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(length))
    shapes = band_shapes(np.fft.rfftfreq(length, 1 / fs), fs, num_bands)
    tables = []
    for shape in shapes:
        band = np.fft.irfft(spec * shape, n=length)
        tables.append(band / max(float(np.sqrt(np.mean(band**2))), 1e-12))
    return np.stack(tables).astype(np.float32)


def band_shapes(f: np.ndarray, fs: float, num_bands: int) -> np.ndarray:
    """The noise bands' amplitude responses at the frequencies ``f`` (Hz), shape
    (num_bands, len(f)): band b a raised cosine on a log-frequency axis centred b + 1/2 octaves
    below fs / 2, an octave wide on each side, the bands summing to one in amplitude; the
    lowest band is 1 everywhere below its centre (:func:`band_noise_tables`)."""
    octave = np.log2(np.maximum(f, 1e-9) / (fs / 2))  # 0 at Nyquist, -1 an octave down ...
    centres = -(np.arange(num_bands) + 0.5)
    shapes = []
    for c in centres:
        x = np.clip(1 - np.abs(octave - c), 0.0, 1.0)  # triangles, overlapping, sum to 1
        if c == centres[-1]:
            x = np.where(octave < c, 1.0, x)
        shapes.append(np.sin(0.5 * np.pi * x) ** 2)
    return np.stack(shapes)


def band_noise(
    gains: Tensor, gains_prev: Tensor, tables: Tensor, first_sample: int | Tensor, h: int
) -> Tensor:
    """sum_b g_b(s) table_b[s mod L]: gains per frame (B, nb, T), interpolated between frames
    as the oscillators' amplitudes, over blocks of h samples, from the absolute sample
    ``first_sample`` (so a stream and the whole sequence read the same noise). (B, T, h).
    ``first_sample`` may be a 0-d integer tensor (a compiled stream: one graph whatever the
    position)."""
    nb, T = gains.shape[1], gains.shape[2]
    L = tables.shape[-1]
    first = first_sample % L
    if isinstance(first, int) and first + T * h <= L:  # no wrap: a view of the tables
        noise = tables[:, first : first + T * h]
    else:
        noise = tables[:, (first + torch.arange(T * h, device=tables.device)) % L]
    noise = noise.to(gains).reshape(nb, T, h).transpose(0, 1)  # (T, nb, h)
    return _interpolated_sum(gains, gains_prev, noise, h)
