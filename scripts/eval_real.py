"""Judge models on the real recordings (``real-notes``) in the field's conventions.

    python scripts/eval_real.py --model notes --model piano [--every K] [--crepe tiny|full]
        [--json OUT.json] [--heldout | --guitar]

For each model: G(S_J x) of every K-th real note (MIDI 24-95, 4 s), then
:func:`mmsin.evaluation.real_note_metrics` against the original and the set summary
(:func:`mmsin.evaluation.summarize_real_notes`). The originals' CREPE tracks are computed once
and cached under ``$MMSIN_HOME/cache``. Prints one row per model and writes the summaries and
per-note records as JSON (default ``$MMSIN_HOME/results/eval-real.json``). ``--heldout``
judges the rendered held-out notes of nsynth-like instead (five instruments never trained on,
every semitone MIDI 40-90, rendered anew at one velocity), the same way; ``--guitar`` the
recorded guitar notes of ``real-guitar`` (two guitars' six open strings, MIDI 40-64).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    from mmsin import paths
    from mmsin.experiments.real_notes import COLUMNS, evaluate_real_notes
    from mmsin.model import MMSIN

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="model name or path (repeat)")
    p.add_argument("--every", type=int, default=1, help="every K-th note by pitch (default 1)")
    p.add_argument("--crepe", choices=["tiny", "full"], default="tiny", help="CREPE model")
    p.add_argument("--json", default=None, help="output JSON (default results/eval-real.json)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--heldout", action="store_true", help="the rendered held-out notes")
    which.add_argument("--guitar", action="store_true", help="the recorded guitar notes")
    args = p.parse_args(argv)
    if args.every < 1:
        p.error("--every must be at least 1")
    cache = paths.workspace() / "cache"
    label = "heldout" if args.heldout else "real-guitar" if args.guitar else "real-notes"
    default = {"heldout": "eval-heldout.json", "real-guitar": "eval-guitar.json"}
    out = paths.results_dir() / default.get(label, "eval-real.json")
    out = Path(args.json) if args.json else out
    clips = _heldout(cache) if args.heldout else None
    if args.guitar:
        from mmsin.data.real_guitar import load_real_guitar

        clips = load_real_guitar()
    results: dict[str, Any] = {"every": args.every, "crepe": args.crepe, "models": {}}
    rows: list[list[str]] = []
    for name in args.model:
        t0 = time.perf_counter()
        model = MMSIN.load(name)
        res = evaluate_real_notes(
            model,
            every=args.every,
            crepe_model=args.crepe,
            cache_dir=cache,
            clips=clips,
            label=label,
        )
        summary = {**res.summary, "model": name, "source": str(model.source)}
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        results["models"][name] = {"summary": summary, "notes": res.records()}
        rows.append(res.row(name))
        print(f"{name}: {summary['seconds']} s", file=sys.stderr)
    head = ["model", "tracked"] + [c[1] for c in COLUMNS]
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(out)
    return 0


def _heldout(cache: Path) -> Any:
    """The held-out split of nsynth-like (velocity 100), rendered into ``cache``."""
    import dataclasses

    from mmsin.data import load_clips
    from mmsin.data.nsynth_like import NSYNTH_SIZES, build_nsynth_like

    spec = dataclasses.replace(NSYNTH_SIZES["small"], velocities=(100,), per_family=1)
    root = build_nsynth_like(cache / "heldout-notes", "small", progress=False, spec=spec)
    return load_clips(root, "heldout")


if __name__ == "__main__":
    sys.exit(main())
