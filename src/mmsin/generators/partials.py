"""A generator that makes pitch by construction (the ``partials`` head of the ``pitched`` preset).

Why (docs/model.md, section 6): the paper's G ends in zero-insertion layers whose output, for
a steady note, is periodic with the period of its 64 Hz layer, and the phase-blind L_inv gives
no pull towards an off-grid partial. An oscillator bank fixes the grid (``oscillators`` head,
:mod:`mmsin.generators.oscillators`) but a generic trunk that must learn, note by note, which of 293
oscillators to drive does not generalise to pitches it was not trained on. This head builds
both facts into the architecture:

1. **Read S_J's first order back as a scalogram.** The ``paper`` variant's order 1 is linear in
   the averaged scalogram u[lambda1, n] = (phi_J * |x * psi_lambda1|)(n 2^J) (eq. 8: Hann-windowed
   Fourier atoms over half-overlapping windows along lambda1), so u is recovered exactly by
   the pseudo-inverse of that fixed matrix (the ``time`` variant holds u as is). The
   generator receives S_J / norm; ``norm`` (a buffer, set from the training features) undoes
   that. u has Q bins per octave (108 for J = 10, Q = 12), one per first-order wavelet.
2. **A network shared across log-frequency.** log(1 + u / eps) goes through ``freq_layers``
   2-D convolutions over (log-frequency, frames), causal along frames, the same weights at
   every frequency, so what it learns at one pitch holds at every other (a transposition of
   the input by one bin moves its output by one bin: tested). ``context`` channels computed
   from all of S_J per frame (loudness, timbre) are added to every frequency.
3. **Oscillators tied to the bins.** The last layer gives ``per_bin`` log-amplitudes per bin,
   for oscillators at f_b 2^((r - (per_bin - 1)/2) / (Q per_bin)), r = 0 .. per_bin - 1 (f_b:
   the bin's wavelet centre): ``per_bin = 4`` puts every partial within 12.5 cents of one.
   Amplitude A = eps exp(o + log(1 + u_b / eps)) (a skip connection: at o = 0 the oscillator
   takes its bin's level), at most ``max_amplitude``. Each oscillator has a fixed phase offset
   (a hash of its index) so that they do not all peak at time 0.
4. **Time.** A_k[n] (one per frame) is interpolated linearly across block n between frames n - 1
   and n (block n stands for the 2^J samples up to frame n: docs/model.md, section 1), then
   multiplied by exp(g), a gain with the attack and decay inside the frame, computed at
   fs / 2^(J - trunk_layers) by a small trunk of the paper's layers
   (:class:`mmsin.generators.conv.CausalGenerator`, one output channel); the envelopes drive the
   bank as in :func:`mmsin.generators.oscillators.synthesize_bank`.

Causal: block n depends on frames n - lo .. n only (``frame_span``). Zero state: every layer
(front end, context, 2-D layers, trunk) is listed in ``layers``, so the training loop's zero
state at clip starts masks them all (mmsin.training.objective.zero_state).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmsin.generators.conv import CausalGenerator
from mmsin.generators.oscillators import carrier_tables, envelope_frame_span, synthesize_bank
from mmsin.generators.peaks import wavelet_responses

__all__ = [
    "LearnedFrontend",
    "PartialGenerator",
    "PartialStreamer",
    "first_order_frontend",
    "joint_first_order",
]


def first_order_frontend(scattering: Any) -> tuple[np.ndarray, np.ndarray]:
    """The fixed map from S_J frames to the averaged scalogram u, and its bins' frequencies.

    Parameters
    ----------
    scattering : mmsin.scattering.TimeFrequencyScattering
        ``paper`` (order 1 linear in u: its pseudo-inverse) or ``time`` (u is order 1).

    Returns
    -------
    matrix : ndarray (n1, num_channels), float64
        u = matrix @ S_J (rows in increasing frequency).
    hz : ndarray (n1,)
        Centre frequency of each bin in Hz, increasing.
    """
    from mmsin.scattering.timefrequency import frequency_windows, real_fourier_atoms

    meta = scattering.meta()
    fam = scattering.family
    n1 = len(fam.lambda1)
    C = len(meta["order"])
    hz = np.asarray(fam.xi1, dtype=np.float64) * scattering.fs / (2 * math.pi)
    order1 = np.flatnonzero(meta["order"] == 1)
    if scattering.variant == "time":
        matrix = np.zeros((n1, C))
        matrix[np.arange(n1), order1] = 1.0
    elif scattering.variant == "paper":
        P = scattering.P
        windows = frequency_windows(n1, P)
        atoms = real_fourier_atoms(P)
        rows = [(0, "re")] + [(k, p) for k in range(1, P // 2) for p in ("re", "im")]
        rows.append((P // 2, "re"))
        M = np.zeros((len(order1), n1))
        for r, c in enumerate(order1):
            i = rows.index((int(meta["fourier_bin"][c]), str(meta["part"][c])))
            idx = windows[int(meta["window"][c])]
            ok = idx >= 0
            np.add.at(M[r], idx[ok], atoms[i][ok])
        matrix = np.zeros((n1, C))
        matrix[:, order1] = np.linalg.pinv(M)
    else:
        raise ValueError(
            f"no exact map from S_J's first order back to the scalogram for the "
            f"{scattering.variant!r} variant (its order 1 is a modulus): use "
            f"LearnedFrontend (mmsin.assembly does for 'joint-real')"
        )
    order = np.argsort(hz)
    return matrix[order], hz[order]


def joint_first_order(scattering: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``joint-real`` order 1 of a steady sound as a function of its scalogram u.

    For u constant in time, order-1 channel c (window w, Fourier bin k) is
    ``|sum_p atoms[k, p] u[windows[w, p]]|`` (phi_J of a constant modulus).

    Returns
    -------
    channels : ndarray (n_order1,) int
        The order-1 channels of S_J.
    operator : ndarray (n_order1, n1) complex
        order1 = |operator @ u|, u's bins in increasing frequency.
    hz : ndarray (n1,)
        The bins' centre frequencies, increasing.
    """
    from mmsin.scattering.timefrequency import fourier_atoms, frequency_windows

    if scattering.variant != "joint-real":
        raise ValueError(
            f"joint_first_order needs the 'joint-real' variant, got {scattering.variant!r}"
        )
    meta = scattering.meta()
    fam = scattering.family
    n1, P = len(fam.lambda1), scattering.P
    hz = np.asarray(fam.xi1, dtype=np.float64) * scattering.fs / (2 * math.pi)
    channels = np.flatnonzero(meta["order"] == 1)
    windows, atoms = frequency_windows(n1, P), fourier_atoms(P, P // 2 + 1)
    A = np.zeros((channels.size, n1), dtype=np.complex128)
    for r, c in enumerate(channels):
        idx = windows[int(meta["window"][c])]
        ok = idx >= 0
        np.add.at(A[r], idx[ok], atoms[int(meta["fourier_bin"][c])][ok])
    order = np.argsort(hz)
    return channels, A[:, order], hz[order]


class LearnedFrontend(nn.Module):
    """S_J / norm frames -> log(1 + u / eps) where order 1 is a modulus (``joint-real``).

    The ``joint-real`` order 1, |h_xi * u| over half-overlapping windows of P bins, keeps 119
    moduli of the 108 bins of u (J = 10, Q = P = 12): no fixed matrix reads u back (the best
    linear map leaves 61 % error on harmonic tones, docs/experiments.md). A per-frame MLP does:
    log(order1 / s + 1e-4) (s: the frame's largest order-1 value, so that the map is
    scale-free) -> ``hidden`` -> ``hidden`` -> log(u / s + 1e-4), at most log(16). :meth:`pretrain`
    fits it on synthetic harmonic tones and two-note mixtures (u from the wavelets' closed-form
    responses) and then fixes it (no gradient: the moment-matching pass feeds it VAR frames
    unlike any tone, whose gradients blew the first trainings up).
    """

    ready: Tensor
    channels: Tensor

    def __init__(
        self, channels: np.ndarray, operator: np.ndarray, eps: float, hidden: int = 512
    ) -> None:
        super().__init__()
        self.register_buffer(
            "channels", torch.as_tensor(channels, dtype=torch.long), persistent=False
        )
        self.operator = np.asarray(operator)
        self.num_bins = int(self.operator.shape[1])
        self.eps = float(eps)
        n = len(channels)
        self.net = nn.Sequential(
            nn.Conv1d(n, hidden, 1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 1),
            nn.GELU(),
            nn.Conv1d(hidden, self.num_bins, 1),
        )
        # saved with the weights: a loaded model is never pretrained again
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self.register_load_state_dict_post_hook(LearnedFrontend._after_load)

    @staticmethod
    def _after_load(module: nn.Module, keys: Any) -> None:
        if isinstance(module, LearnedFrontend) and bool(module.ready):  # fitted: fixed
            module.net.requires_grad_(False)

    def log_u(self, order1: Tensor) -> tuple[Tensor, Tensor]:
        """(B, n_order1, T) moduli -> (B, n1, T) log(u / s + 1e-4), and s (B, 1, T)."""
        s = order1.amax(dim=1, keepdim=True).clamp_min(1e-12)
        return self.net(torch.log(order1 / s + 1e-4)), s

    def forward(self, raw: Tensor) -> Tensor:
        v, s = self.log_u(raw[:, self.channels])
        # no bin of u exceeds its windows' order-1 value / the smallest Hann tap (1/13 at
        # P = 12): frames unlike any tone (the VAR's, in the moment-matching pass) stay bounded
        u = s * F.relu(torch.exp(torch.clamp(v, max=math.log(16.0))) - 1e-4)
        return torch.log1p(u / self.eps)

    def pretrain(self, scattering: Any, steps: int = 3000, seed: int = 0) -> float:
        """Fit the MLP on synthetic steady sounds; returns the held-out relative error of u."""
        fs = float(scattering.fs)
        rng = np.random.default_rng(seed)
        grid = 20.0 * 2.0 ** (np.arange(0.0, 12 * np.log2(0.5 * fs / 20.0), 1 / 20) / 12)
        H = 0.5 * wavelet_responses(scattering, grid)
        level = np.sqrt(H.sum(1) / H.sum(1).max())

        def tone(f0: float, slope: float, inharm: float) -> np.ndarray:
            h = np.arange(1, 64)
            f = f0 * h * np.sqrt(1 + inharm * h**2)
            keep = f < 0.48 * fs
            a = h[keep] ** (-slope) * np.exp(0.5 * rng.standard_normal(int(keep.sum())))
            i = np.clip(np.searchsorted(grid, f[keep]), 0, grid.size - 1)
            return np.sqrt(((H[:, i] * a) ** 2).sum(1))

        us: list[np.ndarray] = []
        while len(us) < 20000:
            u = tone(
                27.5 * 2 ** rng.uniform(0, 6.2), rng.uniform(0.3, 2.5), 10 ** rng.uniform(-6, -3)
            )
            if rng.random() < 0.3:
                other = tone(27.5 * 2 ** rng.uniform(0, 6.2), rng.uniform(0.3, 2.5), 1e-5)
                u = np.sqrt(u**2 + (rng.uniform(0.2, 1) * other) ** 2)
            u = u + rng.uniform(0, 0.02) * u.max() * rng.random() * level
            if np.isfinite(u).all() and u.max() > 0:
                us.append(u / u.max())
        U = torch.tensor(np.array(us), dtype=torch.float32)
        X = torch.tensor(np.abs(np.array(us) @ self.operator.T), dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        n_fit = 18000
        for _ in range(steps):
            i = torch.randint(0, n_fit, (256,), generator=gen)
            v, s = self.log_u(X[i, :, None])
            loss = ((v[..., 0] - torch.log(U[i] / s[..., 0] + 1e-4)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            v, s = self.log_u(X[n_fit:, :, None])
            est = (s * F.relu(torch.exp(v) - 1e-4))[..., 0]
            err = ((est - U[n_fit:]).norm(dim=1) / U[n_fit:].norm(dim=1)).median()
        self.ready.fill_(True)
        self.net.requires_grad_(False)
        return float(err)


def _phase_offsets(n: int) -> np.ndarray:
    """Fixed phase offsets of n oscillators in [0, 2 pi): the golden-ratio sequence."""
    return (2 * math.pi * ((np.arange(n) * 0.6180339887498949) % 1.0)).astype(np.float64)


class _Frontend(nn.Module):
    """S_J / norm frames (B, C, T) -> log(1 + u / eps) (B, n1, T)."""

    matrix: Tensor

    def __init__(self, matrix: np.ndarray, eps: float) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.tensor(matrix, dtype=torch.float32), persistent=False)
        self.eps = float(eps)

    def forward(self, raw: Tensor) -> Tensor:
        u = torch.einsum("fc,bct->bft", self.matrix.to(raw), raw)
        return torch.log1p(F.relu(u) / self.eps)


class _FreqLayer(nn.Module):
    """Conv2d over (log-frequency, frames): 'same' along frequency, causal along frames."""

    def __init__(self, c_in: int, c_out: int, kf: int, kt: int, relu: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, (kf, kt))
        self.kf, self.kt, self.relu = kf, kt, relu

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (self.kt - 1, 0, self.kf // 2, (self.kf - 1) // 2))
        y = self.conv(x)
        return F.relu(y) if self.relu else y


class _Context(nn.Module):
    """Per-frame channels from all of S_J, broadcast over frequency later."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 1)

    def forward(self, frames: Tensor) -> Tensor:
        return torch.tanh(self.conv(frames))


class _Amplitude(nn.Module):
    """Log-amplitudes per bin (B, R, F, T) and log(1 + u / eps) (B, F, T) -> the kept
    oscillators' amplitudes eps exp(o + lu), bounded, (B, N, T)."""

    keep: Tensor

    def __init__(self, eps: float, log_max: float, keep: np.ndarray) -> None:
        super().__init__()
        self.eps, self.log_max = eps, log_max
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)

    def forward(self, o: Tensor, lu: Tensor) -> Tensor:
        B, R, Fb, T = o.shape
        log_a = (o + lu[:, None]).permute(0, 2, 1, 3).reshape(B, Fb * R, T)[:, self.keep]
        return self.eps * torch.exp(torch.clamp(log_a, max=self.log_max))


class PartialGenerator(nn.Module):
    """MM-SIN generator with a log-frequency-shared network driving oscillators (module doc).

    Parameters
    ----------
    in_channels : int
        k_J, channels of the S_J frames.
    frontend : ndarray (n1, in_channels) or LearnedFrontend
        :func:`first_order_frontend`'s matrix (u = matrix @ S_J), or a module that reads u
        (``joint-real``: :class:`LearnedFrontend`).
    bin_hz : ndarray (n1,)
        Increasing centre frequencies of u's bins (Hz).
    J : int
        One frame gives 2^J output samples.
    fs : float
        Sample rate in Hz.
    per_bin : int
        Oscillators per bin of u.
    channels, depth, freq_kernel, time_kernel : int
        The shared 2-D network: ``depth`` layers of ``channels`` channels, kernels of
        ``freq_kernel`` bins by ``time_kernel`` frames (causal).
    context : int
        Per-frame channels from all of S_J added to every frequency (0: none).
    trunk_layers, trunk_hidden, kernel_size : int
        The gain trunk (paper's layers): envelope rate fs / 2^(J - trunk_layers).
    fmin, fmax_ratio : float
        Oscillators outside [fmin, fmax_ratio fs] are left out.
    eps : float
        Level (in S_J's units, i.e. the audio's) below which u counts as silence.
    max_amplitude : float
        Upper bound of one oscillator's amplitude.

    Notes
    -----
    ``forward``: frames (B, in_channels, T) -> waveform (B, T 2^J). ``set_input_norm(norm)``
    stores S_J's per-channel normaliser (the generator sees S_J / norm).
    """

    input_norm: Tensor
    omega: Tensor
    basis: Tensor
    weights: Tensor
    cos_phase: Tensor
    sin_phase: Tensor

    def __init__(
        self,
        in_channels: int,
        frontend: np.ndarray | nn.Module,
        bin_hz: np.ndarray,
        J: int = 10,
        *,
        fs: float = 4096.0,
        per_bin: int = 4,
        channels: int = 32,
        depth: int = 4,
        freq_kernel: int = 9,
        time_kernel: int = 3,
        context: int = 4,
        trunk_layers: int = 5,
        trunk_hidden: int = 64,
        kernel_size: int = 7,
        fmin: float = 27.5,
        fmax_ratio: float = 0.46,
        eps: float = 1e-4,
        max_amplitude: float = 4.0,
    ) -> None:
        super().__init__()
        module: nn.Module | None = None
        matrix = np.zeros((0, in_channels))
        if isinstance(frontend, nn.Module):
            module = frontend
            n_bins = int(getattr(module, "num_bins"))  # noqa: B009
        else:
            matrix = np.asarray(frontend, dtype=np.float64)
            if matrix.ndim != 2 or matrix.shape[1] != in_channels:
                raise ValueError(f"frontend must be (bins, {in_channels}), got {matrix.shape}")
            n_bins = int(matrix.shape[0])
        bin_hz = np.asarray(bin_hz, dtype=np.float64)
        if bin_hz.shape != (n_bins,) or not np.all(np.diff(bin_hz) > 0):
            raise ValueError("bin_hz must give one increasing frequency per frontend row")
        for name, v in (("per_bin", per_bin), ("channels", channels), ("depth", depth)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if freq_kernel < 1 or time_kernel < 1:
            raise ValueError(f"kernels must be >= 1, got {freq_kernel} x {time_kernel}")
        if not 1 <= trunk_layers <= J:
            raise ValueError(f"trunk_layers must be in [1, J = {J}], got {trunk_layers}")
        if not (eps > 0 and max_amplitude > eps):
            raise ValueError(f"need 0 < eps < max_amplitude, got {eps}, {max_amplitude}")
        self.in_channels = int(in_channels)
        self.J = int(J)
        self.fs = float(fs)
        self.per_bin = int(per_bin)
        self.num_bins = n_bins
        self.trunk_layers = int(trunk_layers)
        self.eps = float(eps)
        self.log_max = math.log(max_amplitude / eps)
        self.time_kernel = int(time_kernel)
        self.look_ahead = 0

        # Oscillators: per_bin per bin, centred on the bin's frequency (log-spaced within it).
        step = np.log2(bin_hz[1:] / bin_hz[:-1]).mean()  # octaves between bins (1 / Q)
        r = (np.arange(self.per_bin) - (self.per_bin - 1) / 2) / self.per_bin
        all_hz = (bin_hz[:, None] * 2.0 ** (r[None, :] * step)).reshape(-1)
        keep = np.flatnonzero((all_hz >= fmin) & (all_hz <= fmax_ratio * fs))
        if keep.size == 0:
            raise ValueError(f"no oscillator between fmin = {fmin} Hz and {fmax_ratio} fs")
        self.frequencies = [float(f) for f in all_hz[keep]]
        self.num_oscillators = int(keep.size)
        # Not saved with the weights: checkpoints carry S_J's normaliser themselves, and every
        # place that builds this generator passes it (mmsin.assembly.build_generator).
        self.register_buffer("input_norm", torch.ones(self.in_channels), persistent=False)

        self.frontend = module if module is not None else _Frontend(matrix, eps)
        self.context = _Context(self.in_channels, context) if context > 0 else None
        chans = [1 + max(context, 0)] + [int(channels)] * depth
        self.freq_layers = nn.ModuleList(
            _FreqLayer(a, b, int(freq_kernel), self.time_kernel, relu=True)
            for a, b in itertools.pairwise(chans)
        )
        self.out = _FreqLayer(int(channels), self.per_bin, int(freq_kernel), 1, relu=False)
        with torch.no_grad():  # start near "each oscillator at its bin's level / per_bin"
            self.out.conv.weight.mul_(0.1)
            assert self.out.conv.bias is not None
            self.out.conv.bias.fill_(-math.log(2 * self.per_bin))
        self.amp = _Amplitude(self.eps, self.log_max, keep)
        self.trunk = CausalGenerator(
            self.in_channels,
            J=self.trunk_layers,
            kernel_size=kernel_size,
            channels=[self.in_channels] + [int(trunk_hidden)] * (self.trunk_layers - 1) + [1],
        )
        last = self.trunk.layers[-1].conv
        assert isinstance(last, nn.ConvTranspose1d) and last.bias is not None
        with torch.no_grad():  # gain exp(g) starts at 1
            last.weight.mul_(0.01)
            last.bias.zero_()

        self.m = 2**self.trunk_layers  # envelope samples per frame
        self.h = 2 ** (self.J - self.trunk_layers)  # output samples per envelope sample
        self._register_carriers()

    def _register_carriers(self) -> None:
        """The fixed oscillators' carrier tables and phase offsets (buffers)."""
        omega, basis, weights = carrier_tables(np.asarray(self.frequencies), self.fs, self.h)
        self.register_buffer("omega", omega, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.register_buffer("weights", weights, persistent=False)
        phase = _phase_offsets(self.num_oscillators)
        self.register_buffer("cos_phase", torch.tensor(np.cos(phase), dtype=torch.float32), False)
        self.register_buffer("sin_phase", torch.tensor(np.sin(phase), dtype=torch.float32), False)

    # ----------------------------------------------------------------------------- set-up
    def set_input_norm(self, norm: Tensor) -> None:
        """Store S_J's per-channel normaliser (the frames G sees are S_J / norm)."""
        norm = torch.as_tensor(norm, dtype=torch.float32).reshape(-1)
        if norm.shape != (self.in_channels,) or not bool(torch.all(norm > 0)):
            raise ValueError(f"norm must hold {self.in_channels} positive values")
        self.input_norm.copy_(norm.to(self.input_norm.device))

    # ----------------------------------------------------------------------------- timing
    @property
    def hop(self) -> int:
        """Output samples per input frame, 2^J."""
        return 2**self.J

    @property
    def layers(self) -> nn.ModuleList:
        """Every module whose output runs along time (what the zero state masks)."""
        extra: list[nn.Module] = [self.frontend, *self.freq_layers, self.out, self.amp]
        if self.context is not None:
            extra.append(self.context)
        return nn.ModuleList([*self.trunk.layers, *extra])

    @property
    def frame_span(self) -> tuple[int, int]:
        """(lo, hi): block n depends on frames n - lo .. n (hi = 0: causal).

        The 2-D layers reach (time_kernel - 1) frames back each, and block n interpolates the
        amplitudes of frames n - 1 and n; the gain trunk's span is the paper's layers'.
        """
        lo_freq = len(self.freq_layers) * (self.time_kernel - 1) + 1
        return max(lo_freq, envelope_frame_span(self.trunk)[0]), 0

    @property
    def receptive_field(self) -> int:
        """Number of frames one output block depends on."""
        return self.frame_span[0] + 1

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: one frame, 2^J, as the paper's causal G."""
        return self.hop

    def network_flops(self, *, pointwise: bool = True) -> int:
        """Floating-point operations per frame of the front end, context, 2-D layers and gain
        trunk (analytic)."""
        total = 2 * self.num_bins * self.in_channels
        if self.context is not None:
            total += 2 * self.in_channels * self.context.conv.out_channels
        for layer in [*self.freq_layers, self.out]:
            w = layer.conv.weight
            total += 2 * self.num_bins * int(w.numel())
            if pointwise:
                total += 2 * self.num_bins * int(w.shape[0])
        return total + self.trunk.flops_per_frame(pointwise=pointwise)

    def flops_per_frame(self, *, pointwise: bool = True) -> int:
        """Floating-point operations per frame (analytic): :meth:`network_flops`, then the
        envelopes and the synthesis (as the oscillator head's)."""
        total = self.network_flops(pointwise=pointwise)
        n = self.num_oscillators
        total += self.m * n * 6  # interpolation across the frame, gain, phase offsets
        total += self.m * (3 * 2 * n + 2 * 2 * 2 * n * self.h) + 3 * self.hop
        return total

    # ----------------------------------------------------------------------------- forward
    def amplitudes(self, frames: Tensor) -> Tensor:
        """Oscillator amplitudes per frame, (B, num_oscillators, T)."""
        if frames.dim() != 3 or frames.shape[1] != self.in_channels:
            raise ValueError(
                f"frames must have shape (batch, {self.in_channels}, time), got "
                f"{tuple(frames.shape)}"
            )
        lu = self.frontend(frames * self.input_norm.to(frames)[:, None])  # (B, F, T)
        x = lu[:, None]
        if self.context is not None:
            ctx = self.context(frames)[:, :, None, :].expand(-1, -1, lu.shape[1], -1)
            x = torch.cat([x, ctx], dim=1)
        for layer in self.freq_layers:
            x = layer(x)
        return self.amp(self.out(x), lu)  # type: ignore[no-any-return]

    def envelopes(self, frames: Tensor) -> Tensor:
        """Cos/sin envelopes (B, 2N, T m) at fs / 2^(J - trunk_layers)."""
        A = self.amplitudes(frames)
        prev = F.pad(A, (1, 0))[..., :-1]
        w = (torch.arange(self.m, device=A.device, dtype=A.dtype) + 1) / self.m
        env = prev[..., None] * (1 - w) + A[..., None] * w  # (B, N, T, m)
        env = env.reshape(A.shape[0], A.shape[1], -1)
        gain = torch.exp(torch.clamp(self.trunk.features(frames), -12.0, 4.0))  # (B, 1, T m)
        env = env * gain
        c, s = self.cos_phase.to(env)[:, None], self.sin_phase.to(env)[:, None]
        return torch.cat([env * c, -env * s], dim=1)

    def render(self, frames: Tensor, first_frame: int = 0) -> Tensor:
        """The waveform of ``frames`` as if they were frames ``first_frame ..`` of a sequence
        (the carriers' phases count from that sequence's start)."""
        env = self.envelopes(frames)
        prev = env.new_zeros(env.shape[0], env.shape[1])
        return synthesize_bank(
            env, prev, first_frame * self.m, self.omega, self.basis, self.weights
        )

    def forward(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, T) -> waveform (B, T 2^J)."""
        return self.render(frames, 0)

    def stream(self, batch_size: int) -> PartialStreamer:
        """A streaming generator: push frames, get the matching samples (eval mode only)."""
        return PartialStreamer(self, batch_size)


class PartialStreamer:
    """Frame-by-frame generation equal to :meth:`PartialGenerator.forward`.

    Keeps the last ``lo + 1`` frames (``frame_span``): the new blocks depend on nothing older,
    so rendering that window and keeping its last blocks gives the whole sequence's samples.
    """

    def __init__(self, generator: PartialGenerator, batch_size: int) -> None:
        if generator.training:
            raise RuntimeError("call generator.eval() before streaming")
        self.generator = generator
        self.batch_size = int(batch_size)
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        p = next(self.generator.parameters())
        self._history = p.new_zeros(self.batch_size, self.generator.in_channels, 0)
        self._seen = 0

    def _window(self, frames: Tensor) -> Tensor:
        """The kept frames followed by the new ones."""
        return torch.cat([self._history, frames.to(self._history)], dim=-1)

    @torch.no_grad()
    def push(self, frames: Tensor) -> Tensor:
        """Feed frames (B, in_channels, k), get their k 2^J samples."""
        k = frames.shape[-1]
        if k == 0:
            return frames.new_zeros(self.batch_size, 0)
        g = self.generator
        window = self._window(frames)
        first = self._seen - self._history.shape[-1]
        y = g.render(window, first)[:, -k * g.hop :]
        keep = g.frame_span[0] + 1
        self._history = window[..., -keep:]
        self._seen += k
        return y

    @torch.no_grad()
    def flush(self) -> Tensor:
        """End the stream (no look-ahead: nothing is held back)."""
        return self._history.new_zeros(self.batch_size, 0)
