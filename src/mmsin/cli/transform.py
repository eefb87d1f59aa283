"""``mmsin transpose``: transformations in the embedding.

Thin: parse, call :meth:`mmsin.MMSIN.transpose_scattering` and the decoder, write the WAV.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from mmsin.cli.model import _MODEL_HELP, _check_size, _load_model, _read_audio, _user_errors

#: Largest transposition accepted, in semitones. The first-order bank spans 3.5 - 1697 Hz
#: (9 octaves); two octaves already move most of a note's partials in or out of it.
MAX_SEMITONES = 24.0


def _semitones(text: str) -> float:
    try:
        k = float(text)
    except ValueError:
        raise ValueError(f"--semitones {text!r}: not a number") from None
    if not math.isfinite(k) or abs(k) > MAX_SEMITONES:
        raise ValueError(
            f"--semitones {text}: must be a finite number between {-MAX_SEMITONES:g} and "
            f"{MAX_SEMITONES:g}"
        )
    return k


def _transpose(args: argparse.Namespace) -> int:
    from mmsin.io import check_output_file, normalize_peak, save_audio

    k = _semitones(args.semitones)
    out = check_output_file(args.out)
    if out.suffix.lower() != ".wav":
        raise ValueError(f"--out {out}: must end in .wav")
    src = Path(args.audio)
    model = _load_model(args)
    x, _ = _read_audio([str(src)], model.fs, model.hop)
    S = model.encode_scattering(x)
    _check_size(model, f"{src} ({S.shape[-1]} frames)", int(S.shape[-1]), 1, out.parent)
    # Through S_J, not Z: Z' = L T_k L^-1 Z is the same up to float32 rounding of Z.
    y = model.decode_scattering(model.transpose_scattering(S, k))[0].cpu().numpy()
    save_audio(out, normalize_peak(y), model.fs)
    print(f"wrote {out} ({src} transposed by {k:+g} semitones, {len(y) / model.fs:.2f} s)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``transpose`` to the ``mmsin`` command."""
    t = subparsers.add_parser(
        "transpose",
        help="transpose audio by K semitones in the embedding -> WAV",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Transpose a sound by a linear operator on its embedding: the first-order scalogram\n"
            "(a semitone per bin) is shifted by K bins, S_J' = T_K S_J, then decoded by G.\n"
            "Exact on the first order away from the bank's edges, approximate on the second\n"
            "(docs/scattering.md, 'Transposition'). Fractional K interpolates.\n\n"
            "examples:\n"
            "  mmsin transpose note.wav --semitones 7 --out fifth-up.wav\n"
            "  mmsin transpose note.wav --semitones -12 --out octave-down.wav --model notes"
        ),
    )
    t.add_argument("audio", metavar="AUDIO", help="audio file: wav, flac, ogg, ...")
    t.add_argument(
        "--semitones",
        required=True,
        metavar="K",
        help=f"semitones, -{MAX_SEMITONES:g} .. {MAX_SEMITONES:g} (may be fractional)",
    )
    t.add_argument("--out", required=True, metavar="FILE.wav", help="output WAV file")
    t.add_argument("--model", metavar="PATH", help=_MODEL_HELP)
    t.set_defaults(func=_user_errors(_transpose))
