"""Bad input never moves the stage and never kills the daemon (real server, simulated scope).

Also covers `POST /v1/score` (uploads: several formats, oversized, corrupt).
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import tifffile
from autofocus_drivers.sim import SimulatedMicroscope
from PIL import Image
from sim_server import sim_server

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("bad") / "jobs.db", max_upload_mb=1.0) as srv:
        yield srv


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture()
def untouched(server):
    """Asserts the stage was neither commanded nor moved during the test."""
    mic = server.manager.microscope
    before = (list(mic.commanded_z_um), mic.z_um)
    yield
    assert (list(mic.commanded_z_um), mic.z_um) == before
    assert server.manager.ready and server.manager.worker_alive


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("urn:")
    assert body["instance"] == r.request.url.path
    return body


@pytest.mark.parametrize(
    "body",
    [
        {"range_um": 1000.0},  # wider than the whole travel
        {"center_z_um": 95.0, "range_um": 20.0},  # runs over the upper limit
        {"center_z_um": -150.0},  # centre outside the limits
    ],
)
def test_range_outside_limits_is_422_and_stage_untouched(http, untouched, body):
    problem = _problem(http.post("/v1/focus", json=body), 422)
    assert problem["error_type"] == "LimitError"
    assert "limits" in problem["detail"] and "not moved" in problem["detail"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{bad json", {"content-type": "application/json"}),
        (b"[1, 2, 3]", {"content-type": "application/json"}),
        (b'"just a string"', {"content-type": "application/json"}),
        (b'{"range_um": NaN}', {"content-type": "application/json"}),
        (b'{"range_um": Infinity}', {"content-type": "application/json"}),
        (b"\xff\xfe\x00garbage", {"content-type": "application/json"}),
    ],
)
def test_malformed_bodies_are_422(http, untouched, content, headers):
    _problem(http.post("/v1/focus", content=content, headers=headers), 422)


def test_non_json_bodies_are_415(http, untouched):
    r = http.post(
        "/v1/focus",
        content=b"range_um=40",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert "application/json" in _problem(r, 415)["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"range_um": "50"},  # a string, not a number
        {"range_um": -5.0},
        {"range_um": 0},
        {"range_nm": 50000},  # wrong unit: unknown field
        {"range": 50},  # no unit at all
        {"tolerance_um": 30.0, "range_um": 40.0},  # tolerance over half the range
        {"max_frames": 2},
        {"max_frames": 10.5},
        {"exposure_ms": 0},
        {"timeout_s": -1},
        {"on_failure": "explode"},
        {"roi": {"x_px": 0, "y_px": 0, "width_px": 100000, "height_px": 64}},  # off the sensor
        {"roi": {"x_px": 0, "y_px": 0}},
        {"center_z_um": True},
        {"strategy": "teleport"},
        {"scorer": "no-such-scorer"},
        {"scorer": ""},
    ],
)
def test_wrong_types_units_and_names_are_422(http, untouched, body):
    problem = _problem(http.post("/v1/focus", json=body), 422)
    assert problem["detail"]


def test_unknown_scorer_names_the_alternatives(http, untouched):
    problem = _problem(http.post("/v1/focus", json={"scorer": "sharpest"}), 422)
    assert problem["error_type"] == "UnknownNameError"
    assert "tenengrad" in problem["detail"]


def test_unknown_jobs_are_404(http, untouched):
    _problem(http.delete("/v1/jobs/does-not-exist"), 404)
    _problem(http.get("/v1/jobs/does-not-exist"), 404)
    _problem(http.get("/v1/jobs/does-not-exist/events"), 404)
    _problem(http.get("/v1/jobs/does-not-exist/curve.png"), 404)
    _problem(http.get("/v1/jobs", params={"cursor": "x"}), 422)
    _problem(http.get("/v1/jobs", params={"state": "sleeping"}), 422)
    _problem(http.get("/v1/nothing-here"), 404)
    _problem(http.put("/v1/focus", json={}), 405)


def test_daemon_still_focuses_after_bad_input(http):
    for _ in range(3):
        http.post("/v1/focus", content=b"{", headers={"content-type": "application/json"})
        http.post("/v1/focus", json={"range_um": 1e4})
    r = http.post("/v1/focus", params={"wait": 30}, json={"range_um": 40})
    assert r.status_code == 200 and r.json()["state"] in ("succeeded", "failed")
    assert r.json()["result"] is not None


# ----------------------------------------------------------------- uploads


def _frames():
    mic = SimulatedMicroscope(seed=1)
    focus_z = mic.true_focus_z_um()
    mic.move_z(focus_z)
    sharp = mic.snap()
    mic.move_z(focus_z + 15.0)
    blurred = mic.snap()
    return sharp, blurred


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tiff(arrs: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.stack(arrs))
    return buf.getvalue()


def test_score_uploads_in_three_formats(http, untouched):
    sharp, blurred = _frames()
    files = [
        ("files", ("blurred.npy", _npy(blurred))),
        ("files", ("sharp.png", _png(sharp))),
        ("files", ("stack.tif", _tiff([blurred, sharp]))),
    ]
    for scorer in ("tenengrad", "vol", "brenner"):
        r = http.post("/v1/score", files=files, params={"scorer": scorer})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scorer"] == scorer
        scores = body["scores"]
        assert [(s["file"], s["index"]) for s in scores] == [
            ("blurred.npy", 0),
            ("sharp.png", 0),
            ("stack.tif", 0),
            ("stack.tif", 1),
        ]
        values = [s["score"] for s in scores]
        assert values[1] > values[0] and values[3] > values[2]
        assert values[1] == pytest.approx(values[3], rel=1e-6)  # PNG and TIFF: same pixels
        assert body["best"] in (1, 3)


def test_score_default_scorer_and_blank_frame(http):
    sharp, _ = _frames()
    blank = np.zeros_like(sharp)
    r = http.post(
        "/v1/score", files=[("files", ("a.npy", _npy(sharp))), ("files", ("b.npy", _npy(blank)))]
    )
    assert r.status_code == 200
    assert r.json()["scorer"] == "tenengrad"
    assert r.json()["scores"][1]["score"] is None  # unusable, not a crash
    assert r.json()["best"] == 0


def test_oversized_upload_is_413(http, untouched):
    big = np.random.default_rng(0).integers(0, 65535, (1024, 1024), dtype=np.uint16)  # 2 MB
    problem = _problem(http.post("/v1/score", files=[("files", ("big.npy", _npy(big)))]), 413)
    assert "max_upload_mb" in problem["detail"]

    # A chunked body without Content-Length is cut off as well.
    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    r = http.post("/v1/focus", content=chunks(), headers={"content-type": "application/json"})
    _problem(r, 413)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.tif", b""),
        ("text.png", b"this is not an image at all"),
        ("truncated.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20),
        ("truncated.tif", b"II*\x00" + b"\x08\x00\x00\x00" + b"\x00" * 10),
        (
            "pickle.npy",
            b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, "
            b"'shape': (2,), }" + b" " * 60 + b"\n" + b"\x00" * 16,
        ),
        ("header_only.npy", _npy(np.zeros((64, 64)))[:128]),
    ],
)
def test_corrupt_uploads_are_422(http, untouched, name, data):
    problem = _problem(http.post("/v1/score", files=[("files", (name, data))]), 422)
    assert name in problem["detail"]


def test_decompression_bomb_is_413_before_decoding(http, untouched):
    bomb = (
        b"\x93NUMPY\x01\x00v\x00{'descr': '<u2', 'fortran_order': False, "
        b"'shape': (100000, 100000), }" + b" " * 48 + b"\n"
    )
    problem = _problem(http.post("/v1/score", files=[("files", ("bomb.npy", bomb))]), 413)
    assert "bomb.npy" in problem["detail"] and "score_max_pixels" in problem["detail"]


def test_score_rejects_unknown_scorer_and_missing_files(http, untouched):
    sharp, _ = _frames()
    _problem(
        http.post(
            "/v1/score", files=[("files", ("a.npy", _npy(sharp)))], params={"scorer": "nope"}
        ),
        422,
    )
    _problem(http.post("/v1/score"), 415)  # not an upload at all
    _problem(http.post("/v1/score", data={"files": "not a file"}), 415)
    _problem(http.post("/v1/score", files={"other": ("a.npy", b"x")}), 422)  # no `files`
