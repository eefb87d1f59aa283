"""Model assembly: the modules of a configuration, built the same way for training and use.

A :class:`mmsin.config.Config` names every part of MM-SIN; these functions turn it into
modules. Both :mod:`mmsin.training` (to train) and :class:`mmsin.model.MMSIN` (to load and
generate) build through them, so a checkpoint always rebuilds the network it was trained as,
and loading a model never imports the training loop.

- :func:`build_scattering`: the fixed encoder S_J (paper eq. 8).
- :func:`build_scalogram`: the loss scalogram S_K of eq. (5).
- :func:`build_generator`: the causal generator G.
- :func:`restore_var`: the whitening L (a fitted VAR) from its saved buffers.
- :func:`context_frames`: how many S_J frames G needs around a training segment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from mmsin.config import Config

if TYPE_CHECKING:
    from mmsin.generators.base import GeneratorHead

__all__ = [
    "build_generator",
    "build_scalogram",
    "build_scattering",
    "context_frames",
    "restore_var",
]


_NOISE_POWER: dict[tuple[Any, ...], Any] = {}  # noise_band_power per encoder and band count


def build_scattering(cfg: Config) -> Any:
    """The fixed encoder S_J of ``cfg.scattering`` (paper eq. 8)."""
    from mmsin.scattering import TimeFrequencyScattering

    s = cfg.scattering
    return TimeFrequencyScattering(
        J=s.J, Q=s.Q, P=s.P, variant=s.variant, fs=s.fs, oversampling=s.oversampling
    )


def build_scalogram(cfg: Config) -> Any:
    """The loss scalogram S_K of ``cfg.loss`` (first-order scattering averaged over 2^K)."""
    from mmsin.scattering import Scalogram

    return Scalogram(K=cfg.loss.K, Q=cfg.loss.Q, wavelet=cfg.loss.wavelet, fs=cfg.scattering.fs)


def build_generator(cfg: Config, in_channels: int, norm: Tensor | None = None) -> Any:
    """The causal generator G of ``cfg.generator`` for ``in_channels`` = k_J S_J channels: the
    paper's :class:`~mmsin.generators.conv.CausalGenerator`, for ``head = "oscillators"`` the
    :class:`~mmsin.generators.oscillators.OscillatorGenerator`, for ``head = "partials"`` the
    :class:`~mmsin.generators.partials.PartialGenerator` (``frequencies = "free"``: the
    :class:`~mmsin.generators.free_partials.FreePartialGenerator`). ``norm`` (k_J,): S_J's
    per-channel normaliser (G sees S_J / norm); the partials heads need it to read S_J's first
    order back as a scalogram, the others ignore it.

    Every head built here satisfies :class:`mmsin.generators.base.GeneratorHead` (checked)."""
    from mmsin.generators.base import GeneratorHead

    gen = _build_head(cfg, in_channels, norm)
    if not isinstance(gen, GeneratorHead):  # a new head missing part of the contract
        raise TypeError(f"{type(gen).__name__} does not satisfy GeneratorHead")
    return gen


def _build_head(cfg: Config, in_channels: int, norm: Tensor | None) -> Any:
    from mmsin.generators.conv import CausalGenerator

    g = cfg.generator
    if g.head == "partials":
        from mmsin.generators.partials import PartialGenerator, first_order_frontend

        s = cfg.scattering
        if g.frequencies == "fixed" and g.per_octave % s.Q:
            raise ValueError(
                f"generator.per_octave ({g.per_octave}) must be a multiple of scattering.Q "
                f"({s.Q}) for the partials head (oscillators per first-order bin)"
            )
        if g.look_ahead:
            raise ValueError("the partials head is causal: generator.look_ahead must be 0")
        sj = build_scattering(cfg)
        matrix: Any
        if s.variant == "joint-real":  # order 1 is a modulus: u is read back by a network
            from mmsin.generators.partials import LearnedFrontend, joint_first_order

            channels, operator, hz = joint_first_order(sj)
            matrix = LearnedFrontend(channels, operator, eps=1e-4)
        else:
            matrix, hz = first_order_frontend(sj)
        shared: dict[str, Any] = {
            "fs": s.fs,
            "channels": g.freq_channels,
            "depth": g.freq_depth,
            "freq_kernel": g.freq_kernel,
            "context": g.context,
            "trunk_layers": g.trunk_layers,
            "trunk_hidden": g.hidden,
            "kernel_size": g.kernel_size,
            "fmin": g.fmin,
        }
        gen: Any
        if g.frequencies == "free":
            from mmsin.generators.free_partials import FreePartialGenerator, noise_band_power
            from mmsin.generators.peaks import decay_lag, peak_calibration, response_table

            room = None  # each noise band at most what the partials leave of u (linear u)
            if g.noise_bands > 0 and s.variant != "joint-real":
                key = (s.J, s.Q, s.P, s.variant, s.fs, s.oversampling, g.noise_bands)
                if key not in _NOISE_POWER:  # 0.5 s of encoding: once per encoder
                    _NOISE_POWER[key] = noise_band_power(sj, matrix, hz, g.noise_bands)
                room = _NOISE_POWER[key]

            gen = FreePartialGenerator(
                in_channels,
                matrix,
                hz,
                J=s.J,
                calibration=peak_calibration(sj, hz, g.fmin),
                noise_bands=g.noise_bands,
                noise_input=g.noise_input,
                responses=response_table(sj, hz),
                refine_rounds=g.peak_rounds,
                fill_gaps=g.peak_gaps,
                amp_refine=g.amp_refine,
                generation_amp_refine=g.generation_amp_refine,
                decay_lag=decay_lag(sj, 2**s.J) if g.lag_correction else None,
                sub_frames=g.sub_frames,
                noise_power=room,
                **shared,
            )
        else:
            gen = PartialGenerator(
                in_channels, matrix, hz, J=s.J, per_bin=g.per_octave // s.Q, **shared
            )
        if norm is not None:
            gen.set_input_norm(norm)
        return gen
    if g.head == "oscillators":
        from mmsin.generators.oscillators import OscillatorGenerator

        return OscillatorGenerator(
            in_channels,
            J=cfg.scattering.J,
            trunk_layers=g.trunk_layers,
            hidden=g.hidden,
            kernel_size=g.kernel_size,
            look_ahead=g.look_ahead,
            fs=cfg.scattering.fs,
            per_octave=g.per_octave,
            fmin=g.fmin,
        )
    return CausalGenerator(
        in_channels,
        J=cfg.scattering.J,
        kernel_size=g.kernel_size,
        look_ahead=g.look_ahead,
        c1=g.c1,
    )


def restore_var(state: dict[str, Tensor]) -> Any:
    """Rebuild a :class:`mmsin.whitening.VAR` from its ``state_dict`` (buffers A, b, sqrt_cov,
    inv_sqrt_cov), as saved in checkpoints and the feature cache."""
    from mmsin.whitening import VAR

    A = state["A"]
    M, C = int(A.shape[0]), int(A.shape[1])
    var = _construct_var(VAR, M, C, state)
    var.load_state_dict(state)
    return var.eval()


def _construct_var(cls: Any, M: int, C: int, state: dict[str, Tensor]) -> nn.Module:
    # The VAR's constructor is owned by mmsin.whitening; accept either of its natural forms.
    if hasattr(cls, "from_state_dict"):
        return cls.from_state_dict(state)  # type: ignore[no-any-return]
    try:
        return cls(M=M, C=C)  # type: ignore[no-any-return]
    except TypeError:
        pass
    try:
        return cls(state["A"].clone(), state["b"].clone(), state["sqrt_cov"].clone())  # type: ignore[no-any-return]
    except TypeError:
        return cls(M, C)  # type: ignore[no-any-return]


def context_frames(cfg: Config, generator: GeneratorHead) -> tuple[int, int]:
    """Frames of S_J fed to G before and after each training segment, so that every output
    block the loss sees has all the frames it depends on: before = ``train.context_frames``
    (default: the generator's past span, receptive field - 1 - look-ahead), after = the
    generator's look-ahead in frames (0 for the paper's causal generator); both from
    ``generator.frame_span``."""
    before, after = generator.frame_span
    if cfg.train.context_frames is not None:
        before = cfg.train.context_frames
    return int(before), int(after)
