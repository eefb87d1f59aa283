"""Transposition T_k on S_J (mmsin.scattering.transposition), MMSIN.transpose, `mmsin transpose`.

Truth: the windowed Fourier transform along lambda1 written out again here from its definition
(numpy's Hann window, complex exponentials), the first-order scalogram u taken from the
``time`` variant of the same encoder, and pure tones whose scalogram peak must move by k bins.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from mmsin.scattering import TimeFrequencyScattering
from mmsin.scattering.timefrequency import frequency_windows
from mmsin.scattering.transposition import (
    first_order_synthesis,
    shift_matrix,
    transpose_frames,
    transposition_operator,
)

FS = 4096
# J = 6 keeps S_J fast (64-sample frames); Q = P = 12 keeps a semitone per bin, as the paper.
SMALL = {"J": 6, "Q": 12, "P": 12}


@pytest.fixture(scope="module")
def paper() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(**SMALL, variant="paper").double()


@pytest.fixture(scope="module")
def time_sc() -> TimeFrequencyScattering:
    return TimeFrequencyScattering(**SMALL, variant="time").double()


def _tone(f: float, seconds: float = 1.0) -> torch.Tensor:
    t = np.arange(int(seconds * FS)) / FS
    x = np.sin(2 * np.pi * f * t) * np.minimum(1.0, t / 0.02)
    return torch.as_tensor(x)[None]


def _harmonic(f0: float, seconds: float = 1.0) -> torch.Tensor:
    t = np.arange(int(seconds * FS)) / FS
    x = sum(np.sin(2 * np.pi * h * f0 * t + h) / h for h in range(1, 5))
    return torch.as_tensor(x * np.minimum(1.0, t / 0.02))[None]


def _windowed_fourier_reference(u: np.ndarray, P: int) -> np.ndarray:
    """``paper``'s order 1 from u (n1, frames), from the definition: window taps
    hanning(P+2)[1:-1] times exp(-2 i pi k p / P), bins 0..P/2, rows re0, re1, im1, ..., reP/2."""
    hann = np.hanning(P + 2)[1:-1]
    p = np.arange(P)
    rows = []
    for idx in frequency_windows(u.shape[0], P):
        seg = u[idx]  # (P, frames); the full windows of the paper's layout
        for k in range(P // 2 + 1):
            z = (hann * np.exp(-2j * np.pi * k * p / P)) @ seg
            rows += [z.real] if k in (0, P // 2) else [z.real, z.imag]
    return np.stack(rows)


def _shift(u: np.ndarray, k: int) -> np.ndarray:
    """u'[i] = u[i + k] along axis 0, zeros where i + k is outside."""
    out = np.zeros_like(u)
    n = u.shape[0]
    if k >= 0:
        out[: n - k] = u[k:]
    else:
        out[-k:] = u[: n + k]
    return out


# ------------------------------------------------------------------------------ the operator


@pytest.mark.parametrize("variant", ["paper", "time", "joint-real"])
def test_zero_semitones_is_the_identity(variant: str) -> None:
    sc = TimeFrequencyScattering(**SMALL, variant=variant)
    np.testing.assert_allclose(transposition_operator(sc, 0), np.eye(sc.num_channels), atol=1e-12)


def test_shift_matrix_integer_fractional_and_composition() -> None:
    u = np.random.default_rng(0).standard_normal(40)
    np.testing.assert_array_equal(shift_matrix(40, 3) @ u, _shift(u[:, None], 3)[:, 0])
    np.testing.assert_array_equal(shift_matrix(40, -5) @ u, _shift(u[:, None], -5)[:, 0])
    # cubic interpolation reproduces a quadratic exactly inside (Keys: third-order accurate)
    q = np.arange(40.0) ** 2
    np.testing.assert_allclose(
        (shift_matrix(40, 0.25) @ q)[2:-3], (np.arange(40) + 0.25)[2:-3] ** 2
    )
    inner = slice(10, 30)
    for a, b in [(2, 3), (-4, 7), (0.5, 0.5), (-1.5, 2.5)]:
        lhs = shift_matrix(40, a) @ shift_matrix(40, b)
        if float(a).is_integer() and float(b).is_integer():
            np.testing.assert_allclose(lhs[inner], shift_matrix(40, a + b)[inner], atol=1e-12)


def _interior_frames(sc: TimeFrequencyScattering, margin: int, frames: int = 3) -> torch.Tensor:
    """Random S_J-shaped frames whose content stays ``margin`` bins away from every edge along
    lambda1: order 1 (``paper``) = W u + a part outside range(W), u zero near both ends; every
    other channel along lambda1 (``time``) or window (joint, ``margin`` in hops) likewise."""
    rng = np.random.default_rng(1)
    meta = sc.meta()
    order, j2s = meta["order"], meta["j2"]
    S = rng.standard_normal((sc.num_channels, frames))
    n1 = len(sc.family.lambda1)
    for o, j2 in {(int(o), int(j)) for o, j in zip(order, j2s, strict=True) if o > 0}:
        idx = np.flatnonzero((order == o) & (j2s == j2))
        if o == 1 and sc.variant == "paper":
            u = rng.standard_normal((n1, frames))
            u[:margin] = u[n1 - margin :] = 0
            W = first_order_synthesis(sc)
            e = rng.standard_normal((len(idx), frames))
            S[idx] = W @ u + e - W @ np.linalg.pinv(W) @ e
            continue
        pos = np.arange(len(idx)) if sc.variant == "time" else meta["window"][idx]
        m = margin if sc.variant == "time" else -(-margin // (sc.P // 2))
        S[idx[(pos < m) | (pos >= pos.max() + 1 - m)]] = 0
    return torch.as_tensor(S)[None]


@pytest.mark.parametrize("variant", ["paper", "time"])
@pytest.mark.parametrize(("a", "b"), [(2, 3), (-5, 1), (6, 6), (-7, 12), (12, -6)])
def test_composition_away_from_the_edges(variant: str, a: int, b: int) -> None:
    """T_a T_b = T_{a+b} on frames whose content stays inside the bank through both shifts:
    order 1 always; order 2 for the ``time`` variant and for whole hops of the windows (joint
    second order interpolates between windows otherwise, which does not compose exactly)."""
    sc = TimeFrequencyScattering(**SMALL, variant=variant)
    S = _interior_frames(sc, max(abs(a), abs(b), abs(a + b)) + 1)
    lhs = transpose_frames(transpose_frames(S, sc, b), sc, a)
    rhs = transpose_frames(S, sc, a + b)
    order = sc.meta()["order"]
    whole_hops = a % 6 == 0 and b % 6 == 0
    check = (order < 2) | (variant == "time") | whole_hops
    np.testing.assert_allclose(lhs[:, check], rhs[:, check], atol=1e-10)
    assert float((rhs[:, order == 1] - S[:, order == 1]).abs().max()) > 0.1  # it did move


def test_time_variant_shifts_order_one_exactly(time_sc: TimeFrequencyScattering) -> None:
    S = time_sc(_harmonic(220.0))
    o1 = time_sc.meta()["order"] == 1
    for k in (-7, 1, 5, 12):
        got = transpose_frames(S, time_sc, k)[0, o1].numpy()
        np.testing.assert_array_equal(got, _shift(S[0, o1].numpy(), k))


@pytest.mark.parametrize("k", [-12, -5, -1, 1, 7, 12])
def test_paper_order_one_is_the_shifted_scalogram(
    paper: TimeFrequencyScattering, time_sc: TimeFrequencyScattering, k: int
) -> None:
    """Order 1 of T_k S_J x (paper) = the windowed Fourier transform of u shifted by k bins,
    u = phi_J * U1 read from the ``time`` variant of the same encoder: exact, edges included
    (zero fill)."""
    x = torch.cat([_harmonic(110.0), _tone(700.0)])
    S = transpose_frames(paper(x), paper, k)
    u = time_sc(x)[:, time_sc.meta()["order"] == 1].numpy()
    o1 = paper.meta()["order"] == 1
    for b in range(2):
        want = _windowed_fourier_reference(_shift(u[b], k), paper.P)
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(S[b, o1].numpy(), want, atol=1e-10 * scale)


def test_first_order_synthesis_matches_the_transform(
    paper: TimeFrequencyScattering, time_sc: TimeFrequencyScattering
) -> None:
    x = _harmonic(330.0)
    u = time_sc(x)[0, time_sc.meta()["order"] == 1].numpy()
    S1 = paper(x)[0, paper.meta()["order"] == 1].numpy()
    np.testing.assert_allclose(first_order_synthesis(paper) @ u, S1, atol=1e-12 * np.abs(S1).max())


@pytest.mark.parametrize("k", [-7, -1, 3, 12])
def test_a_transposed_tone_peak_moves_by_k_bins(paper: TimeFrequencyScattering, k: int) -> None:
    """u's peak (u = W^+ order 1) of T_k S_J(tone at f) is one of the tone at f 2^(k/12): k bins
    towards the high frequencies (lambda1 index decreases)."""
    f = 300.0
    S = paper(torch.cat([_tone(f), _tone(f * 2 ** (k / 12))]))
    o1 = paper.meta()["order"] == 1
    pinv = np.linalg.pinv(first_order_synthesis(paper))
    frame = -1

    def peak(s: torch.Tensor) -> int:
        return int(np.argmax(pinv @ s[o1, frame].numpy()))

    moved = transpose_frames(S[:1], paper, k)[0]
    assert peak(moved) == peak(S[0]) - k
    assert peak(moved) == peak(S[1])


def test_window_shift_is_a_permutation_on_hops(paper: TimeFrequencyScattering) -> None:
    """A shift by a whole hop (P/2 = 6 bins) moves every second-order window by one."""
    T = transposition_operator(paper, 6)
    meta = paper.meta()
    o2 = np.flatnonzero(meta["order"] == 2)
    block = T[np.ix_(o2, o2)]
    assert set(np.unique(block)) <= {0.0, 1.0}
    for r, c in zip(*np.nonzero(block), strict=True):
        a, b = o2[r], o2[c]
        assert meta["j2"][a] == meta["j2"][b] and meta["fourier_bin"][a] == meta["fourier_bin"][b]
        assert meta["window"][b] == meta["window"][a] + 1


def test_bad_semitones_and_shapes(paper: TimeFrequencyScattering) -> None:
    with pytest.raises(ValueError, match="finite"):
        transposition_operator(paper, float("nan"))
    with pytest.raises(ValueError, match="shape"):
        transpose_frames(torch.zeros(1, 5, 3), paper, 1)


# ------------------------------------------------------------------------------ the model


@pytest.fixture(scope="module")
def model() -> object:
    from mmsin.model import MMSIN, pretrained_names

    if "notes" not in pretrained_names():
        pytest.skip("the shipped notes model is not installed")
    return MMSIN.load("notes")


def test_model_transpose_round_trip(model: object) -> None:
    from mmsin.model import MMSIN

    assert isinstance(model, MMSIN)
    x = _harmonic(220.0, seconds=2.0)[0].float()
    S = model.encode_scattering(x).double()
    Z = model.encode(x).double()
    np.testing.assert_array_equal(model.transpose(Z, 0), Z)
    np.testing.assert_array_equal(model.transpose(Z.float(), 0), Z.float())
    k = 5
    Zk = model.transpose(Z, k)
    assert Zk.shape == Z.shape and float((Zk - Z).abs().max()) > 0.1
    # causal: the transposition of a prefix is the prefix of the transposition
    np.testing.assert_allclose(model.transpose(Z[..., :4], k), Zk[..., :4], atol=1e-9)
    # With L and L^-1 exact inverses (the packed model's float16 pair is not), Z' is
    # L D^-1 T_k D L^-1 Z: back through L^-1 it is T_k S_J, and it decodes like T_k S_J.
    var = model.var
    saved = var.inv_sqrt_cov.clone()
    try:
        var.inv_sqrt_cov.copy_(torch.linalg.inv(var.sqrt_cov))
        norm = model.norm.double()[:, None]
        Z = var.whiten(S / norm)
        Zk = model.transpose(Z, k)
        back = var.unwhiten(Zk) * norm
        want = model.transpose_scattering(S, k)
        np.testing.assert_allclose(back, want, atol=1e-6 * float(want.abs().max()))
        y_z, y_s = model.decode(Zk), model.decode_scattering(want)
        assert y_z.shape == y_s.shape == (1, (S.shape[-1] - 1) * model.hop + 1)
        np.testing.assert_allclose(y_z, y_s, atol=1e-4 * float(y_s.abs().max()))
    finally:
        var.inv_sqrt_cov.copy_(saved)


# ------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("transpose cli")
    sf.write(h / "tone.wav", _harmonic(220.0, seconds=2.0)[0].numpy() * 0.5, FS)
    (h / "text.wav").write_text("not audio\n")
    (h / "a folder.wav").mkdir()
    return h


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``mmsin ARGS`` in this process (no second torch import); stdout/stderr captured."""
    from mmsin.cli import main

    def run(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
        monkeypatch.setenv("MMSIN_HOME", str(home))
        capsys.readouterr()
        rc = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(map(str, args)), rc, out, err)

    return run


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


_BAD: dict[str, tuple[Callable[[Path], list[str | Path]], list[str]]] = {
    "missing file": (lambda h: [h / "gone.wav", "--semitones", "2"], ["gone.wav", "no such"]),
    "not audio": (lambda h: [h / "text.wav", "--semitones", "2"], ["text.wav", "audio"]),
    "K not a number": (lambda h: [h / "tone.wav", "--semitones", "up"], ["--semitones", "number"]),
    "K nan": (lambda h: [h / "tone.wav", "--semitones", "nan"], ["--semitones", "finite"]),
    "K too far": (lambda h: [h / "tone.wav", "--semitones", "-100"], ["--semitones", "24"]),
}


@pytest.mark.parametrize("case", list(_BAD))
def test_cli_bad_input(wavs: Path, cli: Callable[..., Any], case: str) -> None:
    make, words = _BAD[case]
    proc = cli(wavs, "transpose", *make(wavs), "--out", wavs / "o.wav", "--model", "notes")
    _one_line_error(proc, *words)
    assert not (wavs / "o.wav").exists()


@pytest.mark.parametrize(
    ("out", "words"),
    [("a folder.wav", ["a folder.wav", "folder"]), ("o.flac", ["o.flac", ".wav"])],
)
def test_cli_bad_output(wavs: Path, cli: Callable[..., Any], out: str, words: list[str]) -> None:
    args = ["transpose", wavs / "tone.wav", "--semitones", "3", "--out", wavs / out]
    _one_line_error(cli(wavs, *args, "--model", "notes"), *words)


def test_cli_unwritable_output(wavs: Path, cli: Callable[..., Any], tmp_path: Path) -> None:
    import os

    folder = Path("/proc") if os.geteuid() == 0 else tmp_path / "read-only"
    if folder != Path("/proc"):
        folder.mkdir()
        folder.chmod(0o500)
    args = ["transpose", wavs / "tone.wav", "--semitones", "3", "--out", folder / "o.wav"]
    _one_line_error(cli(wavs, *args, "--model", "notes"), "o.wav")


def test_cli_writes_the_transposed_note(wavs: Path, cli: Callable[..., Any], model: object) -> None:
    out = wavs / "up a fifth.wav"
    args = ["transpose", wavs / "tone.wav", "--semitones", "-7", "--out", out, "--model", "notes"]
    proc = cli(wavs, *args)
    assert proc.returncode == 0, proc.stderr
    y, fs = sf.read(out)
    assert fs == FS and len(y) == 7 * 1024 + 1 and np.abs(y).max() > 0.5
