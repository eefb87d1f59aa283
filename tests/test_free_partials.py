"""The free-frequency partials generator (mmsin.generators.free_partials,
mmsin.generators.synthesis): partials come back at the frequency of the original (detuned and
stretched ones included) against an FFT peak of the input, the calibration against the wavelets'
responses, silent oscillators, the noise branch, the closed-form phase against a running sum,
causality, streaming, the training zero state, transposition equivariance and a round trip through
training and a checkpoint."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mmsin.config import override, preset
from mmsin.generators.free_partials import FreePartialGenerator
from mmsin.generators.partials import first_order_frontend
from mmsin.generators.peaks import ResponseTable, peak_calibration, response_table
from mmsin.generators.synthesis import band_noise_tables, block_phases, sum_oscillators
from mmsin.scattering import TimeFrequencyScattering

FS = 4096


@pytest.fixture(scope="module")
def sj() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")


def _generator(
    sj: TimeFrequencyScattering,
    context: int = 0,
    noise_bands: int = 0,
    refine_rounds: int = 2,
    **kw: object,
) -> FreePartialGenerator:
    """The head as shipped (partials located with their neighbours' shares removed)."""
    matrix, hz = first_order_frontend(sj)
    torch.manual_seed(0)
    args: dict = {"channels": 6, "depth": 2, "trunk_hidden": 4, "context": context, **kw}
    g = FreePartialGenerator(
        sj.num_channels,
        matrix,
        hz,
        J=10,
        calibration=peak_calibration(sj, hz),
        noise_bands=noise_bands,
        responses=_responses(sj),
        refine_rounds=refine_rounds,
        **args,
    )
    return g.eval()


_TABLES: dict[int, ResponseTable] = {}


def _responses(sj: TimeFrequencyScattering) -> ResponseTable:
    if id(sj) not in _TABLES:
        _TABLES[id(sj)] = response_table(sj, first_order_frontend(sj)[1])
    return _TABLES[id(sj)]


def _random_pushes(frames: torch.Tensor, seed: int, fewest_cuts: int = 2) -> list[torch.Tensor]:
    """``frames`` (B, C, T) cut into a stream's pushes: three of one frame and an empty one,
    then runs between ``fewest_cuts`` to 7 random cuts (from frame 4 on), single frames and
    long runs alike."""
    T = frames.shape[-1]
    rng = np.random.default_rng(seed)
    size = int(rng.integers(fewest_cuts, 8))
    cuts = np.sort(rng.choice(np.arange(4, T), size=size, replace=False))
    bounds = [0, 1, 2, 2, 3, *cuts.tolist(), T]
    return [frames[..., a:b] for a, b in itertools.pairwise(bounds)]


def _partials(f0: float, stretch: float = 0.0, n: int = 6, seconds: float = 5.0) -> np.ndarray:
    """Harmonic tone with partial k at k f0 sqrt(1 + B k^2) (a string's stretch B)."""
    t = np.arange(int(seconds * FS)) / FS
    fk = [k * f0 * math.sqrt(1 + stretch * k * k) for k in range(1, n + 1)]
    return sum(0.5**k * np.sin(2 * np.pi * f * t + k) for k, f in enumerate(fk) if f < 1800)


def _peak_hz(x: np.ndarray, near: float) -> tuple[float, float]:
    """Frequency (parabola through the log-magnitude of a Hann FFT) and magnitude of the peak
    within 3 % of ``near``: an independent reference from numpy's FFT."""
    w = np.hanning(len(x))
    X = np.abs(np.fft.rfft(x * w))
    f = np.fft.rfftfreq(len(x), 1 / FS)
    sel = np.flatnonzero((f > near * 0.97) & (f < near * 1.03))
    i = sel[np.argmax(X[sel])]
    a, b, c = np.log(X[i - 1 : i + 2])
    return float(f[i] + 0.5 * (a - c) / (a - 2 * b + c) * (f[1] - f[0])), float(X[i])


@pytest.mark.parametrize(("f0", "stretch"), [(261.63 * 2 ** (13 / 1200), 4e-4), (97.0, 0.0)])
def test_untrained_generator_puts_every_partial_where_the_input_has_it(
    sj: TimeFrequencyScattering, f0: float, stretch: float
) -> None:
    """A 13-cent-sharp, stretched tone (and an off-grid low one): the untrained generator (its
    network's log-gain starts at 0) renders each partial within 2 cents of the input's, at the
    input's level within 1.5 dB: the estimate from the scalogram's peaks alone."""
    g = _generator(sj)
    x = _partials(f0, stretch)
    with torch.no_grad():
        y = g(sj(torch.tensor(x[None], dtype=torch.float32)))[0].numpy()
    # the steady middle; block n stands for x up to frame n: one frame of delay
    a, b = 2 * FS, 4 * FS
    rec, orig = y[a:b], x[a - g.hop : b - g.hop]
    for k in range(1, 6):
        fk = k * f0 * math.sqrt(1 + stretch * k * k)
        if fk > 1700:
            break
        f_rec, m_rec = _peak_hz(rec, fk)
        f_orig, m_orig = _peak_hz(orig, fk)
        assert abs(1200 * math.log2(f_rec / f_orig)) < 2.0, (k, f_rec, f_orig)
        assert abs(20 * math.log10(m_rec / m_orig)) < 1.5, (k, m_rec, m_orig)


def test_calibration_matches_the_encoder_on_pure_tones(sj: TimeFrequencyScattering) -> None:
    """The polynomials come from the wavelets' closed-form responses; on S_J's own scalogram
    of sines (computed by the encoder) they give the frequency within 2 cents (0.2 median over
    the sweep) and the amplitude within 5 %."""
    _, hz = first_order_frontend(sj)
    cal = peak_calibration(sj, hz)
    assert cal.residual_cents < 0.5
    g = _generator(sj)
    f = np.array([61.7, 203.3, 440.0, 731.9, 1234.5, 1650.0, 1720.0])  # to the top bin + 1/2
    t = np.arange(4 * FS) / FS
    x = torch.tensor(0.3 * np.sin(2 * np.pi * f[:, None] * t), dtype=torch.float32)
    with torch.no_grad():
        c = g.controls(sj(x))
    for i, fi in enumerate(f):
        amp, om = c.amp[i, :, -1], c.omega[i, :, -1]
        k = int(torch.argmax(amp))
        hz_k = float(om[k]) * FS / (2 * math.pi)
        assert abs(1200 * math.log2(hz_k / fi)) < 2.0, (fi, hz_k)
        assert float(amp[k]) == pytest.approx(0.3, rel=0.05)


def test_only_peak_oscillators_sound_and_silence_is_silent(sj: TimeFrequencyScattering) -> None:
    g = _generator(sj)
    x = torch.tensor(_partials(220.0)[None], dtype=torch.float32)
    with torch.no_grad():
        amp = g.controls(sj(x)).amp[0, :, 10]
        quiet = g(torch.zeros(1, sj.num_channels, 6))
    active = int((amp > 0).sum())
    assert 4 <= active <= 8  # about one per partial below 1.7 kHz, not one per bin
    assert torch.count_nonzero(quiet) == 0  # exactly silent: no floor, no noise


def test_block_phase_is_the_running_sum_of_the_frequencies() -> None:
    """The closed-form phase equals a float64 cumulative sum of the per-sample frequencies,
    also across a silence (restart at the offset) and a frequency glide."""
    h, T = 16, 5
    omega = torch.tensor([[[0.3, 0.31, 0.5, 0.2, 0.25]]], dtype=torch.float64)
    amp = torch.tensor([[[1.0, 1.0, 0.0, 1.0, 2.0]]], dtype=torch.float64)
    offset = torch.tensor([0.7], dtype=torch.float64)
    start, om_from, _ = block_phases(
        omega, amp > 0, torch.zeros(1, 1), torch.zeros(1, 1, dtype=torch.bool),
        torch.zeros(1, 1, dtype=torch.float64), offset, h,
    )  # fmt: skip
    y = sum_oscillators(amp, torch.zeros(1, 1, dtype=torch.float64), omega, om_from, start, h)
    # reference: a per-sample loop
    ref = np.zeros(T * h)
    phase, prev_a, prev_w = 0.7, 0.0, None
    for n in range(T):
        w_n, a_n = float(omega[0, 0, n]), float(amp[0, 0, n])
        w_from = prev_w if prev_a > 0 else w_n
        if prev_a == 0:
            phase = 0.7
        for u in range(h):
            wu = (u + 1) / h
            phase += w_from + (w_n - w_from) * wu
            ref[n * h + u] = (prev_a + (a_n - prev_a) * wu) * math.cos(phase)
        prev_a, prev_w = a_n, w_n
    np.testing.assert_allclose(y.reshape(-1).numpy(), ref, atol=2e-5)


def test_noise_bands_are_an_octave_wide_and_start_near_silence(
    sj: TimeFrequencyScattering,
) -> None:
    tables = band_noise_tables(FS, 2**14, 6)
    spec = np.abs(np.fft.rfft(tables, axis=-1)) ** 2
    f = np.fft.rfftfreq(2**14, 1 / FS)
    for b in range(6):
        centre = FS / 2 * 2 ** -(b + 0.5)
        lo = centre / 2**0.75 if b < 5 else 0.0  # the lowest band holds all below it too
        within = spec[b][(f > lo) & (f < centre * 2**0.75)].sum()
        assert within / spec[b].sum() > 0.9  # no band is narrower than ~1.5 octaves of support
        assert spec[b].max() / spec[b].sum() < 0.1  # noise, not a line
    density = spec[5] / spec[5][(f > 40) & (f < 50)].mean()  # flat from 40 Hz down to 1 Hz
    assert 0.5 < np.median(density[(f > 1) & (f < 20)]) < 2.0
    g = _generator(sj, noise_bands=6)
    with torch.no_grad():
        gains = g.controls(torch.rand(1, sj.num_channels, 4)).noise
    assert gains.shape == (1, 6, 4) and float(gains.max()) < 1e-3


def test_causal_and_controls_span_exact(sj: TimeFrequencyScattering) -> None:
    g = _generator(sj, context=3, noise_bands=4)
    with torch.no_grad():  # make the network's output depend visibly on its input
        g.out.conv.weight.normal_(0, 0.3)
    lo, hi = g.frame_span
    assert hi == 0 and lo >= 1
    torch.manual_seed(1)
    frames = torch.rand(1, g.in_channels, 24) * 0.01
    n = 8
    bumped = frames.clone()
    bumped[..., n] += 0.05
    with torch.no_grad():
        d = (g(bumped) - g(frames)).abs().reshape(24, g.hop).amax(dim=1).numpy()
        ca, cb = g.controls(frames), g.controls(bumped)
    assert np.all(d[:n] == 0)  # no block before frame n moves: causal
    assert d[n] > 0
    moved = (ca.amp - cb.amp).abs().amax(dim=1)[0].numpy()
    assert np.all(moved[:n] == 0) and np.all(moved[n + lo :] == 0)  # amplitudes' span


def test_streaming_equals_the_whole_sequence(sj: TimeFrequencyScattering) -> None:
    g = _generator(sj, context=2, noise_bands=3)
    with torch.no_grad():
        g.noise.conv.bias.fill_(-2.0)  # type: ignore[union-attr]
    x = torch.tensor(np.stack([_partials(130.0, 2e-4), _partials(440.0)]), dtype=torch.float32)
    frames = sj(x)[..., :19]
    with torch.no_grad():
        whole = g(frames)
    s = g.stream(2)
    parts, i = [], 0
    for k in (1, 5, 2, 11):
        parts.append(s.push(frames[..., i : i + k]))
        i += k
    parts.append(s.flush())
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole.numpy(), atol=2e-4)
    assert float(whole.abs().max()) > 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_at_random_split_points_equals_the_whole_sequence(
    sj: TimeFrequencyScattering, seed: int
) -> None:
    """The streamer keeps state (each 2-D layer's last input frames, the gain trunk's pending
    sums, the phases, the noise position) instead of re-rendering: any split of the frames into
    pushes, single frames and long runs, empty pushes and a silence in the middle (oscillators
    restart), gives the whole sequence's controls (to float rounding: the front end's sums run
    in another order on fewer frames) and waveform (looser: the phase integrates the
    frequencies' rounding, 5e-6 relative, over 40k samples); ``reset`` starts over."""
    g = _generator(sj, context=2, noise_bands=3, noise_input="log")
    with torch.no_grad():  # the network's log-gain must matter, or its cache goes unchecked
        g.out.conv.weight.normal_(0, 0.3)
        g.noise.conv.weight.normal_(0, 0.01)  # type: ignore[union-attr]
        g.noise.conv.bias.fill_(-2.0)  # type: ignore[union-attr]
    x = np.stack([_partials(130.0, 2e-4, seconds=10.0), _partials(440.0, seconds=10.0)])
    x[:, 3 * FS : 4 * FS] = 0.0
    frames = sj(torch.tensor(x, dtype=torch.float32))
    with torch.no_grad():
        whole, c = g(frames), g.controls(frames)
    pieces = _random_pushes(frames, seed)
    s = g.stream(2)
    cs = [s.controls(p) for p in pieces]
    for name in ("amp", "omega", "gain", "noise"):
        streamed = torch.cat([getattr(ci, name) for ci in cs], -1).numpy()
        np.testing.assert_allclose(streamed, getattr(c, name).numpy(), rtol=1e-4, atol=1e-6)
    for _ in range(2):
        s.reset()
        y = torch.cat([*(s.push(p) for p in pieces), s.flush()], -1)
        np.testing.assert_allclose(y.numpy(), whole.numpy(), atol=1e-3)
    assert float(whole.abs().max()) > 0.1
    assert int((c.amp[..., 15:17] > 0).sum()) == 0 and int((c.amp[..., 20] > 0).sum()) > 0


def test_training_zero_state_equals_decoding_from_the_clip_start(
    sj: TimeFrequencyScattering,
) -> None:
    from mmsin.training.objective import zero_state

    g = _generator(sj, context=2, noise_bands=3)
    x = torch.tensor(_partials(196.0)[None], dtype=torch.float32)
    clip = sj(x)[..., 4:10]
    padded = torch.cat([sj(x)[..., :3], clip], dim=-1)
    with torch.no_grad():
        with zero_state(g, torch.tensor([3])):
            out = g(padded)
        expected = g.render(clip, first_frame=3)
        free = g(padded)
    np.testing.assert_allclose(out[:, : 3 * g.hop].numpy(), 0.0, atol=1e-7)
    np.testing.assert_allclose(out[:, 3 * g.hop :].numpy(), expected.numpy(), atol=2e-5)
    assert float((free - out).abs().max()) > 1e-3


def test_a_transposed_note_moves_the_controls_by_one_bin(sj: TimeFrequencyScattering) -> None:
    """Shared across log-frequency (2-D layers padded symmetrically): a note a semitone higher
    drives the oscillator one bin up, at the same amplitude and 2^(1/12) times the frequency."""
    g = _generator(sj, context=0)
    with torch.no_grad():
        g.out.conv.weight.normal_(0, 0.3)
        g.out.conv.bias.fill_(0.2)
    f0 = 110.0
    x = torch.tensor(np.stack([_partials(f0), _partials(f0 * 2 ** (1 / 12))]), dtype=torch.float32)
    with torch.no_grad():
        c = g.controls(sj(x))
    A, W = c.amp[:, :, 8].numpy(), c.omega[:, :, 8].double().numpy()
    low, high = A[0, :-1], A[1, 1:]
    band = (np.asarray(g.frequencies[:-1]) > 80) & (np.asarray(g.frequencies[:-1]) < 1000)
    assert low[band].max() > 0
    assert np.abs(low[band] - high[band]).max() / low[band].max() < 0.02
    on = band & (low > 0)
    ratio = W[1, 1:][on] / W[0, :-1][on]
    np.testing.assert_allclose(ratio, 2 ** (1 / 12), rtol=2e-4)


def test_preset_builds_it_and_old_configs_keep_the_fixed_head() -> None:
    from mmsin.assembly import build_generator
    from mmsin.generators.partials import PartialGenerator

    g = build_generator(preset("pitched"), 973)
    assert isinstance(g, FreePartialGenerator)
    fixed = build_generator(override(preset("pitched"), ["generator.frequencies=fixed"]), 973)
    assert type(fixed) is PartialGenerator
    with pytest.raises(ValueError, match="frequencies"):
        override(preset("pitched"), ["generator.frequencies=wobbly"]).validate()


def test_training_fits_the_noise_floor_once(sj: TimeFrequencyScattering) -> None:
    """Before the first step, a run fits a log-S_J noise branch that is not yet fitted (and
    leaves a fitted one, which ``--init`` copied, alone)."""
    from types import SimpleNamespace

    from mmsin.training.loop import _fit_noise_floor

    g = _generator(sj, noise_bands=6, noise_input="log")
    rng = np.random.default_rng(0)
    x = np.stack(
        [_partials(110.0 * (1 + i)) + 1e-3 * rng.standard_normal(5 * FS) for i in range(4)]
    )
    frames = sj(torch.tensor(x, dtype=torch.float32))
    T = frames.shape[-1]
    feats = SimpleNamespace(train_frames=frames, train_wave=torch.tensor(x[:, : T * g.hop]))
    _fit_noise_floor(g, feats)  # type: ignore[arg-type]
    assert bool(g.noise.fitted)  # type: ignore[union-attr]
    fitted = g.noise.conv.weight.clone()  # type: ignore[union-attr]
    feats.train_wave = feats.train_wave * 10
    _fit_noise_floor(g, feats)  # type: ignore[arg-type]
    assert torch.equal(g.noise.conv.weight, fitted)  # type: ignore[union-attr]


def test_trains_and_round_trips_through_a_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A tiny training lowers the loss; the loaded model decodes exactly as the trained one;
    ``init`` starts a new run from its weights."""
    from _tiny import tiny_clips, tiny_config
    from mmsin.model import MMSIN
    from mmsin.training import train

    cfg = tiny_config(
        6,
        "generator.head=partials",
        "generator.frequencies=free",
        "generator.hidden=4",
        "generator.trunk_layers=3",
        "generator.freq_channels=4",
        "generator.freq_depth=1",
        "generator.freq_kernel=3",
        "generator.fmin=40",
        "generator.noise_bands=2",
        "generator.noise_input=log",
    )
    train_clips, test_clips = tiny_clips()
    kw = {"train_clips": train_clips, "test_clips": test_clips, "progress": False}
    result = train(cfg, tmp_path / "run", cache_dir=tmp_path / "cache", tensorboard=False, **kw)
    losses = result.history["train_loss"]
    # six noisy steps from an estimate that is already close: the last two below the first two
    assert np.all(np.isfinite(losses)) and np.mean(losses[-2:]) < np.mean(losses[:2])
    model = MMSIN.load(result.checkpoint)
    assert isinstance(model.generator, FreePartialGenerator)
    # 2^J = 32 samples per frame is too short for the floor's 512-sample STFT: not fitted
    assert not bool(model.generator.noise.fitted)  # type: ignore[union-attr]
    x = torch.tensor(test_clips.audio[:1])
    y = model(x)
    assert torch.isfinite(y).all() and float(y.abs().max()) > 0
    again = MMSIN.load(result.checkpoint)
    assert torch.equal(again(x), y)
    from mmsin.training.loop import init_generator

    fresh = type(model.generator)  # the same class, new weights
    assert fresh is FreePartialGenerator
    from mmsin.assembly import build_generator

    g = build_generator(cfg, model.generator.in_channels)
    copied, left = init_generator(g, result.checkpoint)
    assert copied > 0 and left == 0
    for k, v in model.generator.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k


def test_the_shared_network_is_centred_on_each_bin(sj: TimeFrequencyScattering) -> None:
    """Bin b of the network's log-gain sees bins b - R .. b + R of its input, symmetrically
    (R = layers x half a kernel): shared weights alone would be equivariant even with one-sided
    padding, but the log-gain would then land bins away from the peak it refines."""
    g = _generator(sj, context=0)
    layers = [*g.freq_layers, g.out]
    x = torch.zeros(1, 1, g.num_bins, 4)
    b = 50
    x[0, 0, b, :] = 1.0
    with torch.no_grad():
        for layer in layers:
            layer.conv.weight.fill_(0.1)
            layer.conv.bias.zero_()  # type: ignore[union-attr]
        y = x
        for layer in layers:
            y = layer(y)
    support = np.flatnonzero(y[0].abs().amax(dim=(0, 2)).numpy() > 0)
    R = sum(layer.kf // 2 for layer in layers)
    assert support.min() == b - R and support.max() == b + R


def test_the_frequencies_reach_the_synthesis_unrounded(sj: TimeFrequencyScattering) -> None:
    """The oscillators' frequencies go from the estimate to the phase sums in float64, offline
    and streamed. Rounded to float32 on the way (6e-8 of omega), a compiled push of four frames
    played the partials up to 4e-5 of the signal away from the eager stream (an AVX2 CPU, one
    thread: the fused graph did not keep the rounding, and the block phases, sums of omega h,
    drift with it: 1.7e-4 rad a block at 1.5 kHz); unrounded, they agree to 1e-6
    (tests/test_compiled_stream.py)."""
    g = _generator(sj)
    frames = sj(torch.tensor(_partials(220.0, 4e-4, n=8, seconds=3.0)[None], dtype=torch.float32))
    with torch.no_grad():
        omega = g.estimate(frames)[3]
        c = g.controls(frames)
        streamed = g.stream(1).controls(frames)
        state = c.last(torch.zeros_like(omega[..., -1]))
    assert omega.dtype == torch.float64
    for got in (c.omega, streamed.omega):
        assert got.dtype == torch.float64
        assert torch.equal(got, omega)
    assert torch.equal(state.omega, omega[..., -1])
    assert g.zero_state(1, c.amp).omega.dtype == torch.float64  # one dtype for every push
    assert g.stream(1).controls(frames[..., :0]).omega.dtype == torch.float64  # no frames


def test_a_frame_is_located_alike_streamed_or_in_its_sequence(sj: TimeFrequencyScattering) -> None:
    """Two sines (786 Hz at 0.3 of 917 Hz: both local maxima of u), then 810 Hz under 917 Hz's
    skirt (a partial the refinement has to discover): pushed one frame at a time, the first
    half's frames get the controls they get in the whole sequence, although the second half's
    frames find a partial and theirs do not."""
    g = _generator(sj)
    t = np.arange(3 * FS) / FS
    first = 0.15 * np.sin(2 * np.pi * 786.0 * t) + 0.5 * np.sin(2 * np.pi * 917.0 * t + 1.0)
    second = 0.08 * np.sin(2 * np.pi * 810.0 * t) + 0.5 * np.sin(2 * np.pi * 917.0 * t + 1.0)
    frames = sj(torch.tensor(np.concatenate([first, second])[None], dtype=torch.float32))
    T = frames.shape[-1]
    with torch.no_grad():
        c = g.controls(frames)
        s = g.stream(1)
        cs = [s.controls(frames[..., i : i + 1]) for i in range(T)]
    omega = torch.cat([ci.omega for ci in cs], -1)
    assert torch.allclose(omega, c.omega, rtol=0, atol=1e-9)


def _randomised(g: FreePartialGenerator) -> FreePartialGenerator:
    """The shared network's last layer given weights, so that its log-gain differs from bin
    to bin (a new head's is zero everywhere)."""
    torch.manual_seed(3)
    with torch.no_grad():
        g.out.conv.weight.normal_(0.0, 0.5)
    return g


def test_frame_refinement_keeps_the_relative_levels_that_u_gives(
    sj: TimeFrequencyScattering,
) -> None:
    """``amp_refine = "frame"``: every partial of a frame gets the same refinement (the mean of
    the network's over the frame's peaks), so log(amplitude) - estimate is one number per
    frame and the partials' relative levels are the estimate's; per bin they differ."""
    x = torch.tensor(_partials(196.0, 1e-4)[None], dtype=torch.float32)
    frames = sj(x)[..., :10]
    spread = {}
    for mode in ("bin", "frame"):
        g = _randomised(_generator(sj, amp_refine=mode))
        with torch.no_grad():
            _, est, peak, _, _ = g.estimate(frames)
            amp = g.controls(frames).amp
        p = peak[:, g.keep]
        delta = torch.log(amp.clamp(min=1e-30)) - est[:, g.keep]
        per_frame = [delta[0, p[0, :, t], t] for t in range(2, 10)]
        assert all(len(d) >= 3 for d in per_frame)  # several partials in every frame
        spread[mode] = max(float(d.max() - d.min()) for d in per_frame)
    assert spread["frame"] < 1e-5, spread
    assert spread["bin"] > 0.1, spread


def test_frame_refinement_streams_as_the_whole_sequence(sj: TimeFrequencyScattering) -> None:
    g = _randomised(_generator(sj, context=2, amp_refine="frame"))
    x = torch.tensor(_partials(130.0, 2e-4)[None], dtype=torch.float32)
    frames = sj(x)[..., :13]
    with torch.no_grad():
        whole = g(frames)
    s = g.stream(1)
    parts, i = [], 0
    for k in (1, 4, 8):
        parts.append(s.push(frames[..., i : i + k]))
        i += k
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole.numpy(), atol=2e-4)
    assert float(whole.abs().max()) > 0.1


def test_amp_refine_is_a_config_choice() -> None:
    from mmsin.assembly import build_generator

    cfg = override(preset("pitched"), ["generator.amp_refine=frame"])
    g = build_generator(cfg, 973)
    assert g.amp.per_frame and not build_generator(preset("pitched"), 973).amp.per_frame
    with pytest.raises(ValueError, match="amp_refine"):
        override(preset("pitched"), ["generator.amp_refine=partial"])


def test_peak_gaps_is_a_config_choice() -> None:
    """``generator.peak_gaps`` reaches the free head (off by default: checkpoints saved before
    it keep their estimate)."""
    from mmsin.assembly import build_generator

    g = build_generator(override(preset("pitched"), ["generator.peak_gaps=true"]), 973)
    assert g.fill_gaps and not build_generator(preset("pitched"), 973).fill_gaps
