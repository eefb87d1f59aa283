"""The clip container shared by every loader, the data error, and the split rules.

Split rules (documented in docs/data.md):

* :func:`velocity_split` -- the paper's NSynth rule (section 5.1): for each instrument, one of
  its velocities, picked at random (seeded), goes to test; the rest is train.
* :func:`samplernn_split` -- SampleRNN's Beethoven rule: the extracts, in lexicographic order of
  their names, are shuffled with Python's ``random.seed(123)``; the last 512 are split into 256
  valid and 256 test. For sets smaller than SampleRNN's the hold-out is scaled down:
  ``k = min(256, max(1, n // 10))`` valid and ``k`` test (exactly 256 from 2,560 extracts up,
  so the real set of 4,340 gets SampleRNN's split).
* :func:`seeded_split` -- any folder of audio: a seeded permutation, fractions valid/test.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Split names every loader accepts (the NSynth rule has no "valid"; see its loader).
SPLITS = ("train", "valid", "test", "all")

#: Music extracts whose RMS before normalisation is below this (-60 dBFS) count as silent.
SILENCE_RMS = 1e-3

#: Single notes whose peak is below this (-80 dBFS) count as silent. Notes use a lower bar
#: than music: a soft (velocity 25) note is legitimately quiet, with RMS near 1e-3.
NOTE_SILENCE_PEAK = 1e-4


class DataError(ValueError):
    """A data set that is missing or malformed; the message names the path and the problem."""


@dataclass
class Clips:
    """Fixed-length audio clips with one metadata dict each.

    Attributes
    ----------
    audio : ndarray, shape (n, time), float32
        Mono clips at ``fs`` Hz, each scaled to peak 1 (values in [-1, 1]) unless the loader
        was asked not to normalise.
    fs : int
        Sample rate in Hz.
    meta : list of dict
        One per clip; at least ``name``. NSynth adds ``pitch``, ``velocity``,
        ``instrument_str``, ``family``, ``source``.
    split : str
        ``"train"``, ``"valid"``, ``"test"`` or ``"all"``.
    source : str
        Where the clips came from (a path or a look-alike name).
    dropped : int
        Clips dropped as silent (see :data:`SILENCE_RMS`, :data:`NOTE_SILENCE_PEAK`), counted,
        not returned.
    skipped : list of (str, str)
        Files that could not be used, as ``(path, problem)``: unreadable, empty, non-audio,
        non-finite samples, or shorter than half a clip. They are logged (one WARNING line per
        load) and left out; the load fails only when no file is usable.
    """

    audio: np.ndarray
    fs: int
    meta: list[dict] = field(default_factory=list)
    split: str = "train"
    source: str = ""
    dropped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.audio.ndim != 2:
            raise ValueError(f"Clips.audio must be (n, time), got shape {self.audio.shape}")
        if len(self.meta) != self.audio.shape[0]:
            raise ValueError(f"Clips: {self.audio.shape[0]} clips but {len(self.meta)} meta")

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    @property
    def seconds(self) -> float:
        """Duration of one clip in seconds."""
        return self.audio.shape[1] / self.fs


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    """Return ``split`` if it is one of ``allowed``, else raise ValueError."""
    if split not in allowed:
        raise ValueError(f"split {split!r}: expected one of {', '.join(allowed)}")
    return split


def velocity_split(
    instruments: Sequence[str], velocities: Sequence[int], *, seed: int = 0
) -> np.ndarray:
    """The paper's NSynth split: per instrument, one randomly picked velocity is test.

    Parameters
    ----------
    instruments, velocities : sequences of length n
        Instrument name and MIDI velocity of each note.
    seed : int
        Seeds the pick; instruments are visited in sorted order and their velocities sorted, so
        the result depends only on the set of notes, not on their order.

    Returns
    -------
    ndarray, shape (n,), bool: True for test notes.
    """
    inst = np.asarray(instruments, dtype=object)
    vel = np.asarray(velocities, dtype=np.int64)
    if inst.shape != vel.shape:
        raise ValueError(f"{inst.shape[0]} instruments but {vel.shape[0]} velocities")
    rng = np.random.default_rng(seed)
    test = np.zeros(vel.shape, dtype=bool)
    for name in sorted(set(inst.tolist())):
        mine = inst == name
        choices = np.unique(vel[mine])
        picked = choices[rng.integers(len(choices))]
        test |= mine & (vel == picked)
    return test


def samplernn_holdout(n: int) -> int:
    """Number of valid (= number of test) extracts: 256, scaled down below 2,560 extracts."""
    return min(256, max(1, n // 10))


def samplernn_split(names: Sequence[str], *, seed: int = 123) -> dict[str, list[int]]:
    """SampleRNN's Beethoven split of extracts named ``names``.

    SampleRNN sorts the file names (lexicographically: p0, p1, p10, ...), shuffles the list with
    ``random.seed(123); random.shuffle`` and keeps the last 512 for valid (first 256 of them) and
    test (last 256). With ``k = samplernn_holdout(n)`` the same reads: the last ``2k``.

    Returns
    -------
    dict with keys train, valid, test, all: indices into ``names``.
    """
    n = len(names)
    if n < 3:
        raise ValueError(f"need at least 3 extracts to split, got {n}")
    order = sorted(range(n), key=lambda i: names[i])
    random.Random(seed).shuffle(order)  # same sequence as random.seed(seed); random.shuffle
    k = samplernn_holdout(n)
    return {
        "train": order[: n - 2 * k],
        "valid": order[n - 2 * k : n - k],
        "test": order[n - k :],
        "all": order,
    }


def seeded_split(
    n: int, *, seed: int = 0, valid: float = 0.1, test: float = 0.1
) -> dict[str, list[int]]:
    """A seeded random split of ``n`` items into train/valid/test by fractions.

    Valid and test get ``round(fraction * n)`` items each (at least one each when ``n >= 3`` and
    the fraction is positive); train gets the rest.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"valid={valid}, test={test}: fractions must be in [0, 1), sum < 1")
    perm = np.random.default_rng(seed).permutation(n).tolist()

    def size(frac: float) -> int:
        k = round(frac * n)
        return max(k, 1) if frac > 0 and n >= 3 else k

    nv, nt = size(valid), size(test)
    return {
        "train": perm[: n - nv - nt],
        "valid": perm[n - nv - nt : n - nt],
        "test": perm[n - nt :],
        "all": perm,
    }


def chop(x: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping extracts of ``length`` samples; the incomplete end is dropped.

    Returns ndarray, shape (len(x) // length, length), same dtype.
    """
    n = x.shape[-1] // length
    return x[: n * length].reshape(n, length)


def rms(x: np.ndarray) -> np.ndarray:
    """Root mean square along the last axis (float64)."""
    return np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64)), axis=-1))


def fit_length(x: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad the last axis to ``length`` samples."""
    if x.shape[-1] >= length:
        return x[..., :length]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, length - x.shape[-1])]
    return np.pad(x, pad)


def skipped_summary(
    skipped: Sequence[tuple[str, str]], root: str | os.PathLike[str] | None = None, limit: int = 5
) -> str:
    """One line listing skipped files: ``a.wav (problem); b.wav (problem); ... and N more``.

    Paths are shown relative to ``root`` when they lie under it (the root is named once by the
    caller, not repeated per file).
    """
    base = Path(root) if root is not None else None
    names = []
    for path, problem in skipped[:limit]:
        p = Path(path)
        if base is not None and p.is_relative_to(base) and p != base:
            p = p.relative_to(base)
        names.append(f"{p} ({' '.join(problem.split())})")
    more = len(skipped) - limit
    return "; ".join(names) + (f"; and {more} more" if more > 0 else "")


def report_skipped(
    log: logging.Logger,
    root: str | os.PathLike[str],
    skipped: Sequence[tuple[str, str]],
    total: int,
    what: str = "audio files",
) -> None:
    """Log one WARNING line: how many of ``total`` files under ``root`` were skipped, and which."""
    if skipped:
        log.warning(
            "%s: skipped %d of %d %s: %s",
            root,
            len(skipped),
            total,
            what,
            skipped_summary(skipped, root),
        )


def no_usable_audio(
    root: str | os.PathLike[str], skipped: Sequence[tuple[str, str]], what: str = "audio file"
) -> DataError:
    """The one-line error for a source where every file was skipped."""
    return DataError(
        f"{root}: no usable {what}; all {len(skipped)} skipped: {skipped_summary(skipped, root)}"
    )


def problem_line(exc: BaseException, path: str | os.PathLike[str]) -> str:
    """The problem of ``exc`` on one line, without a leading ``path:`` (named by the caller)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for prefix in (f"{path}: ", f"{Path(path).resolve()}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text
