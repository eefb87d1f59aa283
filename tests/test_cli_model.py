"""Command-line round trip on generated WAV files: train a tiny model, encode, decode, generate,
interpolate; user mistakes give one line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("mmsin.losses")
from mmsin.cli import main
from test_training import HOP, TINY, clips


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a folder of WAV files and a model trained on it through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    tr, te = clips(n_train=6, n_test=2)
    # A plain folder of WAV files (the loader splits it); plus two files to encode.
    folder = root / "audio"
    (folder / "mine").mkdir(parents=True)
    for i, x in enumerate(np.concatenate([tr.audio, te.audio])):
        sf.write(folder / "mine" / f"clip{i}.wav", 0.9 * x, 4096, subtype="PCM_16")
    (root / "test").mkdir()
    for i, x in enumerate(te.audio):
        sf.write(root / "test" / f"test{i}.wav", 0.9 * x, 4096, subtype="PCM_16")
    mp = pytest.MonkeyPatch()
    mp.setenv("MMSIN_HOME", str(root))
    sets = [a for t in TINY if not t.startswith("name=") for a in ("--set", t)]
    rc = main(
        [
            "train",
            "--preset",
            "small",
            "--data",
            str(root / "audio"),
            "--run",
            "cli",
            "-q",
            *sets,
            "--set",
            "train.epochs=2",
            "--set",
            f"data.seconds={10 * HOP / 4096}",
        ]
    )
    assert rc == 0
    assert (root / "runs" / "cli" / "checkpoint.pt").is_file()
    yield root
    mp.undo()


def test_encode_decode_round_trip(workspace: Path, tmp_path: Path, capsys) -> None:
    src = workspace / "test" / "test0.wav"
    n = sf.info(src).frames
    z = tmp_path / "z.npy"
    assert main(["encode", str(src), "--out", str(z)]) == 0
    Z = np.load(z)
    frames = (n - 1) // HOP + 1
    assert Z.ndim == 2 and Z.shape[1] == frames and (Z < 0).any()
    out = tmp_path / "y.wav"
    assert main(["decode", str(z), "--out", str(out)]) == 0
    y, fs = sf.read(out)
    assert fs == 4096 and len(y) == (frames - 1) * HOP + 1 and np.isfinite(y).all()
    # The file holds the model's decode of that very Z, peak-normalised, to 16-bit precision;
    # Z is the model's encoding of the file as read.
    from mmsin.io import load_audio
    from mmsin.model import MMSIN

    model = MMSIN.load()
    x = load_audio(src, 4096, normalize=True)
    # (the command streams S_J block by block: equal to float rounding, amplified by L)
    want_z = model.encode(x[None])[0].numpy()
    np.testing.assert_allclose(Z, want_z, rtol=1e-4, atol=1e-4 * np.abs(want_z).max())
    want = model.decode(Z[None])[0].numpy()
    want = want / np.abs(want).max()
    assert np.abs(y - want).max() < 2.0 / 32768
    # S_J path: non-negative array, detected automatically.
    s = tmp_path / "s.npy"
    assert main(["encode", str(src), "--out", str(s), "--scattering"]) == 0
    S = np.load(s)
    modulus = MMSIN.load().modulus_channels.numpy()
    assert S.shape == Z.shape and (S[modulus] >= -1e-6).all()
    assert main(["decode", str(s), "--out", str(tmp_path / "s.wav")]) == 0
    assert "decoded from scattering" in capsys.readouterr().out
    # Two files at once -> (2, C, F) -> numbered WAVs.
    both = tmp_path / "both.npy"
    other = workspace / "test" / "test1.wav"
    assert main(["encode", str(src), str(other), "--out", str(both)]) == 0
    assert np.load(both).shape[0] == 2
    assert main(["decode", str(both), "--out", str(tmp_path / "b.wav")]) == 0
    assert (tmp_path / "b-00.wav").is_file() and (tmp_path / "b-01.wav").is_file()


def test_generate_and_interpolate(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert (
        main(["generate", "--seconds", "0.1", "--count", "2", "--seed", "3", "--out", str(out)])
        == 0
    )
    files = sorted(out.glob("*.wav"))
    assert [f.name for f in files] == ["generated-seed3-00.wav", "generated-seed3-01.wav"]
    frames = int(np.ceil(0.1 * 4096 / HOP))
    want = _generate_by_hand(frames, batch=2, seed=3)
    for f, w in zip(files, want, strict=True):
        x, fs = sf.read(f)
        assert fs == 4096 and len(x) == frames * HOP
        assert np.abs(x - w / np.abs(w).max()).max() < 2.0 / 32768, f.name
    # One clip to a named file: the same audio as the folder's first clip of that seed.
    one = tmp_path / "one" / "clip.WAV"
    assert main(["generate", "--seconds", "0.1", "--seed", "3", "--out", str(one)]) == 0
    x, _ = sf.read(one)
    w = _generate_by_hand(frames, batch=1, seed=3)[0]
    assert np.abs(x - w / np.abs(w).max()).max() < 2.0 / 32768
    a, b = (workspace / "test" / f"test{i}.wav" for i in (0, 1))
    assert main(["interpolate", str(a), str(b), "--steps", "3", "--out", str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("*.wav"))) == 3
    mid = tmp_path / "mid.wav"
    assert main(["interpolate", "--seeds", "1", "2", "--seconds", "0.1", "--out", str(mid)]) == 0
    assert np.isfinite(sf.read(mid)[0]).all()


def test_generate_softens_the_envelopes_as_the_model_says(tmp_path: Path) -> None:
    """The shipped piano generates at its ``generator.generation_temperature``: the file is
    ``MMSIN.generate`` at that temperature, not at 1 (the shapes as trained), and
    ``--envelope-temperature 1`` gives the latter; a bad temperature writes no file."""
    from mmsin.model import MMSIN

    model = MMSIN.load("piano")
    assert model.config.generator.generation_temperature > 1
    frames = int(np.ceil(1.0 * 4096 / model.hop))
    files = {}
    for tau in (None, "1"):
        out = tmp_path / f"t{tau}.wav"
        extra = [] if tau is None else ["--envelope-temperature", tau]
        argv = ["generate", "--model", "piano", "--seconds", "1", "--seed", "2", "--out", str(out)]
        assert main([*argv, *extra, "-q"]) == 0
        files[tau] = sf.read(out)[0]
    for tau, x in files.items():
        w = model.generate(frames, seed=2, envelope_temperature=None if tau is None else 1.0)
        w = w[0].numpy() / float(w.abs().max())
        assert np.abs(x - w).max() < 2.0 / 32768, tau
    assert np.abs(files[None] - files["1"]).max() > 0.01
    bad = tmp_path / "bad"
    argv = ["generate", "--model", "piano", "--seconds", "1", "--out", str(bad)]
    assert main([*argv, "--envelope-temperature", "-2"]) == 2
    assert not bad.exists() or not list(bad.iterdir())


def _generate_by_hand(frames: int, batch: int, seed: int) -> np.ndarray:
    """G(ReLU(L^-1 z)), z ~ N(0, I) drawn from ``seed`` in blocks of ``NOISE_FRAMES`` frames
    (so that long generations stream): the VAR recursion written out here,
    S[n] = b + sum_m A_m S[n-m] + Sigma^(1/2) z[n] from zero past frames, the first ``warmup``
    frames dropped after the generator (eval mode) has run on the last of them."""
    import torch

    from mmsin.model import MMSIN

    model = MMSIN.load()
    var = model.var
    A = var.A.double().numpy()  # (M, C, C)
    b = var.b.double().numpy()
    root = var.sqrt_cov.double().numpy()
    M, C = A.shape[0], A.shape[1]
    warm = int(model.config.whitening.warmup)
    from mmsin.whitening import NOISE_FRAMES

    g = torch.Generator().manual_seed(seed)
    n_blocks = -(-(warm + frames) // NOISE_FRAMES)
    blocks = [
        torch.randn(batch, C, NOISE_FRAMES, generator=g, dtype=var.A.dtype) for _ in range(n_blocks)
    ]
    z = torch.cat(blocks, dim=-1).double().numpy()
    S = np.zeros((batch, C, M + warm + frames))
    for n in range(warm + frames):
        pred = b + sum(S[:, :, M + n - m] @ A[m - 1].T for m in range(1, M + 1))
        S[:, :, M + n] = pred + z[:, :, n] @ root
    # G runs on the last ``lead`` warm-up frames too (its past span), their output dropped
    lead = model.generation_lead(warm)
    kept = S[:, :, M + warm - lead :]
    mask = model.modulus_channels.numpy()[None, :, None]  # S_J's non-negative channels
    X = np.where(mask, np.maximum(kept, 0.0), kept)  # eq. (1)
    model.generator.eval()
    with torch.no_grad():
        y = model.generator(torch.as_tensor(X, dtype=torch.float32)).numpy()
    return y[:, lead * model.hop :]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "missing.wav", "--out", "z.npy"], "missing.wav"),
        (["encode", "{wav}", "--out", "z.txt"], "must end in .npy"),
        (["decode", "nothing.npy", "--out", "y.wav"], "no such file"),
        (["decode", "{bad}", "--out", "y.wav"], "channels"),
        (["decode", "{text}", "--out", "y.wav"], "not a .npy array"),
        (["interpolate", "{wav}", "--out", "m.wav"], "two audio files"),
        (["generate", "--seconds", "-1"], "--seconds must be positive"),
        (["generate", "--envelope-temperature", "4"], "no envelopes inside the frame"),
        (["generate", "--model", "piano", "--envelope-temperature", "0"], "must be > 0"),
        (["train", "--set", "train.nope=1"], "unknown field 'nope'"),
        (["train", "--set", "train.epochs=x"], "not a valid int"),
        (["decode", "{npy}", "--out", "y.wav", "--model", "no/such/run"], "no such model"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    workspace: Path, tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    wav = workspace / "test" / "test0.wav"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((3, 4), np.float32))
    text = tmp_path / "text.npy"
    text.write_text("hello")
    good = tmp_path / "good.npy"
    np.save(good, -np.ones((2, 4), np.float32))
    subst = {"{wav}": str(wav), "{bad}": str(bad), "{text}": str(text), "{npy}": str(good)}
    argv = [subst.get(a, a) for a in argv]
    argv = [str(tmp_path / a) if a in ("z.npy", "y.wav", "m.wav") else a for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_train_defaults_to_the_shipped_preset() -> None:
    """``mmsin train`` with no --preset trains what ships (the pitched preset); the paper's
    literal G stays one flag away."""
    from mmsin.cli import build_parser
    from mmsin.config import preset

    assert build_parser().parse_args(["train"]).preset == "pitched"
    assert preset("pitched").generator.head == "partials" and preset("pitched").loss.spectral > 0
    assert build_parser().parse_args(["train", "--preset", "small"]).preset == "small"
    assert build_parser().parse_args(["train", "--preset", "paper"]).preset == "paper"


def test_help_texts(capsys) -> None:
    for cmd in ("train", "encode", "decode", "generate", "interpolate"):
        with pytest.raises(SystemExit) as info:
            main([cmd, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and "usage: mmsin " + cmd in text
