"""SampleRNN's Beethoven piano set in its published forms, and the ``beethoven-like`` look-alike.

Three forms are read (SampleRNN: ``soroushmehr/sampleRNN_ICLR2017``, ``datasets/music``):

* a folder with ``music_train.npy``, ``music_valid.npy``, ``music_test.npy``: float16 arrays
  (n, 128000) of 8 s extracts at 16 kHz, already split (the look-alike uses this layout);
* one ``.npy`` array (n, time) of extracts, e.g. SampleRNN's ``all_music.npy`` or the MM-SIN
  reference code's 4096 Hz array (n, 32768): its rows are taken to be in SampleRNN's shuffled
  order, so the split is the tail rule (valid and test are the last ``2k`` rows; ``k`` from
  :func:`~mmsin.data.clips.samplernn_holdout`, 256 for the real set);
* a folder of 8 s FLAC/WAV extracts (SampleRNN's ``parts/p{i}.flac``): file names sorted,
  shuffled with seed 123, last ``2k`` to valid and test (:func:`~mmsin.data.clips.samplernn_split`).

Every extract is resampled to ``fs`` with soxr. Silent extracts (RMS < 1e-3) are dropped after
the split and counted in ``Clips.dropped``; each extract is then scaled to peak 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mmsin.data.clips import Clips, DataError, check_split, samplernn_holdout, samplernn_split
from mmsin.data.folder import audio_files, check_usable, extracts, finish
from mmsin.io import resample

#: SampleRNN's rate and extract length.
SAMPLERNN_FS = 16000
EXTRACT_SECONDS = 8.0
ARRAY_SPLITS = ("train", "valid", "test")


def is_array_tree(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` is a folder holding SampleRNN's ``music_{train,valid,test}.npy``."""
    p = Path(root)
    return p.is_dir() and all((p / f"music_{s}.npy").is_file() for s in ARRAY_SPLITS)


def _guess_fs(path: Path, time: int, source_fs: int | None) -> int:
    if source_fs is not None:
        return int(source_fs)
    info = path.parent / "build.json"
    if info.is_file():
        try:
            return int(json.loads(info.read_text())["fs"])
        except (ValueError, KeyError, TypeError):
            pass
    for rate in (SAMPLERNN_FS, 4096):
        if time == round(EXTRACT_SECONDS * rate):
            return rate
    raise DataError(f"{path}: rows of {time} samples are 8 s at no known rate; pass source_fs=RATE")


def _open(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"{path}: expected a non-empty (extracts, time) array, got {arr.shape}")
    return arr


def _convert(arr: np.ndarray, a: int, b: int, fs_in: int, fs: int) -> np.ndarray:
    """Rows ``a:b`` of a (possibly memory-mapped, float16) array as float32 at ``fs``."""
    out = [
        resample(np.asarray(arr[i : min(i + 256, b)], dtype=np.float32), fs_in, fs)
        for i in range(a, b, 256)
    ]
    if not out:
        return np.zeros((0, round(arr.shape[1] * fs / fs_in)), np.float32)
    return np.concatenate(out)


def load_beethoven(
    source: str | os.PathLike[str],
    split: str = "train",
    *,
    fs: int = 4096,
    source_fs: int | None = None,
    normalize: bool = True,
    max_clips: int | None = None,
) -> Clips:
    """Load SampleRNN Beethoven extracts (any of the three forms in the module docstring).

    Parameters
    ----------
    source : path
        Folder of ``music_*.npy``, one ``.npy`` array, or a folder of 8 s FLAC/WAV extracts.
    split : {"train", "valid", "test", "all"}
    fs : int
        Output rate in Hz (the paper: 4096, so 32768 samples per 8 s extract).
    source_fs : int or None
        Rate of the arrays; by default ``build.json`` next to them, else guessed from the row
        length (128000 -> 16 kHz, 32768 -> 4096 Hz).
    normalize : bool
        Scale each extract to peak 1.
    max_clips : int or None
        Keep only the first ``max_clips`` extracts of the split (quick runs).

    In a folder of extracts, files that cannot be used are skipped, logged and listed in
    ``Clips.skipped`` (the split is drawn over the file names, so one bad file does not move
    the others between splits); only a split with no usable file is a DataError.
    """
    check_split(split)
    p = Path(source)
    skipped: list[tuple[str, str]] = []
    if is_array_tree(p) or (p.suffix == ".npy" and is_array_tree(p.parent)):
        tree = p if p.is_dir() else p.parent
        parts = ARRAY_SPLITS if split == "all" else (split,)
        audio_parts, meta = [], []
        for s in parts:
            arr = _open(tree / f"music_{s}.npy")
            n = arr.shape[0] if max_clips is None else min(arr.shape[0], max_clips)
            rate = _guess_fs(tree / f"music_{s}.npy", arr.shape[1], source_fs)
            audio_parts.append(_convert(arr, 0, n, rate, fs))
            meta += [{"name": f"music_{s}[{i}]"} for i in range(n)]
        audio = np.concatenate(audio_parts)
    elif p.suffix == ".npy":
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        arr = _open(p)
        n = arr.shape[0]
        k = samplernn_holdout(n)
        spans = {
            "train": (0, n - 2 * k),
            "valid": (n - 2 * k, n - k),
            "test": (n - k, n),
            "all": (0, n),
        }
        a, b = spans[split]
        if max_clips is not None:
            b = min(b, a + max_clips)
        audio = _convert(arr, a, b, _guess_fs(p, arr.shape[1], source_fs), fs)
        meta = [{"name": f"{p.name}[{i}]"} for i in range(a, b)]
    elif p.is_dir():
        files = audio_files(p)
        if not files:
            raise DataError(
                f"{p}: neither music_{{train,valid,test}}.npy nor audio extracts in this folder"
            )
        names = [str(f.relative_to(p)) for f in files]
        if len(files) < 3:
            raise DataError(f"{p}: {len(files)} extract(s); need at least 3 to split")
        idx = samplernn_split(names)[split]
        if max_clips is not None:
            idx = idx[:max_clips]
        chosen = [files[i] for i in idx]
        audio, meta, skipped = extracts(chosen, fs=fs, seconds=EXTRACT_SECONDS, root=p)
        check_usable(p, chosen, skipped, EXTRACT_SECONDS)
    else:
        raise DataError(f"{p}: no such file or folder (expected a SampleRNN Beethoven set)")
    return finish(
        audio, meta, fs=fs, split=split, source=str(p), normalize=normalize, skipped=skipped
    )
