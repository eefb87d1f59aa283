"""Several processes: a real 2-process DistributedDataParallel training (gloo, CPU) launched
with ``python -m torch.distributed.run``, as a user would with ``torchrun``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmsin.losses")

_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_training import clips, tiny
    from mmsin.training import train

    out = {out!r}
    tr, te = clips()
    cfg = tiny(3, "train.batch_size=4", "loss.mm_batch=4")
    res = train(cfg, os.path.join(out, "run"), train_clips=tr, test_clips=te,
                cache_dir=os.path.join(out, "cache"), progress=False, tensorboard=False)
    rank = int(os.environ["RANK"])
    torch.save(res.generator.state_dict(), os.path.join(out, f"rank{{rank}}.pt"))
    with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
        json.dump({{"loss": res.history["train_loss"], "steps": res.global_step}}, f)
    """
)


def test_two_process_gloo_training_keeps_ranks_identical(tmp_path: Path) -> None:
    tests = str(Path(__file__).resolve().parent)
    script = tmp_path / "ddp_train.py"
    script.write_text(_SCRIPT.format(tests=tests, out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "0",
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            "localhost:0",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in w0:
        if w0[k].is_floating_point() and "running" not in k:
            assert torch.equal(w0[k], w1[k]), k  # gradients were all-reduced
    h0 = json.loads((tmp_path / "rank0.json").read_text())
    h1 = json.loads((tmp_path / "rank1.json").read_text())
    # 18 segments, global batch 4 -> 2 per rank, 4 steps per epoch on each rank.
    assert h0["steps"] == h1["steps"] == 3 * 4
    loss = h0["loss"]
    assert all(map(torch.isfinite, torch.tensor(loss))) and loss[-1] < loss[0]
    # Only rank 0 wrote the checkpoint and the config.
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_torchrun_of_the_mmsin_command_trains_one_run(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 -m mmsin train ...` as the README shows: one run folder,
    one checkpoint that loads, one report line (rank 0 only)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _tiny import TINY, tiny_clips
    from mmsin.io import save_audio
    from mmsin.model import MMSIN

    tr, te = tiny_clips()
    audio = tmp_path / "audio"
    for i, clip in enumerate([*tr.audio, *te.audio]):
        save_audio(audio / f"clip{i}.wav", torch.as_tensor(clip).repeat(4).numpy(), 4096)
    sets = [a for t in TINY if "device" not in t for a in ("--set", t)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MMSIN_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", "0", "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    cmd += ["-m", "mmsin", "train", "--data", str(audio), *sets, "-q"]
    cmd += ["--set", "train.epochs=2", "--set", "data.seconds=0.5", "--set", "train.device=cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained ") == 1, proc.stdout
    model = MMSIN.load(tmp_path / "runs" / "tiny")
    y = model.decode(model.encode(torch.as_tensor(te.audio)))
    assert torch.isfinite(y).all()
