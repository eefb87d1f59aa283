"""Per-channel normalisation statistics: mean |S| over a data set (paper Sec. 4: "responses of
average equal magnitude in each band"; reference-code.md Sec. 3.7 divides every channel,
order 0 included, by its training-set mean absolute value)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor


@torch.no_grad()
def channel_mean_abs(transform: Callable[[Tensor], Tensor], batches: Iterable[Tensor]) -> Tensor:
    """Mean of ``|S x|`` per channel over all examples and frames of ``batches``.

    Parameters
    ----------
    transform : callable
        (batch, time) -> (batch, channels, frames), e.g. TimeFrequencyScattering or Scalogram.
    batches : iterable of Tensor, each (batch, time)

    Returns
    -------
    Tensor, shape (channels,), float64, on the device of the batches.
    """
    total: Tensor | None = None
    count = 0
    for x in batches:
        s = transform(x).abs().to(torch.float64)
        part = s.sum(dim=(0, 2))
        total = part if total is None else total + part
        count += s.shape[0] * s.shape[2]
    if total is None or count == 0:
        raise ValueError("channel_mean_abs needs at least one non-empty batch")
    return total / count


def save_mean_abs(mean_abs: Tensor, path: str | Path, **meta: object) -> Path:
    """Save statistics (and optional JSON-able metadata such as the transform's settings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mean_abs": mean_abs.detach().cpu(), "meta": meta}, path)
    return path


def load_mean_abs(path: str | Path) -> Tensor:
    """Load statistics written by :func:`save_mean_abs`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no normalisation statistics there")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or "mean_abs" not in data:
        raise ValueError(f"{path}: not a file written by save_mean_abs")
    return data["mean_abs"]
