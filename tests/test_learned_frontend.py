"""The joint-real variant's learned front end: the order-1 operator it inverts, checked against
the transform itself, and its fit on synthetic tones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmsin.generators.partials import LearnedFrontend, first_order_frontend, joint_first_order
from mmsin.scattering import TimeFrequencyScattering

FS = 4096
J, Q, P = 7, 4, 4


def _steady(seconds: float = 4.0) -> torch.Tensor:
    t = np.arange(int(seconds * FS)) / FS
    x = sum(
        a * np.sin(2 * math.pi * f * t + k) for k, (f, a) in enumerate(((180, 1.0), (700, 0.5)))
    )
    return torch.as_tensor(x, dtype=torch.float64)[None]


def test_joint_order_one_is_the_modulus_of_the_windowed_scalogram() -> None:
    """For a steady sound, joint-real's order 1 equals |operator @ u| with u read exactly from
    the paper variant's linear order 1 (an independent path through the transform)."""
    paper = TimeFrequencyScattering(J=J, Q=Q, P=P, variant="paper", fs=FS).double()
    joint = TimeFrequencyScattering(J=J, Q=Q, P=P, variant="joint-real", fs=FS).double()
    x = _steady()
    with torch.no_grad():
        sp, sj = paper(x)[0].numpy(), joint(x)[0].numpy()
    matrix, hz = first_order_frontend(paper)
    channels, operator, hz_joint = joint_first_order(joint)
    assert np.allclose(hz, hz_joint) and operator.shape == (channels.size, hz.size)
    frame = sp.shape[-1] - 2  # far from the onset
    u = matrix @ sp[:, frame]
    predicted = np.abs(operator @ u)
    measured = sj[channels, frame]
    assert np.abs(predicted - measured).max() < 0.02 * measured.max()
    # and it is not the linear map: a shifted u gives other moduli only through the windows
    assert np.abs(np.abs(operator @ np.roll(u, 1)) - measured).max() > 0.05 * measured.max()


def test_learned_frontend_reads_u_back_after_pretraining() -> None:
    joint = TimeFrequencyScattering(J=J, Q=Q, P=P, variant="joint-real", fs=FS)
    channels, operator, _ = joint_first_order(joint)
    fe = LearnedFrontend(channels, operator, eps=1e-4, hidden=64)
    assert not bool(fe.ready)
    err = fe.pretrain(joint, steps=300, seed=1)
    assert bool(fe.ready) and err < 0.6  # median relative error of u on held-out tones
    assert not any(p.requires_grad for p in fe.parameters())  # fixed once fitted
    # a loaded front end is ready: training never fits it again
    other = LearnedFrontend(channels, operator, eps=1e-4, hidden=64)
    assert all(p.requires_grad for p in other.parameters())
    other.load_state_dict(fe.state_dict())
    assert bool(other.ready) and not any(p.requires_grad for p in other.parameters())
    raw = torch.zeros(1, joint.num_channels, 3)
    raw[:, torch.as_tensor(channels)] = torch.as_tensor(
        np.abs(operator @ np.ones(operator.shape[1])), dtype=torch.float32
    )[None, :, None]
    assert torch.equal(fe(raw), other(raw)) and fe(raw).shape == (1, operator.shape[1], 3)


def test_training_fits_an_unready_frontend_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmsin.training import loop

    joint = TimeFrequencyScattering(J=J, Q=Q, P=P, variant="joint-real", fs=FS)
    channels, operator, _ = joint_first_order(joint)
    calls: list[tuple[object, int]] = []

    def fake(self: LearnedFrontend, scattering: object, steps: int = 0, seed: int = 0) -> float:
        calls.append((scattering, seed))
        self.ready.fill_(True)
        return 0.0

    monkeypatch.setattr(LearnedFrontend, "pretrain", fake)
    gen = torch.nn.Module()
    gen.frontend = LearnedFrontend(channels, operator, eps=1e-4, hidden=8)
    loop._pretrain_frontend(joint, gen, 7)
    loop._pretrain_frontend(joint, gen, 7)
    assert calls == [(joint, 7)]
