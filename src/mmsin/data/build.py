"""Builders of the offline look-alikes: ``nsynth-like`` and ``beethoven-like``.

Both are deterministic (same sound fonts and parameters give the same files) and cached: the
build parameters are written last to ``build.json`` in the data-set folder, and a later build
with the same parameters returns at once. A build that stops half-way leaves no ``build.json``
and is redone. See docs/data.md for sizes, timings and licences.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmsin import paths
from mmsin.data.augment import AugmentSpec, draw_augmentation, reverberate
from mmsin.data.clips import (
    NOTE_SILENCE_PEAK,
    SILENCE_RMS,
    DataError,
    chop,
    problem_line,
    rms,
    samplernn_split,
    skipped_summary,
    velocity_split,
)
from mmsin.data.instruments import (  # noqa: F401  (re-exported: the tables' old home)
    ALL_GROUPS,
    DEFAULT_RANGE,
    FAMILY_PROGRAMS,
    FLUTE_PROGRAMS,
    HELDOUT_INSTRUMENTS,
    KEYBOARD_PROGRAMS,
    PAPER_GROUPS,
    PROGRAM_RANGES,
    SMALL_FONTS,
    source_of,
)
from mmsin.data.nsynth import FAMILIES, HELDOUT_FOLDER, NSYNTH_FS, SOURCES, TRAIN_FOLDER
from mmsin.data.render import (
    FONT_ERRORS,
    Preset,
    Synth,
    distinct_instruments,
    f0_cents_error,
    find_soundfonts,
    read_midi,
    read_presets,
    render_midi,
    render_note,
)
from mmsin.io import save_audio

log = logging.getLogger(__name__)

KINDS = ("nsynth-like", "beethoven-like")
SIZES = ("small", "full")
MARKER = "build.json"
#: Bumped whenever a builder's output changes for the same parameters.
#: 2: nsynth-like gains the held-out split (``nsynth-heldout``).
#: 3: nsynth-like records each note's split; the full size adds electric keyboards, guitars,
#: strings and basses and augments its training notes (detuning, reverb).
BUILD_VERSION = 3

MIDI_DIR = Path(__file__).with_name("midi")

# --------------------------------------------------------------------------------------------
# nsynth-like

#: Held-out notes: every semitone in this range (within each instrument's playing range), at
#: one velocity.
HELDOUT_PITCHES = (40, 90)
HELDOUT_VELOCITY = 100

#: Note checks at build time (section "Checks" of docs/data.md).
PITCH_TOLERANCE_CENTS = 20.0
PITCH_REJECT_CENTS = 50.0
#: Below this MIDI pitch a piano's fundamental is weak and estimators lock onto the octave;
#: the pitch check there compares pitch classes (cents folded into +-600).
LOW_PITCH = 45


@dataclass(frozen=True)
class NSynthSize:
    """Parameters of an nsynth-like size.

    per_family: instruments per family (None: every distinct one); step: semitones between
    rendered pitches (pitches p with (p - 24) % step == 0); velocities; pitch_range: clamp of
    every instrument's range; fonts: sound-font file names allowed (None: all found);
    heldout: instruments kept out of training and rendered into the ``heldout`` split, as
    (family, font, bank, program) (none by default; the sizes hold out
    :data:`HELDOUT_INSTRUMENTS`); heldout_pitches: their pitch range, every semitone;
    heldout_velocity: their one velocity; groups: the instrument groups of
    :data:`~mmsin.data.instruments.FAMILY_PROGRAMS` to render; augment: how the training
    notes are augmented (None: not at all; never the test velocity nor the held-out notes).
    """

    per_family: int | None
    step: int
    velocities: tuple[int, ...]
    pitch_range: tuple[int, int]
    fonts: tuple[str, ...] | None
    heldout: tuple[tuple[str, str, int, int], ...] = ()
    heldout_pitches: tuple[int, int] = HELDOUT_PITCHES
    heldout_velocity: int = HELDOUT_VELOCITY
    groups: tuple[str, ...] = PAPER_GROUPS
    augment: AugmentSpec | None = None


NSYNTH_SIZES = {
    # Step 5 keeps pairs of notes a fourth apart (the paper's pitch interpolation, Fig. 6).
    "small": NSynthSize(5, 5, (25, 75, 100, 127), (24, 96), SMALL_FONTS, HELDOUT_INSTRUMENTS),
    "full": NSynthSize(
        None,
        1,
        (25, 50, 75, 100, 127),
        (20, 110),
        None,
        HELDOUT_INSTRUMENTS,
        groups=ALL_GROUPS,
        augment=AugmentSpec(),
    ),
}


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


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


#: What a failed render can raise: DataError from :class:`~mmsin.data.render.Synth` (a font
#: fluidsynth cannot load, a missing preset, an unreadable MIDI file), and what fluidsynth's
#: and mido's bindings raise on damaged input.
_RENDER_ERRORS = (DataError, OSError, ValueError, RuntimeError, EOFError, IndexError, KeyError)


def _preset_label(p: Preset) -> str:
    return f"{p.soundfont.name} bank {p.bank} program {p.program} ({p.name})"


def _report(root: Path, skipped: list[tuple[str, str]]) -> None:
    """One WARNING line listing the sound fonts, presets or pieces a build left out."""
    if skipped:
        log.warning("%s: skipped %d: %s", root, len(skipped), skipped_summary(skipped, limit=10))


def _nsynth_plan(
    spec: NSynthSize,
) -> tuple[list[tuple[str, Preset]], list[tuple[str, Preset]], list[tuple[str, str]]]:
    """(family, preset) of every instrument to train and test on, in instrument-number order;
    (family, preset) of every held-out instrument (``spec.heldout`` found in the fonts); and
    what was left out as ``(what, problem)``: sound fonts named by the size but not installed
    or unreadable (damaged headers), held-out presets not found.

    A training candidate that plays any sample of a held-out instrument is dropped, so train,
    test and held-out notes never share a recording (a sample's PCM data)."""
    fonts = find_soundfonts()
    skipped: list[tuple[str, str]] = []
    if spec.fonts is not None:
        have = {f.name for f in fonts}
        skipped += [(n, "sound font not installed") for n in spec.fonts if n not in have]
        fonts = [f for f in fonts if f.name in spec.fonts]
    if not fonts:
        raise DataError(
            "no sound font found in /usr/share/sounds/sf2 (or $MMSIN_SOUNDFONTS); install the "
            "Debian packages fluid-soundfont-gm and timgm6mb-soundfont (scripts/setup.sh does)"
        )
    unreadable: dict[str, str] = {}
    listed: dict[Path, list[Preset]] = {}
    heldout: list[tuple[str, Preset]] = []
    by_name = {f.name: f for f in fonts}
    for family, font_name, bank, program in spec.heldout:
        label = f"held-out {font_name} bank {bank} program {program}"
        font = by_name.get(font_name)
        if font is None:
            skipped.append((label, "sound font not installed (or not one of this size's)"))
            continue
        if font not in listed:
            try:
                listed[font] = read_presets(font)
            except FONT_ERRORS as exc:
                unreadable[str(font)] = problem_line(exc, font)
                continue
        match = [p for p in listed[font] if (p.bank, p.program) == (bank, program)]
        if not match or not match[0].samples:
            skipped.append((label, "no such preset with samples in the sound font"))
            continue
        heldout.append((family, match[0]))
    held_samples = frozenset().union(*(p.samples for _, p in heldout))
    plan: list[tuple[str, Preset]] = []
    for group in spec.groups:
        programs = FAMILY_PROGRAMS[group]
        found = distinct_instruments(fonts, programs, skipped=unreadable, listed=listed)
        found = [p for p in found if not (p.samples & held_samples)]
        plan += [(group.split("-")[0], p) for p in found[: spec.per_family]]
    skipped += list(unreadable.items())
    if not plan:
        raise DataError(
            "no usable keyboard or flute preset in the sound fonts "
            f"{', '.join(f.name for f in fonts)}: {skipped_summary(skipped)}"
        )
    return plan, heldout, skipped


def _pitches(program: int, spec: NSynthSize) -> list[int]:
    lo, hi = PROGRAM_RANGES.get(program, DEFAULT_RANGE)
    lo, hi = max(lo, spec.pitch_range[0]), min(hi, spec.pitch_range[1])
    return [p for p in range(lo, hi + 1) if (p - 24) % spec.step == 0]


def heldout_pitches(program: int, spec: NSynthSize) -> list[int]:
    """Every semitone of ``spec.heldout_pitches`` that the program plays (its playing range,
    :data:`PROGRAM_RANGES`)."""
    lo, hi = PROGRAM_RANGES.get(program, DEFAULT_RANGE)
    lo, hi = max(lo, spec.heldout_pitches[0]), min(hi, spec.heldout_pitches[1])
    return list(range(lo, hi + 1))


def check_note(x: np.ndarray, fs: int, pitch: int, detune: float = 0.0) -> tuple[str, float]:
    """Check one rendered note: ``("silent"|"clipped"|"off-pitch"|"ok", cents error)``.

    Silent: peak below 1e-4. Clipped: peak at or above full scale. Off-pitch: the harmonic-aware
    f0 estimate is more than 50 cents from the MIDI pitch detuned by ``detune`` cents (folded
    to the pitch class below MIDI 45, where a piano's fundamental is too weak to tell octaves
    apart). The error returned is against the nominal MIDI pitch, the detuning included.
    """
    peak = float(np.max(np.abs(x)))
    if peak < NOTE_SILENCE_PEAK:
        return "silent", float("nan")
    if peak >= 1.0:
        return "clipped", float("nan")
    err = f0_cents_error(x, fs, pitch) - detune
    if pitch < LOW_PITCH:
        err = (err + 600.0) % 1200.0 - 600.0
    return ("ok" if abs(err) <= PITCH_REJECT_CENTS else "off-pitch"), err + detune


def build_nsynth_like(
    root: Path, size: str = "small", *, progress: bool = True, spec: NSynthSize | None = None
) -> Path:
    """Render the nsynth-like set into ``root`` (NSynth layout).

    Train and test notes go to ``nsynth-train`` (the loader draws the paper's velocity split);
    the notes of the held-out instruments (``spec.heldout``: every semitone of
    ``spec.heldout_pitches`` they play, at ``spec.heldout_velocity``) to ``nsynth-heldout``,
    the ``heldout`` split. ``spec`` overrides the size's parameters (tests use a tiny one).
    Returns ``root``.
    """
    spec = spec or NSYNTH_SIZES[size]
    plan, heldout, skipped = _nsynth_plan(spec)
    params: dict[str, Any] = {
        "kind": "nsynth-like",
        "size": size,
        "version": BUILD_VERSION,
        "fs": NSYNTH_FS,
        "spec": asdict(spec),
        "instruments": [
            [fam, p.soundfont.name, p.bank, p.program, p.fingerprint] for fam, p in plan
        ],
        "heldout": [
            [fam, p.soundfont.name, p.bank, p.program, p.fingerprint] for fam, p in heldout
        ],
    }
    if _cached(root, params):
        return root
    if size == "full" and not any(p.soundfont.name.startswith("MuseScore") for _, p in plan):
        _say(
            progress,
            "note: install the Debian package musescore-general-soundfont-lossless "
            "(330 MB) for MuseScore's piano and flutes; building with the fonts found.",
        )
    _start(root)
    folders = {"train": root / TRAIN_FOLDER, "heldout": root / HELDOUT_FOLDER}
    (folders["train"] / "audio").mkdir(parents=True)
    if heldout:
        (folders["heldout"] / "audio").mkdir(parents=True)
    t0 = time.perf_counter()
    jobs = [
        ("train", fam, p, pitch, v)
        for fam, p in plan
        for pitch in _pitches(p.program, spec)
        for v in spec.velocities
    ]
    jobs += [
        ("heldout", fam, p, pitch, spec.heldout_velocity)
        for fam, p in heldout
        for pitch in heldout_pitches(p.program, spec)
    ]
    examples: dict[str, dict[str, dict[str, Any]]] = {"train": {}, "heldout": {}}
    counts: dict[str, Counter[str]] = {"train": Counter(), "heldout": Counter()}
    errors: dict[str, list[float]] = {"train": [], "heldout": []}
    rejected: dict[str, list[list[Any]]] = {}  # held-out notes that failed a check
    index: Counter[str] = Counter()
    names: dict[tuple[Path, int, int], str] = {}
    inst_ids: dict[str, int] = {}
    # Held-out instruments are numbered after the training ones, as NSynth numbers its
    # instruments across its splits.
    for fam, p in plan + heldout:
        prefix = f"{fam}_{source_of(p.program)}"
        names[(p.soundfont, p.bank, p.program)] = f"{prefix}_{index[prefix]:03d}"
        inst_ids[names[(p.soundfont, p.bank, p.program)]] = len(inst_ids)
        index[prefix] += 1
    # The paper's velocity split is drawn here, once (seed 0), so that augmentation touches
    # training notes only; each note records it and the loader follows it.
    planned = [
        (names[(p.soundfont, p.bank, p.program)], v) for s, _, p, _, v in jobs if s == "train"
    ]
    is_test = velocity_split([n for n, _ in planned], [v for _, v in planned], seed=0)
    test_notes = {nv for nv, t in zip(planned, is_test, strict=True) if t}
    failed: set[tuple[Path, int, int]] = set()
    n_notes = 0
    with Synth(NSYNTH_FS, gain=1.0, reverb=False) as synth:
        current = None
        for split, fam, p, pitch, v in tqdm(
            jobs, desc="nsynth-like", unit="note", disable=not progress
        ):
            key = (p.soundfont, p.bank, p.program)
            if key in failed:
                continue
            inst = names[key]
            note_str = f"{inst}-{pitch:03d}-{v:03d}"
            role = "test" if (inst, v) in test_notes else split
            aug = (
                draw_augmentation(note_str, spec.augment)
                if spec.augment and role == "train"
                else None
            )
            try:
                if key != current:
                    current = None
                    synth.select(0, p.soundfont, p.bank, p.program)
                    current = key
                synth.pitch_bend(0, aug.bend if aug else 0)
                x = render_note(synth, pitch, v)
            except _RENDER_ERRORS as exc:
                # One preset that fluidsynth cannot load or play costs that instrument only.
                failed.add(key)
                current = None
                skipped.append((_preset_label(p), problem_line(exc, p.soundfont)))
                continue
            status, err = check_note(x, NSYNTH_FS, pitch, aug.detune_cents if aug else 0.0)
            counts[split][status] += 1
            if status != "ok":
                if split == "heldout":
                    cents = None if np.isnan(err) else round(err, 1)
                    rejected.setdefault(inst, []).append([pitch, status, cents])
                continue
            errors[split].append(err - (aug.detune_cents if aug else 0.0))
            if aug is not None:  # reverb after the pitch check, which wants the dry note
                x = reverberate(x, NSYNTH_FS, aug, note_str, spec.augment.seed)  # type: ignore[union-attr]
                x *= min(1.0, 0.99 / max(float(np.max(np.abs(x))), 1e-12))
            save_audio(folders[split] / "audio" / f"{note_str}.wav", x, NSYNTH_FS, subtype="PCM_24")
            examples[split][note_str] = {
                "note_str": note_str,
                "note": n_notes,
                "sample_rate": NSYNTH_FS,
                "pitch": pitch,
                "velocity": v,
                "instrument": inst_ids[inst],
                "instrument_str": inst,
                "instrument_family": FAMILIES.index(fam),
                "instrument_family_str": fam,
                "instrument_source": SOURCES.index(source_of(p.program)),
                "instrument_source_str": source_of(p.program),
                "qualities": [0] * 10,
                "qualities_str": [],
                # Not in NSynth: where the note came from and its measured tuning.
                "soundfont": p.soundfont.name,
                "bank": p.bank,
                "program": p.program,
                "preset_name": p.name,
                "f0_error_cents": round(err, 2),
                # The split this note belongs to (train, test, heldout) and, for augmented
                # training notes, what was done (f0 is the MIDI pitch + detune_cents).
                "split": role,
                "augmentation": aug.record() if aug else None,
            }
            n_notes += 1
    if not counts["train"]:
        raise DataError(f"{root}: nothing could be rendered: {skipped_summary(skipped)}")
    if not examples["train"]:
        raise DataError(f"{root}: every rendered note failed the checks ({dict(counts['train'])})")
    _report(root, skipped)
    for split, folder in folders.items():
        if examples[split]:
            with open(folder / "examples.json", "w", encoding="utf-8") as f:
                json.dump(examples[split], f, indent=1)
        elif folder.exists():
            shutil.rmtree(folder)

    def instruments(split: str) -> dict[str, int]:
        """Instruments with at least one note that passed the checks, per family."""
        table = examples[split].values()
        return {
            fam: len({e["instrument_str"] for e in table if e["instrument_family_str"] == fam})
            for fam in dict.fromkeys(f for f, _ in plan + heldout)
        }

    errs = np.abs(np.asarray(errors["train"]))
    summary: dict[str, Any] = {
        "notes": len(examples["train"]),
        "instruments": instruments("train"),
        "checks": dict(counts["train"]),
        # Sound fonts and presets left out: [what, problem].
        "skipped": [list(k) for k in skipped],
        "within_20_cents": float(np.mean(errs <= PITCH_TOLERANCE_CENTS)),
        "max_abs_cents": float(errs.max()),
    }
    if spec.heldout:
        held_errs = np.abs(np.asarray(errors["heldout"]))
        summary["heldout"] = {
            "notes": len(examples["heldout"]),
            "pitches": list(spec.heldout_pitches),
            "velocity": spec.heldout_velocity,
            # instrument_str -> "font bank b program p (preset name)"
            "instruments": {
                names[(p.soundfont, p.bank, p.program)]: _preset_label(p) for _, p in heldout
            },
            "checks": dict(counts["heldout"]),
            # [pitch, check, cents] of the notes left out, per instrument
            "rejected": rejected,
            "within_20_cents": (
                float(np.mean(held_errs <= PITCH_TOLERANCE_CENTS)) if held_errs.size else None
            ),
        }
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    _finish(root, params, summary)
    held_msg = ""
    if spec.heldout:
        held_msg = (
            f", held out: {summary['heldout']['notes']} notes of "
            f"{sum(instruments('heldout').values())} instruments"
        )
    _say(
        progress,
        f"nsynth-like ({size}): {summary['notes']} notes of "
        f"{sum(summary['instruments'].values())} instruments {summary['instruments']}, "
        f"checks {dict(counts['train'])}, "
        f"{100 * summary['within_20_cents']:.1f}% within 20 cents{held_msg}, "
        f"{len(skipped)} fonts/presets skipped, "
        f"{summary['seconds']} s -> {root}",
    )
    return root


# --------------------------------------------------------------------------------------------
# beethoven-like

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


# --------------------------------------------------------------------------------------------
# cache and entry point


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
    kind : {"nsynth-like", "beethoven-like", "real-notes"}
        real-notes: recorded piano notes (:mod:`mmsin.data.real`), one size (``size`` unused).
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
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if size not in SIZES:
        raise ValueError(f"size {size!r}: expected one of {', '.join(SIZES)}")
    out = Path(root) if root is not None else default_root(kind, size)
    if kind == "nsynth-like":
        return build_nsynth_like(out, size, progress=progress)
    return build_beethoven_like(out, size, progress=progress)
