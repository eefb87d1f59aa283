"""MMSIN: a trained Moment Matching-Scattering Inverse Network, ready to use.

One object holds the fixed encoder Phi = L S_J (scattering, per-channel normalisation, VAR
whitening) and the trained generator G (paper Fig. 1)::

    encode(x)          Z = L (S_J x / norm)              (batch, time) -> (batch, k_J, frames)
    decode(Z)          x~ = G(ReLU(L^-1 Z))              (batch, k_J, frames) -> (batch, time)
    generate(frames)   x~ = G(ReLU(L^-1 z)), z ~ N(0, I)  (paper eq. 1, section 4)
    transpose(Z, k)    Z' = L T_k L^-1 Z, k semitones        (batch, k_J, frames) -> same

``decode(encode(x))`` is the paper's reconstruction G(S_J x) (L^-1 L is the identity).

Timing. Frame n of S_J is at time n 2^J and sees x[0 .. n 2^J] (causal); G's output block n
stands for x[(n-1) 2^J + 1 .. n 2^J]. :meth:`decode` drops the first 2^J - 1 output samples
(they stand for times before 0) so that ``decode(encode(x))[t]`` estimates ``x[t]``: for
``F = (time - 1) // 2^J + 1`` frames it returns ``(F - 1) 2^J + 1`` samples.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmsin.checkpoint import (
    CHECKPOINT_NAME,
    git_revision,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from mmsin.config import Config
from mmsin.generators.base import envelope_temperature
from mmsin.scattering import nonnegative_channels
from mmsin.whitening import apply_relu

__all__ = ["MMSIN", "pretrained_dir", "pretrained_names"]


def pretrained_dir() -> Path:
    """Folder of the pretrained model shipped with the package (may be absent)."""
    return Path(__file__).resolve().parent / "pretrained"


class MMSIN(nn.Module):
    """Scattering encoder, normalisation, VAR whitening and trained generator, in eval mode.

    Build one with :meth:`load`; the constructor is for code that already has the parts.

    Parameters
    ----------
    config : Config
        The run's configuration (``fs``, J, ... come from it).
    scattering : nn.Module
        S_J, ``(batch, time) -> (batch, k_J, frames)``.
    norm : Tensor, shape (k_J,)
        Mean |S_J| per channel over the training set.
    var : mmsin.whitening.VAR
        The whitening L and its inverse, fitted on normalised frames.
    generator : nn.Module
        G, ``(batch, k_J, frames) -> (batch, frames * 2^J)``: one of the heads of
        :mod:`mmsin.generators`, all satisfying :class:`mmsin.generators.base.GeneratorHead`.
    """

    norm: Tensor
    modulus_channels: Tensor

    def __init__(
        self,
        config: Config,
        scattering: nn.Module,
        norm: Tensor,
        var: nn.Module,
        generator: nn.Module,
    ) -> None:
        super().__init__()
        self._config = config
        self.scattering = scattering
        self.register_buffer("norm", torch.as_tensor(norm, dtype=torch.float32).clone())
        self.var: Any = var
        self.generator: Any = generator
        # Channels that are phi_J of a modulus are non-negative and get eq. (1)'s ReLU on
        # decoding and sampling (S_J's meta()["nonnegative"]: order 2, and order 1 of the
        # `joint-real` and `time` variants); the signed ones (order 0, the low-pass of x, and
        # the `paper` variant's linear order 1, eq. 8) pass unchanged, so that
        # decode(encode(x)) is exactly G(S_J x).
        self.register_buffer("modulus_channels", nonnegative_channels(scattering, len(norm)))
        self.source: Path | None = None
        self._extra: dict[str, Any] = {}
        self.eval()

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> Config:
        """The configuration the model was trained with."""
        return self._config

    @property
    def fs(self) -> int:
        """Sample rate in Hz of the audio the model reads and writes."""
        return int(self._config.scattering.fs)

    @property
    def hop(self) -> int:
        """Samples per frame, 2^J."""
        return int(2**self._config.scattering.J)

    @property
    def num_channels(self) -> int:
        """k_J, the number of S_J (and Z) channels."""
        return int(self.norm.shape[0])

    def train(self, mode: bool = True) -> MMSIN:
        # A loaded model is for inference: BatchNorm must use its running statistics, so the
        # whole tree stays in eval mode whatever the caller asks (train with mmsin.training).
        return super().train(False)

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, *, map_location: str = "cpu"
    ) -> MMSIN:
        """Load a trained model.

        Parameters
        ----------
        path : path, optional
            A checkpoint file, or a run folder holding ``checkpoint.pt``. None: the newest
            checkpoint under ``mmsin.paths.runs_dir()``, else the pretrained model shipped in
            ``mmsin/pretrained/``.

        Raises
        ------
        FileNotFoundError
            Nothing to load (the message says how to train a model).
        ValueError
            The file is not an mmsin checkpoint.
        """
        file = _resolve_model_path(path)
        if file.name == CHECKPOINT_NAME:  # a run's checkpoint: fall back to the previous one
            payload, file = load_latest_checkpoint(file, map_location=map_location)
        else:
            payload = load_checkpoint(file, map_location=map_location)
        model = cls.from_payload(payload)
        model.source = file
        return model

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> MMSIN:
        """Build from a checkpoint dictionary (training checkpoint or :meth:`save` output)."""
        from mmsin.assembly import build_generator, build_scattering, restore_var

        missing = {"config", "generator", "var", "norm"} - set(payload)
        if missing:
            raise ValueError(f"checkpoint lacks {sorted(missing)}; not a trained mmsin model")
        config = Config.from_json(payload["config"])
        norm = payload["norm"]
        generator = build_generator(config, int(norm.shape[0]), norm)
        # A packed model (:meth:`save` with ``half=True``) stores its weights in float16; the
        # generator computes in float32 and the VAR recursion in float64 (it amplifies rounding).
        generator.load_state_dict(_floats(payload["generator"], torch.float32))
        var = restore_var(_floats(payload["var"], torch.float64))
        if payload["var"]["sqrt_cov"].dtype == torch.float16:
            # Rounding both roots to float16 breaks their being inverses (|| R R^-1 - I || =
            # 0.11 on the shipped models): L^-1 L would then not be the identity and
            # decode(encode(x)) would differ from G(S_J x) by ~9 % of its peak.
            with torch.no_grad():
                var.inv_sqrt_cov.copy_(torch.linalg.inv(var.sqrt_cov))
        model = cls(config, build_scattering(config), norm, var, generator)
        model._extra = {
            k: payload[k] for k in ("sk_stats", "data_fingerprint", "git_revision") if k in payload
        }
        return model

    def save(self, path: str | os.PathLike[str], *, half: bool = False) -> Path:
        """Write the model (no optimiser state) as a checkpoint :meth:`load` reads.

        ``half=True`` stores the generator and VAR weights in float16 (half the size; used for
        the pretrained models shipped in the package); :meth:`load` upcasts them.
        """
        extra = self._extra
        store = torch.float16 if half else None
        payload = {
            "config": self._config.to_json(),
            "generator": _floats(self.generator.state_dict(), store),
            "in_channels": self.num_channels,
            "var": _floats(self.var.state_dict(), store),
            "norm": self.norm.cpu(),
            "git_revision": extra.get("git_revision") or git_revision() or "",
            **{k: v for k, v in extra.items() if k != "git_revision"},
        }
        # A packed model is an export, not a training checkpoint: no ".prev" copy beside it.
        return save_checkpoint(path, payload, keep_previous=False)

    # ------------------------------------------------------------------ the transforms

    def _signal(self, x: Tensor | np.ndarray) -> Tensor:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2:
            raise ValueError(
                f"audio must have shape (time,) or (batch, time), got {tuple(t.shape)}"
            )
        return t.to(device=self.norm.device, dtype=torch.float32)

    def _frames(self, z: Tensor | np.ndarray, name: str) -> Tensor:
        t = torch.as_tensor(np.asarray(z) if not isinstance(z, Tensor) else z)
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[1] != self.num_channels:
            raise ValueError(
                f"{name} must have shape (batch, {self.num_channels}, frames), got {tuple(t.shape)}"
            )
        # float64 stays float64: L^-1 amplifies rounding of Z along weak innovation directions
        # (the floored eigenvalues of the redundant channels), so exact round trips need it.
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
        return t.to(device=self.norm.device, dtype=dtype)

    @torch.no_grad()
    def encode_scattering(self, x: Tensor | np.ndarray) -> Tensor:
        """S_J x, the fixed scattering (not normalised).

        Parameters
        ----------
        x : Tensor or ndarray, shape (batch, time) or (time,), float, at ``fs`` Hz.

        Returns
        -------
        Tensor, shape (batch, k_J, (time - 1) // 2^J + 1), float32, non-negative.
        """
        return self.scattering(self._signal(x)).float()  # type: ignore[no-any-return]

    @torch.no_grad()
    def encode(self, x: Tensor | np.ndarray) -> Tensor:
        """The embedding Z = L(S_J x / norm): innovations of the VAR, close to N(0, I).

        Parameters
        ----------
        x : Tensor or ndarray, shape (batch, time) or (time,), float, at ``fs`` Hz.

        Returns
        -------
        Z : Tensor, shape (batch, k_J, (time - 1) // 2^J + 1), float32.

        Notes
        -----
        Z is rounded to float32; L^-1 can amplify that rounding along weakly excited
        directions (redundant channels), so ``decode(encode(x))`` matches G(S_J x) to about
        1e-3 of the signal's peak. For an exact round trip whiten in float64:
        ``model.var.whiten(S.double())`` with S = ``encode_scattering(x) / model.norm[:, None]``.
        """
        S = self.encode_scattering(x) / self.norm[:, None]
        return self.var.whiten(S)  # type: ignore[no-any-return]

    @torch.no_grad()
    def decode_scattering(self, S: Tensor | np.ndarray, *, aligned: bool = True) -> Tensor:
        """G applied to S_J frames (as returned by :meth:`encode_scattering`).

        Parameters
        ----------
        S : Tensor or ndarray, shape (batch, k_J, F) or (k_J, F)
        aligned : bool
            Drop the first 2^J - 1 samples (times before 0) so output[t] estimates x[t]:
            (F - 1) 2^J + 1 samples; False returns G's raw F 2^J samples.

        Returns
        -------
        Tensor, shape (batch, samples), float32, at ``fs`` Hz.
        """
        frames = self._frames(S, "S") / self.norm[:, None]
        return self._generate_from(frames, aligned)

    @torch.no_grad()
    def decode(self, Z: Tensor | np.ndarray, *, aligned: bool = True) -> Tensor:
        """x~ = G(ReLU(L^-1 Z)); the paper's reconstruction when Z = :meth:`encode` (x).

        The ReLU (eq. 1) applies to the non-negative channels (:attr:`modulus_channels`, phi_J
        of a modulus) only: order 0 and the `paper` variant's order 1 are signed.

        Parameters
        ----------
        Z : Tensor or ndarray, shape (batch, k_J, F) or (k_J, F)
        aligned : bool
            See :meth:`decode_scattering`.

        Returns
        -------
        Tensor, shape (batch, (F - 1) 2^J + 1) (aligned) or (batch, F 2^J), float32.
        """
        S = self.var.unwhiten(self._frames(Z, "Z"))
        frames = apply_relu(S, self.modulus_channels)
        return self._generate_from(frames, aligned)

    @torch.no_grad()
    def generate(
        self,
        frames: int,
        batch: int = 1,
        seed: int | None = None,
        *,
        warmup: int | None = None,
        codes: str | None = None,
        envelope_temperature: float | None = None,
    ) -> Tensor:
        """New audio from Gaussian white noise: G(ReLU(L^-1 z)) (paper eq. 1, Fig. 5).

        Parameters
        ----------
        frames : int
            Length in frames; the output has ``frames * 2^J`` samples.
        batch : int
            Number of independent signals.
        seed : int, optional
            Seed of the noise (None: from torch's global generator).
        warmup : int, optional
            VAR frames discarded before the kept ones (default ``config.whitening.warmup``);
            the last :meth:`generation_lead` of them also go through G, whose output for them
            is dropped.
        codes : {"gaussian", "mixture", "bank", "sequence", "blocks"}, optional
            The law of z: the paper's N(0, I), a scale mixture with the training codes'
            per-frame power (heavy-tailed like real innovations), real training codes drawn
            independently frame by frame, or the same codes in an order drawn from a Markov
            chain of their kinds, with rests, or replayed in their own order a block of
            :data:`~mmsin.whitening.BLOCK_FRAMES` frames at a time (:meth:`VAR.sample`). Default:
            ``config.whitening.codes``.
        envelope_temperature : float, optional
            Softmax temperature of G's envelopes inside the frame (1: as trained, ``inf``:
            flat; :meth:`generation_envelopes`). Default:
            ``config.generator.generation_temperature``.

        Returns
        -------
        Tensor, shape (batch, frames * 2^J), float32, at ``fs`` Hz.
        """
        if frames < 1 or batch < 1:
            raise ValueError(f"need frames >= 1 and batch >= 1, got {frames}, {batch}")
        w = self._config.whitening.warmup if warmup is None else int(warmup)
        lead = self.generation_lead(w)
        S = self.sample_scattering(frames + lead, batch, seed, warmup=w - lead, codes=codes)
        with self.generation_envelopes(envelope_temperature):
            return self._generate_from(S, aligned=False)[:, lead * self.hop :]

    def generation_envelopes(
        self, temperature: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Within: G renders generated frames: its envelopes inside the frame at their softmax
        temperature (default ``config.generator.generation_temperature``; 1: as trained) and,
        for the free head, its generation gain and ``generator.generation_amp_refine``
        (:mod:`mmsin.training.generation_gain`).

        G learns those shapes on reconstructions, which need them; on frames drawn from the VAR
        the sharp shapes cost the moment-matching distance of eq. (6) (the shipped piano's 0.363
        as trained, 0.201 at temperature 8; docs/model.md, section 3), so generation may soften
        them. A generator without envelopes inside the frame takes temperature 1 only.
        """
        tau = self._config.generator.generation_temperature if temperature is None else temperature
        return envelope_temperature(self.generator, tau)

    def generation_lead(self, warmup: int) -> int:
        """Warm-up frames of the VAR that G also runs on before the kept ones when generating:
        its past span (at most ``warmup``). Without them G would start from silence while the
        frames are already mid-music, and play that jump as a loud broadband onset at the start
        of every sample (a burst of 5-20x the music's peak, measured). The kept frames are the
        same either way: they are the last ``frames`` of ``warmup + frames``."""
        from mmsin.assembly import context_frames

        return max(0, min(int(warmup), context_frames(self._config, self.generator)[0]))

    @torch.no_grad()
    def sample_scattering(
        self,
        frames: int,
        batch: int = 1,
        seed: int | None = None,
        *,
        warmup: int | None = None,
        codes: str | None = None,
    ) -> Tensor:
        """Synthetic normalised S_J frames ReLU(L^-1 z), shape (batch, k_J, frames); the ReLU
        on the non-negative channels only (:attr:`modulus_channels`); ``codes`` as in
        :meth:`generate`."""
        if frames < 1 or batch < 1:
            raise ValueError(f"need frames >= 1 and batch >= 1, got {frames}, {batch}")
        g = None
        if seed is not None:
            g = torch.Generator(device=self.var.A.device).manual_seed(int(seed))
        w = self._config.whitening.warmup if warmup is None else int(warmup)
        S = self.var.sample(
            batch,
            frames,
            warmup=w,
            generator=g,
            relu=self.modulus_channels,
            codes=codes or self._config.whitening.codes,
        )
        return S.float()  # type: ignore[no-any-return]

    @torch.no_grad()
    def interpolate(
        self, Z_a: Tensor, Z_b: Tensor, ratios: float | list[float], *, aligned: bool = True
    ) -> Tensor:
        """Decode points on the line between two embeddings: G(ReLU(L^-1((1-r) Z_a + r Z_b))).

        The paper's transformations by arithmetic in the embedding (section 5.4, Figs. 6-7):
        r = 0.5 gives G((Z_1 + Z_2) / 2).

        Parameters
        ----------
        Z_a, Z_b : Tensor, shape (k_J, F) or (1, k_J, F)
            Embeddings (from :meth:`encode`); cropped to the shorter one's frames.
        ratios : float or list of float
            r values (0: Z_a, 1: Z_b).

        Returns
        -------
        Tensor, shape (len(ratios), samples), float32.
        """
        a, b = self._frames(Z_a, "Z_a"), self._frames(Z_b, "Z_b")
        if a.shape[0] != 1 or b.shape[0] != 1:
            raise ValueError("interpolate takes one embedding on each side")
        frames = min(a.shape[2], b.shape[2])
        a, b = a[..., :frames], b[..., :frames]
        r = torch.as_tensor([ratios] if isinstance(ratios, float | int) else list(ratios))
        r = r.to(a)[:, None, None]
        return self.decode((1 - r) * a + r * b, aligned=aligned)

    @torch.no_grad()
    def transpose_scattering(self, S: Tensor | np.ndarray, semitones: float) -> Tensor:
        """S_J frames of the sound transposed by ``semitones``: T_k S (exact on order 1 of the
        ``paper`` and ``time`` variants away from the bank's edges, approximate on order 2;
        :mod:`mmsin.scattering.transposition`, docs/scattering.md).

        S : shape (batch, k_J, F) or (k_J, F), as :meth:`encode_scattering` returns it.
        Returns (batch, k_J, F), float32 (float64 stays float64).
        """
        from mmsin.scattering import TimeFrequencyScattering
        from mmsin.scattering.transposition import transpose_frames

        if not isinstance(self.scattering, TimeFrequencyScattering):
            raise ValueError(f"cannot transpose the frames of {type(self.scattering).__name__}")
        return transpose_frames(self._frames(S, "S"), self.scattering, semitones)

    @torch.no_grad()
    def transpose(self, Z: Tensor | np.ndarray, semitones: float) -> Tensor:
        """The embedding of the transposed sound: Z' = L D^-1 T_k D L^-1 Z, D = diag(norm).

        Computed as ``Z + L0(D^-1 (T_k - I) D L^-1 Z)``, L0 the linear part of the affine L
        (L minus its intercept term): the same when L and L^-1 are exact inverses, and
        ``T_0`` leaves Z unchanged even where they are not (a packed model's float16
        Sigma^{1/2} and Sigma^{-1/2}). Causal, frame by frame; float64 inside; returns Z's
        dtype, shape (batch, k_J, F). ``decode(transpose(encode(x), k))`` plays x
        transposed by k semitones.
        """
        z = self._frames(Z, "Z")
        norm = self.norm.double()[:, None]
        S = self.var.unwhiten(z.double()) * norm
        change = (self.transpose_scattering(S, semitones) - S) / norm
        step: Tensor = self.var.whiten(change) - self.var.whiten(torch.zeros_like(change))
        return (z.double() + step).to(z.dtype)

    def _generate_from(self, frames: Tensor, aligned: bool) -> Tensor:
        self.eval()
        out = self.generator(frames.float()).float()
        return out[:, self.hop - 1 :] if aligned else out

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction decode(encode(x)) (the paper's G(S_J x))."""
        return self.decode_scattering(self.encode_scattering(x))


def _floats(state: dict[str, Tensor], dtype: torch.dtype | None) -> dict[str, Tensor]:
    """``state`` with its floating-point tensors cast to ``dtype`` (None: unchanged). A tensor
    that the cast would overflow (a BatchNorm running variance above float16's 65504, as the
    piano model's first trunk layer has) keeps its own dtype: an inf there silences channels."""
    if dtype is None:
        return dict(state)
    out = {}
    for k, v in state.items():
        if v.is_floating_point():
            cast = v.to(dtype)
            v = cast if bool(torch.isfinite(cast).all() or not torch.isfinite(v).all()) else v
        out[k] = v
    return out


def pretrained_names() -> list[str]:
    """Names of the pretrained models shipped in the package (``--model NAME``)."""
    d = pretrained_dir()
    return sorted(f.stem for f in d.glob("*.pt")) if d.is_dir() else []


def _resolve_model_path(path: str | os.PathLike[str] | None) -> Path:
    if path is not None and str(path) in pretrained_names() and not Path(path).exists():
        return pretrained_dir() / f"{path}.pt"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            file = p / CHECKPOINT_NAME
            if not file.is_file():
                raise FileNotFoundError(f"{p}: no {CHECKPOINT_NAME} in this run folder")
            return file
        if not p.exists():
            names = ", ".join(pretrained_names()) or "none shipped"
            raise FileNotFoundError(
                f"{p}: no such model file or run folder (pretrained model names: {names})"
            )
        return p
    from mmsin import paths
    from mmsin.checkpoint import iter_checkpoints

    for file in iter_checkpoints():
        return file
    shipped = sorted(pretrained_dir().glob("*.pt")) if pretrained_dir().is_dir() else []
    if shipped:
        return shipped[0]
    raise FileNotFoundError(
        f"no trained model: nothing under {paths.runs_dir()} and no pretrained model shipped; "
        "train one with `mmsin train --preset small` or pass --model PATH"
    )
