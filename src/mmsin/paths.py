"""Where mmsin keeps what it makes: data sets, training runs and experiment results.

Everything lives under one workspace folder, ``$MMSIN_HOME`` if set, else the current
directory, in three plainly named sub-folders::

    data/      built or imported data sets     (mmsin data build ...)
    runs/      training runs: checkpoints, TensorBoard logs, configs
    results/   experiment outputs: results.json, WAV, PNG, report.html

Nothing is ever written inside the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path


def workspace() -> Path:
    """Return the workspace root (``$MMSIN_HOME`` or the current directory)."""
    return Path(os.environ.get("MMSIN_HOME", ".")).expanduser().resolve()


def data_dir() -> Path:
    """Folder of built and imported data sets."""
    return workspace() / "data"


def runs_dir() -> Path:
    """Folder of training runs (one sub-folder per run)."""
    return workspace() / "runs"


def results_dir() -> Path:
    """Folder of experiment results (one sub-folder per experiment run)."""
    return workspace() / "results"
