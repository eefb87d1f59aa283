"""Paper section 5.3, Fig. 6: G((Z1+Z2)/2) of two notes 5 semitones apart has one fundamental
in between, where the signal mix (x1+x2)/2 has both.

Pairs of held-out notes of one instrument and velocity :data:`INTERVALS` semitones apart; each
midpoint is classified (:func:`classify_midpoint`) as ``intermediate`` (one fundamental, nearer
the intermediate pitch than to either note), ``one note`` (f0 at one of the two notes),
``chord`` (both notes' fundamentals present) or ``elsewhere``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmsin import evaluation as ev
from mmsin import plots, report
from mmsin.experiments.shared import (
    NOTES,
    Context,
    Outcome,
    data_size,
    finish,
    heldout_split,
    load_split,
    model_for,
    out_folder,
    wav,
)

__all__ = ["CLASSES", "INTERVALS", "classify_midpoint", "note_pairs", "pitch_interpolation"]

#: Semitones between the two notes of a pair (the paper's Fig. 6: 5).
INTERVALS = (1, 3, 5, 7)
#: The classes of a midpoint, in table order.
CLASSES = ("intermediate", "one note", "chord", "elsewhere")


def _tolerances(interval: int) -> tuple[float, float]:
    """(cents around the intermediate pitch, cents around either note) for a pair ``interval``
    semitones apart: a quarter of the interval each way (125 cents of 500 for a fourth), the
    second at most 50 cents."""
    quarter = 25.0 * abs(interval)
    return quarter, min(50.0, quarter)


def classify_midpoint(
    f0: float, fundamentals: list[float] | tuple[float, ...], single: bool, p1: float, p2: float
) -> str:
    """What a midpoint sounds like, from its f0 (CREPE, Hz), the fundamentals found by the
    two-pitch salience test and whether it found only one.

    ``chord``: two fundamentals or more, one within the note tolerance of each note;
    ``intermediate``: one fundamental and f0 within a quarter of the interval of the
    intermediate pitch (p1 + p2) / 2; ``one note``: f0 within the note tolerance of p1 or p2
    (:func:`_tolerances`); ``elsewhere``: none of these (or no f0).
    """
    near_mid, near_note = _tolerances(round(p2 - p1))
    found = [float(f) for f in fundamentals if f > 0]

    def near(f: float, p: float) -> bool:
        return abs(float(ev.cents(f, ev.midi_to_hz(p)))) < near_note

    if not single and any(near(f, p1) for f in found) and any(near(f, p2) for f in found):
        return "chord"
    if not f0 == f0 or f0 <= 0:  # NaN: no voiced frame
        return "elsewhere"
    if single and abs(float(ev.cents(f0, ev.midi_to_hz((p1 + p2) / 2)))) < near_mid:
        return "intermediate"
    if near(f0, p1) or near(f0, p2):
        return "one note"
    return "elsewhere"


def _nan_last(v: float) -> float:
    """Sort key putting NaN (no voiced frame) after every number."""
    return float("inf") if v != v else v


def note_pairs(meta: list[dict[str, Any]], interval: int = 5) -> list[tuple[int, int]]:
    """Index pairs (i, j) of notes of one instrument and velocity, pitch_j = pitch_i + 5."""
    index = {}
    for i, m in enumerate(meta):
        if "pitch" in m:
            index[(m.get("instrument_str"), m.get("velocity"), int(m["pitch"]))] = i
    out = []
    for (inst, vel, p), i in sorted(index.items(), key=lambda kv: kv[1]):
        j = index.get((inst, vel, p + interval))
        if j is not None:
            out.append((i, j))
    return out


def pitch_interpolation(ctx: Context) -> Outcome:
    """Fig. 6: G((Z1+Z2)/2) of two notes 1, 3, 5 and 7 semitones apart, classified."""
    name = "pitch_interpolation"
    folder = out_folder(ctx, name)
    model, info, dataset = model_for(ctx, name, NOTES, any_dataset=True)
    split = heldout_split(ctx, dataset, data_size(ctx, model))
    test = load_split(ctx, dataset, split, data_size(ctx, model))
    rng = np.random.default_rng(ctx.seed)
    pairs: list[tuple[int, int]] = []
    for interval in INTERVALS:
        found = note_pairs(test.meta, interval)
        if len(found) > ctx.n_pairs:
            found = [found[k] for k in sorted(rng.choice(len(found), ctx.n_pairs, replace=False))]
        pairs += found
    if not pairs:
        raise ValueError(
            f"{dataset}: no {split} notes of one instrument "
            f"{', '.join(map(str, INTERVALS))} semitones apart"
        )
    fs = model.fs
    # examples shown: the first pair of each interval, the paper's fourth first
    firsts: dict[int, int] = {}
    for k, (i, j) in enumerate(pairs):
        firsts.setdefault(int(test.meta[j]["pitch"]) - int(test.meta[i]["pitch"]), k)
    shown = sorted(firsts.items(), key=lambda kv: (kv[0] != 5, kv[0]))[: ctx.n_examples]
    examples = {k for _, k in shown}
    rec: dict[str, list[Any]] = {
        "latent_cents": [],
        "latent_single": [],
        "signal_cents": [],
        "signal_single": [],
        "latent_endpoint_cents": [],
        "signal_endpoint_cents": [],
        "latent_grid": [],
        "latent_class": [],
        "signal_class": [],
        "intervals": [],
        "pairs": [],
    }
    triples = []
    section = report.Section("Pitch interpolation (Fig. 6)")
    for k, (i, j) in enumerate(pairs):
        x = test.audio[[i, j]]
        z = model.encode(x)
        g = model.decode(torch.cat([z, 0.5 * (z[:1] + z[1:])])).cpu().numpy()
        g1, g2, mid = g[0], g[1], g[2]
        signal_mid = 0.5 * (x[0] + x[1])[: g.shape[1]]
        rec["latent_grid"].append(float(ev.grid_share_or_nan(mid, fs)[0]))
        p1, p2 = int(test.meta[i]["pitch"]), int(test.meta[j]["pitch"])
        rec["intervals"].append(p2 - p1)
        f_expected = ev.midi_to_hz((p1 + p2) / 2)
        band = (ev.midi_to_hz(p1 - 3), ev.midi_to_hz(p2 + 3))
        entry: dict[str, Any] = {
            "pitches": [p1, p2],
            "names": [test.meta[i].get("name"), test.meta[j].get("name")],
        }
        for label, y in (("latent", mid), ("signal", signal_mid)):
            f0 = ev.median_f0(y, fs, model=ctx.crepe_model)
            hp = ev.harmonic_pitches(y, fs, fmin=max(float(band[0]) / 2, ev.CREPE_FMIN))
            c = ev.cents(f0, f_expected)
            # distance to the nearer of the two notes: a midpoint that snaps to an endpoint
            # (a fade between two notes, not a new pitch) lands near 0 here
            c_end = min(
                (abs(float(ev.cents(f0, ev.midi_to_hz(p)))) for p in (p1, p2)), key=_nan_last
            )
            rec[f"{label}_endpoint_cents"].append(c_end)
            rec[f"{label}_cents"].append(c)
            rec[f"{label}_single"].append(hp.single)
            kind = classify_midpoint(f0, hp.f0, hp.single, p1, p2)
            rec[f"{label}_class"].append(kind)
            entry[label] = {
                "class": kind,
                "f0": f0,
                "cents_from_midpoint": c,
                "single": hp.single,
                "salience_ratio": hp.ratio,
                "fundamentals": list(hp.f0),
            }
        entry["endpoints_f0"] = [
            ev.median_f0(g1, fs, model=ctx.crepe_model),
            ev.median_f0(g2, fs, model=ctx.crepe_model),
        ]
        rec["pairs"].append(entry)
        if k in examples:
            triples.append((f"{p1}->{p2}", g1, mid, g2))
            for lab, y in (("G(Z1)", g1), ("G(mid)", mid), ("G(Z2)", g2), ("mix", signal_mid)):
                section.add(report.Audio(wav(folder, f"pair{k}-{lab}", y, fs), f"{k}: {lab}"))

    intervals = np.asarray(rec["intervals"])
    tol = np.array([_tolerances(int(k)) for k in intervals]).reshape(-1, 2)

    def share(label: str) -> dict[str, float]:
        """Shares of midpoints with one fundamental / f0 near the intermediate pitch."""
        c = np.abs(np.asarray(rec[f"{label}_cents"], dtype=float))
        e = np.asarray(rec[f"{label}_endpoint_cents"], dtype=float)
        single = np.asarray(rec[f"{label}_single"], dtype=bool)
        # "near" = closer to the intermediate pitch than to either note (a quarter of the
        # interval: +-125 cents of 500 for a fourth)
        near = np.nan_to_num(c, nan=np.inf) < tol[:, 0]
        at_end = np.nan_to_num(e, nan=np.inf) < tol[:, 1]
        return {
            "elsewhere": float((~near & ~at_end).mean()) if near.size else float("nan"),
            "single_fundamental": float(single.mean()) if single.size else float("nan"),
            "near_midpoint": float(near.mean()) if near.size else float("nan"),
            "single_and_near": float((single & near).mean()) if near.size else float("nan"),
            "median_abs_cents": ev.finite_median(c),
            "at_an_endpoint": float(at_end.mean()) if e.size else float("nan"),
        }

    shares = {"latent": share("latent"), "signal": share("signal")}
    by_interval: dict[str, Any] = {}
    for interval in sorted(set(rec["intervals"])):
        sel = intervals == interval
        by_interval[str(interval)] = {"pairs": int(sel.sum())} | {
            label: {
                kind: float(np.mean(np.asarray(rec[f"{label}_class"])[sel] == kind))
                for kind in CLASSES
            }
            for label in ("latent", "signal")
        }
    summary: dict[str, Any] = {
        **shares,
        "by_interval": by_interval,
        "pairs": len(pairs),
        "split": split,
        "latent_grid_median": float(np.median(rec["latent_grid"])),
    }
    rows: list[list[object]] = [
        [
            lab,
            shares[key]["single_fundamental"],
            shares[key]["near_midpoint"],
            shares[key]["single_and_near"],
            shares[key]["at_an_endpoint"],
            shares[key]["elsewhere"],
            shares[key]["median_abs_cents"],
        ]
        for lab, key in (("latent G((Z1+Z2)/2)", "latent"), ("signal (x1+x2)/2", "signal"))
    ]
    section.blocks.insert(
        0,
        report.Table(
            [
                "midpoint",
                "one fundamental",
                "f0 within a quarter of the interval of the midpoint",
                "both",
                "f0 within 50 cents of one of the two notes",
                "elsewhere",
                "median |cents|",
            ],
            rows,
            caption=f"{len(pairs)} pairs of {split} notes of one instrument "
            f"{', '.join(map(str, sorted(set(rec['intervals']))))} semitones apart"
            + (" (instruments never trained on)" if split == "heldout" else "")
            + ". f0 by CREPE; one fundamental by the two-pitch salience test. Latent "
            f"midpoints put a median {summary['latent_grid_median']:.1%} of their energy on "
            "the 64 Hz grid.",
        ),
    )
    class_rows = [
        [f"{k} semitones ({v['pairs']} pairs)", label, *[v[label][kind] for kind in CLASSES]]
        for k, v in by_interval.items()
        for label in ("latent", "signal")
    ]
    section.blocks.insert(
        1,
        report.Table(
            ["pairs", "midpoint", *CLASSES],
            class_rows,
            caption=f"Share of midpoints in each class, by interval ({model_variant(model)} "
            "variant of S_J). latent: G((Z1+Z2)/2); signal: (x1+x2)/2. intermediate: one "
            "fundamental within a quarter of the interval of the intermediate pitch; one note: "
            "f0 within min(50, 25 x interval) cents of one of the notes; chord: both notes' "
            "fundamentals found by the salience test; elsewhere: none of these.",
        ),
    )
    if triples:
        fig = plots.pitch_interpolation_figure(triples, fs, folder / "fig6.png")
        hist = plots.histogram(
            {"latent": rec["latent_cents"], "signal": rec["signal_cents"]},
            folder / "cents.png",
            xlabel="cents from the intermediate pitch",
        )
        section.blocks.insert(2, report.Figure(fig, "G(Z1) | G((Z1+Z2)/2) | G(Z2)"))
        section.blocks.insert(3, report.Figure(hist, "Distribution of midpoint f0 errors"))
    summary["variant"] = model_variant(model)
    return finish(ctx, name, folder, {"run": info, "summary": summary, **rec}, section)


def model_variant(model: Any) -> str:
    """The S_J variant a model encodes with ('paper', 'joint-real', 'time')."""
    return str(model.config.scattering.variant)
