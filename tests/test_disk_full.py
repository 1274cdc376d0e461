"""A full disk mid-job never strands the stage (issue 23, item 3).

Real parts only: `autofocus serve` in a subprocess whose SQLite file lies on a real 4 MiB
tmpfs in the daemon's own mount namespace (`unshare -rm`, an unprivileged user namespace);
a shell in that namespace fills the file system with `dd` mid-job and frees it on a flag
file, so SQLite sees a real ENOSPC ("database or disk is full"). Skipped where user
namespaces are not allowed.

Before: every move is recorded before it is made, so with the disk full the return move
was refused (the stage stayed at -26.26 µm after starting at -2.21 µm), the job read
`running` forever, /readyz stayed 200 and new submits got 500.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from daemon_proc import Daemon, wait_frames

WRAPPER = r'''
mount -t tmpfs -o size=4m tmpfs "$SMALL" || exit 97
(
  while [ ! -e "$FLAGS/fill" ]; do sleep 0.02; done
  dd if=/dev/zero of="$SMALL/filler" bs=4k 2>/dev/null
  touch "$FLAGS/filled"
  while [ ! -e "$FLAGS/free" ]; do sleep 0.02; done
  rm -f "$SMALL/filler"
  touch "$FLAGS/freed"
) &
exec "$@"
'''


def _userns_works() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True, check=False,
    )
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _userns_works(), reason="needs unprivileged user+mount "
                                "namespaces (unshare -rm) for a real small file system")


def _wait_file(path: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_disk_full_mid_job_returns_the_stage_and_refuses_work_until_it_can_write(tmp_path):
    small, flags = tmp_path / "small", tmp_path / "flags"
    small.mkdir()
    flags.mkdir()
    wrap = ["unshare", "-rm", "sh", "-c", WRAPPER, "sh"]
    with Daemon(small / "jobs.db", tmp_path / "d.log", args=("--real-time",),
                env={"SMALL": str(small), "FLAGS": str(flags)}, wrap=wrap) as daemon:
        http = daemon.http
        job = http.post("/v1/focus", json={"range_um": 60, "tolerance_um": 0.5}).json()
        running = wait_frames(http, job["id"], 3)
        start_z = running["progress"]["start_z_um"]
        (flags / "fill").touch()
        _wait_file(flags / "filled")

        done = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
        assert done["state"] == "failed", done
        assert done["error_code"] in ("internal", "hardware"), done
        assert "database" in done["error"] and "full" in done["error"], done["error"]
        z_now = http.get("/v1/microscope").json()["z_um"]
        assert z_now == pytest.approx(start_z, abs=1e-6), (z_now, start_z)
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "cannot be written" in ready.json()["detail"]
        refused = http.post("/v1/focus", json={"range_um": 20})
        assert refused.status_code == 503, refused.text
        assert http.get("/v1/status").status_code == 200

        (flags / "free").touch()
        _wait_file(flags / "freed")
        deadline = time.monotonic() + 20
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never ready again"
            time.sleep(0.1)
        again = http.post("/v1/focus", json={"range_um": 20}, params={"wait": 30})
        assert again.status_code in (200, 202), again.text
        assert http.get(f"/v1/jobs/{job['id']}").json()["state"] == "failed"
