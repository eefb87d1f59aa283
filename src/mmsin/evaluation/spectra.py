"""Spectral distances and descriptors: multi-resolution STFT distance, log-spectral
distance, spectral flatness, silent frames, simultaneous partials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.signal
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    pass

from mmsin.evaluation._common import _check_fs, _np

#: FFT sizes of the multi-resolution STFT distance at 4096 Hz (hop n/4); the 16 kHz sizes of
#: Parallel WaveGAN / DDSP ([2048, 1024, 512, 256, 128, 64]) scaled to our lower rate.
MR_STFT_SIZES: tuple[int, ...] = (1024, 512, 256, 128, 64)


def _stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| with a periodic Hann window, frames centred (zero padding at both ends)."""
    _, _, z = scipy.signal.stft(
        x,
        window="hann",
        nperseg=n_fft,
        noverlap=n_fft - hop,
        boundary="zeros",
        padded=True,
        return_onesided=True,
    )
    return np.abs(z)


def multi_resolution_stft_distance(
    x_hat: Tensor | np.ndarray,
    x: Tensor | np.ndarray,
    *,
    fft_sizes: Sequence[int] = MR_STFT_SIZES,
    eps: float = 1e-7,
) -> float:
    """Multi-resolution STFT distance (Yamamoto et al. 2020, as in DDSP/RAVE/DAC evaluations).

    For each FFT size n (Hann window, hop n/4), with magnitudes X = |STFT x|, Y = |STFT x_hat|::

        SC_n  = || Y - X ||_F / || X ||_F                        (spectral convergence)
        LM_n  = mean | ln max(Y, eps) - ln max(X, eps) |          (log-magnitude l1)

    and the distance is ``mean_n (SC_n + LM_n)``, averaged over clips when given a batch.
    For ``x_hat = a x`` (a > 0, magnitudes above eps) it equals ``|1 - a| + |ln a|`` exactly.

    Parameters
    ----------
    x_hat, x : shape (time,) or (n, time)
        Estimate and reference.
    """
    a, b = _np(x_hat), _np(x)
    if a.shape != b.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {a.shape} and {b.shape}")
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    values = []
    for ya, yb in zip(a, b, strict=True):
        per_size = []
        for n in fft_sizes:
            if n > ya.shape[-1]:
                continue
            ma, mb = _stft_mag(ya, n, n // 4), _stft_mag(yb, n, n // 4)
            sc = float(np.linalg.norm(ma - mb)) / max(float(np.linalg.norm(mb)), eps)
            lm = np.mean(np.abs(np.log(np.maximum(ma, eps)) - np.log(np.maximum(mb, eps))))
            per_size.append(sc + lm)
        if not per_size:
            raise ValueError(f"signal of {ya.shape[-1]} samples is shorter than every FFT size")
        values.append(np.mean(per_size))
    return float(np.mean(values))


def log_spectral_distance(
    x_hat: Tensor | np.ndarray,
    x: Tensor | np.ndarray,
    *,
    n_fft: int = 512,
    hop: int = 128,
    eps: float = 1e-10,
) -> float:
    """Log-spectral distance in dB.

    With power spectra P = |STFT x|^2 and P^ = |STFT x_hat|^2 (Hann window)::

        LSD = mean_frames sqrt( mean_f ( 10 log10 (P[f] + eps) - 10 log10 (P^[f] + eps) )^2 )

    averaged over clips. For ``x_hat = a x`` it is ``|20 log10 a|`` (up to eps).
    """
    a, b = _np(x_hat), _np(x)
    if a.shape != b.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {a.shape} and {b.shape}")
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    values = []
    for ya, yb in zip(a, b, strict=True):
        pa, pb = _stft_mag(ya, n_fft, hop) ** 2, _stft_mag(yb, n_fft, hop) ** 2
        d = 10 * np.log10(pa + eps) - 10 * np.log10(pb + eps)
        values.append(np.mean(np.sqrt(np.mean(d**2, axis=0))))
    return float(np.mean(values))


def spectral_flatness(x: Tensor | np.ndarray, *, n_fft: int = 512, hop: int = 128) -> float:
    """Spectral flatness (Wiener entropy): geometric over arithmetic mean of the power spectrum.

    Computed per STFT frame (Hann window) and averaged over the non-silent frames (see
    :func:`silent_frames`). 1 for a flat spectrum, near 0 for a few partials; for white Gaussian
    noise each periodogram bin is exponentially distributed and the ratio tends to
    ``exp(-gamma) = 0.561`` (gamma: Euler's constant).
    """
    y = _np(x)
    if y.ndim != 1:
        raise ValueError(f"x must have shape (time,), got {y.shape}")
    p = _stft_mag(y, n_fft, hop) ** 2 + 1e-20
    flat = np.exp(np.mean(np.log(p), axis=0)) / np.mean(p, axis=0)
    active = ~_silent_mask(y, n_fft=n_fft, hop=hop)
    if not active.any():
        return float("nan")
    return float(np.mean(flat[active]))


def _frame_rms_db(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    m = _stft_mag(y, n_fft, hop)
    # Parseval with a Hann window: the frame energy up to a constant that cancels in the
    # relative threshold below.
    energy = np.sum(m**2, axis=0)
    return 10 * np.log10(energy + 1e-20)


def _silent_mask(
    y: np.ndarray, *, n_fft: int = 512, hop: int = 128, threshold_db: float = -40.0
) -> np.ndarray:
    e = _frame_rms_db(y, n_fft, hop)
    return e < e.max() + threshold_db


def silent_frames(
    x: Tensor | np.ndarray, *, n_fft: int = 512, hop: int = 128, threshold_db: float = -40.0
) -> float:
    """Share of silent frames: frames whose energy is ``threshold_db`` below the loudest frame.

    Frames are Hann-windowed STFT frames (n_fft samples, hop); the threshold is relative to the
    clip's own loudest frame so that a quiet clip and a loud one are judged alike.
    """
    y = _np(x)
    if y.ndim != 1:
        raise ValueError(f"x must have shape (time,), got {y.shape}")
    return float(np.mean(_silent_mask(y, n_fft=n_fft, hop=hop, threshold_db=threshold_db)))


def simultaneous_partials(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    n_fft: int = 1024,
    hop: int = 256,
    threshold_db: float = -30.0,
) -> float:
    """Mean number of simultaneous partials: spectral peaks per non-silent frame.

    A partial is a local maximum of the frame's magnitude spectrum (Hann window, n_fft
    samples) rising above ``threshold_db`` relative to the frame's largest peak, with a
    prominence of at least 6 dB over its surroundings (so that window side lobes do not count).
    """
    _check_fs(fs)
    y = _np(x)
    if y.ndim != 1:
        raise ValueError(f"x must have shape (time,), got {y.shape}")
    m = _stft_mag(y, n_fft, hop)
    active = ~_silent_mask(y, n_fft=n_fft, hop=hop)
    counts = []
    for k in np.flatnonzero(active[: m.shape[1]]):
        db = 20 * np.log10(m[:, k] + 1e-12)
        peaks, _ = scipy.signal.find_peaks(db, height=db.max() + threshold_db, prominence=6.0)
        counts.append(len(peaks))
    return float(np.mean(counts)) if counts else 0.0
