"""Long recordings block by block: streaming equals offline.

``mmsin.streaming`` (S_J, L, L^-1 and G chained through their streaming paths) against the
whole-signal :class:`mmsin.MMSIN` methods, for the paper's G (with and without look-ahead) and
the partials head; ``mmsin.blockio``'s writers against ``np.save`` and ``save_audio``; and the
command line with blocks much shorter than its files against the in-memory results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from mmsin.assembly import build_generator, build_scattering
from mmsin.config import override, preset
from mmsin.model import MMSIN
from mmsin.streaming import decode_blocks, encode_blocks, generate_blocks
from mmsin.whitening import NOISE_FRAMES, fit_var

J = 5
HOP = 2**J
TINY = ["scattering.J=5", "scattering.Q=2", "scattering.P=2", "whitening.M=2"]
HEADS = {
    "conv": ["generator.c1=4"],
    "conv-look-ahead": ["generator.c1=4", "generator.look_ahead=2"],
    "partials": [
        "generator.head=partials",
        "generator.hidden=4",
        "generator.trunk_layers=3",
        "generator.freq_channels=4",
        "generator.freq_depth=1",
        "generator.freq_kernel=3",
        "generator.per_octave=4",
        "generator.fmin=40",
    ],
}


def _signals(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 4096
    rows = [
        np.sin(2 * np.pi * (150 + 90 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * t))
        + 0.1 * rng.standard_normal(samples)
        for i in range(batch)
    ]
    return torch.as_tensor(np.asarray(rows, np.float32))


def _model(head: str) -> MMSIN:
    """A tiny untrained model: S_J, its norm and VAR fitted on chirps, a random generator."""
    torch.manual_seed(0)
    cfg = override(preset("small"), [*TINY, *HEADS[head]])
    sj = build_scattering(cfg)
    S = sj(_signals(4, 80 * HOP, seed=1))
    norm = S.abs().mean(dim=(0, 2)).clamp_min(1e-6)
    var = fit_var(S / norm[:, None], M=2, ridge=1e-2)
    g = build_generator(cfg, sj.num_channels, norm)
    g.eval()
    return MMSIN(cfg, sj, norm, var, g)


def _pieces(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """x cut along its last axis into pieces of the given sizes, then the rest."""
    out, i = [], 0
    for s in sizes:
        out.append(x[..., i : i + s])
        i += s
    return [*out, x[..., i:]]


@pytest.fixture(scope="module", params=sorted(HEADS))
def model(request: pytest.FixtureRequest) -> MMSIN:
    return _model(request.param)


def test_encode_in_blocks_equals_the_whole_signal(model: MMSIN) -> None:
    x = _signals(2, 41 * HOP + 7)
    blocks = _pieces(x, [700, 1, 3 * HOP, 5 * HOP + 3])
    Z = torch.cat(list(encode_blocks(model, blocks)), dim=-1)
    want = model.encode(x)
    assert Z.shape == want.shape == (2, model.num_channels, 42)
    torch.testing.assert_close(Z, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    S = torch.cat(list(encode_blocks(model, blocks, scattering=True)), dim=-1)
    want = model.encode_scattering(x)
    torch.testing.assert_close(S, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("aligned", [True, False])
def test_decode_in_blocks_equals_the_whole_embedding(model: MMSIN, aligned: bool) -> None:
    x = _signals(2, 30 * HOP)
    Z = model.encode(x)
    blocks = _pieces(Z, [3, 1, 7])
    y = torch.cat(list(decode_blocks(model, blocks, aligned=aligned)), dim=-1)
    want = model.decode(Z, aligned=aligned)
    assert y.shape == want.shape
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    S = model.encode_scattering(x)
    blocks = _pieces(S, [1, 12])
    y = torch.cat(list(decode_blocks(model, blocks, kind="scattering", aligned=aligned)), -1)
    want = model.decode_scattering(S, aligned=aligned)
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_generate_in_blocks_equals_generate_and_is_a_prefix(model: MMSIN) -> None:
    frames = NOISE_FRAMES + 45  # the noise crosses a block boundary, after the warmup
    blocks = list(generate_blocks(model, frames, batch=2, seed=3, warmup=20))
    assert len(blocks) > 2
    y = torch.cat(blocks, dim=-1)
    want = model.generate(frames, batch=2, seed=3, warmup=20)
    assert y.shape == want.shape == (2, frames * HOP)
    torch.testing.assert_close(y, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # The noise is drawn in fixed blocks: a shorter generation is the start of a longer one
    # (up to the frames that a look-ahead generator renders with zero future at its end).
    short = model.generate(10, batch=2, seed=3, warmup=20)
    n = (10 - 2) * HOP
    torch.testing.assert_close(short[:, :n], want[:, :n], rtol=1e-5, atol=1e-6)


def test_generation_starts_mid_music_not_from_silence(model: MMSIN) -> None:
    """G also runs on the last warm-up frames, so a sample's first output blocks are what G
    gives with its whole past: equal to the same frames generated with more of them kept.
    (From a zero state instead, G would play the jump from silence as an onset: the first
    block's RMS 1.36 times the longer run's on the conv head.) Oscillator heads carry phases
    from their own start, so only the conv heads' samples can be compared exactly."""
    lead = model.generation_lead(20)
    assert lead > 0
    short = model.generate(12, batch=2, seed=4, warmup=20)
    if model.config.generator.head == "conv":
        k = lead + 2
        longer = model.generate(12 + k, batch=2, seed=4, warmup=20 - k)  # the same last 12
        torch.testing.assert_close(short, longer[:, k * HOP :], rtol=1e-4, atol=1e-5)
    streamed = torch.cat(list(generate_blocks(model, 12, batch=2, seed=4, warmup=20)), -1)
    torch.testing.assert_close(streamed, short, rtol=1e-4, atol=1e-4 * float(short.abs().max()))


def test_var_sample_blocks_carry_the_recursion() -> None:
    """VAR.sample is its blocks concatenated, and each block continues the recursion
    S[n] = b + sum_m A_m S[n-m] + Sigma^1/2 z[n] across block boundaries."""
    torch.manual_seed(0)
    var = fit_var(torch.rand(3, 4, 200), M=2, ridge=1e-2)
    g = torch.Generator().manual_seed(5)
    blocks = list(var.sample_blocks(2, 2 * NOISE_FRAMES + 3, warmup=7, generator=g, relu=False))
    assert [b.shape[-1] for b in blocks] == [NOISE_FRAMES - 7, NOISE_FRAMES, 10]
    whole = var.sample(
        2, 2 * NOISE_FRAMES + 3, warmup=7, relu=False, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(torch.cat(blocks, -1), whole)
    # The noise behind it is white: whitening the sample (from its own start) gives N(0, I).
    Z = var.whiten(whole[:, :, var.M :], initial=whole[:, :, : var.M])
    assert abs(float(Z.mean())) < 0.1 and abs(float(Z.std()) - 1) < 0.1


def test_writers_equal_np_save_and_save_audio(tmp_path: Path) -> None:
    from mmsin.blockio import NpyWriter, WavWriter
    from mmsin.io import normalize_peak, save_audio

    rng = np.random.default_rng(0)
    arr = rng.standard_normal((2, 3, 50)).astype(np.float32)
    with NpyWriter(tmp_path / "a.npy", arr.shape) as w:
        for piece in _pieces(torch.as_tensor(arr), [7, 1, 20]):
            w.write(piece.numpy())
    got = np.load(tmp_path / "a.npy")
    assert got.flags.c_contiguous and np.array_equal(got, arr)
    sig = (0.3 * rng.standard_normal((2, 5000))).astype(np.float32)
    sig[1] = 0  # a silent signal stays silent
    names = [tmp_path / "x0.wav", tmp_path / "x1.wav"]
    with WavWriter(names, 4096) as ww:
        for piece in _pieces(torch.as_tensor(sig), [100, 0, 2000]):
            ww.write(piece.numpy())
    for i, name in enumerate(names):
        save_audio(tmp_path / f"ref{i}.wav", normalize_peak(sig[i]), 4096)
        a, fs = sf.read(name, dtype="int16")
        assert fs == 4096 and np.array_equal(a, sf.read(tmp_path / f"ref{i}.wav", dtype="int16")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.npy", "x0.wav", "x1.wav", "ref0.wav", "ref1.wav"]
    )  # no temporary file left behind
    with pytest.raises(ValueError), NpyWriter(tmp_path / "b.npy", (2, 10)) as w:
        w.write(np.zeros((2, 11), np.float32))
    assert not (tmp_path / "b.npy").exists()


# ------------------------------------------------------------------------------------------
# The command line, with blocks much shorter than its files


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "conv.pt"
    _model("conv-look-ahead").save(path)
    return path


def test_cli_streams_long_files_equal_to_the_in_memory_result(
    cli_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmsin.cli import main
    from mmsin.cli import model as cli
    from mmsin.io import load_audio, normalize_peak

    monkeypatch.setattr(cli, "_BLOCK_SECONDS", 5 * HOP / 4096)  # 5 frames of audio per block
    monkeypatch.setattr(cli, "_BLOCK_FRAMES", 3)
    x = _signals(2, 60 * HOP + 11).numpy()
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, 0.8 * x[0], 4096, subtype="FLOAT")
    sf.write(b, 0.5 * x[1, : 40 * HOP], 4096, subtype="FLOAT")
    m = MMSIN.load(cli_model)
    model = ["--model", str(cli_model), "-q"]

    # encode, two files of different lengths: (2, C, frames), the shorter one zero-padded
    assert main(["encode", str(a), str(b), "--out", str(tmp_path / "z.npy"), *model]) == 0
    Z = np.load(tmp_path / "z.npy")
    xa, xb = load_audio(a, 4096, normalize=True), load_audio(b, 4096, normalize=True)
    both = np.zeros((2, len(xa)), np.float32)
    both[0], both[1, : len(xb)] = xa, xb
    want = m.encode(both).numpy()
    assert Z.shape == want.shape
    np.testing.assert_allclose(Z, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    # decode: the WAV of the in-memory decode, peak-normalised, to 16-bit precision
    assert main(["decode", str(tmp_path / "z.npy"), "--out", str(tmp_path / "y.wav"), *model]) == 0
    for i in range(2):
        y, _ = sf.read(tmp_path / f"y-{i:02d}.wav")
        ref = normalize_peak(m.decode(Z[i]).numpy()[0])
        assert y.shape == ref.shape and np.abs(y - ref).max() <= 1.5 / 32768

    # generate: as MMSIN.generate with the same seed
    args = ["generate", "--seconds", str(300 * HOP / 4096), "--count", "2", "--seed", "4"]
    assert main([*args, "--out", str(tmp_path / "gen"), *model]) == 0
    want_gen = m.generate(300, batch=2, seed=4).numpy()
    for i in range(2):
        y, _ = sf.read(tmp_path / "gen" / f"generated-seed4-{i:02d}.wav")
        assert np.abs(y - normalize_peak(want_gen[i])).max() <= 1.5 / 32768
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_progress_bar_only_on_a_terminal(
    cli_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from mmsin.cli import main

    args = ["generate", "--seconds", "1", "--out", str(tmp_path), "--model", str(cli_model)]
    assert main(args) == 0  # stderr is captured, not a terminal: no bar
    assert "generate" not in capsys.readouterr().err

    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert main([*args[:-4], "--out", str(tmp_path / "2"), "--model", str(cli_model)]) == 0
    assert "generate" in capsys.readouterr().err
    assert main([*args[:-4], "--out", str(tmp_path / "3"), "--model", str(cli_model), "-q"]) == 0
    assert "generate" not in capsys.readouterr().err
