"""Grid energy share, harmonic-to-noise ratio and the low-passed reference against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from mmsin import evaluation as ev

FS = 4096
T = np.arange(2 * FS) / FS
NFFT = 4 * 2 * FS  # the zero-padded FFT of a 2 s clip: bins of 0.125 Hz
DF = FS / NFFT


def sine(f: float, phase: float = 0.3) -> np.ndarray:
    return np.sin(2 * np.pi * f * T + phase)


def harmonic(f0: float, n: int) -> np.ndarray:
    """Partials 1..n of f0 with amplitudes 1/h (steady)."""
    return sum(np.sin(2 * np.pi * h * f0 * T + 0.7 * h) / h for h in range(1, n + 1))


# --- grid energy share -------------------------------------------------------------------------


def test_sines_on_and_off_the_grid() -> None:
    on = ev.grid_energy_share(sine(320.0), FS)  # 5 x 64 Hz, 10 x 32 Hz, 2.5 x 128 Hz
    assert on.spacing_hz == {5: 128.0, 6: 64.0, 7: 32.0}
    assert on.share[6] > 0.9999 and on.share[7] > 0.9999 and on.combined > 0.9999
    assert on.share[5] < 1e-6
    # MIDI 62: 26 Hz from 320 Hz, 5.7 Hz from 288 Hz (the 32 Hz grid): nothing counts.
    off = ev.grid_energy_share(sine(293.66), FS)
    assert max(off.share.values()) < 1e-5 and off.combined < 1e-5
    # A line 10 Hz off the grid is not counted: the whole-clip window's main lobe is +-1 Hz.
    assert ev.grid_energy_share(sine(330.0), FS).combined < 1e-6


def test_pulse_train_every_64_samples() -> None:
    # Lines at every multiple of 64 Hz with equal amplitude: interior lines carry twice the
    # energy of the one at fs/2 (a cosine vs (-1)^n). On the 128 Hz grid: 15 interior lines and
    # fs/2 out of 31 interior lines and fs/2 -> 31/63.
    p = np.zeros(2 * FS)
    p[::64] = 1.0
    g = ev.grid_energy_share(p, FS)
    assert g.share[6] == pytest.approx(1.0, abs=1e-4)
    assert g.share[7] == pytest.approx(1.0, abs=1e-4)
    assert g.share[5] == pytest.approx(31 / 63, abs=2e-4)


def test_harmonic_tone_on_the_64hz_grid() -> None:
    # f0 = 192 Hz = 3 x 64: every partial on the 64 Hz grid; on the 128 Hz grid only the even
    # ones (energy 1/h^2, h even, of the 10 partials below fs/2).
    g = ev.grid_energy_share(harmonic(192.0, 10), FS)
    assert g.share[6] == pytest.approx(1.0, abs=1e-4)
    even = sum(1 / h**2 for h in range(2, 11, 2)) / sum(1 / h**2 for h in range(1, 11))
    assert g.share[5] == pytest.approx(even, abs=1e-4)
    # A tone at MIDI 62 has no partial on the 64 Hz grid. Its 6th partial (1761.96 Hz) lies
    # 1.96 Hz from 1760 Hz, on the edge of a 32 Hz band: part of its main lobe (+-1 Hz) counts.
    g = ev.grid_energy_share(harmonic(293.66, 6), FS)
    assert g.share[5] < 1e-4 and g.share[6] < 1e-4
    assert 0.2 < g.share[7] / ((1 / 36) / sum(1 / h**2 for h in range(1, 7))) < 0.8


def test_white_noise_share_is_the_band_coverage() -> None:
    rng = np.random.default_rng(3)
    noise = rng.standard_normal((32, 2 * FS))
    g = ev.grid_energy_share(noise, FS)
    for k, spacing in g.spacing_hz.items():
        # Each line's band holds 2 tol / df + 1 bins: width 2 tol + df. The exact coverage also
        # leaves out the band at DC and has half a band at fs/2 (weights: interior bins 2).
        lines = int(FS / 2 // spacing) - 1  # full bands strictly between 0 and fs/2
        per_band = round(2 * 2.0 / DF) + 1
        half = round(2.0 / DF)  # bins of fs/2's band below fs/2
        valid = NFFT // 2 - round(2.0 / DF)  # bins above 2 Hz, the one at fs/2 included
        exact = (2 * (lines * per_band + half) + 1) / (2 * valid - 1)
        assert g.chance[k] == pytest.approx(exact, rel=1e-9)
        # the approximation (2 tol + df) / spacing, off by the missing half band at DC
        assert g.chance[k] == pytest.approx((2 * 2.0 + DF) / spacing, rel=0.05)
        # 32 clips of 2 s: the mean share is within a few % of the coverage.
        assert float(np.mean(g.share[k])) == pytest.approx(g.chance[k], rel=0.04)
    assert g.chance_combined == g.chance[7]
    assert np.array_equal(g.combined, g.share[7])


def test_batch_torch_dc_silence_and_short_clips() -> None:
    batch = np.stack([sine(320.0), sine(293.66), np.zeros(2 * FS)])
    g = ev.grid_energy_share(torch.from_numpy(batch).float(), FS)
    assert g.share[6].shape == (3,)
    assert g.share[6][0] == pytest.approx(ev.grid_energy_share(sine(320.0), FS).share[6])
    assert np.isnan(g.share[6][2])
    # A DC offset is not a grain's pitch: it changes nothing.
    shifted = ev.grid_energy_share(sine(293.66) + 0.8, FS)
    assert shifted.combined < 1e-5
    with pytest.raises(ValueError, match="too short"):
        ev.grid_energy_share(np.zeros(1024), FS)  # main lobe +-8 Hz > 2 Hz


# --- harmonic-to-noise ratio -------------------------------------------------------------------


def coverage(f0: float, tol: float = 2.0, cents: float = 0.0) -> float:
    """Share of the spectrum above tol covered by the bands around h f0 (h f0 <= fs/2): band
    h is 2 max(tol, h f0 (2^(cents/1200) - 1)) + df wide (no band reaches fs/2 here)."""
    widths = [
        2 * max(tol, h * f0 * (2 ** (cents / 1200) - 1)) + DF
        for h in range(1, int(FS / 2 // f0) + 1)
    ]
    return sum(widths) / (FS / 2 - tol)


def test_hnr_of_a_pure_harmonic_tone_is_high() -> None:
    assert ev.harmonic_to_noise_ratio(harmonic(293.66, 6), FS, 293.66) > 40.0
    assert ev.harmonic_to_noise_ratio(harmonic(293.66, 6), FS, 293.66, tol_cents=0) > 40.0
    # The wrong f0 (a semitone up) finds almost nothing on its harmonics.
    assert ev.harmonic_to_noise_ratio(harmonic(293.66, 6), FS, 311.13) < -20.0


@pytest.mark.parametrize("cents", [0.0, 20.0])
def test_hnr_of_white_noise_is_the_band_coverage(cents: float) -> None:
    rng = np.random.default_rng(4)
    noise = rng.standard_normal((16, 2 * FS))
    hnr = ev.harmonic_to_noise_ratio(noise, FS, 100.0, tol_cents=cents)
    # 20 harmonics x 4.125 Hz of 2046 Hz: 4 %; with +-20 cents, 2.3 % of h f0 each: 24 %.
    c = coverage(100.0, cents=cents)
    assert hnr.shape == (16,)
    assert float(np.mean(hnr)) == pytest.approx(10 * math.log10(c / (1 - c)), abs=0.4)
    if cents == ev.HNR_TOL_CENTS:
        assert np.array_equal(hnr, ev.harmonic_to_noise_ratio(noise, FS, 100.0))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_hnr_of_tone_plus_noise_is_close_to_the_snr(snr_db: float) -> None:
    rng = np.random.default_rng(5)
    tone = harmonic(200.0, 5)
    p_tone = sum(1 / h**2 for h in range(1, 6)) / 2
    p_noise = p_tone / 10 ** (snr_db / 10)
    x = tone + math.sqrt(p_noise) * rng.standard_normal((8, 2 * FS))
    for cents in (0.0, 20.0):
        c = coverage(200.0, cents=cents)
        expected = 10 * math.log10((p_tone + c * p_noise) / ((1 - c) * p_noise))
        hnr = float(np.mean(ev.harmonic_to_noise_ratio(x, FS, np.full(8, 200.0), tol_cents=cents)))
        assert hnr == pytest.approx(expected, abs=0.3)
        # Narrow bands cover 2 % of the spectrum: HNR is the SNR within 0.2 dB; +-20-cent
        # bands cover 13 %, which adds up to 1.1 dB at 0 dB SNR (the formula above).
        assert abs(hnr - snr_db) < (0.3 if cents == 0 else 1.2)


def test_hnr_bands_widen_with_cents_and_nan_f0() -> None:
    # Partials stretched by +15 cents at h = 5 (8.7 Hz off at 1000 Hz) leave the 2 Hz bands but
    # not 20-cent ones.
    f0 = 200.0
    x = sum(np.sin(2 * np.pi * h * f0 * 2 ** (3 * h / 1200) * T) for h in range(1, 6))
    narrow = ev.harmonic_to_noise_ratio(x, FS, f0, tol_cents=0.0)
    wide = ev.harmonic_to_noise_ratio(x, FS, f0, tol_cents=20.0)
    assert narrow < 0.0 < 30.0 < wide
    assert np.isnan(ev.harmonic_to_noise_ratio(x, FS, float("nan")))


# --- the low-passed reference ------------------------------------------------------------------


@pytest.mark.parametrize("f", [250.0, 900.0, 1000.0, 1100.0, 1400.0])
def test_lowpass_reference_gain_is_the_butterworth_closed_form(f: float) -> None:
    fc, order = 1000.0, 8
    y = ev.lowpass_reference(sine(f), FS, fc, order=order)
    mid = slice(FS // 2, 3 * FS // 2)  # away from the ends
    ref = np.exp(2j * np.pi * f * T[mid])
    gain = abs(np.vdot(ref, y[mid])) / abs(np.vdot(ref, sine(f)[mid]))
    h2 = 1 / (1 + (math.tan(math.pi * f / FS) / math.tan(math.pi * fc / FS)) ** (2 * order))
    assert gain == pytest.approx(h2, abs=2e-3)


def test_lowpass_reference_is_zero_phase_and_batched() -> None:
    x = np.stack([harmonic(150.0, 4), harmonic(300.0, 2)])  # all below 1000 Hz
    y = ev.lowpass_reference(x, FS, 1500.0)
    assert y.shape == x.shape
    # Below the cutoff the reference is the signal itself, aligned sample for sample.
    assert np.max(np.abs(y[:, 1000:-1000] - x[:, 1000:-1000])) < 1e-3
    assert ev.log_spectral_distance(y, x) < ev.log_spectral_distance(
        ev.lowpass_reference(x, FS, 500.0), x
    )
    assert np.allclose(y[0], scipy.signal.sosfiltfilt(
        scipy.signal.butter(8, 1500.0, fs=FS, output="sos"), x[0]))  # fmt: skip
    with pytest.raises(ValueError, match="cutoff"):
        ev.lowpass_reference(x, FS, 3000.0)
