"""Any folder of audio files: chopped into fixed-length extracts with a seeded split."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsin.data.clips import (
    SILENCE_RMS,
    Clips,
    DataError,
    check_split,
    no_usable_audio,
    report_skipped,
    rms,
    seeded_split,
)
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
) -> tuple[np.ndarray, list[dict[str, Any]], list[tuple[str, str]]]:
    """Read each file at ``fs`` and cut it into non-overlapping extracts of ``seconds``.

    A file shorter than one extract but at least half of one is zero-padded to a single
    extract (an 8 s FLAC extract that decodes a few samples short is still one extract).
    Files that cannot be used -- not audio, empty, damaged beyond their header, NaN or
    infinite samples, shorter than half an extract -- are skipped and returned in ``skipped``
    with their problem (the caller reports them); one bad file does not stop the load.

    Returns
    -------
    audio : ndarray, shape (n, round(seconds * fs)), float32 (not normalised)
    meta : list of dict with ``name`` (relative path, ``#k`` for the k-th extract of a file),
        ``file`` and ``start`` (seconds).
    skipped : list of (str, str)
        ``(path, problem)`` of every file left out, in the order of ``files``.
    """
    length = round(seconds * fs)
    rows: list[np.ndarray] = []
    meta: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for f in files:
        try:
            x = load_audio(f, fs=fs, min_samples=max(1, length // 2))
        except AudioError as exc:
            skipped.append((str(f), exc.problem))
            continue
        n = x.shape[0] // length
        if n == 0:
            x = np.pad(x, (0, length - x.shape[0]))
            n = 1
        rel = str(f.relative_to(root))
        for k in range(n):
            rows.append(x[k * length : (k + 1) * length])
            meta.append(
                {"name": rel if n == 1 else f"{rel}#{k}", "file": rel, "start": k * seconds}
            )
    audio = np.stack(rows) if rows else np.zeros((0, length), np.float32)
    return audio.astype(np.float32, copy=False), meta, skipped


def check_usable(
    root: Path, files: Sequence[Path], skipped: Sequence[tuple[str, str]], seconds: float
) -> None:
    """Log the skipped files (one WARNING line), or raise if no file was usable.

    Raises
    ------
    DataError
        Every file was skipped: "every audio file is shorter than ..." when that was the only
        problem, else "no usable audio file" with the first few files and their problems.
    """
    if files and len(skipped) == len(files):
        if all(problem.startswith("too short") for _, problem in skipped):
            raise DataError(f"{root}: every audio file is shorter than {seconds / 2:g} s")
        raise no_usable_audio(root, skipped)
    report_skipped(log, root, skipped, len(files))


def finish(
    audio: np.ndarray,
    meta: list[dict[str, Any]],
    *,
    fs: int,
    split: str,
    source: str,
    normalize: bool,
    skipped: list[tuple[str, str]] | None = None,
) -> Clips:
    """Drop silent extracts (RMS < 1e-3, counted), normalise each to peak 1, wrap as Clips.

    ``skipped`` (files left out, see :func:`extracts`) is passed through to ``Clips.skipped``.
    """
    loud = rms(audio) >= SILENCE_RMS if len(audio) else np.zeros(0, bool)
    dropped = int((~loud).sum())
    if dropped:
        log.info("%s: dropped %d silent extracts of %d (%s)", source, dropped, len(audio), split)
    audio = audio[loud]
    if normalize:
        audio = normalize_peak(audio)
    kept = [m for m, k in zip(meta, loud, strict=True) if k]
    return Clips(
        audio=audio,
        fs=fs,
        meta=kept,
        split=split,
        source=source,
        dropped=dropped,
        skipped=list(skipped or []),
    )


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

    Files that cannot be used (see :func:`extracts`) are skipped, logged in one WARNING line
    and listed in ``Clips.skipped``; only a folder with no usable file is a DataError.
    """
    check_split(split)
    rootp = Path(root)
    files = audio_files(rootp, recursive=recursive)
    if not files:
        raise DataError(f"{rootp}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    audio, meta, skipped = extracts(files, fs=fs, seconds=seconds, root=rootp)
    check_usable(rootp, files, skipped, seconds)
    idx = seeded_split(len(audio), seed=seed, valid=valid, test=test)[split]
    return finish(
        audio[idx],
        [meta[i] for i in idx],
        fs=fs,
        split=split,
        source=str(rootp),
        normalize=normalize,
        skipped=skipped,
    )
