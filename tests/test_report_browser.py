"""The report opens in a real headless browser (Debian's chromium) and its audio elements load.

A test copy of the page gets a small script that, after the page has loaded, writes each audio
element's readyState, duration and error code (and each image's natural width) into the DOM;
chromium runs it under a virtual-time budget and dumps the DOM, which the test parses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmsin import plots, report
from mmsin.io import save_audio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs Debian's chromium)"
)

_PROBE = """<script>
window.addEventListener('load', function () {
  var audios = Array.from(document.querySelectorAll('audio'));
  var out = document.createElement('pre');
  out.id = 'probe';
  document.body.appendChild(out);
  function write() {
    out.textContent = JSON.stringify({
      audio: audios.map(function (a) {
        return {ready: a.readyState, duration: a.duration, error: a.error ? a.error.code : null};
      }),
      images: Array.from(document.images).map(function (i) { return i.naturalWidth; }),
      tables: document.querySelectorAll('table').length
    });
  }
  audios.forEach(function (a) {
    a.addEventListener('loadedmetadata', write);
    a.addEventListener('error', write);
  });
  write();
});
</script>"""


def _probe(page: Path, tmp_path: Path) -> dict:
    test_copy = page.with_name("probe-" + page.name)
    test_copy.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        test_copy.resolve().as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True).stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, f"probe output missing from the DOM: {dom[-500:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


def _report(tmp_path: Path, *, embed: bool, broken: bool = False) -> Path:
    fs = 4096
    t = np.arange(2 * fs) / fs
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    a = save_audio(tmp_path / "wav" / "a.wav", x, fs)
    b = save_audio(tmp_path / "wav" / "b.wav", 0.3 * np.sin(2 * np.pi * 330 * t[:fs]), fs)
    if broken:
        b.write_bytes(b"RIFF not really a wave file" * 10)
    fig = plots.reconstruction_figure([("note", x, 0.8 * x)], fs, tmp_path / "fig" / "f.png")
    section = report.Section("Reconstruction").add(
        report.Table(["metric", "value"], [["error", 0.25]]),
        report.Figure(fig, "original | reconstruction"),
        report.Audio(a, "original"),
        report.Audio(b, "reconstruction"),
    )
    return report.write_report(tmp_path / "out" / "report.html", "t", [section], embed=embed)


@pytest.mark.parametrize("embed", [True, False])
def test_report_renders_and_audio_loads_in_chromium(tmp_path: Path, embed: bool) -> None:
    result = _probe(_report(tmp_path, embed=embed), tmp_path)
    assert result["tables"] == 1
    assert len(result["images"]) == 1 and result["images"][0] > 100  # the PNG decoded
    assert [a["error"] for a in result["audio"]] == [None, None]
    assert all(a["ready"] >= 1 for a in result["audio"])  # HAVE_METADATA or better
    assert [round(a["duration"], 2) for a in result["audio"]] == [2.0, 1.0]


def test_browser_probe_sees_a_broken_sound(tmp_path: Path) -> None:
    result = _probe(_report(tmp_path, embed=True, broken=True), tmp_path)
    assert result["audio"][0]["error"] is None
    assert result["audio"][1]["error"] is not None  # MEDIA_ERR_* code from the decoder
