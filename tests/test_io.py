"""mmsin.io against messy input: every bad file is a one-line AudioError or a logged fix-up.

The reference values are closed forms (a sine, the mean of channels, the quantisation step of
each bit depth) and soundfile's own writer; the files are tiny and live in ``tmp_path``.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmsin.io import (
    AudioError,
    audio_info,
    iter_audio_blocks,
    load_audio,
    normalize_peak,
    save_audio,
)


def _noise(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Uniform noise in [-0.5, 0.5], shape (n,) or (n, channels) as soundfile writes it."""
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(n, channels)).astype(np.float32)
    return x[:, 0] if channels == 1 else x


def _assert_one_line(err: pytest.ExceptionInfo[AudioError], path: Path, words: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert words in msg
    assert err.value.path == path


# ------------------------------------------------------------------------------------------
# Files that are not there or are not files


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.wav"
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "no such file")


def test_folder(tmp_path: Path) -> None:
    p = tmp_path / "folder.wav"
    p.mkdir()
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "is a folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_not_read_forever(tmp_path: Path) -> None:
    p = tmp_path / "pipe.wav"
    os.mkfifo(p)
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "not a regular file")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.flac"
    p.touch()
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "empty file (0 bytes)")


@pytest.mark.parametrize("name", ["notes.wav", "image.flac", "song.mp3", "x.ogg"])
def test_text_with_audio_extension(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "not readable as audio")


def test_zero_length_wav(tmp_path: Path) -> None:
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), 8000, subtype="PCM_16")
    assert p.stat().st_size > 0  # a valid header with no frames
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "contains no samples")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_permissions(tmp_path: Path) -> None:
    p = tmp_path / "locked.wav"
    sf.write(p, _noise(100), 4096)
    p.chmod(0)
    try:
        with pytest.raises(AudioError) as err:
            load_audio(p)
        _assert_one_line(err, p, "permission denied")
    finally:
        p.chmod(0o600)


# ------------------------------------------------------------------------------------------
# Truncated and corrupt files


def _truncate(p: Path, keep_bytes: int) -> None:
    data = p.read_bytes()
    p.write_bytes(data[:keep_bytes])


def test_truncated_wav_keeps_readable_part_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "cut.wav"
    x = _noise(1000)
    sf.write(p, x, 4096, subtype="PCM_16")
    _truncate(p, 44 + 2 * 600)  # canonical 44-byte header, then 600 of 1000 frames
    with caplog.at_level(logging.WARNING, logger="mmsin.io"):
        y = load_audio(p, fs=None)
    assert y.shape == (600,)
    np.testing.assert_allclose(y, x[:600], atol=2.0**-15)
    assert any(
        "truncated WAV" in r.message and "800 bytes short" in r.message for r in caplog.records
    )


def test_truncated_wav_error_policy(tmp_path: Path) -> None:
    p = tmp_path / "cut.wav"
    sf.write(p, _noise(1000), 4096, subtype="PCM_16")
    _truncate(p, 44 + 2 * 600)
    with pytest.raises(AudioError) as err:
        load_audio(p, truncated="error")
    _assert_one_line(err, p, "truncated WAV")


def test_wav_header_claiming_huge_size(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A data chunk claiming 2 GB with 100 bytes present: no huge allocation, 50 frames read."""
    p = tmp_path / "liar.wav"
    x = _noise(50)
    sf.write(p, x, 4096, subtype="PCM_16")
    raw = bytearray(p.read_bytes())
    assert raw[36:40] == b"data"
    raw[40:44] = struct.pack("<I", 2**31)
    p.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="mmsin.io"):
        y = load_audio(p, fs=None)
    np.testing.assert_allclose(y, x, atol=2.0**-15)
    assert any("truncated" in r.message for r in caplog.records)


def test_truncated_flac_keeps_a_correct_prefix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "cut.flac"
    x = _noise(60000)
    sf.write(p, x, 8000, subtype="PCM_16")
    _truncate(p, p.stat().st_size * 3 // 4)
    with caplog.at_level(logging.WARNING, logger="mmsin.io"):
        y = load_audio(p, fs=None)
    # What is returned is a true prefix of the signal, shorter than the whole.
    assert 0 < len(y) < len(x)
    np.testing.assert_allclose(y, x[: len(y)], atol=2.0**-15)
    assert any("truncated or corrupt" in r.message for r in caplog.records)
    with pytest.raises(AudioError) as err:
        load_audio(p, truncated="error")
    _assert_one_line(err, p, "truncated or corrupt after")


def test_flac_cut_inside_header(tmp_path: Path) -> None:
    p = tmp_path / "stub.flac"
    sf.write(p, _noise(4000), 8000, subtype="PCM_16")
    _truncate(p, 20)
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "not readable as audio")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    p = tmp_path / "nan.wav"
    x = _noise(500)
    x[123] = bad
    x[400] = bad
    sf.write(p, x, 4096, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "contains 2 NaN or infinite samples (first at frame 123)")


def test_silent_clip_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(300, np.float32), 4096, subtype="PCM_16")
    with caplog.at_level(logging.WARNING, logger="mmsin.io"):
        y = load_audio(p, normalize=True)
    assert y.shape == (300,) and not np.any(y)  # normalising silence leaves it alone
    assert any("silent" in r.message for r in caplog.records)
    with pytest.raises(AudioError) as err:
        load_audio(p, silent="error")
    _assert_one_line(err, p, "silent clip")


def test_min_samples(tmp_path: Path) -> None:
    p = tmp_path / "short.wav"
    sf.write(p, _noise(1023), 4096, subtype="PCM_16")
    with pytest.raises(AudioError) as err:
        load_audio(p, min_samples=1024)
    _assert_one_line(err, p, "too short: 1023 samples at 4096 Hz, need at least 1024")
    assert load_audio(p, min_samples=1023).shape == (1023,)


def test_min_samples_counts_after_resampling(tmp_path: Path) -> None:
    p = tmp_path / "short16k.wav"
    sf.write(p, _noise(4000), 16000, subtype="PCM_16")  # 0.25 s: 1024 samples at 4096 Hz
    n = len(load_audio(p, fs=4096))
    assert abs(n - 4000 * 4096 / 16000) <= 1
    with pytest.raises(AudioError, match="too short"):
        load_audio(p, fs=4096, min_samples=n + 1)


# ------------------------------------------------------------------------------------------
# Formats, channels and sample rates


@pytest.mark.parametrize(
    ("subtype", "step"),
    [
        ("PCM_U8", 2.0**-7),
        ("PCM_16", 2.0**-15),
        ("PCM_24", 2.0**-23),
        ("PCM_32", 2.0**-31),
        ("FLOAT", 0.0),
        ("DOUBLE", 0.0),
    ],
)
def test_bit_depths(tmp_path: Path, subtype: str, step: float) -> None:
    p = tmp_path / f"{subtype}.wav"
    x = _noise(777)
    sf.write(p, x, 4096, subtype=subtype)
    assert sf.info(str(p)).subtype == subtype
    y = load_audio(p, fs=None)
    assert y.dtype == np.float32 and y.shape == x.shape
    # Integer formats are exact up to one quantisation step (plus float32 rounding).
    np.testing.assert_allclose(y, x, atol=step + 1e-7, rtol=0)


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_downmix(
    tmp_path: Path, channels: int, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / f"ch{channels}.wav"
    x = _noise(900, channels)
    sf.write(p, x, 4096, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="mmsin.io"):
        y = load_audio(p)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-7)
    assert any(f"down-mixing {channels} channels" in r.message for r in caplog.records)
    kept = load_audio(p, mono=False)
    assert kept.shape == (channels, 900)
    np.testing.assert_array_equal(kept, x.T)


@pytest.mark.parametrize("fs_file", [8000, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled(tmp_path: Path, fs_file: int) -> None:
    """A 440 Hz sine at any rate comes out as the same sine sampled at 4096 Hz."""
    p = tmp_path / f"sine{fs_file}.flac"
    seconds = 0.5
    t = np.arange(int(seconds * fs_file)) / fs_file
    sf.write(p, 0.5 * np.sin(2 * np.pi * 440 * t), fs_file, subtype="PCM_24")
    y = load_audio(p, fs=4096)
    assert abs(len(y) - seconds * 4096) <= 1
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(y)) / 4096)
    middle = slice(200, len(y) - 200)  # away from the resampler's edge transients
    np.testing.assert_allclose(y[middle], ref[middle], atol=2e-3)


def test_implausible_sample_rate(tmp_path: Path) -> None:
    p = tmp_path / "slow.wav"
    sf.write(p, _noise(100), 50, subtype="PCM_16")
    with pytest.raises(AudioError) as err:
        load_audio(p)
    _assert_one_line(err, p, "implausible sample rate 50 Hz")


def test_max_seconds(tmp_path: Path) -> None:
    p = tmp_path / "long.wav"
    x = _noise(4096 * 3)
    sf.write(p, x, 4096, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p, max_seconds=1.5), x[:6144])
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(p, max_seconds=0)


@pytest.mark.parametrize(
    "name", ["with space/clip one.wav", "ünïcödé/音楽 ♪.flac", "a'b\"c/x y.wav"]
)
def test_unicode_and_spaces_in_paths(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    x = _noise(333)
    save_audio(p, x, 4096, subtype="PCM_24")
    np.testing.assert_allclose(load_audio(p), x, atol=2.0**-23 + 1e-7)
    with pytest.raises(AudioError) as err:
        load_audio(p.with_name("missing " + p.name))
    assert p.parent.name in str(err.value)


# ------------------------------------------------------------------------------------------
# Streaming long files


def test_iter_audio_blocks_equals_load_audio(tmp_path: Path) -> None:
    p = tmp_path / "stereo44k.wav"
    x = _noise(44100 * 3, 2)
    sf.write(p, x, 44100, subtype="PCM_16")
    whole = load_audio(p, fs=4096)
    blocks = list(iter_audio_blocks(p, 0.25, 4096))
    assert [len(b) for b in blocks[:-1]] == [1024] * (len(blocks) - 1)
    assert 0 < len(blocks[-1]) <= 1024
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    kept = list(iter_audio_blocks(p, 1.0, None, mono=False))
    np.testing.assert_array_equal(np.concatenate(kept, axis=1), load_audio(p, None, mono=False))
    assert kept[0].shape == (2, 44100)


def test_iter_audio_blocks_memory_is_bounded(tmp_path: Path) -> None:
    """Streaming 20 s of 44.1 kHz stereo (7 MB as float32) peaks far below the file's size."""
    p = tmp_path / "long.wav"
    sf.write(p, _noise(44100 * 20, 2), 44100, subtype="PCM_16")
    full_bytes = 44100 * 20 * 2 * 4
    tracemalloc.start()
    try:
        n = sum(len(b) for b in iter_audio_blocks(p, 1.0, 4096))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(n - 20 * 4096) <= 1
    assert peak < full_bytes / 10, peak


def test_iter_audio_blocks_reports_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "nan.wav"
    x = _noise(44100)
    x[30000] = np.nan
    sf.write(p, x, 44100, subtype="FLOAT")
    it = iter_audio_blocks(p, 0.1, 4096)
    with pytest.raises(AudioError, match="first at frame 30000"):
        list(it)
    with pytest.raises(AudioError, match="no such file"):
        next(iter_audio_blocks(tmp_path / "gone.wav"))


# ------------------------------------------------------------------------------------------
# Writing


def test_save_audio_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "out.wav"
    x = 1.5 * _noise(500)  # beyond [-1, 1]: clipped for PCM
    assert save_audio(p, x, 4096) == p
    y = load_audio(p)
    np.testing.assert_allclose(y, np.clip(x, -1, 1), atol=2.0**-15)
    assert sorted(q.name for q in p.parent.iterdir()) == ["out.wav"]
    stereo = _noise(200, 2).T
    save_audio(p, stereo, 4096, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p, mono=False), stereo)


def test_save_audio_refuses_bad_arrays(tmp_path: Path) -> None:
    p = tmp_path / "out.wav"
    with pytest.raises(AudioError) as err:
        save_audio(p, np.array([0.0, np.nan]), 4096)
    _assert_one_line(err, p, "NaN or infinite")
    with pytest.raises(AudioError, match="shape"):
        save_audio(p, np.zeros((2, 2, 2)), 4096)
    with pytest.raises(AudioError, match="cannot write"):
        save_audio(tmp_path / "out.flac", _noise(10), 4096, subtype="FLOAT")  # FLAC has no float
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_normalize_peak() -> None:
    x = np.array([[0.1, -0.4, 0.2], [0.0, 0.0, 0.0]], np.float32)
    y = normalize_peak(x)
    np.testing.assert_allclose(y[0], [0.25, -1.0, 0.5])
    np.testing.assert_array_equal(y[1], 0.0)


def test_file_resampling_to_nothing(tmp_path: Path) -> None:
    p = tmp_path / "blip.wav"
    sf.write(p, _noise(3), 44100, subtype="PCM_16")  # 3 / 44100 s: 0.28 of a sample at 4096 Hz
    with pytest.raises(AudioError) as err:
        load_audio(p, fs=4096)
    _assert_one_line(err, p, "too short: 3 samples at 44100 Hz give none at 4096 Hz")


def test_audio_info(tmp_path: Path) -> None:
    p = tmp_path / "info me.flac"
    sf.write(p, _noise(2000, 3), 8000, subtype="PCM_24")
    info = audio_info(p)
    assert (info.frames, info.fs, info.channels, info.format, info.subtype) == (
        2000,
        8000,
        3,
        "FLAC",
        "PCM_24",
    )
    assert info.seconds == 0.25
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + bytes(100))
    with pytest.raises(AudioError) as err:
        audio_info(bad)
    _assert_one_line(err, bad, "not readable as audio")
    with pytest.raises(AudioError, match="empty file"):
        (tmp_path / "e.wav").touch()
        audio_info(tmp_path / "e.wav")


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_usual_permissions(tmp_path: Path, mask: int) -> None:
    from mmsin.io import save_array

    old = os.umask(mask)
    try:
        a = save_audio(tmp_path / "a.wav", np.zeros(64, np.float32), 4096)
        b = save_array(tmp_path / "b.npy", np.zeros(3, np.float32))
    finally:
        os.umask(old)
    for p in (a, b):
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_output_checks(tmp_path: Path) -> None:
    from mmsin.io import OutputError, check_fits, check_output_file, check_output_folder

    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.wav") == tmp_path / "new/deeper/x.wav"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path / "d")
    with pytest.raises(OutputError, match="f is a file, not a folder"):
        check_output_file(tmp_path / "f" / "sub" / "x.wav")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "f")
    check_output_folder(tmp_path / "d" / "new")
    with pytest.raises(OutputError, match=r"needs about 2\.0 PB of memory"):
        check_fits("--seconds 1e9", 2e15, 0, tmp_path)
    free = __import__("shutil").disk_usage(tmp_path).free
    with pytest.raises(OutputError, match=r"would write about .* free there"):
        check_fits("--count 9", 1, free * 2, tmp_path)
    check_fits("small", 1000, 1000, tmp_path / "missing")
