"""End-to-end: a real uvicorn server on 127.0.0.1 serving the simulated microscope.

Job lifecycle, several clients at once (FIFO, one job at a time on the stage),
cancel mid-job (stage back at start), SSE order, idempotency, queue limit.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

import httpx
import pytest
from sim_server import sim_server

from autofocus.logging import configure_logging
from autofocus.service.api.server import BackgroundServer
from autofocus.settings import load_settings


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("e2e") / "jobs.db", queue_max=16) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """Jobs that take real time (real clock, extra settle) so they can be cancelled."""
    db = tmp_path_factory.mktemp("e2e_slow") / "jobs.db"
    with sim_server(db, queue_max=2, sim={"real_time": True}, focus={"settle_s": 0.05}) as srv:
        yield srv


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _wait_frames(client: httpx.Client, job_id: str, frames: int, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["progress"]["frames"] >= frames or job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} made no progress")


def test_job_lifecycle(server, http):
    mic = server.manager.microscope
    r = http.post("/v1/focus", json={"range_um": 40, "tolerance_um": 0.5})
    assert r.status_code == 202
    job = r.json()
    assert job["state"] in ("queued", "running")
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["request"]["range_um"] == 40 and job["request"]["scorer"] == "tenengrad"
    done = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30})
    assert done.status_code == 200
    job = done.json()
    assert job["state"] == "succeeded", job["error"]
    result = job["result"]
    assert result["success"] and job["error"] is None
    # The stage is parked at the chosen z, which lies near the simulator's true focus.
    assert mic.z_um == pytest.approx(result["best_z_um"], abs=0.1)
    assert abs(result["best_z_um"] - mic.true_focus_z_um()) < 2.0
    assert job["progress"]["frames"] == len(result["curve"]) >= 5
    assert result["frames"] >= len(result["curve"])
    for key in ("created_at", "started_at", "finished_at"):
        assert job[key].endswith("Z")
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]

    listed = http.get("/v1/jobs", params={"state": "succeeded"}).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    assert all("curve" not in (j["result"] or {}) for j in listed["items"])

    png = http.get(f"/v1/jobs/{job['id']}/curve.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5000

    status = http.get("/v1/status").json()
    assert status["ready"] and status["scorer"] == "tenengrad"
    assert status["queue_depth"] == 0 and "version" in status
    scope = http.get("/v1/microscope").json()
    assert scope["driver"] == "sim" and scope["z_limits_um"] == {"min_um": -100.0, "max_um": 100.0}
    assert scope["camera"]["width_px"] > 0

    metrics = http.get("/metrics").text
    assert 'autofocus_jobs{state="succeeded"}' in metrics
    frames = [ln for ln in metrics.splitlines() if ln.startswith("autofocus_frames_total ")]
    assert float(frames[0].split()[1]) >= result["frames"]
    assert "autofocus_focus_duration_seconds_bucket" in metrics
    assert 'autofocus_scoring_latency_seconds_count{source="job"}' in metrics
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200


def test_wait_query_returns_finished_job(http):
    r = http.post("/v1/focus", params={"wait": 30}, json={"scorer": "vol", "range_um": 40})
    assert r.status_code == 200
    assert r.json()["state"] in ("succeeded", "failed")  # ended: the search's verdict is its own
    assert r.json()["finished_at"] is not None
    assert r.json()["result"]["scorer"] == "vol"


def test_several_clients_served_fifo_one_at_a_time(server):
    n = 6
    barrier = threading.Barrier(n)
    ids: list[str | None] = [None] * n

    def submit(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            barrier.wait()
            r = c.post("/v1/focus", json={"range_um": 30 + 2 * i, "max_frames": 40})
            assert r.status_code == 202, r.text
            ids[i] = r.json()["id"]

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        jobs = [c.get(f"/v1/jobs/{i}", params={"wait": 60}).json() for i in ids]
    # The search itself may fail on a given curve (that is the strategy's business); the
    # service must run every job to an end and leave the stage at best z or at the start.
    for j in jobs:
        assert j["state"] in ("succeeded", "failed"), j["error"]
        res = j["result"]
        expected = res["best_z_um"] if j["state"] == "succeeded" else res["start_z_um"]
        assert res["final_z_um"] == pytest.approx(expected, abs=1e-6)
    jobs.sort(key=lambda j: j["created_at"])
    by_start = sorted(jobs, key=lambda j: j["started_at"])
    assert [j["id"] for j in by_start] == [j["id"] for j in jobs]  # FIFO
    for earlier, later in zip(by_start, by_start[1:], strict=False):
        assert earlier["finished_at"] <= later["started_at"]  # one at a time on the stage


def test_sse_events_in_order_live_and_replayed(slow_server):
    # The slow (real-time) microscope makes the stream live: events arrive while it runs.
    http = httpx.Client(base_url=slow_server.url, timeout=60)
    job = http.post("/v1/focus", json={"range_um": 40}).json()
    events = []
    t_first_measurement = None
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        current: dict = {}
        for line in stream.iter_lines():
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
                if current.get("event") == "measurement" and t_first_measurement is None:
                    t_first_measurement = time.time()
            elif line == "" and current:
                events.append(current)
                current = {}
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    states = [e["data"]["state"] for e in events if e["event"] == "state"]
    assert states[:2] == ["queued", "running"] and len(states) == 3
    assert states[2] in ("succeeded", "failed")
    measurements = [e["data"] for e in events if e["event"] == "measurement"]
    assert [m["index"] for m in measurements] == list(range(len(measurements)))
    assert events[1]["event"] == "state" and events[-1]["event"] == "state"
    final = http.get(f"/v1/jobs/{job['id']}").json()
    finished = datetime.fromisoformat(final["finished_at"].replace("Z", "+00:00")).timestamp()
    assert t_first_measurement is not None and t_first_measurement < finished - 0.3  # live
    curve = final["result"]["curve"]
    assert [m["z_um"] for m in measurements] == [p["z_um"] for p in curve]

    replay = http.get(f"/v1/jobs/{job['id']}/events").text
    assert replay.count("event: measurement") == len(measurements)
    resumed = http.get(
        f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(len(events) - 1)}
    ).text
    assert resumed.count("id: ") == 1 and final["state"] in resumed
    http.close()


def test_idempotency_key_returns_same_job(http):
    headers = {"Idempotency-Key": "acq-plate7-well-B3"}
    first = http.post("/v1/focus", json={"range_um": 24}, headers=headers)
    again = http.post("/v1/focus", json={"range_um": 24}, headers=headers)
    assert first.status_code in (200, 202) and again.status_code in (200, 202)
    assert first.json()["id"] == again.json()["id"]
    other = http.post("/v1/focus", json={"range_um": 26}, headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    http.get(f"/v1/jobs/{first.json()['id']}", params={"wait": 30})


def test_cancel_mid_job_returns_stage_to_start(slow_server):
    mic = slow_server.manager.microscope
    with httpx.Client(base_url=slow_server.url, timeout=60) as c:
        start_z = c.get("/v1/microscope").json()["z_um"]
        job = c.post("/v1/focus", json={"range_um": 40, "tolerance_um": 0.25}).json()
        running = _wait_frames(c, job["id"], 3)
        assert running["state"] == "running"
        assert running["progress"]["start_z_um"] == pytest.approx(start_z)
        r = c.delete(f"/v1/jobs/{job['id']}", params={"wait": 30})
        assert r.status_code == 200
        cancelled = r.json()
        assert cancelled["state"] == "cancelled"
        assert cancelled["cancel_requested"] is True
        assert "cancelled" in cancelled["error"]
        assert cancelled["result"]["final_z_um"] == pytest.approx(start_z, abs=1e-6)
        assert mic.z_um == pytest.approx(start_z, abs=0.1)
        assert mic.commanded_z_um[-1] == pytest.approx(start_z)
        # Cancel is idempotent.
        again = c.delete(f"/v1/jobs/{job['id']}")
        assert again.status_code == 200 and again.json()["state"] == "cancelled"
        assert c.get("/v1/status").json()["current_job"] is None


def test_queue_full_answers_429_and_queued_cancel_never_moves(slow_server):
    mic = slow_server.manager.microscope
    with httpx.Client(base_url=slow_server.url, timeout=60) as c:
        running = c.post("/v1/focus", json={"range_um": 40}).json()
        _wait_frames(c, running["id"], 1)
        queued = [c.post("/v1/focus", json={"range_um": 30}).json() for _ in range(2)]
        full = c.post("/v1/focus", json={"range_um": 30})
        assert full.status_code == 429
        assert full.headers["content-type"] == "application/problem+json"
        assert full.headers["retry-after"]
        assert c.get("/v1/status").json()["queue_depth"] == 2
        for q in queued:
            r = c.delete(f"/v1/jobs/{q['id']}")
            assert r.status_code == 200 and r.json()["state"] == "cancelled"
            assert r.json()["started_at"] is None and r.json()["result"] is None
        c.delete(f"/v1/jobs/{running['id']}", params={"wait": 30})
        n_moves = len(mic.commanded_z_um)
        time.sleep(0.3)
        assert len(mic.commanded_z_um) == n_moves  # cancelled queued jobs never ran
        assert c.get("/v1/status").json()["queue_depth"] == 0


def test_clean_shutdown_cancels_running_job_and_keeps_queued(tmp_path):
    from autofocus.service.jobs.store import JobStore

    configure_logging("console", "warning")
    db = tmp_path / "jobs.db"
    settings = load_settings(
        None, database_path=db, sim={"real_time": True}, focus={"settle_s": 0.05}
    )
    srv = BackgroundServer(settings).start()
    mic = srv.manager.microscope
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            start_z = c.get("/v1/microscope").json()["z_um"]
            running = c.post("/v1/focus", json={"range_um": 40}).json()
            queued = c.post("/v1/focus", json={"range_um": 40}).json()
            _wait_frames(c, running["id"], 2)
    finally:
        srv.stop()
    assert mic.z_um == pytest.approx(start_z, abs=0.1)  # the stage went back
    store = JobStore(db)
    stopped = store.get(running["id"])
    assert stopped.state.value == "cancelled" and "shutting down" in stopped.error
    assert store.get(queued["id"]).state.value == "queued"  # runs after the next start
    store.close()


def test_track_mode_rival_policy_and_reason_codes_over_http(server, http):
    """`mode: track` re-focuses with three frames after a search; bad policies are 422;
    every result carries `reason_code` (None on success)."""
    first = http.post("/v1/focus", params={"wait": 30}, json={"range_um": 40}).json()
    assert first["state"] == "succeeded", first["error"]
    assert first["result"]["reason_code"] is None
    z = first["result"]["best_z_um"]
    track = http.post(
        "/v1/focus", params={"wait": 30},
        json={"mode": "track", "expected_z_um": z, "range_um": 40, "rival": "sharpest"},
    ).json()
    assert track["request"]["mode"] == "track" and track["request"]["rival"] == "sharpest"
    assert track["state"] == "succeeded", track["error"]
    assert track["result"]["strategy"] == "track"
    assert track["result"]["frames"] == 3
    assert abs(track["result"]["best_z_um"] - z) < 1.0
    # A revisit with a prior (issue 22): searched near it, the confined check stated.
    revisit = http.post(
        "/v1/focus", params={"wait": 30},
        json={"expected_z_um": z, "expected_sigma_um": 1.0, "range_um": 40},
    ).json()
    assert revisit["request"]["expected_sigma_um"] == 1.0
    assert revisit["state"] == "succeeded", revisit["error"]
    assert revisit["result"]["details"]["path"] == "prior"
    assert revisit["result"]["frames"] < first["result"]["frames"]
    assert "rival_check_um" in revisit["result"]["details"]["prior"]
    for body in ({"rival": "maybe"}, {"mode": "hover"}, {"rival_check": "some"},
                 {"expected_sigma_um": 1.0}, {"expected_sigma_um": -1, "expected_z_um": 0}):
        assert http.post("/v1/focus", json=body).status_code == 422
