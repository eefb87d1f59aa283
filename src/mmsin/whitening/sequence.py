"""Codes drawn in the order music has them (``codes="sequence"``): a Markov chain over the kinds
of training codes, each kind's codes taken from one held training clip.

Why. ``codes="bank"`` (:meth:`mmsin.whitening.VAR.bank_codes`) holds one training clip for
:data:`~mmsin.whitening.var.BANK_HOLD` frames and draws every frame's code independently among
that clip's codes: the register and the joint law of real innovations are kept, their order is
not. Real codes are white (uncorrelated from frame to frame) but not independent: the log-power
of the piano codes has a lag-1 autocorrelation of 0.84, an onset is followed by the small codes
that let its notes ring, and a rest is a run of frames whose S_J is near zero. Drawn
independently, codes never line up into a rest (the frame that ends a note needs the one code
that cancels the VAR's prediction), and a note is cut by the next random onset.

The law, fitted on the training codes Z = L S_J (:func:`fit_code_sequence`):

- **Kinds.** A frame is a *rest* (kind 0) when its S_J frame's norm is under :data:`REST_LEVEL`
  of the loudest frame of its clip; the other frames are clustered by k-means (Lloyd's
  iterations from a seeded k-means++ start, squared Euclidean distance on the codes) into
  ``kinds`` kinds, 1 .. kinds.
- **Order.** A first-order Markov chain over the kinds: transition counts over every training
  clip's consecutive frames, plus half a count on every pair (no transition is impossible).
- **Codes.** As ``"bank"``, each sample holds a clip of the bank for BANK_HOLD frames. A frame
  of kind k takes a code of the held clip of kind k, uniformly among them, or, when that clip
  has none, the clip's code nearest to kind k's centroid; a rest frame sets S_J to zero (its
  code is the one that cancels the prediction: Z = L applied to a zero frame).

So the chain decides *what kind* of frame comes next (an onset, a ringing frame, a rest) and
the clip decides *what it sounds like*; nothing of a clip's own order is replayed. The kinds
are fitted on every training clip; the chain's pick of a code uses only the bank's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "KINDS",
    "KMEANS_ROWS",
    "REST_LEVEL",
    "SEQUENCE_VERSION",
    "CodeSequence",
    "draw_kinds",
    "fit_code_sequence",
    "kmeans",
    "pick_codes",
    "rest_frames",
]

#: A frame is a rest when its S_J norm is under this share of its clip's loudest frame: 2.5 % of
#: the full beethoven-like training frames, whose extracts have 3.8 % silent STFT frames (40 dB
#: under the clip's loudest; :func:`mmsin.evaluation.silent_frames`).
REST_LEVEL = 0.05

#: Kinds of sounding frames (k-means clusters of the codes).
KINDS = 64

#: At most this many sounding frames fit the k-means centroids (a seeded subset beyond: the
#: full piano set has 49,388, the paper's NSynth about 4.8 million).
KMEANS_ROWS = 50_000

#: Changes when the fit changes (cached features hold a fitted VAR: mmsin.training.features).
SEQUENCE_VERSION = 1


def rest_frames(S: Tensor | Sequence[Tensor], level: float = REST_LEVEL) -> list[Tensor]:
    """Which frames of each clip are rests: S_J norm under ``level`` x the clip's loudest.

    Parameters
    ----------
    S : Tensor (B, C, T) or list of Tensor (C, T_i)
        Normalised S_J frames of whole clips.

    Returns
    -------
    list of Tensor (T_i,) bool
    """
    out = []
    for s in S.unbind(0) if isinstance(S, Tensor) else S:
        norm = s.double().norm(dim=0)
        out.append(norm < level * norm.max().clamp_min(torch.finfo(torch.float64).tiny))
    return out


def kmeans(X: Tensor, k: int, *, iters: int = 25, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with a seeded k-means++ start (squared Euclidean distance).

    Parameters
    ----------
    X : Tensor (N, D)
    k : int
        Clusters, at most N.

    Returns
    -------
    centroids : Tensor (k, D), X's dtype
    labels : Tensor (N,) int64, each row's nearest centroid
    """
    N = X.shape[0]
    if not 1 <= k <= N:
        raise ValueError(f"need 1 <= k <= {N} (the number of rows), got k={k}")
    g = torch.Generator().manual_seed(int(seed))
    x = X.double()
    chosen = [int(torch.randint(N, (1,), generator=g))]
    d2 = ((x - x[chosen[0]]) ** 2).sum(1)
    for _ in range(1, k):  # k-means++: the next centre with probability ~ its distance squared
        p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / N)
        i = int(torch.multinomial(p, 1, generator=g))
        chosen.append(i)
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    cent = x[chosen].clone()
    labels = torch.cdist(x, cent).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(cent).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        # an emptied cluster keeps its centre (k-means++ centres are rows, so it rarely happens)
        cent = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], cent)
        new = torch.cdist(x, cent).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return cent.to(X.dtype), labels


@dataclass
class CodeSequence:
    """The fitted law (:func:`fit_code_sequence`), as the VAR stores it.

    Attributes
    ----------
    kinds : Tensor (N,) int16
        Kind of each bank frame (0: rest), aligned with ``VAR.code_bank``.
    nearest : Tensor (n_clips, K + 1) int64
        Per bank clip and kind, the bank row of that clip nearest to the kind's centroid
        (column 0, the rest, unused: -1).
    transitions : Tensor (K + 1, K + 1) float64
        Row-stochastic: ``transitions[a, b]`` = P(next kind b | kind a).
    shares : Tensor (K + 1,) float64
        Each kind's share of the training frames (where a chain without a past starts).
    """

    kinds: Tensor
    nearest: Tensor
    transitions: Tensor
    shares: Tensor


def fit_code_sequence(
    Z: Sequence[Tensor],
    S: Sequence[Tensor],
    bank_clips: Sequence[int],
    *,
    skip: int = 0,
    kinds: int = KINDS,
    level: float = REST_LEVEL,
    seed: int = 0,
) -> CodeSequence:
    """Fit ``codes="sequence"`` (module docstring) on the training codes.

    Parameters
    ----------
    Z, S : list of Tensor (C, T_i)
        Each training clip's codes Z = L S_J and its normalised S_J frames.
    bank_clips : sequence of int
        The clips of the bank, in the bank's order (:func:`mmsin.whitening.bank_clip_ids`).
    skip : int
        Frames left out at the start of every clip (as the bank leaves them out).
    kinds : int
        Clusters of sounding frames (at most one per 8 sounding frames).
    level : float
        :data:`REST_LEVEL`.
    """
    if len(Z) != len(S) or not len(Z):
        raise ValueError(f"need as many S_J clips as code clips (>= 1), got {len(S)} and {len(Z)}")
    rests = [r[skip:] for r in rest_frames(S, level)]
    codes = [z[:, skip:].T for z in Z]
    flat = torch.cat(codes).float()
    rest = torch.cat(rests)
    sounding = flat[~rest]
    if sounding.shape[0] == 0:
        raise ValueError("every training frame is a rest: no codes to order")
    # a small set: at most one kind per 8 sounding frames (the tiny test sets)
    kinds = max(1, min(kinds, sounding.shape[0] // 8))
    if sounding.shape[0] <= KMEANS_ROWS:
        cent, lab = kmeans(sounding, kinds, seed=seed)
    else:  # centroids from a seeded subset (bounded memory), every frame labelled by them
        g = torch.Generator().manual_seed(int(seed))
        subset = torch.randperm(sounding.shape[0], generator=g)[:KMEANS_ROWS]
        cent = kmeans(sounding[subset], kinds, seed=seed)[0]
        lab = torch.cat([torch.cdist(x, cent).argmin(1) for x in sounding.split(KMEANS_ROWS)])
    labels = torch.zeros(flat.shape[0], dtype=torch.int64)
    labels[~rest] = lab + 1
    per_clip = labels.split([c.shape[0] for c in codes])
    K = kinds + 1
    counts = torch.full((K, K), 0.5, dtype=torch.float64)
    for seq in per_clip:
        if seq.numel() > 1:
            counts.index_put_((seq[:-1], seq[1:]), torch.ones(seq.numel() - 1).double(), True)
    transitions = counts / counts.sum(1, keepdim=True)
    shares = torch.bincount(labels, minlength=K).double() / labels.numel()
    bank_kinds, nearest = [], []
    offset = 0
    for c in bank_clips:
        seq, z = per_clip[c], codes[c].float()
        bank_kinds.append(seq)
        d = torch.cdist(cent, z)  # (kinds, T): distance of each centroid to the clip's codes
        d[:, seq == 0] = float("inf")  # a rest frame's code is not a sounding kind's
        best = d.argmin(1) + offset
        best = torch.where(torch.isfinite(d.min(1).values), best, -1)  # a clip of rests only
        nearest.append(torch.cat([torch.tensor([-1]), best]))
        offset += seq.numel()
    return CodeSequence(
        torch.cat(bank_kinds).to(torch.int16),
        torch.stack(nearest),
        transitions,
        shares,
    )


def draw_kinds(transitions: Tensor, shares: Tensor, previous: Tensor | None, u: Tensor) -> Tensor:
    """The chain's kinds for ``u.shape[1]`` frames, by inverse CDF of uniform draws.

    Parameters
    ----------
    transitions : Tensor (K, K), row-stochastic
    shares : Tensor (K,)
        Where a chain without a past starts (the first frame's law).
    previous : Tensor (B,) int64, optional
        Each chain's kind before the first frame.
    u : Tensor (B, T), uniform in [0, 1)

    Returns
    -------
    Tensor (B, T) int64
    """
    B, T = u.shape
    cdf = transitions.cumsum(1)
    cdf = cdf / cdf[:, -1:]  # exactly 1 at the end
    out = torch.empty(B, T, dtype=torch.int64, device=u.device)
    prev = previous
    for n in range(T):
        rows = (shares.cumsum(0) / shares.sum()).expand(B, -1) if prev is None else cdf[prev]
        un = u[:, n : n + 1].to(rows.dtype).contiguous()
        k = torch.searchsorted(rows.contiguous(), un, right=True)
        prev = k[:, 0].clamp(max=transitions.shape[0] - 1)
        out[:, n] = prev
    return out


def pick_codes(
    kinds: Tensor, nearest: Tensor, offsets: Tensor, clip: Tensor, kind: Tensor, u: Tensor
) -> Tensor:
    """Bank rows for frames of ``kind`` in their held ``clip`` (-1 for rests).

    Parameters
    ----------
    kinds : Tensor (N,)
        Bank frames' kinds.
    nearest : Tensor (n_clips, K + 1)
        :attr:`CodeSequence.nearest`.
    offsets : Tensor (n_clips + 1,)
        The bank's clip boundaries.
    clip, kind : Tensor (B, T) int64
    u : Tensor (B, T), uniform in [0, 1)
        Chooses among the clip's frames of that kind.

    Returns
    -------
    Tensor (B, T) int64
    """
    lo, size = offsets[clip], offsets[clip + 1] - offsets[clip]
    width = int((offsets[1:] - offsets[:-1]).max())
    idx = lo[..., None] + torch.arange(width, device=clip.device)  # (B, T, width)
    inside = torch.arange(width, device=clip.device) < size[..., None]
    match = inside & (kinds.long()[idx.clamp(max=kinds.numel() - 1)] == kind[..., None])
    n_match = match.sum(-1)
    # the j-th matching frame, j uniform in [0, n_match)
    j = (u * n_match).long().clamp(max=(n_match - 1).clamp_min(0))
    pos = (match.cumsum(-1) - 1 == j[..., None]) & match
    row = torch.where(n_match > 0, lo + pos.long().argmax(-1), nearest[clip, kind])
    return torch.where(kind == 0, -1, row)
