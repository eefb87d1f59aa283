"""The oscillator-bank generator (mmsin.generators.oscillators): synthesis against a naive numpy
reference, exact frequencies, causality against the gradient support, streaming against forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsin.config import override, preset
from mmsin.generators.oscillators import OscillatorGenerator, oscillator_frequencies


def _naive_synthesis(env: np.ndarray, omega: np.ndarray, h: int) -> np.ndarray:
    """y[s] = sum_k a_k(s) cos(w_k s) + b_k(s) sin(w_k s), a(s) linear from env[i-1] to env[i]."""
    B, n2, L = env.shape
    n = n2 // 2
    y = np.zeros((B, L * h))
    for s in range(L * h):
        i, u = divmod(s, h)
        w = (u + 1) / h
        cur = env[:, :, i]
        old = env[:, :, i - 1] if i > 0 else np.zeros_like(cur)
        amp = (1 - w) * old + w * cur
        y[:, s] = amp[:, :n] @ np.cos(omega * s) + amp[:, n:] @ np.sin(omega * s)
    return y


def test_frequencies_closed_form() -> None:
    f = oscillator_frequencies(4096, per_octave=48, fmin=27.5, fmax_ratio=0.46)
    assert f[0] == pytest.approx(27.5)
    np.testing.assert_allclose(f[1:] / f[:-1], 2 ** (1 / 48), rtol=1e-12)
    assert f[-1] <= 0.46 * 4096 < f[-1] * 2 ** (1 / 48)
    assert len(f) == int(np.floor(48 * np.log2(0.46 * 4096 / 27.5))) + 1
    with pytest.raises(ValueError, match="fmax_ratio"):
        oscillator_frequencies(4096, fmax_ratio=0.6)


def test_synthesis_matches_naive_reference() -> None:
    g = OscillatorGenerator(3, J=4, trunk_layers=2, hidden=4, per_octave=2, fmin=300.0)
    rng = np.random.default_rng(0)
    env = rng.standard_normal((2, 2 * g.num_oscillators, 5)).astype(np.float32)
    y = g.synthesize(torch.from_numpy(env), torch.zeros(2, 2 * g.num_oscillators), 0)
    ref = _naive_synthesis(env.astype(np.float64), g.omega.numpy(), g.h)
    np.testing.assert_allclose(y.numpy(), ref, atol=2e-5)
    # A later start index continues the same carriers (the phase is the sample's position).
    tail = g.synthesize(torch.from_numpy(env[:, :, 3:]), torch.from_numpy(env[:, :, 2]), 3)
    np.testing.assert_allclose(tail.numpy(), ref[:, 3 * g.h :], atol=2e-5)


def test_one_oscillator_is_a_sinusoid_at_its_frequency() -> None:
    fs = 4096
    g = OscillatorGenerator(3, J=10, trunk_layers=5, hidden=4, fs=fs)
    k = 150  # 27.5 * 2^(150/48) = 240.3 Hz: off the 64 Hz grid
    L = 256
    env = torch.zeros(1, 2 * g.num_oscillators, L)
    env[0, k] = 0.6
    env[0, g.num_oscillators + k] = 0.8  # amplitude 1, phase atan2(0.8, 0.6)
    y = g.synthesize(env, torch.zeros(1, 2 * g.num_oscillators), 0)[0].double().numpy()
    s = np.arange(g.h, L * g.h)
    f = g.frequencies[k]
    ref = 0.6 * np.cos(2 * np.pi * f * s / fs) + 0.8 * np.sin(2 * np.pi * f * s / fs)
    np.testing.assert_allclose(y[g.h :], ref, atol=1e-4)
    spec = np.abs(np.fft.rfft(y[g.h :] * np.hanning(s.size), 1 << 18))
    peak = np.fft.rfftfreq(1 << 18, 1 / fs)[spec.argmax()]
    assert abs(peak - f) < 0.05


@pytest.mark.parametrize("look_ahead", [0, 2])
def test_frame_span_is_the_gradient_support(look_ahead: int) -> None:
    g = OscillatorGenerator(
        4, J=5, trunk_layers=3, hidden=3, look_ahead=look_ahead, per_octave=4, fmin=100.0
    ).eval()  # BatchNorm pointwise in time
    x = torch.randn(1, 4, 14, requires_grad=True)
    n = 7
    g(x)[0, n * g.hop : (n + 1) * g.hop].pow(2).sum().backward()
    assert x.grad is not None
    support = (x.grad[0].abs().sum(0) > 0).nonzero().flatten().tolist()
    lo, hi = g.frame_span
    assert support == list(range(n - lo, n + hi + 1))
    assert g.receptive_field == lo + hi + 1
    if look_ahead == 0:
        assert hi == 0  # causal: block n never depends on a later frame


@pytest.mark.parametrize("look_ahead", [0, 2])
def test_streaming_equals_forward(look_ahead: int) -> None:
    g = OscillatorGenerator(
        5, J=5, trunk_layers=3, hidden=6, look_ahead=look_ahead, per_octave=6, fmin=60.0
    )
    x = torch.randn(2, 5, 12)
    g.train()
    g(torch.randn(4, 5, 12))  # non-trivial BatchNorm running statistics
    g.eval()
    with torch.no_grad():
        whole = g(x)
    s = g.stream(2)
    parts, i = [], 0
    for k in (1, 4, 2, 5):
        parts.append(s.push(x[..., i : i + k]))
        i += k
    parts.append(s.flush())
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole.numpy(), atol=1e-5)
    s.reset()
    again = torch.cat([s.push(x), s.flush()], -1)
    np.testing.assert_allclose(again.numpy(), whole.numpy(), atol=1e-5)


def test_config_builds_it_and_the_model_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mmsin.assembly import build_generator, build_scattering
    from mmsin.model import MMSIN
    from mmsin.whitening import fit_var

    cfg = override(
        preset("small"),
        [
            "generator.head=oscillators",
            "scattering.J=4",
            "scattering.Q=2",
            "scattering.P=2",
            "generator.hidden=8",
            "generator.trunk_layers=2",
            "generator.per_octave=4",
        ],
    )
    sj = build_scattering(cfg)
    g = build_generator(cfg, sj.num_channels)
    assert isinstance(g, OscillatorGenerator)
    assert g.frequencies[0] == pytest.approx(cfg.generator.fmin)
    S = torch.rand(3, sj.num_channels, 40)
    var = fit_var(S, M=2, ridge=1e-2)
    model = MMSIN(cfg, sj, torch.ones(sj.num_channels), var, g)
    path = model.save(tmp_path / "osc.pt")
    back = MMSIN.load(path)
    assert isinstance(back.generator, OscillatorGenerator)
    x = torch.randn(1, 16 * 8)
    assert torch.equal(back.decode(back.encode(x)), model.decode(model.encode(x)))


def test_training_zero_state_equals_decoding_from_the_clip_start() -> None:
    """With the training loop's zero state, frames before a clip's start change nothing: the
    output after the start is the clip's own envelopes driving the oscillators from silence
    (what decoding the clip computes), the carriers continuing from the sequence start."""
    from mmsin.training.objective import zero_state

    g = OscillatorGenerator(4, J=5, trunk_layers=3, hidden=5, per_octave=4, fmin=100.0).eval()
    clip = torch.randn(1, 4, 6)
    padded = torch.cat([torch.zeros(1, 4, 3), clip], dim=-1)  # zero frames before the start
    with torch.no_grad():
        with zero_state(g, torch.tensor([3])):
            out = g(padded)
        env = g.trunk.features(clip)
        expected = g.synthesize(env, torch.zeros(1, env.shape[1]), 3 * 2**g.trunk_layers)
    np.testing.assert_allclose(out[:, : 3 * g.hop].numpy(), 0.0, atol=1e-7)
    np.testing.assert_allclose(out[:, 3 * g.hop :].numpy(), expected.numpy(), atol=1e-5)
