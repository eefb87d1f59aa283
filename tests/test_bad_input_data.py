"""mmsin.data against messy folders: one-line DataError for unusable sources, and a folder with
some bad files among good ones loads the good ones and reports the bad ones (issue 6)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmsin.data import DataError, load_clips


def _good(path: Path, seconds: float = 1.0, fs: int = 4096, seed: int = 0) -> None:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * fs)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, fs, subtype="PCM_16")


def _one_line(err: pytest.ExceptionInfo[DataError], path: Path, words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and words in msg, msg


def test_missing_folder(tmp_path: Path) -> None:
    p = tmp_path / "no such folder"
    with pytest.raises(DataError) as err:
        load_clips(p)
    _one_line(err, p, "no such file or folder")


def test_folder_without_audio(tmp_path: Path) -> None:
    p = tmp_path / "empty ünïcode"
    p.mkdir()
    (p / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError) as err:
        load_clips(p)
    _one_line(err, p, "no audio files")


def test_folder_of_files_all_too_short(tmp_path: Path) -> None:
    p = tmp_path / "short"
    _good(p / "a.wav", seconds=0.01)
    with pytest.raises(DataError) as err:
        load_clips(p, seconds=1.0)
    _one_line(err, p, "shorter")


def test_single_file_instead_of_folder(tmp_path: Path) -> None:
    p = tmp_path / "one.wav"
    _good(p)
    with pytest.raises(DataError) as err:
        load_clips(p)
    _one_line(err, p, "single file")


def test_folder_skips_and_reports_bad_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "messy music"
    for i in range(3):
        _good(root / f"good {i}.wav", seconds=1.0, seed=i)
    (root / "notes.wav").write_text("not audio")
    (root / "empty.flac").touch()
    with caplog.at_level(logging.WARNING):
        clips = load_clips(root, "all", fs=4096, seconds=0.5)
    assert clips.audio.shape == (6, 2048)  # 3 good files x 2 extracts
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "notes.wav" in logged and "empty.flac" in logged
    assert sorted(Path(f).name for f, _ in clips.skipped) == ["empty.flac", "notes.wav"]


def _bad_files(root: Path, fs: int = 4096) -> dict[str, str]:
    """One file of each kind a folder load must skip; returns {name: word of its problem}."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "text.wav").write_text("not audio at all")
    (root / "empty.flac").touch()
    nan = np.random.default_rng(5).uniform(-0.5, 0.5, 2 * fs).astype(np.float32)
    nan[300] = np.nan
    sf.write(root / "nan.wav", nan, fs, subtype="FLOAT")
    _good(root / "short.wav", seconds=0.1)  # < half an extract of 0.5 s
    # A FLAC cut inside its header: no sample is readable.
    _good(root / "full.flac", seconds=1.0, seed=9)
    (root / "cut.flac").write_bytes((root / "full.flac").read_bytes()[:30])
    (root / "full.flac").unlink()
    return {
        "text.wav": "not readable as audio",
        "empty.flac": "empty file",
        "nan.wav": "NaN",
        "short.wav": "too short",
        "cut.flac": "not readable as audio",
    }


def test_folder_skips_each_kind_of_bad_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "mixed ünï"
    bad = _bad_files(root)
    _good(root / "sub" / "good.wav", seconds=1.0, seed=1)
    # A WAV whose data chunk is cut short keeps its readable part (documented fix-up in
    # mmsin.io), so it is used, not skipped: 1.5 s written, a bit over 1 s left -> 2 extracts.
    _good(root / "trunc.wav", seconds=1.5, seed=2)
    raw = (root / "trunc.wav").read_bytes()
    (root / "trunc.wav").write_bytes(raw[: len(raw) - 2 * 1500])
    with caplog.at_level(logging.WARNING, logger="mmsin.data"):
        clips = load_clips(root, "all", fs=4096, seconds=0.5)
    assert sorted({m["file"] for m in clips.meta}) == [str(Path("sub") / "good.wav"), "trunc.wav"]
    assert len(clips) == 2 + 2
    got = {Path(f).name: problem for f, problem in clips.skipped}
    assert set(got) == set(bad)
    for name, word in bad.items():
        assert word in got[name], (name, got[name])
        assert "\n" not in got[name] and str(root) not in got[name]  # path named once
    # One WARNING line from mmsin.data: the folder, the count and every bad file.
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mmsin.data")]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert str(root) in lines[0] and f"skipped {len(bad)} of {len(bad) + 2}" in lines[0]
    assert all(name in lines[0] for name in bad)


def test_folder_of_only_bad_files_is_one_line_error(tmp_path: Path) -> None:
    root = tmp_path / "all bad"
    bad = _bad_files(root)
    with pytest.raises(DataError) as err:
        load_clips(root, fs=4096, seconds=0.5)
    _one_line(err, root, "no usable audio file")
    assert f"all {len(bad)} skipped" in str(err.value)
    assert str(err.value).count(str(root)) == 1  # no repeated paths


def test_skipped_files_do_not_change_the_good_extracts(tmp_path: Path) -> None:
    clean, messy = tmp_path / "clean", tmp_path / "messy"
    for i in range(3):
        _good(clean / f"g{i}.wav", seed=i)
        _good(messy / f"g{i}.wav", seed=i)
    _bad_files(messy)
    a = load_clips(clean, "all", fs=4096, seconds=0.5)
    b = load_clips(messy, "all", fs=4096, seconds=0.5)
    assert a.skipped == [] and len(b.skipped) == 5
    order_a = np.argsort([m["name"] for m in a.meta])
    order_b = np.argsort([m["name"] for m in b.meta])
    np.testing.assert_array_equal(a.audio[order_a], b.audio[order_b])


def test_beethoven_folder_of_extracts_skips_bad_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "parts"
    for i in range(12):
        _good(root / f"p{i}.flac", seconds=8.0, fs=4096, seed=i)
    (root / "p3.flac").write_bytes(b"fLaC" + bytes(100))  # damaged extract
    with caplog.at_level(logging.WARNING, logger="mmsin.data"):
        every = load_clips(root, "all", fs=4096)
    assert every.audio.shape == (11, 32768)
    assert [Path(f).name for f, _ in every.skipped] == ["p3.flac"]
    assert "p3.flac" in caplog.text


def _nsynth_tree(root: Path, n: int = 4) -> dict[str, dict[str, object]]:
    audio = root / "nsynth-test" / "audio"
    audio.mkdir(parents=True)
    table: dict[str, dict[str, object]] = {}
    for i in range(n):
        key = f"keyboard_acoustic_000-{60 + i:03d}-100"
        _good(audio / f"{key}.wav", seconds=2.0, fs=16000, seed=i)
        table[key] = {
            "pitch": 60 + i,
            "velocity": 100,
            "instrument_str": "keyboard_acoustic_000",
            "instrument_family_str": "keyboard",
            "instrument_source_str": "acoustic",
        }
    (root / "nsynth-test" / "examples.json").write_text(json.dumps(table))
    return table


def test_nsynth_skips_missing_and_broken_note_files(tmp_path: Path) -> None:
    table = _nsynth_tree(tmp_path / "ns")
    keys = sorted(table)
    audio = tmp_path / "ns" / "nsynth-test" / "audio"
    (audio / f"{keys[0]}.wav").unlink()
    (audio / f"{keys[1]}.wav").write_text("garbage")
    clips = load_clips(tmp_path / "ns", "all", fs=4096)
    assert [m["name"] for m in clips.meta] == keys[2:]
    problems = dict((Path(f).stem, p) for f, p in clips.skipped)
    assert "no such file" in problems[keys[0]] and "not readable" in problems[keys[1]]
    for k in keys[2:]:
        (audio / f"{k}.wav").unlink()
    with pytest.raises(DataError) as err:
        load_clips(tmp_path / "ns", "all", fs=4096)
    _one_line(err, tmp_path / "ns", "no usable note file")
