"""Causal joint time-frequency scattering S_J (paper eq. 8, Fig. 3) and its streaming encoder.

Three variants (docs/scattering.md):

``paper``      eq. (8) as written: order 0 (1) + order 1 ``(U1 * h_xi) * phi_J``, linear in
               U1 = |x * psi1| (the real and imaginary parts of bins 0 .. P/2 of each window
               along lambda1: P real numbers per window) + order 2 ``|U1 * (h_xi x psi2)| *
               phi_J`` (P bins per window): ``1 + Q(2J-3) + Q(J-2)^2`` channels when P = Q
               (973 for J=10, Q=12).
``joint-real`` the reference code's joint mode: order 1 ``phi_J * |h_xi * (phi_J * U1)|``, the
               P/2+1 bins of a real input (888).
``time``       plain second-order time scattering ``1 + (J-1)Q + Q(J-1)(J-2)/2`` (541; the
               reference code's shipped configuration).

How it is computed (exactly causal, fast): every filter is the truncated impulse response of its
IIR design (gammatone.py), applied by zero-padded FFTs long enough that nothing wraps (length
T + support rounded to a smooth size, core.smooth_size), so each output sample equals the causal
FIR output up to FFT rounding; phi_J, whose output is only needed every 2^J (or 2^(J-3))
samples, is applied as a direct causal FIR at those samples (core.causal_fir_picked).
Subsampling picks samples (periodised spectra, core.pick), fused with the filter product
(core.fold, core.fold_bank): also exact.

Rates (``oversampling = o``, default 1; ``o >= J`` is the full-rate computation): U1 of octave
j1 = floor(lambda1) is kept at fs / 2^(j1-1-o) (its envelope bandwidth is ~1/20 of fs/2^(j1-1)),
the second-order wavelet psi2_j2 is applied at that rate, its output is picked at
fs / 2^(j2-2-o) for the lowest three j2 (>= J-3) and fs / 2^(j2-1-o) for the others (psi2 sits at
0.41 of the Nyquist of fs / 2^(j2-2)), the windowed Fourier transform along lambda1 (linear, so
it commutes with time filtering) is applied after the inverse FFT, then the modulus, then phi_J
at that rate and the frame samples n 2^J are picked. A filter at a reduced rate s is the
full-rate impulse response sampled every s samples, with two taps corrected so that its zeroth
and first moments are the full-rate filter's (gammatone.Filter.ir): without that, the aliases of
psi2's response leak at zero frequency, where U1 has its energy. Accuracy at J = 10,
Q = P = 12 against the full rate, per channel after per-channel normalisation: 0.4 % (95th
percentile), 3.5 % (max) with the default (docs/scattering.md, tests/test_timefrequency.py).
Order 1 (``paper``, ``time``): phi_J * U1 picked at the frames, then (``paper``) the real
windowed Fourier matrix along lambda1. Order 0: phi_J * x, signed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mmsin.scattering.core import (
    SpectraCache,
    bank_layout,
    causal_fir_picked,
    check_input,
    complex_dtype,
    fold,
    fold_bank,
    modulus,
    smooth_size,
)
from mmsin.scattering.gammatone import Filter, GammatoneFamily, gammatone_family, make_filter

VARIANTS = ("paper", "joint-real", "time")


# ----------------------------------------------------------------------------------------------
# Channel layout: the windows along lambda1 (reference-code.md Sec. 3.5)
# ----------------------------------------------------------------------------------------------
def frequency_windows(n: int, P: int) -> np.ndarray:
    """Channel indices of the half-overlapping windows of length P over ``n`` channels.

    Rule of the reference: if ``n < P`` one window, the channels zero-padded symmetrically; else
    hop ``P/2``: ``n/(P/2) - 1`` windows when ``P/2`` divides ``n``, otherwise ``floor(n/(P/2))``
    windows, the last one right-aligned to the end.

    Returns
    -------
    ndarray, shape (n_windows, P), int64; -1 marks a zero-padded tap.
    """
    if n < 1:
        raise ValueError(f"need at least one channel to window, got {n}")
    if n < P:
        left = (P - n) // 2
        row = np.full(P, -1, dtype=np.int64)
        row[left : left + n] = np.arange(n)
        return row[None, :]
    half = P // 2
    k = n // half
    starts = [i * half for i in range(k - 1)]
    if n % half != 0:  # the last window is right-aligned to the end
        starts.append(n - P)
    return np.stack([np.arange(s, s + P) for s in starts]).astype(np.int64)


def fourier_atoms(P: int, bins: int) -> np.ndarray:
    """Hann-windowed Fourier atoms along log-frequency, shape (bins, P), complex.

    The Hann window is ``hanning(P + 2)`` without its two zero end points (all P taps non-zero).
    """
    p = np.arange(P)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * (p + 1) / (P + 1))
    k = np.arange(bins)[:, None]
    return hann[None, :] * np.exp(-2j * np.pi * k * p[None, :] / P)


def real_fourier_atoms(P: int) -> np.ndarray:
    """The P real rows that give the real and imaginary parts of bins 0 .. P/2, shape (P, P).

    Row order: bin 0 (real), then for k = 1 .. P/2 - 1 the real and the imaginary part of bin
    k, then bin P/2 (real). For a real input these P numbers determine all P complex bins (bin
    P - k is the conjugate of bin k; bins 0 and P/2 are real): the paper's order 1, eq. (8).
    """
    atoms = fourier_atoms(P, P // 2 + 1)
    rows = [atoms[0].real]
    for k in range(1, P // 2):
        rows += [atoms[k].real, atoms[k].imag]
    rows.append(atoms[P // 2].real)
    return np.stack(rows)


def _real_parts(P: int) -> list[tuple[int, str]]:
    """(Fourier bin, part) of each row of :func:`real_fourier_atoms`."""
    out = [(0, "re")]
    for k in range(1, P // 2):
        out += [(k, "re"), (k, "im")]
    return [*out, (P // 2, "re")]


def channel_count(J: int, Q: int, P: int = 12, variant: str = "paper") -> int:
    """Number of S_J channels, from the same window rule the transform uses."""
    return len(_layout(J, Q, P, variant)["order"])


def _layout(J: int, Q: int, P: int, variant: str) -> dict[str, np.ndarray]:
    fam = gammatone_family(J, Q)
    n1 = len(fam.lambda1)
    rows: list[tuple[int, float, int, int, int, str]] = [(0, math.nan, -1, -1, -1, "")]
    if variant == "time":
        rows += [(1, lam, -1, -1, -1, "abs") for lam in fam.lambda1]
        for j2 in range(2, J):
            rows += [(2, lam, j2, -1, -1, "abs") for lam in fam.lambda1[: (j2 - 1) * Q]]
    else:
        if variant == "paper":
            parts1 = _real_parts(P)
        else:
            parts1 = [(b, "abs") for b in range(P // 2 + 1)]
        for w, idx in enumerate(frequency_windows(n1, P)):
            lam = float(fam.lambda1[idx[idx >= 0]].mean())
            rows += [(1, lam, -1, w, b, part) for b, part in parts1]
        for j2 in range(2, J):
            for w, idx in enumerate(frequency_windows((j2 - 1) * Q, P)):
                lam = float(fam.lambda1[idx[idx >= 0]].mean())
                rows += [(2, lam, j2, w, b, "abs") for b in range(P)]
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    keys = ("order", "lambda1", "j2", "window", "fourier_bin", "part")
    return dict(zip(keys, cols, strict=True))


# ----------------------------------------------------------------------------------------------
# Rates (subsampling factors relative to fs)
# ----------------------------------------------------------------------------------------------
#: Default octaves of oversampling (docs/scattering.md, "Accuracy"): the cheapest setting
#: within 1 % (95th percentile) of the full-rate computation at J = 10, Q = P = 12.
DEFAULT_OVERSAMPLING = 1


@dataclass(frozen=True)
class _Rates:
    J: int
    over: int = DEFAULT_OVERSAMPLING  # octaves of oversampling beyond the bands' Nyquist needs

    def u1(self, j1: int) -> int:
        """U1 of octave j1 is kept at fs / 2^(j1-1) (capped so order 1 can be picked at s1)."""
        return 2 ** max(0, min(j1 - 1 - self.over, self.J - 3 - self.over))

    def order1(self) -> int:
        """``joint-real`` order 1: phi_J * U1 is picked at fs / 2^(J-3) before the lambda1
        transform and its modulus."""
        return 2 ** max(0, self.J - 3 - self.over)

    def order2(self, j2: int) -> int:
        """psi2_j2 output is picked at fs / 2^(j2-2) (psi2 then sits at 0.41 of the Nyquist),
        ``over`` octaves faster for the lowest three (j2 >= J-3, where the modulus of the
        output aliases most into phi_J's band: measured, docs/scattering.md) and one octave
        less for the others; never slower than the U1 it is computed from."""
        o = self.over if j2 >= self.J - 3 else max(0, self.over - 1)
        return max(2 ** max(0, j2 - 2 - o), self.u1(j2 - 1))


class TimeFrequencyScattering(nn.Module):
    """Causal time-frequency scattering S_J with Gammatone wavelets (paper eq. 8).

    Parameters
    ----------
    J : int
        Averaging scale 2^J samples; frames are 2^J samples apart. J >= 3.
    Q : int
        First-order wavelets per octave (even).
    P : int
        Length of the Hann-windowed Fourier atoms along lambda1 (even); hop P/2.
    variant : {"paper", "joint-real", "time"}
    fs : float
        Sample rate in Hz, used only for ``meta()`` frequencies in Hz.
    oversampling : int
        Octaves by which U1 and the second-order wavelet outputs are kept above the rates
        their bands need (module docstring). The default 1 is within 1 % (95th percentile per
        channel) of the full-rate computation at J = 10, Q = P = 12; ``oversampling >= J - 2``
        computes everything at the full rate.

    Notes
    -----
    Input ``x``: Tensor (batch, time), float32/float64, any device. Output: (batch,
    num_channels, frames) with ``frames = (time - 1) // 2^J + 1``; frame n is at time
    ``n 2^J`` and depends only on ``x[0 .. n 2^J]``.
    """

    def __init__(
        self,
        J: int = 10,
        Q: int = 12,
        P: int = 12,
        variant: str = "paper",
        fs: float = 4096,
        *,
        oversampling: int = DEFAULT_OVERSAMPLING,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if J < 3:
            raise ValueError(f"J must be >= 3 (second order needs j2 in 2..J-1), got {J}")
        if Q < 2 or Q % 2:
            raise ValueError(f"Q must be an even integer >= 2, got {Q}")
        if P < 2 or P % 2:
            raise ValueError(f"P must be an even integer >= 2, got {P}")
        if oversampling < 0:
            raise ValueError(f"oversampling must be >= 0, got {oversampling}")
        self.J, self.Q, self.P, self.variant, self.fs = J, Q, P, variant, float(fs)
        self.family: GammatoneFamily = gammatone_family(J, Q)
        self.oversampling = int(oversampling)
        self._rates = _Rates(J, self.oversampling)
        self._layout = _layout(J, Q, P, variant)
        self.num_channels = len(self._layout["order"])
        n1 = len(self.family.lambda1)
        self._windows1 = frequency_windows(n1, P)
        self._windows2 = {j2: frequency_windows((j2 - 1) * Q, P) for j2 in range(2, J)}
        # paper: the real matrix of real and imaginary parts (order 1 is linear, eq. 8);
        # joint-real: complex atoms of bins 0 .. P/2, stored as (bins, P, 2).
        atoms1 = torch.as_tensor(real_fourier_atoms(P))
        if variant == "joint-real":
            atoms1 = torch.view_as_real(torch.as_tensor(fourier_atoms(P, P // 2 + 1)))
        self.register_buffer("atoms1", atoms1, persistent=False)
        self.register_buffer(
            "atoms2", torch.view_as_real(torch.as_tensor(fourier_atoms(P, P))), persistent=False
        )
        self._cache = SpectraCache()
        self.support = self._total_support()

    def _atoms(self, order: int) -> Tensor:
        atoms = self.atoms1 if order == 1 else self.atoms2
        assert isinstance(atoms, Tensor)
        return atoms

    # -- description ---------------------------------------------------------------------------
    def meta(self) -> dict[str, np.ndarray]:
        """Per-channel description, arrays of length ``num_channels``.

        Keys: ``order`` (0, 1, 2); ``lambda1`` (first-order log-period, window mean for joint
        channels; nan for order 0); ``xi1`` (Hz, first-order centre frequency at ``lambda1``);
        ``j2`` and ``xi2`` (Hz) of the second-order wavelet (-1 / nan if none); ``window`` (index
        of the window along lambda1, -1 if none); ``fourier_bin`` (bin k of the atoms, frequency
        k/P cycles per channel, -1 if none); ``part`` (str: ``"re"`` / ``"im"``, the real or
        imaginary part of bin k of the linear order 1 of ``paper``; ``"abs"``, phi_J of a
        modulus; ``""`` for order 0); ``nonnegative`` (bool: the channel is phi_J of a modulus,
        so >= 0 for every input, ``part == "abs"``; order 0 and the ``paper`` order 1 are signed).
        """
        lay = {k: v.copy() for k, v in self._layout.items()}
        factor_hz = self.fs / (2.0 * math.pi)
        xi_top = self.family.xi1[0]
        lay["xi1"] = np.where(
            np.isnan(lay["lambda1"]), np.nan, xi_top * 2.0 ** -(lay["lambda1"] - 1.0) * factor_hz
        )
        j2 = lay["j2"]
        lay["xi2"] = np.where(j2 > 0, self.family.xi2[np.clip(j2 - 1, 0, None)] * factor_hz, np.nan)
        lay["nonnegative"] = lay["part"] == "abs"
        return lay

    # -- filters -----------------------------------------------------------------------------
    def _psi1(self, i: int) -> Filter:
        return make_filter(float(self.family.sigma1[i]), float(self.family.xi1[i]), True)

    def _psi2(self, j2: int) -> Filter:
        k = j2 - 1
        return make_filter(float(self.family.sigma2[k]), float(self.family.xi2[k]), True)

    def _phi(self) -> Filter:
        return make_filter(self.family.sigma_phi, 0.0, False)

    def _total_support(self) -> int:
        """Samples of past input any frame depends on (truncated supports of the cascade)."""
        l1 = max(self._psi1(i).length for i in range(len(self.family.lambda1)))
        l2 = max((self._psi2(j2).length for j2 in range(2, self.J)), default=0)
        # Each stage may add one sample of grid rounding per rate; 2^J covers it.
        return int(l1 + l2 + 2 * self._phi().length + 2**self.J)

    def _spectrum(self, filt: Filter, s: int, n: int, valid: int, x: Tensor) -> Tensor:
        """FFT (length n) of the filter at rate fs/s truncated to ``valid`` samples (the
        moment-corrected reduced-rate impulse response, gammatone.Filter.ir)."""

        def build() -> np.ndarray:
            return np.fft.fft(filt.ir(valid, s, corrected=True), n=n)

        key = ("fft", filt, s, n, min(valid, filt.support(s)))
        return self._cache.get(key, x.device, complex_dtype(x.dtype), build)

    def _taps(self, filt: Filter, s: int, valid: int, x: Tensor) -> Tensor:
        """Real impulse response (phi_J) at rate fs/s, truncated to ``valid`` samples."""
        length = min(valid, filt.support(s))

        def build() -> np.ndarray:
            return filt.ir(length, s, corrected=True).real

        return self._cache.get(("taps", filt, s, length), x.device, x.dtype, build)

    def _psi1_bank(self, j1: int, n: int, T: int, s: int, x: Tensor) -> Tensor:
        """Octave j1's Q spectra (length n, truncated at T) in the layout of core.fold_bank."""
        idx = range((j1 - 1) * self.Q, j1 * self.Q)

        def build() -> np.ndarray:
            return bank_layout(np.stack([np.fft.fft(self._psi1(i).ir(T), n=n) for i in idx]), s)

        key = ("psi1", self.J, self.Q, j1, n, s, min(T, self._psi1_length(j1)))
        return self._cache.get(key, x.device, complex_dtype(x.dtype), build)

    def _psi1_length(self, j1: int) -> int:
        return max(self._psi1(i).length for i in range((j1 - 1) * self.Q, j1 * self.Q))

    def _common_length(self, T: int, s_o1: int) -> int:
        """FFT length (in full-rate samples) shared by everything after the first order.

        Long enough that no filter applied at rate fs/s wraps onto the ``ceil(T/s)`` kept
        samples (``n/s >= valid + support - 1``), a multiple of 2^(J+1) so that every rate
        divides it, and smooth for a fast FFT: about ``T + support(phi_J)`` instead of ``2T``.
        """
        J, r = self.J, self._rates
        uses = []  # (filter, rate) pairs applied by FFT; the other phi_J are direct FIRs
        for j1 in range(1, J - 1):
            uses.append((self._phi(), r.u1(j1)))
            uses += [(self._psi2(j2), r.u1(j1)) for j2 in range(j1 + 1, J)]
        need = 1
        for filt, s in uses:
            valid = -(-T // s)
            need = max(need, s * (valid + min(valid, filt.support(s)) - 1))
        return smooth_size(need, 2 ** (J + 1))

    # -- the transform -----------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """S_J of ``x`` (batch, time) -> (batch, num_channels, (time - 1) // 2^J + 1)."""
        check_input(x, "TimeFrequencyScattering")
        spectra_x: dict[int, Tensor] = {}
        u1 = [self._first_order(x, j1, spectra_x) for j1 in range(1, self.J)]
        return self._after_first_order(x, u1)

    def _first_order(self, x: Tensor, j1: int, spectra_x: dict[int, Tensor]) -> Tensor:
        """U1 = |x * psi1| of octave j1 (Q filters) at rate fs / s, s = 2^(j1-1) (capped).

        Each octave has its own FFT length T + support(psi1) (short filters need little
        padding), and the subsampling is folded into the filter-bank product (core.fold_bank).
        ``spectra_x`` caches FFTs of x by length across octaves.

        Returns
        -------
        Tensor (batch, Q, ceil(T / s)), real: U1 at times 0, s, 2s, ... of x's time axis.
        """
        T = x.shape[-1]
        s = self._rates.u1(j1)
        n1 = smooth_size(T + min(T, self._psi1_length(j1)) - 1, s)
        if n1 not in spectra_x:
            spectra_x[n1] = torch.fft.fft(x, n=n1)
        bank = self._psi1_bank(j1, n1, T, s, x)
        return modulus(torch.fft.ifft(fold_bank(spectra_x[n1], bank, s))[..., : -(-T // s)])

    def _after_first_order(self, x: Tensor, u1s: list[Tensor]) -> Tensor:
        """Order 0 from x, joint order 1 and order 2 from the first-order moduli ``u1s``."""
        J, r = self.J, self._rates
        T = x.shape[-1]
        hop = 2**J
        frames = (T - 1) // hop + 1
        joint = self.variant != "time"
        s_o1 = r.order1() if self.variant == "joint-real" else hop
        N = self._common_length(T, s_o1)
        phi = self._phi()

        def valid(s: int) -> int:
            return -(-T // s)

        def lowpass(u: Tensor, s_in: int, s_out: int) -> Tensor:
            """phi_J at rate fs/s_in on real u (..., valid(s_in)), picked at fs/s_out."""
            taps = self._taps(phi, s_in, valid(s_in), x)
            return causal_fir_picked(u, taps, s_out // s_in, valid(s_out))

        # Order 0: phi_J * x, signed.
        out = [lowpass(x, 1, hop)[:, None, :frames]]

        # First-order averages; the FFT of U1 is shared by phi_J and every psi2 below.
        u1_hat: dict[int, Tensor] = {}
        s1_parts = []
        for j1, u1 in enumerate(u1s, start=1):
            s = r.u1(j1)
            if j1 < J - 1:
                n = N // s
                u1_hat[j1] = torch.fft.fft(u1, n=n)
                low = fold(u1_hat[j1], self._spectrum(phi, s, n, valid(s), x), s_o1 // s)
                s1_parts.append(torch.fft.ifft(low).real[..., : valid(s_o1)])
            else:
                s1_parts.append(lowpass(u1, s, s_o1))
        s1 = torch.cat(s1_parts, dim=1)
        atoms1 = self._atoms(1).to(device=x.device, dtype=x.dtype)
        if self.variant == "paper":  # eq. (8): (U1 * h_xi) * phi_J, linear in U1: no modulus
            s1 = _windowed_fourier(s1[..., :frames], self._windows1, atoms1)
        elif self.variant == "joint-real":  # the reference: phi_J * |h_xi * (phi_J * U1)|
            atoms1 = torch.view_as_complex(atoms1.contiguous())
            z = _windowed_fourier(s1.to(atoms1.dtype), self._windows1, atoms1)
            s1 = lowpass(modulus(z), s_o1, hop)
        out.append(s1[..., :frames])

        # Second order, grouped by j2; paths lambda1 < j2. psi2 is applied to U1's spectrum and
        # the result folded to the rate fs / 2^(j2-2) in one pass (core.fold).
        if J > 2:
            atoms2 = torch.view_as_complex(
                self._atoms(2).to(device=x.device, dtype=x.dtype).contiguous()
            )
        for j2 in range(2, J):
            s2 = r.order2(j2)
            parts = []
            for j1 in range(1, j2):
                s = r.u1(j1)
                psi2 = self._spectrum(self._psi2(j2), s, N // s, valid(s), x)
                parts.append(fold(u1_hat[j1], psi2, s2 // s))
            y2 = torch.fft.ifft(torch.cat(parts, dim=1))[..., : valid(s2)]
            if joint:  # linear along lambda1, so it commutes with the time filtering
                y2 = _windowed_fourier(y2, self._windows2[j2], atoms2)
            out.append(lowpass(modulus(y2), s2, hop)[..., :frames])
        return torch.cat(out, dim=1)

    def stream(self, batch_size: int) -> ScatteringStream:
        """A streaming encoder; ``push(block)`` returns the frames completed so far."""
        return ScatteringStream(self, batch_size)

    def extra_repr(self) -> str:
        return (
            f"J={self.J}, Q={self.Q}, P={self.P}, variant={self.variant!r}, fs={self.fs:g}, "
            f"oversampling={self.oversampling}, num_channels={self.num_channels}"
        )


def nonnegative_channels(transform: nn.Module, channels: int) -> Tensor:
    """Bool mask (channels,) of the channels that are phi_J of a modulus, so >= 0 for every
    input: ``transform.meta()["nonnegative"]``. Eq. (1)'s ReLU ("scattering is
    non-negative") belongs on these only; order 0 and the ``paper`` variant's linear order 1
    are signed. A transform without that description (or of another size) gets all True."""
    meta_fn = getattr(transform, "meta", None)
    meta = meta_fn() if callable(meta_fn) else {}
    mask = meta.get("nonnegative") if isinstance(meta, dict) else None
    if mask is None or len(mask) != channels:
        return torch.ones(channels, dtype=torch.bool)
    return torch.as_tensor(np.asarray(mask, dtype=bool))


def _windowed_fourier(u: Tensor, windows: np.ndarray, atoms: Tensor) -> Tensor:
    """Hann-windowed Fourier transform along the channel axis.

    u: (batch, n, F), real or complex; windows: (n_win, P) channel indices (-1: zero tap);
    atoms: (bins, P), u's dtype. Returns (batch, n_win * bins, F), window-major.
    """
    B, n, F = u.shape
    n_win, P = windows.shape
    h = P // 2
    regular = n % h == 0 and n_win == n // h - 1 and (windows[:, 0] == np.arange(n_win) * h).all()
    if regular and not (torch.is_grad_enabled() and (u.requires_grad or atoms.requires_grad)):
        # Windows are pairs of consecutive half-windows of h channels: two matrix products per
        # item on contiguous views, instead of gathering the 2x-overlapping windows (a copy).
        halves = u.reshape(B, n // h, h, F)
        lo, hi = atoms[:, :h].contiguous(), atoms[:, h:].contiguous()
        hi_b = hi.expand(n_win, *hi.shape)
        out = u.new_empty(B, n_win, atoms.shape[0], F)
        for b in range(B):
            torch.matmul(lo, halves[b, :-1], out=out[b])
            out[b].baddbmm_(hi_b, halves[b, 1:])
        return out.reshape(B, -1, F)
    if (windows < 0).any():  # zero taps (fewer channels than P): gather from a padded copy
        u = torch.cat([u, u.new_zeros(B, 1, F)], dim=1)
    idx = torch.as_tensor(np.where(windows < 0, n, windows).reshape(-1), device=u.device)
    g = torch.index_select(u, 1, idx).reshape(B, windows.shape[0], windows.shape[1], F)
    return torch.matmul(atoms, g).reshape(B, -1, F)


class ScatteringStream:
    """Block-by-block S_J with the same frames as the offline transform (float tolerance).

    State-carrying: the first-order moduli U1 of every octave are kept (at their reduced rates,
    on the absolute time grid) as they are computed, so a push only computes

    - U1 at the new times, octave by octave, from the last ``support(psi1_j1)`` input samples
      (the long low-frequency wavelets are applied at rate fs/2^(J-3), where the filter bank is
      one small batched GEMM), and
    - everything after U1 (order 0, phi_J, psi2, the transforms along lambda1) for the new
      frames from the last ``support(psi2) + 2 support(phi_J)`` samples of U1 and x (~12k
      samples at J = 10 instead of the 88k-sample support of the whole cascade).

    Every stage is a causal FIR on a grid aligned to absolute time (windows start at multiples
    of 2^J), so the values equal the offline transform's up to FFT rounding. Windows are
    zero-padded at their end to a multiple of 8 * 2^J (causal: no effect on earlier outputs) so
    that block sizes do not multiply the cached filter spectra.

    Parameters
    ----------
    transform : TimeFrequencyScattering
    batch_size : int
    """

    def __init__(self, transform: TimeFrequencyScattering, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.transform = transform
        self.batch_size = batch_size
        J = transform.J
        self._hop = 2**J
        self._quantum = 8 * self._hop
        self._l1 = [transform._psi1_length(j1) for j1 in range(1, J)]
        self._rates = [transform._rates.u1(j1) for j1 in range(1, J)]
        l2 = max((transform._psi2(j2).length for j2 in range(2, J)), default=0)
        self._rest = int(l2 + 2 * transform._phi().length + self._hop)
        self._x: Tensor | None = None
        self._x0 = 0  # absolute time of self._x[:, 0] (a multiple of 2^J)
        self._u1: list[Tensor | None] = [None] * len(self._l1)
        self._u0 = 0  # absolute time of every self._u1[i][..., 0] (a multiple of 2^J)
        self._total = 0  # samples pushed so far
        self._next = 0  # index of the next frame to emit

    def _floor(self, t: int) -> int:
        return max(0, t) // self._hop * self._hop

    def _padded(self, v: Tensor, length: int) -> Tensor:
        """v (..., length) zero-padded at the end to a multiple of the window quantum."""
        target = -(-length // self._quantum) * self._quantum
        return torch.nn.functional.pad(v, (0, target - length))

    def push(self, block: Tensor) -> Tensor:
        """Append ``block`` (batch, t); return the new frames (batch, num_channels, new_frames)."""
        if block.ndim != 2 or block.shape[0] != self.batch_size:
            raise ValueError(
                f"push expects a ({self.batch_size}, t) block, got {tuple(block.shape)}"
            )
        m = self.transform
        hop = self._hop
        self._x = block if self._x is None else torch.cat([self._x, block], dim=-1)
        self._total += block.shape[-1]
        total = self._total
        if total == 0:
            return block.new_zeros(self.batch_size, m.num_channels, 0)

        # 1. U1 at the new times of each octave.
        spectra: dict[int, dict[int, Tensor]] = {}  # FFTs of x, shared by equal windows
        for i, (s, l1) in enumerate(zip(self._rates, self._l1, strict=True)):
            u = self._u1[i]
            done = self._u0 + (0 if u is None else u.shape[-1] * s)  # next time to compute
            end = -(-total // s) * s  # U1 is known up to (and including) time total - 1
            if done >= end:
                continue
            a = max(self._x0, self._floor(done - l1))
            xw = self._padded(self._x[:, a - self._x0 :], total - a)
            new = m._first_order(xw, i + 1, spectra.setdefault(a, {}))
            new = new[..., (done - a) // s : (end - a) // s]
            self._u1[i] = new if u is None else torch.cat([u, new], dim=-1)

        # 2. The frames completed so far, from short windows of x and U1.
        n_avail = (total - 1) // hop + 1
        if n_avail <= self._next:
            return block.new_zeros(self.batch_size, m.num_channels, 0)
        b = max(self._x0, self._u0, self._floor(self._next * hop - self._rest))
        xw = self._padded(self._x[:, b - self._x0 :], total - b)
        u1w = []  # U1 from time b on, zero after time total - 1 (only later frames see it)
        for u, s in zip(self._u1, self._rates, strict=True):
            assert u is not None
            v = u[..., (b - self._u0) // s :]
            u1w.append(torch.nn.functional.pad(v, (0, xw.shape[-1] // s - v.shape[-1])))
        out = m._after_first_order(xw, u1w)
        new_frames = out[..., self._next - b // hop : n_avail - b // hop]
        self._next = n_avail

        # 3. Forget what no later frame or U1 sample needs.
        keep_x = self._floor(min(total - max(self._l1), self._next * hop - self._rest) - hop)
        if keep_x > self._x0:
            self._x = self._x[:, keep_x - self._x0 :]
            self._x0 = keep_x
        keep_u = self._floor(self._next * hop - self._rest - hop)
        if keep_u > self._u0:
            self._u1 = [
                None if u is None else u[..., (keep_u - self._u0) // s :]
                for u, s in zip(self._u1, self._rates, strict=True)
            ]
            self._u0 = keep_u
        return new_frames
