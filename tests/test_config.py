"""Config dataclasses: presets carry the paper's numbers, JSON round trip, CLI overrides."""

from __future__ import annotations

import json

import pytest

from mmsin.config import Config, override, preset


def test_paper_preset_has_the_papers_hyperparameters() -> None:
    cfg = preset("paper")
    # Section 5 / SPEC 1.4: J = 10, Q = 12, P = 12, M = 4, kernel 7, 2^K = 32, Adam 5e-4,
    # batch 128, 1200 epochs; the default generator is causal.
    assert (cfg.scattering.J, cfg.scattering.Q, cfg.scattering.P) == (10, 12, 12)
    assert cfg.scattering.variant == "paper"
    assert cfg.whitening.M == 4
    assert cfg.generator.kernel_size == 7 and cfg.generator.look_ahead == 0
    assert 2**cfg.loss.K == 32
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs) == (5e-4, 128, 1200)


def test_small_preset_keeps_the_papers_encoder_and_is_shorter() -> None:
    small, paper = preset("small"), preset("paper")
    assert small.scattering == paper.scattering
    assert small.train.epochs < paper.train.epochs
    assert small.train.batch_size < paper.train.batch_size


def test_presets_are_fresh_copies() -> None:
    a = preset("small")
    a.train.lr = 1.0
    assert preset("small").train.lr != 1.0


@pytest.mark.parametrize("name", ["small", "paper"])
def test_json_round_trip(name: str, tmp_path) -> None:
    cfg = override(preset(name), ["train.lr_milestones=[10,20]", "train.context_frames=3"])
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    path = cfg.save(tmp_path / "c.json")
    assert Config.load(path) == cfg
    assert json.loads(path.read_text())["train"]["lr_milestones"] == [10, 20]


def test_override_parses_types() -> None:
    cfg = override(
        preset("small"),
        [
            "train.lr=1e-3",
            "train.epochs=7",
            "train.amp=false",
            "loss.kind=inv",
            "train.context_frames=none",
            "train.lr_milestones=3,5",
            "scattering.J=7",
        ],
    )
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 7 and cfg.train.amp is False
    assert cfg.loss.kind == "inv" and cfg.train.context_frames is None
    assert cfg.train.lr_milestones == [3, 5] and cfg.scattering.J == 7


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.nope=1", "unknown field 'nope'"),
        ("nope.lr=1", "unknown section 'nope'"),
        ("train.epochs=1.5", "not a valid int"),
        ("train.amp=maybe", "not a valid bool"),
        ("train.lr", "expected section.field=value"),
        ("loss.kind=l2", "choose one of"),
        ("train.lr=-1", "must be positive"),
        ("train=3", "unknown field 'train'"),
    ],
)
def test_override_errors_are_clear(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        override(preset("small"), [item])
    assert "\n" not in str(info.value)


def test_from_dict_rejects_unknown_and_mistyped_fields() -> None:
    d = preset("small").to_dict()
    d["train"]["learning_rate"] = 1
    with pytest.raises(ValueError, match=r"train\.learning_rate"):
        Config.from_dict(d)
    d = preset("small").to_dict()
    d["train"]["epochs"] = "10"
    with pytest.raises(ValueError, match=r"train\.epochs"):
        Config.from_dict(d)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown preset 'big'"):
        preset("big")
