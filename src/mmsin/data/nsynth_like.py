"""The ``nsynth-like`` builder: NSynth-layout notes rendered from sampled instruments.

Its sizes (:data:`NSYNTH_SIZES`), the plan of instruments to render (training, test and
held-out), the per-note checks (:func:`check_note`) and :func:`build_nsynth_like`. The files
are read back by :mod:`mmsin.data.nsynth`; the cache and the entry point ``build`` are
:mod:`mmsin.data.build`'s. See docs/data.md for sizes, timings and licences.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mmsin.data.augment import AugmentSpec, add_floor, draw_augmentation, reverberate
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
    NOTE_SILENCE_PEAK,
    DataError,
    problem_line,
    skipped_summary,
    velocity_split,
)
from mmsin.data.instruments import (
    ALL_GROUPS,
    DEFAULT_RANGE,
    FAMILY_PROGRAMS,
    HELDOUT_INSTRUMENTS,
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
    read_presets,
    render_note,
)
from mmsin.io import save_audio

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


def _preset_label(p: Preset) -> str:
    return f"{p.soundfont.name} bank {p.bank} program {p.program} ({p.name})"


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
                x = add_floor(x, NSYNTH_FS, aug, note_str, spec.augment.seed)  # type: ignore[union-attr]
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
