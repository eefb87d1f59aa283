"""Entry point and cache of the offline look-alikes' builders.

:func:`build` dispatches to the builder of each data set: ``nsynth-like``
(:mod:`mmsin.data.nsynth_like`), ``beethoven-like`` (:mod:`mmsin.data.beethoven_like`),
``real-notes`` (:mod:`mmsin.data.real`) and ``real-guitar`` (:mod:`mmsin.data.real_guitar`).
This module holds what they share: the build version, the cache and the progress and skip
reports.

Every build is deterministic (same sound fonts and parameters give the same files) and cached:
the build parameters are written last to ``build.json`` in the data-set folder, and a later
build with the same parameters returns at once. A build that stops half-way leaves no
``build.json`` and is redone. See docs/data.md for sizes, timings and licences.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

from mmsin import paths
from mmsin.data.clips import DataError, skipped_summary

log = logging.getLogger(__name__)

KINDS = ("nsynth-like", "beethoven-like")
SIZES = ("small", "full")
MARKER = "build.json"
#: Bumped whenever a builder's output changes for the same parameters.
#: 2: nsynth-like gains the held-out split (``nsynth-heldout``).
#: 3: nsynth-like records each note's split; the full size adds electric keyboards, guitars,
#: strings and basses and augments its training notes (detuning, reverb).
BUILD_VERSION = 3


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


#: What a failed render can raise: DataError from :class:`~mmsin.data.render.Synth` (a font
#: fluidsynth cannot load, a missing preset, an unreadable MIDI file), and what fluidsynth's
#: and mido's bindings raise on damaged input.
_RENDER_ERRORS = (DataError, OSError, ValueError, RuntimeError, EOFError, IndexError, KeyError)


def _report(root: Path, skipped: list[tuple[str, str]]) -> None:
    """One WARNING line listing the sound fonts, presets or pieces a build left out."""
    if skipped:
        log.warning("%s: skipped %d: %s", root, len(skipped), skipped_summary(skipped, limit=10))


def _cached(root: Path, params: dict[str, Any]) -> bool:
    marker = root / MARKER
    if not marker.is_file():
        return False
    try:
        old = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(old.get("params") == json.loads(json.dumps(params)))


def _start(root: Path) -> None:
    """Empty ``root`` of a previous build (only if it is one of ours or empty), then create it."""
    if root.exists():
        ours = (root / MARKER).exists() or (root / ".building").exists()
        if not ours and any(root.iterdir()):
            raise DataError(f"{root}: folder exists and is not an mmsin build; choose another root")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / ".building").touch()


def _finish(root: Path, params: dict[str, Any], summary: dict[str, Any]) -> None:
    tmp = root / (MARKER + ".tmp")
    tmp.write_text(
        json.dumps({"params": params, "summary": summary, "fs": params["fs"]}, indent=1),
        encoding="utf-8",
    )
    os.replace(tmp, root / MARKER)
    (root / ".building").unlink(missing_ok=True)


def default_root(kind: str, size: str) -> Path:
    """Where ``build`` writes by default: ``paths.data_dir() / f"{kind}-{size}"``."""
    return paths.data_dir() / f"{kind}-{size}"


def build(
    kind: str,
    size: str = "small",
    root: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Build an offline look-alike data set (or return the cached one at once).

    Parameters
    ----------
    kind : {"nsynth-like", "beethoven-like", "real-notes", "real-guitar"}
        real-notes: recorded piano notes (:mod:`mmsin.data.real`), real-guitar: recorded
        guitar notes (:mod:`mmsin.data.real_guitar`); one size each (``size`` unused).
    size : {"small", "full"}
        small: a few hundred notes / about 16 min of music, about a minute on 2 cores;
        full: every distinct instrument and pitch / all the committed MIDI (about 6 h).
    root : path or None
        Output folder; default ``paths.data_dir() / f"{kind}-{size}"``.
    progress : bool
        Progress bars and a one-line summary on stderr.

    Returns
    -------
    Path of the data-set folder, readable by :func:`mmsin.data.load_clips`.
    """
    if kind == "real-notes":  # recorded notes: one size, its own module
        return import_module("mmsin.data.real").build_real_notes(root, progress=progress)
    if kind == "real-guitar":
        return import_module("mmsin.data.real_guitar").build_real_guitar(root, progress=progress)
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if size not in SIZES:
        raise ValueError(f"size {size!r}: expected one of {', '.join(SIZES)}")
    out = Path(root) if root is not None else default_root(kind, size)
    # Imported here: the builders import this module's cache and reports.
    if kind == "nsynth-like":
        from mmsin.data.nsynth_like import build_nsynth_like

        return build_nsynth_like(out, size, progress=progress)
    from mmsin.data.beethoven_like import build_beethoven_like

    return build_beethoven_like(out, size, progress=progress)
