"""Partials located in the scalogram u one at a time, each with its neighbours' share removed
(the free-frequency head's estimate, :mod:`mmsin.generators.free_partials`).

A lone steady partial of amplitude a at frequency f gives u_b = (a / 2) |psi_hat_b(f)| in every
bin b, and a parabola through log u at the three bins around its peak locates it to a fraction
of a cent (:func:`mmsin.generators.partials.peak_calibration`). Two partials a few bins apart
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

What it cannot do: where partials lie less than two bins apart (a harmonic series from about
its 9th partial on), u has about one value per partial or fewer, and no per-frame reading of it
places each partial; those keep an error of tens of cents. Nor the top bin's fold: its rise
over the bin below grows only up to 0.63 semitones above the top wavelet (1.76 kHz) and falls
again. A fit through the top three bins placed lone sines to a cent up to 1.88 kHz, but on the
real Steinway notes it moved partials near the fold the wrong way (median HNR 1.5 dB lower),
so the top bin keeps its rise estimate.

The responses come from the wavelets' closed form, tabulated once per bin
(:func:`response_table`); every step is per frame, so the estimate keeps the head's causality,
streaming equality and, the bank being constant-Q, its equivariance to transposition by whole
bins.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsin.generators.synthesis import polyval

__all__ = [
    "DISCOVER_FLOOR",
    "DISCOVER_SHARE",
    "ResponseTable",
    "refine_peaks",
    "response_table",
]

#: A residual local maximum becomes a partial when it holds this share of its bin's power.
DISCOVER_SHARE = 0.5
#: ... and at least this share of the frame's largest bin power (-30 dB: the far skirts of the
#: responses, beyond the table's reach, and a recording's noise floor are not taken for
#: partials; at -40 dB the real notes' HNR was 0.1 dB lower and their LSD 0.1 dB higher).
DISCOVER_FLOOR = 1e-3


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
    from mmsin.generators.partials import wavelet_responses

    hz = np.asarray(hz, dtype=np.float64)
    s = np.arange(-reach, reach + step / 2, step)
    rows = []
    for b in range(len(hz)):
        H = wavelet_responses(scattering, hz[b] * 2.0 ** (s / 12))[b]
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
        :class:`~mmsin.generators.partials.PeakCalibration`'s ``semitones`` and ``log_gain``.
    floor : float
        log of the silence level: a bin with log u at or below it never holds a partial.
    rounds : int
        Refinement passes before and after the discovery pass.

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
