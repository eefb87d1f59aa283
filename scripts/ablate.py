"""Ablation harness for the 64 Hz grid (issue: the generator makes real pitch).

Trains several arms (a preset plus config overrides) with the same budget and prints one table:
share of the output's energy on the grid of multiples of fs/2^k (k = 5, 6, 7), harmonic-to-noise
ratio at the note's f0, share of notes whose CREPE f0 is within 50 cents (periodicity above
0.5), and L_inv, on the training notes and on held-out notes, beside the originals' figures.

Stages, smallest question first:

``tone``   one steady harmonic tone at 293.7 Hz (D4), synthesised; G fitted to it alone.
``notes``  ``--notes`` (16) notes of the nsynth-like training split, every ``n``-th; held-out:
           the nsynth-like ``heldout`` split (instruments never trained on, every semitone
           MIDI 40-90).
``full``   the real training loop (:func:`mmsin.training.train`) on the whole nsynth-like set
           for ``--steps`` steps; held-out as above.

For ``tone`` and ``notes`` G is fed S_J of each whole 2 s clip (per-channel normalised) and the
loss is L_inv on the blocks that have their whole receptive field (as in training).

    python scripts/ablate.py tone --arms paper-G,oscillators --steps 300
    python scripts/ablate.py notes --arms paper-G,oscillators --steps 300
    python scripts/ablate.py full --arms paper-G,oscillators --steps 400

Results go to results/ablation/<stage>.json (MMSIN_HOME) and the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsin.config import Config, override, preset
from mmsin.evaluation import midi_to_hz, note_fidelity

#: Arms: (description, preset, overrides).
ARMS: dict[str, tuple[str, str, list[str]]] = {
    "paper-G": ("the paper's G (kernel 7, zero insertion), L_inv", "small", []),
    "oscillators": (
        "trunk of 5 paper layers (128 Hz envelopes) + 293 fixed oscillators, L_inv",
        "small",
        ["generator.head=oscillators"],
    ),
    "oscillators-24": (
        "as oscillators, 24 per octave (a semitone / 2 apart)",
        "small",
        ["generator.head=oscillators", "generator.per_octave=24"],
    ),
    "oscillators-64Hz": (
        "as oscillators, trunk of 4 layers (64 Hz envelopes)",
        "small",
        ["generator.head=oscillators", "generator.trunk_layers=4"],
    ),
    "oscillators+spectral": (
        "oscillators, L_inv + 1 x fine spectral term (STFT magnitudes, 2 s / 0.5 s / 0.125 s)",
        "small",
        ["generator.head=oscillators", "loss.spectral=1"],
    ),
    "paper-G+spectral": (
        "the paper's G, L_inv + 1 x fine spectral term",
        "small",
        ["loss.spectral=1"],
    ),
    "partials": (
        "S_J order 1 read back as a scalogram -> 2-D network shared across log-frequency -> "
        "4 oscillators per semitone bin (generator.head=partials), L_inv",
        "small",
        ["generator.head=partials", "generator.hidden=64"],
    ),
    "partials+spectral": (
        "partials, L_inv + 1 x fine spectral term",
        "small",
        ["generator.head=partials", "generator.hidden=64", "loss.spectral=1"],
    ),
    "partials+spectral-2048": (
        "partials, L_inv + 1 x spectral term at 0.5 s and 0.125 s windows only",
        "small",
        [
            "generator.head=partials",
            "generator.hidden=64",
            "loss.spectral=1",
            "loss.spectral_ffts=[2048,512]",
        ],
    ),
    "partials-96+spectral": (
        "partials with 8 oscillators per bin (96 per octave), L_inv + 1 x fine spectral term",
        "small",
        [
            "generator.head=partials",
            "generator.hidden=64",
            "generator.per_octave=96",
            "loss.spectral=1",
        ],
    ),
    "paper-G-mse": (
        "the paper's G, waveform MSE (phase-sensitive reference)",
        "small",
        ["loss.kind=mse"],
    ),
}


@dataclass
class NoteSet:
    """Clips (n, time) at fs with their nominal f0 in Hz (NaN when unknown)."""

    audio: np.ndarray
    f0: np.ndarray
    names: list[str]


def harmonic_tone(f0: float, fs: int = 4096, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A steady tone: partials k f0 below 0.46 fs with amplitudes 0.7^(k-1), random phases."""
    t = np.arange(int(seconds * fs)) / fs
    rng = np.random.default_rng(seed)
    x = np.zeros_like(t)
    for k in range(1, 64):
        if k * f0 >= 0.46 * fs:
            break
        x += 0.7 ** (k - 1) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return (x / np.abs(x).max()).astype(np.float32)


def nsynth_notes(split: str, every: int = 1, limit: int | None = None) -> NoteSet:
    from mmsin.data import build, load_clips

    build("nsynth-like", "small", progress=False)
    clips = load_clips("nsynth-like", split=split)
    idx = list(range(0, len(clips.meta), every))[:limit]
    f0 = np.array([float(midi_to_hz(clips.meta[i]["pitch"])) for i in idx])
    names = [str(clips.meta[i]["name"]) for i in idx]
    return NoteSet(clips.audio[idx], f0, names)


def heldout_notes() -> NoteSet:
    try:
        return nsynth_notes("heldout")
    except Exception as exc:  # an older data build without the held-out split
        print(f"[ablate] no held-out split ({exc}); using the test split", file=sys.stderr)
        return nsynth_notes("test")


def arm_config(name: str) -> Config:
    _, base, overrides = ARMS[name]
    return override(preset(base), overrides)


# ----------------------------------------------------------------------------- evaluation
def fidelity(y: np.ndarray, notes: NoteSet, fs: int) -> dict[str, float]:
    """mmsin.evaluation.note_fidelity's summary for reconstructions y of ``notes``."""
    n = y.shape[1]
    midi = 69 + 12 * np.log2(notes.f0 / 440.0)
    return note_fidelity(y, notes.audio[:, :n], fs, midi).summary()


# ----------------------------------------------------------------------------- direct fits
def fit_direct(cfg: Config, train: NoteSet, steps: int, seed: int = 0) -> tuple[Any, ...]:
    """Fit G(S_J x) to a few clips with L_inv alone (or MSE); returns what evaluation needs."""
    from mmsin.assembly import build_generator, build_scalogram, build_scattering
    from mmsin.generators.conv import aligned_target
    from mmsin.losses import ReconstructionLoss, SpectrumLoss, scalogram_statistics, waveform_mse

    torch.manual_seed(seed)
    x = torch.from_numpy(train.audio)
    sj = build_scattering(cfg)
    with torch.no_grad():
        S = sj(x)
    norm = S.abs().mean(dim=(0, 2)) + 1e-8
    S = S / norm[:, None]
    g = build_generator(cfg, S.shape[1], norm)
    J = cfg.scattering.J
    target = aligned_target(x, J, S.shape[-1])
    sk = build_scalogram(cfg).eval()
    stats = scalogram_statistics(sk, [target])
    rec = ReconstructionLoss(sk, stats["mean_abs"])
    with torch.no_grad():
        sk_t = sk(target)
    spectrum = SpectrumLoss(cfg.loss.spectral_ffts)
    opt = torch.optim.Adam(g.parameters(), lr=cfg.train.lr)
    t0 = time.time()
    for step in range(steps):
        out = generate(g, S)
        if cfg.loss.kind == "mse":
            loss = waveform_mse(out, target, stats["power"])
        else:
            loss = rec(out, sk_t)
        if cfg.loss.spectral > 0:
            loss = loss + cfg.loss.spectral * spectrum(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(
                f"  step {step:4d}  loss {float(loss):.4f}  ({time.time() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    g.eval()
    return g, sj, norm, sk, stats, time.time() - t0


def generate(g: Any, S: torch.Tensor) -> torch.Tensor:
    """G on S_J frames preceded by zero frames for its whole past span (as the training loop
    pads each clip), cropped to the blocks of the given frames."""
    lo = g.frame_span[0]
    out = g(torch.nn.functional.pad(S, (lo, 0)))
    return out[:, lo * g.hop :]


@torch.no_grad()
def reconstruct(g: Any, sj: Any, norm: torch.Tensor, audio: np.ndarray, J: int) -> np.ndarray:
    """G(S_J x) aligned with x (drop block 0's 2^J - 1 samples of 'before the signal')."""
    x = torch.from_numpy(audio)
    S = sj(x) / norm[:, None]
    out = generate(g, S)
    return out[:, 2**J - 1 : 2**J - 1 + x.shape[1]].numpy()


@torch.no_grad()
def inv_error(sk: Any, stats: dict[str, torch.Tensor], y: np.ndarray, x: np.ndarray) -> float:
    from mmsin.losses import ReconstructionLoss

    rec = ReconstructionLoss(sk, stats["mean_abs"])
    n = min(y.shape[1], x.shape[1])
    return float(rec(torch.from_numpy(y[:, :n]), torch.from_numpy(x[:, :n])))


def evaluate(
    g: Any,
    sj: Any,
    norm: torch.Tensor,
    sk: Any,
    stats: dict[str, torch.Tensor],
    sets: dict[str, NoteSet],
    cfg: Config,
) -> dict[str, dict[str, float]]:
    fs = cfg.scattering.fs
    out = {}
    for label, notes in sets.items():
        y = reconstruct(g, sj, norm, notes.audio, cfg.scattering.J)
        row = fidelity(y, notes, fs)
        row["inv"] = inv_error(sk, stats, y, notes.audio)
        out[label] = row
    return out


# ----------------------------------------------------------------------------- full training
def fit_full(cfg: Config, steps: int, folder: Path) -> tuple[Any, ...]:
    """Train on the whole nsynth-like small set with the real loop for about ``steps`` steps."""
    from mmsin.assembly import build_scalogram
    from mmsin.data import load_clips
    from mmsin.model import MMSIN
    from mmsin.training import train

    clips = load_clips("nsynth-like", split="train")
    cfg.train.epochs = 10**6  # the step budget, not the epochs, ends the run
    cfg.train.preview_every = 0
    t0 = time.time()
    train(cfg, folder, progress=True, max_steps=steps)
    model = MMSIN.load(folder)
    sk = build_scalogram(cfg).eval()
    stats = {"mean_abs": model_stats(model, sk, clips.audio)}
    return model, sk, stats, time.time() - t0


def model_stats(model: Any, sk: Any, audio: np.ndarray) -> torch.Tensor:
    from mmsin.losses import scalogram_statistics

    return scalogram_statistics(
        sk, [torch.from_numpy(audio[i : i + 16]) for i in range(0, len(audio), 16)]
    )["mean_abs"]


# ----------------------------------------------------------------------------- table
def table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    head = (
        "| arm | set | 64 Hz grid share, median (original) | HNR dB, median (original) | "
        "pitch kept | L_inv | time |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for arm, res in rows.items():
        for label, r in res.items():
            if label.startswith("_"):
                continue
            lines.append(
                f"| {arm} | {label} | {r['grid_median']:.3f} ({r['grid_original_median']:.3f}) | "
                f"{r['hnr_db_median']:.1f} ({r['hnr_db_original_median']:.1f}) | "
                f"{r['pitch_kept']:.0%} of "
                f"{r['tracked']} | {r['inv']:.3f} | {res['_meta']['seconds']:.0f} s |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("tone", "notes", "full"))
    ap.add_argument("--arms", default="paper-G,oscillators")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--notes", type=int, default=16, help="training notes of the notes stage")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        ap.error(f"unknown arms {unknown}; choose from {', '.join(ARMS)}")
    from mmsin import paths

    out = args.out or paths.results_dir() / "ablation" / f"{args.stage}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, dict[str, float]]] = {}
    if out.exists():
        rows = json.loads(out.read_text()).get("rows", {})
    for arm in arms:
        cfg = arm_config(arm)
        cfg.train.seed = args.seed
        print(f"[ablate] {args.stage}: {arm} ({ARMS[arm][0]})", file=sys.stderr)
        if args.stage == "tone":
            f0 = 293.66
            train = NoteSet(harmonic_tone(f0)[None], np.array([f0]), ["D4 tone"])
            g, sj, norm, sk, stats, secs = fit_direct(cfg, train, args.steps, args.seed)
            res = evaluate(g, sj, norm, sk, stats, {"train": train}, cfg)
        elif args.stage == "notes":
            full = nsynth_notes("train")
            every = max(1, len(full.audio) // args.notes)
            train = nsynth_notes("train", every=every, limit=args.notes)
            g, sj, norm, sk, stats, secs = fit_direct(cfg, train, args.steps, args.seed)
            res = evaluate(
                g, sj, norm, sk, stats, {"train": train, "held-out": heldout_notes()}, cfg
            )
        else:
            folder = paths.runs_dir() / f"ablation-{arm}"
            model, sk, stats, secs = fit_full(cfg, args.steps, folder)
            train = nsynth_notes("train", every=4)
            res = evaluate(
                model.generator,
                model.scattering,
                model.norm,
                sk,
                stats,
                {"train": train, "held-out": heldout_notes()},
                cfg,
            )
        res["_meta"] = {"seconds": secs, "steps": args.steps, "overrides": ARMS[arm][2]}
        rows[arm] = res
        out.write_text(json.dumps({"stage": args.stage, "rows": rows}, indent=2) + "\n")
        print(table({arm: res}), flush=True)
    print(table(rows))
    print(f"[ablate] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
