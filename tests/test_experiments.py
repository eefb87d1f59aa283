"""Experiment bookkeeping: run naming and reuse, note pairing, results.json, CLI registration."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmsin import experiments as ex
from mmsin import report
from mmsin.experiments import driver, shared
from mmsin.experiments.pitch_interpolation import note_pairs


def test_pairs_are_same_instrument_and_velocity_five_semitones_apart() -> None:
    meta = [
        {"name": "a60", "pitch": 60, "velocity": 75, "instrument_str": "a"},
        {"name": "a65", "pitch": 65, "velocity": 75, "instrument_str": "a"},
        {"name": "a65v", "pitch": 65, "velocity": 100, "instrument_str": "a"},
        {"name": "b65", "pitch": 65, "velocity": 75, "instrument_str": "b"},
        {"name": "a70", "pitch": 70, "velocity": 75, "instrument_str": "a"},
        {"name": "a64", "pitch": 64, "velocity": 75, "instrument_str": "a"},
    ]
    assert note_pairs(meta) == [(0, 1), (1, 4)]
    assert note_pairs(meta, interval=1) == [(5, 1)]


def test_classify_midpoint_by_interval() -> None:
    from mmsin.experiments.pitch_interpolation import classify_midpoint

    def hz(m: float) -> float:
        return float(440.0 * 2 ** ((m - 69) / 12))

    # a fourth (the paper's Fig. 6): a quarter of the interval is 125 cents
    assert classify_midpoint(hz(62.5), [hz(62.5)], True, 60, 65) == "intermediate"
    assert classify_midpoint(hz(63.6), [hz(63.6)], True, 60, 65) == "intermediate"
    assert classify_midpoint(hz(63.8), [hz(63.8)], True, 60, 65) == "elsewhere"
    assert classify_midpoint(hz(60.3), [hz(60.3)], True, 60, 65) == "one note"
    assert classify_midpoint(hz(60.0), [hz(60.0), hz(65.0)], False, 60, 65) == "chord"
    # two fundamentals, only one of them a note of the pair: not a chord of the two
    assert classify_midpoint(hz(60.0), [hz(60.0), hz(67.0)], False, 60, 65) == "one note"
    assert classify_midpoint(float("nan"), [], True, 60, 65) == "elsewhere"
    # a semitone: 25 cents each way, for the midpoint and for the notes
    assert classify_midpoint(hz(60.6), [hz(60.6)], True, 60, 61) == "intermediate"
    assert classify_midpoint(hz(60.2), [hz(60.2)], True, 60, 61) == "one note"
    assert classify_midpoint(hz(60.35), [hz(60.35)], True, 60, 61) == "intermediate"
    assert classify_midpoint(hz(61.5), [hz(61.5)], True, 60, 61) == "elsewhere"
    # a fifth: 175 cents around the midpoint, 50 around the notes
    assert classify_midpoint(hz(65.2), [hz(65.2)], True, 62, 69) == "intermediate"
    assert classify_midpoint(hz(68.6), [hz(68.6)], True, 62, 69) == "one note"


def test_original_f0_tracks_each_original_once_per_invocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmsin.evaluation import fidelity

    calls: list[float] = []

    def fake_f0(y: np.ndarray, fs: float, model: str = "tiny") -> float:
        calls.append(float(np.abs(y).max()))
        return 100.0 + len(calls)

    monkeypatch.setattr(fidelity, "median_f0", fake_f0)
    ctx = ex.Context(progress=False)
    x = np.stack([np.full(64, 0.5), np.zeros(64), np.full(64, -2.0)])
    where = (ex.NOTES, "heldout", "small")
    a = shared.original_f0(ctx, where, x, [0, 1, 2], 4096)
    b = shared.original_f0(ctx, where, x, [2, 0], 4096)
    assert calls == [1.0, 1.0]  # peak-normalised; the silent clip is never tracked
    assert a[0] == 101.0 and np.isnan(a[1]) and a[2] == 102.0
    assert list(b) == [102.0, 101.0]
    shared.original_f0(ctx, (ex.NOTES, "test", "small"), x, [0], 4096)  # another split
    assert len(calls) == 3


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


def test_presets_per_data_set_train_the_shipped_head_beside_the_papers_g() -> None:
    pytest.importorskip("mmsin.config")
    ctx = ex.Context(preset="small", presets={ex.NOTES: "pitched"}, overrides=("train.epochs=6",))
    notes = ex.run_config(ctx, ex.NOTES, "inv+mm")
    piano = ex.run_config(ctx, ex.PIANO, "mse")
    assert notes.name.startswith("pitched-notes-invmm-") and notes.generator.head == "partials"
    assert notes.generator.frequencies == "free" and notes.loss.spectral > 0
    assert piano.name.startswith("small-piano-mse-") and piano.generator.head == "conv"
    assert notes.train.epochs == piano.train.epochs == 6 and notes.data.size == "small"
    assert ex.run_config(ex.Context(preset="small"), ex.NOTES, "inv+mm").generator.head == "conv"


def test_demo_trains_the_shipped_preset_on_notes_at_demo_scale(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mmsin.experiments import driver

    seen: dict[str, Any] = {}
    monkeypatch.setattr(driver, "build_lookalike", lambda ctx, kind: None)
    monkeypatch.setattr(driver, "model_available", lambda: True)
    monkeypatch.setattr(
        driver,
        "train_all",
        lambda ctx: seen.update(cfg={d: ex.run_config(ctx, d, l) for d, l in ex.TRAININGS}),
    )
    monkeypatch.setattr(driver, "reproduce", lambda ctx, **kw: tmp_path / "report.html")
    driver.demo(ex.Context(progress=False))
    heads = {d: c.generator.head for d, c in seen["cfg"].items()}
    assert heads == {ex.NOTES: "partials", ex.PIANO: "conv"}
    assert {c.train.epochs for c in seen["cfg"].values()} == {driver.DEMO_EPOCHS}
    # a user's epochs win, and the paper preset is the paper's everywhere
    driver.demo(ex.Context(progress=False, overrides=("train.epochs=2",)))
    assert {c.train.epochs for c in seen["cfg"].values()} == {2}
    driver.demo(ex.Context(preset="paper", progress=False))
    assert {c.generator.head for c in seen["cfg"].values()} == {"conv"}


def test_describe_run_names_generator_loss_data_and_steps() -> None:
    pytest.importorskip("mmsin.config")
    ctx = ex.Context(preset="small", presets={ex.NOTES: "pitched"})
    cfg = ex.run_config(ctx, ex.NOTES, "inv+mm")
    ctx.models = {cfg.name: (None, {"config": cfg.to_dict()})}
    text = ex.describe_run(ctx, cfg.name, 102)
    assert text == (
        f"{cfg.name} (pitched preset: partials generator, free frequencies; inv+mm on "
        "nsynth-like small; 102 steps)"
    )
    piano = ex.run_config(ctx, ex.PIANO, "mse")
    ctx.models[piano.name] = (None, {"config": piano.to_dict()})
    assert "(small preset: the paper's G; mse on beethoven-like small; 5 steps)" in (
        ex.describe_run(ctx, piano.name, 5)
    )


def test_results_json_and_report_written(tmp_path: Path) -> None:
    ctx = ex.Context(results_root=tmp_path, progress=False)
    folder = shared.out_folder(ctx, "unit")
    section = report.Section("unit").add(report.Table(["k", "v"], [["x", 1.5]]))
    numbers = {"values": np.array([1.0, float("nan")]), "n": np.int64(3), "p": folder}
    out = shared.finish(ctx, "unit", folder, numbers, section)
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
    assert shared.out_folder(ctx, "unit") != folder


def test_unknown_experiment_and_cli_registration() -> None:
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.run("nope")
    from mmsin.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["experiment", "table1", "--set", "train.epochs=2"])
    assert args.name == "table1" and args.set == ["train.epochs=2"] and args.preset == "small"
    assert parser.parse_args(["demo"]).pairs == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["experiment", "nope"])


def test_cli_lists_every_experiment_without_importing_them() -> None:
    from mmsin.cli import experiment as cli_ex

    assert sorted(cli_ex.EXPERIMENT_NAMES) == sorted(ex.EXPERIMENTS)


def _shipped() -> bool:
    try:
        from mmsin.model import pretrained_names
    except ImportError:
        return False
    return {"notes", "piano"} <= set(pretrained_names())


@pytest.mark.skipif(not _shipped(), reason="shipped pretrained models not installed")
def test_given_models_are_matched_to_their_training_data() -> None:
    import torch

    from mmsin.model import pretrained_dir

    torch.set_num_threads(1)
    ctx = ex.Context(model=("notes", "piano"), progress=False)
    given = ex.given_models(ctx)
    assert set(given) == {ex.NOTES, ex.PIANO}  # read from each checkpoint's config
    model, info, dataset = shared.model_for(ctx, "pitch_interpolation", ex.NOTES)
    assert dataset == ex.NOTES and info["origin"] == "given" and info["model"] == "notes"
    assert (
        model is given[ex.NOTES][0] and shared.data_size(ctx, model) == "full"
    )  # shipped notes: nsynth-like full
    # the demo evaluates them on the small sets (it never builds the full ones)
    assert shared.data_size(ex.Context(eval_size="small"), model) == "small"
    # nothing is trained when models are given: a missing data set is an error ...
    piano_only = ex.Context(model=("piano",), progress=False)
    with pytest.raises(ValueError, match="pitch_interpolation needs a model trained on"):
        shared.model_for(piano_only, "pitch_interpolation", ex.NOTES)
    # ... unless the experiment can run on the given model's own data
    assert shared.model_for(piano_only, "generation", ex.NOTES, any_dataset=True)[2] == ex.PIANO
    twice = ex.Context(model=("notes", str(pretrained_dir() / "notes.pt")), progress=False)
    with pytest.raises(ValueError, match="also trained on nsynth-like"):
        ex.given_models(twice)
    with pytest.raises(FileNotFoundError, match="no such model"):
        ex.given_models(ex.Context(model=("/nonexistent/model.pt",), progress=False))


def test_reproduce_reruns_inference_experiments_with_pretrained_models_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []

    def fake(name: str) -> Callable[[ex.Context], ex.Outcome]:
        def experiment(ctx: ex.Context) -> ex.Outcome:
            seen.append((name, ctx.model))
            share = 0.875 if ctx.model else 0.125  # what each model set "measured"
            numbers = {"notes": {"f0_within_50_cents": share}} if name == "reconstruction" else {}
            folder = shared.out_folder(ctx, name)
            return shared.finish(ctx, name, folder, numbers, report.Section(name))

        return experiment

    names = ["reconstruction", "table1", "pitch_interpolation"]
    monkeypatch.setattr(driver, "EXPERIMENTS", {n: fake(n) for n in names})
    monkeypatch.setattr(driver, "pretrained_available", lambda: True)
    ctx = ex.Context(results_root=tmp_path, progress=False)
    page = ex.reproduce(ctx, names)
    # the trained-now set runs everything first, then only inference experiments again
    assert seen == [(n, ()) for n in names] + [
        ("reconstruction", ("notes", "piano")),
        ("pitch_interpolation", ("notes", "piano")),
    ]
    data = json.loads((page.parent / "results.json").read_text())
    assert data["reconstruction"]["notes"]["f0_within_50_cents"] == 0.125
    assert data["pretrained"]["reconstruction"]["notes"]["f0_within_50_cents"] == 0.875
    assert (
        "table1" not in data["pretrained"] and data["pretrained"]["models"] == ex.PRETRAINED_LABEL
    )
    assert data["comparison"] == [
        {"metric": "notes: share of f0 within 50 cents", "trained_now": 0.125, "pretrained": 0.875}
    ]
    assert set(data["wall_seconds"]) >= {
        "experiment table1",
        "pretrained experiment reconstruction",
    }
    html = page.read_text()
    assert "reconstruction [A: trained now]" in html
    assert "reconstruction [B: shipped pretrained]" in html and "table1 [A" not in html
    # without pretrained models (or with --no-pretrained) only the trained-now set runs
    seen.clear()
    page = ex.reproduce(ex.Context(results_root=tmp_path, progress=False), names, pretrained=False)
    assert [m for _, m in seen] == [(), (), ()]
    assert "pretrained" not in json.loads((page.parent / "results.json").read_text())
    # pretrained_only (the demo's transposition): run with the shipped models only
    seen.clear()
    ex.reproduce(ctx, names, pretrained_only=("pitch_interpolation",))
    assert seen == [
        ("reconstruction", ()),
        ("table1", ()),
        ("reconstruction", ("notes", "piano")),
        ("pitch_interpolation", ("notes", "piano")),
    ]


def test_report_header_gives_the_wall_time_of_the_whole_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def quick(ctx: ex.Context) -> ex.Outcome:
        folder = shared.out_folder(ctx, "quick")
        return shared.finish(ctx, "quick", folder, {}, report.Section("quick"))

    monkeypatch.setattr(driver, "EXPERIMENTS", {"quick": quick})
    # a run that began 600 s ago (the demo: data and trainings before the experiments)
    ctx = ex.Context(results_root=tmp_path, progress=False, started=time.perf_counter() - 600)
    page = ex.reproduce(ctx, ["quick"], pretrained=False)
    data = json.loads((page.parent / "results.json").read_text())
    assert 600 <= data["wall_seconds_total"] < 700 and data["wall_seconds_sum"] < 60
    header = re.search(r"wall time (\d+) s", page.read_text())
    assert header is not None and 600 <= int(header.group(1)) < 700


def test_models_label_says_where_and_how_long_models_were_trained() -> None:
    ctx = ex.Context()
    cfg = {"train": {"device": "cpu"}}  # "auto" on a machine without a GPU reads the same
    ctx.models = {"small-notes-invmm-1": (None, {"config": cfg})}
    ctx.steps = {"small-notes-invmm-1": 408}
    ctx.trained_now = ["small-notes-invmm-1"]
    assert ex.models_label(ctx) == "trained now on this CPU: small-notes-invmm-1 408 steps"
    ctx.models = {"small-notes-invmm-1": (None, {"config": {"train": {"device": "cuda:0"}}})}
    assert ex.models_label(ctx).startswith("trained now on this GPU: ")
    ctx.trained_now = []
    assert ex.models_label(ctx).startswith("trained earlier (runs reused)")
    assert ex.models_label(ex.Context(model=("piano",))) == "given models: piano"


def test_cli_model_and_no_pretrained_options() -> None:
    from mmsin.cli import build_parser
    from mmsin.cli.experiment import _context

    parser = build_parser()
    args = parser.parse_args(["experiment", "generation", "--model", "notes", "--model", "x.pt"])
    assert args.model == ["notes", "x.pt"] and _context(args).model == ("notes", "x.pt")
    assert _context(parser.parse_args(["experiment", "table1"])).model == ()
    assert parser.parse_args(["demo", "--no-pretrained"]).no_pretrained
    assert not parser.parse_args(["reproduce"]).no_pretrained
