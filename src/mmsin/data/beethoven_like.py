"""The ``beethoven-like`` builder: committed MIDI pieces rendered on a sampled piano.

Its sizes (:data:`BEETHOVEN_SIZES`), the committed MIDI files (:func:`midi_files`) and
:func:`build_beethoven_like`, which writes SampleRNN's ``music_*.npy`` layout read back by
:mod:`mmsin.data.beethoven`; the cache and the entry point ``build`` are
:mod:`mmsin.data.build`'s. See docs/data.md for sizes, timings and licences.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmsin.data.build import (
    _RENDER_ERRORS,
    BUILD_VERSION,
    _cached,
    _finish,
    _report,
    _say,
    _start,
)
from mmsin.data.clips import (
    SILENCE_RMS,
    DataError,
    chop,
    problem_line,
    rms,
    samplernn_split,
    skipped_summary,
)
from mmsin.data.render import Synth, find_soundfonts, read_midi, render_midi

MIDI_DIR = Path(__file__).with_name("midi")


@dataclass(frozen=True)
class BeethovenSize:
    """Parameters of a beethoven-like size: MIDI files (stems in ``midi/``, None: all) and the
    sound fonts to try for the piano, best first."""

    pieces: tuple[str, ...] | None
    fonts: tuple[str, ...]


BEETHOVEN_SIZES = {
    # About 16 min: one quartet movement plus five solo keyboard pieces -> ~115 extracts.
    "small": BeethovenSize(
        (
            "beethoven_opus18no1_movement1",
            "bach_bwv846",
            "joplin_maple_leaf_rag",
            "mozart_k545_movement1_exposition",
            "schumann_clara_polonaise_op1n1",
            "chopin_mazurka06-2",
        ),
        ("FluidR3_GM.sf2", "TimGM6mb.sf2"),
    ),
    "full": BeethovenSize(None, ("MuseScore_General_Full.sf2", "FluidR3_GM.sf2", "TimGM6mb.sf2")),
}

EXTRACT = 128000  # 8 s at 16 kHz, SampleRNN's extracts
BEETHOVEN_FS = 16000


def midi_files(pieces: tuple[str, ...] | None = None) -> list[Path]:
    """The committed MIDI files (``mmsin/data/midi``), all or those named by stem, sorted."""
    files = sorted(MIDI_DIR.glob("*.mid"))
    if pieces is not None:
        have = {f.stem: f for f in files}
        missing = [p for p in pieces if p not in have]
        if missing:
            raise DataError(f"{MIDI_DIR}: MIDI file(s) missing: {', '.join(missing)}")
        files = [have[p] for p in pieces]
    if not files:
        raise DataError(f"{MIDI_DIR}: no MIDI files; run scripts/convert_scores.py")
    return files


def _midi_available(pieces: tuple[str, ...] | None) -> tuple[list[Path], list[str]]:
    """The committed MIDI files named by ``pieces`` (None: all) that exist, and the missing
    names; unlike :func:`midi_files`, a missing piece is returned, not raised."""
    have = {f.stem: f for f in sorted(MIDI_DIR.glob("*.mid"))}
    if pieces is None:
        return list(have.values()), []
    return [have[p] for p in pieces if p in have], [p for p in pieces if p not in have]


def build_beethoven_like(
    root: Path,
    size: str = "small",
    *,
    progress: bool = True,
    spec: BeethovenSize | None = None,
) -> Path:
    """Render the beethoven-like set into ``root`` (SampleRNN's ``music_*.npy`` layout).

    Sound fonts are tried in the size's order: one that is not installed, or that fluidsynth
    cannot load, is skipped for the next. A named piece that is missing, or whose MIDI file
    cannot be read or rendered, is skipped. Everything skipped is logged (one WARNING line)
    and listed in ``build.json``'s summary; only a build with no usable font or no rendered
    piece is a DataError.
    """
    spec = spec or BEETHOVEN_SIZES[size]
    skipped: list[tuple[str, str]] = []
    found = {f.name: f for f in find_soundfonts()}
    fonts = [found[n] for n in spec.fonts if n in found]
    skipped += [(n, "sound font not installed") for n in spec.fonts if n not in found]
    if not fonts:
        raise DataError(
            f"none of the sound fonts {', '.join(spec.fonts)} is installed; install the Debian "
            "package fluid-soundfont-gm (scripts/setup.sh does)"
        )
    files, missing = _midi_available(spec.pieces)
    skipped += [(f"{n}.mid", f"no such MIDI file in {MIDI_DIR}") for n in missing]
    if not files:
        raise DataError(f"{MIDI_DIR}: none of the MIDI files of the {size} size is here")
    font = fonts[0]
    params: dict[str, Any] = {
        "kind": "beethoven-like",
        "size": size,
        "version": BUILD_VERSION,
        "fs": BEETHOVEN_FS,
        "soundfont": [font.name, font.stat().st_size],
        "pieces": [[f.stem, f.stat().st_size] for f in files],
    }
    if _cached(root, params):
        return root
    if size == "full" and not font.name.startswith("MuseScore"):
        _say(
            progress,
            "note: install the Debian package musescore-general-soundfont-lossless "
            "(330 MB) for MuseScore's grand piano; building with " + font.name,
        )
    _start(root)
    t0 = time.perf_counter()
    pieces: list[np.ndarray] = []
    owners: list[tuple[str, int, int]] = []  # (piece, start sample, end sample) in the stream
    total = 0
    scaled = []
    used: list[Path] = []
    with Synth(BEETHOVEN_FS, gain=0.5, reverb=True) as synth:
        for candidate in fonts:
            try:
                synth.load(candidate)
            except DataError as exc:
                skipped.append((candidate.name, problem_line(exc, candidate)))
                continue
            font = candidate
            break
        else:
            raise DataError(f"{root}: nothing could be rendered: {skipped_summary(skipped)}")
        # The cache key names the font actually used.
        params["soundfont"] = [font.name, font.stat().st_size]
        for f in tqdm(files, desc="beethoven-like", unit="piece", disable=not progress):
            # One piece that cannot be read or played costs that piece only. A file that does
            # not parse never reaches the synthesiser, so the next piece renders exactly as if
            # it had not been listed.
            try:
                song = read_midi(f)
            except DataError as exc:
                skipped.append((f.name, problem_line(exc, f)))
                continue
            try:
                x = render_midi(synth, song, soundfont=font, bank=0, program=0)
                if x.size == 0 or not np.all(np.isfinite(x)):
                    raise ValueError("rendered no finite audio")
            except _RENDER_ERRORS as exc:
                skipped.append((f.name, problem_line(exc, f)))
                synth.silence()
                continue
            peak = float(np.max(np.abs(x)))
            if peak >= 0.99:  # keep the piece clear of clipping, deterministically
                x *= 0.99 / peak
                scaled.append(f.stem)
            pieces.append(x)
            used.append(f)
            owners.append((f.stem, total, total + x.size))
            total += x.size
    if not pieces:
        raise DataError(f"{root}: nothing could be rendered: {skipped_summary(skipped)}")
    _report(root, skipped)
    # SampleRNN concatenates everything and cuts consecutive 8 s extracts.
    stream = np.concatenate(pieces)
    chunks = chop(stream, EXTRACT)
    loud = rms(chunks) >= SILENCE_RMS
    kept = np.flatnonzero(loud)
    if kept.size < 3:
        raise DataError(f"{root}: only {kept.size} non-silent extracts rendered")
    names = [f"p{i}" for i in kept]
    split = samplernn_split(names)
    meta = []
    for i in kept:
        a = i * EXTRACT
        meta.append(
            {
                "name": f"p{i}",
                "start": a / BEETHOVEN_FS,
                "pieces": [o[0] for o in owners if o[1] < a + EXTRACT and o[2] > a],
            }
        )
    out_meta: dict[str, list[dict[str, Any]]] = {}
    for s in ("train", "valid", "test"):
        idx = split[s]
        np.save(root / f"music_{s}.npy", chunks[kept[idx]].astype(np.float16))
        out_meta[s] = [meta[j] for j in idx]
    with open(root / "extracts.json", "w", encoding="utf-8") as fh:
        json.dump(out_meta, fh, indent=1)
    summary: dict[str, Any] = {
        "extracts": int(kept.size),
        "silent_dropped": int((~loud).sum()),
        "splits": {s: len(split[s]) for s in ("train", "valid", "test")},
        "music_seconds": round(total / BEETHOVEN_FS, 1),
        "peak": float(np.max(np.abs(chunks[kept]))),
        "scaled_to_avoid_clipping": scaled,
        # Sound fonts and pieces left out: [what, problem].
        "skipped": [list(k) for k in skipped],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _finish(root, params, summary)
    _say(
        progress,
        f"beethoven-like ({size}): {summary['music_seconds']:.0f} s of music from "
        f"{len(used)} pieces on {font.name} -> {kept.size} extracts {summary['splits']}, "
        f"{summary['silent_dropped']} silent dropped, {len(skipped)} fonts/pieces skipped, "
        f"{summary['seconds']} s -> {root}",
    )
    return root
