"""The generator G and its heads: S_J frames in, a waveform out (paper section 3).

Every head satisfies one contract, :class:`~mmsin.generators.base.GeneratorHead` (``hop``,
``frame_span``, ``receptive_field``, ``latency``, ``layers``, ``flops_per_frame``, ``stream``),
and :func:`mmsin.assembly.build_generator` builds the head a config names. The package
re-exports every public name of its modules, so ``from mmsin.generators import X`` works
whatever module holds X. Modules, network -> controls -> signal:

- ``base``: the protocols (:class:`GeneratorHead`, :class:`Streamer`, :class:`ReadsInputNorm`).
- ``conv``: the paper's G, :class:`CausalGenerator` (J x zero insertion, causal conv, BN,
  ReLU), its :class:`GeneratorStreamer`, and the timing convention (``aligned_target``).
- ``synthesis``: pure signal processing, no parameters: oscillator sums, block phases, band
  noise, peak interpolation.
- ``oscillators``: a trunk of the paper's layers driving a bank of fixed oscillators
  (``head = "oscillators"``).
- ``partials``: 2-D layers over log-frequency driving oscillators tied to S_J's first-order
  bins (``head = "partials"``, ``frequencies = "fixed"``), with :class:`PartialStreamer`.
- ``free_partials``: the same network with free frequencies and noise bands (``frequencies =
  "free"``, the ``pitched`` preset, the shipped ``notes`` model); ``partials_stream``: its
  stateful streamer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmsin.generators.base import GeneratorHead, ReadsInputNorm, Streamer
from mmsin.generators.conv import (
    CausalGenerator,
    GeneratorStreamer,
    aligned_target,
    channel_schedule,
)
from mmsin.generators.free_partials import Controls, FreePartialGenerator, State
from mmsin.generators.oscillators import (
    OscillatorGenerator,
    OscillatorStreamer,
    carrier_tables,
    envelope_frame_span,
    oscillator_frequencies,
    synthesize_bank,
)
from mmsin.generators.partials import PartialGenerator, PartialStreamer, first_order_frontend
from mmsin.generators.partials_stream import CachedFreqLayer, FreePartialStreamer
from mmsin.generators.peaks import PeakCalibration, peak_calibration
from mmsin.generators.synthesis import (
    band_noise,
    band_noise_tables,
    block_phases,
    interpolate_blocks,
    parabolic_peaks,
    polyval,
    sum_oscillators,
)

__all__ = [
    "CachedFreqLayer",
    "CausalGenerator",
    "Controls",
    "FreePartialGenerator",
    "FreePartialStreamer",
    "GeneratorHead",
    "GeneratorStreamer",
    "OscillatorGenerator",
    "OscillatorStreamer",
    "PartialGenerator",
    "PartialStreamer",
    "PeakCalibration",
    "ReadsInputNorm",
    "State",
    "Streamer",
    "aligned_target",
    "band_noise",
    "band_noise_tables",
    "block_phases",
    "carrier_tables",
    "channel_schedule",
    "envelope_frame_span",
    "first_order_frontend",
    "interpolate_blocks",
    "oscillator_frequencies",
    "parabolic_peaks",
    "peak_calibration",
    "polyval",
    "sum_oscillators",
    "synthesize_bank",
]

if TYPE_CHECKING:  # pragma: no cover

    def _every_head_satisfies_the_protocol(
        conv: CausalGenerator,
        oscillators: OscillatorGenerator,
        partials: PartialGenerator,
        free: FreePartialGenerator,
    ) -> tuple[GeneratorHead, ...]:
        """Checked by mypy, never run: each head is a GeneratorHead, signatures included."""
        return conv, oscillators, partials, free
