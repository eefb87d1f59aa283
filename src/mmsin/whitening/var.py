"""The VAR(M) module: L (:meth:`VAR.whiten`), L^-1 (:meth:`VAR.unwhiten`) and synthetic S_J
frames from white codes (:meth:`VAR.sample`), with the laws codes can be drawn from.

See :mod:`mmsin.whitening` for the model and :mod:`mmsin.whitening.fit` for its fit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmsin.config import CODE_LAWS
from mmsin.whitening.sequence import draw_kinds, pick_codes

__all__ = ["BANK_HOLD", "BLOCK_FRAMES", "CODE_LAWS", "NOISE_FRAMES", "VAR", "apply_relu"]

log = logging.getLogger(__name__)

#: Frames of noise :meth:`VAR.sample` draws at a time: long samples (``mmsin generate
#: --seconds 7200``) stream in memory bounded by one such block, and a sample of n frames is the
#: start of every longer one with the same seed. 256 frames are 64 s at the paper's J = 10.
NOISE_FRAMES = 256

#: What a sample of the bank's laws carries from one block of frames to the next: the span of
#: BANK_HOLD frames it is in and the clips it holds there, and (``"sequence"``) the last kinds or
#: (``"blocks"``) the last block and where it starts.
Held = tuple[Any, ...]


def _as_examples(frames: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """Split ``frames`` into a list of (C, T_i) tensors and check that the shapes agree."""
    if isinstance(frames, Tensor):
        if frames.dim() != 3:
            raise ValueError(
                f"frames must have shape (batch, channels, time), got {tuple(frames.shape)}"
            )
        examples = list(frames.unbind(0))
    else:
        examples = [torch.as_tensor(f) for f in frames]
    if not examples:
        raise ValueError("frames is empty: need at least one example to fit the VAR")
    channels = examples[0].shape[0]
    for i, e in enumerate(examples):
        if e.dim() != 2 or e.shape[0] != channels:
            raise ValueError(
                f"example {i} has shape {tuple(e.shape)}; expected (channels={channels}, time)"
            )
        if not torch.isfinite(e).all():
            raise ValueError(f"example {i} contains NaN or infinite values")
    return examples


def _lagged_design(s: Tensor, M: int) -> Tensor:
    """Design matrix of one example: row n = [S[n-M], ..., S[n-1], 1] (zeros before n = 0).

    Parameters
    ----------
    s : Tensor, shape (T, C)
        Frames of one example, time first.
    M : int
        VAR order.

    Returns
    -------
    Tensor, shape (T, M * C + 1)
        Lags in ascending time order, so that the row is a contiguous window of the
        zero-padded sequence (the same layout ``VAR`` uses for its stacked weight).
    """
    T, C = s.shape
    padded = torch.cat([s.new_zeros(M, C), s[:-1]], dim=0) if T > 0 else s.new_zeros(M, C)
    # padded[k] = S[k - M]; row n needs padded[n .. n + M - 1] = S[n-M .. n-1].
    windows = padded.unfold(0, M, 1)[:T]  # (T, C, M)
    lags = windows.permute(0, 2, 1).reshape(T, M * C)
    return torch.cat([lags, s.new_ones(T, 1)], dim=1)


def _sym_sqrt_pair(cov: Tensor, eig_floor: float) -> tuple[Tensor, Tensor, int]:
    """Symmetric square root and inverse square root of a covariance, with an eigenvalue floor.

    Eigenvalues below ``eig_floor * max eigenvalue`` (including the exact zeros that duplicated
    channels produce) are raised to that floor, so both matrices stay finite and are exact
    inverses of each other.

    Returns
    -------
    sqrt_cov, inv_sqrt_cov : Tensor, shape (C, C)
    floored : int
        Number of eigenvalues that were raised to the floor.
    """
    cov = 0.5 * (cov + cov.T)
    evals, evecs = torch.linalg.eigh(cov)
    top = float(evals.max().clamp_min(0.0))
    if top <= 0.0:
        raise ValueError("the innovation covariance is zero: the frames are perfectly predictable")
    floor = eig_floor * top
    floored = int((evals < floor).sum())
    evals = evals.clamp_min(floor)
    root = evals.sqrt()
    sqrt_cov = (evecs * root) @ evecs.T
    inv_sqrt_cov = (evecs / root) @ evecs.T
    return sqrt_cov, inv_sqrt_cov, floored


def apply_relu(S: Tensor, relu: bool | Tensor) -> Tensor:
    """Eq. (1)'s ReLU on S (batch, C, frames): on every channel (True), none (False), or the
    channels of a bool mask of shape (C,) (S_J's non-negative channels; the others are signed)."""
    if isinstance(relu, Tensor):
        if relu.shape != (S.shape[1],) or relu.dtype != torch.bool:
            raise ValueError(f"relu mask must be a bool tensor of shape ({S.shape[1]},)")
        return torch.where(relu.to(S.device)[:, None], torch.relu(S), S)
    return torch.relu(S) if relu else S


class VAR(nn.Module):
    """Causal vector autoregression of order M: the whitening L and its inverse L^-1.

    Parameters
    ----------
    channels : int
        Number of S_J channels C.
    M : int
        Order (number of past frames), the paper's M = 4.
    dtype : torch.dtype
        Dtype of the buffers; ``fit_var`` returns float64, call ``.float()`` for speed.

    Attributes (buffers)
    --------------------
    A : Tensor, shape (M, C, C)
        ``A[m-1]`` multiplies the frame m steps in the past (column-vector convention).
    b : Tensor, shape (C,)
        Intercept.
    sqrt_cov, inv_sqrt_cov : Tensor, shape (C, C)
        Symmetric Sigma^{1/2} and Sigma^{-1/2} of the innovation covariance (floored).

    Notes
    -----
    Every method computes in the buffers' dtype and device. ``whiten`` and ``unwhiten`` return
    the dtype and device of their input. Frames before the first one are zeros unless
    ``initial`` frames are given.
    """

    A: Tensor
    b: Tensor
    sqrt_cov: Tensor
    inv_sqrt_cov: Tensor
    frame_scales: Tensor
    code_bank: Tensor
    code_bank_scale: Tensor
    code_bank_clips: Tensor
    code_kinds: Tensor
    code_nearest: Tensor
    code_transitions: Tensor
    code_kind_shares: Tensor

    def __init__(self, channels: int, M: int = 4, *, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if channels < 1 or M < 1:
            raise ValueError(f"VAR needs channels >= 1 and M >= 1, got channels={channels}, M={M}")
        self.channels = int(channels)
        self.M = int(M)
        self.register_buffer("A", torch.zeros(M, channels, channels, dtype=dtype))
        self.register_buffer("b", torch.zeros(channels, dtype=dtype))
        self.register_buffer("sqrt_cov", torch.eye(channels, dtype=dtype))
        self.register_buffer("inv_sqrt_cov", torch.eye(channels, dtype=dtype))
        # Quantiles of the per-frame code power (fit_frame_scales); empty: Gaussian codes only.
        self.register_buffer("frame_scales", torch.zeros(0, dtype=dtype))
        # Training codes kept for codes="bank" (fit_code_bank): int8 frames (N, C), one scale per
        # frame, and clip boundaries (n_clips + 1 offsets into the frames). Empty: no bank.
        self.register_buffer("code_bank", torch.zeros(0, channels, dtype=torch.int8))
        self.register_buffer("code_bank_scale", torch.zeros(0, dtype=torch.float32))
        self.register_buffer("code_bank_clips", torch.zeros(1, dtype=torch.int64))
        # The order of codes for codes="sequence" (mmsin.whitening.sequence): each bank frame's
        # kind, per clip and kind the nearest frame, the kinds' Markov chain and their shares.
        self.register_buffer("code_kinds", torch.zeros(0, dtype=torch.int16))
        self.register_buffer("code_nearest", torch.zeros(0, 0, dtype=torch.int64))
        self.register_buffer("code_transitions", torch.zeros(0, 0, dtype=torch.float64))
        self.register_buffer("code_kind_shares", torch.zeros(0, dtype=torch.float64))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # frame_scales, the code bank and its order have no fixed length, and VARs saved before
        # they existed have none.
        empty = {
            "frame_scales": self.A.new_zeros(0),
            "code_bank": self.code_bank.new_zeros(0, self.channels),
            "code_bank_scale": self.code_bank_scale.new_zeros(0),
            "code_bank_clips": self.code_bank_clips.new_zeros(1),
            "code_kinds": self.code_kinds.new_zeros(0),
            "code_nearest": self.code_nearest.new_zeros(0, 0),
            "code_transitions": self.code_transitions.new_zeros(0, 0),
            "code_kind_shares": self.code_kind_shares.new_zeros(0),
        }
        for name, blank in empty.items():
            key = prefix + name
            if key in state_dict:
                setattr(self, name, blank.new_zeros(state_dict[key].shape))
            else:
                state_dict[key] = blank
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> VAR:
        """Rebuild a VAR from ``state_dict()`` output (plain tensors, ``weights_only``-safe)."""
        missing = {"A", "b", "sqrt_cov", "inv_sqrt_cov"} - set(state)
        if missing:
            raise ValueError(f"VAR state is missing {sorted(missing)}")
        M, C, _ = state["A"].shape
        var = cls(C, M, dtype=state["A"].dtype)
        var.load_state_dict(dict(state))
        return var

    def extra_repr(self) -> str:
        return f"channels={self.channels}, M={self.M}"

    def _stacked_weight(self) -> Tensor:
        """(M*C, C) weight acting on the window [S[n-M], ..., S[n-1]] (ascending time).

        Built once per state of ``A`` and kept: the reshape of the flipped view is a copy
        (30 MB at C = 973, M = 4), and one copy per call, per example of a whiteness report or
        per block of a stream, fragmented glibc's heap until 12,361 examples were killed at
        24 GB."""
        A = self.A
        key = (A.data_ptr(), A._version, A.dtype, A.device)
        if getattr(self, "_stacked_key", None) != key:
            # A[m-1] S[n-m] as a row vector is S[n-m] @ A[m-1]^T; lag m at window slot M - m.
            w = A.flip(0).transpose(1, 2).reshape(self.M * self.channels, self.channels)
            self._stacked, self._stacked_key = w.contiguous(), key
        return self._stacked

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() != 3 or x.shape[1] != self.channels:
            raise ValueError(
                f"{name} must have shape (batch, {self.channels}, time), got {tuple(x.shape)}"
            )

    def _initial(self, initial: Tensor | None, batch: int) -> Tensor:
        """Past frames as (batch, M, C), zero-padded on the left when fewer than M are given."""
        ref = self.A
        if initial is None:
            return ref.new_zeros(batch, self.M, self.channels)
        self._check(initial, "initial")
        if initial.shape[0] != batch:
            raise ValueError(f"initial has batch {initial.shape[0]}, expected {batch}")
        init = initial.to(ref).transpose(1, 2)[:, -self.M :]
        pad = self.M - init.shape[1]
        if pad > 0:
            init = torch.cat([ref.new_zeros(batch, pad, self.channels), init], dim=1)
        return init

    def predict(self, S: Tensor, initial: Tensor | None = None) -> Tensor:
        """One-step prediction b + sum_m A[m-1] S[n-m] for every frame n.

        Parameters
        ----------
        S : Tensor, shape (B, C, T)
        initial : Tensor, shape (B, C, T0), optional
            Frames preceding S (the last M are used); zeros by default.

        Returns
        -------
        Tensor, shape (B, C, T), in the buffers' dtype.
        """
        self._check(S, "S")
        B, C, T = S.shape
        s = S.to(self.A).transpose(1, 2)  # (B, T, C)
        padded = torch.cat([self._initial(initial, B), s[:, :-1]], dim=1)  # (B, T + M - 1, C)
        windows = padded.unfold(1, self.M, 1)  # (B, T, C, M)
        windows = windows.permute(0, 1, 3, 2).reshape(B, T, self.M * C)
        return (windows @ self._stacked_weight() + self.b).transpose(1, 2)

    def innovations(self, S: Tensor, initial: Tensor | None = None) -> Tensor:
        """Prediction errors E[n] = S[n] - prediction, shape (B, C, T), buffers' dtype."""
        return S.to(self.A) - self.predict(S, initial)

    def whiten(self, S: Tensor, initial: Tensor | None = None) -> Tensor:
        """The whitening operator L: Z[n] = Sigma^{-1/2} E[n] (paper section 4).

        Parameters
        ----------
        S : Tensor, shape (B, C, T)
            Normalised S_J frames.
        initial : Tensor, shape (B, C, T0), optional
            Frames before S; zeros by default.

        Returns
        -------
        Z : Tensor, shape (B, C, T), dtype and device of S.
        """
        E = self.innovations(S, initial)
        Z = (E.transpose(1, 2) @ self.inv_sqrt_cov).transpose(1, 2)
        return Z.to(dtype=S.dtype, device=S.device)

    def unwhiten(
        self,
        Z: Tensor,
        initial: Tensor | None = None,
        *,
        rest: Tensor | None = None,
        forget: bool = False,
    ) -> Tensor:
        """The inverse L^-1: run the recursion S[n] = prediction + Sigma^{1/2} Z[n].

        Exact inverse of ``whiten`` given the same ``initial`` frames (up to rounding). No ReLU
        here (see ``sample`` for eq. (1)).

        Parameters
        ----------
        Z : Tensor, shape (B, C, T)
        initial : Tensor, shape (B, C, T0), optional
            Frames before the first one; zeros by default.
        rest : Tensor, shape (B, T), bool, optional
            Frames set to zero whatever their code (the rests of ``codes="sequence"`` and
            ``"blocks"``: the code that cancels the prediction, which depends on the frames
            before).
        forget : bool
            A rest also clears the recursion's memory: the frames after it are predicted from
            M silent frames, as after a clip's start (``codes="blocks"``, whose codes after a
            rest were the innovations of a recording that had gone quiet). The frames before
            the rest are output unchanged.

        Returns
        -------
        S : Tensor, shape (B, C, T), dtype and device of Z.
        """
        return self.run(Z, initial, rest=rest, forget=forget)[0]

    def run(
        self,
        Z: Tensor,
        initial: Tensor | None = None,
        *,
        rest: Tensor | None = None,
        forget: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`unwhiten`, and the recursion's memory after the last frame (B, C, M): the
        ``initial`` that continues it (its last M frames, unless ``forget`` cleared some)."""
        self._check(Z, "Z")
        S, memory = self._recursion(Z.to(self.A), initial, rest, forget)
        return S.to(dtype=Z.dtype, device=Z.device), memory.to(dtype=Z.dtype, device=Z.device)

    def _recursion(
        self, Z: Tensor, initial: Tensor | None, rest: Tensor | None = None, forget: bool = False
    ) -> tuple[Tensor, Tensor]:
        B, C, T = Z.shape
        M = self.M
        innov = Z.transpose(1, 2) @ self.sqrt_cov  # (B, T, C): all innovations in one matmul
        # out[:, k] holds S[k - M]; the window out[:, n:n+M] is S[n-M .. n-1], contiguous in
        # memory, so each step is one (B, M*C) @ (M*C, C) product on a view, without copies.
        out = innov.new_empty(B, T + M, C)
        out[:, :M] = self._initial(initial, B)
        weight = self._stacked_weight()
        innov = innov + self.b
        # what the recursion remembers: the output itself, or a copy that rests clear
        memory = out.clone() if forget and rest is not None else out
        for n in range(T):
            step = torch.addmm(innov[:, n], memory[:, n : n + M].reshape(B, M * C), weight)
            out[:, n + M] = step
            if rest is None:
                continue
            r = rest[:, n, None].to(out.device)
            out[:, n + M].masked_fill_(r, 0.0)
            if memory is not out:
                memory[:, n + M] = out[:, n + M]
                memory[:, n + 1 : n + M + 1].masked_fill_(r[..., None], 0.0)
        return out[:, M:].transpose(1, 2), memory[:, T:].transpose(1, 2)

    def sample(
        self,
        batch: int,
        frames: int,
        *,
        warmup: int = 600,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        relu: bool | Tensor = True,
        codes: str = "gaussian",
    ) -> Tensor:
        """Synthetic S_J frames from Gaussian white noise: X_J = ReLU(L^-1 Z), eq. (1).

        The recursion starts from zero frames and runs ``warmup + frames`` steps; the first
        ``warmup`` frames are discarded so the output is close to the stationary regime (the
        reference code uses 600). The ReLU applies because normalised scattering is
        non-negative. The frames of :meth:`sample_blocks`, concatenated.

        Parameters
        ----------
        batch, frames : int
            Output shape (batch, C, frames).
        warmup : int
            Frames discarded at the start.
        generator : torch.Generator, optional
            Source of the noise (on the buffers' device).
        dtype : torch.dtype, optional
            Output dtype; the buffers' dtype by default.
        relu : bool or Tensor of bool, shape (C,)
            Channels the ReLU applies to: all (True, eq. 1 as written), none (False), or a mask:
            S_J's non-negative channels (``mmsin.scattering.nonnegative_channels``), since
            order 0 and the ``paper`` variant's linear order 1 are signed.
        codes : {"gaussian", "mixture", "bank", "sequence", "blocks"}
            The law of Z. ``"gaussian"``: N(0, I) (the paper). ``"mixture"``: a Gaussian scale
            mixture ``z[n] = sqrt(w[n]) g[n]``, ``g[n] ~ N(0, I)``, one power ``w[n]`` per
            frame shared by all channels and drawn from the training codes' per-frame power
            (:attr:`frame_scales`, :func:`fit_frame_scales`): still white with covariance I,
            but heavy-tailed jointly across channels, as real innovations are (onsets).
            ``"bank"``: codes of real training frames (:attr:`code_bank`, :func:`fit_code_bank`):
            each sample picks a training clip every :data:`BANK_HOLD` frames (counted from the
            first kept frame) and draws every frame's code independently, with replacement,
            among that clip's codes. White in time and of covariance near I like the others,
            with the joint law of real innovations: a few notes' onsets at a time, and the
            register and loudness of one passage for a while.
            ``"sequence"``: the bank's codes in the order music has them
            (:mod:`mmsin.whitening.sequence`): a Markov chain over the kinds of training codes
            (onsets, ringing frames, rests) picks each frame's kind, the held clip gives a code
            of that kind, and a rest sets the frame to zero.
            ``"blocks"``: the bank's codes replayed in their own order, :data:`BLOCK_FRAMES`
            consecutive codes of the held clip at a time (:meth:`block_codes`), their rests
            silent and forgotten by the recursion.

        Returns
        -------
        Tensor, shape (batch, C, frames), non-negative where the ReLU applies.
        """
        blocks = self.sample_blocks(
            batch,
            frames,
            warmup=warmup,
            generator=generator,
            dtype=dtype,
            relu=relu,
            codes=codes,
        )
        return torch.cat(list(blocks), dim=-1)

    def sample_blocks(
        self,
        batch: int,
        frames: int,
        *,
        warmup: int = 600,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        relu: bool | Tensor = True,
        codes: str = "gaussian",
    ) -> Iterator[Tensor]:
        """:meth:`sample` block by block, in memory bounded by one block of noise.

        The noise is drawn :data:`NOISE_FRAMES` frames at a time (the last block whole too),
        so a sample's first frames do not depend on how many follow, and the recursion carries
        its last M frames from block to block. Same parameters as :meth:`sample`.

        Yields
        ------
        Tensor, shape (batch, C, k), k <= NOISE_FRAMES; ``frames`` frames in all.
        """
        if batch < 1 or frames < 1 or warmup < 0:
            raise ValueError(
                f"need batch >= 1, frames >= 1, warmup >= 0; got {batch}, {frames}, {warmup}"
            )
        total = warmup + frames
        past: Tensor | None = None
        held: Held | None = None
        for start in range(0, total, NOISE_FRAMES):
            Z, rest, held = self.draw_codes(
                batch, NOISE_FRAMES, codes, generator, first=start - warmup, held=held
            )
            S, past = self._recursion(Z, past, rest, forget=codes == "blocks")
            lo, hi = max(0, warmup - start), min(NOISE_FRAMES, total - start)
            if hi > lo:
                yield apply_relu(S[..., lo:hi], relu).to(dtype or self.A.dtype)

    def draw_codes(
        self,
        batch: int,
        frames: int,
        codes: str = "gaussian",
        generator: torch.Generator | None = None,
        *,
        first: int = 0,
        held: Held | None = None,
    ) -> tuple[Tensor, Tensor | None, Held | None]:
        """White codes z (batch, C, frames) of the law ``codes`` (see :meth:`sample`), in the
        buffers' dtype and device: what :meth:`sample_blocks` and L_MM's code chains feed L^-1.

        ``first`` and ``held`` place the frames among the bank's spans (:meth:`bank_codes`);
        the other laws ignore them. Returns the codes, the rests (batch, frames) bool of
        ``"sequence"`` and ``"blocks"`` (frames that :meth:`unwhiten` must set to zero, and for
        ``"blocks"`` forget; None for the other laws)
        and the ``held`` state to pass on.
        """
        if codes not in CODE_LAWS:
            raise ValueError(f"codes must be one of {CODE_LAWS}, got {codes!r}")
        if codes == "mixture" and self.frame_scales.numel() == 0:
            raise ValueError(
                "codes='mixture' needs the training codes' frame powers, which this VAR was "
                "fitted without (models trained before mmsin 0.9); use codes='gaussian'"
            )
        if codes in ("bank", "sequence", "blocks") and self.code_bank.shape[0] == 0:
            raise ValueError(
                f"codes={codes!r} needs a bank of training codes, which this model was trained "
                "without (set whitening.bank_clips); use codes='gaussian' or 'mixture'"
            )
        if codes == "bank":
            Z, held = self.bank_codes(batch, first, frames, generator, held)
            return Z, None, held
        if codes == "sequence":
            return self.sequence_codes(batch, first, frames, generator, held)
        if codes == "blocks":
            return self.block_codes(batch, first, frames, generator, held)
        dev = self.A.device
        Z = torch.randn(
            batch, self.channels, frames, generator=generator, dtype=self.A.dtype, device=dev
        )
        if codes == "mixture":
            u = torch.rand(batch, frames, generator=generator, dtype=Z.dtype, device=dev)
            Z = Z * _quantile_lookup(self.frame_scales, u).sqrt()[:, None, :]
        return Z, None, held

    def _held_clips(
        self, batch: int, first: int, frames: int, generator: torch.Generator | None, held: Any
    ) -> tuple[Tensor, tuple[int, Tensor]]:
        """The bank clip each frame's sample holds (batch, frames), and the (span, clips) pair
        to pass on (:meth:`bank_codes`)."""
        n_clips = self.code_bank_clips.numel() - 1
        if n_clips < 1:
            raise ValueError("this VAR has no code bank")
        dev = self.code_bank.device
        k = torch.arange(first, first + frames, device=dev).clamp(min=0) // BANK_HOLD
        k0, spans = int(k[0]), int(k[-1]) - int(k[0]) + 1
        pick = torch.randint(n_clips, (batch, spans), generator=generator, device=dev)
        if held is not None and held[0] == k0:
            pick[:, 0] = held[1]
        return pick[:, k - k0], (int(k[-1]), pick[:, -1])

    def _bank_rows(self, row: Tensor) -> Tensor:
        """The bank's codes at rows (batch, frames), as (batch, C, frames) in the buffers'
        dtype and device."""
        Z = self.code_bank[row].to(self.A.dtype) * self.code_bank_scale[row, None].to(self.A.dtype)
        return Z.transpose(1, 2).to(self.A.device)

    def bank_codes(
        self,
        batch: int,
        first: int,
        frames: int,
        generator: torch.Generator | None = None,
        held: Held | None = None,
    ) -> tuple[Tensor, Held]:
        """Codes drawn from :attr:`code_bank`, shape (batch, C, frames), in the buffers' dtype.

        Frame ``first + k`` (``first`` may be negative: warm-up frames) takes a code of the clip
        that its sample holds for its span of :data:`BANK_HOLD` frames: spans start at the
        multiples of BANK_HOLD, and the warm-up frames hold the first span's clip. ``held`` is
        the (span, clips) pair the previous call returned: a span that straddles two calls
        keeps its clips. Returns the codes and the pair to pass on.
        """
        clip, pair = self._held_clips(batch, first, frames, generator, held)
        clips = self.code_bank_clips
        lo, size = clips[clip], clips[clip + 1] - clips[clip]
        u = torch.rand(batch, frames, generator=generator, device=clip.device, dtype=torch.float64)
        row = lo + (u * size).long().clamp(max=size - 1)
        return self._bank_rows(row), pair

    def sequence_codes(
        self,
        batch: int,
        first: int,
        frames: int,
        generator: torch.Generator | None = None,
        held: Held | None = None,
    ) -> tuple[Tensor, Tensor, Held]:
        """Codes in the order of :mod:`mmsin.whitening.sequence` (``codes="sequence"``): the
        held clips as :meth:`bank_codes` holds them, each frame's kind from the Markov chain
        (carried on from ``held``'s last kinds), a code of that kind from the held clip.

        Returns the codes (batch, C, frames) (zero at rests), the rests (batch, frames) bool
        and the (span, clips, kinds) state to pass on.
        """
        self._need_order("sequence")
        clip, pair = self._held_clips(batch, first, frames, generator, held)
        dev = clip.device
        u = torch.rand(batch, frames, 2, generator=generator, device=dev, dtype=torch.float64)
        previous = held[2] if held is not None and len(held) > 2 else None
        kind = draw_kinds(
            self.code_transitions, self.code_kind_shares, previous, u[..., 0].contiguous()
        )
        row = pick_codes(
            self.code_kinds, self.code_nearest, self.code_bank_clips, clip, kind, u[..., 1]
        )
        rest = row < 0
        Z = self._bank_rows(row.clamp(min=0)).masked_fill(rest[:, None].to(self.A.device), 0.0)
        return Z, rest, (*pair, kind[:, -1])

    def block_codes(
        self,
        batch: int,
        first: int,
        frames: int,
        generator: torch.Generator | None = None,
        held: Held | None = None,
    ) -> tuple[Tensor, Tensor, Held]:
        """Codes of ``codes="blocks"``: training codes in their own order, a block at a time.

        The moving-block bootstrap of the innovations: frame ``first + k`` is in block
        ``(first + k) // BLOCK_FRAMES``; each block takes :data:`BLOCK_FRAMES` consecutive codes
        of the clip its sample holds (:meth:`bank_codes`' spans, which blocks never straddle),
        from a start drawn uniformly among the clip's; a frame that was a rest in training
        (:mod:`mmsin.whitening.sequence`'s kind 0) is a rest, which :meth:`unwhiten` makes
        silent and forgets (``forget=True``). Inside a block the codes are those that made a
        real passage (an onset and the frames that let it ring); across blocks, nothing of a
        clip's order is kept.

        Returns the codes (batch, C, frames) (zero at rests), the rests (batch, frames) bool
        and the (span, clips, block, start) state to pass on.
        """
        self._need_order("blocks")
        clip, pair = self._held_clips(batch, first, frames, generator, held)
        dev = clip.device
        a = torch.arange(first, first + frames, device=dev)
        block = torch.div(a, BLOCK_FRAMES, rounding_mode="floor")
        b0 = int(block[0])
        u = torch.rand(
            batch, int(block[-1]) - b0 + 1, generator=generator, device=dev, dtype=torch.float64
        )
        if held is not None and len(held) > 3 and held[2] == b0:
            u[:, 0] = held[3]  # the block straddles the previous call: same start
        clips = self.code_bank_clips
        lo, size = clips[clip], clips[clip + 1] - clips[clip]
        start = (u[:, block - b0] * (size - BLOCK_FRAMES + 1).clamp(min=1)).long()
        row = lo + torch.minimum(start + (a - block * BLOCK_FRAMES), size - 1)
        rest = self.code_kinds[row] == 0
        Z = self._bank_rows(row).masked_fill(rest[:, None].to(self.A.device), 0.0)
        return Z, rest, (*pair, int(block[-1]), u[:, -1])

    def _need_order(self, codes: str) -> None:
        """Refuse a law that needs :mod:`mmsin.whitening.sequence`'s fit when it is missing."""
        if self.code_transitions.numel() == 0:
            raise ValueError(
                f"codes={codes!r} needs the order of the training codes, which this model's "
                "whitening was fitted without (models trained before mmsin 0.12: refit it with "
                f"scripts/train_pretrained.py refit MODEL OUT --set whitening.codes={codes}); "
                "use codes='bank'"
            )

    def spectral_radius(self) -> float:
        """Largest modulus of the companion matrix's eigenvalues (< 1 means a stable VAR)."""
        M, C = self.M, self.channels
        comp = self.A.new_zeros(M * C, M * C)
        comp[:C] = self.A.permute(1, 0, 2).reshape(C, M * C)
        if M > 1:
            comp[C:, : (M - 1) * C] = torch.eye(
                (M - 1) * C, dtype=self.A.dtype, device=self.A.device
            )
        return float(torch.linalg.eigvals(comp.double()).abs().max())


#: The laws :meth:`VAR.sample` can draw codes from.

#: Frames for which a sample of ``codes="bank"`` keeps drawing from one training clip: 32
#: frames are 8 s at the paper's J = 10 and 4096 Hz, the length of a beethoven-like extract.
BANK_HOLD = 32

#: Frames of one block of ``codes="blocks"``: consecutive training codes replayed in their order.
#: 4 frames are 1 s at J = 10 (the piano set has 3.4 onsets a second); chosen on the shipped
#: piano among 2, 4 and 8 by the generation figures (docs/model.md, "Codes in order").
BLOCK_FRAMES = 4


def _quantile_lookup(quantiles: Tensor, u: Tensor) -> Tensor:
    """Inverse CDF of the distribution whose ``Q`` quantiles at ``(i + 0.5) / Q`` are
    ``quantiles`` (sorted), at ``u`` in [0, 1]: linear between them, flat beyond."""
    Q = quantiles.numel()
    pos = (u * Q - 0.5).clamp(0, Q - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(Q - 1)
    frac = pos - lo.to(pos.dtype)
    q = quantiles.to(u.dtype)
    return q[lo] * (1 - frac) + q[hi] * frac
