"""The CUDA path: every transform and a short training run on the GPU agree with the CPU.

Skipped where no CUDA device is present (CI); run on a GPU machine with
``pytest -q tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch

from _tiny import tiny_clips, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


def test_time_frequency_scattering_on_cuda_equals_cpu() -> None:
    from mmsin.scattering import TimeFrequencyScattering

    x = torch.randn(3, 6 * 2**7)
    S = TimeFrequencyScattering(J=7, Q=4, P=4, variant="paper", fs=4096)
    cpu = S(x)
    gpu = S.to("cuda")(x.cuda())
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    assert _rel(gpu.cpu(), cpu) < 1e-4


@pytest.mark.parametrize("wavelet", ["gammatone", "morlet"])
def test_scalogram_forward_and_backward_on_cuda_equal_cpu(wavelet: str) -> None:
    from mmsin.scattering import Scalogram

    x = torch.randn(4, 4096, requires_grad=True)
    sk = Scalogram(K=5, Q=12, wavelet=wavelet, fs=4096)
    y = sk(x)
    (g_cpu,) = torch.autograd.grad(y.square().sum(), x)
    xg = x.detach().cuda().requires_grad_(True)
    yg = sk.to("cuda")(xg)
    (g_gpu,) = torch.autograd.grad(yg.square().sum(), xg)
    assert _rel(yg.detach().cpu(), y.detach()) < 1e-4
    assert _rel(g_gpu.cpu(), g_cpu) < 1e-3


def test_generator_streaming_on_cuda_equals_whole_sequence() -> None:
    from mmsin.generators.conv import CausalGenerator

    G = CausalGenerator(40, J=5, c1=4).eval()
    S = torch.rand(2, 40, 9)
    whole_cpu = G(S)
    G = G.cuda()
    whole = G(S.cuda())
    stream = G.stream(2)
    parts = [stream.push(S[:, :, i : i + 1].cuda()) for i in range(9)]
    assert _rel(whole.cpu(), whole_cpu) < 1e-4
    assert _rel(torch.cat(parts, dim=-1), whole) < 1e-4


def test_training_runs_on_cuda_with_mixed_precision(tmp_path) -> None:
    from mmsin.model import MMSIN
    from mmsin.training import train

    train_clips, test_clips = tiny_clips()
    cfg = tiny_config(2, "train.device=cuda", "train.amp=true")
    result = train(
        cfg, tmp_path / "run", train_clips=train_clips, test_clips=test_clips, progress=False
    )
    assert all(torch.isfinite(p).all() for p in result.generator.parameters())
    model = MMSIN.load(tmp_path / "run")
    x = torch.as_tensor(test_clips.audio)
    y = model.decode(model.encode(x))
    assert torch.isfinite(y).all() and y.shape[0] == x.shape[0]
