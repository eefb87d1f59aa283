"""S_J of a whole clip set, computed once in chunks and kept on disk.

The encoder S_J is fixed, so its frames depend only on the audio and the scattering
configuration. :func:`scattering_frames` computes them ``chunk`` clips at a time into a
memory-mapped ``.npy`` file under the cache folder, recording after every chunk how many clips
are done: a run stopped part way (Ctrl-C, a killed job, another day) continues from the last
finished chunk, and only one chunk of audio and transform buffers is in memory at a time.
The returned array is the memory map itself (float32, read-only), so a five-hour set (1,809
extracts of 8 s, 973 x 32 frames each: 225 MB) is read from disk as needed.

Training (:func:`mmsin.training.features.prepare_features`), the whitening study
(``scripts/var_study.py``) and anything else that needs S_J of a data set share the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsin.assembly import build_scattering
from mmsin.config import Config

__all__ = ["frames_key", "scattering_frames"]

log = logging.getLogger(__name__)

#: Version of the frame-file layout; bump when S_J's output changes meaning.
FRAMES_VERSION = 1


def frames_key(cfg: Config, fingerprint: str) -> str:
    """Hash of what S_J of a clip set depends on: the audio's fingerprint and the scattering
    configuration."""
    relevant = {
        "version": FRAMES_VERSION,
        "data": fingerprint,
        "scattering": cfg.to_dict()["scattering"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:20]


def _progress_bar(total: int, done: int, enabled: bool, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=f"S_J {label}", unit="clip", disable=not enabled)


@torch.no_grad()
def scattering_frames(
    cfg: Config,
    audio: np.ndarray,
    fingerprint: str,
    folder: str | os.PathLike[str],
    *,
    chunk: int = 32,
    batch: int = 16,
    progress: bool = False,
    label: str = "",
) -> np.ndarray:
    """S_J of every clip of ``audio``, from (or into) the disk cache in ``folder``.

    Parameters
    ----------
    cfg : Config
        Its ``scattering`` section builds S_J.
    audio : ndarray, shape (n, time), float32 at ``cfg.scattering.fs``
        May itself be a memory map; only ``chunk`` rows are read at a time.
    fingerprint : str
        Identifies the audio (:func:`mmsin.training.features.data_fingerprint`).
    folder : path
        Cache folder; the file is ``sj-<key>.npy`` with a ``sj-<key>.json`` record of the
        clips done.
    chunk : int
        Clips per step written to disk (and the unit of resumption).
    batch : int
        Clips per call of the transform inside a chunk (bounds its memory).
    progress : bool
        A progress bar over clips.

    Returns
    -------
    ndarray, shape (n, C, frames), float32, read-only memory map
        Un-normalised S_J.
    """
    if audio.ndim != 2 or audio.shape[0] == 0:
        raise ValueError(f"audio must have shape (clips, time) with clips >= 1, got {audio.shape}")
    if chunk < 1 or batch < 1:
        raise ValueError(f"chunk and batch must be >= 1, got {chunk}, {batch}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = frames_key(cfg, fingerprint)
    path, record = folder / f"sj-{key}.npy", folder / f"sj-{key}.json"
    n = audio.shape[0]
    done = _clips_done(path, record)
    if done >= n:
        return np.load(path, mmap_mode="r")
    with _locked(folder / f"sj-{key}.lock"):  # a second process waits, then finds it done
        return _compute(cfg, audio, path, record, chunk, batch, progress, label)


def _clips_done(path: Path, record: Path) -> int:
    """Clips of the frame file already computed, from its record (0 when either is missing or
    the record is unreadable)."""
    if not (path.is_file() and record.is_file()):
        return 0
    try:
        return int(json.loads(record.read_text())["done"])
    except (ValueError, KeyError, TypeError):
        return 0


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock`` (POSIX; elsewhere no lock is taken)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _compute(
    cfg: Config,
    audio: np.ndarray,
    path: Path,
    record: Path,
    chunk: int,
    batch: int,
    progress: bool,
    label: str,
) -> np.ndarray:
    n = audio.shape[0]
    done = _clips_done(path, record)
    if done >= n:
        return np.load(path, mmap_mode="r")
    scattering = build_scattering(cfg).eval()
    first = scattering(torch.as_tensor(np.asarray(audio[:1], dtype=np.float32)))
    shape = (n, int(first.shape[1]), int(first.shape[2]))
    if done > 0:
        try:
            out = np.load(path, mmap_mode="r+")
            if out.shape != shape:
                raise ValueError(f"shape {out.shape} != {shape}")
            log.info("S_J %s: continuing at clip %d of %d (%s)", label, done, n, path)
        except (OSError, ValueError) as exc:
            log.warning("S_J %s: restarting %s (%s)", label, path, exc)
            done = 0
    if done == 0:
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    bar = _progress_bar(n, done, progress, label)
    try:
        for start in range(done, n, chunk):
            stop = min(start + chunk, n)
            x = torch.as_tensor(np.asarray(audio[start:stop], dtype=np.float32))
            for i in range(0, x.shape[0], batch):
                out[start + i : start + i + batch] = scattering(x[i : i + batch]).float().numpy()
            out.flush()
            tmp = record.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"done": stop, "clips": n, "shape": list(shape)}))
            os.replace(tmp, record)
            bar.update(stop - start)
    finally:
        bar.close()
    del out
    return np.load(path, mmap_mode="r")
