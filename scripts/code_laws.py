"""Which law of codes z makes G(ReLU(L^-1 z)) sound like the music it learned from.

Generates from a trained model with codes drawn from several laws and measures each set like
the generation experiment: sigma and eq. (6) on the training set's normalised S_K, and the
music figures (periodic frames, onsets, silences, flatness, 64 Hz grid) on the first clips.
The laws (``--laws``):

- ``gaussian``: the paper's N(0, I);
- ``any``: real training codes, any frame of any training clip, independently;
- ``clip``: real codes, one training clip per sample, its frames drawn independently
  (``--bank N``: from an int8 bank of N clips, as ``codes="bank"`` stores; ``--block L``:
  blocks of L consecutive codes instead of single frames);
- ``clipmean``: Gaussian codes plus one training clip's mean code per sample;
- ``ica``: independent components of the training codes (symmetric FastICA, tanh), each drawn
  from its own marginal (256 quantiles).
- ``model:LAW``: a law the model's VAR holds, drawn as ``mmsin generate --codes LAW`` draws it
  (``model:bank``, ``model:sequence``, ``model:blocks``; ``model:blocks:N``: blocks of N
  frames instead of :data:`mmsin.whitening.BLOCK_FRAMES`).

The training codes are Z = L S_J of the training clips from frame M on (their past inside the
clip). S_J comes from the chunked disk cache that training fills.

    python scripts/code_laws.py --model piano --laws gaussian clip ica --out results/laws.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsin import evaluation as ev
from mmsin.assembly import build_scalogram
from mmsin.model import MMSIN
from mmsin.training.features import data_fingerprint, default_cache_dir
from mmsin.training.frames import scattering_frames
from mmsin.training.loop import load_data
from mmsin.whitening import BLOCK_FRAMES, apply_relu, fit_code_bank
from mmsin.whitening import var as var_module


def training_codes(model: MMSIN, data: str, size: str) -> tuple[Tensor, Any]:
    """Z = L S_J of every training clip, frames M on: (clips, C, T - M), float32."""
    cfg = model.config
    cfg.data.source, cfg.data.size = data, size
    train, _ = load_data(cfg)
    S = scattering_frames(cfg, train.audio, data_fingerprint(train), default_cache_dir())
    Sn = torch.from_numpy(np.array(S)).double() / model.norm.double()[:, None]
    Z = torch.cat([model.var.whiten(Sn[i : i + 64]).float() for i in range(0, len(Sn), 64)])
    return Z[:, :, model.var.M :], train


def fit_ica(Z: Tensor, frames: int, iters: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Symmetric FastICA on white data: an orthogonal W (sources s = W x) and the sources'
    256 quantiles per component."""
    X = Z.permute(0, 2, 1).reshape(-1, Z.shape[1]).double()
    X = X[torch.randperm(len(X), generator=g)[:frames]]
    X = X - X.mean(0)
    val, vec = torch.linalg.eigh(X.T @ X / len(X))
    Xw = X @ (vec * val.clamp(min=float(val.max()) * 1e-6).rsqrt()) @ vec.T
    d = X.shape[1]
    W = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    for _ in range(iters):
        G = torch.tanh(Xw @ W.T)
        Wn = (G.T @ Xw) / len(Xw) - (1 - G**2).mean(0)[:, None] * W
        s, V = torch.linalg.eigh(Wn @ Wn.T)
        W = V @ torch.diag(s.rsqrt()) @ V.T @ Wn
    probs = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    return W, torch.quantile(Xw @ W.T, probs, dim=0)


def draw(
    law: str, Z: Tensor, n: int, total: int, args: argparse.Namespace, g: torch.Generator
) -> Tensor:
    """Codes (n, C, total), float64, of ``law``."""
    B, C, T = Z.shape
    if law == "gaussian":
        return torch.randn(n, C, total, generator=g, dtype=torch.float64)
    if law == "any":
        ci, ti = (
            torch.randint(B, (n, total), generator=g),
            torch.randint(T, (n, total), generator=g),
        )
        return Z[ci, :, ti].permute(0, 2, 1).double()
    if law == "clipmean":
        pick = torch.randint(B, (n,), generator=g)
        return (
            torch.randn(n, C, total, generator=g, dtype=torch.float64)
            + Z[pick].mean(2, keepdim=True).double()
        )
    if law == "clip":
        pool = Z
        if args.bank:
            bank, scale, offsets = fit_code_bank(Z, args.bank, seed=0)
            rows = bank.float() * scale[:, None]
            pool = torch.stack([rows[a:b].T for a, b in itertools.pairwise(offsets.tolist())])
        out = torch.empty(n, C, total, dtype=torch.float64)
        L = max(1, args.block)
        for b in range(n):
            src = pool[int(torch.randint(len(pool), (1,), generator=g))]
            starts = torch.randint(T - L + 1, ((total + L - 1) // L,), generator=g)
            idx = (starts[:, None] + torch.arange(L)).flatten()[:total]
            out[b] = src[:, idx].double()
        return out
    if law == "ica":
        W, q = fit_ica(Z, args.ica_frames, args.ica_iters, g)
        u = torch.rand(n, total, C, generator=g, dtype=torch.float64)
        pos = (u * 256 - 0.5).clamp(0, 255)
        lo = pos.floor().long()
        hi, fr = (lo + 1).clamp(max=255), pos - lo
        qq = q[None].expand(n, -1, -1)
        s = qq.gather(1, lo) * (1 - fr) + qq.gather(1, hi) * fr
        return (s @ W).permute(0, 2, 1)
    raise ValueError(f"unknown law {law!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="piano")
    ap.add_argument("--data", default="beethoven-like")
    ap.add_argument("--size", default="full")
    ap.add_argument("--laws", nargs="+", default=["gaussian", "any", "clip", "clipmean", "ica"])
    ap.add_argument("--clips", type=int, default=128, help="generated clips per law")
    ap.add_argument("--music", type=int, default=24, help="clips of the music figures")
    ap.add_argument("--bank", type=int, default=0, help="clip: an int8 bank of N clips")
    ap.add_argument("--block", type=int, default=1, help="clip: consecutive codes per draw")
    ap.add_argument("--ica-frames", type=int, default=24000)
    ap.add_argument("--ica-iters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    model = MMSIN.load(args.model).eval()
    Z, train = training_codes(model, args.data, args.size)
    frames = train.audio.shape[1] // model.hop
    lead = model.generation_lead(model.config.whitening.warmup)
    warm = model.config.whitening.warmup - lead
    sk = build_scalogram(model.config).eval()
    norm = ev.scalogram_normalizer(sk, train.audio)
    f_train = ev.time_averaged(sk, train.audio, normalizer=norm)
    results: dict[str, Any] = {"train": {"sigma": ev.spread(f_train)}}
    for law in args.laws:
        if law.startswith("model:"):  # a law the model's VAR holds, as `mmsin generate` draws it
            parts = law.split(":")
            name = parts[1]
            var_module.BLOCK_FRAMES = int(parts[2]) if len(parts) > 2 else BLOCK_FRAMES
            audio = model.generate(frames, batch=args.clips, seed=args.seed, codes=name).numpy()
        else:
            g = torch.Generator().manual_seed(args.seed)
            codes = draw(law, Z, args.clips, warm + lead + frames, args, g)
            with torch.no_grad():
                S = apply_relu(model.var.unwhiten(codes)[:, :, warm:], model.modulus_channels)
                S = S.float()
                audio = model._generate_from(S, aligned=False)[:, lead * model.hop :].numpy()
        f = ev.time_averaged(sk, audio, normalizer=norm)
        music = ev.music_figures(audio[: args.music], model.fs)
        row = {"sigma": ev.spread(f), "mm_distance": ev.feature_mean_distance(f, f_train)}
        row.update({k: v for k, v in music.items() if k != "per_clip"})
        results[law] = row
        print(law, {k: round(float(v), 4) for k, v in row.items()}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, **results}, indent=2)
    )


if __name__ == "__main__":
    main()
