"""Experiment bookkeeping: run naming and reuse, note pairing, results.json, CLI registration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsin import experiments as ex
from mmsin import report


def test_pairs_are_same_instrument_and_velocity_five_semitones_apart() -> None:
    meta = [
        {"name": "a60", "pitch": 60, "velocity": 75, "instrument_str": "a"},
        {"name": "a65", "pitch": 65, "velocity": 75, "instrument_str": "a"},
        {"name": "a65v", "pitch": 65, "velocity": 100, "instrument_str": "a"},
        {"name": "b65", "pitch": 65, "velocity": 75, "instrument_str": "b"},
        {"name": "a70", "pitch": 70, "velocity": 75, "instrument_str": "a"},
        {"name": "a64", "pitch": 64, "velocity": 75, "instrument_str": "a"},
    ]
    assert ex._pairs(meta) == [(0, 1), (1, 4)]
    assert ex._pairs(meta, interval=1) == [(5, 1)]


def test_run_config_names_hash_the_whole_config() -> None:
    pytest.importorskip("mmsin.config")
    ctx = ex.Context(preset="small")
    a = ex.run_config(ctx, ex.PIANO, "inv+mm")
    b = ex.run_config(ctx, ex.PIANO, "inv+mm")
    c = ex.run_config(ex.Context(preset="small", overrides=("train.epochs=3",)), ex.PIANO, "inv+mm")
    d = ex.run_config(ctx, ex.PIANO, "mse")
    assert a.name == b.name and a.name.startswith("small-piano-invmm-")
    assert c.name != a.name and c.train.epochs == 3  # another config is another run
    assert d.loss.kind == "mse" and d.name.startswith("small-piano-mse-")
    assert a.data.source == "beethoven-like" and a.data.size == "small"


def test_results_json_and_report_written(tmp_path: Path) -> None:
    ctx = ex.Context(results_root=tmp_path, progress=False)
    folder = ex._out_folder(ctx, "unit")
    section = report.Section("unit").add(report.Table(["k", "v"], [["x", 1.5]]))
    numbers = {"values": np.array([1.0, float("nan")]), "n": np.int64(3), "p": folder}
    out = ex._finish(ctx, "unit", folder, numbers, section)
    data = json.loads((folder / "results.json").read_text())
    assert data == {
        "experiment": "unit",
        "preset": "small",
        "values": [1.0, None],
        "n": 3,
        "p": str(folder),
    }
    assert out.report_path.is_file() and "<table>" in out.report_path.read_text()
    # a second run never overwrites the first
    assert ex._out_folder(ctx, "unit") != folder


def test_unknown_experiment_and_cli_registration() -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.run("nope")
    from mmsin.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["experiment", "table1", "--set", "train.epochs=2"])
    assert args.name == "table1" and args.set == ["train.epochs=2"] and args.preset == "small"
    assert parser.parse_args(["demo"]).pairs == 8
    with pytest.raises(SystemExit):
        parser.parse_args(["experiment", "nope"])


def test_cli_lists_every_experiment_without_importing_them() -> None:
    from mmsin.cli import experiment as cli_ex

    assert sorted(cli_ex.EXPERIMENT_NAMES) == sorted(ex.EXPERIMENTS)
