"""Codes drawn from real training codes (``codes="bank"``): the bank's fit, its draws one
clip per span of frames, and L_MM's chains drawing from it in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmsin.training import code_chains, loop
from mmsin.whitening import (
    BANK_HOLD,
    NOISE_FRAMES,
    VAR,
    fit_code_bank,
    whiteness_report,
)
from test_training import run, tiny


def _labelled_bank(clips: int, frames: int, C: int = 6) -> list[torch.Tensor]:
    """Codes whose channel 0 names their clip and channel 1 their frame within it."""
    g = torch.Generator().manual_seed(1)
    out = []
    for k in range(clips):
        z = torch.randn(C, frames, generator=g, dtype=torch.float64)
        z[0], z[1] = float(k + 1), torch.arange(frames, dtype=torch.float64) + 1
        out.append(z)
    return out


def test_code_bank_keeps_chosen_clips_in_int8() -> None:
    examples = _labelled_bank(10, 12)
    bank, scale, offsets = fit_code_bank(examples, 4, skip=3, seed=0)
    assert bank.dtype == torch.int8 and bank.shape == (4 * 9, 6)
    assert offsets.tolist() == [0, 9, 18, 27, 36]
    rows = bank.double() * scale.double()[:, None]
    clip_ids = rows[:, 0].round().long()
    # Four distinct clips, each with its frames 4..12 (the first `skip` dropped), in order.
    assert len(set(clip_ids.tolist())) == 4
    for k in range(4):
        seg = rows[offsets[k] : offsets[k + 1]]
        assert len(set(seg[:, 0].round().long().tolist())) == 1
        np.testing.assert_allclose(seg[:, 1].numpy(), np.arange(4, 13), rtol=0.01)
        ref = examples[int(seg[0, 0].round()) - 1][:, 3:].T
        err = (seg - ref).abs().amax(dim=1) / ref.abs().amax(dim=1)
        assert float(err.max()) <= 0.5 / 127 + 1e-9  # int8 rounding: half a step of the peak
    # Seeded: the same clips again; every clip when asked for more than there are.
    assert torch.equal(fit_code_bank(examples, 4, skip=3, seed=0)[0], bank)
    assert fit_code_bank(examples, 50)[2][-1] == 10 * 12
    with pytest.raises(ValueError, match="clips"):
        fit_code_bank(examples, 0)


def test_bank_codes_hold_one_clip_per_span_across_blocks() -> None:
    examples = _labelled_bank(7, 20)
    var = VAR(6, 1)
    with pytest.raises(ValueError, match="bank"):
        var.sample(1, 10, warmup=0, codes="bank")
    var.code_bank, var.code_bank_scale, var.code_bank_clips = fit_code_bank(examples, 7)
    g = torch.Generator().manual_seed(3)
    # A warm-up that is not a multiple of BANK_HOLD: spans straddle the noise blocks.
    warmup, frames = 37, 3 * NOISE_FRAMES
    held = None
    codes = []
    for start in range(0, warmup + frames, NOISE_FRAMES):
        z, held = var.bank_codes(3, start - warmup, NOISE_FRAMES, g, held)
        codes.append(z)
    clip = torch.cat(codes, -1)[:, 0, : warmup + frames].round().long()  # (3, frames)
    kept = clip[:, warmup:]
    spans = kept.reshape(3, -1, BANK_HOLD)
    assert bool((spans == spans[:, :, :1]).all())  # one clip per span, blocks or not
    assert bool((clip[:, :warmup] == kept[:, :1]).all())  # the warm-up holds the first span's
    assert len(set(spans[:, :, 0].flatten().tolist())) > 3  # and spans draw new clips
    # Within a span, frames are drawn independently among the clip's, with replacement.
    frame_ids = torch.cat(codes, -1)[:, 1].round().long()
    assert len(set(frame_ids[0, warmup : warmup + BANK_HOLD].tolist())) > 10
    # sample() carries the held clip from block to block the same way.
    S = var.sample(2, frames, warmup=warmup, generator=g, relu=False, codes="bank")
    assert S.shape == (2, 6, frames)
    again = VAR.from_state_dict(var.state_dict())
    assert torch.equal(again.code_bank, var.code_bank)
    old = {k: v for k, v in var.state_dict().items() if not k.startswith("code_bank")}
    assert VAR.from_state_dict(old).code_bank.shape == (0, 6)


def test_bank_codes_are_white_with_the_banks_covariance() -> None:
    # Clips of independent codes with clip-specific variances (a passage's loudness): the
    # bank draws keep the variances' mean (1) and are uncorrelated in time.
    g = torch.Generator().manual_seed(5)
    scales = torch.linspace(0.5, 1.32, 40, dtype=torch.float64)
    scales = scales / scales.pow(2).mean().sqrt()
    examples = [torch.randn(8, 64, generator=g, dtype=torch.float64) * s for s in scales]
    var = VAR(8, 1)
    var.code_bank, var.code_bank_scale, var.code_bank_clips = fit_code_bank(examples, 40)
    z = torch.cat([var.bank_codes(4, k * 512, 512, g)[0] for k in range(4)], -1)
    rep = whiteness_report(VAR(8, 1), z)
    assert abs(rep["cov_median_diag"] - 1) < 0.1
    assert rep["lag_median_abs"][0] < 0.05


def test_moment_matching_draws_bank_codes_one_clip_per_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``whitening.codes = "bank"`` the features keep the training codes of
    ``bank_clips`` clips, and every L_MM step draws each chain's codes among one clip's."""
    seen: list[torch.Tensor] = []

    class Spy(code_chains.CodeChains):
        def _codes(self, *a: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
            z, rest = super()._codes(*a)
            seen.append(z)
            assert rest is None  # only "sequence" has rests
            return z, rest

    monkeypatch.setattr(loop, "CodeChains", Spy)
    cfg = tiny(1, "whitening.codes=bank", "whitening.bank_clips=3")
    result = run(cfg, tmp_path / "r", tmp_path / "cache")
    from mmsin.model import MMSIN

    assert result.checkpoint is not None
    var = MMSIN.load(result.checkpoint).var
    offsets = var.code_bank_clips.tolist()
    assert len(offsets) == 4 and offsets[-1] == 3 * (10 - cfg.whitening.M)
    rows = var.code_bank.double() * var.code_bank_scale.double()[:, None]
    assert len(seen) > 2
    for z in seen[1:]:  # [0]: the warm-up
        for chain in z:  # (C, width): each column is a bank row, all of one clip
            match = torch.cdist(chain.T.double(), rows).argmin(dim=1)
            torch.testing.assert_close(rows[match], chain.T.double(), rtol=0, atol=1e-5)
            clip = torch.bucketize(match, torch.tensor(offsets[1:]), right=True)
            assert len(set(clip.tolist())) == 1
    with pytest.raises(ValueError, match="bank_clips"):
        tiny(1, "whitening.codes=bank")
