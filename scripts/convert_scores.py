"""Convert the music21 corpus scores used by ``beethoven-like`` to MIDI, once.

music21's MIDI export is slow (seconds to minutes per quartet movement), so the package does not
run it: this script writes small ``.mid`` files into ``src/mmsin/data/midi/`` and they are
committed. Run it again only to change the set of pieces; files already written are skipped.

Usage::

    .venv/bin/pip install music21==10.5.1     # for this script only, not a package dependency
    .venv/bin/python scripts/convert_scores.py [--only SUBSTRING] [--force]

Two work-arounds (see docs/data.md):

* music21 writes 10,080 ticks per quarter by default, which some MIDI readers reject on long
  files; 960 is plenty.
* Expanding repeats fails ("badly formed repeats") on several quartets and the Chopin mazurka;
  repeat barlines, repeat expressions and volta brackets are removed, so every piece plays
  straight through once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "mmsin" / "data" / "midi"

#: Corpus paths (relative to music21's corpus folder) in conversion order: the solo keyboard
#: pieces first (short, and the closest to piano sonatas), then Beethoven's string quartets.
PIECES = [
    "bach/bwv846.mxl",
    "mozart/k545/movement1_exposition.mxl",
    "joplin/maple_leaf_rag.mxl",
    "chopin/mazurka06-2.krn",
    "schumann_clara/polonaise_op1n1.mxl",
    "schumann_clara/polonaise_op1n2.mxl",
    "schumann_clara/polonaise_op1n3.mxl",
    "schumann_clara/polonaise_op1n4.mxl",
    "schoenberg/opus19/movement2.mxl",
    "schoenberg/opus19/movement6.mxl",
    "cpebach/h186.mxl",
    "beethoven/opus18no1/movement1.mxl",
    "beethoven/opus18no1/movement2.mxl",
    "beethoven/opus18no1/movement3.mxl",
    "beethoven/opus18no1/movement4.mxl",
    "beethoven/opus133.mxl",
    "beethoven/opus18no4.mxl",
    "beethoven/opus18no3.mxl",
    "beethoven/opus132.mxl",
    "beethoven/opus18no5.mxl",
    "beethoven/opus74.mxl",
    "beethoven/opus59no1/movement1.mxl",
    "beethoven/opus59no1/movement2.mxl",
    "beethoven/opus59no1/movement3.mxl",
    "beethoven/opus59no1/movement4.mxl",
    "beethoven/opus59no2/movement1.mxl",
    "beethoven/opus59no2/movement2.mxl",
    "beethoven/opus59no2/movement3.mxl",
    "beethoven/opus59no2/movement4.mxl",
    "beethoven/opus59no3/movement1.mxl",
    "beethoven/opus59no3/movement2.mxl",
    "beethoven/opus59no3/movement3.mxl",
    "beethoven/opus59no3/movement4.mxl",
]


def midi_name(corpus_path: str) -> str:
    """``beethoven/opus59no1/movement1.mxl`` -> ``beethoven_opus59no1_movement1.mid``."""
    stem = corpus_path.rsplit(".", 1)[0]
    return stem.replace("/", "_") + ".mid"


def convert(corpus_path: str, out: Path) -> None:
    """Parse one corpus score, strip its repeats and write it as MIDI (atomically)."""
    from music21 import bar, corpus, defaults, repeat, spanner

    defaults.ticksPerQuarter = 960
    score = corpus.parse(corpus_path)
    for r in list(score.recurse().getElementsByClass(bar.Repeat)):
        measure = r.activeSite
        if measure is None:
            continue
        if r is measure.leftBarline:
            measure.leftBarline = None
        elif r is measure.rightBarline:
            measure.rightBarline = bar.Barline("regular")
    kinds = (repeat.RepeatExpression, spanner.RepeatBracket)
    for el in list(score.recurse().getElementsByClass(kinds)):
        if el.activeSite is not None:
            el.activeSite.remove(el)
    tmp = out.with_suffix(".tmp")
    score.write("midi", fp=str(tmp))
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="convert only pieces whose path contains this")
    parser.add_argument("--force", action="store_true", help="rewrite files already there")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in PIECES:
        if args.only not in path:
            continue
        out = OUT / midi_name(path)
        if out.exists() and not args.force:
            print(f"skip  {out.name} (exists)", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            convert(path, out)
        except Exception as exc:  # keep going: one bad score must not cost the others
            failed += 1
            print(f"FAIL  {path}: {type(exc).__name__}: {exc}", flush=True)
            continue
        size = out.stat().st_size
        print(
            f"wrote {out.name} ({size / 1e3:.0f} kB, {time.perf_counter() - t0:.0f} s)", flush=True
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
