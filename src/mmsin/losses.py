"""Training losses of MM-SIN: L_inv (eq. 5), L_MM (eq. 6) and the waveform MSE baseline.

The paper's objective is ``L = L_inv + lambda L_MM`` (eq. 4). Both terms are measured on a
first-order scattering S_K (an averaged scalogram, 2^K = 32). Following the reference code,
each S_K channel's error is normalised by a training-set statistic of that channel and the
result is averaged over channels, so every frequency band weighs the same whatever its energy
(docs/model.md, "Loss normalisations"): the paper's filter banks "normalized so as to have
responses of average equal magnitude in each band over the training dataset" (Sec. 5.1). L_inv
divides by ``mean_abs`` = mean |S_K,c x| over the training targets (what training passes, from
``scalogram_statistics`` or the same sums in ``mmsin.training``), L_MM by the channel's RMS.

``scalogram`` below is any module mapping waveforms (B, time) to (B, C, frames); the package's
is ``mmsin.scattering.Scalogram``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "MomentMatchingLoss",
    "ReconstructionLoss",
    "SpectrumLoss",
    "scalogram_statistics",
    "waveform_mse",
]


def _channel_vector(value: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty vector (channels,), got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t.clone()


class ReconstructionLoss(nn.Module):
    """L_inv of eq. (5): per-channel normalised l1 distance between scalograms.

    ``L = mean_c [ mean_{b,t} |S_K x_hat - S_K x|_{c,t} / (mean_abs_c + eps) ]``

    Parameters
    ----------
    scalogram : nn.Module
        (B, time) -> (B, C, frames).
    mean_abs : Tensor, shape (C,)
        Mean |S_K x| per channel over the training set (``scalogram_statistics``).
    eps : float
        Added to the normaliser (the reference's 1e-5).

    Notes
    -----
    ``forward(x_hat, target)`` takes either the target waveform (B, time), whose S_K is then
    computed without gradient, or precomputed S_K targets (B, C, frames), which is what the
    training loop does (the targets are fixed, so they are transformed once).
    """

    mean_abs: Tensor

    def __init__(
        self, scalogram: nn.Module, mean_abs: Tensor | np.ndarray, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.scalogram = scalogram
        mean_abs = _channel_vector(mean_abs, "mean_abs")
        if (mean_abs < 0).any():
            raise ValueError("mean_abs must be non-negative")
        self.register_buffer("mean_abs", mean_abs)
        self.eps = float(eps)

    def per_channel(self, x_hat: Tensor, target: Tensor) -> Tensor:
        """Normalised mean absolute error of each channel, shape (C,)."""
        s_hat = self.scalogram(x_hat)
        if target.dim() == 2:
            with torch.no_grad():
                s_ref = self.scalogram(target)
        elif target.dim() == 3:
            s_ref = target
        else:
            raise ValueError(
                f"target must be a waveform (batch, time) or S_K (batch, channels, frames), "
                f"got shape {tuple(target.shape)}"
            )
        if s_hat.shape != s_ref.shape:
            raise ValueError(
                f"S_K of x_hat has shape {tuple(s_hat.shape)} but the target's is "
                f"{tuple(s_ref.shape)}: generated and target waveforms must have equal length"
            )
        if s_hat.shape[1] != self.mean_abs.numel():
            raise ValueError(
                f"scalogram has {s_hat.shape[1]} channels, mean_abs {self.mean_abs.numel()}"
            )
        err = (s_hat - s_ref.to(s_hat)).abs().mean(dim=(0, 2))
        return err / (self.mean_abs.to(err) + self.eps)

    def forward(self, x_hat: Tensor, target: Tensor) -> Tensor:
        """Scalar loss; x_hat (B, time), target (B, time) or (B, C, frames)."""
        return self.per_channel(x_hat, target).mean()


class MomentMatchingLoss(nn.Module):
    """L_MM of eq. (6): squared distance of batch-and-time averaged scalograms.

    ``L = mean_c ((mean_{b,t} S_K(x_gen)_{c,t} - target_mean_c) / (rms_c + eps))^2``

    Parameters
    ----------
    scalogram : nn.Module
        (B, time) -> (B, C, frames).
    target_mean : Tensor, shape (C,)
        Mean of S_K over the training set (examples and frames).
    rms : Tensor, shape (C,)
        sqrt(mean of S_K^2) over the training set: the per-channel normaliser.
    eps : float
        Guard against a silent channel (the reference uses none).
    """

    target_mean: Tensor
    rms: Tensor

    def __init__(
        self,
        scalogram: nn.Module,
        target_mean: Tensor | np.ndarray,
        rms: Tensor | np.ndarray,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.scalogram = scalogram
        mean = _channel_vector(target_mean, "target_mean")
        rms_t = _channel_vector(rms, "rms")
        if mean.shape != rms_t.shape:
            raise ValueError(f"target_mean has {mean.numel()} channels but rms {rms_t.numel()}")
        if (rms_t < 0).any():
            raise ValueError("rms must be non-negative")
        self.register_buffer("target_mean", mean)
        self.register_buffer("rms", rms_t)
        self.eps = float(eps)

    def moments(self, x_gen: Tensor) -> Tensor:
        """Batch-and-time mean of S_K(x_gen), shape (C,)."""
        s = self.scalogram(x_gen)
        if s.shape[1] != self.target_mean.numel():
            raise ValueError(
                f"scalogram has {s.shape[1]} channels, target_mean {self.target_mean.numel()}"
            )
        return s.mean(dim=(0, 2))

    def forward(self, x_gen: Tensor) -> Tensor:
        """Scalar loss for generated waveforms x_gen (B, time)."""
        m = self.moments(x_gen)
        d = (m - self.target_mean.to(m)) / (self.rms.to(m) + self.eps)
        return (d**2).mean()


def waveform_mse(x_hat: Tensor, x: Tensor, power: float | Tensor) -> Tensor:
    """MSE baseline relative to the signal power: mean((x - x_hat)^2) / power.

    Parameters
    ----------
    x_hat, x : Tensor, shape (B, time)
    power : float
        Mean of x^2 over the training set (``scalogram_statistics(...)["power"]``).
    """
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat has shape {tuple(x_hat.shape)} but x has {tuple(x.shape)}")
    p = float(power)
    if not p > 0:
        raise ValueError(f"power must be positive, got {p}")
    return ((x - x_hat) ** 2).mean() / p


@torch.no_grad()
def scalogram_statistics(
    scalogram: nn.Module, batches: Iterable[Tensor | np.ndarray]
) -> dict[str, Tensor]:
    """Per-channel S_K statistics over a data set, accumulated in float64.

    Parameters
    ----------
    scalogram : nn.Module
        (B, time) -> (B, C, frames).
    batches : iterable of Tensor or ndarray, shape (B, time)
        The training waveforms, in batches.

    Returns
    -------
    dict
        ``mean_abs`` (C,): mean |S_K| (L_inv's normaliser); ``mean`` (C,): mean S_K (L_MM's
        target); ``rms`` (C,): sqrt(mean S_K^2) (L_MM's normaliser); all float32, averaged over
        examples and frames. ``power``: 0-dim float64 tensor, mean x^2 of the waveforms (the MSE
        baseline's normaliser).
    """
    sum_abs = sum_ = sum_sq = None
    count = 0
    power_sum, power_count = 0.0, 0
    param = next(iter(scalogram.buffers()), None)
    device = param.device if param is not None else torch.device("cpu")
    for batch in batches:
        x = torch.as_tensor(batch)
        if x.dim() != 2:
            raise ValueError(f"each batch must have shape (batch, time), got {tuple(x.shape)}")
        x = x.to(device=device, dtype=x.dtype if x.is_floating_point() else torch.float32)
        power_sum += float((x.double() ** 2).sum())
        power_count += x.numel()
        s = scalogram(x).double()
        if sum_abs is None:
            sum_abs = s.abs().sum(dim=(0, 2))
            sum_ = s.sum(dim=(0, 2))
            sum_sq = (s**2).sum(dim=(0, 2))
        else:
            assert sum_ is not None and sum_sq is not None
            sum_abs += s.abs().sum(dim=(0, 2))
            sum_ += s.sum(dim=(0, 2))
            sum_sq += (s**2).sum(dim=(0, 2))
        count += s.shape[0] * s.shape[2]
    if sum_abs is None or sum_ is None or sum_sq is None or count == 0:
        raise ValueError("scalogram_statistics got no data (empty batches)")
    return {
        "mean_abs": (sum_abs / count).float().cpu(),
        "mean": (sum_ / count).float().cpu(),
        "rms": (sum_sq / count).sqrt().float().cpu(),
        "power": torch.tensor(power_sum / power_count, dtype=torch.float64),
    }


class SpectrumLoss(nn.Module):
    """A fine-resolution, phase-blind spectral term: relative l1 distance of STFT magnitudes.

    ``L = mean_r [ sum_{b,f,t} | |STFT_r x_hat| - |STFT_r x| | / sum_{b,f,t} |STFT_r x| ]``

    (b: the examples of the batch) over resolutions r (Hann windows of ``n_fft`` samples, hop
    ``n_fft / 4``; a window longer than the signal is cut to the signal's length). With the
    oscillator generator (:mod:`mmsin.generators.oscillators`) a window of 2 s resolves neighbouring
    oscillators (a quarter of a semitone apart) where S_K's bands (a semitone wide) do not, so the
    gradient reaches the oscillator at a partial's frequency rather than its neighbours
    (docs/model.md, "The 64 Hz grid"). Like L_inv it ignores phase.

    Parameters
    ----------
    n_ffts : sequence of int
        Window lengths in samples (8192, 2048, 512 at 4096 Hz: 2 s, 0.5 s, 0.125 s).
    eps : float
        Added to the normaliser.
    """

    def __init__(self, n_ffts: Iterable[int] = (8192, 2048, 512), eps: float = 1e-7) -> None:
        super().__init__()
        self.n_ffts = tuple(int(n) for n in n_ffts)
        if not self.n_ffts or min(self.n_ffts) < 16:
            raise ValueError(f"n_ffts must be window lengths >= 16, got {self.n_ffts}")
        self.eps = float(eps)

    def _magnitude(self, x: Tensor, n_fft: int) -> Tensor:
        n = min(n_fft, x.shape[-1])
        window = torch.hann_window(n, device=x.device, dtype=x.dtype)
        spec = torch.stft(
            x, n, hop_length=max(1, n // 4), window=window, center=False, return_complex=True
        )
        return spec.abs()

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Scalar loss; x_hat, x (B, time)."""
        if x_hat.shape != x.shape or x.dim() != 2:
            raise ValueError(
                f"x_hat and x must both have shape (batch, time), got {tuple(x_hat.shape)} "
                f"and {tuple(x.shape)}"
            )
        terms = []
        for n_fft in self.n_ffts:
            a, b = self._magnitude(x_hat, n_fft), self._magnitude(x.to(x_hat), n_fft)
            # One ratio over the whole batch: a near-silent example (a piano rest, a note's
            # tail) would otherwise divide its error by ~0 (a step of loss 6,000 was seen).
            terms.append((a - b).abs().sum() / (b.sum() + self.eps))
        return torch.stack(terms).mean()
