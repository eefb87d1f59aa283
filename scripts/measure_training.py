"""Short CPU training measurement: test L_inv, MM distance and spread sigma of one code version.

Trains the ``small`` preset for a few epochs on nsynth-like small (CPU, one thread, seed 0),
then measures the test L_inv of eq. (5) at the end, the eq. (6) moment-matching distance
between 64 generated clips and the training set, and the spread sigma of time-averaged S_K of
the training set and of the generated clips. Appends one JSON line to HOME/measure.jsonl.
Run it once per code version (docs/training.md, "Training runs G as inference does"):

    MMSIN_HOME=/tmp/m python -m mmsin data build nsynth-like -q
    MMSIN_HOME=/tmp/m python scripts/measure_training.py LABEL 6 /tmp/m [SEED]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from mmsin import evaluation as ev

try:
    from mmsin.assembly import build_scalogram
except ImportError:  # code from before mmsin.assembly (the "before" of docs/training.md)
    from mmsin.training import build_scalogram  # type: ignore[attr-defined,no-redef]
from mmsin.config import override, preset
from mmsin.data import load_clips
from mmsin.model import MMSIN
from mmsin.training import train


def main(label: str, epochs: int, home: Path, seed: int = 0) -> dict[str, object]:
    torch.set_num_threads(1)
    sets = [f"train.epochs={epochs}", "train.device=cpu", "train.preview_every=0"]
    sets.append(f"train.seed={seed}")
    cfg = override(preset("small"), [*sets, "train.checkpoint_every=100", f"name=m-{label}"])
    tr = load_clips("nsynth-like", "train", size="small", fs=4096)
    te = load_clips("nsynth-like", "test", size="small", fs=4096)
    t0 = time.perf_counter()
    res = train(
        cfg,
        home / "runs" / f"measure-{label}",
        train_clips=tr,
        test_clips=te,
        progress=False,
        tensorboard=False,
        cache_dir=home / "cache",
    )
    seconds = time.perf_counter() - t0
    assert res.checkpoint is not None
    model = MMSIN.load(res.checkpoint)
    sk = build_scalogram(model.config).eval()
    gen = model.generate(tr.audio.shape[1] // model.hop, batch=64, seed=0).numpy()
    out: dict[str, object] = {
        "label": label,
        "seed": seed,
        "epochs": epochs,
        "steps": res.global_step,
        "seconds": round(seconds, 1),
        "train_loss_last": res.history["train_loss"][-1],
        "test_L_inv": res.history["test_inv"][-1],
        "mm_distance_generated": ev.moment_matching_distance(gen, tr.audio, sk),
        "mm_distance_test": ev.moment_matching_distance(te.audio, tr.audio, sk),
        "sigma_train": ev.spread(ev.time_averaged(sk, tr.audio)),
        "sigma_generated": ev.spread(ev.time_averaged(sk, gen)),
    }
    with open(home / "measure.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    return out


if __name__ == "__main__":
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), seed)))
