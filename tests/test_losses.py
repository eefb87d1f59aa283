"""Losses: closed-form values on hand-made inputs, invariances, gradients, data-set statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mmsin.losses import (
    MomentMatchingLoss,
    ReconstructionLoss,
    scalogram_statistics,
    waveform_mse,
)


class EvenOdd(nn.Module):
    """A 'scalogram' simple enough to compute by hand: channel 0 = even samples, 1 = odd."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0::2], x[:, 1::2]], dim=1)


class StftScalogram(nn.Module):
    """An independent stand-in for S_K: |STFT| with a Hann window, hop 8 (1-homogeneous)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window = torch.hann_window(32, dtype=x.dtype, device=x.device)
        spec = torch.stft(x, 32, hop_length=8, window=window, center=False, return_complex=True)
        return spec.abs()


def test_reconstruction_loss_closed_form() -> None:
    loss = ReconstructionLoss(EvenOdd(), torch.tensor([1.0, 2.0]), eps=0.0)
    x_hat = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    x = torch.zeros(1, 4)
    # channel 0: mean(|1|, |3|) / 1 = 2; channel 1: mean(|2|, |4|) / 2 = 1.5; mean = 1.75
    assert float(loss(x_hat, x)) == pytest.approx(1.75)
    torch.testing.assert_close(loss.per_channel(x_hat, x), torch.tensor([2.0, 1.5]))
    # Precomputed S_K targets give the same value.
    target = EvenOdd()(torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    # channel 0: mean(0, 2) / 1 = 1; channel 1: 3 / 2 = 1.5
    assert float(loss(x_hat, target)) == pytest.approx(1.25)
    # eps is added to the normaliser (reference: 1e-5).
    loss_eps = ReconstructionLoss(EvenOdd(), torch.tensor([1.0, 2.0]), eps=1.0)
    assert float(loss_eps(x_hat, x)) == pytest.approx((2 / 2 + 3 / 3) / 2)


def test_moment_matching_closed_form() -> None:
    mm = MomentMatchingLoss(EvenOdd(), torch.tensor([1.0, 1.5]), torch.tensor([2.0, 1.0]), eps=0)
    x_gen = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 0.0, 1.0, 0.0]])
    # batch-and-time means: channel 0 (1, 3, 3, 1) -> 2, channel 1 (2, 4, 0, 0) -> 1.5
    torch.testing.assert_close(mm.moments(x_gen), torch.tensor([2.0, 1.5]))
    assert float(mm(x_gen)) == pytest.approx((((2 - 1) / 2) ** 2 + 0.0) / 2)


def test_waveform_mse_closed_form() -> None:
    x = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    x_hat = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    assert float(waveform_mse(x_hat, x, 0.5)) == pytest.approx((1 + 1 + 1) / 4 / 0.5)
    with pytest.raises(ValueError, match="power"):
        waveform_mse(x_hat, x, 0.0)
    with pytest.raises(ValueError, match="shape"):
        waveform_mse(x_hat[:, :3], x, 1.0)


def test_losses_vanish_at_the_target() -> None:
    sk = StftScalogram()
    x = torch.randn(4, 512)
    stats = scalogram_statistics(sk, [x[:3], x[3:]])
    rec = ReconstructionLoss(sk, stats["mean_abs"])
    assert float(rec(x, x)) == 0.0
    assert float(rec(x, sk(x))) == 0.0
    assert float(rec(x + 0.1 * torch.randn_like(x), x)) > 0.01
    mm = MomentMatchingLoss(sk, stats["mean"], stats["rms"])
    assert float(mm(x)) == pytest.approx(0.0, abs=1e-10)
    assert float(mm(2 * x)) > 0.01
    assert float(waveform_mse(x, x, stats["power"])) == 0.0


def test_scale_behaviour() -> None:
    """Per-channel normalisation makes the losses invariant to a common gain of everything."""
    sk = StftScalogram()
    x, x_hat, x_gen = torch.randn(3, 2, 256, dtype=torch.float64)
    stats = scalogram_statistics(sk, [x])
    c = 7.0
    rec = ReconstructionLoss(sk, stats["mean_abs"].double(), eps=0)
    rec_c = ReconstructionLoss(sk, c * stats["mean_abs"].double(), eps=0)
    torch.testing.assert_close(rec_c(c * x_hat, c * x), rec(x_hat, x))
    # With a fixed normaliser L_inv is 1-homogeneous and L_MM's deviation scales accordingly.
    torch.testing.assert_close(rec(c * x_hat, c * x), c * rec(x_hat, x))
    mm = MomentMatchingLoss(sk, stats["mean"], stats["rms"], eps=0)
    mm_c = MomentMatchingLoss(sk, c * stats["mean"], c * stats["rms"], eps=0)
    torch.testing.assert_close(mm_c(c * x_gen), mm(x_gen), rtol=1e-5, atol=1e-8)
    p = float(stats["power"])
    torch.testing.assert_close(waveform_mse(c * x_hat, c * x, c**2 * p), waveform_mse(x_hat, x, p))


def test_gradients_flow() -> None:
    sk = StftScalogram()
    x = torch.randn(2, 256, dtype=torch.float64)
    stats = scalogram_statistics(sk, [x])
    rec = ReconstructionLoss(sk, stats["mean_abs"].double())
    mm = MomentMatchingLoss(sk, stats["mean"].double() * 1.3, stats["rms"].double())
    x_hat = torch.randn(2, 256, dtype=torch.float64, requires_grad=True)
    total = rec(x_hat, x) + 0.5 * mm(x_hat) + waveform_mse(x_hat, x, stats["power"])
    total.backward()
    assert x_hat.grad is not None and torch.isfinite(x_hat.grad).all()
    assert float(x_hat.grad.abs().sum()) > 0
    small = torch.randn(1, 64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: mm(v), (small,))


def test_scalogram_statistics_against_numpy() -> None:
    sk = StftScalogram()
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, 200)).astype(np.float32) for n in (3, 1, 4)]
    stats = scalogram_statistics(sk, batches)
    s = np.concatenate([sk(torch.from_numpy(b)).numpy() for b in batches], axis=0)  # (8, C, T)
    np.testing.assert_allclose(stats["mean_abs"], np.abs(s).mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(stats["mean"], s.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(stats["rms"], np.sqrt((s**2).mean(axis=(0, 2))), rtol=1e-5)
    allx = np.concatenate(batches)
    assert float(stats["power"]) == pytest.approx(float((allx.astype(np.float64) ** 2).mean()))
    with pytest.raises(ValueError, match="no data"):
        scalogram_statistics(sk, [])


def test_shape_errors() -> None:
    rec = ReconstructionLoss(EvenOdd(), torch.ones(2))
    with pytest.raises(ValueError, match="equal length"):
        rec(torch.zeros(1, 4), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="channels"):
        ReconstructionLoss(EvenOdd(), torch.ones(3))(torch.zeros(1, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="rms"):
        MomentMatchingLoss(EvenOdd(), torch.ones(2), torch.ones(3))


def test_with_package_scalogram_when_available() -> None:
    scattering = pytest.importorskip("mmsin.scattering")
    if getattr(scattering, "Scalogram", None) is None:
        pytest.skip("mmsin.scattering.Scalogram not written yet")
    sk = scattering.Scalogram(K=5)
    x = torch.randn(2, 2048)
    stats = scalogram_statistics(sk, [x])
    rec = ReconstructionLoss(sk, stats["mean_abs"])
    assert float(rec(x, x)) == 0.0
    x_hat = x.clone().requires_grad_(True)
    rec(x_hat * 0.5, x).backward()
    assert x_hat.grad is not None and float(x_hat.grad.abs().sum()) > 0


def test_spectrum_loss_closed_forms_and_resolution() -> None:
    """SpectrumLoss: 0 for x itself, |a - 1| for a x, blind to the partials' phases, and its 2 s
    window tells apart two sines a quarter of a semitone apart where a 0.125 s one cannot."""
    from mmsin.losses import SpectrumLoss

    fs = 4096
    t = torch.arange(8192, dtype=torch.float64) / fs

    def tone(f: float, phases: tuple[float, ...]) -> torch.Tensor:
        return sum(
            0.5**k * torch.sin(2 * torch.pi * (k + 1) * f * t + p) for k, p in enumerate(phases)
        )

    x = tone(293.66, (0.0, 1.0, 2.0))[None]
    loss = SpectrumLoss()
    assert float(loss(x, x)) == 0.0
    assert abs(float(loss(0.3 * x, x)) - 0.7) < 1e-9
    other_phases = tone(293.66, (2.5, -1.0, 0.4))[None]
    assert float(loss(other_phases, x)) < 0.05
    quarter = 293.66 * 2 ** (1 / 48)
    shifted = tone(quarter, (0.0, 1.0, 2.0))[None]
    fine, coarse = float(SpectrumLoss([8192])(shifted, x)), float(SpectrumLoss([512])(shifted, x))
    assert fine > 1.5  # disjoint peaks: close to 2
    assert coarse < fine / 2  # overlapping main lobes
    # one ratio over the batch: a silent example adds its error, not a division by ~0
    silent = torch.zeros_like(x)
    both = loss(torch.cat([x, 0.01 * x]), torch.cat([x, silent]))
    assert abs(float(both) - 0.01) < 1e-6
    with pytest.raises(ValueError, match="shape"):
        loss(x[:, :100], x)


def test_spectrum_loss_averages_every_resolution_against_numpy() -> None:
    """Several windows: the mean over resolutions of the relative l1 distance of magnitudes,
    each computed here with numpy (periodic Hann, hop n/4, no centring)."""
    from scipy.signal import get_window

    from mmsin.losses import SpectrumLoss

    t = np.arange(8192) / 4096
    x = np.stack([np.sin(2 * np.pi * 293.66 * t), np.sin(2 * np.pi * 440.0 * t)])
    x_hat = np.stack([np.sin(2 * np.pi * 293.66 * 2 ** (1 / 48) * t), 0.5 * x[1]])
    ffts = (8192, 2048, 512)

    def mag(y: np.ndarray, n: int) -> np.ndarray:
        starts = range(0, y.shape[-1] - n + 1, n // 4)
        frames = np.stack([y[:, s : s + n] for s in starts], axis=-1)
        return np.abs(np.fft.rfft(frames * get_window("hann", n)[:, None], axis=1))

    each = [np.abs(mag(x_hat, n) - mag(x, n)).sum() / mag(x, n).sum() for n in ffts]
    assert min(abs(np.mean(each) - e) for e in each) > 0.05  # no single window gives the mean
    got = float(SpectrumLoss(ffts)(torch.as_tensor(x_hat), torch.as_tensor(x)))
    assert got == pytest.approx(float(np.mean(each)), rel=1e-9)
