"""Several processes: a real 2-process DistributedDataParallel training (gloo, CPU) launched
with ``python -m torch.distributed.run``, as a user would with ``torchrun``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("mmsin.losses")

# Global batch 4 -> 2 segments per rank; loss.kind=inv so that every term is a mean over the
# examples of the batch (L_MM's codes are drawn per rank and would not be a union batch).
_CFG = ("train.batch_size=4", "loss.kind=inv")
_EPOCHS = 3

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
    cfg = tiny({epochs}, *{cfg!r})
    res = train(cfg, os.path.join(out, "run"), train_clips=tr, test_clips=te,
                cache_dir=os.path.join(out, "cache"), progress=False, tensorboard=False)
    rank = int(os.environ["RANK"])
    torch.save(res.generator.state_dict(), os.path.join(out, f"rank{{rank}}.pt"))
    with open(os.path.join(out, f"rank{{rank}}.json"), "w") as f:
        json.dump({{"loss": res.history["train_loss"], "steps": res.global_step}}, f)
    """
)


def _union_batch_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One process on the union of the two ranks' batches (global batch 4).

    DistributedSampler gives rank r the indices perm[r::2], so the union of the ranks' batch s
    is the single process's batch s, with rank 0's examples at the even positions. DDP
    averages the ranks' gradients, which for a per-example mean loss is the gradient on the
    union batch, but on CPU it does not synchronise BatchNorm: each rank normalises with the
    statistics of its own 2 examples (SyncBatchNorm needs CUDA). The reference therefore
    computes BatchNorm's training-mode statistics per shard (even / odd examples), and the
    comparison covers the parameters only: the running statistics DDP keeps are rank 0's
    shard's alone (broadcast from rank 0), which no single process reproduces."""
    import torch.nn.functional as F

    real_bn = F.batch_norm

    def per_shard_bn(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        training = kwargs.get("training", args[4] if len(args) > 4 else False)
        if not training or x.shape[0] % 2:
            return real_bn(x, *args, **kwargs)
        out = torch.empty_like(x)
        out[0::2] = real_bn(x[0::2], *args, **kwargs)
        out[1::2] = real_bn(x[1::2], *args, **kwargs)
        return out

    from mmsin.training import train
    from test_training import clips, tiny

    tr, te = clips()
    monkeypatch.setattr(F, "batch_norm", per_shard_bn)
    res = train(
        tiny(_EPOCHS, *_CFG),
        tmp_path / "single",
        train_clips=tr,
        test_clips=te,
        cache_dir=tmp_path / "cache1",
        progress=False,
        tensorboard=False,
    )
    monkeypatch.undo()
    assert res.generator is not None
    return {k: v.detach().clone() for k, v in res.generator.state_dict().items()}


@pytest.mark.slow
def test_two_ranks_on_shards_equal_one_process_on_the_union_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tests = str(Path(__file__).resolve().parent)
    sys.path.insert(0, tests)
    script = tmp_path / "ddp_train.py"
    script.write_text(_SCRIPT.format(tests=tests, out=str(tmp_path), epochs=_EPOCHS, cfg=_CFG))
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
    params = [k for k in w0 if w0[k].is_floating_point() and "running" not in k]
    for k in params:
        assert torch.equal(w0[k], w1[k]), k  # gradients were all-reduced
    h0 = json.loads((tmp_path / "rank0.json").read_text())
    h1 = json.loads((tmp_path / "rank1.json").read_text())
    # 18 segments, global batch 4 -> 2 per rank, 4 steps per epoch on each rank.
    assert h0["steps"] == h1["steps"] == _EPOCHS * 4
    # Only rank 0 wrote the checkpoint and the config.
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert not list((tmp_path / "run").glob("*.tmp"))

    # Two ranks on different shards == one process on the union batch (up to the order of
    # float sums). Without DDP each process would train alone on batches of 4.
    ref = _union_batch_reference(tmp_path, monkeypatch)
    moved = 0.0
    # A convolution bias followed by BatchNorm has a zero gradient (BatchNorm subtracts the
    # mean); Adam scales its rounding noise up to full-size steps, so it matches nothing.
    bn_layers = {k.rsplit(".bn.", 1)[0] for k in w0 if ".bn." in k}
    compared = [k for k in params if not (k.endswith("conv.bias") and k[:-10] in bn_layers)]
    assert len(compared) == len(params) - len(bn_layers)
    for k in compared:
        torch.testing.assert_close(w0[k], ref[k], rtol=0, atol=1e-6, msg=k)
    init = _initial_weights()
    moved = min(float((ref[k] - init[k]).abs().max()) for k in compared)
    assert moved > 1e-4  # training moved every weight far more than the tolerance (1e-6)


def _initial_weights() -> dict[str, torch.Tensor]:
    from mmsin import assembly
    from test_training import tiny

    cfg = tiny(_EPOCHS, *_CFG)
    torch.manual_seed(cfg.train.seed)
    g = assembly.build_generator(cfg, int(assembly.build_scattering(cfg).num_channels))
    return g.state_dict()


@pytest.mark.slow
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
    cmd += ["-m", "mmsin", "train", "--preset", "small", "--data", str(audio), *sets, "-q"]
    cmd += ["--set", "train.epochs=2", "--set", "data.seconds=0.5", "--set", "train.device=cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained ") == 1, proc.stdout
    model = MMSIN.load(tmp_path / "runs" / "tiny")
    y = model.decode(model.encode(torch.as_tensor(te.audio)))
    assert torch.isfinite(y).all()
