"""Fitting the VAR(M) in closed form, choosing its ridge, and judging how white it makes Z.

:func:`fit_var` (one ridge, raised until the recursion is stable), :func:`fit_var_ridges`
(several ridges from one pass over the data), :func:`growth_rate` (stability),
:func:`whiteness_report` (how close Z = L S_J is to white N(0, I) on any frames) and
:func:`fit_frame_scales` (the codes' per-frame power, for heavy-tailed codes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mmsin.whitening.var import VAR, _as_examples, _lagged_design, _sym_sqrt_pair

__all__ = [
    "PASTS",
    "bank_clip_ids",
    "fit_code_bank",
    "fit_frame_scales",
    "fit_var",
    "fit_var_ridges",
    "growth_rate",
    "past_rows",
    "whiteness_report",
]

log = logging.getLogger(__name__)

#: What came before each example the VAR is fitted on (:func:`fit_var`'s ``past``).
PASTS = ("silence", "unknown")


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
    Tensor, shape (min(quantiles, frames),), float64, sorted, mean 1
    """
    if quantiles < 2:
        raise ValueError(f"quantiles must be >= 2, got {quantiles}")
    w = torch.cat([e.to(torch.float64).pow(2).mean(dim=0) for e in _as_examples(Z)])
    if w.numel() < 2 or not bool(torch.isfinite(w).all()) or float(w.mean()) <= 0:
        raise ValueError(f"need at least 2 finite frames, not all zero, got {w.numel()}")
    quantiles = min(quantiles, w.numel())  # a small set: one quantile per frame
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


def bank_clip_ids(lengths: Sequence[int], clips: int, *, skip: int = 0, seed: int = 0) -> list[int]:
    """Which training examples (of these frame counts) :func:`fit_code_bank` keeps, in the
    bank's order: ``clips`` of those longer than ``skip`` frames, at random (seeded; all of
    them if there are fewer), in increasing index."""
    long_enough = [i for i, n in enumerate(lengths) if n > skip]
    if clips < 1 or not long_enough:
        raise ValueError(
            f"need clips >= 1 and an example longer than {skip} frames, got clips={clips}, "
            f"{len(long_enough)} such examples"
        )
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(long_enough), generator=g)[: min(clips, len(long_enough))]
    return [long_enough[int(i)] for i in order.sort().values]


def fit_code_bank(
    Z: Tensor | Sequence[Tensor], clips: int, *, skip: int = 0, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """The bank of training codes that :meth:`VAR.sample`'s ``codes="bank"`` draws from.

    ``clips`` training examples are chosen at random (seeded; all of them if there are fewer)
    and their codes kept from frame ``skip`` on (the VAR's order M: the earlier frames' pasts
    reach before the clip's start, where the whitening assumed zeros), each frame in int8
    with its own scale (max |z| / 127: a rounding error below 0.4 % of the frame's peak).

    Parameters
    ----------
    Z : Tensor, shape (B, C, T), or list of Tensor, shape (C, T_i)
        Whitened training frames.

    Returns
    -------
    bank : Tensor, shape (N, C), int8
    scale : Tensor, shape (N,), float32
    offsets : Tensor, shape (n + 1,), int64
        Clip k's frames are ``bank[offsets[k]:offsets[k + 1]]``.
    """
    examples = _as_examples(Z)
    frames = [
        examples[i][:, skip:].T.to(torch.float32)
        for i in bank_clip_ids([e.shape[-1] for e in examples], clips, skip=skip, seed=seed)
    ]
    rows = torch.cat(frames)
    scale = rows.abs().amax(dim=1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    bank = (rows / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    sizes = torch.tensor([0] + [f.shape[0] for f in frames], dtype=torch.int64)
    return bank, scale, sizes.cumsum(0)


def fit_var(
    frames: Tensor | Sequence[Tensor],
    M: int = 4,
    ridge: float = 1e-3,
    *,
    eig_floor: float = 1e-6,
    chunk_rows: int = 4096,
    max_radius: float | None = 0.995,
    past: str = "silence",
) -> VAR:
    """Fit the causal VAR(M) with intercept in closed form (paper section 4).

    Least squares for S[n] given [S[n-M], ..., S[n-1], 1] over every frame n of every example
    (``past="silence"``: frames before 0 are zeros) or over frames n >= M only
    (``past="unknown"``), solved through the normal equations
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
    past : {"silence", "unknown"}
        What came before each example. ``"silence"`` (notes that start from silence, and
        the paper's L, whose first frames regress on zeros): every frame is a row.
        ``"unknown"`` (excerpts cut from longer recordings): the first M frames of an example
        are not rows, since their true past is not zero. With 8-s excerpts (32 frames at
        J = 10) the zero-past rows are 1 in 8, and on the full beethoven-like set the
        intercept fitted through them put the VAR's stationary mean 16 % above the mean of the
        frames it was fitted on (median over the non-negative channels); without them, 4 % above
        (docs/model.md, section 3).

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
    gram, cross, yty, count = _normal_equations(frames, M, chunk_rows, past_rows(past, M))
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


def past_rows(past: str, M: int) -> int:
    """The frames at the start of each example that are not rows of the fit (nor counted by
    :func:`whiteness_report`): 0 for ``past="silence"``, M for ``"unknown"``."""
    if past not in PASTS:
        raise ValueError(f"past must be one of {PASTS}, got {past!r}")
    return M if past == "unknown" else 0


def _normal_equations(
    frames: Tensor | Sequence[Tensor], M: int, chunk_rows: int, skip: int = 0
) -> tuple[Tensor, Tensor, Tensor, int]:
    """X^T X, X^T Y, Y^T Y and the number of frames of the VAR(M) regression (rows from frame
    ``skip`` of each example on), accumulated chunk by chunk in float64 (memory O((M C)^2)
    whatever the data size)."""
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
        count += max(T - skip, 0)
        for start in range(skip, T, chunk_rows):
            stop = min(start + chunk_rows, T)
            # Rows start..stop-1 need frames start-M..stop-2: take a window with M of history.
            lo = max(0, start - M)
            X = _lagged_design(s[lo:stop], M)[start - lo :]
            Y = s[start:stop]
            gram.addmm_(X.T, X)
            cross.addmm_(X.T, Y)
            yty.addmm_(Y.T, Y)
    if count < 2:
        raise ValueError(
            f"need at least 2 frames in total to fit the VAR (after the first {skip} of each "
            f"example), got {count}"
        )
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
    past: str = "silence",
) -> list[VAR]:
    """:func:`fit_var` at each relative ridge of ``ridges`` (no stability guard), from one pass
    over the data: the normal equations are accumulated once and solved per ridge. For choosing
    the ridge by stability (:func:`growth_rate`) and held-out whiteness
    (:func:`whiteness_report`)."""
    if M < 1:
        raise ValueError(f"M must be >= 1, got {M}")
    if any(r < 0 or not math.isfinite(r) for r in ridges):
        raise ValueError(f"ridges must be finite non-negative numbers, got {list(ridges)}")
    gram, cross, yty, count = _normal_equations(frames, M, chunk_rows, past_rows(past, M))
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


def whiteness_report(
    var: VAR, S: Tensor | Sequence[Tensor], *, lags: int = 8, skip: int = 0
) -> dict[str, Any]:
    """How close Z = L S is to a white N(0, I) sequence, on any set of frames.

    Parameters
    ----------
    var : VAR
    S : Tensor, shape (B, C, T), or list of Tensor, shape (C, T_i)
        Normalised S_J frames (train or test); each example starts from zero past frames.
    skip : int
        Codes of the first ``skip`` frames of each example are left out (:func:`past_rows`:
        M for excerpts, whose first codes whiten against a zero past they never had).

    Returns
    -------
    dict
        ``cov_rel_fro_error``: ||Cov(Z) - I||_F / ||I||_F (Cov centred, biased, pooled over
        examples and frames); ``cov_max_offdiag``: largest |off-diagonal| entry;
        ``cov_mean_diag``: mean variance; ``mean_abs_mean``: mean over channels of |mean Z_c|;
        ``lag1_mean_abs``: mean over channels of |lag-1 autocorrelation| (pairs within each
        example); ``cov_median_diag``: median variance; ``lag_median_abs``: for lags 1 to
        ``lags``, the median over channels of |autocorrelation| at that lag (the
        generation criteria: median variance within 2x of 1, lag 1 below 0.2); ``kurtosis_mean``,
        ``kurtosis_median``, ``kurtosis_max``: per-channel excess kurtosis
        E[(z - mu)^4] / var^2 - 3 (0 for a Gaussian); ``effective_rank``: number of
        eigenvalues of Cov(Z) above 0.5 (below C when channels are redundant);
        ``frames``: number of frames used. Channels with zero variance are left out of the
        lag-1 and kurtosis statistics.
    """
    examples = _as_examples(S)
    zs = [var.whiten(e[None].to(var.A)).to(torch.float64)[0, :, skip:] for e in examples]
    z = torch.cat(zs, dim=1)  # (C, N)  # (C, N)
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
