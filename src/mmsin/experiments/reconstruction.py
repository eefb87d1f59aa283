"""Paper section 5.2, Fig. 4: reconstructions G(L S_J x) of test notes and piano extracts.

Metrics: eq. (5) error, multi-resolution STFT distance, log-spectral distance, and for notes
the f0 error of the reconstruction (CREPE) in cents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmsin import evaluation as ev
from mmsin import plots, report
from mmsin.experiments.shared import (
    NOTES,
    PIANO,
    Context,
    Outcome,
    data_size,
    finish,
    given_models,
    load_split,
    loss_parts,
    model_for,
    out_folder,
    reconstruct,
    wav,
)

__all__ = ["reconstruction"]


def reconstruction(ctx: Context) -> Outcome:
    """Fig. 4: reconstructions of test notes and test piano extracts, with metrics."""
    name = "reconstruction"
    folder = out_folder(ctx, name)
    section = report.Section("Reconstruction (Fig. 4)")
    numbers: dict[str, Any] = {"runs": {}}
    rows = []
    examples = []
    sets = [(NOTES, "notes"), (PIANO, "piano")]
    if ctx.model:  # given models: the data sets they were trained on
        sets = [(d, {NOTES: "notes", PIANO: "piano"}.get(d, d)) for d in given_models(ctx)]
    for dataset, label in sets:
        model, info, _ = model_for(ctx, name, dataset)
        numbers["runs"][label] = info
        test = load_split(ctx, dataset, "test", data_size(ctx, model))
        x = test.audio
        x_hat, x_ref = reconstruct(ctx, model, dataset, "test")
        loss = loss_parts(model)
        m: dict[str, Any] = {
            "clips": int(x.shape[0]),
            "eq5_error": ev.perceptual_error(x_hat, x_ref, loss),
            "mr_stft": ev.multi_resolution_stft_distance(x_hat, x_ref),
            "lsd_db": ev.log_spectral_distance(x_hat, x_ref),
        }
        if label == "notes":
            errs = []
            for i in range(min(x.shape[0], ctx.n_f0)):
                f_ref = ev.median_f0(x_ref[i], model.fs, model=ctx.crepe_model)
                f_hat = ev.median_f0(x_hat[i], model.fs, model=ctx.crepe_model)
                errs.append(ev.cents(f_hat, f_ref))
            errs_arr = np.asarray(errs, dtype=float)
            m["f0_cents_abs_median"] = float(np.nanmedian(np.abs(errs_arr)))
            m["f0_within_50_cents"] = float(np.mean(np.abs(errs_arr) < 50))
            m["f0_cents"] = errs_arr
        numbers[label] = m
        rows.append(
            [
                label,
                m["clips"],
                m["eq5_error"],
                m["mr_stft"],
                m["lsd_db"],
                m.get("f0_cents_abs_median", float("nan")),
            ]
        )
        for i in range(min(ctx.n_examples, x.shape[0])):
            clip = test.meta[i].get("name", f"{label}{i}")
            examples.append((f"{label} {clip}", x_ref[i], x_hat[i]))
            section.add(
                report.Audio(
                    wav(folder, f"{label}-{i}-original", x_ref[i], model.fs),
                    f"{label} {i}: original",
                ),
                report.Audio(
                    wav(folder, f"{label}-{i}-reconstruction", x_hat[i], model.fs),
                    f"{label} {i}: G(Z)",
                ),
            )
    fig = plots.reconstruction_figure(
        [examples[0], examples[min(ctx.n_examples, len(examples) - 1)]]
        if len(examples) > 1
        else examples,
        model.fs,
        folder / "fig4-reconstruction.png",
    )
    section.blocks.insert(
        0,
        report.Table(
            ["test set", "clips", "eq. 5 error", "MR-STFT", "LSD (dB)", "|f0 error| (cents)"],
            rows,
            caption="Reconstruction G(L S_J x) of the test sets ("
            + ("given models" if ctx.model else "models trained with L_inv + lambda L_MM")
            + "). f0 by CREPE; median absolute error.",
        ),
    )
    section.blocks.insert(
        1,
        report.Figure(
            fig, "Left: original test sample. Right: G(Z), Z = L S_J x. Top: notes. Bottom: piano."
        ),
    )
    return finish(ctx, name, folder, numbers, section)
