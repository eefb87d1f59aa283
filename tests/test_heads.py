"""Every generator head built from a config satisfies the one contract of
:mod:`mmsin.generators.base` (``GeneratorHead``, its ``Streamer``), with sane values: the hop of
S_J, a timing that agrees with itself and with the look-ahead, a positive FLOP count, a stream
equal to the whole-sequence forward, and causality beyond the look-ahead. The per-head tests
(test_generator, test_oscillators, test_partials, test_free_partials) check each head's exact
timing; this one checks that the rest of mmsin can rely on the same names for all of them."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from _tiny import tiny_config
from mmsin.assembly import build_generator, build_scattering, context_frames
from mmsin.generators import (
    CausalGenerator,
    FreePartialGenerator,
    GeneratorHead,
    OscillatorGenerator,
    PartialGenerator,
    ReadsInputNorm,
    Streamer,
)

_PARTIALS = [
    "generator.head=partials",
    "generator.hidden=4",
    "generator.trunk_layers=3",
    "generator.freq_channels=4",
    "generator.freq_depth=1",
    "generator.freq_kernel=3",
    "generator.per_octave=4",
    "generator.fmin=40",
]

#: One config per head (and look-ahead where the head has one), on the tiny shapes (J = 5).
HEADS = {
    "conv": ([], CausalGenerator),
    "conv-look-ahead": (["generator.look_ahead=2"], CausalGenerator),
    "oscillators": (
        [
            "generator.head=oscillators",
            "generator.hidden=8",
            "generator.trunk_layers=2",
            "generator.per_octave=4",
            "generator.look_ahead=1",
        ],
        OscillatorGenerator,
    ),
    "partials-fixed": ([*_PARTIALS, "generator.frequencies=fixed"], PartialGenerator),
    "partials-free": (
        [*_PARTIALS, "generator.frequencies=free", "generator.noise_bands=2"],
        FreePartialGenerator,
    ),
}


@pytest.fixture(scope="module", params=sorted(HEADS))
def built(request: pytest.FixtureRequest) -> tuple[Any, Any, int]:
    overrides, cls = HEADS[request.param]
    torch.manual_seed(0)
    cfg = tiny_config(1, *overrides)
    C = int(build_scattering(cfg).num_channels)
    g = build_generator(cfg, C)
    assert type(g) is cls
    return cfg, g.eval(), C


def test_each_head_satisfies_the_protocol_with_sane_values(
    built: tuple[Any, Any, int],
) -> None:
    cfg, g, C = built
    assert isinstance(g, GeneratorHead) and isinstance(g, nn.Module)
    J, a = cfg.scattering.J, cfg.generator.look_ahead
    assert (g.in_channels, g.J, g.hop, g.look_ahead) == (C, J, 2**J, a)
    lo, hi = g.frame_span
    assert lo >= 0 and hi == a
    assert g.receptive_field == lo + hi + 1
    assert g.latency == (1 + a) * g.hop
    assert context_frames(cfg, g) == (lo, hi)
    assert len(g.layers) >= 1 and all(isinstance(m, nn.Module) for m in g.layers)
    assert g.flops_per_frame() > g.flops_per_frame(pointwise=False) > 0
    assert isinstance(g, ReadsInputNorm) == isinstance(g, PartialGenerator)


def test_each_head_streams_as_it_generates_and_is_causal(
    built: tuple[Any, Any, int],
) -> None:
    _, g, C = built
    assert isinstance(g, GeneratorHead)
    torch.manual_seed(1)
    T = 10
    frames = torch.rand(2, C, T)
    with torch.no_grad():
        whole = g(frames)
    assert whole.shape == (2, T * g.hop)
    s = g.stream(2)
    assert isinstance(s, Streamer)
    parts = [s.push(frames[..., i : i + k]) for i, k in ((0, 3), (3, 1), (4, 6))]
    streamed = torch.cat([*parts, s.flush()], dim=-1)
    scale = 1.0 + float(whole.abs().max())
    assert streamed.shape == whole.shape
    assert float((streamed - whole).abs().max()) <= 1e-5 * scale
    s.reset()
    again = torch.cat([s.push(frames), s.flush()], dim=-1)
    assert float((again - whole).abs().max()) <= 1e-5 * scale
    # frame k reaches back to block k - hi at most: earlier blocks do not move
    k, hi = 6, g.frame_span[1]
    bumped = frames.clone()
    bumped[..., k] += 1.0
    with torch.no_grad():
        moved = g(bumped)
    first = (k - hi) * g.hop
    assert torch.equal(moved[:, :first], whole[:, :first])
    assert float((moved[:, first:] - whole[:, first:]).abs().max()) > 0


def test_build_generator_refuses_a_head_outside_the_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mmsin.assembly as assembly

    monkeypatch.setattr(assembly, "_build_head", lambda *args: nn.Linear(2, 2))
    with pytest.raises(TypeError, match="GeneratorHead"):
        assembly.build_generator(tiny_config(1), 4)
