"""How much of the music lives in the order of the codes: test extracts' own codes, reordered.

For test extracts x of the model's data, the codes Z = L S_J x are computed (from a zero past,
as the whitening's fit assumes), then fed back through L^-1 and G, G(ReLU(L^-1 Z')), where Z'
is Z

- ``in order``: unchanged, so L^-1 Z' = S_J x and the output is G's reconstruction;
- ``blocks of B``: the codes of frames M on cut into runs of B consecutive frames, the runs
  shuffled (the first M frames, which carry the extract's start, stay in place);
- ``shuffled``: the codes of frames M on shuffled frame by frame: the same codes as the
  extract's, in an order drawn independently, as a white law would draw them;

each also started from the last M frames of another extract (``--past other``) instead of the
extract's own silence; started so, codes in order bring the frames back to the extract's own
over the following frames, and how fast is printed too (the relative distance
||ReLU(L^-1 Z') - S_J x|| / ||S_J x|| per frame, median over extracts, beside that of two
unrelated extracts' frames). Every variant has exactly the extract's codes, hence its moments; only
their order differs. Prints the music figures of :func:`mmsin.evaluation.music_figures`
(periodic frames, onsets, silences, flatness, 64 Hz grid) per variant.

    python scripts/code_order.py --model piano --clips 32 --block 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mmsin import evaluation as ev
from mmsin.model import MMSIN
from mmsin.training.features import data_fingerprint, default_cache_dir
from mmsin.training.frames import scattering_frames
from mmsin.training.loop import load_data
from mmsin.whitening import apply_relu


def test_frames(model: MMSIN, clips: int, seed: int) -> Tensor:
    """Normalised S_J (clips, C, T) of ``clips`` test extracts drawn at random (seeded)."""
    cfg = model.config
    _, test = load_data(cfg)
    S = scattering_frames(cfg, test.audio, data_fingerprint(test), default_cache_dir())
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(S), generator=g)[:clips].sort().values
    S_pick = np.stack([np.asarray(S[int(i)]) for i in pick])
    return torch.from_numpy(S_pick).double() / model.norm.double()[:, None]


def reorder(Z: Tensor, M: int, block: int, g: torch.Generator) -> Tensor:
    """Z (B, C, T) with the frames M on shuffled in runs of ``block`` (a last, shorter run
    moves with the others)."""
    out = Z.clone()
    T = Z.shape[-1]
    starts = list(range(M, T, block))
    for i in range(len(Z)):
        runs = [torch.arange(s, min(s + block, T)) for s in starts]
        order = torch.randperm(len(runs), generator=g)
        out[i, :, M:] = Z[i][:, torch.cat([runs[int(k)] for k in order])]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="piano", help="model name or checkpoint")
    p.add_argument("--clips", type=int, default=32, help="test extracts (default 32)")
    p.add_argument("--block", type=int, default=4, help="run length of 'blocks' (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = p.parse_args()
    if args.clips < 2 or args.block < 2:
        p.error("need --clips >= 2 and --block >= 2")
    model = MMSIN.load(args.model)
    var = model.var.double()
    M = var.M
    S = test_frames(model, args.clips, args.seed)
    Z = var.whiten(S)
    g = torch.Generator().manual_seed(args.seed + 1)
    variants = {
        "in order": Z,
        f"blocks of {args.block}": reorder(Z, M, args.block, g),
        "shuffled": reorder(Z, M, 1, g),
    }
    other = S[torch.roll(torch.arange(len(S)), 1)][..., -M:]  # another extract's last frames
    results = {}
    for past_name, past in (("own start", None), ("another extract's past", other)):
        for name, Zv in variants.items():
            with torch.no_grad():
                Sv = apply_relu(var.unwhiten(Zv, past), model.modulus_channels)
                raw = Sv.float() * model.norm[:, None]  # decode_scattering normalises again
                x = model.decode_scattering(raw, aligned=False).cpu().numpy()
            figures = ev.music_figures(x, model.fs)
            figures.pop("per_clip")
            key = f"{name}, {past_name}"
            results[key] = figures
            print(f"{key:40s}", "  ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    with torch.no_grad():
        back = apply_relu(var.unwhiten(Z, other), model.modulus_channels)[..., M:]
    own = S[..., M:]
    dist = ((back - own).norm(dim=1) / own.norm(dim=1)).median(dim=0).values
    unrelated = (own - own[torch.roll(torch.arange(len(S)), 1)]).norm(dim=1) / own.norm(dim=1)
    print("codes in order from another extract's past: distance to the extract's S_J by frame")
    print("  " + " ".join(f"{float(d):.2f}" for d in dist))
    print(f"  two unrelated extracts' frames: {float(unrelated.median()):.2f}")
    results["distance by frame"] = [float(d) for d in dist]
    results["distance unrelated"] = float(unrelated.median())
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
