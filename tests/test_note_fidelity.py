"""note_fidelity: pitch kept / lost and grid share of reconstructions, on tones whose answer is
known by construction (CREPE is the pitch tracker)."""

from __future__ import annotations

import numpy as np
import pytest

from mmsin.evaluation import midi_to_hz, note_fidelity

FS = 4096


def _tone(f0: float, seconds: float = 2.0, phase_seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    rng = np.random.default_rng(phase_seed)
    x = sum(
        0.6**k * np.sin(2 * np.pi * (k + 1) * f0 * t + rng.uniform(0, 2 * np.pi))
        for k in range(8)
        if (k + 1) * f0 < 0.45 * FS
    )
    return (x / np.abs(x).max()).astype(np.float32)


def test_the_reconstruction_is_compared_with_its_original() -> None:
    """Fast (two 1 s clips): the original's pitch and grid share come from the original, the
    reconstruction's from the reconstruction, never one of them twice."""
    d4 = float(midi_to_hz(62))
    fid = note_fidelity(_tone(320.0, 1.0)[None], _tone(d4, 1.0)[None], FS, [62])
    assert abs(1200 * np.log2(fid.f0_original[0] / d4)) < 20
    assert abs(1200 * np.log2(fid.f0_reconstruction[0] / 320.0)) < 20
    assert fid.tracked.tolist() == [True] and fid.kept.tolist() == [False]
    assert fid.grid[0] > 0.99 and fid.grid_original[0] < 0.01


def test_given_original_f0_is_used_as_is() -> None:
    """A caller that tracked the originals already passes their f0: the originals are not
    tracked again, and the given f0 decides what counts as tracked and kept."""
    d4 = float(midi_to_hz(62))
    recon, orig = _tone(d4, 1.0, phase_seed=3)[None], _tone(d4, 1.0)[None]
    fid = note_fidelity(recon, orig, FS, [62], f0_original=np.array([d4]))
    assert fid.f0_original.tolist() == [d4] and fid.kept.tolist() == [True]
    off = note_fidelity(recon, orig, FS, [62], f0_original=np.array([d4 * 2 ** (3 / 12)]))
    assert off.tracked.tolist() == [False]  # 300 cents from the nominal pitch
    with pytest.raises(ValueError, match="one f0_original per clip"):
        note_fidelity(recon, orig, FS, [62], f0_original=np.array([d4, d4]))


@pytest.mark.slow
def test_kept_pitch_lost_pitch_and_the_grid() -> None:
    midi = [62, 62, 67]
    originals = np.stack([_tone(float(midi_to_hz(m))) for m in midi])
    recon = np.stack(
        [
            _tone(float(midi_to_hz(62)), phase_seed=5),  # same pitch, other phases: kept
            _tone(320.0),  # D4 snapped to the 64 Hz grid (the paper's G): 148 cents sharp
            _tone(448.0),  # G4 (392 Hz) snapped to 448 Hz
        ]
    )
    fid = note_fidelity(recon, originals, FS, midi)
    assert fid.tracked.all()
    assert fid.kept.tolist() == [True, False, False]
    assert fid.grid[0] < 0.01 and fid.grid[1] > 0.99 and fid.grid[2] > 0.99
    assert (fid.grid_original < 0.01).all()
    assert fid.hnr_db[0] > 20 and fid.hnr_db[1] < 0 and fid.hnr_db[2] < 0
    s = fid.summary()
    assert s["tracked"] == 3 and abs(s["pitch_kept"] - 1 / 3) < 1e-12


def test_summary_of_notes_without_a_figure_is_nan_without_a_warning() -> None:
    """Clips too short for the grid share and HNR (as in a tiny experiment) summarise to NaN
    quietly: numpy's median of an empty or all-NaN array warns, which a normal run must not."""
    import warnings

    from mmsin.evaluation import NoteFidelity, finite_median

    nan2 = np.full(2, np.nan)
    fid = NoteFidelity(nan2, nan2, np.zeros(2, bool), np.zeros(2, bool), nan2, nan2, nan2, nan2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = fid.summary()
        assert finite_median([]) != finite_median([])  # NaN
    assert all(np.isnan(s[k]) for k in ("grid_median", "hnr_db_median", "pitch_kept"))
    assert finite_median([3.0, np.nan, 1.0, 2.0]) == np.median([1.0, 2.0, 3.0])
