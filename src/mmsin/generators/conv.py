"""The causal convolutional generator of MM-SIN (paper section 3, Fig. 2, eqs. 2-3).

J layers map a sequence of k_J-channel frames (one every 2^J samples) to a waveform. Layer j
doubles the time resolution by zero insertion (eq. 2: the value, then a 0), applies a
convolution along time with a linear map across channels and a bias, then BatchNorm and ReLU
(eq. 3); the last layer is the convolution alone, so the output is signed.

Timing convention (docs/model.md has the derivation). Let ``U`` be the zero-inserted input of
a layer (``U[2i] = X[i]``, ``U[2i+1] = 0``) and ``p = kernel_size - 1 - look_ahead``. The layer
output is ``Y[m] = sum_k w[k] U[m - p + k]``: ``p`` upsampled slots of past, the current slot
and ``look_ahead`` slots of future, zeros outside the sequence. With ``look_ahead = 0`` (the
paper's causal generator), output sample m depends on frames ``floor(m / 2^J)`` and before,
so block n (output samples ``n 2^J .. (n+1) 2^J - 1``) depends on frames ``n - p + 1 .. n``
and stands for the signal samples ``x[(n-1) 2^J + 1 .. n 2^J]``, the 2^J samples up to the
time of frame n (the paper's "noise vector at t = 2^J (n+1) yields the 2^J samples up to
t = 2^J n + 1", in our frame numbering). With ``look_ahead = a`` block n also sees frames up to
``n + a``; the whole-sequence output keeps its length and uses zero future for the last frames.

Zero insertion followed by a convolution is exactly a stride-2 transposed convolution, which
skips the multiplications by the inserted zeros (half the work); the layers store their
weights in that layout (``ConvTranspose1d``, tap ``k`` of the causal kernel at index
``kernel_size - 1 - k``).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsin.generators.base import Derived

__all__ = ["CausalGenerator", "GeneratorStreamer", "aligned_target", "channel_schedule"]


def channel_schedule(in_channels: int, J: int = 10, c1: int = 10) -> list[int]:
    """Channel counts [c_J, c_{J-1}, ..., c_1, c_0] of the generator's layers.

    Geometric law of the reference code: ``q = (c_J / c_1)^(1/(J-1))``,
    ``c_j = ceil(c_1 q^(j-1))`` for ``j = J-1 .. 2``, ``c_J = in_channels`` and ``c_0 = 1``.
    For J = 1 the single layer maps ``in_channels`` to 1.
    """
    if in_channels < 1 or J < 1 or c1 < 1:
        raise ValueError(f"need in_channels, J, c1 >= 1; got {in_channels}, {J}, {c1}")
    if J == 1:
        return [in_channels, 1]
    q = (in_channels / c1) ** (1.0 / (J - 1))
    middle = [math.ceil(c1 * q ** (j - 1) - 1e-9) for j in range(J - 1, 1, -1)]
    return [in_channels, *middle, c1, 1]


class _UpsampleLayer(nn.Module):
    """Zero insertion, causal convolution, then BatchNorm and ReLU unless it is the last layer."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, look_ahead: int, last: bool
    ) -> None:
        super().__init__()
        self.look_ahead = look_ahead
        self.kernel_size = kernel_size
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=2)
        # Initialise as a Conv1d(c_in, c_out, kernel_size) would be (the reference's PyTorch
        # default), i.e. uniform with bound 1 / sqrt(c_in * kernel_size).
        bound = 1.0 / math.sqrt(c_in * kernel_size)
        nn.init.uniform_(self.conv.weight, -bound, bound)
        assert self.conv.bias is not None
        nn.init.uniform_(self.conv.bias, -bound, bound)
        self.bn: nn.BatchNorm1d | None = None if last else nn.BatchNorm1d(c_out)
        self.last = last

    def upsample_conv(self, x: Tensor) -> Tensor:
        """Stride-2 transposed convolution of x (B, c_in, L) over its full support.

        Returns (B, c_out, 2 L + kernel_size - 1); index ``m + look_ahead`` holds the causal
        output ``Y[m]`` of eqs. (2)-(3) before the non-linearity, for X = x and zeros outside.
        """
        y = F.conv_transpose1d(x, self.conv.weight, self.conv.bias, stride=2, output_padding=1)
        return y

    def finish(self, y: Tensor) -> Tensor:
        """BatchNorm and ReLU (pointwise in time in eval mode)."""
        if self.bn is None:
            return y
        return torch.relu(self.bn(y))

    def forward(self, x: Tensor) -> Tensor:
        L = x.shape[-1]
        y = self.upsample_conv(x)[..., self.look_ahead : self.look_ahead + 2 * L]
        return self.finish(y)


class CausalGenerator(nn.Module):
    """MM-SIN generator: J x (zero insertion, causal conv, BatchNorm, ReLU), last layer linear.

    Parameters
    ----------
    in_channels : int
        Channels of the input frames (k_J: 973 for the paper's S_J).
    J : int
        Number of layers; one frame gives 2^J output samples.
    kernel_size : int
        Convolution length in upsampled slots (paper: 7).
    look_ahead : int
        Future upsampled slots seen by each layer (0: the paper's causal generator; the
        reference code used 3 with kernel 8).
    c1 : int
        Channels of the layer before the last one (the reference's 10).
    channels : list of int, optional
        Explicit ``[c_J, ..., c_0]`` instead of the geometric law (``c_J = in_channels``); with
        ``c_0 > 1`` the generator is a multi-channel upsampler (``features``), as the trunk of
        :class:`OscillatorGenerator` uses it.

    Notes
    -----
    ``forward``: frames (B, in_channels, T) -> waveform (B, T * 2^J); block n of the output
    depends only on frames 0 .. n + look_ahead (module docstring, docs/model.md). Layers are in
    an ``nn.ModuleList`` so ``train()``/``eval()`` reach every BatchNorm. Call ``eval()`` before
    generating; ``stream()`` requires it.
    """

    def __init__(
        self,
        in_channels: int,
        J: int = 10,
        kernel_size: int = 7,
        look_ahead: int = 0,
        c1: int = 10,
        *,
        channels: list[int] | None = None,
    ) -> None:
        super().__init__()
        if kernel_size < 2:
            raise ValueError(f"kernel_size must be >= 2, got {kernel_size}")
        if not 0 <= look_ahead <= kernel_size - 1:
            raise ValueError(
                f"look_ahead must be in [0, kernel_size - 1 = {kernel_size - 1}], got {look_ahead}"
            )
        self.in_channels = int(in_channels)
        self.J = int(J)
        self.kernel_size = int(kernel_size)
        self.look_ahead = int(look_ahead)
        self.past = self.kernel_size - 1 - self.look_ahead
        self.c1 = int(c1)
        if channels is None:
            chans = channel_schedule(self.in_channels, self.J, self.c1)
        else:
            chans = [int(c) for c in channels]
            if len(chans) != self.J + 1 or chans[0] != self.in_channels or min(chans) < 1:
                raise ValueError(
                    f"channels must list J + 1 = {self.J + 1} positive counts starting with "
                    f"in_channels = {self.in_channels}, got {channels}"
                )
        self.layers = nn.ModuleList(
            _UpsampleLayer(c_in, c_out, self.kernel_size, self.look_ahead, last=(i == self.J - 1))
            for i, (c_in, c_out) in enumerate(itertools.pairwise(chans))
        )
        self._channels = chans

    @property
    def channels(self) -> list[int]:
        """[c_J, ..., c_1, c_0]: input channels of each layer, then the output's 1."""
        return list(self._channels)

    @property
    def hop(self) -> int:
        """Output samples per input frame, 2^J."""
        return 2**self.J

    @property
    def frame_span(self) -> tuple[int, int]:
        """Offsets (lo, hi): block n depends exactly on frames n - lo .. n + hi.

        From the per-layer rule (output m needs inputs ceil((m - past) / 2) ..
        floor((m + look_ahead) / 2)) composed J times: lo = floor(past (2^J - 1) / 2^J) and
        hi = floor((1 + look_ahead) (2^J - 1) / 2^J), i.e. (past - 1, look_ahead) whenever
        1 <= past and look_ahead < 2^J.
        """
        h = self.hop
        return (self.past * (h - 1)) // h, ((1 + self.look_ahead) * (h - 1)) // h

    @property
    def receptive_field(self) -> int:
        """Number of frames one output block depends on (``kernel_size - 1`` usually).

        6 frames (6144 samples at J = 10) for the paper's kernel 7 without look-ahead.
        """
        lo, hi = self.frame_span
        return lo + hi + 1

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: (1 + look_ahead) frames = (1 + look_ahead) 2^J.

        Block n stands for x[(n-1) 2^J + 1 .. n 2^J] and can be computed once frame
        n + look_ahead (time (n + look_ahead) 2^J) exists, so its first sample comes out
        (1 + look_ahead) 2^J - 1 samples after its time: one frame for the paper's timing.
        """
        return (1 + self.look_ahead) * self.hop

    def flops_per_frame(self, *, pointwise: bool = True) -> int:
        """Floating-point operations to produce the 2^J samples of one frame (analytic).

        Each layer l (0 = first) receives 2^l samples per frame; with zero insertion skipped,
        every input sample meets each of the ``kernel_size`` taps once, so the convolution
        costs 2 * 2^l * kernel_size * c_in * c_out flops. Bias, BatchNorm (an affine map in
        eval mode) and ReLU add 4 flops per output value (bias, scale, shift, max); leave them
        out with ``pointwise=False``.
        """
        total = 0
        chans = self._channels
        for l in range(self.J):
            c_in, c_out = chans[l], chans[l + 1]
            total += 2 * 2**l * self.kernel_size * c_in * c_out
            if pointwise:
                total += 4 * 2 ** (l + 1) * c_out
        return total

    def features(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, T) -> last layer's output (B, c_0, T * 2^J)."""
        if frames.dim() != 3 or frames.shape[1] != self.in_channels:
            raise ValueError(
                f"frames must have shape (batch, {self.in_channels}, time), got "
                f"{tuple(frames.shape)}"
            )
        x = frames
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, T) -> waveform (B, T * 2^J) (channel 0 of ``features``)."""
        return self.features(frames)[:, 0]

    def stream(self, batch_size: int) -> GeneratorStreamer:
        """A streaming generator: push frames, get the matching samples (eval mode only)."""
        return GeneratorStreamer(self, batch_size)


class GeneratorStreamer:
    """Frame-by-frame generation with cached state, equal to the whole-sequence forward.

    Each layer is run as two ordinary causal convolutions of its input, one per output phase
    (zero insertion then a kernel of K taps = even outputs from the even taps, odd outputs
    from the odd taps, ceil(K / 2) taps each), and keeps its last ceil(K / 2) - 1 input
    samples; its new outputs are one matrix product of the new inputs' windows, with the
    bias and BatchNorm (folded into one affine map) and ReLU. So a push costs the same per
    frame however long the stream is, a few tensor operations per layer, and every weight is
    read once per push. Activations are held time-major (B, samples, channels), where the two
    phases interleave as a view. The layers' matrices and affine maps are made once and again
    only when a tensor they come from changes in place (:meth:`_layer_plans`).

    With ``look_ahead = 0``, ``push(frames (B, C, k))`` returns exactly ``k * 2^J`` samples:
    blocks n .. n + k - 1 of ``forward``. With ``look_ahead = a > 0`` each layer holds back
    the outputs that need future input, so the stream lags by ``a (2^J - 1)`` samples (the
    first push returns that many fewer); ``flush()`` returns the held-back tail computed with
    zero future, after which the concatenated outputs equal ``forward`` of all pushed frames
    (to float rounding: the sums run in another order than the transposed convolution's).
    """

    def __init__(self, generator: CausalGenerator, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.generator = generator
        self.batch_size = int(batch_size)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts from zero past, as ``forward`` does."""
        g = self.generator
        p = next(g.parameters())
        taps = (g.kernel_size + 1) // 2  # per output phase
        # each layer's last taps - 1 input samples, time-major; zeros before the sequence
        self._history = [p.new_zeros(self.batch_size, taps - 1, c) for c in g.channels[:-1]]
        # Transposed-convolution output index j holds Y[j - look_ahead] (see forward): the
        # first look_ahead indices of each layer stand for no output.
        self._skip = [g.look_ahead] * g.J
        self._layers: list[_UpsampleLayer] = list(g.layers)  # type: ignore[arg-type]
        # the modules' own tables of tensors (read on each push: a plain dict is fast to read,
        # nn.Module's attribute lookup is not)
        self._tables: list[dict[str, Tensor | None]] = []
        for layer in self._layers:
            self._tables.append(layer.conv._parameters)  # type: ignore[arg-type]
            if layer.bn is not None:
                self._tables += [layer.bn._parameters, layer.bn._buffers]  # type: ignore[list-item]
        self._plans: Derived[list[tuple[Tensor, Tensor | None, Tensor]]] = Derived()

    def _layer_plans(self) -> list[tuple[Tensor, Tensor | None, Tensor]]:
        """Each layer's (:meth:`_polyphase` matrix, :meth:`_affine` scale and shift), made
        again only when a tensor they are made of changes in place (an optimiser step, new
        running statistics, loaded weights, a move) or is replaced: a push then reads them as
        they are."""
        sources = [t for d in self._tables for t in d.values() if t is not None]

        def make() -> list[tuple[Tensor, Tensor | None, Tensor]]:
            with torch.no_grad():
                return [
                    (self._polyphase(la), *self._affine(la, la.conv.weight)) for la in self._layers
                ]

        return self._plans.get(sources, make)

    def _step(
        self,
        index: int,
        x_new: Tensor,
        plan: tuple[Tensor, Tensor | None, Tensor],
        *,
        final: bool = False,
    ) -> Tensor:
        """New input samples of layer ``index`` (B, k, c_in), time-major -> its newly
        determined outputs (B, n, c_out); ``final``: also those that need future input, with
        zero future."""
        matrix, scale, shift = plan
        a = self.generator.look_ahead
        if final and a > 0:  # index j < 2 n + a once (a + 1) // 2 zero inputs follow
            zeros = x_new.new_zeros(x_new.shape[0], (a + 1) // 2, x_new.shape[2])
            x_new = torch.cat([x_new, zeros], dim=1)
        k = x_new.shape[1]
        if k == 0:
            return x_new.new_zeros(self.batch_size, 0, shift.shape[0])
        B, c_in = self.batch_size, x_new.shape[2]
        full = torch.cat([self._history[index], x_new], dim=1)  # (B, taps - 1 + k, c_in)
        taps = full.shape[1] - k + 1
        self._history[index] = full[:, k:]
        # windows of taps input samples, oldest first: a view (rows overlap)
        windows = full.unfold(1, taps, 1).transpose(2, 3).reshape(B, k, taps * c_in)
        # the matrix is stored (2 c_out, taps c_in): at one frame a push the product is a
        # matrix-vector product over contiguous rows, which reads the weights ~1.6x faster
        # than over columns (the first layer's 2 MB are re-read from L3 on every push)
        y = F.linear(windows, matrix).view(B, 2 * k, -1)  # (phase, c_out) -> time
        if final:  # j < 2 n + a: the last zero input's second phase is past it when a is odd
            y = y[:, : y.shape[1] - (a % 2)]
        skip = min(self._skip[index], y.shape[1])
        if skip:
            self._skip[index] -= skip
            y = y[:, skip:]
        if scale is None:
            return y + shift
        return torch.relu_(torch.addcmul(shift, y, scale))

    def _polyphase(self, layer: _UpsampleLayer) -> Tensor:
        """The layer's kernel as one matrix (2 c_out, taps c_in), stored for ``F.linear``:
        column (s, c) holds the weights input sample n - taps + 1 + s meets in outputs 2 n
        (phase 0) and 2 n + 1 (phase 1), i.e. transposed-convolution taps
        2 (taps - 1 - s) + phase (zero past K - 1)."""
        w = layer.conv.weight.detach()  # (c_in, c_out, K)
        c_in, c_out, K = w.shape
        taps = (K + 1) // 2
        w = torch.nn.functional.pad(w, (0, 2 * taps - K))
        w = w.reshape(c_in, c_out, taps, 2).permute(2, 0, 3, 1).flip(0)
        return w.reshape(taps * c_in, 2 * c_out).t().contiguous()

    def _affine(self, layer: _UpsampleLayer, like: Tensor) -> tuple[Tensor | None, Tensor]:
        """Bias, then BatchNorm with running statistics, folded into one affine map (scale,
        shift) over the output channels; scale None for the last layer (no BatchNorm)."""
        bn = layer.bn
        with torch.no_grad():
            bias = layer.conv.bias
            if bias is None:
                bias = like.new_zeros(layer.conv.weight.shape[1])
            if bn is None:
                return None, bias.detach()
            assert bn.running_mean is not None and bn.running_var is not None
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = (bias - bn.running_mean) * scale
            if bn.bias is not None:
                shift = shift + bn.bias
        return scale, shift

    @torch.no_grad()
    def push(self, frames: Tensor) -> Tensor:
        """Feed frames (B, in_channels, k), get the newly determined samples (B, k * 2^J).

        Raises
        ------
        RuntimeError
            If the generator is in training mode (BatchNorm must use its running statistics).
        """
        return self.push_features(frames)[:, 0]

    @torch.no_grad()
    def push_features(self, frames: Tensor) -> Tensor:
        """As ``push``, all output channels: (B, c_0, k * 2^J)."""
        if self.generator.training:
            raise RuntimeError("call generator.eval() before streaming (BatchNorm must be frozen)")
        g = self.generator
        if frames.dim() != 3 or frames.shape[:2] != (self.batch_size, g.in_channels):
            raise ValueError(
                f"frames must have shape ({self.batch_size}, {g.in_channels}, k), got "
                f"{tuple(frames.shape)}"
            )
        x = frames.to(self._history[0]).transpose(1, 2)
        for i, plan in enumerate(self._layer_plans()):
            x = self._step(i, x, plan)
        return x.transpose(1, 2)

    @torch.no_grad()
    def flush(self) -> Tensor:
        """End the stream: the samples held back for look-ahead, with zero future (B, n).

        Empty for ``look_ahead = 0``. Call ``reset()`` before pushing again.
        """
        return self.flush_features()[:, 0]

    @torch.no_grad()
    def flush_features(self) -> Tensor:
        """As ``flush``, all output channels: (B, c_0, n)."""
        g = self.generator
        x = self._history[0].new_zeros(self.batch_size, 0, g.in_channels)
        for i, plan in enumerate(self._layer_plans()):
            x = self._step(i, x, plan, final=True)
        return x.transpose(1, 2)


def aligned_target(x: Tensor, J: int, frames: int, *, start: int = 0) -> Tensor:
    """The waveform samples that the generator's output for a run of frames stands for.

    Block n of ``CausalGenerator`` output stands for x[(n-1) 2^J + 1 .. n 2^J], so output
    sample m of frames ``start .. start + frames - 1`` matches x[(start - 1) 2^J + 1 + m].

    Parameters
    ----------
    x : Tensor, shape (B, time)
        Waveform whose S_J frames are 0, 1, ... (frame n at time n 2^J).
    J : int
        Scale: 2^J samples per frame.
    frames : int
        Number of frames T.
    start : int
        First frame of the run.

    Returns
    -------
    Tensor, shape (B, frames * 2^J)
        Zeros for negative times.
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, time), got {tuple(x.shape)}")
    if frames < 0 or start < 0:
        raise ValueError(f"frames and start must be >= 0, got {frames}, {start}")
    hop = 2**J
    first = (start - 1) * hop + 1
    last = (start + frames - 1) * hop  # inclusive
    if frames and last >= x.shape[-1]:
        raise ValueError(
            f"x has {x.shape[-1]} samples but frames {start}..{start + frames - 1} need "
            f"{last + 1} (frame n is at time n * 2^J = n * {hop})"
        )
    pad = max(0, -first)
    seg = x[:, max(first, 0) : last + 1]
    return F.pad(seg, (pad, 0))
