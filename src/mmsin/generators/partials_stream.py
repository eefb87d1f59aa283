"""Streaming the free partials generator with cached state (:class:`FreePartialStreamer`).

What a push of k frames must compute, and what it keeps (docs/model.md, section 6):

- **Per-frame parts**, computed on the new frames alone: the front end and the peaks
  (:meth:`FreePartialGenerator.estimate`: u, its parabolic peaks, the frequencies), the
  context channels and the noise gains (1 x 1 layers), the amplitudes from the network's
  log-gain. No state.
- **The shared 2-D network** (causal along frames, ``time_kernel`` = kt frames; 'same' along
  log-frequency, which is whole in every frame, so nothing along frequency needs caching):
  each layer keeps its last kt - 1 input frames and computes its outputs for the new frames
  only. A kt x kf Conv2d on one output frame equals a Conv1d along frequency over the kt input
  frames stacked as channels (tap-major), which runs several times faster at batch 1 than
  Conv2d on a (kf + F - 1) x kt patch; k frames go through it as a batch of k.
- **The gain trunk** (the paper's layers): :class:`mmsin.generators.conv.GeneratorStreamer`, which
  keeps each layer's last input samples.
- **The synthesis**: the previous frame's controls and the running phases (``State``), and the
  absolute sample position (the noise tables are read by it).

With ``compiled=True`` each push is one ``torch.compile`` graph: nothing in a push branches
on the data, and after each push the state and the caches are laid out as ``reset`` lays them
out, so that the graph serves every later push and reset (tests/test_compiled_stream.py).

So a push costs the same per frame however long the stream is, and its output equals
:meth:`FreePartialGenerator.forward` on the whole sequence to float rounding (the Conv1d and
the trunk's products sum in another order than the offline Conv2d / ConvTranspose1d):
tests/test_free_partials.py splits sequences at random points, one frame to many.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmsin.generators.conv import GeneratorStreamer
from mmsin.generators.free_partials import Controls, FreePartialGenerator, State
from mmsin.generators.partials import _FreqLayer

__all__ = ["COMPILE_OPTIONS", "CachedFreqLayer", "FreePartialStreamer"]

#: Inductor settings of the compiled stream (docs/model.md, section 6, "Compiled streaming"):
#: the graph's wrapper in C++ rather than Python (a push launches about forty kernels and
#: buffers; in the profile its Python was a quarter of a push), and every intermediate with an
#: operation stored once instead of recomputed inside each kernel that reads it (the peaks'
#: shares are read at 17 offsets). Measured at batch 1, one frame a push, one thread: the
#: shipped `notes` 1.37 -> 1.09 ms a frame, `piano` 1.41 -> 1.20 ms (2026-12-07).
COMPILE_OPTIONS: dict[str, str | int | bool | Callable[..., Any]] = {
    "cpp_wrapper": True,
    "realize_opcount_threshold": 1,
}


def _fresh(t: Tensor) -> Tensor:
    """A copy of ``t`` with the strides a new tensor of its shape has (``contiguous`` keeps
    a size-1 dimension's stride)."""
    return t.new_empty(t.shape).copy_(t)


class CachedFreqLayer:
    """One :class:`mmsin.generators.partials._FreqLayer` applied to new frames only.

    Parameters
    ----------
    layer : _FreqLayer
        Conv2d over (log-frequency, frames), kernel kf x kt, causal along frames.
    batch_size : int
    bins : int
        F, the number of log-frequency bins.

    Notes
    -----
    Activations are held time-major, (B, k, C, F), so that the kt frames one output needs are
    contiguous channels of a Conv1d along frequency. The weights are re-laid out once here:
    build a new streamer (or ``reset`` it) after changing them.
    """

    def __init__(self, layer: _FreqLayer, batch_size: int, bins: int) -> None:
        w = layer.conv.weight.detach()  # (c_out, c_in, kf, kt)
        c_out, c_in, kf, kt = w.shape
        # tap j of the kernel meets frame n - (kt - 1) + j: channels ordered (tap, c_in)
        self.weight = w.permute(0, 3, 1, 2).reshape(c_out, kt * c_in, kf).contiguous()
        # compiled: every tap's products at every position in one matrix product (rows
        # tap-major, (kf c_out, kt c_in)), summed shifted in the kernel that follows; at
        # batch 1 this runs faster than Conv1d's unfolded copy and product (docs/model.md,
        # section 6)
        self.taps = self.weight.permute(2, 0, 1).reshape(kf * c_out, kt * c_in).contiguous()
        self.kf = kf
        bias = layer.conv.bias
        self.bias = None if bias is None else bias.detach()
        self.pad = (kf // 2, (kf - 1) // 2)  # as _FreqLayer.forward pads log-frequency
        self.symmetric = self.pad[0] == self.pad[1]  # then conv1d pads, one operation fewer
        self.kt, self.c_in, self.c_out, self.relu = kt, c_in, c_out, layer.relu
        # the offline layer pads kt - 1 zero frames before the sequence
        self.history = w.new_zeros(batch_size, kt - 1, c_in, bins)

    def push(self, x: Tensor) -> Tensor:
        """New input frames (B, k, c_in, F) -> their output frames (B, k, c_out, F)."""
        B, k, _, Fb = x.shape
        full = torch.cat([self.history, x], dim=1)  # (B, kt - 1 + k, c_in, F)
        self.history = full[:, k:]
        if self.kt == 1:
            win = x.reshape(B * k, self.c_in, Fb)
        elif k == 1:
            win = full.reshape(B, self.kt * self.c_in, Fb)
        else:  # (B, k, c_in, F, kt) -> (B k, kt c_in, F)
            win = full.unfold(1, self.kt, 1).permute(0, 1, 4, 2, 3)
            win = win.reshape(B * k, self.kt * self.c_in, Fb)
        if torch.compiler.is_compiling():
            z = self.taps @ F.pad(win, self.pad)  # (B k, kf c_out, F + kf - 1)
            y = z[:, : self.c_out, :Fb]
            for j in range(1, self.kf):
                y = y + z[:, j * self.c_out : (j + 1) * self.c_out, j : j + Fb]
            if self.bias is not None:
                y = y + self.bias[:, None]
        elif self.symmetric:
            y = F.conv1d(win, self.weight, self.bias, padding=self.pad[0])
        else:
            y = F.conv1d(F.pad(win, self.pad), self.weight, self.bias)
        y = y.reshape(B, k, self.c_out, Fb)
        return torch.relu_(y) if self.relu else y


class FreePartialStreamer:
    """Frame-by-frame generation equal to :meth:`FreePartialGenerator.forward`, with cached
    state (module docstring): ``push(frames (B, C, k))`` returns their ``k 2^J`` samples.

    Parameters
    ----------
    generator : FreePartialGenerator
        In eval mode (the gain trunk's BatchNorm must use its running statistics).
    batch_size : int
    compiled : bool
        Run each push as one graph made by ``torch.compile`` (Inductor's C++ kernels: a C++
        compiler must be installed). The first push of each frame count compiles (10-30 s on
        2 cores); then a push of one frame takes about 1.0 ms on one thread against 2.7 ms
        eager (docs/model.md, section 6). Build a new streamer after changing the weights.
        The envelopes inside the frame keep the temperature in force when the streamer is
        made (:meth:`FreePartialGenerator.envelopes_at`), and the oscillators the generation
        gain when it is made within :meth:`FreePartialGenerator.generating_at`.
    """

    def __init__(
        self, generator: FreePartialGenerator, batch_size: int, compiled: bool = False
    ) -> None:
        if generator.training:
            raise RuntimeError("call generator.eval() before streaming")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generator = generator
        self.batch_size = int(batch_size)
        self.compiled = bool(compiled)
        # the envelopes' temperature in force now (FreePartialGenerator.envelopes_at)
        self.envelope_temperature = generator.envelope_temperature
        # ... and whether it renders generated frames (FreePartialGenerator.generating_at)
        self.generating = generator.generating
        self.reset()

    @torch.inference_mode()  # the state as pushes leave it (a compiled graph guards on it)
    def reset(self) -> None:
        """Forget the stream: the next push starts a sequence, as ``forward`` does."""
        g, B = self.generator, self.batch_size
        like = next(g.parameters()).detach()
        layers: list[_FreqLayer] = list(g.freq_layers)  # type: ignore[arg-type]
        self._layers = [CachedFreqLayer(la, B, g.num_bins) for la in layers]
        self._out = CachedFreqLayer(g.out, B, g.num_bins)
        self._envelope = CachedFreqLayer(g.envelope, B, g.num_bins) if g.sub_frames else None
        self._trunk = GeneratorStreamer(g.trunk, B)
        self._state: State = g.zero_state(B, like)
        # the last frame's raw estimate and peaks (FreePartialGenerator.lead_decays)
        self._before = (like.new_zeros(B, g.num_bins), like.new_zeros(B, g.num_bins).bool())
        self._like = like
        self._seen = 0
        self._step_fn = self._step
        if self.compiled:
            g._float64()  # what the compiled graph reads as it stands (base.Derived)
            self._trunk._layer_plans()
            self._step_fn = torch.compile(self._step, dynamic=False, options=COMPILE_OPTIONS)

    def _cached_layers(self) -> list[CachedFreqLayer]:
        extra = [self._envelope] if self._envelope is not None else []
        return [*self._layers, self._out, *extra]

    def _network(self, frames: Tensor, lu: Tensor) -> tuple[Tensor, Tensor | None]:
        """The shared network's log-gain of the new frames, (B, 1, F, k) as offline, and the
        envelope layer's logits (B, P, F, k) (None without sub-frames)."""
        g = self.generator
        Fb = lu.shape[1]
        x = lu.transpose(1, 2)[:, :, None]  # (B, k, 1, F)
        if g.context is not None:
            ctx = g.context(frames).transpose(1, 2)  # (B, k, ctx)
            x = torch.cat([x, ctx[..., None].expand(-1, -1, -1, Fb)], dim=2)
        for layer in self._layers:
            x = layer.push(x)
        env = None if self._envelope is None else self._envelope.push(x).permute(0, 2, 3, 1)
        return self._out.push(x).permute(0, 2, 3, 1), env

    def _checked(self, frames: Tensor) -> Tensor:
        g = self.generator
        if frames.dim() != 3 or frames.shape[:2] != (self.batch_size, g.in_channels):
            raise ValueError(
                f"frames must have shape ({self.batch_size}, {g.in_channels}, k), got "
                f"{tuple(frames.shape)}"
            )
        return frames.to(self._like)

    @torch.inference_mode()
    def controls(self, frames: Tensor) -> Controls:
        """The controls of new frames (B, in_channels, k), as :meth:`FreePartialGenerator.controls`
        gives them within the whole sequence; advances the network's caches (not the
        synthesis: :meth:`push` does both)."""
        frames = self._checked(frames)
        if frames.shape[-1] == 0:
            g, z = self.generator, frames.new_zeros
            B, n, nb = self.batch_size, g.num_oscillators, g.noise_bands
            omega = z(B, n, 0, dtype=torch.float64)  # as the estimate gives them
            return Controls(z(B, n, 0), omega, z(B, 1, 0), z(B, nb, 0))
        return self._controls(frames)

    def _controls(self, frames: Tensor) -> Controls:
        g = self.generator
        lu, est, peak, omega, room = g.estimate(frames)
        r, env = self._network(frames, lu)
        amp = g.amp(r, g.lead_decays(est, peak, self._before), peak, self.generating)
        self._before = (est[..., -1], peak[..., -1])
        gain = torch.exp(torch.clamp(self._trunk.push_features(frames), -12.0, 4.0))
        c = Controls(amp, omega, gain, g.noise_gains(frames, lu, room))
        if env is not None:
            c.amp_env, c.noise_env = g.inner_envelopes(env, frames, lu, self.envelope_temperature)
        return c

    def _step(self, frames: Tensor, first_sample: int | Tensor) -> Tensor:
        """One push: the controls, then the synthesis from the state (both advanced)."""
        c = self._controls(frames)
        y, state = self.generator.synthesize(c, self._state, first_sample)
        if self.compiled:  # laid out as reset lays them out (a compiled graph guards on strides)
            for name, t in vars(state).items():
                if t is not None:
                    setattr(state, name, _fresh(t))
            self._before = (_fresh(self._before[0]), _fresh(self._before[1]))
            for layer in self._cached_layers():
                layer.history = _fresh(layer.history)
            self._trunk._history = [_fresh(h) for h in self._trunk._history]
        self._state = state
        return y

    @torch.inference_mode()
    def push(self, frames: Tensor) -> Tensor:
        """Feed frames (B, in_channels, k), get their k 2^J samples (B, k 2^J)."""
        frames = self._checked(frames)
        k = frames.shape[-1]
        if k == 0:
            return frames.new_zeros(self.batch_size, 0)
        first = self._seen * self.generator.hop
        # compiled: the position as a tensor, so that one graph serves every push
        y = self._step_fn(frames, torch.tensor(first) if self.compiled else first)
        self._seen += k
        return y

    @torch.inference_mode()
    def flush(self) -> Tensor:
        """End the stream (causal: nothing is held back)."""
        return self._like.new_zeros(self.batch_size, 0)
