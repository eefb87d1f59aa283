"""A generator whose last stage is a bank of fixed oscillators (the ``pitched`` presets).

Why (docs/model.md, "The 64 Hz grid"): the paper's G ends in six zero-insertion layers below
its 64 Hz layer. For a steady note S_J is nearly constant from frame to frame, so every layer's
output is periodic with the period of its upsampling, and an off-grid partial needs the 64 Hz
layer to carry a phase that advances from one 64-sample grain to the next. The phase-blind loss
L_inv gives no pull towards that, and training converges to one fixed grain per 64 Hz sample:
a comb at multiples of fs / 64 whatever the note's pitch. Here the high-rate layers are
replaced by oscillators: a sinusoid at any frequency is available by construction, and L_inv's
gradient reaches its amplitude directly, since S_K's channel at that frequency sees it.

Structure. A trunk of ``m`` of the paper's layers (zero insertion, causal convolution, BatchNorm,
ReLU; the last linear), :class:`mmsin.generators.conv.CausalGenerator` with explicit channels, maps
frames (one every 2^J samples) to ``2 N`` envelope channels at rate fs / h, h = 2^(J-m). Each
pair (a_k, b_k) drives oscillator k at the fixed frequency f_k = fmin 2^(k / per_octave)
(``per_octave = 48``: a quarter of a semitone apart, so every partial lies within 12.5 cents of
one; up to 0.46 fs):

    y[s] = sum_k  a_k(s) cos(2 pi f_k s / fs) + b_k(s) sin(2 pi f_k s / fs)

where a_k(s), b_k(s) interpolate the envelopes linearly and causally: for s = i h + u
(u = 0 .. h-1), a(s) = (1 - w_u) a[i-1] + w_u a[i] with w_u = (u + 1) / h (a[-1] = 0), so
sample s needs envelope samples i - 1 and i only. ``s`` counts output samples from the start of
the sequence given to ``forward`` (the carriers' phases are fixed by position, not learned).

Timing is the paper's, as in :mod:`mmsin.generators.conv`: block n of the output (samples
n 2^J .. (n+1) 2^J - 1) stands for x[(n-1) 2^J + 1 .. n 2^J] and, with no look-ahead, depends
on frames n - lo .. n only (``frame_span``): the generator is causal. The synthesis is computed
block-wise: cos(w (i h + u)) = cos(w i h) cos(w u) - sin(w i h) sin(w u), so the envelopes are
rotated by the phase each block starts at (computed in float64) and multiplied by one fixed
(2N, h) basis of carriers over a block; nothing of size N x time is ever formed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from mmsin.generators.conv import CausalGenerator, GeneratorStreamer

__all__ = [
    "OscillatorGenerator",
    "OscillatorStreamer",
    "carrier_tables",
    "envelope_frame_span",
    "oscillator_frequencies",
    "synthesize_bank",
]


def oscillator_frequencies(
    fs: float, per_octave: int = 48, fmin: float = 27.5, fmax_ratio: float = 0.46
) -> np.ndarray:
    """Frequencies in Hz of the oscillator bank: fmin 2^(k / per_octave) up to fmax_ratio fs."""
    if not (fs > 0 and per_octave >= 1 and 0 < fmin < fmax_ratio * fs and fmax_ratio <= 0.5):
        raise ValueError(
            f"need fs > 0, per_octave >= 1, 0 < fmin < fmax_ratio * fs, fmax_ratio <= 0.5; got "
            f"fs={fs}, per_octave={per_octave}, fmin={fmin}, fmax_ratio={fmax_ratio}"
        )
    n = math.floor(per_octave * math.log2(fmax_ratio * fs / fmin) + 1e-9) + 1
    return fmin * 2.0 ** (np.arange(n) / per_octave)


def carrier_tables(freqs: np.ndarray, fs: float, h: int) -> tuple[Tensor, Tensor, Tensor]:
    """(omega (N,) float64 radians per sample, basis (2N, h) = [cos; sin](omega u), interpolation
    weights (u + 1) / h (h,)) for :func:`synthesize_bank`."""
    omega = 2 * np.pi * np.asarray(freqs, dtype=np.float64) / fs
    u = np.arange(h)
    basis = np.concatenate([np.cos(np.outer(omega, u)), np.sin(np.outer(omega, u))])
    w = (np.arange(h) + 1.0) / h
    return (
        torch.tensor(omega, dtype=torch.float64),
        torch.tensor(basis, dtype=torch.float32),
        torch.tensor(w, dtype=torch.float32),
    )


def envelope_frame_span(trunk: CausalGenerator) -> tuple[int, int]:
    """Offsets (lo, hi): output block n of a synthesis driven by ``trunk``'s output (envelope
    samples, 2^L per frame for L layers) depends exactly on frames n - lo .. n + hi.

    Block n's samples use envelope samples n 2^L - 1 .. (n + 1) 2^L - 1 (the linear
    interpolation reaches one sample back); envelope sample i needs the inputs
    ceil((i - p) / 2) .. floor((i + a) / 2) of each layer (mmsin.generators.conv), composed over the
    layers. The result does not depend on n.
    """
    p, a, m = trunk.past, trunk.look_ahead, 2 ** len(trunk.layers)
    n = 1000
    lo, hi = n * m - 1, (n + 1) * m - 1
    for _ in range(len(trunk.layers)):
        lo, hi = -((p - lo) // 2), (hi + a) // 2
    return n - lo, hi - n


def synthesize_bank(
    env: Tensor, prev: Tensor, start: int, omega: Tensor, basis: Tensor, weights: Tensor
) -> Tensor:
    """Sum of fixed oscillators driven by envelopes at rate fs / h (module docstring).

    ``y[s] = sum_k a_k(s) cos(omega_k s) + b_k(s) sin(omega_k s)`` for the output samples of
    envelope samples ``start .. start + L - 1``; ``env`` (B, 2N, L) holds the a's then the b's,
    ``prev`` (B, 2N) the envelope sample ``start - 1``; a_k, b_k are interpolated linearly
    and causally between envelope samples. Returns (B, L h).
    """
    B, n2, L = env.shape
    n = n2 // 2
    h = basis.shape[-1]
    idx = torch.arange(start, start + L, device=env.device, dtype=torch.float64) * h
    theta = torch.remainder(omega.to(env.device)[:, None] * idx[None, :], 2 * math.pi)
    c, s = torch.cos(theta).to(env.dtype), torch.sin(theta).to(env.dtype)
    before = torch.cat([prev[:, :, None].to(env.dtype), env[:, :, :-1]], dim=-1)

    def rotate(e: Tensor) -> Tensor:
        a, b = e[:, :n], e[:, n:]
        return torch.cat([a * c + b * s, b * c - a * s], dim=1)

    basis = basis.to(env)
    cur = torch.einsum("bcl,ch->blh", rotate(env), basis)
    old = torch.einsum("bcl,ch->blh", rotate(before), basis)
    w = weights.to(env)
    return (old + (cur - old) * w).reshape(B, L * h)


class OscillatorGenerator(nn.Module):
    """MM-SIN generator with an oscillator-bank output stage (module docstring).

    Parameters
    ----------
    in_channels : int
        Channels of the input frames (k_J).
    J : int
        One frame gives 2^J output samples.
    trunk_layers : int
        Number m of the paper's upsampling layers before the oscillators (1 <= m <= J); the
        envelopes run at fs / 2^(J - m) (128 Hz for m = 5, J = 10, fs = 4096).
    hidden : int
        Channels of the trunk's inner layers.
    kernel_size, look_ahead : int
        As in :class:`mmsin.generators.conv.CausalGenerator` (paper: 7 and 0).
    fs : float
        Sample rate in Hz (fixes the oscillators' frequencies).
    per_octave, fmin, fmax_ratio : see :func:`oscillator_frequencies`.
    init_scale : float
        Factor on the envelope layer's initial weights (its bias starts at 0).

    Notes
    -----
    ``forward``: frames (B, in_channels, T) -> waveform (B, T 2^J). ``stream(batch)`` gives a
    streamer equal to ``forward`` sample for sample (eval mode).
    """

    omega: Tensor
    basis: Tensor
    weights: Tensor

    def __init__(
        self,
        in_channels: int,
        J: int = 10,
        *,
        trunk_layers: int = 5,
        hidden: int = 256,
        kernel_size: int = 7,
        look_ahead: int = 0,
        fs: float = 4096.0,
        per_octave: int = 48,
        fmin: float = 27.5,
        fmax_ratio: float = 0.46,
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        if not 1 <= trunk_layers <= J:
            raise ValueError(f"trunk_layers must be in [1, J = {J}], got {trunk_layers}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        freqs = oscillator_frequencies(fs, per_octave, fmin, fmax_ratio)
        self.in_channels = int(in_channels)
        self.J = int(J)
        self.trunk_layers = int(trunk_layers)
        self.fs = float(fs)
        self.frequencies = [float(f) for f in freqs]
        self.num_oscillators = len(freqs)
        n2 = 2 * self.num_oscillators
        chans = [self.in_channels] + [int(hidden)] * (self.trunk_layers - 1) + [n2]
        self.trunk = CausalGenerator(
            self.in_channels,
            J=self.trunk_layers,
            kernel_size=kernel_size,
            look_ahead=look_ahead,
            channels=chans,
        )
        # Start quiet: the envelope layer's weights are scaled down and its bias is zero, so the
        # untrained output is ~100 times weaker than the paper's G's. A sum of 2N oscillators
        # at full initial scale is broadband noise louder than the data, and L_inv (each band
        # divided by its mean over the training set) then spends its first thousand steps
        # silencing the bands that the data leaves nearly empty.
        last = self.trunk.layers[-1]
        assert isinstance(last.conv, nn.ConvTranspose1d) and last.conv.bias is not None
        with torch.no_grad():
            last.conv.weight.mul_(init_scale)
            last.conv.bias.zero_()
        self.kernel_size = int(kernel_size)
        self.look_ahead = int(look_ahead)
        self.h = 2 ** (self.J - self.trunk_layers)
        omega, basis, weights = carrier_tables(freqs, fs, self.h)
        self.register_buffer("omega", omega, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.register_buffer("weights", weights, persistent=False)

    # ----------------------------------------------------------------------------- timing
    @property
    def hop(self) -> int:
        """Output samples per input frame, 2^J."""
        return 2**self.J

    @property
    def layers(self) -> nn.ModuleList:
        """The trunk's upsampling layers (what the training loop's zero state masks)."""
        return self.trunk.layers

    @property
    def channels(self) -> list[int]:
        """The trunk's [c_J, ..., envelope channels]."""
        return self.trunk.channels

    @property
    def frame_span(self) -> tuple[int, int]:
        """Offsets (lo, hi): block n depends exactly on frames n - lo .. n + hi
        (:func:`envelope_frame_span` of the trunk)."""
        return envelope_frame_span(self.trunk)

    @property
    def receptive_field(self) -> int:
        """Number of frames one output block depends on."""
        lo, hi = self.frame_span
        return lo + hi + 1

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples, (1 + look_ahead) 2^J as for the paper's G."""
        return (1 + self.look_ahead) * self.hop

    def flops_per_frame(self, *, pointwise: bool = True) -> int:
        """Floating-point operations per frame: the trunk's, then the synthesis (rotation of the
        envelopes, 6 flops per pair and envelope sample; two (2N x h) products per envelope
        sample; the interpolation, 3 flops per output sample)."""
        m = 2**self.trunk_layers
        n2 = 2 * self.num_oscillators
        synth = m * (3 * n2 + 2 * 2 * n2 * self.h) + 3 * self.hop
        return self.trunk.flops_per_frame(pointwise=pointwise) + synth

    # ----------------------------------------------------------------------------- synthesis
    def synthesize(self, env: Tensor, prev: Tensor, start: int) -> Tensor:
        """Oscillator output for envelope samples ``start .. start + L - 1``.

        Parameters
        ----------
        env : Tensor, shape (B, 2N, L)
            Envelope samples (cos amplitudes, then sin amplitudes) at rate fs / h.
        prev : Tensor, shape (B, 2N)
            Envelope sample ``start - 1`` (zeros at the start of a sequence).
        start : int
            Index of env's first sample since the start of the sequence.

        Returns
        -------
        Tensor, shape (B, L h)
        """
        return synthesize_bank(env, prev, start, self.omega, self.basis, self.weights)

    def forward(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, T) -> waveform (B, T * 2^J)."""
        env = self.trunk.features(frames)
        prev = env.new_zeros(env.shape[0], env.shape[1])
        return self.synthesize(env, prev, 0)

    def stream(self, batch_size: int) -> OscillatorStreamer:
        """A streaming generator: push frames, get the matching samples (eval mode only)."""
        return OscillatorStreamer(self, batch_size)


class OscillatorStreamer:
    """Frame-by-frame generation equal to :meth:`OscillatorGenerator.forward`.

    The trunk streams as the paper's G does (:class:`mmsin.generators.conv.GeneratorStreamer`); the
    synthesis keeps the last envelope sample and the number of envelope samples seen.
    ``push``/``flush``/``reset`` behave as the paper's streamer's.
    """

    def __init__(self, generator: OscillatorGenerator, batch_size: int) -> None:
        self.generator = generator
        self.batch_size = int(batch_size)
        self._trunk = GeneratorStreamer(generator.trunk, batch_size)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._trunk.reset()
        p = next(self.generator.parameters())
        self._prev = p.new_zeros(self.batch_size, 2 * self.generator.num_oscillators)
        self._seen = 0

    def _synth(self, env: Tensor) -> Tensor:
        if env.shape[-1] == 0:
            return env.new_zeros(self.batch_size, 0)
        y = self.generator.synthesize(env, self._prev, self._seen)
        self._prev = env[:, :, -1]
        self._seen += env.shape[-1]
        return y

    @torch.no_grad()
    def push(self, frames: Tensor) -> Tensor:
        """Feed frames (B, in_channels, k), get the newly determined samples."""
        return self._synth(self._trunk.push_features(frames))

    @torch.no_grad()
    def flush(self) -> Tensor:
        """End the stream: the samples held back for look-ahead (empty without look-ahead)."""
        return self._synth(self._trunk.flush_features())
