"""Augmentation of the nsynth-like training notes: detuning, reverb, and where they apply.

Each check is against an independent measurement: the detuning against an FFT peak of the
rendered note, the reverb's decay against a Schroeder energy-decay fit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mmsin.data import load_clips
from mmsin.data.augment import (
    RUMBLE_HZ,
    AugmentSpec,
    add_floor,
    apply_reverb,
    draw_augmentation,
    floor_noise,
    pitch_bend,
    reverb_ir,
)
from mmsin.data.nsynth_like import NSYNTH_SIZES, build_nsynth_like
from mmsin.data.render import Synth, find_soundfonts, render_note

FS = 16000
FONTS = {f.name: f for f in find_soundfonts()}
needs_fluid = pytest.mark.skipif("FluidR3_GM.sf2" not in FONTS, reason="FluidR3_GM.sf2 missing")


def peak_hz(x: np.ndarray, fs: int, lo: float, hi: float) -> float:
    """The strongest FFT peak in [lo, hi] Hz: 8x zero-padded Hann spectrum, parabola on log|X|."""
    nfft = 8 * x.size
    mag = np.log(np.abs(np.fft.rfft(x * np.hanning(x.size), nfft)) + 1e-30)
    a, b = int(lo * nfft / fs), int(hi * nfft / fs)
    i = a + int(np.argmax(mag[a:b]))
    y0, y1, y2 = mag[i - 1 : i + 2]
    return (i + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) * fs / nfft


@needs_fluid
@pytest.mark.parametrize("cents", [20.0, -20.0])
def test_detune_moves_the_rendered_f0(cents: float) -> None:
    # FluidR3's flute at A4: a steady, nearly sinusoidal fundamental at 440 Hz.
    with Synth(FS, gain=1.0) as synth:
        synth.select(0, FONTS["FluidR3_GM.sf2"], 0, 73)
        dry = render_note(synth, 69, 100)
        synth.pitch_bend(0, pitch_bend(cents))
        bent = render_note(synth, 69, 100)
        synth.pitch_bend(0, 0)
    seg = slice(int(0.5 * FS), int(2.5 * FS))
    f_dry = peak_hz(dry[seg], FS, 400, 480)
    f_bent = peak_hz(bent[seg], FS, 400, 480)
    moved = 1200 * np.log2(f_bent / f_dry)
    assert abs(moved - cents) <= 2.0, moved


@pytest.mark.parametrize("rt60", [0.2, 0.5, 1.0])
def test_reverb_ir_decays_at_its_rt60(rt60: float) -> None:
    h = reverb_ir(rt60, FS, np.random.default_rng(1))
    assert h.size == round(rt60 * FS)
    assert np.sum(h**2) == pytest.approx(1.0)
    # Schroeder backward integration, then a line through the -5 to -35 dB part (ISO 3382's
    # T30, extrapolated to 60 dB).
    edc = np.cumsum((h**2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    t = np.arange(h.size) / FS
    part = (edc_db <= -5) & (edc_db >= -35)
    slope = np.polyfit(t[part], edc_db[part], 1)[0]  # dB per second
    assert -60.0 / slope == pytest.approx(rt60, rel=0.05)


def test_apply_reverb_mixes_dry_and_wet() -> None:
    rng = np.random.default_rng(2)
    h = reverb_ir(0.3, FS, rng)
    x = np.zeros(FS, np.float32)
    x[100] = 1.0
    y = apply_reverb(x, h, 0.25)
    assert y.shape == x.shape
    expected = 0.75 * x.astype(np.float64)
    expected[100 : 100 + h.size] += 0.25 * h
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_array_equal(apply_reverb(x, h, 0.0), x)


def test_draws_are_seeded_per_note() -> None:
    spec = AugmentSpec()
    a = [draw_augmentation(f"guitar_acoustic_000-{p:03d}-100", spec) for p in range(40, 80)]
    b = [draw_augmentation(f"guitar_acoustic_000-{p:03d}-100", spec) for p in range(40, 80)]
    assert a == b
    other = [draw_augmentation(n, AugmentSpec(seed=1)) for n in ("guitar_acoustic_000-040-100",)]
    assert other[0] != a[0]
    detunes = np.array([x.detune_cents for x in a])
    assert np.all(np.abs(detunes) <= 30.0) and detunes.std() > 5.0
    rooms = [x for x in a if x.rt60 is not None]
    assert 0 < len(rooms) < len(a)
    assert all(0.2 <= x.rt60 <= 1.0 and 0.1 <= x.wet <= 0.4 for x in rooms)  # type: ignore[operator]


def test_floor_levels_against_welch() -> None:
    """Hiss is white at its level re the peak; rumble lies below RUMBLE_HZ at its level
    (scipy's Welch estimate, an independent reference)."""
    from scipy.signal import welch

    fs = 16000
    rng = np.random.default_rng(0)
    y = floor_noise(8 * fs, fs, 0.5, -60.0, -40.0, rng)
    f, p = welch(y, fs, nperseg=4096)
    hiss_psd = 0.5**2 * 10 ** (-60 / 10) / (fs / 2)  # white: its power spread over 0..fs/2
    np.testing.assert_allclose(np.median(p[(f > 1000) & (f < 7000)]), hiss_psd, rtol=0.15)
    low = p[f < 2 * RUMBLE_HZ].sum() * (f[1] - f[0])
    assert 10 * np.log10(low / 0.5**2) == pytest.approx(-40.0, abs=1.0)
    assert p[(f > 10) & (f < 40)].mean() > 1e3 * p[(f > 500) & (f < 1000)].mean()


def test_floor_is_drawn_for_a_share_and_leaves_the_earlier_draws() -> None:
    names = [f"keyboard_acoustic_{i:03d}-{p:03d}-100" for i in range(4) for p in range(30, 90)]
    clean = [draw_augmentation(n, AugmentSpec()) for n in names]
    floored = [draw_augmentation(n, AugmentSpec(floor_share=0.75)) for n in names]
    assert all(a.hiss_db is None for a in clean)
    # the detuning and the room are drawn first, as before the floor existed
    assert [(a.bend, a.rt60, a.wet) for a in clean] == [(b.bend, b.rt60, b.wet) for b in floored]
    with_floor = [b for b in floored if b.hiss_db is not None]
    assert 0.6 * len(names) < len(with_floor) < 0.9 * len(names)
    assert all(-80 <= b.hiss_db <= -50 and -70 <= b.rumble_db <= -40 for b in with_floor)  # type: ignore[operator]
    x = np.sin(np.arange(16000) * 0.05).astype(np.float32)
    a = with_floor[0]
    y1 = add_floor(x, 16000, a, "n", 0)
    assert np.array_equal(y1, add_floor(x, 16000, a, "n", 0))  # seeded by the note
    assert not np.array_equal(y1, add_floor(x, 16000, a, "m", 0))
    np.testing.assert_array_equal(add_floor(x, 16000, clean[0], "n", 0), x)  # no floor: as is


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two builds of a tiny augmented set (every group, one instrument each), same spec."""
    spec = dataclasses.replace(
        NSYNTH_SIZES["full"],
        per_family=1,
        step=24,
        velocities=(25, 100),
        fonts=("FluidR3_GM.sf2", "sf_GMbank.sf2", "TimGM6mb.sf2"),
        heldout_pitches=(60, 62),
    )
    base = tmp_path_factory.mktemp("aug")
    return tuple(  # type: ignore[return-value]
        build_nsynth_like(base / name, "full", progress=False, spec=spec) for name in "ab"
    )


def table(root: Path, folder: str) -> dict[str, dict]:
    return json.loads((root / folder / "examples.json").read_text())


def test_augmentation_touches_training_notes_only(tiny: tuple[Path, Path]) -> None:
    root = tiny[0]
    notes = table(root, "nsynth-train")
    held = table(root, "nsynth-heldout")
    assert held and all(
        n["split"] == "heldout" and n["augmentation"] is None for n in held.values()
    )
    by_split: dict[str, list[dict]] = {"train": [], "test": []}
    for n in notes.values():
        by_split[n["split"]].append(n)
    assert all(n["augmentation"] is None for n in by_split["test"])
    assert by_split["train"] and all(n["augmentation"] for n in by_split["train"])
    # One test velocity per instrument, as the paper's split.
    tested = {(n["instrument_str"], n["velocity"]) for n in by_split["test"]}
    assert len(tested) == len({i for i, _ in tested})
    # The loader follows the recorded split, with every family of the look-alike.
    assert {m["name"] for m in load_clips(root, "train").meta} == {
        n["note_str"] for n in by_split["train"]
    }
    test = load_clips(root, "test")
    assert {m["name"] for m in test.meta} == {n["note_str"] for n in by_split["test"]}
    assert {"guitar", "string", "bass"} <= {m["family"] for m in test.meta}
    assert {m["source"] for m in test.meta} == {"acoustic", "electronic"}
    with pytest.raises(ValueError, match="seed"):
        load_clips(root, "test", seed=1)
    # Pitch errors are recorded against the nominal MIDI note, the detune included.
    for n in by_split["train"]:
        assert abs(n["f0_error_cents"] - n["augmentation"]["detune_cents"]) <= 50.0


def test_augmented_build_is_reproducible(tiny: tuple[Path, Path]) -> None:
    a, b = tiny
    assert table(a, "nsynth-train") == table(b, "nsynth-train")
    for wav in sorted((a / "nsynth-train" / "audio").glob("*.wav")):
        assert wav.read_bytes() == (b / "nsynth-train" / "audio" / wav.name).read_bytes()
