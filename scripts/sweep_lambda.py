"""Choose the moment-matching weight lambda (paper eq. 4: L = L_inv + lambda L_MM) by a sweep.

Trains one small model per lambda on the same data, seed and budget, and reports for each the
test reconstruction error L_inv (eq. 5, on held-out clips) and the moment-matching distance of
eq. (6) between generations from white noise and the training set. The paper's shape to aim for
(Table 1, section 5.3): L_MM should cost little on L_inv while bringing the MM distance of
generations down to the level of test-vs-train.

Usage::

    .venv/bin/python scripts/sweep_lambda.py [--lams 0,0.1,1,10] [--epochs 10] [--set k=v ...]

Writes ``$MMSIN_HOME/results/sweep-lambda/results.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    from mmsin import paths
    from mmsin.assembly import build_scalogram
    from mmsin.config import override, preset
    from mmsin.data import load_clips
    from mmsin.losses import MomentMatchingLoss
    from mmsin.model import MMSIN
    from mmsin.training import train

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lams", default="0,0.1,1,10", help="comma list of lambda values")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--generations", type=int, default=32, help="white-noise generations")
    p.add_argument("--set", action="append", default=[], help="config override section.field=v")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = paths.results_dir() / "sweep-lambda"
    rows = []
    for lam in [float(v) for v in args.lams.split(",")]:
        kind = "inv" if lam == 0 else "inv+mm"
        cfg = override(
            preset("small"),
            [f"loss.kind={kind}", f"loss.lam={lam}", f"train.epochs={args.epochs}", *args.set],
        )
        cfg.name = f"sweep-lam{lam:g}"
        run_dir = out / cfg.name
        res = train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file(), progress=True)
        model = MMSIN.load(res.checkpoint)
        ck = torch.load(res.checkpoint, weights_only=True)
        stats = ck["sk_stats"]
        mm = MomentMatchingLoss(build_scalogram(cfg), stats["mean"], stats["rms"])
        clips = load_clips(cfg.data.source, cfg.data.test_split, size=cfg.data.size)
        frames = (clips.audio.shape[1] - 1) // model.hop + 1
        with torch.no_grad():
            gen = model.generate(frames, batch=args.generations, seed=0)
            mm_gen = float(mm(gen))
            mm_test = float(mm(torch.as_tensor(clips.audio)))
        row = {
            "lambda": lam,
            "test_inv": res.history["test_inv"][-1],
            "mm_generated_vs_train": mm_gen,
            "mm_test_vs_train": mm_test,
        }
        rows.append(row)
        print(json.dumps(row))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'lambda':>8} {'test L_inv':>11} {'MM gen':>10} {'MM test':>10}")
    for r in rows:
        print(
            f"{r['lambda']:>8g} {r['test_inv']:>11.4f} {r['mm_generated_vs_train']:>10.4f} "
            f"{r['mm_test_vs_train']:>10.4f}"
        )


if __name__ == "__main__":
    main()
