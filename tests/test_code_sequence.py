"""Codes in the order music has them (``codes="sequence"``, :mod:`mmsin.whitening.sequence`):
the kinds' k-means and Markov chain against known structure, the picks from the held clip,
rests that zero their frames, and the law in sampling, streaming and L_MM's chains."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from mmsin.training import code_chains, loop
from mmsin.whitening import (
    BLOCK_FRAMES,
    NOISE_FRAMES,
    VAR,
    bank_clip_ids,
    fit_code_bank,
    fit_code_sequence,
)
from mmsin.whitening.sequence import draw_kinds, kmeans, pick_codes, rest_frames
from test_training import run, tiny

C = 6


def _cyclic_clips(n: int, frames: int, seed: int = 0) -> tuple[list[torch.Tensor], ...]:
    """Clips whose frames cycle through three kinds of codes and a rest: codes near prototype
    directions 1 -> 2 -> 3 -> rest -> 1 ..., each clip starting at a random phase. S_J is 1 on
    sounding frames and 1e-3 on rests; channel 5 names the clip (0.01 per clip)."""
    g = torch.Generator().manual_seed(seed)
    protos = 4.0 * torch.eye(C, dtype=torch.float64)[:3]
    Z, S, kinds = [], [], []
    for c in range(n):
        phase = int(torch.randint(4, (1,), generator=g))
        k = (torch.arange(frames) + phase) % 4  # 0, 1, 2: prototypes; 3: rest
        z = 0.1 * torch.randn(frames, C, generator=g, dtype=torch.float64)
        z[k < 3] += protos[k[k < 3]]
        z[:, 5] = 0.01 * (c + 1)
        s = torch.ones(C, frames, dtype=torch.float64)
        s[:, k == 3] = 1e-3
        Z.append(z.T.contiguous())
        S.append(s)
        kinds.append(k)
    return Z, S, kinds


def test_kmeans_recovers_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    truth = torch.randint(3, (600,), generator=g)
    X = means[truth] + torch.randn(600, 2, generator=g, dtype=torch.float64)
    cent, labels = kmeans(X, 3, seed=1)
    # a permutation of the true clusters, centroids at the blobs' means (sd 1 / sqrt(200))
    mapping = {int(t): int(labels[truth == t].mode().values) for t in range(3)}
    assert sorted(mapping.values()) == [0, 1, 2]
    assert all(bool((labels[truth == t] == m).all()) for t, m in mapping.items())
    for t, m in mapping.items():
        assert float((cent[m] - means[t]).norm()) < 0.3
    assert torch.equal(kmeans(X, 3, seed=1)[1], labels)  # seeded
    with pytest.raises(ValueError, match="k="):
        kmeans(X, 601)


def test_rest_frames_are_relative_to_the_clips_loudest() -> None:
    s = torch.ones(4, 10, dtype=torch.float64) * 100
    s[:, 3] = 4.9  # 4.9 % of the loudest frame's norm: a rest
    s[:, 4] = 5.1
    assert rest_frames([s, s / 1000])[0].nonzero().flatten().tolist() == [3]
    assert torch.equal(rest_frames([s / 1000])[0], rest_frames([s])[0])  # loudness-free


def test_fit_learns_the_order_and_the_rests() -> None:
    Z, S, kinds = _cyclic_clips(30, 24)
    ids = list(range(0, 30, 3))
    seq = fit_code_sequence(Z, S, ids, skip=2, kinds=3, seed=0)
    # kind labels: the rest is 0, and each prototype one kind; the chain 1 -> 2 -> 3 -> rest
    # is deterministic, so each row puts all but the half-counts on one successor
    bank_kinds = seq.kinds.long()
    truth = torch.cat([kinds[c][2:] for c in ids])
    assert torch.equal(bank_kinds == 0, truth == 3)
    proto_to_kind = {p: int(bank_kinds[truth == p].mode().values) for p in range(3)}
    assert sorted(proto_to_kind.values()) == [1, 2, 3]
    order = [proto_to_kind[0], proto_to_kind[1], proto_to_kind[2], 0, proto_to_kind[0]]
    for a, b in itertools.pairwise(order):
        assert float(seq.transitions[a, b]) > 0.97
    torch.testing.assert_close(seq.transitions.sum(1), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(
        seq.shares, torch.full((4,), 0.25, dtype=torch.float64), atol=0.02, rtol=0
    )
    # nearest: per bank clip and kind, a frame of that clip of that kind (each clip has all)
    offsets = torch.tensor([0] + [24 - 2] * len(ids)).cumsum(0)
    for i in range(len(ids)):
        for k in (1, 2, 3):
            row = int(seq.nearest[i, k])
            assert int(offsets[i]) <= row < int(offsets[i + 1]) and int(bank_kinds[row]) == k


def test_a_large_set_fits_its_kinds_on_a_subset_and_labels_every_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mmsin.whitening import sequence

    Z, S, _ = _cyclic_clips(30, 24)
    whole = fit_code_sequence(Z, S, list(range(30)), skip=2, kinds=3, seed=0)
    monkeypatch.setattr(sequence, "KMEANS_ROWS", 40)  # of 495 sounding frames
    rows: list[int] = []

    def spy(X: torch.Tensor, k: int, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
        rows.append(X.shape[0])
        return kmeans(X, k, **kw)

    monkeypatch.setattr(sequence, "kmeans", spy)
    sub = fit_code_sequence(Z, S, list(range(30)), skip=2, kinds=3, seed=0)
    assert rows == [40]
    # the same partition of the frames (kind numbers may differ), hence the same chain
    pairs = set(zip(whole.kinds.tolist(), sub.kinds.tolist(), strict=True))
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4
    order = {a: b for a, b in pairs}
    perm = [order[a] for a in range(4)]
    torch.testing.assert_close(sub.transitions[perm][:, perm], whole.transitions)


def test_draw_kinds_follows_the_chain_and_its_past() -> None:
    P = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.5, 0.0], [0.2, 0.0, 0.8]], dtype=torch.float64)
    shares = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    u = torch.rand(200, 300, generator=g, dtype=torch.float64)
    k = draw_kinds(P, shares, None, u)
    counts = torch.zeros(3, 3, dtype=torch.float64)
    counts.index_put_((k[:, :-1].flatten(), k[:, 1:].flatten()), torch.ones(1).double(), True)
    torch.testing.assert_close(counts / counts.sum(1, keepdim=True), P, atol=0.015, rtol=0)
    first = torch.bincount(k[:, 0], minlength=3).double() / 200
    torch.testing.assert_close(first, shares, atol=0.1, rtol=0)
    # with a past, the first frame follows it: a permutation chain is then deterministic
    perm = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    prev = torch.tensor([0, 1, 2])
    out = draw_kinds(perm, shares, prev, torch.rand(3, 5, generator=g, dtype=torch.float64))
    assert out.tolist() == [[1, 2, 0, 1, 2], [2, 0, 1, 2, 0], [0, 1, 2, 0, 1]]


def test_pick_codes_takes_the_held_clips_frames_of_that_kind() -> None:
    kinds = torch.tensor([1, 2, 1, 0, 2, 2, 3], dtype=torch.int16)  # clip 0: rows 0-3; 1: 4-6
    offsets = torch.tensor([0, 4, 7])
    nearest = torch.tensor([[-1, 0, 1, 2], [-1, 6, 4, 6]])
    n = 400
    g = torch.Generator().manual_seed(0)
    u = torch.rand(1, n, generator=g, dtype=torch.float64)

    def picks(clip: int, kind: int) -> torch.Tensor:
        c, k = torch.full((1, n), clip), torch.full((1, n), kind)
        return pick_codes(kinds, nearest, offsets, c, k, u)[0]

    assert set(picks(0, 1).tolist()) == {0, 2}  # both of clip 0's kind-1 frames, uniformly
    assert abs(float((picks(0, 1) == 0).double().mean()) - 0.5) < 0.1
    assert set(picks(1, 2).tolist()) == {4, 5}
    assert set(picks(1, 3).tolist()) == {6}
    assert set(picks(1, 1).tolist()) == {6}  # none of that kind: the nearest frame
    assert set(picks(0, 3).tolist()) == {2}
    assert set(picks(0, 0).tolist()) == {-1}  # a rest takes no code


def _sequence_var(seed: int = 0) -> tuple[VAR, list[torch.Tensor]]:
    """A VAR(1) with a decaying A and the sequence law fitted on :func:`_cyclic_clips`."""
    Z, S, _ = _cyclic_clips(12, 20, seed)
    var = VAR(C, 1)
    var.A[0] = 0.5 * torch.eye(C, dtype=torch.float64)
    var.code_bank, var.code_bank_scale, var.code_bank_clips = fit_code_bank(Z, 6, skip=1, seed=0)
    ids = bank_clip_ids([20] * 12, 6, skip=1, seed=0)
    seq = fit_code_sequence(Z, S, ids, skip=1, kinds=3, seed=0)
    var.code_kinds, var.code_nearest = seq.kinds, seq.nearest
    var.code_transitions, var.code_kind_shares = seq.transitions, seq.shares
    return var, Z


def test_sequence_codes_rest_hold_the_clip_and_stream() -> None:
    var, _ = _sequence_var()
    g = torch.Generator().manual_seed(4)
    Z, rest, held = var.draw_codes(5, 300, "sequence", g)
    assert rest is not None and held is not None and rest.shape == (5, 300)
    assert abs(float(rest.double().mean()) - 0.25) < 0.05  # the training clips' rest share
    rows = var.code_bank.double() * var.code_bank_scale.double()[:, None]
    for b in range(5):
        sounding = Z[b][:, ~rest[b]].T
        match = torch.cdist(sounding, rows).argmin(1)
        torch.testing.assert_close(rows[match], sounding, rtol=0, atol=1e-9)  # bank codes
        # in the order of the chain: prototype p is followed by p + 1, the third by a rest
        # (all but the half-counts' share, 3 x 0.5 / ~60 a row)
        proto = Z[b, :3].argmax(0)
        sound = ~rest[b, :-1]
        nxt = torch.where(rest[b, 1:], 3, proto[1:])
        right = (nxt == proto[:-1] + 1)[sound]
        assert float(right.double().mean()) > 0.93
    # rests are zero frames whatever came before; the others run the recursion
    S = var.unwhiten(Z, rest=rest)
    assert bool((S.transpose(1, 2)[rest] == 0).all())
    assert float(S.transpose(1, 2)[~rest].abs().amax(-1).min()) > 1.0

    # a sample of n frames is the start of a longer one (blocks carry clip and kind)
    def sample(frames: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(9)
        warmup = NOISE_FRAMES - 10
        return var.sample(2, frames, warmup=warmup, relu=False, codes="sequence", generator=g)

    short, long = sample(40), sample(300)
    assert torch.equal(short, long[..., :40])
    zero = (long.abs().amax(1) == 0).double().mean()
    assert abs(float(zero) - 0.25) < 0.06


def test_sequence_law_needs_its_fit() -> None:
    var, _ = _sequence_var()
    old = {k: v for k, v in var.state_dict().items() if k not in ("code_transitions",)}
    loaded = VAR.from_state_dict(old)
    with pytest.raises(ValueError, match="refit"):
        loaded.sample(1, 4, warmup=0, codes="sequence")
    again = VAR.from_state_dict(var.state_dict())
    assert torch.equal(again.code_transitions, var.code_transitions)
    assert torch.equal(again.code_kinds, var.code_kinds)
    with pytest.raises(ValueError, match="bank"):
        VAR(C, 1).sample(1, 4, warmup=0, codes="sequence")


@pytest.mark.parametrize("law", ["sequence", "blocks"])
def test_moment_matching_chains_draw_sequence_codes_with_rests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, law: str
) -> None:
    """With ``whitening.codes = "sequence"`` (or ``"blocks"``) the features' VAR holds the
    codes' order, and L_MM's chains draw from it: a rest frame of the law is a zero frame of
    the chain."""
    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    class Spy(code_chains.CodeChains):
        def next(self, step: int) -> torch.Tensor:
            S = super().next(step)
            seen.append((S, self._last_rest))
            return S

        def _codes(self, *a: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
            z, rest = super()._codes(*a)
            self._last_rest = rest
            return z, rest

    monkeypatch.setattr(loop, "CodeChains", Spy)
    cfg = tiny(1, f"whitening.codes={law}", "whitening.bank_clips=3")
    result = run(cfg, tmp_path / "r", tmp_path / "cache")
    from mmsin.model import MMSIN

    assert result.checkpoint is not None
    var = MMSIN.load(result.checkpoint).var
    K = var.code_transitions.shape[0]
    assert K > 1 and var.code_kinds.numel() == var.code_bank.shape[0]
    assert seen
    for S, rest in seen:
        assert rest is not None and rest.shape == (S.shape[0], S.shape[2])
        assert bool((S.transpose(1, 2)[rest.to(S.device)] == 0).all())


def test_a_rest_that_forgets_clears_the_recursions_memory() -> None:
    """VAR(2) with A_2 only (S[n] = 0.5 S[n-2] + z[n]): a rest at frame 3 is silent either way;
    remembered, frame 4 still sees frame 2; forgotten, frames 4 and 5 are their codes alone.
    Frames before the rest are the same, and a run in two calls, carried by :meth:`VAR.run`'s
    memory, equals the run in one."""
    var = VAR(1, 2)
    var.A[1, 0, 0] = 0.5
    Z = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]], dtype=torch.float64)
    rest = torch.tensor([[False, False, False, True, False, False, False]])
    plain = var.unwhiten(Z, rest=rest)[0, 0]
    forgot = var.unwhiten(Z, rest=rest, forget=True)[0, 0]
    s0, s1, s2 = 1.0, 2.0, 3.0 + 0.5 * 1.0
    torch.testing.assert_close(forgot[:4], torch.tensor([s0, s1, s2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(plain[:4], forgot[:4])
    torch.testing.assert_close(plain[4], torch.tensor(5.0 + 0.5 * s2, dtype=torch.float64))
    torch.testing.assert_close(forgot[4:6], torch.tensor([5.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(forgot[6], torch.tensor(7.0 + 0.5 * 5.0, dtype=torch.float64))
    for cut in (2, 4, 5):  # the memory after frame 3 is zero, not the frames output
        head, memory = var.run(Z[..., :cut], rest=rest[:, :cut], forget=True)
        tail = var.unwhiten(Z[..., cut:], memory, rest=rest[:, cut:], forget=True)
        torch.testing.assert_close(torch.cat([head, tail], -1)[0, 0], forgot)


def test_block_codes_replay_training_codes_in_order() -> None:
    """codes="blocks": each aligned block of BLOCK_FRAMES frames is consecutive codes of one
    bank clip (its rests where the clip's are, silent and forgotten), blocks start at varied
    places, and a sample of n frames is the start of a longer one (a block straddling two
    draws keeps its start)."""
    var, _ = _sequence_var()
    g = torch.Generator().manual_seed(4)
    Z, rest, held = var.draw_codes(5, 300, "blocks", g, first=-6)
    assert rest is not None and held is not None and rest.shape == (5, 300)
    assert abs(float(rest.double().mean()) - 0.25) < 0.05  # the training clips' rest share
    rows = var.code_bank.double() * var.code_bank_scale.double()[:, None]
    clips = var.code_bank_clips
    starts = set()
    for b in range(5):
        sounding = (~rest[b]).nonzero()[:, 0]
        match = torch.cdist(Z[b][:, sounding].T, rows).argmin(1)
        torch.testing.assert_close(rows[match], Z[b][:, sounding].T, rtol=0, atol=1e-9)
        row = torch.full((300,), -1)
        row[sounding] = match
        for k in range(2, 300 - BLOCK_FRAMES + 1, BLOCK_FRAMES):  # frames k - 6: multiples of 4
            blk = row[k : k + BLOCK_FRAMES]
            known = (blk >= 0).nonzero()[:, 0]
            first = int(blk[known[0]]) - int(known[0])  # where the block starts in the bank
            starts.add(first)
            assert torch.equal(blk[known], first + known)  # consecutive training codes
            clip = int(torch.searchsorted(clips, torch.tensor(first), right=True)) - 1
            assert first + BLOCK_FRAMES <= int(clips[clip + 1])  # within one clip
            kinds = var.code_kinds[first + torch.arange(BLOCK_FRAMES)]
            assert torch.equal(rest[b, k : k + BLOCK_FRAMES], kinds == 0)  # its own rests
    assert len(starts) > 40
    # rests are silent and the recursion after them starts again from silence
    S = var.unwhiten(Z, rest=rest, forget=True)
    assert bool((S.transpose(1, 2)[rest] == 0).all())

    def sample(frames: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(9)
        warmup = NOISE_FRAMES - 10  # the first draw ends inside a block
        return var.sample(2, frames, warmup=warmup, relu=False, codes="blocks", generator=g)

    short, long = sample(40), sample(300)
    assert torch.equal(short, long[..., :40])
    whole = var.sample(
        2,
        300,
        warmup=NOISE_FRAMES - 10,
        relu=False,
        codes="blocks",
        generator=torch.Generator().manual_seed(9),
    )
    assert torch.equal(whole, long)
    with pytest.raises(ValueError, match="refit"):
        old = {k: v for k, v in var.state_dict().items() if k != "code_transitions"}
        VAR.from_state_dict(old).sample(1, 4, warmup=0, codes="blocks")
