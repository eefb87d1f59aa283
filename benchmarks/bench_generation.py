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

The shipped generator (the ``pitched`` preset's partials head with free frequencies,
:class:`mmsin.generators.free_partials.FreePartialGenerator`): the shipped ``notes`` model's weights
(float16 upcast at load; a random ``pitched`` generator if no model is found, said in the
row's notes), on random S_J-shaped frames (the cost does not depend on them: every oscillator
is synthesised, silent or not). Rows:

- ``pitched-stream-b1``: batch-1 streaming, one frame per push, with the cached state
  (:mod:`mmsin.generators.partials_stream`); target >= 300x on one thread. The peer is the previous
  streamer, which re-ran the controls over the last ``frame_span`` frames at every push
  (:class:`RerenderStreamer`, kept here to compare; checked equal to the cached one).
- ``pitched-stream-b1-8frames``: the same with 8 frames per push.
- ``... compiled``: the same streamers with each push one graph made by ``torch.compile``
  (``g.stream(1, compiled=True)``; the first push compiles, ``compile_s``); the peer is the
  eager cached streamer.
- ``pitched-batch32``: whole-sequence forward, batch 32 x 16 frames.
- ``pitched-train-step``: forward + backward of the head in training mode on the preset's
  batch (context + segment frames), a mean of squares standing in for the losses.
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

from mmsin.generators.conv import CausalGenerator  # noqa: E402
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


def shipped_generator(device: str) -> tuple[Any, str]:
    """The shipped model's generator in eval mode, and a note on where it came from."""
    from mmsin.model import MMSIN

    try:
        g = MMSIN.load("notes").generator
        note = "shipped notes model"
    except (FileNotFoundError, ValueError) as exc:  # no model here: same shapes, random weights
        from mmsin.assembly import build_generator
        from mmsin.config import preset

        torch.manual_seed(0)
        g = build_generator(preset("pitched"), CHANNELS)
        note = f"random pitched generator ({type(exc).__name__}: no shipped model)"
    return g.float().eval().to(device), note


class RerenderStreamer:
    """The free partials streamer before the cached state (the peer): every push re-runs the
    controls over the last ``frame_span`` frames and the new ones, then synthesises the new
    blocks from the carried synthesis state."""

    def __init__(self, g: Any, batch: int) -> None:
        self.g = g
        self.history = next(g.parameters()).new_zeros(batch, g.in_channels, 0)
        self.state = g.zero_state(batch, self.history)
        self.seen = 0

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> torch.Tensor:
        g, k = self.g, frames.shape[-1]
        window = torch.cat([self.history, frames], dim=-1)
        c = g.controls(window).tail(k, g.m)
        y, self.state = g.synthesize(c, self.state, self.seen * g.hop)
        self.history = window[..., -g.frame_span[0] :]
        self.seen += k
        return y


def stream_times(s: Any, frames: torch.Tensor, pushes: int, device: str) -> list[float]:
    """Per-push wall times of pushing ``frames`` into the streamer ``s`` (after 4 warm-ups)."""
    for _ in range(4):
        s.push(frames)
    _sync(device)
    times = []
    for _ in range(pushes):
        t0 = time.perf_counter()
        s.push(frames)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def pitched_rows(device: str, quick: bool, row: Callable[..., None]) -> None:
    """Rows of the shipped generator (module docstring)."""
    from mmsin.assembly import context_frames
    from mmsin.config import preset

    g, note = shipped_generator(device)
    frame_s = g.hop / FS
    torch.manual_seed(2)
    z = torch.rand(1, CHANNELS, 24, device=device) * 0.02

    def pushed(s: Any, k: int) -> torch.Tensor:
        """All of z pushed k frames at a time into the streamer ``s``."""
        return torch.cat([s.push(z[..., i : i + k]) for i in range(0, z.shape[-1], k)], -1)

    # the cached streamer equals the re-rendering one (and both the offline forward)
    torch.testing.assert_close(
        pushed(g.stream(1), 1), pushed(RerenderStreamer(g, 1), 1), rtol=1e-3, atol=1e-3
    )
    pushes = 40 if quick else 200

    def stream_row(case: str, k: int, times: list[float], peer_mean: float, **more: Any) -> float:
        """A real-time-factor row of pushes of k frames that took ``times``, against a peer
        whose mean push took ``peer_mean``; returns the mean push time."""
        mean = statistics.fmean(times)
        rtf = k * frame_s / mean
        target = {"target": ">= 300x real time", "target_met": rtf >= 300} if k == 1 else {}
        row(
            f"{case} (real-time factor)",
            rtf,
            "x",
            peer={"value": k * frame_s / peer_mean, "unit": "x"},
            ratio=peer_mean / mean,
            latency_mean_ms=mean * 1e3 / k,
            latency_p90_ms=sorted(times)[int(0.9 * (len(times) - 1))] * 1e3,
            notes=note,
            **more,
            **target,
        )
        return mean

    for k in (1, 8):
        n = max(5, pushes // k)
        t_old = stream_times(RerenderStreamer(g, 1), z[..., :k], n, device)
        m_old = statistics.fmean(t_old)
        name = "pitched-stream-b1" if k == 1 else f"pitched-stream-b1-{k}frames"
        m_new = stream_row(
            name,
            k,
            stream_times(g.stream(1), z[..., :k], n, device),
            m_old,
            peer_latency_mean_ms=m_old * 1e3 / k,
            peer_note="previous streamer: re-renders the last frame_span frames per push",
        )
        if k == 1:
            row(f"{name} latency per frame (mean)", m_new * 1e3, "ms", peer_ms=m_old * 1e3)
        # the same streamer with each push one graph from torch.compile (checked equal first)
        comp = g.stream(1, compiled=True)
        t0 = time.perf_counter()
        a = pushed(comp, k)
        compile_s = time.perf_counter() - t0
        torch.testing.assert_close(a, pushed(g.stream(1), k), rtol=1e-4, atol=1e-5)
        comp.reset()
        stream_row(
            f"{name} compiled",
            k,
            stream_times(comp, z[..., :k], n, device),
            m_new,
            compile_s=compile_s,
            peer_note="the same cached streamer, eager",
        )
    batch, frames = (32, 8) if quick else (32, 16)
    zb = torch.rand(batch, CHANNELS, frames, device=device) * 0.02
    with torch.no_grad():
        t = statistics.median(_times(lambda: g(zb), 2 if quick else 3, device, warmup=1))
    samples = batch * frames * g.hop
    row(
        "pitched-batch32 throughput",
        samples / t,
        "samples/s",
        real_time_factor=samples / t / FS,
        notes=note,
    )
    # A training step of the head: forward + backward on the preset's batch and frames.
    cfg = preset("pitched")
    before, after = context_frames(cfg, g)
    width = before + cfg.train.segment_frames + after
    tb = cfg.train.batch_size
    zt = torch.rand(tb, CHANNELS, width, device=device) * 0.02
    g.train()

    def step() -> None:
        g.zero_grad(set_to_none=True)
        with torch.enable_grad():
            g(zt).square().mean().backward()

    t = statistics.median(_times(step, 2 if quick else 3, device, warmup=1))
    g.eval()
    row(
        f"pitched-train-step b{tb} x {width} frames (forward+backward)",
        t * 1e3,
        "ms",
        examples_per_s=tb / t,
        notes=note,
    )


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
    # The shipped generator, in the same run as the paper's G.
    pitched_rows(device, quick, row)
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
