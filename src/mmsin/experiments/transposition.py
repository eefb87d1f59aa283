"""Transformation in the embedding: transposition by K semitones, G(T_K S_J x), on recorded
notes, side by side with a phase vocoder on the same audio.

T_K shifts S_J's scalogram by K bins (:mod:`mmsin.scattering.transposition`; through L it is
:meth:`mmsin.model.MMSIN.transpose` on Z). For each note and each K: the f0 of the result
against the target (the original's own CREPE f0 times 2^(K/12)), in cents, and the timbre
(levels of partials 1-8 relative to their total, against the original's, read at the target's
harmonics as peaks and as energies: :mod:`mmsin.evaluation.timbre`; dB), for the model
and for librosa's phase vocoder (``librosa.effects.pitch_shift``, settings in
:data:`VOCODER`). The recorded Steinway notes of ``real-notes`` when the set is available,
else held-out rendered notes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mmsin import evaluation as ev
from mmsin import plots, report
from mmsin.experiments.shared import (
    NOTES,
    Context,
    Outcome,
    finish,
    heldout_split,
    load_split,
    model_for,
    out_folder,
    wav,
)

__all__ = ["KS", "VOCODER", "transposition"]

#: The transpositions measured (semitones).
KS = (-12, -7, -5, -1, 1, 5, 7, 12)
#: How partial levels are read (:func:`mmsin.evaluation.partial_levels`).
MEASURES = ("peak", "energy")
#: The phase vocoder's settings: librosa 0.11's defaults, named so that the table says what ran.
VOCODER: dict[str, Any] = {
    "n_fft": 2048,
    "hop_length": 512,
    "res_type": "soxr_hq",
    "bins_per_octave": 12,
}
#: Notes whose transpositions all stay within CREPE's range and S_J's first-order bank.
PITCHES = (48, 72)


def _notes(ctx: Context, model: Any) -> tuple[Any, str]:
    from mmsin.experiments.real_notes import available

    if available():
        from mmsin.data.real import load_real_notes

        return load_real_notes(fs=model.fs), "recorded Steinway notes (real-notes)"
    split = heldout_split(ctx, NOTES)
    return load_split(ctx, NOTES, split), f"rendered notes ({NOTES}, {split})"


def transposition(ctx: Context) -> Outcome:
    """f0 error and timbre of transposed notes, the model against a phase vocoder."""
    import librosa

    name = "transposition"
    folder = out_folder(ctx, name)
    model, info, _ = model_for(ctx, name, NOTES)
    clips, source = _notes(ctx, model)
    pitches = np.array([int(m.get("pitch", -1)) for m in clips.meta])
    inside = np.flatnonzero((pitches >= PITCHES[0]) & (pitches <= PITCHES[1]))
    if inside.size == 0:
        raise ValueError(f"transposition: no note of {source} between MIDI {PITCHES}")
    count = min(inside.size, max(2, ctx.n_examples))
    chosen = inside[np.linspace(0, inside.size - 1, count).round().astype(int)]
    rows: list[dict[str, Any]] = []
    sweep: dict[str, list[tuple[str, np.ndarray]]] = {"model": [], "phase vocoder": []}
    section = report.Section("Transposition in the embedding")
    for n, i in enumerate(chosen):
        x = np.asarray(clips.audio[i], dtype=np.float32)
        label = str(clips.meta[i].get("name", f"note {i}"))
        f0 = ev.median_f0(x, model.fs, model=ctx.crepe_model)
        if not np.isfinite(f0):
            continue
        ref = {m: ev.partial_levels(x, f0, model.fs, measure=m) for m in MEASURES}
        S = model.encode_scattering(x)
        if n == 0:
            section.add(report.Audio(wav(folder, "original", x, model.fs), f"{label}: original"))
        for k in KS:
            target = f0 * 2 ** (k / 12)
            outs = {
                "model": model.decode_scattering(model.transpose_scattering(S, k))[0].numpy(),
                "phase vocoder": librosa.effects.pitch_shift(x, sr=model.fs, n_steps=k, **VOCODER),
            }
            for method, y in outs.items():
                fy = ev.median_f0(y, model.fs, model=ctx.crepe_model)
                # levels at the target's harmonics: the pitch is judged by the f0 error, and a
                # tracker's octave slip on the output would compare other partials
                timbre = {
                    m: ev.timbre_distance(ref[m], ev.partial_levels(y, target, model.fs, measure=m))
                    for m in MEASURES
                }
                rows.append(
                    {
                        "note": label,
                        "K": k,
                        "method": method,
                        "cents": float(ev.cents(fy, target)) if np.isfinite(fy) else math.nan,
                        "timbre_db": timbre["peak"],
                        "timbre_energy_db": timbre["energy"],
                    }
                )
                if n == 0:
                    sweep[method].append((f"{method}, K = {k:+d}", y))
                    section.add(
                        report.Audio(
                            wav(folder, f"{method.replace(' ', '-')}-{k:+d}", y, model.fs),
                            f"{label}, K = {k:+d}: {method}",
                        )
                    )
    summary = []
    for k in KS:
        line: dict[str, Any] = {"K": k}
        for method in sweep:
            sel = [r for r in rows if r["K"] == k and r["method"] == method]
            line[method] = {
                "notes": len(sel),
                "median_abs_cents": ev.finite_median([abs(r["cents"]) for r in sel]),
                "median_timbre_db": ev.finite_median([r["timbre_db"] for r in sel]),
                "median_timbre_energy_db": ev.finite_median([r["timbre_energy_db"] for r in sel]),
            }
        summary.append(line)
    section.add(
        report.Table(
            [
                "K",
                "model: median |f0 error| (cents)",
                "phase vocoder",
                "model: timbre, peaks (dB)",
                "phase vocoder",
                "model: timbre, energies (dB)",
                "phase vocoder",
            ],
            [
                [
                    s["K"],
                    s["model"]["median_abs_cents"],
                    s["phase vocoder"]["median_abs_cents"],
                    s["model"]["median_timbre_db"],
                    s["phase vocoder"]["median_timbre_db"],
                    s["model"]["median_timbre_energy_db"],
                    s["phase vocoder"]["median_timbre_energy_db"],
                ]
                for s in summary
            ],
            caption=f"{len(chosen)} {source}, MIDI {PITCHES[0]}-{PITCHES[1]}. f0 error: CREPE "
            "median f0 of the result against the original's times 2^(K/12). Timbre: median "
            "|difference| of the levels of partials 1-8 (below 1.8 kHz) relative to their "
            "total, against the original's, read at the target's harmonics: the peak of the "
            "long spectrum, or the energy within 40 cents (a recorded partial is several "
            "strings' lines, whose peak is lower than one sinusoid's of the same energy). "
            "Phase vocoder: librosa.effects.pitch_shift "
            f"({', '.join(f'{a}={b}' for a, b in VOCODER.items())}).",
        )
    )
    if sweep["model"]:
        grid = [[a, b] for a, b in zip(sweep["model"], sweep["phase vocoder"], strict=True)]
        fig = plots.panel_grid(
            grid,
            model.fs,
            folder / "sweep.png",
            suptitle="Transposition: model | phase vocoder",
            cell_size=(5, 2.2),
        )
        section.blocks.insert(
            0,
            report.Figure(
                fig,
                f"{clips.meta[chosen[0]].get('name', '')}: G(T_K S_J x) (left) and the "
                "phase vocoder (right).",
            ),
        )
    numbers = {
        "run": info,
        "source": source,
        "notes": len(chosen),
        "ks": list(KS),
        "vocoder": VOCODER,
        "summary": summary,
        "rows": rows,
    }
    return finish(ctx, name, folder, numbers, section)
