"""Pitch: CREPE f0 tracks (torchcrepe), cents, MIDI to Hz, and a multi-pitch salience test
(one fundamental or several?)."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.signal
import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    pass

from mmsin.evaluation._common import _check_fs, _np

#: CREPE's pitch range: C1 (MIDI 24, 32.70 Hz) up to torchcrepe's upper limit (2006 Hz), which
#: also lies just below our Nyquist frequency (2048 Hz at fs = 4096 Hz).
CREPE_FMIN = 32.70
CREPE_FMAX = 2006.0
_CREPE_FS = 16000


#: The pitch of CREPE's bin 0 in cents above 10 Hz (torchcrepe.convert.bins_to_cents).
_CREPE_CENTS_0 = 1997.3794084376191


def _import_torchcrepe() -> types.ModuleType:
    # torchcrepe imports torchaudio only to read files, which we never do; torchaudio has no
    # release for current torch, so a placeholder module satisfies the import.
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    import torchcrepe

    # The weighted-argmax decoder averages the bins' pitches in cents with weights it makes
    # once per process, each pitch dithered by a triangular draw of +-20 cents from numpy's
    # global random state (torchcrepe.convert.dither): every process then reads the same note
    # several cents apart (seen: 879 to 884 Hz for one 880 Hz note in four runs), so a track
    # cached by one run and compared with another's drifts. The bins' exact pitches instead.
    cents = torchcrepe.CENTS_PER_BIN * torch.arange(torchcrepe.PITCH_BINS) + _CREPE_CENTS_0
    torchcrepe.decode.weighted_argmax.weights = cents[None, :, None]
    return torchcrepe


@dataclass(frozen=True)
class PitchTrack:
    """A CREPE pitch track: f0 in Hz and periodicity (confidence in [0, 1]) per 10 ms frame."""

    f0: np.ndarray
    periodicity: np.ndarray
    times: np.ndarray


def pitch_track(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    model: str = "tiny",
    fmin: float = CREPE_FMIN,
    fmax: float = CREPE_FMAX,
    hop_seconds: float = 0.01,
) -> PitchTrack:
    """Track f0 with CREPE (``torchcrepe``, weights shipped in the wheel).

    The signal is resampled to CREPE's 16 kHz with soxr (:func:`mmsin.io.resample`) and
    decoded with the weighted argmax over the pitch bins (no Viterbi smoothing across notes).

    Parameters
    ----------
    x : shape (time,), float, at ``fs`` Hz
    model : "tiny" (fast on CPU) or "full"
    fmin, fmax : float
        Search range in Hz; clipped to CREPE's [32.70, 2006].
    """
    from mmsin.io import resample

    _check_fs(fs)
    if model not in ("tiny", "full"):
        raise ValueError(f"CREPE model must be 'tiny' or 'full', got {model!r}")
    y = _np(x)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"x must have shape (time,) and be non-empty, got {y.shape}")
    fmin, fmax = max(fmin, CREPE_FMIN), min(fmax, CREPE_FMAX)
    crepe = _import_torchcrepe()
    y16 = resample(y.astype(np.float32), int(fs), _CREPE_FS)
    hop = round(hop_seconds * _CREPE_FS)
    with torch.no_grad():
        f0, per = crepe.predict(
            torch.from_numpy(np.ascontiguousarray(y16))[None],
            _CREPE_FS,
            hop_length=hop,
            fmin=fmin,
            fmax=fmax,
            model=model,
            decoder=crepe.decode.weighted_argmax,
            return_periodicity=True,
            batch_size=512,
            device="cpu",
        )
    f0n, pn = f0[0].double().numpy(), per[0].double().numpy()
    return PitchTrack(f0=f0n, periodicity=pn, times=np.arange(f0n.size) * hop / _CREPE_FS)


def median_f0(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    model: str = "tiny",
    periodicity_threshold: float = 0.5,
    fmin: float = CREPE_FMIN,
    fmax: float = CREPE_FMAX,
) -> float:
    """Median CREPE f0 in Hz over the voiced frames (periodicity above the threshold).

    Returns NaN when no frame is voiced (noise, silence, or a clutter of partials).
    """
    track = pitch_track(x, fs, model=model, fmin=fmin, fmax=fmax)
    voiced = track.periodicity > periodicity_threshold
    if not voiced.any():
        return float("nan")
    return float(np.median(track.f0[voiced]))


def cents(f: float | np.ndarray, f_ref: float | np.ndarray) -> np.ndarray | float:
    """Interval from ``f_ref`` to ``f`` in cents: ``1200 log2(f / f_ref)``."""
    out = 1200.0 * np.log2(np.asarray(f, dtype=np.float64) / np.asarray(f_ref, dtype=np.float64))
    return float(out) if np.ndim(out) == 0 else out


def midi_to_hz(midi: float | np.ndarray) -> np.ndarray | float:
    """Equal-tempered frequency of a MIDI pitch: ``440 * 2^((m - 69) / 12)`` Hz."""
    out = 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)
    return float(out) if np.ndim(out) == 0 else out


# ---------------------------------------------------------------------------------------------
# Multi-pitch: does a sound have one fundamental or several?
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PitchSalience:
    """Result of :func:`harmonic_pitches`.

    ``f0`` are the fundamentals found in order (Hz), ``salience`` their harmonic saliences and
    ``ratio`` the second salience over the first (0 when there is only one series).
    """

    f0: tuple[float, ...]
    salience: tuple[float, ...]
    ratio: float

    @property
    def single(self) -> bool:
        """True when the sound is one harmonic series (see :func:`harmonic_pitches`)."""
        return len(self.f0) == 1


def _spectral_peaks(
    y: np.ndarray, fs: float, n_fft: int, floor_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz, parabolic interpolation) and linear amplitudes of spectral peaks."""
    nper = min(n_fft, y.size)
    f, p = scipy.signal.welch(y, fs=fs, window="hann", nperseg=nper, noverlap=nper // 2)
    mag = np.sqrt(p)
    db = 20 * np.log10(mag + 1e-20)
    idx, _ = scipy.signal.find_peaks(db, height=db.max() + floor_db, prominence=6.0)
    # Parabolic interpolation of the log-magnitude around each peak bin.
    idx = idx[(idx > 0) & (idx < db.size - 1)]
    a, b, c = db[idx - 1], db[idx], db[idx + 1]
    denom = a - 2 * b + c
    delta = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    return f[idx] + delta * (f[1] - f[0]), mag[idx]


def harmonic_pitches(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    fmin: float = CREPE_FMIN,
    fmax: float = CREPE_FMAX,
    n_harmonics: int = 12,
    tolerance_cents: float = 50.0,
    second_ratio: float = 0.35,
    n_fft: int = 4096,
    floor_db: float = -50.0,
) -> PitchSalience:
    """Count harmonic series in a sound by iterative harmonic salience and cancellation.

    The sound's long-term magnitude spectrum (Welch, Hann window of ``n_fft`` samples) is
    reduced to its peaks (frequency f_k, amplitude a_k). The salience of a candidate
    fundamental f0 (10-cent grid over [fmin, fmax]) is the harmonic sum, as in Klapuri's
    multi-pitch estimators::

        s(f0) = sum_{h=1..H} (1/h) max_k a_k (1 - d_kh / tol)_+,
        d_kh = |1200 log2(f_k / (h f0))|  (cents),

    The 1/h weights favour the true fundamental over its sub-multiples (f0/2 collects only
    the even harmonics at half weight). The best f0 is taken, the peaks it explains are removed,
    and the best remaining f0 is sought again. The sound has a second fundamental when the
    second salience is at least ``second_ratio`` of the first. For a perfect fourth
    (5 semitones, ratio 4:3) the shared partials (4 f1 = 3 f2) go with the first series, but
    the other's fundamental and lower harmonics remain and keep its salience high.

    Returns
    -------
    PitchSalience
    """
    _check_fs(fs)
    y = _np(x)
    if y.ndim != 1 or y.size < 64:
        raise ValueError(f"x must have shape (time,) with at least 64 samples, got {y.shape}")
    freqs, amps = _spectral_peaks(y, fs, n_fft, floor_db)
    if freqs.size == 0:
        return PitchSalience(f0=(), salience=(), ratio=0.0)
    grid = fmin * 2.0 ** (np.arange(0, 1200 * math.log2(fmax / fmin) + 1, 10.0) / 1200.0)
    h = np.arange(1, n_harmonics + 1)

    def saliences(fr: np.ndarray, am: np.ndarray) -> np.ndarray:
        if fr.size == 0:
            return np.zeros(grid.size)
        # distance in cents between each peak and each harmonic of each candidate
        targets = grid[:, None] * h[None, :]  # (G, H)
        d = np.abs(1200.0 * np.log2(fr[None, None, :] / targets[:, :, None]))  # (G, H, P)
        # triangular weight in cents, so that the best candidate sits on the partials
        hit = (am[None, None, :] * np.clip(1.0 - d / tolerance_cents, 0.0, None)).max(axis=2)
        hit = np.where(targets < fs / 2, hit, 0.0)
        return (hit / h[None, :]).sum(axis=1)

    s1 = saliences(freqs, amps)
    i1 = int(np.argmax(s1))
    f1 = float(grid[i1])
    explained = np.zeros(freqs.size, dtype=bool)
    for k in h:
        explained |= np.abs(1200.0 * np.log2(freqs / (k * f1))) < tolerance_cents
    s2 = saliences(freqs[~explained], amps[~explained])
    i2 = int(np.argmax(s2))
    ratio = float(s2[i2] / s1[i1]) if s1[i1] > 0 else 0.0
    if ratio >= second_ratio:
        return PitchSalience(
            f0=(f1, float(grid[i2])), salience=(float(s1[i1]), float(s2[i2])), ratio=ratio
        )
    return PitchSalience(f0=(f1,), salience=(float(s1[i1]),), ratio=ratio)
