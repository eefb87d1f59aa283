"""Where the real notes' log-spectral distance lies: the reconstruction's LSD with the original's
STFT put back in one region of each note's spectrum at a time (an oracle, for sizing).

For each recorded note of ``real-notes`` (MIDI 24-95, fundamental f0 from the file name) and its
reconstruction G(S_J x) by ``--model``, the LSD of :func:`mmsin.evaluation.log_spectral_distance`
(power spectra, n_fft 512, hop 128, eps 1e-10; both signals scaled to a peak of 1, as
:func:`mmsin.evaluation.real_note_metrics` judges them) is computed as is, for the original
smoothed by 8 taps (the figure the reconstruction is held to), and with the reconstruction's dB
replaced by the original's

- ``above``: above 8.4 f0, where neighbouring harmonics lie less than two semitone bins apart
  and S_J's scalogram no longer resolves them (f0 / (2^(2/12) - 1));
- ``below``: below 0.75 f0, under the fundamental (a recording's rumble and floor);
- ``both``.

Prints the medians over all notes and over the bass (MIDI <= 50).

    python scripts/lsd_regions.py --model notes
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from mmsin.data.real import load_real_notes
from mmsin.evaluation import log_spectral_distance, smoothed
from mmsin.evaluation.spectra import _stft_mag
from mmsin.model import MMSIN

N_FFT, HOP, EPS = 512, 128, 1e-10  # as log_spectral_distance's defaults
UNRESOLVED = 1 / (2 ** (2 / 12) - 1)  # harmonic n and n + 1 two semitones apart: n = 8.4


def db(x: np.ndarray) -> np.ndarray:
    """10 log10 of the power spectrogram that log_spectral_distance uses."""
    return np.asarray(10 * np.log10(_stft_mag(x, N_FFT, HOP) ** 2 + EPS))


def lsd(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sqrt(np.mean((a - b) ** 2, axis=0))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="notes", help="model name or checkpoint")
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    model = MMSIN.load(args.model)
    clips = load_real_notes(fs=model.fs)
    x = clips.audio
    with torch.no_grad():
        y = np.concatenate(
            [
                model.decode_scattering(model.encode_scattering(x[i : i + args.batch])).numpy()
                for i in range(0, len(x), args.batch)
            ]
        )
    rows = []
    for i, meta in enumerate(clips.meta):
        midi = float(meta["pitch"])
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        a = np.asarray(x[i][: y.shape[1]], dtype=np.float64)
        b = y[i].astype(np.float64)
        a, b = a / max(np.abs(a).max(), 1e-12), b / max(np.abs(b).max(), 1e-12)  # as judged
        La, Ly = db(a), db(b)
        assert abs(lsd(Ly, La) - log_spectral_distance(b, a)) < 1e-6
        f = np.arange(La.shape[0]) * model.fs / N_FFT
        above, below = f > UNRESOLVED * f0, f < 0.75 * f0
        row = [midi, lsd(Ly, La), lsd(db(smoothed(a)), La)]
        for region in (above, below, above | below):
            Lo = Ly.copy()
            Lo[region] = La[region]
            row.append(lsd(Lo, La))
        rows.append(row)
    r = np.array(rows)
    head = "notes                 LSD  smoothed  original above 8.4 f0  below 0.75 f0  both"
    print(head)
    for name, sel in (("all", r[:, 0] > 0), ("MIDI <= 50", r[:, 0] <= 50)):
        m = np.median(r[sel, 1:], axis=0)
        cells = f"{m[0]:5.2f}  {m[1]:8.2f}  {m[2]:22.2f}  {m[3]:13.2f}  {m[4]:4.2f}"
        print(f"{name:12s} ({int(sel.sum()):2d})  {cells}")


if __name__ == "__main__":
    main()
