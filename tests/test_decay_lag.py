"""The lag of S_J's causal filters on decaying partials (mmsin.generators.peaks.decay_lag,
``FreePartialGenerator.lead_decays``, ``generator.lag_correction``): the table against the
encoder itself and against the filters' group delays in closed form; a decaying partial's
controls at its level at the frame's time, not the level u reads (which lags); rises, onsets and
steady partials as read; streaming equal to the whole sequence; the config switch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmsin.config import override, preset
from mmsin.generators.free_partials import FreePartialGenerator
from mmsin.generators.partials import first_order_frontend
from mmsin.generators.peaks import DecayLag, decay_lag
from mmsin.scattering import TimeFrequencyScattering
from test_free_partials import _generator as _head
from test_free_partials import _random_pushes

FS = 4096
HOP = 1024


@pytest.fixture(scope="module")
def sj() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")


@pytest.fixture(scope="module")
def lag(sj: TimeFrequencyScattering) -> DecayLag:
    return decay_lag(sj, HOP)


def _generator(sj: TimeFrequencyScattering, lag: DecayLag | None) -> FreePartialGenerator:
    """An untrained head (its network's log-gain is zero: the controls are the estimate)."""
    return _head(sj, context=2, decay_lag=lag)


def _decaying(f: float, r: float, seconds: float = 8.0, a0: float = 0.5) -> np.ndarray:
    """a0 exp(-r t) cos(2 pi f t) after a 10 ms attack."""
    t = np.arange(int(seconds * FS)) / FS
    return a0 * np.exp(-r * t) * np.minimum(1.0, t / 0.01) * np.cos(2 * np.pi * f * t)


def test_the_table_is_the_filters_group_delay_and_what_the_encoder_reads(
    sj: TimeFrequencyScattering, lag: DecayLag
) -> None:
    """First order: log G_b = rho D_b, D_b the group delay of the N = 3 pole cascades,
    N (p_b / (1 - p_b) + p / (1 - p)) + 1/2 (the wavelet's first difference), p = exp(-sigma).
    The whole table against S_J itself: u (S_J's first order read back) of a sine decaying at
    r at bin b's centre frequency, over its true amplitude at the frame's time, is G_b(r) times
    what the same bin reads of a steady sine (frames 5-10)."""
    fam = sj.family
    order = np.argsort(np.asarray(fam.xi1))
    p_b = np.exp(-np.asarray(fam.sigma1)[order])
    p = math.exp(-fam.sigma_phi)
    closed = 3 * (p_b / (1 - p_b) + p / (1 - p)) + 0.5
    np.testing.assert_allclose(lag.delay, closed, rtol=1e-4)
    assert 600 < lag.delay[-1] < 640 and 1800 < lag.delay[36] < 1900  # 1.7 kHz, 28 Hz
    slope = (lag.log_gain[:, 1] - lag.log_gain[:, 0]) / (lag.step / HOP)
    np.testing.assert_allclose(slope[36:], lag.delay[36:], rtol=0.01)

    matrix, hz = first_order_frontend(sj)
    M = torch.tensor(matrix, dtype=torch.float64)

    def u(x: np.ndarray, b: int) -> np.ndarray:
        S = sj(torch.tensor(x[None], dtype=torch.float32)).double()
        return (M @ S[0])[b].numpy()  # (frames,)

    for b, r in ((60, 2.0), (60, 4.0), (84, 3.0), (40, 1.5)):
        f = float(hz[b])
        steady = np.median(u(_decaying(f, 0.0), b)[5:11]) / 0.5
        n = np.arange(5, 11)  # the attack's transient has left the longest filters
        read = u(_decaying(f, r), b)[n] / (0.5 * np.exp(-r * n * HOP / FS)) / steady
        fall = r * HOP / FS
        want = np.interp(fall, lag.step * np.arange(lag.log_gain.shape[1]), lag.log_gain[b])
        np.testing.assert_allclose(np.log(read), want, atol=0.012)  # 0.1 dB
        assert want > 0.9 * fall * lag.delay[b] / HOP  # and it is the lag's, not a constant


@pytest.mark.parametrize(
    ("low", "fast"),
    [((300.0, 1.0), (900.0, 4.0)), ((110.0, 0.5), (1000.0, 3.0)), ((220.0, 2.0), (659.0, 2.0))],
)
def test_partials_decaying_at_their_own_rates_keep_their_level_difference(
    sj: TimeFrequencyScattering,
    lag: DecayLag,
    low: tuple[float, float],
    fast: tuple[float, float],
) -> None:
    """Two partials decaying at r1 and r2 (4-35 dB/s): in frames 4-8 the controls' level
    difference against the true one at the frame's time (block n ends at n 2^J) is off by
    log G_2 - log G_1 as u reads it (2-3 dB where the rates differ, 0.4 dB where only the
    bins' wavelets do), within 0.15 dB once led;
    the frame's partial energy is u's either way (the network sets the level)."""
    (f1, r1), (f2, r2) = low, fast
    x = _decaying(f1, r1) + _decaying(f2, r2)
    frames = sj(torch.tensor(x[None], dtype=torch.float32))
    n = np.arange(4, 9)
    truth = 20 * np.log10(np.exp(-(r2 - r1) * n * HOP / FS))
    g0, g1 = _generator(sj, None), _generator(sj, lag)
    hz = g0.bin_hz.numpy()
    j1, j2 = int(np.argmin(abs(hz - f1))), int(np.argmin(abs(hz - f2)))
    err, energy = {}, {}
    for name, g in (("read", g0), ("led", g1)):
        with torch.no_grad():
            amp = g.controls(frames).amp[0].numpy()
        a1 = amp[j1 - 1 : j1 + 2, n].max(axis=0)
        a2 = amp[j2 - 1 : j2 + 2, n].max(axis=0)
        err[name] = 20 * np.log10(a2 / a1) - truth
        energy[name] = (amp[:, n] ** 2).sum(axis=0)
    # equal rates differ too: the wavelets' own delays (155 samples at 220 Hz, 52 at 659 Hz)
    assert (np.abs(err["read"]) > (0.3 if r1 == r2 else 2.0)).all(), err
    assert (np.abs(err["led"]) < 0.15).all(), err
    np.testing.assert_allclose(energy["led"], energy["read"], rtol=1e-5)


def test_rises_onsets_and_steady_partials_are_played_as_read(
    sj: TimeFrequencyScattering, lag: DecayLag
) -> None:
    """Only falls are led: a partial growing as exp(+t) beside a steady one comes out as
    without the correction; and where a note starts over a falling one, the new partial keeps
    its level against the frame while the falling one is lowered against it."""
    t = np.arange(6 * FS) / FS
    rising = 0.05 * np.exp(t / 2) * np.cos(2 * np.pi * 300.0 * t)
    steady = 0.3 * np.cos(2 * np.pi * 700.0 * t)
    frames = sj(torch.tensor((rising + steady)[None], dtype=torch.float32))
    with torch.no_grad():
        read = _generator(sj, None).controls(frames).amp
        led = _generator(sj, lag).controls(frames).amp
    assert float(read.max()) > 0.01
    # (a steady partial's estimate falls by float rounding from frame to frame: 2e-7 relative)
    torch.testing.assert_close(led, read, rtol=1e-5, atol=1e-9)
    tt = np.arange(8 * FS) / FS
    x = _decaying(220.0, 1.5) + 0.3 * np.cos(2 * np.pi * 660.0 * tt) * (tt > 3.1)
    frames = sj(torch.tensor(x[None], dtype=torch.float32))
    g0, g1 = _generator(sj, None), _generator(sj, lag)
    with torch.no_grad():
        a0, a1 = g0.controls(frames).amp[0], g1.controls(frames).amp[0]
        _, _, peak, _, _ = g0.estimate(frames)
    p13, p12 = peak[0, g0.keep, 13], peak[0, g0.keep, 12]
    new = p13 & ~p12
    falling = p13 & p12 & (a0[:, 13] < a0[:, 12])
    assert int(new.sum()) >= 1 and int(falling.sum()) >= 1
    ratio = torch.log(a1[:, 13] / a0[:, 13].clamp(min=1e-30))
    assert float(ratio[new].min()) > float(ratio[falling].max()) + 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_with_the_lag_correction_equals_the_whole_sequence(
    sj: TimeFrequencyScattering, lag: DecayLag, seed: int
) -> None:
    """The correction reads the frame before: a stream keeps its last frame's estimate, so any
    split of the frames (single frames, empty pushes) gives the whole sequence's controls and
    waveform; ``reset`` forgets it."""
    g = _generator(sj, lag)
    x = np.stack(  # partials falling at different rates: the correction moves them apart
        [
            _decaying(130.0, 0.7, 10.0) + _decaying(390.0, 2.5, 10.0),
            _decaying(523.0, 3.0, 10.0) + _decaying(1046.0, 1.0, 10.0, a0=0.2),
        ]
    )
    x[:, 4 * FS : 5 * FS] = 0.0
    frames = sj(torch.tensor(x, dtype=torch.float32))
    with torch.no_grad():
        whole, c = g(frames), g.controls(frames)
    pieces = _random_pushes(frames, seed, fewest_cuts=3)
    s = g.stream(2)
    streamed = torch.cat([s.controls(p).amp for p in pieces], -1)
    np.testing.assert_allclose(streamed.numpy(), c.amp.numpy(), rtol=1e-4, atol=1e-7)
    for _ in range(2):
        s.reset()
        y = torch.cat([*(s.push(p) for p in pieces), s.flush()], -1)
        np.testing.assert_allclose(y.numpy(), whole.numpy(), atol=1e-4)
    assert float(whole.abs().max()) > 0.05


def test_lag_correction_is_a_config_choice_off_by_default() -> None:
    from mmsin.assembly import build_generator

    on = build_generator(override(preset("pitched"), ["generator.lag_correction=true"]), 973)
    off = build_generator(preset("pitched"), 973)
    assert on.decay_table is not None and on.decay_table.shape[0] == on.num_bins
    assert off.decay_table is None
    with pytest.raises(ValueError, match="lag_correction"):
        override(preset("pitched"), ["generator.lag_correction=maybe"])
