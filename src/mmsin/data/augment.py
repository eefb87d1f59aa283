"""Augmentation of rendered training notes: detuning, room reverb and a recording's noise floor
(pure functions).

Sound-font notes are resampled from a few root samples tuned to A440; real instruments are
detuned by a few cents and recorded in a room, through microphones and preamplifiers. Three
augmentations bring the nsynth-like training notes closer to that, and only the training
notes (the build never augments the test velocity or the held-out instruments, see
:func:`mmsin.data.nsynth_like.build_nsynth_like`):

* **Detuning** by a uniform random amount in +-``max_detune_cents``, rendered by fluidsynth as a
  pitch bend held through the note (the sampler resamples the recording, so every partial moves
  by the same ratio). :func:`pitch_bend` converts cents to the 14-bit bend value; its grid is
  200/8192 = 0.024 cents under the General MIDI default bend range of +-2 semitones.
* **Room reverb**: convolution with an exponentially decaying Gaussian-noise impulse response
  (:func:`reverb_ir`: amplitude ``exp(-3 ln(10) t / RT60)``, so the energy falls 60 dB in RT60
  seconds, the definition of RT60), mixed with the dry note at a random wet share
  (:func:`apply_reverb`).
* **Noise floor**: a share of the notes gets a recording's floor under it, constant through the
  note (:func:`add_floor`): hiss (white Gaussian noise at the rendering rate) and rumble (white
  noise through a second-order Butterworth low-pass at ``RUMBLE_HZ``, the band of a room's
  ventilation and traffic), each at a level drawn in dB re the note's peak. The ranges are
  those of close-miked instrument recordings (a signal-to-noise ratio of 50 to 80 dB, rumble
  up to 40 dB down); the sound fonts' own samples were cleaned of both.

Not done: **stretched partials** (inharmonicity, f_k = k f0 sqrt(1 + B k^2)). The notes are
resampled recordings; moving each partial by its own ratio would need a sinusoidal analysis and
resynthesis of every note (and would stretch the noise and the attack with them), which is not
a faithful piano. It is left out rather than approximated by a global warp that is not one.

Every parameter is drawn from a generator seeded by ``(seed, crc32(note_str))``, so one note's
draw depends on nothing else in the build (order, other notes, skipped presets).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

#: The General MIDI default pitch-bend range (RPN 0): +-2 semitones over the 14-bit wheel.
BEND_RANGE_CENTS = 200.0
BEND_STEPS = 8192
#: Corner of the rumble's low-pass, Hz.
RUMBLE_HZ = 50.0


@dataclass(frozen=True)
class AugmentSpec:
    """How training notes are augmented.

    Attributes
    ----------
    seed : int
        Seeds every per-note draw (with the note's name).
    max_detune_cents : float
        Detuning is uniform in [-max, +max] cents (real instruments: a few to ~30 cents).
    reverb_share : float
        Share of the training notes that get reverb (the others stay dry, as close-miked notes).
    rt60 : (float, float)
        Uniform range of the reverberation time RT60, seconds (small room to hall).
    wet : (float, float)
        Uniform range of the wet share of the mix (0: dry, 1: reverb only).
    floor_share : float
        Share of the training notes that get a noise floor (the others stay clean).
    hiss_db, rumble_db : (float, float)
        Uniform ranges of the hiss and rumble levels (RMS), dB re the note's peak.
    """

    seed: int = 0
    max_detune_cents: float = 30.0
    reverb_share: float = 0.5
    rt60: tuple[float, float] = (0.2, 1.0)
    wet: tuple[float, float] = (0.1, 0.4)
    floor_share: float = 0.0
    hiss_db: tuple[float, float] = (-80.0, -50.0)
    rumble_db: tuple[float, float] = (-70.0, -40.0)


@dataclass(frozen=True)
class NoteAugmentation:
    """The augmentation of one note, recorded in the set's metadata.

    Attributes
    ----------
    detune_cents : float
        The detuning actually rendered (on the pitch-bend grid), cents; the nominal pitch stays
        the MIDI note, its f0 is ``midi + detune_cents / 100`` semitones.
    bend : int
        The pitch-bend value, -8192..8191 (0: none).
    rt60 : float or None
        Reverberation time in seconds, None for a dry note.
    wet : float
        Wet share of the mix (0 for a dry note).
    hiss_db, rumble_db : float or None
        The noise floor's levels, dB re the note's peak (None: no floor).
    """

    detune_cents: float
    bend: int
    rt60: float | None
    wet: float
    hiss_db: float | None = None
    rumble_db: float | None = None

    def record(self) -> dict[str, float | int | None]:
        """The JSON record of ``examples.json``'s ``augmentation`` field."""
        rec: dict[str, float | int | None] = {
            "detune_cents": round(self.detune_cents, 3),
            "bend": self.bend,
            "rt60": None if self.rt60 is None else round(self.rt60, 4),
            "wet": round(self.wet, 4),
        }
        if self.hiss_db is not None and self.rumble_db is not None:
            rec["hiss_db"] = round(self.hiss_db, 2)
            rec["rumble_db"] = round(self.rumble_db, 2)
        return rec


def pitch_bend(cents: float) -> int:
    """The pitch-bend value (-8192..8191, pyfluidsynth's signed convention) nearest ``cents``.

    Raises
    ------
    ValueError
        ``cents`` outside the bend range (+-200 cents).
    """
    if not abs(cents) <= BEND_RANGE_CENTS:
        raise ValueError(f"detune {cents} cents outside the bend range +-{BEND_RANGE_CENTS:g}")
    return int(np.clip(round(cents / BEND_RANGE_CENTS * BEND_STEPS), -BEND_STEPS, BEND_STEPS - 1))


def bend_cents(bend: int) -> float:
    """The detuning in cents of a pitch-bend value (inverse of :func:`pitch_bend`)."""
    return bend * BEND_RANGE_CENTS / BEND_STEPS


def note_rng(note_str: str, seed: int) -> np.random.Generator:
    """The generator of one note's draws: seeded by ``seed`` and the CRC-32 of its name."""
    return np.random.default_rng([int(seed), zlib.crc32(note_str.encode("utf-8"))])


def draw_augmentation(note_str: str, spec: AugmentSpec) -> NoteAugmentation:
    """Draw one training note's augmentation (deterministic in ``note_str`` and ``spec``)."""
    rng = note_rng(note_str, spec.seed)
    bend = pitch_bend(rng.uniform(-spec.max_detune_cents, spec.max_detune_cents))
    rt60: float | None = None
    wet = 0.0
    if rng.uniform() < spec.reverb_share:
        rt60 = float(rng.uniform(*spec.rt60))
        wet = float(rng.uniform(*spec.wet))
    if spec.floor_share <= 0:  # no draw: the sets built before the floor existed stay as built
        return NoteAugmentation(bend_cents(bend), bend, rt60, wet)
    hiss = rumble = None
    if rng.uniform() < spec.floor_share:
        hiss = float(rng.uniform(*spec.hiss_db))
        rumble = float(rng.uniform(*spec.rumble_db))
    return NoteAugmentation(bend_cents(bend), bend, rt60, wet, hiss, rumble)


def reverb_ir(rt60: float, fs: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: Gaussian noise under an exponential decay.

    The amplitude envelope is ``exp(-3 ln(10) t / rt60)``, so the energy decays by 60 dB in
    ``rt60`` seconds; the response lasts ``rt60`` seconds (it is then 60 dB down) and has unit
    energy, so the wet signal is about as loud as the dry one.

    Parameters
    ----------
    rt60 : float
        Reverberation time in seconds, > 0.
    fs : int
        Sample rate in Hz.
    rng : numpy Generator
        Draws the noise.

    Returns
    -------
    ndarray, shape (round(rt60 * fs),), float64, unit energy.
    """
    if not rt60 > 0:
        raise ValueError(f"rt60 {rt60}: must be > 0 seconds")
    n = max(1, round(rt60 * fs))
    t = np.arange(n) / fs
    h = rng.standard_normal(n) * np.exp(-3.0 * math.log(10.0) * t / rt60)
    return h / np.sqrt(np.sum(h**2))


def apply_reverb(x: np.ndarray, ir: np.ndarray, wet: float) -> np.ndarray:
    """Mix ``x`` with its convolution by ``ir``: ``(1 - wet) x + wet (ir * x)``, same length.

    Parameters
    ----------
    x : ndarray, shape (time,)
    ir : ndarray, shape (taps,)
    wet : float in [0, 1]

    Returns
    -------
    ndarray, shape (time,), float32; the reverberant tail past ``len(x)`` is cut.
    """
    if not 0.0 <= wet <= 1.0:
        raise ValueError(f"wet {wet}: must be in [0, 1]")
    x64 = np.asarray(x, dtype=np.float64)
    y = (1.0 - wet) * x64 + wet * fftconvolve(x64, ir)[: x64.size]
    return y.astype(np.float32)


def reverberate(
    x: np.ndarray, fs: int, aug: NoteAugmentation, note_str: str, seed: int
) -> np.ndarray:
    """Apply ``aug``'s reverb to ``x`` (unchanged float32 copy for a dry note).

    The impulse response's noise is drawn from :func:`note_rng` of ``note_str + "/ir"``, so the
    same note always gets the same room.
    """
    if aug.rt60 is None or aug.wet == 0.0:
        return np.asarray(x, dtype=np.float32).copy()
    return apply_reverb(x, reverb_ir(aug.rt60, fs, note_rng(note_str + "/ir", seed)), aug.wet)


def floor_noise(
    n: int, fs: int, peak: float, hiss_db: float, rumble_db: float, rng: np.random.Generator
) -> np.ndarray:
    """A recording's noise floor of ``n`` samples: hiss plus rumble, float64.

    Hiss: white Gaussian noise of RMS ``peak 10^(hiss_db / 20)``. Rumble: white noise through a
    second-order Butterworth low-pass at :data:`RUMBLE_HZ`, scaled to RMS
    ``peak 10^(rumble_db / 20)``.
    """
    if n < 1 or not peak >= 0:
        raise ValueError(f"need n >= 1 samples and a peak >= 0, got {n}, {peak}")
    hiss = rng.standard_normal(n) * peak * 10 ** (hiss_db / 20)
    low = sosfilt(butter(2, RUMBLE_HZ, fs=fs, output="sos"), rng.standard_normal(n))
    low *= peak * 10 ** (rumble_db / 20) / max(float(np.sqrt(np.mean(low**2))), 1e-30)
    return np.asarray(hiss + low)


def add_floor(
    x: np.ndarray, fs: int, aug: NoteAugmentation, note_str: str, seed: int
) -> np.ndarray:
    """``x`` with ``aug``'s noise floor under it (unchanged float32 copy for a clean note).

    The noise is drawn from :func:`note_rng` of ``note_str + "/floor"``; its levels are relative
    to ``x``'s peak.
    """
    y = np.asarray(x, dtype=np.float32).copy()
    if aug.hiss_db is None or aug.rumble_db is None or y.size == 0:
        return y
    peak = float(np.max(np.abs(y)))
    rng = note_rng(note_str + "/floor", seed)
    return (y + floor_noise(y.size, fs, peak, aug.hiss_db, aug.rumble_db, rng)).astype(np.float32)
