"""MMSIN: encode/decode/generate against the parts it is made of, loading rules, eval mode."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmsin.losses")
from mmsin import assembly
from mmsin.model import MMSIN
from test_training import HOP, clips, run, tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("model")
    res = run(tiny(2), tmp / "runs" / "tiny", tmp / "cache")
    assert res.checkpoint is not None
    return res.checkpoint


def test_encode_decode_are_the_papers_operators(trained: Path) -> None:
    m = MMSIN.load(trained)
    x = torch.as_tensor(clips()[1].audio)  # (2, 320)
    S = assembly.build_scattering(m.config)(x)
    frames = (x.shape[1] - 1) // HOP + 1
    assert S.shape == (2, m.num_channels, frames)
    # Z = L(S_J x / norm), computed here from the parts.
    Z = m.encode(x)
    torch.testing.assert_close(Z, m.var.whiten(S / m.norm[:, None]))
    assert Z.shape == (2, m.num_channels, frames) and Z.dtype == torch.float32
    # decode(encode(x)) = G(S_J x / norm) since L^-1 L = I (ReLU is a no-op on S_J >= 0):
    # exactly with a float64 embedding, to float32 rounding (amplified by L^-1) otherwise.
    g = m.generator(S / m.norm[:, None])[:, HOP - 1 :]
    Z64 = m.var.whiten((S / m.norm[:, None]).double())
    torch.testing.assert_close(m.decode(Z64), g, atol=1e-4, rtol=1e-4)
    x_hat = m.decode(Z)
    assert x_hat.shape == (2, (frames - 1) * HOP + 1)
    assert (x_hat - g).abs().max() <= 1e-2 * g.abs().max()
    torch.testing.assert_close(m.decode_scattering(S), g, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(m(x), g, atol=1e-4, rtol=1e-4)
    # Batched equals one at a time (BatchNorm in eval mode).
    torch.testing.assert_close(m.decode(Z[1:]), x_hat[1:], atol=1e-5, rtol=1e-5)


def test_relu_only_on_the_non_negative_channels(trained: Path) -> None:
    """Eq. (1)'s ReLU on decoding and sampling acts on S_J's non-negative channels only
    (meta()["nonnegative"]: phi_J of a modulus); order 0 and the paper variant's linear
    order 1 are signed and stay signed in sampled embeddings."""
    m = MMSIN.load(trained)
    meta = m.scattering.meta()
    assert m.config.scattering.variant == "paper"
    np.testing.assert_array_equal(m.modulus_channels.numpy(), meta["nonnegative"])
    S = m.sample_scattering(64, batch=4, seed=0)
    nonneg = torch.as_tensor(meta["nonnegative"])
    assert (S[:, nonneg] >= 0).all()
    signed = torch.as_tensor(meta["order"] == 1) & ~nonneg
    cfg = m.config.scattering
    assert cfg.P == cfg.Q and signed.sum() == cfg.Q * (2 * cfg.J - 3)
    assert float((S[:, signed] < 0).double().mean()) > 0.05
    assert float((S[:, 0] < 0).double().mean()) > 0.05  # order 0, x * phi_J


def test_model_stays_in_eval_mode(trained: Path) -> None:
    m = MMSIN.load(trained)
    m.train()
    assert not any(mod.training for mod in m.modules())


def test_generate_shape_seed_and_finiteness(trained: Path) -> None:
    m = MMSIN.load(trained)
    a = m.generate(6, batch=3, seed=1)
    assert a.shape == (3, 6 * HOP) and torch.isfinite(a).all()
    torch.testing.assert_close(m.generate(6, batch=3, seed=1), a)
    assert not torch.equal(m.generate(6, batch=3, seed=2), a)
    assert not torch.equal(a[0], a[1])  # independent noise per item
    with pytest.raises(ValueError, match="frames >= 1"):
        m.generate(0)


def test_interpolate_endpoints_are_the_decodings(trained: Path) -> None:
    m = MMSIN.load(trained)
    Z = m.encode(torch.as_tensor(clips()[1].audio))
    out = m.interpolate(Z[:1], Z[1:], [0.0, 0.5, 1.0])
    torch.testing.assert_close(out[0], m.decode(Z[:1])[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out[2], m.decode(Z[1:])[0], atol=1e-4, rtol=1e-4)
    mid = m.decode(0.5 * (Z[:1] + Z[1:]))[0]
    torch.testing.assert_close(out[1], mid, atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip(trained: Path, tmp_path: Path) -> None:
    m = MMSIN.load(trained)
    path = m.save(tmp_path / "m.pt")
    m2 = MMSIN.load(path)
    assert m2.config == m.config and m2.fs == 4096
    x = np.asarray(clips()[1].audio[0])
    assert torch.equal(m2.decode(m2.encode(x)), m.decode(m.encode(x)))
    assert torch.equal(m2.generate(5, seed=3), m.generate(5, seed=3))


def test_default_load_finds_the_newest_run_else_says_how_to_train(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmsin.model as model_mod

    monkeypatch.setattr(model_mod, "pretrained_dir", lambda: tmp_path / "none")
    monkeypatch.setenv("MMSIN_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="mmsin train"):
        MMSIN.load()
    monkeypatch.setenv("MMSIN_HOME", str(trained.parents[2]))
    assert MMSIN.load().source == trained
    assert MMSIN.load(trained.parent).source == trained  # a run folder works too
    with pytest.raises(FileNotFoundError, match="no such model"):
        MMSIN.load(tmp_path / "missing.pt")


def test_bad_inputs_are_clear(trained: Path) -> None:
    m = MMSIN.load(trained)
    with pytest.raises(ValueError, match="shape"):
        m.encode(torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=f"\\(batch, {m.num_channels}, frames\\)"):
        m.decode(torch.zeros(1, m.num_channels + 1, 3))


_LOAD_AND_GENERATE = """
import json, sys
from mmsin import MMSIN
x = MMSIN.load("notes").generate(3, seed=0)
assert x.shape == (1, 3 * 2 ** 10), x.shape
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.slow
def test_loading_a_model_to_generate_imports_no_training_code() -> None:
    """``MMSIN.load(...).generate(...)`` builds its parts through :mod:`mmsin.assembly`: the
    training loop, its feature cache and DDP set-up, TensorBoard and the progress bar stay out."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_GENERATE],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert "mmsin.assembly" in loaded  # the door it should use (and the probe works)
    unwanted = [
        m
        for m in loaded
        if m.startswith(("mmsin.training", "mmsin.experiments", "mmsin.losses", "tensorboard"))
        or m in ("torch.utils.tensorboard", "tqdm.auto")
    ]
    assert not unwanted, f"loading a model imported training code: {sorted(unwanted)}"


def test_packing_in_float16_keeps_large_batchnorm_statistics(trained: Path, tmp_path: Path) -> None:
    """A BatchNorm running variance above float16's range (3.6e6 in the full-piano model's
    first trunk layer) is stored as it is: cast, it became inf and silenced its channels."""
    m = MMSIN.load(trained)
    bn = next(mod for mod in m.generator.modules() if isinstance(mod, torch.nn.BatchNorm1d))
    bn.running_var.mul_(1e6)
    packed = MMSIN.load(m.save(tmp_path / "half.pt", half=True))
    back = next(mod for mod in packed.generator.modules() if isinstance(mod, torch.nn.BatchNorm1d))
    torch.testing.assert_close(back.running_var, bn.running_var, rtol=1e-6, atol=0)
    x = torch.randn(1, 4 * m.hop)
    torch.testing.assert_close(packed(x), m(x), rtol=2e-2, atol=2e-2 * float(m(x).abs().max()))


def test_a_packed_model_whitens_and_unwhitens_exactly() -> None:
    """A shipped (float16-packed) model: its VAR's covariance roots are inverses again after
    loading, so L^-1 L is the identity (the roots are re-inverted at load)."""
    from mmsin.model import MMSIN

    var = MMSIN.load("piano-mse").var
    R, Ri = var.sqrt_cov, var.inv_sqrt_cov
    eye = torch.eye(R.shape[0], dtype=R.dtype)
    assert float(torch.linalg.matrix_norm(R @ Ri - eye, ord=2)) < 1e-8
    torch.manual_seed(0)
    S = torch.rand(1, R.shape[0], 12, dtype=torch.float64)
    back = var.unwhiten(var.whiten(S))
    np.testing.assert_allclose(back.numpy(), S.numpy(), atol=1e-8)


def test_the_shipped_piano_draws_its_codes_in_order_with_rests() -> None:
    """The shipped `piano` generates with codes="sequence" (what its L_MM was last trained on):
    its S_J samples rest (zero frames) about as often as the kinds' chain rests, and its other
    frames are sound; with the bank's codes frame by frame it never rests."""
    m = MMSIN.load("piano")
    assert m.config.whitening.codes == "sequence"
    rest_share = float(m.var.code_kind_shares[0])
    assert 0.01 < rest_share < 0.1
    S = m.sample_scattering(256, batch=8, seed=0)
    silent = (S.abs().amax(1) == 0).double().mean().item()
    assert abs(silent - rest_share) < 0.015
    assert float(S.abs().amax(1).median()) > 0.1
    bank = m.sample_scattering(256, batch=8, seed=0, codes="bank")
    assert float((bank.abs().amax(1) == 0).double().mean()) == 0.0


def test_the_shipped_piano_generates_with_its_gain_and_reconstructs_without() -> None:
    """The shipped piano refines generated frames one gain per frame and gives their oscillators
    its fitted generation gain (not ones; within +-14 dB), while a reconstruction is the same
    with the gain or without it, and refined per partial as trained."""
    m = MMSIN.load("piano")
    gen = m.config.generator
    assert (gen.amp_refine, gen.generation_amp_refine) == ("bin", "frame")
    gain = m.generator.amp.generation_gain.clone()
    db = 20 * torch.log10(gain)
    assert 1.0 < float(db.abs().max()) <= 14.0
    t = torch.arange(4 * m.fs) / m.fs
    x = (0.3 * torch.sin(2 * math.pi * 220.0 * t) * torch.exp(-t))[None]
    S = m.encode_scattering(x)
    y = m.generate(4, seed=0)
    with_gain = m.decode_scattering(S)
    m.generator.amp.generation_gain.fill_(1.0)
    torch.testing.assert_close(m.decode_scattering(S), with_gain, rtol=0, atol=0)
    assert float((m.generate(4, seed=0) - y).abs().max()) > 1e-3 * float(y.abs().max())


def test_the_shipped_notes_keeps_the_level_difference_of_partials_decaying_apart() -> None:
    """The shipped `notes` runs with generator.lag_correction (and one refinement per frame, so
    its partials' relative levels are the lag-corrected reading): two partials decaying at 1
    and 4 per second come back with their true level difference at the frames' times within
    0.3 dB, where the reading without the correction is 2 dB or more off."""
    m = MMSIN.load("notes")
    assert m.config.generator.lag_correction and m.config.generator.amp_refine == "frame"
    t = torch.arange(4 * m.fs) / m.fs
    x = 0.3 * torch.exp(-t) * torch.sin(2 * math.pi * 300.0 * t)
    x = (x + 0.2 * torch.exp(-4 * t) * torch.sin(2 * math.pi * 900.0 * t))[None]
    frames = m._frames(m.encode_scattering(x), "S") / m.norm[:, None]
    n = torch.arange(4, 8)  # the faster partial above the silence level
    truth = 20 * math.log10(2 / 3) - 20 * 3 * n * m.hop / m.fs / math.log(10)
    hz = m.generator.bin_hz
    j1, j2 = int((hz - 300.0).abs().argmin()), int((hz - 900.0).abs().argmin())
    err = {}
    for name in ("led", "read"):
        if name == "read":
            m.generator.decay_table = None
        with torch.no_grad():
            amp = m.generator.controls(frames.float()).amp[0]
        a1 = amp[j1 - 1 : j1 + 2][:, n].amax(0)
        a2 = amp[j2 - 1 : j2 + 2][:, n].amax(0)
        err[name] = 20 * torch.log10(a2 / a1) - truth
    assert bool((err["led"].abs() < 0.3).all()), err
    assert bool((err["read"] > 2.0).all()), err


@pytest.mark.slow
def test_the_shipped_piano_stays_bounded_with_blocks_of_real_codes() -> None:
    """codes="blocks" on the shipped piano (real codes in their own order after a rest): 225
    samples of 232 frames stay as bounded as real S_J (largest |S| 62 over 900 samples), and
    rest about as often as the training frames. When a rest did not clear the recursion's
    memory, one of these samples grew to 1e15."""
    m = MMSIN.load("piano")
    S = m.sample_scattering(32, batch=225, seed=0, codes="blocks", warmup=200)
    assert float(S.abs().amax()) < 100.0
    silent = float((S.abs().amax(1) == 0).double().mean())
    assert 0.005 < silent < 0.06


def test_the_shipped_notes_generates_off_the_grid_from_its_code_bank() -> None:
    """Music from noise by the default model keeps at most 5 % of its energy on the 64 Hz grid
    (mmsin.evaluation.grid): with its bank of training codes, what `generate` draws; the paper's
    Gaussian codes give gliding partials near the chance level (about 6 %)."""
    from mmsin.evaluation.grid import grid_share_or_nan

    m = MMSIN.load("notes")
    assert m.config.whitening.codes == "bank"
    y = m.generate(32, batch=8, seed=0).numpy()
    assert float(np.median(grid_share_or_nan(y, m.fs))) < 0.035
    gauss = m.generate(32, batch=8, seed=0, codes="gaussian").numpy()
    assert float(np.median(grid_share_or_nan(gauss, m.fs))) > 0.04
