"""After a SIGKILL the interrupted job reports the stage position last commanded, exactly,
and jobs that were queued at the crash do not move the stage until a client asks again.

Real `autofocus serve` subprocesses on the real-time simulator. The ground truth
is a reference run of the same job on a fresh daemon with the same seed: the
simulator is deterministic, so the commanded positions of a run are a fixed
sequence, and the crashed job's `commanded_moves`-th position must be the one
it reports.
"""

from __future__ import annotations

import random
import signal
import sys
import time

import pytest
from daemon_proc import Daemon, wait_state

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

JOB = {"range_um": 60, "exposure_ms": 30}


def test_interrupted_job_reports_the_last_commanded_position(tmp_path):
    # Virtual time: the same positions as in real time (only the sleeps differ), faster.
    with Daemon(tmp_path / "ref.db", tmp_path / "ref.log", args=("--virtual-time",)) as ref:
        done = ref.http.post("/v1/focus", params={"wait": 60}, json=JOB).json()
        assert done["result"] is not None, done
        reference = done["result"]["commanded_z_um"]

    rng = random.Random(14)
    wrong = []
    for kill in range(2):
        db = tmp_path / f"crash{kill}.db"
        with Daemon(db, tmp_path / "crash.log", args=("--real-time",)) as first:
            victim = first.http.post("/v1/focus", json=JOB).json()
            waiting = first.http.post(
                "/v1/focus", json={"range_um": 40}, headers={"Idempotency-Key": f"again-{kill}"}
            ).json()
            wait_state(first.http, victim["id"], {"running"})
            time.sleep(rng.uniform(0.1, 1.0))
            first.proc.send_signal(signal.SIGKILL)
            assert first.proc.wait(10) == -signal.SIGKILL

        with Daemon(db, tmp_path / "crash.log", args=("--real-time",)) as second:
            http = second.http
            z0 = http.get("/v1/microscope").json()["z_um"]
            job = http.get(f"/v1/jobs/{victim['id']}").json()
            assert job["state"] == "interrupted"
            moves = job["progress"]["commanded_moves"]
            z = job["progress"]["interrupted_z_um"]
            assert moves >= 1 and z is not None
            if z != reference[moves - 1]:
                wrong.append((z, reference[moves - 1]))
            assert f"z={z:.3f} µm" in job["error"]
            assert "last commanded" in job["error"]

            # The job queued at the crash is interrupted, not run: the stage stays put.
            kept = http.get(f"/v1/jobs/{waiting['id']}").json()
            assert kept["state"] == "interrupted", kept
            assert "not started" in kept["error"] and "not moved" in kept["error"]
            time.sleep(0.5)
            assert http.get("/v1/status").json()["current_job"] is None
            assert http.get("/v1/microscope").json()["z_um"] == z0

            # Asking again with the same Idempotency-Key runs it as a new job.
            again = http.post(
                "/v1/focus",
                params={"wait": 60},
                json={"range_um": 40},
                headers={"Idempotency-Key": f"again-{kill}"},
            )
            assert again.status_code == 200, again.text
            assert again.json()["id"] != waiting["id"]
            assert again.json()["state"] in ("succeeded", "failed")
            # ... and the same key now names the new job.
            same = http.post(
                "/v1/focus", json={"range_um": 40}, headers={"Idempotency-Key": f"again-{kill}"}
            ).json()
            assert same["id"] == again.json()["id"]
    assert not wrong, f"reported vs commanded: {wrong}"


def test_resume_setting_runs_jobs_queued_at_a_crash(tmp_path):
    db = tmp_path / "jobs.db"
    with Daemon(db, tmp_path / "d.log", args=("--real-time",)) as first:
        victim = first.http.post("/v1/focus", json={"range_um": 80, "tolerance_um": 0.25}).json()
        waiting = first.http.post("/v1/focus", json={"range_um": 40}).json()
        wait_state(first.http, victim["id"], {"running"})
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    with Daemon(
        db,
        tmp_path / "d.log",
        args=("--real-time",),
        env={"AUTOFOCUS_RESUME_AFTER_CRASH": "true"},
    ) as second:
        assert second.http.get(f"/v1/jobs/{victim['id']}").json()["state"] == "interrupted"
        kept = second.http.get(f"/v1/jobs/{waiting['id']}", params={"wait": 60}).json()
        assert kept["state"] in ("succeeded", "failed") and kept["result"] is not None
