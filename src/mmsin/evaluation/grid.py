"""Issue 12's measures: energy on the generator's upsampling grids (multiples of fs/2^k),
the harmonic-to-noise ratio of a note, and a low-passed reference for distances."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.signal
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    pass

from mmsin.evaluation._common import _check_fs, _np

#: The grids :func:`grid_energy_share` measures by default: multiples of fs/2^k for k = 5, 6, 7
#: (128, 64 and 32 Hz at 4096 Hz), the output rates of the generator's layers 5, 4 and 3 when
#: J = 10 (4 Hz frames doubled). A generator that turns every low-rate sample into a fixed grain
#: puts its energy on these lines; the issue-12 figures (67 % on the grid) are for k = 6.
GRID_KS: tuple[int, ...] = (5, 6, 7)

#: Half-width of the harmonic bands of :func:`harmonic_to_noise_ratio` in cents.
HNR_TOL_CENTS = 20.0

#: Zero-padding factor of the long-window spectra (FFT size: the next power of two at or above
#: ``pad * length``), so that the +-tol_hz bands are sampled finely (bins of 0.125 Hz for a 2 s
#: clip at 4096 Hz).
SPECTRUM_PAD = 4


def _long_spectrum(
    y: np.ndarray, fs: float, pad: int, chunk: int = 1 << 24
) -> tuple[np.ndarray, np.ndarray]:
    """Energy spectrum of whole clips: frequencies (F,) and energies (n, F).

    One Hann window over the whole clip (its main lobe is +-2 fs/N Hz: +-1 Hz for a 2 s clip),
    after removing the window-weighted mean so that a DC offset leaves no trace at all; FFT
    zero-padded to the next power of two >= ``pad * N``. Bins strictly between 0 and fs/2 are
    doubled (they stand for their negative-frequency mirror too), so the bins sum to the
    windowed clip's energy up to one constant (Parseval) and a ratio of sums is a ratio of
    energies.
    """
    n_clips, length = y.shape
    nfft = 1 << math.ceil(math.log2(max(pad, 1) * length))
    w = np.hanning(length)
    freqs = np.arange(nfft // 2 + 1) * (fs / nfft)
    weight = np.full(freqs.size, 2.0)
    weight[0] = 1.0
    weight[-1] = 1.0
    out = np.empty((n_clips, freqs.size))
    step = max(1, chunk // nfft)
    for a in range(0, n_clips, step):
        block = y[a : a + step]
        block = block - (block @ w / w.sum())[:, None]
        spec = np.fft.rfft(block * w, nfft, axis=-1)
        out[a : a + step] = (spec.real**2 + spec.imag**2) * weight
    return freqs, out


def _as_clips(x: Tensor | np.ndarray, what: str = "x") -> tuple[np.ndarray, bool]:
    y = _np(x)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ValueError(f"{what} must have shape (time,) or (n, time), got {y.shape}")
    return np.atleast_2d(y), y.ndim == 1


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class GridShare:
    """Result of :func:`grid_energy_share`.

    Attributes
    ----------
    ks : tuple of int
        The grids measured: multiples of ``fs / 2**k``.
    spacing_hz : dict k -> float
        ``fs / 2**k``.
    share : dict k -> float or ndarray (n,)
        Share of each clip's energy (above ``tol_hz``) within +-``tol_hz`` of a multiple of
        ``fs / 2**k``; NaN for a silent clip.
    combined : float or ndarray (n,)
        Share within +-``tol_hz`` of a line of *any* of the grids (their union). Grids of
        fs/2^k nest (every multiple of 128 Hz is one of 64 Hz), so with the default ks this is
        the finest grid's (k = 7) share and equals ``max(share.values())``.
    chance : dict k -> float
        The share white noise has in expectation: the fraction of the (weighted) spectrum bins
        above ``tol_hz`` that the bands cover, close to ``(2 tol_hz + df) / spacing`` with
        ``df`` the FFT bin width (edge effects at fs/2 aside).
    chance_combined : float
        The same for the union of the grids.
    """

    ks: tuple[int, ...]
    spacing_hz: dict[int, float]
    share: dict[int, Any]
    combined: Any
    chance: dict[int, float]
    chance_combined: float


def _min_samples(fs: float, tol_hz: float) -> float:
    """Shortest clip whose whole-clip Hann main lobe (+-2 fs/N Hz) fits in +-tol_hz bands."""
    return 2 * fs / tol_hz


def grid_energy_share(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    ks: Sequence[int] = GRID_KS,
    tol_hz: float = 2.0,
    pad: int = SPECTRUM_PAD,
) -> GridShare:
    """Share of a signal's energy on the generator's upsampling grids (multiples of fs/2^k).

    The generator doubles its rate J times; a stack that turns each sample of layer j into a
    fixed grain makes a comb with lines at the multiples of that layer's rate fs/2^k (k = J - j)
    and snaps the output's pitch to them. For each clip, with E[f] its long-window
    energy spectrum (one Hann window over the whole clip, zero-padded FFT; see below)::

        share_k = sum_{f > tol, |f - m fs/2^k| <= tol for some m} E[f]  /  sum_{f > tol} E[f]

    **Window vs tolerance.** The whole-clip Hann window has a main lobe of +-2 fs/N Hz (+-1 Hz
    for a 2 s clip at 4096 Hz) and side lobes below -31 dB falling at 18 dB per octave, so a
    steady line on the grid counts fully (about 1 - 3e-5) and a line 10 Hz off counts for
    nothing (about 1e-7). Clips shorter than ``2 fs / tol_hz`` samples (1 s for the defaults),
    whose main lobe is wider than the tolerance, are refused.

    **DC.** 0 Hz is a multiple of every grid, but an offset is not a grain's pitch: the
    window-weighted mean is removed before the transform (which cancels a constant exactly) and
    the band 0 <= f <= ``tol_hz`` is left out of both sums. The line at fs/2 (a multiple of every
    fs/2^k) is kept: a generator that alternates signs sample by sample puts energy there.

    Chance level: white noise has a flat expected spectrum, so its expected share is the band
    coverage (:attr:`GridShare.chance`): about ``(2 tol + df) / spacing``, 6.4 % for 64 Hz and
    +-2 Hz. The originals of the nsynth-like notes have about 0.3 % on the 64 Hz grid.

    Parameters
    ----------
    x : shape (time,) or (n, time)
        Clips at ``fs`` Hz (batched over the first axis).
    fs : float
        Sample rate in Hz.
    ks : sequence of int
        Grids: multiples of ``fs / 2**k``.
    tol_hz : float
        Half-width of each band in Hz.
    pad : int
        Zero-padding factor of the FFT.

    Returns
    -------
    GridShare
        Floats for a single clip, arrays (n,) for a batch.
    """
    _check_fs(fs)
    y, single = _as_clips(x)
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    if not tol_hz > 0:
        raise ValueError(f"tol_hz must be positive, got {tol_hz}")
    if y.shape[-1] < _min_samples(fs, tol_hz):
        raise ValueError(
            f"clips of {y.shape[-1]} samples are too short for +-{tol_hz} Hz bands: the "
            f"window's main lobe (+-{2 * fs / y.shape[-1]:.2f} Hz) is wider; need at least "
            f"{math.ceil(2 * fs / tol_hz)} samples"
        )
    freqs, energy = _long_spectrum(y, fs, pad)
    weight = np.where((freqs > 0) & (freqs < fs / 2), 2.0, 1.0)
    valid = freqs > tol_hz
    total = energy[:, valid].sum(axis=1)
    spacing = {k: fs / 2.0**k for k in ks}
    masks = {}
    for k, s in spacing.items():
        masks[k] = np.abs(freqs - s * np.round(freqs / s)) <= tol_hz
    union = np.logical_or.reduce([masks[k] for k in ks])

    def share(mask: np.ndarray) -> Any:
        r = _ratio(energy[:, mask & valid].sum(axis=1), total)
        return float(r[0]) if single else r

    def chance(mask: np.ndarray) -> float:
        return float(weight[mask & valid].sum() / weight[valid].sum())

    return GridShare(
        ks=ks,
        spacing_hz=spacing,
        share={k: share(masks[k]) for k in ks},
        combined=share(union),
        chance={k: chance(masks[k]) for k in ks},
        chance_combined=chance(union),
    )


def harmonic_band_mask(
    freqs: np.ndarray, fs: float, f0: float, *, tol_hz: float = 2.0, tol_cents: float = 0.0
) -> np.ndarray:
    """Bins within a band around a harmonic h f0 (h = 1, 2, ... while h f0 <= fs/2).

    The band around h f0 has half-width ``max(tol_hz, h f0 (2^(tol_cents/1200) - 1))``: fixed
    in Hz for ``tol_cents = 0``, widening with h when ``tol_cents`` > 0 (for stretched or
    slightly mistuned partials).
    """
    mask = np.zeros(freqs.shape, dtype=bool)
    if not (np.isfinite(f0) and f0 > 0):
        return mask
    rel = 2.0 ** (tol_cents / 1200.0) - 1.0
    for h in range(1, int(fs / 2 // f0) + 1):
        half = max(tol_hz, h * f0 * rel)
        mask |= np.abs(freqs - h * f0) <= half
    return mask


def harmonic_to_noise_ratio(
    x: Tensor | np.ndarray,
    fs: float,
    f0: float | Sequence[float] | np.ndarray,
    *,
    tol_hz: float = 2.0,
    tol_cents: float = HNR_TOL_CENTS,
    pad: int = SPECTRUM_PAD,
) -> Any:
    """Harmonic-to-noise ratio in dB: energy on the harmonics of f0 over the energy elsewhere.

    From the same whole-clip spectrum as :func:`grid_energy_share` (Hann window over the whole
    clip, weighted mean removed, zero-padded FFT, the band 0..``tol_hz`` left out)::

        HNR = 10 log10( sum_{f in H} E[f] / sum_{f > tol, f not in H} E[f] ),

    with H the bands of :func:`harmonic_band_mask` around h f0 for every h f0 <= fs/2: +-20
    cents by default, at least +-``tol_hz``. A steady harmonic tone scores about 45 dB (the
    Hann window's leakage outside the bands); white noise scores ``10 log10(c / (1 - c))`` with
    c the share of the spectrum the bands cover (the sum of the band widths, each
    ``2 max(tol_hz, h f0 (2^(tol_cents/1200) - 1)) + df``, over fs/2 - tol_hz); a harmonic
    tone plus white noise at signal-to-noise ratio SNR scores close to SNR (exactly
    ``10 log10((P_t + c P_n) / ((1 - c) P_n))`` in expectation).

    Why cents: the nominal MIDI pitch is not the note's exact tuning (the look-alikes' notes
    are within 20 cents, and a piano's upper partials are stretched), and at harmonic h a
    detune of d cents moves the partial by ``h f0 d / 1731`` Hz. On the nsynth-like held-out
    notes with their nominal f0, fixed +-2 Hz bands give a median of 9.6 dB (10th
    percentile -7 dB), +-20-cent bands 27 dB (10th percentile 21 dB), white noise -13 dB.
    With ``tol_cents=0`` the bands are +-``tol_hz`` at every harmonic (for a measured f0).

    Parameters
    ----------
    x : shape (time,) or (n, time)
    fs : float
        Sample rate in Hz.
    f0 : float or array (n,)
        Fundamental of each clip in Hz; NaN gives NaN.
    tol_hz, tol_cents : float
        Band half-width (see :func:`harmonic_band_mask`).
    pad : int
        Zero-padding factor of the FFT.

    Returns
    -------
    float (one clip) or ndarray (n,): dB; +inf when nothing lies outside the bands, NaN for a
    silent clip or an f0 that is not positive and finite.
    """
    _check_fs(fs)
    y, single = _as_clips(x)
    f0s = np.broadcast_to(np.asarray(f0, dtype=np.float64), (y.shape[0],))
    if y.shape[-1] < _min_samples(fs, tol_hz):
        raise ValueError(
            f"clips of {y.shape[-1]} samples are too short for +-{tol_hz} Hz bands; need at "
            f"least {math.ceil(2 * fs / tol_hz)} samples"
        )
    freqs, energy = _long_spectrum(y, fs, pad)
    valid = freqs > tol_hz
    out = np.full(y.shape[0], np.nan)
    for i, f in enumerate(f0s):
        mask = harmonic_band_mask(freqs, fs, float(f), tol_hz=tol_hz, tol_cents=tol_cents)
        if not mask.any():
            continue
        num = energy[i, mask & valid].sum()
        den = energy[i, ~mask & valid].sum()
        if num + den <= 0:
            continue
        with np.errstate(divide="ignore"):
            out[i] = 10.0 * np.log10(num / den) if den > 0 else np.inf
    return float(out[0]) if single else out


def lowpass_reference(
    x: Tensor | np.ndarray, fs: float, cutoff_hz: float, *, order: int = 8
) -> np.ndarray:
    """The original, low-passed: a simple reference to report a distance beside.

    A Butterworth low-pass of ``order`` (``scipy.signal.butter``, second-order sections) run
    forwards and backwards (``sosfiltfilt``): zero phase, so the result stays aligned with the
    original sample for sample, and a magnitude response of exactly::

        |H(f)|^2 = 1 / (1 + (tan(pi f / fs) / tan(pi cutoff / fs))^(2 order))

    (-6 dB at the cutoff). ``log_spectral_distance(lowpass_reference(x, fs, fc), x)`` is the
    distance of a "reconstruction" that is perfect below fc and empty above it; a
    reconstruction's own distance can be read against it.

    Parameters
    ----------
    x : shape (time,) or (n, time)
    fs, cutoff_hz : float
        Sample rate and cutoff in Hz, ``0 < cutoff_hz < fs / 2``.
    order : int
        Butterworth order (the effective order of the zero-phase filter is twice this).

    Returns
    -------
    ndarray, float64, same shape as ``x``.
    """
    _check_fs(fs)
    if not 0 < cutoff_hz < fs / 2:
        raise ValueError(f"cutoff must lie in (0, {fs / 2}) Hz, got {cutoff_hz}")
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    y = _np(x)
    sos = scipy.signal.butter(order, cutoff_hz, btype="low", fs=fs, output="sos")
    return np.asarray(scipy.signal.sosfiltfilt(sos, y, axis=-1), dtype=np.float64)


def grid_share_or_nan(x: Tensor | np.ndarray, fs: float, k: int = 6) -> np.ndarray:
    """Per-clip share of energy on the grid of multiples of fs/2^k (:func:`grid_energy_share`),
    or NaN for clips too short for its +-2 Hz bands (under 1 s). Shape (n,)."""
    y = np.atleast_2d(_np(x))
    if y.shape[-1] < _min_samples(fs, 2.0):
        return np.full(y.shape[0], np.nan)
    return np.atleast_1d(grid_energy_share(y, fs, ks=(k,)).share[k])
