"""Real recordings in the field's conventions: does a reconstruction keep a real note's pitch,
partials and loudness?

Judged against the ORIGINAL (not the nominal MIDI pitch: a real piano is tuned by ear and its
partials are stretched), in DDSP's conventions (magenta/ddsp ``training/metrics.py``) where
they exist:

- **f0 error.** CREPE (:func:`~mmsin.evaluation.pitch.pitch_track`, 10 ms frames) on both
  signals; per frame ``1200 log2(f0_hat / f0)`` cents over the frames where CREPE's periodicity
  on the original is at least :data:`PERIODICITY_MIN` (0.85, DDSP's confidence threshold).
  Per note: the median |error| over those frames (DDSP takes the mean in semitones; the median
  keeps one octave-jumping frame from dominating a note). A note with no such frame is
  *untracked* and left out of the pitch figures (DDSP counts it as an outlier; here it is
  counted apart, as ``untracked``).
- **Set summary** (:func:`summarize_real_notes`): median and 90th percentile over the tracked
  notes of the per-note median |error|; *octave errors*: share of tracked notes whose median
  |error| exceeds :data:`OCTAVE_CENTS` (600 cents, half an octave: nearer another octave, or
  another note altogether, than the original's; DDSP's outlier threshold is 12 semitones of
  mean error); *within 50 cents*: share whose median |error| is at most 50 cents (a quarter
  tone, the note names the same).
- **Partials.** The first :data:`N_PARTIALS` (8) partials of the original, found one after the
  other in its whole-clip spectrum (one Hann window over the clip, zero-padded FFT, as
  :func:`~mmsin.evaluation.grid.grid_energy_share`): partial 1 within +-30 % of f0 (the
  original's CREPE median f0), partial k >= 2 within +-30 % of f0 around the previous partial
  plus the last spacing (so that a stretched series, ``f_k = k f0 sqrt(1 + B k^2)``, is
  followed); the peak frequency by parabolic interpolation of the dB spectrum. The
  reconstruction's partial k is its spectral peak within +-f0/2 of the original's (the nearest
  partial either way). A partial counts when the original's lies below fs/2 and at most
  :data:`PARTIAL_FLOOR_DB` (60 dB) below the original's strongest of the 8; it is *missing* from
  the reconstruction when its level relative to the reconstruction's strongest (in the same
  windows) is more than :data:`MISSING_DB` (30 dB) below the original's relative level.
  Per note: median |cents| over the partials present in both, and the count missing.
- **HNR** of both (:func:`~mmsin.evaluation.grid.harmonic_to_noise_ratio` at the original's
  CREPE f0, +-20-cent bands).
- **LSD** (:func:`~mmsin.evaluation.spectra.log_spectral_distance`) of the reconstruction, beside
  that of the original smoothed by an 8-tap moving average (a mild low-pass: -3.9 dB at
  fs/16, a null at fs/8 = 512 Hz) as a reference for how far a plainly degraded copy lands.
- **Loudness L1** (DDSP's): per frame, the A-weighted (IEC 61672) mean-square of the STFT frame
  in dB (a full-scale sine at 1 kHz: -3 dB), floored at -80 dB; the mean |difference| over frames.
- **Partial levels** (the note's timbre over its whole length): the energies of partials 1-8
  within 40 cents of h f0 (below 1.8 kHz) in one spectrum after the first 0.1 s, each set
  relative to its total, median |difference| in dB (:func:`~mmsin.evaluation.timbre.
  timbre_distance` with ``measure="energy"``; NaN with fewer than two partials).

CREPE is the slow step (seconds per note on a CPU): :func:`analyse_original` does everything
that depends on the original alone, once, and can cache it on disk
(:func:`analyse_originals`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal

from mmsin.evaluation._common import _check_fs, _np, finite_median
from mmsin.evaluation.grid import SPECTRUM_PAD, _long_spectrum, harmonic_to_noise_ratio
from mmsin.evaluation.pitch import cents, midi_to_hz, pitch_track
from mmsin.evaluation.spectra import _stft_mag, log_spectral_distance
from mmsin.evaluation.timbre import partial_levels, timbre_distance

#: DDSP's CREPE-confidence threshold: frames of the original at least this periodic count.
PERIODICITY_MIN = 0.85
#: A note's median |f0 error| above this is an octave (or gross) error: half an octave.
OCTAVE_CENTS = 600.0
#: A note is "within" when its median |f0 error| is at most this: a quarter tone.
WITHIN_CENTS = 50.0
N_PARTIALS = 8
#: Original partials further below the original's strongest than this are not judged.
PARTIAL_FLOOR_DB = 60.0
#: A partial is missing when the reconstruction's relative level is this far below the original's.
MISSING_DB = 30.0
#: Taps of the moving average of the LSD reference.
SMOOTH_TAPS = 8
#: Loudness frames at 4096 Hz: 512 samples (125 ms, DDSP's 2048 at 16 kHz), hop 64 (15.6 ms).
LOUDNESS_N_FFT = 512
LOUDNESS_HOP = 64
LOUDNESS_FLOOR_DB = -80.0


@dataclass(frozen=True)
class OriginalAnalysis:
    """What the metrics need from an original alone (computed once, cacheable).

    ``f0``/``periodicity``: CREPE per 10 ms frame; ``f0_median``: median f0 over the frames at
    least :data:`PERIODICITY_MIN` periodic (NaN: untracked); ``partials_hz`` and
    ``partials_db`` (N_PARTIALS,): the partials found (NaN above fs/2) and their levels in dB
    relative to the strongest.
    """

    f0: np.ndarray
    periodicity: np.ndarray
    f0_median: float
    partials_hz: np.ndarray
    partials_db: np.ndarray


@dataclass(frozen=True)
class RealNoteMetrics:
    """One reconstruction against its original (:func:`real_note_metrics`).

    Attributes
    ----------
    midi : float
        Nominal pitch.
    f0_original : float
        The original's CREPE median f0 in Hz over its periodic frames (NaN: untracked).
    f0_cents : ndarray (frames,)
        Per-frame error of the reconstruction's CREPE f0 in cents, on the original's periodic
        frames.
    f0_cents_median : float
        Median |f0_cents| (NaN when untracked).
    within_50 : bool
        ``f0_cents_median <= WITHIN_CENTS``.
    octave_error : bool
        ``f0_cents_median > OCTAVE_CENTS``.
    partials_hz, partials_hz_original : ndarray (N_PARTIALS,)
        Partial frequencies (NaN: not judged, or missing in the reconstruction).
    partials_cents : ndarray (N_PARTIALS,)
        Reconstruction's partial against the original's (NaN: not judged or missing).
    partials_missing : ndarray (N_PARTIALS,) of bool
        Judged in the original, missing from the reconstruction.
    partials_cents_median : float
        Median |partials_cents| (NaN when none is present in both).
    hnr_db, hnr_db_original : float
    lsd_db, lsd_db_smoothed : float
        LSD of the reconstruction and of the 8-tap-smoothed original, both against the original.
    loudness_l1_db : float
    partial_levels_db : float
        Partial levels' median |difference| (NaN: fewer than two partials below 1.8 kHz).
    """

    midi: float
    f0_original: float
    f0_cents: np.ndarray
    f0_cents_median: float
    within_50: bool
    octave_error: bool
    partials_hz: np.ndarray
    partials_hz_original: np.ndarray
    partials_cents: np.ndarray
    partials_missing: np.ndarray
    partials_cents_median: float
    hnr_db: float
    hnr_db_original: float
    lsd_db: float
    lsd_db_smoothed: float
    loudness_l1_db: float
    partial_levels_db: float = float("nan")

    @property
    def tracked(self) -> bool:
        """CREPE found periodic frames in the original."""
        return bool(np.isfinite(self.f0_cents_median))


def _peak(freqs: np.ndarray, db: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Frequency (parabolic interpolation of the dB spectrum) and dB level of the largest bin
    within [lo, hi]; NaN, -inf when the band is empty."""
    idx = np.flatnonzero((freqs >= lo) & (freqs <= hi))
    if idx.size == 0:
        return float("nan"), -math.inf
    i = int(idx[np.argmax(db[idx])])
    if 0 < i < db.size - 1:
        a, b, c = db[i - 1], db[i], db[i + 1]
        denom = a - 2 * b + c
        delta = 0.5 * (a - c) / denom if abs(denom) > 1e-12 else 0.0
        return float(freqs[i] + delta * (freqs[1] - freqs[0])), float(b - 0.25 * (a - c) * delta)
    return float(freqs[i]), float(db[i])


def _spectrum_db(y: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    freqs, energy = _long_spectrum(y[None], fs, SPECTRUM_PAD)
    return freqs, 10 * np.log10(energy[0] + 1e-30)


def find_partials(
    x: np.ndarray, fs: float, f0: float, n: int = N_PARTIALS
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` partials of a note, following a stretched series (see the module).

    Returns
    -------
    (frequencies in Hz, levels in dB relative to the strongest), each (n,); NaN / -inf for a
    partial whose search window reaches past fs/2.
    """
    freqs, db = _spectrum_db(np.asarray(x, dtype=np.float64), fs)
    hz = np.full(n, np.nan)
    lev = np.full(n, -np.inf)
    for k in range(n):
        if k == 0:
            centre = f0
        elif k == 1:
            centre = 2 * hz[0]
        else:
            centre = hz[k - 1] + (hz[k - 1] - hz[k - 2])
        if not np.isfinite(centre) or centre + 0.3 * f0 >= fs / 2:
            break
        hz[k], lev[k] = _peak(freqs, db, centre - 0.3 * f0, centre + 0.3 * f0)
    if np.isfinite(lev).any():
        lev = lev - np.max(lev[np.isfinite(lev)])
    return hz, lev


def analyse_original(
    x: Any, fs: float, midi: float, *, crepe_model: str = "tiny"
) -> OriginalAnalysis:
    """CREPE track, median f0 and partials of an original (peak-normalised first)."""
    _check_fs(fs)
    y = _np(x)
    peak = np.abs(y).max()
    y = y / peak if peak > 0 else y
    track = pitch_track(y, fs, model=crepe_model)
    voiced = track.periodicity >= PERIODICITY_MIN
    f0 = float(np.median(track.f0[voiced])) if voiced.any() else float("nan")
    ref = f0 if np.isfinite(f0) else float(midi_to_hz(midi))
    hz, lev = find_partials(y, fs, ref)
    return OriginalAnalysis(
        f0=track.f0, periodicity=track.periodicity, f0_median=f0, partials_hz=hz, partials_db=lev
    )


def smoothed(x: Any, taps: int = SMOOTH_TAPS) -> np.ndarray:
    """``x`` through a ``taps``-point moving average (same length, centred, zero-padded ends)."""
    y = np.atleast_2d(_np(x))
    kernel = np.ones(taps) / taps
    out = np.stack([np.convolve(row, kernel, mode="same") for row in y])
    return out[0] if _np(x).ndim == 1 else out


def a_weighting_db(f: np.ndarray) -> np.ndarray:
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz; -inf at 0 Hz)."""
    f2 = np.asarray(f, dtype=np.float64) ** 2
    with np.errstate(divide="ignore"):
        ra = (12194.0**2 * f2**2) / (
            (f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
        )
        return 20 * np.log10(ra) + 2.0


def loudness_db(x: Any, fs: float) -> np.ndarray:
    """A-weighted frame loudness in dB (see the module): shape (frames,)."""
    y = _np(x)
    m = _stft_mag(y, LOUDNESS_N_FFT, LOUDNESS_HOP)
    f = np.arange(m.shape[0]) * fs / LOUDNESS_N_FFT
    w = 10 ** (a_weighting_db(f) / 10)
    # Parseval with scipy's scaling (a window-normalised spectrum): the sum over one-sided bins
    # of |X|^2 (non-DC, non-Nyquist bins doubled) is the mean square of the windowed frame
    # divided by mean(w^2) of the window, i.e. the frame's mean square.
    win = scipy.signal.get_window("hann", LOUDNESS_N_FFT)
    scale = (win.sum() ** 2) / (LOUDNESS_N_FFT * np.sum(win**2))
    weight = np.full(m.shape[0], 2.0)
    weight[0] = weight[-1] = 1.0
    ms = np.sum((weight * w)[:, None] * m**2, axis=0) * scale
    return np.maximum(10 * np.log10(ms + 1e-30), LOUDNESS_FLOOR_DB)


def real_note_metrics(
    original: Any,
    reconstruction: Any,
    fs: float,
    midi: float,
    *,
    reference: OriginalAnalysis | None = None,
    crepe_model: str = "tiny",
) -> RealNoteMetrics:
    """A reconstruction of a real note against its original (definitions in the module).

    Parameters
    ----------
    original, reconstruction : shape (time,), float, at ``fs`` Hz, aligned
        Cut to the shorter length; each is peak-normalised first.
    midi : float
        Nominal pitch (used only when CREPE cannot track the original).
    reference : OriginalAnalysis, optional
        :func:`analyse_original` of ``original`` (computed when not given).
    """
    _check_fs(fs)
    a, b = _np(original), _np(reconstruction)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"need two signals of shape (time,), got {a.shape} and {b.shape}")
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    a = a / max(np.abs(a).max(), 1e-12)
    b = b / max(np.abs(b).max(), 1e-12)
    ref = reference or analyse_original(a, fs, midi, crepe_model=crepe_model)
    hat = pitch_track(b, fs, model=crepe_model)
    m = min(hat.f0.size, ref.f0.size)
    voiced = ref.periodicity[:m] >= PERIODICITY_MIN
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.asarray(cents(hat.f0[:m][voiced], ref.f0[:m][voiced]), dtype=np.float64)
    med = float(np.median(np.abs(err))) if err.size else float("nan")

    # Partials: the reconstruction's peak within +-f0/2 of each judged original partial.
    f0 = ref.f0_median if np.isfinite(ref.f0_median) else float(midi_to_hz(midi))
    judged = np.isfinite(ref.partials_hz) & (ref.partials_db >= -PARTIAL_FLOOR_DB)
    freqs, db = _spectrum_db(b, fs)
    hz_hat = np.full(N_PARTIALS, np.nan)
    lev_hat = np.full(N_PARTIALS, -np.inf)
    for k in np.flatnonzero(judged):
        c = ref.partials_hz[k]
        hz_hat[k], lev_hat[k] = _peak(freqs, db, c - f0 / 2, min(c + f0 / 2, fs / 2))
    if np.isfinite(lev_hat).any():
        lev_hat = lev_hat - np.max(lev_hat[np.isfinite(lev_hat)])
    missing = judged & ~(lev_hat >= ref.partials_db - MISSING_DB)
    present = judged & ~missing
    p_cents = np.full(N_PARTIALS, np.nan)
    p_cents[present] = np.asarray(cents(hz_hat[present], ref.partials_hz[present]))
    hz_hat[~present] = np.nan

    hnr = harmonic_to_noise_ratio(np.stack([b, a]), fs, f0) if np.isfinite(f0) else [np.nan] * 2
    la, lb = loudness_db(a, fs), loudness_db(b, fs)
    return RealNoteMetrics(
        midi=float(midi),
        f0_original=float(ref.f0_median),
        f0_cents=err,
        f0_cents_median=med,
        within_50=bool(med <= WITHIN_CENTS),
        octave_error=bool(med > OCTAVE_CENTS),
        partials_hz=hz_hat,
        partials_hz_original=np.where(judged, ref.partials_hz, np.nan),
        partials_cents=p_cents,
        partials_missing=missing,
        partials_cents_median=(
            float(np.median(np.abs(p_cents[present]))) if present.any() else float("nan")
        ),
        hnr_db=float(hnr[0]),
        hnr_db_original=float(hnr[1]),
        lsd_db=log_spectral_distance(b, a),
        lsd_db_smoothed=log_spectral_distance(smoothed(a), a),
        loudness_l1_db=float(np.mean(np.abs(la - lb))),
        partial_levels_db=timbre_distance(
            partial_levels(a, f0, fs, measure="energy"),
            partial_levels(b, f0, fs, measure="energy"),
        )
        if np.isfinite(f0)
        else float("nan"),
    )


def summarize_real_notes(notes: Sequence[RealNoteMetrics]) -> dict[str, float]:
    """Set-level figures (definitions in the module): over the tracked notes, the median and
    90th percentile of the per-note median |f0 error| (cents), the octave-error and within-50
    shares; over all notes, the median per-note partial error (cents), the share of judged
    partials missing, and medians of HNR (reconstruction, original), LSD (reconstruction,
    smoothed original), loudness L1 and partial levels (dB)."""
    if not notes:
        raise ValueError("no notes to summarise")
    med = np.array([n.f0_cents_median for n in notes])
    tracked = np.isfinite(med)
    t = med[tracked]
    judged = sum(int(np.isfinite(n.partials_hz_original).sum()) for n in notes)
    missing = sum(int(n.partials_missing.sum()) for n in notes)

    def median(name: str) -> float:
        return finite_median([getattr(n, name) for n in notes])

    nan = float("nan")
    return {
        "notes": len(notes),
        "tracked": int(tracked.sum()),
        "f0_cents_median": float(np.median(t)) if t.size else nan,
        "f0_cents_p90": float(np.percentile(t, 90)) if t.size else nan,
        "octave_error_share": float(np.mean(t > OCTAVE_CENTS)) if t.size else nan,
        "within_50_share": float(np.mean(t <= WITHIN_CENTS)) if t.size else nan,
        "partials_cents_median": median("partials_cents_median"),
        "partials_judged": judged,
        "partials_missing_share": missing / judged if judged else nan,
        "hnr_db": median("hnr_db"),
        "hnr_db_original": median("hnr_db_original"),
        "lsd_db": median("lsd_db"),
        "lsd_db_smoothed": median("lsd_db_smoothed"),
        "loudness_l1_db": median("loudness_l1_db"),
        "partial_levels_db": median("partial_levels_db"),
    }


def as_record(m: RealNoteMetrics) -> dict[str, Any]:
    """A JSON-ready dict of one note's metrics (arrays as lists, NaN as None)."""

    def clean(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return [clean(e) for e in v.tolist()]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    return {f.name: clean(getattr(m, f.name)) for f in fields(m)}


def _crepe_probe(crepe_model: str) -> np.ndarray:
    """CREPE's f0 and periodicity on a fixed 0.5 s stretched tone (a fingerprint of its
    arithmetic on this machine)."""
    fs = 4096
    t = np.arange(fs // 2) / fs
    y = sum(0.5**k * np.sin(2 * np.pi * 331.7 * k * (1 + 3e-4 * k * k) * t) for k in (1, 2, 3))
    track = pitch_track(np.asarray(y), fs, model=crepe_model)
    return np.concatenate([track.f0, track.periodicity])


def analyse_originals(
    x: np.ndarray,
    fs: float,
    midi: Sequence[float],
    *,
    crepe_model: str = "tiny",
    cache: str | os.PathLike[str] | None = None,
) -> list[OriginalAnalysis]:
    """:func:`analyse_original` of every clip of ``x`` (n, time), cached in the ``.npz`` file
    ``cache`` (keyed by a hash of the audio, rate, pitches, CREPE model and CREPE's output on a
    probe tone: a different set, or a machine where CREPE's arithmetic differs, recomputes).

    Why the probe: CREPE's per-frame f0 moves by up to 5 cents between machines on the same
    audio (seen: the same 72 real notes, 2 days apart, medians 3 cents apart), so a track
    cached on one machine and compared with reconstructions tracked on another reports
    errors that neither made."""
    x = np.asarray(x, dtype=np.float32)
    probe = np.round(_crepe_probe(crepe_model), 6).tobytes()
    key = hashlib.sha256(
        x.tobytes() + repr((float(fs), [float(m) for m in midi], crepe_model)).encode() + probe
    ).hexdigest()
    path = Path(cache) if cache is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    return [
                        OriginalAnalysis(
                            f0=z[f"f0_{i}"],
                            periodicity=z[f"periodicity_{i}"],
                            f0_median=float(z["f0_median"][i]),
                            partials_hz=z["partials_hz"][i],
                            partials_db=z["partials_db"][i],
                        )
                        for i in range(x.shape[0])
                    ]
        except (OSError, KeyError, ValueError):
            pass  # unreadable or stale: recompute
    out = [
        analyse_original(y, fs, m, crepe_model=crepe_model) for y, m in zip(x, midi, strict=True)
    ]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "key": np.array(key),
            "f0_median": np.array([o.f0_median for o in out]),
            "partials_hz": np.stack([o.partials_hz for o in out]),
            "partials_db": np.stack([o.partials_db for o in out]),
        }
        for i, o in enumerate(out):
            arrays[f"f0_{i}"], arrays[f"periodicity_{i}"] = o.f0, o.periodicity
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return out
