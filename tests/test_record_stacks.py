"""`autofocus record-stacks`: real stacks from the simulated microscope and from real MMCore
(DemoCamera in its bead mode), labelled where the classical measures agree, written in the
corpus layout, then calibrated on — and `serve --scorer` for the model that comes out.

No fakes: the simulator, a real uvicorn (sim_server), a real `autofocus serve` process and
real MMCore with the mm-test-adapters DemoCamera/DStage/DXYStage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from autofocus_drivers.base import ZLimits
from typer.testing import CliRunner

from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.service.microscopes import open_microscope
from autofocus.settings import load_settings
from autofocus.stacks.readers import iter_corpus, read_manifest
from autofocus.stacks.record import (
    RecordCancelled,
    RecordError,
    plan_planes,
    record_stacks,
)

_load_commands()
REPO = Path(__file__).resolve().parents[1]
SMALL = {"width_px": 128, "height_px": 128}


def _sim(tmp_path: Path, **sim):
    settings = load_settings(None, database_path=tmp_path / "x.db",
                             sim={**SMALL, "focus_z_um": 2.0, **sim})
    return open_microscope(settings)


def test_plan_keeps_only_planes_inside_the_limits():
    z = plan_planes(0.0, 20.0, 2.0, -5.0, 100.0)
    assert z.min() >= -5.0 and z.max() == 10.0 and np.allclose(np.diff(z), 2.0)
    with pytest.raises(RecordError, match="only 2 plane"):
        plan_planes(0.0, 20.0, 2.0, 8.0, 100.0)
    with pytest.raises(RecordError, match="step_um must be a positive"):
        plan_planes(0.0, 20.0, 0.0, -5.0, 5.0)


def test_sim_stacks_labelled_with_optics_and_the_stage_back_at_its_start(tmp_path):
    mic = _sim(tmp_path)
    mic.move_xy(10.0, 20.0)
    mic.move_z(1.0)
    report = record_stacks(mic, tmp_path / "c", positions=[(0, 0), (300, 0)],
                           range_um=16, step_um=1.0, tolerance_um=1.0)
    assert (mic.z_um, mic.xy_um) == (1.0, (10.0, 20.0))
    assert report["labelled"] == 2 and report["frames"] == 34
    labels = read_manifest(tmp_path / "c")
    assert list(labels) == ["stack001", "stack002"]
    for lab in labels.values():
        # Focus at 2 µm: the label is within a plane of it.
        assert lab.label == "classical" and abs(lab.best_z_um - 2.0) <= 1.0
        assert lab.na == 0.75 and lab.wavelength_nm == 520 and lab.pixel_um == 0.325
        assert lab.dof_um == pytest.approx(mic.depth_of_field_um)
        assert len(lab.paths) == 17 and all(Path(p).is_file() for p in lab.paths)
        assert Path(lab.paths[0]).name == f"{lab.stack}_z-7.0000.tif"
    # A second run extends the corpus under new names.
    record_stacks(mic, tmp_path / "c", range_um=4, step_um=1.0)
    assert list(read_manifest(tmp_path / "c")) == ["stack001", "stack002", "stack003"]


def test_limits_are_never_crossed_and_a_stack_at_the_edge_is_flagged(tmp_path):
    """Limits [-100, 6]: the planes above 6 µm are left out (the simulator would raise
    LimitError for any command beyond); focus at -20 µm lies far outside the planes -1…6,
    so the measures see no peak: the stack is flagged (edge or disagree), not labelled."""
    settings = load_settings(None, database_path=tmp_path / "x.db", z_max_um=6.0,
                             sim={**SMALL, "focus_z_um": -20.0})
    mic = open_microscope(settings)
    assert mic.z_limits_um == ZLimits(-100.0, 6.0)
    report = record_stacks(mic, tmp_path / "e", center_z_um=4.0, range_um=10, step_um=1.0)
    s = report["stacks"][0]
    assert s["z_max_um"] == 6.0 and s["planes"] == 8
    assert s["flagged"] and s["label"] in ("edge", "disagree") and s["best_z_um"] is None
    assert mic.z_um == 0.0
    (_, label), = list(iter_corpus(tmp_path / "e"))
    assert not label.labelled


def test_cancel_returns_the_stage_and_keeps_finished_stacks(tmp_path):
    mic = _sim(tmp_path)
    cancel = threading.Event()

    def progress(msg: str) -> None:
        if msg.startswith("stack002"):
            cancel.set()

    with pytest.raises(RecordCancelled):
        record_stacks(mic, tmp_path / "k", positions=[(0, 0), (100, 0)], range_um=6,
                      step_um=1.0, cancel=cancel, progress=progress)
    assert mic.z_um == 0.0 and mic.xy_um == (0.0, 0.0)
    assert list(read_manifest(tmp_path / "k")) == ["stack001"]


def test_cli_record_on_another_simulated_instrument_then_calibrate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "site"
    result = runner.invoke(app, ["record-stacks", str(out), "--driver", "sim", "--seed", "5",
                                 "--position", "0,0", "--position", "200,50", "--range-um",
                                 "30", "--step-um", "1.5", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert report["labelled"] == 2, report
    result = runner.invoke(app, ["calibrate", str(out), "--out", str(tmp_path / "site.onnx"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert "warning: only 2 labelled stacks" in result.stderr
    # In-process, a log line another test configured may precede the JSON on stdout.
    cal = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert cal["stacks"] == ["stack001", "stack002"]
    assert "log_distance" in cal["rows_refit"] and cal["defocus"]["summary"]["stacks"] == 2


def test_cli_bad_position_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["record-stacks", str(tmp_path / "x"), "--position", "1"])
    assert result.exit_code == 2
    assert "X,Y" in result.output


def test_http_record_stacks_job(tmp_path):
    from sim_server import sim_server

    with sim_server(tmp_path / "jobs.db", sim={**SMALL, "focus_z_um": 1.0}) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            r = http.post("/v1/record-stacks?wait=60",
                          json={"folder": "site", "range_um": 8, "step_um": 1,
                                "positions": [{"x_um": 0, "y_um": 0}],
                                "optics": {"na": 0.75, "wavelength_nm": 520}})
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["state"] == "succeeded", body
            assert body["result"]["labelled"] == 1
            out = Path(body["out_dir"])
            assert out == (tmp_path / "recordings" / "site").resolve()
            assert read_manifest(out)["stack001"].na == 0.75
            got = http.get(f"/v1/record-stacks/{body['id']}")
            assert got.status_code == 200 and got.json()["state"] == "succeeded"
            assert http.get("/v1/record-stacks/nope").status_code == 404
            bad = http.post("/v1/record-stacks", json={"folder": "../etc"})
            assert bad.status_code == 422
            outside = http.post("/v1/record-stacks?wait=30",
                                json={"folder": "x", "center_z_um": 5000})
            assert outside.json()["state"] == "failed"
            assert "Z limits" in outside.json()["error"]


# --- serve --scorer ---------------------------------------------------------------------


def _serve(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    return subprocess.run([sys.executable, "-m", "autofocus", "serve", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.parametrize("scorer,message", [
    ("nosuch", "unknown scorer 'nosuch'"),
    ("missing.onnx", "model file 'missing.onnx' does not exist"),
    ("BAD", "model card"),
])
def test_serve_scorer_is_checked_at_start(scorer, message, tmp_path):
    if scorer == "BAD":
        scorer = str(tmp_path / "bad.onnx")
        Path(scorer).write_bytes(b"not a model")
    proc = _serve("--scorer", scorer, "--database", str(tmp_path / "j.db"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_serve_with_a_calibrated_model_names_its_file_and_card(tmp_path):
    from daemon_proc import Daemon

    corpus = tmp_path / "c"
    mic = _sim(tmp_path)
    record_stacks(mic, corpus, positions=[(0, 0), (200, 0)], range_um=12, step_um=1.0)
    result = CliRunner().invoke(app, ["calibrate", str(corpus), "--out",
                                      str(tmp_path / "site.onnx")])
    assert result.exit_code == 0, result.output
    with Daemon(tmp_path / "j.db", tmp_path / "log.txt",
                args=("--scorer", str(tmp_path / "site.onnx"))) as d:
        r = d.http.post("/v1/focus?wait=60", json={"range_um": 30})
        assert r.status_code in (200, 201), r.text
        job = r.json()
        scorer = (job.get("result") or {}).get("scorer") or job.get("request", {}).get("scorer")
        assert "site.onnx (focusnet v3-calibrated)" in json.dumps(job), job
        assert scorer is not None


# --- real MMCore, DemoCamera in bead mode ---------------------------------------------------


@pytest.mark.mm
def test_record_on_micromanager_democamera_beads_then_calibrate(tmp_path):
    try:
        from autofocus_drivers.micromanager import (
            demo_adapter_dir,
            write_democamera_focus_config,
        )

        adapters = demo_adapter_dir()
        import pycromanager  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Micro-Manager extra not installed ({exc})")
    cfg = write_democamera_focus_config(tmp_path)
    assert "Property,Camera,Mode,Fluorescent Beads" in cfg.read_text()
    out = tmp_path / "mm"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    base = [sys.executable, "-m", "autofocus"]
    rec = subprocess.run(
        [*base, "record-stacks", str(out), "--driver", "micromanager", "--mm-headless",
         str(adapters), "--mm-config", str(cfg), "--z-min-um", "-20", "--z-max-um", "20",
         "--position", "0,0", "--position", "50,0", "--range-um", "8", "--step-um", "1",
         "--na", "0.5", "--wavelength-nm", "520", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rec.returncode == 0, rec.stderr
    report = json.loads(rec.stdout)
    # DemoCamera's beads are sharpest at Z = 0 (within a plane: its blur hardly changes
    # over the first µm, so camera noise picks among 0 and ±1): the measures agree there.
    for s in report["stacks"]:
        assert s["label"] == "classical" and abs(s["best_z_um"]) <= 1.0, s
    labels = read_manifest(out)
    assert all(lab.na == 0.5 and lab.pixel_um is not None for lab in labels.values())
    cal = subprocess.run([*base, "calibrate", str(out), "--out", str(tmp_path / "mm.onnx"),
                          "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert cal.returncode == 0, cal.stderr
    assert json.loads(cal.stdout)["stacks"] == ["stack001", "stack002"]
    assert "warning: only 2 labelled stacks" in cal.stderr


def test_manifest_optics_columns_are_optional_and_checked(tmp_path):
    from autofocus.errors import StackError

    real = REPO.parent / "shared" / "data" / "real"
    if (real / "manifest.csv").is_file():  # the shared corpus has no optics columns
        assert all(lab.na is None and lab.dof_um is None
                   for lab in read_manifest(real).values())
    root = tmp_path / "m"
    (root / "a").mkdir(parents=True)
    head = "stack,path,z_um,best_z_um,tolerance_um,label,na,wavelength_nm,immersion_index\n"
    (root / "manifest.csv").write_text(head + "a,a/a_z+0.tif,0,0,0.5,peak,1.4,500,1.515\n"
                                       "a,a/a_z+1.tif,1,0,0.5,peak,1.4,500,1.515\n")
    lab = read_manifest(root)["a"]
    assert lab.dof_um == pytest.approx(0.5 * 1.515 / 1.4**2)  # no pixel: wave term only
    assert lab.pixel_um is None
    (root / "manifest.csv").write_text(head + "a,a/a_z+0.tif,0,0,0.5,peak,-1,500,1\n")
    with pytest.raises(StackError, match="na must be positive"):
        read_manifest(root)
