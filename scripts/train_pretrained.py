"""Train and pack the pretrained models shipped in ``src/mmsin/pretrained/``.

Three steps, so that training can run on another machine (a GPU) from a small file::

    python scripts/train_pretrained.py export clips.npz          # here: the embedded data
    python scripts/train_pretrained.py train clips.npz notes RUN [--set k=v ...] [--max-steps N]
    python scripts/train_pretrained.py pack RUN src/mmsin/pretrained/notes.pt
    python scripts/train_pretrained.py refit MODEL OUT [--set whitening.k=v ...] [--keep-var]
    python scripts/train_pretrained.py configure MODEL OUT --set generator.amp_refine=frame
    python scripts/train_pretrained.py gain MODEL OUT [--rounds 12] [--clips 225]

``export`` writes the train and test clips of nsynth-like small (notes) and beethoven-like
small (piano) at 4096 Hz as float16; ``train`` trains a preset (default ``pitched``, what
ships) on one of them (the data set's name is recorded in the config); ``pack`` stores the
newest checkpoint of a run without optimiser state, weights in float16
(``MMSIN.save(half=True)``); ``refit`` fits a trained model's whitening L again (its VAR,
code law and bank: :func:`mmsin.training.features.fit_whitening`) on its own training data
with changed ``whitening`` settings, keeping G (with ``--keep-var`` L too: only the codes'
laws, frame powers, bank and order, are fitted on the model's own L,
:func:`mmsin.training.features.fit_code_laws`), and packs it the same way; ``configure``
changes how a trained generator is run, not its weights (:data:`INFERENCE_SETTINGS`), and
packs it the same way; ``gain`` fits the free head's generation gain to the moments of the
model's own training data (:func:`mmsin.training.generation_gain.fit_generation_gain`) and
packs it the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

KINDS = {"notes": "nsynth-like", "piano": "beethoven-like"}
#: Settings of a trained generator that change how it is run, not its weights.
INFERENCE_SETTINGS = (
    "generator.amp_refine",
    "generator.generation_amp_refine",
    "generator.lag_correction",
    "generator.peak_rounds",
    "generator.peak_gaps",
    "generator.generation_temperature",
)


def export(out: Path) -> None:
    from mmsin.data import load_clips

    arrays: dict[str, np.ndarray] = {}
    for kind, source in KINDS.items():
        for split in ("train", "test"):
            clips = load_clips(source, split)
            arrays[f"{kind}_{split}"] = clips.audio.astype(np.float16)
            print(f"{kind} {split}: {clips.audio.shape}")
    np.savez(out, **arrays)


def train(
    clips_file: Path,
    kind: str,
    run: Path,
    overrides: list[str],
    max_steps: int | None,
    preset_name: str = "pitched",
) -> None:
    from mmsin.config import override, preset
    from mmsin.data import Clips
    from mmsin.training import train as train_run

    data = np.load(clips_file)
    source = KINDS[kind]
    parts = []
    for split in ("train", "test"):
        audio = data[f"{kind}_{split}"].astype(np.float32)
        meta = [{"name": f"{kind}-{split}-{i}"} for i in range(len(audio))]
        parts.append(Clips(audio, 4096, meta, split, source))
    cfg = override(
        preset(preset_name), [f"name=pretrained-{kind}", f"data.source={source}", *overrides]
    )
    t0 = time.perf_counter()
    result = train_run(cfg, run, train_clips=parts[0], test_clips=parts[1], max_steps=max_steps)
    print(f"trained {kind} in {time.perf_counter() - t0:.0f} s: {result}")


def pack(run: Path, out: Path) -> None:
    from mmsin.model import MMSIN

    model = MMSIN.load(run)
    model.save(out, half=True)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")


def refit(model_in: str, out: Path, overrides: list[str], keep_var: bool = False) -> None:
    import torch

    from mmsin.config import override
    from mmsin.model import MMSIN
    from mmsin.training.features import (
        data_fingerprint,
        default_cache_dir,
        fit_code_laws,
        fit_whitening,
    )
    from mmsin.training.frames import scattering_frames
    from mmsin.training.loop import load_data

    model = MMSIN.load(model_in)
    if any(not o.startswith("whitening.") for o in overrides):
        raise SystemExit(f"refit changes whitening.* settings only, got {overrides}")
    law_only = ("whitening.codes", "whitening.bank_clips")
    if keep_var and any(o.split("=", 1)[0] not in law_only for o in overrides):
        raise SystemExit("--keep-var changes whitening.codes and whitening.bank_clips only")
    cfg = override(model.config, overrides)
    train_clips, test_clips = load_data(cfg)
    if data_fingerprint(train_clips, test_clips) != model._extra.get("data_fingerprint"):
        raise SystemExit(f"{model_in}: its training data is not {cfg.data.source} here")
    norm = model.norm.double()[:, None]
    S = [
        torch.from_numpy(
            np.array(scattering_frames(cfg, c.audio, data_fingerprint(c), default_cache_dir()))
        ).double()
        / norm
        for c in (train_clips, test_clips)
    ]
    t0 = time.perf_counter()
    if keep_var:  # L itself (A, b, the covariance roots) stays bit for bit: only the codes' laws
        fit_code_laws(cfg, model.var, S[0])
        print(f"fitted the codes' laws on the model's own L in {time.perf_counter() - t0:.0f} s")
    else:
        var, whiteness = fit_whitening(cfg, S[0], S[1])
        test = whiteness["test"]
        print(
            f"refitted L in {time.perf_counter() - t0:.0f} s: test codes median variance "
            f"{test['cov_median_diag']:.3f}, median |lag-1| {test['lag_median_abs'][0]:.3f}"
        )
        model.var.load_state_dict(var.state_dict())
    model._config = cfg
    model.save(out, half=True)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")


def configure(model_in: str, out: Path, overrides: list[str]) -> None:
    from mmsin.assembly import build_generator
    from mmsin.config import override
    from mmsin.model import MMSIN

    bad = [o for o in overrides if o.split("=", 1)[0] not in INFERENCE_SETTINGS]
    if bad or not overrides:
        raise SystemExit(f"configure changes {', '.join(INFERENCE_SETTINGS)} only, got {bad}")
    model = MMSIN.load(model_in)
    cfg = override(model.config, overrides)
    generator = build_generator(cfg, model.num_channels, model.norm)
    generator.load_state_dict(model.generator.state_dict())
    model.generator = generator.eval()
    model._config = cfg
    model.save(out, half=True)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB, {' '.join(overrides)}")


def gain(model_in: str, out: Path, rounds: int, clips: int) -> None:
    from mmsin.model import MMSIN
    from mmsin.training.features import data_fingerprint
    from mmsin.training.generation_gain import fit_generation_gain
    from mmsin.training.loop import load_data

    model = MMSIN.load(model_in).eval()
    train_clips, test_clips = load_data(model.config)
    if data_fingerprint(train_clips, test_clips) != model._extra.get("data_fingerprint"):
        raise SystemExit(f"{model_in}: its training data is not {model.config.data.source} here")
    t0 = time.perf_counter()
    fit = fit_generation_gain(model, train_clips.audio, rounds=rounds, clips=clips, progress=print)
    g = np.array(fit.gain_db)
    print(
        f"fitted in {time.perf_counter() - t0:.0f} s: gain {g.min():+.1f} .. {g.max():+.1f} dB "
        f"(median |gain| {np.median(np.abs(g)):.1f} dB)"
    )
    model.save(out, half=True)
    print(f"{out}: {out.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export")
    e.add_argument("out", type=Path)
    t = sub.add_parser("train")
    t.add_argument("clips", type=Path)
    t.add_argument("kind", choices=sorted(KINDS))
    t.add_argument("run", type=Path)
    t.add_argument("--set", dest="overrides", action="append", default=[])
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--preset", default="pitched", help="preset to train (default: pitched)")
    p = sub.add_parser("pack")
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    r = sub.add_parser("refit")
    r.add_argument("model", help="model name or checkpoint")
    r.add_argument("out", type=Path)
    r.add_argument("--set", dest="overrides", action="append", default=[])
    r.add_argument(
        "--keep-var",
        action="store_true",
        help="keep the model's L (A, b, covariance roots) and take only the codes' law",
    )
    c = sub.add_parser("configure")
    c.add_argument("model", help="model name or checkpoint")
    c.add_argument("out", type=Path)
    c.add_argument("--set", dest="overrides", action="append", default=[])
    gn = sub.add_parser("gain")
    gn.add_argument("model", help="model name or checkpoint")
    gn.add_argument("out", type=Path)
    gn.add_argument("--rounds", type=int, default=12)
    gn.add_argument("--clips", type=int, default=225)
    args = parser.parse_args()
    if args.step == "export":
        export(args.out)
    elif args.step == "train":
        train(args.clips, args.kind, args.run, args.overrides, args.max_steps, args.preset)
    elif args.step == "refit":
        refit(args.model, args.out, args.overrides, args.keep_var)
    elif args.step == "configure":
        configure(args.model, args.out, args.overrides)
    elif args.step == "gain":
        gain(args.model, args.out, args.rounds, args.clips)
    else:
        pack(args.run, args.out)


if __name__ == "__main__":
    main()
