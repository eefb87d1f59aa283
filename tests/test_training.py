"""Training: feature cache, segment alignment, exact resume, checkpoints, NaN handling.

Tiny shapes throughout (J = 5, two wavelets per octave, a narrow generator) so every test runs
in a few seconds on one core.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("mmsin.losses")
from _tiny import TINY as _TINY
from mmsin import assembly, training
from mmsin.checkpoint import (
    CHECKPOINT_NAME,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from mmsin.config import Config, override, preset
from mmsin.data import Clips
from mmsin.training import features, loop

J = 5
HOP = 2**J
# The reliability tests' tiny shapes (tests/_tiny.py), with this file's own seed.
TINY = [*[t for t in _TINY if not t.startswith("train.seed=")], "train.seed=3"]


def tiny(epochs: int = 2, *extra: str) -> Config:
    return override(preset("small"), [*TINY, f"train.epochs={epochs}", *extra])


def clips(n_train: int = 6, n_test: int = 2, frames: int = 10) -> tuple[Clips, Clips]:
    """Decaying harmonic tones (distinct pitches) plus a little noise, peak 1."""
    rng = np.random.default_rng(5)
    t = np.arange(frames * HOP) / 4096
    rows = []
    for i in range(n_train + n_test):
        f0 = 110 * 2 ** (i / 5)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * np.exp(-2 * t)
        x = x + 0.01 * rng.standard_normal(len(t))
        rows.append(x / np.abs(x).max())
    a = np.asarray(rows, np.float32)
    meta = [{"name": f"tone{i}"} for i in range(len(rows))]
    return (
        Clips(a[:n_train], 4096, meta[:n_train], "train", "tones"),
        Clips(a[n_train:], 4096, meta[n_train:], "test", "tones"),
    )


def run(cfg: Config, run_dir: Path, cache: Path, **kw: Any) -> training.TrainResult:
    tr, te = clips()
    return training.train(
        cfg,
        run_dir,
        train_clips=tr,
        test_clips=te,
        cache_dir=cache,
        progress=False,
        tensorboard=False,
        **kw,
    )


def generator_state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["generator"]


# ----------------------------------------------------------------------------- features


def test_features_match_an_independent_computation(tmp_path: Path) -> None:
    cfg = tiny()
    tr, te = clips()
    f = training.prepare_features(cfg, tr, te, cache_dir=tmp_path, context=(2, 0))
    S = assembly.build_scattering(cfg)(torch.as_tensor(tr.audio))  # (6, C, 10 frames)
    norm = S.abs().mean(dim=(0, 2))
    torch.testing.assert_close(f.norm, norm)
    # Segments of 4 frames: starts 0, 4 and the right-aligned 6 (10 frames per clip).
    starts = [0, 4, 6]
    assert f.train_frames.shape == (6 * len(starts), S.shape[1], 2 + 4)
    x = np.pad(tr.audio, ((0, 0), (HOP - 1, 0)))  # output block n stands for x[(n-1)H+1..nH]
    for k, n0 in enumerate(starts):
        rows = slice(k * 6, (k + 1) * 6)
        want_frames = torch.nn.functional.pad(S / norm[:, None], (2, 0))[..., n0 : n0 + 6]
        torch.testing.assert_close(f.train_frames[rows], want_frames)
        want_wave = torch.as_tensor(x[:, n0 * HOP : (n0 + 4) * HOP])
        torch.testing.assert_close(f.train_wave[rows], want_wave)
    sk = assembly.build_scalogram(cfg)(f.train_wave)
    torch.testing.assert_close(f.train_sk, sk)
    torch.testing.assert_close(f.sk_mean_abs, sk.abs().mean(dim=(0, 2)))
    torch.testing.assert_close(f.sk_rms, sk.pow(2).mean(dim=(0, 2)).sqrt())
    assert f.test_frames.shape[0] == 2 * len(starts)


def test_features_are_cached_once_per_data_and_config(tmp_path: Path, monkeypatch) -> None:
    cfg = tiny()
    tr, te = clips()
    first = training.prepare_features(cfg, tr, te, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.pt"))) == 1

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("features recomputed although cached")

    monkeypatch.setattr(features, "_compute_features", boom)
    again = training.prepare_features(cfg, tr, te, cache_dir=tmp_path)
    torch.testing.assert_close(again.train_frames, first.train_frames)
    # Anything that changes the features changes the key: other data, other segment length.
    monkeypatch.undo()
    tr2 = Clips(tr.audio * 0.5, tr.fs, tr.meta, tr.split, tr.source)
    training.prepare_features(cfg, tr2, te, cache_dir=tmp_path)
    training.prepare_features(tiny(2, "train.segment_frames=3"), tr, te, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.pt"))) == 3
    # ...and what does not (learning rate, epochs) reuses it.
    training.prepare_features(tiny(9, "train.lr=0.1"), tr, te, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.pt"))) == 3


def test_an_older_cache_is_never_read(tmp_path: Path, caplog) -> None:
    """A cache file of an older CACHE_VERSION (v2 named features-KEY.pt, before S_J's linear
    order 1 and J=10 accuracy) is not loaded; one warning line says to delete it."""
    cfg = tiny()
    tr, te = clips()
    first = training.prepare_features(cfg, tr, te, cache_dir=tmp_path)
    [new] = list(tmp_path.glob("features-*.pt"))
    assert new.name.startswith(f"features-v{features.CACHE_VERSION}-")
    # Old files with plausible content: the same payload with every S_J frame zeroed.
    payload = first.to_payload()
    payload["train_frames"] = torch.zeros_like(payload["train_frames"])
    old = [tmp_path / "features-0123456789abcdef0123.pt", tmp_path / "features-v2-abc.pt"]
    for f in old:
        torch.save(payload, f)
    new.unlink()
    with caplog.at_level("WARNING", logger="mmsin.training"):
        again = training.prepare_features(cfg, tr, te, cache_dir=tmp_path)
    torch.testing.assert_close(again.train_frames, first.train_frames)  # recomputed
    lines = [r.getMessage() for r in caplog.records if "older mmsin" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "delete" in lines[0]
    assert all(str(f) in lines[0] for f in old) and all(f.is_file() for f in old)


def test_clips_shorter_than_a_segment_are_a_clear_error(tmp_path: Path) -> None:
    tr, te = clips(frames=3)
    with pytest.raises(ValueError, match=r"fewer than train\.segment_frames=4"):
        training.prepare_features(tiny(), tr, te, cache_dir=tmp_path)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["mse", "inv", "inv+mm"])
def test_training_lowers_the_loss_and_writes_a_loadable_checkpoint(
    tmp_path: Path, kind: str
) -> None:
    cfg = tiny(6, f"loss.kind={kind}")
    res = run(cfg, tmp_path / "run", tmp_path / "cache")
    hist = res.history["train_loss"]
    assert len(hist) == 6 and all(np.isfinite(hist))
    assert hist[-1] < hist[0]
    ck = load_checkpoint(res.checkpoint)
    assert Config.from_json(ck["config"]) == cfg
    assert ck["epoch"] == 6 and ck["global_step"] == res.global_step
    assert set(ck["sk_stats"]) >= {"mean_abs", "mean", "rms"}
    assert isinstance(ck["git_revision"], str) and ck["data_fingerprint"]
    assert (tmp_path / "run" / "config.json").is_file()


def test_resume_after_interruption_gives_the_uninterrupted_weights(tmp_path: Path) -> None:
    cfg = tiny(3)  # inv+mm: also replays the moment-matching noise exactly
    full = run(cfg, tmp_path / "full", tmp_path / "cache")
    steps_per_epoch = full.global_step // 3
    # Stop mid-epoch 2, then resume to the end.
    part = run(cfg, tmp_path / "part", tmp_path / "cache", max_steps=steps_per_epoch + 1)
    assert part.stopped_early and part.global_step == steps_per_epoch + 1
    ck = load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 1)
    done = run(cfg, tmp_path / "part", tmp_path / "cache", resume=True)
    assert done.global_step == full.global_step
    a = generator_state(tmp_path / "full" / CHECKPOINT_NAME)
    b = generator_state(tmp_path / "part" / CHECKPOINT_NAME)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # A different seed gives different weights (the comparison above can fail).
    other = run(tiny(3, "train.seed=4"), tmp_path / "other", tmp_path / "cache")
    c = load_checkpoint(other.checkpoint)["generator"]
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_resume_refuses_other_config_and_fresh_run_refuses_existing(tmp_path: Path) -> None:
    run(tiny(1), tmp_path / "r", tmp_path / "cache")
    with pytest.raises(FileExistsError, match="--resume"):
        run(tiny(1), tmp_path / "r", tmp_path / "cache")
    with pytest.raises(ValueError, match=r"train\.lr"):
        run(tiny(2, "train.lr=0.01"), tmp_path / "r", tmp_path / "cache", resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run(tiny(1), tmp_path / "none", tmp_path / "cache", resume=True)
    # More epochs is allowed.
    assert run(tiny(2), tmp_path / "r", tmp_path / "cache", resume=True).epochs_done == 2


def test_nonfinite_loss_skips_steps_then_stops_keeping_the_good_checkpoint(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    cfg = tiny(1, "train.max_nonfinite_steps=2")
    res = run(cfg, tmp_path / "r", tmp_path / "cache")
    path = res.checkpoint
    before = path.read_bytes()
    real = loop.loss_terms

    def poisoned(*a: Any, **k: Any) -> dict[str, torch.Tensor]:
        terms = real(*a, **k)
        terms["mm"] = terms["mm"] * float("nan")
        return terms

    monkeypatch.setattr(loop, "loss_terms", poisoned)
    with caplog.at_level(logging.ERROR, logger="mmsin.training"):
        with pytest.raises(training.TrainingDiverged, match="term\\(s\\) mm"):
            run(
                tiny(3, "train.max_nonfinite_steps=2"),
                tmp_path / "r",
                tmp_path / "cache",
                resume=True,
            )
    assert "non-finite loss at epoch 1" in caplog.text and "mm" in caplog.text
    assert path.read_bytes() == before


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"x": torch.ones(3)})

    def failing_save(obj: Any, f: Any, *a: Any, **k: Any) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("code ran",))

    bad = tmp_path / "bad.pt"
    torch.save({"format": "mmsin-checkpoint-v1", "x": Evil()}, bad)
    with pytest.raises(ValueError, match="not a readable mmsin checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"x": torch.ones(1)}, other)
    with pytest.raises(ValueError, match="not an mmsin checkpoint"):
        load_checkpoint(other)


def test_rng_state_round_trip(tmp_path: Path) -> None:
    import random

    state = get_rng_state()
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    a = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    set_rng_state(load_checkpoint(path)["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_tensorboard_logs_losses_audio_and_spectrograms(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tr, te = clips()
    cfg = tiny(2, "train.preview_every=2")
    training.train(
        cfg, tmp_path / "r", train_clips=tr, test_clips=te, cache_dir=tmp_path / "c", progress=False
    )
    acc = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"audio": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/total", "loss/inv", "loss/mm", "test/inv"} <= set(tags["scalars"])
    assert any(t.startswith("reconstruction/") for t in tags["audio"])
    assert any(t.startswith("generated/") for t in tags["audio"])
    assert "log-spectrogram" in tags["images"]


def test_damaged_checkpoint_is_detected_and_the_previous_one_used(tmp_path: Path) -> None:
    from mmsin.checkpoint import load_latest_checkpoint, previous_path

    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"x": torch.ones(1000)})
    save_checkpoint(path, {"x": torch.full((1000,), 2.0)})
    assert torch.equal(load_checkpoint(previous_path(path))["x"], torch.ones(1000))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x10  # one flipped bit inside the stored tensor
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"damaged checkpoint|not a readable"):
        load_checkpoint(path)
    payload, used = load_latest_checkpoint(path)
    assert used == previous_path(path) and torch.equal(payload["x"], torch.ones(1000))


def test_run_reports_the_whiteness_of_z_on_train_and_test(tmp_path: Path) -> None:
    import json

    from mmsin.whitening import whiteness_report

    tr, te = clips()
    run(tiny(1), tmp_path / "run", tmp_path / "cache")
    report = json.loads((tmp_path / "run" / "whiteness.json").read_text())
    assert set(report) == {"train", "test"}
    # Independent recomputation from the run's own VAR and normalised S_J.
    feats = training.prepare_features(tiny(1), tr, te, cache_dir=tmp_path / "cache")
    var = assembly.restore_var(feats.var_state)
    S = assembly.build_scattering(tiny(1))(torch.as_tensor(tr.audio)) / feats.norm[:, None]
    direct = whiteness_report(var, S)
    assert report["train"]["cov_rel_fro_error"] == pytest.approx(
        direct["cov_rel_fro_error"], rel=1e-4
    )
    # On the frames it was fitted on, the innovations have zero mean and at most unit variance
    # (exactly 1 in full-rank directions; the eigenvalue floor on the rank-deficient ones of
    # these 60 frames can only lower it).
    assert report["train"]["mean_abs_mean"] < 1e-3
    assert 0.8 < report["train"]["cov_mean_diag"] <= 1.0 + 1e-6
