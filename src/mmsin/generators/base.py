"""What every generator head provides: the contract the rest of mmsin relies on.

A head maps S_J frames (one every ``hop = 2^J`` samples) to a waveform. Assembly, training,
streaming, the model and the benchmarks use a head only through the members below, so a new
head is usable everywhere once it satisfies :class:`GeneratorHead` (``tests/test_heads.py``
checks each head built from a config). The timing members follow the paper's convention, stated
once in :mod:`mmsin.generators.conv`: block n of the output (samples ``n hop .. (n+1) hop - 1``)
stands for the signal samples ``x[(n-1) hop + 1 .. n hop]``.

The protocols are runtime-checkable: ``isinstance(g, GeneratorHead)`` checks that the members
exist (not their signatures), which is what :func:`mmsin.assembly.build_generator` asserts of
what it builds. Heads are ``nn.Module``\\ s as well; the protocol names only what differs from
one head to the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["Derived", "GeneratorHead", "ReadsInputNorm", "Streamer", "envelope_temperature"]

T = TypeVar("T")


class Derived(Generic[T]):
    """A value made from tensors (weights laid out for a hot path, constants in another
    dtype), made again only when one of them is replaced (a new buffer from ``.to()``), given
    new storage (``.float()`` swaps a parameter's data in place: same object, same version)
    or changed in place (an optimiser step, new running statistics, loaded weights):
    ``get(sources, make)`` returns what ``make()`` gave for the same tensors, storage and
    versions. The sources are held, so their storage is not reused while the value stands."""

    def __init__(self) -> None:
        self._sources: tuple[Tensor, ...] = ()
        self._state: tuple[tuple[int, int], ...] = ()
        self._value: T | None = None

    def get(self, sources: Sequence[Tensor], make: Callable[[], T]) -> T:
        if self._value is not None and torch.compiler.is_compiling():
            # a compiled stream (its reset made the value): data pointers and versions cannot
            # be traced, and the streamer asks for a new stream after weights change
            return self._value
        state = tuple((t.data_ptr(), t._version) for t in sources)
        if (
            self._value is None
            or state != self._state
            or any(a is not b for a, b in zip(sources, self._sources, strict=True))
        ):
            self._value = make()
            self._sources, self._state = tuple(sources), state
        return self._value


@runtime_checkable
class Streamer(Protocol):
    """Frame-by-frame generation, equal to the head's whole-sequence forward (eval mode)."""

    def push(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, k) -> the samples they newly determine, (B, n)."""
        ...

    def flush(self) -> Tensor:
        """End the stream: the samples held back for look-ahead, with zero future (B, n)."""
        ...

    def reset(self) -> None:
        """Forget the stream: the next push starts from zero past, as forward does."""
        ...


@runtime_checkable
class GeneratorHead(Protocol):
    """A generator G: frames (B, in_channels, T) -> waveform (B, T hop), with its timing.

    Attributes
    ----------
    in_channels : int
        k_J, the channels of the input frames.
    J : int
        Scale: one frame gives ``hop = 2^J`` output samples.
    look_ahead : int
        Future upsampled slots each layer sees (0 for the causal heads).
    """

    in_channels: int
    J: int
    look_ahead: int

    @property
    def hop(self) -> int:
        """Output samples per input frame, 2^J."""
        ...

    @property
    def frame_span(self) -> tuple[int, int]:
        """(lo, hi): block n depends exactly on frames n - lo .. n + hi (both >= 0)."""
        ...

    @property
    def receptive_field(self) -> int:
        """Frames one output block depends on, lo + hi + 1."""
        ...

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples, (1 + look_ahead) hop."""
        ...

    @property
    def layers(self) -> nn.ModuleList:
        """Every module whose output runs along time: what training's zero state masks
        (:func:`mmsin.training.objective.zero_state`)."""
        ...

    def flops_per_frame(self, *, pointwise: bool = True) -> int:
        """Floating-point operations to produce one frame's hop samples (analytic);
        ``pointwise=False`` leaves out biases, normalisations and non-linearities."""
        ...

    def stream(self, batch_size: int) -> Streamer:
        """A streamer for ``batch_size`` sequences (eval mode only)."""
        ...

    def __call__(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, T) -> waveform (B, T hop)."""
        ...


@runtime_checkable
class ReadsInputNorm(Protocol):
    """A head that reads S_J's scale (the partials heads): it is given S_J's per-channel
    normaliser, since it sees S_J / norm."""

    def set_input_norm(self, norm: Tensor) -> None:
        """Store the normaliser, (in_channels,) positive values."""
        ...


def envelope_temperature(
    generator: nn.Module, temperature: float
) -> contextlib.AbstractContextManager[None]:
    """Within: ``generator`` renders generated frames, its envelopes inside the frame at softmax
    ``temperature`` and, for the free head, its oscillators times their generation gain
    (:meth:`mmsin.generators.free_partials.FreePartialGenerator.generating_at`); a head without
    envelopes takes 1 only. The temperature is checked on the call, before the block is
    entered."""
    tau = float(temperature)
    generating = getattr(generator, "generating_at", None)
    if generating is not None:  # the free head: the envelopes and its generation gain
        return generating(tau)  # type: ignore[no-any-return]
    if tau != 1.0:  # the other heads have no envelopes inside the frame
        raise ValueError(
            f"envelope temperature {tau}: this generator has no envelopes inside the frame "
            "(generator.sub_frames = 0)"
        )
    return contextlib.nullcontext()
