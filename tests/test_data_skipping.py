"""Issue 6, data side: builds and the data commands skip bad inputs and report them.

* ``nsynth-like`` / ``beethoven-like`` renders: a sound font that is not installed or not
  readable, a preset fluidsynth cannot play, a missing or damaged MIDI piece is skipped and
  listed in ``build.json``; only a build where nothing renders is an error.
* ``mmsin data info`` reads headers through ``mmsin.io.audio_info``: bad files are listed, the
  rest described.
* ``mmsin train --resume`` of a run that does not exist fails before any data set is touched;
  ``-q`` reaches the first-use build.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from mmsin.data import DataError, load_clips
from mmsin.data import build as data_build
from mmsin.data.beethoven_like import MIDI_DIR, BeethovenSize, build_beethoven_like
from mmsin.data.instruments import FLUTE_PROGRAMS
from mmsin.data.nsynth_like import NSynthSize, build_nsynth_like
from mmsin.data.render import Synth, find_soundfonts

FONTS = {f.name: f for f in find_soundfonts()}
needs_fonts = pytest.mark.skipif(
    "TimGM6mb.sf2" not in FONTS, reason="Debian package timgm6mb-soundfont not installed"
)


@pytest.fixture
def broken_font(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file named like a sound font that is not one, on the sound-font search path."""
    folder = tmp_path / "fonts"
    folder.mkdir()
    bad = folder / "Broken.sf2"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00sfbkLIST" + bytes(64))
    monkeypatch.setenv("MMSIN_SOUNDFONTS", str(folder))
    return bad


def test_package_build_is_the_function_after_the_module_import() -> None:
    # Importing the module mmsin.data.build (as the builders do) must not replace the package
    # function mmsin.data.build().
    import mmsin.data
    import mmsin.data.build

    assert callable(mmsin.data.build) and mmsin.data.build is data_build
    with pytest.raises(ValueError, match="kind 'nope'"):
        mmsin.data.build("nope")


@needs_fonts
def test_nsynth_like_skips_missing_broken_fonts_and_failing_presets(
    tmp_path: Path,
    broken_font: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    select = Synth.select

    def flutes_fail(self: Synth, channel: int, font: Any, bank: int, program: int) -> None:
        if program in FLUTE_PROGRAMS:  # as fluidsynth does for a font it cannot load
            raise DataError(f"{font}: fluidsynth could not load this sound font")
        select(self, channel, font, bank, program)

    monkeypatch.setattr(Synth, "select", flutes_fail)
    spec = NSynthSize(1, 12, (127,), (48, 72), ("TimGM6mb.sf2", "Broken.sf2", "Gone.sf2"))
    with caplog.at_level(logging.WARNING, logger="mmsin.data"):
        root = build_nsynth_like(tmp_path / "n", "small", progress=False, spec=spec)
    table = json.loads((root / "nsynth-train" / "examples.json").read_text())
    # Only the keyboard (pitches 48, 60, 72 at one velocity) was rendered.
    assert sorted(table) == [f"keyboard_acoustic_000-{p:03d}-127" for p in (48, 60, 72)]
    skipped = dict(json.loads((root / "build.json").read_text())["summary"]["skipped"])
    assert skipped["Gone.sf2"] == "sound font not installed"
    assert "without pdta/sdta" in skipped[str(broken_font.resolve())]
    flute = [k for k in skipped if k.startswith("TimGM6mb.sf2 bank 0 program 73")]
    assert len(flute) == 1 and "could not load" in skipped[flute[0]]
    assert len(skipped) == 3
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "skipped 3" in warned[0] and "Gone.sf2" in warned[0]
    assert len(load_clips(root, "all")) == 3


@needs_fonts
def test_nsynth_like_nothing_rendered_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Synth, channel: int, font: Any, bank: int, program: int) -> None:
        raise DataError(f"{font}: fluidsynth could not load this sound font")

    monkeypatch.setattr(Synth, "select", fail)
    spec = NSynthSize(1, 12, (127,), (48, 72), ("TimGM6mb.sf2",))
    with pytest.raises(DataError) as err:
        build_nsynth_like(tmp_path / "n", "small", progress=False, spec=spec)
    msg = str(err.value)
    assert "\n" not in msg and "nothing could be rendered" in msg and "program 0" in msg
    assert not (tmp_path / "n" / "build.json").exists()


@needs_fonts
def test_nsynth_like_only_unreadable_fonts_is_one_line_error(
    tmp_path: Path, broken_font: Path
) -> None:
    spec = NSynthSize(1, 12, (127,), (48, 72), ("Broken.sf2",))
    with pytest.raises(DataError) as err:
        build_nsynth_like(tmp_path / "n", "small", progress=False, spec=spec)
    assert "\n" not in str(err.value) and "Broken.sf2" in str(err.value)


@pytest.fixture
def midi_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A MIDI folder with two real pieces and one damaged file."""
    folder = tmp_path / "midi"
    folder.mkdir()
    for name in ("schoenberg_opus19_movement2", "bach_bwv846"):
        shutil.copy(MIDI_DIR / f"{name}.mid", folder)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    monkeypatch.setattr(sys.modules["mmsin.data.beethoven_like"], "MIDI_DIR", folder)
    return folder


@needs_fonts
def test_beethoven_like_skips_fonts_and_pieces(
    tmp_path: Path, midi_dir: Path, broken_font: Path
) -> None:
    good = ("schoenberg_opus19_movement2", "bach_bwv846")
    clean = build_beethoven_like(
        tmp_path / "clean", progress=False, spec=BeethovenSize(good, ("TimGM6mb.sf2",))
    )
    messy_spec = BeethovenSize(
        ("schoenberg_opus19_movement2", "broken", "bach_bwv846", "gone"),
        ("Gone.sf2", "Broken.sf2", "TimGM6mb.sf2"),
    )
    messy = build_beethoven_like(tmp_path / "messy", progress=False, spec=messy_spec)
    summary = json.loads((messy / "build.json").read_text())["summary"]
    skipped = dict(summary["skipped"])
    assert set(skipped) == {"Gone.sf2", "Broken.sf2", "gone.mid", "broken.mid"}
    assert "could not load" in skipped["Broken.sf2"]  # fluidsynth refused it; next font used
    assert "not a readable MIDI file" in skipped["broken.mid"]
    # What was rendered is exactly the clean build of the two good pieces on the same font.
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(np.load(messy / f"music_{s}.npy"),
                                      np.load(clean / f"music_{s}.npy"))  # fmt: skip


@needs_fonts
def test_beethoven_like_nothing_rendered_is_one_line_error(tmp_path: Path, midi_dir: Path) -> None:
    spec = BeethovenSize(("broken", "gone"), ("TimGM6mb.sf2",))
    with pytest.raises(DataError) as err:
        build_beethoven_like(tmp_path / "b", progress=False, spec=spec)
    msg = str(err.value)
    assert "\n" not in msg and "nothing could be rendered" in msg and "broken.mid" in msg
    with pytest.raises(DataError, match="none of the MIDI files"):
        build_beethoven_like(
            tmp_path / "c", progress=False, spec=BeethovenSize(("gone",), ("TimGM6mb.sf2",))
        )


# ------------------------------------------------------------------------------------------
# command line, in this process


@pytest.fixture
def cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Any:
    """Run ``mmsin ARGS`` with MMSIN_HOME=tmp_path; returns (status, stdout, stderr + log)."""
    from mmsin.cli import main

    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    monkeypatch.setenv("MMSIN_HOME", str(tmp_path))

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        logged = "".join(f"{r.levelname} {r.name}: {r.getMessage()}\n" for r in caplog.records)
        return rc, out, logged + err

    return run


def test_data_info_lists_bad_files_and_describes_the_rest(tmp_path: Path, cli: Any) -> None:
    root = tmp_path / "mixed dir"
    root.mkdir()
    x = np.zeros((3 * 8000, 2), np.float32)
    x[:, 0] = 0.1
    sf.write(root / "stereo 8k.wav", x, 8000, subtype="PCM_24")  # 3 s
    sf.write(root / "one.flac", np.full(4096 * 5, 0.1, np.float32), 4096)  # 5 s
    (root / "notes.wav").write_text("not audio")
    (root / "empty.flac").touch()
    rc, out, err = cli("data", "info", root)
    assert rc == 0, err
    assert "clips: 2, 4 s each" in out and "total 0.1 min" in out  # median of 3 s and 5 s
    assert "skipped 2 unusable files:" in out
    assert "notes.wav (not readable as audio" in out and "empty.flac (empty file" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "skipped 2 of 4 audio files" in lines[0]
    assert lines[0].count(str(root)) == 1  # the folder once, files relative to it


def test_data_info_only_bad_files_one_line(tmp_path: Path, cli: Any) -> None:
    root = tmp_path / "junk"
    root.mkdir()
    (root / "notes.wav").write_text("not audio")
    (root / "empty.flac").touch()
    rc, _, err = cli("data", "info", root)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err
    assert "no usable audio file; all 2 skipped" in lines[0]
    assert lines[0].count(str(root)) == 1


def test_train_resume_of_missing_run_fails_before_any_data(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched: list[str] = []
    monkeypatch.setattr("mmsin.data._builders.build", lambda *a, **k: touched.append("build"))
    monkeypatch.setattr("mmsin.data.load_clips", lambda *a, **k: touched.append("load"))
    monkeypatch.setattr("mmsin.training.train", lambda *a, **k: touched.append("train"))
    rc, _, err = cli("train", "-q", "--run", "no-such-run", "--resume")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert "no-such-run" in lines[0] and "nothing to resume" in lines[0]
    assert touched == [] and not (tmp_path / "data").exists()
    # A run folder without any checkpoint is no better.
    (tmp_path / "runs" / "empty-run").mkdir(parents=True)
    rc, _, err = cli("train", "-q", "--run", "empty-run", "--resume")
    assert rc == 2 and "no checkpoint.pt in this run" in err and touched == []


def test_train_quiet_reaches_the_first_use_build(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr("mmsin.data._builders.build", lambda *a, **k: calls.append(("build", k)))

    def fake_train(cfg: Any, run_dir: Path, **k: Any) -> Any:
        calls.append(("train", k))
        return SimpleNamespace(
            history={"test_inv": [0.5]}, global_step=1, epochs_done=1, checkpoint="c.pt"
        )

    monkeypatch.setattr("mmsin.training.train", fake_train)
    rc, out, err = cli("train", "-q")
    assert rc == 0, err
    assert calls == [
        ("build", {"progress": False}),
        ("train", {"resume": False, "progress": False, "init": None}),
    ]
    assert "building" not in out and err == ""
