"""The paper's Section 5, one module per experiment, plus :func:`reproduce` and :func:`demo`.

Every experiment writes ``results/<experiment>/<preset>-<timestamp>/`` with

- ``results.json``: every number, the configs, checkpoint and data fingerprints;
- WAV files of every sound it shows, PNG figures in the paper's style;
- ``report.html``: a self-contained page (tables, figures, audio players).

Trainings go through :func:`mmsin.training.train` with a named preset (``small``/``paper``).
A run is named after its preset, data set, loss and a hash of its whole configuration, so an
existing run with the same configuration is reused instead of retrained.

Experiments (paper section in brackets):

- ``reconstruction`` (5.2, Fig. 4): G(L S_J x) on test notes and piano extracts.
- ``table1`` (5.2, Table 1): mse / inv / inv+mm on the piano set, eq. (5) train/test errors.
- ``generation`` (5.2, Fig. 5): samples from white noise and the spread sigma.
- ``moment_matching`` (5.2): eq. (6) distances to the training set.
- ``pitch_interpolation`` (5.3, Fig. 6): G((Z1+Z2)/2) for notes 5 semitones apart.
- ``waveform_interpolation`` (5.4, Fig. 7): G((Z1+Z2)/2) vs (G(Z1)+G(Z2))/2.

``Context.model`` names models to use instead of training (``--model notes|piano|PATH``): the
shipped pretrained models or any checkpoint; each is matched to the data set it was trained on
(``config.data.source``). :func:`reproduce` also reruns the inference-only experiments of
:data:`PRETRAINED_EXPERIMENTS` with the shipped pretrained models, labelled apart.

Modules: one per experiment (``reconstruction``, ``table1``, ``generation``,
``moment_matching``, ``pitch_interpolation``, ``waveform_interpolation``,
``scattering_overview``), each exposing the function of the same name (which this package
re-exports, so ``mmsin.experiments.reconstruction`` is the experiment); ``shared`` (options,
output folders, data and models); ``driver`` (experiments by name, the comparison table,
:func:`reproduce`, :func:`demo`).
"""

from __future__ import annotations

from mmsin.experiments.driver import (
    COMPARED,
    EXPERIMENTS,
    PRETRAINED_EXPERIMENTS,
    PRETRAINED_LABEL,
    TRAININGS,
    compare_sets,
    demo,
    describe_run,
    model_available,
    models_label,
    pretrained_available,
    reproduce,
    run,
    train_all,
)
from mmsin.experiments.generation import generation
from mmsin.experiments.moment_matching import moment_matching
from mmsin.experiments.pitch_interpolation import pitch_interpolation
from mmsin.experiments.reconstruction import reconstruction
from mmsin.experiments.scattering_overview import scattering_overview
from mmsin.experiments.shared import (
    NOTES,
    PIANO,
    Context,
    Outcome,
    build_lookalike,
    given_models,
    load_split,
    run_config,
    trained_model,
)
from mmsin.experiments.table1 import table1
from mmsin.experiments.waveform_interpolation import waveform_interpolation

__all__ = [
    "COMPARED",
    "EXPERIMENTS",
    "NOTES",
    "PIANO",
    "PRETRAINED_EXPERIMENTS",
    "PRETRAINED_LABEL",
    "TRAININGS",
    "Context",
    "Outcome",
    "build_lookalike",
    "compare_sets",
    "demo",
    "describe_run",
    "generation",
    "given_models",
    "load_split",
    "model_available",
    "models_label",
    "moment_matching",
    "pitch_interpolation",
    "pretrained_available",
    "reconstruction",
    "reproduce",
    "run",
    "run_config",
    "scattering_overview",
    "table1",
    "train_all",
    "trained_model",
    "waveform_interpolation",
]
