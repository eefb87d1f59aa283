"""Is it music like the training data? Figures of a set of clips, measured alike on generated
and real ones (beside the paper's section 5.2 figures).

- :func:`periodic_share`: the share of 20 ms frames in which CREPE finds a pitch (periodicity
  above 0.5): notes rather than texture.
- :func:`onset_rate`: onsets per second, from librosa's spectral-flux onset detector on a
  short-window STFT (16 ms hops at 4096 Hz): notes that start rather than a steady drone.
- :func:`~mmsin.evaluation.spectra.silent_frames`, :func:`~mmsin.evaluation.spectra.
  spectral_flatness` and :func:`~mmsin.evaluation.grid.grid_share_or_nan`: silences between
  notes, partials rather than noise, no constant comb from the generator's grids.

:func:`music_figures` gathers them for a set of clips, each as the mean over clips.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from mmsin.evaluation._common import _check_fs, _np
from mmsin.evaluation.grid import grid_share_or_nan
from mmsin.evaluation.pitch import pitch_track
from mmsin.evaluation.spectra import silent_frames, spectral_flatness

__all__ = ["MUSIC_FIGURES", "music_figures", "onset_rate", "periodic_share"]

#: The figures :func:`music_figures` returns, with a description for tables.
MUSIC_FIGURES = {
    "periodic": "share of 20 ms frames with a CREPE pitch (periodicity > 0.5)",
    "onsets_per_s": "onsets per second (librosa spectral flux)",
    "silent": "share of silent frames (40 dB below the clip's loudest)",
    "flatness": "spectral flatness of the non-silent frames (1: white noise, 0: partials)",
    "grid": "share of energy within 2 Hz of the multiples of 64 Hz (median over clips)",
}


def periodic_share(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    threshold: float = 0.5,
    hop_seconds: float = 0.02,
    model: str = "tiny",
) -> float:
    """Share of CREPE frames whose periodicity (pitch confidence) exceeds ``threshold``.

    Parameters
    ----------
    x : shape (time,), float, at ``fs`` Hz
    threshold : float
        CREPE's periodicity above which a frame has a pitch (0.5, as the issue's figures).
    hop_seconds : float
        Frame hop of the tracker.
    """
    track = pitch_track(x, fs, model=model, hop_seconds=hop_seconds)
    return float(np.mean(track.periodicity > threshold))


def onset_rate(
    x: Tensor | np.ndarray,
    fs: float = 4096,
    *,
    n_fft: int = 256,
    hop: int = 64,
    delta_db: float = 2.0,
) -> float:
    """Onsets per second: librosa's onset detector on the spectral flux of a log-magnitude STFT.

    The STFT (Hann, ``n_fft`` samples, ``hop``) is short enough to separate notes 0.1 s apart
    at 4096 Hz; librosa's flux (positive differences of dB magnitudes, averaged over
    frequency) is peak-picked by ``librosa.onset.onset_detect`` without normalisation, a peak
    counting when it rises ``delta_db`` above the flux's local mean: a note's attack raises it
    by 15-30 dB, while white noise fluctuates by about 0.5 dB and a steady tone by less (with
    librosa's default normalisation, a steady tone's rounding noise would count as onsets).
    A silent clip has no onsets.

    Parameters
    ----------
    x : shape (time,), float, at ``fs`` Hz
    """
    import librosa

    _check_fs(fs)
    y = _np(x).astype(np.float32)
    if y.ndim != 1 or y.size < n_fft:
        raise ValueError(f"x must have shape (time,) with at least {n_fft} samples, got {y.shape}")
    if not np.any(y):
        return 0.0
    mag = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, window="hann"))
    db = librosa.amplitude_to_db(mag, ref=np.max, top_db=80.0)
    env = librosa.onset.onset_strength(S=db, sr=int(fs), hop_length=hop)
    onsets = librosa.onset.onset_detect(
        onset_envelope=env, sr=int(fs), hop_length=hop, normalize=False, delta=delta_db
    )
    return float(len(onsets) / (y.size / fs))


def _summary(values: list[float], *, median: bool) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(np.median(v) if median else np.mean(v))


def music_figures(
    audio: Tensor | np.ndarray, fs: float = 4096, *, crepe: bool = True
) -> dict[str, Any]:
    """The figures of :data:`MUSIC_FIGURES` for a set of clips (mean over clips; the grid share
    as a median, as the generation experiment reports it).

    Parameters
    ----------
    audio : shape (n, time), float, at ``fs`` Hz
    crepe : bool
        Measure the periodic share (the slowest figure, about 1 s per 8 s clip on a CPU core).

    Returns
    -------
    dict
        One float per figure, ``"clips"``: n, and ``"per_clip"``: the per-clip values.
    """
    a = np.atleast_2d(_np(audio))
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"audio must have shape (n, time) with n >= 1, got {a.shape}")
    per: dict[str, list[float]] = {k: [] for k in MUSIC_FIGURES}
    grid = grid_share_or_nan(a, fs)
    for i, y in enumerate(a):
        per["periodic"].append(periodic_share(y, fs) if crepe else float("nan"))
        per["onsets_per_s"].append(onset_rate(y, fs))
        per["silent"].append(silent_frames(y))
        per["flatness"].append(spectral_flatness(y))
        per["grid"].append(float(grid[i]))
    out: dict[str, Any] = {k: _summary(v, median=k == "grid") for k, v in per.items()}
    out["clips"] = int(a.shape[0])
    out["per_clip"] = per
    return out
