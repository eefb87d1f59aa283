"""First-order scattering S_K (averaged scalogram at scale 2^K) for the losses (paper eqs. 5-6).

Fast forward and backward: ``|x * psi|`` does not depend on the carrier, so each band's spectrum
is cropped around its peak (bins where ``|psi_hat| >= crop * max``, window the output length
``N / 2^K`` times a power of two) and inverse-FFT'd at that small size: the modulus of the
demodulated signal is computed at a reduced rate and no first-order scalogram is ever formed at
the full rate. The low-pass is then applied at that rate and the output samples ``n 2^K`` are
picked (Gammatone: phi's full-rate response on the band-limited reduced-rate signal, see
``_reduced_rate_lowpass``; Morlet: kymatio's sampled low-pass).
Filters are applied circularly on a reflect-padded signal, FFT length N = a smooth size >= T plus
the padding (not 2T). S_K is not causal and need not be: it only measures the losses. The padding
before the signal is the cascade's time support, so no filter wraps around onto the signal; after
it, the symmetric Morlet cascade needs the same, the causal Gammatone one only a short margin
(``_GAMMATONE_RIGHT_MARGIN``) for the slight non-causality that the band crops introduce.

Wavelets:
``gammatone``  (default) the first-order wavelets of the Gammatone family (gammatone.py: the
               reference code's design, Q per octave from ``factor pi`` = 1696.6 Hz at 4096 Hz
               downwards, adjacent ones crossing at -3 dB) down to ``fmin`` (35 Hz by default:
               lowest centre 35.4 Hz, below E1 = 41.2 Hz), and the gamma low-pass phi_K of scale
               2^K. 1 + 68 = 69 channels for K=5, Q=12, fs=4096. The wavelets are not limited to
               the scale 2^K: phi_K only sets the output rate fs / 2^K, so the low wavelets are
               narrow-band filters (Q = 12 at 35.4 Hz: a 2.0 Hz band, 1.9 s impulse response)
               whose modulus is averaged over 2^K samples. With only the (K-1)Q wavelets of the
               family of scale 2^K (``fmin=112``: 112-1697 Hz, 49 channels) the bank has a hole
               between phi_K's band (53 Hz at -3 dB) and 112 Hz, and sines a semitone apart below
               ~100 Hz give nearly the same S_K.
``morlet``     kymatio 0.3.0's ``Scattering1D(J=K, Q=Q, max_order=1)`` filters and conventions,
               including its low-pass periodised by the mean (each first-order channel is
               ``2^-j1`` times the plain average, j1 = kymatio's subsampling of that wavelet):
               41 channels for K=5, Q=12 (the reference code's S_K; ``fmin`` does not apply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsin.scattering.core import (
    check_input,
    complex_dtype,
    lowpass_real,
    modulus,
    next_pow2,
    smooth_size,
)
from mmsin.scattering.gammatone import bandwidth_factor, gammatone_family, make_filter
from mmsin.scattering.morlet import morlet_fourier, morlet_parameters

#: Lowest first-order centre frequency (Hz) of the default Gammatone S_K: the bank reaches below
#: E1 (41.2 Hz), so that the losses tell sines a semitone apart from E1 up with a wavelet on each
#: (relative l1 of time-averaged S_K >= 0.51); the piano's lowest notes A0-D#1 (27.5-38.9 Hz)
#: still differ (0.28-1.66, measured) through the lowest wavelets' flanks.
DEFAULT_FMIN = 35.0

#: Samples (reflected) after the signal for the Gammatone cascade: its filters are causal, the
#: spectral crops make them slightly non-causal. Against a causal lfilter computation the error
#: at the last frames is no larger than inside the signal (measured at 0, 64 and 256).
_GAMMATONE_RIGHT_MARGIN = 256


def gammatone_bank(K: int, Q: int, fs: float, fmin: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Parameters of S_K's Gammatone bank: the family's wavelets with centre >= ``fmin``.

    Parameters
    ----------
    K, Q : int
        Averaging scale 2^K (sets phi_K) and wavelets per octave.
    fs, fmin : float
        Sample rate and lowest centre frequency, Hz.

    Returns
    -------
    sigma1, xi1 : ndarray (n,)
        Decays and centre frequencies (rad/sample) of the wavelets, highest first: those of
        ``gammatone_family(J', Q)`` (J' large enough) with ``xi1 >= 2 pi fmin / fs``; the layout
        does not depend on J', so ``fmin`` just extends the family of scale 2^K downwards.
    sigma_phi : float
        Decay of the low-pass phi_K of ``gammatone_family(K, Q)``.
    """
    w_min = 2 * math.pi * fmin / fs
    top = bandwidth_factor(Q) * math.pi
    if not 0 < w_min <= top:
        raise ValueError(
            f"fmin must lie in (0, {top * fs / (2 * math.pi):.1f}] Hz (the highest wavelet), "
            f"got {fmin}"
        )
    # xi1 = top 2^-(lambda1 - 1) >= w_min  <=>  lambda1 <= 1 + log2(top / w_min) < J'
    J_w = max(K, math.floor(1 + math.log2(top / w_min)) + 1)
    fam = gammatone_family(J_w, Q)
    keep = fam.xi1 >= w_min * (1 - 1e-12)
    return fam.sigma1[keep], fam.xi1[keep], gammatone_family(K, Q).sigma_phi


class Scalogram(nn.Module):
    """Averaged first-order scalogram S_K.

    Parameters
    ----------
    K : int
        Averaging scale 2^K samples (output hop).
    Q : int
        Wavelets per octave.
    wavelet : {"gammatone", "morlet"}
    fs : float
        Sample rate in Hz (sets the Gammatone bank's extent through ``fmin``, and ``meta()``).
    fmin : float, optional
        Gammatone only: lowest wavelet centre frequency in Hz. Default: ``DEFAULT_FMIN`` = 35 Hz,
        or the lowest wavelet of the family of scale 2^K where that is lower (K >= 7 at 4096 Hz).
    crop : float
        Relative spectral level kept around each band (accuracy / speed trade-off).

    Notes
    -----
    Input (batch, time) float; output (batch, num_channels, time // 2^K), channel 0 = order 0
    (signed low-pass), then first order from high to low frequency. ``meta()`` gives every
    channel's centre frequency and -3 dB band (docs/scattering.md lists them).
    """

    def __init__(
        self,
        K: int = 5,
        Q: int = 12,
        wavelet: str = "gammatone",
        fs: float = 4096,
        *,
        fmin: float | None = None,
        crop: float | None = None,
    ) -> None:
        super().__init__()
        if wavelet not in ("gammatone", "morlet"):
            raise ValueError(f"wavelet must be 'gammatone' or 'morlet', got {wavelet!r}")
        if K < 2 or Q < 1:
            raise ValueError(f"Scalogram needs K >= 2 and Q >= 1, got K={K}, Q={Q}")
        if fmin is not None and wavelet == "morlet":
            raise ValueError("fmin applies to the Gammatone bank only (Morlet: kymatio's layout)")
        self.K, self.Q, self.wavelet, self.fs = K, Q, wavelet, float(fs)
        self.crop = crop if crop is not None else (3e-3 if wavelet == "gammatone" else 1e-5)
        if wavelet == "gammatone":
            if fmin is None:  # never fewer wavelets than the family of scale 2^K (large K)
                lowest_K = gammatone_family(K, Q).xi1[-1] * self.fs / (2 * math.pi)
                fmin = min(DEFAULT_FMIN, float(lowest_K))
            self.fmin: float | None = float(fmin)
            self._sigma1, self._omega1, self._sigma_phi = gammatone_bank(K, Q, self.fs, self.fmin)
            self._xi = self._omega1 / (2 * math.pi)  # cycles/sample
            self._scale = np.ones(len(self._omega1))
        else:
            self.fmin = None
            xi, _, j = morlet_parameters(K, Q)
            self._xi = xi
            self._scale = 2.0 ** -np.clip(np.minimum(j, K), 0, None)  # kymatio 0.3.0 mean
        self.num_channels = 1 + len(self._xi)
        self._support = self._time_support()

    def meta(self) -> dict[str, np.ndarray]:
        """Per-channel description, computed from the filters the transform applies.

        Returns
        -------
        dict of ndarray (num_channels,)
            ``order``: 0 (low-pass) or 1. ``xi1``: design centre frequency in Hz (nan for order
            0). ``f_low``, ``f_high``: the -3 dB band in Hz of the channel's filter as applied
            (``|psi_hat|`` times its per-channel scale, at or above 1/sqrt(2) of its peak;
            order 0: 0 to phi_K's -3 dB cut-off), from its spectrum on a grid of fs / 2^16 Hz
            (0.0625 Hz at 4096 Hz), interpolated linearly (edges within 1e-3 Hz).
            ``bandwidth``: ``f_high - f_low``.
        """
        N = 2 ** math.ceil(math.log2(16 * self.fs))  # grid step <= 1/16 Hz
        psi, phi = self._bank(N)
        half = N // 2 + 1
        lo, hi = [], []
        for h in np.concatenate([phi[None, :half], psi[:, :half]]):
            a, b = _band_edges(np.abs(h), self.fs / N)
            lo.append(a)
            hi.append(b)
        f_low, f_high = np.array(lo), np.array(hi)
        return {
            "order": np.array([0] + [1] * len(self._xi)),
            "xi1": np.concatenate([[np.nan], self._xi * self.fs]),
            "f_low": f_low,
            "f_high": f_high,
            "bandwidth": f_high - f_low,
        }

    def _bank(self, N: int) -> tuple[np.ndarray, np.ndarray]:
        """(psi_hat (n, N), phi_hat (N,)) real or complex numpy spectra at length N."""
        if self.wavelet == "morlet":
            xi, sigma, _ = morlet_parameters(self.K, self.Q)
            psi = np.stack([morlet_fourier(N, a, b) for a, b in zip(xi, sigma, strict=True)])
            return psi.astype(np.complex128), morlet_fourier(N, None, 0.1 / 2**self.K)
        w = 2 * math.pi * np.arange(N) / N
        psi = np.stack(
            [make_filter(s, x).transfer(w) for s, x in zip(self._sigma1, self._omega1, strict=True)]
        )
        return psi, make_filter(self._sigma_phi, 0.0, False).transfer(w)

    def _time_support(self) -> int:
        """Samples beyond which the wavelet + low-pass cascade is below ~1e-7 of its peak.

        Morlet: Gaussian envelopes, 5.7 standard deviations (exp(-5.7^2 / 2) = 1e-7) of the
        widest wavelet plus the low-pass (sigma_t = 1 / (2 pi sigma_f)). Gammatone: the causal
        truncated supports (gammatone.py) of the longest wavelet plus phi_K.
        """
        if self.wavelet == "morlet":
            _, sigma, _ = morlet_parameters(self.K, self.Q)
            widest = 1.0 / (2 * math.pi * float(np.min(sigma)))
            low = 1.0 / (2 * math.pi * 0.1 / 2**self.K)
            return math.ceil(5.7 * (widest + low))
        psi = max(make_filter(s, x).length for s, x in zip(self._sigma1, self._omega1, strict=True))
        return psi + make_filter(self._sigma_phi, 0.0, False).length

    def _plan(self, N: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Groups of channels with equal crop width: (channel ids, bin indices (n, W), W)."""
        psi, _ = self._bank(N)
        mag = np.abs(psi)
        min_w = N // 2**self.K
        groups: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i in range(len(psi)):
            c = int(np.argmax(mag[i]))
            keep = np.nonzero(mag[i] >= self.crop * mag[i, c])[0]
            dist = (keep - c + N // 2) % N - N // 2
            half = int(np.max(np.abs(dist)))
            W = min(N, min_w * next_pow2(-(-(2 * half + 2) // min_w)))  # divides N
            groups.setdefault(W, []).append((i, (c - W // 2 + np.arange(W)) % N))
        return [
            (np.array([g[0] for g in v]), np.stack([g[1] for g in v]), W)
            for W, v in sorted(groups.items())
        ]

    def forward(self, x: Tensor) -> Tensor:
        """S_K of ``x`` (batch, time) -> (batch, num_channels, time // 2^K)."""
        check_input(x, "Scalogram")
        T = x.shape[-1]
        hop = 2**self.K
        if T < hop:
            raise ValueError(f"Scalogram needs at least 2^K = {hop} samples, got {T}")
        # Room of the cascade's time support before the signal (reflect, then zeros where the
        # signal is shorter), and after it the same (Morlet, symmetric) or a short margin
        # (Gammatone: causal filters, up to the crops' slight leakage), to a fast FFT length:
        # no filter wraps around onto the signal, and the crops scale with N (not 2T).
        pad = -(-self._support // hop) * hop
        after = pad if self.wavelet == "morlet" else _GAMMATONE_RIGHT_MARGIN
        N = smooth_size(T + pad + after, 2 * hop)
        left = min(T - 1, pad) // hop * hop
        right = N - T - left if self.wavelet == "morlet" else after
        xp = F.pad(x[:, None], (left, min(right, T - 1)), mode="reflect")[:, 0]
        frames = T // hop
        first = left // hop
        plan = self._device_plan(N, x)

        # Real input: one rfft. Order 0 is a real low-pass (core.lowpass_real, Hermitian fold).
        Xh = torch.fft.rfft(xp, n=N)
        order0 = lowpass_real(xp, plan.phi_half, N, hop, spectrum=Xh)
        outs = [order0[:, None, first : first + frames]]
        # The bands need bins anywhere on the circle: the full spectrum (conjugate mirror of
        # the upper half), extended by its first bins so every crop window is contiguous.
        full = torch.cat([Xh, Xh[:, 1 : N // 2].flip(-1).conj()], dim=1)
        X_ext = torch.cat([full, full[:, : plan.wrap]], dim=1)
        parts = []
        for g in plan.groups:
            # Crop, filter (psi_hat already scaled by W/N and the per-channel factor), demodulate
            # by a small inverse FFT: |x * psi| at rate fs / (N/W).
            y = torch.index_select(X_ext, 1, g.bins).view(-1, g.n, g.W) * g.psi
            u = modulus(torch.fft.ifft(y))
            v = lowpass_real(u, g.phi_half, g.W, g.pick)
            parts.append(v[..., first : first + frames])
        s1 = torch.cat(parts, dim=1)
        if plan.order is not None:
            s1 = torch.index_select(s1, 1, plan.order)
        outs.append(s1)
        return torch.cat(outs, dim=1)

    def _device_plan(self, N: int, x: Tensor) -> _Plan:
        """The crop plan of length N as tensors on x's device and dtype (built once)."""
        key = (N, str(x.device), x.dtype)
        plans = self.__dict__.setdefault("_device_plans", {})
        if key in plans:
            return plans[key]
        cdt = complex_dtype(x.dtype)
        psi, phi = self._bank(N)
        hop = 2**self.K
        groups = []
        for ids, idx, W in self._plan_cached(N):
            s = N // W
            crop = np.take_along_axis(psi[ids], idx, axis=1)
            crop = crop * (W / N) * self._scale[ids][:, None]  # |a z| = a |z| for a > 0
            phi_w = _reduced_rate_lowpass(phi, W, self.wavelet)
            groups.append(
                _Group(
                    n=len(ids),
                    W=W,
                    pick=hop // s,
                    bins=torch.as_tensor((idx[:, :1] + np.arange(W)).reshape(-1), device=x.device),
                    psi=torch.as_tensor(crop).to(device=x.device, dtype=cdt),
                    phi_half=torch.as_tensor(phi_w).to(device=x.device, dtype=cdt),
                )
            )
        order = np.argsort(np.concatenate([ids for ids, _, _ in self._plan_cached(N)]))
        identity = bool(np.all(order == np.arange(len(order))))
        plan = _Plan(
            groups=groups,
            wrap=max(W for _, _, W in self._plan_cached(N)),
            phi_half=torch.as_tensor(phi[: N // 2 + 1]).to(device=x.device, dtype=cdt),
            order=None if identity else torch.as_tensor(order, device=x.device),
        )
        plans[key] = plan
        return plan

    def _phi_np(self, N: int) -> np.ndarray:
        return self._bank(N)[1]

    def _plan_cached(self, N: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
        plans = self.__dict__.setdefault("_plans", {})
        if N not in plans:
            plans[N] = self._plan(N)
        return plans[N]


@dataclass(frozen=True)
class _Group:
    """Channels sharing a crop width W: n channels, flat bin indices (n W,), cropped spectra."""

    n: int
    W: int
    pick: int  # subsampling from rate fs / (N/W) to the output rate fs / 2^K
    bins: Tensor
    psi: Tensor  # (n, W) complex
    phi_half: Tensor  # (W // 2 + 1,) low-pass at rate fs / (N/W), rfft half


@dataclass(frozen=True)
class _Plan:
    groups: list[_Group]
    wrap: int  # bins appended after the full spectrum so windows never wrap
    phi_half: Tensor  # (N // 2 + 1,) full-rate low-pass, rfft half
    order: Tensor | None  # channel permutation from group order back to frequency order


def _band_edges(mag: np.ndarray, step: float) -> tuple[float, float]:
    """-3 dB band [f_low, f_high] (Hz) of a magnitude response on bins 0, step, 2 step, ...

    The band is the run of bins around the peak at or above peak / sqrt(2), its edges refined by
    linear interpolation between the bins that straddle the level; a band that reaches bin 0
    (the low-pass) starts at 0.
    """
    c = int(np.argmax(mag))
    level = mag[c] / math.sqrt(2)
    below = np.nonzero(mag[:c] < level)[0]
    if len(below):
        i = int(below[-1])  # mag[i] < level <= mag[i + 1]
        f_low = (i + (level - mag[i]) / (mag[i + 1] - mag[i])) * step
    else:
        f_low = 0.0
    above = np.nonzero(mag[c:] < level)[0]
    if not len(above):
        return f_low, (len(mag) - 1) * step
    j = c + int(above[0])  # mag[j - 1] >= level > mag[j]
    f_high = (j - 1 + (mag[j - 1] - level) / (mag[j - 1] - mag[j])) * step
    return f_low, f_high


def _reduced_rate_lowpass(phi: np.ndarray, W: int, wavelet: str) -> np.ndarray:
    """rfft half (W // 2 + 1 bins) of the low-pass applied at rate N/W to ``|x * psi|``.

    ``morlet``: kymatio 0.3.0's convention, the low-pass sampled at the lower rate, i.e. the
    sum of its spectrum's periods (kymatio uses the mean; that factor is in the per-channel
    scale). ``gammatone``: the causal gamma low-pass phi_K is short in time (peak ~12 samples at
    K = 5) and wide in frequency, so sampling it at step N/W aliases it badly (13 % error at
    N/W = 16, Q = 12); instead |x * psi| at rate N/W is taken as the band-limited signal it
    represents and filtered by phi's full-rate response on those W bins (no periodisation).
    """
    N = len(phi)
    if wavelet == "morlet":
        return phi.reshape(N // W, W).sum(axis=0)[: W // 2 + 1]
    return phi[: W // 2 + 1]
