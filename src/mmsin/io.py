"""Audio files in and out: reading, down-mixing, resampling and peak normalisation.

Every failure is raised as :class:`AudioError`, a one-line message naming the file and the
problem, so that command-line tools can print it without a traceback. What the reader does
with each kind of messy input (see also ``docs/reliability.md``):

==========================================  ==================================================
input                                       what happens
==========================================  ==================================================
missing path, folder, FIFO/device           AudioError ("no such file", "is a folder", ...)
empty (0-byte) file                         AudioError ("empty file (0 bytes)")
not audio (any extension), bad header       AudioError ("not readable as audio (...)")
valid header, zero samples                  AudioError ("contains no samples")
truncated WAV (data chunk shorter than      the readable part is used and a warning is logged;
its header says), truncated FLAC/MP3        ``truncated="error"`` makes it an AudioError
NaN or infinite samples                     AudioError (count and first position)
all-silent clip                             kept (warning logged); ``silent="error"`` refuses
shorter than ``min_samples`` (after         AudioError ("too short: ...")
resampling)
stereo / multichannel                       averaged to mono (logged at INFO); ``mono=False``
                                            keeps the channels
8/16/24/32-bit integer, 32/64-bit float     read as float32 in [-1, 1] (integer formats)
other sample rates                          resampled to ``fs`` with soxr (VHQ)
sample rate below 100 Hz                    AudioError (implausible; guards the up-sampler)
very long files                             read block by block (never one allocation of
                                            the header's frame count); ``iter_audio_blocks``
                                            streams without holding the file in memory
unicode and spaces in paths                 supported
==========================================  ==================================================

Outputs (:func:`check_output_file`, :func:`check_output_folder`, :func:`check_fits`) are
checked before any work starts, and raise :class:`OutputError` (one line): a folder given as
an output file, a file given as a folder (or in the way of one), a place the process cannot
write, or a size that the available memory or disk cannot hold. Missing parent folders are
created, once the nearest existing one is known to be writable. Files are written atomically
(temporary file + rename) with the usual permissions (0666 less the umask).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

#: File endings read as audio (decoders come from libsndfile through soundfile).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

#: Lowest sample rate accepted from a file header, in Hz. Lower rates are almost always a
#: corrupt header, and up-sampling them to ``fs`` would multiply the memory by ``fs / rate``.
MIN_FILE_SAMPLE_RATE = 100

#: Samples (frames x channels) decoded per read. It bounds the memory of a read whatever the
#: header claims (a corrupt frame count cannot trigger a huge allocation), and it is small
#: because a decoder error discards the whole read in progress: a truncated FLAC keeps all
#: but its last partial block.
_READ_SAMPLES = 1 << 15

Policy = Literal["keep", "error"]


class OutputError(ValueError):
    """An output the command cannot write; the message names the path and the problem."""


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def resample(x: np.ndarray, fs_in: int, fs_out: int) -> np.ndarray:
    """Resample along the last axis with soxr's very-high-quality band-limited resampler.

    Parameters
    ----------
    x : ndarray, shape (..., time), float
        Signal(s) at ``fs_in`` Hz.
    fs_in, fs_out : int
        Sample rates in Hz.

    Returns
    -------
    ndarray, shape (..., time * fs_out / fs_in), float32
    """
    x = np.asarray(x, dtype=np.float32)
    if fs_in == fs_out:
        return x
    if x.ndim == 1:
        return soxr.resample(x, fs_in, fs_out, quality="VHQ").astype(np.float32)
    flat = x.reshape(-1, x.shape[-1])
    # soxr treats a 2-D array as (time, channels).
    out = soxr.resample(flat.T, fs_in, fs_out, quality="VHQ").T
    return np.ascontiguousarray(out.reshape(*x.shape[:-1], -1), dtype=np.float32)


def normalize_peak(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each clip (last axis) to peak amplitude 1, i.e. into [-1, 1] (paper section 5.1).

    An all-zero clip is returned unchanged (there is nothing to scale).
    """
    x = np.asarray(x, dtype=np.float32)
    peak = np.max(np.abs(x), axis=-1, keepdims=True)
    return np.where(peak > eps, x / np.maximum(peak, eps), x).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Reading


def _check_path(p: Path) -> None:
    """Refuse paths that are not regular, non-empty, readable files (one-line AudioError)."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AudioError(p, "no such file") from None
    except OSError as exc:
        raise AudioError(p, f"cannot access ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(p, "is a folder, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or a device such as /dev/zero would be read forever.
        raise AudioError(p, "not a regular file")
    if st.st_size == 0:
        raise AudioError(p, "empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise AudioError(p, "permission denied")


def _wav_missing_bytes(p: Path) -> int:
    """Bytes missing from the data chunk of a RIFF/WAVE file (0 if complete or not a WAV).

    libsndfile silently shortens a WAV whose ``data`` chunk is cut off, so the size the header
    declares is compared with the bytes actually present. Sizes 0 and 0xFFFFFFFF are the
    "unknown length" markers of streaming writers and are not counted as truncation.
    """
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return 0
            pos = 12
            # Walk at most a few hundred chunks; a corrupt header must not loop for long.
            for _ in range(256):
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return 0
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    if csize in (0, 0xFFFFFFFF):
                        return 0
                    return max(0, csize - (size - (pos + 8)))
                pos += 8 + csize + (csize & 1)
    except OSError:
        return 0
    return 0


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the audio.

    Attributes
    ----------
    frames : int
        Frames the header declares (a truncated WAV's readable frames; see :func:`load_audio`).
    fs : int
        Sample rate in Hz.
    channels : int
        Number of channels.
    format, subtype : str
        libsndfile's container and sample format names (``WAV``, ``PCM_16``, ...).
    """

    frames: int
    fs: int
    channels: int
    format: str
    subtype: str

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return self.frames / self.fs


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read an audio file's header (no decoding), with the same one-line errors as
    :func:`load_audio`.

    Raises
    ------
    AudioError
        Missing, not a regular file, empty, not audio, or an implausible header.
    """
    p = Path(path)
    _check_path(p)
    try:
        with sf.SoundFile(str(p)) as f:
            info = AudioInfo(int(f.frames), int(f.samplerate), int(f.channels), f.format, f.subtype)
    except Exception as exc:  # libsndfile reports every malformed file differently
        raise AudioError(p, f"not readable as audio ({_first_line(exc)})") from None
    if info.fs < MIN_FILE_SAMPLE_RATE:
        raise AudioError(p, f"implausible sample rate {info.fs} Hz (corrupt header?)")
    if info.channels < 1:
        raise AudioError(p, f"implausible channel count {info.channels} (corrupt header?)")
    return info


def _finite_or_raise(p: Path, block: np.ndarray, offset: int) -> None:
    if not np.all(np.isfinite(block)):
        bad = ~np.isfinite(block)
        first = int(np.argmax(bad.any(axis=1))) + offset
        raise AudioError(
            p, f"contains {int(bad.sum())} NaN or infinite samples (first at frame {first})"
        )


def _raw_blocks(
    p: Path, *, max_seconds: float | None, truncated: Policy
) -> tuple[int, int, Iterator[np.ndarray]]:
    """Open ``p`` and return (sample rate, channels, iterator over (frames, channels) blocks).

    The blocks are float32 at the file's own rate, checked to be finite. Truncation (a WAV data
    chunk shorter than its header says, or a decoder error after some audio was read) is either
    logged and the readable part used, or raised, according to ``truncated``.
    """
    _check_path(p)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    missing = _wav_missing_bytes(p)
    if missing and truncated == "error":
        raise AudioError(p, f"truncated WAV: data chunk is {missing} bytes short of its header")
    try:
        f = sf.SoundFile(str(p))
    except Exception as exc:  # libsndfile reports every malformed file differently
        raise AudioError(p, f"not readable as audio ({_first_line(exc)})") from None
    try:
        sr, channels = int(f.samplerate), int(f.channels)
    except Exception as exc:
        f.close()
        raise AudioError(p, f"not readable as audio ({_first_line(exc)})") from None
    if sr < MIN_FILE_SAMPLE_RATE:
        f.close()
        raise AudioError(p, f"implausible sample rate {sr} Hz (corrupt header?)")
    if channels < 1:
        f.close()
        raise AudioError(p, f"implausible channel count {channels} (corrupt header?)")
    limit = None if max_seconds is None else int(max_seconds * sr)
    block_frames = max(1, _READ_SAMPLES // channels)

    def blocks() -> Iterator[np.ndarray]:
        done = 0
        with f:
            if missing:
                log.warning(
                    "%s: truncated WAV (data chunk %d bytes short of its header); "
                    "using the readable part",
                    p,
                    missing,
                )
            while limit is None or done < limit:
                want = block_frames if limit is None else min(block_frames, limit - done)
                try:
                    block = f.read(frames=want, dtype="float32", always_2d=True)
                except Exception as exc:
                    if done == 0:
                        raise AudioError(p, f"not readable as audio ({_first_line(exc)})") from None
                    if truncated == "error":
                        raise AudioError(
                            p, f"truncated or corrupt after {done} frames ({_first_line(exc)})"
                        ) from None
                    log.warning(
                        "%s: truncated or corrupt after %d frames (%s); using the readable part",
                        p,
                        done,
                        _first_line(exc),
                    )
                    return
                if block.shape[0] == 0:
                    return
                _finite_or_raise(p, block, done)
                done += block.shape[0]
                yield block
                if block.shape[0] < want:
                    return

    return sr, channels, blocks()


def _first_line(exc: BaseException) -> str:
    """The first line of libsndfile's message, reworded where it would mislead."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    # libsndfile says this for content no decoder accepts, although the file exists.
    if "does not exist or is not a regular file" in line:
        return "unknown or corrupt format"
    # The path is already at the front of AudioError's message; drop libsndfile's copy.
    line = re.sub(r"^Error opening .*?: ", "", line)
    return line.removeprefix("Error : ")


def _downmix(block: np.ndarray, mono: bool) -> np.ndarray:
    """(frames, channels) -> (frames,) averaged if ``mono`` else (frames, channels)."""
    return block.mean(axis=1, dtype=np.float32) if mono else block


def iter_audio_blocks(
    path: str | os.PathLike[str],
    block_seconds: float = 60.0,
    fs: int | None = 4096,
    *,
    mono: bool = True,
    max_seconds: float | None = None,
    truncated: Policy = "keep",
) -> Iterator[np.ndarray]:
    """Stream a (long) audio file block by block, down-mixed and resampled on the fly.

    Only one block of the file is in memory at a time: decoding is done in bounded reads and
    resampling with soxr's streaming resampler, whose concatenated output equals the one-shot
    :func:`resample` of the whole file. Concatenating the blocks therefore gives exactly
    :func:`load_audio` ``(path, fs, mono=mono, max_seconds=max_seconds)``.

    Parameters
    ----------
    path : path-like
        Audio file (any format libsndfile reads).
    block_seconds : float
        Length of each yielded block in seconds at ``fs``.
    fs : int or None
        Target sample rate in Hz; None keeps the file's own rate.
    mono : bool
        Average the channels (logged at INFO when there are several).
    max_seconds : float or None
        Read at most this many seconds from the start of the file.
    truncated : {"keep", "error"}
        What to do with a truncated file: use the readable part (a warning is logged) or raise.

    Yields
    ------
    ndarray, shape (block,) if mono else (channels, block), float32, at ``fs`` Hz
        ``block = round(block_seconds * fs)`` samples, except the last block (shorter, never
        empty).

    Raises
    ------
    AudioError
        Missing, unreadable, empty or non-finite audio (raised while iterating for faults found
        inside the file).
    """
    p = Path(path)
    sr, channels, blocks = _raw_blocks(p, max_seconds=max_seconds, truncated=truncated)
    out_fs = sr if fs is None else int(fs)
    size = round(block_seconds * out_fs)
    if size < 1:
        raise ValueError(f"block_seconds={block_seconds} gives blocks of less than one sample")
    if mono and channels > 1:
        log.info("%s: down-mixing %d channels to mono", p, channels)
    width = 1 if mono else channels
    stream = (
        None
        if out_fs == sr
        else soxr.ResampleStream(sr, out_fs, width, dtype="float32", quality="VHQ")
    )
    pending: list[np.ndarray] = []
    n_pending = 0
    total = 0

    def convert(block: np.ndarray, last: bool) -> np.ndarray:
        y = _downmix(block, mono)
        if stream is not None:
            y = stream.resample_chunk(y, last=last)
        return np.asarray(y, dtype=np.float32)

    def emit(buf: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(buf if mono else buf.T, dtype=np.float32)

    read = 0  # frames decoded at the file's rate
    for block in blocks:
        read += block.shape[0]
        y = convert(block, last=False)
        if len(y):
            pending.append(y)
            n_pending += len(y)
        while n_pending >= size:
            buf = np.concatenate(pending)
            pending, n_pending = [buf[size:]], n_pending - size
            total += size
            yield emit(buf[:size])
    if stream is not None:
        tail = convert(np.zeros((0, channels), np.float32), last=True)
        if len(tail):
            pending.append(tail)
            n_pending += len(tail)
    while n_pending > 0:
        buf = np.concatenate(pending)
        take = min(size, n_pending)
        pending, n_pending = [buf[take:]], n_pending - take
        total += take
        yield emit(buf[:take])
    if total == 0:
        if read == 0:
            raise AudioError(p, "contains no samples")
        raise AudioError(p, f"too short: {read} samples at {sr} Hz give none at {out_fs} Hz")


def load_audio(
    path: str | os.PathLike[str],
    fs: int | None = 4096,
    *,
    mono: bool = True,
    normalize: bool = False,
    max_seconds: float | None = None,
    min_samples: int | None = None,
    silent: Policy = "keep",
    truncated: Policy = "keep",
) -> np.ndarray:
    """Read an audio file as float32, down-mixed to mono and resampled to ``fs``.

    Parameters
    ----------
    path : path-like
        Any format libsndfile reads (WAV of every bit depth, FLAC, OGG, MP3 where supported).
    fs : int or None
        Target sample rate in Hz; None keeps the file's own rate.
    mono : bool
        Average the channels (the documented fix-up for stereo and multichannel files, logged
        at INFO).
    normalize : bool
        Scale the clip to peak 1.
    max_seconds : float or None
        Read at most this many seconds from the start (for long files).
    min_samples : int or None
        Refuse clips with fewer samples than this at ``fs`` (callers pass ``2**J`` to refuse
        clips shorter than one scattering frame).
    silent : {"keep", "error"}
        An all-zero clip is kept with a logged warning, or refused.
    truncated : {"keep", "error"}
        A truncated file's readable part is used with a logged warning, or the file is refused.

    Returns
    -------
    ndarray, shape (time,) if mono else (channels, time), float32, at ``fs`` Hz.

    Raises
    ------
    AudioError
        Missing, unreadable, empty, non-finite, too short (or, by option, silent or truncated)
        audio; the message names the file and the problem on one line.
    """
    p = Path(path)
    parts = list(
        iter_audio_blocks(p, 3600.0, fs, mono=mono, max_seconds=max_seconds, truncated=truncated)
    )
    x = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    n = x.shape[-1]
    if min_samples is not None and n < min_samples:
        rate = "the file's rate" if fs is None else f"{fs} Hz"
        raise AudioError(p, f"too short: {n} samples at {rate}, need at least {min_samples}")
    if not np.any(x):
        if silent == "error":
            raise AudioError(p, "all samples are zero (silent clip)")
        log.warning("%s: all samples are zero (silent clip); keeping it", p)
    if normalize:
        x = normalize_peak(x)
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Writing


def save_audio(
    path: str | os.PathLike[str], x: np.ndarray, fs: int, *, subtype: str = "PCM_16"
) -> Path:
    """Write a mono (time,) or (channels, time) signal, atomically (temp file + rename).

    Samples are clipped to [-1, 1] for integer subtypes. A reader never sees a half-written
    file: the data go to a temporary file in the same folder, renamed over ``path`` at the end.

    Parameters
    ----------
    path : path-like
        Output file; the format follows the extension (``.wav`` if there is none).
    x : ndarray, shape (time,) or (channels, time), float
        Samples, nominally in [-1, 1].
    fs : int
        Sample rate in Hz.
    subtype : str
        libsndfile subtype (``PCM_16``, ``PCM_24``, ``FLOAT``, ...).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    AudioError
        Non-finite samples, more than two axes, or a write the format refuses.
    """
    p = Path(path)
    y = np.asarray(x, dtype=np.float32)
    if y.ndim not in (1, 2):
        raise AudioError(p, f"cannot write an array of shape {y.shape}; need (time,) or (ch, time)")
    if not np.all(np.isfinite(y)):
        raise AudioError(p, "refusing to write NaN or infinite samples")
    if subtype.startswith("PCM"):
        y = np.clip(y, -1.0, 1.0)
    data = y.T if y.ndim == 2 else y
    check_output_file(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=p.suffix or ".wav")
    os.close(fd)
    try:
        try:
            sf.write(tmp, data, fs, subtype=subtype, format=(p.suffix[1:] or "wav").upper())
        except (sf.LibsndfileError, ValueError, TypeError, RuntimeError) as exc:
            raise AudioError(p, f"cannot write ({_first_line(exc)})") from None
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def save_array(path: str | os.PathLike[str], arr: np.ndarray) -> Path:
    """``np.save`` atomically (temporary file + rename), with the usual permissions."""
    p = check_output_file(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# Output checks


def _nearest_existing(p: Path) -> Path:
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_folder_writable(target: Path, folder: Path) -> None:
    """``folder`` (existing) must be a folder this process can create files in; probed with a
    real temporary file, so read-only mounts and root-owned places are caught too."""
    if not folder.is_dir():
        raise OutputError(f"{target}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mmsin-write-test-")
    except OSError as exc:
        raise OutputError(
            f"{target}: cannot write in {folder} ({exc.strerror or exc.__class__.__name__})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``path`` can be written as a file; returns it.

    Refused (:class:`OutputError`): an existing folder, an existing file that cannot be
    replaced, a parent that is a file, a place this process cannot write. A missing parent
    folder is fine (it is created on writing) when its nearest existing ancestor is writable.
    """
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise OutputError(f"{path!s}: not a file name")
    if p.is_dir():
        raise OutputError(f"{p}: is a folder; give a file name (e.g. {p / 'out'}.wav)")
    if p.exists() and not p.is_file():
        raise OutputError(f"{p}: exists and is not a regular file")
    _check_folder_writable(p, _nearest_existing(p.parent))
    return p


def check_output_folder(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that ``path`` is (or can be created as) a writable folder."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{p}: is a file, not a folder")
    _check_folder_writable(p, _nearest_existing(p))
    return p


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not Linux/macOS
        return 1 << 62


def format_bytes(n: float) -> str:
    """``1234567`` -> ``'1.2 MB'`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_fits(what: str, memory: float, disk: float, folder: str | os.PathLike[str]) -> None:
    """Refuse (:class:`OutputError`) a job whose working memory or files would not fit.

    Parameters
    ----------
    what : str
        What is asked for, as the user gave it (``"--seconds 1e9"``): the message starts so.
    memory, disk : float
        Bytes of memory the job needs at its peak and bytes its files take on disk.
    folder : path-like
        Where the files go (its nearest existing ancestor's file system is asked).
    """
    import shutil

    have = available_memory()
    if memory > have:
        raise OutputError(
            f"{what} needs about {format_bytes(memory)} of memory, more than the "
            f"{format_bytes(have)} available; ask for less"
        )
    free = shutil.disk_usage(_nearest_existing(Path(folder))).free
    if disk > free:
        raise OutputError(
            f"{what} would write about {format_bytes(disk)} to {folder}, more than the "
            f"{format_bytes(free)} free there; ask for less"
        )
