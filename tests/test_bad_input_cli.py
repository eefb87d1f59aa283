"""Every sub-command against bad input: exit status 2 and exactly one line on stderr that names
the file and the problem; never a traceback.

The commands run as real child processes (``python -c 'from mmsin.cli import main ...'``) so
that what is checked is what a user sees: the exit status, stderr (log lines included) and no
traceback. Commands that need a model get a tiny one trained here in a few seconds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

_MAIN = "import sys; from mmsin.cli import main; sys.exit(main())"


def run_cli(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``mmsin ARGS`` as a child process in workspace ``home``."""
    env = dict(os.environ, MMSIN_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=home,
    )


@pytest.fixture
def cli_here(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``mmsin ARGS`` in this process (no second torch import: ~20x faster).

    What the child process would print on stderr is reproduced: what the command writes to
    stderr, plus the log records at WARNING and above that ``mmsin``'s logging set-up would
    print there. An exception escaping ``main`` (a traceback for the user) propagates and fails
    the test.
    """
    from mmsin.cli import main

    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)

    def run(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.setenv("MMSIN_HOME", str(home))
        monkeypatch.chdir(home)
        capsys.readouterr()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        logged = "".join(f"{r.levelname} {r.name}: {r.getMessage()}\n" for r in caplog.records)
        return subprocess.CompletedProcess(list(map(str, args)), rc, out, logged + err)

    return run


def assert_user_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 2, one stderr line, no traceback; the line contains every word."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _noise_wav(path: Path, n: int = 4096, fs: int = 4096, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
    sf.write(path, x, fs, **kw)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace ($MMSIN_HOME) holding the usual kinds of bad input."""
    h = tmp_path_factory.mktemp("home ünï")
    (h / "empty dir").mkdir()
    junk = h / "junk dir"
    junk.mkdir()
    (junk / "notes.wav").write_text("not audio")
    (junk / "empty.flac").touch()
    (h / "text.wav").write_text("not audio at all\n")
    (h / "empty.wav").touch()
    (h / "nothing.npy").write_text("not an array")
    nan = np.random.default_rng(1).uniform(-0.5, 0.5, 4096).astype(np.float32)
    nan[100] = np.nan
    sf.write(h / "nan.wav", nan, 4096, subtype="FLOAT")
    _noise_wav(h / "good a.wav")
    _noise_wav(h / "good dir" / "one.wav", n=4096 * 3)
    _noise_wav(h / "good b.wav", fs=8000)
    _noise_wav(h / "blip.wav", n=10)  # shorter than one 2^5 frame
    np.save(h / "ints.npy", np.zeros((3, 4), np.int64))
    np.save(h / "flat.npy", np.zeros(7, np.float32))
    bad = np.ones((3, 4), np.float32)
    bad[0, 0] = np.inf
    np.save(h / "inf.npy", bad)
    return h


# ------------------------------------------------------------------------------------------
# mmsin data


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("missing folder", ["missing folder", "no such file or folder"]),
        ("empty dir", ["empty dir", "no audio files"]),
        ("text.wav", ["text.wav"]),
    ],
)
def test_data_info_bad_source(
    home: Path, cli_here: Callable[..., Any], source: str, words: list[str]
) -> None:
    # The first case runs as a real child process, the others in this process.
    run = run_cli if source == "missing folder" else cli_here
    assert_user_error(run(home, "data", "info", home / source), *words)


def test_data_info_folder_of_bad_audio(home: Path, cli_here: Callable[..., Any]) -> None:
    line = assert_user_error(cli_here(home, "data", "info", home / "junk dir"), "junk dir")
    assert "notes.wav" in line or "empty.flac" in line


def test_data_build_root_is_a_file(home: Path, cli_here: Callable[..., Any]) -> None:
    assert_user_error(
        cli_here(home, "data", "build", "nsynth-like", "--root", home / "text.wav", "-q"),
        "text.wav",
    )


# ------------------------------------------------------------------------------------------
# mmsin train


def _need_model_cli(*, scattering: bool = True) -> None:
    """Skip while the model sub-commands (or, if asked, the transforms they run) are missing."""
    from mmsin.cli import build_parser

    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if "encode" not in choices:
        pytest.skip("the model sub-commands (mmsin.cli.model) have not landed yet")
    module = pytest.importorskip("mmsin.scattering")
    names = ("Scalogram", "TimeFrequencyScattering")
    if scattering and not all(callable(getattr(module, n, None)) for n in names):
        pytest.skip("mmsin.scattering has not landed yet")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--data", "missing folder"], ["missing folder", "no such file or folder"]),
        (["--data", "empty dir"], ["empty dir", "no audio files"]),
        (["--data", "junk dir"], ["junk dir"]),
        (["--set", "train.nonsense=1"], ["train.nonsense", "unknown field"]),
        (["--set", "train.lr=fast"], ["train.lr"]),
        (["--config", "missing.json"], ["missing.json"]),
        (["--config", "text.wav"], ["text.wav", "JSON"]),
        (["--data", "good dir", "--run", "no-such-run", "--resume"], ["no-such-run", "resume"]),
    ],
)
def test_train_bad_input(
    home: Path, cli_here: Callable[..., Any], args: list[str], words: list[str]
) -> None:
    _need_model_cli(scattering=False)  # these fail before any transform runs
    run = run_cli if args[:2] == ["--data", "missing folder"] else cli_here
    assert_user_error(run(home, "train", "-q", *args), *words)


# ------------------------------------------------------------------------------------------
# mmsin encode / decode / generate / interpolate, with a tiny trained model


@pytest.fixture(scope="module")
def model(home: Path) -> Path:
    """A tiny trained checkpoint (a few seconds of training), as a file path."""
    _need_model_cli()
    from _tiny import tiny_clips, tiny_config
    from mmsin.training import train

    tr, te = tiny_clips()
    res = train(
        tiny_config(1),
        home / "runs" / "tiny",
        train_clips=tr,
        test_clips=te,
        progress=False,
        cache_dir=home / "cache",
        tensorboard=False,
    )
    assert res.checkpoint is not None
    return Path(res.checkpoint)


ModelCase = Callable[[Path, Path], list[str | Path]]

_MODEL_CASES: dict[str, tuple[ModelCase, list[str]]] = {
    # name: (arguments given home and model, words the error line must contain)
    "encode missing file": (
        lambda h, m: ["encode", h / "gone.wav", "--out", h / "o.npy", "--model", m],
        ["gone.wav", "no such file"],
    ),
    "encode a folder": (
        lambda h, m: ["encode", h / "empty dir", "--out", h / "o.npy", "--model", m],
        ["empty dir", "folder"],
    ),
    "encode text as wav": (
        lambda h, m: ["encode", h / "text.wav", "--out", h / "o.npy", "--model", m],
        ["text.wav", "not readable as audio"],
    ),
    "encode empty file": (
        lambda h, m: ["encode", h / "empty.wav", "--out", h / "o.npy", "--model", m],
        ["empty.wav", "empty file"],
    ),
    "encode NaN samples": (
        lambda h, m: ["encode", h / "nan.wav", "--out", h / "o.npy", "--model", m],
        ["nan.wav", "NaN"],
    ),
    "encode second file bad": (
        lambda h, m: [
            "encode",
            h / "good a.wav",
            h / "text.wav",
            "--out",
            h / "o.npy",
            "--model",
            m,
        ],
        ["text.wav"],
    ),
    "encode bad --out": (
        lambda h, m: ["encode", h / "good a.wav", "--out", h / "o.wav", "--model", m],
        ["o.wav", ".npy"],
    ),
    "encode missing model": (
        lambda h, m: ["encode", h / "good a.wav", "--out", h / "o.npy", "--model", h / "no.pt"],
        ["no.pt"],
    ),
    "encode garbage model": (
        lambda h, m: ["encode", h / "good a.wav", "--out", h / "o.npy", "--model", h / "text.wav"],
        ["text.wav", "checkpoint"],
    ),
    "decode missing file": (
        lambda h, m: ["decode", h / "gone.npy", "--out", h / "o.wav", "--model", m],
        ["gone.npy", "no such file"],
    ),
    "decode not an array": (
        lambda h, m: ["decode", h / "nothing.npy", "--out", h / "o.wav", "--model", m],
        ["nothing.npy", "not a .npy"],
    ),
    "decode integer array": (
        lambda h, m: ["decode", h / "ints.npy", "--out", h / "o.wav", "--model", m],
        ["ints.npy", "float"],
    ),
    "decode 1-D array": (
        lambda h, m: ["decode", h / "flat.npy", "--out", h / "o.wav", "--model", m],
        ["flat.npy"],
    ),
    "decode infinite values": (
        lambda h, m: ["decode", h / "inf.npy", "--out", h / "o.wav", "--model", m],
        ["inf.npy", "NaN or infinite"],
    ),
    "decode wrong channel count": (
        lambda h, m: ["decode", h / "channels.npy", "--out", h / "o.wav", "--model", m],
        ["channels.npy", "channels"],
    ),
    "generate negative seconds": (
        lambda h, m: ["generate", "--seconds", "-1", "--model", m],
        ["--seconds"],
    ),
    "generate zero count": (
        lambda h, m: ["generate", "--count", "0", "--model", m],
        ["--count"],
    ),
    "generate several clips to one file": (
        lambda h, m: ["generate", "--count", "2", "--out", h / "x.wav", "--model", m],
        ["x.wav", "--count 2"],
    ),
    "generate bank codes without a bank": (
        lambda h, m: ["generate", "--codes", "bank", "--model", m],
        ["codes='bank'", "whitening.bank_clips"],
    ),
    "generate sequence codes without a bank": (
        lambda h, m: ["generate", "--codes", "sequence", "--model", m],
        ["codes='sequence'", "whitening.bank_clips"],
    ),
    "generate truncated model": (
        lambda h, m: ["generate", "--model", h / "truncated.pt"],
        ["truncated.pt", "checkpoint"],
    ),
    "generate model folder without checkpoint": (
        lambda h, m: ["generate", "--model", h / "empty dir"],
        ["empty dir", "checkpoint.pt"],
    ),
    "interpolate one file": (
        lambda h, m: ["interpolate", h / "good a.wav", "--model", m],
        ["two audio files"],
    ),
    "interpolate missing file": (
        lambda h, m: ["interpolate", h / "good a.wav", h / "gone.wav", "--model", m],
        ["gone.wav", "no such file"],
    ),
    "interpolate bad audio": (
        lambda h, m: ["interpolate", h / "text.wav", h / "good b.wav", "--model", m],
        ["text.wav", "not readable as audio"],
    ),
    "interpolate steps 1": (
        lambda h, m: ["interpolate", "--seeds", "1", "2", "--steps", "1", "--model", m],
        ["--steps"],
    ),
}


#: Cases that run as real child processes (one per command); the rest run in this process.
_IN_A_CHILD = {
    "encode text as wav",
    "decode not an array",
    "generate truncated model",
    "interpolate missing file",
}


@pytest.mark.parametrize("case", list(_MODEL_CASES))
def test_model_commands_bad_input(
    home: Path, model: Path, cli_here: Callable[..., Any], case: str
) -> None:
    if not (home / "truncated.pt").exists():
        data = model.read_bytes()
        (home / "truncated.pt").write_bytes(data[: len(data) // 3])
        np.save(home / "channels.npy", np.ones((3, 5), np.float32))  # the model has more
    make, words = _MODEL_CASES[case]
    run = run_cli if case in _IN_A_CHILD else cli_here
    assert_user_error(run(home, *make(home, model)), *words)


def test_encode_clip_shorter_than_one_frame(
    home: Path, model: Path, cli_here: Callable[..., Any]
) -> None:
    proc = cli_here(home, "encode", home / "blip.wav", "--out", home / "blip.npy", "--model", model)
    assert_user_error(proc, "blip.wav", "too short")


# ------------------------------------------------------------------------------------------
# Outputs: every path and size is checked before any work; nothing is left half-written.


def _unwritable_folder(base: Path) -> Path:
    """A folder this process cannot create files in (a read-only /sys when running as root)."""
    if os.geteuid() == 0:
        for cand in (Path("/sys"), Path("/proc")):
            try:
                probe = cand / ".mmsin-probe"
                probe.touch()
                probe.unlink()
            except OSError:
                return cand
        pytest.skip("no unwritable folder for root here")
    folder = base / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o500)
    return folder


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


_OUTPUT_CASES: dict[str, tuple[ModelCase, list[str]]] = {
    "decode --out existing folder": (
        lambda h, m: ["decode", h / "z.npy", "--out", h / "out dir", "--model", m],
        ["out dir", "is a folder"],
    ),
    "decode --out under a file": (
        lambda h, m: ["decode", h / "z.npy", "--out", h / "text.wav" / "x.wav", "--model", m],
        ["text.wav", "is a file, not a folder"],
    ),
    "decode --out missing parent under a file": (
        lambda h, m: ["decode", h / "z.npy", "--out", h / "text.wav" / "a" / "x.wav", "--model", m],
        ["text.wav", "is a file, not a folder"],
    ),
    "decode --out unwritable": (
        lambda h, m: [
            "decode",
            h / "z.npy",
            "--out",
            _unwritable_folder(h) / "x.wav",
            "--model",
            m,
        ],
        ["x.wav", "cannot write in"],
    ),
    "encode --out existing folder": (
        lambda h, m: ["encode", h / "good a.wav", "--out", h / "dir.npy", "--model", m],
        ["dir.npy", "is a folder"],
    ),
    "encode --out unwritable": (
        lambda h, m: [
            "encode",
            h / "good a.wav",
            "--out",
            _unwritable_folder(h) / "x.npy",
            "--model",
            m,
        ],
        ["x.npy", "cannot write in"],
    ),
    "generate 1e9 seconds": (
        lambda h, m: ["generate", "--seconds", "1e9", "--out", h / "gen", "--model", m],
        ["--seconds 1e+09", "would write about", "TB", "free there"],
    ),
    "generate 1e6 files": (
        lambda h, m: ["generate", "--count", "1000000", "--out", h / "gen", "--model", m],
        ["--count 1000000", "needs about", "memory"],
    ),
    "generate infinite seconds": (
        lambda h, m: ["generate", "--seconds", "inf", "--out", h / "gen", "--model", m],
        ["--seconds"],
    ),
    "generate NaN seconds": (
        lambda h, m: ["generate", "--seconds", "nan", "--out", h / "gen", "--model", m],
        ["--seconds"],
    ),
    "generate --out a file": (
        lambda h, m: ["generate", "--out", h / "nothing.npy", "--model", m],
        ["nothing.npy", "is a file, not a folder"],
    ),
    "generate --out a wav under a file": (
        lambda h, m: ["generate", "--out", h / "text.wav" / "x.wav", "--model", m],
        ["text.wav"],
    ),
    "generate --out unwritable": (
        lambda h, m: ["generate", "--out", _unwritable_folder(h) / "gen", "--model", m],
        ["gen", "cannot write in"],
    ),
    "generate over an existing folder": (
        lambda h, m: ["generate", "--out", h / "gen taken", "--model", m],
        ["generated-seed0-00.wav", "is a folder"],
    ),
    "interpolate --out existing folder": (
        lambda h, m: ["interpolate", "--seeds", "1", "2", "--out", h / "out dir", "--model", m],
        ["out dir", "is a folder"],
    ),
    "interpolate --steps --out a file": (
        lambda h, m: [
            "interpolate",
            "--seeds",
            "1",
            "2",
            "--steps",
            "3",
            "--out",
            h / "text.wav",
            "--model",
            m,
        ],
        ["text.wav", "is a file, not a folder"],
    ),
    "interpolate 1e9 seconds": (
        lambda h, m: ["interpolate", "--seeds", "1", "2", "--seconds", "1e9", "--model", m],
        ["--seconds 1e+09", "needs about", "memory"],
    ),
    "interpolate too many steps": (
        lambda h, m: ["interpolate", "--seeds", "1", "2", "--steps", "1000000000", "--model", m],
        ["--steps", "10000"],
    ),
    "scatter --out existing folder": (
        lambda h, m: ["scatter", h / "good a.wav", "--out", h / "out dir", "-J", "5", "-Q", "2"],
        ["out dir", "is a folder"],
    ),
    "scatter --out under a file": (
        lambda h, m: ["scatter", h / "good a.wav", "--out", h / "text.wav" / "s.png", "-J", "5"],
        ["text.wav", "is a file, not a folder"],
    ),
}


@pytest.mark.parametrize("case", list(_OUTPUT_CASES))
def test_bad_outputs_are_refused_up_front_leaving_nothing(
    home: Path, model: Path, cli_here: Callable[..., Any], case: str
) -> None:
    from _tiny import tiny_clips
    from mmsin.model import MMSIN

    if not (home / "z.npy").exists():
        (home / "out dir").mkdir()
        (home / "dir.npy").mkdir()
        (home / "gen taken" / "generated-seed0-00.wav").mkdir(parents=True)
        m = MMSIN.load(model)
        np.save(home / "z.npy", m.encode(tiny_clips()[1].audio[:1]).numpy()[0])
    make, words = _OUTPUT_CASES[case]
    args = make(home, model)
    before = _listing(home)
    run = run_cli if case == "generate 1e9 seconds" else cli_here
    assert_user_error(run(home, *args), *words)
    assert _listing(home) == before  # no output, no temporary file, no folder created


def test_experiment_with_unwritable_results_is_refused_before_running(
    tmp_path: Path, cli_here: Callable[..., Any]
) -> None:
    (tmp_path / "results").write_text("a file where the results folder should be")
    before = _listing(tmp_path)
    proc = cli_here(tmp_path, "experiment", "reconstruction", "-q")
    assert_user_error(proc, "results", "is a file, not a folder")
    assert _listing(tmp_path) == before


def test_train_with_runs_under_a_file_is_refused_before_building_data(
    tmp_path: Path, cli_here: Callable[..., Any]
) -> None:
    _need_model_cli(scattering=False)
    (tmp_path / "runs").write_text("a file where the runs folder should be")
    before = _listing(tmp_path)
    assert_user_error(cli_here(tmp_path, "train", "-q"), "runs", "is a file, not a folder")
    assert _listing(tmp_path) == before  # no data set built


def test_written_files_get_the_umask_permissions(
    home: Path, model: Path, cli_here: Callable[..., Any], tmp_path: Path
) -> None:
    old = os.umask(0o027)
    try:
        out = tmp_path / "o"
        proc = cli_here(home, "generate", "--seconds", "0.1", "--out", out, "--model", model)
        assert proc.returncode == 0, proc.stderr
        proc = cli_here(
            home, "encode", home / "good a.wav", "--out", out / "a.npy", "--model", model
        )
        assert proc.returncode == 0, proc.stderr
        proc = cli_here(home, "decode", out / "a.npy", "--out", out / "a.wav", "--model", model)
        assert proc.returncode == 0, proc.stderr
    finally:
        os.umask(old)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["a.npy", "a.wav", "generated-seed0-00.wav"]
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o640, (f.name, oct(f.stat().st_mode))
