"""Figures of music (mmsin.evaluation.music) on signals whose answer is known by construction:
notes at known onsets, a steady tone, white noise, silence."""

from __future__ import annotations

import numpy as np
import pytest

from mmsin.evaluation import music

FS = 4096


def notes(rate: float, seconds: float = 8.0, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes (random pitches, MIDI 48-72), one every 1/rate seconds."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    y = np.zeros_like(t)
    for start in np.arange(0.05, seconds - 0.2, 1 / rate):
        f0 = 440 * 2 ** ((rng.integers(48, 73) - 69) / 12)
        tt = np.clip(t - start, 0, None)
        env = np.where(t >= start, np.exp(-6 * tt) * (1 - np.exp(-tt / 0.003)), 0)
        y += env * sum(np.sin(2 * np.pi * k * f0 * tt) / k for k in (1, 2, 3, 4))
    return (y / np.abs(y).max()).astype(np.float32)


@pytest.mark.parametrize("rate", [1.0, 2.5, 5.0])
def test_onset_rate_counts_the_notes(rate: float) -> None:
    assert music.onset_rate(notes(rate), FS) == pytest.approx(rate, rel=0.15)


def test_no_onsets_in_a_steady_tone_or_silence() -> None:
    t = np.arange(8 * FS) / FS
    assert music.onset_rate(np.sin(2 * np.pi * 220 * t), FS) <= 0.25
    assert music.onset_rate(np.zeros(8 * FS), FS) == 0.0


def test_periodic_share_tells_tones_from_noise() -> None:
    t = np.arange(2 * FS) / FS
    tone = sum(np.sin(2 * np.pi * k * 196 * t) / k for k in (1, 2, 3))
    noise = np.random.default_rng(1).standard_normal(2 * FS)
    assert music.periodic_share(tone, FS) > 0.9
    assert music.periodic_share(noise, FS) < 0.1
    half = np.concatenate([tone[:FS], noise[:FS] * 0.3])
    assert 0.35 < music.periodic_share(half, FS) < 0.65


def test_music_figures_of_notes_and_noise() -> None:
    noise = np.random.default_rng(2).standard_normal(8 * FS)
    # Notes 2 s apart decay below -40 dB after about 1.5 s: a quarter of the frames silent.
    figs = music.music_figures(np.stack([notes(0.5), noise]), FS, crepe=False)
    assert figs["clips"] == 2 and set(music.MUSIC_FIGURES) <= set(figs)
    per = figs["per_clip"]
    assert per["flatness"][0] < 0.1 < 0.4 < per["flatness"][1]
    assert per["silent"][0] > 0.15 and per["silent"][1] == 0
    assert per["onsets_per_s"][0] == pytest.approx(0.5, rel=0.2)
    assert per["onsets_per_s"][1] < 0.25
    assert np.isnan(figs["periodic"])
