"""Beethoven loader (SampleRNN arrays, one .npy array, a folder of extracts) and any folder."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmsin.data import DataError, load_clips, resolve
from mmsin.data.beethoven import load_beethoven
from mmsin.data.folder import load_folder


def tones(n: int, fs: int, seconds: float = 8.0, base: float = 100.0) -> np.ndarray:
    """Extract i is a sine at base + 10 i Hz, amplitude 0.3 (so it is identifiable)."""
    t = np.arange(round(seconds * fs)) / fs
    return np.stack([0.3 * np.sin(2 * np.pi * (base + 10 * i) * t) for i in range(n)])


def peak_hz(x: np.ndarray, fs: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * fs / x.size)


def test_samplernn_arrays(tmp_path: Path) -> None:
    x = tones(12, 16000).astype(np.float16)
    for name, rows in (("train", x[:8]), ("valid", x[8:10]), ("test", x[10:])):
        np.save(tmp_path / f"music_{name}.npy", rows)
    x[9] = 0  # a silent extract in valid
    np.save(tmp_path / "music_valid.npy", x[8:10])
    test = load_clips(tmp_path, "test")
    assert test.audio.shape == (2, 32768) and test.fs == 4096
    assert abs(peak_hz(test.audio[1], 4096) - 210.0) < 0.5  # row 11 of the tones
    assert np.allclose(np.abs(test.audio).max(axis=1), 1.0, atol=1e-6)
    valid = load_beethoven(tmp_path, "valid")
    assert len(valid) == 1 and valid.dropped == 1
    assert len(load_beethoven(tmp_path, "all")) == 11
    assert len(load_beethoven(tmp_path / "music_train.npy", "train", max_clips=3)) == 3


def test_reference_array_at_4096(tmp_path: Path) -> None:
    # One array in SampleRNN's shuffled order: valid and test are the last 2k rows.
    np.save(tmp_path / "beethoven_4096.npy", tones(30, 4096).astype(np.float32))
    k = 3  # min(256, 30 // 10)
    test = load_clips(tmp_path / "beethoven_4096.npy", "test")
    valid = load_clips(tmp_path / "beethoven_4096.npy", "valid")
    train = load_clips(tmp_path / "beethoven_4096.npy", "train")
    assert (len(train), len(valid), len(test)) == (30 - 2 * k, k, k)
    assert [m["name"] for m in test.meta][-1] == "beethoven_4096.npy[29]"
    assert abs(peak_hz(test.audio[0], 4096) - (100 + 10 * 27)) < 0.5
    up = load_clips(tmp_path / "beethoven_4096.npy", "test", fs=8000)
    assert up.audio.shape[1] == 64000


def test_folder_of_extracts_uses_samplernn_shuffle(tmp_path: Path) -> None:
    x = tones(25, 16000, seconds=8.0)
    for i, row in enumerate(x):
        sf.write(tmp_path / f"p{i}.flac", row, 16000)
    assert resolve(tmp_path)[1] == "beethoven"
    names = sorted(f"p{i}.flac" for i in range(25))
    random.Random(123).shuffle(names)
    test = load_clips(tmp_path, "test")  # k = max(1, 25 // 10) = 2
    assert [m["name"] for m in test.meta] == names[-2:]
    got = peak_hz(test.audio[0], 4096)
    assert abs(got - (100 + 10 * int(names[-2][1:-5]))) < 0.5


def test_any_folder(tmp_path: Path) -> None:
    fs = 22050
    t = np.arange(int(20.5 * fs)) / fs
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 330 * t), 0.1 * np.sin(2 * np.pi * 330 * t)], 1)
    sf.write(tmp_path / "a.wav", stereo, fs)  # 20.5 s -> 2 extracts of 8 s, end dropped
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "b.flac", np.zeros(9 * fs), fs)  # silent
    sf.write(tmp_path / "c.flac", 0.2 * np.sin(2 * np.pi * 550 * np.arange(17 * fs) / fs), fs)
    assert resolve(tmp_path)[1] == "folder"
    every = load_folder(tmp_path, "all", valid=0.2, test=0.2)
    assert len(every) == 4 and every.dropped == 1  # the silent b.flac
    assert every.audio.shape[1] == 8 * 4096
    assert np.allclose(np.abs(every.audio).max(axis=1), 1.0, atol=1e-6)
    parts = [
        load_folder(tmp_path, s, valid=0.2, test=0.2, seed=7) for s in ("train", "valid", "test")
    ]
    names = [m["name"] for c in parts for m in c.meta]
    assert sorted(names) == sorted(m["name"] for m in every.meta)
    assert sum(c.dropped for c in parts) == 1
    again = load_folder(tmp_path, "test", valid=0.2, test=0.2, seed=7)
    assert [m["name"] for m in again.meta] == [m["name"] for m in parts[2].meta]
    a0 = next(i for i, m in enumerate(every.meta) if m["name"] == "a.wav#0")
    assert abs(peak_hz(every.audio[a0], 4096) - 330) < 0.5


def test_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no NSynth"):
        load_clips(tmp_path / "empty")
    np.save(tmp_path / "odd.npy", np.zeros((4, 1000), np.float32))
    with pytest.raises(DataError, match="source_fs"):
        load_clips(tmp_path / "odd.npy")
    np.save(tmp_path / "flat.npy", np.zeros(1000, np.float32))
    with pytest.raises(DataError, match="expected a non-empty"):
        load_clips(tmp_path / "flat.npy")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(DataError, match=r"junk\.wav"):
        load_folder(tmp_path)
