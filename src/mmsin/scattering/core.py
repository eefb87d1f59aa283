"""Small shared pieces of the scattering transforms: FFT sizes, exact subsampling, spectra cache."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np
import torch
from torch import Tensor

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype matching a real floating dtype (float32 -> complex64, ...)."""
    if dtype not in _COMPLEX:
        raise ValueError(f"scattering input must be float32 or float64, got {dtype}")
    return _COMPLEX[dtype]


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def pick(spectrum: Tensor, s: int) -> Tensor:
    """Spectrum of ``y[m s]`` from the length-``n`` spectrum of ``y``: exact subsampling.

    ``Y_sub[f] = (1/s) sum_k Y[f + k n/s]`` (periodisation), so the inverse FFT of the result
    holds the samples ``y[0], y[s], y[2s], ...`` of the circular signal, with no approximation.

    Parameters
    ----------
    spectrum : Tensor, shape (..., n), complex
    s : int, dividing n
    """
    if s == 1:
        return spectrum
    n = spectrum.shape[-1]
    return spectrum.reshape(*spectrum.shape[:-1], s, n // s).mean(dim=-2)


def check_input(x: Tensor, name: str) -> None:
    """Raise a one-line ValueError unless ``x`` is a floating (batch, time) tensor."""
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects a (batch, time) tensor, got {shape}")
    if x.dtype not in _COMPLEX:
        raise ValueError(f"{name} expects float32 or float64 input, got {x.dtype}")
    if x.shape[-1] < 1:
        raise ValueError(f"{name} expects at least one time sample, got shape {tuple(x.shape)}")


class SpectraCache:
    """Filter spectra built once per (key, device, dtype) and reused; a small LRU."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._store: dict[Hashable, Tensor] = {}

    def get(
        self,
        key: Hashable,
        device: torch.device,
        dtype: torch.dtype,
        build: Callable[[], np.ndarray],
    ) -> Tensor:
        full = (key, str(device), dtype)
        hit = self._store.pop(full, None)
        if hit is None:
            hit = torch.as_tensor(build()).to(device=device, dtype=dtype)
        self._store[full] = hit  # most recently used last
        while len(self._store) > self._size * 64:
            self._store.pop(next(iter(self._store)))
        return hit


def smooth_size(n: int, mult: int = 1) -> int:
    """Smallest ``k * mult >= n`` with ``k`` of the form ``2^a 3^b 5^c`` (a fast FFT length).

    FFT lengths only need to be long enough that nothing wraps (signal + filter support), not
    twice the signal: ``T + support`` rounded up to a smooth size is up to 2x cheaper than
    ``next_pow2(2 T)``.
    """
    k_min = max(1, -(-n // mult))
    best = next_pow2(k_min)
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            k = p35
            while k < k_min:
                k *= 2
            best = min(best, k)
            p35 *= 3
        p5 *= 5
    return best * mult


def fold(spectrum: Tensor, filt: Tensor, r: int) -> Tensor:
    """``pick(spectrum * filt, r)`` without materialising the full-length product.

    Parameters
    ----------
    spectrum : Tensor, shape (..., n), complex
    filt : Tensor, shape (n,), complex; the filter spectrum at the same length
    r : int, dividing n

    Returns
    -------
    Tensor, shape (..., n // r): spectrum of the samples ``y[0], y[r], ...`` of ``y = u * h``.
    """
    if r == 1:
        return spectrum * filt
    n = spectrum.shape[-1]
    m = n // r
    lead = spectrum.shape[:-1]
    u = spectrum.reshape(-1, r, m)
    f = filt.reshape(r, m) / r
    if r > 16:  # many short aliases: one product and one reduction
        return (u * f).sum(dim=1).reshape(*lead, m)
    # few long aliases: accumulate in place, reading the spectrum once and writing n/r
    acc = u[:, 0] * f[0]
    for k in range(1, r):
        acc = acc.addcmul(u[:, k], f[k]) if acc.requires_grad else acc.addcmul_(u[:, k], f[k])
    return acc.reshape(*lead, m)


def fold_bank(spectrum: Tensor, bank_t: Tensor, r: int) -> Tensor:
    """Apply a filter bank and subsample by ``r`` in one batched matrix product.

    ``Y[b, q] = pick(X[b] * Psi[q], r)`` computed as, for each output bin ``f``, the product of
    the (batch, r) aliases of ``X`` with the (r, filters) aliases of ``Psi``: a batched GEMM that
    reads ``X`` and ``Psi`` once instead of forming the (batch, filters, n) product.

    Parameters
    ----------
    spectrum : Tensor, shape (B, n), complex
    bank_t : Tensor, shape (n // r, r, Q), complex: the bank's spectra (Q, n) viewed as
        (Q, r, n // r), permuted to (n // r, r, Q) and divided by ``r`` (see :func:`bank_layout`)
    r : int

    Returns
    -------
    Tensor, shape (B, Q, n // r), complex.
    """
    B, n = spectrum.shape
    m = n // r
    # Contiguous operands: a strided complex bmm falls back to one copy per batch entry.
    lhs = spectrum.reshape(B, r, m).permute(2, 0, 1).contiguous()  # (m, B, r)
    return torch.bmm(lhs, bank_t).permute(1, 2, 0)  # (B, Q, m)


def bank_layout(bank: np.ndarray, r: int) -> np.ndarray:
    """(Q, n) spectra -> the (n // r, r, Q) layout of :func:`fold_bank`, divided by ``r``."""
    Q, n = bank.shape
    return np.ascontiguousarray(bank.reshape(Q, r, n // r).transpose(2, 1, 0)) / r


def lowpass_real(
    u: Tensor, filt_half: Tensor, n: int, r: int, *, spectrum: Tensor | None = None
) -> Tensor:
    """Real ``u`` (..., t) filtered by a real-impulse-response filter, then ``y[::r]``.

    Uses the real FFT: ``filt_half`` is the filter's rfft at length ``n`` (n // 2 + 1 bins). The
    subsampling folds the Hermitian spectrum directly on its stored half (the aliases ``f + k m``
    above n/2 are conjugates of bins below it), so no full spectrum is formed.

    ``spectrum``, if given, is ``rfft(u, n)`` already computed.

    Returns
    -------
    Tensor, shape (..., n // r), real: samples ``0, r, 2r, ...`` of the circular convolution.
    """
    Y = (torch.fft.rfft(u, n=n) if spectrum is None else spectrum) * filt_half
    if r == 1:
        return torch.fft.irfft(Y, n)
    m = n // r
    if m % 2 or r % 2:
        raise ValueError(f"lowpass_real needs even n/r and r, got n={n}, r={r}")
    h = m // 2 + 1
    direct = Y.unfold(-1, h, m).sum(-2)  # bins f + k m, k < r/2
    mirrored = Y[..., m // 2 :].unfold(-1, h, m).sum(-2).flip(-1).conj()  # the upper half
    return torch.fft.irfft((direct + mirrored) / r, m)


def causal_fir_picked(u: Tensor, taps: Tensor, r: int, count: int) -> Tensor:
    """``y[n] = sum_m taps[m] u[n r - m]`` for ``n < count`` (u = 0 before its start).

    A causal FIR filter evaluated only at the picked samples ``0, r, 2r, ...``, as one matrix
    product: u is cut into blocks of r samples, each block meets the L taps as ``ceil(L/r)``
    columns, and frame n sums the products of the blocks ``n, n-1, ...``. Reads u once and
    costs ``ceil(L/r)`` multiply-adds per input sample (instead of an FFT of the whole signal
    when only every r-th output is kept: the phi_J averages, r up to 2^J).

    Parameters
    ----------
    u : Tensor, shape (..., t), real
    taps : Tensor, shape (L,), real, u's dtype and device
    r : int >= 1
    count : int >= 1, at most ``(t - 1) // r + 1``

    Returns
    -------
    Tensor, shape (..., count).
    """
    L = taps.shape[0]
    nb = -(-L // r)
    t = u.shape[-1]
    # Block n holds u[n r - r + 1 .. n r] (left pad r - 1 zeros; right pad to whole blocks).
    right = count * r - (t + r - 1)
    u = torch.nn.functional.pad(u, (r - 1, max(0, right)))[..., : count * r]
    blocks = u.reshape(*u.shape[:-1], count, r)
    # cols[i, b] = taps[b r + (r - 1 - i)]: block n - b, sample i is u[(n - b) r - (r - 1 - i)]
    g = torch.nn.functional.pad(taps, (0, nb * r - L)).reshape(nb, r).flip(-1).T
    z = torch.matmul(blocks, g)  # (..., count, nb)
    y = z[..., 0].clone()
    for b in range(1, min(nb, count)):
        y[..., b:] += z[..., : count - b, b]
    return y


class _Modulus(torch.autograd.Function):
    """|z| of a complex tensor as ``sqrt(re^2 + im^2)``, with torch.abs's gradient.

    ``torch.abs`` on complex tensors uses an overflow-safe ``hypot`` that is ~6x slower on CPU;
    scattering coefficients are far from float32's range limits (|z| in 1e-19 .. 1e19), so the
    plain formula is exact to rounding. The gradient is ``g z / |z|`` (0 where z = 0), as torch's.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, z: Tensor) -> Tensor:  # type: ignore[override]
        v = torch.view_as_real(z)
        y = v[..., 0] * v[..., 0]
        y.addcmul_(v[..., 1], v[..., 1]).sqrt_()
        ctx.save_for_backward(z, y)  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, g: Tensor) -> Tensor:  # type: ignore[override]
        z, y = ctx.saved_tensors  # type: ignore[attr-defined]
        # g / |z|, with 0 where |z| = 0 (g / 0 = inf or nan there; z is 0 or below 1e-19)
        t = (g / y).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        return torch.view_as_complex(torch.view_as_real(z) * t.unsqueeze(-1))


def modulus(z: Tensor) -> Tensor:
    """Fast, differentiable ``|z|`` for complex ``z`` (see :class:`_Modulus`); real z: abs."""
    if not z.is_complex():
        return z.abs()
    return _Modulus.apply(z)  # type: ignore[no-any-return]
