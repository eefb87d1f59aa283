"""Split rules and clip helpers of mmsin.data.clips."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mmsin.data.clips import (
    Clips,
    chop,
    samplernn_holdout,
    samplernn_split,
    seeded_split,
    velocity_split,
)


def _notes() -> tuple[list[str], list[int]]:
    inst, vel = [], []
    for i in range(6):
        for _pitch in range(10):
            for v in (25, 50, 75, 100, 127):
                inst.append(f"keyboard_acoustic_{i:03d}")
                vel.append(v)
    return inst, vel


def test_velocity_split_one_velocity_per_instrument() -> None:
    inst, vel = _notes()
    test = velocity_split(inst, vel, seed=3)
    arr_i, arr_v = np.array(inst), np.array(vel)
    for name in set(inst):
        picked = set(arr_v[(arr_i == name) & test].tolist())
        assert len(picked) == 1  # exactly one velocity, all its notes
        (v,) = picked
        assert np.all(test[(arr_i == name) & (arr_v == v)])
    assert test.sum() == len(inst) // 5


def test_velocity_split_seeded_and_order_independent() -> None:
    inst, vel = _notes()
    a = velocity_split(inst, vel, seed=1)
    assert np.array_equal(a, velocity_split(inst, vel, seed=1))
    perm = np.random.default_rng(0).permutation(len(inst))
    b = velocity_split([inst[i] for i in perm], [vel[i] for i in perm], seed=1)
    assert np.array_equal(a[perm], b)
    # 6 instruments x 5 velocities: some seed must pick differently.
    assert any(not np.array_equal(a, velocity_split(inst, vel, seed=s)) for s in range(2, 6))


def test_samplernn_split_matches_sampleRNN_recipe() -> None:
    # SampleRNN's _2npy.py: sorted(glob) of p{i}.flac, random.seed(123), random.shuffle,
    # train = [:-512], valid = [-512:-256], test = [-256:]; re-done here with the global RNG.
    names = [f"p{i}.flac" for i in range(4340)]
    ref = sorted(names)
    random.seed(123)
    random.shuffle(ref)
    got = samplernn_split(names)
    assert [names[i] for i in got["train"]] == ref[:-512]
    assert [names[i] for i in got["valid"]] == ref[-512:-256]
    assert [names[i] for i in got["test"]] == ref[-256:]


def test_samplernn_holdout_scales_down() -> None:
    assert samplernn_holdout(4340) == 256
    assert samplernn_holdout(2560) == 256
    assert samplernn_holdout(107) == 10
    assert samplernn_holdout(5) == 1
    parts = samplernn_split([f"p{i}" for i in range(107)])
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [87, 10, 10]
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(107))


def test_seeded_split_partitions() -> None:
    parts = seeded_split(50, seed=4, valid=0.1, test=0.2)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [35, 5, 10]
    assert sorted(parts["train"] + parts["valid"] + parts["test"]) == list(range(50))
    assert parts == seeded_split(50, seed=4, valid=0.1, test=0.2)
    assert parts != seeded_split(50, seed=5, valid=0.1, test=0.2)
    with pytest.raises(ValueError, match="fractions"):
        seeded_split(10, valid=0.6, test=0.5)


def test_chop_and_clips_checks() -> None:
    x = np.arange(25.0)
    assert chop(x, 8).tolist() == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]
    with pytest.raises(ValueError, match="meta"):
        Clips(audio=np.zeros((2, 4), np.float32), fs=4096, meta=[{"name": "a"}])
