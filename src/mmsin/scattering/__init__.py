"""Scattering transforms of MM-SIN: S_J (causal joint time-frequency, the encoder) and S_K
(first-order scalogram, the losses), their filter banks and normalisation statistics."""

from mmsin.scattering.normalization import channel_mean_abs, load_mean_abs, save_mean_abs
from mmsin.scattering.scalogram import Scalogram
from mmsin.scattering.timefrequency import (
    ScatteringStream,
    TimeFrequencyScattering,
    channel_count,
    nonnegative_channels,
)

__all__ = [
    "Scalogram",
    "ScatteringStream",
    "TimeFrequencyScattering",
    "channel_count",
    "channel_mean_abs",
    "load_mean_abs",
    "nonnegative_channels",
    "save_mean_abs",
]
