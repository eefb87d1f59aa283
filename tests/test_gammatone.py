"""Gammatone filters against their closed forms and the reference code's measured numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmsin.scattering.gammatone import TAIL, gammatone_family, make_filter

FS = 4096.0
HZ = FS / (2 * math.pi)
OMEGA = np.linspace(0.0, math.pi, 400_001)


def _band(f):
    w = np.linspace(0.3 * f.xi, min(math.pi, 2.5 * f.xi), 400_001) if f.wavelet else OMEGA
    h = np.abs(f.transfer(w))
    inside = w[h >= h.max() * math.sqrt(0.5)]
    return w[np.argmax(h)], h.max(), inside[0], inside[-1]


@pytest.mark.parametrize("i", [0, 40, 107])
def test_first_order_centre_and_bandwidth(i: int) -> None:
    fam = gammatone_family(10, 12)
    f = make_filter(fam.sigma1[i], fam.xi1[i])
    peak, gain, lo, hi = _band(f)
    root = 2 ** (-1 / 12)
    b1 = 2 * (1 - root) * fam.xi1[i] / (1 + root)
    assert abs(peak - fam.xi1[i]) < 0.01 * fam.xi1[i]
    assert abs((hi - lo) - b1) < 0.01 * b1  # -3 dB width = B1 (reference: 0.1 %)
    assert 0.99 < gain < 1.001  # l1-normalised narrow filter has unit peak gain


def test_reference_measured_numbers() -> None:
    fam = gammatone_family(10, 12)
    assert fam.xi1[0] * HZ == pytest.approx(1696.6, abs=0.1)
    assert fam.xi1[-1] * HZ == pytest.approx(3.51, abs=0.01)
    # reference-code.md 3.3: psi2 j2=2 peaks at 974 Hz, -3 dB band [682, 1336] Hz, gain 0.96
    peak, gain, lo, hi = _band(make_filter(fam.sigma2[1], fam.xi2[1]))
    assert peak * HZ == pytest.approx(974, rel=0.005)
    assert (lo * HZ, hi * HZ) == pytest.approx((682, 1336), rel=0.005)
    assert gain == pytest.approx(0.96, abs=0.005)
    # phi_J: sigma 0.004985, impulse-response peak at 400 samples
    phi = make_filter(fam.sigma_phi, 0.0, False)
    assert fam.sigma_phi == pytest.approx(0.004985, rel=1e-3)
    assert int(np.argmax(np.abs(phi.ir()))) == pytest.approx(400, abs=1)


def test_lowpass_minus_3db_exact() -> None:
    fam = gammatone_family(6, 8)
    phi = make_filter(fam.sigma_phi, 0.0, False)
    b = 2 * (2.0 / (1 + 2 ** (6 / 8))) * math.pi * 2.0 ** -(6 - 1) / 2
    assert abs(phi.transfer(np.array([b / 2]))[0]) / abs(phi.transfer(np.array([0.0]))[0]) == (
        pytest.approx(math.sqrt(0.5), rel=1e-6)
    )


@pytest.mark.parametrize("which", ["psi1", "psi2", "phi"])
def test_fft_of_ir_matches_transfer_function(which: str) -> None:
    fam = gammatone_family(7, 4)
    f = {
        "psi1": make_filter(fam.sigma1[5], fam.xi1[5]),
        "psi2": make_filter(fam.sigma2[2], fam.xi2[2]),
        "phi": make_filter(fam.sigma_phi, 0.0, False),
    }[which]
    n = 1 << int(math.ceil(math.log2(f.length)) + 1)
    h = np.fft.fft(f.ir(n))
    w = 2 * math.pi * np.arange(n) / n
    ref = f.transfer(w)
    assert np.max(np.abs(h - ref)) < 1e-5 * np.max(np.abs(ref))


def test_causal_zero_dc_unit_l1_and_tail() -> None:
    fam = gammatone_family(8, 12)
    for sigma, xi, wav in [(fam.sigma1[k], fam.xi1[k], True) for k in (0, 50, 83)] + [
        (fam.sigma_phi, 0.0, False)
    ]:
        f = make_filter(sigma, xi, wav)
        h = f.ir()
        assert np.abs(h).sum() == pytest.approx(1.0, rel=1e-12)
        assert abs(f.transfer(np.array([0.0]))[0]) < 1e-12 if wav else True
        assert abs(h[-1]) < 10 * TAIL * np.abs(h).max()
        # Causal: the closed form at negative times is zero (filter starts at t = 0).
        assert abs(h[0]) > 0
        assert abs(h.sum()) < 1e-6 if wav else abs(h.sum() - 1) < 1e-9


def test_littlewood_paley_covers_band() -> None:
    fam = gammatone_family(8, 12)
    w = np.linspace(fam.xi1[-1], fam.xi1[0], 20_000)
    pairs = zip(fam.sigma1, fam.xi1, strict=True)
    lp = sum(np.abs(make_filter(s, x).transfer(w)) ** 2 for s, x in pairs)
    # Adjacent filters cross at -3 dB (each |psi|^2 = 1/2 there), so the sum never falls below
    # ~1 inside the band; neighbours' tails add a bounded amount.
    assert lp.min() > 0.95
    assert lp.max() < 2.5


@pytest.mark.parametrize(("j2", "s"), [(6, 8), (6, 16), (9, 64), (4, 2)])
def test_reduced_rate_wavelet_keeps_zero_dc_and_slope(j2: int, s: int) -> None:
    """``ir(s=..., corrected=True)``: the full-rate impulse response sampled every s samples
    (a Riemann sum, whose periodised response leaks at zero frequency) plus two taps, so that
    the zeroth and first moments equal the full-rate filter's; causal, same support. Near zero
    frequency (where a modulus U1 has its energy) its response then follows the closed-form
    transfer function far more closely than the plain samples do."""
    fam = gammatone_family(10, 12)
    f = make_filter(fam.sigma2[j2 - 1], fam.xi2[j2 - 1])
    h, t = f.ir(), np.arange(f.length)
    raw, g = f.ir(None, s), f.ir(None, s, corrected=True)
    m = np.arange(len(g)) * s
    assert len(g) == len(raw) == f.support(s)
    np.testing.assert_array_equal(g[2:], raw[2:])
    peak = np.abs(f.transfer(np.array([f.xi]))[0])
    assert abs(raw.sum()) > 1e-5 * peak  # the leak being corrected
    assert abs(g.sum() - h.sum()) < 1e-12 * peak
    assert abs((m * g).sum() - (t * h).sum()) < 1e-9 * abs((t * h).sum())
    w = np.linspace(1e-3, 0.1, 100) * f.xi
    exact = f.transfer(w)

    def err(ir: np.ndarray) -> float:
        return float(np.abs(np.exp(-1j * np.outer(w, m)) @ ir - exact).max())

    assert err(g) < 0.05 * err(raw)
    assert err(g) < 1e-3 * peak
