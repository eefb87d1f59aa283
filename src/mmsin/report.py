"""A self-contained HTML report: tables, figures and an audio player for every sound.

A report is a list of :class:`Section` objects, each a list of blocks (:class:`Paragraph`,
:class:`Table`, :class:`Figure`, :class:`Audio`). :func:`write_report` renders them into one
HTML file whose PNG figures and WAV files are embedded as base64 ``data:`` URIs, so the page is
readable offline, can be mailed or moved, and needs no server. ``embed=False`` writes relative
links instead (smaller pages next to their files).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_MIME = {".png": "image/png", ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: .3em .7em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
.audio { display: inline-block; margin: .3em 1em .3em 0; font-size: .85em; vertical-align: top; }
.audio audio { display: block; width: 260px; }
.meta { color: #666; font-size: .85em; }
"""


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text (escaped)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table: a header row and rows of cells (numbers are formatted with ``digits``)."""

    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str = ""
    digits: int = 3


@dataclass(frozen=True)
class Figure:
    """A PNG figure with a caption."""

    path: Path
    caption: str = ""


@dataclass(frozen=True)
class Audio:
    """A sound file with a label; rendered as an ``<audio controls>`` player."""

    path: Path
    label: str = ""


Block = Paragraph | Table | Figure | Audio


@dataclass
class Section:
    """A titled part of the report (one experiment)."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


def _cell(v: object, digits: int) -> str:
    if isinstance(v, bool) or v is None:
        return html.escape(str(v) if v is not None else "–")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        return (
            f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
        )
    return html.escape(str(v))


def _src(path: Path, base: Path, embed: bool) -> str:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: report asset not found")
    if embed:
        mime = _MIME.get(p.suffix.lower(), "application/octet-stream")
        return f"data:{mime};base64," + base64.b64encode(p.read_bytes()).decode("ascii")
    return html.escape(Path(os.path.relpath(p.resolve(), base.resolve())).as_posix(), quote=True)


def render(
    title: str, sections: Sequence[Section], *, base: Path, embed: bool = True, subtitle: str = ""
) -> str:
    """Render sections to an HTML string; asset paths are made relative to ``base``."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if subtitle:
        out.append(f'<p class="meta">{html.escape(subtitle)}</p>')
    if len(sections) > 1:
        out.append("<nav><ul>")
        for i, s in enumerate(sections):
            out.append(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>')
        out.append("</ul></nav>")
    for i, s in enumerate(sections):
        out.append(f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>')
        for b in s.blocks:
            if isinstance(b, Paragraph):
                out.append(f"<p>{html.escape(b.text)}</p>")
            elif isinstance(b, Table):
                out.append("<table>")
                if b.caption:
                    out.append(f"<caption>{html.escape(b.caption)}</caption>")
                out.append(
                    "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b.header) + "</tr>"
                )
                for row in b.rows:
                    out.append(
                        "<tr>" + "".join(f"<td>{_cell(c, b.digits)}</td>" for c in row) + "</tr>"
                    )
                out.append("</table>")
            elif isinstance(b, Figure):
                out.append(
                    f'<figure><img src="{_src(b.path, base, embed)}" '
                    f'alt="{html.escape(b.caption or b.path.name, quote=True)}">'
                    f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
                )
            elif isinstance(b, Audio):
                label = html.escape(b.label or b.path.stem)
                out.append(
                    f'<div class="audio"><span>{label}</span>'
                    f'<audio controls preload="metadata" src="{_src(b.path, base, embed)}">'
                    "</audio></div>"
                )
            else:  # pragma: no cover - the Block union is closed
                raise TypeError(f"unknown report block {b!r}")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(
    path: str | os.PathLike[str],
    title: str,
    sections: Sequence[Section],
    *,
    embed: bool = True,
    subtitle: str = "",
) -> Path:
    """Write the report to ``path`` (atomically) and return the path.

    With ``embed=True`` (default) every figure and sound is inside the file.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = render(title, sections, base=p.parent, embed=embed, subtitle=subtitle)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)
    return p
