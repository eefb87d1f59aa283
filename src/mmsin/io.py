"""Audio files in and out: reading, down-mixing, resampling and peak normalisation.

Every failure is raised as :class:`AudioError`, a one-line message naming the file and the
problem, so that command-line tools can print it without a traceback.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

#: File endings read as audio (decoders come from libsndfile through soundfile).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Resample along the last axis with soxr's very-high-quality band-limited resampler.

    Parameters
    ----------
    x : ndarray, shape (..., time), float
        Signal(s) at ``fs_in`` Hz.
    fs_in, fs_out : int
        Sample rates in Hz.

    Returns
    -------
    ndarray, shape (..., time * fs_out / fs_in), float32
    """
    x = np.asarray(x, dtype=np.float32)
    if fs_in == fs_out:
        return x
    if x.ndim == 1:
        return soxr.resample(x, fs_in, fs_out, quality="VHQ").astype(np.float32)
    flat = x.reshape(-1, x.shape[-1])
    # soxr treats a 2-D array as (time, channels).
    out = soxr.resample(flat.T, fs_in, fs_out, quality="VHQ").T
    return np.ascontiguousarray(out.reshape(*x.shape[:-1], -1), dtype=np.float32)


def normalize_peak(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each clip (last axis) to peak amplitude 1, i.e. into [-1, 1] (paper section 5.1).

    An all-zero clip is returned unchanged (there is nothing to scale).
    """
    x = np.asarray(x, dtype=np.float32)
    peak = np.max(np.abs(x), axis=-1, keepdims=True)
    return np.where(peak > eps, x / np.maximum(peak, eps), x).astype(np.float32)


def load_audio(
    path: str | os.PathLike[str],
    fs: int | None = 4096,
    *,
    mono: bool = True,
    normalize: bool = False,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Read an audio file as float32, down-mixed to mono and resampled to ``fs``.

    Parameters
    ----------
    path : path-like
        Any format libsndfile reads (WAV of every bit depth, FLAC, OGG, MP3 where supported).
    fs : int or None
        Target sample rate in Hz; None keeps the file's own rate.
    mono : bool
        Average the channels (the documented fix-up for stereo and multichannel files).
    normalize : bool
        Scale the clip to peak 1.
    max_seconds : float or None
        Read at most this many seconds from the start (for long files).

    Returns
    -------
    ndarray, shape (time,) if mono else (channels, time), float32, at ``fs`` Hz.

    Raises
    ------
    AudioError
        Missing, unreadable, empty or non-finite audio.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "no such file")
    if p.is_dir():
        raise AudioError(p, "is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(p)) as f:
            sr = int(f.samplerate)
            frames = f.frames if max_seconds is None else min(f.frames, int(max_seconds * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(p, f"not readable as audio ({str(exc).splitlines()[0]})") from None
    if data.shape[0] == 0:
        raise AudioError(p, "contains no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(p, "contains NaN or infinite samples")
    x = data.T  # (channels, time)
    if mono:
        if x.shape[0] > 1:
            log.info("%s: down-mixing %d channels to mono", p, x.shape[0])
        x = x.mean(axis=0)
    if fs is not None and sr != fs:
        x = resample(x, sr, fs)
    if normalize:
        x = normalize_peak(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def save_audio(
    path: str | os.PathLike[str], x: np.ndarray, fs: int, *, subtype: str = "PCM_16"
) -> Path:
    """Write a mono (time,) or (channels, time) signal, atomically (temp file + rename).

    Samples are clipped to [-1, 1] for integer subtypes. Returns the path written.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    y = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise AudioError(p, "refusing to write NaN or infinite samples")
    if subtype.startswith("PCM"):
        y = np.clip(y, -1.0, 1.0)
    data = y.T if y.ndim == 2 else y
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=p.suffix or ".wav")
    os.close(fd)
    try:
        sf.write(tmp, data, fs, subtype=subtype, format=(p.suffix[1:] or "wav").upper())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p
