"""Encode, decode and generate block by block: what :class:`mmsin.MMSIN` does to a whole
signal, in memory bounded by one block, for recordings of any length.

Each function chains the streaming paths of the parts (their timing is theirs):

- S_J: :meth:`TimeFrequencyScattering.stream`, whose frames equal the offline transform's;
- L and L^-1: :meth:`VAR.whiten` / :meth:`VAR.unwhiten` with the previous block's last M
  frames as ``initial`` (the recursion carried in float64, as the whole-signal call does);
- G: ``generator.stream(batch)`` (``push(frames) -> samples``, ``flush()``), equal to its
  forward on the whole sequence.

Concatenating the yielded blocks gives :meth:`MMSIN.encode` (or ``encode_scattering``),
:meth:`MMSIN.decode` (or ``decode_scattering``) and :meth:`MMSIN.generate` to float rounding
(tests/test_streaming.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmsin.whitening import apply_relu

__all__ = ["decode_blocks", "encode_blocks", "generate_blocks"]


def _tail(past: Tensor | None, new: Tensor, M: int) -> Tensor:
    """The last M frames of ``past`` followed by ``new`` (the VAR's memory)."""
    return (new if past is None else torch.cat([past, new], dim=-1))[..., -M:]


@torch.no_grad()
def encode_blocks(
    model: Any, blocks: Iterable[Tensor | np.ndarray], *, scattering: bool = False
) -> Iterator[Tensor]:
    """Z = L(S_J x / norm) (or S_J x) of a signal fed in consecutive blocks.

    Parameters
    ----------
    model : mmsin.MMSIN
    blocks : iterable of Tensor or ndarray, shape (batch, t), float, at ``model.fs`` Hz
        Consecutive pieces of the signals (any lengths).
    scattering : bool
        Yield S_J (as :meth:`MMSIN.encode_scattering`) instead of Z.

    Yields
    ------
    Tensor, shape (batch, k_J, k), float32
        The frames completed by each block: ``(time - 1) // 2^J + 1`` in all.
    """
    stream = None
    past: Tensor | None = None
    for block in blocks:
        x = model._signal(block)
        if stream is None:
            stream = model.scattering.stream(x.shape[0])
        S = stream.push(x).float()
        if S.shape[-1] == 0:
            continue
        if scattering:
            yield S
            continue
        S = S / model.norm[:, None]
        yield model.var.whiten(S, initial=past)
        past = _tail(past, S, model.var.M)


@torch.no_grad()
def decode_blocks(
    model: Any,
    blocks: Iterable[Tensor | np.ndarray],
    *,
    kind: str = "z",
    aligned: bool = True,
) -> Iterator[Tensor]:
    """x~ = G(ReLU(L^-1 Z)) (or G(S_J / norm)) of frames fed in consecutive blocks.

    Parameters
    ----------
    model : mmsin.MMSIN
    blocks : iterable of Tensor or ndarray, shape (batch, k_J, k)
        Consecutive frames of Z (``kind="z"``) or of S_J (``kind="scattering"``).
    aligned : bool
        Drop the first 2^J - 1 samples, as :meth:`MMSIN.decode` does.

    Yields
    ------
    Tensor, shape (batch, n), float32
        Consecutive samples: ``(F - 1) 2^J + 1`` in all for F frames (``F 2^J`` unaligned).
    """
    if kind not in ("z", "scattering"):
        raise ValueError(f"kind must be 'z' or 'scattering', got {kind!r}")
    streamer = None
    past: Tensor | None = None
    skip = model.hop - 1 if aligned else 0
    for block in blocks:
        frames = model._frames(block, "Z" if kind == "z" else "S")
        if kind == "z":
            # L^-1 in float64 from block to block, rounded as the whole-signal decode rounds.
            S = model.var.unwhiten(frames.double(), initial=past)
            past = _tail(past, S, model.var.M)
            frames = apply_relu(S.to(frames.dtype), model.modulus_channels)
        else:
            frames = frames / model.norm[:, None]
        if streamer is None:
            streamer = model.generator.stream(frames.shape[0])
        y = streamer.push(frames.float()).float()
        y, skip = y[:, skip:], max(0, skip - y.shape[-1])
        yield y
    if streamer is not None:
        y = streamer.flush().float()
        yield y[:, skip:]


@torch.no_grad()
def generate_blocks(
    model: Any,
    frames: int,
    batch: int = 1,
    seed: int | None = None,
    *,
    warmup: int | None = None,
    codes: str | None = None,
    envelope_temperature: float | None = None,
) -> Iterator[Tensor]:
    """:meth:`MMSIN.generate` block by block: G(ReLU(L^-1 z)), z ~ N(0, I) (paper eq. 1).

    Same parameters as :meth:`MMSIN.generate`; the same seed gives the same samples.

    Yields
    ------
    Tensor, shape (batch, n), float32
        Consecutive samples, ``frames * 2^J`` in all.
    """
    if frames < 1 or batch < 1:
        raise ValueError(f"need frames >= 1 and batch >= 1, got {frames}, {batch}")
    g = None
    if seed is not None:
        g = torch.Generator(device=model.var.A.device).manual_seed(int(seed))
    w = model.config.whitening.warmup if warmup is None else int(warmup)
    lead = model.generation_lead(w)  # warm-up frames G runs on too; their output is dropped
    skip = lead * model.hop
    with model.generation_envelopes(envelope_temperature):  # the stream keeps the temperature
        streamer = model.generator.stream(batch)
    for S in model.var.sample_blocks(
        batch,
        frames + lead,
        warmup=w - lead,
        generator=g,
        relu=model.modulus_channels,
        codes=codes or model.config.whitening.codes,
    ):
        y = streamer.push(S.float()).float()
        y, skip = y[:, skip:], max(0, skip - y.shape[-1])
        yield y
    y = streamer.flush().float()
    yield y[:, skip:]
