"""The partials generator (mmsin.generators.partials): its front end against S_J's ``time`` variant,
its shared network's transposition equivariance, causality, streaming, the training zero state, and
a model that round-trips through a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmsin.config import override, preset
from mmsin.generators.partials import PartialGenerator, first_order_frontend
from mmsin.scattering import TimeFrequencyScattering


def _tone(f0: float, seconds: float = 3.0, fs: int = 4096) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return sum(
        0.6**k * np.sin(2 * np.pi * (k + 1) * f0 * t) for k in range(4) if (k + 1) * f0 < 1800
    )


def test_front_end_reads_the_papers_order_1_back_as_the_averaged_scalogram() -> None:
    """The pseudo-inverse of eq. (8)'s windowed Fourier atoms gives phi_J * |x * psi1| back:
    the ``time`` variant computes that directly (its order 1), an independent reference."""
    paper = TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")
    time = TimeFrequencyScattering(J=10, Q=12, P=12, variant="time")
    x = torch.tensor(np.stack([_tone(293.7), _tone(61.0)]), dtype=torch.float64)
    matrix, hz = first_order_frontend(paper)
    u = np.einsum("fc,bct->bft", matrix, paper(x).numpy())
    ref_matrix, ref_hz = first_order_frontend(time)
    ref = np.einsum("fc,bct->bft", ref_matrix, time(x).numpy())
    np.testing.assert_allclose(hz, ref_hz)
    assert np.all(np.diff(hz) > 0) and hz[-1] == pytest.approx(1696.6, abs=0.1)
    np.testing.assert_allclose(u, ref, atol=1e-6 * np.abs(ref).max())
    # and the bin that peaks is the tone's: 293.7 Hz lies between the 283 and 300 Hz bins
    peak = hz[np.argmax(u[0, :, 8])]
    assert 283 <= peak <= 300.5
    with pytest.raises(ValueError, match="joint-real"):
        first_order_frontend(TimeFrequencyScattering(J=10, Q=12, P=12, variant="joint-real"))


def _generator(context: int = 0, **kw: object) -> tuple[PartialGenerator, TimeFrequencyScattering]:
    sj = TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")
    matrix, hz = first_order_frontend(sj)
    torch.manual_seed(0)
    args: dict = {"channels": 6, "depth": 2, "trunk_hidden": 4, "context": context, **kw}
    g = PartialGenerator(sj.num_channels, matrix, hz, J=10, **args)
    with torch.no_grad():  # make the shared network's output depend visibly on its input
        g.out.conv.weight.mul_(30.0)
    return g.eval(), sj


def test_a_transposed_note_moves_the_amplitudes_by_one_bin() -> None:
    """The network is shared across log-frequency: a note a semitone higher (one bin of u)
    drives the oscillators per_bin places higher, with the same amplitudes."""
    g, sj = _generator()
    f0 = 110.0
    x = torch.tensor(np.stack([_tone(f0), _tone(f0 * 2 ** (1 / 12))]), dtype=torch.float32)
    with torch.no_grad():
        A = g.amplitudes(sj(x)).numpy()[:, :, 6]  # a steady frame
    R = g.per_bin
    low, high = A[0, :-R], A[1, R:]
    band = (np.asarray(g.frequencies[:-R]) > 80) & (np.asarray(g.frequencies[:-R]) < 1000)
    rel = np.abs(low[band] - high[band]).max() / low[band].max()
    assert rel < 0.05
    # the loudest oscillator is within half a bin (a quarter tone) of the fundamental
    cents = 1200 * np.log2(np.asarray(g.frequencies)[np.argmax(A[0])] / f0)
    assert abs(cents) <= 50


def test_causal_and_frame_span_exact() -> None:
    g, _ = _generator(context=3)
    lo, hi = g.frame_span
    assert hi == 0 and lo >= 1
    torch.manual_seed(1)
    frames = torch.rand(1, g.in_channels, 24)
    n = 8
    bumped = frames.clone()
    bumped[..., n] += 1.0
    with torch.no_grad():
        d = (g(bumped) - g(frames)).abs().reshape(24, g.hop).amax(dim=1).numpy()
    assert np.all(d[:n] == 0)  # no block before frame n moves
    assert np.all(d[n : n + lo + 1] > 0)  # blocks n .. n + lo see it
    assert np.all(d[n + lo + 1 :] == 0)  # and none after: the span is exact


def test_streaming_equals_the_whole_sequence() -> None:
    g, _ = _generator(context=2)
    torch.manual_seed(2)
    frames = torch.rand(2, g.in_channels, 19)
    with torch.no_grad():
        whole = g(frames)
    s = g.stream(2)
    parts, i = [], 0
    for k in (1, 5, 2, 11):
        parts.append(s.push(frames[..., i : i + k]))
        i += k
    parts.append(s.flush())
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole.numpy(), atol=1e-5)


def test_training_zero_state_equals_decoding_from_the_clip_start() -> None:
    """Frames before a clip's start change nothing under the training loop's zero state: the
    output after the start is the clip decoded on its own, carriers continuing in phase."""
    from mmsin.training.objective import zero_state

    g, _ = _generator(context=2)
    torch.manual_seed(3)
    clip = torch.rand(1, g.in_channels, 6)
    padded = torch.cat([torch.zeros(1, g.in_channels, 3), clip], dim=-1)
    with torch.no_grad():
        with zero_state(g, torch.tensor([3])):
            out = g(padded)
        expected = g.render(clip, first_frame=3)
        free = g(padded)  # without the zero state the pad frames leak in (biases)
    np.testing.assert_allclose(out[:, : 3 * g.hop].numpy(), 0.0, atol=1e-7)
    np.testing.assert_allclose(out[:, 3 * g.hop :].numpy(), expected.numpy(), atol=1e-5)
    assert float((free - out).abs().max()) > 1e-4


def test_input_norm_is_what_the_front_end_undoes() -> None:
    g, sj = _generator()
    x = torch.tensor(_tone(220.0)[None], dtype=torch.float32)
    S = sj(x)
    norm = S.abs().mean(dim=(0, 2)) + 1e-6
    with torch.no_grad():
        raw = g.amplitudes(S)
        g.set_input_norm(norm)
        normed = g.amplitudes(S / norm[:, None])
    np.testing.assert_allclose(normed.numpy(), raw.numpy(), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="positive"):
        g.set_input_norm(torch.zeros(g.in_channels))


def test_config_checks() -> None:
    from mmsin.assembly import build_generator

    cfg = override(preset("small"), ["generator.head=partials", "generator.per_octave=30"])
    with pytest.raises(ValueError, match=r"multiple of scattering\.Q"):
        build_generator(cfg, 973)
    from mmsin.assembly import build_scattering
    from mmsin.generators.partials import LearnedFrontend, first_order_frontend

    cfg = override(preset("small"), ["generator.head=partials", "scattering.variant=joint-real"])
    with pytest.raises(ValueError, match="variant"):  # no exact read-back of a modulus ...
        first_order_frontend(build_scattering(cfg))
    assert isinstance(build_generator(cfg, 888).frontend, LearnedFrontend)  # ... a learned one


def test_trains_and_round_trips_through_a_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A tiny training of the head lowers the loss; the saved model (its S_J normaliser comes
    from the checkpoint's norm) decodes exactly as the trained one."""
    from _tiny import tiny_clips, tiny_config
    from mmsin.model import MMSIN
    from mmsin.training import train

    cfg = tiny_config(
        6,
        "generator.head=partials",
        "generator.hidden=4",
        "generator.trunk_layers=3",
        "generator.freq_channels=4",
        "generator.freq_depth=1",
        "generator.freq_kernel=3",
        "generator.per_octave=4",
        "generator.fmin=40",
    )
    train_clips, test_clips = tiny_clips()
    result = train(
        cfg,
        tmp_path / "run",
        train_clips=train_clips,
        test_clips=test_clips,
        cache_dir=tmp_path / "cache",
        progress=False,
        tensorboard=False,
    )
    losses = result.history["train_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    model = MMSIN.load(result.checkpoint)
    assert isinstance(model.generator, PartialGenerator)
    norm = model.generator.input_norm
    np.testing.assert_allclose(norm.numpy(), model.norm.numpy(), rtol=1e-6)
    x = torch.tensor(test_clips.audio[:1])
    y = model(x)
    assert y.shape[-1] == (x.shape[-1] - 1) // 32 * 32 + 1 and torch.isfinite(y).all()
    assert math.isfinite(float(y.abs().max())) and float(y.abs().max()) > 0
    # The generator as training left it, with the same encoder: the same audio, bit for bit.
    assert result.generator is not None
    trained = MMSIN(model.config, model.scattering, model.norm, model.var, result.generator)
    assert torch.equal(trained(x), y)
