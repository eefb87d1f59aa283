"""Partial levels and the timbre distance (mmsin.evaluation.timbre) against closed forms:
known levels read back, a louder copy at distance 0, one partial raised by 3 dB at the distance
its total's shift gives, and why the energy measure exists beside the peak: a partial made of
two strings' lines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsin.evaluation import partial_levels, timbre_distance

FS = 4096
T = np.arange(int(3.75 * FS)) / FS


def _tone(f0: float, levels_db: np.ndarray) -> np.ndarray:
    amps = 10 ** (np.asarray(levels_db) / 20)
    return sum(a * np.cos(2 * np.pi * (h + 1) * f0 * T + h) for h, a in enumerate(amps))


@pytest.mark.parametrize("measure", ["peak", "energy"])
def test_known_levels_come_back_and_a_louder_copy_is_at_distance_zero(measure: str) -> None:
    levels = np.array([0.0, -6.0, -3.5, -12.0, -20.0, -9.0])
    x = _tone(196.0, levels)
    got = partial_levels(x, 196.0, measure=measure, n=8)
    np.testing.assert_allclose(got[:6] - got[0], levels - levels[0], atol=0.05)
    assert got[6] < got[0] - 60 and got[7] < got[0] - 60  # 7 and 8 x 196 Hz: no partial
    assert timbre_distance(got[:6], partial_levels(0.3 * x, 196.0, measure=measure)[:6]) < 1e-6
    # one partial 3 dB up: each set minus its energy total, so the five others move by the
    # total's change, the raised one by 3 dB less that change
    up = levels.copy()
    up[2] += 3.0
    p = 10 ** (levels / 10)
    shift = 10 * math.log10((p.sum() + p[2] * (10**0.3 - 1)) / p.sum())
    d = timbre_distance(got[:6], partial_levels(_tone(196.0, up), 196.0, measure=measure)[:6])
    assert d == pytest.approx(shift, abs=0.03)


def test_above_fmax_is_not_compared_and_bad_input_is_refused() -> None:
    x = _tone(440.0, np.zeros(5))
    got = partial_levels(x, 440.0)
    assert np.isfinite(got[:4]).all() and np.isnan(got[4:]).all()  # 5 x 440 > 1800 Hz
    assert math.isnan(timbre_distance(got, np.full(8, np.nan)))
    with pytest.raises(ValueError, match="measure"):
        partial_levels(x, 440.0, measure="loudness")


def test_two_strings_lines_lower_the_peak_not_the_energy() -> None:
    """A partial of two equal lines 2 Hz apart (two strings 16 cents out of unison at 220 Hz)
    against one sinusoid of the same power: the long spectrum resolves the two lines, so its
    peak is 3 dB lower (each line holds half the power), while the band's energy is the same.
    A re-synthesis with one sinusoid per partial scores that 3 dB in the peak measure."""
    one = np.cos(2 * np.pi * 220.0 * T)
    two = (np.cos(2 * np.pi * 219.0 * T) + np.cos(2 * np.pi * 221.0 * T + 1.0)) / math.sqrt(2)
    peak = partial_levels(two, 220.0, n=1) - partial_levels(one, 220.0, n=1)
    energy = partial_levels(two, 220.0, n=1, measure="energy") - partial_levels(
        one, 220.0, n=1, measure="energy"
    )
    assert float(peak[0]) == pytest.approx(-10 * math.log10(2), abs=0.1)
    assert abs(float(energy[0])) < 0.02


def test_the_oracle_resynthesis_keeps_a_steady_tones_levels() -> None:
    """scripts/timbre_oracle.py's oracle (one sinusoid per partial at the recording's own
    frequency and amplitude) gives a steady harmonic tone back with its partials' levels: the
    bound it measures on recorded notes is the recordings', not the oracle's own error."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "timbre_oracle.py"
    spec = importlib.util.spec_from_file_location("timbre_oracle", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["timbre_oracle"] = module
    spec.loader.exec_module(module)
    levels = np.array([0.0, -4.0, -9.0, -6.0, -15.0, -12.0, -20.0, -18.0])
    x = _tone(196.0 * 2 ** (7 / 1200), levels)  # 7 cents sharp of G3: found, not assumed
    want = 196.0 * 2 ** (7 / 1200) * np.arange(1, 9)  # to half the 0.034 Hz FFT bin
    np.testing.assert_allclose(module.partial_frequencies(x, 196.0)[:8], want, atol=0.018)
    for rate in (16, 4):
        y = module.oracle(x, 196.0, rate)
        for measure in ("peak", "energy"):
            ref = partial_levels(x, 196.0, measure=measure)
            assert timbre_distance(ref, partial_levels(y, 196.0, measure=measure)) < 0.05
