"""Rendering real sampled instruments offline: sound-font discovery, SF2 headers, fluidsynth.

Sound fonts are found in the Debian folders (``/usr/share/sounds/sf2``, ``/usr/share/sounds/sf3``)
and in the folders of ``$MMSIN_SOUNDFONTS`` (``:``-separated). Their presets are listed by reading
the SF2 ``pdta`` headers directly (no synthesiser needed), and each preset gets a fingerprint: a
hash of the PCM data of every sample it plays. Two presets with the same fingerprint are the same
recorded instrument, whatever their names (sound fonts copy each other's samples), so
de-duplicating on it counts *distinct* instruments.

Audio comes from Debian's ``libfluidsynth3`` through ``pyfluidsynth``, read as 32-bit float
through ``fluid_synth_write_float`` (``Synth.get_samples`` only offers 16-bit, which leaves a quiet
note with a handful of effective bits). No audio device is opened.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsin.data.clips import DataError, problem_line
from mmsin.data.instruments import MAX_BANK

#: Folders searched for sound fonts, after those in ``$MMSIN_SOUNDFONTS``.
SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/sounds/sf3"))

#: Preference order when the same instrument exists in several fonts (best recordings first).
SOUNDFONT_PRIORITY = (
    "MuseScore_General_Full.sf2",
    "MuseScore_General.sf2",
    "FluidR3_GM.sf2",
    "sf_GMbank.sf2",
    "TimGM6mb.sf2",
)

#: The Debian packages that ship each font, with its licence (recorded in docs/data.md).
SOUNDFONT_LICENCES = {
    "MuseScore_General_Full.sf2": ("musescore-general-soundfont-lossless", "MIT (parts PD/CC0)"),
    "FluidR3_GM.sf2": ("fluid-soundfont-gm", "MIT"),
    "sf_GMbank.sf2": ("csound-soundfont", "public domain"),
    "TimGM6mb.sf2": ("timgm6mb-soundfont", "GPL-2"),
}


@dataclass(frozen=True)
class Preset:
    """One preset of a sound font.

    Attributes
    ----------
    soundfont : Path
        The ``.sf2``/``.sf3`` file.
    bank, program : int
        MIDI bank and General MIDI program number (0-127).
    name : str
        The preset's name in the font.
    fingerprint : str
        SHA-1 over the sorted PCM hashes of every sample the preset plays ("" if it plays none).
    samples : frozenset of str
        The SHA-1 of each sample's PCM data: two presets share a recording where these meet.
    """

    soundfont: Path
    bank: int
    program: int
    name: str
    fingerprint: str
    samples: frozenset[str] = frozenset()


def find_soundfonts() -> list[Path]:
    """Sound-font files on this machine, best first (see :data:`SOUNDFONT_PRIORITY`).

    Symbolic links (Debian's ``default-GM.sf2``) are resolved and duplicates dropped.
    """
    dirs = [Path(d) for d in os.environ.get("MMSIN_SOUNDFONTS", "").split(os.pathsep) if d]
    dirs += list(SOUNDFONT_DIRS)
    seen: dict[Path, None] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in (".sf2", ".sf3") and p.exists():
                seen.setdefault(p.resolve(), None)

    def rank(p: Path) -> tuple[int, str]:
        names = list(SOUNDFONT_PRIORITY)
        return (names.index(p.name) if p.name in names else len(names), p.name)

    return sorted(seen, key=rank)


def _chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """RIFF sub-chunks of ``data[start:end]``: (id, payload start, payload end)."""
    pos = start
    while pos + 8 <= end:
        cid, size = struct.unpack_from("<4sI", data, pos)
        yield cid, pos + 8, min(pos + 8 + size, end)
        pos += 8 + size + (size & 1)


def read_presets(path: str | os.PathLike[str]) -> list[Preset]:
    """List the presets of an SF2/SF3 file with their sample fingerprints.

    Only the header lists (``pdta``: ``phdr``, ``pbag``, ``pgen``, ``inst``, ``ibag``, ``igen``,
    ``shdr``) and the sample bytes of each preset are read, following the SoundFont 2.04 layout:
    preset zone generator 41 names an instrument, instrument zone generator 53 a sample.

    Raises
    ------
    DataError
        Not a RIFF ``sfbk`` file or headers missing.
    """
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
            raise DataError(f"{p}: not a SoundFont 2 file (no RIFF sfbk header)")
        # Walk the three top LIST chunks without reading the (large) sample data.
        lists: dict[bytes, tuple[int, int]] = {}
        pos = 12
        size_total = p.stat().st_size
        while pos + 12 <= size_total:
            f.seek(pos)
            cid, size, kind = struct.unpack("<4sI4s", f.read(12))
            if cid == b"LIST":
                lists[kind] = (pos + 12, pos + 8 + size)
            pos += 8 + size + (size & 1)
        if b"pdta" not in lists or b"sdta" not in lists:
            raise DataError(f"{p}: SoundFont without pdta/sdta lists")
        s0, s1 = lists[b"sdta"]
        f.seek(s0)
        smpl_offset = -1
        pos = s0
        while pos + 8 <= s1:
            f.seek(pos)
            cid, size = struct.unpack("<4sI", f.read(8))
            if cid == b"smpl":
                smpl_offset = pos + 8
            pos += 8 + size + (size & 1)
        p0, p1 = lists[b"pdta"]
        f.seek(p0)
        pdta = f.read(p1 - p0)
        sub = {cid: pdta[a:b] for cid, a, b in _chunks(pdta, 0, len(pdta))}
        for need in (b"phdr", b"pbag", b"pgen", b"inst", b"ibag", b"igen", b"shdr"):
            if need not in sub:
                raise DataError(f"{p}: SoundFont header list {need.decode()} missing")
        phdr = list(struct.iter_unpack("<20sHHHIII", sub[b"phdr"]))
        pbag = list(struct.iter_unpack("<HH", sub[b"pbag"]))
        pgen = list(struct.iter_unpack("<HH", sub[b"pgen"]))
        inst = list(struct.iter_unpack("<20sH", sub[b"inst"]))
        ibag = list(struct.iter_unpack("<HH", sub[b"ibag"]))
        igen = list(struct.iter_unpack("<HH", sub[b"igen"]))
        shdr = list(struct.iter_unpack("<20sIIIIIBbHH", sub[b"shdr"]))
        sample_hash: dict[int, str] = {}

        def hash_sample(i: int) -> str:
            if i not in sample_hash:
                start, end = shdr[i][1], shdr[i][2]
                h = hashlib.sha1()
                if smpl_offset >= 0 and end > start:
                    # 16-bit PCM in SF2; in SF3 start/end are byte offsets of Ogg data.
                    step = 1 if p.suffix.lower() == ".sf3" else 2
                    f.seek(smpl_offset + step * start)
                    h.update(f.read(step * (end - start)))
                sample_hash[i] = h.hexdigest()
            return sample_hash[i]

        def instrument_samples(k: int) -> set[int]:
            out: set[int] = set()
            for b in range(inst[k][1], inst[k + 1][1]):
                for g in range(ibag[b][0], ibag[b + 1][0]):
                    if igen[g][0] == 53 and igen[g][1] < len(shdr) - 1:
                        out.add(igen[g][1])
            return out

        presets = []
        for j in range(len(phdr) - 1):  # the last record is the terminal "EOP"
            name, program, bank, bag0 = phdr[j][0], phdr[j][1], phdr[j][2], phdr[j][3]
            samples: set[int] = set()
            for b in range(bag0, phdr[j + 1][3]):
                for g in range(pbag[b][0], pbag[b + 1][0]):
                    if pgen[g][0] == 41 and pgen[g][1] < len(inst) - 1:
                        samples |= instrument_samples(pgen[g][1])
            digest = ""
            hashes = frozenset(hash_sample(s) for s in samples)
            if samples:
                digest = hashlib.sha1("".join(sorted(hashes)).encode()).hexdigest()
            presets.append(
                Preset(
                    soundfont=p,
                    bank=bank,
                    program=program,
                    name=name.split(b"\0")[0].decode("latin-1").strip(),
                    fingerprint=digest,
                    samples=hashes,
                )
            )
    return presets


#: What a damaged sound font can raise while its headers are parsed.
FONT_ERRORS = (DataError, OSError, ValueError, IndexError, struct.error)


def distinct_instruments(
    fonts: list[Path],
    programs: tuple[int, ...],
    *,
    skipped: dict[str, str] | None = None,
    listed: dict[Path, list[Preset]] | None = None,
) -> list[Preset]:
    """The distinct recorded instruments among ``programs`` in ``fonts``.

    Presets are visited font by font (best font first), then in the order of ``programs``, then
    by bank; a preset whose samples (PCM fingerprint) were already seen is a duplicate and
    skipped. The result is interleaved round-robin over programs -- every program's best
    instrument first, then the second-best of each, ... -- so that taking the first few gives
    varied instruments.

    ``skipped``: if given, a font whose headers cannot be read is left out and recorded there
    (``{path: problem}``) instead of raising. ``listed``: if given, a cache of
    :func:`~mmsin.data.render.read_presets` per font, read from and filled in.
    """
    seen: set[str] = set()
    by_program: dict[int, list[Preset]] = {p: [] for p in programs}
    cache: dict[Path, list[Preset]] = {} if listed is None else listed
    for font in fonts:
        if font not in cache:
            try:
                cache[font] = read_presets(font)
            except FONT_ERRORS as exc:
                if skipped is None:
                    raise
                skipped[str(font)] = problem_line(exc, font)
                continue
        presets = [
            p for p in cache[font] if p.program in programs and p.bank <= MAX_BANK and p.fingerprint
        ]
        presets.sort(key=lambda p: (programs.index(p.program), p.bank))
        for p in presets:
            if p.fingerprint not in seen:
                seen.add(p.fingerprint)
                by_program[p.program].append(p)
    out: list[Preset] = []
    depth = max((len(v) for v in by_program.values()), default=0)
    for i in range(depth):
        out += [by_program[p][i] for p in programs if i < len(by_program[p])]
    return out


def _write_float_fn() -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    import fluidsynth

    fn = fluidsynth._fl.fluid_synth_write_float
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    fn.restype = ctypes.c_int
    return fn


class Synth:
    """A headless fluidsynth synthesiser producing mono float32 audio.

    Parameters
    ----------
    fs : int
        Sample rate in Hz.
    gain : float
        fluidsynth's master gain. 0.5 keeps a 4-voice fortissimo chord below full scale.
    reverb : bool
        fluidsynth's built-in reverb (off for isolated notes, on for music).
    """

    def __init__(self, fs: int = 16000, *, gain: float = 0.5, reverb: bool = False) -> None:
        try:
            import fluidsynth
        except (ImportError, OSError) as exc:  # pyfluidsynth raises ImportError without the lib
            raise DataError(
                f"fluidsynth: not available ({exc}); install the Debian package libfluidsynth3 "
                "(scripts/setup.sh does) and the Python package pyfluidsynth"
            ) from None
        self.fs = int(fs)
        self._synth = fluidsynth.Synth(
            gain=gain,
            samplerate=float(fs),
            channels=16,
            **{"synth.reverb.active": int(reverb), "synth.chorus.active": 0},
        )
        self._write = _write_float_fn()
        self._fonts: dict[Path, int] = {}

    def load(self, soundfont: str | os.PathLike[str]) -> int:
        """Load a sound font once; return its fluidsynth id."""
        p = Path(soundfont).resolve()
        if p not in self._fonts:
            if not p.is_file():
                raise DataError(f"{p}: sound font not found")
            sfid = self._synth.sfload(str(p))
            if sfid < 0:
                raise DataError(f"{p}: fluidsynth could not load this sound font")
            self._fonts[p] = sfid
        return self._fonts[p]

    def select(self, channel: int, soundfont: str | os.PathLike[str], bank: int, program: int):
        """Put (``soundfont``, ``bank``, ``program``) on a MIDI channel."""
        if self._synth.program_select(channel, self.load(soundfont), bank, program) != 0:
            raise DataError(f"{soundfont}: no preset at bank {bank}, program {program}")

    def noteon(self, channel: int, key: int, velocity: int) -> None:
        self._synth.noteon(channel, key, velocity)

    def noteoff(self, channel: int, key: int) -> None:
        self._synth.noteoff(channel, key)

    def cc(self, channel: int, control: int, value: int) -> None:
        self._synth.cc(channel, control, value)

    def pitch_bend(self, channel: int, value: int) -> None:
        self._synth.pitch_bend(channel, value)

    def silence(self) -> None:
        """Stop every voice at once and flush what is left in the effect buffers."""
        for ch in range(16):
            self._synth.all_sounds_off(ch)
        self.render(2048)

    def render(self, n: int) -> np.ndarray:
        """Synthesize the next ``n`` samples; returns mono float32 (n,), mean of left and right."""
        if n <= 0:
            return np.zeros(0, np.float32)
        buf = np.zeros(2 * n, dtype=np.float32)  # interleaved stereo
        self._write(self._synth.synth, n, buf.ctypes.data, 0, 2, buf.ctypes.data, 1, 2)
        return buf.reshape(-1, 2).mean(axis=1)

    def close(self) -> None:
        self._synth.delete()

    def __enter__(self) -> Synth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render_note(
    synth: Synth,
    pitch: int,
    velocity: int,
    *,
    seconds: float = 4.0,
    hold: float = 3.0,
    channel: int = 0,
) -> np.ndarray:
    """One note, NSynth's protocol: key held ``hold`` s, then released, ``seconds`` s in all.

    The preset must already be selected on ``channel``. Returns float32 (round(seconds*fs),).
    """
    n_hold = round(hold * synth.fs)
    n_total = round(seconds * synth.fs)
    synth.noteon(channel, pitch, velocity)
    a = synth.render(n_hold)
    synth.noteoff(channel, pitch)
    b = synth.render(n_total - n_hold)
    synth.silence()
    return np.concatenate([a, b])


def read_midi(path: str | os.PathLike[str]) -> Any:
    """Parse a MIDI file with mido; returns a ``mido.MidiFile``.

    Raises
    ------
    DataError
        Missing or not a readable MIDI file (one line naming it).
    """
    import mido

    try:
        return mido.MidiFile(str(path))
    except (OSError, ValueError, EOFError, KeyError, IndexError) as exc:
        raise DataError(f"{path}: not a readable MIDI file ({exc})") from None


def render_midi(
    synth: Synth,
    path: Any,
    *,
    soundfont: str | os.PathLike[str],
    bank: int = 0,
    program: int = 0,
    tail: float = 2.0,
) -> np.ndarray:
    """Render a MIDI file with every melodic channel forced onto one preset.

    Program changes are ignored (so a string quartet is played on the piano); notes,
    controllers (sustain pedal) and pitch bends are forwarded; channel 10 (percussion) is
    skipped. Timing follows the file's tempo map (mido yields delta times in seconds).
    ``path`` is a MIDI file or a ``mido.MidiFile`` already read (:func:`read_midi`).

    Returns
    -------
    ndarray, shape (time,), float32 at ``synth.fs``; the piece plus ``tail`` s of decay.
    """
    import mido

    midi = path if isinstance(path, mido.MidiFile) else read_midi(path)
    for ch in range(16):
        if ch != 9:
            synth.select(ch, soundfont, bank, program)
    parts: list[np.ndarray] = []
    clock = 0.0  # seconds since start
    done = 0  # samples rendered so far
    for msg in midi:
        clock += msg.time
        target = round(clock * synth.fs)
        if target > done:
            parts.append(synth.render(target - done))
            done = target
        if msg.is_meta or getattr(msg, "channel", 9) == 9:
            continue
        if msg.type == "note_on" and msg.velocity > 0:
            synth.noteon(msg.channel, msg.note, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            synth.noteoff(msg.channel, msg.note)
        elif msg.type == "control_change":
            synth.cc(msg.channel, msg.control, msg.value)
        elif msg.type == "pitchwheel":
            synth.pitch_bend(msg.channel, msg.pitch)
    for ch in range(16):
        if ch != 9:
            synth.cc(ch, 64, 0)  # release the pedal, then all keys
    for ch in range(16):
        synth._synth.all_notes_off(ch)
    parts.append(synth.render(round(tail * synth.fs)))
    synth.silence()
    return np.concatenate(parts).astype(np.float32)


def f0_cents_error(x: np.ndarray, fs: int, midi: float, *, start: float = 0.05) -> float:
    """Deviation in cents of a note's fundamental from the equal-tempered ``midi`` pitch.

    Harmonic-aware, so that low piano notes, whose fundamental is weak, are measured correctly:
    over candidate f0 within +-1 octave of the nominal one, the weighted sum of spectral
    magnitudes at the first 8 harmonics (weights 0.9^(h-1)) minus those half-way between them is
    maximised;
    the winner is refined on the strongest of its first three partials by parabolic
    interpolation of the log-magnitude spectrum. The nominal pitch only bounds the search, so a
    note a semitone or an octave off is reported as such.

    Parameters
    ----------
    x : ndarray, shape (time,)
        The note; the analysis uses 1 s from ``start`` seconds.
    fs : int
        Sample rate in Hz.
    midi : float
        Nominal MIDI pitch (69 = 440 Hz).

    Returns
    -------
    float: cents (1200 * log2(f0 / f_midi)), NaN for a silent note.
    """
    seg = np.asarray(x[round(start * fs) : round((start + 1.0) * fs)], dtype=np.float64)
    if seg.size < 256 or not np.any(seg):
        return float("nan")
    nfft = 1 << int(np.ceil(np.log2(seg.size * 8)))
    mag = np.abs(np.fft.rfft(seg * np.hanning(seg.size), nfft))
    df = fs / nfft
    f_nom = 440.0 * 2.0 ** ((midi - 69) / 12)
    cands = f_nom * 2.0 ** (np.arange(-1200, 1201, 5) / 1200)
    h = np.arange(1, 9)
    weights = 0.9 ** (h - 1)

    def comb(mult: np.ndarray) -> np.ndarray:
        freqs = cands[:, None] * mult[None, :]
        bins = np.clip(np.round(freqs / df).astype(int), 0, mag.size - 1)
        return (np.where(freqs < fs / 2, mag[bins], 0.0) * weights).sum(axis=1)

    # Energy between the harmonics counts against a candidate: an octave too high leaves the
    # true odd harmonics between its own, an octave too low finds nothing at its odd ones.
    score = comb(h.astype(float)) - comb(h - 0.5)
    f0 = cands[int(np.argmax(score))]
    # Refine on the strongest of the first three partials near k*f0 (+-30 cents).
    best: tuple[float, float] | None = None
    for k in (1, 2, 3):
        if k * f0 * 2 ** (30 / 1200) >= fs / 2:
            break
        lo = int(np.floor(k * f0 * 2 ** (-30 / 1200) / df))
        hi = int(np.ceil(k * f0 * 2 ** (30 / 1200) / df)) + 1
        i = lo + int(np.argmax(mag[lo:hi]))
        if 0 < i < mag.size - 1 and (best is None or mag[i] > best[0]):
            a, b, c = np.log(mag[i - 1 : i + 2] + 1e-30)
            offset = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
            best = (float(mag[i]), (i + offset) * df / k)
    if best is not None:
        f0 = best[1]
    return float(1200.0 * np.log2(f0 / f_nom))
