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


def finite_median(values: Any) -> float:
    """Median of the finite entries; NaN, without numpy's all-NaN warning, when there are none."""
    v = _np(values).ravel()
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _check_fs(fs: float) -> None:
    if not fs > 0:
        raise ValueError(f"sample rate must be positive, got {fs}")
