"""Note fidelity: does a reconstruction keep its note's pitch and harmonics, and avoid the
generator's grid? (CREPE median f0, HNR, 64 Hz grid share, per note.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    pass

from mmsin.evaluation._common import _np, finite_median
from mmsin.evaluation.grid import _min_samples, grid_share_or_nan, harmonic_to_noise_ratio
from mmsin.evaluation.pitch import cents, median_f0, midi_to_hz


@dataclass(frozen=True)
class NoteFidelity:
    """Per-note pitch and spectrum figures of reconstructions beside their originals
    (:func:`note_fidelity`); arrays of shape (n,).

    ``tracked``: CREPE finds the original's pitch (median f0 over frames with periodicity above
    0.5 within 50 cents of the nominal pitch). ``kept``: tracked, and the reconstruction's
    median f0 (same rule) is within 50 cents of the original's. ``grid``/``grid_original``: share
    of the energy on the 64 Hz grid (k = 6 at 4096 Hz, :func:`grid_energy_share`).
    ``hnr_db``/``hnr_db_original``: :func:`harmonic_to_noise_ratio` at the nominal pitch.
    """

    f0_original: np.ndarray
    f0_reconstruction: np.ndarray
    tracked: np.ndarray
    kept: np.ndarray
    grid: np.ndarray
    grid_original: np.ndarray
    hnr_db: np.ndarray
    hnr_db_original: np.ndarray

    def summary(self) -> dict[str, float]:
        """Medians over notes and the share of tracked notes whose pitch is kept."""
        n_tracked = int(self.tracked.sum())
        return {
            "notes": int(self.tracked.size),
            "tracked": n_tracked,
            "pitch_kept": float(self.kept.sum() / n_tracked) if n_tracked else float("nan"),
            "grid_median": finite_median(self.grid),
            "grid_original_median": finite_median(self.grid_original),
            "hnr_db_median": finite_median(self.hnr_db),
            "hnr_db_original_median": finite_median(self.hnr_db_original),
        }


def normalised_f0(y: np.ndarray, fs: float, crepe_model: str = "tiny") -> float:
    """CREPE's median f0 of the clip ``y`` scaled to unit peak; NaN for a silent clip."""
    peak = np.abs(y).max()
    return median_f0(y / peak, fs, model=crepe_model) if peak > 0 else float("nan")


def note_fidelity(
    x_hat: Tensor | np.ndarray,
    x: Tensor | np.ndarray,
    fs: float,
    midi: Sequence[float] | np.ndarray,
    *,
    crepe_model: str = "tiny",
    grid_k: int = 6,
    f0_original: np.ndarray | None = None,
) -> NoteFidelity:
    """Does each reconstruction keep its note's pitch and harmonics, and avoid the grid?

    Parameters
    ----------
    x_hat, x : shape (n, time), at ``fs`` Hz
        Reconstructions and their originals, aligned, same length.
    midi : sequence of n floats
        Nominal pitch of each note.
    f0_original : ndarray (n,), optional
        The originals' f0 when already tracked (the same CREPE median f0 of each peak-normalised
        clip: a caller judging several models on the same notes tracks them once).
    """
    a, b = np.atleast_2d(_np(x_hat)), np.atleast_2d(_np(x))
    if a.shape != b.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {a.shape} and {b.shape}")
    nominal = np.asarray(midi_to_hz(np.asarray(midi, dtype=np.float64)), dtype=np.float64)
    if nominal.shape != (a.shape[0],):
        raise ValueError(f"need one pitch per clip ({a.shape[0]}), got {nominal.shape}")

    def hnr(y: np.ndarray) -> np.ndarray:
        if y.shape[-1] < _min_samples(fs, 2.0):  # too short for the +-2 Hz bands
            return np.full(y.shape[0], np.nan)
        return np.atleast_1d(harmonic_to_noise_ratio(y, fs, nominal))

    if f0_original is not None and np.shape(f0_original) != (b.shape[0],):
        raise ValueError(
            f"need one f0_original per clip ({b.shape[0]}), got {np.shape(f0_original)}"
        )
    f_ref = (
        np.array([normalised_f0(y, fs, crepe_model) for y in b])
        if f0_original is None
        else np.asarray(f0_original, float)
    )
    f_hat = np.array([normalised_f0(y, fs, crepe_model) for y in a])
    grid, grid_ref = grid_share_or_nan(a, fs, grid_k), grid_share_or_nan(b, fs, grid_k)
    with np.errstate(invalid="ignore"):
        tracked = np.abs(np.asarray(cents(f_ref, nominal))) <= 50
        kept = tracked & (np.abs(np.asarray(cents(f_hat, f_ref))) <= 50)
    return NoteFidelity(
        f0_original=f_ref,
        f0_reconstruction=f_hat,
        tracked=tracked,
        kept=kept,
        grid=grid,
        grid_original=grid_ref,
        hnr_db=hnr(a),
        hnr_db_original=hnr(b),
    )
