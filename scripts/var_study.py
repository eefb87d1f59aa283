"""How white the VAR(M) whitening L makes held-out frames, per ridge and order (issue 17).

S_J of the training and test clips comes from the chunked disk cache
(:func:`mmsin.training.frames.scattering_frames`, shared with training), is normalised by
the training set's mean |S_J| per channel, and a VAR(M) is fitted at each ridge from one pass
over the data (:func:`mmsin.whitening.fit_var_ridges`). For each fit: its growth rate
(< 1: stable, L^-1 of noise does not explode) and the whiteness of Z = L S_J on the test
frames (median variance, median |autocorrelation| at lags 1-8, median excess kurtosis).

    python scripts/var_study.py --data beethoven-like --size full --out results/var-study.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from mmsin.config import preset
from mmsin.training.features import data_fingerprint, default_cache_dir
from mmsin.training.frames import scattering_frames
from mmsin.training.loop import load_data
from mmsin.whitening import fit_var_ridges, growth_rate, whiteness_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="beethoven-like")
    ap.add_argument("--size", default="full")
    ap.add_argument("--preset", default="pitched")
    ap.add_argument("--orders", type=int, nargs="+", default=[4, 2, 1])
    ap.add_argument("--ridges", type=float, nargs="+", default=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    ap.add_argument("--train-frames", type=int, default=20000, help="frames of train whiteness")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    cfg = preset(args.preset)
    cfg.data.source, cfg.data.size = args.data, args.size
    tr, te = load_data(cfg)
    S = {}
    for clips, name in ((tr, "train"), (te, "test")):
        frames = scattering_frames(
            cfg, clips.audio, data_fingerprint(clips), default_cache_dir(), label=name
        )
        S[name] = torch.from_numpy(np.array(frames)).double()
    norm = S["train"].abs().mean(dim=(0, 2))
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    for k in S:
        S[k] = S[k] / norm[:, None]
    n_sub = max(1, args.train_frames // S["train"].shape[2])
    rows = []
    print(f"train {tuple(S['train'].shape)}, test {tuple(S['test'].shape)}", flush=True)
    for M in args.orders:
        t0 = time.perf_counter()
        vars_ = fit_var_ridges(S["train"], args.ridges, M=M)
        fit_s = time.perf_counter() - t0
        for ridge, var in zip(args.ridges, vars_, strict=True):
            rate = growth_rate(var)
            rep = {
                "train": whiteness_report(var, S["train"][:n_sub]),
                "test": whiteness_report(var, S["test"]),
            }
            row = {"M": M, "ridge": ridge, "growth_rate": rate, "fit_seconds": fit_s, **rep}
            rows.append(row)
            t = rep["test"]
            print(
                f"M={M} ridge={ridge:.0e} growth={rate:.4f} test: var median "
                f"{t['cov_median_diag']:.3f} mean {t['cov_mean_diag']:.3f} | lag1..8 median "
                f"{' '.join(f'{a:.3f}' for a in t['lag_median_abs'])} | kurt median "
                f"{t['kurtosis_median']:.2f} | train var median "
                f"{rep['train']['cov_median_diag']:.3f}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": f"{args.data}-{args.size}", "fits": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
