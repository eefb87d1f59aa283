"""Tiny training shapes shared by the reliability tests (test_interrupt, test_bad_input_cli).

A run on these shapes (8 synthetic clips of 16 frames of 2^5 samples, a narrow generator)
takes a few seconds on one core, so tests can train, kill, resume and load real models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Overrides of the ``small`` preset (``section.field=value``, as on the command line).
TINY = [
    "name=tiny",
    "scattering.J=5",
    "scattering.Q=2",
    "scattering.P=2",
    "whitening.M=2",
    "whitening.warmup=8",
    "generator.c1=4",
    "loss.K=3",
    "loss.Q=2",
    "loss.mm_batch=4",
    "train.batch_size=4",
    "train.segment_frames=4",
    "train.checkpoint_every=1",
    "train.preview_every=0",
    "train.device=cpu",
    "train.amp=false",
    "train.lr=0.003",
    "train.seed=7",
]


def tiny_config(epochs: int, *extra: str) -> Any:
    """The ``small`` preset with :data:`TINY` applied, ``epochs`` epochs, then ``extra``."""
    from mmsin.config import override, preset

    return override(preset("small"), [*TINY, f"train.epochs={epochs}", *extra])


def tiny_clips(fs: int = 4096, J: int = 5) -> tuple[Any, Any]:
    """Deterministic chirps plus noise: 8 training clips and 2 test clips of 16 frames."""
    from mmsin.data import Clips

    rng = np.random.default_rng(11)
    t = np.arange(16 * 2**J) / fs
    rows = [
        0.5 * np.sin(2 * np.pi * (100 + 60 * i + 200 * t) * t) + 0.05 * rng.standard_normal(len(t))
        for i in range(10)
    ]
    audio = np.asarray(rows, np.float32)
    meta = [{"name": f"clip{i}"} for i in range(10)]
    return (
        Clips(audio[:8], fs, meta[:8], "train", "synthetic"),
        Clips(audio[8:], fs, meta[8:], "test", "synthetic"),
    )
