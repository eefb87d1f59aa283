"""S_J of a clip set on disk (mmsin.training.frames): equal to the transform, computed once,
resumed after a failure from the last finished chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _tiny import tiny_config
from mmsin import assembly
from mmsin.training import frames as frames_mod


def audio(n: int = 7, time: int = 512) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, time)).astype(np.float32)


def test_frames_equal_the_transform_and_are_computed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(1)
    x = audio()
    with torch.no_grad():
        ref = assembly.build_scattering(cfg).eval()(torch.from_numpy(x)).numpy()
    S = frames_mod.scattering_frames(cfg, x, "fp", tmp_path, chunk=3, batch=2)
    assert S.shape == ref.shape
    np.testing.assert_allclose(S, ref, rtol=1e-5, atol=1e-6)
    # A second call reads the file: building S_J again would fail.
    monkeypatch.setattr(frames_mod, "build_scattering", lambda cfg: 1 / 0)
    again = frames_mod.scattering_frames(cfg, x, "fp", tmp_path, chunk=3)
    np.testing.assert_array_equal(again, S)
    # Other audio (another fingerprint) is another file.
    with pytest.raises(ZeroDivisionError):
        frames_mod.scattering_frames(cfg, x, "other", tmp_path)


def test_a_failed_run_continues_from_its_last_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(1)
    x = audio()
    real = frames_mod.build_scattering
    seen: list[int] = []

    class Failing(torch.nn.Module):
        """S_J that dies on the third chunk (clips 6-7) of the first run."""

        def __init__(self, fail: bool) -> None:
            super().__init__()
            self.inner, self.fail = real(cfg).eval(), fail

        def forward(self, a: torch.Tensor) -> torch.Tensor:
            seen.append(a.shape[0])
            if self.fail and len(seen) > 3:  # the probe, then chunks of 3, 3: fail on the third
                raise KeyboardInterrupt
            return self.inner(a)  # type: ignore[no-any-return]

    monkeypatch.setattr(frames_mod, "build_scattering", lambda c: Failing(True))
    with pytest.raises(KeyboardInterrupt):
        frames_mod.scattering_frames(cfg, x, "fp", tmp_path, chunk=3, batch=3)
    seen.clear()
    monkeypatch.setattr(frames_mod, "build_scattering", lambda c: Failing(False))
    S = frames_mod.scattering_frames(cfg, x, "fp", tmp_path, chunk=3, batch=3)
    assert seen == [1, 1]  # the probe, then only the last clip: the first six were kept
    with torch.no_grad():
        ref = real(cfg).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(S, ref, rtol=1e-5, atol=1e-6)
