"""Figures in the paper's style: waveform above log-spectrogram, one panel per sound.

Every figure of Section 5 is a grid of such panels (Fig. 4: original | reconstruction; Fig. 5:
one row per generated sample; Fig. 6: G(Z1) | G((Z1+Z2)/2) | G(Z2); Fig. 7: a 2 x 2 grid),
so one function, :func:`panel_grid`, draws them all and the named wrappers only arrange the
sounds. Figures are drawn with matplotlib's Agg backend (no display needed) and saved as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure
import matplotlib.pyplot as plt
import numpy as np
import scipy.signal
from matplotlib.axes import Axes

#: One panel: a title and a mono signal, shape (time,).
Panel = tuple[str, np.ndarray]

#: Dynamic range of the log-spectrograms in dB below each panel's maximum.
DYNAMIC_RANGE_DB = 80.0


def log_spectrogram(
    x: np.ndarray, fs: float, *, n_fft: int = 256, hop: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-magnitude spectrogram in dB (Hann window).

    Parameters
    ----------
    x : shape (time,), float, sample rate ``fs``

    Returns
    -------
    freqs : (n_fft // 2 + 1,) Hz
    times : (frames,) s
    db : (n_fft // 2 + 1, frames), 20 log10 |STFT|, floored at ``DYNAMIC_RANGE_DB`` below max
    """
    y = np.asarray(x, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"x must have shape (time,) and be non-empty, got {y.shape}")
    n = min(n_fft, y.size)
    f, t, z = scipy.signal.stft(y, fs=fs, window="hann", nperseg=n, noverlap=n - min(hop, n))
    db = 20 * np.log10(np.abs(z) + 1e-10)
    return f, t, np.maximum(db, db.max() - DYNAMIC_RANGE_DB)


def _draw(ax_wave: Axes, ax_spec: Axes, title: str, x: np.ndarray, fs: float) -> None:
    y = np.asarray(x, dtype=np.float64)
    t = np.arange(y.size) / fs
    ax_wave.plot(t, y, lw=0.4, color="black")
    ax_wave.set_xlim(0, max(t[-1] if t.size else 1.0, 1e-3))
    peak = float(np.max(np.abs(y))) if y.size else 1.0
    ax_wave.set_ylim(-1.05 * max(peak, 1e-6), 1.05 * max(peak, 1e-6))
    ax_wave.set_title(title, fontsize=9)
    ax_wave.set_xticks([])
    ax_wave.tick_params(labelsize=7)
    f, tt, db = log_spectrogram(y, fs)
    ax_spec.pcolormesh(tt, f, db, shading="auto", cmap="magma", rasterized=True)
    ax_spec.set_ylabel("Hz", fontsize=7)
    ax_spec.set_xlabel("s", fontsize=7)
    ax_spec.tick_params(labelsize=7)


def panel_grid(
    rows: Sequence[Sequence[Panel]],
    fs: float,
    path: str | os.PathLike[str],
    *,
    suptitle: str | None = None,
    cell_size: tuple[float, float] = (3.6, 2.6),
) -> Path:
    """Draw a grid of waveform + log-spectrogram panels and save it as PNG.

    Parameters
    ----------
    rows : sequence of rows, each a sequence of (title, signal (time,)) panels
    fs : float
        Sample rate in Hz.
    path : path-like
        Output PNG file (folders are created).

    Returns
    -------
    Path of the PNG written.
    """
    if not rows or not all(rows):
        raise ValueError("panel_grid needs at least one non-empty row of panels")
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    # Constrained layout keeps every title, tick label and axis label clear of its neighbours
    # (a plain grid let a row's "s" label run into the titles of the row below it).
    fig = plt.figure(figsize=(cell_size[0] * n_cols, cell_size[1] * n_rows), layout="constrained")
    grid = fig.add_gridspec(n_rows, n_cols)
    for i, row in enumerate(rows):
        for j, (title, x) in enumerate(row):
            cell = grid[i, j].subgridspec(2, 1, height_ratios=[1, 2])
            _draw(fig.add_subplot(cell[0]), fig.add_subplot(cell[1]), title, x, fs)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return _save(fig, path)


def reconstruction_figure(
    examples: Sequence[tuple[str, np.ndarray, np.ndarray]],
    fs: float,
    path: str | os.PathLike[str],
) -> Path:
    """Fig. 4: one row per example, original x | reconstruction G(L S_J x).

    ``examples``: (name, original (time,), reconstruction (time,)).
    """
    rows = [[(f"{name}: original", x), (f"{name}: G(Z)", x_hat)] for name, x, x_hat in examples]
    return panel_grid(rows, fs, path, suptitle="Reconstruction")


def note_spectra_figure(
    original: np.ndarray,
    reconstruction: np.ndarray,
    fs: float,
    partials_hz: Sequence[float],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Whole-note spectra of an original and its reconstruction on a log-frequency axis, with
    the original's partials marked (dotted lines, numbered).

    Each spectrum is one Hann window over the whole clip (peak-normalised first), in dB below
    the original's maximum, floored at ``DYNAMIC_RANGE_DB``. ``partials_hz``: the original's
    partials (NaN entries are skipped), e.g.
    :attr:`mmsin.evaluation.RealNoteMetrics.partials_hz_original`.
    """
    n = min(len(original), len(reconstruction))
    w = np.hanning(n)
    freqs = np.fft.rfftfreq(4 * n, 1 / fs)

    def spectrum(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y[:n], dtype=np.float64)
        y = y / max(float(np.abs(y).max()), 1e-12)
        return 20 * np.log10(np.abs(np.fft.rfft(y * w, 4 * n)) + 1e-12)

    a, b = spectrum(original), spectrum(reconstruction)
    top = a.max()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    keep = freqs >= 20
    ax.semilogx(freqs[keep], np.maximum(a - top, -DYNAMIC_RANGE_DB)[keep], lw=0.6,
                color="black", label="original")  # fmt: skip
    ax.semilogx(freqs[keep], np.maximum(b - top, -DYNAMIC_RANGE_DB)[keep], lw=0.6,
                color="tab:red", alpha=0.75, label="G(Z)")  # fmt: skip
    for k, f in enumerate(partials_hz, start=1):
        if np.isfinite(f):
            ax.axvline(f, color="tab:blue", lw=0.6, ls=":")
            ax.text(f, 2, str(k), color="tab:blue", fontsize=7, ha="center")
    ax.set_xlim(20, fs / 2)
    ax.set_ylim(-DYNAMIC_RANGE_DB, 8)
    ax.set_xlabel("frequency (Hz, log)")
    ax.set_ylabel("dB")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def generation_figure(
    samples: Sequence[np.ndarray], fs: float, path: str | os.PathLike[str]
) -> Path:
    """Fig. 5: one row per sample G(Z) generated from white noise."""
    rows = [[(f"sample {i + 1}: G(Z)", x)] for i, x in enumerate(samples)]
    return panel_grid(rows, fs, path, suptitle="Generation from white noise", cell_size=(9, 2.4))


def pitch_interpolation_figure(
    triples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    fs: float,
    path: str | os.PathLike[str],
) -> Path:
    """Fig. 6: one row per pair, columns G(Z1) | G((Z1+Z2)/2) | G(Z2).

    ``triples``: (name, G(Z1), G((Z1+Z2)/2), G(Z2)).
    """
    rows = [
        [(f"{name}: G(Z1)", a), ("G((Z1+Z2)/2)", mid), ("G(Z2)", b)] for name, a, mid, b in triples
    ]
    return panel_grid(rows, fs, path, suptitle="Pitch interpolation")


def waveform_interpolation_figure(
    g1: np.ndarray,
    g2: np.ndarray,
    latent_mid: np.ndarray,
    signal_mid: np.ndarray,
    fs: float,
    path: str | os.PathLike[str],
) -> Path:
    """Fig. 7: top G(Z1) | G(Z2); bottom G((Z1+Z2)/2) | (G(Z1)+G(Z2))/2."""
    rows = [
        [("G(Z1)", g1), ("G(Z2)", g2)],
        [("latent: G((Z1+Z2)/2)", latent_mid), ("signal: (G(Z1)+G(Z2))/2", signal_mid)],
    ]
    return panel_grid(
        rows, fs, path, suptitle="Interpolation in latent vs signal space", cell_size=(5.5, 2.6)
    )


def scattering_figure(
    x: np.ndarray,
    coefficients: np.ndarray,
    fs: float,
    path: str | os.PathLike[str],
    *,
    hop: int,
    title: str = "",
    channel_label: str = "channel",
) -> Path:
    """Waveform above an image of scattering (or scalogram) coefficients, log scale.

    Parameters
    ----------
    x : shape (time,)
    coefficients : shape (channels, frames), non-negative; frame n at time n * hop / fs
    hop : int
        Samples between frames.
    """
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"coefficients must have shape (channels, frames), got {c.shape}")
    fig, (ax_w, ax_c) = plt.subplots(
        2, 1, figsize=(8, 5), gridspec_kw={"height_ratios": [1, 2.5]}, sharex=True
    )
    y = np.asarray(x, dtype=np.float64)
    ax_w.plot(np.arange(y.size) / fs, y, lw=0.4, color="black")
    ax_w.set_title(title, fontsize=10)
    img = np.log10(np.abs(c) + 1e-6 * max(float(np.abs(c).max()), 1e-12))
    times = np.arange(c.shape[1] + 1) * hop / fs
    ax_c.pcolormesh(times, np.arange(c.shape[0] + 1), img, shading="flat", cmap="magma")
    ax_c.set_ylabel(channel_label, fontsize=8)
    ax_c.set_xlabel("s", fontsize=8)
    return _save(fig, path)


def bar_chart(
    values: dict[str, Sequence[float]],
    groups: Sequence[str],
    path: str | os.PathLike[str],
    *,
    ylabel: str = "",
    title: str = "",
) -> Path:
    """Grouped bars: ``values[series][g]`` for each group ``g`` (e.g. ours beside the paper)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / max(len(values), 1)
    for k, (name, vals) in enumerate(values.items()):
        ax.bar(np.arange(len(groups)) + k * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def histogram(
    samples: dict[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    xlabel: str = "",
    title: str = "",
    bins: int = 24,
) -> Path:
    """Overlaid histograms of several samples (e.g. cents errors of two methods)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    finite = [np.asarray(v, dtype=float) for v in samples.values()]
    finite = [v[np.isfinite(v)] for v in finite]
    allv = np.concatenate(finite) if finite else np.zeros(0)
    edges = np.histogram_bin_edges(allv, bins=bins) if allv.size else np.linspace(0, 1, bins)
    for name, v in zip(samples, finite, strict=True):
        ax.hist(v, bins=list(edges), alpha=0.55, label=f"{name} (n={v.size})")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: matplotlib.figure.Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG (creating the folder) and close it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out
