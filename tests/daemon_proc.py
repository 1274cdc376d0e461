"""A real `autofocus serve` in a subprocess, for tests that need signals, /proc or exit codes.

`Daemon(db, log, args=[...], env={...})` starts the daemon on a free loopback
port with the repository on the path; `wait_ready()`, `http` (an httpx client),
`vm_hwm_bytes()` (peak resident memory from /proc), `close()`. `prelude` is Python
run in the child before the CLI (used to install a fake driver for a hang); `wrap` is a
command line the daemon's is appended to (e.g. to run it in its own mount namespace).
`with Daemon(...) as d:` waits until it is ready and closes it on leaving.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from autofocus.service.api.server import free_port

REPO = Path(__file__).resolve().parents[1]


class Daemon:
    """`autofocus serve` in a subprocess on a free loopback port."""

    def __init__(
        self,
        db: Path,
        log: Path,
        *,
        args: Sequence[str] = ("--real-time",),
        env: Mapping[str, str] | None = None,
        prelude: str = "",
        wrap: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **os.environ,
            "AUTOFOCUS_FOCUS__SETTLE_S": "0.03",  # real-time jobs last a few seconds
            "AUTOFOCUS_LOG_LEVEL": "info",
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        full_env.pop("AUTOFOCUS_CONFIG", None)
        full_env.update(env or {})
        self.log = log.open("ab")
        code = f"{prelude}\nfrom autofocus.cli import main; main()"
        self.proc = subprocess.Popen(
            [
                *wrap,
                sys.executable,
                "-c",
                code,
                "serve",
                "--port",
                str(self.port),
                "--database",
                str(db),
                "--log-format",
                "json",
                *args,
            ],
            cwd=REPO,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def __enter__(self) -> Daemon:
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the daemon exited while starting"
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the daemon did not become ready")

    def vm_hwm_bytes(self) -> int:
        """Peak resident set size of the daemon process (VmHWM in /proc/PID/status)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def wait_frames(http: httpx.Client, job_id: str, frames: int, timeout_s: float = 30) -> dict:
    """Poll a job until it runs and has at least `frames` measurements; return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"]["frames"] >= frames:
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.02)
    raise AssertionError("the job made no progress")


def wait_state(http: httpx.Client, job_id: str, states: set[str], timeout_s: float = 30) -> dict:
    """Poll a job until its state is one of `states`; return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {states}")
