"""The training objective on cached features (paper eqs. 4-6), one step's terms, evaluation.

Loss::

    mse     : || G(S) - x ||^2 / power                      (waveform baseline)
    inv     : L_inv = mean_c |S_K G(S) - S_K x|_c / mean|S_K x|_c       (eq. 5)
    inv+mm  : L_inv + lam * L_MM(G(L^-1 z)), z white noise, fresh every step (eq. 6)
    spec    : with loss.spectral > 0, + spectral * SpectrumLoss(G(S), x) (not in the paper)

Only the segment's output blocks enter a loss (:meth:`Features.crop`): they are the ones that
have all the S_J frames they depend on.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from mmsin.assembly import build_scalogram
from mmsin.config import Config
from mmsin.training.features import Features

__all__ = ["Objective", "amp_context", "evaluate_inv", "loss_terms", "total_loss"]


def amp_context(device: torch.device, enabled: bool) -> Any:
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class Objective(nn.Module):
    """The training loss of ``cfg.loss`` on fixed features; ``terms`` returns each term."""

    wave_power: Tensor

    def __init__(self, cfg: Config, feats: Features) -> None:
        super().__init__()
        from mmsin.losses import MomentMatchingLoss, ReconstructionLoss, SpectrumLoss

        self.kind = cfg.loss.kind
        self.lam = cfg.loss.lam
        scalogram = build_scalogram(cfg).eval()
        for p in scalogram.parameters():
            p.requires_grad_(False)
        self.rec = ReconstructionLoss(scalogram, feats.sk_mean_abs)
        self.mm = MomentMatchingLoss(scalogram, feats.sk_mean, feats.sk_rms)
        self.register_buffer("wave_power", feats.wave_power.clone())
        self.spectrum = SpectrumLoss(cfg.loss.spectral_ffts)

    def inv(self, x_hat: Tensor, target_sk: Tensor) -> Tensor:
        """L_inv of eq. (5) against cached S_K targets."""
        return self.rec(x_hat, target_sk)  # type: ignore[no-any-return]

    def mse(self, x_hat: Tensor, x: Tensor) -> Tensor:
        from mmsin.losses import waveform_mse

        return waveform_mse(x_hat, x, self.wave_power)


def loss_terms(
    cfg: Config,
    model: nn.Module,
    objective: Objective,
    frames: Tensor,
    wave: Tensor,
    sk: Tensor,
    codes: Tensor | None,
    feats: Features,
    amp: bool,
    device: torch.device,
) -> dict[str, Tensor]:
    """One step's loss terms: ``mse`` or ``inv`` on the real batch, plus ``mm`` (eq. 6) on G
    applied to the synthetic S_J batch ``codes`` = ReLU(L^-1 z) when given."""
    terms: dict[str, Tensor] = {}
    with amp_context(device, amp):
        out = model(frames)
    # Only the segment's blocks have all the frames they depend on (context before/after).
    x_hat = feats.crop(out).float()
    if cfg.loss.kind == "mse":
        terms["mse"] = objective.mse(x_hat, wave)
    else:
        terms["inv"] = objective.inv(x_hat, sk)
        if cfg.loss.spectral > 0:
            terms["spec"] = objective.spectrum(x_hat, wave)
    if codes is not None:
        with amp_context(device, amp):
            gen = model(codes)
        terms["mm"] = objective.mm(feats.crop(gen).float())
    return terms


def total_loss(cfg: Config, terms: dict[str, Tensor]) -> Tensor:
    """The loss optimised: ``inv`` (or ``mse``), plus ``spectral * spec`` and ``lam * mm`` when
    present."""
    loss = terms["inv"] if "inv" in terms else terms["mse"]
    if "spec" in terms:
        loss = loss + cfg.loss.spectral * terms["spec"]
    if "mm" in terms:
        loss = loss + cfg.loss.lam * terms["mm"]
    return loss


@torch.no_grad()
def evaluate_inv(
    generator: nn.Module,
    objective: Objective,
    feats: Features,
    device: torch.device,
    split: str = "test",
    batch: int = 64,
) -> float:
    """Mean L_inv (eq. 5) of the reconstructions G(S_J x) of a split's segments, eval mode."""
    frames = getattr(feats, f"{split}_frames")
    sk = getattr(feats, f"{split}_sk")
    if frames.shape[0] == 0:
        return float("nan")
    was_training = generator.training
    generator.eval()
    total, count = 0.0, 0
    for i in range(0, frames.shape[0], batch):
        f = frames[i : i + batch].to(device)
        x_hat = feats.crop(generator(f)).float()
        total += float(objective.inv(x_hat, sk[i : i + batch].to(device))) * f.shape[0]
        count += f.shape[0]
    generator.train(was_training)
    return total / count
