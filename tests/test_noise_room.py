"""The free head's noise bands are bounded by what the located partials leave of u
(:func:`mmsin.generators.free_partials.noise_band_power`,
:meth:`~mmsin.generators.free_partials.FreePartialGenerator.estimate`'s ``room``).

The 1 x 1 noise layer is linear in S_J; fitted on sound fonts, it saturated at unit gain on
frames of real guitar notes that hold no noise, and played an octave of noise louder than the
note. Here: the calibration against a closed form, the bound on noise alone and on a tone, the
cut of a saturated layer, and streaming with the bound.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mmsin.assembly import build_generator
from mmsin.config import preset
from mmsin.evaluation.grid import harmonic_to_noise_ratio
from mmsin.generators.free_partials import NOISE_TABLE, FreePartialGenerator, noise_band_power
from mmsin.generators.partials import first_order_frontend
from mmsin.generators.peaks import wavelet_responses
from mmsin.generators.synthesis import band_noise_tables, band_shapes
from mmsin.scattering import TimeFrequencyScattering
from test_free_partials import FS, _generator, _partials

BANDS = 6


@pytest.fixture(scope="module")
def sj() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")


@pytest.fixture(scope="module")
def power(sj: TimeFrequencyScattering) -> np.ndarray:
    matrix, hz = first_order_frontend(sj)
    return noise_band_power(sj, matrix, hz, BANDS)


def _bounded(sj: TimeFrequencyScattering, power: np.ndarray) -> FreePartialGenerator:
    return _generator(sj, noise_bands=BANDS, noise_power=power)


def test_noise_band_power_matches_the_closed_form(
    sj: TimeFrequencyScattering, power: np.ndarray
) -> None:
    """Gaussian noise of one-sided spectrum P (unit power) gives x * psi_b of mean square
    (1/2) sum_f P(f) |psi_hat_b(f)|^2 and, Rayleigh-distributed, a mean modulus sqrt(pi) / 2
    times its RMS: u_b^2 = (pi / 8) sum_f P(f) |psi_hat_b(f)|^2, from the wavelets' closed form.
    The encoder's measurement agrees within 5 % above 256 Hz; below, the narrow wavelets'
    average over one frame still fluctuates, which adds to the mean square (measured: +8.5 %
    and +17 %)."""
    _, hz = first_order_frontend(sj)
    f = np.fft.rfftfreq(NOISE_TABLE, 1 / FS)[1:]
    spectrum = band_shapes(f, FS, BANDS) ** 2  # the tables' power spectra, white noise shaped
    spectrum /= spectrum.sum(axis=1, keepdims=True)
    h2 = wavelet_responses(sj, f) ** 2
    weights = band_shapes(hz, FS, BANDS) ** 2
    weights /= weights.sum(axis=0, keepdims=True)
    closed = np.array(
        [weights[b] @ (math.pi / 8 * h2 @ spectrum[b]) for b in range(BANDS)], dtype=np.float64
    )
    ratio = power / closed
    assert np.all(np.abs(ratio[:4] - 1) < 0.05), ratio
    assert np.all((ratio[4:] > 1.0) & (ratio[4:] < 1.25)), ratio


def test_the_room_of_noise_alone_is_at_most_its_gain(
    sj: TimeFrequencyScattering, power: np.ndarray
) -> None:
    """Noise of one band (another seed than the tables) at gain 0.05: its band's room is
    0.4-1.0 of the gain (the head also places partials at u's local maxima in noise, and those
    take their share), and bands an octave or more away get at most a third of it."""
    g = _bounded(sj, power)
    fresh = band_noise_tables(FS, 2**15, BANDS, seed=7)
    for b in range(BANDS):
        x = torch.tensor(0.05 * fresh[b][None], dtype=torch.float32)
        with torch.no_grad():
            room = g.estimate(sj(x))[4]
        assert room is not None
        level = room.level()[0, :, 2:-2].median(dim=-1).values.numpy()
        assert 0.02 < level[b] < 0.05, (b, level)
        far = [c for c in range(BANDS) if abs(c - b) >= 2]
        assert np.all(level[far] < 0.05 / 3), (b, level)


def test_a_saturated_noise_layer_cannot_drown_a_tone(
    sj: TimeFrequencyScattering, power: np.ndarray
) -> None:
    """The noise layer forced to unit gain in every band (as it went on real guitar frames):
    a steady stretched tone keeps its harmonics 10 dB or more above everything else, since u
    holds little besides its partials; without the bound the noise is 9 dB above them."""
    f0 = 261.63 * 2 ** (13 / 1200)
    x = _partials(f0, 4e-4)
    g = _bounded(sj, power)
    assert g.noise is not None
    with torch.no_grad():
        g.noise.conv.bias.fill_(10.0)
        y = g(sj(torch.tensor(x[None], dtype=torch.float32)))[0].numpy()
    steady = y[2 * FS : 4 * FS]
    assert harmonic_to_noise_ratio(steady[None], FS, f0)[0] > 10.0


def test_streaming_with_the_bound_equals_the_whole_sequence(
    sj: TimeFrequencyScattering, power: np.ndarray
) -> None:
    """The room is per frame: a stream (random split points) renders the bounded noise as the
    whole sequence does."""
    g = _bounded(sj, power)
    assert g.noise is not None
    with torch.no_grad():
        g.noise.conv.bias.fill_(10.0)
        frames = sj(torch.tensor(_partials(150.0, seconds=6.0)[None], dtype=torch.float32))
        whole = g(frames)
        s = g.stream(1)
        rng = np.random.default_rng(3)
        cuts = np.sort(rng.choice(np.arange(1, frames.shape[-1]), 4, replace=False))
        bounds = [0, *cuts.tolist(), frames.shape[-1]]
        parts = [s.push(frames[..., a:b]) for a, b in itertools.pairwise(bounds)]
    streamed = torch.cat(parts, dim=-1)
    assert float((streamed - whole).abs().max()) < 1e-3 * float(whole.abs().max())


def test_the_shipped_preset_is_built_with_the_bound() -> None:
    """The `pitched` preset (what ships) builds the free head with its noise bounded, and the
    calibration is the encoder's (the same values as measured here directly)."""
    cfg = preset("pitched")
    from mmsin.assembly import build_scattering

    sj = build_scattering(cfg)
    g = build_generator(cfg, sj.num_channels)
    assert isinstance(g, FreePartialGenerator) and g.noise_room
    matrix, hz = first_order_frontend(sj)
    expected = noise_band_power(sj, matrix, hz, g.noise_bands)
    assert np.allclose(g.noise_power.numpy(), expected, rtol=1e-6)


def test_gains_under_the_eps_floor_are_kept_and_others_cut_to_the_room(
    sj: TimeFrequencyScattering, power: np.ndarray
) -> None:
    """The shortcut (gains all under the room's floor, eps in every bin: kept as they are) and
    the full bound give the elementwise minimum of the gains and the room."""
    g = _bounded(sj, power)
    x = torch.tensor(_partials(220.0, seconds=3.0)[None], dtype=torch.float32)
    with torch.no_grad():
        room = g.estimate(sj(x))[4]
    assert room is not None
    level = room.level().float()
    low = torch.full_like(level, 1e-5)  # below sqrt(sum_f w eps^2 / power) ~ 3e-4
    assert torch.equal(room.bound(low), low)
    high = torch.rand(level.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(room.bound(high), torch.minimum(high, level))
    assert bool((room.bound(high) < high).any())
