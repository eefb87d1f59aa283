"""The free head's generation gain: one fixed gain per oscillator that generation applies and
nothing else does, fitted to the training set's moments (eq. 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmsin.config import preset
from mmsin.model import MMSIN
from mmsin.scattering import TimeFrequencyScattering
from mmsin.streaming import generate_blocks
from mmsin.training.generation_gain import GAIN_RANGE_DB, fit_generation_gain, gain_update
from mmsin.whitening import fit_var
from test_free_partials import _generator, _partials


@pytest.fixture(scope="module")
def sj() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")


def _audio() -> np.ndarray:
    return np.stack([_partials(130.0, 2e-4), _partials(440.0), _partials(196.0)]).astype(np.float32)


def _model(sj: TimeFrequencyScattering) -> MMSIN:
    """A tiny MMSIN of the untrained free head (it renders the partials u shows, at u's levels),
    its VAR fitted on three tones' frames."""
    S = sj(torch.tensor(_audio()))[..., :19]
    norm = S.abs().mean(dim=(0, 2)).clamp_min(1e-6)
    var = fit_var(S / norm[:, None], M=1, ridge=1.0)
    g = _generator(sj, noise_bands=3)
    g.set_input_norm(norm)
    with torch.no_grad():
        g.noise.conv.bias.fill_(-6.0)  # type: ignore[union-attr]
        last = g.trunk.layers[-1].conv  # the trunk's gain 1: the partials at u's levels
        last.weight.zero_()
        last.bias.zero_()
    return MMSIN(preset("pitched"), sj, norm, var, g)


def test_gain_update_is_the_interpolated_log_ratio() -> None:
    """Channels whose ratio is a power of frequency, r = (f / 100)^0.5: the correction is linear
    in log f, so interpolation gives it exactly at every oscillator inside the channels' range
    (0.5 log(f / 100) times the step); outside, the nearest channel's; bounded to +-14 dB."""
    ch = 100.0 * 2 ** (np.arange(24) / 4)  # 100 Hz .. 6.3 kHz, a quarter octave apart
    osc = np.array([50.0, 150.0, 333.0, 1000.0, 9000.0])
    log_g = torch.zeros(5, dtype=torch.float64)
    new = gain_update(log_g, osc, ch[::-1].copy(), (ch[::-1] / 100) ** 0.5, 0.5)
    want = -0.5 * 0.5 * np.log(np.clip(osc, ch[0], ch[-1]) / 100)
    np.testing.assert_allclose(new.numpy(), want, atol=1e-12)
    big = gain_update(log_g, osc, ch, np.full(24, 1e-6), 1.0)
    np.testing.assert_allclose(big.numpy(), GAIN_RANGE_DB / 20 * math.log(10), rtol=1e-12)
    for bad in (np.zeros(24), np.full(24, np.nan)):
        with pytest.raises(ValueError, match="finite and positive"):
            gain_update(log_g, osc, ch, bad, 1.0)
    with pytest.raises(ValueError, match="step"):
        gain_update(log_g, osc, ch, np.ones(24), 0.0)


def test_only_generation_applies_the_gain(sj: TimeFrequencyScattering) -> None:
    """Gains of 2: ``generate`` and the streamed ``generate_blocks`` render the oscillators twice
    as loud (the controls inside ``generating_at`` are twice those outside, the noise bands
    unchanged); ``decode`` (a reconstruction) is as without the gain; a stream made outside the
    block keeps rendering without it."""
    model = _model(sj)
    g = model.generator
    gen = {"batch": 2, "seed": 5, "warmup": 4}
    Z = model.encode(torch.as_tensor(_audio()[:2]))
    y0, d0 = model.generate(6, **gen), model.decode(Z)
    frames = model.sample_scattering(6, 2, 5)
    with torch.no_grad():
        c0 = g.controls(frames)
        g.amp.generation_gain.fill_(2.0)
        with g.generating_at():
            c2 = g.controls(frames)
            stream = g.stream(2)
        outside = g.stream(2)
        c_out = g.controls(frames)
    assert float(c0.amp.max()) > 0.01
    torch.testing.assert_close(c2.amp, 2 * c0.amp)
    torch.testing.assert_close(c2.noise, c0.noise)
    torch.testing.assert_close(c_out.amp, c0.amp)
    with torch.no_grad():
        with g.generating_at():
            want_in = g(frames)
        want_out = g(frames)
    parts = [stream.push(frames[..., :2]), stream.push(frames[..., 2:])]
    tol = 1e-5 * float(want_in.abs().max())
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), want_in.numpy(), atol=tol)
    np.testing.assert_allclose(outside.push(frames).numpy(), want_out.numpy(), atol=tol)
    assert float((want_in - want_out).abs().max()) > 0.1 * float(want_out.abs().max())
    y2 = model.generate(6, **gen)
    blocks = torch.cat(list(generate_blocks(model, 6, **gen)), -1)
    assert float((y2 - y0).abs().max()) > 0.1 * float(y0.abs().max())
    torch.testing.assert_close(blocks, y2, rtol=0, atol=1e-5 * float(y2.abs().max()))
    torch.testing.assert_close(model.decode(Z), d0, rtol=0, atol=0)


def test_weights_without_the_gain_load_with_ones(sj: TimeFrequencyScattering) -> None:
    g = _generator(sj)
    state = {k: v for k, v in g.state_dict().items() if not k.endswith("generation_gain")}
    with torch.no_grad():
        g.amp.generation_gain.fill_(3.0)
    g.load_state_dict(state)
    assert torch.equal(g.amp.generation_gain, torch.ones(g.num_oscillators))


def test_the_fit_finds_its_fixed_point_from_a_wrong_start(sj: TimeFrequencyScattering) -> None:
    """Fitted from ones, then again from that gain with +8 dB on every oscillator above 300 Hz:
    the second fit's first draw is further from the moments, and it ends within 1.5 dB of the
    first fit at the oscillators the tones sound (the fit's answer does not depend on its start:
    the generated S_K of a partial is proportional to its gain)."""
    model = _model(sj)
    g = model.generator
    audio = _audio()
    first = fit_generation_gain(model, audio, rounds=3, clips=4, frames=6, batch=4)
    a = np.array(first.gain_db)
    assert np.abs(a).max() > 0.5  # the tones' moments asked for a gain
    hz = g.bin_hz.numpy()
    with torch.no_grad():
        g.amp.generation_gain.mul_(torch.from_numpy(np.where(hz > 300, 10**0.4, 1.0)).float())
    second = fit_generation_gain(model, audio, rounds=3, clips=4, frames=6, batch=4)
    b = np.array(second.gain_db)
    assert second.distances[0] > 2 * first.distances[-1]
    assert second.distances[-1] < 0.5 * second.distances[0]
    sounding = [np.argmin(np.abs(hz - f)) for f in (130.0, 196.0, 440.0, 880.0, 1320.0)]
    np.testing.assert_allclose(b[sounding], a[sounding], atol=1.5)


def test_the_fit_needs_the_free_head(sj: TimeFrequencyScattering) -> None:
    model = _model(sj)
    with pytest.raises(ValueError, match="rounds"):
        fit_generation_gain(model, _audio(), rounds=0)
    with pytest.raises(ValueError, match=r"\(clips, time\)"):
        fit_generation_gain(model, _audio()[0])
    model.generator.amp = torch.nn.Identity()  # type: ignore[assignment]
    with pytest.raises(ValueError, match="free-frequency head"):
        fit_generation_gain(model, _audio())


def test_generated_frames_may_be_refined_per_frame(sj: TimeFrequencyScattering) -> None:
    """``generation_amp_refine="frame"`` on a head refined per partial: outside
    ``generating_at`` the amplitudes are the per-partial head's, inside they are the per-frame
    head's (the same weights), whose partials keep the ratios of u's estimate."""
    heads = {
        (a, b): _generator(sj, amp_refine=a, generation_amp_refine=b)
        for a, b in (("bin", "frame"), ("bin", "same"), ("frame", "same"))
    }
    torch.manual_seed(3)
    with torch.no_grad():
        w = torch.randn_like(heads["bin", "frame"].out.conv.weight)
    for g in heads.values():
        with torch.no_grad():
            g.out.conv.weight.copy_(w)
    S = sj(torch.tensor(_audio()))[..., :12]
    mixed, per_bin, per_frame = heads["bin", "frame"], heads["bin", "same"], heads["frame", "same"]
    with torch.no_grad():
        a_bin, a_frame = per_bin.controls(S).amp, per_frame.controls(S).amp
        torch.testing.assert_close(mixed.controls(S).amp, a_bin)
        with mixed.generating_at():
            torch.testing.assert_close(mixed.controls(S).amp, a_frame)
        with per_bin.generating_at():
            torch.testing.assert_close(per_bin.controls(S).amp, a_bin)
        _, est, peak, _, _ = per_frame.estimate(S)
    assert float((a_bin - a_frame).abs().max()) > 0.05 * float(a_bin.max())
    # per frame: every partial of a frame is its estimate times one factor
    kept = peak[:, per_frame.keep]
    ratio = a_frame / torch.exp(est[:, per_frame.keep])
    for b, t in [(0, 3), (1, 5), (2, 8)]:
        r = ratio[b, kept[b, :, t], t]
        assert r.numel() >= 2
        torch.testing.assert_close(r, r[0].expand_as(r), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="generation_amp_refine"):
        _generator(sj, generation_amp_refine="partial")


def test_the_moment_matching_pass_renders_with_the_generation_gain(
    sj: TimeFrequencyScattering,
) -> None:
    """L_MM's pass over synthetic frames renders as ``generate`` does, with the generation gain
    and the generated frames' refinement; the real batch's reconstruction without either."""
    from mmsin.training.objective import loss_terms
    from test_sub_frames import _recording_objective

    g = _generator(sj, noise_bands=3, generation_amp_refine="frame")
    with torch.no_grad():
        g.out.conv.weight.normal_(0.0, 0.3)
        g.amp.generation_gain.fill_(2.0)
    frames = sj(torch.tensor(_audio()))[..., :12]
    seen, objective, feats = _recording_objective()
    with torch.no_grad():
        plain = g(frames)
        with g.generating_at():
            generated = g(frames)
        loss_terms(
            preset("pitched"),
            g,
            objective,
            frames,
            frames,
            frames,
            frames,
            feats,
            False,
            frames.device,
        )
    torch.testing.assert_close(seen["inv"], plain, rtol=0, atol=0)
    torch.testing.assert_close(seen["mm"], generated, rtol=0, atol=0)
    assert float((generated - plain).abs().max()) > 0.1 * float(plain.abs().max())
