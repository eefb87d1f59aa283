"""The driver: experiments by name, every training, :func:`reproduce` and :func:`demo`.

:func:`reproduce` runs experiments in order and writes one combined report; with the shipped
pretrained models installed it reruns the inference-only experiments of
:data:`PRETRAINED_EXPERIMENTS` with them, labelled apart, beside a table comparing the two
model sets (:data:`COMPARED`, :func:`compare_sets`). :func:`demo` builds the small data sets,
trains every model of :data:`TRAININGS` at demo scale (the shipped preset on the notes, the
paper's literal G on the piano set) and calls :func:`reproduce`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mmsin import config, report
from mmsin.experiments.generation import generation
from mmsin.experiments.moment_matching import moment_matching
from mmsin.experiments.pitch_interpolation import pitch_interpolation
from mmsin.experiments.reconstruction import reconstruction
from mmsin.experiments.scattering_overview import scattering_overview
from mmsin.experiments.shared import (
    NOTES,
    PIANO,
    Context,
    Outcome,
    build_lookalike,
    jsonable,
    out_folder,
    trained_model,
)
from mmsin.experiments.table1 import table1
from mmsin.experiments.transposition import transposition
from mmsin.experiments.waveform_interpolation import waveform_interpolation

__all__ = [
    "COMPARED",
    "DEMO_EPOCHS",
    "DEMO_PRESETS",
    "EXPERIMENTS",
    "PRETRAINED_EXPERIMENTS",
    "PRETRAINED_LABEL",
    "TRAININGS",
    "compare_sets",
    "demo",
    "describe_run",
    "model_available",
    "models_label",
    "pretrained_available",
    "reproduce",
    "run",
    "train_all",
]


#: How the shipped models were made (src/mmsin/pretrained/README.md); the packed files keep
#: no step count, so the provenance is stated here.
PRETRAINED_LABEL = (
    "shipped pretrained models: the pitched preset (partials generator with free frequencies, "
    "what ships), trained on a 2-core CPU on the full look-alikes (notes: 1,561 steps on "
    "nsynth-like full, then 1,546 on its augmented rebuild with guitars, strings and basses, "
    "detuned, half with reverb, then 3,860 with its 2-D network at 16 channels, run with one "
    "amplitude refinement per frame and each falling partial's level corrected for the "
    "encoder's lag; piano: 10,396 "
    "steps on beethoven-like full, L_MM last on real training codes drawn in a learned order "
    "with rests, which it generates from, its whitening fitted on the extracts without their "
    "first frames, the last 904 steps with envelopes inside the frame, its generated frames "
    "refined one gain per frame and given a gain per oscillator fitted to the training set's "
    "moments; batch 16)"
)

#: The demo's scale: epochs of every training it runs (unless ``--set train.epochs=N``), and
#: which preset trains which data set: the preset that ships on the notes, beside the paper's
#: literal generator (``small``) on the piano set, whose three losses make Table 1.
DEMO_EPOCHS = 4
#: Experiments the demo runs with the shipped models only.
DEMO_PRETRAINED_ONLY = ("transposition",)
DEMO_PRESETS = {NOTES: "pitched"}
#: The demo judges every DEMO_REAL_EVERY-th recorded note (8 of 72), the note fidelity of
#: every DEMO_FIDELITY_EVERY-th test and held-out note, and pitch-tracks DEMO_F0 reconstructed
#: test notes.
DEMO_REAL_EVERY = 9
DEMO_FIDELITY_EVERY = 6
DEMO_F0 = 8

#: Experiments rerun with the shipped models by :func:`reproduce` (inference only).
PRETRAINED_EXPERIMENTS = (
    "reconstruction",
    "pitch_interpolation",
    "generation",
    "waveform_interpolation",
    "transposition",
)


EXPERIMENTS: dict[str, Callable[[Context], Outcome]] = {
    "reconstruction": reconstruction,
    "table1": table1,
    "generation": generation,
    "moment_matching": moment_matching,
    "pitch_interpolation": pitch_interpolation,
    "waveform_interpolation": waveform_interpolation,
    "transposition": transposition,
    "scattering": scattering_overview,
}


def run(name: str, ctx: Context | None = None) -> Outcome:
    """Run one experiment by name."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name](ctx or Context())


def model_available() -> bool:
    """Whether the model side (training, losses, model) is importable."""
    try:
        import mmsin.losses
        import mmsin.model
        import mmsin.training  # noqa: F401
    except ImportError:
        return False
    return True


#: The trainings every experiment needs, in the order the demo runs them (data set, loss).
TRAININGS = ((NOTES, "inv+mm"), (PIANO, "mse"), (PIANO, "inv"), (PIANO, "inv+mm"))


def train_all(ctx: Context) -> None:
    """Train (or reuse) every model of :data:`TRAININGS`, printing progress."""
    for k, (dataset, loss) in enumerate(TRAININGS, 1):
        preset = ctx.preset_for(dataset)
        head = HEADS.get(config.preset(preset).generator.head, "")
        ctx.say(f"model {k}/{len(TRAININGS)}: {loss} on {dataset}, {preset} preset ({head})")
        trained_model(ctx, dataset, loss)


def _run_names(ctx: Context, names: list[str], stage: str = "") -> list[Outcome]:
    """Run experiments in order, timing each (``ctx.times['<stage>experiment NAME']``)."""
    outcomes = []
    t0 = time.perf_counter()
    for k, n in enumerate(names, 1):
        ctx.say(
            f"{stage}experiment {k}/{len(names)}: {n} ({time.perf_counter() - t0:.0f} s so far)"
        )
        t1 = time.perf_counter()
        outcomes.append(run(n, ctx))
        ctx.times[f"{stage}experiment {n}"] = time.perf_counter() - t1
    return outcomes


def models_label(ctx: Context) -> str:
    """How the models used by ``ctx`` came about, for report headings and results.json."""
    if ctx.model:
        return "given models: " + ", ".join(ctx.model)
    if not ctx.steps:
        return "no trained model"
    devices = set()
    for _, info in ctx.models.values():
        dev = str(info["config"]["train"]["device"]).split(":")[0]
        if dev == "auto":  # what mmsin.training picks for "auto"
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        devices.add(dev)
    names = {"cpu": "this CPU", "cuda": "this GPU"}
    where = names.get(devices.pop(), "this machine") if len(devices) == 1 else "this machine"
    if all(run in ctx.trained_now for run in ctx.steps):
        head = f"trained now on {where}"
    elif not ctx.trained_now:
        head = "trained earlier (runs reused)"
    else:
        head = f"trained now on {where} or reused"
    steps = "; ".join(describe_run(ctx, run, n) for run, n in ctx.steps.items())
    return f"{head}: {steps}"


#: What each generator head is, for labels.
HEADS = {
    "conv": "the paper's G",
    "oscillators": "oscillator-bank generator",
    "partials": "partials generator",
}


def describe_run(ctx: Context, run: str, steps: int) -> str:
    """``run`` in words: its preset's generator, loss, data and steps."""
    info = ctx.models.get(run, (None, {}))[1]
    cfg = info.get("config") if isinstance(info, dict) else None
    if not cfg or not {"generator", "data", "loss"} <= set(cfg):
        return f"{run} {steps} steps"
    gen, data = cfg["generator"], cfg["data"]
    head = HEADS.get(gen["head"], gen["head"])
    if gen["head"] == "partials":
        head += f", {gen.get('frequencies', 'fixed')} frequencies"
    return (
        f"{run} ({cfg['preset']} preset: {head}; {cfg['loss']['kind']} on {data['source']} "
        f"{data['size']}; {steps} steps)"
    )


def pretrained_available() -> bool:
    """Whether the shipped ``notes`` and ``piano`` pretrained models are installed."""
    try:
        from mmsin.model import pretrained_names
    except ImportError:
        return False
    return {"notes", "piano"} <= set(pretrained_names())


#: (experiment, path into its numbers, row label) of the trained-now vs pretrained table.
COMPARED: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("reconstruction", ("notes", "f0_within_50_cents"), "notes: share of f0 within 50 cents"),
    ("reconstruction", ("notes", "f0_cents_abs_median"), "notes: median |f0 error| (cents)"),
    ("reconstruction", ("notes", "eq5_error"), "notes: eq. 5 error"),
    ("reconstruction", ("notes", "mr_stft"), "notes: MR-STFT"),
    ("reconstruction", ("notes", "lsd_db"), "notes: LSD (dB)"),
    ("reconstruction", ("notes", "grid_share", "6"), "notes: energy on the 64 Hz grid"),
    (
        "reconstruction",
        ("notes held-out", "fidelity", "pitch_kept"),
        "held-out notes: pitch kept (CREPE, 50 cents)",
    ),
    (
        "reconstruction",
        ("notes held-out", "grid_share", "6"),
        "held-out notes: energy on the 64 Hz grid",
    ),
    ("reconstruction", ("notes held-out", "fidelity", "hnr_db_median"), "held-out notes: HNR dB"),
    ("reconstruction", ("notes held-out", "lsd_db"), "held-out notes: LSD (dB)"),
    ("reconstruction", ("piano", "eq5_error"), "piano: eq. 5 error"),
    ("reconstruction", ("piano", "mr_stft"), "piano: MR-STFT"),
    ("reconstruction", ("piano", "lsd_db"), "piano: LSD (dB)"),
    (
        "pitch_interpolation",
        ("summary", "latent", "single_and_near"),
        "pitch midpoint G((Z1+Z2)/2): one fundamental near the intermediate pitch (all intervals)",
    ),
    (
        "pitch_interpolation",
        ("summary", "latent", "median_abs_cents"),
        "pitch midpoint G((Z1+Z2)/2): median |cents| from the intermediate pitch",
    ),
    (
        "pitch_interpolation",
        ("summary", "latent", "at_an_endpoint"),
        "pitch midpoint G((Z1+Z2)/2): f0 at one of the two notes",
    ),
    (
        "pitch_interpolation",
        ("summary", "signal", "single_and_near"),
        "pitch midpoint (x1+x2)/2: one fundamental near the intermediate pitch (all intervals)",
    ),
    ("generation", ("grid_share_64hz", "generated"), "generation: energy on the 64 Hz grid"),
    (
        "pitch_interpolation",
        ("summary", "by_interval", "1", "latent", "intermediate"),
        "pitch midpoint G((Z1+Z2)/2), 1 semitone apart: at the intermediate pitch",
    ),
    (
        "pitch_interpolation",
        ("summary", "by_interval", "5", "latent", "chord"),
        "pitch midpoint G((Z1+Z2)/2), 5 semitones apart: a chord of the two notes",
    ),
    (
        "pitch_interpolation",
        ("summary", "latent", "elsewhere"),
        "pitch midpoint G((Z1+Z2)/2): neither intermediate nor one of the notes",
    ),
    ("generation", ("spread", "generated"), "generation: spread sigma of generated"),
    ("generation", ("spread", "train"), "generation: spread sigma of train"),
    ("waveform_interpolation", ("means", "latent:silent"), "waveform: latent silent frames"),
    ("waveform_interpolation", ("means", "signal:silent"), "waveform: signal-mix silent frames"),
    ("waveform_interpolation", ("means", "latent:flatness"), "waveform: latent flatness"),
    ("waveform_interpolation", ("means", "signal:flatness"), "waveform: signal-mix flatness"),
    ("waveform_interpolation", ("means", "latent:partials"), "waveform: latent partials"),
    ("waveform_interpolation", ("means", "signal:partials"), "waveform: signal-mix partials"),
)


def _lookup(numbers: dict[str, Any], path: tuple[str, ...]) -> Any:
    v: Any = numbers
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def compare_sets(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Rows ``[label, value in a, value in b]`` of :data:`COMPARED` (experiment -> numbers)."""
    rows = []
    for exp, path, label in COMPARED:
        va = _lookup(a.get(exp, {}), path)
        vb = _lookup(b.get(exp, {}), path)
        if va is not None or vb is not None:
            rows.append([label, va, vb])
    return rows


def reproduce(
    ctx: Context | None = None,
    names: list[str] | None = None,
    *,
    pretrained: bool = True,
    pretrained_only: tuple[str, ...] = (),
) -> Path:
    """Run experiments (default: all that the installed modules allow) and write one report.

    When ``pretrained`` and the shipped ``notes``/``piano`` models are installed (and
    ``ctx.model`` is empty), the experiments of :data:`PRETRAINED_EXPERIMENTS` among ``names``
    run a second time with the shipped models (inference only), labelled apart in the report
    and under ``"pretrained"`` in results.json, beside a table comparing the two model sets.

    ``pretrained_only``: experiments of ``names`` run with the shipped models only (the demo's
    transposition: its demo-scale model adds nothing the shipped one does not show).

    Returns the path of the combined ``results/reproduce/<preset>-<timestamp>/report.html``.
    """
    ctx = ctx or Context()
    if names is None:
        names = ["scattering"]
        if model_available():
            names += [n for n in EXPERIMENTS if n != "scattering"]
        else:
            ctx.say("model modules not available yet: running the scattering overview only")
    if ctx.started is None:
        ctx.started = time.perf_counter()
    outcomes = _run_names(ctx, [n for n in names if n not in pretrained_only])
    label = models_label(ctx)
    extra: list[Outcome] = []
    extra_label = ""
    extra_error = ""
    again = [n for n in names if n in PRETRAINED_EXPERIMENTS]
    if not (pretrained and not ctx.model and pretrained_available()):
        again = []  # nothing runs with the shipped models
    if again:
        pctx = replace(ctx, model=("notes", "piano"), given={}, steps={}, trained_now=[])
        extra_label = PRETRAINED_LABEL
        ctx.say(f"again with the {PRETRAINED_LABEL}")
        try:
            extra = _run_names(pctx, again, stage="pretrained ")
        except Exception as err:  # the trained-now report must still be written
            extra_error = f"{type(err).__name__}: {err}"
            ctx.say(f"pretrained experiments failed: {extra_error}")
    folder = out_folder(ctx, "reproduce")
    combined: dict[str, Any] = {o.name: {"folder": str(o.folder), **o.numbers} for o in outcomes}
    combined["models"] = label
    sections: list[report.Section] = []
    if extra or extra_error:
        mine = {o.name: o.numbers for o in outcomes}
        theirs = {o.name: o.numbers for o in extra}
        rows = compare_sets(mine, theirs)
        combined["pretrained"] = {
            "models": extra_label,
            **{o.name: {"folder": str(o.folder), **o.numbers} for o in extra},
        }
        if extra_error:
            combined["pretrained"]["error"] = extra_error
        combined["comparison"] = [
            {"metric": r[0], "trained_now": r[1], "pretrained": r[2]} for r in rows
        ]
        intro = report.Section("Two model sets").add(
            report.Table(
                ["set", "models"],
                [["A", label], ["B", extra_label]],
                caption="Section headings below say which set each experiment used. The "
                "two sets differ in generator, data and training length: A is trained now, at "
                "demo scale on the small embedded sets; B is what ships.",
            ),
            report.Table(
                ["metric", "A: trained now", "B: shipped pretrained"],
                rows,
                caption="The key numbers of the sections below, side by side.",
            ),
        )
        if extra_error:
            intro.add(report.Paragraph(f"The pretrained experiments failed: {extra_error}"))
        sections.append(intro)
        for o in outcomes:
            o.section.title += " [A: trained now]" if o.name in again else ""
        for o in extra:
            o.section.title += " [B: shipped pretrained]"
    wall = time.perf_counter() - ctx.started
    combined["wall_seconds"] = dict(ctx.times)
    combined["wall_seconds_sum"] = sum(ctx.times.values())
    combined["wall_seconds_total"] = wall
    (folder / "results.json").write_text(json.dumps(jsonable(combined), indent=2) + "\n")
    timing = report.Section("Wall times").add(
        report.Table(
            ["stage", "seconds"],
            [[stage, round(sec, 1)] for stage, sec in ctx.times.items()]
            + [["sum of the stages", round(sum(ctx.times.values()), 1)]]
            + [["whole run (wall clock)", round(wall, 1)]],
            caption="Wall-clock seconds of each stage of this invocation (trainings that "
            "were reused from an earlier run are not listed), and of the whole run.",
        )
    )
    page = report.write_report(
        folder / "report.html",
        "MM-SIN: the paper's Section 5 reproduced",
        sections + [o.section for o in outcomes + extra] + [timing],
        subtitle=f"preset {ctx.preset}; wall time {wall:.0f} s; models: {label}"
        + (f"; and the {extra_label}" if extra else ""),
    )
    ctx.say(f"report: {page}")
    return page


def demo(ctx: Context | None = None, *, pretrained: bool = True) -> Path:
    """The whole story at small scale: data, models, every experiment, one report.

    With the ``small`` preset (the default) the notes model is trained with the ``pitched``
    preset, what ships (:data:`DEMO_PRESETS`), and the piano models with the paper's literal G;
    every training runs :data:`DEMO_EPOCHS` epochs unless ``ctx.overrides`` sets
    ``train.epochs``; real recordings and test notes are judged on a subset.

    ``pretrained``: also run the inference experiments with the shipped models (see
    :func:`reproduce`).
    """
    ctx = ctx or Context(preset="small", n_examples=2, n_pairs=2, n_samples=4)
    if ctx.eval_size is None and ctx.preset != "paper":
        ctx.eval_size = "small"  # the shipped models too: never build the full sets here
    if ctx.preset == "small":
        ctx.presets = {**DEMO_PRESETS, **ctx.presets}
        ctx.real_every = DEMO_REAL_EVERY if ctx.real_every else 0
        ctx.n_f0 = min(ctx.n_f0, DEMO_F0)
        ctx.fidelity_every = max(ctx.fidelity_every, DEMO_FIDELITY_EVERY)
    if not any(o.split("=")[0].strip() == "train.epochs" for o in ctx.overrides):
        ctx.overrides = (*ctx.overrides, f"train.epochs={DEMO_EPOCHS}")
    from mmsin import data

    t0 = time.perf_counter()
    if ctx.started is None:
        ctx.started = t0
    for kind in data.LOOKALIKES:
        t1 = time.perf_counter()
        build_lookalike(ctx, kind)
        ctx.times[f"data {kind}"] = time.perf_counter() - t1
    if model_available():
        train_all(ctx)
    page = reproduce(ctx, pretrained=pretrained, pretrained_only=DEMO_PRETRAINED_ONLY)
    ctx.say(f"demo done in {time.perf_counter() - t0:.0f} s")
    return page
