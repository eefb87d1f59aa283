"""Fuzz the audio loader: random bytes and mutated real headers only ever give AudioError.

A few hundred byte strings are built from a fixed seed: pure noise under every audio extension,
noise behind each format's magic number, and valid WAV/FLAC/OGG/AIFF/MP3 files cut short, with
bits flipped, with spans overwritten and with header words set to extreme values. Each goes to
``load_audio``, which must either return finite float32 samples or raise ``AudioError``; any other
exception is a failure. The cases run in a child process under a time limit, so that a crash in
the C decoders (a segfault) or a hang is caught and reported with the case that caused it instead
of taking the test session down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SEED = 20180923
TIME_LIMIT_S = 240

# Runs in the child: reads the list of case files, loads each, prints one JSON line per case.
_DRIVER = r"""
import json, logging, sys
import numpy as np
logging.disable(logging.CRITICAL)
from mmsin.io import AudioError, load_audio
for line in open(sys.argv[1]):
    path = line.rstrip("\n")
    print(json.dumps({"case": path, "start": True}), flush=True)
    try:
        x = load_audio(path, fs=4096)
    except AudioError as exc:
        one_line = "\n" not in str(exc) and path in str(exc)
        out = {"case": path, "result": "AudioError", "one_line": one_line}
    except BaseException as exc:
        out = {"case": path, "result": "other", "error": f"{type(exc).__name__}: {exc}"}
    else:
        ok = x.dtype == np.float32 and x.ndim == 1 and len(x) > 0 and bool(np.isfinite(x).all())
        out = {"case": path, "result": "ok" if ok else "bad-output"}
    print(json.dumps(out), flush=True)
"""

_MAGIC = [
    (b"RIFF\x24\x08\x00\x00WAVEfmt ", ".wav"),
    (b"fLaC\x00\x00\x00\x22", ".flac"),
    (b"OggS\x00\x02", ".ogg"),
    (b"ID3\x04\x00\x00", ".mp3"),
    (b"\xff\xfb\x90\x64", ".mp3"),
    (b"FORM\x00\x00\x10\x00AIFFCOMM", ".aiff"),
]


def _valid_files(folder: Path, rng: np.random.Generator) -> list[tuple[bytes, str]]:
    """Small valid files in several formats (those this libsndfile can write)."""
    x = rng.uniform(-0.5, 0.5, size=(3000, 2)).astype(np.float32)
    specs = [
        ("wav", "PCM_16"),
        ("wav", "PCM_U8"),
        ("wav", "PCM_24"),
        ("wav", "FLOAT"),
        ("flac", "PCM_16"),
        ("ogg", "VORBIS"),
        ("aiff", "PCM_16"),
        ("mp3", "MPEG_LAYER_III"),
    ]
    out = []
    for ext, subtype in specs:
        p = folder / f"valid_{subtype}.{ext}"
        try:
            sf.write(p, x, 8000, subtype=subtype)
        except (sf.LibsndfileError, ValueError, TypeError):
            continue  # a libsndfile built without this encoder
        out.append((p.read_bytes(), "." + ext))
    return out


def _cases(folder: Path) -> list[Path]:
    rng = np.random.default_rng(SEED)
    blobs: list[tuple[str, bytes, str]] = []
    exts = [".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"]
    for i in range(80):  # pure noise
        n = int(rng.integers(1, 4096))
        blobs.append((f"noise{i}", rng.bytes(n), exts[i % len(exts)]))
    for i in range(60):  # noise behind a real magic number
        magic, ext = _MAGIC[i % len(_MAGIC)]
        blobs.append((f"magic{i}", magic + rng.bytes(int(rng.integers(0, 2048))), ext))
    for j, (data, ext) in enumerate(_valid_files(folder, rng)):
        size = len(data)
        for i in range(8):  # truncation, half of them inside the first 100 bytes
            cut = int(rng.integers(1, 100)) if i % 2 else int(rng.integers(1, size))
            blobs.append((f"v{j}cut{i}", data[:cut], ext))
        for i in range(10):  # bit flips, concentrated in the header
            b = bytearray(data)
            for _ in range(int(rng.integers(1, 9))):
                pos = int(rng.integers(0, min(size, 128) if i % 2 else size))
                b[pos] ^= 1 << int(rng.integers(0, 8))
            blobs.append((f"v{j}flip{i}", bytes(b), ext))
        for i in range(5):  # a span overwritten with noise
            b = bytearray(data)
            start = int(rng.integers(0, size))
            span = int(rng.integers(1, 256))
            b[start : start + span] = rng.bytes(len(b[start : start + span]))
            blobs.append((f"v{j}span{i}", bytes(b), ext))
        for i in range(6):  # a header word set to an extreme value
            b = bytearray(data)
            pos = 4 * int(rng.integers(0, min(size, 64) // 4))
            b[pos : pos + 4] = [b"\x00" * 4, b"\xff" * 4, b"\x7f\xff\xff\xff"][i % 3]
            blobs.append((f"v{j}word{i}", bytes(b), ext))
    paths = []
    for name, data, ext in blobs:
        p = folder / f"{name}{ext}"
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_fuzz_load_audio_only_raises_audio_error(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    assert len(cases) >= 300
    listing = tmp_path / "cases.txt"
    listing.write_text("".join(f"{p}\n" for p in cases))
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    try:
        proc = subprocess.run(
            [sys.executable, str(driver), str(listing)],
            capture_output=True,
            text=True,
            timeout=TIME_LIMIT_S,
        )
        stdout, returncode = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        last = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        pytest.fail(f"hang: no answer within {TIME_LIMIT_S} s; last case {last[-1]['case']}")
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if returncode != 0:
        started = [r["case"] for r in records if r.get("start")]
        pytest.fail(f"loader crashed (exit {returncode}) on {started[-1] if started else '?'}")
    results = [r for r in records if "result" in r]
    assert len(results) == len(cases)
    others = [r for r in results if r["result"] not in ("ok", "AudioError")]
    assert not others, others[:5]
    assert all(r["one_line"] for r in results if r["result"] == "AudioError")
    # The corpus must exercise both outcomes: most noise is refused, some damaged files load.
    counts = {k: sum(r["result"] == k for r in results) for k in ("ok", "AudioError")}
    assert counts["AudioError"] > len(cases) // 3, counts
    assert counts["ok"] > 10, counts


# ------------------------------------------------------------------------------------------
# Outputs: random output paths (folders, files in the way, missing parents several levels
# deep, unwritable places, odd names) only ever give OutputError/AudioError or a complete file.


def _output_paths(root: Path, rng: np.random.Generator) -> list[Path]:
    """Seeded random output paths built from the kinds of place a user may name."""
    (root / "a folder").mkdir()
    (root / "a file.wav").write_bytes(b"old")
    (root / "a file.npy").write_bytes(b"old")
    (root / "read-only").mkdir()
    (root / "read-only").chmod(0o500)
    unwritable = [root / "read-only"]
    if Path("/sys").is_dir():
        unwritable.append(Path("/sys"))
    starts = [root, root / "a folder", root / "a file.wav", root / "missing", *unwritable]
    names = ["x.wav", "ü ñ.wav", "a folder", "a file.wav", "x.flac", "noext", "x.npy", "a file.npy"]
    out = []
    for _ in range(120):
        p = starts[int(rng.integers(len(starts)))]
        for _ in range(int(rng.integers(0, 3))):
            p = p / ["sub", "a folder", "a file.wav", "é"][int(rng.integers(4))]
        out.append(p / names[int(rng.integers(len(names)))])
    return out


def test_fuzz_output_paths_give_a_complete_file_or_one_clear_error(tmp_path: Path) -> None:
    from mmsin.io import AudioError, OutputError, save_array, save_audio

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, 256).astype(np.float32)
    old = __import__("os").umask(0o022)
    outcomes = {"written": 0, "refused": 0}
    try:
        for p in _output_paths(tmp_path, rng):
            existed = p.exists()
            before = p.read_bytes() if p.is_file() else None
            try:
                if p.suffix == ".npy":
                    save_array(p, x)
                else:
                    save_audio(p, x, 4096)
            except (OutputError, AudioError) as exc:
                msg = str(exc)
                assert "\n" not in msg and str(p) in msg, msg
                outcomes["refused"] += 1
                # Nothing half-written: an existing target is untouched, no target appears.
                assert p.exists() == existed, p
                if before is not None:
                    assert p.read_bytes() == before, p
            else:
                outcomes["written"] += 1
                assert p.stat().st_mode & 0o777 == 0o644, p
                if p.suffix == ".npy":
                    np.testing.assert_array_equal(np.load(p), x)
                else:
                    y, fs = sf.read(p, dtype="float32")
                    assert fs == 4096 and np.abs(y - x).max() < 1e-4, p
    finally:
        __import__("os").umask(old)
        (tmp_path / "read-only").chmod(0o700)
    leftovers = [q for q in tmp_path.rglob("*") if q.name.startswith((".tmp-", ".mmsin-write"))]
    assert not leftovers
    assert outcomes["written"] > 10 and outcomes["refused"] > 10, outcomes
