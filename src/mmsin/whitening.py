"""Whitening operator L and its inverse L^-1: a causal vector autoregression on S_J frames.

Paper section 4: L outputs the innovations of a vector autoregressive (VAR) model of order M
fitted on the (normalised) scattering frames, so that ``Z = L S_J x`` is close to a Gaussian
white noise; eq. (1) of section 3 runs the recursion the other way, ``X_J = ReLU(L^-1 Z)``.

Model, with frames before n = 0 equal to zero (the scattering's zero initial state)::

    S[n] = b + sum_{m=1}^{M} A[m-1] S[n-m] + E[n],      E[n] = Sigma^{1/2} Z[n]

``fit_var`` estimates ``A`` and ``b`` in closed form (ridge-regularised least squares through
the normal equations, accumulated in float64 over the examples), ``Sigma`` is the biased
covariance of the residuals E on the training frames, and its symmetric square root and
inverse square root come from one eigendecomposition with a relative eigenvalue floor.
docs/model.md gives the derivation and the numerical choices.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = [
    "CODE_LAWS",
    "NOISE_FRAMES",
    "VAR",
    "fit_frame_scales",
    "fit_var",
    "fit_var_ridges",
    "growth_rate",
    "whiteness_report",
]

#: Frames of noise :meth:`VAR.sample` draws at a time: long samples (``mmsin generate
#: --seconds 7200``) stream in memory bounded by one such block, and a sample of n frames is the
#: start of every longer one with the same seed. 256 frames are 64 s at the paper's J = 10.
NOISE_FRAMES = 256


def _as_examples(frames: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Split ``frames`` into a list of (C, T_i) tensors and check that the shapes agree."""
    if isinstance(frames, Tensor):
        if frames.dim() != 3:
            raise ValueError(
                f"frames must have shape (batch, channels, time), got {tuple(frames.shape)}"
            )
        examples = list(frames.unbind(0))
    else:
        examples = [torch.as_tensor(f) for f in frames]
    if not examples:
        raise ValueError("frames is empty: need at least one example to fit the VAR")
    channels = examples[0].shape[0]
    for i, e in enumerate(examples):
        if e.dim() != 2 or e.shape[0] != channels:
            raise ValueError(
                f"example {i} has shape {tuple(e.shape)}; expected (channels={channels}, time)"
            )
        if not torch.isfinite(e).all():
            raise ValueError(f"example {i} contains NaN or infinite values")
    return examples


def _lagged_design(s: Tensor, M: int) -> Tensor:
    """Design matrix of one example: row n = [S[n-M], ..., S[n-1], 1] (zeros before n = 0).

    Parameters
    ----------
    s : Tensor, shape (T, C)
        Frames of one example, time first.
    M : int
        VAR order.

    Returns
    -------
    Tensor, shape (T, M * C + 1)
        Lags in ascending time order, so that the row is a contiguous window of the
        zero-padded sequence (the same layout ``VAR`` uses for its stacked weight).
    """
    T, C = s.shape
    padded = torch.cat([s.new_zeros(M, C), s[:-1]], dim=0) if T > 0 else s.new_zeros(M, C)
    # padded[k] = S[k - M]; row n needs padded[n .. n + M - 1] = S[n-M .. n-1].
    windows = padded.unfold(0, M, 1)[:T]  # (T, C, M)
    lags = windows.permute(0, 2, 1).reshape(T, M * C)
    return torch.cat([lags, s.new_ones(T, 1)], dim=1)


def _sym_sqrt_pair(cov: Tensor, eig_floor: float) -> tuple[Tensor, Tensor, int]:
    """Symmetric square root and inverse square root of a covariance, with an eigenvalue floor.

    Eigenvalues below ``eig_floor * max eigenvalue`` (including the exact zeros that duplicated
    channels produce) are raised to that floor, so both matrices stay finite and are exact
    inverses of each other.

    Returns
    -------
    sqrt_cov, inv_sqrt_cov : Tensor, shape (C, C)
    floored : int
        Number of eigenvalues that were raised to the floor.
    """
    cov = 0.5 * (cov + cov.T)
    evals, evecs = torch.linalg.eigh(cov)
    top = float(evals.max().clamp_min(0.0))
    if top <= 0.0:
        raise ValueError("the innovation covariance is zero: the frames are perfectly predictable")
    floor = eig_floor * top
    floored = int((evals < floor).sum())
    evals = evals.clamp_min(floor)
    root = evals.sqrt()
    sqrt_cov = (evecs * root) @ evecs.T
    inv_sqrt_cov = (evecs / root) @ evecs.T
    return sqrt_cov, inv_sqrt_cov, floored


def apply_relu(S: Tensor, relu: bool | Tensor) -> Tensor:
    """Eq. (1)'s ReLU on S (batch, C, frames): on every channel (True), none (False), or the
    channels of a bool mask of shape (C,) (S_J's non-negative channels; the others are signed)."""
    if isinstance(relu, Tensor):
        if relu.shape != (S.shape[1],) or relu.dtype != torch.bool:
            raise ValueError(f"relu mask must be a bool tensor of shape ({S.shape[1]},)")
        return torch.where(relu.to(S.device)[:, None], torch.relu(S), S)
    return torch.relu(S) if relu else S


class VAR(nn.Module):
    """Causal vector autoregression of order M: the whitening L and its inverse L^-1.

    Parameters
    ----------
    channels : int
        Number of S_J channels C.
    M : int
        Order (number of past frames), the paper's M = 4.
    dtype : torch.dtype
        Dtype of the buffers; ``fit_var`` returns float64, call ``.float()`` for speed.

    Attributes (buffers)
    --------------------
    A : Tensor, shape (M, C, C)
        ``A[m-1]`` multiplies the frame m steps in the past (column-vector convention).
    b : Tensor, shape (C,)
        Intercept.
    sqrt_cov, inv_sqrt_cov : Tensor, shape (C, C)
        Symmetric Sigma^{1/2} and Sigma^{-1/2} of the innovation covariance (floored).

    Notes
    -----
    Every method computes in the buffers' dtype and device. ``whiten`` and ``unwhiten`` return
    the dtype and device of their input. Frames before the first one are zeros unless
    ``initial`` frames are given.
    """

    A: Tensor
    b: Tensor
    sqrt_cov: Tensor
    inv_sqrt_cov: Tensor
    frame_scales: Tensor

    def __init__(self, channels: int, M: int = 4, *, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if channels < 1 or M < 1:
            raise ValueError(f"VAR needs channels >= 1 and M >= 1, got channels={channels}, M={M}")
        self.channels = int(channels)
        self.M = int(M)
        self.register_buffer("A", torch.zeros(M, channels, channels, dtype=dtype))
        self.register_buffer("b", torch.zeros(channels, dtype=dtype))
        self.register_buffer("sqrt_cov", torch.eye(channels, dtype=dtype))
        self.register_buffer("inv_sqrt_cov", torch.eye(channels, dtype=dtype))
        # Quantiles of the per-frame code power (fit_frame_scales); empty: Gaussian codes only.
        self.register_buffer("frame_scales", torch.zeros(0, dtype=dtype))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # frame_scales has no fixed length, and VARs saved before it existed have none.
        key = prefix + "frame_scales"
        if key in state_dict:
            self.frame_scales = self.A.new_zeros(state_dict[key].shape)
        else:
            state_dict[key] = self.A.new_zeros(0)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> VAR:
        """Rebuild a VAR from ``state_dict()`` output (plain tensors, ``weights_only``-safe)."""
        missing = {"A", "b", "sqrt_cov", "inv_sqrt_cov"} - set(state)
        if missing:
            raise ValueError(f"VAR state is missing {sorted(missing)}")
        M, C, _ = state["A"].shape
        var = cls(C, M, dtype=state["A"].dtype)
        var.load_state_dict(dict(state))
        return var

    def extra_repr(self) -> str:
        return f"channels={self.channels}, M={self.M}"

    def _stacked_weight(self) -> Tensor:
        """(M*C, C) weight acting on the window [S[n-M], ..., S[n-1]] (ascending time)."""
        # A[m-1] S[n-m] as a row vector is S[n-m] @ A[m-1]^T; lag m sits at window slot M - m.
        return self.A.flip(0).transpose(1, 2).reshape(self.M * self.channels, self.channels)

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"{name} must have shape (batch, {self.channels}, time), got {tuple(x.shape)}"
            )

    def _initial(self, initial: Tensor | None, batch: int) -> Tensor:
        """Past frames as (batch, M, C), zero-padded on the left when fewer than M are given."""
        ref = self.A
        if initial is None:
            return ref.new_zeros(batch, self.M, self.channels)
        self._check(initial, "initial")
        if initial.shape[0] != batch:
            raise ValueError(f"initial has batch {initial.shape[0]}, expected {batch}")
        init = initial.to(ref).transpose(1, 2)[:, -self.M :]
        pad = self.M - init.shape[1]
        if pad > 0:
            init = torch.cat([ref.new_zeros(batch, pad, self.channels), init], dim=1)
        return init

    def predict(self, S: Tensor, initial: Tensor | None = None) -> Tensor:
        """One-step prediction b + sum_m A[m-1] S[n-m] for every frame n.

        Parameters
        ----------
        S : Tensor, shape (B, C, T)
        initial : Tensor, shape (B, C, T0), optional
            Frames preceding S (the last M are used); zeros by default.

        Returns
        -------
        Tensor, shape (B, C, T), in the buffers' dtype.
        """
        self._check(S, "S")
        B, C, T = S.shape
        s = S.to(self.A).transpose(1, 2)  # (B, T, C)
        padded = torch.cat([self._initial(initial, B), s[:, :-1]], dim=1)  # (B, T + M - 1, C)
        windows = padded.unfold(1, self.M, 1)  # (B, T, C, M)
        windows = windows.permute(0, 1, 3, 2).reshape(B, T, self.M * C)
        return (windows @ self._stacked_weight() + self.b).transpose(1, 2)

    def innovations(self, S: Tensor, initial: Tensor | None = None) -> Tensor:
        """Prediction errors E[n] = S[n] - prediction, shape (B, C, T), buffers' dtype."""
        return S.to(self.A) - self.predict(S, initial)

    def whiten(self, S: Tensor, initial: Tensor | None = None) -> Tensor:
        """The whitening operator L: Z[n] = Sigma^{-1/2} E[n] (paper section 4).

        Parameters
        ----------
        S : Tensor, shape (B, C, T)
            Normalised S_J frames.
        initial : Tensor, shape (B, C, T0), optional
            Frames before S; zeros by default.

        Returns
        -------
        Z : Tensor, shape (B, C, T), dtype and device of S.
        """
        E = self.innovations(S, initial)
        Z = (E.transpose(1, 2) @ self.inv_sqrt_cov).transpose(1, 2)
        return Z.to(dtype=S.dtype, device=S.device)

    def unwhiten(self, Z: Tensor, initial: Tensor | None = None) -> Tensor:
        """The inverse L^-1: run the recursion S[n] = prediction + Sigma^{1/2} Z[n].

        Exact inverse of ``whiten`` given the same ``initial`` frames (up to rounding). No ReLU
        here (see ``sample`` for eq. (1)).

        Parameters
        ----------
        Z : Tensor, shape (B, C, T)
        initial : Tensor, shape (B, C, T0), optional
            Frames before the first one; zeros by default.

        Returns
        -------
        S : Tensor, shape (B, C, T), dtype and device of Z.
        """
        self._check(Z, "Z")
        S = self._recursion(Z.to(self.A), initial)
        return S.to(dtype=Z.dtype, device=Z.device)

    def _recursion(self, Z: Tensor, initial: Tensor | None) -> Tensor:
        B, C, T = Z.shape
        M = self.M
        innov = Z.transpose(1, 2) @ self.sqrt_cov  # (B, T, C): all innovations in one matmul
        # out[:, k] holds S[k - M]; the window out[:, n:n+M] is S[n-M .. n-1], contiguous in
        # memory, so each step is one (B, M*C) @ (M*C, C) product on a view, without copies.
        out = innov.new_empty(B, T + M, C)
        out[:, :M] = self._initial(initial, B)
        weight = self._stacked_weight().contiguous()
        innov = innov + self.b
        for n in range(T):
            out[:, n + M] = torch.addmm(innov[:, n], out[:, n : n + M].reshape(B, M * C), weight)
        return out[:, M:].transpose(1, 2)

    def sample(
        self,
        batch: int,
        frames: int,
        *,
        warmup: int = 600,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        relu: bool | Tensor = True,
        codes: str = "gaussian",
    ) -> Tensor:
        """Synthetic S_J frames from Gaussian white noise: X_J = ReLU(L^-1 Z), eq. (1).

        The recursion starts from zero frames and runs ``warmup + frames`` steps; the first
        ``warmup`` frames are discarded so the output is close to the stationary regime (the
        reference code uses 600). The ReLU applies because normalised scattering is
        non-negative. The frames of :meth:`sample_blocks`, concatenated.

        Parameters
        ----------
        batch, frames : int
            Output shape (batch, C, frames).
        warmup : int
            Frames discarded at the start.
        generator : torch.Generator, optional
            Source of the noise (on the buffers' device).
        dtype : torch.dtype, optional
            Output dtype; the buffers' dtype by default.
        relu : bool or Tensor of bool, shape (C,)
            Channels the ReLU applies to: all (True, eq. 1 as written), none (False), or a mask:
            S_J's non-negative channels (``mmsin.scattering.nonnegative_channels``), since
            order 0 and the ``paper`` variant's linear order 1 are signed.
        codes : {"gaussian", "mixture"}
            The law of Z. ``"gaussian"``: N(0, I) (the paper). ``"mixture"``: a Gaussian scale
            mixture ``z[n] = sqrt(w[n]) g[n]``, ``g[n] ~ N(0, I)``, one power ``w[n]`` per
            frame shared by all channels and drawn from the training codes' per-frame power
            (:attr:`frame_scales`, :func:`fit_frame_scales`): still white with covariance I,
            but heavy-tailed jointly across channels, as real innovations are (onsets).

        Returns
        -------
        Tensor, shape (batch, C, frames), non-negative where the ReLU applies.
        """
        blocks = self.sample_blocks(
            batch,
            frames,
            warmup=warmup,
            generator=generator,
            dtype=dtype,
            relu=relu,
            codes=codes,
        )
        return torch.cat(list(blocks), dim=-1)

    def sample_blocks(
        self,
        batch: int,
        frames: int,
        *,
        warmup: int = 600,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        relu: bool | Tensor = True,
        codes: str = "gaussian",
    ) -> Iterator[Tensor]:
        """:meth:`sample` block by block, in memory bounded by one block of noise.

        The noise is drawn :data:`NOISE_FRAMES` frames at a time (the last block whole too),
        so a sample's first frames do not depend on how many follow, and the recursion carries
        its last M frames from block to block. Same parameters as :meth:`sample`.

        Yields
        ------
        Tensor, shape (batch, C, k), k <= NOISE_FRAMES; ``frames`` frames in all.
        """
        if batch < 1 or frames < 1 or warmup < 0:
            raise ValueError(
                f"need batch >= 1, frames >= 1, warmup >= 0; got {batch}, {frames}, {warmup}"
            )
        if codes not in CODE_LAWS:
            raise ValueError(f"codes must be one of {CODE_LAWS}, got {codes!r}")
        if codes == "mixture" and self.frame_scales.numel() == 0:
            raise ValueError(
                "codes='mixture' needs the training codes' frame powers, which this VAR was "
                "fitted without (models trained before mmsin 0.9); use codes='gaussian'"
            )
        total = warmup + frames
        past: Tensor | None = None
        for start in range(0, total, NOISE_FRAMES):
            Z = torch.randn(
                batch,
                self.channels,
                NOISE_FRAMES,
                generator=generator,
                dtype=self.A.dtype,
                device=self.A.device,
            )
            if codes == "mixture":
                u = torch.rand(
                    batch, NOISE_FRAMES, generator=generator, dtype=Z.dtype, device=Z.device
                )
                Z = Z * _quantile_lookup(self.frame_scales, u).sqrt()[:, None, :]
            S = self._recursion(Z, past)
            past = S[..., -self.M :] if past is None else torch.cat([past, S], -1)[..., -self.M :]
            lo, hi = max(0, warmup - start), min(NOISE_FRAMES, total - start)
            if hi > lo:
                yield apply_relu(S[..., lo:hi], relu).to(dtype or self.A.dtype)

    def spectral_radius(self) -> float:
        """Largest modulus of the companion matrix's eigenvalues (< 1 means a stable VAR)."""
        M, C = self.M, self.channels
        comp = self.A.new_zeros(M * C, M * C)
        comp[:C] = self.A.permute(1, 0, 2).reshape(C, M * C)
        if M > 1:
            comp[C:, : (M - 1) * C] = torch.eye(
                (M - 1) * C, dtype=self.A.dtype, device=self.A.device
            )
        return float(torch.linalg.eigvals(comp.double()).abs().max())


#: The laws :meth:`VAR.sample` can draw codes from.
CODE_LAWS = ("gaussian", "mixture")


def _quantile_lookup(quantiles: Tensor, u: Tensor) -> Tensor:
    """Inverse CDF of the distribution whose ``Q`` quantiles at ``(i + 0.5) / Q`` are
    ``quantiles`` (sorted), at ``u`` in [0, 1]: linear between them, flat beyond."""
    Q = quantiles.numel()
    pos = (u * Q - 0.5).clamp(0, Q - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(Q - 1)
    frac = pos - lo.to(pos.dtype)
    q = quantiles.to(u.dtype)
    return q[lo] * (1 - frac) + q[hi] * frac


def fit_frame_scales(Z: Tensor | Sequence[Tensor], quantiles: int = 256) -> Tensor:
    """The per-frame power law of codes, for :meth:`VAR.sample`'s ``codes="mixture"``.

    ``w[n] = (1/C) sum_c z_c[n]^2`` over every frame of ``Z`` (whitened training frames),
    divided by its mean so that the mixture keeps E[z z^T] = I, and shrunk towards 1 by the
    spread that C Gaussian channels add to a measured power; returned as ``quantiles``
    quantiles at ``(i + 0.5) / quantiles``. For a Gaussian scale mixture ``sqrt(w) g`` each
    channel's excess kurtosis is ``3 E[w^2] / E[w]^2 - 3``: the onsets' heavy tails, shared
    by every channel of a frame.

    Parameters
    ----------
    Z : Tensor, shape (B, C, T), or list of Tensor, shape (C, T_i)

    Returns
    -------
    Tensor, shape (quantiles,), float64, sorted, mean about 1
    """
    if quantiles < 2:
        raise ValueError(f"quantiles must be >= 2, got {quantiles}")
    w = torch.cat([e.to(torch.float64).pow(2).mean(dim=0) for e in _as_examples(Z)])
    if w.numel() < quantiles or not bool(torch.isfinite(w).all()) or float(w.mean()) <= 0:
        raise ValueError(f"need at least {quantiles} finite, non-zero frames, got {w.numel()}")
    w = w / w.mean()
    # A frame's measured power is w times a chi-square over C channels / C, whose own spread
    # (variance 2/C) would add to the kurtosis: shrink around 1 so that the variance is w's,
    # Var(w) = (Var(p) + 1) / (1 + 2/C) - 1 (negligible at C ~ 1000, large at C ~ 10).
    C = _as_examples(Z)[0].shape[0]
    var_p = float(w.var(unbiased=False))
    var_w = max((var_p + 1) / (1 + 2 / C) - 1, 0.0)
    if var_p > 0:
        w = 1 + (w - 1) * math.sqrt(var_w / var_p)
    probs = (torch.arange(quantiles, dtype=torch.float64) + 0.5) / quantiles
    q = torch.quantile(w, probs)
    return q / q.mean()  # the quantiles' own mean is the law's: keep it exactly 1


def fit_var(
    frames: Tensor | Sequence[Tensor],
    M: int = 4,
    ridge: float = 1e-3,
    *,
    eig_floor: float = 1e-6,
    chunk_rows: int = 4096,
    max_radius: float | None = 0.995,
) -> VAR:
    """Fit the causal VAR(M) with intercept in closed form (paper section 4).

    Least squares for S[n] given [S[n-M], ..., S[n-1], 1] over every frame n of every example,
    frames before 0 being zeros, solved through the normal equations
    ``(X^T X + R) W = X^T Y`` with ``R = ridge * trace(X_lag^T X_lag) / (M C)`` on the lag
    columns (the intercept is not penalised). The ridge keeps rank-deficient channel sets (the
    973-channel transform has exactly duplicated channels) well posed. ``X^T X`` is accumulated
    chunk by chunk in float64, so memory stays at O((M C)^2) whatever the data size.

    Parameters
    ----------
    frames : Tensor, shape (B, C, T), or list of Tensor, shape (C, T_i)
        Normalised S_J frames of the training set.
    M : int
        Order.
    ridge : float
        Ridge strength relative to the mean diagonal of the lag Gram matrix.
    eig_floor : float
        Eigenvalues of the innovation covariance below ``eig_floor * largest`` are raised to
        that value before taking (inverse) square roots.
    chunk_rows : int
        Frames per accumulation step (memory ~ chunk_rows * (M C + 1) * 8 bytes).
    max_radius : float or None
        Stability guard. With few frames per regressor (a small data set and C ~ 1000
        channels gives fewer frames than the M C + 1 unknowns of each equation) the least-squares
        VAR can be explosive, and L^-1 driven by noise then diverges. When the recursion's
        growth rate (an estimate of the companion matrix's spectral radius, see
        :func:`growth_rate`) exceeds ``max_radius``, the ridge is multiplied by 10 and the fit
        repeated (at most 8 times; logged). None disables the guard.

    Returns
    -------
    VAR
        With float64 buffers, on the device of the frames.
    """
    if M < 1:
        raise ValueError(f"M must be >= 1, got {M}")
    if ridge < 0 or not math.isfinite(ridge):
        raise ValueError(f"ridge must be a finite non-negative number, got {ridge}")
    if not 0 <= eig_floor < 1:
        raise ValueError(f"eig_floor must be in [0, 1), got {eig_floor}")
    gram, cross, yty, count = _normal_equations(frames, M, chunk_rows)
    C = cross.shape[1]
    scale = _ridge_scale(gram, M * C)
    var = _solve_var(gram, cross, yty, count, C, M, ridge * scale, eig_floor)
    tries = 0
    while max_radius is not None and tries < 8:
        rate = growth_rate(var)
        if rate <= max_radius:
            break
        tries += 1
        log.warning(
            "VAR(%d) fit with ridge %.3g is explosive (growth rate %.3f > %.3f); refitting with "
            "ridge %.3g",
            M,
            ridge,
            rate,
            max_radius,
            ridge * 10,
        )
        ridge *= 10
        var = _solve_var(gram, cross, yty, count, C, M, ridge * scale, eig_floor)
    return var


def _normal_equations(
    frames: Tensor | Sequence[Tensor], M: int, chunk_rows: int
) -> tuple[Tensor, Tensor, Tensor, int]:
    """X^T X, X^T Y, Y^T Y and the number of frames of the VAR(M) regression, accumulated chunk
    by chunk in float64 (memory O((M C)^2) whatever the data size)."""
    examples = _as_examples(frames)
    C = examples[0].shape[0]
    device = examples[0].device
    D = M * C + 1
    f64 = torch.float64
    gram = torch.zeros(D, D, dtype=f64, device=device)  # X^T X
    cross = torch.zeros(D, C, dtype=f64, device=device)  # X^T Y
    yty = torch.zeros(C, C, dtype=f64, device=device)  # Y^T Y
    count = 0
    for e in examples:
        s = e.to(device=device, dtype=f64).T  # (T, C)
        T = s.shape[0]
        count += T
        for start in range(0, T, chunk_rows):
            stop = min(start + chunk_rows, T)
            # Rows start..stop-1 need frames start-M..stop-2: take a window with M of history.
            lo = max(0, start - M)
            X = _lagged_design(s[lo:stop], M)[start - lo :]
            Y = s[start:stop]
            gram.addmm_(X.T, X)
            cross.addmm_(X.T, Y)
            yty.addmm_(Y.T, Y)
    if count < 2:
        raise ValueError(f"need at least 2 frames in total to fit the VAR, got {count}")
    return gram, cross, yty, count


def _ridge_scale(gram: Tensor, lag: int) -> float:
    """Mean diagonal of the lag block of X^T X: the unit of the relative ridge."""
    return float(gram.diagonal()[:lag].sum()) / lag


def fit_var_ridges(
    frames: Tensor | Sequence[Tensor],
    ridges: Sequence[float],
    M: int = 4,
    *,
    eig_floor: float = 1e-6,
    chunk_rows: int = 4096,
) -> list[VAR]:
    """:func:`fit_var` at each relative ridge of ``ridges`` (no stability guard), from one pass
    over the data: the normal equations are accumulated once and solved per ridge. For choosing
    the ridge by stability (:func:`growth_rate`) and held-out whiteness
    (:func:`whiteness_report`)."""
    if M < 1:
        raise ValueError(f"M must be >= 1, got {M}")
    if any(r < 0 or not math.isfinite(r) for r in ridges):
        raise ValueError(f"ridges must be finite non-negative numbers, got {list(ridges)}")
    gram, cross, yty, count = _normal_equations(frames, M, chunk_rows)
    C = cross.shape[1]
    scale = _ridge_scale(gram, M * C)
    return [_solve_var(gram, cross, yty, count, C, M, r * scale, eig_floor) for r in ridges]


def growth_rate(var: VAR, steps: int = 300, batch: int = 4, seed: int = 0) -> float:
    """Asymptotic per-frame growth factor of the noise-free recursion S[n] = sum_m A_m S[n-m].

    Power iteration on the companion matrix without forming it: the norm ratio over the last
    half of ``steps`` frames, renormalised every step, estimates its spectral radius (< 1 means
    a stable VAR whose L^-1 forgets its initial frames). Costs ``steps`` products of size
    (batch, M C) x (M C, C), far cheaper than an eigendecomposition of the (M C)^2 matrix.
    """
    M, C = var.M, var.channels
    g = torch.Generator(device=var.A.device).manual_seed(seed)
    past = torch.randn(batch, M, C, generator=g, dtype=torch.float64, device=var.A.device)
    # Row-vector form of S[n] = sum_m A_{m-1} S[n-m]: block k of the (M C, C) matrix is the
    # transposed coefficient of lag M - k, matching past[:, k] = S[n - M + k].
    weights = var.A.to(torch.float64).flip(0).transpose(1, 2).reshape(M * C, C)
    log_growth = 0.0
    counted = 0
    for n in range(steps):
        new = past.reshape(batch, M * C) @ weights  # (batch, C)
        past = torch.cat([past[:, 1:], new[:, None]], dim=1)
        norm = float(past.norm())
        if not math.isfinite(norm) or norm == 0.0:
            return math.inf if not math.isfinite(norm) else 0.0
        past = past / norm
        if n >= steps // 2:
            log_growth += math.log(norm)
            counted += 1
    return math.exp(log_growth / max(counted, 1))


def _solve_var(
    gram: Tensor,
    cross: Tensor,
    yty: Tensor,
    count: int,
    C: int,
    M: int,
    penalty: float,
    eig_floor: float,
) -> VAR:
    """Solve the ridge normal equations for (A, b) and form the innovation covariance roots."""
    device = gram.device
    f64 = torch.float64
    D = gram.shape[0]
    lag = M * C
    reg = torch.zeros(D, dtype=f64, device=device)
    reg[:lag] = penalty
    lhs = gram + torch.diag(reg)
    try:
        chol = torch.linalg.cholesky(lhs)
        W = torch.cholesky_solve(cross, chol)
    except RuntimeError:  # singular without ridge: least-norm solution
        W = torch.linalg.lstsq(
            lhs, cross, driver="gelsd" if device.type == "cpu" else None
        ).solution
    # Residual covariance from the accumulators: R^T R = Y^T Y - W^T X^T Y - W^T diag(reg) W
    # (uses (X^T X + diag(reg)) W = X^T Y). The intercept is unpenalised, so residuals have zero
    # mean and this is the biased (1/N) covariance of centred residuals, as in the reference.
    rtr = yty - cross.T @ W - W.T @ (reg[:, None] * W)
    cov = rtr / count
    sqrt_cov, inv_sqrt_cov, _ = _sym_sqrt_pair(cov, eig_floor)
    var = VAR(C, M).to(device)
    # W rows: window slot k (time n - M + k) for k = 0..M-1, each C rows; lag m = M - k.
    slots = W[:lag].reshape(M, C, C)  # slots[k] = A[M-1-k]^T
    with torch.no_grad():
        var.A.copy_(slots.flip(0).transpose(1, 2))
        var.b.copy_(W[lag])
        var.sqrt_cov.copy_(sqrt_cov)
        var.inv_sqrt_cov.copy_(inv_sqrt_cov)
    return var


def whiteness_report(var: VAR, S: Tensor | Sequence[Tensor], *, lags: int = 8) -> dict[str, Any]:
    """How close Z = L S is to a white N(0, I) sequence, on any set of frames.

    Parameters
    ----------
    var : VAR
    S : Tensor, shape (B, C, T), or list of Tensor, shape (C, T_i)
        Normalised S_J frames (train or test); each example starts from zero past frames.

    Returns
    -------
    dict
        ``cov_rel_fro_error``: ||Cov(Z) - I||_F / ||I||_F (Cov centred, biased, pooled over
        examples and frames); ``cov_max_offdiag``: largest |off-diagonal| entry;
        ``cov_mean_diag``: mean variance; ``mean_abs_mean``: mean over channels of |mean Z_c|;
        ``lag1_mean_abs``: mean over channels of |lag-1 autocorrelation| (pairs within each
        example); ``cov_median_diag``: median variance; ``lag_median_abs``: for lags 1 to
        ``lags``, the median over channels of |autocorrelation| at that lag (issue 17's
        criteria: median variance within 2x of 1, lag 1 below 0.2); ``kurtosis_mean``,
        ``kurtosis_median``, ``kurtosis_max``: per-channel excess kurtosis
        E[(z - mu)^4] / var^2 - 3 (0 for a Gaussian); ``effective_rank``: number of
        eigenvalues of Cov(Z) above 0.5 (below C when channels are redundant);
        ``frames``: number of frames used. Channels with zero variance are left out of the
        lag-1 and kurtosis statistics.
    """
    examples = _as_examples(S)
    zs = [var.whiten(e[None].to(var.A)).to(torch.float64)[0] for e in examples]  # (C, T_i)
    z = torch.cat(zs, dim=1)  # (C, N)
    N = z.shape[1]
    if N < 3:
        raise ValueError(f"need at least 3 frames for a whiteness report, got {N}")
    C = z.shape[0]
    mean = z.mean(dim=1)
    zc = z - mean[:, None]
    cov = zc @ zc.T / N
    eye = torch.eye(C, dtype=cov.dtype, device=cov.device)
    off = cov - torch.diag(cov.diagonal())
    var_c = cov.diagonal()
    live = var_c > 1e-12 * float(var_c.max().clamp_min(1e-300))
    # Autocorrelation at lags 1..lags within each example, pooled, using the global mean and
    # variance (pairs never straddle two examples).
    num = torch.zeros(lags, C, dtype=torch.float64, device=z.device)
    pairs = [0] * lags
    for e in zs:
        ec = e - mean[:, None]
        for k in range(1, lags + 1):
            if e.shape[1] > k:
                num[k - 1] += (ec[:, k:] * ec[:, :-k]).sum(dim=1)
                pairs[k - 1] += e.shape[1] - k
    auto = num / torch.tensor([max(p, 1) for p in pairs], dtype=torch.float64)[:, None].to(num)
    auto = auto / var_c.clamp_min(1e-300)
    lag1 = auto[0]
    kurt = (zc**4).mean(dim=1) / var_c.clamp_min(1e-300) ** 2 - 3.0
    kl = kurt[live]
    return {
        "cov_rel_fro_error": float(torch.linalg.norm(cov - eye) / math.sqrt(C)),
        "cov_max_offdiag": float(off.abs().max()) if C > 1 else 0.0,
        "cov_mean_diag": float(var_c.mean()),
        "mean_abs_mean": float(mean.abs().mean()),
        "lag1_mean_abs": float(lag1[live].abs().mean()),
        "cov_median_diag": float(var_c.median()),
        "lag_median_abs": [float(a[live].abs().median()) for a in auto],
        "kurtosis_mean": float(kl.mean()),
        "kurtosis_median": float(kl.median()),
        "kurtosis_max": float(kl.max()),
        "effective_rank": int((torch.linalg.eigvalsh(cov) > 0.5).sum()),
        "frames": N,
    }
