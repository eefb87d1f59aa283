"""Judge models on the real recordings (``real-notes``) in the field's conventions.

    python scripts/eval_real.py --model notes --model piano [--every K] [--crepe tiny|full]
        [--json OUT.json]

For each model: G(S_J x) of every K-th real note (MIDI 24-95, 4 s), then
:func:`mmsin.evaluation.real_note_metrics` against the original and the set summary
(:func:`mmsin.evaluation.summarize_real_notes`). The originals' CREPE tracks are computed once
and cached under ``$MMSIN_HOME/cache``. Prints one row per model and writes the summaries and
per-note records as JSON (default ``$MMSIN_HOME/results/eval-real.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = (
    ("f0_cents_median", "f0 med c", "{:.1f}"),
    ("f0_cents_p90", "p90 c", "{:.1f}"),
    ("octave_error_share", "octave", "{:.1%}"),
    ("within_50_share", "<=50c", "{:.1%}"),
    ("partials_cents_median", "partials c", "{:.1f}"),
    ("partials_missing_share", "missing", "{:.1%}"),
    ("hnr_db", "HNR dB", "{:.1f}"),
    ("hnr_db_original", "(orig)", "{:.1f}"),
    ("lsd_db", "LSD dB", "{:.1f}"),
    ("lsd_db_smoothed", "(smoothed)", "{:.1f}"),
    ("loudness_l1_db", "loud L1 dB", "{:.2f}"),
)


def evaluate(
    model_name: str, every: int, crepe: str, cache: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Summary and per-note records of one model on every ``every``-th real note."""
    from mmsin import evaluation as ev
    from mmsin.data.real import load_real_notes
    from mmsin.model import MMSIN

    model = MMSIN.load(model_name)
    clips = load_real_notes(fs=model.fs)
    idx = np.arange(0, clips.audio.shape[0], every)
    x = clips.audio[idx]
    midi = [clips.meta[i]["pitch"] for i in idx]
    refs = ev.analyse_originals(
        x, model.fs, midi, crepe_model=crepe, cache=cache / f"real-notes-{crepe}-every{every}.npz"
    )
    x_hat = np.concatenate(
        [
            model.decode_scattering(model.encode_scattering(x[i : i + 8])).numpy()
            for i in range(0, len(x), 8)
        ]
    )
    notes = [
        ev.real_note_metrics(
            x[i], x_hat[i], model.fs, midi[i], reference=refs[i], crepe_model=crepe
        )
        for i in range(len(x))
    ]
    summary = ev.summarize_real_notes(notes)
    summary["model"] = model_name
    summary["source"] = str(model.source)
    records = [
        {"name": clips.meta[i]["name"], **ev.as_record(n)} for i, n in zip(idx, notes, strict=True)
    ]
    return summary, records


def main(argv: list[str] | None = None) -> int:
    from mmsin import paths

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="model name or path (repeat)")
    p.add_argument("--every", type=int, default=1, help="every K-th note by pitch (default 1)")
    p.add_argument("--crepe", choices=["tiny", "full"], default="tiny", help="CREPE model")
    p.add_argument("--json", default=None, help="output JSON (default results/eval-real.json)")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be at least 1")
    cache = paths.workspace() / "cache"
    out = Path(args.json) if args.json else paths.results_dir() / "eval-real.json"
    results: dict[str, Any] = {"every": args.every, "crepe": args.crepe, "models": {}}
    rows = []
    for name in args.model:
        t0 = time.perf_counter()
        summary, records = evaluate(name, args.every, args.crepe, cache)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        results["models"][name] = {"summary": summary, "notes": records}
        rows.append((name, summary))
        print(
            f"{name}: {summary['tracked']}/{summary['notes']} notes tracked, "
            f"{summary['seconds']} s",
            file=sys.stderr,
        )
    head = ["model", "notes"] + [c[1] for c in COLUMNS]
    table = [head] + [
        [name, str(s["notes"])] + [fmt.format(s[key]) for key, _, fmt in COLUMNS]
        for name, s in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
