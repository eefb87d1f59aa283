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
4. **Gaps** (``gaps=True``, after the discovery's passes). A weak member of a harmonic series
   between two strong ones may be no local maximum of the residual even then: a real D3's 8th
   partial (the hammer strikes near its node: 26 dB under the fundamental, the 7th and 9th at
   11 and 14) keeps half its bin, but the 9th and 10th, read a few cents and per cent off,
   leave more in the bin above it. Where located partials f_lo2 < f_lo < f_hi < f_hi2 are
   evenly spaced around a gap of twice the step (one side's spacing within
   :data:`GAP_SPACING` of (f_hi - f_lo) / 2, the other's no smaller), a partial is put at
   (f_lo + f_hi) / 2 if the residual in its bin holds at least :data:`GAP_SHARE` of the bin
   and clears the frame's floor (:data:`DISCOVER_FLOOR`), at the level that residual gives.
   Its frequency is not refined (the parabola through what the neighbours leave pulls it
   towards their leftovers: 93 cents sharp for that D3), and no pass follows (more passes
   move the other partials by themselves: the refinement is not converged after two), so a
   frame with no gap keeps exactly its partials. A series of odd harmonics (1, 3, 5, ...:
   evenly spaced by 2 f0) has no gap.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmsin.generators.synthesis import made_once, polyval

__all__ = [
    "DISCOVER_FLOOR",
    "DISCOVER_SHARE",
    "DecayLag",
    "PeakCalibration",
    "ResponseTable",
    "ShareLookup",
    "decay_lag",
    "peak_calibration",
    "refine_peaks",
    "response_table",
    "share_lookup",
    "unexplained_power",
    "wavelet_responses",
]

#: A residual local maximum becomes a partial when it holds this share of its bin's power.
DISCOVER_SHARE = 0.5
#: ... and at least this share of the frame's largest bin power (-30 dB: the far skirts of the
#: responses, beyond the table's reach, and a recording's noise floor are not taken for
#: partials; at -40 dB the real notes' HNR was 0.1 dB lower and their LSD 0.1 dB higher).
DISCOVER_FLOOR = 1e-3
#: How evenly the partials around a gap must be spaced for :func:`_gaps` to fill it (a
#: fraction of the step).
GAP_SPACING = 0.1
#: ... and the share of its bin's power that what they leave there must hold (and the frame's
#: floor, DISCOVER_FLOOR); half, as for the discovery, found 4.6 % of the real Steinway notes'
#: partials missing, a quarter 4.0 %, with the same pitch, HNR and LSD.
GAP_SHARE = 0.25


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


@dataclass(frozen=True)
class DecayLag:
    """How much too high each bin of u reads a partial that decays exponentially
    (:func:`decay_lag`): ``log_gain[b, j]`` at a fall of ``j * step`` nepers per frame, rows in
    increasing centre frequency (u's bins); ``delay`` (samples) the first-order term."""

    log_gain: np.ndarray  # (n1, G): log G_b at falls 0, step, ..., (G - 1) step
    step: float  # nepers per frame between the table's columns
    reach: np.ndarray  # (n1,): the largest fall each row holds (nepers per frame)
    delay: np.ndarray  # (n1,): group delays, samples


def decay_lag(scattering: Any, hop: int, columns: int = 65) -> DecayLag:
    """How late, and so how much too high, each bin of u reads a decaying partial.

    S_J's filters are causal: u's frame n averages the past, so a partial a(t) = a_0 exp(-r t)
    at bin b's centre reads as a(n 2^J) G_b(r), G_b(r) = |Psi_b(exp(-rho + i xi_b))|
    Phi(exp(-rho)) / (|Psi_b(exp(i xi_b))| Phi(1)), rho = r / fs: the transfer functions of
    the wavelet and of phi_J at the decaying input (their closed forms). To first order,
    log G_b = rho D_b with D_b their group delays: 620 samples at the top bin (1.7 kHz), 925 at
    106 Hz, 1,900 at 28 Hz (J = 10, Q = 12, 4096 Hz; phi_J alone 600). Tabulated against the
    fall per frame, rho ``hop``, up to half the slower filter's pole decay (where that filter
    alone reads 2^N = 8 times high).
    """
    fam = scattering.family
    order = np.argsort(np.asarray(fam.xi1))
    phi = scattering._phi()
    reach = 0.5 * np.minimum(np.asarray(fam.sigma1)[order], phi.sigma) * hop
    step = float(reach.max()) / (columns - 1)
    falls = step * np.arange(columns)
    rows: list[np.ndarray] = []
    delays: list[float] = []
    for i in order:
        psi = scattering._psi1(int(i))
        xi = float(fam.xi1[i])
        rho = np.minimum(falls, reach[len(rows)]) / hop
        g = np.abs(psi.transfer(xi, rho) * phi.transfer(0.0, rho))
        rows.append(np.log(g / g[0]))
        tiny = np.array([-1e-7, 1e-7])  # a central difference: the slope at rho = 0
        d = np.log(np.abs(psi.transfer(xi, tiny) * phi.transfer(0.0, tiny)))
        delays.append((d[1] - d[0]) / 2e-7)
    return DecayLag(np.array(rows), step, reach, np.array(delays))


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


#: log-power of the sentinel entries around each row of a :class:`ShareLookup` (exp: 0).
_OUTSIDE = -1e30


@dataclass(frozen=True)
class ShareLookup:
    """A :class:`ResponseTable` laid out for :func:`refine_peaks` (float64), made once per
    table by :func:`share_lookup`, so that a frame reads it with two gathers and no masks.

    Row b holds L + 1 entries: a sentinel, then twice the log-response of bin b at each table
    entry (a share's power is exp(2 log c)). ``power`` holds them, ``power_step`` the step
    from each to the next, so that a position p in a row reads
    ``power[i] + (p - i) power_step[i]`` at i = floor(p). Both sentinels give a power of 0:
    entry 0 (left of the table: step 0) and the step past the last entry (-1e30), so positions
    beyond the table's reach need no mask. ``base[n, j]`` is where the row of bin j + n
    starts (clamped inside the bank); ``offset[n, j]`` the row position of a partial at bin
    j's centre, 1 - (shift[j, n] - reach) / step, -inf where bin j + n is outside the bank
    (the sentinel on the left)."""

    power: Tensor  # (F (L + 1),) float64
    power_step: Tensor  # (F (L + 1),) float64
    base: Tensor  # (2 reach + 1, F) long
    offset: Tensor  # (2 reach + 1, F) float64
    reach: int
    step: float
    length: int  # L, table entries per row
    pitch: Tensor  # (F,) float64: each bin's centre in semitones above the lowest bin's


def share_lookup(table: Tensor, shift: Tensor, reach: int, step: float) -> ShareLookup:
    """:class:`ShareLookup` of a :class:`ResponseTable`'s ``log_response`` (F, L) and ``shift``
    (F, 2 reach + 1), given as tensors on the device the frames will be on."""
    with torch.inference_mode(False), torch.no_grad():  # usable later by autograd
        two = 2 * table.double()
        nb, L = two.shape
        edge = two.new_full((nb, 1), _OUTSIDE)
        power = torch.cat([edge, two], dim=1)
        power_step = torch.cat([torch.zeros_like(edge), two[:, 1:] - two[:, :-1], edge], dim=1)
        n = torch.arange(-reach, reach + 1, device=table.device)
        rows = (torch.arange(nb, device=table.device)[None, :] + n[:, None]).clamp(0, nb - 1)
        offset = 1 - (torch.nan_to_num(shift.double().T, nan=math.inf) - reach) / step
        up = shift.double()[:-1, reach + 1]  # semitones from each bin to the next
        pitch = torch.cat([up.new_zeros(1), torch.cumsum(up, 0)])
    return ShareLookup(
        power.reshape(-1),
        power_step.reshape(-1),
        rows * (L + 1),
        offset.contiguous(),
        int(reach),
        float(step),
        int(L),
        pitch,
    )


def _share_power(log_a2: Tensor, semis: Tensor, lookup: ShareLookup) -> Tensor:
    """c2[..., n, j] = c_(j+n) j^2: the power partial j (``semis`` from bin j's centre, twice
    its log-amplitude ``log_a2``, -inf where j holds no partial) puts in bin j + n,
    n = -reach .. reach; zero where j + n is outside the bank or the table's reach. Linear
    interpolation in the table (in log units).

    log_a2, semis : (B, T, F) float64. Returns (B, T, 2 reach + 1, F).
    """
    log_c2 = _log_unit_power(lookup.offset, lookup.base, semis[..., None, :], lookup)
    return torch.exp(log_c2 + log_a2[..., None, :])


def _log_unit_power(offset: Tensor, base: Tensor, semis: Tensor, lookup: ShareLookup) -> Tensor:
    """log of the power a unit partial ``semis`` from its bin's centre puts in the bins whose
    rows ``offset`` and ``base`` (rows of :class:`ShareLookup`'s, broadcast with ``semis``)
    name: linear interpolation in the table, 0 power beyond its reach."""
    pos = torch.add(offset, semis, alpha=1 / lookup.step)
    pos = pos.clamp(0, lookup.length + 1 - 1e-9)  # in the row with its sentinels
    i0 = pos.long()  # floor: pos >= 0
    at = base + i0
    return torch.addcmul(lookup.power.take(at), pos - i0, lookup.power_step.take(at))


def _power_by_bin(c2: Tensor, reach: int) -> Tensor:
    """sum_j c_bj^2 per bin b, (B, T, F), from the powers c2[..., n, j] partial j puts in bin
    j + n: one overlap-add (col2im), shares beyond the bank dropped."""
    B, T, N, Fb = c2.shape
    summed = F.fold(c2.reshape(B * T, N, Fb), (1, Fb), (1, N), padding=(0, reach))
    return summed.reshape(B, T, Fb)


def _residual(
    u2: Tensor, peak: Tensor, semis: Tensor, log_a: Tensor, lookup: ShareLookup
) -> tuple[Tensor, Tensor]:
    """Each partial's power in the bins around it (B, T, 2 reach + 1, F), and u^2 minus every
    partial's share (B, T, F); frame-major (B, T, F) inputs, u2 = u^2."""
    c2 = _share_power(torch.where(peak, 2 * log_a, -math.inf), semis, lookup)
    return c2, u2 - _power_by_bin(c2, lookup.reach)


def unexplained_power(
    u: Tensor, peak: Tensor, semis: Tensor, log_a: Tensor, lookup: ShareLookup
) -> Tensor:
    """What the located partials leave of u: u_b^2 - sum_j c_bj^2 per bin, at least 0.

    u, peak, semis, log_a : (B, F, T), as :func:`refine_peaks` takes and returns them.
    Returns (B, F, T) float64: the power of whatever is not a located partial (noise, a
    floor, partials no reading separates), in u's units squared.
    """
    u2 = u.double().transpose(1, 2) ** 2
    p, s, a = (x.transpose(1, 2) for x in (peak, semis.double(), log_a.double()))
    return torch.clamp(_residual(u2, p, s, a, lookup)[1], min=0.0).transpose(1, 2)


def _vertex(lo: Tensor, mid: Tensor, hi: Tensor, poly: Tensor) -> tuple[Tensor, Tensor]:
    """The parabola through (lo, mid, hi) in log units, as
    :func:`~mmsin.generators.synthesis.parabolic_peaks`, mapped by the calibration ``poly``
    (D + 1, 2): (semitones from the middle bin, log-amplitude)."""
    diff = lo - hi
    curv = torch.clamp(torch.add(lo, mid, alpha=-2) + hi, max=-1e-9)
    d = torch.clamp(0.5 * diff / curv, -0.5, 0.5)
    level = mid + torch.clamp(-0.25 * diff * d, 0.0, 0.25)
    sg = polyval(poly, d)
    return sg[..., 0], level + sg[..., 1]


@made_once
def _last_column(n: int, device: torch.device) -> Tensor:
    """(n,) bool, True in the last place only (made once)."""
    with torch.inference_mode(False):
        return torch.arange(n, device=device) == n - 1


def _neighbours(peak: Tensor) -> tuple[Tensor, Tensor]:
    """For every bin, the nearest bin strictly below that holds a partial (-1: none) and the
    nearest strictly above (F: none); peak (B, T, F)."""
    nb = peak.shape[-1]
    idx = torch.arange(nb, device=peak.device)
    below = torch.where(peak, idx, -1).cummax(-1).values
    above = torch.where(peak, idx, nb).flip(-1).cummin(-1).values.flip(-1)
    lo = torch.cat([torch.full_like(below[..., :1], -1), below[..., :-1]], dim=-1)
    hi = torch.cat([above[..., 1:], torch.full_like(above[..., :1], nb)], dim=-1)
    return lo, hi


def _gaps(
    peak: Tensor,
    semis: Tensor,
    rest: Tensor,
    u2: Tensor,
    lookup: ShareLookup,
    floor: float,
    tiny: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """One missing member of an evenly spaced run of located partials (frame-major inputs;
    module docstring, step 4).

    Where located partials lie at f_lo2 < f_lo < f_hi < f_hi2, the spacing on one side of the
    gap (f_lo - f_lo2 or f_hi2 - f_hi) within :data:`GAP_SPACING` of the step
    (f_hi - f_lo) / 2 and the other no smaller (or absent), the bin nearest (f_lo + f_hi) / 2
    gets a partial at that frequency if ``rest``, u^2 less the located partials' shares, holds
    :data:`GAP_SHARE` of its bin's power and clears the frame's floor; its level is what
    that residual gives. Returns the new partials' mask, offsets from their bins' centres
    (semitones) and log-amplitudes, (B, T, F).
    """
    nb = peak.shape[-1]
    lo, hi = _neighbours(peak)
    lo2 = lo.gather(-1, lo.clamp(min=0))
    hi2 = hi.gather(-1, hi.clamp(max=nb - 1))
    f = torch.exp2((lookup.pitch + semis) / 12)

    def at(i: Tensor) -> Tensor:
        return f.gather(-1, i.clamp(0, nb - 1))

    f_lo, f_hi = at(lo), at(hi)
    step = 0.5 * (f_hi - f_lo)
    # the spacing beyond each neighbour: the step on one side at least, and on neither side
    # less than it (a closer partial there says the series' step is smaller than the gap's)
    d_lo = torch.where(lo2 >= 0, f_lo - at(lo2), torch.full_like(step, math.inf))
    d_hi = torch.where(hi2 < nb, at(hi2) - f_hi, torch.full_like(step, math.inf))
    tol = GAP_SPACING * step
    match = ((d_lo - step).abs() <= tol) | ((d_hi - step).abs() <= tol)
    even = match & (d_lo >= step - tol) & (d_hi >= step - tol) & (lo >= 0) & (hi < nb)
    s_mid = 12 * torch.log2(0.5 * (f_lo + f_hi)) - lookup.pitch  # from each bin's centre
    nearest = s_mid.abs() <= 0.5
    s_mid = torch.where(nearest, s_mid, torch.zeros_like(s_mid))  # in the table's reach
    near = peak | F.pad(peak[..., 1:], (0, 1)) | F.pad(peak[..., :-1], (1, 0))
    # a unit partial's power in its own bin (_share_power's row n = 0)
    r = lookup.reach
    unit2 = _log_unit_power(lookup.offset[r], lookup.base[r], s_mid, lookup)
    log_a = 0.5 * (torch.log(torch.clamp(rest, min=tiny)) - unit2)
    least = torch.maximum(GAP_SHARE * u2, DISCOVER_FLOOR * u2.amax(dim=-1, keepdim=True))
    bins = torch.arange(nb, device=peak.device)
    inner = (bins > 0) & (bins < nb - 1)
    new = even & nearest & ~near & inner
    new = new & (rest >= least) & (rest > math.exp(2 * floor))
    return new, s_mid, log_a


def refine_peaks(
    u: Tensor,
    peak: Tensor,
    semis: Tensor,
    log_a: Tensor,
    *,
    lookup: ShareLookup,
    poly: Tensor,
    floor: float,
    rounds: int = 2,
    discover: bool = True,
    top: tuple[Tensor, float] | None = None,
    gaps: bool = False,
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
    lookup : ShareLookup
        :func:`share_lookup` of the bank's :class:`ResponseTable`.
    poly : Tensor (D + 1, 2) float64
        :class:`PeakCalibration`'s ``semitones`` and ``log_gain`` as columns.
    floor : float
        log of the silence level: a bin with log u at or below it never holds a partial.
    rounds : int
        Refinement passes before and after the discovery pass.
    top : (Tensor (D + 1, 2), float), optional
        :class:`PeakCalibration`'s ``top_semitones`` and ``top_log_gain`` as columns, and its
        ``top_rise``: the top bin's partial is then located again by its rise over the bin
        below with the other partials' shares taken out of both bins (the plain rise: skirts
        of partials below and noise in the bin below make a partial near the fold read up to
        80 cents flat).
    gaps : bool
        After the discovery's passes, fill one missing member of an evenly spaced run of
        located partials (module docstring, step 4; :func:`_gaps`).

    Returns
    -------
    peak, semis, log_a : Tensor (B, F, T)
        The refined estimate (semis float64).

    Notes
    -----
    Every tensor operation runs on whole frames (B, T, F), whatever the number of partials:
    a streamed frame costs a fixed number of small operations per pass.
    """
    reach = lookup.reach
    # frame-major (B, T, F) inside: a frame's shares (2 reach + 1, F) are then contiguous
    u2 = u.double().transpose(1, 2) ** 2
    peak, semis, log_a = (t.transpose(1, 2) for t in (peak, semis.double(), log_a.double()))
    tiny = (0.01 * math.exp(floor)) ** 2

    top_column = _last_column(u2.shape[-1] - 1, u.device)

    def residual(peak: Tensor, semis: Tensor, log_a: Tensor) -> tuple[Tensor, Tensor]:
        return _residual(u2, peak, semis, log_a, lookup)

    def refine(peak: Tensor, semis: Tensor, log_a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c2, rest = residual(peak, semis, log_a)
        # bins j - 1, j, j + 1 of each partial j = 1 .. F - 1 with its own share put back
        # (the top bin's third is padding: it has no bin above)
        w = F.pad(rest, (0, 1)).unfold(-1, 3, 1)
        w = w + c2[..., reach - 1 : reach + 2, 1:].transpose(-1, -2)
        w_lo, w_mid, w_hi = w.unbind(-1)
        lo, mid, hi = (0.5 * torch.log(torch.clamp(w, min=tiny))).unbind(-1)
        s_new, a_new = _vertex(lo, mid, hi, poly)
        # still the largest of its three bins once the others are out: take the new vertex
        ok = (w_mid > w_lo) & (w_mid >= w_hi)
        if top is None:  # the top bin's partial is not refined
            ok = ok & ~top_column
        else:  # ... or it is, by its rise over the bin below (both with its own share)
            top_poly, top_rise = top
            rise = mid - lo
            sg = polyval(top_poly, torch.clamp(rise, 0.0, top_rise))
            s_new = torch.where(top_column, sg[..., 0], s_new)
            a_new = torch.where(top_column, mid + torch.clamp(sg[..., 1], max=2.0), a_new)
            ok = torch.where(top_column, rise > 0, ok)
        ok = ok & peak[..., 1:]
        semis = torch.cat([semis[..., :1], torch.where(ok, s_new, semis[..., 1:])], dim=-1)
        log_a = torch.cat([log_a[..., :1], torch.where(ok, a_new, log_a[..., 1:])], dim=-1)
        return semis, log_a, rest

    for _ in range(rounds):
        semis, log_a, rest = refine(peak, semis, log_a)
    if discover:
        rest = torch.clamp(residual(peak, semis, log_a)[1], min=tiny)
        lo, mid, hi = (0.5 * torch.log(rest)).unfold(-1, 3, 1).unbind(-1)
        near = peak[..., :-2] | peak[..., 2:] | peak[..., 1:-1]
        # most of its bin's power and above the frame's floor (a >= x and a >= y: a >= max)
        least = torch.maximum(
            DISCOVER_SHARE * u2[..., 1:-1], DISCOVER_FLOOR * u2.amax(dim=-1, keepdim=True)
        )
        new = (mid > lo) & (mid >= hi) & (mid > floor) & (rest[..., 1:-1] >= least) & ~near
        # the new partials (none found: the same values), without asking whether there are
        # any, which would stop a compiled stream's graph
        new = F.pad(new, (1, 1))  # never the first or the last bin
        s_new, a_new = (F.pad(t, (1, 1)) for t in _vertex(lo, mid, hi, poly))
        semis = torch.where(new, s_new, semis)
        log_a = torch.where(new, a_new, log_a)
        peak = peak | new
        # whether or not it found a partial: a frame's estimate must not depend on the other
        # frames and clips it is computed with (a batch, a whole sequence or a stream)
        for _ in range(rounds):
            semis, log_a, rest = refine(peak, semis, log_a)
        if gaps:  # last: the passes would move the partials by themselves (not converged)
            if not rounds:  # (otherwise the last pass's residual, before its small moves)
                rest = residual(peak, semis, log_a)[1]
            gap, s_gap, a_gap = _gaps(peak, semis, rest, u2, lookup, floor, tiny)
            semis = torch.where(gap, s_gap, semis)
            log_a = torch.where(gap, a_gap, log_a)
            peak = peak | gap
    return peak.transpose(1, 2), semis.transpose(1, 2), log_a.to(u.dtype).transpose(1, 2)
