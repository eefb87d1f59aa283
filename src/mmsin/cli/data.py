"""``mmsin data``: build the offline look-alike data sets and describe any data set."""

from __future__ import annotations

import argparse
from typing import Any


def _build(args: argparse.Namespace) -> int:
    from mmsin.data import build

    path = build(args.kind, args.size, args.root, progress=not args.quiet)
    print(path)
    return 0


def _info(args: argparse.Namespace) -> int:
    from mmsin.data.info import describe, format_description

    print(format_description(describe(args.source, args.size)))
    return 0


def register(subparsers: Any) -> None:
    """Add ``data build`` and ``data info`` to the ``mmsin`` command."""
    data = subparsers.add_parser(
        "data",
        help="build the offline data sets, describe a data set",
        description=(
            "Data sets for MM-SIN. `build` renders the offline look-alikes of the paper's data "
            "from real sampled instruments (General MIDI sound fonts through fluidsynth): "
            "nsynth-like (single notes of acoustic keyboards and flutes, NSynth's layout) and "
            "beethoven-like (Beethoven and piano music from music21's corpus on a sampled "
            "piano, SampleRNN's layout). `info` describes a built set or any data set on disk."
        ),
    )
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    b = sub.add_parser(
        "build",
        help="render nsynth-like or beethoven-like, or write real-notes or real-guitar (cached)",
        description=(
            "Render an offline look-alike into $MMSIN_HOME/data/KIND-SIZE (or --root). "
            "Cached: a second call with the same parameters returns at once."
        ),
    )
    b.add_argument(
        "kind",
        choices=["nsynth-like", "beethoven-like", "real-notes", "real-guitar"],
        help="which data set (real-notes: recorded Steinway notes, real-guitar: two recorded "
        "guitars' open strings; both to evaluate on, never trained on; one size)",
    )
    b.add_argument(
        "--size",
        choices=["small", "full"],
        default="small",
        help="small: a few hundred notes / ~16 min of music, about 10 s; "
        "full: every instrument and pitch / ~6 h of music (default: small)",
    )
    b.add_argument(
        "--root", default=None, help="output folder (default: $MMSIN_HOME/data/KIND-SIZE)"
    )
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_build)
    i = sub.add_parser(
        "info",
        help="counts, durations, histograms and split sizes of a data set",
        description=(
            "Describe a data set without decoding its audio: a look-alike name "
            "(nsynth-like, beethoven-like) or a path to an NSynth tree, SampleRNN arrays or "
            "extracts, or any folder of audio."
        ),
    )
    i.add_argument("source", metavar="PATH_OR_NAME", help="data-set path or look-alike name")
    i.add_argument("--size", choices=["small", "full"], default="small", help="look-alike size")
    i.set_defaults(func=_info)
    data.set_defaults(func=lambda args: data.print_help() or 0)
