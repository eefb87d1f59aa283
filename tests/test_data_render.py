"""Real notes through fluidsynth (checked with CREPE), SF2 parsing, tiny builds, the CLI."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsin.data import load_clips
from mmsin.data.beethoven_like import BeethovenSize, build_beethoven_like
from mmsin.data.nsynth_like import NSynthSize, build_nsynth_like
from mmsin.data.render import (
    Synth,
    distinct_instruments,
    f0_cents_error,
    find_soundfonts,
    read_presets,
    render_note,
)

FONTS = {f.name: f for f in find_soundfonts()}
needs_fonts = pytest.mark.skipif(
    "TimGM6mb.sf2" not in FONTS, reason="Debian package timgm6mb-soundfont not installed"
)


def crepe_cents(x: np.ndarray, fs: int, midi: int) -> float:
    """Median CREPE (tiny) f0 over 0.1-0.9 s, in cents from the MIDI pitch."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    import torchcrepe

    seg = torch.from_numpy(np.ascontiguousarray(x[int(0.1 * fs) : int(0.9 * fs)]))[None]
    f0, per = torchcrepe.predict(seg, fs, hop_length=fs // 10, fmin=50.0, fmax=2000.0,
                                 model="tiny", return_periodicity=True, device="cpu")  # fmt: skip
    f0 = f0[per > 0.5]
    assert f0.numel() > 0, "CREPE found no voiced frame"
    return float(1200 * np.log2(f0.median().item() / (440 * 2 ** ((midi - 69) / 12))))


def test_f0_estimator_on_missing_fundamental() -> None:
    # Closed form: harmonics 2..6 of 55 Hz (A1) with no fundamental, slightly detuned (+7 cents).
    fs, f0 = 16000, 55.0 * 2 ** (7 / 1200)
    t = np.arange(fs * 2) / fs
    x = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(2, 7))
    assert abs(f0_cents_error(x, fs, 33) - 7.0) < 1.0
    assert abs(f0_cents_error(x, fs, 34) - (7.0 - 100)) < 1.0  # a semitone off is reported
    assert np.isnan(f0_cents_error(np.zeros(fs), fs, 60))


@pytest.mark.slow
@needs_fonts
def test_real_notes_pitch_and_level() -> None:
    font = FONTS["TimGM6mb.sf2"]
    with Synth(16000, gain=1.0) as synth:
        for program, pitches in ((0, (48, 60, 72)), (73, (67, 79))):
            synth.select(0, font, 0, program)
            for pitch in pitches:
                soft = render_note(synth, pitch, 25)
                loud = render_note(synth, pitch, 127)
                assert soft.shape == (64000,) and soft.dtype == np.float32
                assert 0.05 < np.abs(loud).max() < 1.0  # audible, no clipping
                assert np.abs(soft).max() < 0.5 * np.abs(loud).max()  # velocity matters
                assert np.abs(loud[-1600:]).max() < 0.1 * np.abs(loud).max()  # released
                assert abs(crepe_cents(loud, 16000, pitch)) < 20
                assert abs(f0_cents_error(loud, 16000, pitch)) < 20
                # Float output keeps a soft note's detail (no 16-bit steps).
                assert np.unique(soft[:4000]).size > 3000


@needs_fonts
def test_sf2_presets_and_duplicates() -> None:
    presets = read_presets(FONTS["TimGM6mb.sf2"])
    assert len(presets) > 100
    by = {(p.bank, p.program): p for p in presets}
    assert by[(0, 0)].fingerprint and by[(0, 73)].fingerprint != by[(0, 0)].fingerprint
    kept = distinct_instruments([FONTS["TimGM6mb.sf2"]], (0, 1, 3))
    # TimGM6mb plays one set of piano samples for programs 0, 1 and 3: one instrument.
    assert len({p.fingerprint for p in presets if p.bank == 0 and p.program in (0, 1, 3)}) == 1
    assert [(p.program) for p in kept] == [0]


@needs_fonts
def test_tiny_nsynth_like_build(tmp_path: Path) -> None:
    spec = NSynthSize(1, 12, (50, 127), (48, 72), ("TimGM6mb.sf2",))
    root = build_nsynth_like(tmp_path / "n", "small", progress=False, spec=spec)
    table = json.loads((root / "nsynth-train" / "examples.json").read_text())
    # keyboard: pitches 48, 60, 72; flute (range 59-98): 60, 72; two velocities each.
    assert len(table) == (3 + 2) * 2
    rec = table["keyboard_acoustic_000-060-127"]
    assert rec["instrument_family_str"] == "keyboard" and rec["sample_rate"] == 16000
    stamp = (root / "build.json").stat().st_mtime_ns
    build_nsynth_like(tmp_path / "n", "small", progress=False, spec=spec)  # cached
    assert (root / "build.json").stat().st_mtime_ns == stamp
    test = load_clips(root, "test")
    assert len(test) == 3 + 2 and test.audio.shape[1] == 8192


@needs_fonts
def test_tiny_beethoven_like_build(tmp_path: Path) -> None:
    spec = BeethovenSize(("schoenberg_opus19_movement2", "bach_bwv846"), ("TimGM6mb.sf2",))
    root = build_beethoven_like(tmp_path / "b", "small", progress=False, spec=spec)
    train = np.load(root / "music_train.npy")
    assert train.dtype == np.float16 and train.shape[1] == 128000
    summary = json.loads((root / "build.json").read_text())["summary"]
    n = summary["extracts"]
    assert summary["splits"] == {"train": n - 2 * max(1, n // 10), "valid": max(1, n // 10),
                                 "test": max(1, n // 10)}  # fmt: skip
    assert 0.05 < summary["peak"] < 1.0
    clips = load_clips(root, "valid")
    assert clips.audio.shape == (max(1, n // 10), 32768)


def test_cli_info_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from mmsin.cli import main

    monkeypatch.setenv("MMSIN_HOME", str(tmp_path))
    assert main(["data", "info", "nsynth-like"]) == 2
    assert "mmsin data build nsynth-like" in capsys.readouterr().err
    np.save(tmp_path / "a.npy", np.zeros((20, 32768), np.float16))
    assert main(["data", "info", str(tmp_path / "a.npy")]) == 0
    out = capsys.readouterr().out
    assert "clips: 20" in out and "train 16, valid 2, test 2" in out
