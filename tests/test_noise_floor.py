"""The noise branch fitted to a training set's floor (mmsin.generators.noise_floor): the floor
levels against scipy's Welch estimate of white noise, and a branch fitted on tones over noise
at many levels renders the floor of a tone it never saw at the level scipy measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import welch

from mmsin.generators.free_partials import FreePartialGenerator
from mmsin.generators.noise_floor import band_bin_masks, band_floor_levels, fit_noise_floor
from mmsin.scattering import TimeFrequencyScattering
from test_free_partials import _generator as _head

FS = 4096
AMP = 1.0
HOP = 1024


@pytest.fixture(scope="module")
def sj() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")


def _welch_db(x: np.ndarray, lo: float, hi: float) -> float:
    """Mean power spectral density of ``x`` between lo and hi Hz, dB (scipy's Welch)."""
    f, p = welch(x, FS, nperseg=512)
    return float(10 * np.log10(np.mean(p[(f >= lo) & (f < hi)])))


def test_band_masks_partition_the_spectrum_and_levels_read_white_noise() -> None:
    masks = band_bin_masks(6, FS)
    assert masks.shape == (6, 257)
    assert torch.equal(masks.sum(0), torch.ones(257, dtype=torch.long))  # every bin, once
    assert bool(masks[5, 0]) and bool(masks[0, -1])  # 0 Hz in the lowest band, fs/2 the top
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((4, 8 * HOP)) * 0.01)
    levels = band_floor_levels(x, HOP, masks)
    assert levels.shape == (4, 6, 8)
    # white noise: every band's level is the same, the mean power per bin: the Hann window's
    # noise gain sum(w^2) sigma^2
    w = torch.hann_window(512, dtype=torch.float64)
    expected = float((w**2).sum()) * 1e-4
    np.testing.assert_allclose(levels.median().item(), expected, rtol=0.1)
    assert float(levels.log().std()) < 0.4  # a low quantile of 40-640 draws per band


def _generator(sj: TimeFrequencyScattering) -> FreePartialGenerator:
    """A small head whose noise branch reads log S_J, partials by the plain parabola."""
    return _head(
        sj, noise_bands=6, noise_input="log", refine_rounds=0, channels=4, depth=1, trunk_hidden=4
    )


def _tone_and_floor(
    f0: float, noise_db: float, seed: int, seconds: float = 8.0, harmonics: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """``harmonics`` harmonics, and white noise of RMS ``noise_db`` dB re full scale."""
    t = np.arange(int(seconds * FS)) / FS
    rng = np.random.default_rng(seed)
    tone = sum(AMP * 0.3 * 0.5**k * np.sin(2 * np.pi * (k + 1) * f0 * t) for k in range(harmonics))
    return np.asarray(tone), 10 ** (noise_db / 20) * rng.standard_normal(t.size)


def test_a_fitted_branch_renders_an_unseen_floor_at_its_level(sj: TimeFrequencyScattering) -> None:
    g = _generator(sj)
    with torch.no_grad():  # a trunk gain of about e^2 (+17 dB), which the fit must divide out
        g.trunk.layers[-1].conv.bias.add_(2.0)  # type: ignore[union-attr]
    rng = np.random.default_rng(1)
    levels = rng.uniform(-90, -30, 48)
    f0s = 110 * 2 ** rng.uniform(0, 3, 48)
    x = torch.tensor(
        np.stack(
            [
                sum(_tone_and_floor(f, d, i))
                for i, (f, d) in enumerate(zip(f0s, levels, strict=True))
            ]
        ),
        dtype=torch.float32,
    )
    frames = sj(x)
    norm = frames.mean(dim=(0, 2)).clamp(min=1e-6)
    g.set_input_norm(norm)
    frames = frames / norm[:, None]
    T = frames.shape[-1]
    assert not bool(g.noise.fitted)  # type: ignore[union-attr]
    fit = fit_noise_floor(g, frames, x[:, : T * HOP], ridge=1e-2)
    assert bool(g.noise.fitted)  # type: ignore[union-attr]
    assert fit.residual_db < 0.5 * fit.spread_db  # the inputs explain the floor
    for i, noise_db in enumerate((-75.0, -45.0)):
        tone, floor = _tone_and_floor(150.0, noise_db, 100 + i, harmonics=2)
        y = torch.tensor((tone + floor)[None], dtype=torch.float32)
        fr = sj(y) / norm[:, None]
        with torch.no_grad():  # the generator's own synthesis, its partials silenced
            c = g.controls(fr)
            c.amp = torch.zeros_like(c.amp)
            rendered = g.synthesize(c, g.zero_state(1, c.amp), 0)[0][0, 4 * HOP :].numpy()
        for lo, hi in ((1100.0, 1900.0), (600.0, 1000.0)):  # above the tone's partials
            want = _welch_db(floor[4 * HOP :], lo, hi)
            got = _welch_db(rendered, lo, hi)
            # a linear fit of log levels over a 60 dB range: within 6 dB (without the trunk's
            # gain divided out, 17 dB off)
            assert abs(got - want) < 6.0, (noise_db, lo, got, want)
