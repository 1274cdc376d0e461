"""Peak memory of `POST /v1/score` under concurrent large uploads (issue 23, item 2).

Starts a real `autofocus serve` (simulator, 127.0.0.1, a fresh SQLite file), sends
`--parallel` uploads at once of one deflate-compressed float64 TIFF of `--side`² pixels
(small on the wire, `side`² × 8 bytes decoded), and prints the status codes and the
daemon's peak resident memory (VmHWM) before and after.

    .venv/bin/python benchmarks/bench_score_memory.py --parallel 4 --side 5792
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def float64_tiff(side: int) -> bytes:
    """A `side`² float64 frame, deflate-compressed (mostly flat, a bright square and a
    ramp, so it compresses well and is not blank)."""
    import tifffile

    frame = np.zeros((side, side), np.float64)
    q = side // 4
    frame[q:3 * q, q:3 * q] = 1000.0
    frame[:, :64] = np.linspace(0.0, 10.0, side)[:, None]
    buf = io.BytesIO()
    tifffile.imwrite(buf, frame, compression="zlib")
    return buf.getvalue()


def run(parallel: int, side: int) -> dict:
    from daemon_proc import Daemon

    data = float64_tiff(side)
    with tempfile.TemporaryDirectory() as tmp, Daemon(
        Path(tmp) / "jobs.db", Path(tmp) / "d.log", args=()
    ) as daemon:
        base = daemon.vm_hwm_bytes()
        codes: list[int] = []

        def one() -> None:
            import httpx

            with httpx.Client(base_url=daemon.url, timeout=300) as c:
                r = c.post("/v1/score", files=[("files", ("big.tif", data, "image/tiff"))])
                codes.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = daemon.vm_hwm_bytes()
    return {"upload_kb": round(len(data) / 1024, 1), "parallel": parallel, "side": side,
            "codes": sorted(codes), "baseline_mb": round(base / 2**20),
            "peak_mb": round(peak / 2**20)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--side", type=int, default=5792)
    args = ap.parse_args()
    print(json.dumps(run(args.parallel, args.side)))


if __name__ == "__main__":
    main()
