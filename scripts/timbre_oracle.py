"""How close any re-synthesis with one sinusoid per partial can come to a recorded note's timbre,
beside the model's reconstruction and the phase vocoder at K = +-1.

    python scripts/timbre_oracle.py [--model notes] [--step 3] [--json OUT]

The transposition criterion compares the model's G(T_K S_J x) with a phase vocoder on the levels
of partials 1-8 (:mod:`mmsin.evaluation.timbre`). At K = +-1 the vocoder barely changes the
recording, so its levels stay within a few tenths of a dB; G re-synthesises every partial. This
measures the floor of that re-synthesis on the same notes, with an **oracle** that knows the
recording: each partial h (h f0 below 1.95 kHz) played as one sinusoid at the frequency of the
recording's own long-spectrum peak near h f0, its amplitude the recording's (a complex
demodulation at that frequency, low-passed by a Hann window of two control periods) sampled at
``rate`` points a second and interpolated linearly: 16 a second (better than any frame rate of
S_J at J = 10) and 4 a second (S_J's frame rate). Its K = 0 error is what one sinusoid per
partial costs, whatever network drives it.

For every ``step``-th recorded Steinway note of ``real-notes`` between MIDI 45 and 75 (11 at
step 3): the timbre distance at K = 0 of the model's reconstruction and of the oracles, and of
the phase vocoder at K = -1 and +1 (librosa.effects.pitch_shift, the transposition
experiment's settings), levels read as peaks and as energies at the (target's) harmonics.
Prints the medians and writes them with the per-note values as JSON (default
``$MMSIN_HOME/results/timbre-oracle.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

FS = 4096
MEASURES = ("peak", "energy")
RATES = (16, 4)  # oracle control points a second


def partial_frequencies(x: np.ndarray, f0: float, fmax: float = 1950.0) -> np.ndarray:
    """The recording's own partial frequencies: the peak of its long spectrum (after the
    first 0.1 s, Hann window, 8 times zero-padded) within 60 cents of h f0."""
    seg = x[int(0.1 * FS) :]
    nfft = 8 * len(seg)
    mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), nfft))
    f = np.fft.rfftfreq(nfft, 1 / FS)
    out = []
    for h in range(1, int(fmax // f0) + 1):
        band = np.flatnonzero((f >= h * f0 * 2 ** (-60 / 1200)) & (f <= h * f0 * 2 ** (60 / 1200)))
        out.append(f[band[np.argmax(mag[band])]])
    return np.array(out)


def oracle(x: np.ndarray, f0: float, rate: int) -> np.ndarray:
    """One sinusoid per partial at the recording's frequency, its amplitude the recording's
    at ``rate`` points a second (see the module)."""
    hop = FS // rate
    t = np.arange(len(x)) / FS
    win = np.hanning(2 * hop + 1)
    win /= win.sum()
    at = np.arange(0, len(x), hop)
    y = np.zeros(len(x))
    for fh in partial_frequencies(x, f0):
        a = 2 * np.abs(np.convolve(x * np.exp(-2j * np.pi * fh * t), win, mode="same"))
        y += np.interp(np.arange(len(x)), at, a[at]) * np.cos(2 * np.pi * fh * t)
    return y.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    import librosa

    from mmsin import paths
    from mmsin.data.real import load_real_notes
    from mmsin.evaluation import median_f0, partial_levels, timbre_distance
    from mmsin.experiments.transposition import VOCODER
    from mmsin.model import MMSIN

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="notes", help="model name or path (default notes)")
    p.add_argument("--step", type=int, default=3, help="every STEP-th MIDI note (default 3)")
    p.add_argument("--json", default=None, help="output (default results/timbre-oracle.json)")
    args = p.parse_args(argv)
    if args.step < 1:
        p.error("--step must be at least 1")
    model = MMSIN.load(args.model)
    clips = load_real_notes(fs=FS)
    pick = [
        i
        for i, m in enumerate(clips.meta)
        if 45 <= int(m["pitch"]) <= 75 and int(m["pitch"]) % args.step == 0
    ]
    if not pick:
        raise SystemExit("timbre_oracle: no recorded note between MIDI 45 and 75")
    rows: list[dict[str, Any]] = []
    for i in pick:
        x = np.asarray(clips.audio[i], dtype=np.float32)
        f0 = median_f0(x, FS)
        if not np.isfinite(f0):
            continue
        outs = {"model (K = 0)": (model.decode_scattering(model.encode_scattering(x))[0], 0)}
        for rate in RATES:
            outs[f"oracle, {rate} points/s (K = 0)"] = (oracle(x, f0, rate), 0)
        for k in (-1, 1):
            y = librosa.effects.pitch_shift(x, sr=FS, n_steps=k, **VOCODER)
            outs[f"phase vocoder (K = {k:+d})"] = (y, k)
        row: dict[str, Any] = {"pitch": int(clips.meta[i]["pitch"]), "f0": f0}
        for name, (y, k) in outs.items():
            y = np.asarray(y, dtype=np.float32)
            target = f0 * 2 ** (k / 12)
            row[name] = {
                m: timbre_distance(
                    partial_levels(x, f0, FS, measure=m),
                    partial_levels(y, target, FS, measure=m),
                )
                for m in MEASURES
            }
        rows.append(row)
        print(f"  MIDI {row['pitch']}", flush=True)
    names = [k for k in rows[0] if k not in ("pitch", "f0")]
    summary = {
        n: {m: float(np.nanmedian([r[n][m] for r in rows])) for m in MEASURES} for n in names
    }
    print(f"\n{len(rows)} recorded Steinway notes (real-notes), MIDI 45-75, step {args.step}")
    print(f"  {'':32s} timbre, peaks (dB)   energies (dB)")
    for n, s in summary.items():
        print(f"  {n:32s} {s['peak']:10.2f}   {s['energy']:12.2f}")
    out = Path(args.json) if args.json else paths.results_dir() / "timbre-oracle.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"model": args.model, "step": args.step, "summary": summary, "rows": rows},
            indent=1,
            default=float,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
