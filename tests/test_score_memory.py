"""`/v1/score` memory is bounded in bytes, across requests, from the headers (issue 23,
item 2). Real `autofocus serve` / uvicorn, real files made with tifffile and zlib.

Before: four parallel uploads of one ~450 KB deflate TIFF that decodes to a 5792² float64
frame took the daemon's peak RSS to 2,712 MB (one alone: ~800 MB); a TIFF of many tiny
pages was parsed page by page before the frame cap answered; a 60000² PNG got 422 "corrupt".
"""

from __future__ import annotations

import io
import struct
import sys
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

GB = 1024**3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_four_parallel_float64_tiffs_stay_under_1_gb():
    from bench_score_memory import run

    out = run(parallel=4, side=5792)
    assert set(out["codes"]) <= {200, 503} and 200 in out["codes"], out
    assert out["peak_mb"] * 2**20 < GB, out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from sim_server import sim_server

    with sim_server(tmp_path_factory.mktemp("score") / "jobs.db", score_memory_mb=64,
                    score_wait_s=0.5) as srv:
        yield srv


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def _post(server, name: str, data: bytes) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        return http.post("/v1/score", files=[("files", (name, data, "application/octet-stream"))])


def test_huge_png_dimensions_are_413_from_the_header(server):
    r = _post(server, "huge.png", _png_header_only(60000, 60000))
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_tiff_with_too_many_pages_is_refused_after_reading_a_few_headers(server):
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        for _ in range(3000):
            tif.write(np.zeros((1, 1), np.uint8), contiguous=False)
    t0 = time.perf_counter()
    r = _post(server, "pages.tif", buf.getvalue())
    assert r.status_code == 413, r.text
    assert "pages" in r.json()["detail"]
    assert time.perf_counter() - t0 < 30  # a guard against a hang, not a speed claim


def test_one_upload_needing_more_than_the_whole_budget_is_413(server):
    buf = io.BytesIO()
    np.save(buf, np.ones((2048, 2048), np.float64))  # 32 MiB + scoring > 64 MiB budget
    r = _post(server, "big.npy", buf.getvalue())
    assert r.status_code == 413, r.text
    assert "score_memory_mb" in r.json()["detail"]
    small = io.BytesIO()
    np.save(small, np.arange(256 * 256, dtype=np.float64).reshape(256, 256))
    assert _post(server, "small.npy", small.getvalue()).status_code == 200
