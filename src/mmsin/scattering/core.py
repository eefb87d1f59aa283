"""Small shared pieces of the scattering transforms: FFT sizes, exact subsampling, spectra cache."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np
import torch
from torch import Tensor

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real floating dtype (float32 -> complex64, ...)."""
    if dtype not in _COMPLEX:
        raise ValueError(f"scattering input must be float32 or float64, got {dtype}")
    return _COMPLEX[dtype]


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def pick(spectrum: Tensor, s: int) -> Tensor:
    """Spectrum of ``y[m s]`` from the length-``n`` spectrum of ``y``: exact subsampling.

    ``Y_sub[f] = (1/s) sum_k Y[f + k n/s]`` (periodisation), so the inverse FFT of the result
    holds the samples ``y[0], y[s], y[2s], ...`` of the circular signal, with no approximation.

    Parameters
    ----------
    spectrum : Tensor, shape (..., n), complex
    s : int, dividing n
    """
    if s == 1:
        return spectrum
    n = spectrum.shape[-1]
    return spectrum.reshape(*spectrum.shape[:-1], s, n // s).mean(dim=-2)


def check_input(x: Tensor, name: str) -> None:
    """Raise a one-line ValueError unless ``x`` is a floating (batch, time) tensor."""
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects a (batch, time) tensor, got {shape}")
    if x.dtype not in _COMPLEX:
        raise ValueError(f"{name} expects float32 or float64 input, got {x.dtype}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} expects at least one time sample, got shape {tuple(x.shape)}")


class SpectraCache:
    """Filter spectra built once per (key, device, dtype) and reused; a small LRU."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._store: dict[Hashable, Tensor] = {}

    def get(
        self,
        key: Hashable,
        device: torch.device,
        dtype: torch.dtype,
        build: Callable[[], np.ndarray],
    ) -> Tensor:
        full = (key, str(device), dtype)
        hit = self._store.pop(full, None)
        if hit is None:
            hit = torch.as_tensor(build()).to(device=device, dtype=dtype)
        self._store[full] = hit  # most recently used last
        while len(self._store) > self._size * 64:
            self._store.pop(next(iter(self._store)))
        return hit
