"""Data sets: loaders for NSynth, SampleRNN's Beethoven set and any folder of audio, and the
offline look-alikes rendered from real sampled instruments.

* :func:`load_clips` -- one entry point for every source, returning :class:`Clips`.
* :func:`build` -- render ``nsynth-like`` or ``beethoven-like``, or write ``real-notes``
  (recorded piano notes, :mod:`mmsin.data.real`) or ``real-guitar`` (recorded guitar notes,
  :mod:`mmsin.data.real_guitar`; both split ``heldout`` only), all cached.
* :class:`DataError` -- a missing or malformed data set (one line naming the path).

docs/data.md describes the sources, split rules, silence handling and licences.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from mmsin.data.clips import Clips, DataError

# Import the builder module before the function ``build`` below is defined. Importing a
# submodule binds its name on the package, so a first ``import mmsin.data.build`` made later
# (by a test, or lazily inside ``build``) would replace the function with the module and
# ``from mmsin.data import build; build(...)`` would fail with "'module' object is not
# callable". Once the module is in ``sys.modules`` no later import rebinds the name.
_builders = importlib.import_module("mmsin.data.build")

__all__ = ["LOOKALIKES", "Clips", "DataError", "build", "describe", "load_clips", "resolve"]

#: Names of the built look-alikes and the command that builds each.
LOOKALIKES = ("nsynth-like", "beethoven-like")


def build(
    kind: str,
    size: str = "small",
    root: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Build an offline look-alike; see :func:`mmsin.data.build.build`."""
    return _builders.build(kind, size, root, progress=progress)


def resolve(source: str | os.PathLike[str], size: str = "small") -> tuple[Path, str]:
    """Map a source to ``(path, format)``, format in ``nsynth``, ``beethoven``, ``folder``.

    A look-alike name resolves to ``paths.data_dir() / f"{name}-{size}"``, which must have been
    built. A path is recognised by its content: ``examples.json`` (here or one level down) is
    NSynth; ``music_{train,valid,test}.npy`` or a ``.npy`` file is SampleRNN's Beethoven;
    a folder of files named like SampleRNN's extracts (``p<number>.flac``/``.wav``) is Beethoven;
    any other folder of audio is a plain folder.

    Raises
    ------
    DataError
        Not built, missing, or nothing recognisable there.
    """
    from mmsin import paths
    from mmsin.data.beethoven import is_array_tree
    from mmsin.data.nsynth import is_nsynth

    name = str(source)
    if name in ("real-notes", "real-guitar"):  # recorded notes: one size each
        root = paths.data_dir() / name
        if not (root / "build.json").is_file():
            raise DataError(f"{root}: not built; run `mmsin data build {name}`")
        return root, "nsynth"
    if name in LOOKALIKES:
        root = paths.data_dir() / f"{name}-{size}"
        if not (root / "build.json").is_file():
            hint = "" if size == "small" else f" --size {size}"
            raise DataError(
                f"{root}: the {name} data set ({size}) is not built; "
                f"run `mmsin data build {name}{hint}`"
            )
        return root, "nsynth" if name == "nsynth-like" else "beethoven"
    p = Path(source).expanduser()
    if not p.exists():
        raise DataError(
            f"{p}: no such file or folder (and not one of the names {', '.join(LOOKALIKES)})"
        )
    if p.is_file():
        if p.suffix == ".npy":
            return p, "beethoven"
        raise DataError(f"{p}: a single file; expected a data-set folder or a .npy array")
    if is_nsynth(p):
        return p, "nsynth"
    if is_array_tree(p):
        return p, "beethoven"
    import re

    from mmsin.data.folder import audio_files

    files = audio_files(p)
    if not files:
        raise DataError(f"{p}: no NSynth examples.json, no music_*.npy and no audio files")
    if all(re.fullmatch(r"p\d+", f.stem) for f in files):
        return p, "beethoven"
    return p, "folder"


def load_clips(
    source: str | os.PathLike[str],
    split: str = "train",
    *,
    fs: int = 4096,
    **options: Any,
) -> Clips:
    """Load fixed-length, peak-normalised mono clips from any supported source.

    Parameters
    ----------
    source : str or path
        ``"nsynth-like"`` or ``"beethoven-like"`` (built look-alikes, ``size="small"`` unless
        ``size=`` is given), an NSynth tree, a SampleRNN Beethoven tree or ``.npy`` array, or
        any folder of audio files.
    split : {"train", "valid", "test", "all", "heldout"}
        NSynth's velocity rule has only train and test; ``heldout`` (NSynth format only) is
        the notes of instruments never seen in training, which the nsynth-like look-alike
        holds (docs/data.md), never part of train, test or all.
    fs : int
        Output sample rate in Hz (the paper: 4096).
    **options
        ``size`` (look-alikes), ``kind`` (force ``"nsynth"``, ``"beethoven"`` or ``"folder"``),
        and the keyword options of :func:`~mmsin.data.nsynth.load_nsynth`,
        :func:`~mmsin.data.beethoven.load_beethoven` or :func:`~mmsin.data.folder.load_folder`.

    Returns
    -------
    Clips: NSynth-format clips are the first 2 s (8192 samples at 4096 Hz); Beethoven extracts
    8 s (32768); folder extracts ``seconds`` (default 8 s).
    """
    size = options.pop("size", "small")
    kind = options.pop("kind", None)
    path, detected = resolve(source, size)
    kind = kind or detected
    if kind == "nsynth":
        from mmsin.data.nsynth import load_nsynth

        if str(source) == "real-guitar":  # not the paper's keyboards and flutes
            options.setdefault("families", ("guitar",))
        clips = load_nsynth(path, split, fs=fs, **options)
    elif kind == "beethoven":
        from mmsin.data.beethoven import load_beethoven

        clips = load_beethoven(path, split, fs=fs, **options)
    elif kind == "folder":
        from mmsin.data.folder import load_folder

        clips = load_folder(path, split, fs=fs, **options)
    else:
        raise ValueError(f"kind {kind!r}: expected 'nsynth', 'beethoven' or 'folder'")
    if str(source) in LOOKALIKES:
        clips.source = str(source)
    return clips


def describe(source: str | os.PathLike[str], size: str = "small") -> dict[str, Any]:
    """Summary of a data set without loading its audio; see :mod:`mmsin.data.info`."""
    from mmsin.data.info import describe as _describe

    return _describe(source, size)
