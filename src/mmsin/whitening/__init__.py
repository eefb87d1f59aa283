"""Whitening operator L and its inverse L^-1: a causal vector autoregression on S_J frames.

Paper section 4: L outputs the innovations of a vector autoregressive (VAR) model of order M
fitted on the (normalised) scattering frames, so that ``Z = L S_J x`` is close to a Gaussian
white noise; eq. (1) of section 3 runs the recursion the other way, ``X_J = ReLU(L^-1 Z)``.

Model, with frames before n = 0 equal to zero (the scattering's zero initial state)::

    S[n] = b + sum_{m=1}^{M} A[m-1] S[n-m] + E[n],      E[n] = Sigma^{1/2} Z[n]

``fit_var`` estimates ``A`` and ``b`` in closed form (ridge-regularised least squares through
the normal equations, accumulated in float64 over the examples; with ``past="unknown"``, for
excerpts of longer recordings, an example's first M frames are not rows), ``Sigma`` is the biased
covariance of the residuals E on the training frames, and its symmetric square root and
inverse square root come from one eigendecomposition with a relative eigenvalue floor.
docs/model.md gives the derivation and the numerical choices.

Modules: :mod:`~mmsin.whitening.var` (the VAR module, L, L^-1, sampling and the code laws),
:mod:`~mmsin.whitening.fit` (the fit, the ridge, stability and whiteness),
:mod:`~mmsin.whitening.sequence` (the order of the codes drawn by ``codes="sequence"``, and
the rests of ``codes="blocks"``).
"""

from mmsin.whitening.fit import (
    PASTS,
    bank_clip_ids,
    fit_code_bank,
    fit_frame_scales,
    fit_var,
    fit_var_ridges,
    growth_rate,
    past_rows,
    whiteness_report,
)
from mmsin.whitening.sequence import CodeSequence, fit_code_sequence
from mmsin.whitening.var import BANK_HOLD, BLOCK_FRAMES, CODE_LAWS, NOISE_FRAMES, VAR, apply_relu

__all__ = [
    "BANK_HOLD",
    "BLOCK_FRAMES",
    "CODE_LAWS",
    "NOISE_FRAMES",
    "PASTS",
    "VAR",
    "CodeSequence",
    "apply_relu",
    "bank_clip_ids",
    "fit_code_bank",
    "fit_code_sequence",
    "fit_frame_scales",
    "fit_var",
    "fit_var_ridges",
    "growth_rate",
    "past_rows",
    "whiteness_report",
]
