"""Training-step throughput of the MM-SIN generator for the ``small`` and ``paper`` shapes.

One step = generator forward on a real batch (context + segment frames) + L_inv on cached S_K
targets + generator forward on a synthetic batch + L_MM + backward + Adam (the ``inv+mm`` loss,
the heaviest). The time share of the scattering losses is measured by running the same step
with the losses replaced by a trivial mean of squares (generator only): share = 1 - t_G / t.

Inputs are random tensors of the right shapes (the fixed features are cached in training, so
the data pipeline costs nothing per step). On CPU the ``paper`` shape runs with a reduced
batch (reported); examples/s is per training example (the MM batch is extra work per step).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

SHAPES = {
    # name: (preset, batch on CPU, batch on CUDA)
    "small": ("small", 16, 16),
    "paper": ("paper", 8, 128),
}


def _step_fn(preset: str, batch: int, device: str, losses: bool) -> Any:
    from mmsin.assembly import build_generator, build_scalogram, context_frames
    from mmsin.config import preset as make_preset
    from mmsin.losses import MomentMatchingLoss, ReconstructionLoss
    from mmsin.scattering.timefrequency import channel_count

    cfg = make_preset(preset)
    s = cfg.scattering
    C = int(channel_count(J=s.J, Q=s.Q, P=s.P, variant=s.variant))
    gen = build_generator(cfg, C).to(device)
    before, after = context_frames(cfg, gen)
    seg = cfg.train.segment_frames
    width = before + seg + after
    hop = 2**s.J
    scalogram = build_scalogram(cfg).to(device)
    t_k = seg * hop // 2**cfg.loss.K
    Ck = int(scalogram.num_channels)
    rec = ReconstructionLoss(scalogram, torch.ones(Ck)).to(device)
    mm = MomentMatchingLoss(scalogram, torch.ones(Ck), torch.ones(Ck)).to(device)
    opt = torch.optim.Adam(gen.parameters(), lr=cfg.train.lr)
    frames = torch.rand(batch, C, width, device=device)
    codes = torch.rand(batch, C, width, device=device)
    sk = torch.rand(batch, Ck, t_k, device=device)

    def crop(out: torch.Tensor) -> torch.Tensor:
        return out[:, before * hop : (before + seg) * hop]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        a = crop(gen(frames))
        b = crop(gen(codes))
        if losses:
            loss = rec(a, sk) + cfg.loss.lam * mm(b)
        else:
            loss = a.pow(2).mean() + b.pow(2).mean()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def _time(step: Any, repeats: int) -> float:
    step()  # warm-up (allocations, kernels)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(threads: int, device: str = "cpu", quick: bool = False) -> list[dict[str, Any]]:
    """Measure training steps; returns table rows for ``benchmarks/run.py``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
    dev_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    rows: list[dict[str, Any]] = []
    repeats = 2 if quick else 5
    for name, (preset, b_cpu, b_cuda) in SHAPES.items():
        batch = b_cuda if device == "cuda" else b_cpu
        if quick:
            batch = max(2, batch // 4)
        t_full = _time(_step_fn(preset, batch, device, losses=True), repeats)
        t_gen = _time(_step_fn(preset, batch, device, losses=False), repeats)
        share = max(0.0, 1.0 - t_gen / t_full)
        rows.append(
            {
                "case": f"train-step {name} (examples/s)",
                "ours": {"value": batch / t_full, "unit": "examples/s"},
                "unit": "examples/s",
                "device_name": dev_name,
                "batch": batch,
                "mm_batch": batch,
                "step_ms": t_full * 1e3,
                "generator_only_step_ms": t_gen * 1e3,
                "scattering_loss_time_share": share,
            }
        )
    return rows


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1, quick=True), indent=2))
