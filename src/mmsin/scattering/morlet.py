"""Morlet filter bank with kymatio 0.3.0's layout (the reference code's loss scattering S_K).

Frequencies are in cycles per sample. Formulas (Andén-Mallat design as in kymatio 0.1-0.3):
``xi_max = max(1 / (1 + 2^(3/Q)), 0.35)``; ``sigma(xi) = xi (1 - 2^-1/Q) / (1 + 2^-1/Q) /
sqrt(2 ln(1/r))`` with r = sqrt(1/2); a geometric progression of ``xi`` while ``sigma`` stays above
``sigma_min 2^(1/Q)`` (``sigma_min = 0.1 / 2^J``), then ``Q - 1`` constant-bandwidth filters
spaced linearly down to 0. The wavelet is a Gabor minus a Gaussian (zero mean), periodised in
frequency and l1-normalised in time; the low-pass is a Gaussian of width ``0.1 / 2^J``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def morlet_parameters(J: int, Q: int, sigma0: float = 0.1, alpha: float = 5.0):
    """First-order ``(xi, sigma, j)`` lists; ``j`` is kymatio's maximal dyadic subsampling."""
    r = math.sqrt(0.5)
    xi_max = max(1.0 / (1.0 + 2.0 ** (3.0 / Q)), 0.35)
    root = 2.0 ** (-1.0 / Q)

    def sigma_of(xi: float) -> float:
        return xi * (1 - root) / (1 + root) / math.sqrt(2 * math.log(1 / r))

    sigma_min = sigma0 / 2.0**J
    xis, sigmas = [xi_max], [sigma_of(xi_max)]
    while sigmas[-1] > sigma_min * 2.0 ** (1.0 / Q):
        xis.append(xis[-1] * root)
        sigmas.append(sigmas[-1] * root)
    elbow = xis[-1]
    for q in range(1, Q):
        xis.append(elbow * (1 - q / Q))
        sigmas.append(sigma_min)
    js = [
        math.floor(-math.log2(min(xi + alpha * s, 0.5))) - 1
        for xi, s in zip(xis, sigmas, strict=True)
    ]
    return np.array(xis), np.array(sigmas), np.array(js)


def morlet_fourier(N: int, xi: float | None, sigma: float) -> NDArray[np.float64]:
    """Fourier transform (length N, ``fftfreq`` order) of an l1-normalised Morlet or Gaussian."""
    periods = min(math.ceil(math.sqrt(-2 * sigma**2 * math.log(1e-7)) + 1), 5)
    f = np.arange((1 - periods) * N, periods * N, dtype=float) / N
    if periods == 1:
        f_low = np.fft.fftfreq(N)
        low = np.exp(-(f_low**2) / (2 * sigma**2))
    else:
        low = np.exp(-(f**2) / (2 * sigma**2)).reshape(2 * periods - 1, N).mean(axis=0)
    if xi is None:
        out = low
    else:
        gabor = np.exp(-((f - xi) ** 2) / (2 * sigma**2)).reshape(2 * periods - 1, N).mean(axis=0)
        out = gabor - (gabor[0] / low[0]) * low  # zero at DC
    return out / np.abs(np.fft.ifft(out)).sum()
