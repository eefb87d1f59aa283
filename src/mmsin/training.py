"""Training of the MM-SIN generator: feature cache, loop, checkpoints, resume, logs, DDP.

The encoder Phi = L S_J is fixed (paper section 2), so everything that depends only on the data
and the configuration is computed once and cached (:func:`prepare_features`): normalised S_J
frames cut into training segments, their aligned waveform targets, the loss scalogram S_K of
those targets and its statistics, and the VAR fit of the whitening L. The loop then only runs
the generator G and the loss scalogram on G's output.

Loss (paper eqs. 4-6)::

    mse     : || G(S) - x ||^2 / power                      (waveform baseline)
    inv     : L_inv = mean_c |S_K G(S) - S_K x|_c / mean|S_K x|_c       (eq. 5)
    inv+mm  : L_inv + lam * L_MM(G(L^-1 z)), z white noise, fresh every step (eq. 6)

Devices: CPU, one CUDA GPU (optional autocast), or several GPUs/processes under ``torchrun``
(DistributedDataParallel; detected from the RANK/WORLD_SIZE environment variables; gloo on CPU,
nccl on CUDA; only rank 0 writes files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmsin import paths
from mmsin.checkpoint import (
    CHECKPOINT_NAME,
    get_rng_state,
    git_revision,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
    set_rng_state,
)
from mmsin.config import Config

__all__ = [
    "Features",
    "TrainResult",
    "TrainingDiverged",
    "build_generator",
    "build_scalogram",
    "build_scattering",
    "data_fingerprint",
    "prepare_features",
    "restore_var",
    "train",
]

log = logging.getLogger(__name__)

#: Version of the cache layout; bump when the cached content changes meaning.
CACHE_VERSION = 3


class TrainingDiverged(FloatingPointError):
    """Raised when the loss stays non-finite for ``train.max_nonfinite_steps`` steps in a row."""


# --------------------------------------------------------------------------- module builders


def build_scattering(cfg: Config) -> Any:
    """The fixed encoder S_J of ``cfg.scattering`` (paper eq. 8)."""
    from mmsin.scattering import TimeFrequencyScattering

    s = cfg.scattering
    return TimeFrequencyScattering(J=s.J, Q=s.Q, P=s.P, variant=s.variant, fs=s.fs)


def build_scalogram(cfg: Config) -> Any:
    """The loss scalogram S_K of ``cfg.loss`` (first-order scattering averaged over 2^K)."""
    from mmsin.scattering import Scalogram

    return Scalogram(K=cfg.loss.K, Q=cfg.loss.Q, wavelet=cfg.loss.wavelet, fs=cfg.scattering.fs)


def build_generator(cfg: Config, in_channels: int) -> Any:
    """The causal generator G of ``cfg.generator`` for ``in_channels`` = k_J S_J channels."""
    from mmsin.generator import CausalGenerator

    g = cfg.generator
    return CausalGenerator(
        in_channels,
        J=cfg.scattering.J,
        kernel_size=g.kernel_size,
        look_ahead=g.look_ahead,
        c1=g.c1,
    )


def restore_var(state: dict[str, Tensor]) -> Any:
    """Rebuild a :class:`mmsin.whitening.VAR` from its ``state_dict`` (buffers A, b, sqrt_cov,
    inv_sqrt_cov), as saved in checkpoints and the feature cache."""
    from mmsin.whitening import VAR

    A = state["A"]
    M, C = int(A.shape[0]), int(A.shape[1])
    var = _construct_var(VAR, M, C, state)
    var.load_state_dict(state)
    return var.eval()


def _construct_var(cls: Any, M: int, C: int, state: dict[str, Tensor]) -> nn.Module:
    # The VAR's constructor is owned by mmsin.whitening; accept either of its natural forms.
    if hasattr(cls, "from_state_dict"):
        return cls.from_state_dict(state)  # type: ignore[no-any-return]
    try:
        return cls(M=M, C=C)  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        return cls(state["A"].clone(), state["b"].clone(), state["sqrt_cov"].clone())  # type: ignore[no-any-return]
    except TypeError:
        return cls(M, C)  # type: ignore[no-any-return]


def context_frames(cfg: Config, generator: Any) -> tuple[int, int]:
    """Frames of S_J fed to G before and after each training segment, so that every output
    block the loss sees has all the frames it depends on: before = ``train.context_frames``
    (default: the generator's past span, receptive field - 1 - look-ahead), after = the
    generator's look-ahead in frames (0 for the paper's causal generator)."""
    before, after = getattr(generator, "frame_span", (int(generator.receptive_field) - 1, 0))
    if cfg.train.context_frames is not None:
        before = cfg.train.context_frames
    return int(before), int(after)


# --------------------------------------------------------------------------- features / cache


@dataclass
class Features:
    """Everything fixed that training needs, computed once per (data, config).

    Shapes: C = k_J S_J channels, W = context + segment + ahead frames, N segments, hop 2^J,
    C_K S_K channels, T_K = segment_frames * 2^J / 2^K loss frames.

    Attributes
    ----------
    norm : Tensor (C,)
        mean |S_J| per channel over the training clips (the paper's equal average magnitude).
    train_frames, test_frames : Tensor (N, C, W)
        Normalised S_J frames: ``context`` before the segment (zeros before a clip's start:
        S_J of silence), the segment, ``ahead`` after it (zeros past the clip's end).
    train_wave, test_wave : Tensor (N, segment_frames * 2^J)
        Waveform targets aligned with the last ``segment_frames`` output blocks of G.
    train_sk, test_sk : Tensor (N, C_K, T_K)
        S_K of the targets (eq. 5's reference side).
    train_pad, test_pad : Tensor (N,) int64
        Context frames of each example that lie before its clip's start (the zero frames);
        G starts from a zero state there (:func:`zero_state`), as when decoding a clip.
    sk_mean_abs, sk_mean, sk_rms : Tensor (C_K,)
        Training-set S_K statistics: L_inv normaliser, L_MM target mean and RMS normaliser.
    wave_power : Tensor ()
        mean x^2 over the training targets (the MSE baseline's normaliser).
    var_state : dict
        ``state_dict`` of the VAR(M) fitted on the normalised training frames.
    """

    norm: Tensor
    train_frames: Tensor
    train_wave: Tensor
    train_sk: Tensor
    test_frames: Tensor
    test_wave: Tensor
    test_sk: Tensor
    sk_mean_abs: Tensor
    sk_mean: Tensor
    sk_rms: Tensor
    wave_power: Tensor
    var_state: dict[str, Tensor]
    context: int
    segment_frames: int
    ahead: int
    hop: int
    fingerprint: str
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    train_pad: Tensor | None = None
    test_pad: Tensor | None = None

    @property
    def width(self) -> int:
        """Frames per example fed to G: context + segment + ahead."""
        return self.context + self.segment_frames + self.ahead

    def crop(self, out: Tensor) -> Tensor:
        """The samples of G's output (B, width * hop) that stand for the segment."""
        return out[:, self.context * self.hop : (self.context + self.segment_frames) * self.hop]

    def to_payload(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> Features:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def data_fingerprint(*clip_sets: Any) -> str:
    """SHA-256 over the audio samples, sample rates, names and splits of ``Clips`` objects."""
    h = hashlib.sha256()
    for clips in clip_sets:
        audio = np.ascontiguousarray(np.asarray(clips.audio, dtype=np.float32))
        h.update(str((audio.shape, int(clips.fs), str(getattr(clips, "split", "")))).encode())
        h.update(audio.tobytes())
        names = [str(m.get("name", "")) for m in getattr(clips, "meta", [])]
        h.update(json.dumps(names).encode())
    return h.hexdigest()[:20]


def _cache_key(cfg: Config, fingerprint: str, context: tuple[int, int]) -> str:
    relevant = {
        "version": CACHE_VERSION,
        "data": fingerprint,
        "scattering": cfg.to_dict()["scattering"],
        "whitening": {"M": cfg.whitening.M, "ridge": cfg.whitening.ridge},
        "loss": {"K": cfg.loss.K, "Q": cfg.loss.Q, "wavelet": cfg.loss.wavelet},
        "segment_frames": cfg.train.segment_frames,
        "context": list(context),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    """Where cached features live: ``$MMSIN_HOME/data/.cache``."""
    return paths.data_dir() / ".cache"


@torch.no_grad()
def _transform_batches(module: nn.Module, x: Tensor, batch: int = 16) -> Tensor:
    return torch.cat([module(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def _segment_starts(frames: int, seg: int) -> list[int]:
    """Non-overlapping runs of ``seg`` frames, plus one right-aligned run for the remainder
    (as the reference code cuts its Beethoven extracts)."""
    if frames < seg:
        return []
    starts = list(range(0, frames - seg + 1, seg))
    if frames % seg:
        starts.append(frames - seg)
    return starts


def _segments(
    S: Tensor, x: Tensor, J: int, seg: int, context: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Cut normalised S_J frames (B, C, F) and signals (B, time) into training segments; the
    third tensor is each segment's number of context frames before its clip's start."""
    from mmsin.generator import aligned_target

    _, C, F = S.shape
    hop = 2**J
    target = torch.as_tensor(aligned_target(x, J, F), dtype=torch.float32)  # (B, F * hop)
    before, after = context
    padded = torch.nn.functional.pad(S, (before, after))
    frames_out, wave_out, pad_out = [], [], []
    for n0 in _segment_starts(F, seg):
        frames_out.append(padded[:, :, n0 : n0 + before + seg + after])
        wave_out.append(target[:, n0 * hop : (n0 + seg) * hop])
        pad_out.append(torch.full((S.shape[0],), max(0, before - n0), dtype=torch.int64))
    if not frames_out:
        empty = torch.zeros(0, dtype=torch.int64)
        return S.new_zeros(0, C, before + seg + after), S.new_zeros(0, seg * hop), empty
    return torch.cat(frames_out), torch.cat(wave_out), torch.cat(pad_out)


def prepare_features(
    cfg: Config,
    train_clips: Any,
    test_clips: Any,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    context: tuple[int, int] | None = None,
    progress: bool = False,
) -> Features:
    """Compute (or load from the cache) the fixed features of a data set for ``cfg``.

    The cache file is ``cache_dir/<key>.pt``, key = hash of (data fingerprint, the parts of
    ``cfg`` that change the features); a second call with the same data and config returns the
    cached tensors without running any transform.

    Parameters
    ----------
    cfg : Config
    train_clips, test_clips : mmsin.data.Clips
        ``audio`` (n, time) float32 at ``cfg.scattering.fs``.
    cache_dir : path, optional
        Default :func:`default_cache_dir`.
    context : (int, int), optional
        Frames before and after each segment (default: :func:`context_frames`).
    """
    for clips in (train_clips, test_clips):
        if int(clips.fs) != cfg.scattering.fs:
            raise ValueError(
                f"data {clips.source!r} ({clips.split}) is at {clips.fs} Hz but "
                f"scattering.fs={cfg.scattering.fs}"
            )
    if context is None:
        C = int(build_scattering(cfg).num_channels)
        context = context_frames(cfg, build_generator(cfg, C))
    fingerprint = data_fingerprint(train_clips, test_clips)
    key = _cache_key(cfg, fingerprint, context)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"features-{key}.pt"
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            log.info("features: loaded cache %s", path)
            return Features.from_payload(payload)
        except Exception as exc:  # a damaged cache is recomputed, never trusted
            log.warning("features: ignoring unreadable cache %s (%s)", path, exc)
    t0 = time.perf_counter()
    feats = _compute_features(cfg, train_clips, test_clips, context, fingerprint, key, progress)
    feats.extra["seconds"] = time.perf_counter() - t0
    save_checkpoint_plain(path, feats.to_payload())
    log.info("features: computed in %.1f s, cached at %s", feats.extra["seconds"], path)
    return feats


def save_checkpoint_plain(path: Path, payload: dict[str, Any]) -> None:
    """Atomic ``torch.save`` of a plain payload (used for the feature cache)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compute_features(
    cfg: Config,
    train_clips: Any,
    test_clips: Any,
    context: tuple[int, int],
    fingerprint: str,
    key: str,
    progress: bool,
) -> Features:
    from mmsin.whitening import fit_var, whiteness_report

    J, seg = cfg.scattering.J, cfg.train.segment_frames
    scattering = build_scattering(cfg).eval()
    scalogram = build_scalogram(cfg).eval()
    x_train = torch.as_tensor(np.asarray(train_clips.audio, dtype=np.float32))
    x_test = torch.as_tensor(np.asarray(test_clips.audio, dtype=np.float32))
    if x_train.ndim != 2 or x_train.shape[0] == 0:
        raise ValueError(f"data {train_clips.source!r}: no training clips")
    if progress:
        log.warning("computing S_J of %d + %d clips (once; cached)", len(x_train), len(x_test))
    S_train = _transform_batches(scattering, x_train).float()
    S_test = (
        _transform_batches(scattering, x_test).float()
        if len(x_test)
        else S_train.new_zeros(0, S_train.shape[1], S_train.shape[2])
    )
    # Per-channel normalisation: mean |S_J| over the training set (section 3.7 of the notes;
    # the paper's "responses of average equal magnitude in each band"). Guard dead channels.
    norm = S_train.abs().mean(dim=(0, 2))
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    S_train = S_train / norm[:, None]
    S_test = S_test / norm[:, None]
    # Whitening L: causal VAR(M) on the normalised training frames (section 4).
    var = fit_var(S_train, M=cfg.whitening.M, ridge=cfg.whitening.ridge)
    # How white Z = L S_J is (section 4's claim), on the frames L was fitted on and on held-out
    # ones; written next to every run as whiteness.json.
    whiteness = {
        "train": whiteness_report(var, S_train),
        "test": whiteness_report(var, S_test) if len(S_test) else {},
    }
    var_state = {k: v.detach().cpu().clone() for k, v in var.state_dict().items()}
    tr_frames, tr_wave, tr_pad = _segments(S_train, x_train, J, seg, context)
    te_frames, te_wave, te_pad = _segments(S_test, x_test, J, seg, context)
    if tr_frames.shape[0] == 0:
        raise ValueError(
            f"data {train_clips.source!r}: clips of {x_train.shape[1]} samples give "
            f"{S_train.shape[2]} frames, fewer than train.segment_frames={seg}"
        )
    tr_sk = _transform_batches(scalogram, tr_wave).float()
    te_sk = (
        _transform_batches(scalogram, te_wave).float()
        if len(te_wave)
        else tr_sk.new_zeros(0, *tr_sk.shape[1:])
    )
    # S_K statistics over the training targets: eq. (5)'s per-channel l1 normaliser and
    # eq. (6)'s target mean and RMS normaliser (reference-code notes sections 5 and 6.1).
    eps = 1e-8
    sk_mean_abs = tr_sk.abs().mean(dim=(0, 2)).clamp_min(eps)
    sk_mean = tr_sk.mean(dim=(0, 2))
    sk_rms = tr_sk.pow(2).mean(dim=(0, 2)).sqrt().clamp_min(eps)
    wave_power = tr_wave.pow(2).mean().clamp_min(eps)
    return Features(
        norm=norm,
        train_frames=tr_frames.contiguous(),
        train_wave=tr_wave.contiguous(),
        train_sk=tr_sk.contiguous(),
        test_frames=te_frames.contiguous(),
        test_wave=te_wave.contiguous(),
        test_sk=te_sk.contiguous(),
        sk_mean_abs=sk_mean_abs,
        sk_mean=sk_mean,
        sk_rms=sk_rms,
        wave_power=wave_power,
        var_state=var_state,
        context=context[0],
        segment_frames=seg,
        ahead=context[1],
        hop=2**J,
        fingerprint=fingerprint,
        key=key,
        extra={"whiteness": whiteness},
        train_pad=tr_pad,
        test_pad=te_pad,
    )


# --------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        here = True
    return _Dist(rank=rank, world=world, local_rank=local, initialised_here=here)


def _resolve_device(cfg: Config, d: _Dist) -> torch.device:
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but no CUDA device is available")
        if want == "cuda":
            want = f"cuda:{d.local_rank}"
    return torch.device(want)


# --------------------------------------------------------------------------- training


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


def _epoch_batches(n: int, per_rank: int, epoch: int, seed: int, d: _Dist) -> list[list[int]]:
    """This rank's batches of one epoch: a permutation fixed by (seed, epoch), so resuming and
    re-running give the same order; each rank takes its share as DistributedSampler does."""
    from torch.utils.data.distributed import DistributedSampler

    indices: Any = range(n)  # DistributedSampler only needs len()
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    idx = list(sampler)
    if len(idx) <= per_rank:
        return [idx]
    # Drop the ragged tail: a tiny last batch would make BatchNorm's statistics meaningless.
    return [idx[i : i + per_rank] for i in range(0, len(idx) - per_rank + 1, per_rank)]


def _seeded(device: torch.device, *key: int) -> torch.Generator:
    """A generator whose state is a pure function of ``key``: resuming from a checkpoint replays
    exactly the same noise with no generator state to save, and ranks draw different noise."""
    g = torch.Generator(device=device)
    h = hashlib.sha256(json.dumps(list(key)).encode()).digest()
    g.manual_seed(int.from_bytes(h[:8], "little") & (2**63 - 1))
    return g


class _CodeChains:
    """Synthetic S_J batches for L_MM: ``batch`` VAR chains X_J = ReLU(L^-1 z) (eq. 1).

    Running the recursion through ``warmup`` frames for every step would cost far more than
    the generator itself (600 frames of (C, M*C) products for C = 973), so the chains are warmed
    up once per epoch and then carried on: each step draws fresh white noise z for ``width``
    new frames, continuing from the last M frames. The VAR forgets its past within a few frames,
    so consecutive windows are nearly independent, and every window is a draw from the
    stationary process. All noise is seeded by (seed, rank, epoch, step) so a resumed run
    replays it exactly (:meth:`start` replays the steps already taken in the epoch).
    """

    def __init__(
        self,
        var: Any,
        batch: int,
        width: int,
        warmup: int,
        seed: int,
        rank: int,
        device: torch.device,
    ) -> None:
        self.var, self.batch, self.width, self.warmup = var, batch, width, warmup
        self.seed, self.rank, self.device = seed, rank, device
        self.state: Tensor | None = None

    def start(self, epoch: int, first_step: int, steps_done: int) -> None:
        """Warm the chains up for ``epoch`` whose first global step is ``first_step``, then
        replay the ``steps_done`` steps already taken in it (resume)."""
        C = int(self.var.channels)
        frames = max(self.warmup, int(self.var.M))
        g = _seeded(self.device, self.seed, self.rank, epoch, -1)
        Z = torch.randn(
            self.batch, C, frames, generator=g, device=self.device, dtype=self.var.A.dtype
        )
        with torch.no_grad():
            self.state = self.var.unwhiten(Z)[:, :, -int(self.var.M) :]
        for k in range(steps_done):
            self.next(first_step + k)

    @torch.no_grad()
    def next(self, step: int) -> Tensor:
        """The synthetic S_J batch (batch, C, width) of global step ``step``."""
        assert self.state is not None, "call start() first"
        g = _seeded(self.device, self.seed, self.rank, step)
        Z = torch.randn(
            self.batch,
            self.state.shape[1],
            self.width,
            generator=g,
            device=self.device,
            dtype=self.state.dtype,
        )
        S = self.var.unwhiten(Z, initial=self.state)
        self.state = S[:, :, -int(self.var.M) :]
        return torch.relu(S).float()


@contextlib.contextmanager
def zero_state(generator: nn.Module, pad: Tensor | None) -> Iterator[None]:
    """Run G on examples whose first ``pad[i]`` frames lie before their clip's start as if G
    started there from a zero state, as :meth:`mmsin.MMSIN.decode` does on a whole clip.

    Feeding zero frames is not the same: G's biases and BatchNorm make its response to silence
    non-zero, and that response would reach the clip's first blocks. Inside this context every
    layer's output is zeroed before each example's start, so the next layer sees there the
    zeros it sees before time 0 when decoding. (``pad`` = None or all zero: nothing changes.)
    """
    module = getattr(generator, "module", generator)  # DDP wraps the generator
    layers = getattr(module, "layers", None)
    if pad is None or layers is None or not bool((pad > 0).any()):
        yield
        return
    state: dict[str, int] = {}

    def remember_width(mod: nn.Module, args: tuple[Tensor, ...]) -> None:
        state["width"] = int(args[0].shape[-1])

    def mask(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
        rate = out.shape[-1] // state["width"]  # output samples per input frame so far
        start = pad.to(out.device)[:, None] * rate
        keep = torch.arange(out.shape[-1], device=out.device)[None, :] >= start
        return out * keep[:, None, :].to(out.dtype)

    handles = [module.register_forward_pre_hook(remember_width)]
    handles += [layer.register_forward_hook(mask) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """BatchNorm in eval mode for the moment-matching pass on synthetic batches.

    The pass then sees G as generation runs it (BatchNorm with its running statistics, an
    affine map that gradients go through), and the running statistics that inference uses are
    updated by real-data batches only.
    """
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


def _amp_context(device: torch.device, enabled: bool) -> Any:
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class _Objective(nn.Module):
    """The training loss of ``cfg.loss`` on fixed features; ``terms`` returns each term."""

    wave_power: Tensor

    def __init__(self, cfg: Config, feats: Features) -> None:
        super().__init__()
        from mmsin.losses import MomentMatchingLoss, ReconstructionLoss

        self.kind = cfg.loss.kind
        self.lam = cfg.loss.lam
        scalogram = build_scalogram(cfg).eval()
        for p in scalogram.parameters():
            p.requires_grad_(False)
        self.rec = ReconstructionLoss(scalogram, feats.sk_mean_abs)
        self.mm = MomentMatchingLoss(scalogram, feats.sk_mean, feats.sk_rms)
        self.register_buffer("wave_power", feats.wave_power.clone())

    def inv(self, x_hat: Tensor, target_sk: Tensor) -> Tensor:
        """L_inv of eq. (5) against cached S_K targets."""
        return self.rec(x_hat, target_sk)  # type: ignore[no-any-return]

    def mse(self, x_hat: Tensor, x: Tensor) -> Tensor:
        from mmsin.losses import waveform_mse

        return waveform_mse(x_hat, x, self.wave_power)


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

    Returns
    -------
    TrainResult
    """
    cfg.validate()
    device_kind = (
        "cuda"
        if cfg.train.device.startswith("cuda")
        or (cfg.train.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    d = _setup_distributed(device_kind)
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
        )
    finally:
        if d.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _load_data(cfg: Config) -> tuple[Any, Any]:
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
    d: _Dist,
) -> TrainResult:
    run_dir = Path(run_dir_arg) if run_dir_arg is not None else paths.runs_dir() / cfg.name
    ckpt_path = run_dir / CHECKPOINT_NAME
    device = _resolve_device(cfg, d)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    state: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file() and not previous_path(ckpt_path).is_file():
            raise FileNotFoundError(f"{ckpt_path}: nothing to resume (train without --resume)")
        state, used = load_latest_checkpoint(ckpt_path)
        _check_resumable(cfg, Config.from_json(state["config"]), used)
    elif d.is_main and (ckpt_path.is_file() or previous_path(ckpt_path).is_file()):
        raise FileExistsError(
            f"{run_dir}: run exists already; pass --resume to continue it or --run NEW_NAME"
        )

    if train_clips is None or test_clips is None:
        train_clips, test_clips = _load_data(cfg)

    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % (2**32))  # noqa: NPY002 (seed whatever third-party code uses)
    import random

    random.seed(cfg.train.seed)

    # Model first (its receptive field sets the segment context), seeded identically on every
    # rank so that DDP starts from the same weights.
    scattering_channels = int(build_scattering(cfg).num_channels)
    generator = build_generator(cfg, scattering_channels)
    context = context_frames(cfg, generator)

    # Rank 0 computes the cache; the others wait and read it.
    if d.world > 1 and not d.is_main:
        dist.barrier()
    feats = prepare_features(
        cfg,
        train_clips,
        test_clips,
        cache_dir=cache_dir,
        context=context,
        progress=progress and d.is_main,
    )
    if d.world > 1 and d.is_main:
        dist.barrier()
    if state is not None and state.get("data_fingerprint") != feats.fingerprint:
        raise ValueError(
            f"{ckpt_path}: was trained on other data (fingerprint {state.get('data_fingerprint')}"
            f" != {feats.fingerprint}); start a new run instead of --resume"
        )

    generator = generator.to(device)
    objective = _Objective(cfg, feats).to(device)
    # The VAR in float64, as at inference (mmsin.model): its recursion runs close to the edge
    # of stability (growth rate up to 0.995), where float32 rounding accumulates.
    var = restore_var(feats.var_state).to(device).double()
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        if device.type == "cuda":
            generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            model: nn.Module = DDP(generator, device_ids=[device.index])
        else:
            model = DDP(generator)
    else:
        model = generator

    optimizer = torch.optim.Adam(generator.parameters(), lr=cfg.train.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.train.lr_milestones), gamma=cfg.train.lr_gamma
    )
    amp = bool(cfg.train.amp and device.type == "cuda")
    use_scaler = amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    epoch, step_in_epoch, global_step = 0, 0, 0
    history: dict[str, list[float]] = {"train_loss": [], "test_inv": [], "epoch": []}
    if state is not None:
        generator.load_state_dict(state["generator"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and use_scaler:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        epoch, step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        global_step = int(state["global_step"])
        history = {k: list(v) for k, v in state.get("history", history).items()}
        log.info("resumed %s at epoch %d step %d", ckpt_path, epoch, global_step)

    if d.is_main:
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
    writer = _summary_writer(run_dir / "tb", enabled=tensorboard and d.is_main)

    train_frames = feats.train_frames
    train_wave = feats.train_wave
    train_sk = feats.train_sk
    n = train_frames.shape[0]
    per_rank = max(1, min(cfg.train.batch_size, n) // d.world)
    mm_per_rank = max(1, cfg.loss.mm_batch // d.world)
    width = feats.width
    steps_per_epoch = len(_epoch_batches(n, per_rank, 0, cfg.train.seed, d))
    total_steps = cfg.train.epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)

    chains = (
        _CodeChains(var, mm_per_rank, width, cfg.whitening.warmup, cfg.train.seed, d.rank, device)
        if cfg.loss.kind == "inv+mm"
        else None
    )

    def payload() -> dict[str, Any]:
        p: dict[str, Any] = {
            "config": cfg.to_json(),
            "generator": generator.state_dict(),
            "in_channels": scattering_channels,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": get_rng_state(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
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
            "data_source": str(getattr(train_clips, "source", "")),
            "git_revision": git_revision() or "",
            "history": history,
            "torch_version": str(torch.__version__),
        }
        if use_scaler:
            p["scaler"] = scaler.state_dict()
        return p

    last_ckpt: Path | None = ckpt_path if ckpt_path.is_file() else None

    def write_checkpoint() -> None:
        nonlocal last_ckpt
        if not d.is_main:
            return
        if not all(torch.isfinite(p).all() for p in generator.parameters()):
            log.error("not writing a checkpoint: the weights contain NaN/inf")
            return
        try:
            last_ckpt = save_checkpoint(ckpt_path, payload())
        except (OSError, RuntimeError) as exc:
            # The previous file is untouched (atomic replace); keep training.
            log.error("checkpoint write to %s failed (%s); kept the last good one", ckpt_path, exc)

    bar = _progress_bar(total_steps, global_step, enabled=progress and d.is_main)
    nonfinite = 0
    stopped_early = False
    t_start = time.perf_counter()
    try:
        while epoch < cfg.train.epochs and global_step < total_steps:
            model.train()
            batches = _epoch_batches(n, per_rank, epoch, cfg.train.seed, d)
            losses: list[float] = []
            if chains is not None:
                chains.start(epoch, global_step - step_in_epoch, step_in_epoch)
            while step_in_epoch < len(batches) and global_step < total_steps:
                idx = torch.as_tensor(batches[step_in_epoch])
                frames = train_frames[idx].to(device, non_blocking=True)
                wave = train_wave[idx].to(device, non_blocking=True)
                sk = train_sk[idx].to(device, non_blocking=True)
                pad = feats.train_pad[idx] if feats.train_pad is not None else None
                optimizer.zero_grad(set_to_none=True)
                codes = chains.next(global_step) if chains is not None else None
                terms = _loss_terms(
                    cfg, model, objective, frames, wave, sk, codes, feats, amp, device, pad=pad
                )
                loss = terms["inv"] if "inv" in terms else terms["mse"]
                if "mm" in terms:
                    loss = loss + cfg.loss.lam * terms["mm"]
                finite = torch.isfinite(loss.detach())
                if d.world > 1:
                    # Every rank must agree to skip, or DDP's all-reduce would hang.
                    flag = finite.float().to(device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
                    finite = flag > 0
                if not bool(finite):
                    bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
                    nonfinite += 1
                    log.error(
                        "non-finite loss at epoch %d step %d (term(s): %s); step skipped",
                        epoch,
                        global_step,
                        ", ".join(bad) or "total",
                    )
                    if nonfinite >= cfg.train.max_nonfinite_steps:
                        raise TrainingDiverged(
                            f"loss non-finite for {nonfinite} steps in a row (last at epoch "
                            f"{epoch} step {global_step}, term(s) {', '.join(bad) or 'total'});"
                            f" last good checkpoint: {last_ckpt}"
                        )
                    step_in_epoch += 1
                    global_step += 1
                    continue
                nonfinite = 0
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step_in_epoch += 1
                global_step += 1
                value = float(loss.detach())
                losses.append(value)
                if writer is not None:
                    writer.add_scalar("loss/total", value, global_step)
                    for k, v in terms.items():
                        writer.add_scalar(f"loss/{k}", float(v.detach()), global_step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        {"epoch": epoch, **{k: f"{float(v):.4f}" for k, v in terms.items()}}
                    )
            if step_in_epoch < len(batches):
                stopped_early = True  # max_steps reached mid-epoch
                break
            # End of epoch.
            epoch += 1
            step_in_epoch = 0
            scheduler.step()
            history["epoch"].append(float(epoch))
            history["train_loss"].append(float(np.mean(losses)) if losses else float("nan"))
            history["test_inv"].append(float("nan"))
            last = epoch == cfg.train.epochs
            if d.is_main and (epoch % cfg.train.checkpoint_every == 0 or last):
                test_inv = evaluate_inv(generator, objective, feats, device, split="test")
                history["test_inv"][-1] = test_inv
                if writer is not None:
                    writer.add_scalar("test/inv", test_inv, global_step)
                    writer.add_scalar("train/epoch_loss", history["train_loss"][-1], global_step)
            if (
                d.is_main
                and writer is not None
                and cfg.train.preview_every
                and (epoch % cfg.train.preview_every == 0 or last)
            ):
                _write_previews(writer, cfg, generator, var, feats, device, global_step)
            if epoch % cfg.train.checkpoint_every == 0 or last:
                write_checkpoint()
        else:
            stopped_early = epoch < cfg.train.epochs
        if stopped_early:
            write_checkpoint()
    except KeyboardInterrupt:
        # An interrupt almost always lands in a forward/backward pass, before the optimiser
        # step, so the saved state is that of the last completed step and --resume loses
        # nothing. (Only a Ctrl-C between optimizer.step and the counter update would replay
        # one step.)
        log.warning("interrupted at epoch %d step %d; saving a checkpoint", epoch, global_step)
        write_checkpoint()
        raise
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
    log.info("trained %d steps in %.1f s", global_step, time.perf_counter() - t_start)
    if d.world > 1:
        dist.barrier()
    return TrainResult(
        run_dir=run_dir,
        checkpoint=last_ckpt,
        epochs_done=epoch,
        global_step=global_step,
        history=history,
        stopped_early=stopped_early,
        generator=generator,
    )


def _loss_terms(
    cfg: Config,
    model: nn.Module,
    objective: _Objective,
    frames: Tensor,
    wave: Tensor,
    sk: Tensor,
    codes: Tensor | None,
    feats: Features,
    amp: bool,
    device: torch.device,
    pad: Tensor | None = None,
) -> dict[str, Tensor]:
    """One step's loss terms: ``mse`` or ``inv`` on the real batch, plus ``mm`` (eq. 6) on G
    applied to the synthetic S_J batch ``codes`` = ReLU(L^-1 z) when given.

    The real batch starts from a zero state at clip starts (``pad``, :func:`zero_state`); the
    synthetic one runs with BatchNorm in eval mode (:func:`_frozen_batchnorm`)."""
    terms: dict[str, Tensor] = {}
    with _amp_context(device, amp), zero_state(model, pad):
        out = model(frames)
    # Only the segment's blocks have all the frames they depend on (context before/after).
    x_hat = feats.crop(out).float()
    if cfg.loss.kind == "mse":
        terms["mse"] = objective.mse(x_hat, wave)
    else:
        terms["inv"] = objective.inv(x_hat, sk)
    if codes is not None:
        with _amp_context(device, amp), _frozen_batchnorm(model):
            gen = model(codes)
        terms["mm"] = objective.mm(feats.crop(gen).float())
    return terms


@torch.no_grad()
def evaluate_inv(
    generator: nn.Module,
    objective: _Objective,
    feats: Features,
    device: torch.device,
    split: str = "test",
    batch: int = 64,
) -> float:
    """Mean L_inv (eq. 5) of the reconstructions G(S_J x) of a split's segments, eval mode."""
    frames = getattr(feats, f"{split}_frames")
    sk = getattr(feats, f"{split}_sk")
    pad = getattr(feats, f"{split}_pad", None)
    if frames.shape[0] == 0:
        return float("nan")
    was_training = generator.training
    generator.eval()
    total, count = 0.0, 0
    for i in range(0, frames.shape[0], batch):
        f = frames[i : i + batch].to(device)
        with zero_state(generator, None if pad is None else pad[i : i + batch]):
            x_hat = feats.crop(generator(f)).float()
        total += float(objective.inv(x_hat, sk[i : i + batch].to(device))) * f.shape[0]
        count += f.shape[0]
    generator.train(was_training)
    return total / count


def _check_resumable(cfg: Config, saved: Config, path: Path) -> None:
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


# --------------------------------------------------------------------------- logging helpers


def _summary_writer(folder: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        log.warning("tensorboard is not installed; no TensorBoard logs")
        return None
    return SummaryWriter(log_dir=str(folder))


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


@torch.no_grad()
def _write_previews(
    writer: Any,
    cfg: Config,
    generator: nn.Module,
    var: Any,
    feats: Features,
    device: torch.device,
    step: int,
    count: int = 2,
) -> None:
    """TensorBoard audio and log-spectrogram previews: reconstructions of the first test (or
    train) segments next to their targets, and generations from white noise."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fs = cfg.scattering.fs
    split = "test" if feats.test_frames.shape[0] else "train"
    frames = getattr(feats, f"{split}_frames")[:count].to(device)
    target = getattr(feats, f"{split}_wave")[:count]
    was_training = generator.training
    generator.eval()
    recon = feats.crop(generator(frames)).float().cpu()
    g = torch.Generator(device=device).manual_seed(cfg.train.seed)
    S = var.sample(count, frames.shape[2], warmup=cfg.whitening.warmup, generator=g).float()
    gen = feats.crop(generator(S.to(device))).float().cpu()
    generator.train(was_training)
    rows = [("target", target), ("reconstruction", recon), ("generated", gen)]
    for name, x in rows:
        for i in range(x.shape[0]):
            peak = float(x[i].abs().max()) or 1.0
            writer.add_audio(f"{name}/{i}", (x[i] / peak).clamp(-1, 1)[None], step, fs)
    fig, axes = plt.subplots(
        len(rows), count, figsize=(3.2 * count, 2.2 * len(rows)), squeeze=False
    )
    for r, (name, x) in enumerate(rows):
        for i in range(min(count, x.shape[0])):
            ax = axes[r][i]
            nfft = int(min(256, 2 ** int(np.log2(max(x.shape[1] // 4, 2)))))
            with np.errstate(divide="ignore"):  # silent frames: -inf dB, drawn as the floor
                ax.specgram(
                    x[i].numpy(),
                    NFFT=nfft,
                    Fs=fs,
                    noverlap=3 * nfft // 4,
                    cmap="magma",
                    scale="dB",
                )
            ax.set_title(f"{name} {i}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    writer.add_figure("log-spectrogram", fig, step)
    plt.close(fig)


def iter_checkpoints(root: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Checkpoint files of all runs under ``root`` (default ``paths.runs_dir()``), newest first."""
    root = Path(root) if root is not None else paths.runs_dir()
    if not root.is_dir():
        return iter(())
    found = [p for p in root.glob(f"*/{CHECKPOINT_NAME}") if p.is_file()]
    return iter(sorted(found, key=lambda p: p.stat().st_mtime, reverse=True))
