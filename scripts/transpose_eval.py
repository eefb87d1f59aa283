"""Transposition in the embedding: how exact T_k is on S_J, and how well G plays it.

Two measurements, both for K in --semitones (default -12 -7 -5 -1 +1 +5 +7 +12):

1. **On S_J** (no generator): relative l2 error, per order, of ``T_K S_J x`` against ``S_J`` of
   the truly transposed sound, beside the error of doing nothing (``S_J x`` itself):
   - synthetic harmonic tones (G2, G3, G4; partials 1/h below 1.6 kHz after the shift; 50 ms
     attack, then steady), pitch-shifted by resampling (``x(2^(K/12) t)``, computed in closed
     form, so no resampling filter enters), frames from 1 s on; K = +-0.5 as well;
   - notes: the note K semitones away of the same instrument (held-out nsynth-like notes, and
     the recorded Steinway notes of ``real-notes``), all frames but the first: real targets,
     whose timbre also changes with the key.
2. **Decoded** with the model: ``G(T_K S_J x)`` against the target pitch, the original's own
   CREPE f0 times 2^(K/12): median f0 error in cents (CREPE tiny, voiced frames); timbre: the
   levels of partials 1..8 relative to their total (dB), against the original's, read at the
   target's harmonics as peaks and as energies (:mod:`mmsin.evaluation.timbre`), median
   |difference| (partials whose frequency is below 1.8 kHz before and after the shift; at
   least two); side by side with librosa's phase vocoder on the same audio
   (``librosa.effects.pitch_shift(x, sr=4096, n_steps=K, bins_per_octave=12, n_fft=2048,
   hop_length=512, res_type="soxr_hq")``: librosa 0.11's defaults, a 0.5 s window at
   4096 Hz), the model's plain reconstruction ``G(S_J x)`` (K = 0 row) and, to tell the
   operator's error from the generator's, the model's reconstruction of the same instrument's
   note K semitones away (``model_true_note``: G(S_J x_{p+K}), against the same target).

Usage::

    PYTHONPATH=src .venv/bin/python scripts/transpose_eval.py [--model notes]
        [--real $MMSIN_HOME/data/real-notes] [--step 3] [--out DIR]

Needs ``mmsin data build nsynth-like`` (held-out split) and, if present, the real-notes set
(``mmsin data build real-notes``). Writes ``$MMSIN_HOME/results/transpose/transpose_eval.json``
and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsin.evaluation.timbre import PARTIAL_FMAX

DEFAULT_K = (-12, -7, -5, -1, 1, 5, 7, 12)
FS = 4096
#: Phase-vocoder settings (librosa 0.11's defaults, named so that the table says what ran).
PV_SETTINGS = {"n_fft": 2048, "hop_length": 512, "res_type": "soxr_hq", "bins_per_octave": 12}


# ------------------------------------------------------------------------------ signals


def harmonic_tone(f0: float, ratio: float, seconds: float, partials: int) -> np.ndarray:
    """x(ratio t) for x a steady harmonic tone (amplitudes 1/h, 50 ms linear attack)."""
    t = np.arange(int(seconds * FS)) / FS * ratio
    env = np.minimum(1.0, t / 0.05)
    x = sum(np.sin(2 * np.pi * h * f0 * t + h) / h for h in range(1, partials + 1))
    return np.asarray(env * x, dtype=np.float64)


def partial_levels(x: np.ndarray, f0: float, n: int = 8, measure: str = "peak") -> np.ndarray:
    """Levels of partials 1..n (dB): :func:`mmsin.evaluation.partial_levels` at 4096 Hz, as
    peaks or as energies (``measure``)."""
    from mmsin.evaluation import partial_levels as levels

    return levels(x, f0, FS, n=n, fmax=PARTIAL_FMAX, measure=measure)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


# ------------------------------------------------------------------------------ part 1: S_J


def scattering_errors(sc: Any, ks: list[float], notes: dict[str, Any]) -> dict[str, Any]:
    """Per-order relative errors of T_K S_J x against S_J of the truly transposed sound."""
    from mmsin.scattering.transposition import transpose_frames

    order = torch.as_tensor(sc.meta()["order"])
    out: dict[str, Any] = {"tones": [], "notes": {}}

    def errors(S: torch.Tensor, S_true: torch.Tensor, k: float, frames: slice) -> dict[str, float]:
        St = transpose_frames(S, sc, k)
        row = {}
        for o in (0, 1, 2):
            m = order == o
            row[f"T_order{o}"] = _rel(St[:, m, frames], S_true[:, m, frames])
            row[f"identity_order{o}"] = _rel(S[:, m, frames], S_true[:, m, frames])
        return row

    for f0 in (98.0, 196.0, 392.0):
        for k in [*ks, -0.5, 0.5]:
            r = 2 ** (k / 12)
            # every partial inside the bank (below 1600 Hz) before and after: no edge effect
            partials = int(1600 / (f0 * max(1.0, r)))
            x = harmonic_tone(f0, 1.0, 4.0, partials)
            y = harmonic_tone(f0, r, 4.0, partials)
            S = sc(torch.as_tensor(np.stack([x, y])))
            row = errors(S[:1], S[1:], k, slice(4, None))
            out["tones"].append({"f0": f0, "K": k, **row})
    for name, clips in notes.items():
        keys = {(m["instrument_str"], int(m["pitch"])): i for i, m in enumerate(clips.meta)}
        S_all = sc(torch.as_tensor(clips.audio, dtype=torch.float64))
        per_k = []
        for k in ks:
            pairs = [
                (i, keys[(ins, p + int(k))])
                for (ins, p), i in keys.items()
                if (ins, p + int(k)) in keys
            ]
            rows = [errors(S_all[i : i + 1], S_all[j : j + 1], k, slice(1, None)) for i, j in pairs]
            med = {key: float(np.median([r[key] for r in rows])) for key in rows[0]} if rows else {}
            per_k.append({"K": k, "pairs": len(pairs), **med})
        out["notes"][name] = per_k
    return out


# ------------------------------------------------------------------------------ part 2: audio


def audio_eval(model: Any, clips: Any, ks: list[float], step: int) -> dict[str, Any]:
    """f0 error (cents) and timbre distance (dB) of G(T_K S_J x) and of the phase vocoder."""
    import librosa

    from mmsin.evaluation import cents, median_f0, timbre_distance

    pick = [i for i, m in enumerate(clips.meta) if 45 <= int(m["pitch"]) <= 76]
    pick = [i for i in pick if int(clips.meta[i]["pitch"]) % step == 0]
    keys = {(m["instrument_str"], int(m["pitch"])): i for i, m in enumerate(clips.meta)}
    rows = []
    for n, i in enumerate(pick):
        print(f"  {clips.meta[i]['name']} ({n + 1}/{len(pick)})", flush=True)
        x = clips.audio[i].astype(np.float32)
        f0 = median_f0(x, FS)
        if not np.isfinite(f0):
            continue
        ref = partial_levels(x, f0)
        ref_energy = partial_levels(x, f0, measure="energy")
        S = model.encode_scattering(x)
        for k in [0.0, *ks]:
            target = f0 * 2 ** (k / 12)
            y = model.decode_scattering(model.transpose_scattering(S, k))[0].numpy()
            outs = {"model": y}
            j = keys.get((clips.meta[i]["instrument_str"], int(clips.meta[i]["pitch"]) + int(k)))
            if k != 0 and k == int(k) and j is not None:
                # the generator alone: its reconstruction of the same instrument's note K away
                true = model.encode_scattering(clips.audio[j].astype(np.float32))
                outs["model_true_note"] = model.decode_scattering(true)[0].numpy()
            if k != 0:
                outs["phase_vocoder"] = librosa.effects.pitch_shift(
                    x, sr=FS, n_steps=k, **PV_SETTINGS
                )
            for method, sig in outs.items():
                fy = median_f0(sig, FS)
                rows.append(
                    {
                        "note": clips.meta[i]["name"],
                        "K": k,
                        "method": method,
                        "f0": f0,
                        "target": target,
                        "f0_out": fy,
                        "cents": float(cents(fy, target)) if np.isfinite(fy) else math.nan,
                        # at the target's harmonics (the f0 error judges the pitch)
                        "timbre_db": timbre_distance(ref, partial_levels(sig, target)),
                        "timbre_energy_db": timbre_distance(
                            ref_energy, partial_levels(sig, target, measure="energy")
                        ),
                    }
                )
    summary = []
    for k in [0.0, *ks]:
        for method in ("model", "model_true_note", "phase_vocoder"):
            sel = [r for r in rows if r["K"] == k and r["method"] == method]
            if not sel:
                continue
            c = np.array([r["cents"] for r in sel])
            t = np.array([r["timbre_db"] for r in sel])
            te = np.array([r["timbre_energy_db"] for r in sel])
            summary.append(
                {
                    "K": k,
                    "method": method,
                    "notes": len(sel),
                    "unvoiced": int(np.isnan(c).sum()),
                    "median_abs_cents": _median(np.abs(c)),
                    "median_cents": _median(c),
                    "within_10_cents": _median(np.abs(c) <= 10, mean=True),
                    "median_timbre_db": _median(t),
                    "median_timbre_energy_db": _median(te),
                }
            )
    return {"rows": rows, "summary": summary}


def _median(v: np.ndarray, *, mean: bool = False) -> float:
    """Median (or mean) over the finite entries; NaN when there are none."""
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return math.nan
    return float(v.mean() if mean else np.median(v))


# ------------------------------------------------------------------------------ main


def main() -> None:
    from mmsin import paths
    from mmsin.data import load_clips
    from mmsin.model import MMSIN
    from mmsin.scattering import TimeFrequencyScattering

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="notes", help="model name or path (default: notes)")
    p.add_argument("--semitones", default=",".join(f"{k:+d}" for k in DEFAULT_K))
    p.add_argument("--real", help="real-notes folder (default $MMSIN_HOME/data/real-notes)")
    p.add_argument(
        "--step",
        type=int,
        default=3,
        help="decode notes whose MIDI pitch is a multiple of this (MIDI 45-76; default 3)",
    )
    p.add_argument("--skip-audio", action="store_true", help="only the S_J measurement")
    p.add_argument("--out", help="output folder (default $MMSIN_HOME/results/transpose)")
    args = p.parse_args()
    ks = [float(v) for v in args.semitones.split(",")]
    out = Path(args.out) if args.out else paths.results_dir() / "transpose"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    model = MMSIN.load(args.model)
    cfg = model.config.scattering
    sc = TimeFrequencyScattering(
        cfg.J, cfg.Q, cfg.P, cfg.variant, cfg.fs, oversampling=cfg.oversampling
    ).double()
    sets: dict[str, Any] = {"nsynth-like held-out": load_clips("nsynth-like", "heldout")}
    real = Path(args.real) if args.real else paths.data_dir() / "real-notes"
    if real.is_dir():
        sets["real-notes (Steinway B)"] = load_clips(real, "heldout")
    else:
        print(f"no real-notes set at {real}: skipped")

    result: dict[str, Any] = {
        "model": str(model.source),
        "variant": cfg.variant,
        "semitones": ks,
        "phase_vocoder": {"function": "librosa.effects.pitch_shift", "sr": FS, **PV_SETTINGS},
    }
    result["scattering"] = scattering_errors(sc, ks, sets)
    print(f"\nT_K S_J x against S_J of the transposed sound, relative l2 ({cfg.variant})")
    print("set                        K     order1 (id)        order2 (id)")
    tones = result["scattering"]["tones"]
    for k in sorted({r["K"] for r in tones}):
        sel = [r for r in tones if r["K"] == k]
        o1 = np.median([r["T_order1"] for r in sel]), np.median([r["identity_order1"] for r in sel])
        o2 = np.median([r["T_order2"] for r in sel]), np.median([r["identity_order2"] for r in sel])
        print(
            f"{'tones (median of 3)':26s} {k:+5.1f}  {o1[0]:.4f} ({o1[1]:.2f})"
            f"   {o2[0]:.3f} ({o2[1]:.2f})"
        )
    for name, rows in result["scattering"]["notes"].items():
        for r in rows:
            if r["pairs"]:
                print(
                    f"{name[:26]:26s} {r['K']:+5.1f}"
                    f"  {r['T_order1']:.4f} ({r['identity_order1']:.2f})"
                    f"   {r['T_order2']:.3f} ({r['identity_order2']:.2f})   [{r['pairs']} pairs]"
                )

    if not args.skip_audio:
        result["audio"] = {}
        for name, clips in sets.items():
            res = audio_eval(model, clips, ks, args.step)
            result["audio"][name] = res
            print(f"\n{name}: f0 error against the original's f0 x 2^(K/12), timbre (partials 1-8)")
            print(
                "  K   method          notes  |cents| med  cents med  <=10c   timbre dB"
                "  (peaks / energies)"
            )
            for s in res["summary"]:
                print(
                    f"{s['K']:+4.0f}  {s['method']:14s} {s['notes']:5d}"
                    f"  {s['median_abs_cents']:10.1f}  {s['median_cents']:9.1f}"
                    f"  {s['within_10_cents']:5.2f}  {s['median_timbre_db']:8.2f}"
                    f" / {s['median_timbre_energy_db']:.2f}"
                )
    result["seconds"] = time.time() - t0
    file = out / "transpose_eval.json"
    file.write_text(json.dumps(result, indent=1, default=float))
    print(f"\nwrote {file} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
