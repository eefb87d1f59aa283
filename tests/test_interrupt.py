"""Interrupted and faulty training: SIGKILL and resume, damaged checkpoints, NaN losses.

The runs are real ``mmsin.training.train`` calls on tiny shapes (synthetic clips of a few
frames, J = 5, a narrow generator) so that each test takes seconds. The kill test runs training
in a child process and kills it with SIGKILL at a seeded random moment after its first
checkpoint; the resumed run must end with exactly the weights of an uninterrupted run with the
same seed (CPU, one thread: bit for bit).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("mmsin.losses", reason="mmsin.losses has not landed yet")
_scattering = pytest.importorskip("mmsin.scattering")
if not all(
    callable(getattr(_scattering, n, None)) for n in ("Scalogram", "TimeFrequencyScattering")
):
    pytest.skip("mmsin.scattering has not landed yet", allow_module_level=True)
training = pytest.importorskip("mmsin.training")

from _tiny import tiny_clips, tiny_config  # noqa: E402
from mmsin.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_latest_checkpoint  # noqa: E402
from mmsin.training import loop  # noqa: E402

# Child process: one training run (fresh or resumed) on the tiny shapes.
_DRIVER = """
import json, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from _tiny import tiny_clips, tiny_config
import mmsin.training as training
from mmsin.training import loop
args = json.loads(sys.argv[1])
# Count the optimisation steps this process itself runs (a resumed run must run only the rest).
steps = [0]
real_terms = loop.loss_terms
def counting_terms(*a, **k):
    steps[0] += 1
    return real_terms(*a, **k)
loop.loss_terms = counting_terms
tr, te = tiny_clips()
res = training.train(tiny_config(args["epochs"]), args["run"], train_clips=tr, test_clips=te,
            resume=args["resume"], progress=False, cache_dir=args["cache"], tensorboard=False)
print(json.dumps({{"global_step": res.global_step, "epochs": res.epochs_done,
                  "steps_here": steps[0]}}), flush=True)
"""


def _child(tmp: Path, run: Path, cache: Path, epochs: int, resume: bool) -> subprocess.Popen[str]:
    driver = tmp / "driver.py"
    driver.write_text(_DRIVER.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    args = json.dumps({"run": str(run), "cache": str(cache), "epochs": epochs, "resume": resume})
    return subprocess.Popen(
        [sys.executable, str(driver), args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / CHECKPOINT_NAME)["generator"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"weights differ at {k}")


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    epochs = 14
    cache = tmp_path / "cache"
    ref_run, cut_run = tmp_path / "reference", tmp_path / "killed"

    ref = _finish(_child(tmp_path, ref_run, cache, epochs, resume=False))

    # Kill after the first checkpoint, at a seeded random delay, while training is running.
    delay = float(np.random.default_rng(2018).uniform(0.0, 0.8))
    proc = _child(tmp_path, cut_run, cache, epochs, resume=False)
    t0 = time.monotonic()
    while not (cut_run / CHECKPOINT_NAME).exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() - t0 < 60, "no checkpoint after 60 s"
        time.sleep(0.01)
    time.sleep(delay)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    # A kill between the two renames of a checkpoint write leaves only checkpoint.prev.pt.
    killed_at = load_latest_checkpoint(cut_run / CHECKPOINT_NAME)[0]["global_step"]
    print(f"killed after {delay:.2f} s at checkpoint step {killed_at} of {ref['global_step']}")
    assert 0 < killed_at < ref["global_step"]

    resumed = _finish(_child(tmp_path, cut_run, cache, epochs, resume=True))
    assert ref["steps_here"] == ref["global_step"]
    # The resumed process ran only the steps after the checkpoint (a restart from scratch
    # with the same seed would reach the same weights, but run every step again).
    assert resumed["steps_here"] == ref["global_step"] - killed_at
    assert (resumed["global_step"], resumed["epochs"]) == (ref["global_step"], ref["epochs"])
    _assert_same_weights(_weights(cut_run), _weights(ref_run))
    a, b = load_checkpoint(cut_run / CHECKPOINT_NAME), load_checkpoint(ref_run / CHECKPOINT_NAME)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        for name, v in a["optimizer"]["state"][k].items():
            torch.testing.assert_close(v, b["optimizer"]["state"][k][name], rtol=0, atol=1e-6)


def _train_in_process(tmp: Path, epochs: int, *, resume: bool = False, run: str = "run") -> Any:
    tr, te = tiny_clips()
    return training.train(
        tiny_config(epochs),
        tmp / run,
        train_clips=tr,
        test_clips=te,
        resume=resume,
        progress=False,
        cache_dir=tmp / "cache",
        tensorboard=False,
    )


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "bit-flip":
        # One bit in the middle of the largest stored tensor (its zip member's data).
        with zipfile.ZipFile(path) as z:
            member = max(z.infolist(), key=lambda m: m.file_size)
            offset = member.header_offset + 30 + len(member.filename) + len(member.extra)
        raw = bytearray(data)
        raw[offset + member.file_size // 2] ^= 0x10
        path.write_bytes(bytes(raw))
    else:
        damaged = {"truncate": data[: len(data) // 2], "zero-length": b"", "garbage": b"x" * 4096}
        path.write_bytes(damaged[how])


DAMAGES = ["truncate", "zero-length", "garbage", "bit-flip"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint_without_previous_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    _train_in_process(tmp_path, 1)  # one checkpoint, no previous one
    path = tmp_path / "run" / CHECKPOINT_NAME
    _damage(path, damage)
    with pytest.raises(ValueError) as err:
        _train_in_process(tmp_path, 2, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "checkpoint" in msg


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_newest_checkpoint_falls_back_to_the_previous(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming from the previous checkpoint replays the lost epoch exactly."""
    reference = _train_in_process(tmp_path, 3, run="reference")
    _train_in_process(tmp_path, 2)
    path = tmp_path / "run" / CHECKPOINT_NAME
    _damage(path, damage)
    calls = _nan_hook(monkeypatch, set())  # counts the loss evaluations of the resumed run
    with caplog.at_level(logging.WARNING, logger="mmsin.checkpoint"):
        resumed = _train_in_process(tmp_path, 3, resume=True)
    assert any(str(path) in r.getMessage() and "previous" in r.getMessage() for r in caplog.records)
    assert resumed.global_step == reference.global_step
    # Resumed from the previous checkpoint (end of epoch 1): epochs 2 and 3 ran again, not 1.
    assert len(calls) == reference.global_step * 2 // 3
    _assert_same_weights(_weights(tmp_path / "run"), _weights(tmp_path / "reference"))


def _nan_hook(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int]) -> list[int]:
    """Make the loss term NaN on the given (0-based) calls of the training loss."""
    real = loop.loss_terms
    calls: list[int] = []

    def poisoned(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        terms = real(*args, **kwargs)
        if len(calls) in bad_calls:
            terms["inv"] = terms["inv"] * float("nan")
        calls.append(len(calls))
        return dict(terms)

    monkeypatch.setattr(loop, "loss_terms", poisoned)
    return calls


def test_transient_nan_loss_skips_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _nan_hook(monkeypatch, {3})
    with caplog.at_level(logging.ERROR, logger="mmsin.training"):
        res = _train_in_process(tmp_path, 2)
    assert any(
        "non-finite loss" in r.getMessage() and "inv" in r.getMessage() for r in caplog.records
    )
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert state["global_step"] == res.global_step
    assert all(
        torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point()
    )


def test_persistent_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _train_in_process(tmp_path, 1, run="probe")
    steps_per_epoch = first.global_step
    path = tmp_path / "run" / CHECKPOINT_NAME
    digests: list[str] = []
    real_save = loop.save_checkpoint

    def recording_save(p: Any, payload: dict[str, Any]) -> Path:
        out = real_save(p, payload)
        digests.append(hashlib.sha256(Path(out).read_bytes()).hexdigest())
        return out

    monkeypatch.setattr(loop, "save_checkpoint", recording_save)
    # NaN from the middle of the third epoch on.
    start = 2 * steps_per_epoch + 1
    _nan_hook(monkeypatch, set(range(start, start + 1000)))
    with pytest.raises(training.TrainingDiverged) as err:
        _train_in_process(tmp_path, 6)
    assert "non-finite" in str(err.value) and str(path) in str(err.value)
    state = load_checkpoint(path)
    assert state["global_step"] == 2 * steps_per_epoch  # end of the last good epoch
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[-1]
    assert all(
        torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point()
    )
