"""Long files block by block: audio read in lockstep, .npy arrays and WAV files written as
they are computed, so that memory does not grow with the length of a recording.

Three pieces, used by ``mmsin encode / decode / generate`` (:mod:`mmsin.cli.model`) with the
block transforms of :mod:`mmsin.streaming`:

- :func:`scan_audio` and :func:`audio_blocks`: a first pass finds each file's length and peak
  at the model's rate, a second yields peak-normalised blocks of all files side by side, the
  shorter ones zero-padded at the end. Concatenated, the blocks are exactly what
  ``load_audio(path, fs, normalize=True)`` of each file gives, padded to the longest.
- :class:`NpyWriter`: an ``.npy`` array of known shape filled along its last axis (frames),
  each block written in place in the file (C order, as ``np.save`` writes it).
- :class:`WavWriter`: WAV files peak-normalised as :func:`mmsin.io.save_audio` of
  :func:`mmsin.io.normalize_peak` writes them. The peak is known only at the end, so the
  samples go to a float32 temporary file first (4 bytes a sample on disk, none in memory) and
  are scaled into the 16-bit WAV in a second pass.

Every output is written to a temporary file in its folder and renamed at the end: a reader
never sees a half-written file, and an error leaves no partial output behind.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import soundfile as sf

from mmsin.io import AudioError, _umask, check_output_file, iter_audio_blocks

__all__ = ["NpyWriter", "WavWriter", "audio_blocks", "scan_audio"]

log = logging.getLogger("mmsin.io")

#: Samples moved at a time when scaling a temporary float file into its WAV (4 MB of float32).
_COPY = 1 << 20

#: normalize_peak's floor on the peak (an all-zero clip is left unchanged).
_EPS = 1e-12


def _scaled(x: np.ndarray, peak: np.float32) -> np.ndarray:
    """``x`` divided by ``peak`` as :func:`mmsin.io.normalize_peak` divides a whole clip."""
    p = np.asarray([peak], dtype=np.float32)
    return np.where(p > _EPS, x / np.maximum(p, _EPS), x).astype(np.float32)


def scan_audio(
    path: str | os.PathLike[str], fs: int, *, min_samples: int, block_seconds: float
) -> tuple[int, np.float32]:
    """Length in samples at ``fs`` and peak |x| of an audio file, read block by block.

    The checks of :func:`mmsin.io.load_audio`: unreadable, empty or non-finite audio and
    audio shorter than ``min_samples`` raise :class:`mmsin.io.AudioError`.
    """
    n, peak = 0, np.float32(0.0)
    for block in iter_audio_blocks(path, block_seconds, fs):
        n += block.shape[-1]
        peak = max(peak, np.float32(np.abs(block).max()))
    if n < min_samples:
        raise AudioError(
            Path(path), f"too short: {n} samples at {fs} Hz, need at least {min_samples}"
        )
    if peak == 0:
        log.warning("%s: all samples are zero (silent clip); keeping it", path)
    return n, peak


def audio_blocks(
    paths: Sequence[str | os.PathLike[str]],
    fs: int,
    peaks: Sequence[np.float32],
    length: int,
    *,
    block_seconds: float,
) -> Iterator[np.ndarray]:
    """Peak-normalised blocks (n_files, t) of every file side by side, ``length`` samples in
    all, a file that has ended giving zeros (as the in-memory encoder pads to the longest)."""
    size = round(block_seconds * fs)
    streams = [iter_audio_blocks(p, block_seconds, fs) for p in paths]
    done = 0
    while done < length:
        t = min(size, length - done)
        out = np.zeros((len(paths), t), dtype=np.float32)
        for i, (stream, peak) in enumerate(zip(streams, peaks, strict=True)):
            block = next(stream, None)
            if block is not None:
                out[i, : block.shape[-1]] = _scaled(block, peak)[:t]
        done += t
        yield out


class _Atomic:
    """A temporary file beside ``path``, renamed over it by :meth:`commit`, removed otherwise."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path = check_output_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


class NpyWriter:
    """Write a float32 ``.npy`` array of known ``shape`` block by block along its last axis.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file (written atomically when the writer is closed without error).
    shape : tuple of int
        The whole array's shape, e.g. ``(channels, frames)`` or ``(n, channels, frames)``.

    Use as a context manager; :meth:`write` takes blocks of shape ``shape[:-1] + (k,)``.
    """

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, ...]) -> None:
        self._out = _Atomic(Path(path), ".npy")
        self.shape = tuple(int(s) for s in shape)
        self._rows = int(np.prod(self.shape[:-1]))
        self._filled = 0
        self._f = open(self._out.tmp, "r+b")
        header: dict[str, Any] = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._f, header)
        self._base = self._f.tell()
        self._f.truncate(self._base + 4 * self._rows * self.shape[-1])

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (shape[:-1] + (k,)) along the last axis."""
        k = block.shape[-1]
        if block.shape[:-1] != self.shape[:-1] or self._filled + k > self.shape[-1]:
            raise ValueError(
                f"block {block.shape} does not fit at frame {self._filled} of {self.shape}"
            )
        rows = np.ascontiguousarray(block, dtype="<f4").reshape(self._rows, k)
        for r in range(self._rows):  # each row of the C-order array is contiguous in the file
            self._f.seek(self._base + 4 * (r * self.shape[-1] + self._filled))
            self._f.write(rows[r].tobytes())
        self._filled += k

    def close(self, ok: bool = True) -> Path:
        """Finish (rename into place) if ``ok`` and every frame was written; else discard."""
        self._f.close()
        if ok and self._filled != self.shape[-1]:
            self._out.discard()
            raise RuntimeError(f"{self._out.path}: {self._filled} of {self.shape[-1]} written")
        if ok:
            self._out.commit()
        else:
            self._out.discard()
        return self._out.path

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(ok=kind is None)


class WavWriter:
    """Write ``n`` signals, fed block by block, as peak-normalised 16-bit WAV files.

    The result equals ``save_audio(path, normalize_peak(x), fs)`` of each whole signal ``x``.

    Parameters
    ----------
    paths : sequence of path-like
        One WAV file per signal.
    fs : int
        Sample rate in Hz.

    Use as a context manager; :meth:`write` takes blocks of shape ``(n, t)``.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], fs: int) -> None:
        self.fs = int(fs)
        self.paths = [check_output_file(p) for p in paths]
        self._raw: list[_Atomic] = []
        self._files: list[Any] = []
        for p in self.paths:
            self._raw.append(_Atomic(p, ".f32"))
            self._files.append(open(self._raw[-1].tmp, "wb"))
        self.peaks = [np.float32(0.0)] * len(self.paths)
        self.samples = 0

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (n, t), float, to the n signals."""
        y = np.asarray(block, dtype=np.float32)
        if y.ndim != 2 or y.shape[0] != len(self.paths):
            raise ValueError(f"expected a ({len(self.paths)}, t) block, got {y.shape}")
        if not np.all(np.isfinite(y)):
            raise AudioError(self.paths[0], "refusing to write NaN or infinite samples")
        for i, f in enumerate(self._files):
            f.write(y[i].tobytes())
            if y.shape[1]:
                self.peaks[i] = max(self.peaks[i], np.float32(np.abs(y[i]).max()))
        self.samples += y.shape[1]

    def close(self, ok: bool = True) -> list[Path]:
        """Scale each temporary float file into its WAV (if ``ok``); remove the temporaries."""
        for f in self._files:
            f.close()
        try:
            if ok:
                for path, raw, peak in zip(self.paths, self._raw, self.peaks, strict=True):
                    self._finish(path, raw.tmp, peak)
        finally:
            for raw in self._raw:
                raw.discard()
        return self.paths

    def _finish(self, path: Path, raw: Path, peak: np.float32) -> None:
        out = _Atomic(path, path.suffix or ".wav")
        try:
            fmt = (path.suffix[1:] or "wav").upper()
            with (
                open(raw, "rb") as src,
                sf.SoundFile(out.tmp, "w", self.fs, 1, subtype="PCM_16", format=fmt) as dst,
            ):
                while True:
                    x = np.fromfile(src, dtype=np.float32, count=_COPY)
                    if not x.size:
                        break
                    dst.write(np.clip(_scaled(x, peak), -1.0, 1.0))
            out.commit()
        finally:
            out.discard()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(ok=kind is None)
