"""`curve.png` for a succeeded, a failed and a cancelled job, from a real daemon.

The failed and cancelled pictures carry their reason as PNG text metadata
(written beside the text drawn on the picture); the cancelled one shows what
was measured before the cancel. `autofocus focus --plot` draws the same picture.
Set `AUTOFOCUS_PLOT_DIR` to keep the three PNGs for a look.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from sim_server import sim_server
from typer.testing import CliRunner

from autofocus.client import AutofocusClient
from autofocus.service.api.plot import curve_png


@pytest.fixture(scope="module")
def af(tmp_path_factory):
    db = tmp_path_factory.mktemp("plot") / "jobs.db"
    sim = {"real_time": True, "focus_z_um": 2.0}
    with (
        sim_server(db, sim=sim, focus={"settle_s": 0.02}) as srv,
        AutofocusClient(srv.url, timeout_s=60) as client,
    ):
        yield client


def _png_text(png: bytes) -> dict[str, str]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] >= 800
    return dict(image.text)  # type: ignore[attr-defined]


def _keep(name: str, png: bytes) -> None:
    folder = os.environ.get("AUTOFOCUS_PLOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_bytes(png)


def test_succeeded_failed_and_cancelled_curves(af):
    ok = af.focus(range_um=40)
    assert ok.succeeded, ok.error
    png = af.curve_png(ok.id)
    _keep("succeeded.png", png)
    text = _png_text(png)
    assert text["State"] == "succeeded" and "Reason" not in text

    # Searching 40 µm centred 60 µm away from the true focus finds a flat curve.
    failed = af.focus(center_z_um=62.0, range_um=40)
    assert failed.state == "failed" and failed.error
    png = af.curve_png(failed.id)
    _keep("failed.png", png)
    text = _png_text(png)
    assert text["State"] == "failed" and text["Reason"] == failed.error

    job = af.focus(wait=False, range_um=40, max_frames=60)
    deadline = time.monotonic() + 30
    while af.job(job.id).raw["progress"].get("frames", 0) < 3:
        assert time.monotonic() < deadline, "the job never measured"
        time.sleep(0.02)
    cancelled = af.cancel(job.id)
    assert cancelled.state == "cancelled", cancelled.raw
    png = af.curve_png(job.id)
    _keep("cancelled.png", png)
    text = _png_text(png)
    assert text["State"] == "cancelled" and text["Reason"] == cancelled.error
    measured = [p for p in (cancelled.raw["result"] or {}).get("curve", [])]
    assert len(measured) >= 3  # the picture has the points measured before the cancel


def test_plot_without_points_or_state_still_renders():
    text = _png_text(curve_png([]))
    assert "State" not in text
    text = _png_text(curve_png([(0.0, None), (1.0, float("nan"))], state="failed",
                               reason="camera returned blank frames"))
    assert text["Reason"] == "camera returned blank frames"


def test_focus_cli_plot_writes_the_same_picture(tmp_path):
    from autofocus.cli import _load_commands
    from autofocus.cli.app import app

    _load_commands()
    runner = CliRunner()
    out = tmp_path / "curve.png"
    res = runner.invoke(app, ["focus", "--seed", "3", "--plot", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert _png_text(out.read_bytes())["State"] == "succeeded"
    res = runner.invoke(app, ["focus", "--seed", "3", "--focus-z-um", "60", "--range-um", "40",
                              "--plot", str(out)])
    assert res.exit_code == 1, res.output
    text = _png_text(out.read_bytes())
    assert text["State"] == "failed" and "no focus signal" in text["Reason"]
    res = runner.invoke(app, ["focus", "--plot", str(tmp_path / "no" / "such.png")])
    assert res.exit_code == 2 and "no such folder" in res.stderr
