"""The resumable state of a training run: checkpoint payloads, resuming, and their checks.

A training checkpoint (written by :func:`mmsin.checkpoint.save_checkpoint`) is a payload of
:func:`training_payload`: what :meth:`mmsin.MMSIN.from_payload` needs to use the model (config,
generator, VAR, per-channel norm, S_K statistics) plus what ``--resume`` needs to continue
exactly (optimiser, scheduler, scaler, RNG states, :class:`Progress`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmsin.checkpoint import (
    get_rng_state,
    git_revision,
    load_latest_checkpoint,
    previous_path,
    set_rng_state,
)
from mmsin.config import Config
from mmsin.training.features import Features

__all__ = [
    "Progress",
    "check_resumable",
    "check_same_data",
    "load_resume_state",
    "restore_training_state",
    "training_payload",
]

log = logging.getLogger(__name__)


def _empty_history() -> dict[str, list[float]]:
    return {"train_loss": [], "test_inv": [], "epoch": []}


@dataclass
class Progress:
    """Where a run is: epochs done, steps into the current epoch, steps in all, per-epoch
    history (mean training loss, test L_inv where evaluated, epoch number)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: dict[str, list[float]] = field(default_factory=_empty_history)


def load_resume_state(
    cfg: Config, ckpt_path: Path, *, resume: bool, is_main: bool
) -> dict[str, Any] | None:
    """The checkpoint to resume from (None when starting afresh).

    Raises FileNotFoundError when there is nothing to resume, FileExistsError when starting a
    run over an existing one, ValueError when the saved config differs (:func:`check_resumable`).
    """
    if resume:
        if not ckpt_path.is_file() and not previous_path(ckpt_path).is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume (train without --resume)")
        state, used = load_latest_checkpoint(ckpt_path)
        check_resumable(cfg, Config.from_json(state["config"]), used)
        return state
    if is_main and (ckpt_path.is_file() or previous_path(ckpt_path).is_file()):
        raise FileExistsError(
            f"{ckpt_path.parent}: run exists already; pass --resume to continue it or "
            "--run NEW_NAME"
        )
    return None


def check_resumable(cfg: Config, saved: Config, path: Path) -> None:
    """Only ``train.epochs`` may differ between a run's config and the one resuming it."""
    a, b = cfg.to_dict(), saved.to_dict()
    a["train"]["epochs"] = b["train"]["epochs"] = 0  # training longer is allowed
    if a != b:
        diffs = [
            f"{sec}.{k}"
            for sec in a
            if isinstance(a[sec], dict)
            for k in a[sec]
            if a[sec][k] != b[sec].get(k)
        ] + [k for k in a if not isinstance(a[k], dict) and a[k] != b[k]]
        raise ValueError(
            f"{path}: config differs from the run's ({', '.join(diffs)}); only train.epochs may "
            "change on --resume"
        )


def check_same_data(state: dict[str, Any], feats: Features, ckpt_path: Path) -> None:
    """A run resumes only on the data it was trained on (same fingerprint)."""
    if state.get("data_fingerprint") != feats.fingerprint:
        raise ValueError(
            f"{ckpt_path}: was trained on other data (fingerprint {state.get('data_fingerprint')}"
            f" != {feats.fingerprint}); start a new run instead of --resume"
        )


def restore_training_state(
    state: dict[str, Any],
    generator: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    use_scaler: bool,
) -> Progress:
    """Load a checkpoint's weights, optimiser, scheduler, scaler and RNG states in place;
    return its progress."""
    generator.load_state_dict(state["generator"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state and use_scaler:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return Progress(
        epoch=int(state["epoch"]),
        step_in_epoch=int(state["step_in_epoch"]),
        global_step=int(state["global_step"]),
        history={k: list(v) for k, v in state.get("history", _empty_history()).items()},
    )


def training_payload(
    cfg: Config,
    generator: nn.Module,
    in_channels: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    progress: Progress,
    feats: Features,
    data_source: str,
) -> dict[str, Any]:
    """The checkpoint payload of a run at ``progress`` (``scaler`` None: no scaler in use)."""
    p: dict[str, Any] = {
        "config": cfg.to_json(),
        "generator": generator.state_dict(),
        "in_channels": in_channels,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": get_rng_state(),
        "epoch": progress.epoch,
        "step_in_epoch": progress.step_in_epoch,
        "global_step": progress.global_step,
        "var": feats.var_state,
        "norm": feats.norm,
        "sk_stats": {
            "mean_abs": feats.sk_mean_abs,
            "mean": feats.sk_mean,
            "rms": feats.sk_rms,
            "wave_power": feats.wave_power,
        },
        "context": [feats.context, feats.ahead],
        "data_fingerprint": feats.fingerprint,
        "data_source": data_source,
        "git_revision": git_revision() or "",
        "history": progress.history,
        "torch_version": str(torch.__version__),
    }
    if scaler is not None:
        p["scaler"] = scaler.state_dict()
    return p
