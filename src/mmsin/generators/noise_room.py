"""How loud the free partials generator's noise bands may be: what unit-RMS noise of each band
leaves in the scalogram u (:func:`noise_band_power`, measured through the encoder once), and
the bound that follows in each frame from what the located partials leave of u
(:class:`NoiseRoom`, :meth:`mmsin.generators.free_partials.FreePartialGenerator.estimate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsin.generators.peaks import ShareLookup, unexplained_power
from mmsin.generators.synthesis import band_noise_tables, band_shapes

__all__ = ["NOISE_TABLE", "NoiseRoom", "noise_band_power"]

NOISE_TABLE = 2**15  # samples of noise per band before it repeats (8 s at 4096 Hz)


@dataclass(frozen=True)
class NoiseRoom:
    """What bounds the noise bands' gains in some frames (:meth:`FreePartialGenerator.estimate`).

    Band n may take at most the gain of noise whose u would be what the located partials
    leave of u (:func:`~mmsin.generators.peaks.unexplained_power`) in the band's bins, plus
    u's silence level eps in each bin (what S_J does not resolve):
    ``sqrt(sum_f w_nf (r_f + eps^2) / power_n)``, w the band's share of each bin and power_n
    :func:`noise_band_power`. That is at least the gain of eps in every bin, so gains below
    it are kept without computing the rest (the usual case: a trained layer near silence).
    """

    u: Tensor  # (B, F, T) float64
    peak: Tensor  # (B, F, T) bool
    semis: Tensor  # (B, F, T) float64
    log_a: Tensor  # (B, F, T) float64
    lookup: ShareLookup
    weights: Tensor  # (nb, F) float64, columns summing to 1
    power: Tensor  # (nb,) float64
    least: Tensor  # (nb,) float64: sqrt(sum_f w_nf eps^2 / power_n), the room's floor
    eps: float

    def level(self) -> Tensor:
        """The largest gain of each band, (B, nb, T) float64."""
        rest = unexplained_power(self.u, self.peak, self.semis, self.log_a, self.lookup)
        band = torch.matmul(self.weights, rest + self.eps**2)
        return torch.sqrt(band / self.power[:, None])

    def bound(self, gains: Tensor) -> Tensor:
        """``gains`` (B, nb, T) at most the room, elementwise."""
        if not torch.compiler.is_compiling() and not bool(
            (gains > self.least[:, None].to(gains)).any()
        ):
            return gains  # all within the eps floor, which the room never goes below
        return torch.minimum(gains, self.level().to(gains))


def noise_band_power(
    scattering: Any, matrix: np.ndarray, bin_hz: np.ndarray, num_bands: int
) -> np.ndarray:
    """What unit-RMS noise of each band leaves in u, weighted as
    :meth:`FreePartialGenerator.estimate` weighs u's bins for that band: sum over bins of
    w_nb u_b^2, u = ReLU(matrix S_J) of the band's own noise table (the one the generator
    plays), averaged over the table's frames away from its ends (28 at J = 10: half of them
    give values up to 10 % off in the low bands). Measured through the encoder itself, so no
    model of the wavelets' response to noise is needed.

    Parameters
    ----------
    scattering : mmsin.scattering.TimeFrequencyScattering
    matrix : ndarray (F, k_J)
        The first-order front end (:func:`mmsin.generators.partials.first_order_frontend`).
    bin_hz : ndarray (F,)
        The bins' centre frequencies.
    num_bands : int

    Returns
    -------
    ndarray (num_bands,), float64
    """
    fs = float(scattering.fs)
    tables = torch.tensor(band_noise_tables(fs, NOISE_TABLE, num_bands))
    with torch.no_grad():
        S = scattering(tables).double()  # (nb, k_J, T)
    u = torch.relu(torch.as_tensor(matrix, dtype=torch.float64) @ S).numpy()
    weights = band_shapes(np.asarray(bin_hz, dtype=np.float64), fs, num_bands) ** 2
    weights = weights / weights.sum(axis=0, keepdims=True)
    inner = slice(2, u.shape[-1] - 2)  # the table is periodic; S_J pads its ends
    return np.array([float((weights[b] @ u[b, :, inner] ** 2).mean()) for b in range(num_bands)])
