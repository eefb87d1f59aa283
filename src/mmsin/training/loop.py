"""The training loop: :func:`train` runs epochs of optimiser steps on cached features.

One call of :func:`train`:

1. opens the run folder (refusing to overwrite a run; ``resume`` reads its checkpoint);
2. seeds every RNG, builds G (:mod:`mmsin.assembly`) and gets the cached features
   (:func:`mmsin.training.features.prepare_features`, computed by rank 0);
3. builds a :class:`_Session`: G (DDP-wrapped across ranks), the objective, the VAR's code
   chains, Adam with its step schedule, restored from the checkpoint when resuming;
4. runs epochs (:meth:`_Session.run_epoch`, one :meth:`_Session.step` per batch; a non-finite
   loss skips the step, too many in a row raise :class:`TrainingDiverged`), and at the end of
   each epoch evaluates on the test split, writes previews and a checkpoint.

Ctrl-C writes a checkpoint of the last completed step, so ``resume`` loses nothing; a resumed
run equals an uninterrupted one (on CPU, bit for bit).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmsin import paths
from mmsin.assembly import build_generator, build_scattering, context_frames, restore_var
from mmsin.checkpoint import CHECKPOINT_NAME, save_checkpoint
from mmsin.config import Config
from mmsin.generators.base import ReadsInputNorm
from mmsin.scattering import nonnegative_channels
from mmsin.training.code_chains import CodeChains
from mmsin.training.distributed import (
    Dist,
    all_ranks_finite,
    barrier,
    device_kind,
    epoch_batches,
    resolve_device,
    setup_distributed,
    teardown_distributed,
    wrap_for_ranks,
)
from mmsin.training.features import Features, prepare_features
from mmsin.training.objective import (
    Objective,
    amp_enabled,
    evaluate_inv,
    loss_terms,
    total_loss,
)
from mmsin.training.previews import progress_bar, summary_writer, write_previews
from mmsin.training.state import (
    Progress,
    check_same_data,
    load_resume_state,
    restore_training_state,
    training_payload,
)

__all__ = ["TrainResult", "TrainingDiverged", "load_data", "train"]

log = logging.getLogger(__name__)


class TrainingDiverged(FloatingPointError):
    """Raised when the loss stays non-finite for ``train.max_nonfinite_steps`` steps in a row."""


@dataclass
class TrainResult:
    """What :func:`train` returns: where things are and how the losses went."""

    run_dir: Path
    checkpoint: Path | None
    epochs_done: int
    global_step: int
    history: dict[str, list[float]]
    stopped_early: bool = False
    #: The trained generator (unwrapped from DDP), on the training device, in train mode.
    generator: nn.Module | None = None


def train(
    cfg: Config,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    train_clips: Any = None,
    test_clips: Any = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    tensorboard: bool = True,
    init: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train the generator G of ``cfg`` and write checkpoints into ``run_dir``.

    Parameters
    ----------
    cfg : Config
        Validated configuration (saved as ``run_dir/config.json`` and in every checkpoint).
    run_dir : path, optional
        Default ``paths.runs_dir() / cfg.name``.
    train_clips, test_clips : mmsin.data.Clips, optional
        Default: ``mmsin.data.load_clips(cfg.data.source, split)``.
    resume : bool
        Continue from ``run_dir/checkpoint.pt`` (same data and config except ``train.epochs``);
        the result equals an uninterrupted run (on CPU, bit for bit).
    max_steps : int, optional
        Stop (with a checkpoint) after this many optimiser steps in total; resuming continues.
    progress : bool
        Show a tqdm progress bar (rank 0 only).
    init : str or path, optional
        A model (shipped name, run folder or checkpoint) whose generator weights start this
        run where their names and shapes match (:func:`init_generator`); ignored on resume.

    Returns
    -------
    TrainResult
    """
    cfg.validate()
    d = setup_distributed(device_kind(cfg))
    try:
        return _train(
            cfg,
            run_dir,
            train_clips,
            test_clips,
            resume,
            progress,
            max_steps,
            cache_dir,
            tensorboard,
            d,
            init,
        )
    finally:
        teardown_distributed(d)


def _pretrain_frontend(scattering: nn.Module, generator: nn.Module, seed: int) -> None:
    """A learned front end (``joint-real`` partials heads) not yet fitted is fitted on synthetic
    tones before the first step (:meth:`mmsin.generators.partials.LearnedFrontend.pretrain`)."""
    from mmsin.generators.partials import LearnedFrontend

    fe = getattr(generator, "frontend", None)
    if isinstance(fe, LearnedFrontend) and not bool(fe.ready):
        t0 = time.perf_counter()
        err = fe.pretrain(scattering, seed=seed)
        log.info(
            "learned front end fitted on synthetic tones in %.0f s: held-out error of u %.1f %%",
            time.perf_counter() - t0,
            100 * err,
        )


def _fit_noise_floor(generator: nn.Module, feats: Features) -> None:
    """A noise branch that reads log S_J and is not yet fitted (a fresh run, or ``--init``
    from weights without one) is fitted to the training audio's floor before the first step
    (:func:`mmsin.generators.noise_floor.fit_noise_floor`)."""
    noise = getattr(generator, "noise", None)
    if noise is None or getattr(generator, "noise_input", "sj") != "log":
        return
    if bool(noise.fitted):
        return
    from mmsin.generators.noise_floor import fit_noise_floor

    t0 = time.perf_counter()
    try:
        fit = fit_noise_floor(generator, feats.train_frames, feats.train_wave)
    except ValueError as exc:
        log.warning("noise floor not fitted (%s); the noise bands start near silence", exc)
        return
    log.info(
        "noise floor fitted on %d training blocks in %.0f s: level error %.1f dB RMS "
        "(a constant per band: %.1f dB); mean band gains %s dB",
        fit.rows,
        time.perf_counter() - t0,
        fit.residual_db,
        fit.spread_db,
        " ".join(f"{v:.0f}" for v in fit.mean_gain_db),
    )


def init_generator(generator: nn.Module, source: str | os.PathLike[str]) -> tuple[int, int]:
    """Copy the generator weights of the model ``source`` (a shipped name, run folder or
    checkpoint) into ``generator`` wherever a parameter or buffer has the same name and shape:
    a run continues from committed weights, also into a head that changed in part.

    Returns (tensors copied, tensors of ``generator`` left as initialised)."""
    from mmsin.model import MMSIN

    theirs = MMSIN.load(source).generator.state_dict()
    mine = generator.state_dict()
    same = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not same:
        raise ValueError(f"{source}: no generator weight matches this configuration's")
    generator.load_state_dict(same, strict=False)
    kept = len(mine) - len(same)
    log.info("initialised %d generator tensors from %s (%d left as built)", len(same), source, kept)
    return len(same), kept


def load_data(cfg: Config) -> tuple[Any, Any]:
    """The training and test clips of ``cfg.data`` at ``cfg.scattering.fs``."""
    from mmsin.data import load_clips

    kw: dict[str, Any] = {"fs": cfg.scattering.fs}
    if cfg.data.source in ("nsynth-like", "beethoven-like"):
        kw["size"] = cfg.data.size
    elif cfg.data.seconds is not None and Path(cfg.data.source).is_dir():
        kw["seconds"] = cfg.data.seconds
    tr = load_clips(cfg.data.source, cfg.data.train_split, **kw)
    te = load_clips(cfg.data.source, cfg.data.test_split, **kw)
    return tr, te


def _train(
    cfg: Config,
    run_dir_arg: str | os.PathLike[str] | None,
    train_clips: Any,
    test_clips: Any,
    resume: bool,
    progress: bool,
    max_steps: int | None,
    cache_dir: str | os.PathLike[str] | None,
    tensorboard: bool,
    d: Dist,
    init: str | os.PathLike[str] | None = None,
) -> TrainResult:
    run_dir = Path(run_dir_arg) if run_dir_arg is not None else paths.runs_dir() / cfg.name
    ckpt_path = run_dir / CHECKPOINT_NAME
    device = resolve_device(cfg, d)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    state = load_resume_state(cfg, ckpt_path, resume=resume, is_main=d.is_main)
    if train_clips is None or test_clips is None:
        train_clips, test_clips = load_data(cfg)
    _seed_everything(cfg.train.seed)

    # Model first (its receptive field sets the segment context), seeded identically on every
    # rank so that DDP starts from the same weights.
    scattering = build_scattering(cfg)
    in_channels = int(scattering.num_channels)
    generator = build_generator(cfg, in_channels)
    if init is not None and state is None:
        init_generator(generator, init)
    if state is None:
        _pretrain_frontend(scattering, generator, cfg.train.seed)
    feats = _features_from_rank0(
        cfg, train_clips, test_clips, context_frames(cfg, generator), cache_dir, progress, d
    )
    if isinstance(generator, ReadsInputNorm):  # the partials heads read S_J's scale
        generator.set_input_norm(feats.norm)
    if state is None:
        _fit_noise_floor(generator, feats)
    if state is not None:
        check_same_data(state, feats, ckpt_path)

    session = _Session(
        cfg, d, device, generator, in_channels, feats, ckpt_path, max_steps, state, train_clips
    )
    if d.is_main:
        _write_run_files(cfg, run_dir, feats)
    session.open_logs(run_dir / "tb", tensorboard=tensorboard, progress=progress)
    t_start = time.perf_counter()
    stopped_early = session.run()
    log.info("trained %d steps in %.1f s", session.at.global_step, time.perf_counter() - t_start)
    barrier(d)
    return TrainResult(
        run_dir=run_dir,
        checkpoint=session.last_checkpoint,
        epochs_done=session.at.epoch,
        global_step=session.at.global_step,
        history=session.at.history,
        stopped_early=stopped_early,
        generator=session.generator,
    )


def _seed_everything(seed: int) -> None:
    """Seed torch, numpy's legacy global RNG and Python's ``random`` (whatever third-party
    code draws from)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (seed whatever third-party code uses)
    random.seed(seed)


def _features_from_rank0(
    cfg: Config,
    train_clips: Any,
    test_clips: Any,
    context: tuple[int, int],
    cache_dir: str | os.PathLike[str] | None,
    progress: bool,
    d: Dist,
) -> Features:
    """The cached features; across ranks, rank 0 computes the cache and the others then read
    it."""
    if not d.is_main:
        barrier(d)
    feats = prepare_features(
        cfg,
        train_clips,
        test_clips,
        cache_dir=cache_dir,
        context=context,
        progress=progress and d.is_main,
    )
    if d.is_main:
        barrier(d)
    return feats


def _write_run_files(cfg: Config, run_dir: Path, feats: Features) -> None:
    """``config.json`` and ``whiteness.json`` (how white Z = L S_J is) in the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.json")
    whiteness = feats.extra.get("whiteness")
    if whiteness:
        (run_dir / "whiteness.json").write_text(json.dumps(whiteness, indent=2))
        for split, r in whiteness.items():
            if r:
                log.info(
                    "whiteness of Z on %s: |Cov - I|_F/|I|_F %.3f, mean |lag-1| %.3f, "
                    "median excess kurtosis %.2f",
                    split,
                    r["cov_rel_fro_error"],
                    r["lag1_mean_abs"],
                    r["kurtosis_median"],
                )


class _Session:
    """One training run in progress: G and the module the loop calls, the objective, the
    optimiser and its schedule, the code chains of L_MM, the :class:`Progress` counters
    (``at``), and the checkpoint and logs it writes."""

    def __init__(
        self,
        cfg: Config,
        d: Dist,
        device: torch.device,
        generator: nn.Module,
        in_channels: int,
        feats: Features,
        ckpt_path: Path,
        max_steps: int | None,
        state: dict[str, Any] | None,
        train_clips: Any,
    ) -> None:
        self.cfg, self.d, self.device, self.feats = cfg, d, device, feats
        self.in_channels = in_channels
        self.ckpt_path = ckpt_path
        self.data_source = str(getattr(train_clips, "source", ""))
        generator = generator.to(device)
        self.objective = Objective(cfg, feats).to(device)
        # The VAR in float64, as at inference (mmsin.model): its recursion runs close to the
        # edge of stability (growth rate up to 0.995), where float32 rounding accumulates.
        self.var = restore_var(feats.var_state).to(device).double()
        self.generator, self.model = wrap_for_ranks(generator, device, d)

        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=cfg.train.lr)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.train.lr_milestones), gamma=cfg.train.lr_gamma
        )
        self.amp = amp_enabled(cfg.train.amp, device)  # CUDA, or a CPU with native bf16
        self.use_scaler = self.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)
        self.at = Progress()
        if state is not None:
            self.at = restore_training_state(
                state,
                self.generator,
                self.optimizer,
                self.scheduler,
                self.scaler,
                self.use_scaler,
            )
            log.info(
                "resumed %s at epoch %d step %d", ckpt_path, self.at.epoch, self.at.global_step
            )

        n = feats.train_frames.shape[0]
        self.n = n
        self.per_rank = max(1, min(cfg.train.batch_size, n) // d.world)
        steps_per_epoch = len(epoch_batches(n, self.per_rank, 0, cfg.train.seed, d))
        self.total_steps = cfg.train.epochs * steps_per_epoch
        if max_steps is not None:
            self.total_steps = min(self.total_steps, max_steps)
        self.chains = (
            CodeChains(
                self.var,
                max(1, cfg.loss.mm_batch // d.world),
                feats.width,
                cfg.whitening.warmup,
                cfg.train.seed,
                d.rank,
                device,
                relu=nonnegative_channels(build_scattering(cfg), int(self.var.channels)),
                codes=cfg.whitening.codes,
            )
            if cfg.loss.kind == "inv+mm"
            else None
        )
        self.last_checkpoint: Path | None = ckpt_path if ckpt_path.is_file() else None
        self.nonfinite = 0
        self.epoch_losses: list[float] = []
        self.writer: Any = None
        self.bar: Any = None

    # ------------------------------------------------------------------ logs

    def open_logs(self, tb_folder: Path, *, tensorboard: bool, progress: bool) -> None:
        """TensorBoard writer and progress bar (rank 0, when asked for)."""
        self.writer = summary_writer(tb_folder, enabled=tensorboard and self.d.is_main)
        self.bar = progress_bar(
            self.total_steps, self.at.global_step, enabled=progress and self.d.is_main
        )

    def close_logs(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def log_step(self, value: float, terms: dict[str, Tensor]) -> None:
        """One step's losses to TensorBoard and the progress bar."""
        # The terms still carry the graph: read them detached (float() of a tensor that
        # requires grad warns on every call).
        values = {k: float(v.detach()) for k, v in terms.items()}
        if self.writer is not None:
            self.writer.add_scalar("loss/total", value, self.at.global_step)
            for k, v in values.items():
                self.writer.add_scalar(f"loss/{k}", v, self.at.global_step)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                {"epoch": self.at.epoch, **{k: f"{v:.4f}" for k, v in values.items()}}
            )

    # ------------------------------------------------------------------ checkpoints

    def write_checkpoint(self) -> None:
        """Rank 0 saves the run (never NaN/inf weights); a failed write keeps the last one."""
        if not self.d.is_main:
            return
        if not all(torch.isfinite(p).all() for p in self.generator.parameters()):
            log.error("not writing a checkpoint: the weights contain NaN/inf")
            return
        payload = training_payload(
            self.cfg,
            self.generator,
            self.in_channels,
            self.optimizer,
            self.scheduler,
            self.scaler if self.use_scaler else None,
            self.at,
            self.feats,
            self.data_source,
        )
        try:
            self.last_checkpoint = save_checkpoint(self.ckpt_path, payload)
        except (OSError, RuntimeError) as exc:
            # The previous file is untouched (atomic replace); keep training.
            log.error(
                "checkpoint write to %s failed (%s); kept the last good one", self.ckpt_path, exc
            )

    # ------------------------------------------------------------------ the loop

    def run(self) -> bool:
        """Train until ``train.epochs`` or ``max_steps``; True if stopped before the last
        epoch. Ctrl-C saves a checkpoint, then propagates."""
        at, epochs = self.at, self.cfg.train.epochs
        stopped_early = False
        try:
            while at.epoch < epochs and at.global_step < self.total_steps:
                if not self.run_epoch():
                    stopped_early = True  # max_steps reached mid-epoch
                    break
                self.end_epoch()
            else:
                stopped_early = at.epoch < epochs
            if stopped_early:
                self.write_checkpoint()
        except KeyboardInterrupt:
            # An interrupt almost always lands in a forward/backward pass, before the optimiser
            # step, so the saved state is that of the last completed step and --resume loses
            # nothing. (Only a Ctrl-C between optimizer.step and the counter update would
            # replay one step.)
            log.warning(
                "interrupted at epoch %d step %d; saving a checkpoint", at.epoch, at.global_step
            )
            self.write_checkpoint()
            raise
        finally:
            self.close_logs()
        return stopped_early

    def run_epoch(self) -> bool:
        """The remaining steps of the current epoch; False if ``max_steps`` cut it short."""
        at = self.at
        self.model.train()
        batches = epoch_batches(self.n, self.per_rank, at.epoch, self.cfg.train.seed, self.d)
        self.epoch_losses = []
        if self.chains is not None:
            self.chains.start(at.epoch, at.global_step - at.step_in_epoch, at.step_in_epoch)
        while at.step_in_epoch < len(batches) and at.global_step < self.total_steps:
            value = self.step(batches[at.step_in_epoch])
            if value is not None:
                self.epoch_losses.append(value)
        return at.step_in_epoch >= len(batches)

    def step(self, batch: list[int]) -> float | None:
        """One optimiser step on the training segments ``batch``; its loss, or None when the
        loss was non-finite and the step skipped."""
        at, feats, device = self.at, self.feats, self.device
        idx = torch.as_tensor(batch)
        frames = feats.train_frames[idx].to(device, non_blocking=True)
        wave = feats.train_wave[idx].to(device, non_blocking=True)
        sk = feats.train_sk[idx].to(device, non_blocking=True)
        if self.cfg.train.level_db:
            tc = self.cfg.train
            gain = level_gains(tc.level_db, len(batch), tc.seed, at.global_step)
            frames, wave, sk = (
                t * gain.to(t).view(-1, *[1] * (t.dim() - 1)) for t in (frames, wave, sk)
            )
        pad = feats.train_pad[idx] if feats.train_pad is not None else None
        self.optimizer.zero_grad(set_to_none=True)
        codes = self.chains.next(at.global_step) if self.chains is not None else None
        terms = loss_terms(
            self.cfg,
            self.model,
            self.objective,
            frames,
            wave,
            sk,
            codes,
            feats,
            self.amp,
            device,
            pad=pad,
        )
        loss = total_loss(self.cfg, terms)
        if not all_ranks_finite(loss, self.d, device):
            self.skip_nonfinite(terms)
            at.step_in_epoch += 1
            at.global_step += 1
            return None
        self.nonfinite = 0
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        at.step_in_epoch += 1
        at.global_step += 1
        value = float(loss.detach())
        self.log_step(value, terms)
        return value

    def skip_nonfinite(self, terms: dict[str, Tensor]) -> None:
        """Log a skipped step; raise :class:`TrainingDiverged` after
        ``train.max_nonfinite_steps`` of them in a row."""
        at = self.at
        bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
        self.nonfinite += 1
        log.error(
            "non-finite loss at epoch %d step %d (term(s): %s); step skipped",
            at.epoch,
            at.global_step,
            ", ".join(bad) or "total",
        )
        if self.nonfinite >= self.cfg.train.max_nonfinite_steps:
            raise TrainingDiverged(
                f"loss non-finite for {self.nonfinite} steps in a row (last at epoch "
                f"{at.epoch} step {at.global_step}, term(s) {', '.join(bad) or 'total'});"
                f" last good checkpoint: {self.last_checkpoint}"
            )

    def end_epoch(self) -> None:
        """Close an epoch: schedule, history, test L_inv, previews and checkpoint when due."""
        at, cfg = self.at, self.cfg
        at.epoch += 1
        at.step_in_epoch = 0
        self.scheduler.step()
        losses = self.epoch_losses
        at.history["epoch"].append(float(at.epoch))
        at.history["train_loss"].append(float(np.mean(losses)) if losses else float("nan"))
        at.history["test_inv"].append(float("nan"))
        last = at.epoch == cfg.train.epochs
        due = at.epoch % cfg.train.checkpoint_every == 0 or last
        if self.d.is_main and due:
            self.evaluate_test()
        if (
            self.d.is_main
            and self.writer is not None
            and cfg.train.preview_every
            and (at.epoch % cfg.train.preview_every == 0 or last)
        ):
            write_previews(
                self.writer, cfg, self.generator, self.var, self.feats, self.device, at.global_step
            )
        if due:
            self.write_checkpoint()

    def evaluate_test(self) -> None:
        """Test-split L_inv into the history and TensorBoard."""
        at = self.at
        test_inv = evaluate_inv(self.generator, self.objective, self.feats, self.device, "test")
        at.history["test_inv"][-1] = test_inv
        if self.writer is not None:
            self.writer.add_scalar("test/inv", test_inv, at.global_step)
            self.writer.add_scalar("train/epoch_loss", at.history["train_loss"][-1], at.global_step)


def level_gains(level_db: list[float], n: int, seed: int, step: int) -> Tensor:
    """``n`` gains drawn uniformly in ``level_db`` = [lo, hi] dB for training step ``step``:
    the same for the same seed and step (a resumed run draws what the first would have)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    lo, hi = float(level_db[0]), float(level_db[1])
    return 10 ** ((lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)) / 20)
