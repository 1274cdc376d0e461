"""Crash test: SIGKILL the daemon (a real `autofocus serve` subprocess) mid-job, restart it.

The running job must read `interrupted` (with the last known stage position),
earlier jobs and results must be intact, the queued job is kept and runs,
and the daemon accepts new jobs.
"""

from __future__ import annotations

import signal
import sys

import pytest
from daemon_proc import Daemon, wait_frames

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def test_sigkill_mid_job_then_restart(tmp_path):
    db = tmp_path / "jobs.db"
    log = tmp_path / "daemon.log"
    with Daemon(db, log) as first:
        done = first.http.post("/v1/focus", params={"wait": 60}, json={"range_um": 40}).json()
        assert done["state"] in ("succeeded", "failed") and done["result"] is not None
        cancelled = first.http.post("/v1/focus", json={"range_um": 40}).json()
        wait_frames(first.http, cancelled["id"], 1)
        cancelled = first.http.delete(f"/v1/jobs/{cancelled['id']}", params={"wait": 30}).json()
        assert cancelled["state"] == "cancelled"

        victim = first.http.post("/v1/focus", json={"range_um": 80, "tolerance_um": 0.25}).json()
        waiting = first.http.post("/v1/focus", json={"range_um": 40}).json()
        running = wait_frames(first.http, victim["id"], 3)
        assert first.http.get(f"/v1/jobs/{waiting['id']}").json()["state"] == "queued"
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL

    with Daemon(db, log) as second:
        http = second.http
        job = http.get(f"/v1/jobs/{victim['id']}").json()
        assert job["state"] == "interrupted"
        assert "stopped while this job was running" in job["error"]
        assert "last commanded to" in job["error"]
        last_z = job["progress"]["interrupted_z_um"]
        assert last_z is not None and job["progress"]["frames"] >= running["progress"]["frames"]
        assert f"z={last_z:.3f}" in job["error"]
        assert job["finished_at"] is not None and job["result"] is None

        # Earlier jobs and their results are intact.
        assert http.get(f"/v1/jobs/{done['id']}").json() == done
        assert http.get(f"/v1/jobs/{cancelled['id']}").json() == cancelled
        replay = http.get(f"/v1/jobs/{victim['id']}/events").text
        assert replay.rstrip().endswith("}") and '"state": "interrupted"' in replay
        assert replay.count("event: measurement") == job["progress"]["frames"]

        # The queued job was kept, but not run (it waits for a client to ask again: see
        # test_crash_position.py); new jobs are accepted.
        kept = http.get(f"/v1/jobs/{waiting['id']}").json()
        assert kept["state"] == "interrupted" and kept["result"] is None
        new = http.post("/v1/focus", params={"wait": 60}, json={"range_um": 40}).json()
        assert new["state"] in ("succeeded", "failed")
        states = {j["id"]: j["state"] for j in http.get("/v1/jobs").json()["items"]}
        assert len(states) == 5 and states[victim["id"]] == "interrupted"

        # SIGTERM stops cleanly (uvicorn re-raises the signal after its graceful shutdown).
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) in (0, -signal.SIGTERM)
        second.log.flush()
        assert log.read_text().count('"event": "service.stopped"') == 1  # only the 2nd run
