"""A gain per oscillator that generation applies, fitted so that music generated from white
noise has the training set's moments (eq. 6).

Why: the free head renders each partial at the level u gives it, refined by the network.
Refined per partial (``generator.amp_refine = "bin"``), a G trained with L_MM matches the
training set's moments, but the refinements also flatten each generated frame's contrast
between its partials, and CREPE finds a pitch in fewer frames (0.48 of the piano's generated
frames against 0.73 of its training extracts'). Refined per frame (``"frame"``: the partials
keep the relative levels u gives them) the pitched frames reach 0.54, but the long-term
spectrum moves (eq. (6) 1.26, the test extracts 0.205), and training G through it with L_MM
turned the music to noise bursts (docs/model.md, section 3). The distance of eq. (6) is a
statement about the mean of S_K only, a spectrum a semitone at a time, and that is what a
fixed gain per oscillator moves without touching any frame's contrast.

What: L_MM's objective at the paper's normalisation,

    D(g) = sum_c ((mean S_K,c(x_gen(g)) - mean S_K,c(x_train)) / n_c)^2,

n_c = mean |S_K,c| over the training set, over the log-gains g of the oscillators, which only
generation applies (:meth:`~mmsin.generators.free_partials.FreePartialGenerator.generating_at`;
reconstructions and every other transform keep the levels as trained). S_K's first-order
channels are a semitone apart like the oscillators, and the mean of a channel is, where
partials make it, proportional to the gain of the oscillators in its band; so each round draws
fresh music, takes the ratio r_c of each channel's generated mean to the training mean, and
steps

    g <- g - eta interp(log r)          (eta = :data:`STEP`)

with ``interp`` linear in log-frequency from the channels' centres to the oscillators'
(:func:`gain_update`). Where a channel also holds what the gain does not scale (noise bands,
the skirts of partials outside it) one step corrects only part of its error, so the steps do
not shrink (the why is a guess; what follows is measured); the rounds' sampling errors are
averaged instead: the gain kept is the mean of the log-gains after each of the last half of
the rounds (Polyak-Ruppert averaging). Steps of 1 / (k + 1), tried first, left the lowest
channels (35-45 Hz) 6-11 % too loud on the piano.
Each round uses its own seed, none of those the generation experiment measures with. The
gain is bounded to +-14 dB (:data:`GAIN_RANGE_DB`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["GAIN_RANGE_DB", "GenerationGainFit", "fit_generation_gain", "gain_update"]

GAIN_RANGE_DB = 14.0  # the fitted gain stays within +-14 dB of the levels as trained
FIT_SEED = 1000  # round k draws from seed FIT_SEED + 1000 k on (the experiments: 0, 1, 2)
STEP = 0.7  # the step of each round, of the log of the ratio asked for


@dataclass
class GenerationGainFit:
    """What :func:`fit_generation_gain` did.

    Attributes
    ----------
    distances : list of float
        D of each round's draw, before its step (the first: the model as it came); the last
        rounds' draws are of gains the average then smooths.
    gain_db : list of float
        The fitted gain of each oscillator, dB.
    rounds, clips, frames : int
        Rounds, clips per round and their length in frames.
    """

    distances: list[float] = field(default_factory=list)
    gain_db: list[float] = field(default_factory=list)
    rounds: int = 0
    clips: int = 0
    frames: int = 0


def gain_update(
    log_gain: Tensor, osc_hz: np.ndarray, channel_hz: np.ndarray, ratio: np.ndarray, step: float
) -> Tensor:
    """One step of the fit (module docstring): ``log_gain - step interp(log ratio)``, bounded.

    Parameters
    ----------
    log_gain : Tensor (N,)
        The oscillators' log-gains now (nepers).
    osc_hz : ndarray (N,)
        The oscillators' bin frequencies, Hz.
    channel_hz : ndarray (C,)
        Centre frequencies of S_K's first-order channels, Hz (any order).
    ratio : ndarray (C,), positive
        Each channel's generated mean over the training mean.
    step : float
        Step size, in (0, 1].

    Returns
    -------
    Tensor (N,): the new log-gains, within +-:data:`GAIN_RANGE_DB`. Oscillators outside the
    channels' range take the nearest channel's correction.
    """
    hz, r = np.asarray(channel_hz, dtype=np.float64), np.asarray(ratio, dtype=np.float64)
    if hz.shape != r.shape or hz.ndim != 1 or hz.size < 2:
        raise ValueError(
            f"channel_hz and ratio must be (C,) with C >= 2, got {hz.shape}, {r.shape}"
        )
    if not (np.isfinite(r).all() and (r > 0).all()):
        raise ValueError("every ratio must be finite and positive")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    order = np.argsort(hz)
    corr = np.interp(np.log(osc_hz), np.log(hz[order]), np.log(r[order]))
    bound = GAIN_RANGE_DB / 20 * math.log(10)
    new = log_gain.double() - step * torch.from_numpy(corr)
    return new.clamp(-bound, bound).to(log_gain.dtype)


def fit_generation_gain(
    model: Any,
    train_audio: Tensor | np.ndarray,
    *,
    rounds: int = 12,
    clips: int = 225,
    frames: int | None = None,
    batch: int = 32,
    progress: Callable[[str], None] | None = None,
) -> GenerationGainFit:
    """Fit ``model``'s generation gain to the training set's moments (module docstring); the
    gain is set in place (``model.generator.amp.generation_gain``).

    Parameters
    ----------
    model : mmsin.model.MMSIN
        With the free-frequency head.
    train_audio : (n, time)
        The training clips (the moments' target).
    rounds : int
        Rounds, each a fresh draw of ``clips`` clips of ``frames`` frames (default: the
        training clips' length); the gain kept is the mean of the last half's log-gains.
    batch : int
        Clips generated at a time.
    progress : callable, optional
        Called with one line per round.
    """
    from mmsin.assembly import build_scalogram
    from mmsin.losses import scalogram_statistics

    amp = getattr(model.generator, "amp", None)
    if amp is None or not hasattr(amp, "generation_gain"):
        raise ValueError("the generation gain needs the free-frequency head (frequencies='free')")
    if rounds < 1 or clips < 1 or batch < 1:
        raise ValueError(f"need rounds, clips and batch >= 1, got {rounds}, {clips}, {batch}")
    x = torch.as_tensor(np.asarray(train_audio), dtype=torch.float32)
    if x.dim() != 2:
        raise ValueError(f"train_audio must have shape (clips, time), got {tuple(x.shape)}")
    T = x.shape[1] // model.hop if frames is None else int(frames)
    if T < 1:
        raise ValueError(f"need frames >= 1, got {T}")
    sk = build_scalogram(model.config).eval()
    target = scalogram_statistics(sk, x.split(batch))
    mean, n = target["mean"].double(), target["mean_abs"].double().clamp(min=1e-12)
    meta = sk.meta()
    first = np.flatnonzero(np.asarray(meta["order"]) == 1)
    osc_hz = model.generator.bin_hz.double().cpu().numpy()
    log_gain = torch.log(amp.generation_gain.detach().double().cpu())
    fit = GenerationGainFit(rounds=rounds, clips=clips, frames=T)
    kept: list[Tensor] = []  # the log-gains after each of the last half of the rounds
    for k in range(rounds):
        amp.generation_gain.copy_(torch.exp(log_gain))
        stats = scalogram_statistics(
            sk,
            (
                model.generate(T, batch=min(batch, clips - i), seed=FIT_SEED + k * 1000 + i)
                for i in range(0, clips, batch)
            ),
        )
        gen = stats["mean"].double()
        d = float((((gen - mean) / n) ** 2).sum())
        fit.distances.append(d)
        ratio = (gen[first] / mean[first]).clamp(min=1e-3).numpy()
        log_gain = gain_update(log_gain, osc_hz, meta["xi1"][first], ratio, STEP)
        if 2 * (k + 1) > rounds:
            kept.append(log_gain)
        if progress is not None:
            progress(f"round {k + 1}/{rounds}: eq. (6) distance of the draw {d:.3f}")
    log_gain = torch.stack(kept).mean(0)
    amp.generation_gain.copy_(torch.exp(log_gain))
    fit.gain_db = (20 / math.log(10) * log_gain).tolist()
    return fit
