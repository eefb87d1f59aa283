"""Summaries of data sets from their metadata (no audio decoded): ``mmsin data info``."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from mmsin.data.clips import (
    DataError,
    no_usable_audio,
    report_skipped,
    samplernn_holdout,
    samplernn_split,
    skipped_summary,
    velocity_split,
)
from mmsin.io import AudioError, audio_info

log = logging.getLogger(__name__)


def describe(source: str | os.PathLike[str], size: str = "small") -> dict[str, Any]:
    """Counts, durations, histograms and split sizes of a data set.

    Returns a dict with at least ``path``, ``format``, ``clips`` (number of notes or extracts),
    ``seconds_per_clip`` (at the source rate), ``total_seconds``, ``splits`` ({name: count});
    NSynth adds ``instruments`` ({family: count}), ``pitch_histogram`` and
    ``velocity_histogram`` ({value: count}) of the paper's selection (train and test), and,
    where the tree has held-out instruments (``nsynth-heldout``), a ``heldout`` split count and
    ``heldout`` ({instrument: {preset, notes, pitches [lowest, highest]}}). A folder of audio adds
    ``skipped``: ``(path, problem)`` of each file whose header :func:`mmsin.io.audio_info`
    refuses (logged in one WARNING line, left out of the counts).

    Raises
    ------
    DataError
        Missing or unrecognisable source, or a folder where no file is usable audio.
    """
    from mmsin.data import resolve

    path, fmt = resolve(source, size)
    out: dict[str, Any] = {"path": str(path), "format": fmt}
    build = path / "build.json" if path.is_dir() else path.parent / "build.json"
    if build.is_file():
        out["build"] = json.loads(build.read_text(encoding="utf-8")).get("summary", {})
    if fmt == "nsynth":
        from mmsin.data.nsynth import HELDOUT_FOLDER, read_examples, select_notes

        every = read_examples(path)
        selected = select_notes(every)
        if not selected:
            raise DataError(f"{path}: no acoustic keyboard or flute note within MIDI 20-110")
        held = [n for n in selected if n["folder"] == HELDOUT_FOLDER]
        notes = [n for n in selected if n["folder"] != HELDOUT_FOLDER]
        test = velocity_split(
            [n["instrument_str"] for n in notes], [int(n["velocity"]) for n in notes]
        )
        insts: dict[str, set[str]] = {}
        for n in notes:
            insts.setdefault(n["instrument_family_str"], set()).add(n["instrument_str"])
        counts = {"train": int((~test).sum()), "test": int(test.sum())}
        if held:
            counts["heldout"] = len(held)
            by_inst: dict[str, list[dict[str, Any]]] = {}
            for n in held:
                by_inst.setdefault(n["instrument_str"], []).append(n)
            out["heldout"] = {}
            for inst, mine in sorted(by_inst.items()):
                pitches = [int(n["pitch"]) for n in mine]
                where = [str(mine[0][k]) for k in ("soundfont", "preset_name") if mine[0].get(k)]
                out["heldout"][inst] = {
                    "preset": " ".join(where),
                    "notes": len(mine),
                    "pitches": [min(pitches), max(pitches)],
                }
        out.update(
            clips=len(notes) + len(held),
            notes_in_tree=len(every),
            seconds_per_clip=4.0,
            total_seconds=4.0 * (len(notes) + len(held)),
            splits=counts,
            instruments={k: len(v) for k, v in sorted(insts.items())},
            pitch_histogram=dict(sorted(Counter(int(n["pitch"]) for n in notes).items())),
            velocity_histogram=dict(sorted(Counter(int(n["velocity"]) for n in notes).items())),
        )
    elif fmt == "beethoven" and (path.suffix == ".npy" or (path / "music_train.npy").is_file()):
        arrays = (
            {s: path / f"music_{s}.npy" for s in ("train", "valid", "test")}
            if path.is_dir()
            else {"all": path}
        )
        splits: dict[str, int] = {}
        time = 0
        for s, p in arrays.items():
            try:
                a = np.load(p, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(f"{p}: not a readable .npy array ({exc})") from None
            splits[s] = int(a.shape[0])
            time = int(a.shape[-1])
        n_clips = sum(splits.values())
        if "all" in splits:
            k = samplernn_holdout(n_clips)
            splits = {"train": n_clips - 2 * k, "valid": k, "test": k}
        rate = 4096 if time == 32768 else 16000
        if build.is_file():
            rate = int(json.loads(build.read_text(encoding="utf-8")).get("fs", rate))
        out.update(
            clips=n_clips,
            samples_per_clip=time,
            source_fs=rate,
            seconds_per_clip=time / rate,
            total_seconds=n_clips * time / rate,
            splits=splits,
        )
    else:
        from mmsin.data.folder import audio_files

        found = audio_files(path)
        files: list[Path] = []
        secs: list[float] = []
        skipped: list[tuple[str, str]] = []
        for f in found:
            # Headers only (no decoding); a file the header check refuses is skipped and
            # reported like the loaders do, so one bad file does not hide the set.
            try:
                info = audio_info(f)
            except AudioError as exc:
                skipped.append((str(f), exc.problem))
                continue
            if info.frames == 0:
                skipped.append((str(f), "contains no samples"))
                continue
            files.append(f)
            secs.append(info.seconds)
        if not files:
            raise no_usable_audio(path, skipped)
        report_skipped(log, path, skipped, len(found))
        if fmt == "beethoven" and len(files) >= 3:
            parts = samplernn_split([str(f) for f in files])
            fsplits = {s: len(parts[s]) for s in ("train", "valid", "test")}
        else:
            fsplits = {"extracts_of_8s": int(sum(s // 8.0 for s in secs))}
        out.update(
            clips=len(files),
            files=len(files),
            seconds_per_clip=float(np.median(secs)),
            total_seconds=float(sum(secs)),
            splits=fsplits,
            skipped=skipped,
        )
    return out


def histogram_lines(hist: dict[Any, int], width: int = 40) -> list[str]:
    """Text bars, one per key: ``key | ####  count``."""
    if not hist:
        return []
    top = max(hist.values())
    return [
        f"{k!s:>5} | {'#' * max(1, round(width * v / top)):<{width}} {v}" for k, v in hist.items()
    ]


def format_description(d: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe`'s dict."""
    lines = [f"{d['path']}  ({d['format']})"]
    lines.append(
        f"clips: {d['clips']}, {d['seconds_per_clip']:g} s each at the source rate, "
        f"total {d['total_seconds'] / 60:.1f} min"
    )
    if "source_fs" in d:
        lines.append(f"arrays: {d['samples_per_clip']} samples per clip at {d['source_fs']} Hz")
    lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in d["splits"].items()))
    if "instruments" in d:
        lines.append(
            "instruments: "
            + ", ".join(f"{k} {v}" for k, v in d["instruments"].items())
            + f" (selection of {d['notes_in_tree']} notes in the tree)"
        )
        lines.append("pitch histogram (MIDI):")
        lines += histogram_lines(d["pitch_histogram"])
        lines.append("velocity histogram:")
        lines += histogram_lines(d["velocity_histogram"])
    if d.get("heldout"):
        lines.append(
            f"heldout: {sum(h['notes'] for h in d['heldout'].values())} notes of "
            f"{len(d['heldout'])} instruments never seen in training (not in the histograms):"
        )
        lines += [
            f"  {inst}: {h['preset'] or '?'}, {h['notes']} notes, MIDI "
            f"{h['pitches'][0]}-{h['pitches'][1]}"
            for inst, h in d["heldout"].items()
        ]
    if d.get("skipped"):
        lines.append(f"skipped {len(d['skipped'])} unusable files:")
        lines += [f"  {skipped_summary([s], d['path'])}" for s in d["skipped"]]
    if d.get("build"):
        lines.append("build: " + json.dumps(d["build"]))
    return "\n".join(lines)
