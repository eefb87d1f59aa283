"""Signal functions of the free head (mmsin.generators.synthesis) against independent numpy
references: polyval against numpy.polyval, one polynomial and several at once; the noise bands
read across the table's end; and the oscillator sum that skips silent oscillators (no gradient
asked for) against the sum over all of them (the path a training step takes)."""

from __future__ import annotations

import numpy as np
import torch

from mmsin.generators.synthesis import band_noise, block_phases, polyval, sum_oscillators


def test_polyval_equals_numpy_for_one_and_several_polynomials() -> None:
    rng = np.random.default_rng(0)
    c = rng.standard_normal((6, 3))
    x = rng.uniform(-2, 2, (4, 5))
    one = polyval(torch.tensor(c[:, 0]), torch.tensor(x)).numpy()
    np.testing.assert_allclose(one, np.polyval(c[:, 0], x), rtol=1e-12, atol=1e-12)
    several = polyval(torch.tensor(c), torch.tensor(x)).numpy()
    assert several.shape == (4, 5, 3)
    for p in range(3):
        np.testing.assert_allclose(several[..., p], np.polyval(c[:, p], x), rtol=1e-12, atol=1e-12)


def test_band_noise_reads_the_tables_by_absolute_sample_across_their_end() -> None:
    """Gains interpolated between frames times the table at (first + s) mod L, from a
    per-sample numpy loop, both where the blocks run past the table's end and where not, with
    the position as an int and as a 0-d tensor (what a compiled stream passes)."""
    rng = np.random.default_rng(1)
    nb, L, h, T = 3, 64, 8, 5
    tables = rng.standard_normal((nb, L)).astype(np.float32)
    gains = rng.uniform(0, 1, (2, nb, T)).astype(np.float32)
    prev = rng.uniform(0, 1, (2, nb)).astype(np.float32)
    for first in (0, 16, L - 12, 3 * L - 4):
        y = band_noise(torch.tensor(gains), torch.tensor(prev), torch.tensor(tables), first, h)
        ref = np.zeros((2, T * h))
        for n in range(T):
            before = prev if n == 0 else gains[..., n - 1]
            for u in range(h):
                w = (u + 1) / h
                g = before + (gains[..., n] - before) * w
                ref[:, n * h + u] = g @ tables[:, (first + n * h + u) % L]
        np.testing.assert_allclose(y.reshape(2, -1).numpy(), ref, rtol=1e-5, atol=1e-5)
        at = torch.tensor(first)
        y = band_noise(torch.tensor(gains), torch.tensor(prev), torch.tensor(tables), at, h)
        np.testing.assert_allclose(y.reshape(2, -1).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_silent_oscillators_are_skipped_without_changing_the_sum() -> None:
    """Without a gradient the oscillators that are silent in every frame (and before) are
    left out; the sum equals the one over all of them, which a training step computes (a zero
    amplitude there still has a gradient: its carrier)."""
    torch.manual_seed(0)
    B, N, T, h = 2, 12, 4, 32
    omega = torch.rand(B, N, T) * 2.0
    amp = torch.rand(B, N, T) * (torch.rand(B, N, 1) < 0.3)
    amp[0, 5, 2] = 0.7  # sounds in one frame of one item only
    amp_prev = torch.zeros(B, N)
    amp_prev[1, 7] = 0.4  # sounds only before the first frame: fades out
    start, om_from, _ = block_phases(
        omega, amp > 0, torch.zeros(B, N), amp_prev > 0, torch.zeros(B, N, dtype=torch.float64),
        torch.rand(N, dtype=torch.float64), h,
    )  # fmt: skip
    silent = int(((amp == 0).all(dim=-1) & (amp_prev == 0)).all(dim=0).sum())
    assert 0 < silent < N
    with torch.no_grad():
        skipped = sum_oscillators(amp, amp_prev, omega, om_from, start, h)
    a = amp.clone().requires_grad_(True)
    full = sum_oscillators(a, amp_prev, omega, om_from, start, h)
    torch.testing.assert_close(skipped, full.detach(), rtol=1e-6, atol=1e-6)
    full.square().sum().backward()
    assert a.grad is not None and float(a.grad[amp == 0].abs().max()) > 0
