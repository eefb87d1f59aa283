"""Checkpoint files: atomic writes, safe loading, RNG state capture and the git revision.

A checkpoint is one ``torch.save`` file that :func:`torch.load` reads with
``weights_only=True``: it holds only tensors, dicts, lists, tuples, numbers, strings and None
(the config travels as JSON text, numpy's RNG state as a tensor), so loading a file from
someone else cannot run code.
"""

from __future__ import annotations

import logging
import os
import random
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsin import paths

__all__ = [
    "CHECKPOINT_NAME",
    "atomic_save",
    "get_rng_state",
    "git_revision",
    "iter_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "previous_path",
    "save_checkpoint",
    "set_rng_state",
]

log = logging.getLogger(__name__)

#: File name of the newest good checkpoint inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"
#: Marks a file as an mmsin checkpoint (and its layout version).
FORMAT = "mmsin-checkpoint-v1"


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where the checkpoint before ``path`` is kept (``checkpoint.prev.pt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_save(
    path: str | os.PathLike[str],
    payload: dict[str, Any],
    *,
    keep_previous: bool = False,
    fsync: bool = False,
) -> Path:
    """``torch.save`` of ``payload`` to ``path`` through a temporary file in the same folder and
    ``os.replace``, so that an interrupted or failed write leaves the previous file intact.
    ``fsync`` flushes the data to disk before the replace; ``keep_previous`` keeps the file
    being replaced as :func:`previous_path`.

    Raises whatever the write raised (OSError, RuntimeError) after removing the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if keep_previous and path.is_file():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(
    path: str | os.PathLike[str], payload: dict[str, Any], *, keep_previous: bool = True
) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, fsync, then
    ``os.replace``: :func:`atomic_save`), so that an interrupted or failed write leaves the
    previous file intact. With ``keep_previous`` the file being replaced is kept as
    :func:`previous_path`, so a newest checkpoint damaged later (disk, copy) still has a good
    predecessor.

    Raises whatever the write raised (OSError, RuntimeError) after removing the temporary file.
    """
    return atomic_save(path, {"format": FORMAT, **payload}, keep_previous=keep_previous, fsync=True)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable mmsin checkpoint (one line, naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    # torch.load does not verify the zip members' CRCs: a flipped bit in the weights would load
    # silently, so check them first.
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable mmsin checkpoint ({exc})") from None
    if bad is not None:
        raise ValueError(f"{path}: damaged checkpoint (CRC mismatch in {bad})")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        # torch's weights_only refusal is long; its "WeightsUnpickler error" line says why.
        why = [ln for ln in lines if ln.startswith("WeightsUnpickler error")]
        first = (why or lines or [type(exc).__name__])[0]
        raise ValueError(f"{path}: not a readable mmsin checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an mmsin checkpoint (expected format {FORMAT})")
    return payload


def load_latest_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], Path]:
    """Load ``path``, or its :func:`previous_path` if ``path`` is missing or damaged (logged).

    Returns the payload and the file it came from; raises the newest file's error if neither
    loads.
    """
    path = Path(path)
    try:
        return load_checkpoint(path, map_location), path
    except (ValueError, FileNotFoundError) as exc:
        prev = previous_path(path)
        if not prev.is_file():
            raise
        log.warning("%s; using the previous checkpoint %s", exc, prev)
        return load_checkpoint(prev, map_location), prev


def iter_checkpoints(root: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Checkpoint files of all runs under ``root`` (default ``paths.runs_dir()``), newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return iter(())
    found = [p for p in root.glob(f"*/{CHECKPOINT_NAME}") if p.is_file()]
    return iter(sorted(found, key=lambda p: p.stat().st_mtime, reverse=True))


def get_rng_state() -> dict[str, Any]:
    """Capture the torch, CUDA, numpy and Python RNG states in weights_only-safe types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 (the legacy global state is what others use)
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def git_revision(where: str | os.PathLike[str] | None = None) -> str | None:
    """The git commit of the source tree (``-dirty`` if modified), or None outside a checkout."""
    where = Path(where) if where is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev or None


def _to_lists(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        return [_to_lists(o) for o in obj]
    return obj


def _to_tuples(obj: Any) -> Any:
    if isinstance(obj, list):
        return tuple(_to_tuples(o) for o in obj)
    return obj
