"""The embedding of a note: the waveform, its scalogram S_K and its scattering S_J."""

from __future__ import annotations

import torch

from mmsin import plots, report
from mmsin.experiments.shared import NOTES, Context, Outcome, finish, load_split, out_folder, wav

__all__ = ["scattering_overview"]


def scattering_overview(ctx: Context) -> Outcome:
    """A test note of nsynth-like (a sampled instrument rendered by fluidsynth), its scalogram
    S_K and its scattering S_J (the embedding)."""
    from mmsin.scattering import Scalogram, TimeFrequencyScattering

    name = "scattering"
    folder = out_folder(ctx, name)
    clips = load_split(ctx, NOTES, "test")
    idx = 0
    for i, m in enumerate(clips.meta):
        if 55 <= int(m.get("pitch", 0)) <= 67:
            idx = i
            break
    x = clips.audio[idx]
    fs = int(clips.fs)
    xt = torch.as_tensor(x)[None]
    with torch.no_grad():
        sk_mod = Scalogram(K=5, Q=12, fs=fs)
        sk = sk_mod(xt)[0].numpy()
        sj_mod = TimeFrequencyScattering(J=10 if ctx.preset != "tiny" else 6, fs=fs)
        sj = sj_mod(xt)[0].numpy()
    label = clips.meta[idx].get("name", "note")
    f1 = plots.scattering_figure(
        x,
        sk,
        fs,
        folder / "scalogram.png",
        hop=32,
        title=f"{label}: scalogram S_K (2^K = 32)",
        channel_label="S_K channel (high to low frequency)",
    )
    f2 = plots.scattering_figure(
        x,
        sj,
        fs,
        folder / "scattering.png",
        hop=2**10,
        title=f"{label}: time-frequency scattering S_J (2^J = 1024)",
        channel_label="S_J channel",
    )
    section = report.Section("The embedding of a note").add(
        report.Paragraph(
            f"{label}, a note of nsynth-like's test split (a sampled instrument rendered from "
            f"MIDI by fluidsynth, not a recording): {x.size / fs:.1f} s at {fs} Hz; S_K has "
            f"{sk.shape[0]} "
            f"channels, S_J {sj.shape[0]} channels x {sj.shape[1]} frames."
        ),
        report.Figure(f1, "Scalogram S_K (log scale)"),
        report.Figure(f2, "Scattering S_J (log scale)"),
        report.Audio(wav(folder, "note", x, fs), label),
    )
    return finish(
        ctx,
        name,
        folder,
        {"clip": label, "sk_channels": int(sk.shape[0]), "sj_channels": int(sj.shape[0])},
        section,
    )
