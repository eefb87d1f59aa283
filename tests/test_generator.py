"""CausalGenerator: architecture, timing, causality and streaming against independent references."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mmsin.generators.conv import CausalGenerator, aligned_target, channel_schedule

SETTINGS = [  # (J, kernel_size, look_ahead)
    (3, 7, 0),  # the paper's causal generator (small J)
    (3, 8, 3),  # the reference code's kernel 8 = 5 past + 3 ahead
    (2, 7, 2),
    (1, 7, 0),
    (2, 7, 6),  # no past at all
]


def randomize_batchnorm(g: CausalGenerator, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def reference_forward(g: CausalGenerator, frames: torch.Tensor) -> torch.Tensor:
    """Eqs. (2)-(3) written out: explicit zero insertion, zero padding, then a plain conv1d."""
    h = frames
    for layer in g.layers:
        up = torch.zeros(*h.shape[:2], 2 * h.shape[2], dtype=h.dtype)
        up[..., ::2] = h  # eq. (2): the value, then a 0
        w = layer.conv.weight.flip(-1).transpose(0, 1)  # causal kernel, (c_out, c_in, K)
        y = F.conv1d(F.pad(up, (g.past, g.look_ahead)), w, layer.conv.bias)
        h = y if layer.bn is None else torch.relu(layer.bn(y))
    return h[:, 0]


def test_channel_law_matches_reference_numbers() -> None:
    assert channel_schedule(973) == [973, 586, 352, 212, 128, 77, 46, 28, 17, 10, 1]
    assert channel_schedule(888) == [888, 540, 328, 200, 121, 74, 45, 28, 17, 10, 1]
    assert channel_schedule(541) == [541, 348, 223, 144, 92, 59, 38, 25, 16, 10, 1]
    assert CausalGenerator(973).channels == channel_schedule(973)
    assert channel_schedule(50, J=1) == [50, 1]


def test_parameter_count_matches_reference() -> None:
    # reference-code.md section 7: about 2.57 M with kernel 8 and 2.25 M with kernel 7 (541 ch.)
    n8 = sum(p.numel() for p in CausalGenerator(541, kernel_size=8, look_ahead=3).parameters())
    n7 = sum(p.numel() for p in CausalGenerator(541, kernel_size=7).parameters())
    assert abs(n8 / 2.57e6 - 1) < 0.005 and abs(n7 / 2.25e6 - 1) < 0.005


@pytest.mark.parametrize(("J", "K", "a"), SETTINGS)
def test_forward_equals_explicit_zero_insertion(J: int, K: int, a: int) -> None:
    g = CausalGenerator(6, J=J, kernel_size=K, look_ahead=a, c1=3).double().eval()
    randomize_batchnorm(g)
    x = torch.randn(2, 6, 9, dtype=torch.float64)
    y = g(x)
    assert y.shape == (2, 9 * 2**J)
    np.testing.assert_allclose(
        y.detach().numpy(), reference_forward(g, x).detach().numpy(), atol=1e-12
    )


@pytest.mark.parametrize(("J", "K", "a"), SETTINGS)
def test_dependency_span_is_exact(J: int, K: int, a: int) -> None:
    """Block n depends on exactly frames n - lo .. n + hi (gradient support), and no later."""
    g = CausalGenerator(4, J=J, kernel_size=K, look_ahead=a, c1=3).double().eval()
    # Positive weights and inputs keep every ReLU open, so the gradient support is the
    # structural dependency (a dead ReLU could otherwise hide one).
    with torch.no_grad():
        for layer in g.layers:
            layer.conv.weight.abs_().add_(0.01)
            layer.conv.bias.abs_()
    T, hop = 14, 2**J
    lo, hi = g.frame_span
    assert g.receptive_field == lo + hi + 1 and hi <= a
    x = torch.rand(1, 4, T, dtype=torch.float64) + 0.5
    for n in range(T):
        xi = x.clone().requires_grad_(True)
        block = g(xi)[0, n * hop : (n + 1) * hop]
        (grad,) = torch.autograd.grad((block * torch.linspace(1, 2, hop)).sum(), xi)
        used = grad[0].abs().sum(0) > 0
        expected = torch.zeros(T, dtype=torch.bool)
        expected[max(0, n - lo) : min(T, n + hi + 1)] = True
        assert torch.equal(used, expected), (n, used)


def test_paper_defaults_timing() -> None:
    g = CausalGenerator(973)
    assert g.past == 6 and g.look_ahead == 0
    assert g.receptive_field == 6 and g.latency == 1024 and g.hop == 1024
    assert CausalGenerator(973, kernel_size=8, look_ahead=3).latency == 4 * 1024


def test_perturbing_a_frame_leaves_earlier_blocks_unchanged() -> None:
    g = CausalGenerator(5, J=4, c1=3, kernel_size=8, look_ahead=2).eval()
    x = torch.randn(1, 5, 12)
    y = g(x)
    for n in (0, 5, 11):
        x2 = x.clone()
        x2[:, :, n] += 1.0
        y2 = g(x2)
        cut = max(0, n - 2) * 16
        assert torch.equal(y[:, :cut], y2[:, :cut])
        assert not torch.equal(y[:, cut:], y2[:, cut:])


def test_eval_reaches_every_batchnorm() -> None:
    g = CausalGenerator(20, J=5, c1=4)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 4  # every layer but the last
    assert sum(k.endswith("running_mean") for k in g.state_dict()) == 4
    g.eval()
    assert not any(m.training for m in g.modules())
    x = torch.rand(3, 20, 6)
    # In eval mode each example is generated independently of the rest of the batch.
    torch.testing.assert_close(g(x)[:1], g(x[:1]), rtol=1e-5, atol=1e-6)
    g.train()
    assert all(m.training for m in bns)
    assert not torch.allclose(g(x)[:1], g(x[:1]), atol=1e-3)


@pytest.mark.parametrize(("J", "K", "a"), SETTINGS)
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_streaming_equals_whole_sequence(
    J: int, K: int, a: int, dtype: torch.dtype, tol: float
) -> None:
    g = CausalGenerator(7, J=J, kernel_size=K, look_ahead=a, c1=3).to(dtype).eval()
    randomize_batchnorm(g)
    T = 23
    x = torch.rand(2, 7, T, dtype=dtype)
    whole = g(x).detach()
    scale = float(whole.abs().max())
    s = g.stream(2)
    rng = random.Random(J * 100 + K * 10 + a)
    for _ in range(2):  # the second pass checks reset()
        outs, i = [], 0
        while i < T:
            k = rng.randint(1, 4)
            out = s.push(x[:, :, i : i + k])
            if a == 0:
                assert out.shape == (2, x[:, :, i : i + k].shape[-1] * 2**J)
            outs.append(out)
            i += k
        outs.append(s.flush())
        streamed = torch.cat(outs, dim=-1)
        assert streamed.shape == whole.shape and streamed.dtype == dtype
        assert float((streamed - whole).abs().max()) <= tol * max(scale, 1.0)
        s.reset()


def test_streaming_lag_and_zero_flush_for_causal_default() -> None:
    g = CausalGenerator(4, J=3, c1=3, kernel_size=8, look_ahead=3).eval()
    s = g.stream(1)
    assert s.push(torch.rand(1, 4, 2)).shape[-1] == 0  # 2 frames: everything needs future
    assert s.push(torch.rand(1, 4, 2)).shape[-1] == 4 * 8 - 3 * (8 - 1)
    assert s.push(torch.rand(1, 4, 1)).shape[-1] == 8
    causal = CausalGenerator(4, J=3, c1=3).eval().stream(1)
    causal.push(torch.rand(1, 4, 3))
    assert causal.flush().shape == (1, 0)


def test_streaming_refolds_bias_and_batchnorm_changed_in_place() -> None:
    """The streamer folds each layer's bias and BatchNorm once and keeps the fold only while
    none of their tensors changes: after an in-place change the next push uses the new values
    (the last layer's bias enters at emission only, so the later blocks equal the offline
    forward with it)."""
    g = CausalGenerator(4, J=3, c1=3).eval()
    randomize_batchnorm(g)
    x = torch.rand(1, 4, 6)
    s = g.stream(1)
    first = s.push(x[..., :3])
    with torch.no_grad():
        g.layers[-1].conv.bias.add_(0.5)  # type: ignore[union-attr]
    later = s.push(x[..., 3:])
    whole = g(x).detach()
    torch.testing.assert_close(later, whole[:, 3 * 8 :], rtol=0, atol=1e-5)
    assert float((first - whole[:, : 3 * 8]).abs().max()) > 0.1
    bn = g.layers[1].bn
    assert bn is not None and bn.running_var is not None
    with torch.no_grad():
        bn.running_var.mul_(3.0)
    scale, shift = s._affine(g.layers[1], whole)  # type: ignore[arg-type]
    fresh = g.stream(1)._affine(g.layers[1], whole)  # type: ignore[arg-type]
    assert scale is not None and fresh[0] is not None
    assert torch.equal(scale, fresh[0]) and torch.equal(shift, fresh[1])


def test_streaming_requires_eval_and_shapes() -> None:
    g = CausalGenerator(4, J=2, c1=3)
    s = g.stream(1)
    with pytest.raises(RuntimeError, match="eval"):
        s.push(torch.rand(1, 4, 1))
    g.eval()
    with pytest.raises(ValueError, match="shape"):
        s.push(torch.rand(2, 4, 1))
    with pytest.raises(ValueError, match="shape"):
        g(torch.rand(1, 5, 3))
    with pytest.raises(ValueError, match="look_ahead"):
        CausalGenerator(4, kernel_size=7, look_ahead=7)


def test_flop_count_matches_torch_counter() -> None:
    g = CausalGenerator(40, J=4, c1=5).eval()
    T = 10
    with FlopCounterMode(display=False) as counter:
        g(torch.randn(1, 40, T))
    assert g.flops_per_frame(pointwise=False) * T == counter.get_total_flops()
    chans = g.channels
    pointwise = sum(4 * 2 ** (l + 1) * chans[l + 1] for l in range(4))
    assert g.flops_per_frame() == g.flops_per_frame(pointwise=False) + pointwise


def test_aligned_target_by_hand() -> None:
    x = torch.arange(1.0, 14.0)[None]  # x[t] = t + 1 for t = 0..12
    # J = 2: block n stands for x[4(n-1)+1 .. 4n]; frames 0..3 need x up to t = 12.
    t = aligned_target(x, 2, 4)
    expected = [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    assert t[0].tolist() == expected
    assert aligned_target(x, 2, 2, start=1)[0].tolist() == expected[4:12]
    with pytest.raises(ValueError, match="need 17"):
        aligned_target(x, 2, 5)


def test_aligned_target_matches_generator_timing() -> None:
    """A generator output block and its target cover the same 2^J samples of frame n's past."""
    J, T = 3, 5
    x = torch.randn(2, (T - 1) * 2**J + 1)  # exactly the samples frames 0..T-1 summarise
    target = aligned_target(x, J, T)
    assert target.shape == (2, T * 2**J)
    # Block n ends at the time of frame n: its last sample is x[n 2^J].
    for n in range(T):
        assert torch.equal(target[:, (n + 1) * 2**J - 1], x[:, n * 2**J])
