"""S_J: channel counts, a full-rate IIR reference (scipy.signal.lfilter), streaming, causality,
gradients and the invariance properties the paper relies on."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as sg
import torch

from mmsin.scattering import TimeFrequencyScattering, channel_count
from mmsin.scattering.gammatone import N_ORDER, make_filter
from mmsin.scattering.timefrequency import fourier_atoms


@pytest.mark.parametrize(("J", "Q"), [(10, 12), (6, 4), (7, 8), (5, 2), (8, 6)])
def test_channel_counts(J: int, Q: int) -> None:
    P = Q
    assert channel_count(J, Q, P, "paper") == 1 + Q * (2 * J - 3) + Q * (J - 2) ** 2
    assert channel_count(J, Q, P, "joint-real") == 1 + (2 * J - 3) * (P // 2 + 1) + Q * (J - 2) ** 2
    assert channel_count(J, Q, P, "time") == 1 + (J - 1) * Q + Q * (J - 1) * (J - 2) // 2
    m = TimeFrequencyScattering(J, Q, P, "paper")
    assert m.num_channels == len(m.meta()["order"]) == channel_count(J, Q, P)


def test_paper_numbers() -> None:
    assert [channel_count(10, 12, 12, v) for v in ("paper", "joint-real", "time")] == [
        973,
        888,
        541,
    ]
    assert channel_count(10, 12, 8, "joint-real") == 931  # reference-code.md 3.5: P=8 -> 931


def _iir(f, x):
    """The filter as the recursive IIR of the reference (lfilter), full rate."""
    a = -np.expm1(-f.sigma)
    den = np.poly([np.exp(-f.sigma + 1j * f.xi)] * N_ORDER)
    b = f.scale * a**N_ORDER * (np.array([1.0, -1.0]) if f.wavelet else np.array([1.0]))
    return sg.lfilter(b, den, x, axis=-1)


def _reference(m: TimeFrequencyScattering, x: np.ndarray) -> np.ndarray:
    """Everything at the full rate with IIR filters: the reference code's algorithm."""
    fam, hop = m.family, 2**m.J
    phi = make_filter(fam.sigma_phi, 0.0, False)
    out = [_iir(phi, x).real[:, None, ::hop]]
    u1 = np.stack(
        [np.abs(_iir(make_filter(s, xi), x)) for s, xi in zip(fam.sigma1, fam.xi1, strict=True)], 1
    )
    a1 = _iir(phi, u1).real

    def windowed(u, windows, bins):
        at = fourier_atoms(m.P, bins)
        return np.concatenate([at @ np.where(w[:, None] >= 0, u[:, w], 0) for w in windows], 1)

    if m.variant == "time":
        out.append(a1[..., ::hop])
    else:
        z = windowed(a1, m._windows1, m.P if m.variant == "paper" else m.P // 2 + 1)
        out.append(_iir(phi, np.abs(z)).real[..., ::hop])
    for j2 in range(2, m.J):
        y = _iir(make_filter(fam.sigma2[j2 - 1], fam.xi2[j2 - 1]), u1[:, : (j2 - 1) * m.Q])
        if m.variant != "time":
            y = windowed(y, m._windows2[j2], m.P)
        out.append(_iir(phi, np.abs(y)).real[..., ::hop])
    return np.concatenate(out, 1)


@pytest.mark.parametrize(
    ("variant", "over", "tol1", "tol2"),
    [("time", 0, 2e-3, 5e-2), ("paper", 0, 5e-3, 5e-2), ("paper", 1, 5e-4, 6e-3)],
)
def test_matches_full_rate_iir_reference(variant: str, over: int, tol1: float, tol2: float) -> None:
    """Against a direct full-rate lfilter computation; order 0 is exact, orders 1-2 differ only
    by the documented reduced-rate evaluation (relative l2 error per order)."""
    x = np.random.default_rng(1).standard_normal((2, 4096))
    m = TimeFrequencyScattering(6, 4, 4, variant, oversampling=over)
    s = m(torch.tensor(x)).numpy()
    r = _reference(m, x)
    order = m.meta()["order"]
    err = [
        np.linalg.norm(s[:, order == k] - r[:, order == k]) / np.linalg.norm(r[:, order == k])
        for k in range(3)
    ]
    assert err[0] < 1e-6
    assert err[1] < tol1
    assert err[2] < tol2


@pytest.mark.parametrize("variant", ["paper", "joint-real", "time"])
def test_streaming_equals_offline(variant: str) -> None:
    """Random block sizes (1 .. 400, an empty block, blocks longer than the support) over a
    signal several supports long, so the state is trimmed and carried many times."""
    m = TimeFrequencyScattering(5, 4, 4, variant)
    x = torch.randn(2, 4 * m.support + 700, dtype=torch.float64)
    offline = m(x)
    enc = m.stream(2)
    rng = np.random.default_rng(0)
    sizes = iter([0, 1, m.support + 5])
    outs, t = [], 0
    while t < x.shape[1]:
        n = next(sizes, int(rng.integers(1, 400)))
        outs.append(enc.push(x[:, t : t + n]))
        t += n
    online = torch.cat(outs, dim=-1)
    assert online.shape == offline.shape
    assert torch.allclose(online, offline, rtol=1e-7, atol=1e-9 * offline.abs().max())


def test_causal() -> None:
    m = TimeFrequencyScattering(5, 4, 4)
    x = torch.randn(1, 1000, dtype=torch.float64)
    t = 13 * 32
    y = x.clone()
    y[:, t + 1 :] += torch.randn(1, 1000 - t - 1, dtype=torch.float64)
    a, b = m(x), m(y)
    n = t // 32
    assert (a[..., : n + 1] - b[..., : n + 1]).abs().max() <= 1e-10 * a.abs().max()
    assert (a[..., n + 1 :] - b[..., n + 1 :]).abs().max() > 1e-3 * a.abs().max()


def test_frames_and_batch() -> None:
    m = TimeFrequencyScattering(4, 2, 2)
    x = torch.randn(3, 100)
    y = m(x)
    assert y.shape == (3, m.num_channels, (100 - 1) // 16 + 1)
    assert y.dtype == torch.float32
    per_item = torch.cat([m(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(y, per_item, atol=1e-6)


def test_gradcheck() -> None:
    m = TimeFrequencyScattering(3, 2, 2)
    x = torch.randn(1, 24, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5)


def test_translation_covariance_and_warp_stability() -> None:
    J = 6
    m = TimeFrequencyScattering(J, 8, 8)
    t = np.arange(8192)
    env = np.exp(-(((t - 4000) / 900.0) ** 2))
    x = env * np.sin(2 * np.pi * 0.05 * t + 3 * np.sin(2 * np.pi * t / 700))
    xs = np.concatenate([np.zeros(2**J), x[: -(2**J)]])  # delay by one frame
    s, ss = m(torch.tensor(x)[None]), m(torch.tensor(xs)[None])
    assert torch.allclose(ss[..., 1:], s[..., :-1], atol=1e-9 * s.abs().max())
    # A 1 % time warp moves the waveform a lot but S_J only a little (Lipschitz to diffeos).
    tw = t * 1.01 - 40
    xw = np.interp(tw, t, x)
    sw = m(torch.tensor(xw)[None])
    dx = np.linalg.norm(xw - x) / np.linalg.norm(x)
    ds = float((sw - s).norm() / s.norm())
    assert dx > 0.5
    assert ds < 0.2 * dx


def test_channel_mean_abs_closed_form_and_save_load(tmp_path) -> None:
    """mean |S| per channel: first order of a constant-amplitude sine A sin(omega t) is
    (A / 2) |Psi_lambda(omega)| (the analytic wavelet keeps the e^{i omega t} half of the sine;
    phi_J has unit DC gain); every channel equals a direct mean over all frames of unequal
    batches; save/load round-trips it."""
    from mmsin.scattering import channel_mean_abs, load_mean_abs, save_mean_abs

    m = TimeFrequencyScattering(5, 4, 4, "time")
    amp, omega, n0 = 0.7, 0.9, 40  # n0 frames of warm-up (filters start from zero)
    t = np.arange(2**14)
    x = torch.tensor(amp * np.sin(omega * t + np.array([[0.0], [1.3]])))  # two phases

    mean = channel_mean_abs(lambda v: m(v)[..., n0:], [x])
    order = m.meta()["order"]
    gains = np.array(
        [
            abs(make_filter(s, xi).transfer(np.array([omega]))[0])
            for s, xi in zip(m.family.sigma1, m.family.xi1, strict=True)
        ]
    )
    strong = gains > 0.3  # the tone's neighbourhood; elsewhere the mean is tiny, not exact
    assert strong.sum() >= 2
    np.testing.assert_allclose(mean[order == 1][strong].numpy(), amp / 2 * gains[strong], rtol=2e-3)

    # Unequal batch sizes and lengths: weighted by frames, equal to one direct mean.
    batches = [torch.randn(3, 700, dtype=torch.float64), torch.randn(1, 2000, dtype=torch.float64)]
    direct = torch.cat(
        [m(b).abs().permute(1, 0, 2).reshape(m.num_channels, -1) for b in batches], 1
    )
    mean = channel_mean_abs(m, batches)
    assert mean.shape == (m.num_channels,) and mean.dtype == torch.float64
    torch.testing.assert_close(mean, direct.mean(dim=1), rtol=1e-12, atol=0)

    path = save_mean_abs(mean, tmp_path / "stats" / "mean_abs.pt", J=5, Q=4, variant="time")
    assert torch.equal(load_mean_abs(path), mean)
    with pytest.raises(FileNotFoundError, match="no normalisation statistics"):
        load_mean_abs(tmp_path / "missing.pt")
    torch.save({"other": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a file written by save_mean_abs"):
        load_mean_abs(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="at least one non-empty batch"):
        channel_mean_abs(m, [])
