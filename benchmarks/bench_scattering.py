"""Scattering benchmarks: mmsin's S_K and S_J against kymatio, side by side, as ratios.

Cases (sizes of the ``full`` preset; ``quick`` divides the batches by 8, ``tiny`` is for the
smoke test only):

- **S_K** (first-order scattering used by the losses): ``mmsin.scattering.Scalogram(K=5, Q=12)``
  with Morlet and with Gammatone wavelets vs kymatio 0.3.0 ``Scattering1D(J=5, Q=12,
  max_order=1)`` on 128 x 8192 samples. Target: ours forward+backward >= 8x faster.
- **S_J** (joint time-frequency scattering, paper eq. 8):
  ``mmsin.scattering.TimeFrequencyScattering(J=10, Q=12, P=12, variant="paper")`` on
  16 x 32768 samples. kymatio's JTFS exists only in its unreleased development branch; when it
  cannot be imported, the comparison uses the figure measured on this machine and recorded in
  ``shared/research/scattering-anchors.md`` (129 s forward, 7.0 GB peak RSS, one thread, kymatio
  main 11552ed5, ``TimeFrequencyScattering(J=10, J_fr=3, Q=12)``), marked "recorded, not
  re-measured". Targets: >= 50x faster than 129 s and < 2 GB peak. As a peer measured in the
  same run, kymatio 0.3.0 ``Scattering1D(J=10, Q=12, max_order=2)`` (plain second-order time
  scattering) is compared with our ``paper`` variant and with our ``time`` variant (the like
  for like comparison).

"forward" runs under ``torch.no_grad()``; "fwd+bwd" takes the gradient of ``output.sum()`` with
respect to an input that requires grad. Inputs are seeded standard normal float32 noise.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from common import CaseSpec, Workload

KYMATIO_FRONTEND = "kymatio.scattering1d.frontend.torch_frontend"
MODES = ("forward", "fwd+bwd")

# Measured on this machine with kymatio's development branch (see module docstring).
RECORDED_KYMATIO_DEV_JTFS: dict[str, Any] = {
    "label": "kymatio dev (main 11552ed5) TimeFrequencyScattering(J=10, J_fr=3, Q=12)",
    "forward_s": 129.0,
    "forward_peak_bytes": int(7.0e9),
    "threads": 1,
    "fwd+bwd_note": "fwd+bwd passed 17 GB RSS after > 20 min and was stopped",
    "source": "shared/research/scattering-anchors.md, section 1.8",
}

SIZES: dict[str, dict[str, Any]] = {
    "full": {"sk": (128, 8192), "sj": (16, 32768), "J": 10, "K": 5, "repeats": 5, "budget": 60.0},
    "quick": {"sk": (16, 8192), "sj": (2, 32768), "J": 10, "K": 5, "repeats": 3, "budget": 20.0},
    # The smoke test: tiny shapes, one repeat; exercises the machinery, not the numbers.
    "tiny": {
        "sk": (2, 2048),
        "sj": (1, 4096),
        "J": 6,
        "K": 5,
        "repeats": 1,
        "budget": 5.0,
        "modes": ("fwd+bwd",),
    },
}


# --------------------------------------------------------------------------------------------
# Workload factories (run inside the child process; imports are local so that the parent does
# not pay for them and the memory baseline is taken after them).
# --------------------------------------------------------------------------------------------


def _input(batch: int, time: int, mode: str, device: str) -> Any:
    import torch

    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, time, generator=gen).to(device)
    if mode == "fwd+bwd":
        x.requires_grad_(True)
    return x


def _timed(module: Any, x: Any, mode: str, info: dict[str, Any]) -> Workload:
    import torch

    with torch.no_grad():
        y = module(x)
    info = {**info, "output_shape": list(y.shape)}
    del y

    if mode == "forward":

        def fn() -> None:
            with torch.no_grad():
                module(x)

    else:

        def fn() -> None:
            x.grad = None
            module(x).sum().backward()

    return Workload(fn=fn, info=info)


def trivial_fft(*, batch: int, time: int, mode: str, device: str) -> Workload:
    """|rfft(x)| summed: a trivial torch operation, used to test the machinery itself."""
    import torch

    x = _input(batch, time, mode, device)

    class _Mod(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft(v).abs()

    return _timed(_Mod(), x, mode, {"impl": "torch.fft.rfft(x).abs()"})


def kymatio_scattering1d(
    *, J: int, Q: int, max_order: int, batch: int, time: int, mode: str, device: str
) -> Workload:
    """kymatio 0.3.0 ``Scattering1D`` (torch frontend, imported from its submodule)."""
    import kymatio

    frontend = importlib.import_module(KYMATIO_FRONTEND)
    module = frontend.ScatteringTorch1D(J=J, shape=time, Q=Q, max_order=max_order).to(device)
    x = _input(batch, time, mode, device)
    return _timed(module, x, mode, {"impl": f"kymatio {kymatio.__version__} Scattering1D"})


def kymatio_dev_jtfs(
    *, J: int, J_fr: int, Q: int, batch: int, time: int, mode: str, device: str
) -> Workload:
    """kymatio development-branch ``TimeFrequencyScattering`` (only if it is installed)."""
    import kymatio

    frontend = importlib.import_module(KYMATIO_FRONTEND)
    cls = frontend.TimeFrequencyScatteringTorch
    module = cls(J=J, J_fr=J_fr, Q=Q, shape=time).to(device)
    x = _input(batch, time, mode, device)
    return _timed(module, x, mode, {"impl": f"kymatio {kymatio.__version__} JTFS"})


def ours_scalogram(
    *, K: int, Q: int, wavelet: str, batch: int, time: int, mode: str, device: str
) -> Workload:
    """``mmsin.scattering.Scalogram`` (S_K)."""
    from mmsin.scattering import Scalogram

    module = Scalogram(K=K, Q=Q, wavelet=wavelet).to(device)
    x = _input(batch, time, mode, device)
    info = {"impl": "mmsin Scalogram", "num_channels": int(module.num_channels)}
    return _timed(module, x, mode, info)


def ours_jtfs(
    *, J: int, Q: int, P: int, variant: str, batch: int, time: int, mode: str, device: str
) -> Workload:
    """``mmsin.scattering.TimeFrequencyScattering`` (S_J)."""
    from mmsin.scattering import TimeFrequencyScattering

    module = TimeFrequencyScattering(J=J, Q=Q, P=P, variant=variant).to(device)
    x = _input(batch, time, mode, device)
    info: dict[str, Any] = {"impl": f"mmsin TimeFrequencyScattering({variant})"}
    info["num_channels"] = int(module.num_channels)
    return _timed(module, x, mode, info)


# --------------------------------------------------------------------------------------------
# Plan: which measurements to take and how to pair them into rows.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Comparison:
    """One table row: our measurement against a peer measurement or a recorded figure."""

    case: str
    ours_label: str
    ours_key: str
    peer_label: str
    peer_key: str | None
    recorded: dict[str, Any] | None = None
    target_ratio: float | None = None
    target_peak_bytes: int | None = None
    notes: str = ""


def importable(module: str, attr: str | None = None) -> str | None:
    """``None`` if ``module`` (and ``attr`` in it) imports, else a one-line reason."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # report any import failure, e.g. kymatio with a new scipy
        return f"{module} does not import ({type(exc).__name__}: {exc})"
    if attr is not None and not hasattr(mod, attr):
        return f"{module} has no {attr}"
    return None


def plan(
    size: str = "full", threads: int = 1, device: str = "cpu"
) -> tuple[list[CaseSpec], list[Comparison], list[str]]:
    """Measurements and table rows for one thread count.

    Returns
    -------
    specs : list of CaseSpec
        Unique measurements (each runs in its own subprocess).
    comparisons : list of Comparison
        Rows pairing ``specs`` by key.
    notes : list of str
        Printed notes (peers that are missing and why).
    """
    if size not in SIZES:
        raise ValueError(f"size {size!r} is not one of {sorted(SIZES)}")
    cfg = SIZES[size]
    notes: list[str] = []
    specs: dict[str, CaseSpec] = {}

    def spec(key: str, factory: str, imports: list[str], **kwargs: Any) -> str:
        full_key = f"{key}|t{threads}|{device}"
        specs[full_key] = CaseSpec(
            key=full_key,
            factory=f"bench_scattering:{factory}",
            kwargs=kwargs,
            imports=imports,
            threads=threads,
            device=device,
            warmup=1,
            repeats=cfg["repeats"],
            min_repeats=min(3, cfg["repeats"]),
            budget_s=cfg["budget"],
        )
        return full_key

    rows: list[Comparison] = []
    ours_missing = importable("mmsin.scattering", "Scalogram")
    kym_missing = importable(KYMATIO_FRONTEND, "ScatteringTorch1D")
    if kym_missing:
        notes.append(f"kymatio peer unavailable: {kym_missing}")
    if ours_missing:
        notes.append(f"ours unavailable: {ours_missing}")

    # ---- S_K --------------------------------------------------------------------------------
    B, T = cfg["sk"]
    K = cfg["K"]
    modes = cfg.get("modes", MODES)
    for mode in modes:
        peer_key = None
        if not kym_missing:
            peer_key = spec(
                f"kymatio-S1-J{K}-{mode}",
                "kymatio_scattering1d",
                [KYMATIO_FRONTEND],
                J=K,
                Q=12,
                max_order=1,
                batch=B,
                time=T,
                mode=mode,
            )
        if ours_missing and peer_key is not None:
            # Keep measuring the peer so the table shows it even before our module lands.
            rows.append(
                Comparison(
                    case=f"S_K (peer only) {mode} {B}x{T}",
                    ours_label="-",
                    ours_key="",
                    peer_label=f"kymatio 0.3.0 Scattering1D(J={K}, Q=12, order 1)",
                    peer_key=peer_key,
                )
            )
        for wavelet in ("morlet", "gammatone"):
            if ours_missing:
                continue
            ours_key = spec(
                f"ours-SK-{wavelet}-{mode}",
                "ours_scalogram",
                ["mmsin.scattering"],
                K=K,
                Q=12,
                wavelet=wavelet,
                batch=B,
                time=T,
                mode=mode,
            )
            rows.append(
                Comparison(
                    case=f"S_K {wavelet} {mode} {B}x{T}",
                    ours_label=f"Scalogram(K={K}, Q=12, {wavelet})",
                    ours_key=ours_key,
                    peer_label=f"kymatio 0.3.0 Scattering1D(J={K}, Q=12, order 1)",
                    peer_key=peer_key,
                    target_ratio=8.0 if mode == "fwd+bwd" and size == "full" else None,
                )
            )

    # ---- S_J --------------------------------------------------------------------------------
    B, T = cfg["sj"]
    J = cfg["J"]
    dev_missing = importable(KYMATIO_FRONTEND, "TimeFrequencyScatteringTorch")
    for mode in modes:
        ours_keys: dict[str, str] = {}
        if not ours_missing:
            for variant in ("paper", "time"):
                ours_keys[variant] = spec(
                    f"ours-SJ-{variant}-J{J}-{mode}",
                    "ours_jtfs",
                    ["mmsin.scattering"],
                    J=J,
                    Q=12,
                    P=12,
                    variant=variant,
                    batch=B,
                    time=T,
                    mode=mode,
                )
        # kymatio development JTFS: measured when importable, else the recorded figure.
        if "paper" in ours_keys:
            if not dev_missing:
                dev_key = spec(
                    f"kymatio-dev-JTFS-J{J}-{mode}",
                    "kymatio_dev_jtfs",
                    [KYMATIO_FRONTEND],
                    J=J,
                    J_fr=3,
                    Q=12,
                    batch=B,
                    time=T,
                    mode=mode,
                )
                rows.append(
                    Comparison(
                        case=f"S_J paper {mode} {B}x{T}",
                        ours_label=f"TimeFrequencyScattering(J={J}, Q=12, P=12, paper)",
                        ours_key=ours_keys["paper"],
                        peer_label="kymatio dev TimeFrequencyScattering(J_fr=3, Q=12)",
                        peer_key=dev_key,
                        target_ratio=50.0 if mode == "forward" and size == "full" else None,
                        target_peak_bytes=int(2e9) if size == "full" else None,
                    )
                )
            elif size == "full" and J == 10 and device == "cpu":
                rec = RECORDED_KYMATIO_DEV_JTFS
                recorded = None
                if mode == "forward":
                    recorded = {
                        "median_s": rec["forward_s"],
                        "peak_bytes": rec["forward_peak_bytes"],
                        "threads": rec["threads"],
                    }
                rows.append(
                    Comparison(
                        case=f"S_J paper {mode} {B}x{T}",
                        ours_label=f"TimeFrequencyScattering(J={J}, Q=12, P=12, paper)",
                        ours_key=ours_keys["paper"],
                        peer_label=rec["label"] + " [recorded, not re-measured]",
                        peer_key=None,
                        recorded=recorded,
                        target_ratio=50.0 if mode == "forward" else None,
                        target_peak_bytes=int(2e9),
                        notes=(
                            f"peer figure recorded at 1 thread ({rec['source']})"
                            if mode == "forward"
                            else rec["fwd+bwd_note"]
                        ),
                    )
                )
        if dev_missing and mode == modes[0]:
            notes.append(
                "kymatio's TimeFrequencyScattering is not importable (kymatio "
                "0.3.0 on PyPI has none; it exists only in kymatio's development branch): "
                f"{dev_missing}. S_J is compared with the recorded kymatio-dev figure and "
                "with kymatio 0.3.0 Scattering1D(max_order=2)."
            )
        if kym_missing:
            continue
        s2_key = spec(
            f"kymatio-S2-J{J}-{mode}",
            "kymatio_scattering1d",
            [KYMATIO_FRONTEND],
            J=J,
            Q=12,
            max_order=2,
            batch=B,
            time=T,
            mode=mode,
        )
        for variant, key in ours_keys.items():
            rows.append(
                Comparison(
                    case=f"S_J {variant} {mode} {B}x{T}",
                    ours_label=f"TimeFrequencyScattering(J={J}, Q=12, P=12, {variant})",
                    ours_key=key,
                    peer_label=f"kymatio 0.3.0 Scattering1D(J={J}, Q=12, order 2)",
                    peer_key=s2_key,
                    target_peak_bytes=int(2e9) if variant == "paper" and size == "full" else None,
                    notes="" if variant == "time" else "peer is time scattering only (fewer paths)",
                )
            )
        if ours_missing:
            rows.append(
                Comparison(
                    case=f"S_J (peer only) {mode} {B}x{T}",
                    ours_label="-",
                    ours_key="",
                    peer_label=f"kymatio 0.3.0 Scattering1D(J={J}, Q=12, order 2)",
                    peer_key=s2_key,
                )
            )
    return list(specs.values()), rows, notes


def make_rows(
    comparisons: list[Comparison], results: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Pair measured results into the row dicts that run.py prints and saves."""
    out: list[dict[str, Any]] = []
    for c in comparisons:
        ours = results.get(c.ours_key) if c.ours_key else None
        peer: dict[str, Any] | None
        if c.peer_key is not None:
            peer = results.get(c.peer_key)
        else:
            peer = c.recorded
        row: dict[str, Any] = {
            "group": "scattering",
            "case": c.case,
            "ours_label": c.ours_label,
            "peer_label": c.peer_label,
            "ours": ours,
            "peer": peer,
            "peer_recorded": c.peer_key is None and "[recorded" in c.peer_label,
            "unit": "s",
            "notes": c.notes,
        }
        ratio = None
        if ours and peer and "median_s" in ours and "median_s" in peer:
            ratio = peer["median_s"] / ours["median_s"]
        row["ratio"] = ratio
        checks: list[dict[str, Any]] = []
        if c.target_ratio is not None:
            checks.append(
                {
                    "check": f"ratio >= {c.target_ratio:g}",
                    "met": None if ratio is None else ratio >= c.target_ratio,
                }
            )
        if c.target_peak_bytes is not None:
            peak = ours.get("peak_bytes") if ours else None
            checks.append(
                {
                    "check": f"peak < {c.target_peak_bytes / 1e9:g} GB",
                    "met": None if peak is None else peak < c.target_peak_bytes,
                }
            )
        row["target_checks"] = checks
        row["target"] = ", ".join(c["check"] for c in checks)
        mets = [c["met"] for c in checks]
        row["target_met"] = None if not checks or None in mets else all(mets)
        out.append(row)
    return out
