"""What a training run shows while it runs: TensorBoard scalars and previews, a progress bar.

Rank 0 only. The previews (:func:`write_previews`) are audio and log-spectrograms of
reconstructions of the first test segments next to their targets, and of generations from
white noise, written every ``train.preview_every`` epochs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmsin.assembly import build_scattering
from mmsin.config import Config
from mmsin.scattering import nonnegative_channels
from mmsin.training.features import Features

__all__ = ["progress_bar", "summary_writer", "write_previews"]

log = logging.getLogger(__name__)


def summary_writer(folder: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        log.warning("tensorboard is not installed; no TensorBoard logs")
        return None
    return SummaryWriter(log_dir=str(folder))


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


@torch.no_grad()
def write_previews(
    writer: Any,
    cfg: Config,
    generator: nn.Module,
    var: Any,
    feats: Features,
    device: torch.device,
    step: int,
    count: int = 2,
) -> None:
    """TensorBoard audio and log-spectrogram previews: reconstructions of the first test (or
    train) segments next to their targets, and generations from white noise."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fs = cfg.scattering.fs
    split = "test" if feats.test_frames.shape[0] else "train"
    frames = getattr(feats, f"{split}_frames")[:count].to(device)
    target = getattr(feats, f"{split}_wave")[:count]
    was_training = generator.training
    generator.eval()
    recon = feats.crop(generator(frames)).float().cpu()
    g = torch.Generator(device=device).manual_seed(cfg.train.seed)
    relu = nonnegative_channels(build_scattering(cfg), int(var.channels))
    S = var.sample(count, frames.shape[2], warmup=cfg.whitening.warmup, generator=g, relu=relu)
    S = S.float()
    gen = feats.crop(generator(S.to(device))).float().cpu()
    generator.train(was_training)
    rows = [("target", target), ("reconstruction", recon), ("generated", gen)]
    for name, x in rows:
        for i in range(x.shape[0]):
            peak = float(x[i].abs().max()) or 1.0
            writer.add_audio(f"{name}/{i}", (x[i] / peak).clamp(-1, 1)[None], step, fs)
    fig, axes = plt.subplots(
        len(rows), count, figsize=(3.2 * count, 2.2 * len(rows)), squeeze=False
    )
    for r, (name, x) in enumerate(rows):
        for i in range(min(count, x.shape[0])):
            ax = axes[r][i]
            nfft = int(min(256, 2 ** int(np.log2(max(x.shape[1] // 4, 2)))))
            with np.errstate(divide="ignore"):  # silent frames: -inf dB, drawn as the floor
                ax.specgram(
                    x[i].numpy(),
                    NFFT=nfft,
                    Fs=fs,
                    noverlap=3 * nfft // 4,
                    cmap="magma",
                    scale="dB",
                )
            ax.set_title(f"{name} {i}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    writer.add_figure("log-spectrogram", fig, step)
    plt.close(fig)
