"""Envelopes inside the frame (``generator.sub_frames`` = P): flat ones render exactly the
linear frames of the head without them, the points shape the amplitude as written, and a
stream carries the last point across pushes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsin.config import override, preset
from mmsin.generators.synthesis import envelope_knots, sum_oscillators
from mmsin.scattering import TimeFrequencyScattering
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
