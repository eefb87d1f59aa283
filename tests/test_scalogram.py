"""S_K: Morlet against kymatio 0.3.0, Gammatone against a direct lfilter computation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as sg
import torch

from mmsin.scattering import Scalogram
from mmsin.scattering.gammatone import N_ORDER, gammatone_family, make_filter


def _iir(f, x):
    a = -np.expm1(-f.sigma)
    den = np.poly([np.exp(-f.sigma + 1j * f.xi)] * N_ORDER)
    b = f.scale * a**N_ORDER * (np.array([1.0, -1.0]) if f.wavelet else np.array([1.0]))
    return sg.lfilter(b, den, x, axis=-1)


def test_morlet_matches_kymatio_030() -> None:
    torch_frontend = pytest.importorskip("kymatio.scattering1d.frontend.torch_frontend")
    T = 4096
    x = torch.randn(2, T, dtype=torch.float64)
    ref = torch_frontend.ScatteringTorch1D(J=5, shape=(T,), Q=12, max_order=1)(x.float()).double()
    ours = Scalogram(5, 12, "morlet")(x)
    assert ours.shape == ref.shape == (2, 41, T // 32)
    inner = slice(8, -8)  # kymatio reflect-pads differently at the borders
    err = (ours[..., inner] - ref[..., inner]).norm(dim=(0, 2)) / ref[..., inner].norm(dim=(0, 2))
    assert err.max() < 1e-2  # measured 4e-3 (kymatio's own aliasing at the lowest filters)


def _lfilter_scalogram(K: int, Q: int, x: np.ndarray) -> np.ndarray:
    fam = gammatone_family(K, Q)
    phi = make_filter(fam.sigma_phi, 0.0, False)
    u1 = np.stack(
        [np.abs(_iir(make_filter(s, xi), x)) for s, xi in zip(fam.sigma1, fam.xi1, strict=True)], 1
    )
    return np.concatenate([_iir(phi, x).real[:, None], _iir(phi, u1).real], 1)[..., :: 2**K]


@pytest.mark.parametrize(
    ("Q", "T", "n0", "tol"),
    # n0: frames after the longest filter's warm-up (causal lfilter starts from zero).
    # Measured max errors: 4.2e-4 (Q=4), 4.2e-3 (Q=12, the losses' setting).
    [(4, 4096, 40, 2e-3), (12, 8192, 100, 1e-2)],
)
def test_gammatone_matches_lfilter(Q: int, T: int, n0: int, tol: float) -> None:
    K = 5
    x = np.random.default_rng(0).standard_normal((2, T))
    m = Scalogram(K, Q, "gammatone")
    assert m.num_channels == 1 + (K - 1) * Q
    ours = m(torch.tensor(x)).numpy()
    ref = _lfilter_scalogram(K, Q, x)
    err = np.linalg.norm(ours[..., n0:] - ref[..., n0:], axis=(0, 2)) / np.linalg.norm(
        ref[..., n0:], axis=(0, 2)
    )
    assert err.max() < tol


def test_shapes_dtype_and_gradient() -> None:
    m = Scalogram(4, 4, "gammatone")
    x = torch.randn(3, 300, requires_grad=True)
    y = m(x)
    assert y.shape == (3, m.num_channels, 300 // 16)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    meta = m.meta()
    assert len(meta["order"]) == m.num_channels
    with pytest.raises(ValueError, match="wavelet"):
        Scalogram(wavelet="haar")
