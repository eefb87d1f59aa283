"""The paper's Section 5, one function per experiment, plus :func:`reproduce` and :func:`demo`.

Every experiment writes ``results/<experiment>/<preset>-<timestamp>/`` with

- ``results.json``: every number, the configs, checkpoint and data fingerprints;
- WAV files of every sound it shows, PNG figures in the paper's style;
- ``report.html``: a self-contained page (tables, figures, audio players).

Trainings go through :func:`mmsin.training.train` with a named preset (``small``/``paper``).
A run is named after its preset, data set, loss and a hash of its whole configuration, so an
existing run with the same configuration is reused instead of retrained.

Experiments (paper section in brackets):

- ``reconstruction`` (5.2, Fig. 4): G(L S_J x) on test notes and piano extracts.
- ``table1`` (5.2, Table 1): mse / inv / inv+mm on the piano set, eq. (5) train/test errors.
- ``generation`` (5.2, Fig. 5): samples from white noise and the spread sigma.
- ``moment_matching`` (5.2): eq. (6) distances to the training set.
- ``pitch_interpolation`` (5.3, Fig. 6): G((Z1+Z2)/2) for notes 5 semitones apart.
- ``waveform_interpolation`` (5.4, Fig. 7): G((Z1+Z2)/2) vs (G(Z1)+G(Z2))/2.

``Context.model`` names models to use instead of training (``--model notes|piano|PATH``): the
shipped pretrained models or any checkpoint; each is matched to the data set it was trained on
(``config.data.source``). :func:`reproduce` also reruns the inference-only experiments of
:data:`PRETRAINED_EXPERIMENTS` with the shipped pretrained models, labelled apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsin import evaluation as ev
from mmsin import paths, plots, report
from mmsin.io import save_audio

log = logging.getLogger(__name__)

NOTES = "nsynth-like"
PIANO = "beethoven-like"

#: How the shipped models were made (src/mmsin/pretrained/README.md); the packed files keep
#: no step count, so the provenance is stated here.
PRETRAINED_LABEL = (
    "shipped pretrained models, trained on an H100 for ~6k steps "
    "(notes 6,360, piano 5,400; batch 32)"
)
#: Experiments rerun with the shipped models by :func:`reproduce` (inference only).
PRETRAINED_EXPERIMENTS = (
    "reconstruction",
    "pitch_interpolation",
    "generation",
    "waveform_interpolation",
)


# ---------------------------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------------------------


@dataclass
class Context:
    """Options shared by every experiment of one invocation."""

    preset: str = "small"
    results_root: Path | None = None
    progress: bool = True
    seed: int = 0
    #: overrides ``section.field=value`` applied to every training config
    overrides: tuple[str, ...] = ()
    #: fewer examples / pairs / samples (tests and the demo)
    n_examples: int = 4
    n_pairs: int = 12
    n_samples: int = 6
    crepe_model: str = "tiny"
    #: test notes whose reconstruction is pitch-tracked
    n_f0: int = 24
    #: runs trained so far in this invocation (name -> checkpoint path)
    runs: dict[str, str] = field(default_factory=dict)
    #: clips loaded so far ((data set, split, size) -> mmsin.data.Clips)
    clips: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    #: models loaded so far (run name -> (MMSIN, description))
    models: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)
    #: S_J of whole splits ((data set, split, size, scattering config) -> Tensor)
    scattering: dict[tuple[str, str, str, str], Any] = field(default_factory=dict)
    #: wall time in seconds of each stage (trainings, experiments)
    times: dict[str, float] = field(default_factory=dict)
    #: models to use instead of training: pretrained names ("notes", "piano") or paths
    model: tuple[str, ...] = ()
    #: the given models, loaded (data set -> (MMSIN, description))
    given: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)
    #: optimiser steps of each run used in this invocation (run name -> global step)
    steps: dict[str, int] = field(default_factory=dict)
    #: runs trained (not reused) in this invocation
    trained_now: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        if self.progress:
            print(f"[mmsin] {msg}", flush=True)


@dataclass
class Outcome:
    """What an experiment produced."""

    name: str
    folder: Path
    numbers: dict[str, Any]
    section: report.Section

    @property
    def report_path(self) -> Path:
        return self.folder / "report.html"


def _out_folder(ctx: Context, name: str) -> Path:
    root = ctx.results_root if ctx.results_root is not None else paths.results_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = root / name / f"{ctx.preset}-{stamp}"
    k = 1
    while folder.exists():
        k += 1
        folder = root / name / f"{ctx.preset}-{stamp}-{k}"
    folder.mkdir(parents=True)
    return folder


def _file_fingerprint(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:20]


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, float) and v != v:
        return None  # JSON has no NaN
    if isinstance(v, Path):
        return str(v)
    return v


def _finish(
    ctx: Context, name: str, folder: Path, numbers: dict[str, Any], section: report.Section
) -> Outcome:
    numbers = {"experiment": name, "preset": ctx.preset, **numbers}
    (folder / "results.json").write_text(json.dumps(_jsonable(numbers), indent=2) + "\n")
    report.write_report(
        folder / "report.html",
        f"MM-SIN: {name}",
        [section],
        subtitle=f"preset {ctx.preset}; {folder}",
    )
    ctx.say(f"{name}: wrote {folder / 'report.html'}")
    return Outcome(name, folder, numbers, section)


def _wav(folder: Path, name: str, x: Any, fs: int) -> Path:
    y = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    return save_audio(folder / "audio" / f"{name}.wav", y, fs)


# ---------------------------------------------------------------------------------------------
# Data and trained models
# ---------------------------------------------------------------------------------------------


def _size(ctx: Context) -> str:
    return "full" if ctx.preset == "paper" else "small"


def build_lookalike(ctx: Context, dataset: str, size: str | None = None) -> None:
    """Render a look-alike data set (default: the preset's size) unless it is already built."""
    from mmsin import paths
    from mmsin.data.build import build

    size = size or _size(ctx)
    if (paths.data_dir() / f"{dataset}-{size}" / "build.json").is_file():
        return
    ctx.say(f"building {dataset} ({size})")
    build(dataset, size, progress=ctx.progress)


def load_split(ctx: Context, dataset: str, split: str, size: str | None = None) -> Any:
    """Clips of a data set (kept for the invocation); look-alikes are built first if needed.

    ``size`` (look-alikes only) defaults to the preset's; a given model passes its own.
    """
    from mmsin import data

    size = size or _size(ctx)
    key = (dataset, split, size)
    if key not in ctx.clips:
        if dataset in data.LOOKALIKES:
            build_lookalike(ctx, dataset, size)
            ctx.clips[key] = data.load_clips(dataset, split, size=size)
        else:
            ctx.clips[key] = data.load_clips(dataset, split)
    return ctx.clips[key]


def run_config(ctx: Context, dataset: str, loss: str) -> Any:
    """The training configuration of ``ctx.preset`` for a data set and a loss kind."""
    from mmsin import config

    cfg = config.preset(ctx.preset)
    cfg.data.source = dataset
    cfg.data.size = _size(ctx)
    cfg.loss.kind = loss
    cfg = config.override(cfg, list(ctx.overrides))
    body = dict(cfg.to_dict())
    body.pop("name", None)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    short = {"nsynth-like": "notes", "beethoven-like": "piano"}.get(dataset, Path(dataset).name)
    cfg.name = f"{ctx.preset}-{short}-{loss.replace('+', '')}-{digest}"
    return cfg.validate()


def trained_model(ctx: Context, dataset: str, loss: str) -> tuple[Any, dict[str, Any]]:
    """Train (or reuse) the model of ``ctx.preset`` on ``dataset`` with ``loss``.

    Returns the loaded :class:`mmsin.model.MMSIN` and a description (run name, checkpoint,
    fingerprints, config) for results.json.
    """
    from mmsin.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from mmsin.model import MMSIN
    from mmsin.training import train

    cfg = run_config(ctx, dataset, loss)
    if cfg.name in ctx.models:
        return ctx.models[cfg.name]
    run_dir = paths.runs_dir() / cfg.name
    ckpt = run_dir / CHECKPOINT_NAME
    done = False
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        done = int(state.get("epoch", 0)) >= cfg.train.epochs
    if done:
        ctx.say(f"reusing trained run {run_dir}")
    else:
        ctx.say(f"training {cfg.name} ({loss} on {dataset}, {cfg.train.epochs} epochs)")
        t0 = time.perf_counter()
        train_clips = load_split(ctx, dataset, cfg.data.train_split)
        test_clips = load_split(ctx, dataset, cfg.data.test_split)
        train(
            cfg,
            run_dir,
            train_clips=train_clips,
            test_clips=test_clips,
            resume=ckpt.is_file(),
            progress=ctx.progress,
            tensorboard=False,
        )
        seconds = time.perf_counter() - t0
        ctx.times[f"train {cfg.name}"] = seconds
        ctx.say(f"trained {cfg.name} in {seconds:.0f} s")
        ctx.trained_now.append(cfg.name)
    ctx.steps[cfg.name] = int(load_checkpoint(ckpt).get("global_step", 0))
    model = MMSIN.load(ckpt)
    extra = getattr(model, "_extra", {})
    info = {
        "origin": "trained" if cfg.name in ctx.trained_now else "reused",
        "steps": ctx.steps[cfg.name],
        "run": cfg.name,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": _file_fingerprint(ckpt),
        "data_fingerprint": extra.get("data_fingerprint", ""),
        "config": cfg.to_dict(),
    }
    ctx.runs[cfg.name] = str(ckpt)
    ctx.models[cfg.name] = (model, info)
    return model, info


def given_models(ctx: Context) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The models of ``ctx.model`` loaded and keyed by the data set they were trained on.

    Raises
    ------
    FileNotFoundError
        A name is neither a shipped pretrained model nor a checkpoint / run folder.
    ValueError
        Two given models were trained on the same data set.
    """
    from mmsin.model import MMSIN

    if ctx.given or not ctx.model:
        return ctx.given
    for spec in ctx.model:
        model = MMSIN.load(spec)
        dataset = str(model.config.data.source)
        if dataset in ctx.given:
            first = ctx.given[dataset][1]["model"]
            raise ValueError(
                f"--model {spec}: {first!r} was also trained on {dataset}; give one per data set"
            )
        extra = getattr(model, "_extra", {})
        info = {
            "origin": "given",
            "model": spec,
            "checkpoint": str(model.source),
            "checkpoint_sha256": _file_fingerprint(str(model.source)),
            "data_fingerprint": extra.get("data_fingerprint", ""),
            "config": model.config.to_dict(),
        }
        ctx.say(f"using model {spec} ({model.source}, trained on {dataset})")
        ctx.given[dataset] = (model, info)
    return ctx.given


def _model_for(
    ctx: Context, experiment: str, dataset: str, *, any_dataset: bool = False
) -> tuple[Any, dict[str, Any], str]:
    """The L_inv + lambda L_MM model an experiment uses, and the data set it runs on.

    With ``ctx.model`` the given model trained on ``dataset`` (or, when ``any_dataset``, on
    any data set: the experiment then runs on that model's own data); otherwise the preset's
    model, trained or reused.
    """
    if not ctx.model:
        model, info = trained_model(ctx, dataset, "inv+mm")
        return model, info, dataset
    given = given_models(ctx)
    if dataset in given:
        return (*given[dataset], dataset)
    if any_dataset and given:
        other = next(iter(given))
        return (*given[other], other)
    raise ValueError(
        f"{experiment} needs a model trained on {dataset}; the given models were trained on "
        f"{', '.join(given)}"
    )


def _data_size(ctx: Context, model: Any) -> str:
    """The data size a model was trained at (look-alikes: 'small' or 'full')."""
    return str(model.config.data.size or _size(ctx))


def _loss_parts(model: Any) -> Any:
    """The eq. (5) loss with the training set's mean |S_K| (saved in the checkpoint)."""
    from mmsin.losses import ReconstructionLoss
    from mmsin.training import build_scalogram

    sk = build_scalogram(model.config).eval()
    stats = getattr(model, "_extra", {}).get("sk_stats")
    if stats is None:
        raise ValueError(f"{model.source}: checkpoint has no S_K statistics (sk_stats)")
    return ReconstructionLoss(sk, stats["mean_abs"])


def _scattering_of(ctx: Context, model: Any, dataset: str, split: str) -> torch.Tensor:
    """S_J of every clip of a split, computed once per invocation (all models share S_J)."""
    size = _data_size(ctx, model)
    key = (dataset, split, size, json.dumps(model.config.to_dict()["scattering"]))
    if key not in ctx.scattering:
        x = load_split(ctx, dataset, split, size).audio
        ctx.scattering[key] = torch.cat(
            [model.encode_scattering(x[i : i + 16]) for i in range(0, x.shape[0], 16)]
        )
    return ctx.scattering[key]


def _reconstruct(
    ctx: Context, model: Any, dataset: str, split: str, batch: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """G(L S_J x) aligned with x for every clip of a split: (reconstruction, matching x).

    L^-1 L is the identity, so this is G(S_J x / norm) (``decode_scattering``); S_J is
    computed once per split and shared by the models of the invocation.
    """
    S = _scattering_of(ctx, model, dataset, split)
    x = load_split(ctx, dataset, split, _data_size(ctx, model)).audio
    outs = [
        model.decode_scattering(S[i : i + batch]).cpu().numpy() for i in range(0, len(S), batch)
    ]
    x_hat = np.concatenate(outs)
    return x_hat, x[:, : x_hat.shape[1]]


# ---------------------------------------------------------------------------------------------
# The experiments
# ---------------------------------------------------------------------------------------------


def reconstruction(ctx: Context) -> Outcome:
    """Fig. 4: reconstructions of test notes and test piano extracts, with metrics."""
    name = "reconstruction"
    folder = _out_folder(ctx, name)
    section = report.Section("Reconstruction (Fig. 4)")
    numbers: dict[str, Any] = {"runs": {}}
    rows = []
    examples = []
    sets = [(NOTES, "notes"), (PIANO, "piano")]
    if ctx.model:  # given models: the data sets they were trained on
        sets = [(d, {NOTES: "notes", PIANO: "piano"}.get(d, d)) for d in given_models(ctx)]
    for dataset, label in sets:
        model, info, _ = _model_for(ctx, name, dataset)
        numbers["runs"][label] = info
        test = load_split(ctx, dataset, "test", _data_size(ctx, model))
        x = test.audio
        x_hat, x_ref = _reconstruct(ctx, model, dataset, "test")
        loss = _loss_parts(model)
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
                    _wav(folder, f"{label}-{i}-original", x_ref[i], model.fs),
                    f"{label} {i}: original",
                ),
                report.Audio(
                    _wav(folder, f"{label}-{i}-reconstruction", x_hat[i], model.fs),
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
    return _finish(ctx, name, folder, numbers, section)


def table1(ctx: Context) -> Outcome:
    """Table 1: three trainings on the piano set, eq. (5) errors and the gap in dB."""
    name = "table1"
    if ctx.model:
        ctx.say("table1 compares three trainings: it trains them and ignores --model")
    folder = _out_folder(ctx, name)
    numbers: dict[str, Any] = {"gap_formula": "10 log10(test / train)", "rows": []}
    rows = []
    for loss_kind, p_train, p_test, p_gap in ev.PAPER_TABLE1:
        model, info = trained_model(ctx, PIANO, loss_kind)
        loss = _loss_parts(model)
        errs = {}
        for split in ("train", "test"):
            x_hat, x_ref = _reconstruct(ctx, model, PIANO, split)
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
    return _finish(ctx, name, folder, numbers, section)


def _generated(model: Any, n: int, frames: int, seed: int) -> np.ndarray:
    return model.generate(frames, batch=n, seed=seed).cpu().numpy()


def generation(ctx: Context) -> Outcome:
    """Fig. 5: samples from white noise; spread sigma for train, test and generated."""
    from mmsin.training import build_scalogram

    name = "generation"
    folder = _out_folder(ctx, name)
    model, info, dataset = _model_for(ctx, name, PIANO, any_dataset=True)
    size = _data_size(ctx, model)
    train, test = load_split(ctx, dataset, "train", size), load_split(ctx, dataset, "test", size)
    frames = max(1, train.audio.shape[1] // model.hop)
    n_gen = max(ctx.n_samples, min(test.audio.shape[0], 64))
    gen = _generated(model, n_gen, frames, ctx.seed)
    sk = build_scalogram(model.config).eval()
    norm = ev.scalogram_normalizer(sk, train.audio)  # the paper's normalised S_K
    sigma = {
        k: ev.spread(ev.time_averaged(sk, v, normalizer=norm))
        for k, v in (("train", train.audio), ("test", test.audio), ("generated", gen))
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
            "normalisation). Our S_K has other channels than the paper's: compare the ratios.",
        ),
        report.Figure(fig, f"Independent samples G(Z), Z white noise, model of {dataset}."),
    )
    for i in range(ctx.n_samples):
        section.add(report.Audio(_wav(folder, f"sample-{i}", gen[i], model.fs), f"sample {i + 1}"))
    numbers = {
        "run": info,
        "dataset": dataset,
        "spread": sigma,
        "paper": ev.PAPER_SPREAD,
        "generated": n_gen,
        "frames": frames,
    }
    return _finish(ctx, name, folder, numbers, section)


def moment_matching(ctx: Context) -> Outcome:
    """Eq. (6) distance to the training set: generated without / with L_MM, and test.

    With a given model (``ctx.model``) only its generated set and the test set are measured,
    on the data set it was trained on (nothing is trained).
    """
    from mmsin.training import build_scalogram

    name = "moment_matching"
    folder = _out_folder(ctx, name)
    labels = {
        "generated_without_mm": "generated, trained without L_MM",
        "generated_with_mm": "generated, trained with L_MM",
    }
    todo: list[tuple[str, Any, dict[str, Any]]] = []
    if ctx.model:
        model, info, dataset = _model_for(ctx, name, PIANO, any_dataset=True)
        kind = str(model.config.loss.kind)
        todo.append(("generated_with_mm" if "mm" in kind else "generated_without_mm", model, info))
    else:
        dataset = PIANO
        for loss_kind, key in (("inv", "generated_without_mm"), ("inv+mm", "generated_with_mm")):
            todo.append((key, *trained_model(ctx, PIANO, loss_kind)))
    size = _data_size(ctx, todo[0][1])
    train, test = load_split(ctx, dataset, "train", size), load_split(ctx, dataset, "test", size)
    d: dict[str, float] = {}
    runs = {}
    sk = None
    for key, model, info in todo:
        runs[key] = info
        sk = build_scalogram(model.config).eval()
        frames = max(1, train.audio.shape[1] // model.hop)
        gen = _generated(model, max(ctx.n_samples, min(test.audio.shape[0], 64)), frames, ctx.seed)
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
    return _finish(ctx, name, folder, numbers, section)


def _nan_last(v: float) -> float:
    """Sort key putting NaN (no voiced frame) after every number."""
    return float("inf") if v != v else v


def _pairs(meta: list[dict[str, Any]], interval: int = 5) -> list[tuple[int, int]]:
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
    """Fig. 6: G((Z1+Z2)/2) of two notes 5 semitones apart has one fundamental in between."""
    name = "pitch_interpolation"
    folder = _out_folder(ctx, name)
    model, info, dataset = _model_for(ctx, name, NOTES, any_dataset=True)
    test = load_split(ctx, dataset, "test", _data_size(ctx, model))
    pairs = _pairs(test.meta)
    if not pairs:
        raise ValueError(f"{dataset}: no test notes of one instrument 5 semitones apart")
    rng = np.random.default_rng(ctx.seed)
    if len(pairs) > ctx.n_pairs:
        pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), ctx.n_pairs, replace=False))]
    fs = model.fs
    rec: dict[str, list[Any]] = {
        "latent_cents": [],
        "latent_single": [],
        "signal_cents": [],
        "signal_single": [],
        "latent_endpoint_cents": [],
        "signal_endpoint_cents": [],
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
        p1, p2 = int(test.meta[i]["pitch"]), int(test.meta[j]["pitch"])
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
            entry[label] = {
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
        if k < ctx.n_examples:
            triples.append((f"{p1}->{p2}", g1, mid, g2))
            for lab, y in (("G(Z1)", g1), ("G(mid)", mid), ("G(Z2)", g2), ("mix", signal_mid)):
                section.add(report.Audio(_wav(folder, f"pair{k}-{lab}", y, fs), f"{k}: {lab}"))

    def share(label: str) -> dict[str, float]:
        """Shares of midpoints with one fundamental / f0 near the intermediate pitch."""
        c = np.abs(np.asarray(rec[f"{label}_cents"], dtype=float))
        e = np.asarray(rec[f"{label}_endpoint_cents"], dtype=float)
        single = np.asarray(rec[f"{label}_single"], dtype=bool)
        # "near" = closer to the intermediate pitch than to either note (+-125 cents of 500)
        near = np.nan_to_num(c, nan=np.inf) < 125
        return {
            "single_fundamental": float(single.mean()) if single.size else float("nan"),
            "near_midpoint": float(near.mean()) if near.size else float("nan"),
            "single_and_near": float((single & near).mean()) if near.size else float("nan"),
            "median_abs_cents": float(np.nanmedian(c)) if c.size else float("nan"),
            "at_an_endpoint": float((np.nan_to_num(e, nan=np.inf) < 50).mean())
            if e.size
            else float("nan"),
        }

    shares = {"latent": share("latent"), "signal": share("signal")}
    summary: dict[str, Any] = {**shares, "pairs": len(pairs)}
    rows: list[list[object]] = [
        [
            lab,
            shares[key]["single_fundamental"],
            shares[key]["near_midpoint"],
            shares[key]["single_and_near"],
            shares[key]["at_an_endpoint"],
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
                "f0 within 125 cents of midpoint",
                "both",
                "f0 within 50 cents of one of the two notes",
                "median |cents|",
            ],
            rows,
            caption=f"{len(pairs)} pairs of test notes of one instrument 5 semitones apart. "
            "f0 by CREPE; one fundamental by the two-pitch salience test.",
        ),
    )
    if triples:
        fig = plots.pitch_interpolation_figure(triples, fs, folder / "fig6.png")
        hist = plots.histogram(
            {"latent": rec["latent_cents"], "signal": rec["signal_cents"]},
            folder / "cents.png",
            xlabel="cents from the intermediate pitch",
        )
        section.blocks.insert(1, report.Figure(fig, "G(Z1) | G((Z1+Z2)/2) | G(Z2)"))
        section.blocks.insert(2, report.Figure(hist, "Distribution of midpoint f0 errors"))
    return _finish(ctx, name, folder, {"run": info, "summary": summary, **rec}, section)


def _latent_pair(model: Any, frames: int, seed: int) -> tuple[np.ndarray, ...]:
    """G(Z1), G(Z2), G((Z1+Z2)/2) for white-noise codes Z1, Z2 (L^-1 warmed up, paper eq. 1)."""
    g = torch.Generator().manual_seed(seed)
    warm = int(model.config.whitening.warmup)
    z = torch.randn(2, model.num_channels, warm + frames, generator=g)
    z = torch.cat([z, 0.5 * (z[:1] + z[1:])])
    S = torch.relu(model.var.unwhiten(z))[..., warm:] * model.norm[:, None]
    out = model.decode_scattering(S, aligned=False).cpu().numpy()
    return out[0], out[1], out[2]


def waveform_interpolation(ctx: Context) -> Outcome:
    """Fig. 7: latent interpolation keeps silences and notes, the signal mix does not."""
    name = "waveform_interpolation"
    folder = _out_folder(ctx, name)
    model, info, dataset = _model_for(ctx, name, PIANO, any_dataset=True)
    train = load_split(ctx, dataset, "train", _data_size(ctx, model))
    frames = max(1, train.audio.shape[1] // model.hop)
    fs = model.fs
    metrics: dict[str, list[float]] = {}
    section = report.Section("Waveform interpolation (Fig. 7)")
    for k in range(ctx.n_pairs):
        g1, g2, latent = _latent_pair(model, frames, ctx.seed + k)
        signal = 0.5 * (g1 + g2)
        for label, y in (("G(Z1)", g1), ("G(Z2)", g2), ("latent", latent), ("signal", signal)):
            for metric, fn in (
                ("silent", ev.silent_frames),
                ("flatness", ev.spectral_flatness),
                ("partials", lambda v: ev.simultaneous_partials(v, fs)),
            ):
                metrics.setdefault(f"{label}:{metric}", []).append(fn(y))
        if k == 0:
            fig = plots.waveform_interpolation_figure(
                g1, g2, latent, signal, fs, folder / "fig7.png"
            )
            section.add(report.Figure(fig, "Top: G(Z1), G(Z2). Bottom: latent | signal mix."))
            for lab, y in (("G(Z1)", g1), ("G(Z2)", g2), ("latent", latent), ("signal", signal)):
                section.add(report.Audio(_wav(folder, f"pair0-{lab}", y, fs), lab))
    means = {k: float(np.nanmean(v)) for k, v in metrics.items()}
    rows = [
        [lab] + [means[f"{lab}:{m}"] for m in ("silent", "flatness", "partials")]
        for lab in ("G(Z1)", "G(Z2)", "latent", "signal")
    ]
    section.blocks.insert(
        0,
        report.Table(
            ["signal", "silent frames", "spectral flatness", "simultaneous partials"],
            rows,
            caption=f"Means over {ctx.n_pairs} generated pairs. The paper's claim: the latent "
            "midpoint keeps silences and separate notes where the signal mix fills them in.",
        ),
    )
    numbers = {"run": info, "dataset": dataset, "means": means, "per_pair": metrics}
    return _finish(ctx, name, folder, numbers, section)


def scattering_overview(ctx: Context) -> Outcome:
    """A real instrument note, its scalogram S_K and its scattering S_J (the embedding)."""
    from mmsin.scattering import Scalogram, TimeFrequencyScattering

    name = "scattering"
    folder = _out_folder(ctx, name)
    clips = load_split(ctx, NOTES, "test")
    idx = 0
    for i, m in enumerate(clips.meta):
        if 55 <= int(m.get("pitch", 0)) <= 67:
            idx = i
            break
    x = clips.audio[idx]
    fs = int(clips.fs)
    xt = torch.as_tensor(x)[None]
    with torch.no_grad():
        sk_mod = Scalogram(K=5, Q=12, fs=fs)
        sk = sk_mod(xt)[0].numpy()
        sj_mod = TimeFrequencyScattering(J=10 if ctx.preset != "tiny" else 6, fs=fs)
        sj = sj_mod(xt)[0].numpy()
    label = clips.meta[idx].get("name", "note")
    f1 = plots.scattering_figure(
        x,
        sk,
        fs,
        folder / "scalogram.png",
        hop=32,
        title=f"{label}: scalogram S_K (2^K = 32)",
        channel_label="S_K channel (high to low frequency)",
    )
    f2 = plots.scattering_figure(
        x,
        sj,
        fs,
        folder / "scattering.png",
        hop=2**10,
        title=f"{label}: time-frequency scattering S_J (2^J = 1024)",
        channel_label="S_J channel",
    )
    section = report.Section("The embedding of a real note").add(
        report.Paragraph(
            f"{label}: {x.size / fs:.1f} s at {fs} Hz; S_K has {sk.shape[0]} "
            f"channels, S_J {sj.shape[0]} channels x {sj.shape[1]} frames."
        ),
        report.Figure(f1, "Scalogram S_K (log scale)"),
        report.Figure(f2, "Scattering S_J (log scale)"),
        report.Audio(_wav(folder, "note", x, fs), label),
    )
    return _finish(
        ctx,
        name,
        folder,
        {"clip": label, "sk_channels": int(sk.shape[0]), "sj_channels": int(sj.shape[0])},
        section,
    )


EXPERIMENTS: dict[str, Callable[[Context], Outcome]] = {
    "reconstruction": reconstruction,
    "table1": table1,
    "generation": generation,
    "moment_matching": moment_matching,
    "pitch_interpolation": pitch_interpolation,
    "waveform_interpolation": waveform_interpolation,
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
        ctx.say(f"model {k}/{len(TRAININGS)}: {loss} on {dataset}")
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
    steps = "; ".join(f"{run} {n} steps" for run, n in ctx.steps.items())
    return f"{head}: {steps}"


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
    ("reconstruction", ("piano", "eq5_error"), "piano: eq. 5 error"),
    ("reconstruction", ("piano", "mr_stft"), "piano: MR-STFT"),
    ("reconstruction", ("piano", "lsd_db"), "piano: LSD (dB)"),
    (
        "pitch_interpolation",
        ("summary", "latent", "single_and_near"),
        "pitch midpoint G((Z1+Z2)/2): one fundamental and within 125 cents",
    ),
    (
        "pitch_interpolation",
        ("summary", "latent", "median_abs_cents"),
        "pitch midpoint G((Z1+Z2)/2): median |cents| from the intermediate pitch",
    ),
    (
        "pitch_interpolation",
        ("summary", "latent", "at_an_endpoint"),
        "pitch midpoint G((Z1+Z2)/2): f0 within 50 cents of one of the two notes",
    ),
    (
        "pitch_interpolation",
        ("summary", "signal", "single_and_near"),
        "pitch midpoint (x1+x2)/2: one fundamental and within 125 cents",
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
    ctx: Context | None = None, names: list[str] | None = None, *, pretrained: bool = True
) -> Path:
    """Run experiments (default: all that the installed modules allow) and write one report.

    When ``pretrained`` and the shipped ``notes``/``piano`` models are installed (and
    ``ctx.model`` is empty), the experiments of :data:`PRETRAINED_EXPERIMENTS` among ``names``
    run a second time with the shipped models (inference only), labelled apart in the report
    and under ``"pretrained"`` in results.json, beside a table comparing the two model sets.

    Returns the path of the combined ``results/reproduce/<preset>-<timestamp>/report.html``.
    """
    ctx = ctx or Context()
    if names is None:
        names = ["scattering"]
        if model_available():
            names += [n for n in EXPERIMENTS if n != "scattering"]
        else:
            ctx.say("model modules not available yet: running the scattering overview only")
    t0 = time.perf_counter()
    outcomes = _run_names(ctx, names)
    label = models_label(ctx)
    extra: list[Outcome] = []
    extra_label = ""
    extra_error = ""
    again = [n for n in names if n in PRETRAINED_EXPERIMENTS]
    if pretrained and again and not ctx.model and pretrained_available():
        pctx = replace(ctx, model=("notes", "piano"), given={}, steps={}, trained_now=[])
        extra_label = PRETRAINED_LABEL
        ctx.say(f"again with the {PRETRAINED_LABEL}")
        try:
            extra = _run_names(pctx, again, stage="pretrained ")
        except Exception as err:  # the trained-now report must still be written
            extra_error = f"{type(err).__name__}: {err}"
            ctx.say(f"pretrained experiments failed: {extra_error}")
    folder = _out_folder(ctx, "reproduce")
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
                caption="Section headings below say which set each experiment used. Set B "
                "has the same paper configuration and the same small data, trained longer.",
            ),
            report.Table(
                ["metric", "A: trained now", "B: shipped pretrained"],
                rows,
                caption="What longer training gives (numbers of the sections below).",
            ),
        )
        if extra_error:
            intro.add(report.Paragraph(f"The pretrained experiments failed: {extra_error}"))
        sections.append(intro)
        for o in outcomes:
            o.section.title += " [A: trained now]" if o.name in again else ""
        for o in extra:
            o.section.title += " [B: shipped pretrained]"
    combined["wall_seconds"] = dict(ctx.times)
    combined["wall_seconds_sum"] = sum(ctx.times.values())
    (folder / "results.json").write_text(json.dumps(_jsonable(combined), indent=2) + "\n")
    timing = report.Section("Wall times").add(
        report.Table(
            ["stage", "seconds"],
            [[stage, round(sec, 1)] for stage, sec in ctx.times.items()]
            + [["sum of the stages", round(sum(ctx.times.values()), 1)]],
            caption="Wall-clock seconds of each stage of this invocation (trainings that "
            "were reused from an earlier run are not listed).",
        )
    )
    page = report.write_report(
        folder / "report.html",
        "MM-SIN: the paper's Section 5 reproduced",
        sections + [o.section for o in outcomes + extra] + [timing],
        subtitle=f"preset {ctx.preset}; {time.perf_counter() - t0:.0f} s; models: {label}"
        + (f"; and the {extra_label}" if extra else ""),
    )
    ctx.say(f"report: {page}")
    return page


def demo(ctx: Context | None = None, *, pretrained: bool = True) -> Path:
    """The whole story at small scale: data, models, every experiment, one report.

    ``pretrained``: also run the inference experiments with the shipped models (see
    :func:`reproduce`).
    """
    ctx = ctx or Context(preset="small", n_examples=2, n_pairs=8, n_samples=4)
    from mmsin import data

    t0 = time.perf_counter()
    for kind in data.LOOKALIKES:
        t1 = time.perf_counter()
        build_lookalike(ctx, kind)
        ctx.times[f"data {kind}"] = time.perf_counter() - t1
    if model_available():
        train_all(ctx)
    page = reproduce(ctx, pretrained=pretrained)
    ctx.say(f"demo done in {time.perf_counter() - t0:.0f} s")
    return page
