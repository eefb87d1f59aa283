"""Property-based tests (hypothesis): the shape rules of the loaders and the transforms.

Each property is checked on a bounded number of generated examples (derandomised, so CI runs
the same cases every time) and must run in seconds. The predicted values come from the
documented contracts (docs/architecture.md), not from the code under test.
"""

from __future__ import annotations

import math
import tempfile
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsin.io import AudioError, iter_audio_blocks, load_audio, normalize_peak

FAST = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _need(module: str, name: str) -> Any:
    """The attribute ``name`` of ``module``, or skip while that module has not landed."""
    try:
        value = getattr(import_module(module), name)
    except (ImportError, AttributeError):
        value = None
    if value is None:
        pytest.skip(f"{module}.{name} is not available yet")
    return value


def _write(path: Path, n: int, channels: int, fs: int, subtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.9, 0.9, size=(n, channels)).astype(np.float32)
    sf.write(path, x, fs, subtype=subtype)
    return x


# ------------------------------------------------------------------------------------------
# mmsin.io


@FAST
@given(
    n=st.integers(1, 3000),
    channels=st.integers(1, 4),
    fs_file=st.sampled_from([4096, 8000, 11025, 16000, 44100]),
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
    seed=st.integers(0, 2**16),
)
def test_load_audio_length_and_downmix(
    n: int, channels: int, fs_file: int, subtype: str, seed: int
) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.wav"
        x = _write(p, n, channels, fs_file, subtype, seed)
        expected = n * 4096 / fs_file
        if expected < 0.5:  # rounds to no sample at all: a clear error, not an empty array
            with pytest.raises(AudioError, match="too short"):
                load_audio(p, fs=4096)
            return
        y = load_audio(p, fs=4096)
        # Band-limited resampling keeps the duration: n * 4096 / fs_file samples, +-1 rounding.
        assert y.dtype == np.float32 and y.ndim == 1
        assert abs(len(y) - expected) <= 1
        if fs_file == 4096:
            tol = 1e-7 if subtype == "FLOAT" else 2.0**-15
            np.testing.assert_allclose(y, x.mean(axis=1), atol=tol + 1e-6)
        kept = load_audio(p, fs=None, mono=False)
        assert kept.shape == (channels, n)


@FAST
@given(
    n=st.integers(6, 6000),  # at least one sample at 4096 Hz
    fs_file=st.sampled_from([4096, 8000, 22050]),
    block_seconds=st.floats(0.01, 1.5),
    mono=st.booleans(),
)
def test_blocks_concatenate_to_the_whole(
    n: int, fs_file: int, block_seconds: float, mono: bool
) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.flac"
        _write(p, n, 2, fs_file, "PCM_16", n)
        blocks = list(iter_audio_blocks(p, block_seconds, 4096, mono=mono))
        size = round(block_seconds * 4096)
        assert all(b.shape[-1] == size for b in blocks[:-1])
        assert 0 < blocks[-1].shape[-1] <= size
        np.testing.assert_array_equal(
            np.concatenate(blocks, axis=-1), load_audio(p, 4096, mono=mono)
        )


@FAST
@given(n=st.integers(1, 5000), max_seconds=st.floats(1e-3, 2.0))
def test_max_seconds_reads_a_prefix(n: int, max_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.wav"
        x = _write(p, n, 1, 4096, "FLOAT", n)[:, 0]
        want = min(n, int(max_seconds * 4096))
        if want == 0:
            with pytest.raises(ValueError, match="no samples"):
                load_audio(p, max_seconds=max_seconds)
        else:
            np.testing.assert_array_equal(load_audio(p, max_seconds=max_seconds), x[:want])


@FAST
@given(
    x=st.lists(st.floats(-100, 100, width=32), min_size=1, max_size=50),
    c=st.floats(1e-3, 1e3),
)
def test_normalize_peak(x: list[float], c: float) -> None:
    a = np.asarray(x, np.float32)
    y = normalize_peak(a)
    if np.max(np.abs(a)) > 1e-12:
        assert math.isclose(float(np.max(np.abs(y))), 1.0, rel_tol=1e-6)
        assert np.all(np.sign(y) == np.sign(a))
        np.testing.assert_allclose(normalize_peak(c * a), y, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(y, a)


# ------------------------------------------------------------------------------------------
# mmsin.data: chopping folders into extracts, splits


@FAST
@given(n=st.integers(0, 5000), length=st.integers(1, 700))
def test_chop(n: int, length: int) -> None:
    chop = _need("mmsin.data.clips", "chop")
    x = np.arange(n, dtype=np.float32)
    y = chop(x, length)
    assert y.shape == (n // length, length)
    for k in range(y.shape[0]):
        np.testing.assert_array_equal(y[k], x[k * length : (k + 1) * length])


@FAST
@given(
    n=st.integers(0, 400),
    seed=st.integers(0, 2**31),
    valid=st.floats(0, 0.45),
    test=st.floats(0, 0.45),
)
def test_seeded_split_is_a_reproducible_partition(
    n: int, seed: int, valid: float, test: float
) -> None:
    seeded_split = _need("mmsin.data.clips", "seeded_split")
    s = seeded_split(n, seed=seed, valid=valid, test=test)
    parts = s["train"] + s["valid"] + s["test"]
    assert sorted(parts) == list(range(n))  # disjoint and covering
    assert sorted(s["all"]) == list(range(n))
    assert s == seeded_split(n, seed=seed, valid=valid, test=test)
    for name, frac in (("valid", valid), ("test", test)):
        k = round(frac * n)
        assert len(s[name]) == (max(k, 1) if frac > 0 and n >= 3 else k)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    lengths=st.lists(st.integers(1, 5000), min_size=1, max_size=5),
    seconds=st.sampled_from([0.125, 0.25, 0.5]),
    seed=st.integers(0, 1000),
)
def test_folder_extract_count_and_length(lengths: list[int], seconds: float, seed: int) -> None:
    load_clips = _need("mmsin.data", "load_clips")
    length = round(seconds * 4096)
    # Documented rule (mmsin.data.folder.extracts): floor(n / length) extracts per file; a file
    # shorter than one extract but at least half of one is padded to one; shorter is skipped.
    predicted = sum(n // length if n >= length else int(n >= length // 2) for n in lengths)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "music"
        root.mkdir()
        for i, n in enumerate(lengths):
            _write(root / f"f{i}.wav", n, 1, 4096, "FLOAT", seed + i)
        if predicted == 0:
            with pytest.raises(ValueError, match="shorter"):
                load_clips(root, "all", fs=4096, seconds=seconds, seed=seed)
            return
        clips = load_clips(root, "all", fs=4096, seconds=seconds, seed=seed)
        assert clips.audio.shape == (predicted - clips.dropped, length)
        assert clips.dropped == 0  # uniform noise is never silent
        assert len(clips.meta) == predicted
        again = load_clips(root, "train", fs=4096, seconds=seconds, seed=seed)
        assert again.audio.shape[1] == length


# ------------------------------------------------------------------------------------------
# mmsin.scattering and mmsin.generators.conv: output shapes for arbitrary lengths and batches


@settings(max_examples=12, deadline=None, derandomize=True)
@given(batch=st.integers(1, 3), time=st.integers(1, 700), J=st.integers(3, 6))
def test_time_frequency_scattering_shape(batch: int, time: int, J: int) -> None:
    tfs_cls = _need("mmsin.scattering", "TimeFrequencyScattering")
    tfs = _cached(tfs_cls, J=J, Q=4, P=4)
    x = torch.randn(batch, time)
    s = tfs(x)
    assert s.shape == (batch, tfs.num_channels, (time - 1) // 2**J + 1)
    assert torch.isfinite(s).all()


@settings(max_examples=12, deadline=None, derandomize=True)
@given(batch=st.integers(1, 3), time=st.integers(32, 900), K=st.integers(2, 5))
def test_scalogram_shape(batch: int, time: int, K: int) -> None:
    scalogram_cls = _need("mmsin.scattering", "Scalogram")
    sk = _cached(scalogram_cls, K=K, Q=4)
    s = sk(torch.randn(batch, time))
    assert s.shape == (batch, sk.num_channels, time // 2**K)
    assert torch.isfinite(s).all()


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    batch=st.integers(1, 3),
    frames=st.integers(1, 12),
    channels=st.integers(1, 16),
    J=st.integers(1, 5),
)
def test_generator_output_length(batch: int, frames: int, channels: int, J: int) -> None:
    gen_cls = _need("mmsin.generators.conv", "CausalGenerator")
    g = _cached(gen_cls, channels, J=J).eval()
    with torch.no_grad():
        y = g(torch.randn(batch, channels, frames))
    assert y.shape == (batch, frames * 2**J)


_CACHE: dict[tuple[Any, ...], Any] = {}


def _cached(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """Build each transform once per parameter set (filter banks are the slow part)."""
    key = (cls, args, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = cls(*args, **kwargs)
    return _CACHE[key]
