"""The real-guitar set (:mod:`mmsin.data.real_guitar`): strings named as guitarists do, the
pluck found after a loud pre-roll, the layout, and the shipped recordings themselves."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from mmsin.data import DataError, load_clips
from mmsin.data.real import FS, PRE_ONSET, SECONDS, detect_onset
from mmsin.data.real_guitar import RISE_DB, STRINGS, build_real_guitar, find_archive


def plucked(fs: int, onset: float, f0: float, pre_roll_db: float = -16.0) -> np.ndarray:
    """6 s: bursts of room noise and handling up to ``pre_roll_db`` under the note's peak,
    then a plucked string from ``onset`` (1 ms attack, 2 s decay)."""
    rng = np.random.default_rng(2)
    t = np.arange(int(6.0 * fs)) / fs
    tau = np.clip(t - onset, 0, None)
    env = np.where(t < onset, 0.0, np.minimum(tau / 0.001, 1.0) * np.exp(-tau / 2.0))
    note = env * sum(np.sin(2 * np.pi * k * f0 * tau) / k**2 for k in range(1, 8))
    note = 0.5 * note / np.abs(note).max()
    bursts = (np.sin(2 * np.pi * 1.3 * t) > 0.6) & (t < onset - 0.2)  # handling, before
    pre = rng.standard_normal(t.size) * np.where(bursts, 1.0, 0.05)
    pre *= 0.5 * 10 ** (pre_roll_db / 20) / np.abs(pre[bursts]).max()
    return note + pre + 0.003  # and a DC offset


def test_the_default_onset_takes_the_pre_roll_and_the_guitar_one_the_pluck() -> None:
    x = plucked(48000, 2.1, 110.0)
    assert detect_onset(x, 48000) < 1.0  # the handling noise crosses peak - 30 dB
    assert detect_onset(x, 48000, rise_db=RISE_DB) == pytest.approx(2.1, abs=0.0015)


def test_build_real_guitar_from_an_sdist_with_known_plucks(tmp_path) -> None:
    """A tar laid out like guitarsounds' sdist: the string digit names the string (E1 the
    high E4, E6 the low E2), the pluck is found after its pre-roll, every note is held out."""
    onsets = {"Carbon_E6": 2.1, "Wood_E1": 1.7, "Wood_G3": 2.9}
    sdist = tmp_path / "guitarsounds-1.2.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        for name, onset in onsets.items():
            buf = io.BytesIO()
            f0 = 440 * 2 ** ((STRINGS[name.split("_")[1]] - 69) / 12)
            sf.write(buf, plucked(48000, onset, f0), 48000, format="WAV", subtype="PCM_16")
            info = tarfile.TarInfo(f"guitarsounds-1.2.0/example_sounds/x/{name}.wav")
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)
        readme = b"not a recording"
        info = tarfile.TarInfo("guitarsounds-1.2.0/README.md")
        info.size = len(readme)
        tf.addfile(info, io.BytesIO(readme))
    root = build_real_guitar(tmp_path / "guitar", archive=sdist, progress=False)
    table = json.loads((root / "nsynth-heldout" / "examples.json").read_text())
    recs = sorted(table.values(), key=lambda r: r["pitch"])
    assert [r["pitch"] for r in recs] == [40, 55, 64]
    assert [r["instrument_str"] for r in recs] == [
        "guitar_acoustic_carbon_bruant",
        "guitar_acoustic_wood_bruant",
        "guitar_acoustic_wood_bruant",
    ]
    assert [r["onset_seconds"] for r in recs] == pytest.approx([2.1, 2.9, 1.7], abs=0.0015)
    clips = load_clips(root, "heldout", seconds=SECONDS, normalize=False, families=("guitar",))
    assert clips.audio.shape == (3, round(SECONDS * FS))
    for y in clips.audio:  # the pluck now lies PRE_ONSET into the clip (the resampler's
        # filter rings a few ms ahead of a 1 ms attack), DC removed
        assert PRE_ONSET - 0.005 < detect_onset(y, FS, rise_db=RISE_DB) < PRE_ONSET + 0.0015
        assert abs(float(np.mean(y[: round(PRE_ONSET * FS)]))) < 5e-3
    for split in ("train", "test", "all"):
        with pytest.raises(DataError):
            load_clips(root, split, families=("guitar",))
    stamp = (root / "build.json").stat().st_mtime_ns
    build_real_guitar(tmp_path / "guitar", archive=sdist, progress=False)  # cached
    assert (root / "build.json").stat().st_mtime_ns == stamp


def test_the_shipped_recordings_are_twelve_open_strings(tmp_path) -> None:
    """What `make setup` downloads: two guitars, six open strings each, each pluck found
    1.7-3.6 s into its file (after the pre-roll)."""
    try:
        sdist = find_archive()
    except DataError:
        pytest.skip("the guitarsounds sdist is not there (scripts/setup.sh downloads it)")
    root = build_real_guitar(tmp_path / "guitar", archive=sdist, progress=False)
    table = json.loads((root / "nsynth-heldout" / "examples.json").read_text())
    assert sorted(r["pitch"] for r in table.values()) == sorted(list(STRINGS.values()) * 2)
    assert all(1.6 < r["onset_seconds"] < 3.7 for r in table.values())
