"""Shared plumbing of the experiments: options, output folders, results, data and models.

- :class:`Context` (options and what one invocation has loaded or trained so far) and
  :class:`Outcome` (what an experiment produced);
- output: :func:`out_folder` (``results/<experiment>/<preset>-<timestamp>/``), :func:`finish`
  (``results.json`` and ``report.html``), :func:`wav`, :func:`jsonable`;
- data: :func:`build_lookalike`, :func:`load_split` (clips kept for the invocation);
- models: :func:`run_config` (a run named by a hash of its whole configuration),
  :func:`trained_model` (train or reuse), :func:`given_models` (``--model``),
  :func:`model_for` (which model an experiment uses), :func:`reconstruct` (G(L S_J x) of a split,
  S_J shared by the models), :func:`generated`, :func:`loss_parts` (eq. 5's loss).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsin import paths, report
from mmsin.io import save_audio

__all__ = [
    "NOTES",
    "PIANO",
    "Context",
    "Outcome",
    "build_lookalike",
    "data_size",
    "finish",
    "generated",
    "given_models",
    "jsonable",
    "load_split",
    "loss_parts",
    "model_for",
    "original_f0",
    "out_folder",
    "reconstruct",
    "run_config",
    "trained_model",
    "wav",
]

NOTES = "nsynth-like"
PIANO = "beethoven-like"


@dataclass
class Context:
    """Options shared by every experiment of one invocation."""

    preset: str = "small"
    #: the preset of one data set's trainings where it is not ``preset`` (the demo trains
    #: nsynth-like with ``pitched``, what ships, beside the paper's literal G on the piano set)
    presets: dict[str, str] = field(default_factory=dict)
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
    #: the reconstruction experiment judges every real_every-th real recording (MIDI 24-95 by
    #: semitone: 3 gives 24 of 72 notes; CREPE costs ~2 s a note on a CPU); 0: none
    real_every: int = 3
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
    #: look-alike size given models are evaluated on (None: the size each was trained on; the
    #: demo: "small", so that it never builds the full sets)
    eval_size: str | None = None
    #: the reconstruction experiment judges note fidelity (CREPE, HNR) on every
    #: fidelity_every-th test and held-out note (the demo: a representative subset)
    fidelity_every: int = 1
    #: numbers of the original clips, computed once per invocation and shared by every model
    #: judged on them (key: what, data set, split, size, clip, length, tracker)
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    #: ``time.perf_counter()`` when the invocation began (the demo: before building data and
    #: training); the combined report gives the wall time since then
    started: float | None = None

    def preset_for(self, dataset: str) -> str:
        """The preset that trains models on ``dataset`` in this invocation."""
        return self.presets.get(dataset, self.preset)

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


def out_folder(ctx: Context, name: str) -> Path:
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


def jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, float) and v != v:
        return None  # JSON has no NaN
    if isinstance(v, Path):
        return str(v)
    return v


def finish(
    ctx: Context, name: str, folder: Path, numbers: dict[str, Any], section: report.Section
) -> Outcome:
    numbers = {"experiment": name, "preset": ctx.preset, **numbers}
    (folder / "results.json").write_text(json.dumps(jsonable(numbers), indent=2) + "\n")
    report.write_report(
        folder / "report.html",
        f"MM-SIN: {name}",
        [section],
        subtitle=f"preset {ctx.preset}; {folder}",
    )
    ctx.say(f"{name}: wrote {folder / 'report.html'}")
    return Outcome(name, folder, numbers, section)


def wav(folder: Path, name: str, x: Any, fs: int) -> Path:
    y = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    return save_audio(folder / "audio" / f"{name}.wav", y, fs)


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


def heldout_split(ctx: Context, dataset: str, size: str | None = None) -> str:
    """``"heldout"`` (notes of instruments never trained on, every semitone MIDI 40-90) when
    the data set has that split, else ``"test"`` (a NSynth tree, an older build, or clips given
    in memory with no look-alike built to hold notes out from)."""
    from mmsin import data, paths

    size = size or _size(ctx)
    if (dataset, "heldout", size) not in ctx.clips:
        if dataset in data.LOOKALIKES and not (paths.data_dir() / f"{dataset}-{size}").is_dir():
            return "test"
        try:
            load_split(ctx, dataset, "heldout", size)
        except ValueError:  # DataError: no such split here
            return "test"
    return "heldout"


def run_config(ctx: Context, dataset: str, loss: str) -> Any:
    """The training configuration of the data set's preset (``ctx.preset_for``) for a data
    set and a loss kind."""
    from mmsin import config

    name = ctx.preset_for(dataset)
    cfg = config.preset(name)
    cfg.data.source = dataset
    cfg.data.size = _size(ctx)
    cfg.loss.kind = loss
    cfg = config.override(cfg, list(ctx.overrides))
    body = dict(cfg.to_dict())
    body.pop("name", None)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    short = {"nsynth-like": "notes", "beethoven-like": "piano"}.get(dataset, Path(dataset).name)
    cfg.name = f"{name}-{short}-{loss.replace('+', '')}-{digest}"
    return cfg.validate()


def trained_model(ctx: Context, dataset: str, loss: str) -> tuple[Any, dict[str, Any]]:
    """Train (or reuse) the model of the data set's preset on ``dataset`` with ``loss``.

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
        Two given models were trained on the same data set with the same loss.

    Of several models of one data set (one per loss, as Table 1's three), the L_inv + lambda
    L_MM one is the data set's model; :func:`given_by_loss` gives the others.
    """
    from mmsin.model import MMSIN

    if ctx.given or not ctx.model:
        return ctx.given
    for spec in ctx.model:
        model = MMSIN.load(spec)
        dataset = str(model.config.data.source)
        if dataset in ctx.given:
            first = ctx.given[dataset]
            if first[0].config.loss.kind == model.config.loss.kind:
                raise ValueError(
                    f"--model {spec}: {first[1]['model']!r} was also trained on {dataset} with "
                    f"loss {model.config.loss.kind}; give one per data set and loss"
                )
            if model.config.loss.kind != "inv+mm":
                continue
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


def given_by_loss(ctx: Context, dataset: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The models of ``ctx.model`` trained on ``dataset``, keyed by their loss kind
    ("mse", "inv", "inv+mm"). Raises ValueError when two of them share a loss."""
    from mmsin.model import MMSIN

    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    for spec in ctx.model:
        model = MMSIN.load(spec)
        kind, source = str(model.config.loss.kind), str(model.config.data.source)
        if source != dataset:
            continue
        if kind in out:
            raise ValueError(f"--model {spec} is a second {dataset} model with loss {kind}")
        info = {
            "origin": "given",
            "model": spec,
            "checkpoint": str(model.source),
            "config": model.config.to_dict(),
        }
        out[kind] = (model, info)
    return out


def model_for(
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


def data_size(ctx: Context, model: Any) -> str:
    """The look-alike size to evaluate a model on ('small' or 'full'): ``ctx.eval_size`` when
    set, else the size the model was trained at."""
    return str(ctx.eval_size or model.config.data.size or _size(ctx))


def loss_parts(model: Any) -> Any:
    """The eq. (5) loss with the training set's mean |S_K| (saved in the checkpoint)."""
    from mmsin.assembly import build_scalogram
    from mmsin.losses import ReconstructionLoss

    sk = build_scalogram(model.config).eval()
    stats = getattr(model, "_extra", {}).get("sk_stats")
    if stats is None:
        raise ValueError(f"{model.source}: checkpoint has no S_K statistics (sk_stats)")
    return ReconstructionLoss(sk, stats["mean_abs"])


def _scattering_of(ctx: Context, model: Any, dataset: str, split: str) -> torch.Tensor:
    """S_J of every clip of a split, computed once per invocation (all models share S_J)."""
    size = data_size(ctx, model)
    key = (dataset, split, size, json.dumps(model.config.to_dict()["scattering"]))
    if key not in ctx.scattering:
        x = load_split(ctx, dataset, split, size).audio
        ctx.scattering[key] = torch.cat(
            [model.encode_scattering(x[i : i + 16]) for i in range(0, x.shape[0], 16)]
        )
    return ctx.scattering[key]


def reconstruct(
    ctx: Context, model: Any, dataset: str, split: str, batch: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """G(L S_J x) aligned with x for every clip of a split: (reconstruction, matching x).

    L^-1 L is the identity, so this is G(S_J x / norm) (``decode_scattering``); S_J is
    computed once per split and shared by the models of the invocation.
    """
    S = _scattering_of(ctx, model, dataset, split)
    x = load_split(ctx, dataset, split, data_size(ctx, model)).audio
    outs = [
        model.decode_scattering(S[i : i + batch]).cpu().numpy() for i in range(0, len(S), batch)
    ]
    x_hat = np.concatenate(outs)
    return x_hat, x[:, : x_hat.shape[1]]


def original_f0(
    ctx: Context, where: tuple[str, str, str], x: np.ndarray, indices: Any, fs: float
) -> np.ndarray:
    """CREPE median f0 (``ctx.crepe_model``) of the peak-normalised original clips
    ``x[indices]`` of ``where`` = (data set, split, size), each tracked once per invocation
    (``ctx.memo``): the model sets of one run are judged against the same originals."""
    from mmsin import evaluation as ev

    out = []
    for i in np.asarray(indices, dtype=int):
        key = ("f0", *where, int(i), int(x.shape[-1]), ctx.crepe_model)
        if key not in ctx.memo:
            ctx.memo[key] = ev.normalised_f0(x[i], fs, ctx.crepe_model)
        out.append(ctx.memo[key])
    return np.asarray(out, dtype=np.float64)


def generated(model: Any, n: int, frames: int, seed: int) -> np.ndarray:
    return model.generate(frames, batch=n, seed=seed).cpu().numpy()
