"""The shipped heads streamed through ``torch.compile`` (``generator.stream(B, compiled=True)``,
:mod:`mmsin.generators.partials_stream`): one graph per push, the same samples as the eager
stream and the whole sequence, and no new graph as the stream goes on or after ``reset`` (a
graph per push would cost seconds each). Slow: compiling takes 10-30 s per model on 2 cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch._dynamo

pytestmark = pytest.mark.slow

FS = 4096
PUSHES = 14


def _frames(model: object) -> torch.Tensor:
    """S_J / norm of two seconds of a decaying harmonic tone (A3, 8 partials), then a second
    of silence and a higher tone (C5): oscillators start, stop and restart."""
    t = np.arange(2 * FS) / FS
    low = sum(np.sin(2 * np.pi * 220.0 * k * t) / k for k in range(1, 9)) * np.exp(-t)
    high = np.sin(2 * np.pi * 523.25 * t) * 0.5
    x = np.concatenate([low, np.zeros(FS), high]).astype(np.float32)
    with torch.no_grad():
        S = model.encode_scattering(torch.tensor(x[None]))  # type: ignore[attr-defined]
    return (S / model.norm[:, None])[..., :PUSHES]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["notes", "piano"])
def test_compiled_stream_equals_the_eager_stream_and_the_whole_sequence(name: str) -> None:
    from mmsin.model import MMSIN

    model = MMSIN.load(name)
    g = model.generator.eval()
    frames = _frames(model)
    with torch.no_grad():
        whole = g(frames)[0].numpy()
    eager = g.stream(1)
    expected = torch.cat([eager.push(frames[..., n : n + 1]) for n in range(PUSHES)], -1)
    np.testing.assert_allclose(expected[0].numpy(), whole, atol=1e-5 * np.abs(whole).max())

    torch._dynamo.reset()
    stream = g.stream(1, compiled=True)
    first = stream.push(frames[..., :1])  # compiles
    with torch._dynamo.config.patch(error_on_recompile=True):
        rest = [stream.push(frames[..., n : n + 1]) for n in range(1, PUSHES)]
        got = torch.cat([first, *rest], -1)[0].numpy()
        stream.reset()  # the same graph after a reset
        again = torch.cat([stream.push(frames[..., n : n + 1]) for n in range(PUSHES)], -1)
    scale = float(np.abs(whole).max())
    assert scale > 0.01  # the tones sound
    np.testing.assert_allclose(got, expected[0].numpy(), atol=1e-6 * scale)
    np.testing.assert_allclose(again[0].numpy(), got, atol=1e-6 * scale)
    np.testing.assert_allclose(got, whole, atol=1e-5 * scale)
    # several frames a push: another graph (Inductor's vectorised code for a (B, F, k > 1)
    # frame mask once failed to compile)
    four = g.stream(1, compiled=True)
    pushed = torch.cat([four.push(frames[..., n : n + 4]) for n in range(0, 12, 4)], -1)
    np.testing.assert_allclose(pushed[0].numpy(), whole[: 12 * g.hop], atol=1e-5 * scale)
