"""Paper section 5.2, Fig. 5: samples G(ReLU(L^-1 z)) from white noise and the spread sigma."""

from __future__ import annotations

import numpy as np

from mmsin import evaluation as ev
from mmsin import plots, report
from mmsin.experiments.shared import (
    PIANO,
    Context,
    Outcome,
    data_size,
    finish,
    generated,
    load_split,
    model_for,
    out_folder,
    wav,
)

__all__ = ["generation"]


def generation(ctx: Context) -> Outcome:
    """Fig. 5: samples from white noise; spread sigma for train, test and generated."""
    from mmsin.assembly import build_scalogram

    name = "generation"
    folder = out_folder(ctx, name)
    model, info, dataset = model_for(ctx, name, PIANO, any_dataset=True)
    size = data_size(ctx, model)
    train, test = load_split(ctx, dataset, "train", size), load_split(ctx, dataset, "test", size)
    frames = max(1, train.audio.shape[1] // model.hop)
    n_gen = max(ctx.n_samples, min(test.audio.shape[0], 64))
    gen = generated(model, n_gen, frames, ctx.seed)
    sk = build_scalogram(model.config).eval()
    norm = ev.scalogram_normalizer(sk, train.audio)  # the paper's normalised S_K
    sigma = {
        k: ev.spread(ev.time_averaged(sk, v, normalizer=norm))
        for k, v in (("train", train.audio), ("test", test.audio), ("generated", gen))
    }
    grid = {
        k: float(np.median(ev.grid_share_or_nan(v, model.fs)))
        for k, v in (("train", train.audio), ("generated", gen))
    }
    section = report.Section("Generation from white noise (Fig. 5)")
    fig = plots.generation_figure(list(gen[: ctx.n_samples]), model.fs, folder / "fig5.png")
    section.add(
        report.Table(
            ["set", "spread sigma", "paper"],
            [
                ["train", sigma["train"], ev.PAPER_SPREAD["train"]],
                ["test", sigma["test"], None],
                ["generated", sigma["generated"], ev.PAPER_SPREAD["generated"]],
            ],
            caption="Mean Euclidean distance of time-averaged S_K to the set mean, each "
            "channel divided by its mean |S_K| over the training set (the paper's "
            "normalisation). Our S_K has other channels than the paper's: compare the ratios. "
            f"Energy on the 64 Hz grid (median): generated {grid['generated']:.3f}, "
            f"training clips {grid['train']:.3f}.",
        ),
        report.Figure(fig, f"Independent samples G(Z), Z white noise, model of {dataset}."),
    )
    for i in range(ctx.n_samples):
        section.add(report.Audio(wav(folder, f"sample-{i}", gen[i], model.fs), f"sample {i + 1}"))
    numbers = {
        "run": info,
        "dataset": dataset,
        "spread": sigma,
        "grid_share_64hz": grid,
        "paper": ev.PAPER_SPREAD,
        "generated": n_gen,
        "frames": frames,
    }
    return finish(ctx, name, folder, numbers, section)
