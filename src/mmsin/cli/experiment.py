"""``mmsin experiment NAME``, ``mmsin reproduce`` and ``mmsin demo``: the paper's Section 5."""

from __future__ import annotations

import argparse
from typing import Any

#: The experiments of :data:`mmsin.experiments.EXPERIMENTS`, listed here so that building the
#: parser does not import torch (``mmsin --help`` stays fast); a test checks the two agree.
EXPERIMENT_NAMES = (
    "reconstruction",
    "table1",
    "generation",
    "moment_matching",
    "pitch_interpolation",
    "waveform_interpolation",
    "transposition",
    "scattering",
)


def _context(args: argparse.Namespace) -> Any:
    from mmsin.experiments import Context

    return Context(
        preset=args.preset,
        progress=not args.quiet,
        seed=args.seed,
        overrides=tuple(args.set or ()),
        n_examples=args.examples,
        n_pairs=args.pairs,
        n_samples=args.samples,
        crepe_model=args.crepe,
        model=tuple(getattr(args, "model", None) or ()),
    )


def _check_outputs() -> None:
    """The results and runs folders under $MMSIN_HOME must be writable before anything runs."""
    from mmsin import paths
    from mmsin.io import check_output_folder

    check_output_folder(paths.results_dir())
    check_output_folder(paths.runs_dir())


def _experiment(args: argparse.Namespace) -> int:
    from mmsin.experiments import run

    _check_outputs()
    outcome = run(args.name, _context(args))
    print(outcome.report_path)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from mmsin.experiments import reproduce

    _check_outputs()
    print(reproduce(_context(args), pretrained=not args.no_pretrained))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mmsin.experiments import demo

    _check_outputs()
    print(demo(_context(args), pretrained=not args.no_pretrained))
    return 0


def _common(p: argparse.ArgumentParser, *, demo: bool = False) -> None:
    p.add_argument(
        "--preset",
        default="small",
        choices=("small", "paper", "pitched"),
        help="small: embedded data, CPU minutes; paper: the paper's configuration (GPU hours); "
        "pitched: small with the partials generator and spectral term (docs/model.md)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.FIELD=VALUE",
        help="override a training config field, e.g. train.epochs=5 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of noise codes and pair choice")
    p.add_argument("--examples", type=int, default=2 if demo else 4, help="examples shown")
    p.add_argument(
        "--pairs",
        type=int,
        default=2 if demo else 12,
        help="pitch-interpolation pairs per interval (1, 3, 5, 7 semitones) and "
        "waveform-interpolation pairs",
    )
    p.add_argument("--samples", type=int, default=4 if demo else 6, help="generated samples")
    p.add_argument(
        "--crepe", default="tiny", choices=("tiny", "full"), help="CREPE pitch-tracker size"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")


def _no_pretrained(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-pretrained",
        action="store_true",
        help="do not rerun reconstruction, pitch_interpolation, generation and "
        "waveform_interpolation with the shipped pretrained models (by default they run after "
        "the experiments with the models trained now, labelled apart)",
    )


def register(subparsers: Any) -> None:
    """Add ``experiment``, ``reproduce`` and ``demo`` to the ``mmsin`` command."""
    e = subparsers.add_parser(
        "experiment",
        help="run one of the paper's Section 5 experiments",
        description=(
            "Run one experiment of the paper's Section 5 and write results/NAME/PRESET-TIME/ "
            "with results.json, WAV files, PNG figures and a self-contained report.html. "
            "Models are trained with the preset (or reused when a run with the same "
            "configuration exists). Experiments: " + ", ".join(EXPERIMENT_NAMES) + "."
        ),
    )
    e.add_argument("name", choices=sorted(EXPERIMENT_NAMES), help="which experiment")
    e.add_argument(
        "--model",
        action="append",
        metavar="NAME|PATH",
        help="use this model instead of training: a shipped pretrained model (notes, piano) "
        "or a checkpoint / run folder; repeat for one per data set (e.g. --model notes "
        "--model piano). Used by reconstruction, generation, pitch_interpolation, "
        "waveform_interpolation and moment_matching; table1 takes three, one per loss "
        "(e.g. --model piano-mse --model piano-inv --model piano), or trains them",
    )
    _common(e)
    e.set_defaults(func=_experiment)
    r = subparsers.add_parser(
        "reproduce",
        help="run every experiment and write one combined report",
        description="Run all Section 5 experiments and write results/reproduce/.../report.html.",
    )
    _common(r)
    _no_pretrained(r)
    r.set_defaults(func=_reproduce)
    d = subparsers.add_parser(
        "demo",
        help="the whole story at small scale (data, models, experiments, report)",
        description=(
            "Build the small embedded data sets, train four models at demo scale (notes: "
            "inv+mm with the pitched preset, what ships; piano: mse, inv and inv+mm with the "
            "paper's literal G, the small preset: Table 1), run every experiment, rerun the "
            "inference experiments with the shipped pretrained models for comparison, and "
            "write the report; prints the report's path at the end. Meant for a laptop CPU "
            "(about 10 minutes on 2 cores)."
        ),
    )
    _common(d, demo=True)
    _no_pretrained(d)
    d.set_defaults(func=_demo)
