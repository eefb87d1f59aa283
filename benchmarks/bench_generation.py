"""Generation speed of the MM-SIN decoder: streaming real-time factor, throughput, FLOP efficiency.

Called by ``benchmarks/run.py`` as ``run(threads)`` in a fresh subprocess; also runnable alone::

    .venv/bin/python benchmarks/bench_generation.py [--threads 1] [--device cpu] [--quick]

Workload: the paper's generator (973 input channels, J = 10, kernel 7, causal) in eval mode at
fs = 4096 Hz (one frame = 1024 samples = 0.25 s), with random weights and BatchNorm statistics
(speed does not depend on training). Rows:

- ``gen-stream-b1``: batch-1 streaming, one frame per push; real-time factor = audio seconds
  produced per wall second (target >= 100x on one CPU thread), with the mean and p90 latency
  per frame.
- ``gen-stream-b1-8frames``: the same with 8 frames per push (2 s of audio per call).
- ``gen-batch32``: whole-sequence forward, batch 32 x 16 frames; samples per second. The peer
  is the reference code's formulation (explicit zero insertion, then a full Conv1d), which
  multiplies the inserted zeros.
- ``gen-flops``: the analytic FLOP count of one frame (``CausalGenerator.flops_per_frame``),
  the measured float32 1024^3 matmul rate of this machine and thread count, and the fraction of
  it each generation mode reaches.
- ``var-unwhiten-b1`` / ``var-unwhiten-b32``: the VAR recursion L^-1 (M = 4, 973 channels)
  per frame, separately from the network.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mmsin.generator import CausalGenerator  # noqa: E402
from mmsin.whitening import VAR  # noqa: E402

FS = 4096
CHANNELS = 973
J = 10


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _times(fn: Callable[[], Any], repeats: int, device: str, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def matmul_peak(device: str, repeats: int = 5) -> float:
    """Measured float32 GFLOP/s of a 1024 x 1024 x 1024 matmul (best of ``repeats``)."""
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    best = min(_times(lambda: a @ b, repeats, device))
    return 2 * 1024**3 / best / 1e9


def make_generator(device: str) -> CausalGenerator:
    torch.manual_seed(0)
    g = CausalGenerator(CHANNELS, J=J)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_var.uniform_(0.5, 1.5)
    return g.eval().to(device)


def reference_style_forward(g: CausalGenerator, frames: torch.Tensor) -> torch.Tensor:
    """The reference code's formulation: explicit zero insertion, then Conv1d over every slot."""
    h = frames
    weights = [layer.conv.weight.flip(-1).transpose(0, 1).contiguous() for layer in g.layers]
    for layer, w in zip(g.layers, weights, strict=True):
        up = h.new_zeros(*h.shape[:2], 2 * h.shape[2])
        up[..., ::2] = h
        y = F.conv1d(F.pad(up, (g.past, g.look_ahead)), w, layer.conv.bias)
        h = layer.finish(y)
    return h[:, 0]


def stream_frames(
    g: CausalGenerator, frames_per_push: int, pushes: int, device: str
) -> list[float]:
    """Per-push wall times of a batch-1 stream (after 4 warm-up pushes)."""
    s = g.stream(1)
    z = torch.rand(1, CHANNELS, frames_per_push, device=device)
    for _ in range(4):
        s.push(z)
    _sync(device)
    times = []
    for _ in range(pushes):
        t0 = time.perf_counter()
        s.push(z)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def random_var(device: str) -> VAR:
    torch.manual_seed(1)
    var = VAR(CHANNELS, 4, dtype=torch.float32)
    with torch.no_grad():
        var.A.normal_(0, 0.2 / (4 * CHANNELS) ** 0.5)  # a stable random VAR
        var.b.uniform_(0, 1)
    return var.to(device)


@torch.no_grad()
def run(threads: int, device: str = "cpu", quick: bool = False) -> list[dict[str, Any]]:
    """Measure generation; returns table rows for ``benchmarks/run.py``."""
    torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
    dev_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    hop = 2**J
    frame_s = hop / FS
    g = make_generator(device)
    flops = g.flops_per_frame()
    peak = matmul_peak(device)
    rows: list[dict[str, Any]] = []

    def row(case: str, value: float, unit: str, **extra: Any) -> None:
        rows.append(
            {
                "case": case,
                "ours": {"value": value, "unit": unit},
                "unit": unit,
                "device_name": dev_name,
                **extra,
            }
        )

    # Batch-1 streaming, one frame per push.
    pushes = 40 if quick else 200
    t1 = stream_frames(g, 1, pushes, device)
    mean1 = statistics.fmean(t1)
    p90 = sorted(t1)[int(0.9 * (len(t1) - 1))]
    rtf1 = frame_s / mean1
    row(
        "gen-stream-b1 (real-time factor)",
        rtf1,
        "x",
        target=">= 100x real time",
        target_met=rtf1 >= 100,
        latency_mean_ms=mean1 * 1e3,
        latency_p90_ms=p90 * 1e3,
        fraction_of_matmul_peak=flops / mean1 / 1e9 / peak,
    )
    row("gen-stream-b1 latency per frame (mean)", mean1 * 1e3, "ms", latency_p90_ms=p90 * 1e3)
    row("gen-stream-b1 latency per frame (p90)", p90 * 1e3, "ms")
    # Batch-1 streaming, 8 frames per push.
    t8 = stream_frames(g, 8, max(5, pushes // 8), device)
    mean8 = statistics.fmean(t8)
    row(
        "gen-stream-b1-8frames (real-time factor)",
        8 * frame_s / mean8,
        "x",
        fraction_of_matmul_peak=8 * flops / mean8 / 1e9 / peak,
    )
    # Batched whole-sequence throughput, with the reference formulation as the peer.
    batch, frames = (32, 8) if quick else (32, 16)
    z = torch.rand(batch, CHANNELS, frames, device=device)
    reps = 2 if quick else 3
    ours_t = statistics.median(_times(lambda: g(z), reps, device, warmup=1))
    peer_t = statistics.median(
        _times(lambda: reference_style_forward(g, z), reps, device, warmup=1)
    )
    torch.testing.assert_close(g(z), reference_style_forward(g, z), rtol=1e-4, atol=1e-4)
    samples = batch * frames * hop
    row(
        "gen-batch32 throughput",
        samples / ours_t,
        "samples/s",
        peer={"value": samples / peer_t, "unit": "samples/s"},
        ratio=peer_t / ours_t,
        real_time_factor=samples / ours_t / FS,
        fraction_of_matmul_peak=batch * frames * flops / ours_t / 1e9 / peak,
        peer_note="explicit zero insertion + Conv1d (reference formulation)",
    )
    row(
        "gen-flops per frame",
        flops / 1e6,
        "MFLOP",
        matmul_peak_gflops=peak,
        params=sum(p.numel() for p in g.parameters()),
    )
    row("matmul 1024^3 float32 peak", peak, "GFLOP/s")
    # The VAR recursion L^-1 alone.
    var = random_var(device)
    n_frames = 50 if quick else 200
    for b in (1, 32):
        zz = torch.randn(b, CHANNELS, n_frames, device=device)
        tv = statistics.median(_times(lambda zz=zz: var.unwhiten(zz), 2, device, warmup=1))
        per = tv / n_frames
        row(
            f"var-unwhiten-b{b} per frame",
            per * 1e3,
            "ms",
            real_time_factor=b * frame_s / per,
            fraction_of_matmul_peak=b * 2 * 4 * CHANNELS * CHANNELS / per / 1e9 / peak,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="MM-SIN generation speed (see module docstring)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    rows = run(args.threads, args.device, quick=args.quick)
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
