"""Failure plots show why (issue 19, item 7): both rival planes marked, the zoom on the
chosen plane, the shaded band in the legend, no clipped labels, the reason's z drawn.

Real searches on the simulator (`autofocus focus --json`), drawn as `--plot` draws them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autofocus.cli.focus import plot_arguments
from autofocus.service.api.plot import curve_figure, reason_z_values

REPO = Path(__file__).resolve().parents[1]


def _report(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    proc = subprocess.run([sys.executable, "-m", "autofocus", "focus", "--json", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def rival() -> dict:
    report = _report("--seed", "0", "--debris-dz-um", "15")
    assert report["reason_code"] == "rival_peak"
    return report


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def _draw(report: dict):
    fig = curve_figure(**plot_arguments(report))
    fig.canvas.draw()
    main, zoom = fig.axes[:2]
    return fig, main, zoom


def test_rival_peak_plot_marks_both_planes(rival):
    planes = [p["z_um"] for p in rival["details"]["rivals"]]
    fig, main, zoom = _draw(rival)
    marked = [lab for lab in _labels(main) if lab.startswith("candidate plane")]
    assert len(marked) == 2
    for z in planes:
        assert any(f"{z:.2f}" in lab for lab in marked)
    lo, hi = main.get_xlim()
    assert all(lo < z < hi for z in planes)


def test_rival_nearest_zoom_centres_on_the_chosen_plane():
    report = _report("--seed", "0", "--debris-dz-um", "15", "--rival", "nearest")
    assert report["success"]
    fig, main, zoom = _draw(report)
    lo, hi = zoom.get_xlim()
    assert (lo + hi) / 2 == pytest.approx(report["best_z_um"], abs=1e-6)


def test_shaded_band_is_in_the_legend_and_no_label_is_clipped(rival):
    fig, main, zoom = _draw(rival)
    legend = [t.get_text() for t in main.get_legend().get_texts()]
    assert any("zoomed range" in t for t in legend)
    renderer = fig.canvas.get_renderer()
    box = zoom.get_window_extent(renderer)
    for text in zoom.texts:  # the measurement-order numbers
        if not text.get_visible():
            continue
        ext = text.get_window_extent(renderer)
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, text.get_text()
        assert box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, text.get_text()
    fig_box = fig.bbox
    for ax in (main, zoom):
        title = ax.title.get_window_extent(renderer)
        assert fig_box.x0 <= title.x0 and title.x1 <= fig_box.x1


def test_every_z_the_reason_names_is_on_the_plot():
    flat = _report("--seed", "0", "--center-z-um", "70", "--range-um", "20")
    assert flat["reason_code"] == "flat_curve"
    named = reason_z_values(flat["reason"])
    assert named
    fig, main, zoom = _draw(flat)
    labels = " ".join(_labels(main))
    for z in named:
        assert f"{z:.2f}" in labels
    assert reason_z_values("two candidate focal planes at z = -2.09 and 12.86 µm") == [
        -2.09, 12.86]
