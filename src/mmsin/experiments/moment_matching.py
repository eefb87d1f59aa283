"""Paper section 5.2: eq. (6) distance of generated sets (without / with L_MM) to the
training set, beside the test set's.
"""

from __future__ import annotations

from typing import Any

from mmsin import evaluation as ev
from mmsin import report
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
    trained_model,
)

__all__ = ["moment_matching"]


def moment_matching(ctx: Context) -> Outcome:
    """Eq. (6) distance to the training set: generated without / with L_MM, and test.

    With a given model (``ctx.model``) only its generated set and the test set are measured,
    on the data set it was trained on (nothing is trained).
    """
    from mmsin.assembly import build_scalogram

    name = "moment_matching"
    folder = out_folder(ctx, name)
    labels = {
        "generated_without_mm": "generated, trained without L_MM",
        "generated_with_mm": "generated, trained with L_MM",
    }
    todo: list[tuple[str, Any, dict[str, Any]]] = []
    if ctx.model:
        model, info, dataset = model_for(ctx, name, PIANO, any_dataset=True)
        kind = str(model.config.loss.kind)
        todo.append(("generated_with_mm" if "mm" in kind else "generated_without_mm", model, info))
    else:
        dataset = PIANO
        for loss_kind, key in (("inv", "generated_without_mm"), ("inv+mm", "generated_with_mm")):
            todo.append((key, *trained_model(ctx, PIANO, loss_kind)))
    size = data_size(ctx, todo[0][1])
    train, test = load_split(ctx, dataset, "train", size), load_split(ctx, dataset, "test", size)
    d: dict[str, float] = {}
    runs = {}
    sk = None
    for key, model, info in todo:
        runs[key] = info
        sk = build_scalogram(model.config).eval()
        frames = max(1, train.audio.shape[1] // model.hop)
        gen = generated(model, max(ctx.n_samples, min(test.audio.shape[0], 64)), frames, ctx.seed)
        d[key] = ev.moment_matching_distance(gen, train.audio, sk)
    assert sk is not None
    d["test"] = ev.moment_matching_distance(test.audio, train.audio, sk)
    rows: list[list[object]] = [
        [labels[key], d[key], ev.PAPER_MM_DISTANCE[key]] for key, _, _ in todo
    ]
    rows.append(["test set", d["test"], ev.PAPER_MM_DISTANCE["test"]])
    section = report.Section("Moment-matching distance to the training set").add(
        report.Table(
            ["set", "distance (eq. 6)", "paper"],
            rows,
            caption=f"{dataset}: sum_c ((m_c - mu_c)/n_c)^2 on S_K; mu and n (mean |S_K|) "
            "from the training set.",
        )
    )
    numbers = {"distance": d, "paper": ev.PAPER_MM_DISTANCE, "runs": runs, "dataset": dataset}
    return finish(ctx, name, folder, numbers, section)
