"""The noise branch's gains fitted in closed form to the floor of the training audio.

Why: the free-frequency generator renders every partial the scalogram u shows, and nothing
between them. A recording has a floor there (hammer, bow and breath noise, the room, the
microphone's rumble), 40-70 dB below its partials. A spectral term linear in magnitude cannot
teach the noise bands a floor that far down (its gradient there is ~1e-3 of the partials'), so
the bands stayed where they started, near silence, and the log-spectral distance of real notes
paid 15-40 dB in every bin between partials and below the lowest.

What: per output block t (2^J samples) and noise band b, the floor level of the target is
read from a low quantile of the STFT power over the band's bins and the block's STFT frames
(:func:`band_floor_levels`: it skips the bins partials occupy). The bands' gains that
render those mean levels solve, per block,

    level_b(t) = sum_k g_k(t)^2 gain(t)^2 R_kb

(R_kb: the mean power per bin that table k, unit RMS, puts in band b's bins: neighbouring
tables overlap; gain(t): the RMS over the block of the trunk's gain, which multiplies the noise
as it multiplies the partials); the targets are log g_k(t). The branch reads the
same frame's log S_J beside its log scalogram log(1 + u / eps) (``generator.noise_input =
"log"``) through a 1 x 1 layer, so its weights are a linear least-squares fit of those targets
on the training frames: ridge regression on standardised inputs, solved once before training
(as the VAR is), after which training may refine them. The scalogram alone does not carry the
floor (a partial's skirts cover the bins between partials); S_J's second order, which sees
how the bands fluctuate, does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "NoiseFloorFit",
    "band_bin_masks",
    "band_floor_levels",
    "band_gains_squared",
    "fit_noise_floor",
    "table_levels",
]

FLOOR_FFT = 512  # STFT window of the floor levels (0.125 s at 4096 Hz, as the LSD's)
LOG_GAIN_RANGE = (-30.0, 0.0)  # the range the branch's log-gain is clamped to
FLOOR_QUANTILE = 0.2  # the floor's order statistic of |STFT|^2 over a band's bins and frames
SILENT_RMS = 1e-5  # blocks quieter than this (-100 dB re full scale) are left out of the fit
TARGET_FLOOR = math.log(1e-6)  # targets below -120 dB are raised to it


@dataclass(frozen=True)
class NoiseFloorFit:
    """What :func:`fit_noise_floor` fitted.

    Attributes
    ----------
    rows : int
        Training blocks of the fit (the silent ones left out).
    residual_db : float
        RMS error of the fitted floor level on those blocks, dB.
    spread_db : float
        RMS deviation of the target level around its per-band mean, dB (what a constant per
        band would leave).
    mean_gain_db : list of float
        Mean fitted gain of each band over the training blocks, dB re full scale.
    """

    rows: int
    residual_db: float
    spread_db: float
    mean_gain_db: list[float]


def band_bin_masks(num_bands: int, fs: float, n_fft: int = FLOOR_FFT) -> Tensor:
    """Which bins of an ``n_fft`` STFT each noise band covers, (num_bands, n_fft // 2 + 1) bool.

    Band b: the octave below fs / 2^(b+1) (as :func:`mmsin.generators.synthesis.band_noise_tables`
    centres them); the lowest band also every bin below it, down to 0 Hz.
    """
    f = torch.fft.rfftfreq(n_fft, 1.0 / fs, dtype=torch.float64)
    octave = torch.log2(torch.clamp(f, min=1e-9) / (fs / 2))
    masks = [(octave < -b) & (octave >= -(b + 1)) for b in range(num_bands)]
    masks[0] = masks[0] | (octave >= 0)  # the bin at fs / 2
    masks[-1] = masks[-1] | (octave < -num_bands)
    return torch.stack(masks)


def _power(x: Tensor, n_fft: int) -> Tensor:
    """|STFT|^2 of rows x (R, n), Hann window, hop n_fft / 4, no padding: (R, bins, frames)."""
    w = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    s = torch.stft(x, n_fft, hop_length=n_fft // 4, window=w, center=False, return_complex=True)
    return s.abs().square()


def band_floor_levels(
    wave: Tensor, hop: int, masks: Tensor, n_fft: int = FLOOR_FFT, q: float = FLOOR_QUANTILE
) -> Tensor:
    """The mean power per bin of the noise under each band, per block of ``hop`` samples.

    Read as the ``q``-quantile of |STFT|^2 over the band's bins and the block's frames, divided
    by -ln(1 - q): over noise, |STFT|^2 is exponentially distributed, whose q-quantile is
    -ln(1 - q) times its mean; a low quantile skips the bins that partials and their skirts
    occupy (a bass note's partials are 2-3 bins apart at 1 kHz, so half the bins there hold
    one).

    Parameters
    ----------
    wave : Tensor (N, T hop)
        Audio at the generator's rate.
    hop : int
        Samples per block (2^J); at least ``n_fft``.
    masks : Tensor (bands, n_fft // 2 + 1) bool
        :func:`band_bin_masks`.

    Returns
    -------
    Tensor (N, bands, T), float64: per bin power, the scale of ``_power``.
    """
    if wave.dim() != 2 or wave.shape[-1] % hop or hop < n_fft:
        raise ValueError(
            f"wave must be (N, T * {hop}) with hop >= n_fft = {n_fft}, got {tuple(wave.shape)}"
        )
    N, T = wave.shape[0], wave.shape[-1] // hop
    p = _power(wave.double().reshape(N * T, hop), n_fft)  # (N T, bins, frames)
    levels = [p[:, m].reshape(N * T, -1).quantile(q, dim=1) for m in masks]
    mean = torch.stack(levels, dim=1) / -math.log1p(-q)
    return mean.reshape(N, T, -1).transpose(1, 2)


def table_levels(tables: Tensor, masks: Tensor, n_fft: int = FLOOR_FFT) -> Tensor:
    """Mean STFT power per bin that each unit-RMS noise table puts in each band's bins,
    (tables, bands): the tables overlap (raised-cosine edges), so a band hears its neighbours'
    tables too."""
    p = _power(tables.double(), n_fft).mean(-1)  # (tables, bins)
    return torch.stack([p[:, m].mean(-1) for m in masks], dim=1)


def band_gains_squared(levels: Tensor, mixing: Tensor) -> Tensor:
    """The tables' squared gains that render mean band powers ``levels`` (..., bands, T):
    ``levels = mixing^T g^2``, solved per block, each gain kept at least 1 % of what its own
    band alone would ask (a steep floor would otherwise ask a neighbour for less than 0)."""
    g2 = torch.linalg.solve(mixing.T, levels.transpose(-1, -2)[..., None])[..., 0]
    own = levels.transpose(-1, -2) / mixing.diagonal()
    return torch.maximum(g2, 0.01 * own).transpose(-1, -2)


@torch.no_grad()
def fit_noise_floor(
    generator: Any,
    frames: Tensor,
    wave: Tensor,
    *,
    ridge: float = 1e-3,
    chunk: int = 256,
) -> NoiseFloorFit:
    """Fit the noise branch of a free-frequency generator to the floor of its training audio.

    Parameters
    ----------
    generator : FreePartialGenerator
        With a noise branch that reads log S_J (``noise_input = "log"``); its 1 x 1
        layer is overwritten and marked fitted.
    frames : Tensor (N, in_channels, W)
        Normalised S_J frames; the last ``wave.shape[-1] / 2^J`` of them are the blocks that
        ``wave`` holds (:class:`mmsin.training.features.Features`' layout).
    wave : Tensor (N, S 2^J)
        The audio those blocks should sound like.
    ridge : float
        Ridge, relative to the mean diagonal of the normal equations.
    chunk : int
        Examples per pass (memory).

    Returns
    -------
    NoiseFloorFit
    """
    g = generator
    if g.noise is None or g.noise_input != "log":
        raise ValueError("fit_noise_floor needs a noise branch that reads log S_J")
    hop = g.hop
    S = wave.shape[-1] // hop
    if frames.dim() != 3 or frames.shape[0] != wave.shape[0] or frames.shape[-1] < S:
        raise ValueError(
            f"frames (N, C, W >= {S}) and wave (N, {S} * {hop}) do not match: "
            f"{tuple(frames.shape)}, {tuple(wave.shape)}"
        )
    was_training = g.training
    g.eval()  # the trunk's batch norm reads its running statistics and leaves them alone
    try:
        return _fit(g, frames, wave, S, ridge, chunk)
    finally:
        g.train(was_training)


def _fit(g: Any, frames: Tensor, wave: Tensor, S: int, ridge: float, chunk: int) -> NoiseFloorFit:
    hop = g.hop
    masks = band_bin_masks(g.noise_bands, g.fs)
    mixing = table_levels(g.noise_tables, masks)
    tiny = 1e-20
    xs, ys = [], []
    for i in range(0, frames.shape[0], chunk):
        f = frames[i : i + chunk].to(g.input_norm)
        lu = g.frontend(f * g.input_norm[:, None])[..., -S:]  # (n, F, S)
        feat = g.noise_features(f[..., -S:], lu)  # (n, F + C, S)
        log_gain = torch.clamp(g.trunk.features(f), -12.0, 4.0).double()  # (n, 1, W m)
        # the noise's power is scaled by the mean of gain^2 over the block
        log_gain = log_gain[..., -S * (hop // g.h) :].reshape(f.shape[0], S, -1)
        log_gain = 0.5 * torch.logsumexp(2 * log_gain, dim=-1) - 0.5 * math.log(hop // g.h)
        level = band_floor_levels(wave[i : i + chunk], hop, masks)
        g2 = band_gains_squared(level, mixing)  # (n, bands, S)
        y = 0.5 * torch.log(g2 + tiny) - log_gain[:, None]
        # silent blocks (before a clip's start, after a note's end) would pull the fit
        # towards -inf; a silent frame's log scalogram is 0, so the bias alone answers there
        rms = wave[i : i + chunk].reshape(f.shape[0], S, hop).double().square().mean(-1).sqrt()
        keep = (rms > SILENT_RMS).reshape(-1)
        y = y.clamp(TARGET_FLOOR, LOG_GAIN_RANGE[1]).transpose(1, 2).reshape(-1, y.shape[1])
        xs.append(feat.transpose(1, 2).reshape(-1, feat.shape[1]).double()[keep])
        ys.append(y[keep])
    x = torch.cat(xs)
    y = torch.cat(ys)
    if x.shape[0] < 2:
        raise ValueError(f"{x.shape[0]} non-silent blocks: nothing to fit the noise floor on")
    # standardised, so that one ridge suits inputs of every scale; the means and scales are
    # folded back into the layer
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs_ = (x - mu) / sd
    y_mean = y.mean(0)
    a = xs_.T @ xs_
    a = a + ridge * a.diagonal().mean() * torch.eye(a.shape[0], dtype=a.dtype)
    w = torch.linalg.solve(a, xs_.T @ (y - y_mean)) / sd[:, None]  # (inputs, bands)
    b = y_mean - mu @ w
    fit = (x @ w + b).clamp(*LOG_GAIN_RANGE)
    conv = g.noise.conv
    conv.weight.copy_(w.T[..., None].to(conv.weight))
    conv.bias.copy_(b.to(conv.bias))
    g.noise.fitted.fill_(1)
    to_db = 20 / math.log(10)
    return NoiseFloorFit(
        rows=int(x.shape[0]),
        residual_db=float(to_db * (fit - y).square().mean().sqrt()),
        spread_db=float(to_db * (y - y.mean(0)).square().mean().sqrt()),
        mean_gain_db=[float(v) for v in to_db * fit.mean(0)],
    )
