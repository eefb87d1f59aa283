"""``mmsin scatter``: plot the scalogram S_K and the S_J channels of an audio file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmsin.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "scatter",
        help="plot the scalogram and the time-frequency scattering S_J of an audio file",
        description=(
            "Read AUDIO (any format soundfile reads; resampled to --fs), compute the averaged "
            "scalogram S_K and the causal time-frequency scattering S_J, and save a PNG with "
            "the waveform, the scalogram and the S_J channels (log scale)."
        ),
    )
    p.add_argument("audio", type=Path, help="audio file")
    p.add_argument("--out", type=Path, default=Path("scattering.png"), help="output PNG")
    p.add_argument("--fs", type=int, default=4096, help="sample rate in Hz (default 4096)")
    p.add_argument("-J", type=int, default=10, help="S_J scale 2^J samples (default 10)")
    p.add_argument("-Q", type=int, default=12, help="wavelets per octave (default 12)")
    p.add_argument(
        "--variant", choices=("paper", "joint-real", "time"), default="paper", help="S_J variant"
    )
    p.add_argument(
        "--oversampling",
        type=int,
        default=1,
        metavar="N",
        help=(
            "octaves by which S_J's inner stages run above the rates their bands need "
            "(default 1: within 1%% of the full-rate computation; J or more: full rate, slow)"
        ),
    )
    p.add_argument("--max-seconds", type=float, default=8.0, help="read at most this long")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from mmsin.io import check_output_file, load_audio
    from mmsin.scattering import Scalogram, TimeFrequencyScattering

    check_output_file(args.out)
    if args.oversampling < 0:
        raise UserError(f"--oversampling must be >= 0, got {args.oversampling}")
    x = load_audio(args.audio, fs=args.fs, max_seconds=args.max_seconds)
    if len(x) < 2**args.J:
        raise UserError(f"{args.audio}: too short for J={args.J} ({len(x)} < {2**args.J} samples)")
    xt = torch.as_tensor(x, dtype=torch.float32)[None]
    with torch.no_grad():
        sk = Scalogram(5, args.Q, "gammatone", args.fs)(xt)[0].numpy()
        sj_mod = TimeFrequencyScattering(
            args.J, args.Q, args.Q, args.variant, args.fs, oversampling=args.oversampling
        )
        sj = sj_mod(xt)[0].numpy()
    t = np.arange(len(x)) / args.fs
    fig, ax = plt.subplots(3, 1, figsize=(10, 9), constrained_layout=True)
    ax[0].plot(t, x, lw=0.5)
    ax[0].set(title=str(args.audio.name), xlabel="time (s)", xlim=(0, t[-1]))
    ax[1].imshow(
        np.log10(np.abs(sk[1:]) + 1e-6),
        aspect="auto",
        origin="upper",
        extent=(0, t[-1], sk.shape[0] - 1, 0),
    )
    ax[1].set(title="scalogram S_K (K=5, Gammatone), high to low frequency", ylabel="channel")
    ax[2].imshow(
        np.log10(np.abs(sj) + 1e-6),
        aspect="auto",
        origin="upper",
        extent=(0, sj.shape[1] * 2**args.J / args.fs, sj.shape[0], 0),
    )
    ax[2].set(
        title=f"S_J ({args.variant}, J={args.J}, {sj.shape[0]} channels)",
        xlabel="time (s)",
        ylabel="channel",
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(args.out)
    return 0
