"""The watchdog: a hardware call that never returns fails the job with `hardware`, turns
/readyz 503 with the reason and makes the daemon exit non-zero (systemd restarts it).

The hang comes from a FAKE stage: a wrapper around the simulated microscope whose
`move_z` blocks forever from its Nth call on. A driver call that never returns
cannot be produced with the simulator or Micro-Manager's demo adapters, so this
is the one place a fake is used. Everything else is real: `autofocus serve` in a
subprocess, uvicorn on 127.0.0.1, the SQLite file.
"""

from __future__ import annotations

import sys
import threading
import time

import httpx
import pytest
from daemon_proc import Daemon, wait_state

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX exit codes")

HANG_PRELUDE = '''
import os, threading
import autofocus.service.microscopes as _m

class HangingStage:
    """FAKE (tests only): the simulated microscope, except that `move_z` never returns
    from its AUTOFOCUS_TEST_HANG_AT_MOVE-th call on, like a stage controller that
    stopped answering. A real hang cannot be produced otherwise."""

    def __init__(self, inner, hang_at):
        self._inner, self._hang_at, self._moves = inner, hang_at, 0

    def move_z(self, z_um):
        self._moves += 1
        if self._moves >= self._hang_at:
            threading.Event().wait()
        self._inner.move_z(z_um)

    def __getattr__(self, name):
        return getattr(self._inner, name)

_open_sim = _m.open_simulated
_hang_at = int(os.environ["AUTOFOCUS_TEST_HANG_AT_MOVE"])
_m._OPENERS["sim"] = lambda s: HangingStage(_open_sim(s), _hang_at)
'''


def test_hung_stage_fails_the_job_and_the_daemon_exits(tmp_path):
    db = tmp_path / "jobs.db"
    with Daemon(
        db,
        tmp_path / "d.log",
        args=("--real-time",),
        env={"AUTOFOCUS_TEST_HANG_AT_MOVE": "4", "AUTOFOCUS_HARDWARE_TIMEOUT_S": "1.5"},
        prelude=HANG_PRELUDE,
    ) as daemon:
        job = daemon.http.post("/v1/focus", json={"range_um": 40}).json()
        queued = daemon.http.post("/v1/focus", json={"range_um": 40}).json()
        answer: dict = {}

        def long_poll() -> None:
            with httpx.Client(base_url=daemon.url, timeout=30) as c:
                answer["job"] = c.get(f"/v1/jobs/{job['id']}", params={"wait": 20}).json()

        poller = threading.Thread(target=long_poll)
        poller.start()
        wait_state(daemon.http, job["id"], {"running"})
        ready, code = _last_503_then_exit(daemon, within_s=15)
        poller.join(20)
        assert code not in (0, None) and code > 0, code
        assert ready is not None and "did not answer within 1.5 s" in ready["detail"]
        got = answer["job"]
        assert got["state"] == "failed" and got["error_code"] == "hardware", got
        assert "the Z stage did not answer within 1.5 s" in got["error"]

    # After the restart (what systemd does) the failed job is on record; the queued one
    # was not started by the watchdog's exit and waits for a client to ask again.
    with Daemon(db, tmp_path / "d.log", args=("--real-time",)) as again:
        failed = again.http.get(f"/v1/jobs/{job['id']}").json()
        assert failed["state"] == "failed" and failed["error_code"] == "hardware"
        assert again.http.get(f"/v1/jobs/{queued['id']}").json()["state"] == "interrupted"


HANG_XY_PRELUDE = '''
import threading
import autofocus.service.microscopes as _m

class HangingXY:
    """FAKE (tests only): the simulated microscope, except that `move_xy` never returns from
    its 2nd call on, like an XY stage controller that stopped answering."""

    def __init__(self, inner):
        self._inner, self._moves = inner, 0

    def move_xy(self, x_um, y_um):
        self._moves += 1
        if self._moves >= 2:
            threading.Event().wait()
        self._inner.move_xy(x_um, y_um)

    def __getattr__(self, name):
        return getattr(self._inner, name)

_open_sim = _m.open_simulated
_m._OPENERS["sim"] = lambda s: HangingXY(_open_sim(s))
'''


def test_hung_xy_stage_during_a_focus_map_trips_the_watchdog(tmp_path):
    """Issue 23 item 1: `move_xy` went straight to the driver; a hung XY stage stalled the
    daemon for good (/readyz 200, the map `building` forever, jobs queued behind it)."""
    db = tmp_path / "jobs.db"
    with Daemon(
        db,
        tmp_path / "d.log",
        args=("--real-time",),
        env={"AUTOFOCUS_HARDWARE_TIMEOUT_S": "1.5"},
        prelude=HANG_XY_PRELUDE,
    ) as daemon:
        positions = [{"x_um": 1000.0 * i, "y_um": 500.0 * (i % 2)} for i in range(4)]
        answer: dict = {}

        def post_map() -> None:
            with httpx.Client(base_url=daemon.url, timeout=40) as c:
                answer["map"] = c.post("/v1/focus-maps", params={"wait": 30},
                                       json={"positions": positions, "range_um": 20}).json()

        poster = threading.Thread(target=post_map)
        poster.start()
        ready, code = _last_503_then_exit(daemon, within_s=30)
        poster.join(30)
        assert code not in (0, None) and code > 0, code
        assert ready is not None and "the XY stage did not answer within 1.5 s" in (
            ready["detail"])
        got = answer["map"]
        assert got["state"] == "failed" and "the XY stage did not answer" in got["error"], got
    with Daemon(db, tmp_path / "d.log", args=("--real-time",)) as again:
        stored = again.http.get(f"/v1/focus-maps/{got['id']}").json()
        assert stored["state"] == "failed" and "XY stage" in stored["error"], stored


def _last_503_then_exit(daemon, *, within_s: float) -> tuple[dict | None, int]:
    """Poll /readyz until the daemon exits (at most `within_s`); the last 503 body seen
    (None if none) and the exit code."""
    t0 = time.monotonic()
    ready = None
    while daemon.proc.poll() is None and time.monotonic() - t0 < within_s:
        try:
            r = daemon.http.get("/readyz", timeout=2)
            if r.status_code == 503:
                ready = r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return ready, daemon.proc.wait(15)
