"""Causal Gammatone wavelets and gamma low-pass filters (paper Sec. 2, reference code Sec. 3.1-3.3).

Every filter is an IIR filter with ``N = 3`` coincident poles::

    psi:  Psi(z) = c a^N (1 - z^-1) / (1 - exp(-sigma + i xi) z^-1)^N
    phi:  Phi(z) =   a^N            / (1 - exp(-sigma) z^-1)^N,      a = 1 - exp(-sigma)

i.e. an order-N gamma envelope ``C(t+N-1, N-1) exp(-sigma t)`` modulated at ``xi``, followed by a
first difference (which makes the DC response exactly zero), l1-normalised on its modulus. The
impulse response of ``1 / (1 - p z^-1)^N`` is ``C(t+N-1, N-1) p^t`` (t >= 0), so both the impulse
response and the transfer function are available in closed form; the transforms use the impulse
response truncated where its envelope falls below ``TAIL`` times its peak (the reference code's
own criterion), which makes offline and streaming computations agree exactly.

All frequencies here are in radians per sample at the full rate ``fs``; a filter can be
discretised at a reduced rate ``fs / s`` (same analog design: poles ``exp(s (-sigma + i xi))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

N_ORDER = 3  # gamma order N of every filter (reference configs: "N": 3)
R_LEVEL = math.sqrt(0.5)  # bandwidths are measured at -3 dB
TAIL = 1e-7  # impulse responses are cut where the envelope falls below TAIL * peak

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]


def bandwidth_factor(Q: int) -> float:
    """Highest first-order centre frequency over pi: ``max(2 / (1 + 2^(6/Q)), 0.67)``."""
    return max(2.0 / (1.0 + 2.0 ** (6.0 / Q)), 0.67)


def sigma_lowpass(B: FloatArray | float, N: int = N_ORDER, r: float = R_LEVEL) -> FloatArray:
    """Decay ``sigma`` of the gamma low-pass whose two-sided bandwidth at level ``r`` is ``B``.

    Solves ``|Phi(exp(i B/2))| = r`` exactly:
    ``cosh(sigma) = (r^(-2/N) - cos(B/2)) / (r^(-2/N) - 1)``.
    """
    rr = r ** (-2.0 / N)
    return np.arccosh((rr - np.cos(0.5 * np.asarray(B, dtype=float))) / (rr - 1.0))


def sigma_wavelet(xi: float, B: float, N: int = N_ORDER, r: float = R_LEVEL) -> float:
    """Decay ``sigma`` of the Gammatone wavelet at ``xi`` with -3 dB bandwidth about ``B``.

    The reference's closed form: a second-order expansion of ``|Psi|^2`` around ``xi`` that
    includes the first-difference factor gives a quadratic in ``g = 1 / (4 sinh(sigma/2)^2)``;
    its largest root sets ``sigma = 2 asinh(1 / (2 sqrt(g)))``. Accurate (0.1 %) for narrow
    bands, loose for the one-per-octave second-order wavelets (documented in docs/scattering.md).
    """
    rho = r ** (1.0 / N)
    c_sq = 2.0 * (1.0 - math.cos(xi))
    k1 = 2.0 * math.sin(xi) / (N * c_sq)
    k2 = (2.0 / (N * c_sq)) * (math.cos(xi) - (1.0 - 1.0 / N) * math.sin(xi) ** 2 / c_sq)
    coeffs = [
        B**2 * rho**4,
        2.0 * rho**2 * (2.0 * (rho**2 - 1.0) - k2 * B**2),
        (B * k2) ** 2 - (k1**2 + 4.0 * (rho**2 - 1.0) * k2),
    ]
    g = float(np.max(np.real(np.roots(coeffs))))
    return 2.0 * math.asinh(0.5 / math.sqrt(g))


@dataclass(frozen=True)
class GammatoneFamily:
    """Parameters of the wavelet family of scale ``2^J`` (rad/sample at the full rate).

    Attributes
    ----------
    J, Q : int
        Scale exponent and first-order wavelets per octave.
    lambda1 : ndarray (n1,)
        First-order log-periods ``k / Q`` for ``k = Q .. JQ - 1`` (``lambda1 < J``), ascending,
        i.e. centre frequencies descending; ``n1 = (J - 1) Q``.
    xi1, sigma1 : ndarray (n1,)
        First-order centre frequencies ``factor pi 2^-(lambda1 - 1)`` and decays.
    j2, xi2, sigma2 : ndarray (J,)
        Second-order (Q2 = 1) wavelets ``j2 = 1 .. J``: ``xi2 = factor pi 2^-(j2 - 1)``.
    sigma_phi : float
        Decay of the low-pass ``phi_J`` (two-sided -3 dB band ``factor pi 2^-(J - 1)``).
    """

    J: int
    Q: int
    lambda1: FloatArray
    xi1: FloatArray
    sigma1: FloatArray
    j2: NDArray[np.int64]
    xi2: FloatArray
    sigma2: FloatArray
    sigma_phi: float


@lru_cache(maxsize=32)
def gammatone_family(J: int, Q: int) -> GammatoneFamily:
    """The reference code's parameter layout (reference-code.md Sec. 3.3) for ``(J, Q)``."""
    if J < 2 or Q < 1:
        raise ValueError(f"gammatone family needs J >= 2 and Q >= 1, got J={J}, Q={Q}")
    factor = bandwidth_factor(Q)
    b_low = factor * math.pi * 2.0 ** -(J - 1)
    sigma_phi = float(sigma_lowpass(b_low))
    # Second order: the lowest one (j2 = J) has xi = B = b_low; each octave up doubles xi, sigma.
    j2 = np.arange(1, J + 1)
    xi2 = b_low * 2.0 ** (J - j2)
    sigma2 = sigma_wavelet(b_low, b_low) * 2.0 ** (J - j2)
    # First order: lambda1 = k/Q, adjacent filters cross at -3 dB; only lambda1 < J is used.
    lambda1 = np.arange(Q, J * Q) / Q
    xi1 = factor * math.pi * 2.0 ** -(lambda1 - 1.0)
    root = 2.0 ** (-1.0 / Q)
    b1 = 2.0 * (1.0 - root) * xi1 / (1.0 + root)
    sigma1 = np.array([sigma_wavelet(x, b) for x, b in zip(xi1, b1, strict=True)])
    return GammatoneFamily(
        J,
        Q,
        lambda1,
        xi1,
        sigma1,
        j2,
        xi2.astype(float),
        np.asarray(sigma2, dtype=float),
        sigma_phi,
    )


def support(sigma: float, s: int = 1, N: int = N_ORDER, tail: float = TAIL) -> int:
    """Samples (at rate ``fs/s``) after which the gamma envelope stays below ``tail * peak``."""
    d = s * sigma
    # Envelope C(t+N-1, N-1) exp(-d t) peaks near (N-1)/d; search a grid well past it.
    t_max = math.ceil((N - 1) / d + (math.log(1.0 / tail) + 12.0 * N) / d) + 8
    t = np.arange(t_max, dtype=float)
    log_env = _log_binom(t, N) - d * t
    below = log_env < log_env.max() + math.log(tail)
    peak = int(np.argmax(log_env))
    above = np.nonzero(~below[peak:])[0]
    return int(peak + above[-1] + 2)


def _log_binom(t: FloatArray, N: int) -> FloatArray:
    """log C(t + N - 1, N - 1) for t >= 0."""
    out = np.zeros_like(t)
    for k in range(1, N):
        out += np.log(t + k) - math.log(k)
    return out


def gamma_ir(sigma: float, xi: float, length: int, s: int = 1, N: int = N_ORDER) -> ComplexArray:
    """Impulse response ``a^N C(t+N-1, N-1) p^t`` of ``a^N / (1 - p z^-1)^N``, ``t < length``.

    ``p = exp(s (-sigma + i xi))`` and ``a = 1 - exp(-s sigma)`` (rate ``fs / s``).
    """
    t = np.arange(length, dtype=float)
    a = -math.expm1(-s * sigma)
    phase = (_log_binom(t, N) + s * (-sigma + 1j * xi) * t).astype(np.complex128)
    return np.asarray(a**N * np.exp(phase), dtype=np.complex128)


def wavelet_ir(sigma: float, xi: float, length: int, s: int = 1) -> ComplexArray:
    """Unnormalised Gammatone wavelet: first difference of the modulated gamma kernel."""
    h = gamma_ir(sigma, xi, length, s)
    h[1:] -= h[:-1].copy()
    return h


@dataclass(frozen=True)
class Filter:
    """One l1-normalised full-rate filter ``(sigma, xi)``, wavelet or low-pass.

    ``scale`` is the l1 normalisation constant ``c`` (1 / ||ir||_1 over the truncated support)
    and ``length`` the truncated support in samples at the full rate.
    """

    sigma: float
    xi: float
    wavelet: bool
    scale: float
    length: int

    def support(self, s: int = 1) -> int:
        """Truncated support in samples at rate ``fs / s``: ``ceil(length / s)``."""
        return -(-self.length // s)

    def ir(self, length: int | None = None, s: int = 1, *, corrected: bool = False) -> ComplexArray:
        """Impulse response at rate ``fs / s``: ``s * h[m s]``, truncated, zero-padded.

        At ``s > 1`` these are the full-rate impulse-response samples on the coarse grid (times
        ``s``), so convolving picked samples with it is the Riemann sum, step ``s``, of the
        full-rate convolution: the same filter, not a re-design at the lower rate.

        The Riemann sum's response is the full-rate response periodised with period
        ``2 pi / s``: its aliases add a small non-zero response at zero frequency, which a
        wavelet should not have (``Psi(1) = 0``). Applied to a first-order modulus U1, whose
        energy sits near zero frequency, that leak dominates the paths where U1 has little
        energy in the wavelet's band (docs/scattering.md). ``corrected=True`` adds two taps at
        ``m = 0, 1`` so that the zeroth and first moments of the impulse response
        (``sum h[t]`` and ``sum t h[t]``: the response and its slope at zero frequency) equal
        the full-rate filter's; the filter stays causal and of the same support.
        """
        sup = self.support(s)
        n = sup if length is None else length
        m = min(n, sup)
        full = self._samples(sup, s)
        if corrected and s > 1:
            h = self._samples(self.length, 1)
            t = np.arange(self.length, dtype=float)
            tm = np.arange(sup, dtype=float) * s
            d0 = h.sum() - full.sum()
            d1 = (t * h).sum() - (tm * full).sum()
            c1 = d1 / s if sup > 1 else 0.0
            full = full.copy()
            full[0] += d0 - c1
            if sup > 1:
                full[1] += c1
        out = np.zeros(n, dtype=np.complex128)
        out[:m] = full[:m]
        return out

    def _samples(self, count: int, s: int) -> ComplexArray:
        """``s * h[m s]`` for ``m < count`` (the normalised impulse response on the grid)."""
        t = np.arange(count, dtype=float) * s
        h = _gamma_at(self.sigma, self.xi, t)
        if self.wavelet:
            h = h - _gamma_at(self.sigma, self.xi, t - 1.0)
        return np.asarray(s * self.scale * h, dtype=np.complex128)

    def transfer(self, omega: FloatArray, decay: FloatArray | float = 0.0) -> ComplexArray:
        """Closed-form (untruncated) frequency response at ``omega`` (rad/sample, full rate);
        with ``decay`` rho (per sample), the transfer function at z = exp(-rho + i omega): the
        gain on the input exp((-rho + i omega) n), whose modulus is how much a causal filter
        reads a decaying tone high (mmsin.generators.peaks.decay_lag)."""
        z1 = np.exp(-1j * np.asarray(omega, dtype=float) + np.asarray(decay, dtype=float))
        a = -math.expm1(-self.sigma)
        pole = np.exp(-self.sigma + 1j * self.xi)
        num = a**N_ORDER * ((1.0 - z1) if self.wavelet else 1.0)
        return self.scale * num / (1.0 - pole * z1) ** N_ORDER


def _gamma_at(sigma: float, xi: float, t: FloatArray, N: int = N_ORDER) -> ComplexArray:
    """``a^N C(t+N-1, N-1) p^t`` at (possibly negative) integer times, zero for t < 0."""
    a = -math.expm1(-sigma)
    tt = np.maximum(t, 0.0)
    out = a**N * np.exp(_log_binom(tt, N) + (-sigma + 1j * xi) * tt)
    return np.where(t >= 0, out, 0.0)


@lru_cache(maxsize=4096)
def make_filter(sigma: float, xi: float, wavelet: bool = True) -> Filter:
    """Build and l1-normalise one full-rate filter (built once, cached)."""
    length = support(sigma)
    h = wavelet_ir(sigma, xi, length) if wavelet else gamma_ir(sigma, xi, length)
    return Filter(sigma, xi, wavelet, float(1.0 / np.abs(h).sum()), length)
