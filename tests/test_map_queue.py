"""Focus maps obey the job queue's rules (issue 23, item 4), on a real uvicorn and SQLite file.

Before: every map request was accepted (202) past `queue_max`, maps ran ahead of the focus
jobs queued before them (status showed no current job) and a map could not be cancelled.
"""

from __future__ import annotations

import time

import httpx
import pytest

GRID = {"x_min_um": 0, "x_max_um": 90_000, "y_min_um": 0, "y_max_um": 90_000, "nx": 10, "ny": 10}


@pytest.fixture()
def server(tmp_path):
    from sim_server import sim_server

    # real_time: a 100-point map lasts long enough to be queued behind and cancelled.
    with sim_server(tmp_path / "jobs.db", sim={"real_time": True}, queue_max=4,
                    focus={"settle_s": 0.03}) as srv:
        yield srv


def _wait_for(http: httpx.Client, path: str, pred, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = http.get(path).json()
        if pred(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_maps_are_queued_fifo_limited_listed_and_cancellable(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        first = http.post("/v1/focus-maps", json={"grid": GRID, "range_um": 20})
        assert first.status_code == 202, first.text
        first_id = first.json()["id"]
        status = _wait_for(http, "/v1/status", lambda s: s["current_map"] == first_id)
        assert status["current_map"] == first_id and status["current_job"] is None

        # One more map, then a focus job: FIFO, the job waits behind the map queued first.
        second = http.post("/v1/focus-maps", json={"grid": GRID, "range_um": 20})
        assert second.status_code == 202
        job = http.post("/v1/focus", json={"range_um": 20})
        assert job.status_code == 202
        job_id = job.json()["id"]
        # Fill the queue: 100 more map requests, all past queue_max 4 (2 waiting already)
        codes = [http.post("/v1/focus-maps", json={"grid": GRID}).status_code
                 for _ in range(100)]
        assert codes.count(202) == 2 and codes.count(429) == 98, codes
        assert http.get("/v1/status").json()["queue_depth"] == 4

        # The list: newest first, each a summary of the map (no per-point list).
        items = http.get("/v1/focus-maps").json()["items"]
        assert len(items) == 4 and items[-1]["id"] == first_id and items[-2]["id"] == (
            second.json()["id"])
        created = [m["created_s"] for m in items]
        assert created == sorted(created, reverse=True)
        for m in items:
            assert {"id", "state", "created_s", "n_points", "error", "kind"} <= set(m)
            assert "points" not in m
        assert items[-1]["state"] == "building"

        # Cancel the queued maps: they end at once, nothing moved.
        for m in items[:2] + items[2:3]:
            r = http.delete(f"/v1/focus-maps/{m['id']}")
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "cancelled" and "not moved" in r.json()["error"]
        # The running one: stops at its next move; the stage goes back to where that
        # point's search started.
        r = http.delete(f"/v1/focus-maps/{first_id}", params={"wait": 30})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "cancelled", r.json()
        assert "cancelled after" in r.json()["error"]
        assert http.delete("/v1/focus-maps/nope").status_code == 404
        # The focus job queued behind the cancelled maps now runs and ends.
        done = http.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
        assert done["state"] in ("succeeded", "failed"), done
        assert http.get(f"/v1/focus-maps/{first_id}").json()["state"] == "cancelled"


def test_map_predictions_are_finite_and_inside_the_z_limits_or_refused(tmp_path):
    """Issue 23 item 7: a map fitted from degenerate points answered GET …/z with 500 (a
    non-finite number in JSON), and 35,000 µm was returned with Z limits ±100 µm."""
    from sim_server import sim_server

    with sim_server(tmp_path / "jobs.db") as srv, httpx.Client(base_url=srv.url) as http:
        steep = http.post("/v1/focus-maps", json={"points": [
            {"x_um": 0, "y_um": 0, "z_um": 0}, {"x_um": 1000, "y_um": 0, "z_um": 10},
            {"x_um": 0, "y_um": 1000, "z_um": 0}]}).json()
        ok = http.get(f"/v1/focus-maps/{steep['id']}/z", params={"x_um": 500, "y_um": 0})
        assert ok.status_code == 200 and ok.json()["z_um"] == pytest.approx(5.0)
        far = http.get(f"/v1/focus-maps/{steep['id']}/z",
                       params={"x_um": 3_500_000, "y_um": 0})
        assert far.status_code == 422, far.text
        assert far.headers["content-type"] == "application/problem+json"
        assert "outside the Z limits" in far.json()["detail"]
        degenerate = http.post("/v1/focus-maps", json={"points": [
            {"x_um": 0, "y_um": 0, "z_um": 0}, {"x_um": 1e-300, "y_um": 0, "z_um": 0},
            {"x_um": 0, "y_um": 1e-300, "z_um": 1e6}]})
        assert degenerate.status_code == 201  # fitted, but its far predictions overflow
        r = http.get(f"/v1/focus-maps/{degenerate.json()['id']}/z",
                     params={"x_um": 1e7, "y_um": 1e7})
        assert r.status_code == 422, r.text
        assert "finite" in r.json()["detail"]
