"""Timing and peak-memory machinery shared by every benchmark in this folder.

Each measurement ("case") runs in a fresh Python subprocess so that its peak memory is its
own: the child imports what the case needs, records its resident-set high-water mark
(``ru_maxrss``) as a baseline, builds the workload (module and input), runs warm-up and
timed repeats, and reports the new high-water mark minus the baseline. On CUDA the peak is
``torch.cuda.max_memory_allocated`` over the same span. Times are medians of several repeats
after warm-up, with the minimum and maximum kept as the spread.

A workload is described by a :class:`CaseSpec`: which modules to import before the baseline,
and a factory ``"module:function"`` with JSON keyword arguments that returns a
:class:`Workload` (a zero-argument callable). The same child entry point also runs the
``run(threads)`` functions of the generation and training benchmarks (see :func:`run_external`).

Run as a script, this file is the child process: ``python benchmarks/common.py --case JSON``.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import inspect
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULT_PREFIX = "BENCH_RESULT "


@dataclasses.dataclass
class Workload:
    """One timed operation, built inside the child process.

    Parameters
    ----------
    fn : callable
        Zero-argument callable; one call is one timed repeat.
    info : dict
        Free-form facts to report (output shape, number of channels, ...), JSON-serialisable.
    """

    fn: Callable[[], Any]
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CaseSpec:
    """What one subprocess measures.

    Parameters
    ----------
    key : str
        Unique identifier of the measurement inside a run (used to pair ours with peers).
    factory : str
        ``"module:function"``; the function takes ``**kwargs`` plus ``device`` and returns a
        :class:`Workload`. The module is imported from ``benchmarks/`` or the repository root.
    kwargs : dict
        JSON-serialisable keyword arguments for the factory.
    imports : list of str
        Modules imported before the memory baseline is taken (the library under test), so that
        import-time memory is not charged to the workload.
    threads : int
        ``torch.set_num_threads`` value in the child.
    device : str
        ``"cpu"`` or ``"cuda"``.
    warmup : int
        Untimed calls before timing.
    repeats : int
        Maximum number of timed calls.
    budget_s : float
        Soft time budget for the timed calls: if one warm-up call takes long, fewer repeats are
        run (never fewer than ``min_repeats``).
    min_repeats : int
        Lower bound on timed calls.
    timeout_s : float
        Hard wall-clock limit of the child process, seconds.
    profile : bool
        Also run one call under ``torch.profiler`` and return the top operators.
    """

    key: str
    factory: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    imports: list[str] = dataclasses.field(default_factory=list)
    threads: int = 1
    device: str = "cpu"
    warmup: int = 1
    repeats: int = 5
    budget_s: float = 60.0
    min_repeats: int = 3
    timeout_s: float = 900.0
    profile: bool = False


def all_threads() -> int:
    """Number of CPU cores this process may run on (the "all threads" setting)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def parse_threads(text: str) -> list[int]:
    """Parse ``"1,all"`` style thread lists into sorted unique positive integers.

    Raises
    ------
    ValueError
        If an entry is neither ``all`` nor a positive integer.
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            n = all_threads()
        else:
            try:
                n = int(part)
            except ValueError:
                raise ValueError(f"--threads: {part!r} is neither 'all' nor an integer") from None
            if n < 1:
                raise ValueError(f"--threads: {n} must be >= 1")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError(f"--threads: no thread count in {text!r}")
    return out


def summarize(times: Sequence[float]) -> dict[str, float | int]:
    """Median, minimum, maximum and count of a list of durations in seconds."""
    if not times:
        raise ValueError("summarize: no timings")
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "n": len(times),
    }


def _maxrss_bytes() -> int:
    # Linux reports ru_maxrss in KiB (macOS in bytes); the benchmarks target Linux.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def _status_bytes(field: str) -> int | None:
    """A size field (VmRSS, VmHWM) of /proc/self/status in bytes, None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> tuple[int, bool]:
    """Start a fresh peak-RSS window; return (baseline bytes, whether the reset worked).

    Importing torch leaves a transient high-water mark well above the resident size, which
    would hide a workload smaller than that transient if the baseline were ru_maxrss. Linux
    resets VmHWM to the current RSS on ``echo 5 > /proc/self/clear_refs``; then the workload's
    peak is VmHWM - VmRSS(baseline). Elsewhere fall back to ru_maxrss.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return _maxrss_bytes(), False
    rss = _status_bytes("VmRSS")
    return (rss, True) if rss is not None else (_maxrss_bytes(), False)


def setup_path() -> None:
    """Put benchmarks/, the repository root and src/ on sys.path (src/ wins over installs)."""
    for p in (str(BENCH_DIR), str(REPO_ROOT), str(REPO_ROOT / "src")):
        if p not in sys.path:
            sys.path.insert(0, p)


def _resolve(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"factory {target!r} is not of the form 'module:function'")
    return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


def measure(spec: CaseSpec) -> dict[str, Any]:
    """Run one case in the current process and return its timings and peak memory.

    Meant to be called in a fresh child process (see :func:`run_case`): the memory figure is a
    process-wide high-water mark and would be polluted by earlier work in the same process.

    Returns
    -------
    dict
        ``key``, ``median_s``, ``min_s``, ``max_s``, ``n``, ``times_s``, ``warmup_s``,
        ``peak_bytes`` (extra peak over the post-import baseline: RSS on CPU, CUDA allocator
        peak on CUDA), ``rss_peak_bytes``, ``baseline_rss_bytes``, ``threads``, ``device``,
        ``device_name``, ``info``, and ``profile`` (a text table) when requested.
    """
    setup_path()
    import torch

    torch.set_num_threads(spec.threads)
    for name in spec.imports:
        importlib.import_module(name)
    factory = _resolve(spec.factory)
    cuda = spec.device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    gc.collect()
    base_rss, hwm_reset = _reset_peak_rss()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    workload: Workload = factory(device=spec.device, **spec.kwargs)
    warm: list[float] = []
    for _ in range(max(spec.warmup, 0)):
        t0 = time.perf_counter()
        workload.fn()
        sync()
        warm.append(time.perf_counter() - t0)
    per_call = max(warm) if warm else 0.0
    n_rep = spec.repeats
    if per_call > 0:
        n_rep = max(spec.min_repeats, min(spec.repeats, int(spec.budget_s / per_call)))
    times: list[float] = []
    for _ in range(max(n_rep, 1)):
        gc.collect()
        sync()
        t0 = time.perf_counter()
        workload.fn()
        sync()
        times.append(time.perf_counter() - t0)
    hwm = _status_bytes("VmHWM") if hwm_reset else None
    rss_peak = hwm if hwm is not None else _maxrss_bytes()
    out: dict[str, Any] = {"key": spec.key, **summarize(times)}
    out["times_s"] = times
    out["warmup_s"] = warm
    out["baseline_rss_bytes"] = base_rss
    out["rss_peak_bytes"] = rss_peak
    if cuda:
        out["peak_bytes"] = int(torch.cuda.max_memory_allocated() - cuda_base)
        out["device_name"] = torch.cuda.get_device_name()
    else:
        out["peak_bytes"] = int(rss_peak - base_rss)
        out["device_name"] = cpu_name()
    out["threads"] = torch.get_num_threads()
    out["device"] = spec.device
    out["info"] = workload.info
    if spec.profile:
        out["profile"] = profile_call(workload.fn, cuda=cuda)
    return out


def profile_call(fn: Callable[[], Any], *, cuda: bool = False, rows: int = 20) -> str:
    """One call of ``fn`` under ``torch.profiler``; returns the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, profile_memory=True) as prof:
        fn()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return str(prof.key_averages().table(sort_by=sort, row_limit=rows))


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    # OpenMP/MKL pools are sized at start-up; match torch.set_num_threads so the "1 thread"
    # figures are not paid for by idle spinning workers. OPENBLAS_* is left as found.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    src = str(REPO_ROOT / "src")
    extra = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    env["PYTHONPATH"] = os.pathsep.join([src, str(REPO_ROOT), str(BENCH_DIR), *extra])
    return env


def _run_child(args: list[str], threads: int, timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=_child_env(threads),
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            result["child_wall_s"] = wall
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()
    last = tail[-1] if tail else f"exit status {proc.returncode}, no output"
    return {"error": last, "returncode": proc.returncode}


def run_case(spec: CaseSpec) -> dict[str, Any]:
    """Measure ``spec`` in a fresh subprocess; returns :func:`measure`'s dict or ``{"error"}``."""
    payload = json.dumps(dataclasses.asdict(spec))
    return _run_child(["--case", payload], spec.threads, spec.timeout_s)


def run_external(
    module: str,
    threads: int,
    device: str = "cpu",
    quick: bool = False,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Call ``module.run(threads)`` in a fresh subprocess and return ``{"rows": [...]}``.

    ``device`` and ``quick`` are passed as keywords when ``run`` accepts them. A module that
    cannot be found gives ``{"missing": "<message>"}``; any other failure
    ``{"error": "<last line>"}``.
    """
    payload = json.dumps({"module": module, "threads": threads, "device": device, "quick": quick})
    return _run_child(["--external", payload], threads, timeout_s)


def _external_child(payload: dict[str, Any]) -> dict[str, Any]:
    setup_path()
    import torch

    threads = int(payload["threads"])
    torch.set_num_threads(threads)
    try:
        mod = importlib.import_module(payload["module"])
    except ModuleNotFoundError as exc:
        if exc.name == payload["module"]:
            return {"missing": f"{payload['module']}.py not found in benchmarks/"}
        raise
    run = mod.run
    kwargs: dict[str, Any] = {}
    params = inspect.signature(run).parameters
    if "quick" in params:
        kwargs["quick"] = bool(payload.get("quick", False))
    if "device" in params:
        kwargs["device"] = payload["device"]
    elif payload["device"] != "cpu":
        return {"missing": f"{payload['module']}.run has no device argument (CPU only)"}
    rows = run(threads, **kwargs)
    return {"rows": rows}


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """Short hash of HEAD, with ``+dirty`` when benchmark or source files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "benchmarks"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Facts about the machine and software that a benchmark result depends on."""
    import numpy
    import torch

    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "usable_cores": all_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "commit": git_commit(),
        "cuda_available": torch.cuda.is_available(),
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")},
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name()
    try:
        import kymatio

        env["kymatio"] = kymatio.__version__
    except Exception as exc:  # kymatio is optional; any import failure is reported
        env["kymatio"] = f"unavailable ({type(exc).__name__})"
    try:
        env["loadavg"] = os.getloadavg()
    except OSError:
        pass
    return env


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--case":
        spec = CaseSpec(**json.loads(argv[1]))
        result = measure(spec)
    elif len(argv) == 2 and argv[0] == "--external":
        result = _external_child(json.loads(argv[1]))
    else:
        print("usage: common.py --case JSON | --external JSON (internal child entry point)")
        return 2
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
