"""The code chains of the moment-matching term: synthetic S_J batches ReLU(L^-1 z) (eq. 1).

L_MM (paper eq. 6) compares the loss scalogram of G applied to synthetic codes with the
training set's statistics. The codes are VAR chains driven by white noise; this module makes
them cheaply (chains carried on across steps) and reproducibly (noise seeded by position, so a
resumed run replays it exactly).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import Tensor

from mmsin.whitening import apply_relu

__all__ = ["CodeChains", "seeded_generator"]


def seeded_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator whose state is a pure function of ``key``: resuming from a checkpoint replays
    exactly the same noise with no generator state to save, and ranks draw different noise."""
    g = torch.Generator(device=device)
    h = hashlib.sha256(json.dumps(list(key)).encode()).digest()
    g.manual_seed(int.from_bytes(h[:8], "little") & (2**63 - 1))
    return g


class CodeChains:
    """Synthetic S_J batches for L_MM: ``batch`` VAR chains X_J = ReLU(L^-1 z) (eq. 1).

    Running the recursion through ``warmup`` frames for every step would cost far more than
    the generator itself (600 frames of (C, M*C) products for C = 973), so the chains are warmed
    up once per epoch and then carried on: each step draws fresh white noise z for ``width``
    new frames, continuing from the last M frames. The VAR forgets its past within a few frames,
    so consecutive windows are nearly independent, and every window is a draw from the
    stationary process. All noise is seeded by (seed, rank, epoch, step) so a resumed run
    replays it exactly (:meth:`start` replays the steps already taken in the epoch).
    """

    def __init__(
        self,
        var: Any,
        batch: int,
        width: int,
        warmup: int,
        seed: int,
        rank: int,
        device: torch.device,
        relu: bool | Tensor = True,
        codes: str = "gaussian",
    ) -> None:
        self.var, self.batch, self.width, self.warmup = var, batch, width, warmup
        # the law of z (VAR.sample's codes); the bank's laws: a clip per chain per step
        self.codes = codes
        self.forget = codes == "blocks"  # its rests clear the recursion's memory (VAR.unwhiten)
        self.relu = relu  # S_J's non-negative channels (eq. 1's ReLU); the rest are signed
        self.seed, self.rank, self.device = seed, rank, device
        self.state: Tensor | None = None

    def start(self, epoch: int, first_step: int, steps_done: int) -> None:
        """Warm the chains up for ``epoch`` whose first global step is ``first_step``, then
        replay the ``steps_done`` steps already taken in it (resume)."""
        frames = max(self.warmup, int(self.var.M))
        g = seeded_generator(self.device, self.seed, self.rank, epoch, -1)
        Z, rest = self._codes(frames, g)
        with torch.no_grad():
            self.state = self.var.run(Z, rest=rest, forget=self.forget)[1]
        for k in range(steps_done):
            self.next(first_step + k)

    @torch.no_grad()
    def next(self, step: int) -> Tensor:
        """The synthetic S_J batch (batch, C, width) of global step ``step``."""
        assert self.state is not None, "call start() first"
        g = seeded_generator(self.device, self.seed, self.rank, step)
        Z, rest = self._codes(self.width, g)
        S, self.state = self.var.run(Z, self.state, rest=rest, forget=self.forget)
        return apply_relu(S, self.relu).float()

    def _codes(self, frames: int, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """White codes (batch, C, frames) of the chains' law, from ``g`` (a bank clip per chain
        per call), and their rests (``"sequence"``, ``"blocks"``; None for the other laws)."""
        Z, rest, _ = self.var.draw_codes(self.batch, frames, self.codes, g)
        return Z, rest
