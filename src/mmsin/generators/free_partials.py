"""The partials generator with free frequencies (``generator.frequencies = "free"``, the
``pitched`` preset): every partial at the frequency the encoder locates it at.

Why (docs/model.md, section 6): the fixed-frequency partials head (:mod:`mmsin.generators.partials`)
puts four oscillators in each semitone bin of u, so a partial that falls between two of them comes
back as a beating pair, a detuned or stretched (inharmonic) partial cannot be represented, and
unused oscillators keep a floor. Phase-blind losses give weak gradients in frequency, so the
frequency is not left to them: it is read from the embedding itself.

1. **Controls from u** (S_J's first order read back as the averaged scalogram, as in the fixed
   head). A partial of amplitude a at frequency f gives u_b = (a / 2) |psi_hat_b(f)|; at each
   local maximum b of u along the bins, a parabola through log u at b - 1, b, b + 1 has its
   vertex at d in [-1/2, 1/2] bins and a level v; the tone's frequency and amplitude follow
   from d by polynomials fitted once on the wavelets' closed-form responses
   (:func:`mmsin.generators.peaks.peak_calibration`: 0.2 cents median over a sweep of pure
   tones).
   One oscillator per bin, active only where its bin is a peak above the silence level eps:
   every other oscillator is exactly silent. With ``responses`` (the shipped head), each
   partial is then located again with its neighbours' shares of u taken out, and partials the
   peaks missed are found (:mod:`mmsin.generators.peaks`).
2. **The network refines amplitudes only**: the shared 2-D network (transposition-equivariant,
   as in the fixed head) outputs one log-gain o per bin, zero at initialisation and bounded by
   2 tanh(. / 2) (+-17 dB), so the untrained generator is the estimate itself;
   A = exp(min(log a + o, log max_amplitude)).
   Frequencies are not learned (they carry no gradient).
3. **Time**: amplitudes and frequencies are interpolated linearly across each block between
   frames n - 1 and n, the phase integrated sample by sample in closed form
   (:mod:`mmsin.generators.synthesis`), restarted at a fixed offset after a silent frame, and
   carried across streaming pushes. The gain trunk of the fixed head (attack and decay inside a
   frame) multiplies the sum.
4. **Noise**: ``noise_bands`` octave bands of fixed noise (a table read by absolute sample
   position, so streams equal whole sequences), gains per frame from S_J by a 1 x 1 layer,
   started near silence (exp(-9)). An octave of noise cannot stand in for a partial. With
   ``noise_power`` (:func:`noise_band_power`, what the shipped head is built with) no band is
   louder than what the located partials leave of u in its octave
   (:func:`~mmsin.generators.peaks.unexplained_power`, plus u's silence level eps in each bin,
   which S_J does not resolve): the 1 x 1 layer, fitted on sound fonts, is linear in S_J and
   saturated at unit gain on some real guitar frames S_J holds no noise in.

Timing: the controls of block n depend on frames n - lo .. n (``frame_span``, as the fixed head's);
the phase is a state carried from the last silence, so a frame can change the phase (not the
amplitudes) of later blocks. Streaming
(:class:`mmsin.generators.partials_stream.FreePartialStreamer`) keeps that state and every layer's
cached past, so a push computes its new frames only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from mmsin.generators.base import Derived
from mmsin.generators.noise_room import NOISE_TABLE, NoiseRoom, noise_band_power
from mmsin.generators.partials import (
    PartialGenerator,
    _FreqLayer,
    _Frontend,
    _phase_offsets,
)
from mmsin.generators.peaks import (
    DecayLag,
    PeakCalibration,
    ResponseTable,
    ShareLookup,
    refine_peaks,
    share_lookup,
)
from mmsin.generators.synthesis import (
    band_noise,
    band_noise_tables,
    band_shapes,
    block_phases,
    envelope_knots,
    interpolate_blocks,
    parabolic_peaks,
    polyval,
    sum_oscillators,
)

if TYPE_CHECKING:
    from mmsin.generators.partials_stream import FreePartialStreamer

__all__ = [
    "NOISE_TABLE",
    "Controls",
    "FreePartialGenerator",
    "NoiseRoom",
    "State",
    "noise_band_power",
]

NOISE_LOG_EPS = 1e-3  # log S_J's floor in the noise branch's input (S_J / norm is ~1)


@dataclass
class Controls:
    """Frame-rate controls of :class:`FreePartialGenerator`.

    amp (B, N, T): oscillator amplitudes; omega (B, N, T): radians per sample, float64 as the
    estimate gives them (rounded to float32, a compiled push of four frames parted from the
    eager stream by 4e-5 of the signal on an AVX2 CPU with one thread: the fused graph did not
    keep the rounding, and the block phases, sums of omega, drifted; docs/model.md); gain
    (B, 1, T m): the trunk's gain at fs / 2^(J - trunk_layers); noise (B, nb, T): noise band
    gains."""

    amp: Tensor
    omega: Tensor
    gain: Tensor
    noise: Tensor
    # with generator.sub_frames = P: each frame's envelope, P multipliers of mean 1 per
    # oscillator (B, N, T, P) and per noise band (B, nb, T, P)
    amp_env: Tensor | None = None
    noise_env: Tensor | None = None

    def last(self, phase: Tensor) -> State:
        """The state after these frames: their last values, and the phase the next block
        starts at."""
        amp_knot = noise_knot = None
        if self.amp_env is not None and self.noise_env is not None:
            amp_knot = self.amp[..., -1] * self.amp_env[..., -1, -1]
            noise_knot = self.noise[..., -1] * self.noise_env[..., -1, -1]
        return State(
            self.amp[..., -1],
            self.omega[..., -1],
            self.gain[..., -1],
            self.noise[..., -1],
            phase,
            amp_knot,
            noise_knot,
        )

    def tail(self, k: int, m: int) -> Controls:
        """The last k frames (m gain samples per frame)."""
        env = [e[..., -k:, :] if e is not None else None for e in (self.amp_env, self.noise_env)]
        return Controls(
            self.amp[..., -k:],
            self.omega[..., -k:],
            self.gain[..., -k * m :],
            self.noise[..., -k:],
            *env,
        )


@dataclass
class State:
    """Controls of the frame before a block (B, N), (B, N, float64), (B, 1), (B, nb) and the
    phase (B, N, float64) the next block starts at."""

    amp: Tensor
    omega: Tensor
    gain: Tensor
    noise: Tensor
    phase: Tensor
    # with sub-frame envelopes: the last envelope point of the oscillators and noise bands (the
    # frame's amplitude times its last multiplier); None: the frame's amplitude
    amp_knot: Tensor | None = None
    noise_knot: Tensor | None = None


class _FreeAmplitude(nn.Module):
    """Per-bin raw log-gain r (B, 1, F, T), log-amplitude estimate and peak mask (B, F, T) ->
    the kept oscillators' amplitudes (B, N, T): exp(min(est + o, log_max)) at peaks, 0
    elsewhere, with o = bound tanh(r / bound): the network refines the estimate by at most
    ``bound`` nepers either way (+-17 dB for 2), it can neither silence a partial the encoder
    sees nor blow one up (unbounded, training spiked to 20 times its loss and then learned to
    mute sustained notes). ``keep``: the oscillators' bins, a contiguous run. ``per_frame``:
    o is replaced by its mean over the frame's peaks, one gain for all its partials, whose
    relative levels are then those u gives (``generator.amp_refine = "frame"``);
    ``generation_per_frame`` the same for generated frames (``generating=True``; None: as
    ``per_frame``).

    ``generation_gain`` (N,): one fixed gain per oscillator that only generation applies
    (``generating=True``), fitted so that generated music has the training set's moments
    (:func:`mmsin.training.generation_gain.fit_generation_gain`); ones until fitted, and in
    weights saved before it existed."""

    generation_gain: Tensor

    def __init__(
        self,
        log_max: float,
        keep: slice,
        bound: float = 2.0,
        per_frame: bool = False,
        generation_per_frame: bool | None = None,
    ) -> None:
        super().__init__()
        self.log_max = log_max
        self.bound = float(bound)
        self.keep = keep
        self.per_frame = bool(per_frame)
        self.generation_per_frame = (
            self.per_frame if generation_per_frame is None else bool(generation_per_frame)
        )
        self.register_buffer("generation_gain", torch.ones(keep.stop - keep.start))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # weights saved before the gain existed generate without one
        key = prefix + "generation_gain"
        state_dict.setdefault(key, torch.ones_like(self.generation_gain))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, r: Tensor, est: Tensor, peak: Tensor, generating: bool = False) -> Tensor:
        peak = peak[:, self.keep]
        o = self.bound * torch.tanh(r[:, 0, self.keep] / self.bound)
        if self.generation_per_frame if generating else self.per_frame:
            # one refinement per frame: the mean over its peaks
            w = peak.to(o.dtype)
            o = (o * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp(min=1.0)
        # at most exp(log_max): finite everywhere, so the gradient off the peaks is 0, not NaN
        log_a = torch.clamp(est[:, self.keep] + o, max=self.log_max)
        a = torch.where(peak, torch.exp(log_a), 0.0)
        return a * self.generation_gain.to(a.dtype)[:, None] if generating else a


@dataclass(frozen=True)
class _Float64:
    """What the estimate and the phases read in float64, converted once (the buffers follow
    the module's dtype: ``.float()`` makes them float32)."""

    matrix: Tensor | None  # (F, C): the front end's, for u (None: a learned front end)
    poly: Tensor  # (D + 1, 2): the calibration's semitones and log-gain polynomials
    top_poly: Tensor  # (D + 1, 2): the top bin's
    lookup: ShareLookup | None  # the response table, laid out for refine_peaks
    bin_hz: Tensor  # (N,)
    phase_offset: Tensor  # (N,)
    noise_weights: Tensor | None  # (nb, F): each band's share of each bin (band_shapes ** 2)
    noise_power: Tensor | None  # (nb,): noise_band_power
    noise_least: Tensor | None  # (nb,): the room's floor, the gain of eps in every bin


class _NoiseGains(nn.Module):
    """Per-frame gains of the noise bands from all of S_J or from the log scalogram, started
    near silence; ``fitted`` is set once :func:`mmsin.generators.noise_floor.fit_noise_floor`
    has fitted them to a training set's floor (kept across ``--init``)."""

    fitted: Tensor

    def __init__(self, c_in: int, bands: int, log_max: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, bands, 1)
        self.log_max = log_max
        self.register_buffer("fitted", torch.zeros((), dtype=torch.uint8))
        with torch.no_grad():
            self.conv.weight.mul_(0.01)
            assert self.conv.bias is not None
            self.conv.bias.fill_(-9.0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # weights saved before the flag existed were never fitted
        state_dict.setdefault(prefix + "fitted", torch.zeros((), dtype=torch.uint8))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, frames: Tensor) -> Tensor:
        # at most exp(0) = 1: one band of unit-RMS noise as loud as a full-scale signal (the
        # moment-matching pass feeds G frames unlike any clip's, and an unbounded gain there
        # blew the loss up)
        return torch.exp(torch.clamp(self.conv(frames), -30.0, 0.0))


class FreePartialGenerator(PartialGenerator):
    """The partials generator with frequencies read from u (module docstring).

    Parameters
    ----------
    in_channels, frontend, bin_hz, J : as :class:`mmsin.generators.partials.PartialGenerator`.
    calibration : PeakCalibration
        :func:`mmsin.generators.peaks.peak_calibration`'s polynomials.
    noise_bands : int
        Octave bands of the noise branch (0: none).
    noise_input : {"sj", "log"}
        What the noise branch reads: S_J / norm (as trained before 2026-12-06), or
        log(S_J / norm + NOISE_LOG_EPS) beside the log scalogram log(1 + u / eps), whose 1 x 1
        layer :func:`~mmsin.generators.noise_floor.fit_noise_floor` fits to a training set's
        floor.
    responses : ResponseTable, optional
        :func:`mmsin.generators.peaks.response_table` of the bank: with it, each partial is
        located with its neighbours' shares removed (:func:`~mmsin.generators.peaks.refine_peaks`);
        without it, by the plain parabola.
    refine_rounds : int
        Refinement passes (0: the plain parabola).
    fill_gaps : bool
        After the refinement, fill one missing member of an evenly spaced run of located
        partials (:func:`~mmsin.generators.peaks.refine_peaks`, ``gaps``).
    amp_refine : {"bin", "frame"}
        The network refines each partial's amplitude (``"bin"``), or all of a frame's by one
        gain, its refinements' mean over the frame's peaks (``"frame"``: the partials keep the
        relative levels u gives; docs/model.md, section 6).
    generation_amp_refine : {"same", "bin", "frame"}
        The same for generated frames (within :meth:`generating_at`); ``"same"``: as
        ``amp_refine``. Those frames also take the generation gain (``amp.generation_gain``,
        :mod:`mmsin.training.generation_gain`).
    decay_lag : DecayLag, optional
        :func:`mmsin.generators.peaks.decay_lag` of the bank: with it, a partial's level at a
        frame where its bin falls is lowered against the frame's others by what the lag of
        S_J's filters adds to it (:meth:`lead_decays`); without it, each frame plays the
        levels u reads, which lag.
    noise_power : ndarray (noise_bands,), optional
        :func:`noise_band_power` of the bank: with it (and ``responses`` and a linear front
        end), each band's gain is at most the room u leaves for noise in its octave
        (:meth:`estimate`); without it the gains are not bounded by u.
    **kwargs
        The shared network, trunk and limits, as
        :class:`~mmsin.generators.partials.PartialGenerator` (``per_bin`` is 1 here).

    Notes
    -----
    ``forward``: frames (B, in_channels, T) -> waveform (B, T 2^J); ``controls(frames)`` the
    frame-rate controls; ``stream(batch)`` a streamer equal to ``forward``.
    """

    semitones_poly: Tensor
    log_gain_poly: Tensor
    top_semitones_poly: Tensor
    response_log: Tensor
    response_shift: Tensor
    top_log_gain_poly: Tensor
    bin_hz: Tensor
    phase_offset: Tensor
    noise_tables: Tensor
    decay_table: Tensor | None
    decay_reach: Tensor | None
    envelope: _FreqLayer  # with sub_frames only
    noise_envelope: nn.Conv1d

    def __init__(
        self,
        in_channels: int,
        frontend: np.ndarray | nn.Module,
        bin_hz: np.ndarray,
        J: int = 10,
        *,
        calibration: PeakCalibration,
        noise_bands: int = 6,
        noise_input: str = "sj",
        responses: ResponseTable | None = None,
        refine_rounds: int = 2,
        fill_gaps: bool = False,
        noise_power: np.ndarray | None = None,
        amp_refine: str = "bin",
        sub_frames: int = 0,
        generation_amp_refine: str = "same",
        decay_lag: DecayLag | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs["per_bin"] = 1
        # a partial of a signal in [-1, 1] has an amplitude of at most 1
        kwargs.setdefault("max_amplitude", 1.0)
        super().__init__(in_channels, frontend, bin_hz, J, **kwargs)
        if noise_bands < 0:
            raise ValueError(f"noise_bands must be >= 0, got {noise_bands}")
        fmin = float(kwargs.get("fmin", 27.5))
        fmax = float(kwargs.get("fmax_ratio", 0.46)) * self.fs
        hz = np.asarray(bin_hz, dtype=np.float64)
        # one oscillator per bin that can hold a peak (not the first bin)
        keep = np.flatnonzero((hz >= fmin) & (hz <= fmax) & (np.arange(len(hz)) > 0))
        if keep.size == 0:
            raise ValueError(f"no first-order bin between fmin = {fmin} Hz and {fmax} Hz")
        self.frequencies = [float(f) for f in hz[keep]]
        self.num_oscillators = int(keep.size)
        self.register_buffer("bin_hz", torch.tensor(hz[keep]), persistent=False)
        for name in ("semitones", "log_gain", "top_semitones", "top_log_gain"):
            poly = torch.tensor(np.asarray(getattr(calibration, name), dtype=np.float64))
            self.register_buffer(f"{name}_poly", poly, persistent=False)
        self.top_rise = float(calibration.top_rise)
        if refine_rounds < 0:
            raise ValueError(f"refine_rounds must be >= 0, got {refine_rounds}")
        self.refine_rounds = int(refine_rounds) if responses is not None else 0
        self.fill_gaps = bool(fill_gaps)
        self.responses = responses
        if responses is not None:
            self.register_buffer(
                "response_log", torch.tensor(responses.log_response), persistent=False
            )
            self.register_buffer("response_shift", torch.tensor(responses.shift), persistent=False)
        offsets = torch.tensor(_phase_offsets(self.num_oscillators), dtype=torch.float64)
        self.register_buffer("phase_offset", offsets, persistent=False)
        # the network's output: one log-gain per bin, zero at first (the estimate as it is)
        c_last = self.out.conv.in_channels
        self.out = _FreqLayer(c_last, 1, self.out.kf, 1, relu=False)
        with torch.no_grad():
            self.out.conv.weight.zero_()
            assert self.out.conv.bias is not None
            self.out.conv.bias.zero_()
        # the bins between fmin and fmax: a contiguous run (the bins' frequencies increase)
        self.keep = slice(int(keep[0]), int(keep[-1]) + 1)
        if amp_refine not in ("bin", "frame"):
            raise ValueError(f"amp_refine must be 'bin' or 'frame', got {amp_refine!r}")
        if generation_amp_refine not in ("same", "bin", "frame"):
            raise ValueError(
                "generation_amp_refine must be 'same', 'bin' or 'frame', got "
                f"{generation_amp_refine!r}"
            )
        gen_refine = amp_refine if generation_amp_refine == "same" else generation_amp_refine
        self.amp = _FreeAmplitude(  # type: ignore[assignment]
            self.log_max,
            self.keep,
            per_frame=amp_refine == "frame",
            generation_per_frame=gen_refine == "frame",
        )
        self.keep_bins = keep
        self._float64_cache: Derived[_Float64] = Derived()
        if noise_input not in ("sj", "log"):
            raise ValueError(f"noise_input must be 'sj' or 'log', got {noise_input!r}")
        self.noise_bands = int(noise_bands)
        self.noise_input = noise_input
        c_noise = in_channels if noise_input == "sj" else in_channels + self.num_bins
        self.noise = _NoiseGains(c_noise, noise_bands, 0.0) if noise_bands else None
        tables = band_noise_tables(self.fs, NOISE_TABLE, max(noise_bands, 1))
        self.register_buffer("noise_tables", torch.tensor(tables), persistent=False)
        if sub_frames < 0 or (sub_frames and self.hop % sub_frames):
            raise ValueError(f"sub_frames must be >= 0 and divide {self.hop}, got {sub_frames}")
        self.sub_frames = int(sub_frames)
        # softmax temperature of those envelopes (1: as trained; :meth:`envelopes_at`)
        self.envelope_temperature = 1.0
        # rendering generated frames: the oscillators take generation_gain (:meth:`generating_at`)
        self.generating = False
        if self.sub_frames:
            # envelopes inside the frame: P logits per bin (from the network's last features)
            # and per noise band (from the noise branch's input), zero at first: flat
            P = self.sub_frames
            self.envelope = _FreqLayer(c_last, P, self.out.kf, 1, relu=False)
            self.noise_envelope = nn.Conv1d(c_noise, max(noise_bands, 1) * P, 1)
            for conv in (self.envelope.conv, self.noise_envelope):
                with torch.no_grad():
                    conv.weight.zero_()
                    assert conv.bias is not None
                    conv.bias.zero_()
        table = reach = None  # lead_decays
        self.decay_step = 1.0
        if decay_lag is not None:
            if decay_lag.log_gain.shape[0] != self.num_bins or decay_lag.log_gain.shape[1] < 2:
                raise ValueError(
                    f"decay_lag must have {self.num_bins} rows and two columns or more, got "
                    f"{decay_lag.log_gain.shape}"
                )
            table = torch.tensor(decay_lag.log_gain, dtype=torch.float64)
            reach = torch.tensor(decay_lag.reach, dtype=torch.float64)
            self.decay_step = float(decay_lag.step)
        self.register_buffer("decay_table", table, persistent=False)
        self.register_buffer("decay_reach", reach, persistent=False)
        self.noise_room = noise_power is not None and self.noise_bands > 0
        if self.noise_room:
            power = np.asarray(noise_power, dtype=np.float64)
            if power.shape != (self.noise_bands,) or not (power > 0).all():
                raise ValueError(
                    f"noise_power must hold {self.noise_bands} positive values, got {power}"
                )
            # a bin's power goes to the bands in proportion to their power responses there
            weights = band_shapes(hz, self.fs, self.noise_bands) ** 2
            weights = weights / weights.sum(axis=0, keepdims=True)
            self.register_buffer("noise_weights", torch.tensor(weights), persistent=False)
            self.register_buffer("noise_power", torch.tensor(power), persistent=False)

    def _register_carriers(self) -> None:
        """No fixed carriers: the phases are integrated from the frequencies read from u."""

    def _float64(self) -> _Float64:
        """The float64 constants (:class:`_Float64`), made once and again only when a buffer
        they come from is replaced (``.float()``, ``.to()``) or changed in place: a frame then
        skips their conversions and the response table's layout."""
        names = ["semitones_poly", "log_gain_poly", "top_semitones_poly", "top_log_gain_poly"]
        names += ["bin_hz", "phase_offset"]
        if self.responses is not None:
            names += ["response_log", "response_shift"]
        if self.noise_room:
            names += ["noise_weights", "noise_power"]
        sources = [getattr(self, n) for n in names]
        if isinstance(self.frontend, _Frontend):
            sources.append(self.frontend.matrix)

        def make() -> _Float64:
            with torch.inference_mode(False), torch.no_grad():  # usable later by autograd
                b = {n: getattr(self, n).double() for n in names}
                lookup = None
                if self.responses is not None:
                    lookup = share_lookup(
                        b["response_log"],
                        b["response_shift"],
                        self.responses.reach,
                        self.responses.step,
                    )
                least = None
                if self.noise_room:  # the gain of u's silence level eps in every bin
                    w, power = b["noise_weights"], b["noise_power"]
                    least = torch.sqrt(w.sum(dim=1) * self.eps**2 / power)
                return _Float64(
                    self.frontend.matrix.double() if isinstance(self.frontend, _Frontend) else None,
                    torch.stack([b["semitones_poly"], b["log_gain_poly"]], dim=1),
                    torch.stack([b["top_semitones_poly"], b["top_log_gain_poly"]], dim=1),
                    lookup,
                    b["bin_hz"],
                    b["phase_offset"],
                    b.get("noise_weights"),
                    b.get("noise_power"),
                    least,
                )

        return self._float64_cache.get(sources, make)

    # ----------------------------------------------------------------------------- timing
    @property
    def layers(self) -> nn.ModuleList:
        """Every module whose output runs along time (what the zero state masks)."""
        extra = [self.noise] if self.noise is not None else []
        return nn.ModuleList([*super().layers, *extra])

    def flops_per_frame(self, *, pointwise: bool = True) -> int:
        """Floating-point operations per frame (analytic): the network and trunk, the peaks
        (12 per bin), then per sample and oscillator the phase (3), the carrier (cos, counted
        as 10) and the interpolated amplitude (4), and the noise bands (3 per band and
        sample)."""
        total = self.network_flops(pointwise=pointwise) + 12 * self.num_bins
        return total + self.hop * (17 * self.num_oscillators + 3 * self.noise_bands + 4)

    # ----------------------------------------------------------------------------- controls
    def estimate(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, NoiseRoom | None]:
        """The per-frame part of the controls: each frame's values from that frame alone.

        Parameters
        ----------
        frames : Tensor (B, in_channels, T)
            S_J / norm.

        Returns
        -------
        lu : Tensor (B, F, T)
            log(1 + u / eps), the shared network's input.
        est : Tensor (B, F, T)
            Log-amplitude estimate of the partial at each bin (meaningful at peaks).
        peak : Tensor (B, F, T) bool
            The bins that hold a partial.
        omega : Tensor (B, N, T) float64
            The kept oscillators' frequencies, radians per sample.
        room : NoiseRoom or None
            What bounds the noise bands' gains (``noise_power`` given; None otherwise).
        """
        if frames.dim() != 3 or frames.shape[1] != self.in_channels:
            raise ValueError(
                f"frames must have shape (batch, {self.in_channels}, time), got "
                f"{tuple(frames.shape)}"
            )
        raw = frames * self.input_norm.to(frames)[:, None]
        lu = self.frontend(raw)  # log(1 + u / eps), (B, F, T)
        with torch.no_grad():
            k = self._float64()
            if k.matrix is not None:
                # u in float64 straight from S_J: the refinement subtracts shares of u from
                # u, so float32 rounding (which differs with the number of frames in a call)
                # would part a stream from the whole sequence
                u = torch.relu(k.matrix @ raw.double())
            else:
                u = self.eps * torch.expm1(lu)  # ReLU(u), read back from the front end
            # floored two decades below the silence level: a silent neighbour bounds the
            # parabola instead of sending it to log(0)
            log_u = torch.log(torch.clamp(u, min=0.01 * self.eps))
            floor = math.log(self.eps)
            peak, d, level = parabolic_peaks(log_u, floor)
            semis_gain = polyval(k.poly, d.double())  # (B, F, T, 2)
            semis, est = semis_gain[..., 0], level + semis_gain[..., 1].to(level)
            # the top bin: located by its rise over the bin below (peak_calibration)
            rise = (log_u[:, -1] - log_u[:, -2]).double()
            peak[:, -1] = (rise > 0) & (log_u[:, -1] > floor)
            top = polyval(k.top_poly, torch.clamp(rise, 0.0, self.top_rise))
            semis[:, -1] = top[..., 0]
            est[:, -1] = log_u[:, -1] + torch.clamp(top[..., 1], max=2.0).to(est)
            if self.refine_rounds and k.lookup is not None:
                peak, semis, est = refine_peaks(
                    u,
                    peak,
                    semis,
                    est,
                    lookup=k.lookup,
                    poly=k.poly,
                    floor=floor,
                    rounds=self.refine_rounds,
                    top=(k.top_poly, self.top_rise),
                    gaps=self.fill_gaps,
                )
            room = None
            if self.noise_room and k.lookup is not None and k.matrix is not None:
                assert k.noise_weights is not None and k.noise_power is not None
                assert k.noise_least is not None
                room = NoiseRoom(
                    u,
                    peak,
                    semis,
                    est,
                    k.lookup,
                    k.noise_weights,
                    k.noise_power,
                    k.noise_least,
                    self.eps,
                )
            est = est.to(lu.dtype)
            semis = semis[:, self.keep]
            hz = k.bin_hz[:, None] * torch.exp2(semis / 12)
            omega = (2 * math.pi / self.fs) * torch.clamp(hz, max=self.fs / 2)
        return lu, est, peak, omega, room

    def lead_decays(
        self, est: Tensor, peak: Tensor, before: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """The log-amplitude estimate ``est`` (B, F, T) with each falling partial's level taken
        back, against the frame's others, by what the lag of S_J's filters adds to it
        (``decay_lag``; unchanged without it).

        S_J's filters are causal, so u reads a partial decaying as exp(-r t) too high by
        G_b(r) (:func:`mmsin.generators.peaks.decay_lag`: about its level D_b samples
        earlier, 620 at 1.7 kHz to 1,900 at 28 Hz), while the synthesis reaches frame n's level
        at the end of block n: the partial sounds late, its level against a slower one too
        high (piano partials decay faster the higher they are). Where a bin peaks in frame n
        and in the frame before and its estimate falls by f = est[n - 1] - est[n] > 0 nepers
        (r 2^J for an exponential, whose every frame reads high by the same G_b), its level is
        lowered by log G_b(f / 2^J) (the table interpolated linearly, f at most its reach):
        exact for exponentials. A rise is left as it is: an onset or a beat, which no
        exponential describes (rises led the same way overshot: the recorded Steinway notes'
        partial levels 0.63 -> 0.51 dB off, falls alone 0.38; a scratch measure).

        Then every level of the frame is raised by one factor so that its partials' energy
        (the sum of exp(2 est) over its peaks) is what u read: the correction moves the
        partials against one another and leaves each frame's level to the network, whose
        per-frame gain, trained on lagged readings, already takes it back (lowered as well,
        the loudness error rose on every recorded set: 2.56 -> 2.95 dB on the Steinway notes;
        docs/model.md, section 6).

        ``before``: the previous frame's raw ``est`` and ``peak`` (B, F) (a stream's last
        frame; None: the sequence starts here, as ``forward`` has it). Causal: frame n and
        frame n - 1 only.
        """
        table, reach = self.decay_table, self.decay_reach
        if table is None or reach is None:
            return est
        if before is None:
            before = (est.new_zeros(est.shape[:2]), torch.zeros_like(peak[..., 0]))
        prev = torch.cat([before[0][..., None].to(est), est[..., :-1]], dim=-1)
        was = torch.cat([before[1][..., None], peak[..., :-1]], dim=-1)
        fall = torch.where(peak & was, prev - est, 0.0).double()
        fall = torch.minimum(torch.clamp(fall, min=0.0), reach[:, None])
        pos = fall / self.decay_step
        i0 = torch.clamp(pos.floor(), max=table.shape[1] - 2).long()
        w = pos - i0
        rows = torch.arange(table.shape[0], device=est.device)[:, None]
        log_gain = table[rows, i0] * (1 - w) + table[rows, i0 + 1] * w  # (B, F, T)
        # the frame's partial energy kept: log-sum-exp over its peaks, before and after
        e = torch.where(peak, 2 * est.double(), -math.inf)
        keep = 0.5 * (
            torch.logsumexp(e, dim=1, keepdim=True)
            - torch.logsumexp(e - 2 * log_gain, dim=1, keepdim=True)
        )
        keep = torch.nan_to_num(keep, nan=0.0, posinf=0.0, neginf=0.0)  # frames with no peak
        return est - (log_gain - keep).to(est)

    def noise_features(self, frames: Tensor, lu: Tensor) -> Tensor:
        """What the noise branch reads: ``frames`` (B, in_channels, T), or with
        ``noise_input = "log"`` the log scalogram ``lu`` (B, F, T) and log(frames + eps),
        (B, F + in_channels, T)."""
        if self.noise_input == "sj":
            return frames
        return torch.cat([lu, torch.log(torch.relu(frames) + NOISE_LOG_EPS)], dim=1)

    def noise_gains(self, frames: Tensor, lu: Tensor, room: NoiseRoom | None = None) -> Tensor:
        """The noise bands' gains per frame (B, noise_bands, T), each frame's from itself,
        bounded by ``room`` (:meth:`estimate`) where given."""
        if self.noise is None:
            return frames.new_zeros(frames.shape[0], 0, frames.shape[-1])
        gains: Tensor = self.noise(self.noise_features(frames, lu))
        return gains if room is None else room.bound(gains)

    def controls(self, frames: Tensor) -> Controls:
        """Frame-rate controls of ``frames`` (B, in_channels, T)."""
        lu, est, peak, omega, room = self.estimate(frames)
        x = lu[:, None]
        if self.context is not None:
            ctx = self.context(frames)[:, :, None, :].expand(-1, -1, lu.shape[1], -1)
            x = torch.cat([x, ctx], dim=1)
        for layer in self.freq_layers:
            x = layer(x)
        amp = self.amp(self.out(x), self.lead_decays(est, peak), peak, self.generating)
        gain = torch.exp(torch.clamp(self.trunk.features(frames), -12.0, 4.0))
        noise = self.noise_gains(frames, lu, room)
        c = Controls(amp, omega, gain, noise)
        if self.sub_frames:
            c.amp_env, c.noise_env = self.inner_envelopes(self.envelope(x), frames, lu)
        return c

    def inner_envelopes(
        self, logits: Tensor, frames: Tensor, lu: Tensor, temperature: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """The envelopes inside each frame (``sub_frames`` = P): the envelope layer's logits
        (B, P, F, T) and the noise branch's input -> multipliers of mean 1, P softmax(logits /
        temperature) over the P points, of the oscillators (B, N, T, P) and the noise bands
        (B, nb, T, P). ``temperature`` (default :attr:`envelope_temperature`, 1 as trained)
        above 1 softens the shapes, ``inf`` makes them flat (amplitudes linear across the frame,
        the knots' mean kept)."""
        tau = self.envelope_temperature if temperature is None else float(temperature)
        P = self.sub_frames
        B, T = frames.shape[0], frames.shape[-1]
        raw = self.noise_envelope(self.noise_features(frames, lu)).reshape(B, -1, P, T)
        amp_logits = logits[:, :, self.keep].permute(0, 2, 3, 1)  # (B, N, T, P)
        noise_logits = raw.permute(0, 1, 3, 2)[:, : self.noise_bands]  # (B, nb, T, P)
        if math.isinf(tau):
            return torch.ones_like(amp_logits), torch.ones_like(noise_logits)
        if tau != 1.0:
            amp_logits, noise_logits = amp_logits / tau, noise_logits / tau
        return P * torch.softmax(amp_logits, dim=-1), P * torch.softmax(noise_logits, dim=-1)

    def envelopes_at(self, temperature: float) -> AbstractContextManager[None]:
        """Within the block, the envelopes inside the frame at softmax ``temperature``
        (:meth:`inner_envelopes`; a stream takes the temperature in force when it is made),
        checked on the call. What :meth:`mmsin.model.MMSIN.generate` renders generated frames
        with (``generator.generation_temperature``)."""
        tau = float(temperature)
        if not tau > 0:
            raise ValueError(f"the envelope temperature must be > 0 (inf: flat), got {tau}")
        return self._envelopes_at(tau)

    @contextmanager
    def _envelopes_at(self, tau: float) -> Iterator[None]:
        before = self.envelope_temperature
        self.envelope_temperature = tau
        try:
            yield
        finally:
            self.envelope_temperature = before

    def generating_at(self, temperature: float = 1.0) -> AbstractContextManager[None]:
        """Within the block, G renders generated frames: its envelopes inside the frame at
        softmax ``temperature`` (:meth:`envelopes_at`; 1 only without them) and its oscillators
        times ``amp.generation_gain``. What :meth:`mmsin.model.MMSIN.generate`, the streamed
        generation and L_MM's pass render with; a stream keeps what is in force when it is
        made. Checked on the call."""
        tau = float(temperature)
        if not self.sub_frames and tau != 1.0:
            raise ValueError(
                f"envelope temperature {tau}: this generator has no envelopes inside the frame "
                "(generator.sub_frames = 0)"
            )
        return self._generating_at(self.envelopes_at(tau))

    @contextmanager
    def _generating_at(self, envelopes: AbstractContextManager[None]) -> Iterator[None]:
        before = self.generating
        self.generating = True
        try:
            with envelopes:
                yield
        finally:
            self.generating = before

    def zero_state(self, batch: int, like: Tensor) -> State:
        """The state before a sequence's first frame: silence (the trunk's gain there is
        exp(0) = 1, as under the training loop's zero state)."""
        n, nb = self.num_oscillators, self.noise_bands
        z = like.new_zeros
        knots = (z(batch, n), z(batch, nb)) if self.sub_frames else (None, None)
        return State(
            z(batch, n),
            z(batch, n, dtype=torch.float64),  # the frequencies, as the estimate gives them
            like.new_ones(batch, 1),
            z(batch, nb),
            self.phase_offset.double().expand(batch, n).clone(),  # float64, as State has it
            *knots,
        )

    def synthesize(
        self, c: Controls, state: State, first_sample: int | Tensor
    ) -> tuple[Tensor, State]:
        """Controls of T frames and the state before them -> waveform (B, T 2^J), state after
        (``first_sample``: where the noise tables are read, :func:`band_noise`)."""
        h = self.hop
        start, om_from, phase_next = block_phases(
            c.omega,
            c.amp > 0,
            state.omega,
            state.amp > 0,
            state.phase,
            self._float64().phase_offset,
            h,
        )
        if c.amp_env is None or c.noise_env is None:
            y = sum_oscillators(c.amp, state.amp, c.omega, om_from, start, h)  # (B, T, h)
            if self.noise is not None:
                y = y + band_noise(c.noise, state.noise, self.noise_tables, first_sample, h)
        else:  # P points a frame: the controls at P times the frame rate, linear between them
            P = self.sub_frames
            amp = envelope_knots(c.amp, state.amp, c.amp_env)
            amp_prev = state.amp if state.amp_knot is None else state.amp_knot
            y = sum_oscillators(amp, amp_prev, c.omega, om_from, start, h, sub=P)
            if self.noise is not None:
                gains = envelope_knots(c.noise, state.noise, c.noise_env)
                prev = state.noise if state.noise_knot is None else state.noise_knot
                y = y + band_noise(gains, prev, self.noise_tables, first_sample, h // P).reshape(
                    y.shape
                )
        B, T = y.shape[0], y.shape[1]
        hh = self.h  # output samples per gain sample
        g = interpolate_blocks(c.gain, state.gain, hh).reshape(B, T, h)
        return (y * g).reshape(B, T * h), c.last(phase_next)

    # ----------------------------------------------------------------------------- forward
    def amplitudes(self, frames: Tensor) -> Tensor:
        """Oscillator amplitudes per frame, (B, num_oscillators, T)."""
        return self.controls(frames).amp

    def render(self, frames: Tensor, first_frame: int = 0) -> Tensor:
        """The waveform of ``frames`` as if they were frames ``first_frame ..`` of a sequence
        that was silent before them (the noise table is read from that position)."""
        c = self.controls(frames)
        state = self.zero_state(frames.shape[0], c.amp)
        return self.synthesize(c, state, first_frame * self.hop)[0]

    def forward(self, frames: Tensor) -> Tensor:
        """Frames (B, in_channels, T) -> waveform (B, T 2^J)."""
        return self.render(frames, 0)

    def stream(  # type: ignore[override]
        self, batch_size: int, compiled: bool = False
    ) -> FreePartialStreamer:
        """A streaming generator with cached state: push frames, get the matching samples
        (eval mode only; ``compiled``: each push runs one graph made by ``torch.compile``;
        :mod:`mmsin.generators.partials_stream`)."""
        from mmsin.generators.partials_stream import FreePartialStreamer

        return FreePartialStreamer(self, batch_size, compiled)
