"""mmsin: Moment Matching-Scattering Inverse Networks (Andreux & Mallat, ISMIR 2018).

The data path, top to bottom::

    io -> scattering (S_J, S_K) -> whitening (VAR L, L^-1) -> generators (G: the heads)
       -> losses -> training -> experiments / evaluation -> cli

Heavy submodules are imported lazily so that ``import mmsin`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "TimeFrequencyScattering": "mmsin.scattering",
    "Scalogram": "mmsin.scattering",
    "MMSIN": "mmsin.model",
}

__all__ = ["MMSIN", "Scalogram", "TimeFrequencyScattering", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from mmsin.model import MMSIN
    from mmsin.scattering import Scalogram, TimeFrequencyScattering


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmsin' has no attribute {name!r}")
