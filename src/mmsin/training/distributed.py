"""Devices and DistributedDataParallel set-up for training.

Devices: CPU, one CUDA GPU, or several GPUs/processes under ``torchrun``
(DistributedDataParallel; detected from the RANK/WORLD_SIZE environment variables; gloo on CPU,
nccl on CUDA). Only rank 0 (:attr:`Dist.is_main`) writes files. Every collective call of the
training loop is here, so that a single process never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmsin.config import Config

__all__ = [
    "Dist",
    "all_ranks_finite",
    "barrier",
    "device_kind",
    "epoch_batches",
    "resolve_device",
    "setup_distributed",
    "teardown_distributed",
    "wrap_for_ranks",
]


@dataclass
class Dist:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def device_kind(cfg: Config) -> str:
    """``"cuda"`` or ``"cpu"``: the kind of device ``cfg.train.device`` asks for."""
    return (
        "cuda"
        if cfg.train.device.startswith("cuda")
        or (cfg.train.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )


def setup_distributed(device_kind: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        here = True
    return Dist(rank=rank, world=world, local_rank=local, initialised_here=here)


def teardown_distributed(d: Dist) -> None:
    """Leave the process group if :func:`setup_distributed` created it."""
    if d.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(cfg: Config, d: Dist) -> torch.device:
    """The device of this rank (``cuda`` means this rank's local GPU)."""
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but no CUDA device is available")
        if want == "cuda":
            want = f"cuda:{d.local_rank}"
    return torch.device(want)


def barrier(d: Dist) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if d.world > 1:
        dist.barrier()


def wrap_for_ranks(
    generator: nn.Module, device: torch.device, d: Dist
) -> tuple[nn.Module, nn.Module]:
    """``(generator, model)``: the generator to optimise and save (with synchronised BatchNorm
    on GPUs across ranks) and the module the loop calls (itself, or its DDP wrapper)."""
    if d.world <= 1:
        return generator, generator
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        generator = nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        return generator, DDP(generator, device_ids=[device.index])
    return generator, DDP(generator)


def all_ranks_finite(loss: Tensor, d: Dist, device: torch.device) -> bool:
    """Whether ``loss`` is finite on every rank: all must agree to skip a step, or DDP's
    all-reduce of the gradients would hang."""
    finite = torch.isfinite(loss.detach())
    if d.world > 1:
        flag = finite.float().to(device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        finite = flag > 0
    return bool(finite)


def epoch_batches(n: int, per_rank: int, epoch: int, seed: int, d: Dist) -> list[list[int]]:
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
