"""Metrics of mmsin.evaluation against closed forms, scipy, the paper's numbers and CREPE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from mmsin import evaluation as ev

FS = 4096
T = np.arange(2 * FS) / FS


def _tone(f0: float, rng: np.random.Generator, amps=lambda h: 1.0 / h, inharm: float = 0.0):
    y = np.zeros_like(T)
    for h in range(1, 30):
        f = h * f0 * math.sqrt(1 + inharm * h * h)
        if f >= FS / 2:
            break
        y += amps(h) * np.sin(2 * np.pi * f * T + rng.uniform(0, 2 * np.pi))
    return y * np.exp(-T)


# --- the paper's Table 1 gap ------------------------------------------------------------------


def test_gap_db_matches_all_three_rows_of_table1_within_rounding() -> None:
    for _, train, test, paper_gap in ev.PAPER_TABLE1:
        # The printed errors are rounded to 2 decimals: the true ratio lies in this interval.
        lo = 10 * math.log10((test - 0.005) / (train + 0.005))
        hi = 10 * math.log10((test + 0.005) / (train - 0.005))
        assert lo <= paper_gap <= hi
        assert abs(ev.gap_db(test, train) - paper_gap) < 0.12
        # 20 log10 is off by far more than rounding explains
        assert 2 * lo > paper_gap + 0.5
    assert ev.gap_db(0.77, 0.56) == pytest.approx(1.383, abs=1e-3)
    with pytest.raises(ValueError, match="positive"):
        ev.gap_db(0.0, 0.5)


# --- spread and MR-STFT / LSD closed forms -------------------------------------------------------


def test_spread_closed_form() -> None:
    # Two points at distance 2d from each other: each is d from the mean.
    f = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    assert ev.spread(f) == pytest.approx(2.5)
    rng = np.random.default_rng(1)
    g = rng.standard_normal((4000, 16))
    # E||g - mean|| for standard normal vectors in 16-d: chi distribution mean
    chi_mean = math.sqrt(2) * math.gamma(8.5) / math.gamma(8)
    assert ev.spread(g) == pytest.approx(chi_mean, rel=0.02)
    with pytest.raises(ValueError, match="shape"):
        ev.spread(np.zeros(3))


def test_mr_stft_zero_for_identical_and_closed_form_for_scaled() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4096))
    assert ev.multi_resolution_stft_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    for a in (0.5, 2.0):
        expected = abs(1 - a) + abs(math.log(a))
        assert ev.multi_resolution_stft_distance(a * x, x) == pytest.approx(expected, rel=1e-6)
    # a different signal is far away
    assert ev.multi_resolution_stft_distance(rng.standard_normal(4096), x[0]) > 1.0
    with pytest.raises(ValueError, match="same shape"):
        ev.multi_resolution_stft_distance(x, x[:, :100])


def test_log_spectral_distance_closed_form() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(8192)
    assert ev.log_spectral_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    for a in (0.1, 3.0):
        assert ev.log_spectral_distance(a * x, x) == pytest.approx(abs(20 * math.log10(a)), 1e-4)


def test_spectral_flatness_white_noise_vs_sine() -> None:
    rng = np.random.default_rng(4)
    noise = rng.standard_normal(4 * FS)
    # exponential periodogram bins: E[geometric/arithmetic] -> exp(-Euler gamma)
    assert ev.spectral_flatness(noise) == pytest.approx(math.exp(-np.euler_gamma), abs=0.02)
    assert ev.spectral_flatness(np.sin(2 * np.pi * 440 * T)) < 0.01


def test_silent_frames_and_partials() -> None:
    y = np.sin(2 * np.pi * 220 * T)
    y[: y.size // 4] = 0.0  # a quarter of silence
    assert ev.silent_frames(y) == pytest.approx(0.25, abs=0.03)
    assert ev.silent_frames(np.sin(2 * np.pi * 220 * T)) == 0.0
    rng = np.random.default_rng(5)
    # harmonics of 220 Hz below 2048 Hz: 9 partials
    assert ev.simultaneous_partials(_tone(220.0, rng)) == pytest.approx(9, abs=0.5)
    two = _tone(220.0, rng) + _tone(220.0 * 2 ** (5 / 12), rng)
    # 9 + 6 partials, of which two coincide (4 x 220 = 3 x 293.7, 8 x 220 = 6 x 293.7)
    assert ev.simultaneous_partials(two) == pytest.approx(13, abs=1)


# --- pitch ---------------------------------------------------------------------------------


def test_cents_and_midi() -> None:
    assert ev.midi_to_hz(69) == pytest.approx(440.0)
    assert ev.cents(880.0, 440.0) == pytest.approx(1200.0)
    assert ev.cents(ev.midi_to_hz(65), ev.midi_to_hz(60)) == pytest.approx(500.0)


@pytest.mark.parametrize("f0", [65.41, 261.63, 880.0])
def test_crepe_f0_of_a_sine_within_a_few_cents(f0: float) -> None:
    y = 0.5 * np.sin(2 * np.pi * f0 * T)
    measured = ev.median_f0(y, FS, model="tiny")
    assert abs(ev.cents(measured, f0)) < 15.0


def test_crepe_tracks_are_the_same_in_every_process() -> None:
    """torchcrepe's weighted-argmax decoder dithers its bin pitches once per process from
    numpy's global random state; a fresh process (the decoder's weights not yet made) with
    another random state must still give the same track, to the bit."""
    from mmsin.evaluation.pitch import _import_torchcrepe

    decode = _import_torchcrepe().decode.weighted_argmax
    y = 0.5 * np.sin(2 * np.pi * 880.0 * T) + 0.2 * np.sin(2 * np.pi * 1760.0 * T)
    tracks = []
    for seed in (1, 2):
        if hasattr(decode, "weights"):
            del decode.weights  # as in a new process
        np.random.seed(seed)  # noqa: NPY002 (torchcrepe draws from numpy's global state)
        tracks.append(ev.pitch_track(y, FS).f0)
    np.testing.assert_array_equal(tracks[0], tracks[1])


def test_crepe_f0_of_a_harmonic_tone_and_noise() -> None:
    rng = np.random.default_rng(6)
    f0 = ev.midi_to_hz(57)
    assert abs(ev.cents(ev.median_f0(_tone(f0, rng), FS), f0)) < 20.0
    track = ev.pitch_track(0.3 * rng.standard_normal(FS), FS)
    assert np.median(track.periodicity) < 0.5  # noise is not voiced
    with pytest.raises(ValueError, match="tiny"):
        ev.pitch_track(np.zeros(100), FS, model="huge")


def test_single_tone_vs_two_tone_mix_five_semitones_apart() -> None:
    rng = np.random.default_rng(7)
    spectra = [lambda h: 1.0 / h, lambda h: 1.0 / h**2, lambda h: 0.3 if h == 1 else 1.0 / h]
    for midi in range(36, 90, 6):
        f1, f2 = ev.midi_to_hz(midi), ev.midi_to_hz(midi + 5)
        for amps in spectra:
            single = ev.harmonic_pitches(_tone(f1, rng, amps, inharm=1e-4), FS)
            assert single.single, (midi, single)
            assert abs(ev.cents(single.f0[0], f1)) < 30
            mix = ev.harmonic_pitches(_tone(f1, rng, amps) + _tone(f2, rng, amps), FS)
            assert not mix.single, (midi, mix)
            # the two series found are the two notes; a weak fundamental may come out an
            # octave up (an octave ambiguity every pitch tracker shares)
            notes = []
            for f in mix.f0:
                offs = [ev.cents(f, g) % 1200 for g in (f1, f2)]
                offs = [min(o, 1200 - o) for o in offs]
                assert min(offs) < 30, (midi, mix)
                notes.append(int(np.argmin(offs)))
            assert sorted(notes) == [0, 1]


# --- the paper's set metrics through mmsin.losses ------------------------------------------------


def test_perceptual_error_is_the_training_loss_on_the_set() -> None:
    losses = pytest.importorskip("mmsin.losses", reason="mmsin.losses not merged yet")
    scattering = pytest.importorskip("mmsin.scattering")
    sk = scattering.Scalogram(K=5, Q=12, fs=FS)
    rng = np.random.default_rng(8)
    x = torch.tensor(rng.standard_normal((5, 2048)), dtype=torch.float32)
    x_hat = x + 0.3 * torch.tensor(rng.standard_normal((5, 2048)), dtype=torch.float32)
    with torch.no_grad():
        s, s_hat = sk(x), sk(x_hat)
    n = s.abs().mean(dim=(0, 2))
    loss = losses.ReconstructionLoss(sk, n)
    # eq. (5): mean over channels of mean_{i,t} |S_K x~ - S_K x| / n_c, independent of batching
    expected = float(((s_hat - s).abs().mean(dim=(0, 2)) / n).mean())
    assert ev.perceptual_error(x_hat, x, loss, batch_size=2) == pytest.approx(expected, rel=1e-3)
    assert ev.perceptual_error(x, x, loss) == pytest.approx(0.0, abs=1e-6)


class _EvenOddSquare(torch.nn.Module):
    """A tiny stand-in scalogram: channel 0 = x[::2] (signed), channel 1 = x[1::2]^2."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([x[:, ::2], x[:, 1::2] ** 2], dim=1)


# Hand computation (T = 4, two reference clips, one clip in x):
#   ref  [1, 1, 3, 2] -> ch0 [1, 3], ch1 [1, 4];  [-1, 0, 1, 2] -> ch0 [-1, 1], ch1 [0, 4]
#   n  = mean |S| = [(1+3+1+1)/4, (1+4+0+4)/4] = [1.5, 2.25];  mu = mean S = [1, 2.25]
#   x    [2, 3, 2, 0] -> ch0 [2, 2], ch1 [9, 0]: m = [2, 4.5]
#   D  = ((2 - 1)/1.5)^2 + ((4.5 - 2.25)/2.25)^2 = 4/9 + 1 = 13/9
#   time averages of ref / n: [2/1.5, 2.5/2.25] = [4/3, 10/9] and [0, 2/2.25] = [0, 8/9];
#   mean [2/3, 1], each clip sqrt((2/3)^2 + (1/9)^2) = sqrt(37)/9 from it: sigma = sqrt(37)/9.
_REF = np.array([[1.0, 1.0, 3.0, 2.0], [-1.0, 0.0, 1.0, 2.0]])
_X = np.array([[2.0, 3.0, 2.0, 0.0]])


def test_normalizer_and_time_averaged_closed_form() -> None:
    sk = _EvenOddSquare()
    n = ev.scalogram_normalizer(sk, _REF, batch_size=1)
    np.testing.assert_allclose(n, [1.5, 2.25])
    np.testing.assert_allclose(ev.time_averaged(sk, _REF), [[2.0, 2.5], [0.0, 2.0]])
    np.testing.assert_allclose(
        ev.time_averaged(sk, _REF, normalizer=n), [[4 / 3, 10 / 9], [0.0, 8 / 9]]
    )
    with pytest.raises(ValueError, match="normalizer"):
        ev.time_averaged(sk, _REF, normalizer=np.ones(3))
    # A channel that is zero over the whole reference set is left as is (divisor 1).
    np.testing.assert_allclose(ev.scalogram_normalizer(sk, np.zeros((1, 4))), [1.0, 1.0])


def test_normalised_spread_closed_form_and_per_channel_division() -> None:
    sk = _EvenOddSquare()
    n = ev.scalogram_normalizer(sk, _REF)
    raw = ev.time_averaged(sk, _REF)
    assert ev.spread(raw) == pytest.approx(math.sqrt(2.0**2 + 0.5**2) / 2)
    assert ev.spread(ev.time_averaged(sk, _REF, normalizer=n)) == pytest.approx(math.sqrt(37) / 9)
    # Normalising is dividing every feature vector per channel: sigma of f / n, not sigma / n.
    rng = np.random.default_rng(3)
    f = rng.gamma(2.0, size=(50, 6)) * np.array([1.0, 10.0, 0.1, 3.0, 1.0, 100.0])
    scale = f.mean(axis=0)
    normed = ev.spread(f / scale)
    by_hand = np.mean(np.sqrt((((f - f.mean(axis=0)) / scale) ** 2).sum(axis=1)))
    assert normed == pytest.approx(by_hand)
    assert normed != pytest.approx(ev.spread(f) / scale.mean())
    # A uniform rescaling of one set scales sigma by the same factor.
    assert ev.spread(3.0 * f / scale) == pytest.approx(3.0 * normed)


def test_moment_matching_distance_closed_form() -> None:
    sk = _EvenOddSquare()
    assert ev.moment_matching_distance(_X, _REF, sk, batch_size=1) == pytest.approx(13 / 9)
    assert ev.moment_matching_distance(_REF, _REF, sk) == pytest.approx(0.0, abs=1e-12)
    # An explicit normaliser replaces the reference's: here 1, the raw squared distance.
    raw = ev.moment_matching_distance(_X, _REF, sk, normalizer=np.ones(2))
    assert raw == pytest.approx((2.0 - 1.0) ** 2 + (4.5 - 2.25) ** 2)


def test_moment_matching_distance_on_the_package_scalogram() -> None:
    scattering = pytest.importorskip("mmsin.scattering")
    sk = scattering.Scalogram(K=5, Q=12, fs=FS)
    rng = np.random.default_rng(9)
    ref = torch.tensor(rng.standard_normal((6, 2048)), dtype=torch.float32)
    other = 2.0 * torch.tensor(rng.standard_normal((3, 2048)), dtype=torch.float32)
    with torch.no_grad():
        sr, so = sk(ref).double(), sk(other).double()
    n = sr.abs().mean(dim=(0, 2))
    expected = float((((so.mean(dim=(0, 2)) - sr.mean(dim=(0, 2))) / n) ** 2).sum())
    got = ev.moment_matching_distance(other, ref, sk, batch_size=2)
    assert got == pytest.approx(expected, rel=1e-3)
    # S_K is homogeneous: 2 x doubles every channel, so each channel contributes (mu_c / n_c)^2,
    # i.e. exactly 1 for the (non-negative) first order, and order 0 its signed mean's share.
    twice = ev.moment_matching_distance(2.0 * ref, ref, sk)
    order0 = float(sr[:, 0].mean() / sr[:, 0].abs().mean()) ** 2
    assert twice == pytest.approx(sk.num_channels - 1 + order0, rel=1e-4)
    assert ev.moment_matching_distance(ref, ref, sk) == pytest.approx(0.0, abs=1e-6)
