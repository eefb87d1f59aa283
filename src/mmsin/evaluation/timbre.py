"""Timbre as the levels of a note's first partials: what a transposition should keep.

:func:`partial_levels` reads the level near each multiple of f0 from one long zero-padded
spectrum of the steady part of a note: the peak (``measure="peak"``) or the energy within the
band (``"energy"``); :func:`timbre_distance` compares two sets of levels after removing each
set's total (so a louder or softer copy has distance 0).

Why both: a recorded piano partial is not one sinusoid (two or three strings a fraction of a
hertz apart, beating), and the peak of a long spectrum is lower for such a line than for one
sinusoid of the same energy (tests/test_timbre.py). A re-synthesis that plays each partial as
one sinusoid a frame pays that in the peak measure whatever its levels; the energy measure
reads the level alone.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from mmsin.evaluation._common import _check_fs, _np

__all__ = ["PARTIAL_FMAX", "partial_levels", "timbre_distance"]

#: Partials above this are not compared: S_J's first-order bank stops at 1697 Hz (its top
#: band reaches 1746 Hz) and 2048 Hz is Nyquist at 4096 Hz.
PARTIAL_FMAX = 1800.0


def partial_levels(
    x: Tensor | np.ndarray,
    f0: float,
    fs: float = 4096,
    *,
    n: int = 8,
    skip_seconds: float = 0.1,
    tolerance_cents: float = 40.0,
    fmax: float = PARTIAL_FMAX,
    measure: str = "peak",
) -> np.ndarray:
    """Level (dB) within ``tolerance_cents`` of h f0, h = 1..n: the peak magnitude
    (``measure="peak"``) or the band's energy (``"energy"``, 10 log10 of the summed power).

    One Hann-windowed spectrum of the signal after its first ``skip_seconds`` (the attack),
    zero-padded 8 times. NaN where h f0 exceeds ``fmax`` or f0 is not finite.

    Parameters
    ----------
    x : shape (time,), float, at ``fs`` Hz
    f0 : float, Hz
    """
    _check_fs(fs)
    if measure not in ("peak", "energy"):
        raise ValueError(f"measure must be 'peak' or 'energy', got {measure!r}")
    y = _np(x)
    if y.ndim != 1:
        raise ValueError(f"x must have shape (time,), got {y.shape}")
    seg = y[int(skip_seconds * fs) :]
    out = np.full(n, np.nan)
    if not np.isfinite(f0) or f0 <= 0 or seg.size < 16:
        return out
    nfft = 8 * len(seg)
    mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), nfft))
    freqs = np.fft.rfftfreq(nfft, 1 / fs)
    r = 2 ** (tolerance_cents / 1200)
    for h in range(1, n + 1):
        f = h * f0
        if f > fmax:
            break
        band = (freqs >= f / r) & (freqs <= f * r)
        if measure == "peak":
            out[h - 1] = 20 * np.log10(mag[band].max() + 1e-12)
        else:
            out[h - 1] = 10 * np.log10(np.sum(mag[band] ** 2) + 1e-24)
    return out


def timbre_distance(ref: np.ndarray, out: np.ndarray) -> float:
    """Median |difference| (dB) of relative partial levels, each set minus its energy total;
    over the partials finite in both (NaN with fewer than two)."""
    a, b = np.asarray(ref, dtype=np.float64), np.asarray(out, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2:
        return math.nan
    a, b = a[ok], b[ok]
    a = a - 10 * np.log10(np.sum(10 ** (a / 10)))
    b = b - 10 * np.log10(np.sum(10 ** (b / 10)))
    return float(np.median(np.abs(a - b)))
