"""Every request's memory is bounded: a real `autofocus serve`, its peak RSS read from /proc.

The requests that used to take gigabytes (a tolerance of 1e-7 µm that made the
refinement build a huge grid just to count it, 200 PNGs that each decode to
8192×8192, a 59 MB JSON body) must be refused with 413/422 problem+json, and the
daemon's VmHWM must stay under 1 GB.
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
from daemon_proc import Daemon

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

GB = 1024**3


def _png_bomb(side_px: int = 8192) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((side_px, side_px), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_hostile_requests_stay_under_1_gb(tmp_path):
    with Daemon(tmp_path / "jobs.db", tmp_path / "daemon.log", args=()) as daemon:
        http = daemon.http
        for tol in (1e-7, 1e-8, 5e-324):
            r = http.post(
                "/v1/focus", params={"wait": 60}, json={"range_um": 50, "tolerance_um": tol}
            )
            assert r.status_code == 422, (tol, r.status_code, r.text[:300])
            assert r.headers["content-type"] == "application/problem+json"
            assert "tolerance_um" in r.json()["detail"]

        bomb = _png_bomb()
        assert len(bomb) < 200_000
        files = [("files", (f"f{i}.png", bomb, "image/png")) for i in range(200)]
        r = http.post("/v1/score", files=files)
        assert r.status_code == 413, (r.status_code, r.text[:300])
        assert r.headers["content-type"] == "application/problem+json"
        assert "pixels" in r.json()["detail"]

        big = b'{"range_um": 40, "scorer": "' + b"x" * (59 * 1000 * 1000) + b'"}'
        t0 = time.perf_counter()
        r = http.post("/v1/focus", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:300]
        assert r.headers["content-type"] == "application/problem+json"
        assert time.perf_counter() - t0 < 3.0

        # The daemon still works, and its peak memory stayed bounded.
        ok = http.post("/v1/focus", params={"wait": 60}, json={"range_um": 40})
        assert ok.json()["state"] in ("succeeded", "failed")
        hwm = daemon.vm_hwm_bytes()
        print(f"daemon VmHWM {hwm / 2**20:.0f} MiB")
        assert hwm < 1 * GB, f"peak RSS {hwm / GB:.2f} GB"
