"""Partials located in the scalogram u one at a time, each with its neighbours' share removed
(the free-frequency head's estimate, :mod:`mmsin.generators.free_partials`).

A lone steady partial of amplitude a at frequency f gives u_b = (a / 2) |psi_hat_b(f)| in every
bin b, and a parabola through log u at the three bins around its peak locates it to a fraction
of a cent (:func:`peak_calibration`). Two partials a few bins apart
share bins: the wavelet bank is Q = 12 constant-Q, a bin one semitone off still hears a partial
at -9 dB, two off at -21 dB, so from the 8th harmonic up (partials two semitones apart or
less) the stronger partial tilts the weaker one's parabola towards itself, by up to 30 cents on
a real piano note, and by a different amount in each frame as their levels decay at different
rates: the partial glides. A weak partial next to a strong one may not even be a local maximum.

Within one bin, two partials add in power, not in magnitude: u is the time average of
|x * psi_b|, two sinusoids in it beat, and the average of |A + B e^(i theta)| is within a few
per cent of sqrt(A^2 + B^2) (exactly so on average for |.|^2; checked against S_J for two
partials two bins apart, amplitude ratios 2.5 and 5: within 4 % in every bin they share, where
the magnitude sum is 20-40 % off). So, with every partial j's modelled share
c_bj = (a_j / 2) |psi_hat_b(f_j)|:

1. **Refine.** Partial k's own bins are what u leaves once the others are taken out,
   ``r_b^2 = u_b^2 - sum_{j != k} c_bj^2``; the same parabola and calibration through log r at
   k - 1, k, k + 1 give its new frequency and amplitude. Repeated, all partials at once.
2. **Discover.** Where the residual ``u_b^2 - sum_j c_bj^2`` is a local maximum, holds most of
   u_b (at least :data:`DISCOVER_SHARE` of its power) and has no partial in the next bin, a
   partial the peaks missed is added, and refined like the others.
3. **The top bin** has no bin above for a parabola: its partial is located by its rise over
   the bin below (:class:`PeakCalibration`), now with the other partials' shares taken out
   of both bins, so that the skirt of a strong partial a few semitones down no longer flattens
   it (a 1750 Hz partial next to a 1400 Hz one five times stronger: 75 cents flat before).

What it cannot do: where partials lie less than two bins apart (a harmonic series from about
its 9th partial on), u has about one value per partial or fewer, and no per-frame reading of it
places each partial; those keep an error of tens of cents. Nor the top bin's fold: its rise
over the bin below grows only up to 0.63 semitones above the top wavelet (1.76 kHz) and falls
again, so a partial above that is read below it, and near the fold a small error of the rise is
a large error of frequency. A fit through the top three bins placed lone sines to a cent up to
1.88 kHz, but on the real Steinway notes it moved partials near the fold the wrong way (median
HNR 1.5 dB lower), so it is not used.

The responses come from the wavelets' closed form, tabulated once per bin
(:func:`response_table`); every step is per frame, so the estimate keeps the head's causality,
streaming equality and, the bank being constant-Q, its equivariance to transposition by whole
bins.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsin.generators.synthesis import polyval

__all__ = [
    "DISCOVER_FLOOR",
    "DISCOVER_SHARE",
    "PeakCalibration",
    "ResponseTable",
    "peak_calibration",
    "refine_peaks",
    "response_table",
    "wavelet_responses",
]

#: A residual local maximum becomes a partial when it holds this share of its bin's power.
DISCOVER_SHARE = 0.5
#: ... and at least this share of the frame's largest bin power (-30 dB: the far skirts of the
#: responses, beyond the table's reach, and a recording's noise floor are not taken for
#: partials; at -40 dB the real notes' HNR was 0.1 dB lower and their LSD 0.1 dB higher).
DISCOVER_FLOOR = 1e-3


@dataclass(frozen=True)
class PeakCalibration:
    """Polynomials (highest power first) of :func:`peak_calibration`."""

    semitones: np.ndarray  # in d: semitones from a peak bin's centre to the tone
    log_gain: np.ndarray  # in d: log(amplitude) - the parabola's vertex level
    top_semitones: np.ndarray  # in the top bin's rise r: semitones from its centre
    top_log_gain: np.ndarray  # in r: log(amplitude) - log u_top
    residual_cents: float  # median error of the frequency fit over the sweep
    top_rise: float  # the largest rise the top bin's fit covers
    top_reach: float  # semitones above the top bin's centre that rise stands for


def wavelet_responses(
    scattering: Any, f: np.ndarray, bins: Sequence[int] | None = None
) -> np.ndarray:
    """|psi_hat_b(f)| of every first-order wavelet b at the frequencies ``f`` (Hz), shape
    (n1, len(f)), rows in increasing centre frequency (the scalogram u's bins); with ``bins``,
    only those rows (indices in that order), shape (len(bins), len(f))."""
    order = np.argsort(np.asarray(scattering.family.xi1))
    if bins is not None:
        order = order[np.asarray(bins, dtype=int)]
    omega = 2 * math.pi * np.asarray(f, dtype=np.float64) / float(scattering.fs)
    return np.stack([np.abs(scattering._psi1(int(i)).transfer(omega)) for i in order])


def peak_calibration(
    scattering: Any,
    hz: np.ndarray,
    fmin: float = 27.5,
    fmax_ratio: float = 0.46,
    degree: int = 5,
) -> PeakCalibration:
    """How a pure tone's peak in u maps to its frequency and amplitude (the free oscillators'
    estimate), from the first-order wavelets' closed-form frequency responses.

    A steady sine of amplitude a at frequency f gives u_b = (a / 2) |psi_hat_b(f)| in every
    bin b (the analytic wavelets see its positive-frequency half; checked against S_J to
    1e-4). At the bin b that peaks, a parabola through log u at b - 1, b, b + 1 has its vertex
    at an offset d in [-1/2, 1/2] bins and a level v; over tones swept across the bins, the
    semitones from the bin's centre frequency to f and log(a) - v are smooth functions of d
    alone (the bank is constant-Q), fitted here by polynomials.

    Parameters
    ----------
    scattering : mmsin.scattering.TimeFrequencyScattering
    hz : ndarray (n1,)
        The bins' centre frequencies, increasing (:func:`first_order_frontend`).
    fmin : float
        Lowest frequency the fit covers (Hz).
    degree : int
        Degree of both polynomials.

    fmax_ratio : float
        Highest frequency (times fs) an oscillator may take: the top bin, which has no
        neighbour above, is calibrated up to it by the rise of u from the bin below.

    Returns
    -------
    PeakCalibration
    """
    fs = float(scattering.fs)
    fmax_hz = max(fmax_ratio * fs, hz[-1] * 2 ** (0.5 / 12))
    lo = max(int(np.searchsorted(hz, fmin)), 1)
    hi = len(hz) - 2
    if hi - lo < 3:
        raise ValueError(f"too few first-order bins above fmin = {fmin} Hz to calibrate peaks")
    f = hz[lo] * 2.0 ** (np.arange(0.0, np.log2(hz[hi] / hz[lo]) * 12, 1 / 97) / 12)
    H = wavelet_responses(scattering, f)
    log_u = np.log(0.5 * H + 1e-30)  # (n1, G): unit-amplitude sines
    b = np.argmax(log_u, axis=0)
    ok = (b > 0) & (b < len(hz) - 1)
    g = np.flatnonzero(ok)
    l0, l1, l2 = log_u[b[g] - 1, g], log_u[b[g], g], log_u[b[g] + 1, g]
    d = np.clip(0.5 * (l0 - l2) / np.minimum(l0 - 2 * l1 + l2, -1e-12), -0.5, 0.5)
    level = l1 - 0.25 * (l0 - l2) * d
    semis = 12 * np.log2(f[g] / hz[b[g]])
    p_semis = np.polyfit(d, semis, degree)
    p_gain = np.polyfit(d, -level, degree)
    residual = float(np.median(np.abs(semis - np.polyval(p_semis, d)))) * 100
    # The top bin has no neighbour above: a tone between its peak and fmax is located by the
    # rise r = log u_top - log u_(top-1), a monotone function of its frequency there.
    top = len(hz) - 1
    # The rise grows with the frequency only up to where both responses fall alike (about
    # half a semitone above the top bin at J = 10, Q = 12): tones above are put there.
    f_top = hz[top] * 2.0 ** (np.arange(-1.0, 12 * np.log2(fmax_hz / hz[top]), 1 / 97) / 12)
    H_top = wavelet_responses(scattering, f_top)
    lt = np.log(0.5 * H_top + 1e-30)
    rise = lt[top] - lt[top - 1]
    last = int(np.argmax(rise))
    sel = (np.argmax(lt, axis=0) == top) & (np.arange(len(f_top)) <= last)
    semis_top = 12 * np.log2(f_top / hz[top])
    p_top = np.polyfit(rise[sel], semis_top[sel], degree)
    p_top_gain = np.polyfit(rise[sel], -lt[top, sel], degree)
    return PeakCalibration(
        p_semis, p_gain, p_top, p_top_gain, residual, float(rise[last]), float(semis_top[last])
    )


@dataclass(frozen=True)
class ResponseTable:
    """log((1/2) |psi_hat_b(hz_b 2^(s/12))|) for every bin b (rows, increasing frequency) at
    offsets s = -reach .. reach semitones in steps of ``step``; ``shift[b, n]`` is
    12 log2(hz_(b+n) / hz_b) for n = -reach .. reach (NaN outside the bank)."""

    log_response: np.ndarray  # (F, L)
    shift: np.ndarray  # (F, 2 reach + 1)
    reach: int
    step: float


def response_table(
    scattering: Any, hz: np.ndarray, reach: int = 8, step: float = 1 / 32
) -> ResponseTable:
    """Tabulate the first-order wavelets' responses around their centres (module docstring).

    Parameters
    ----------
    scattering : mmsin.scattering.TimeFrequencyScattering
    hz : ndarray (F,)
        Bin centres in Hz, increasing (:func:`mmsin.generators.partials.first_order_frontend`).
    reach : int
        Bins either side a partial's share is counted in (at Q = 12: -37 dB at 4 semitones,
        -50 dB at 7).
    step : float
        Table step in semitones.
    """
    hz = np.asarray(hz, dtype=np.float64)
    s = np.arange(-reach, reach + step / 2, step)
    rows = []
    for b in range(len(hz)):
        H = wavelet_responses(scattering, hz[b] * 2.0 ** (s / 12), bins=[b])[0]
        rows.append(np.log(0.5 * H + 1e-300))
    n = np.arange(-reach, reach + 1)
    idx = np.arange(len(hz))[:, None] + n[None, :]
    ok = (idx >= 0) & (idx < len(hz))
    shift = np.full(idx.shape, np.nan)
    shift[ok] = 12 * np.log2(hz[idx[ok]] / np.repeat(hz, len(n)).reshape(idx.shape)[ok])
    return ResponseTable(np.stack(rows), shift, int(reach), float(step))


def _shares(
    log_a: Tensor,
    semis: Tensor,
    active: Tensor,
    table: Tensor,
    shift: Tensor,
    reach: int,
    step: float,
) -> Tensor:
    """c[n, :, j, :]: the share partial j (at ``semis`` from bin j, log-amplitude ``log_a``)
    puts in bin j + n, n = -reach .. reach; zero where j holds no partial or j + n is outside.

    log_a, semis : (B, F, T); active : (B, F, T) bool; table : (F, L); shift : (F, 2 reach + 1).
    Returns (2 reach + 1, B, F, T).
    """
    F, L = table.shape
    n = torch.arange(-reach, reach + 1, device=table.device)
    # offset of partial j from the centre of bin j + n, in table steps (NaN: j + n outside)
    s = semis[None] - shift.T.to(semis)[:, None, :, None]
    pos = torch.nan_to_num((s + reach) / step, nan=-1.0)
    inside = active[None] & (pos >= 0) & (pos <= L - 1)
    pos = pos.clamp(0, L - 1 - 1e-9)
    i0 = pos.floor().long()
    frac = (pos - i0).to(table.dtype)
    rows = (torch.arange(F, device=table.device)[None, :] + n[:, None]).clamp(0, F - 1)
    base = (rows * L)[:, None, :, None]  # row j + n of the table, flattened
    flat = table.reshape(-1)
    v0 = flat[base + i0]
    v1 = flat[base + (i0 + 1).clamp(max=L - 1)]
    log_c = (1 - frac) * v0 + frac * v1 + log_a.to(table.dtype)[None]
    return torch.where(inside, torch.exp(log_c), torch.zeros_like(log_c))


def _power_by_bin(c: Tensor, reach: int) -> Tensor:
    """sum_j c_bj^2 per bin b (B, F, T) from the shares c[n, :, j] put in bin j + n."""
    N, B, F, T = c.shape
    src = (c**2).permute(1, 3, 0, 2).reshape(B, T, N * F)
    return (src @ _gather_bins(F, reach, c.device, c.dtype)).transpose(1, 2)


@functools.lru_cache(maxsize=16)
def _gather_bins(F: int, reach: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(N F, F) 0/1: share (n, j) goes to bin j + n (none when outside). One matrix product
    sums the shares per bin (a scatter-add costs 10x more on a frame)."""
    n = np.arange(-reach, reach + 1)
    target = np.arange(F)[None, :] + n[:, None]
    M = np.zeros((len(n) * F, F))
    ok = (target >= 0) & (target < F)
    M[np.flatnonzero(ok.reshape(-1)), target[ok]] = 1.0
    with torch.inference_mode(False), torch.no_grad():
        return torch.tensor(M, dtype=dtype, device=device)


def _vertex(
    lo: Tensor, mid: Tensor, hi: Tensor, semis_poly: Tensor, gain_poly: Tensor
) -> tuple[Tensor, Tensor]:
    """The parabola through (lo, mid, hi) in log units, as
    :func:`~mmsin.generators.synthesis.parabolic_peaks`, mapped by the calibration: (semitones
    from the middle bin, log-amplitude)."""
    curv = torch.clamp(lo - 2 * mid + hi, max=-1e-9)
    d = torch.clamp(0.5 * (lo - hi) / curv, -0.5, 0.5)
    level = mid + torch.clamp(-0.25 * (lo - hi) * d, 0.0, 0.25)
    return polyval(semis_poly, d.double()), level + polyval(gain_poly, d.double()).to(level)


def refine_peaks(
    u: Tensor,
    peak: Tensor,
    semis: Tensor,
    log_a: Tensor,
    *,
    table: Tensor,
    shift: Tensor,
    reach: int,
    step: float,
    semis_poly: Tensor,
    gain_poly: Tensor,
    floor: float,
    rounds: int = 2,
    discover: bool = True,
    top: tuple[Tensor, Tensor, float] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The partials of u with their neighbours' shares removed (module docstring).

    Parameters
    ----------
    u : Tensor (B, F, T)
        The scalogram (non-negative), bins in increasing frequency.
    peak, semis, log_a : Tensor (B, F, T)
        The plain parabola's estimate: which bins hold a partial, its offset from the bin's
        centre in semitones (float64) and its log-amplitude. The first and last bins are not
        refined (no parabola there) but their shares are counted.
    table, shift, reach, step : :class:`ResponseTable`'s fields as tensors.
    semis_poly, gain_poly : Tensor
        :class:`PeakCalibration`'s ``semitones`` and ``log_gain``.
    floor : float
        log of the silence level: a bin with log u at or below it never holds a partial.
    rounds : int
        Refinement passes before and after the discovery pass.
    top : (Tensor, Tensor, float), optional
        :class:`PeakCalibration`'s ``top_semitones``, ``top_log_gain`` and ``top_rise``: the
        top bin's partial is then located again by its rise over the bin below with the other
        partials' shares taken out of both bins (the plain rise: skirts of partials below and
        noise in the bin below make a partial near the fold read up to 80 cents flat).

    Returns
    -------
    peak, semis, log_a : Tensor (B, F, T)
        The refined estimate (semis float64).
    """
    F = u.shape[1]
    u2 = u.double() ** 2
    tiny = (0.01 * math.exp(floor)) ** 2
    inner = torch.zeros(F, dtype=torch.bool, device=u.device)
    inner[1:-1] = True
    inner = inner[None, :, None]
    semis, log_a = semis.double(), log_a.double()
    table, shift = table.double(), shift.double()

    def refine(peak: Tensor, semis: Tensor, log_a: Tensor) -> tuple[Tensor, Tensor]:
        c = _shares(log_a, semis, peak, table, shift, reach, step)
        rest = u2 - _power_by_bin(c, reach)  # u^2 minus every partial's share
        own = rest + c[reach] ** 2  # ... with partial k's own share put back, at bin k
        lo = rest[:, :-2] + c[reach - 1, :, 1:-1] ** 2  # bin k - 1 with k's share back
        hi = rest[:, 2:] + c[reach + 1, :, 1:-1] ** 2
        mid = own[:, 1:-1]
        l_lo, l_mid, l_hi = (0.5 * torch.log(torch.clamp(v, min=tiny)) for v in (lo, mid, hi))
        s_new, a_new = _vertex(l_lo, l_mid, l_hi, semis_poly, gain_poly)
        # still the largest of its three bins once the others are out: take the new vertex
        ok = peak[:, 1:-1] & (mid > lo) & (mid >= hi)
        semis = semis.clone()
        log_a = log_a.clone()
        semis[:, 1:-1] = torch.where(ok, s_new, semis[:, 1:-1])
        log_a[:, 1:-1] = torch.where(ok, a_new.to(log_a), log_a[:, 1:-1])
        if top is not None:
            top_semis, top_gain, top_rise = top
            # the top bin and the one below, each with the top partial's own share put back
            l_top = 0.5 * torch.log(torch.clamp(own[:, -1], min=tiny))
            l_below = 0.5 * torch.log(torch.clamp(rest[:, -2] + c[reach - 1, :, -1] ** 2, min=tiny))
            rise = l_top - l_below
            at = peak[:, -1] & (rise > 0)
            rise = torch.clamp(rise, 0.0, top_rise)
            s_top = polyval(top_semis, rise)
            a_top = l_top + torch.clamp(polyval(top_gain, rise), max=2.0)
            semis[:, -1] = torch.where(at, s_top, semis[:, -1])
            log_a[:, -1] = torch.where(at, a_top.to(log_a), log_a[:, -1])
        return semis, log_a

    for _ in range(rounds):
        semis, log_a = refine(peak, semis, log_a)
    if discover:
        c = _shares(log_a, semis, peak, table, shift, reach, step)
        rest = torch.clamp(u2 - _power_by_bin(c, reach), min=tiny)
        lr = 0.5 * torch.log(rest)
        lo, mid, hi = lr[:, :-2], lr[:, 1:-1], lr[:, 2:]
        near = peak[:, :-2] | peak[:, 2:] | peak[:, 1:-1]
        new = (
            (mid > lo)
            & (mid >= hi)
            & (mid > floor)
            & (rest[:, 1:-1] >= DISCOVER_SHARE * u2[:, 1:-1])
            & (rest[:, 1:-1] >= DISCOVER_FLOOR * u2.amax(dim=1, keepdim=True))
            & ~near
        )
        new = torch.nn.functional.pad(new, (0, 0, 1, 1)) & inner
        if bool(new.any()):
            s_new, a_new = _vertex(lo, mid, hi, semis_poly, gain_poly)
            pad = (0, 0, 1, 1)
            semis = torch.where(new, torch.nn.functional.pad(s_new, pad), semis)
            log_a = torch.where(new, torch.nn.functional.pad(a_new, pad).to(log_a), log_a)
            peak = peak | new
            for _ in range(rounds):
                semis, log_a = refine(peak, semis, log_a)
    return peak, semis, log_a.to(u.dtype)
