"""SIGTERM with a watcher open (an SSE stream or a `?wait=` long-poll): the running job is
cancelled at once (stage returned to its start), queued jobs are kept and run after the
next start. A real `autofocus serve` subprocess on the real-time simulator."""

from __future__ import annotations

import signal
import sys
import threading

import httpx
import pytest
from daemon_proc import Daemon, wait_frames

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")

LONG_JOB = {"range_um": 80, "tolerance_um": 0.25}


@pytest.mark.parametrize("watcher", ["sse", "wait"])
def test_sigterm_with_a_watcher_cancels_the_running_job_and_keeps_the_queue(tmp_path, watcher):
    db = tmp_path / "jobs.db"
    with Daemon(db, tmp_path / "d.log", args=("--real-time",)) as daemon:
        running = daemon.http.post("/v1/focus", json=LONG_JOB).json()
        queued = daemon.http.post("/v1/focus", json={"range_um": 40}).json()
        seen: list[str] = []

        def watch() -> None:
            with httpx.Client(base_url=daemon.url, timeout=60) as c:
                try:
                    if watcher == "sse":
                        with c.stream("GET", f"/v1/jobs/{running['id']}/events") as r:
                            for line in r.iter_lines():
                                seen.append(line)
                    else:
                        r = c.get(f"/v1/jobs/{running['id']}", params={"wait": 60})
                        seen.append(r.text)
                except httpx.TransportError:
                    pass

        t = threading.Thread(target=watch)
        t.start()
        wait_frames(daemon.http, running["id"], 1)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(30) in (0, -signal.SIGTERM)
        t.join(30)
        assert any('"cancelled"' in s for s in seen), seen[-3:]

    with Daemon(db, tmp_path / "d.log", args=("--real-time",)) as again:
        job = again.http.get(f"/v1/jobs/{running['id']}").json()
        assert job["state"] == "cancelled", job["state"]
        assert "shutting down" in job["error"]
        assert job["result"]["final_z_um"] == pytest.approx(job["result"]["start_z_um"], abs=0.1)
        kept = again.http.get(f"/v1/jobs/{queued['id']}", params={"wait": 60}).json()
        assert kept["state"] in ("succeeded", "failed"), kept["state"]
        assert kept["started_at"] > job["finished_at"]  # it ran after the restart
