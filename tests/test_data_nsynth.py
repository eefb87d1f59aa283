"""NSynth loader on a tiny fake tree in NSynth's published layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmsin.data import DataError, load_clips, resolve
from mmsin.data.nsynth import load_nsynth

FS = 16000


def midi_hz(p: int) -> float:
    return 440.0 * 2 ** ((p - 69) / 12)


def write_tree(root: Path, notes: list[tuple[str, str, str, int, int, float]]) -> Path:
    """notes: (folder, family, source, pitch, velocity, amplitude); 4 s sines at the pitch."""
    by_folder: dict[str, dict] = {}
    t = np.arange(4 * FS) / FS
    for k, (folder, fam, src, pitch, vel, amp) in enumerate(notes):
        inst = f"{fam}_{src}_{int(folder.endswith('test')):03d}"  # one per folder
        note_str = f"{inst}-{pitch:03d}-{vel:03d}"
        d = root / folder / "audio"
        d.mkdir(parents=True, exist_ok=True)
        x = amp * np.sin(2 * np.pi * midi_hz(pitch) * t) * np.exp(-t)
        sf.write(d / f"{note_str}.wav", x, FS, subtype="PCM_16")
        by_folder.setdefault(folder, {})[note_str] = {
            "note_str": note_str, "note": k, "sample_rate": FS, "pitch": pitch,
            "velocity": vel, "instrument": int(folder.endswith("test")), "instrument_str": inst,
            "instrument_family": ["bass", "brass", "flute", "guitar", "keyboard"].index(fam),
            "instrument_family_str": fam, "instrument_source": 0 if src == "acoustic" else 1,
            "instrument_source_str": src, "qualities": [0] * 10, "qualities_str": [],
        }  # fmt: skip
    for folder, table in by_folder.items():
        (root / folder / "examples.json").write_text(json.dumps(table))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    notes = []
    for folder in ("nsynth-train", "nsynth-test"):
        for fam in ("keyboard", "flute"):
            for pitch in (48, 60, 72):
                for vel in (25, 75, 127):
                    notes.append((folder, fam, "acoustic", pitch, vel, 0.02 * vel / 127))
    notes += [
        ("nsynth-train", "guitar", "acoustic", 60, 75, 0.5),  # other family
        ("nsynth-train", "keyboard", "electronic", 60, 75, 0.5),  # other source
        ("nsynth-train", "flute", "acoustic", 115, 75, 0.5),  # above MIDI 110
    ]
    return write_tree(tmp_path / "nsynth", notes)


def test_selection_and_velocity_split(tree: Path) -> None:
    train = load_clips(tree, "train")
    test = load_clips(tree, "test")
    names = {m["name"] for m in train.meta} | {m["name"] for m in test.meta}
    # 2 families x 2 folders (one instrument each) x 3 pitches x 3 velocities; the guitar,
    # the electronic keyboard and the MIDI 115 flute are filtered out.
    assert len(names) == len(train) + len(test) == 36
    assert len(test) == 4 * 3  # per instrument: one velocity x 3 pitches
    assert all(m["family"] in ("keyboard", "flute") and m["source"] == "acoustic"
               for m in train.meta + test.meta)  # fmt: skip
    assert all(20 <= m["pitch"] <= 110 for m in train.meta + test.meta)
    # One velocity per instrument in test, none of its notes in train.
    for inst in {m["instrument_str"] for m in test.meta}:
        v_test = {m["velocity"] for m in test.meta if m["instrument_str"] == inst}
        v_train = {m["velocity"] for m in train.meta if m["instrument_str"] == inst}
        assert len(v_test) == 1 and not (v_test & v_train)
    again = load_clips(tree, "test")
    assert [m["name"] for m in again.meta] == [m["name"] for m in test.meta]


def test_clip_format_resampling_and_normalisation(tree: Path) -> None:
    clips = load_nsynth(tree, "all", fs=4096)
    assert clips.audio.shape[1] == 8192 and clips.audio.dtype == np.float32
    assert np.allclose(np.abs(clips.audio).max(axis=1), 1.0, atol=1e-6)
    # A 440 Hz note stays at 440 Hz after 16 kHz -> 4096 Hz (FFT peak, 0.5 Hz bins).
    i = next(k for k, m in enumerate(clips.meta) if m["pitch"] == 72)
    spec = np.abs(np.fft.rfft(clips.audio[i]))
    assert abs(np.argmax(spec) * 4096 / 8192 - midi_hz(72)) < 1.0
    raw = load_nsynth(tree, "all", fs=16000, normalize=False, seconds=1.0)
    assert raw.audio.shape[1] == 16000 and np.abs(raw.audio).max() < 0.03


def test_folder_rule_and_filters(tree: Path) -> None:
    test = load_nsynth(tree, "test", split_rule="folders")
    assert len(test) == 18
    guitars = load_nsynth(tree, "all", families=("guitar",))
    assert [m["family"] for m in guitars.meta] == ["guitar"]
    high = load_nsynth(tree, "all", pitch_range=(100, 120))
    assert [m["pitch"] for m in high.meta] == [115]
    with pytest.raises(ValueError, match="split"):
        load_nsynth(tree, "valid")


def test_silent_note_dropped(tmp_path: Path) -> None:
    notes = [("nsynth-test", "flute", "acoustic", 60, v, 0.3) for v in (25, 50, 75)]
    notes.append(("nsynth-test", "flute", "acoustic", 62, 25, 0.0))
    root = write_tree(tmp_path / "n", notes)
    clips = load_nsynth(root, "all")
    assert len(clips) == 3 and clips.dropped == 1
    assert resolve(root / "nsynth-test")[1] == "nsynth"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such"):
        load_clips(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "examples.json").write_text("{not json")
    with pytest.raises(DataError, match=r"examples\.json"):
        load_nsynth(tmp_path / "bad")
    write_tree(tmp_path / "nowav", [("nsynth-test", "flute", "acoustic", 60, 25, 0.3)])
    next((tmp_path / "nowav").rglob("*.wav")).unlink()
    with pytest.raises(DataError, match="no such file"):
        load_nsynth(tmp_path / "nowav", "all")


def test_lookalike_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSIN_HOME", str(tmp_path))
    with pytest.raises(DataError, match="mmsin data build nsynth-like"):
        load_clips("nsynth-like")
    with pytest.raises(DataError, match="--size full"):
        load_clips("beethoven-like", size="full")
