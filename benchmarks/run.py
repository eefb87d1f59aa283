"""Run mmsin's benchmarks against their peers and print one table.

Usage::

    .venv/bin/python benchmarks/run.py [--quick] [--only scattering,generation,training]
                                       [--threads 1,all] [--device cpu|cuda]

Every measurement runs in a fresh subprocess (honest peak memory, no shared state); ours and
the peer are measured in the same run on the same machine, once per thread count, and compared
as ratios peer/ours (> 1: ours is faster). Results go to
``benchmarks/results/<date>-<host>.json`` and, for a complete run (no ``--quick``, no
``--only``, no ``--filter``), to ``benchmarks/results/latest.json``.

The generation and training benchmarks live in ``bench_generation.py`` and
``bench_training.py``; each exposes ``run(threads: int) -> list[dict]`` and is skipped with a
note when absent.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

# The working tree's src/ first, so an uninstalled checkout (e.g. a GPU machine) benchmarks
# the code it holds, exactly as the child processes do.
common.setup_path()

GROUPS = ("scattering", "generation", "training")
EXTERNAL = {"generation": "bench_generation", "training": "bench_training"}
RESULTS_DIR = common.BENCH_DIR / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark mmsin against its peers (kymatio, ...) side by side."
    )
    p.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    p.add_argument("--only", default=",".join(GROUPS), help="comma list of " + ", ".join(GROUPS))
    p.add_argument("--threads", default="1,all", help="comma list of thread counts or 'all'")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument(
        "--profile",
        default="",
        help="substring of a measurement key (e.g. ours-SJ-paper): print a torch.profiler table",
    )
    p.add_argument(
        "--filter",
        default="",
        help="only scattering measurements whose key contains one of these comma substrings",
    )
    p.add_argument("--output", type=Path, default=None, help="JSON path (default: results/)")
    # Internal: the smoke test runs the whole pipeline on tiny shapes.
    p.add_argument(
        "--size", default=None, choices=("full", "quick", "tiny"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        p.error(f"--only: unknown group(s) {bad}; choose from {list(GROUPS)}")
    args.groups = groups
    try:
        args.thread_list = common.parse_threads(args.threads)
    except ValueError as exc:
        p.error(str(exc))
    if args.size is None:
        args.size = "quick" if args.quick else "full"
    return args


# ------------------------------------------------------------------------------ formatting


def _fmt_time(v: Any, unit: str = "s") -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float):
        return f"{v:.3g} {unit}"
    if isinstance(v, dict):
        if "error" in v:
            return "error"
        if "median_s" in v:
            med, lo, hi = v["median_s"], v.get("min_s"), v.get("max_s")
            text = f"{med:.3g} s"
            if lo is not None and hi is not None and v.get("n", 1) > 1:
                text += f" [{lo:.3g}-{hi:.3g}]"
            return text
        if "value" in v:
            return f"{v['value']:.3g} {v.get('unit', unit)}"
    return str(v)


def _peak(v: Any) -> str:
    if isinstance(v, dict) and v.get("peak_bytes") is not None:
        return f"{v['peak_bytes'] / 2**20:.0f}"
    return "-"


def _yes_no(met: Any) -> str:
    return "yes" if met is True else "NO" if met is False else "?"


def _fmt_target(row: dict[str, Any]) -> str:
    checks = row.get("target_checks")
    if checks:
        return "; ".join(f"{c['check']}: {_yes_no(c.get('met'))}" for c in checks)
    target = row.get("target") or ""
    return f"{target}: {_yes_no(row.get('target_met'))}" if target else ""


def _row_cells(row: dict[str, Any]) -> list[str]:
    unit = row.get("unit", "s")
    ratio = row.get("ratio")
    ratio_s = "-" if ratio is None else f"{ratio:.2f}x"
    if row.get("peer_recorded"):
        ratio_s += "*"
    target = _fmt_target(row)
    ours = row.get("ours")
    peer = row.get("peer")
    ours_peak = row.get("ours_peak_bytes")
    peer_peak = row.get("peer_peak_bytes")
    mem_ours = _peak(ours) if ours_peak is None else f"{ours_peak / 2**20:.0f}"
    mem_peer = _peak(peer) if peer_peak is None else f"{peer_peak / 2**20:.0f}"
    return [
        str(row.get("case", "?")),
        _fmt_time(ours, unit),
        _fmt_time(peer, unit),
        ratio_s,
        f"{mem_ours}/{mem_peer}",
        str(row.get("threads", "-")),
        str(row.get("device_name", row.get("device", "-"))),
        target,
        str(row.get("notes") or row.get("peer_note") or ""),
    ]


HEADER = [
    "case",
    "ours",
    "peer",
    "peer/ours",
    "peak MiB ours/peer",
    "threads",
    "device",
    "target",
    "notes",
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table, one line per row, columns aligned."""
    cells = [HEADER] + [_row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """The same table as GitHub markdown (used for the README section)."""
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "/") for c in _row_cells(r)) + " |")
    return "\n".join(out)


# ------------------------------------------------------------------------------ running


def run_scattering(args: argparse.Namespace, threads: int, notes: list[str]) -> list[dict]:
    """Measure every scattering case for one thread count; returns table rows."""
    import bench_scattering

    specs, comparisons, plan_notes = bench_scattering.plan(args.size, threads, args.device)
    for n in plan_notes:
        if n not in notes:
            notes.append(n)
    results: dict[str, dict[str, Any]] = {}
    wanted = [f for f in args.filter.split(",") if f]
    if wanted:
        specs = [s for s in specs if any(f in s.key for f in wanted)]
        keys = {s.key for s in specs}
        comparisons = [c for c in comparisons if c.ours_key in keys or c.peer_key in keys]
    for spec in specs:
        if args.profile and args.profile in spec.key:
            spec.profile = True
        t0 = time.perf_counter()
        res = common.run_case(spec)
        results[spec.key] = res
        status = res.get("error") or _fmt_time(res)
        print(f"  [{time.perf_counter() - t0:6.1f} s] {spec.key}: {status}", flush=True)
        if "profile" in res:
            print(res["profile"], flush=True)
        if "error" in res:
            notes.append(f"{spec.key} failed: {res['error']}")
    rows = bench_scattering.make_rows(comparisons, results)
    for row in rows:
        src = row["ours"] if isinstance(row.get("ours"), dict) else row.get("peer")
        row["threads"] = threads
        row["device"] = args.device
        row["device_name"] = (src or {}).get("device_name", args.device)
    return rows


def run_external_group(
    group: str, args: argparse.Namespace, threads: int, notes: list[str]
) -> list[dict]:
    """Run ``bench_<group>.run(threads)`` in a subprocess; missing modules give a note."""
    module = EXTERNAL[group]
    if not (common.BENCH_DIR / f"{module}.py").exists():
        note = f"{group}: benchmarks/{module}.py does not exist yet; skipped"
        if note not in notes:
            notes.append(note)
        print("  " + note, flush=True)
        return []
    t0 = time.perf_counter()
    res = common.run_external(module, threads, args.device, quick=args.size != "full")
    print(f"  [{time.perf_counter() - t0:6.1f} s] {module}.run({threads})", flush=True)
    if "missing" in res:
        notes.append(f"{group}: {res['missing']}; skipped")
        return []
    if "error" in res:
        notes.append(f"{group} (threads={threads}) failed: {res['error']}")
        return []
    rows = []
    for row in res.get("rows", []):
        row = dict(row)
        row.setdefault("group", group)
        row.setdefault("threads", threads)
        row.setdefault("device", args.device)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (non-zero if a measurement failed)."""
    args = _parse(argv)
    env = common.environment()
    print(
        f"mmsin benchmarks ({args.size}) on {env['host']}: {env['cpu']}, "
        f"{env['usable_cores']} usable cores, torch {env['torch']}, kymatio {env['kymatio']}, "
        f"commit {env['commit']}"
    )
    if env["openblas_env"]:
        print(f"note: OPENBLAS environment set: {env['openblas_env']} (left as found)")
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    started = _dt.datetime.now(_dt.UTC)
    for threads in args.thread_list:
        print(f"threads = {threads}", flush=True)
        for group in args.groups:
            if group == "scattering":
                rows += run_scattering(args, threads, notes)
            else:
                rows += run_external_group(group, args, threads, notes)
    print()
    print(format_table(rows))
    if any(r.get("peer_recorded") for r in rows):
        print("* peer figure recorded earlier on this machine, not re-measured in this run")
    for n in notes:
        print(f"note: {n}")
    doc = {
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        # Other jobs on a shared machine inflate times; the load at the end says how much.
        "loadavg_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "size": args.size,
        "threads": args.thread_list,
        "device": args.device,
        "environment": env,
        "notes": notes,
        "rows": rows,
    }
    paths: list[Path] = []
    if args.output is not None:
        paths.append(args.output)
    else:
        suffix = "" if args.size == "full" else f"-{args.size}"
        paths.append(RESULTS_DIR / f"{started:%Y-%m-%d}-{env['host']}{suffix}.json")
        if args.size == "full" and set(args.groups) == set(GROUPS) and not args.filter:
            paths.append(RESULTS_DIR / "latest.json")
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path}")
    failed = [n for n in notes if "failed" in n]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
