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


def main(argv: list[str] | None = None) -> int:
    from mmsin import paths
    from mmsin.experiments.real_notes import COLUMNS, evaluate_real_notes
    from mmsin.model import MMSIN

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
    rows: list[list[str]] = []
    for name in args.model:
        t0 = time.perf_counter()
        model = MMSIN.load(name)
        res = evaluate_real_notes(model, every=args.every, crepe_model=args.crepe, cache_dir=cache)
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


if __name__ == "__main__":
    sys.exit(main())
