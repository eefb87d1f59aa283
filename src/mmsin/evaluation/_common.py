"""Helpers shared by the metric modules: array conversion and argument checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    pass


def _np(x: Any) -> np.ndarray:
    """A float64 numpy copy of an array or tensor."""
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_fs(fs: float) -> None:
    if not fs > 0:
        raise ValueError(f"sample rate must be positive, got {fs}")
