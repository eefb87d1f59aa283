"""Training of the MM-SIN generator G on the fixed embedding Phi = L S_J (paper section 3).

One module per concept, in the order a run uses them::

    features     cached S_J features: normalised frames cut into segments, aligned waveform
                 targets, S_K targets and statistics, the VAR fit (prepare_features, Features)
    distributed  devices and DDP set-up; every collective call of the loop (torchrun)
    objective    the loss of eqs. (4)-(6) on cached features, one step's terms, test L_inv
    code_chains  the synthetic codes ReLU(L^-1 z) that L_MM feeds to G (eq. 1)
    state        checkpoint payloads and resuming (what a run saves and what it checks)
    previews     TensorBoard scalars, audio and spectrogram previews, the progress bar
    loop         train(): epochs of optimiser steps, evaluation, checkpoints

Devices: CPU, one CUDA GPU (optional autocast), or several GPUs/processes under ``torchrun``
(DistributedDataParallel; detected from the RANK/WORLD_SIZE environment variables; gloo on CPU,
nccl on CUDA; only rank 0 writes files).

The modules of a configuration (S_J, S_K, G, the VAR) are built by :mod:`mmsin.assembly`,
which :class:`mmsin.MMSIN` uses too: using a trained model never imports this package.
"""

from __future__ import annotations

from mmsin.training.features import Features, data_fingerprint, prepare_features
from mmsin.training.loop import TrainingDiverged, TrainResult, train

__all__ = [
    "Features",
    "TrainResult",
    "TrainingDiverged",
    "data_fingerprint",
    "prepare_features",
    "train",
]
