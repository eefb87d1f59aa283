"""Training does to G what decoding and generation do (docs/training.md): BatchNorm statistics
from real batches only, one starting state, moment-matching codes from the float64 VAR, bf16
autocast only where the CPU has it, the L_MM normalisation, level augmentation.

Tiny shapes throughout, from tests/test_training.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("mmsin.losses")
from mmsin import assembly, training
from mmsin.config import Config
from mmsin.training import code_chains, loop, objective
from test_training import HOP, clips, run, tiny


def _setup(tmp_path: Path) -> tuple[Config, training.Features, Any, Any]:
    cfg = tiny(1)
    tr, te = clips()
    torch.manual_seed(0)
    C = int(assembly.build_scattering(cfg).num_channels)
    gen = assembly.build_generator(cfg, C)
    feats = training.prepare_features(
        cfg, tr, te, cache_dir=tmp_path, context=assembly.context_frames(cfg, gen)
    )
    obj = objective.Objective(cfg, feats)
    # BatchNorm statistics away from their initial (0, 1), as after some training.
    gen.train()
    with torch.no_grad():
        for _ in range(3):
            gen(feats.train_frames[:8] * 3.0)
    return cfg, feats, gen, obj


def test_batchnorm_statistics_come_from_real_batches_only(tmp_path: Path) -> None:
    """The moment-matching pass on VAR-sampled codes leaves BatchNorm's running statistics
    alone (they are what inference uses) and runs G as generation does, BatchNorm in eval mode;
    the real pass updates them in training mode."""
    import copy

    cfg, feats, gen, obj = _setup(tmp_path)
    frames, wave, sk = feats.train_frames[:4], feats.train_wave[:4], feats.train_sk[:4]
    codes = torch.relu(torch.randn(4, frames.shape[1], frames.shape[2])) * 2.0
    ref = copy.deepcopy(gen)
    gen.train()
    cpu, pad = torch.device("cpu"), feats.train_pad[:4]
    terms = objective.loss_terms(cfg, gen, obj, frames, wave, sk, codes, feats, False, cpu, pad=pad)
    assert gen.training and all(m.training for m in gen.modules())
    # Reference: the real batch alone, in training mode, updates the statistics...
    ref.train()
    with objective.zero_state(ref, pad):
        ref(frames)
    stats = [k for k in ref.state_dict() if "running_" in k]
    assert stats
    before = copy.deepcopy(gen.state_dict())
    for k in stats:
        torch.testing.assert_close(gen.state_dict()[k], ref.state_dict()[k], rtol=0, atol=0)
    # ...and the MM term is that of the generated audio of G in eval mode.
    ref.eval()
    with torch.no_grad():
        want = obj.mm(feats.crop(ref(codes)).float())
    torch.testing.assert_close(terms["mm"].detach(), want)
    # It is differentiable: it reaches the convolutions and BatchNorm's affine parameters.
    grads = torch.autograd.grad(terms["mm"], [p for p in gen.parameters()], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:-1])
    assert all(torch.equal(before[k], gen.state_dict()[k]) for k in stats)


def test_training_and_decoding_start_g_from_the_same_state(tmp_path: Path) -> None:
    """Every training segment's output equals the matching blocks of G run on the whole clip
    from a zero state (what MMSIN.decode does), at clip starts too, and so does L_inv."""
    cfg, feats, gen, obj = _setup(tmp_path)
    gen.eval()  # the same BatchNorm statistics on both sides
    tr, _ = clips()
    S = assembly.build_scattering(cfg)(torch.as_tensor(tr.audio)) / feats.norm[:, None]
    with torch.no_grad():
        whole = gen(S)  # (6 clips, 10 frames * HOP), zero state before each clip
    starts = [0, 4, 6]  # segments of 4 frames of 10-frame clips (6 clips per start)
    want = torch.cat([whole[:, n0 * HOP : (n0 + 4) * HOP] for n0 in starts])
    assert feats.train_pad.tolist() == [
        max(0, feats.context - n0) for n0 in starts for _ in tr.audio
    ]
    with torch.no_grad(), objective.zero_state(gen, feats.train_pad):
        got = feats.crop(gen(feats.train_frames))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # The loss the training step computes is the loss of those decoded blocks.
    terms = objective.loss_terms(
        cfg,
        gen,
        obj,
        feats.train_frames,
        feats.train_wave,
        feats.train_sk,
        None,
        feats,
        False,
        torch.device("cpu"),
        pad=feats.train_pad,
    )
    torch.testing.assert_close(terms["inv"].detach(), obj.inv(want, feats.train_sk))
    # ...and so is the test L_inv logged at checkpoints.
    _, te = clips()
    St = assembly.build_scattering(cfg)(torch.as_tensor(te.audio)) / feats.norm[:, None]
    with torch.no_grad():
        wt = gen(St)
    want_t = torch.cat([wt[:, n0 * HOP : (n0 + 4) * HOP] for n0 in starts])
    value = objective.evaluate_inv(gen, obj, feats, torch.device("cpu"), split="test")
    assert value == pytest.approx(float(obj.inv(want_t, feats.test_sk)), rel=1e-5)
    # Zero frames are not a zero state: without it the first blocks of a clip differ.
    with torch.no_grad():
        cold = feats.crop(gen(feats.train_frames))
    assert not torch.allclose(cold[:6], want[:6], rtol=1e-3, atol=1e-4)


def test_moment_matching_codes_come_from_the_float64_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The synthetic batches of L_MM are ReLU(L^-1 z) with the VAR in float64, as at inference:
    equal to the recursion written out in numpy (float64) to float32 rounding."""
    seen: list[tuple[Any, int, torch.Tensor]] = []

    class Spy(code_chains.CodeChains):
        def next(self, step: int) -> torch.Tensor:
            before = self.state.clone() if self.state is not None else None
            out = super().next(step)
            seen.append((self, step, before, out))
            return out

    monkeypatch.setattr(loop, "CodeChains", Spy)
    run(tiny(1), tmp_path / "r", tmp_path / "cache")
    assert seen
    chains = seen[0][0]
    var = chains.var
    assert var.A.dtype == torch.float64
    A, b = var.A.numpy(), var.b.numpy()
    root = var.sqrt_cov.numpy()
    M = A.shape[0]
    for _, step, before, out in seen[:3]:
        g = code_chains.seeded_generator(torch.device("cpu"), chains.seed, chains.rank, step)
        z = torch.randn(out.shape, generator=g, dtype=torch.float64).numpy()
        S = np.concatenate([before.numpy()[:, :, -M:], np.zeros(out.shape)], axis=2)
        for n in range(out.shape[2]):
            pred = b + sum(S[:, :, M + n - m] @ A[m - 1].T for m in range(1, M + 1))
            S[:, :, M + n] = pred + z[:, :, n] @ root
        relu = chains.relu
        mask = relu.numpy()[None, :, None] if isinstance(relu, torch.Tensor) else bool(relu)
        want = np.where(mask, np.maximum(S[:, :, M:], 0), S[:, :, M:]).astype(np.float32)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_bf16_autocast_only_on_a_cpu_that_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(objective, "cpu_has_bf16", lambda: False)
    assert not objective.amp_enabled(True, cpu)  # emulated bf16 would be slower: off
    monkeypatch.setattr(objective, "cpu_has_bf16", lambda: True)
    assert objective.amp_enabled(True, cpu) and not objective.amp_enabled(False, cpu)
    a = torch.randn(4, 4)
    with objective.amp_context(cpu, True):
        assert (a @ a).dtype == torch.bfloat16
    with objective.amp_context(cpu, False):
        assert (a @ a).dtype == torch.float32


def test_mm_term_divides_by_the_chosen_channel_statistic(tmp_path: Path) -> None:
    cfg = tiny()
    tr, te = clips()
    f = training.prepare_features(cfg, tr, te, cache_dir=tmp_path, context=(2, 0))
    assert cfg.loss.mm_norm == "rms"  # the reference code's L_MM
    torch.testing.assert_close(objective.Objective(cfg, f).mm.rms, f.sk_rms)
    cfg.loss.mm_norm = "mean"  # eq. (5)'s and the paper's reported distances' divisor
    torch.testing.assert_close(objective.Objective(cfg, f).mm.rms, f.sk_mean_abs)
    # On the tones, the top channels are sparse: RMS well above the mean, so "mean" weighs
    # them more.
    assert bool((f.sk_rms > 1.05 * f.sk_mean_abs).any())
    cfg.loss.mm_norm = "median"
    with pytest.raises(ValueError, match="mm_norm"):
        cfg.validate()


def test_level_augmentation_scales_each_segment_alike(tmp_path: Path, monkeypatch) -> None:
    """With ``train.level_db`` each training segment's S_J frames, waveform and S_K reach the
    loss multiplied by one gain, drawn in the range, the same for the same seed and step (a
    resumed run draws what the first would have); without it they arrive as computed."""
    from mmsin.training import loop

    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    real = loop.loss_terms

    def spy(cfg, model, objective, frames, wave, sk, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append((frames.detach().clone(), wave.detach().clone(), sk.detach().clone()))
        return real(cfg, model, objective, frames, wave, sk, *a, **kw)

    monkeypatch.setattr(loop, "loss_terms", spy)
    run(tiny(1), tmp_path / "plain", tmp_path / "cache")
    plain = list(seen)
    seen.clear()
    run(tiny(1, "train.level_db=[-12, 6]"), tmp_path / "level", tmp_path / "cache")
    assert len(seen) == len(plain) > 0
    for (f0, w0, s0), (f1, w1, s1) in zip(plain, seen, strict=True):
        gain = (w1.flatten(1).norm(dim=1) / w0.flatten(1).norm(dim=1)).double()
        assert bool(((gain > 10 ** (-12 / 20) - 1e-6) & (gain < 10 ** (6 / 20) + 1e-6)).all())
        for a, b in ((f0, f1), (s0, s1)):  # the same gain for S_J and S_K
            ratio = b.flatten(1).norm(dim=1) / a.flatten(1).norm(dim=1)
            assert torch.allclose(ratio.double(), gain, rtol=1e-5)
    assert float(gain.max() / gain.min()) > 1.05  # not one gain for all segments
    first = loop.level_gains([-12, 6], 4, 3, 7)
    assert torch.equal(first, loop.level_gains([-12, 6], 4, 3, 7))
    assert not torch.equal(first, loop.level_gains([-12, 6], 4, 3, 8))
