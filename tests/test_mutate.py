"""scripts/mutate.py stays applicable: every deliberate breakage finds its anchor exactly once
in today's source tree (so a code move shows up here, in CI, rather than the next time someone
runs `make mutate`), and a missing or ambiguous anchor is an error, never a silent skip."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mutate():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mutate", ROOT / "scripts" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutate"] = module
    spec.loader.exec_module(module)
    return module


def test_every_breakage_applies_once_to_a_copy_and_changes_it(tmp_path: Path) -> None:
    m = _mutate()
    assert {b.name for b in m.BREAKAGES} == {
        "resume-ignores-checkpoint",
        "ddp-off",
        "bn-stats-from-synthetic",
        "sign-flip-in-L-inverse",
        "causality-off-by-one",
        "mm-term-dropped",
        "spectral-term-dropped",
        "spectrum-loss-last-resolution-only",
        "note-fidelity-self-comparison",
        "freq-padding-one-sided",
        "stream-phase-not-carried",
        "stream-layer-cache-stale",
        "free-frequency-at-bin-centre",
        "partials-not-followed",
        "missing-partial-never",
        "onset-floor-from-the-note",
        "joint-order1-window-misaligned",
        "learned-frontend-trained-on",
        "peaks-neighbours-not-removed",
        "peaks-add-in-magnitude",
        "peaks-top-rise-with-skirts",
        "peaks-refine-whole-batch",
        "noise-room-ignored",
        "noise-floor-trunk-gain-kept",
        "real-notes-dc-kept",
        "stream-drops-generation-gain",
        "generation-gain-everywhere",
        "generation-refined-as-reconstruction",
        "lag-stream-forgets-frame-before",
        "lag-leads-rises",
        "lag-first-order-only",
        "lag-psi-only",
        "omega-rounded-offline",
        "omega-rounded-stream",
        "gaps-unfilled",
        "bank-clip-not-held",
        "bank-codes-from-any-clip",
        "mm-chains-ignore-the-law",
        "sequence-rests-sound",
        "sequence-kinds-forget-the-past",
        "sequence-picks-any-frame",
        "blocks-rests-remembered",
        "blocks-shuffled",
        "envelope-unshaped",
        "envelope-point-not-carried",
        "compiled-stream-relaid-never",
        "compiled-taps-shifted-wrong",
        "generation-envelopes-as-trained",
        "mm-pass-envelopes-as-trained",
    }
    for b in m.BREAKAGES:
        copy = tmp_path / b.name
        shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__"))
        changed = m.apply(b, copy)
        original = (ROOT / "src" / changed.relative_to(copy)).read_text()
        text = changed.read_text()
        assert text != original and b.broken in text and b.anchor in original
        compile(text, str(changed), "exec")  # the broken copy still parses
        for t in b.tests:
            path, _, name = t.partition("::")
            assert (ROOT / path).is_file(), t
            assert not name or f"def {name.split('[')[0]}(" in (ROOT / path).read_text(), t


def test_missing_or_ambiguous_anchor_is_an_error(tmp_path: Path) -> None:
    m = _mutate()
    (tmp_path / "a.py").write_text("x = 1\n")
    b = m.Breakage("demo", "demo", "y = 2\n", "y = 3\n", ())
    with pytest.raises(m.AnchorError, match="anchor not found"):
        m.apply(b, tmp_path)
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "c.py").write_text("y = 2\n")
    with pytest.raises(m.AnchorError, match="ambiguous"):
        m.apply(b, tmp_path)
