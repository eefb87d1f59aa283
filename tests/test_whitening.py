"""Whitening L / L^-1: the closed-form VAR fit against known processes and numpy's lstsq."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsin.whitening import (
    VAR,
    fit_frame_scales,
    fit_var,
    fit_var_ridges,
    growth_rate,
    past_rows,
    whiteness_report,
)

# A stable VAR(2) on 3 channels with a correlated innovation covariance.
A_TRUE = np.array(
    [
        [[0.5, 0.1, 0.0], [-0.2, 0.3, 0.1], [0.0, 0.2, 0.4]],
        [[-0.2, 0.0, 0.05], [0.1, -0.1, 0.0], [0.0, 0.05, -0.15]],
    ]
)
B_TRUE = np.array([1.0, 0.5, 2.0])
COV_TRUE = np.array([[1.0, 0.4, 0.1], [0.4, 0.8, -0.2], [0.1, -0.2, 0.5]])


def simulate(batch: int, T: int, seed: int, burn: int = 200) -> np.ndarray:
    """Independent numpy simulation of the VAR(2) above, shape (batch, C, T), stationary."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(COV_TRUE)
    C = 3
    s = np.zeros((batch, burn + T, C))
    e = rng.standard_normal((batch, burn + T, C)) @ chol.T
    for n in range(burn + T):
        s[:, n] = B_TRUE + e[:, n]
        for m in (1, 2):
            if n - m >= 0:
                s[:, n] += s[:, n - m] @ A_TRUE[m - 1].T
    return s[:, burn:].transpose(0, 2, 1)


def test_recovers_known_var2_coefficients() -> None:
    S = torch.from_numpy(simulate(8, 2000, seed=1))
    var = fit_var(S, M=2, ridge=0.0)
    np.testing.assert_allclose(var.A.numpy(), A_TRUE, atol=0.03)
    Sigma = (var.sqrt_cov @ var.sqrt_cov).numpy()
    np.testing.assert_allclose(Sigma, COV_TRUE, atol=0.04)
    # Higher order than the truth: the extra lags come out near zero.
    var4 = fit_var(S, M=4, ridge=0.0)
    assert var4.A[2:].abs().max() < 0.04
    np.testing.assert_allclose(var4.A[:2].numpy(), A_TRUE, atol=0.04)
    assert 0.3 < var.spectral_radius() < 0.9


def test_excerpts_fit_without_their_zero_past() -> None:
    """Short excerpts of a stationary process (as 8-s extracts of long recordings): with
    past="unknown" the fit matches numpy's lstsq on the rows n >= M alone and recovers the
    process; regressing the first frames on zeros (a past they never had) biases it."""
    S = simulate(4000, 12, seed=4)  # 4000 excerpts of 12 frames, each from the stationary law
    stationary = np.linalg.solve(np.eye(3) - A_TRUE.sum(0), B_TRUE)
    fits = {
        past: fit_var(torch.from_numpy(S), M=2, ridge=0.0, past=past)
        for past in ("silence", "unknown")
    }

    def mean_of(var: VAR) -> np.ndarray:
        return np.linalg.solve(np.eye(3) - var.A.numpy().sum(0), var.b.numpy())

    assert np.abs(mean_of(fits["unknown"]) / stationary - 1).max() < 0.02
    err = {k: np.abs(v.A.numpy() - A_TRUE).max() for k, v in fits.items()}
    assert err["unknown"] < 0.04
    assert err["silence"] > 0.1
    # The same rows as an independent lstsq: frames 2.. of each excerpt on their two lags.
    X = np.concatenate([S[:, :, 1:-1], S[:, :, :-2], np.ones((4000, 1, 10))], axis=1)
    X = X.transpose(0, 2, 1).reshape(-1, 7)
    Y = S[:, :, 2:].transpose(0, 2, 1).reshape(-1, 3)
    W, *_ = np.linalg.lstsq(X, Y, rcond=None)
    np.testing.assert_allclose(fits["unknown"].A[0].numpy(), W[:3].T, atol=1e-8)
    np.testing.assert_allclose(fits["unknown"].A[1].numpy(), W[3:6].T, atol=1e-8)
    np.testing.assert_allclose(fits["unknown"].b.numpy(), W[6], atol=1e-8)
    # The report leaves the same first frames out.
    assert past_rows("unknown", 2) == 2 and past_rows("silence", 2) == 0
    rep = whiteness_report(fits["unknown"], torch.from_numpy(S), skip=2)
    assert rep["frames"] == 4000 * 10
    assert abs(rep["cov_median_diag"] - 1) < 0.05 and rep["mean_abs_mean"] < 0.03
    with pytest.raises(ValueError, match="past"):
        fit_var(torch.from_numpy(S), M=2, past="zeros")


def test_matches_numpy_lstsq_reference() -> None:
    rng = np.random.default_rng(3)
    examples = [rng.random((4, T)) for T in (30, 17, 25)]  # a list of uneven lengths
    M = 3
    rows, targets = [], []
    for e in examples:
        padded = np.concatenate([np.zeros((4, M)), e], axis=1)
        for n in range(e.shape[1]):
            # regressors: S[n-1], ..., S[n-M], 1 (descending lags, an independent layout)
            rows.append(np.concatenate([padded[:, M + n - m] for m in range(1, M + 1)] + [[1.0]]))
            targets.append(e[:, n])
    X, Y = np.array(rows), np.array(targets)
    W, *_ = np.linalg.lstsq(X, Y, rcond=None)
    A_ref = np.stack([W[4 * (m - 1) : 4 * m].T for m in range(1, M + 1)])
    resid = Y - X @ W
    var = fit_var([torch.from_numpy(e) for e in examples], M=M, ridge=0.0, chunk_rows=7)
    np.testing.assert_allclose(var.A.numpy(), A_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(var.b.numpy(), W[-1], rtol=1e-6, atol=1e-8)
    Sigma = (var.sqrt_cov @ var.sqrt_cov).numpy()
    np.testing.assert_allclose(Sigma, resid.T @ resid / len(Y), rtol=1e-6, atol=1e-10)
    # Innovations through the module equal the lstsq residuals.
    E = torch.cat([var.innovations(torch.from_numpy(e)[None])[0] for e in examples], dim=1)
    np.testing.assert_allclose(E.numpy().T, resid, atol=1e-9)


def test_whitened_output_is_white() -> None:
    train = torch.from_numpy(simulate(8, 1500, seed=2))
    test = torch.from_numpy(simulate(4, 1500, seed=5))
    var = fit_var(train, M=2)
    for S in (train, test):
        rep = whiteness_report(var, S)
        assert rep["cov_rel_fro_error"] < 0.05
        assert rep["cov_max_offdiag"] < 0.05
        assert abs(rep["cov_mean_diag"] - 1) < 0.05
        assert rep["lag1_mean_abs"] < 0.03
        assert abs(rep["kurtosis_mean"]) < 0.15  # Gaussian innovations
        assert rep["effective_rank"] == 3
    # The raw frames are far from white: the report can fail.
    ident = VAR(3, 2)
    raw = whiteness_report(ident, train)
    assert raw["cov_rel_fro_error"] > 0.3 and raw["lag1_mean_abs"] > 0.2


def test_kurtosis_detects_heavy_tails() -> None:
    var = VAR(2, 1)
    rng = np.random.default_rng(0)
    Z = torch.from_numpy(rng.laplace(size=(1, 2, 20000)))  # excess kurtosis 3
    rep = whiteness_report(var, Z)
    assert 2.5 < rep["kurtosis_mean"] < 3.5


def test_round_trip_is_exact_float64() -> None:
    S = torch.from_numpy(simulate(3, 300, seed=4))
    var = fit_var(S, M=4)
    Z = var.whiten(S)
    np.testing.assert_allclose(var.unwhiten(Z).numpy(), S.numpy(), atol=1e-10)
    # With explicit initial frames (a continuation of a sequence).
    init, rest = S[:, :, :50], S[:, :, 50:]
    Zr = var.whiten(rest, initial=init)
    np.testing.assert_allclose(var.unwhiten(Zr, initial=init).numpy(), rest.numpy(), atol=1e-10)
    np.testing.assert_allclose(Zr.numpy(), Z[:, :, 50:].numpy(), atol=1e-10)
    # And the other direction.
    Zn = torch.randn(2, 3, 100, dtype=torch.float64)
    np.testing.assert_allclose(var.whiten(var.unwhiten(Zn)).numpy(), Zn.numpy(), atol=1e-10)


def test_float32_buffers_and_inputs() -> None:
    S = torch.from_numpy(simulate(2, 200, seed=6))
    var = fit_var(S, M=2).float()
    Z = var.whiten(S.float())
    assert Z.dtype == torch.float32
    np.testing.assert_allclose(var.unwhiten(Z).numpy(), S.float().numpy(), atol=1e-4)


def test_rank_deficient_duplicated_channels() -> None:
    base = simulate(4, 800, seed=7)
    dup = np.concatenate([base, base[:, :1], base[:, 1:2] * 2.0], axis=1)  # 5 channels, rank 3
    S = torch.from_numpy(dup)
    var = fit_var(S, M=4)
    assert torch.isfinite(var.A).all() and torch.isfinite(var.inv_sqrt_cov).all()
    Z = var.whiten(S)
    assert torch.isfinite(Z).all()
    np.testing.assert_allclose(var.unwhiten(Z).numpy(), dup, atol=1e-8)
    rep = whiteness_report(var, S)
    assert rep["effective_rank"] == 3
    # Within the 3-dimensional innovation subspace Z is white: eigenvalues are ~1 or ~0.
    ev = torch.linalg.eigvalsh(torch.cov(Z.transpose(0, 1).reshape(5, -1)))
    np.testing.assert_allclose(sorted(ev.numpy())[2:], [1, 1, 1], atol=0.05)
    assert ev[:2].abs().max() < 1e-3


def test_sample_statistics_match_the_process() -> None:
    S = torch.from_numpy(simulate(8, 2000, seed=8))
    var = fit_var(S, M=2)
    g = torch.Generator().manual_seed(0)
    out = var.sample(16, 400, warmup=100, generator=g)
    assert out.shape == (16, 3, 400)
    assert out.dtype == torch.float64
    assert (out >= 0).all()
    # Samples follow ReLU of the stationary process: compare with ReLU of the simulation.
    ref = torch.relu(S)
    np.testing.assert_allclose(
        out.mean(dim=(0, 2)).numpy(), ref.mean(dim=(0, 2)).numpy(), atol=0.08
    )
    np.testing.assert_allclose(out.std(dim=(0, 2)).numpy(), ref.std(dim=(0, 2)).numpy(), rtol=0.08)
    frac = (out == 0).double().mean(dim=(0, 2)).numpy()
    np.testing.assert_allclose(frac, (ref == 0).double().mean(dim=(0, 2)).numpy(), atol=0.04)
    # Reproducible with a seeded generator.
    again = var.sample(16, 400, warmup=100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert var.sample(1, 5, dtype=torch.float32).dtype == torch.float32


def test_relu_applies_to_samples() -> None:
    var = VAR(2, 1)  # A = 0, b = 0, Sigma = I: samples are ReLU(N(0, 1))
    out = var.sample(4, 5000, warmup=0, generator=torch.Generator().manual_seed(1))
    frac_zero = float((out == 0).double().mean())
    assert abs(frac_zero - 0.5) < 0.02
    assert abs(float(out.mean()) - 1 / np.sqrt(2 * np.pi)) < 0.02
    # A channel mask: the ReLU acts on channel 1 only; channel 0 stays a signed N(0, 1).
    masked = var.sample(4, 5000, warmup=0, relu=torch.tensor([False, True]))
    assert float((masked[:, 0] < 0).double().mean()) > 0.45
    assert (masked[:, 1] >= 0).all()
    assert float((var.sample(2, 100, relu=False) < 0).double().mean()) > 0.4


def test_state_dict_round_trip(tmp_path) -> None:
    var = fit_var(torch.from_numpy(simulate(2, 300, seed=9)), M=3)
    path = tmp_path / "var.pt"
    torch.save(var.state_dict(), path)
    loaded = VAR.from_state_dict(torch.load(path, weights_only=True))
    assert loaded.M == 3 and loaded.channels == 3
    S = torch.from_numpy(simulate(1, 50, seed=10))
    assert torch.equal(loaded.whiten(S), var.whiten(S))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        fit_var(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        fit_var(torch.full((1, 2, 10), float("nan")))
    with pytest.raises(ValueError, match="channels=2"):
        fit_var([torch.rand(2, 10), torch.rand(3, 10)])
    var = VAR(3, 2)
    with pytest.raises(ValueError, match="shape"):
        var.whiten(torch.zeros(1, 4, 10))


def test_growth_rate_matches_the_companion_spectral_radius() -> None:
    g = torch.Generator().manual_seed(3)
    var = VAR(5, 2).double()
    with torch.no_grad():
        var.A.copy_(0.4 * torch.randn(2, 5, 5, generator=g, dtype=torch.float64))
    assert growth_rate(var, steps=2000) == pytest.approx(var.spectral_radius(), rel=2e-2)


def test_fit_on_too_few_frames_is_made_stable_by_the_ridge_guard() -> None:
    # 40 channels, M = 4: 161 unknowns per equation but only 6 x 12 frames, a random-walk-like
    # process; plain least squares (guard off) is explosive, the guarded fit is not.
    g = torch.Generator().manual_seed(0)
    S = torch.randn(6, 40, 12, generator=g, dtype=torch.float64).cumsum(-1).abs()
    raw = fit_var(S, M=4, ridge=1e-6, max_radius=None)
    assert growth_rate(raw) > 1.0
    guarded = fit_var(S, M=4, ridge=1e-6)
    assert growth_rate(guarded) <= 0.995
    sample = guarded.sample(2, 50, warmup=300, generator=g)
    assert torch.isfinite(sample).all() and sample.abs().max() < 1e3


def test_ridge_path_equals_single_fits() -> None:
    S = torch.from_numpy(simulate(4, 400, seed=8))
    ridges = [0.0, 1e-3, 1e-1]
    for ridge, var in zip(ridges, fit_var_ridges(S, ridges, M=2), strict=True):
        one = fit_var(S, M=2, ridge=ridge, max_radius=None)
        np.testing.assert_allclose(var.A.numpy(), one.A.numpy(), atol=1e-12)
        np.testing.assert_allclose(var.sqrt_cov.numpy(), one.sqrt_cov.numpy(), atol=1e-12)
    # A larger ridge shrinks the coefficients.
    norms = [float(v.A.norm()) for v in fit_var_ridges(S, [1e-3, 1.0, 100.0], M=2)]
    assert norms[0] > norms[1] > norms[2]


def test_whiteness_lags_of_an_ar1_process() -> None:
    # Z = S through an identity VAR; an AR(1) with coefficient phi has autocorrelation phi^k.
    rng = np.random.default_rng(3)
    phi, C, T = 0.6, 5, 40000
    e = rng.standard_normal((C, T))
    s = np.zeros((C, T))
    for n in range(1, T):
        s[:, n] = phi * s[:, n - 1] + e[:, n]
    rep = whiteness_report(VAR(C, 1), torch.from_numpy(s)[None], lags=4)
    np.testing.assert_allclose(rep["lag_median_abs"], [phi**k for k in range(1, 5)], atol=0.02)
    np.testing.assert_allclose(rep["cov_median_diag"], 1 / (1 - phi**2), rtol=0.05)


def test_mixture_codes_follow_the_fitted_frame_power() -> None:
    # Codes with a known per-frame power law: w = 0.25 or 1.75 with equal odds (mean 1),
    # so each channel's excess kurtosis is 3 E[w^2] - 3 = 1.6875.
    rng = np.random.default_rng(4)
    C, T = 16, 20000
    w = rng.choice([0.25, 1.75], size=T)
    Z = torch.from_numpy(rng.standard_normal((1, C, T)) * np.sqrt(w))
    q = fit_frame_scales(Z, quantiles=64)
    assert abs(float(q.mean()) - 1) < 1e-9
    assert float(q[5]) < 0.5 and float(q[-5]) > 1.2  # two clusters, one per value of w
    var = VAR(C, 1)
    with pytest.raises(ValueError, match="mixture"):
        var.sample(1, 10, warmup=0, codes="mixture")
    var.frame_scales = q
    g = torch.Generator().manual_seed(0)
    mixed = var.sample(4, 4000, warmup=0, generator=g, relu=False, codes="mixture")
    rep = whiteness_report(VAR(C, 1), mixed)
    assert abs(rep["cov_median_diag"] - 1) < 0.05
    assert rep["lag_median_abs"][0] < 0.03
    assert 1.3 < rep["kurtosis_median"] < 2.1
    gauss = var.sample(4, 4000, warmup=0, generator=g, relu=False)
    assert abs(whiteness_report(VAR(C, 1), gauss)["kurtosis_median"]) < 0.2
    # The law travels with the state dict; a state saved before it existed loads as Gaussian.
    again = VAR.from_state_dict(var.state_dict())
    np.testing.assert_array_equal(again.frame_scales.numpy(), q.numpy())
    old = {k: v for k, v in var.state_dict().items() if k != "frame_scales"}
    assert VAR.from_state_dict(old).frame_scales.numel() == 0


def test_stacked_weight_is_kept_until_a_changes() -> None:
    """L's stacked weights are built once per state of A (a copy per call fragmented the heap
    to 24 GB over 12k examples), and rebuilt when A changes in place or is replaced."""
    g = torch.Generator().manual_seed(0)
    examples = [torch.rand(5, 9, generator=g, dtype=torch.float64) for _ in range(3)]
    var = fit_var(examples, M=2, ridge=1e-3)
    w = var._stacked_weight()
    assert var._stacked_weight() is w
    ref = var.A.flip(0).transpose(1, 2).reshape(10, 5)
    torch.testing.assert_close(w, ref, rtol=0, atol=0)
    with torch.no_grad():
        var.A.mul_(0.5)  # in place: the cached weights must follow
    torch.testing.assert_close(var._stacked_weight(), 0.5 * ref, rtol=0, atol=0)
    var.load_state_dict({**var.state_dict(), "A": 2 * var.A})
    torch.testing.assert_close(var._stacked_weight(), ref, rtol=0, atol=0)
    var.float()
    assert var._stacked_weight().dtype == torch.float32


def test_feature_cache_tells_the_pasts_apart() -> None:
    """Training's feature cache holds the fitted L: a VAR fitted without the excerpts' first
    frames is another entry, and the default keeps the key older caches were written under."""
    from mmsin.config import override, preset
    from mmsin.training.features import cache_key

    cfg = preset("small")
    key = cache_key(cfg, "data", (4, 0))
    assert cache_key(override(cfg, ["whitening.past=silence"]), "data", (4, 0)) == key
    assert cache_key(override(cfg, ["whitening.past=unknown"]), "data", (4, 0)) != key
    with pytest.raises(ValueError, match=r"whitening\.past"):
        override(cfg, ["whitening.past=zeros"]).validate()
