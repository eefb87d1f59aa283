"""``mmsin train / encode / decode / generate / interpolate``: the model's command line.

Thin: parse, call :mod:`mmsin.training` or :class:`mmsin.MMSIN`, write files, print paths.
Every command that needs a trained model takes ``--model PATH`` (a checkpoint file or a run
folder); without it, the newest checkpoint under ``$MMSIN_HOME/runs`` is used, else the
pretrained model shipped with the package.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmsin.config import CODE_LAWS

#: Most files one command writes (--steps): a bound checked before any list of names is made.
_MAX_FILES = 10_000

#: Audio per block when encoding (seconds) and frames per block when decoding: what encode
#: and decode hold in memory at a time, whatever the length of the recording (generation goes
#: by the VAR's noise blocks, mmsin.whitening.NOISE_FRAMES).
_BLOCK_SECONDS = 60.0
_BLOCK_FRAMES = 256

#: Working memory of a synthesis head (oscillator or partials generator) per output sample, in
#: bytes: 0.18 GB over a 256-frame block of the shipped partials head at J = 10, rounded up.
_SYNTH_BYTES_PER_SAMPLE = 700

_MODEL_HELP = (
    "trained model: a checkpoint file or a run folder (default: the newest checkpoint under "
    "$MMSIN_HOME/runs, else the pretrained model shipped with mmsin)"
)


def _user_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report ValueErrors (bad config values, bad data, bad arrays) as one-line user errors."""

    def run(args: argparse.Namespace) -> int:
        from mmsin.cli import UserError

        try:
            return func(args)
        except (ValueError, FileExistsError) as exc:
            text = " ".join(str(exc).split())
            raise UserError(text) from None

    return run


def _load_model(args: argparse.Namespace) -> Any:
    from mmsin.model import MMSIN

    model = MMSIN.load(args.model)
    print(f"model: {model.source}")
    return model


# --------------------------------------------------------------------------- train


def _train(args: argparse.Namespace) -> int:
    from mmsin import paths
    from mmsin.config import Config, override, preset
    from mmsin.io import check_output_folder
    from mmsin.training import train

    cfg = Config.load(args.config) if args.config else preset(args.preset)
    sets = list(args.set or [])
    if args.data:
        sets.insert(0, f"data.source={args.data}")
    cfg = override(cfg, sets)
    if args.run:
        cfg.name = args.run
    run_dir = paths.runs_dir() / cfg.name
    check_output_folder(run_dir)
    if args.resume:
        _check_resumable(run_dir)
    _ensure_data(cfg, progress=not args.quiet)
    result = train(
        cfg, run_dir, resume=args.resume, progress=not args.quiet, init=args.init or None
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    last = result.history["test_inv"][-1] if result.history["test_inv"] else float("nan")
    print(
        f"trained {result.global_step} steps ({result.epochs_done} epochs); "
        f"test L_inv {last:.4f}; checkpoint: {result.checkpoint}"
    )
    print(f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}")
    return 0


def _check_resumable(run_dir: Path) -> None:
    """Fail at once, before any data set is built or loaded, when there is nothing to resume."""
    from mmsin.checkpoint import CHECKPOINT_NAME, previous_path

    ckpt = run_dir / CHECKPOINT_NAME
    if not ckpt.is_file() and not previous_path(ckpt).is_file():
        what = "no such run" if not run_dir.exists() else f"no {CHECKPOINT_NAME} in this run"
        raise ValueError(
            f"{run_dir}: {what}, nothing to resume (drop --resume to start it, or pick an "
            "existing run with --run NAME)"
        )


def _ensure_data(cfg: Any, *, progress: bool = True) -> None:
    """Build the embedded look-alike data set on first use, so `mmsin train` just works.

    ``progress=False`` (``-q``) silences the build's progress bars and summary too.
    """
    if cfg.data.source not in ("nsynth-like", "beethoven-like"):
        return
    from mmsin import paths

    root = paths.data_dir() / f"{cfg.data.source}-{cfg.data.size}"
    if not (root / "build.json").is_file():
        from mmsin.data import build

        if progress:
            print(f"building the {cfg.data.source} ({cfg.data.size}) data set first (once) ...")
        build(cfg.data.source, cfg.data.size, progress=progress)


# --------------------------------------------------------------------------- encode / decode


def _read_audio(paths_: list[str], fs: int, hop: int) -> tuple[np.ndarray, list[int]]:
    from mmsin.io import load_audio

    # At least one frame's worth of samples: shorter audio has no embedding to speak of.
    clips = [load_audio(p, fs, normalize=True, min_samples=hop) for p in paths_]
    lengths = [len(c) for c in clips]
    out = np.zeros((len(clips), max(lengths)), dtype=np.float32)
    for i, c in enumerate(clips):
        out[i, : len(c)] = c
    return out, lengths


def _encode(args: argparse.Namespace) -> int:
    from mmsin.blockio import NpyWriter, audio_blocks, scan_audio
    from mmsin.io import check_fits, check_output_file
    from mmsin.streaming import encode_blocks

    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: must end in .npy")
    check_output_file(out)
    model = _load_model(args)
    # Two passes over the audio: lengths and peaks first (the clips are peak-normalised), then
    # S_J block by block into the .npy file; memory holds one block, never the recording.
    scans = [
        scan_audio(p, model.fs, min_samples=model.hop, block_seconds=_BLOCK_SECONDS)
        for p in args.audio
    ]
    lengths = [n for n, _ in scans]
    samples = max(lengths)
    frames = (samples - 1) // model.hop + 1
    n = len(args.audio)
    shape = (model.num_channels, frames) if n == 1 else (n, model.num_channels, frames)
    block = min(samples, round(_BLOCK_SECONDS * model.fs))
    check_fits(
        f"encoding {samples / model.fs:.0f} s",
        _encode_memory(model, n, block),
        4.0 * n * model.num_channels * frames,
        out.parent,
    )
    blocks = audio_blocks(
        args.audio, model.fs, [p for _, p in scans], samples, block_seconds=_BLOCK_SECONDS
    )
    with NpyWriter(out, shape) as w, _progress(args, samples / model.fs, "encode") as bar:
        for codes in encode_blocks(model, blocks, scattering=args.scattering):
            w.write(codes.cpu().numpy()[0] if n == 1 else codes.cpu().numpy())
            bar.update(codes.shape[-1] * model.hop / model.fs)
    kind = "S_J (scattering)" if args.scattering else "Z (whitened embedding)"
    if len(set(lengths)) > 1:
        print("note: files of different lengths were zero-padded at the end to the longest")
    print(f"wrote {kind} of shape {shape} to {out}")
    return 0


def _encode_memory(model: Any, batch: int, block: int) -> float:
    """Bytes that encoding ``batch`` files by blocks of ``block`` samples adds to the loaded
    model: the streaming S_J's working set, measured at about 3.7 kB a sample of block at
    J = 10 (0.9 GB for 60 s at 4096 Hz, on top of the 0.4 GB of the process and model)."""
    return float(batch) * 3700.0 * block


def _progress(args: argparse.Namespace, total: float, what: str) -> Any:
    """A progress bar in seconds of audio on stderr; off with -q or when stderr is no TTY."""
    import sys

    from tqdm.auto import tqdm

    quiet = getattr(args, "quiet", False) or not sys.stderr.isatty()
    return tqdm(
        total=round(total, 1), desc=what, unit="s", disable=quiet, file=sys.stderr, leave=False
    )


def _decode(args: argparse.Namespace) -> int:
    from mmsin.blockio import WavWriter
    from mmsin.io import check_output_file
    from mmsin.streaming import decode_blocks

    src = Path(args.file)
    check_output_file(args.out)
    if not src.is_file():
        raise ValueError(f"{src}: no such file")
    try:
        # Memory-mapped: a long embedding is read a block of frames at a time.
        arr = np.load(src, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise ValueError(f"{src}: not a .npy array ({' '.join(str(exc).split())})") from None
    if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{src}: expected a float array (channels, frames) or (n, channels, frames), "
            f"got {arr.dtype} {arr.shape}"
        )
    frames = arr.shape[-1]
    blocks = [arr[..., i : i + _BLOCK_FRAMES] for i in range(0, frames, _BLOCK_FRAMES)]
    if not all(np.isfinite(b).all() for b in blocks):
        raise ValueError(f"{src}: contains NaN or infinite values")
    model = _load_model(args)
    kind = args.kind
    channels = arr.shape[-2]
    if channels != model.num_channels:
        raise ValueError(
            f"{src}: has {channels} channels but the model's embedding has {model.num_channels}"
        )
    out = Path(args.out)
    n = 1 if arr.ndim == 2 else arr.shape[0]
    names = [out] if n == 1 else [_numbered(out, i) for i in range(n)]
    for name in names:
        check_output_file(name)
    _check_size(model, f"{src} ({frames} frames x {n})", frames, n, out.parent)
    if kind == "auto":
        # S_J's modulus channels (meta()["nonnegative"]) are >= 0; Z, the whitened innovations,
        # is about N(0, 1) in every channel.
        mod = model.modulus_channels.cpu().numpy()
        low = min(float(b[..., mod, :].min()) for b in blocks)
        high = max(float(np.abs(b[..., mod, :]).max()) for b in blocks)
        kind = "scattering" if low >= -1e-6 * high else "z"
    samples = (frames - 1) * model.hop + 1
    chunks = (np.array(b) if n > 1 else np.array(b)[None] for b in blocks)  # copies: writable
    with WavWriter(names, model.fs) as w, _progress(args, samples / model.fs, "decode") as bar:
        for y in decode_blocks(model, chunks, kind="z" if kind == "z" else "scattering"):
            w.write(y.cpu().numpy())
            bar.update(y.shape[-1] / model.fs)
    for name in names:
        print(f"wrote {name} ({samples / model.fs:.2f} s at {model.fs} Hz, decoded from {kind})")
    return 0


def _numbered(path: Path, i: int) -> Path:
    return path.with_name(f"{path.stem}-{i:02d}{path.suffix or '.wav'}")


def _frames_for(seconds: float, model: Any) -> int:
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"--seconds must be a positive number, got {seconds}")
    return max(1, math.ceil(seconds * model.fs / model.hop))


def _check_size(
    model: Any, what: str, frames: int, batch: int, folder: Path, *, streamed: bool = True
) -> None:
    """Refuse, before any work, a decode/generation whose memory or WAV files cannot fit.

    Memory per frame: the VAR's float64 frames (z, S and ReLU(S)) plus, for each layer of G,
    its zero-stuffed input and its output (float32). ``streamed`` (decode, generate): they go
    by blocks of at most ``_BLOCK_FRAMES`` frames (the VAR's noise blocks are as long), so
    memory holds one block, and the disk the float32 samples of the first pass beside the
    16-bit WAV; otherwise (interpolate) memory holds every frame."""
    from mmsin.io import check_fits
    from mmsin.whitening import NOISE_FRAMES

    per_frame = 3 * 8 * model.num_channels
    chans = getattr(model.generator, "channels", None)
    if chans is not None:  # the paper's G
        for k in range(len(chans) - 1):
            per_frame += 4 * 2 ** (k + 1) * (chans[k] + chans[k + 1])
    else:  # a synthesis head: measured 0.1-0.2 GB per 256-frame block (partials head, J = 10)
        per_frame += _SYNTH_BYTES_PER_SAMPLE * model.hop
    held = min(frames, max(_BLOCK_FRAMES, NOISE_FRAMES)) if streamed else frames
    memory = float(batch) * held * per_frame
    disk = float(batch) * (frames * model.hop * (4 + 2 if streamed else 2) + 44)
    check_fits(what, memory, disk, folder)


# --------------------------------------------------------------------------- generate


def _generate(args: argparse.Namespace) -> int:
    from mmsin import paths
    from mmsin.blockio import WavWriter
    from mmsin.io import check_output_file, check_output_folder
    from mmsin.streaming import generate_blocks

    if not (math.isfinite(args.seconds) and args.seconds > 0) or args.count < 1:
        raise ValueError("--seconds must be positive and --count at least 1")
    # --out: a folder, or the file of the one clip asked for
    one_file = args.out is not None and Path(args.out).suffix.lower() == ".wav"
    if one_file and args.count != 1:
        raise ValueError(f"--out {args.out} names one file: give a folder for --count {args.count}")
    default = paths.results_dir() / "generated"
    out = check_output_folder(Path(args.out).parent if one_file else Path(args.out or default))
    model = _load_model(args)
    frames = _frames_for(args.seconds, model)
    model.generation_envelopes(args.envelope_temperature)  # a bad temperature: before any file
    what = f"--seconds {args.seconds:g} --count {args.count}"
    _check_size(model, what, frames, args.count, out)  # before a check per file
    if one_file:
        names = [check_output_file(args.out)]
    else:
        names = [out / f"generated-seed{args.seed}-{i:02d}.wav" for i in range(args.count)]
        for name in names:
            check_output_file(name)
    blocks = generate_blocks(
        model,
        frames,
        batch=args.count,
        seed=args.seed,
        codes=args.codes,
        envelope_temperature=args.envelope_temperature,
    )
    total = frames * model.hop / model.fs
    with WavWriter(names, model.fs) as w, _progress(args, total, "generate") as bar:
        for y in blocks:
            w.write(y.cpu().numpy())
            bar.update(y.shape[-1] / model.fs)
    for name in names:
        print(f"wrote {name}")
    return 0


# --------------------------------------------------------------------------- interpolate


def _interpolate(args: argparse.Namespace) -> int:
    from mmsin import paths
    from mmsin.io import check_output_file, check_output_folder, normalize_peak, save_audio

    if args.seeds is None and (args.audio is None or len(args.audio) != 2):
        raise ValueError("give two audio files (A.wav B.wav) or --seeds K1 K2")
    if args.seeds is not None and args.audio:
        raise ValueError("give either two audio files or --seeds, not both")
    if args.steps is not None and not 2 <= args.steps <= _MAX_FILES:
        raise ValueError(f"--steps must be between 2 and {_MAX_FILES}")
    if args.ratio is not None and args.steps is not None:
        raise ValueError("give either --ratio or --steps, not both")
    ratios = (
        [float(r) for r in np.linspace(0.0, 1.0, args.steps)]
        if args.steps is not None
        else [0.5 if args.ratio is None else float(args.ratio)]
    )
    default = paths.results_dir() / "interpolated"
    if args.steps is None:
        out = Path(args.out) if args.out else default / "interpolated.wav"
        names = [check_output_file(out)]
    else:
        folder = check_output_folder(Path(args.out) if args.out else default)
        names = [folder / f"interpolated-{i:02d}-r{r:.2f}.wav" for i, r in enumerate(ratios)]
        for name in names:
            check_output_file(name)
    model = _load_model(args)
    if args.seeds is not None:
        frames = _frames_for(args.seconds, model)
        folder = names[0].parent
        _check_size(model, f"--seconds {args.seconds:g}", frames, 2, folder, streamed=False)
        _check_size(model, f"--steps {len(ratios)}", frames, len(ratios), folder, streamed=False)
        S = [model.sample_scattering(frames, seed=k) for k in args.seeds]
        Z = [model.var.whiten(s) for s in S]
        label = f"seeds {args.seeds[0]} and {args.seeds[1]}"
    else:
        x, _ = _read_audio(args.audio, model.fs, model.hop)
        Zx = model.encode(x)
        Z = [Zx[:1], Zx[1:]]
        label = f"{args.audio[0]} and {args.audio[1]}"
    if args.seeds is None:
        frames = min(int(z.shape[-1]) for z in Z)
        what = f"--steps {len(ratios)}"
        _check_size(model, what, frames, len(ratios), names[0].parent, streamed=False)
    x_out = model.interpolate(Z[0], Z[1], ratios).cpu().numpy()
    for name, sig, r in zip(names, x_out, ratios, strict=True):
        save_audio(name, normalize_peak(sig), model.fs)
        print(f"wrote {name} (ratio {r:.2f} between {label})")
    return 0


# --------------------------------------------------------------------------- parser


def register(subparsers: Any) -> None:
    """Add train, encode, decode, generate and interpolate to the ``mmsin`` command."""
    fmt = argparse.RawDescriptionHelpFormatter

    t = subparsers.add_parser(
        "train",
        help="train an MM-SIN generator on a data set",
        formatter_class=fmt,
        description=(
            "Train the generator G that inverts the fixed scattering embedding (paper section 3)."
            "\nThe first run computes the scattering of the data set once and caches it.\n"
            "Checkpoints, config and TensorBoard logs go to $MMSIN_HOME/runs/RUN/.\n\n"
            "examples:\n"
            "  mmsin train                          # the shipped (pitched) preset, embedded data\n"
            "  mmsin train --preset small           # the paper's literal G at demo scale\n"
            "  mmsin train --preset paper --data /data/nsynth\n"
            "  mmsin train --set train.epochs=5 --set loss.kind=inv --run quick\n"
            "  mmsin train --run quick --resume             # continue after an interruption\n"
            "  torchrun --nproc_per_node 4 -m mmsin train --preset paper   # several GPUs"
        ),
    )
    t.add_argument(
        "--preset",
        choices=["pitched", "small", "paper"],
        default="pitched",
        help="pitched: the preset the shipped models use (small's data and scale with the "
        "partials generator and spectral term that keep the pitch); small: the paper's literal "
        "G, minutes on a laptop CPU; paper: the paper's configuration (GPU hours). "
        "Default: pitched",
    )
    t.add_argument("--config", metavar="FILE.json", help="start from a saved config.json instead")
    t.add_argument(
        "--data",
        metavar="SOURCE",
        help="nsynth-like or beethoven-like (built on first use), an NSynth or SampleRNN "
        "Beethoven folder, or any folder of audio files (default: the preset's, nsynth-like)",
    )
    t.add_argument("--run", metavar="NAME", help="run folder name (default: the preset name)")
    t.add_argument(
        "--set",
        action="append",
        metavar="SECTION.FIELD=VALUE",
        help="override one config field, e.g. train.lr=1e-3 (repeatable)",
    )
    t.add_argument(
        "--resume", action="store_true", help="continue the run from its last checkpoint"
    )
    t.add_argument(
        "--init",
        metavar="MODEL",
        help="start from the generator weights of MODEL (a shipped model such as notes, a run "
        "folder or a checkpoint) where names and shapes match: continue from committed weights",
    )
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_user_errors(_train))

    e = subparsers.add_parser(
        "encode",
        help="audio files -> embedding Z (or scattering S_J) as .npy",
        formatter_class=fmt,
        description=(
            "Encode audio into the paper's fixed embedding Z = L S_J x: one vector of k_J values\n"
            "every 2^J samples (973 values every 0.25 s for the paper's setting). Audio is read\n"
            "as mono, resampled to the model's rate and peak-normalised.\n\n"
            "examples:\n"
            "  mmsin encode note.wav --out note.npy\n"
            "  mmsin encode a.wav b.wav --out ab.npy --scattering"
        ),
    )
    e.add_argument("audio", nargs="+", metavar="AUDIO", help="audio file(s): wav, flac, ogg, ...")
    e.add_argument("--out", required=True, metavar="FILE.npy", help="output array")
    e.add_argument(
        "--scattering",
        action="store_true",
        help="write the scattering S_J instead of the whitened Z",
    )
    e.add_argument("--model", metavar="PATH", help=_MODEL_HELP)
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_user_errors(_encode))

    d = subparsers.add_parser(
        "decode",
        help=".npy embedding (Z or S_J) -> WAV",
        formatter_class=fmt,
        description=(
            "Turn an embedding back into sound with the trained generator: x = G(ReLU(L^-1 Z)).\n"
            "The array is (channels, frames) or (n, channels, frames); with n > 1 the files\n"
            "are numbered OUT-00.wav, OUT-01.wav, ...\n\n"
            "example:\n"
            "  mmsin decode note.npy --out note-decoded.wav"
        ),
    )
    d.add_argument("file", metavar="FILE.npy", help="array written by `mmsin encode`")
    d.add_argument("--out", required=True, metavar="FILE.wav", help="output WAV file")
    d.add_argument(
        "--kind",
        choices=["auto", "z", "scattering"],
        default="auto",
        help="what the array holds (auto: S_J if its modulus channels are non-negative, else Z)",
    )
    d.add_argument("--model", metavar="PATH", help=_MODEL_HELP)
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_user_errors(_decode))

    g = subparsers.add_parser(
        "generate",
        help="new audio from white noise -> WAV",
        formatter_class=fmt,
        description=(
            "Generate audio from white noise: x = G(ReLU(L^-1 z)) (paper eq. 1), z white codes\n"
            "of the model's law (whitening.codes; --codes picks another).\n\n"
            "examples:\n"
            "  mmsin generate --seconds 8 --count 4 --seed 1 --out generated/\n"
            "  mmsin generate --model piano --seconds 30 --out piano.wav"
        ),
    )
    g.add_argument("--seconds", type=float, default=4.0, help="duration (default 4)")
    g.add_argument("--count", type=int, default=1, help="number of files (default 1)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    g.add_argument(
        "--codes",
        choices=CODE_LAWS,
        default=None,
        help="law of z: gaussian, the paper's N(0, I); mixture, N(0, I) scaled per frame by "
        "the training codes' frame power (heavy-tailed like real innovations: onsets); bank, "
        "real training codes drawn frame by frame from one training clip per 8 s; sequence, "
        "the same clip's codes in an order drawn from a Markov chain of the kinds of training "
        "codes, with rests; blocks, the clip's codes replayed in their own order a second at "
        "a time, with their rests (default: the model's whitening.codes)",
    )
    g.add_argument(
        "--envelope-temperature",
        type=float,
        default=None,
        metavar="T",
        help="softmax temperature of G's envelopes inside the frame: 1 as trained (sharp "
        "attacks), higher softer, inf flat (default: the model's "
        "generator.generation_temperature; models with generator.sub_frames > 0 only)",
    )
    g.add_argument(
        "--out",
        metavar="PATH",
        help="output folder (default $MMSIN_HOME/results/generated), or a .wav file with --count 1",
    )
    g.add_argument("--model", metavar="PATH", help=_MODEL_HELP)
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_user_errors(_generate))

    i = subparsers.add_parser(
        "interpolate",
        help="mix two sounds (or two noise seeds) in the embedding -> WAV",
        formatter_class=fmt,
        description=(
            "Decode (1 - r) Z_A + r Z_B: interpolation in the embedding (paper Figs. 6-7).\n"
            "With two audio files of the same instrument a few semitones apart, r = 0.5 gives\n"
            "one note in between rather than two superposed notes.\n\n"
            "examples:\n"
            "  mmsin interpolate A.wav B.wav --out mid.wav            # r = 0.5\n"
            "  mmsin interpolate A.wav B.wav --steps 5 --out sweep/   # r = 0, .25, ..., 1\n"
            "  mmsin interpolate --seeds 1 2 --ratio 0.3 --out mix.wav"
        ),
    )
    i.add_argument("audio", nargs="*", metavar="AUDIO", help="two audio files A and B")
    i.add_argument("--seeds", type=int, nargs=2, metavar=("K1", "K2"), help="two noise seeds")
    i.add_argument("--ratio", type=float, help="r in [0, 1] (default 0.5)")
    i.add_argument("--steps", type=int, help="write n files for r evenly spaced from 0 to 1")
    i.add_argument("--seconds", type=float, default=4.0, help="duration with --seeds (default 4)")
    i.add_argument(
        "--out",
        metavar="PATH",
        help="output WAV (or folder with --steps); default under $MMSIN_HOME/results/interpolated",
    )
    i.add_argument("--model", metavar="PATH", help=_MODEL_HELP)
    i.set_defaults(func=_user_errors(_interpolate))
