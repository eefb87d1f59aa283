"""Transposition in the scattering: the linear operator T_k on S_J frames.

A transposition by k semitones multiplies every frequency by 2^(k/12). The first-order
wavelets psi1 are a semitone apart at Q = 12 (lambda1 index i: centre 2^(-i/Q) times the top
one, i = 0 the highest), so, for filters of constant Q, the averaged scalogram
u[i, n] = (phi_J * |x * psi1_i|)(n 2^J) of the transposed signal is u shifted by

    d = k Q / 12 bins:     u'[i] = u[i + d]     (zero where i + d falls outside 0 .. n1 - 1).

What this does to each order of S_J (docs/scattering.md, "Transposition"):

- order 0, phi_J * x: kept (a low-pass of x: almost nothing of a note lies below 4 Hz).
- order 1, ``time``: u itself; the shift is a permutation (exact for integer d, interpolated
  for fractional d).
- order 1, ``paper`` (eq. 8): ``W u``, W the Hann-windowed real Fourier matrix along lambda1
  (``first_order_synthesis``, 12 (2J - 3) x 12 (J - 1): 204 x 108), of full column rank:
  ``T = I + W (R_d - I) W^+`` gives exactly ``W R_d u`` (W^+ W = I): the shifted
  scalogram, to float precision, edges included (zero fill). What lies outside range(W) (no
  S_J frame has any, frames made by L^-1 from noise may) is left as it is, so T_0 = I.
- order 2, ``time``: phi_J * |U1_i * psi2_j2| for paths i < (j2 - 1) Q: the same shift of i
  within each j2 (approximate: a path that would come from beyond the computed ones is zero).
- order 2, joint variants: phi_J * |sum_p h(p) e^(-2 i pi b p / P) (U1 * psi2)[start_w + p]|.
  Not linear in any scalogram (the modulus comes after the windowed Fourier transform along
  lambda1); a shift of d = m P/2 bins moves window w's content to window w - m exactly (a
  permutation of windows, same bin b), and a fractional number of hops is interpolated linearly
  between the windows' centres (the modulus of the Fourier transform is nearly invariant to a
  shift inside the window). Windows beyond the ends count as zero.
- the time-modulation axis (j2) is kept: right for envelopes (attack, decay, tremolo do not
  transpose), wrong for the beating of partials that share a first-order band (at f0 and its
  multiples, which do transpose). The measured distance is in docs/scattering.md.

Fractional d uses Keys' cubic interpolation along lambda1 (a = -1/2; integer d is an exact
shift). Everything here is float64 numpy built from the encoder's own window rule and atoms.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from mmsin.scattering.timefrequency import (
    TimeFrequencyScattering,
    frequency_windows,
    real_fourier_atoms,
)

__all__ = [
    "first_order_synthesis",
    "semitone_bins",
    "shift_matrix",
    "transpose_frames",
    "transposition_operator",
    "window_shift_matrix",
]


def semitone_bins(semitones: float, Q: int) -> float:
    """Shift along lambda1, in bins, of a transposition by ``semitones`` (Q bins per octave)."""
    if not math.isfinite(semitones):
        raise ValueError(f"semitones must be a finite number, got {semitones}")
    return float(semitones) * Q / 12.0


def _keys(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -1/2) at offsets t."""
    t = np.abs(t)
    return np.where(
        t <= 1,
        1.5 * t**3 - 2.5 * t**2 + 1,
        np.where(t < 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0.0),
    )


def shift_matrix(n: int, bins: float) -> np.ndarray:
    """R (n, n) with ``(R u)[i] = u(i + bins)``, zero outside ``0 .. n-1``.

    Integer ``bins``: an exact shift (one 1 per row). Fractional: Keys' cubic interpolation
    from the four nearest bins (rows near the ends use the taps that exist).
    """
    R = np.zeros((n, n))
    base = math.floor(bins)
    frac = bins - base
    if abs(frac) < 1e-12 or abs(frac - 1) < 1e-12:
        offsets, weights = np.array([round(bins) - base]), np.array([1.0])
    else:
        offsets = np.arange(-1, 3)
        weights = _keys(offsets - frac)
    for i in range(n):
        j = i + base + offsets
        ok = (j >= 0) & (j < n)
        R[i, j[ok]] += weights[ok]
    return R


def window_shift_matrix(windows: np.ndarray, bins: float) -> np.ndarray:
    """(n_win, n_win) interpolation between windows along lambda1 for a shift of ``bins``.

    Window w (taps ``windows[w]``, centre c_w) of the shifted input holds what sat at
    c_w + bins: a permutation when ``bins`` is a whole number of hops (regular windows), else
    linear interpolation between the two windows whose centres surround c_w + bins. Virtual
    windows one hop beyond each end hold zeros.
    """
    n_win, P = windows.shape
    centres = np.array([row[row >= 0].mean() for row in windows])
    hop = P / 2
    grid = np.concatenate([[centres[0] - hop], centres, [centres[-1] + hop]])
    W = np.zeros((n_win, n_win))
    for w in range(n_win):
        pos = centres[w] + bins
        if pos <= grid[0] or pos >= grid[-1]:
            continue
        k = int(np.searchsorted(grid, pos, side="right")) - 1  # grid[k] <= pos < grid[k + 1]
        a = (pos - grid[k]) / (grid[k + 1] - grid[k])
        for src, weight in ((k - 1, 1 - a), (k, a)):  # grid index g is window g - 1
            if 0 <= src < n_win and weight > 1e-12:
                W[w, src] += weight
    return W


def first_order_synthesis(transform: TimeFrequencyScattering) -> np.ndarray:
    """The matrix W (n_order1, n1) with ``order 1 = W u`` for the ``paper`` variant (eq. 8).

    u is phi_J * U1 at a frame, in lambda1 order (index 0 the highest wavelet); rows follow
    the order-1 channels of ``transform.meta()``. Built from the transform's window rule and
    real Fourier atoms, the same ones its forward pass uses.
    """
    if transform.variant != "paper":
        raise ValueError(
            f"order 1 is linear in the scalogram only for 'paper', not {transform.variant!r}"
        )
    meta = transform.meta()
    n1 = len(transform.family.lambda1)
    P = transform.P
    windows = frequency_windows(n1, P)
    atoms = real_fourier_atoms(P)
    rows = [(0, "re")] + [(k, p) for k in range(1, P // 2) for p in ("re", "im")]
    rows.append((P // 2, "re"))
    order1 = np.flatnonzero(meta["order"] == 1)
    W = np.zeros((len(order1), n1))
    for r, c in enumerate(order1):
        atom = atoms[rows.index((int(meta["fourier_bin"][c]), str(meta["part"][c])))]
        idx = windows[int(meta["window"][c])]
        ok = idx >= 0
        np.add.at(W[r], idx[ok], atom[ok])
    return W


def transposition_operator(transform: TimeFrequencyScattering, semitones: float) -> np.ndarray:
    """T_k (num_channels, num_channels), float64: S_J frames -> frames of the transposed sound.

    Parameters
    ----------
    transform : TimeFrequencyScattering
        The encoder (``paper``, ``time``; ``joint-real`` is supported with every order
        interpolated between windows, approximate everywhere).
    semitones : float
        k; positive transposes up. Fractional values interpolate along lambda1.

    Returns
    -------
    ndarray (C, C): ``S' = T @ S`` frame by frame. Block-diagonal over (order, j2); order 0 is
    the identity. See the module docstring for what is exact.
    """
    d = semitone_bins(semitones, transform.Q)
    meta = transform.meta()
    order, j2s = meta["order"], meta["j2"]
    C = len(order)
    T = np.zeros((C, C))
    T[0, 0] = 1.0  # order 0
    n1 = len(transform.family.lambda1)
    P = transform.P
    o1 = np.flatnonzero(order == 1)
    if transform.variant == "time":
        T[np.ix_(o1, o1)] = shift_matrix(n1, d)
    elif transform.variant == "paper":
        # W R_d W^+ on range(W), where every S_J frame's order 1 lies; the identity on its
        # orthogonal complement (no scalogram reaches it, but frames from L^-1 z may):
        # I + W (R_d - I) W^+, so that T_0 = I exactly and T_a T_b = I + W (R_a R_b - I) W^+.
        W = first_order_synthesis(transform)
        R = shift_matrix(n1, d) - np.eye(n1)
        T[np.ix_(o1, o1)] = np.eye(len(o1)) + W @ R @ np.linalg.pinv(W)
    else:  # joint-real: phi_J * |h_xi * (phi_J * U1)|, window-major, P/2 + 1 bins per window
        _window_block(T, o1, frequency_windows(n1, P), d)
    for j2 in range(2, transform.J):
        idx = np.flatnonzero((order == 2) & (j2s == j2))
        n = (j2 - 1) * transform.Q
        if transform.variant == "time":
            T[np.ix_(idx, idx)] = shift_matrix(n, d)
        else:
            _window_block(T, idx, frequency_windows(n, P), d)
    return T


def _window_block(T: np.ndarray, idx: np.ndarray, windows: np.ndarray, d: float) -> None:
    """Fill T on channels ``idx`` (window-major, the same bins in every window) with the
    window interpolation for a shift of d bins, bin by bin."""
    n_win = windows.shape[0]
    bins = len(idx) // n_win
    Wm = window_shift_matrix(windows, d)
    T[np.ix_(idx, idx)] = np.kron(Wm, np.eye(bins))


@functools.lru_cache(maxsize=8)
def _cached_operator(J: int, Q: int, P: int, variant: str, semitones: float) -> np.ndarray:
    """T_k of the transform with these parameters (the layout depends on nothing else)."""
    return transposition_operator(TimeFrequencyScattering(J, Q, P, variant), semitones)


def transpose_frames(S: Tensor, transform: TimeFrequencyScattering, semitones: float) -> Tensor:
    """Apply T_k to S_J frames.

    Parameters
    ----------
    S : Tensor, shape (batch, num_channels, frames), float
        S_J x (as the transform returns it; not normalised).
    transform : TimeFrequencyScattering
    semitones : float

    Returns
    -------
    Tensor, shape and dtype of S: S_J frames of the transposed sound (exact / approximate per
    order as in the module docstring).
    """
    if S.ndim != 3 or S.shape[1] != transform.num_channels:
        raise ValueError(
            f"S must have shape (batch, {transform.num_channels}, frames), got {tuple(S.shape)}"
        )
    key = (transform.J, transform.Q, transform.P, transform.variant, float(semitones))
    T = torch.tensor(_cached_operator(*key), device=S.device)  # a copy: the cache stays intact
    return torch.einsum("cd,bdt->bct", T.to(S.dtype), S)
