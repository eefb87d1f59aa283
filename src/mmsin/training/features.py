"""Cached S_J features: everything fixed that training needs, computed once per (data, config).

The encoder Phi = L S_J is fixed (paper section 2), so everything that depends only on the data
and the configuration is computed once and cached (:func:`prepare_features`): normalised S_J
frames cut into training segments, their aligned waveform targets, the loss scalogram S_K of
those targets and its statistics, and the VAR fit of the whitening L. The training loop then
only runs the generator G and the loss scalogram on G's output.

The cache file is ``<cache_dir>/features-v<CACHE_VERSION>-<key>.pt``; the key hashes
:data:`CACHE_VERSION`, the data's :func:`data_fingerprint` and the parts of the config that
change the features. Files of an older cache version are never read: one warning line names
them for deletion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmsin import paths
from mmsin.assembly import build_generator, build_scalogram, build_scattering, context_frames
from mmsin.checkpoint import atomic_save
from mmsin.config import Config
from mmsin.training.frames import scattering_frames
from mmsin.whitening.sequence import KINDS, REST_LEVEL, SEQUENCE_VERSION

__all__ = [
    "CACHE_VERSION",
    "Features",
    "cache_key",
    "data_fingerprint",
    "default_cache_dir",
    "fit_whitening",
    "prepare_features",
]

log = logging.getLogger(__name__)

#: Version of the cache layout; bump when the cached content changes meaning.
#: 3: S_J's `paper` order 1 is linear (eq. 8) and S_J is accurate at J = 10 (oversampling).
#: 4: each segment records its context frames before the clip's start (train_pad, test_pad).
CACHE_VERSION = 4


@dataclass
class Features:
    """Everything fixed that training needs, computed once per (data, config).

    Shapes: C = k_J S_J channels, W = context + segment + ahead frames, N segments, hop 2^J,
    C_K S_K channels, T_K = segment_frames * 2^J / 2^K loss frames.

    Attributes
    ----------
    norm : Tensor (C,)
        mean |S_J| per channel over the training clips (the paper's equal average magnitude).
    train_frames, test_frames : Tensor (N, C, W)
        Normalised S_J frames: ``context`` before the segment (zeros before a clip's start:
        S_J of silence), the segment, ``ahead`` after it (zeros past the clip's end).
    train_wave, test_wave : Tensor (N, segment_frames * 2^J)
        Waveform targets aligned with the last ``segment_frames`` output blocks of G.
    train_sk, test_sk : Tensor (N, C_K, T_K)
        S_K of the targets (eq. 5's reference side).
    train_pad, test_pad : Tensor (N,) int64
        Context frames of each example that lie before its clip's start (the zero frames); G
        starts from a zero state there (:func:`mmsin.training.objective.zero_state`), as when
        decoding a clip.
    sk_mean_abs, sk_mean, sk_rms : Tensor (C_K,)
        Training-set S_K statistics: L_inv normaliser, L_MM target mean and RMS normaliser.
    wave_power : Tensor ()
        mean x^2 over the training targets (the MSE baseline's normaliser).
    var_state : dict
        ``state_dict`` of the VAR(M) fitted on the normalised training frames.
    """

    norm: Tensor
    train_frames: Tensor
    train_wave: Tensor
    train_sk: Tensor
    test_frames: Tensor
    test_wave: Tensor
    test_sk: Tensor
    sk_mean_abs: Tensor
    sk_mean: Tensor
    sk_rms: Tensor
    wave_power: Tensor
    var_state: dict[str, Tensor]
    context: int
    segment_frames: int
    ahead: int
    hop: int
    fingerprint: str
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    train_pad: Tensor | None = None
    test_pad: Tensor | None = None

    @property
    def width(self) -> int:
        """Frames per example fed to G: context + segment + ahead."""
        return self.context + self.segment_frames + self.ahead

    def crop(self, out: Tensor) -> Tensor:
        """The samples of G's output (B, width * hop) that stand for the segment."""
        return out[:, self.context * self.hop : (self.context + self.segment_frames) * self.hop]

    def to_payload(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> Features:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def data_fingerprint(*clip_sets: Any) -> str:
    """SHA-256 over the audio samples, sample rates, names and splits of ``Clips`` objects."""
    h = hashlib.sha256()
    for clips in clip_sets:
        audio = np.ascontiguousarray(np.asarray(clips.audio, dtype=np.float32))
        h.update(str((audio.shape, int(clips.fs), str(getattr(clips, "split", "")))).encode())
        h.update(audio.tobytes())
        names = [str(m.get("name", "")) for m in getattr(clips, "meta", [])]
        h.update(json.dumps(names).encode())
    return h.hexdigest()[:20]


def cache_key(cfg: Config, fingerprint: str, context: tuple[int, int]) -> str:
    relevant = {
        "version": CACHE_VERSION,
        "data": fingerprint,
        "scattering": cfg.to_dict()["scattering"],
        "whitening": {"M": cfg.whitening.M, "ridge": cfg.whitening.ridge},
        "loss": {"K": cfg.loss.K, "Q": cfg.loss.Q, "wavelet": cfg.loss.wavelet},
        "segment_frames": cfg.train.segment_frames,
        "context": list(context),
    }
    if cfg.whitening.bank_clips:  # only then: older caches keep their keys
        relevant["bank"] = [cfg.whitening.bank_clips, cfg.train.seed]
    if cfg.whitening.past != "silence":
        relevant["past"] = cfg.whitening.past
    if cfg.whitening.bank_clips:  # the VAR then holds the codes' order too
        relevant["sequence"] = [SEQUENCE_VERSION, KINDS, REST_LEVEL]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:20]


def fit_whitening(cfg: Config, S_train: Tensor, S_test: Tensor) -> tuple[Any, dict[str, Any]]:
    """The whitening L of ``cfg.whitening`` on normalised S_J frames (B, C, T): the causal
    VAR(M) (section 4) and its codes' laws (:func:`fit_code_laws`); and how white Z = L S_J is
    on the training and test frames (whiteness.json)."""
    from mmsin.whitening import fit_var, past_rows, whiteness_report

    wcfg = cfg.whitening
    var = fit_var(S_train, M=wcfg.M, ridge=wcfg.ridge, past=wcfg.past)
    fit_code_laws(cfg, var, S_train)
    # How white Z = L S_J is (section 4's claim), on the frames L was fitted on and on held-out
    # ones.
    skip = past_rows(wcfg.past, wcfg.M)
    whiteness = {
        "train": whiteness_report(var, S_train, skip=skip),
        "test": whiteness_report(var, S_test, skip=skip) if len(S_test) else {},
    }
    return var, whiteness


def fit_code_laws(cfg: Config, var: Any, S_train: Tensor) -> None:
    """Fit, in ``var``'s buffers, the laws its codes can be drawn from, on the training codes
    Z = L S_J: their frame-power law (``"mixture"``) and, with ``whitening.bank_clips``, their
    bank (``"bank"``) and order (``"sequence"``). L itself is not changed."""
    from mmsin.whitening import bank_clip_ids, fit_code_bank, fit_code_sequence, fit_frame_scales

    wcfg = cfg.whitening
    Z_train = torch.cat(
        [var.whiten(S_train[i : i + 64].to(var.A)).float() for i in range(0, len(S_train), 64)]
    )
    var.frame_scales = fit_frame_scales(Z_train)
    if wcfg.bank_clips:
        bank, scale, offsets = fit_code_bank(
            Z_train, wcfg.bank_clips, skip=wcfg.M, seed=cfg.train.seed
        )
        var.code_bank, var.code_bank_scale, var.code_bank_clips = bank, scale, offsets
        lengths = [Z_train.shape[-1]] * len(Z_train)
        ids = bank_clip_ids(lengths, wcfg.bank_clips, skip=wcfg.M, seed=cfg.train.seed)
        seq = fit_code_sequence(
            list(Z_train.unbind(0)), list(S_train.unbind(0)), ids, skip=wcfg.M, seed=cfg.train.seed
        )
        var.code_kinds, var.code_nearest = seq.kinds, seq.nearest
        var.code_transitions, var.code_kind_shares = seq.transitions, seq.shares


def default_cache_dir() -> Path:
    """Where cached features live: ``$MMSIN_HOME/data/.cache``."""
    return paths.data_dir() / ".cache"


@torch.no_grad()
def _transform_batches(module: nn.Module, x: Tensor, batch: int = 16) -> Tensor:
    return torch.cat([module(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def _segment_starts(frames: int, seg: int) -> list[int]:
    """Non-overlapping runs of ``seg`` frames, plus one right-aligned run for the remainder
    (as the reference code cuts its Beethoven extracts)."""
    if frames < seg:
        return []
    starts = list(range(0, frames - seg + 1, seg))
    if frames % seg:
        starts.append(frames - seg)
    return starts


def _segments(
    S: Tensor, x: Tensor, J: int, seg: int, context: tuple[int, int]
) -> tuple[Tensor, Tensor, Tensor]:
    """Cut normalised S_J frames (B, C, F) and signals (B, time) into training segments; the
    third tensor is each segment's number of context frames before its clip's start."""
    from mmsin.generators.conv import aligned_target

    _, C, F = S.shape
    hop = 2**J
    target = torch.as_tensor(aligned_target(x, J, F), dtype=torch.float32)  # (B, F * hop)
    before, after = context
    padded = torch.nn.functional.pad(S, (before, after))
    frames_out, wave_out, pad_out = [], [], []
    for n0 in _segment_starts(F, seg):
        frames_out.append(padded[:, :, n0 : n0 + before + seg + after])
        wave_out.append(target[:, n0 * hop : (n0 + seg) * hop])
        pad_out.append(torch.full((S.shape[0],), max(0, before - n0), dtype=torch.int64))
    if not frames_out:
        empty = torch.zeros(0, dtype=torch.int64)
        return S.new_zeros(0, C, before + seg + after), S.new_zeros(0, seg * hop), empty
    return torch.cat(frames_out), torch.cat(wave_out), torch.cat(pad_out)


def prepare_features(
    cfg: Config,
    train_clips: Any,
    test_clips: Any,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    context: tuple[int, int] | None = None,
    progress: bool = False,
) -> Features:
    """Compute (or load from the cache) the fixed features of a data set for ``cfg``.

    The cache file is ``cache_dir/<key>.pt``, key = hash of (data fingerprint, the parts of
    ``cfg`` that change the features); a second call with the same data and config returns the
    cached tensors without running any transform.

    Parameters
    ----------
    cfg : Config
    train_clips, test_clips : mmsin.data.Clips
        ``audio`` (n, time) float32 at ``cfg.scattering.fs``.
    cache_dir : path, optional
        Default :func:`default_cache_dir`.
    context : (int, int), optional
        Frames before and after each segment (default: :func:`context_frames`).
    """
    for clips in (train_clips, test_clips):
        if int(clips.fs) != cfg.scattering.fs:
            raise ValueError(
                f"data {clips.source!r} ({clips.split}) is at {clips.fs} Hz but "
                f"scattering.fs={cfg.scattering.fs}"
            )
    if context is None:
        C = int(build_scattering(cfg).num_channels)
        context = context_frames(cfg, build_generator(cfg, C))
    fingerprint = data_fingerprint(train_clips, test_clips)
    key = cache_key(cfg, fingerprint, context)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    prefix = f"features-v{CACHE_VERSION}-"
    path = folder / f"{prefix}{key}.pt"
    stale = sorted(p.name for p in folder.glob("features-*.pt") if not p.name.startswith(prefix))
    if stale:  # an older layout (or older S_J): never read, say what to do about it
        log.warning(
            "features: ignoring %d cache file(s) from an older mmsin in %s (S_J changed); "
            "delete them to free the space: rm %s",
            len(stale),
            folder,
            " ".join(str(folder / n) for n in stale),
        )
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            log.info("features: loaded cache %s", path)
            return Features.from_payload(payload)
        except Exception as exc:  # a damaged cache is recomputed, never trusted
            log.warning("features: ignoring unreadable cache %s (%s)", path, exc)
    t0 = time.perf_counter()
    feats = _compute_features(
        cfg, train_clips, test_clips, context, fingerprint, key, progress, folder
    )
    feats.extra["seconds"] = time.perf_counter() - t0
    atomic_save(path, feats.to_payload())
    log.info("features: computed in %.1f s, cached at %s", feats.extra["seconds"], path)
    return feats


def _compute_features(
    cfg: Config,
    train_clips: Any,
    test_clips: Any,
    context: tuple[int, int],
    fingerprint: str,
    key: str,
    progress: bool,
    folder: Path,
) -> Features:
    J, seg = cfg.scattering.J, cfg.train.segment_frames
    scalogram = build_scalogram(cfg).eval()
    x_train = torch.as_tensor(np.asarray(train_clips.audio, dtype=np.float32))
    x_test = torch.as_tensor(np.asarray(test_clips.audio, dtype=np.float32))
    if x_train.ndim != 2 or x_train.shape[0] == 0:
        raise ValueError(f"data {train_clips.source!r}: no training clips")
    if progress:
        log.warning("computing S_J of %d + %d clips (once; cached)", len(x_train), len(x_test))
    # S_J in chunks, on disk and resumable (mmsin.training.frames): a stopped run keeps them.
    S_train = torch.from_numpy(
        np.array(
            scattering_frames(
                cfg,
                train_clips.audio,
                data_fingerprint(train_clips),
                folder,
                progress=progress,
                label="train",
            )
        )
    )
    S_test = (
        torch.from_numpy(
            np.array(
                scattering_frames(
                    cfg,
                    test_clips.audio,
                    data_fingerprint(test_clips),
                    folder,
                    progress=progress,
                    label="test",
                )
            )
        )
        if len(x_test)
        else S_train.new_zeros(0, S_train.shape[1], S_train.shape[2])
    )
    # Per-channel normalisation: mean |S_J| over the training set (section 3.7 of the notes;
    # the paper's "responses of average equal magnitude in each band"). Guard dead channels.
    norm = S_train.abs().mean(dim=(0, 2))
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    S_train = S_train / norm[:, None]
    S_test = S_test / norm[:, None]
    var, whiteness = fit_whitening(cfg, S_train, S_test)
    var_state = {k: v.detach().cpu().clone() for k, v in var.state_dict().items()}
    tr_frames, tr_wave, tr_pad = _segments(S_train, x_train, J, seg, context)
    te_frames, te_wave, te_pad = _segments(S_test, x_test, J, seg, context)
    if tr_frames.shape[0] == 0:
        raise ValueError(
            f"data {train_clips.source!r}: clips of {x_train.shape[1]} samples give "
            f"{S_train.shape[2]} frames, fewer than train.segment_frames={seg}"
        )
    tr_sk = _transform_batches(scalogram, tr_wave).float()
    te_sk = (
        _transform_batches(scalogram, te_wave).float()
        if len(te_wave)
        else tr_sk.new_zeros(0, *tr_sk.shape[1:])
    )
    # S_K statistics over the training targets: eq. (5)'s per-channel l1 normaliser and
    # eq. (6)'s target mean and RMS normaliser (reference-code notes sections 5 and 6.1).
    eps = 1e-8
    sk_mean_abs = tr_sk.abs().mean(dim=(0, 2)).clamp_min(eps)
    sk_mean = tr_sk.mean(dim=(0, 2))
    sk_rms = tr_sk.pow(2).mean(dim=(0, 2)).sqrt().clamp_min(eps)
    wave_power = tr_wave.pow(2).mean().clamp_min(eps)
    return Features(
        norm=norm,
        train_frames=tr_frames.contiguous(),
        train_wave=tr_wave.contiguous(),
        train_sk=tr_sk.contiguous(),
        test_frames=te_frames.contiguous(),
        test_wave=te_wave.contiguous(),
        test_sk=te_sk.contiguous(),
        sk_mean_abs=sk_mean_abs,
        sk_mean=sk_mean,
        sk_rms=sk_rms,
        wave_power=wave_power,
        var_state=var_state,
        context=context[0],
        segment_frames=seg,
        ahead=context[1],
        hop=2**J,
        fingerprint=fingerprint,
        key=key,
        extra={"whiteness": whiteness},
        train_pad=tr_pad,
        test_pad=te_pad,
    )
