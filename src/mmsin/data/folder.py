"""Any folder of audio files: chopped into fixed-length extracts with a seeded split."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsin.data.clips import SILENCE_RMS, Clips, DataError, check_split, rms, seeded_split
from mmsin.io import AUDIO_EXTENSIONS, AudioError, load_audio, normalize_peak

log = logging.getLogger(__name__)


def audio_files(root: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Audio files under ``root`` (by extension, see ``mmsin.io.AUDIO_EXTENSIONS``), sorted."""
    p = Path(root)
    if not p.is_dir():
        raise DataError(f"{p}: no such folder")
    it = p.rglob("*") if recursive else p.iterdir()
    files = sorted(f for f in it if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
    return files


def extracts(
    files: Sequence[Path], *, fs: int, seconds: float, root: Path
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Read each file at ``fs`` and cut it into non-overlapping extracts of ``seconds``.

    A file shorter than one extract but longer than half of one is zero-padded to a single
    extract (an 8 s FLAC extract that decodes a few samples short is still one extract); shorter
    files are skipped.

    Returns
    -------
    audio : ndarray, shape (n, round(seconds * fs)), float32 (not normalised)
    meta : list of dict with ``name`` (relative path, ``#k`` for the k-th extract of a file),
        ``file`` and ``start`` (seconds).
    """
    length = round(seconds * fs)
    rows: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    for f in files:
        try:
            x = load_audio(f, fs=fs)
        except AudioError as exc:
            raise DataError(str(exc)) from None
        n = x.shape[0] // length
        if n == 0 and x.shape[0] >= length // 2:
            x = np.pad(x, (0, length - x.shape[0]))
            n = 1
        rel = str(f.relative_to(root))
        for k in range(n):
            rows.append(x[k * length : (k + 1) * length])
            meta.append(
                {"name": rel if n == 1 else f"{rel}#{k}", "file": rel, "start": k * seconds}
            )
    audio = np.stack(rows) if rows else np.zeros((0, length), np.float32)
    return audio.astype(np.float32, copy=False), meta


def finish(
    audio: np.ndarray,
    meta: list[dict[str, Any]],
    *,
    fs: int,
    split: str,
    source: str,
    normalize: bool,
) -> Clips:
    """Drop silent extracts (RMS < 1e-3, counted), normalise each to peak 1, wrap as Clips."""
    loud = rms(audio) >= SILENCE_RMS if len(audio) else np.zeros(0, bool)
    dropped = int((~loud).sum())
    if dropped:
        log.info("%s: dropped %d silent extracts of %d (%s)", source, dropped, len(audio), split)
    audio = audio[loud]
    if normalize:
        audio = normalize_peak(audio)
    kept = [m for m, k in zip(meta, loud, strict=True) if k]
    return Clips(audio=audio, fs=fs, meta=kept, split=split, source=source, dropped=dropped)


def load_folder(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    fs: int = 4096,
    seconds: float = 8.0,
    seed: int = 0,
    valid: float = 0.1,
    test: float = 0.1,
    recursive: bool = True,
    normalize: bool = True,
) -> Clips:
    """Clips from any folder of audio files (wav, flac, ogg, mp3 where libsndfile decodes it).

    Every file is down-mixed to mono, resampled to ``fs`` with soxr and cut into
    non-overlapping extracts of ``seconds``; the extracts (not the files) are split by a
    seeded permutation into train/valid/test by the fractions ``valid`` and ``test``. Silent
    extracts are dropped after the split (so the split does not depend on the threshold) and
    counted in ``Clips.dropped``.
    """
    check_split(split)
    rootp = Path(root)
    files = audio_files(rootp, recursive=recursive)
    if not files:
        raise DataError(f"{rootp}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    audio, meta = extracts(files, fs=fs, seconds=seconds, root=rootp)
    if len(audio) == 0:
        raise DataError(f"{rootp}: every audio file is shorter than {seconds / 2:g} s")
    idx = seeded_split(len(audio), seed=seed, valid=valid, test=test)[split]
    return finish(
        audio[idx],
        [meta[i] for i in idx],
        fs=fs,
        split=split,
        source=str(rootp),
        normalize=normalize,
    )
