"""Envelopes inside the frame (``generator.sub_frames`` = P): flat ones render exactly the
linear frames of the head without them, the points shape the amplitude as written, and a
stream carries the last point across pushes."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from mmsin.config import override, preset
from mmsin.generators.free_partials import FreePartialGenerator
from mmsin.generators.synthesis import envelope_knots, sum_oscillators
from mmsin.model import MMSIN
from mmsin.scattering import TimeFrequencyScattering
from mmsin.streaming import generate_blocks
from mmsin.whitening import fit_var
from test_free_partials import _generator, _partials


@pytest.fixture(scope="module")
def sj() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")


def _frames(sj: TimeFrequencyScattering) -> torch.Tensor:
    x = np.stack([_partials(130.0, 2e-4), _partials(440.0)])
    return sj(torch.tensor(x, dtype=torch.float32))[..., :19]


def test_flat_envelopes_render_the_frames_as_without_them(sj: TimeFrequencyScattering) -> None:
    """A new head's envelopes are flat (zero logits): P points on the line between two frames,
    joined by lines, are that line; so ``--init`` from a model without them starts from its
    output (to float rounding)."""
    plain = _generator(sj, context=2, noise_bands=3)
    shaped = _generator(sj, context=2, noise_bands=3, sub_frames=8)
    missing = shaped.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == [
        "envelope.conv.bias",
        "envelope.conv.weight",
        "noise_envelope.bias",
        "noise_envelope.weight",
    ]
    for g in (plain, shaped):
        with torch.no_grad():
            g.noise.conv.bias.fill_(-2.0)  # type: ignore[union-attr]
    frames = _frames(sj)
    with torch.no_grad():
        a, b = plain(frames), shaped(frames)
    assert float(a.abs().max()) > 0.1
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_envelope_points_shape_the_amplitude() -> None:
    """One oscillator at 0 Hz (its carrier is 1): the output is its amplitude. Frames 1 and 2
    after 0.5, P = 4 points a frame with multipliers (2, 0, 1, 1) and (1, 1, 1, 0.5): the
    points are lerp(previous frame, frame, (p + 1) / 4) x multiplier, reached at the end of
    each quarter of the block, with lines between them."""
    h, P = 16, 4
    amp = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    prev = torch.tensor([[0.5]], dtype=torch.float64)
    env = torch.tensor([[[[2.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.5]]]], dtype=torch.float64)
    knots = envelope_knots(amp, prev, env)
    want = torch.tensor([0.625 * 2, 0.0, 0.875, 1.0, 1.25, 1.5, 1.75, 1.0], dtype=torch.float64)
    torch.testing.assert_close(knots[0, 0], want)
    zero = torch.zeros(1, 1, 2, dtype=torch.float64)
    y = sum_oscillators(knots, prev, zero, zero, zero, h, sub=P)[0].flatten()
    ends = torch.arange(1, 2 * P + 1) * (h // P) - 1
    torch.testing.assert_close(y[ends], want)
    points = torch.cat([prev[0], want])  # the line from each point to the next
    step = (torch.arange(h // P, dtype=torch.float64) + 1) / (h // P)
    line = torch.cat([torch.lerp(points[i], points[i + 1], step) for i in range(2 * P)])
    torch.testing.assert_close(y, line)


def test_a_stream_with_envelopes_equals_the_whole_sequence(sj: TimeFrequencyScattering) -> None:
    """Pushes of 1, 5, 2 and 11 frames give the whole sequence's waveform: each block starts
    from the last point of the frame before, which the stream carries."""
    g = _generator(sj, context=2, noise_bands=3, sub_frames=4)
    torch.manual_seed(1)
    with torch.no_grad():
        g.out.conv.weight.normal_(0, 0.3)
        g.envelope.conv.weight.normal_(0, 0.5)
        g.noise_envelope.weight.normal_(0, 0.01)
        g.noise_envelope.bias.normal_(0, 1.0)
        g.noise.conv.bias.fill_(-2.0)  # type: ignore[union-attr]
    frames = _frames(sj)
    with torch.no_grad():
        whole = g(frames)
        kept = g.envelope.conv.weight.clone()
        g.envelope.conv.weight.zero_()
        flat = g(frames)
        g.envelope.conv.weight.copy_(kept)
    assert float((whole - flat).abs().max()) > 0.05  # the envelopes matter
    s = g.stream(2)
    parts, i = [], 0
    for k in (1, 5, 2, 11):
        parts.append(s.push(frames[..., i : i + k]))
        i += k
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole.numpy(), atol=2e-4)


def test_sub_frames_must_divide_the_frame() -> None:
    with pytest.raises(ValueError, match="sub_frames"):
        override(preset("pitched"), ["generator.sub_frames=3"]).validate()
    assert preset("pitched").generator.sub_frames == 0


def _shaped(sj: TimeFrequencyScattering, P: int = 4) -> FreePartialGenerator:
    """A head whose envelopes inside the frame are far from flat (random logits)."""
    g = _generator(sj, context=2, noise_bands=3, sub_frames=P)
    torch.manual_seed(2)
    with torch.no_grad():
        g.envelope.conv.weight.normal_(0, 0.5)
        g.noise_envelope.weight.normal_(0, 0.01)
        g.noise_envelope.bias.normal_(0, 1.0)
        g.noise.conv.bias.fill_(-2.0)  # type: ignore[union-attr]
    return g


def _flattened(g: FreePartialGenerator) -> FreePartialGenerator:
    """``g`` with zero envelope logits: flat envelopes as the head is built."""
    flat = copy.deepcopy(g)
    with torch.no_grad():
        for conv in (flat.envelope.conv, flat.noise_envelope):
            conv.weight.zero_()
            conv.bias.zero_()  # type: ignore[union-attr]
    return flat


def test_the_envelope_temperature_divides_the_logits(sj: TimeFrequencyScattering) -> None:
    """At temperature tau the multipliers are P softmax(logits / tau) over the P points (numpy
    against the head); 1 is the default; tau = inf renders exactly as zero logits do (flat:
    the frames' line), and a softer shape lies between the two (its spread over the points
    shrinks with tau)."""
    P = 4
    g = _shaped(sj, P)
    frames = _frames(sj)
    with torch.no_grad():
        lu = g.estimate(frames)[0]
        x = lu[:, None]
        ctx = g.context(frames)[:, :, None, :].expand(-1, -1, lu.shape[1], -1)  # type: ignore[misc]
        x = torch.cat([x, ctx], dim=1)
        for layer in g.freq_layers:
            x = layer(x)
        logits = g.envelope(x)
        raw = g.noise_envelope(g.noise_features(frames, lu)).numpy()
    amp_logits = logits[:, :, g.keep].permute(0, 2, 3, 1).numpy()  # (B, N, T, P)
    noise_logits = raw.reshape(2, -1, P, frames.shape[-1]).transpose(0, 1, 3, 2)[:, :3]

    def softmax(a: np.ndarray) -> np.ndarray:
        e = np.exp(a - a.max(-1, keepdims=True))
        return P * e / e.sum(-1, keepdims=True)

    spreads = []
    for tau in (1.0, 3.0, 8.0):
        with torch.no_grad():
            amp_env, noise_env = g.inner_envelopes(logits, frames, lu, tau)
        np.testing.assert_allclose(amp_env.numpy(), softmax(amp_logits / tau), rtol=1e-5)
        np.testing.assert_allclose(noise_env.numpy(), softmax(noise_logits / tau), rtol=1e-5)
        spreads.append(float(amp_env.std(-1).mean()))
    assert spreads[0] > 0.3 and spreads[0] > spreads[1] > spreads[2] > 0
    with torch.no_grad():
        default = g.inner_envelopes(logits, frames, lu)
        torch.testing.assert_close(default[0], g.inner_envelopes(logits, frames, lu, 1.0)[0])
        shaped = g(frames)
        with g.envelopes_at(math.inf):
            flat = g(frames)
        assert g.envelope_temperature == 1.0  # restored on leaving
        want = _flattened(g)(frames)
    torch.testing.assert_close(flat, want, rtol=0, atol=1e-6)
    assert float((shaped - want).abs().max()) > 0.05


def test_a_stream_keeps_the_temperature_it_was_made_with(sj: TimeFrequencyScattering) -> None:
    """A stream made at temperature 3 gives the whole sequence rendered at 3, pushed inside or
    outside the block; one made outside renders the shapes as trained."""
    g = _shaped(sj)
    frames = _frames(sj)
    with torch.no_grad():
        with g.envelopes_at(3.0):
            soft = g(frames)
            s = g.stream(2)
        plain = g(frames)
    assert float((soft - plain).abs().max()) > 0.02
    parts = [s.push(frames[..., :5]), s.push(frames[..., 5:])]
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), soft.numpy(), atol=2e-4)
    with g.envelopes_at(3.0):
        s = g.stream(2)
    np.testing.assert_allclose(s.push(frames).numpy(), soft.numpy(), atol=2e-4)
    t = g.stream(2)
    with g.envelopes_at(3.0):
        np.testing.assert_allclose(t.push(frames).numpy(), plain.numpy(), atol=2e-4)


def _model(sj: TimeFrequencyScattering, tau: float) -> MMSIN:
    """A tiny MMSIN of the shaped head: its VAR fitted on the test frames, generation at
    temperature ``tau``."""
    cfg = override(
        preset("pitched"), ["generator.sub_frames=4", f"generator.generation_temperature={tau}"]
    )
    cfg.validate()
    S = _frames(sj)
    norm = S.abs().mean(dim=(0, 2)).clamp_min(1e-6)
    var = fit_var(S / norm[:, None], M=1, ridge=1.0)
    return MMSIN(cfg, sj, norm, var, _shaped(sj))


def test_generation_alone_renders_at_the_configured_temperature(
    sj: TimeFrequencyScattering,
) -> None:
    """``generator.generation_temperature`` = inf: ``generate`` and ``generate_blocks`` render
    what the flattened head renders from the same codes, ``envelope_temperature=1`` what the
    head renders as trained; ``decode`` (a reconstruction) keeps the trained shapes."""
    model = _model(sj, math.inf)
    gen = {"batch": 2, "seed": 5, "warmup": 6}
    y = model.generate(6, **gen)
    blocks = torch.cat(list(generate_blocks(model, 6, **gen)), -1)
    as_trained = model.generate(6, **gen, envelope_temperature=1.0)
    flat = copy.deepcopy(model)
    flat.generator = _flattened(model.generator)
    want = flat.generate(6, **gen, envelope_temperature=1.0)
    assert float(want.abs().max()) > 0.01
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(blocks, want, rtol=0, atol=2e-4)
    assert float((as_trained - want).abs().max()) > 0.02
    Z = model.encode(torch.as_tensor(np.stack([_partials(130.0, 2e-4), _partials(440.0)])))
    plain = _model(sj, 1.0)
    torch.testing.assert_close(model.decode(Z), plain.decode(Z), rtol=0, atol=0)
    torch.testing.assert_close(plain.generate(6, **gen), as_trained, rtol=0, atol=0)


def test_a_bad_envelope_temperature_is_refused(sj: TimeFrequencyScattering) -> None:
    for bad in ("0", "-1", "nan"):
        with pytest.raises(ValueError, match="generation_temperature"):
            override(
                preset("pitched"),
                ["generator.sub_frames=8", f"generator.generation_temperature={bad}"],
            ).validate()
    with pytest.raises(ValueError, match="sub_frames"):
        override(preset("pitched"), ["generator.generation_temperature=8"]).validate()
    model = _model(sj, 8.0)
    with pytest.raises(ValueError, match="must be > 0"):
        model.generate(4, envelope_temperature=0.0)
    model.generator = _generator(sj)  # no envelopes inside the frame
    with pytest.raises(ValueError, match="no envelopes inside the frame"):
        model.generate(4, envelope_temperature=8.0)


def test_the_moment_matching_pass_renders_as_generation_does(
    sj: TimeFrequencyScattering,
) -> None:
    """L_MM's pass over synthetic frames sees G as ``generate`` runs it: at
    ``generator.generation_temperature`` (inf: what the flattened head renders), while the real
    batch's reconstruction keeps the shapes as trained; through a DDP-like wrapper too."""
    from mmsin.training.objective import loss_terms

    g = _shaped(sj)
    frames = _frames(sj)
    seen, objective, feats = _recording_objective()
    with torch.no_grad():
        shaped, flat = g(frames), _flattened(g)(frames)
    sets = ["generator.sub_frames=4", "generator.generation_temperature=inf"]
    cfg = override(preset("pitched"), sets)
    for model in (g, _Wrapped(g)):
        seen.clear()
        with torch.no_grad():
            loss_terms(
                cfg, model, objective, frames, frames, frames, frames, feats, False, frames.device
            )
        torch.testing.assert_close(seen["inv"], shaped, rtol=0, atol=1e-6)
        torch.testing.assert_close(seen["mm"], flat, rtol=0, atol=1e-6)
    assert float((shaped - flat).abs().max()) > 0.05


def _recording_objective() -> tuple[dict[str, torch.Tensor], Any, Any]:
    """For ``loss_terms``: an objective whose terms are 0 and record what the real pass
    (``seen["inv"]``) and L_MM's pass (``seen["mm"]``) rendered, and features that crop
    nothing."""
    from types import SimpleNamespace

    seen: dict[str, torch.Tensor] = {}
    objective = SimpleNamespace(
        inv=lambda x, sk: seen.setdefault("inv", x).sum() * 0,
        spectrum=lambda x, wave: x.sum() * 0,
        mm=lambda x: seen.setdefault("mm", x).sum() * 0,
    )
    return seen, objective, SimpleNamespace(crop=lambda x: x)


class _Wrapped(torch.nn.Module):
    """A stand-in for DDP: the generator as ``.module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)  # type: ignore[no-any-return]
