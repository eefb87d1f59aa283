"""NSynth in its published layout, and the ``nsynth-like`` look-alike (same layout).

A tree is either one split folder (``examples.json`` + ``audio/<note_str>.wav``, e.g.
``nsynth-test/``) or a folder holding several of them (``nsynth-train/``, ``nsynth-valid/``,
``nsynth-test/``), which are pooled: the paper (section 5.1) selects its 40 acoustic keyboards
and flutes from all of NSynth and draws its own split, one velocity per instrument to test.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mmsin.data.clips import (
    NOTE_SILENCE_PEAK,
    Clips,
    DataError,
    check_split,
    fit_length,
    no_usable_audio,
    report_skipped,
    velocity_split,
)
from mmsin.io import AudioError, load_audio, normalize_peak

log = logging.getLogger(__name__)

#: NSynth's family and source indices (instrument_family, instrument_source).
FAMILIES = (
    "bass",
    "brass",
    "flute",
    "guitar",
    "keyboard",
    "mallet",
    "organ",
    "reed",
    "string",
    "synth_lead",
    "vocal",
)
SOURCES = ("acoustic", "electronic", "synthetic")
#: The paper's selection (section 5.1): acoustic keyboards and flutes.
PAPER_FAMILIES = ("keyboard", "flute")
PAPER_SOURCES = ("acoustic",)
QUALITIES = (
    "bright",
    "dark",
    "distortion",
    "fast_decay",
    "long_release",
    "multiphonic",
    "nonlinear_env",
    "percussive",
    "reverb",
    "tempo-synced",
)
NSYNTH_FS = 16000
#: The look-alike's folders: notes for the paper's velocity split, and the notes of instruments
#: never seen in training (the ``heldout`` split). A folder of this name in any NSynth tree is
#: read as held out: never part of train, test or all.
TRAIN_FOLDER = "nsynth-train"
HELDOUT_FOLDER = "nsynth-heldout"


def split_folders(root: str | os.PathLike[str]) -> list[Path]:
    """The folders under ``root`` (or ``root`` itself) that hold an ``examples.json``."""
    p = Path(root)
    if not p.is_dir():
        raise DataError(f"{p}: no such folder (expected an NSynth tree)")
    if (p / "examples.json").is_file():
        return [p]
    found = sorted(d for d in p.iterdir() if d.is_dir() and (d / "examples.json").is_file())
    if not found:
        raise DataError(f"{p}: no examples.json here or in a sub-folder; not an NSynth tree")
    return found


def is_nsynth(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` looks like an NSynth tree."""
    try:
        split_folders(root)
    except DataError:
        return False
    return True


def read_examples(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All note records of the tree, each with an extra ``path`` to its WAV file.

    Raises
    ------
    DataError
        Unreadable JSON or records missing NSynth's fields.
    """
    notes: list[dict[str, Any]] = []
    for folder in split_folders(root):
        path = folder / "examples.json"
        try:
            with open(path, encoding="utf-8") as f:
                table = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not readable JSON ({exc})") from None
        if not isinstance(table, dict):
            raise DataError(f"{path}: expected an object keyed by note_str")
        for key, rec in table.items():
            missing = {"pitch", "velocity", "instrument_str"} - set(rec)
            if missing:
                raise DataError(f"{path}: note {key!r} lacks {', '.join(sorted(missing))}")
            rec = dict(rec)
            rec.setdefault("note_str", key)
            family = rec.get("instrument_family_str")
            if family is None and "instrument_family" in rec:
                family = FAMILIES[int(rec["instrument_family"])]
            source = rec.get("instrument_source_str")
            if source is None and "instrument_source" in rec:
                source = SOURCES[int(rec["instrument_source"])]
            rec["instrument_family_str"] = family
            rec["instrument_source_str"] = source
            rec["path"] = folder / "audio" / f"{rec['note_str']}.wav"
            rec["folder"] = folder.name
            notes.append(rec)
    return notes


def select_notes(
    notes: list[dict[str, Any]],
    *,
    families: tuple[str, ...] = ("keyboard", "flute"),
    sources: tuple[str, ...] = ("acoustic",),
    pitch_range: tuple[int, int] = (20, 110),
) -> list[dict[str, Any]]:
    """Keep the notes of the given families and sources within ``pitch_range`` (inclusive).

    Sorted by ``note_str`` so that every later step is independent of the JSON's order.
    """
    lo, hi = pitch_range
    kept = [
        n
        for n in notes
        if n["instrument_family_str"] in families
        and n["instrument_source_str"] in sources
        and lo <= int(n["pitch"]) <= hi
    ]
    return sorted(kept, key=lambda n: n["note_str"])


def load_nsynth(
    root: str | os.PathLike[str],
    split: str = "train",
    *,
    fs: int = 4096,
    families: tuple[str, ...] | None = None,
    sources: tuple[str, ...] | None = None,
    pitch_range: tuple[int, int] = (20, 110),
    seconds: float = 2.0,
    seed: int = 0,
    split_rule: str = "velocity",
    normalize: bool = True,
    max_notes: int | None = None,
) -> Clips:
    """Load NSynth notes as clips: the paper's selection and split (section 5.1).

    Parameters
    ----------
    root : path
        An NSynth tree (see the module docstring).
    split : {"train", "test", "all", "heldout"} for the velocity rule; with
        ``split_rule="folders"`` the NSynth folder of that name (``nsynth-train``,
        ``nsynth-valid``, ``nsynth-test``). ``heldout`` is, under either rule, the notes of the
        folder ``nsynth-heldout``: instruments never seen in training, which the built
        nsynth-like look-alike has (docs/data.md); they are never part of the other splits,
        ``all`` included.
    fs : int
        Output rate in Hz (files are 16 kHz; soxr resamples).
    families, sources, pitch_range
        Selection: NSynth family and source names; MIDI pitch range, inclusive. None: the
        paper's (acoustic keyboards and flutes) for NSynth; every family and source for the
        nsynth-like look-alike (notes that record their ``split``), whose full size adds
        electric keyboards, guitars, strings and basses.
    seconds : float
        Length kept from the start of each note (the paper: 2 s, 8192 samples at 4096 Hz).
    seed : int
        Seeds the velocity pick of the split. The look-alike records the split its builder drew
        with seed 0 (it augments training notes only) and is loaded with it; another seed is
        a ValueError there.
    split_rule : {"velocity", "folders"}
        ``velocity``: per instrument one random velocity is test, the rest train (the paper).
        ``folders``: NSynth's own split by folder name.
    normalize : bool
        Scale each clip to peak 1.
    max_notes : int or None
        Keep at most this many notes of the split (evenly spaced), for quick runs.

    Returns
    -------
    Clips, audio (n, round(seconds * fs)). Notes whose first ``seconds`` are silent (peak
    below 1e-4) are dropped and counted in ``Clips.dropped``. Notes whose file is missing or
    unusable are skipped, logged in one WARNING line and listed in ``Clips.skipped``; only a
    split with no usable note file is a DataError.
    """
    table = read_examples(root)
    recorded = bool(table) and all("split" in n for n in table)
    if families is None:
        families = FAMILIES if recorded else PAPER_FAMILIES
    if sources is None:
        sources = SOURCES if recorded else PAPER_SOURCES
    notes = select_notes(table, families=families, sources=sources, pitch_range=pitch_range)
    if not notes:
        raise DataError(
            f"{root}: no note of families {families}, sources {sources}, pitch {pitch_range}"
        )
    held = [n for n in notes if n["folder"] == HELDOUT_FOLDER]
    notes = [n for n in notes if n["folder"] != HELDOUT_FOLDER]
    if split == "heldout":
        if split_rule not in ("velocity", "folders"):
            raise ValueError(f"split_rule {split_rule!r}: expected 'velocity' or 'folders'")
        if not held:
            raise DataError(
                f"{root}: no held-out notes (no {HELDOUT_FOLDER}/ with notes of families "
                f"{families}, pitch {pitch_range}); the nsynth-like look-alike has them "
                "(rebuild it with `mmsin data build nsynth-like`)"
            )
        notes = held
    elif not notes:
        raise DataError(f"{root}: only held-out notes ({HELDOUT_FOLDER}/); no {split} split")
    elif split_rule == "velocity":
        check_split(split, ("train", "test", "all", "heldout"))
        if recorded:
            if seed != 0:
                raise ValueError(
                    f"{root}: the look-alike's velocity split was drawn at build time (seed 0, "
                    f"augmented training notes); seed={seed} cannot redraw it"
                )
            is_test = [n["split"] == "test" for n in notes]
        else:
            is_test = velocity_split(
                [n["instrument_str"] for n in notes],
                [int(n["velocity"]) for n in notes],
                seed=seed,
            ).tolist()
        if split != "all":
            notes = [n for n, t in zip(notes, is_test, strict=True) if t == (split == "test")]
    elif split_rule == "folders":
        check_split(split, ("train", "valid", "test", "all", "heldout"))
        if split != "all":
            notes = [n for n in notes if n["folder"].endswith(split)]
    else:
        raise ValueError(f"split_rule {split_rule!r}: expected 'velocity' or 'folders'")
    if max_notes is not None and len(notes) > max_notes:
        idx = np.linspace(0, len(notes) - 1, max_notes).round().astype(int)
        notes = [notes[i] for i in idx]
    length = round(seconds * fs)
    audio = np.zeros((len(notes), length), dtype=np.float32)
    meta: list[dict[str, Any]] = []
    keep = np.zeros(len(notes), dtype=bool)
    skipped: list[tuple[str, str]] = []
    for i, n in enumerate(notes):
        try:
            x = load_audio(n["path"], fs=fs, max_seconds=seconds)
        except AudioError as exc:
            # A missing or broken note file costs that note only (skip and report).
            skipped.append((str(n["path"]), exc.problem))
            continue
        x = fit_length(x, length)
        if np.max(np.abs(x)) < NOTE_SILENCE_PEAK:
            continue
        keep[i] = True
        audio[i] = normalize_peak(x) if normalize else x
        meta.append(
            {
                "name": n["note_str"],
                "pitch": int(n["pitch"]),
                "velocity": int(n["velocity"]),
                "instrument_str": n["instrument_str"],
                "family": n["instrument_family_str"],
                "source": n["instrument_source_str"],
            }
        )
    if notes and len(skipped) == len(notes):
        raise no_usable_audio(root, skipped, "note file")
    report_skipped(log, root, skipped, len(notes), "note files")
    dropped = int((~keep).sum()) - len(skipped)
    if dropped:
        log.info("%s: dropped %d silent notes of %d", root, dropped, len(notes))
    return Clips(
        audio=audio[keep],
        fs=fs,
        meta=meta,
        split=split,
        source=str(root),
        dropped=dropped,
        skipped=skipped,
    )
