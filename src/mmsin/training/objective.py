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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmsin.assembly import build_scalogram
from mmsin.config import Config
from mmsin.generators.base import GeneratorHead, envelope_temperature
from mmsin.training.features import Features

__all__ = [
    "Objective",
    "amp_context",
    "amp_enabled",
    "cpu_has_bf16",
    "evaluate_inv",
    "loss_terms",
    "total_loss",
]


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX, from /proc/cpuinfo):
    only there is bf16 autocast faster than float32 (elsewhere it is emulated, and slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_context(device: torch.device, enabled: bool) -> Any:
    """Mixed precision for the generator: bf16 (else fp16) on CUDA, bf16 on a CPU that has it
    (:func:`cpu_has_bf16`), nothing otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def amp_enabled(requested: bool, device: torch.device) -> bool:
    """Whether ``train.amp`` takes effect on ``device``: CUDA, or a CPU with native bf16."""
    return bool(requested and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())))


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
        # L_MM's divisor: the reference's RMS, or the mean |S_K| of eq. (5) and of the paper's
        # reported distances, which weighs sparse channels (the top octave) as the paper did.
        mm_norm = feats.sk_mean_abs if cfg.loss.mm_norm == "mean" else feats.sk_rms
        self.mm = MomentMatchingLoss(scalogram, feats.sk_mean, mm_norm)
        self.register_buffer("wave_power", feats.wave_power.clone())
        self.spectrum = SpectrumLoss(cfg.loss.spectral_ffts)

    def inv(self, x_hat: Tensor, target_sk: Tensor) -> Tensor:
        """L_inv of eq. (5) against cached S_K targets."""
        return self.rec(x_hat, target_sk)  # type: ignore[no-any-return]

    def mse(self, x_hat: Tensor, x: Tensor) -> Tensor:
        from mmsin.losses import waveform_mse

        return waveform_mse(x_hat, x, self.wave_power)


@contextlib.contextmanager
def zero_state(generator: nn.Module, pad: Tensor | None) -> Iterator[None]:
    """Run G on examples whose first ``pad[i]`` frames lie before their clip's start as if G
    started there from a zero state, as :meth:`mmsin.MMSIN.decode` does on a whole clip.

    Feeding zero frames is not the same: G's biases and BatchNorm make its response to silence
    non-zero, and that response would reach the clip's first blocks. Inside this context every
    layer's output is zeroed before each example's start, so the next layer sees there the
    zeros it sees before time 0 when decoding. (``pad`` = None or all zero: nothing changes.)
    The layers are the head's ``layers`` (:class:`mmsin.generators.base.GeneratorHead`).
    """
    module: nn.Module = getattr(generator, "module", generator)  # DDP wraps the generator
    if pad is None or not bool((pad > 0).any()):
        yield
        return
    if not isinstance(module, GeneratorHead):
        raise TypeError(f"zero_state needs a generator head, got {type(module).__name__}")
    state: dict[str, int] = {}

    def remember_width(mod: nn.Module, args: tuple[Tensor, ...]) -> None:
        state["width"] = int(args[0].shape[-1])

    def mask(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
        rate = out.shape[-1] // state["width"]  # output samples per input frame so far
        start = pad.to(out.device)[:, None] * rate
        keep = torch.arange(out.shape[-1], device=out.device)[None, :] >= start
        keep = keep.reshape(keep.shape[0], *([1] * (out.dim() - 2)), keep.shape[-1])
        return out * keep.to(out.dtype)

    handles = [module.register_forward_pre_hook(remember_width)]
    handles += [layer.register_forward_hook(mask) for layer in module.layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """BatchNorm in eval mode for the moment-matching pass on synthetic batches.

    The pass then sees G as generation runs it (BatchNorm with its running statistics, an
    affine map that gradients go through), and the running statistics that inference uses are
    updated by real-data batches only.
    """
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


def generation_envelopes(model: nn.Module, cfg: Config) -> contextlib.AbstractContextManager[None]:
    """Within: G renders as generation renders frames drawn from the VAR
    (:meth:`mmsin.model.MMSIN.generation_envelopes`): its envelopes inside the frame at
    ``generator.generation_temperature`` and, for the free head, its generation gain and
    ``generator.generation_amp_refine``; ``model`` may be wrapped (DDP)."""
    inner = getattr(model, "module", model)
    return envelope_temperature(inner, cfg.generator.generation_temperature)


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
    pad: Tensor | None = None,
) -> dict[str, Tensor]:
    """One step's loss terms: ``mse`` or ``inv`` on the real batch, plus ``mm`` (eq. 6) on G
    applied to the synthetic S_J batch ``codes`` = ReLU(L^-1 z) when given.

    The real batch starts from a zero state at clip starts (``pad``, :func:`zero_state`); the
    synthetic one runs with BatchNorm in eval mode (:func:`frozen_batchnorm`) and the envelopes
    inside the frame at the generation temperature (:func:`generation_envelopes`)."""
    terms: dict[str, Tensor] = {}
    with amp_context(device, amp), zero_state(model, pad):
        out = model(frames)
    # Only the segment's blocks have all the frames they depend on (context before/after).
    x_hat = feats.crop(out).float()
    if cfg.loss.kind == "mse":
        terms["mse"] = objective.mse(x_hat, wave)
    else:
        terms["inv"] = objective.inv(x_hat, sk)
        if cfg.loss.spectral > 0:
            terms["spec"] = objective.spectrum(x_hat, wave)
    if codes is not None:  # G as generation runs it: BatchNorm frozen, envelopes softened
        with amp_context(device, amp), frozen_batchnorm(model), generation_envelopes(model, cfg):
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
    pad = getattr(feats, f"{split}_pad", None)
    if frames.shape[0] == 0:
        return float("nan")
    was_training = generator.training
    generator.eval()
    total, count = 0.0, 0
    for i in range(0, frames.shape[0], batch):
        f = frames[i : i + batch].to(device)
        with zero_state(generator, None if pad is None else pad[i : i + batch]):
            x_hat = feats.crop(generator(f)).float()
        total += float(objective.inv(x_hat, sk[i : i + batch].to(device))) * f.shape[0]
        count += f.shape[0]
    generator.train(was_training)
    return total / count
