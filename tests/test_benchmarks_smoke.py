"""Smoke test of the benchmark machinery (benchmarks/): tiny sizes, a few seconds.

Checks that a subprocess measurement reports a peak memory consistent with what the workload
must allocate, that thread settings reach the child, that the planner pairs ours with the
peers, and that ``run.py`` writes a well-formed JSON result. The real numbers come from
``benchmarks/run.py`` itself, not from here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_scattering  # noqa: E402
import common  # noqa: E402
import run as bench_run  # noqa: E402


def test_summarize_and_threads() -> None:
    s = common.summarize([3.0, 1.0, 2.0, 10.0])
    assert s == {"median_s": 2.5, "min_s": 1.0, "max_s": 10.0, "n": 4}
    assert common.parse_threads("1,all,1") == [1, common.all_threads()] or (
        common.all_threads() == 1 and common.parse_threads("1,all,1") == [1]
    )
    with pytest.raises(ValueError, match="neither"):
        common.parse_threads("1,many")
    with pytest.raises(ValueError, match=">= 1"):
        common.parse_threads("0")


def test_subprocess_peak_memory_counts_the_workload() -> None:
    # |rfft| of 32 x 65536 float32: the input (8 MiB) and the complex64 spectrum (8 MiB) must
    # both be resident at the peak, so the reported extra RSS is at least their sum.
    batch, time = 32, 65536
    spec = common.CaseSpec(
        key="trivial",
        factory="bench_scattering:trivial_fft",
        kwargs={"batch": batch, "time": time, "mode": "forward"},
        imports=["torch.fft"],
        threads=1,
        warmup=1,
        repeats=3,
        timeout_s=120,
    )
    res = common.run_case(spec)
    assert "error" not in res, res
    need = batch * time * 4 + batch * (time // 2 + 1) * 8
    assert need <= res["peak_bytes"] < 20 * need
    assert res["n"] == 3 and res["min_s"] <= res["median_s"] <= res["max_s"]
    assert res["threads"] == 1
    assert res["info"]["output_shape"] == [batch, time // 2 + 1]


def test_failing_case_reports_one_line_error() -> None:
    spec = common.CaseSpec(key="bad", factory="bench_scattering:no_such_factory", timeout_s=60)
    res = common.run_case(spec)
    assert "no_such_factory" in res["error"]


def test_plan_pairs_ours_with_peers() -> None:
    specs, rows, notes = bench_scattering.plan("full", threads=1)
    keys = {s.key for s in specs}
    assert len(keys) == len(specs)
    dev = bench_scattering.importable(
        bench_scattering.KYMATIO_FRONTEND, "TimeFrequencyScatteringTorch"
    )
    if dev is not None:
        # A missing kymatio-dev JTFS must be said, not silently skipped.
        assert any("TimeFrequencyScattering is not importable" in n for n in notes)
    for row in rows:
        assert row.ours_key == "" or row.ours_key in keys
        assert row.peer_key is None or row.peer_key in keys
    has_ours = bench_scattering.importable("mmsin.scattering", "Scalogram") is None
    if has_ours:
        sk = [r for r in rows if r.case.startswith("S_K") and r.case.endswith("128x8192")]
        assert {r.case.split()[1] for r in sk} == {"morlet", "gammatone"}
        assert any(r.target_ratio == 8.0 for r in sk)
        sj = [r for r in rows if r.case.startswith("S_J paper forward")]
        # Without kymatio's development JTFS, the recorded figure stands in for it.
        assert any(r.peer_key is not None or r.recorded for r in sj)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("kymatio") is None, reason="kymatio (the peer) is not installed"
)
def test_run_py_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    status = bench_run.main(
        ["--size", "tiny", "--only", "scattering", "--threads", "1", "--output", str(out)]
    )
    doc = json.loads(out.read_text())
    assert status == 0, doc["notes"]
    assert doc["environment"]["torch"]
    assert doc["rows"], "no rows"
    for row in doc["rows"]:
        assert row["threads"] == 1
        if row["ratio"] is not None:
            assert row["ratio"] == pytest.approx(row["peer"]["median_s"] / row["ours"]["median_s"])
    table = bench_run.format_table(doc["rows"])
    assert table.count("\n") == len(doc["rows"]) + 1
