"""Figures (PNG files of the right size and content) and the HTML report's structure."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image
import matplotlib.pyplot
import numpy as np
import pytest
import scipy.signal

from mmsin import plots, report
from mmsin.io import save_audio

FS = 4096
T = np.arange(FS) / FS


def _sine(f: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * f * T)


def test_log_spectrogram_peak_at_the_tone_and_dynamic_range() -> None:
    f, _, db = plots.log_spectrogram(_sine(500.0), FS)
    # the loudest bin sits at 500 Hz (bin width 16 Hz)
    assert abs(f[np.argmax(db.mean(axis=1))] - 500.0) <= 16.0
    assert db.max() - db.min() <= plots.DYNAMIC_RANGE_DB + 1e-9
    # scipy's own STFT gives the same peak
    ff, _, z = scipy.signal.stft(_sine(500.0), fs=FS, nperseg=256)
    assert f[np.argmax(db.mean(axis=1))] == ff[np.argmax(np.abs(z).mean(axis=1))]
    with pytest.raises(ValueError, match="time"):
        plots.log_spectrogram(np.zeros((2, 3)), FS)


def _png_shape(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path).shape


def test_figures_have_the_papers_layouts(tmp_path: Path) -> None:
    a, b, c = _sine(220.0), _sine(261.6), _sine(293.7)
    fig4 = plots.reconstruction_figure([("note", a, b), ("piano", b, c)], FS, tmp_path / "4.png")
    fig5 = plots.generation_figure([a, b, c], FS, tmp_path / "5.png")
    fig6 = plots.pitch_interpolation_figure([("pair", a, b, c)], FS, tmp_path / "6.png")
    fig7 = plots.waveform_interpolation_figure(a, b, c, (a + b) / 2, FS, tmp_path / "7.png")
    h4, w4, _ = _png_shape(fig4)
    h6, w6, _ = _png_shape(fig6)
    h5, w5, _ = _png_shape(fig5)
    one = plots.reconstruction_figure([("note", a, b)], FS, tmp_path / "4b.png")
    h1, w1, _ = _png_shape(one)
    assert w1 == pytest.approx(w4, rel=0.05) and h4 > 1.7 * h1  # a row per example
    assert w6 > 2 * h6  # 1 row x 3 columns
    assert h5 > w5 * 0.5  # 3 stacked rows
    assert _png_shape(fig7)[0] > 200
    with pytest.raises(ValueError, match="non-empty"):
        plots.panel_grid([], FS, tmp_path / "x.png")


def _text_boxes(fig: Any) -> list[tuple[int, str, Any]]:
    """(axes index, text, window extent) of every title, axis label and tick label drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for k, ax in enumerate(fig.axes):
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        texts = [ax.title, ax.xaxis.label, ax.yaxis.label]
        texts += [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
        texts += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
        for t in texts:
            if t.get_visible() and t.get_text():
                boxes.append((k, t.get_text(), t.get_window_extent(renderer)))
    return boxes


@pytest.mark.parametrize("which", ["fig4", "fig6"])
def test_panel_titles_and_labels_do_not_overlap(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures: list[Any] = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    a, b, c = _sine(220.0), _sine(261.6), _sine(293.7)
    long = "notes keyboard_acoustic_004-060-075"
    if which == "fig4":
        plots.reconstruction_figure([(long, a, b), ("piano 3", b, c)], FS, tmp_path / "4.png")
    else:
        plots.pitch_interpolation_figure(
            [("60->65", a, b, c), ("64->69", b, c, a)], FS, tmp_path / "6.png"
        )
    boxes = _text_boxes(figures[0])
    clashes = [
        (ta, tb)
        for i, (ka, ta, ba) in enumerate(boxes)
        for kb, tb, bb in boxes[i + 1 :]
        if ka != kb and ba.overlaps(bb)
    ]
    assert not clashes, f"texts of different panels overlap: {clashes[:5]}"
    matplotlib.pyplot.close(figures[0])


def test_scattering_figure(tmp_path: Path) -> None:
    coeffs = np.abs(np.random.default_rng(0).standard_normal((40, 32)))
    out = plots.scattering_figure(_sine(220.0), coeffs, FS, tmp_path / "s.png", hop=128)
    assert _png_shape(out)[0] > 100
    with pytest.raises(ValueError, match="channels, frames"):
        plots.scattering_figure(_sine(220.0), coeffs[0], FS, tmp_path / "s.png", hop=128)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _sections(tmp_path: Path) -> list[report.Section]:
    wav = save_audio(tmp_path / "a.wav", _sine(220.0), FS)
    fig = plots.generation_figure([_sine(220.0)], FS, tmp_path / "g.png")
    s1 = report.Section("Table 1").add(
        report.Paragraph("gap = 10 log10(test/train) <dB>"),
        report.Table(["loss", "train", "test"], [["mse", 0.5612, float("nan")], ["inv", 1, None]]),
    )
    s2 = report.Section("Generation").add(report.Figure(fig, "samples"), report.Audio(wav, "s1"))
    return [s1, s2]


def test_report_is_self_contained(tmp_path: Path) -> None:
    page = report.write_report(tmp_path / "r" / "report.html", "MM-SIN", _sections(tmp_path))
    text = page.read_text()
    parser = _Collect()
    parser.feed(text)
    tags = [t for t, _ in parser.tags]
    assert tags.count("section") == 2 and tags.count("table") == 1 and "nav" in tags
    audio = [a for t, a in parser.tags if t == "audio"]
    img = [a for t, a in parser.tags if t == "img"]
    assert len(audio) == 1 and "controls" in audio[0]
    # embedded assets decode back to the very bytes of the files
    src = audio[0]["src"] or ""
    assert src.startswith("data:audio/wav;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == (tmp_path / "a.wav").read_bytes()
    assert (img[0]["src"] or "").startswith("data:image/png;base64,")
    # text is escaped, numbers formatted, NaN and None shown as a dash
    assert "&lt;dB&gt;" in text and "0.561" in text and text.count("<td>–</td>") == 2
    assert not re.search(r'src="(?!data:)', text)  # nothing refers outside the page


def test_report_with_relative_links_and_missing_asset(tmp_path: Path) -> None:
    page = report.write_report(
        tmp_path / "r" / "report.html", "MM-SIN", _sections(tmp_path), embed=False
    )
    text = page.read_text()
    assert 'src="../a.wav"' in text and 'src="../g.png"' in text
    missing = report.Section("x").add(report.Audio(tmp_path / "nope.wav"))
    with pytest.raises(FileNotFoundError, match=r"nope\.wav"):
        report.write_report(tmp_path / "r2.html", "t", [missing])


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Keep every figure the plots module saves, to inspect what it draws."""
    figs: list[Any] = []
    real = plots._save

    def keep(fig: Any, path: Any) -> Path:
        figs.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figs


def _panels(fig: Any) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(title, waveform drawn, spectrogram frequencies, spectrogram dB) of each panel."""
    axes = fig.get_axes()
    out = []
    for wave, spec in zip(axes[0::2], axes[1::2], strict=True):
        (line,) = wave.get_lines()
        mesh = spec.collections[0]
        db = np.asarray(mesh.get_array())
        coords = mesh.get_coordinates()  # (rows + 1, cols + 1, 2) corners (time, frequency)
        freqs = coords[:, 0, 1]
        out.append((wave.get_title(), np.asarray(line.get_ydata()), freqs, db))
    return out


def test_figures_draw_the_signals_given_in_the_papers_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figs = _captured(monkeypatch)
    tones = {"a": 220.0, "b": 600.0, "c": 1200.0, "d": 1700.0}
    sig = {k: _sine(f) for k, f in tones.items()}
    plots.reconstruction_figure(
        [("note", sig["a"], sig["b"]), ("piano", sig["c"], sig["d"])], FS, tmp_path / "4.png"
    )
    plots.waveform_interpolation_figure(
        sig["a"], sig["b"], sig["c"], sig["d"], FS, tmp_path / "7.png"
    )
    expected = [
        [("note: original", "a"), ("note: G(Z)", "b"), ("piano: original", "c")],
        [("G(Z1)", "a"), ("G(Z2)", "b"), ("latent: G((Z1+Z2)/2)", "c")],
    ]
    expected[0].append(("piano: G(Z)", "d"))
    expected[1].append(("signal: (G(Z1)+G(Z2))/2", "d"))
    for fig, want in zip(figs, expected, strict=True):
        panels = _panels(fig)
        assert [p[0] for p in panels] == [t for t, _ in want]
        for (_, wave, freqs, db), (title, key) in zip(panels, want, strict=True):
            np.testing.assert_array_equal(wave, sig[key])
            # The spectrogram is the signal's, and its loudest row is the tone's frequency.
            _, _, want_db = plots.log_spectrogram(sig[key], FS)
            np.testing.assert_allclose(db.reshape(want_db.shape), want_db)
            centres = np.interp(np.arange(len(want_db)), np.arange(len(freqs)), freqs)
            loudest = centres[np.argmax(want_db.mean(axis=1))]
            assert abs(loudest - tones[key]) <= 2 * FS / 256, (title, loudest)


def test_scattering_figure_draws_the_coefficients_in_log_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figs = _captured(monkeypatch)
    coeffs = np.full((40, 32), 1e-3)
    coeffs[7, 10:20] = 5.0  # one loud channel over frames 10..19
    plots.scattering_figure(_sine(220.0), coeffs, FS, tmp_path / "s.png", hop=128)
    ax_w, ax_c = figs[0].get_axes()
    np.testing.assert_array_equal(ax_w.get_lines()[0].get_ydata(), _sine(220.0))
    img = np.asarray(ax_c.collections[0].get_array()).reshape(40, 32)
    np.testing.assert_allclose(img, np.log10(coeffs + 5e-6))
    rows, cols = np.nonzero(img == img.max())
    assert set(rows) == {7} and list(cols) == list(range(10, 20))
    # Frame n is drawn at time n * hop / fs.
    corners = ax_c.collections[0].get_coordinates()
    assert corners[0, 10, 0] == pytest.approx(10 * 128 / FS)
