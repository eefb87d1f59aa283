"""The ``mmsin`` command: a thin layer that parses arguments, calls the library and prints.

Each area of the package registers its own sub-commands from its own module in this folder
(``register(subparsers)``); ``main`` dispatches. Errors the user can fix (bad paths, bad audio,
missing data) are printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

# Sub-command modules, in the order they appear in ``mmsin --help``.
_MODULES = (
    "mmsin.cli.data",
    "mmsin.cli.scattering",
    "mmsin.cli.model",
    "mmsin.cli.transform",
    "mmsin.cli.experiment",
)


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit status 2."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    from mmsin.data import DataError
    from mmsin.io import AudioError, OutputError

    return (UserError, AudioError, OutputError, DataError, FileNotFoundError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmsin",
        description=(
            "Moment Matching-Scattering Inverse Networks (Andreux & Mallat, ISMIR 2018): "
            "encode audio into a time-frequency scattering embedding, train a causal generator "
            "that inverts it, generate music from white noise and transform it by arithmetic "
            "in the embedding. Outputs go under $MMSIN_HOME (default: the current folder) in "
            "data/, runs/ and results/."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not there (yet); skip it
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int | None] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    try:
        return int(func(args) or 0)
    except _user_error_types() as exc:
        print(f"mmsin {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mmsin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
