"""Mutation check: break the code on purpose, one breakage at a time, and see the tests go red.

Each breakage replaces one anchor text of ``src/mmsin`` by a broken version, in a temporary copy
of the source tree (the working tree is never edited), then runs the tests meant to catch it
with that copy first on ``PYTHONPATH``. The table at the end says, for each breakage, which test
failed (caught) or NOT CAUGHT. Exit status: 0 if every breakage was caught, 1 otherwise, 2 if a
breakage could not be applied.

An anchor is searched in every ``.py`` file under ``src/mmsin``, so the check survives code
moving between modules; an anchor found nowhere, or in more than one place, stops the script
with an error naming it (the breakage needs updating, it is never silently skipped).

    python scripts/mutate.py              # all breakages (a few minutes on 2 cores)
    python scripts/mutate.py resume mm    # only those whose name contains a word given
    make mutate

docs/reliability.md lists the breakages and the tests that catch them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Breakage:
    name: str
    what: str
    anchor: str
    broken: str
    tests: tuple[str, ...]


BREAKAGES = (
    Breakage(
        "resume-ignores-checkpoint",
        "--resume restarts from scratch: the checkpoint's weights, optimiser, counters unused",
        "        self.at = Progress()\n        if state is not None:\n",
        "        self.at = Progress()\n        if False:\n",
        ("tests/test_training.py::test_resume_runs_only_the_remaining_steps_from_the_saved_state",),
    ),
    Breakage(
        "ddp-off",
        "no DistributedDataParallel: WORLD_SIZE forced to 1, every process trains alone",
        'world = int(os.environ.get("WORLD_SIZE", "1"))',
        "world = 1",
        ("tests/test_ddp.py::test_two_ranks_on_shards_equal_one_process_on_the_union_batch",),
    ),
    Breakage(
        "bn-stats-from-synthetic",
        "BatchNorm running statistics also updated by the MM pass on VAR-sampled batches",
        "frozen_batchnorm(model), generation_envelopes(model, cfg):",
        "contextlib.nullcontext(), generation_envelopes(model, cfg):",
        (
            "tests/test_training_consistency.py::test_batchnorm_statistics_come_from_real_batches_only",
        ),
    ),
    Breakage(
        "sign-flip-in-L-inverse",
        "the intercept of the VAR enters L^-1 with the wrong sign",
        "        innov = innov + self.b\n",
        "        innov = innov - self.b\n",
        ("tests/test_whitening.py",),
    ),
    Breakage(
        "causality-off-by-one",
        "every layer of G looks one upsampled sample further ahead than it may",
        "y = self.upsample_conv(x)[..., self.look_ahead : self.look_ahead + 2 * L]",
        "y = self.upsample_conv(x)[..., self.look_ahead + 1 : self.look_ahead + 1 + 2 * L]",
        ("tests/test_generator.py",),
    ),
    Breakage(
        "mm-term-dropped",
        "the moment-matching term no longer enters the training loss",
        'loss = loss + cfg.loss.lam * terms["mm"]',
        "loss = loss",
        ("tests/test_training.py::test_the_loss_minimised_is_inv_plus_lambda_mm",),
    ),
    Breakage(
        "spectral-term-dropped",
        "the spectral term no longer enters the training loss (loss.spectral ignored)",
        '        loss = loss + cfg.loss.spectral * terms["spec"]\n',
        "        loss = loss\n",
        ("tests/test_training.py::test_the_loss_minimised_includes_the_spectral_term",),
    ),
    Breakage(
        "spectrum-loss-last-resolution-only",
        "SpectrumLoss keeps only its last (shortest) window instead of the mean over windows",
        "terms.append((a - b).abs().sum() / (b.sum() + self.eps))",
        "terms = [(a - b).abs().sum() / (b.sum() + self.eps)]",
        ("tests/test_losses.py::test_spectrum_loss_averages_every_resolution_against_numpy",),
    ),
    Breakage(
        "note-fidelity-self-comparison",
        "note_fidelity compares each reconstruction with itself instead of its original",
        "a, b = np.atleast_2d(_np(x_hat)), np.atleast_2d(_np(x))",
        "a, b = np.atleast_2d(_np(x_hat)), np.atleast_2d(_np(x_hat))",
        ("tests/test_note_fidelity.py::test_the_reconstruction_is_compared_with_its_original",),
    ),
    Breakage(
        "freq-padding-one-sided",
        "the 2-D layers pad log-frequency on one side: still equivariant, but every bin's "
        "log-gain comes from bins below it",
        "x = F.pad(x, (self.kt - 1, 0, self.kf // 2, (self.kf - 1) // 2))",
        "x = F.pad(x, (self.kt - 1, 0, self.kf - 1, 0))",
        ("tests/test_free_partials.py::test_the_shared_network_is_centred_on_each_bin",),
    ),
    Breakage(
        "stream-phase-not-carried",
        "the free partials streamer forgets its state (phases, previous controls) between pushes",
        "y, state = self.generator.synthesize(c, self._state, first_sample)",
        "y, state = self.generator.synthesize(c, self._state, first_sample)\n"
        "        state = self._state",
        ("tests/test_free_partials.py::test_streaming_equals_the_whole_sequence",),
    ),
    Breakage(
        "stream-layer-cache-stale",
        "the free partials streamer's 2-D layers never update their cached input frames: every "
        "push sees the zeros before the sequence as its past",
        "        self.history = full[:, k:]\n",
        "        self.history = self.history\n",
        (
            "tests/test_free_partials.py::"
            "test_streaming_at_random_split_points_equals_the_whole_sequence",
        ),
    ),
    Breakage(
        "free-frequency-at-bin-centre",
        "the free oscillators ignore the parabola's offset: every partial at its bin's centre",
        "hz = k.bin_hz[:, None] * torch.exp2(semis / 12)",
        "hz = k.bin_hz[:, None] * torch.exp2(semis * 0 / 12)",
        (
            "tests/test_free_partials.py::"
            "test_untrained_generator_puts_every_partial_where_the_input_has_it",
        ),
    ),
    Breakage(
        "partials-not-followed",
        "a real note's partial k is sought near k f0, not along the stretched series found so far",
        "centre = hz[k - 1] + (hz[k - 1] - hz[k - 2])",
        "centre = (k + 1) * f0",
        ("tests/test_real_notes.py::test_partials_of_a_stretched_tone_and_their_known_offsets",),
    ),
    Breakage(
        "missing-partial-never",
        "a partial absent from a reconstruction is never counted missing (threshold 300 dB)",
        "MISSING_DB = 30.0",
        "MISSING_DB = 300.0",
        ("tests/test_real_notes.py::test_missing_partial_is_detected_and_a_weak_one_is_not",),
    ),
    Breakage(
        "onset-floor-from-the-note",
        "the onset detector's noise floor is taken before the peak, i.e. from the attack itself",
        "    floor = float(np.percentile(e, 5))",
        "    floor = float(np.percentile(e[: top + 1], 10))",
        (
            "tests/test_real_notes.py::test_onset_of_a_synthetic_note",
            "tests/test_real_notes.py::test_onsets_of_real_recordings_padded_with_silence",
        ),
    ),
    Breakage(
        "joint-order1-window-misaligned",
        "the joint-real order-1 operator the learned front end inverts pairs each window's "
        "taps with the Hann atoms shifted by one bin",
        '        idx = windows[int(meta["window"][c])]\n        ok = idx >= 0\n        '
        "np.add.at(A[r]",
        '        idx = np.roll(windows[int(meta["window"][c])], 1)\n        ok = idx >= 0\n'
        "        np.add.at(A[r]",
        (
            "tests/test_learned_frontend.py::"
            "test_joint_order_one_is_the_modulus_of_the_windowed_scalogram",
        ),
    ),
    Breakage(
        "learned-frontend-trained-on",
        "the learned front end stays trainable after its fit (the moment-matching pass then "
        "blows it up)",
        "        self.ready.fill_(True)\n        self.net.requires_grad_(False)",
        "        self.ready.fill_(True)",
        ("tests/test_learned_frontend.py::test_learned_frontend_reads_u_back_after_pretraining",),
    ),
    Breakage(
        "peaks-neighbours-not-removed",
        "the free head's partials keep the plain parabola's frequency: the vertex found with "
        "the neighbours' shares of u taken out is dropped",
        "torch.where(ok, s_new, semis[..., 1:])",
        "semis[..., 1:]",
        ("tests/test_peaks.py::test_weak_partial_next_to_a_strong_one_is_located",),
    ),
    Breakage(
        "peaks-add-in-magnitude",
        "two partials' shares of a bin added in magnitude, not in power",
        "    summed = F.fold(c2.reshape(B * T, N, Fb), (1, Fb), (1, N), padding=(0, reach))\n",
        "    summed = F.fold(c2.sqrt().reshape(B * T, N, Fb), (1, Fb), (1, N), padding=(0, reach))"
        " ** 2\n",
        ("tests/test_peaks.py::test_weak_partial_next_to_a_strong_one_is_located",),
    ),
    Breakage(
        "peaks-top-rise-with-skirts",
        "the top bin's partial keeps the plain rise, the skirts of partials below left in",
        "            ok = torch.where(top_column, rise > 0, ok)\n",
        "            ok = torch.where(top_column, False, ok)\n",
        ("tests/test_peaks.py::test_top_partial_read_with_the_skirt_below_removed",),
    ),
    Breakage(
        "noise-floor-trunk-gain-kept",
        "the noise floor's fit forgets that the trunk's gain multiplies the noise",
        "        y = 0.5 * torch.log(g2 + tiny) - log_gain[:, None]\n",
        "        y = 0.5 * torch.log(g2 + tiny) + 0 * log_gain[:, None]\n",
        ("tests/test_noise_floor.py::test_a_fitted_branch_renders_an_unseen_floor_at_its_level",),
    ),
    Breakage(
        "peaks-refine-whole-batch",
        "the passes after the discovery run only when some frame of the batch found a partial",
        "        for _ in range(rounds):\n"
        "            semis, log_a, rest = refine(peak, semis, log_a)\n        if gaps:",
        "        for _ in range(rounds if bool(new.any()) else 0):\n"
        "            semis, log_a, rest = refine(peak, semis, log_a)\n        if gaps:",
        (
            "tests/test_peaks.py::test_a_clip_is_located_alike_alone_or_beside_others",
            "tests/test_free_partials.py::test_a_frame_is_located_alike_streamed_or_in_its_sequence",
        ),
    ),
    Breakage(
        "noise-room-ignored",
        "the free head's noise bands ignore the room u leaves them (any gain the layer says)",
        "        return gains if room is None else room.bound(gains)",
        "        return gains",
        ("tests/test_noise_room.py::test_a_saturated_noise_layer_cannot_drown_a_tone",),
    ),
    Breakage(
        "bank-clip-not-held",
        "bank codes forget the clip their span holds when a span straddles two noise blocks",
        "        if held is not None and held[0] == k0:\n",
        "        if False and held is not None and held[0] == k0:\n",
        ("tests/test_code_bank.py::test_bank_codes_hold_one_clip_per_span_across_blocks",),
    ),
    Breakage(
        "bank-codes-from-any-clip",
        "bank codes are drawn from the whole bank instead of the held clip's frames",
        "        row = lo + (u * size).long().clamp(max=size - 1)\n",
        "        row = (u * clips[-1]).long().clamp(max=int(clips[-1]) - 1)\n",
        (
            "tests/test_code_bank.py::test_bank_codes_hold_one_clip_per_span_across_blocks",
            "tests/test_code_bank.py::test_moment_matching_draws_bank_codes_one_clip_per_chain",
        ),
    ),
    Breakage(
        "mm-chains-ignore-the-law",
        "L_MM's code chains draw Gaussian codes whatever whitening.codes says",
        "        Z, rest, _ = self.var.draw_codes(self.batch, frames, self.codes, g)\n",
        '        Z, rest, _ = self.var.draw_codes(self.batch, frames, "gaussian", g)\n',
        ("tests/test_code_bank.py::test_moment_matching_draws_bank_codes_one_clip_per_chain",),
    ),
    Breakage(
        "sequence-rests-sound",
        "a rest of codes='sequence' runs the recursion instead of zeroing its frame",
        "            out[:, n + M].masked_fill_(r, 0.0)\n",
        "            pass\n",
        (
            "tests/test_code_sequence.py::test_sequence_codes_rest_hold_the_clip_and_stream",
            "tests/test_code_sequence.py::test_moment_matching_chains_draw_sequence_codes_with_rests",
            "tests/test_model.py::test_the_shipped_piano_draws_its_codes_in_order_with_rests",
        ),
    ),
    Breakage(
        "sequence-kinds-forget-the-past",
        "the kinds' Markov chain draws every frame from the kinds' shares (no order)",
        "        rows = (shares.cumsum(0) / shares.sum()).expand(B, -1)"
        " if prev is None else cdf[prev]\n",
        "        rows = (shares.cumsum(0) / shares.sum()).expand(B, -1)\n",
        (
            "tests/test_code_sequence.py::test_draw_kinds_follows_the_chain_and_its_past",
            "tests/test_code_sequence.py::test_sequence_codes_rest_hold_the_clip_and_stream",
        ),
    ),
    Breakage(
        "blocks-rests-remembered",
        "a rest of codes='blocks' is silent but the recursion goes on from the frames before it",
        "                memory[:, n + 1 : n + M + 1].masked_fill_(r[..., None], 0.0)\n",
        "                pass\n",
        (
            "tests/test_code_sequence.py::test_a_rest_that_forgets_clears_the_recursions_memory",
            "tests/test_code_sequence.py::test_block_codes_replay_training_codes_in_order",
            "tests/test_model.py::test_the_shipped_piano_stays_bounded_with_blocks_of_real_codes",
        ),
    ),
    Breakage(
        "blocks-shuffled",
        "codes='blocks' takes each frame of a block from its own random start (no order kept)",
        "        start = (u[:, block - b0] * (size - BLOCK_FRAMES + 1).clamp(min=1)).long()\n",
        "        start = (torch.rand(batch, frames, generator=generator, dtype=u.dtype)"
        " * (size - BLOCK_FRAMES + 1).clamp(min=1)).long()\n",
        ("tests/test_code_sequence.py::test_block_codes_replay_training_codes_in_order",),
    ),
    Breakage(
        "envelope-unshaped",
        "the points inside a frame (generator.sub_frames) ignore their multipliers",
        "    knots = torch.lerp(_before(c, prev)[..., None], c[..., None], w) * env\n",
        "    knots = torch.lerp(_before(c, prev)[..., None], c[..., None], w)\n",
        (
            "tests/test_sub_frames.py::test_envelope_points_shape_the_amplitude",
            "tests/test_sub_frames.py::test_a_stream_with_envelopes_equals_the_whole_sequence",
        ),
    ),
    Breakage(
        "envelope-point-not-carried",
        "a stream's block starts from the frame's amplitude, not the last envelope point",
        "            amp_prev = state.amp if state.amp_knot is None else state.amp_knot\n",
        "            amp_prev = state.amp\n",
        ("tests/test_sub_frames.py::test_a_stream_with_envelopes_equals_the_whole_sequence",),
    ),
    Breakage(
        "generation-envelopes-as-trained",
        "generate renders the envelopes inside the frame as trained, whatever "
        "generator.generation_temperature says",
        "        with self.generation_envelopes(envelope_temperature):\n",
        "        with contextlib.nullcontext():\n",
        ("tests/test_sub_frames.py::test_generation_alone_renders_at_the_configured_temperature",),
    ),
    Breakage(
        "mm-pass-envelopes-as-trained",
        "L_MM's pass over synthetic frames renders the envelopes inside the frame as trained, "
        "not at the generation temperature that generate uses",
        "        with amp_context(device, amp), frozen_batchnorm(model), "
        "generation_envelopes(model, cfg):\n",
        "        with amp_context(device, amp), frozen_batchnorm(model):\n",
        ("tests/test_sub_frames.py::test_the_moment_matching_pass_renders_as_generation_does",),
    ),
    Breakage(
        "compiled-stream-relaid-never",
        "a compiled stream keeps its caches as the pushes leave them (other strides than reset "
        "gives them): every push after the first compiles a new graph",
        "            self._trunk._history = [_fresh(h) for h in self._trunk._history]\n",
        "            pass\n",
        (
            "tests/test_compiled_stream.py::"
            "test_compiled_stream_equals_the_eager_stream_and_the_whole_sequence",
        ),
    ),
    Breakage(
        "compiled-taps-shifted-wrong",
        "a compiled 2-D layer sums its taps' products one bin off (the frequency axis shifted in "
        "the compiled stream alone; eager and offline unchanged)",
        "                y = y + z[:, j * self.c_out : (j + 1) * self.c_out, j : j + Fb]\n",
        "                y = y + z[:, j * self.c_out : (j + 1) * self.c_out, j - 1 : j - 1 + Fb]\n",
        (
            "tests/test_compiled_stream.py::"
            "test_compiled_stream_equals_the_eager_stream_and_the_whole_sequence",
        ),
    ),
    Breakage(
        "sequence-picks-any-frame",
        "codes='sequence' takes the held clip's first frame of the kind, not one at random",
        "    j = (u * n_match).long().clamp(max=(n_match - 1).clamp_min(0))\n",
        "    j = (0 * u * n_match).long().clamp(max=(n_match - 1).clamp_min(0))\n",
        ("tests/test_code_sequence.py::test_pick_codes_takes_the_held_clips_frames_of_that_kind",),
    ),
    Breakage(
        "real-notes-dc-kept",
        "the recorded notes keep their DC offset",
        "    y = y - y.mean()\n",
        "    y = y - 0 * y.mean()\n",
        ("tests/test_real_notes.py::test_build_real_notes_from_files_with_known_onsets",),
    ),
    Breakage(
        "stream-drops-generation-gain",
        "a stream renders generated frames without the generation gain (offline applies it)",
        "        amp = g.amp(r, g.lead_decays(est, peak, self._before), peak, self.generating)\n",
        "        amp = g.amp(r, g.lead_decays(est, peak, self._before), peak)\n",
        ("tests/test_generation_gain.py::test_only_generation_applies_the_gain",),
    ),
    Breakage(
        "generation-gain-everywhere",
        "the generation gain also applies to reconstructions",
        "        return a * self.generation_gain.to(a.dtype)[:, None] if generating else a\n",
        "        return a * self.generation_gain.to(a.dtype)[:, None]\n",
        ("tests/test_generation_gain.py::test_only_generation_applies_the_gain",),
    ),
    Breakage(
        "generation-refined-as-reconstruction",
        "generated frames are refined as reconstructions are (generation_amp_refine ignored)",
        "        if self.generation_per_frame if generating else self.per_frame:\n",
        "        if self.per_frame:\n",
        ("tests/test_generation_gain.py::test_generated_frames_may_be_refined_per_frame",),
    ),
    Breakage(
        "lag-stream-forgets-frame-before",
        "a stream leads each push's first frame as if the sequence started there",
        "        amp = g.amp(r, g.lead_decays(est, peak, self._before), peak, self.generating)\n",
        "        amp = g.amp(r, g.lead_decays(est, peak), peak, self.generating)\n",
        (
            "tests/test_decay_lag.py::"
            "test_streaming_with_the_lag_correction_equals_the_whole_sequence",
        ),
    ),
    Breakage(
        "lag-leads-rises",
        "rises are led as falls are (onsets and beats overshoot)",
        "        fall = torch.minimum(torch.clamp(fall, min=0.0), reach[:, None])\n",
        "        fall = torch.minimum(fall, reach[:, None])\n",
        ("tests/test_decay_lag.py::test_rises_onsets_and_steady_partials_are_played_as_read",),
    ),
    Breakage(
        "lag-first-order-only",
        "the lag taken to first order (the group delay) instead of the exponential's exact gain",
        "        rows.append(np.log(g / g[0]))\n",
        "        rows.append(falls / hop * float(np.log(g[1] / g[0]) / (rho[1] + 1e-30)))\n",
        (
            "tests/test_decay_lag.py::test_the_table_is_the_filters_group_delay_and_what_the_"
            "encoder_reads",
            "tests/test_decay_lag.py::"
            "test_partials_decaying_at_their_own_rates_keep_their_level_difference",
        ),
    ),
    Breakage(
        "lag-psi-only",
        "the lag of the wavelet alone, without phi_J's (600 samples)",
        "        g = np.abs(psi.transfer(xi, rho) * phi.transfer(0.0, rho))\n",
        "        g = np.abs(psi.transfer(xi, rho))\n",
        (
            "tests/test_decay_lag.py::"
            "test_partials_decaying_at_their_own_rates_keep_their_level_difference",
        ),
    ),
    Breakage(
        "gaps-unfilled",
        "the free head's gap pass skipped: a harmonic series' weak member stays missing",
        "            gap, s_gap, a_gap = _gaps(peak, semis, rest, u2, lookup, floor, tiny)\n",
        "            gap, s_gap, a_gap = _gaps(peak, semis, rest, u2, lookup, floor, tiny)\n"
        "            gap = gap & False\n",
        ("tests/test_peaks.py::test_a_weak_member_of_a_harmonic_series_is_filled_in",),
    ),
    Breakage(
        "omega-rounded-offline",
        "the free head's frequencies rounded to float32 between the estimate and the phase sums",
        "        c = Controls(amp, omega, gain, noise)\n",
        "        c = Controls(amp, omega.to(amp.dtype), gain, noise)\n",
        ("tests/test_free_partials.py::test_the_frequencies_reach_the_synthesis_unrounded",),
    ),
    Breakage(
        "omega-rounded-stream",
        "a stream's frequencies rounded to float32 between the estimate and the phase sums",
        "        c = Controls(amp, omega, gain, g.noise_gains(frames, lu, room))\n",
        "        c = Controls(amp, omega.to(amp.dtype), gain, g.noise_gains(frames, lu, room))\n",
        ("tests/test_free_partials.py::test_the_frequencies_reach_the_synthesis_unrounded",),
    ),
)


class AnchorError(RuntimeError):
    pass


def apply(b: Breakage, src: Path) -> Path:
    """Apply ``b`` to the tree ``src`` (a copy); returns the file changed."""
    hits = []
    for path in sorted(src.rglob("*.py")):
        count = path.read_text().count(b.anchor)
        if count:
            hits.append((path, count))
    if not hits:
        raise AnchorError(
            f"breakage {b.name}: anchor not found in {src} (the code moved or changed; update "
            f"scripts/mutate.py):\n{b.anchor}"
        )
    if len(hits) > 1 or hits[0][1] > 1:
        where = ", ".join(f"{p.relative_to(src)} x{c}" for p, c in hits)
        raise AnchorError(f"breakage {b.name}: anchor is ambiguous ({where}):\n{b.anchor}")
    path = hits[0][0]
    path.write_text(path.read_text().replace(b.anchor, b.broken))
    return path


def run_tests(b: Breakage, src_root: Path, timeout: float) -> tuple[str, str]:
    """Run ``b``'s tests against the broken copy; (verdict, detail)."""
    env = dict(os.environ, PYTHONPATH=str(src_root), OMP_NUM_THREADS="1")
    probe = subprocess.run(
        [sys.executable, "-c", "import mmsin; print(mmsin.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if not probe.stdout.strip().startswith(str(src_root)):
        raise RuntimeError(f"the broken copy is not what Python imports: {probe.stdout.strip()}")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider"]
    cmd += ["-p", "no:xdist", *b.tests]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "caught (timeout)", f"tests ran past {timeout:.0f} s"
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)
    if proc.returncode == 0:
        return "NOT CAUGHT", "all selected tests passed"
    if failed:
        return "caught", failed[0]
    tail = proc.stdout.strip().splitlines()[-1:] or ["?"]
    return "caught?", f"pytest exit {proc.returncode}: {tail[0]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("only", nargs="*", help="run only breakages whose name contains a word")
    ap.add_argument("--timeout", type=float, default=300, help="per breakage, seconds")
    args = ap.parse_args(argv)
    chosen = [b for b in BREAKAGES if not args.only or any(w in b.name for w in args.only)]
    if not chosen:
        print(f"no breakage matches {args.only}", file=sys.stderr)
        return 2
    # Every anchor must apply to the current tree before anything runs (fail loudly, early).
    with tempfile.TemporaryDirectory(prefix="mmsin-mutate-check-") as tmp:
        for b in chosen:
            copy = Path(tmp) / b.name
            shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__"))
            try:
                apply(b, copy)
            except AnchorError as exc:
                print(f"mutate: error: {exc}", file=sys.stderr)
                return 2
    rows = []
    for b in chosen:
        with tempfile.TemporaryDirectory(prefix=f"mmsin-mutate-{b.name}-") as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
            changed = apply(b, src)
            t0 = time.perf_counter()
            verdict, detail = run_tests(b, src, args.timeout)
            secs = time.perf_counter() - t0
        rows.append((b.name, str(changed.relative_to(src)), verdict, detail, secs))
        print(f"{b.name}: {verdict} ({detail}, {secs:.0f} s)", flush=True)
    w = max(len(r[0]) for r in rows)
    wf = max(len("file broken"), *(len(r[1]) for r in rows))
    print()
    print(f"{'breakage':<{w}}  {'file broken':<{wf}}  result")
    for name, changed, verdict, detail, _ in rows:
        print(f"{name:<{w}}  {changed:<{wf}}  {verdict}: {detail}")
    missed = [r[0] for r in rows if r[2] == "NOT CAUGHT"]
    if missed:
        print(f"\nNOT CAUGHT: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
