"""Edges of the HTTP API that used to answer 500 or say the wrong thing (real uvicorn):
cursors and Last-Event-ID that are not plain event numbers, body limits of JSON
endpoints, the per-request pixel budget of /v1/score, the 413 wording, integer
fields given as 3.0, and the 405 `Allow` header."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from sim_server import sim_server

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("edges") / "jobs.db") as srv:
        yield srv


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    return r.json()


@pytest.mark.parametrize(
    "cursor", ["%C2%B2", "99999999999999999999", "9223372036854775808", "-1", "1e3", " 1"]
)
def test_bad_cursors_are_422(http, cursor):
    r = http.get(f"/v1/jobs?cursor={cursor}")
    assert "cursor" in _problem(r, 422)["detail"]


@pytest.mark.parametrize("value", ["²", "99999999999999999999", "-3", "1.5"])
def test_bad_last_event_id_is_422(http, value):
    job = http.post("/v1/focus", json={"range_um": 40}, params={"wait": 30}).json()
    r = http.get(
        f"/v1/jobs/{job['id']}/events",
        headers={"Last-Event-ID": value.encode("utf-8")},
    )
    assert "Last-Event-ID" in _problem(r, 422)["detail"]
    # A good one still replays from after that event.
    r = http.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "1"})
    assert r.status_code == 200 and "id: 1\n" not in r.text and "id: 2\n" in r.text


def test_json_endpoints_have_a_small_body_limit(http, server):
    limit = int(server.settings.max_json_kb * 1024)
    body = b'{"scorer": "' + b"x" * limit + b'"}'
    problem = _problem(
        http.post("/v1/focus", content=body, headers={"Content-Type": "application/json"}), 413
    )
    assert f"{server.settings.max_json_kb:g} KiB" in problem["detail"]


def test_413_message_uses_binary_units(http):
    r = http.post(
        "/v1/score",
        content=b"x" * (65 * 1024 * 1024),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    detail = _problem(r, 413)["detail"]
    assert "64 MiB" in detail and "67.1" not in detail


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_score_has_a_decoded_pixel_budget(http, server):
    budget = server.settings.score_max_pixels
    side = int((budget // 3) ** 0.5)
    frame = _npy(np.zeros((side, side), np.uint8))
    files = [("files", (f"f{i}.npy", frame)) for i in range(4)]
    problem = _problem(http.post("/v1/score", files=files), 413)
    assert "pixels" in problem["detail"] and "score_max_pixels" in problem["detail"]
    ok = _npy(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    assert http.post("/v1/score", files=[("files", ("a.npy", ok))]).status_code == 200


def test_integer_fields_accept_whole_floats(http):
    r = http.post("/v1/focus", json={"range_um": 40, "max_frames": 30.0}, params={"wait": 30})
    assert r.status_code == 200, r.text
    assert r.json()["request"]["max_frames"] == 30
    roi = {"x_px": 0.0, "y_px": 0, "width_px": 64.0, "height_px": 64}
    r = http.post("/v1/focus", json={"range_um": 40, "roi": roi}, params={"wait": 30})
    assert r.status_code == 200, r.text
    _problem(http.post("/v1/focus", json={"max_frames": 30.5}), 422)
    _problem(http.post("/v1/focus", json={"max_frames": True}), 422)
    _problem(http.post("/v1/focus", json={"max_frames": "30"}), 422)


def test_405_allow_lists_every_method_of_the_path(http):
    r = http.put("/v1/jobs/abc", json={})
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["allow"].split(",")}
    assert {"GET", "DELETE"} <= allowed
    r = http.delete("/v1/focus")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


def test_tolerance_below_the_stage_resolution_is_refused(http, server):
    floor = server.settings.z_resolution_um
    problem = _problem(http.post("/v1/focus", json={"tolerance_um": floor / 2}), 422)
    assert "tolerance_um" in problem["detail"] and "z_resolution_um" in problem["detail"]
    r = http.post(
        "/v1/focus", json={"range_um": 2.0, "tolerance_um": floor * 10}, params={"wait": 30}
    )
    assert r.status_code in (200, 202), r.text
