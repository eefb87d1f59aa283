"""Paper section 5.2, Table 1: mse / inv / inv+mm on the piano set, eq. (5) errors and the gap."""

from __future__ import annotations

from typing import Any

from mmsin import evaluation as ev
from mmsin import report
from mmsin.experiments.shared import (
    PIANO,
    Context,
    Outcome,
    finish,
    given_by_loss,
    loss_parts,
    out_folder,
    reconstruct,
    trained_model,
)

__all__ = ["table1"]


def table1(ctx: Context) -> Outcome:
    """Table 1: three trainings on the piano set, eq. (5) errors and the gap in dB."""
    name = "table1"
    given = _given_by_loss(ctx) if ctx.model else {}
    folder = out_folder(ctx, name)
    numbers: dict[str, Any] = {"gap_formula": "10 log10(test / train)", "rows": []}
    rows = []
    for loss_kind, p_train, p_test, p_gap in ev.PAPER_TABLE1:
        model, info = given[loss_kind] if given else trained_model(ctx, PIANO, loss_kind)
        loss = loss_parts(model)
        errs = {}
        for split in ("train", "test"):
            x_hat, x_ref = reconstruct(ctx, model, PIANO, split)
            errs[split] = ev.perceptual_error(x_hat, x_ref, loss)
        gap = ev.gap_db(errs["test"], errs["train"])
        numbers["rows"].append(
            {
                "loss": loss_kind,
                "train": errs["train"],
                "test": errs["test"],
                "gap_db": gap,
                "paper": [p_train, p_test, p_gap],
                "run": info,
            }
        )
        rows.append([loss_kind, errs["train"], p_train, errs["test"], p_test, gap, p_gap])
    section = report.Section("Table 1: reconstruction error on the piano set").add(
        report.Table(
            ["loss", "train", "paper", "test", "paper", "gap (dB)", "paper"],
            rows,
            caption="Error in the perceptual metric of eq. (5); gap = 10 log10(test/"
            "train), the formula that reproduces the paper's gaps from its errors.",
        ),
        report.Paragraph(
            "Expected shape: the S_K losses beat MSE on both sets; the moment-"
            "matching term costs a little on train, helps on test, shrinks the gap."
        ),
    )
    return finish(ctx, name, folder, numbers, section)


def _given_by_loss(ctx: Context) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The models of ``--model`` trained on the piano set, keyed by their loss kind, when they
    are one per loss of Table 1 (e.g. the shipped ``piano-mse``, ``piano-inv`` and ``piano``);
    otherwise {} (the three models are trained, as without ``--model``).

    Raises ValueError when two given piano models share a loss.
    """
    kinds = sorted(row[0] for row in ev.PAPER_TABLE1)
    out = given_by_loss(ctx, PIANO)
    if sorted(out) != kinds:
        ctx.say(
            f"table1 needs one {PIANO} model per loss ({', '.join(kinds)}); given: "
            f"{', '.join(sorted(out)) or 'none'}. Training the three instead"
        )
        return {}
    for kind, (_, info) in out.items():
        ctx.say(f"table1 {kind}: model {info['model']} ({info['checkpoint']})")
    return out
