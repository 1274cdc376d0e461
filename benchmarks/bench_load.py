"""Load benchmark: many clients polling the daemon while focus jobs run.

Starts `autofocus serve` (simulated microscope in real time, so a job spends
hardware time the way a real stage and camera do) as a subprocess on a free
loopback port, then runs focus jobs in alternating blocks: one job with no
other traffic, one job while `--clients` concurrent clients poll
`GET /v1/status` and `GET /v1/jobs/{id}` every `--poll-interval-s`. The two
kinds of job are measured side by side in the same run, interleaved so that
machine load drifts hit both alike. Every job has the same request (fixed
centre), so their durations are comparable.

Reports latency percentiles of the polling requests, errors (non-2xx or
transport failures), requests per second and the median job duration with and
without load. Goals: p99 < 50 ms, zero errors, loaded jobs within 10 % of
unloaded ones.

    python benchmarks/bench_load.py                       # 50 clients every 0.25 s, 6 + 6 jobs
    python benchmarks/bench_load.py --clients 50 --jobs 6 --poll-interval-s 0.1 --json
    python benchmarks/bench_load.py --url http://127.0.0.1:8765   # an already running daemon
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autofocus.service.api.server import free_port  # noqa: E402

JOB_REQUEST = {"center_z_um": 0.0, "range_um": 40.0, "tolerance_um": 0.5}


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def start_daemon(workdir: Path, port: int, settle_s: float) -> subprocess.Popen[bytes]:
    """`autofocus serve` on 127.0.0.1:`port` with a fresh database in `workdir`."""
    env = {
        **os.environ,
        "AUTOFOCUS_FOCUS__SETTLE_S": str(settle_s),
        "AUTOFOCUS_LOG_LEVEL": "warning",
        "AUTOFOCUS_QUEUE_MAX": "64",
        # Up to 500 pollers plus the job clients: above the default cap of 128 connections.
        "AUTOFOCUS_MAX_CONNECTIONS": "1024",
    }
    env.pop("AUTOFOCUS_CONFIG", None)
    env.pop("AUTOFOCUS_API_TOKEN", None)
    log = (workdir / "daemon.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from autofocus.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            str(workdir / "jobs.db"),
            "--real-time",
            "--log-format",
            "json",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url) as c:
        while time.monotonic() < deadline:
            try:
                if (await c.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the daemon at {url} did not become ready")


class RawHttpConnection:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams (GET only).

    The load generator must cost far less than the server it loads: httpx spends
    about a millisecond of CPU per request, this a few tens of microseconds, so
    50 clients in one process measure the daemon and not themselves.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: application/json\r\n\r\n".encode()
        )
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        body = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None


class Pollers:
    """`n` clients, each on its own keep-alive connection, polling status and the current job."""

    def __init__(self, url: str, n: int, interval_s: float) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.n = n
        self.interval_s = interval_s
        self.active = asyncio.Event()
        self.stop = False
        self.job_id: str | None = None
        self.latencies_s: list[float] = []
        self.errors: list[str] = []
        self.requests = 0
        self.active_s = 0.0

    async def run_one(self, k: int) -> None:
        conn = RawHttpConnection(self.host, self.port)
        await conn.connect()
        i = k
        try:
            while not self.stop:
                if not self.active.is_set():
                    await self.active.wait()
                    # Stagger the clients so they do not poll in lock-step.
                    await asyncio.sleep(self.interval_s * k / self.n)
                    continue
                path = (
                    "/v1/status"
                    if (i % 2 == 0 or self.job_id is None)
                    else (f"/v1/jobs/{self.job_id}")
                )
                i += 1
                t0 = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(conn.get(path), 10.0)
                    if status >= 400:
                        self.errors.append(f"{path}: HTTP {status}")
                except (
                    OSError,
                    asyncio.IncompleteReadError,
                    asyncio.TimeoutError,
                    ValueError,
                ) as exc:
                    self.errors.append(f"{path}: {type(exc).__name__}: {exc}")
                    await conn.close()
                dt = time.perf_counter() - t0
                if self.active.is_set():
                    self.latencies_s.append(dt)
                    self.requests += 1
                await asyncio.sleep(self.interval_s)
        finally:
            await conn.close()


async def run_job(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post("/v1/focus", json=JOB_REQUEST)
    r.raise_for_status()
    job = r.json()
    while job["state"] in ("queued", "running"):
        r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 60})
        r.raise_for_status()
        job = r.json()
    return job


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


async def bench(url: str, clients: int, jobs: int, interval_s: float) -> dict[str, Any]:
    pollers = Pollers(url, clients, interval_s)
    tasks = [asyncio.create_task(pollers.run_one(k)) for k in range(clients)]
    durations: dict[str, list[float]] = {"unloaded": [], "loaded": []}
    states: dict[str, list[str]] = {"unloaded": [], "loaded": []}
    async with httpx.AsyncClient(base_url=url, timeout=120.0) as c:
        await run_job(c)  # warm-up: scorer, strategy and plotting imports
        for i in range(2 * jobs):
            loaded = i % 2 == 1
            kind = "loaded" if loaded else "unloaded"
            if loaded:
                pollers.active.set()
                await asyncio.sleep(0.5)  # let every client be in its polling loop
            t0 = time.perf_counter()
            job = await run_job_tracking(c, pollers)
            if loaded:
                pollers.active_s += time.perf_counter() - t0 + 0.5
                pollers.active.clear()
                await asyncio.sleep(0.3)  # let in-flight polls drain before the next job
            durations[kind].append(_ts(job["finished_at"]) - _ts(job["started_at"]))
            states[kind].append(job["state"])
    pollers.stop = True
    pollers.active.set()
    await asyncio.gather(*tasks)
    lat_ms = [x * 1000 for x in pollers.latencies_s]
    med_u = statistics.median(durations["unloaded"])
    med_l = statistics.median(durations["loaded"])
    return {
        "clients": clients,
        "poll_interval_s": interval_s,
        "jobs_per_kind": jobs,
        "requests": pollers.requests,
        "requests_per_s": round(pollers.requests / pollers.active_s, 1) if pollers.active_s else 0,
        "errors": len(pollers.errors),
        "error_samples": pollers.errors[:5],
        "latency_ms": {
            "p50": round(percentile(lat_ms, 50), 2),
            "p90": round(percentile(lat_ms, 90), 2),
            "p99": round(percentile(lat_ms, 99), 2),
            "max": round(max(lat_ms), 2) if lat_ms else None,
        },
        "job_duration_s": {
            "unloaded": [round(d, 3) for d in durations["unloaded"]],
            "loaded": [round(d, 3) for d in durations["loaded"]],
            "unloaded_median": round(med_u, 3),
            "loaded_median": round(med_l, 3),
            "loaded_vs_unloaded": round(med_l / med_u - 1.0, 4),
        },
        "job_states": states,
    }


async def run_job_tracking(c: httpx.AsyncClient, pollers: Pollers) -> dict[str, Any]:
    r = await c.post("/v1/focus", json=JOB_REQUEST)
    r.raise_for_status()
    job = r.json()
    pollers.job_id = job["id"]
    while job["state"] in ("queued", "running"):
        r = await c.get(f"/v1/jobs/{job['id']}", params={"wait": 60})
        r.raise_for_status()
        job = r.json()
    return job


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--jobs", type=int, default=6, help="jobs of each kind (loaded, unloaded)")
    p.add_argument(
        "--poll-interval-s",
        type=float,
        default=0.25,
        help="pause between one client's requests (0 = as fast as possible)",
    )
    p.add_argument(
        "--settle-s",
        type=float,
        default=0.0,
        help="extra settle per move on the simulated stage (longer jobs)",
    )
    p.add_argument("--url", help="benchmark this running daemon instead of starting one")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args()
    if args.clients < 1 or args.clients > 500 or args.jobs < 1 or args.jobs > 50:
        p.error("--clients must be 1..500 and --jobs 1..50")
    if args.url and not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        p.error("--url must be a loopback address: this benchmark loads the daemon hard")

    proc = None
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        url = args.url
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            proc = start_daemon(Path(tmp), port, args.settle_s)
        try:
            asyncio.run(wait_ready(url))
            result = asyncio.run(bench(url, args.clients, args.jobs, args.poll_interval_s))
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lat, jd = result["latency_ms"], result["job_duration_s"]
        print(
            f"{result['clients']} clients polling every {result['poll_interval_s']} s: "
            f"{result['requests']} requests ({result['requests_per_s']}/s), "
            f"errors {result['errors']}"
        )
        print(f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}")
        print(
            f"job duration s (median of {result['jobs_per_kind']}): unloaded "
            f"{jd['unloaded_median']}  loaded {jd['loaded_median']}  "
            f"({jd['loaded_vs_unloaded']:+.1%})"
        )
        ok = lat["p99"] < 50 and result["errors"] == 0 and abs(jd["loaded_vs_unloaded"]) <= 0.10
        print("goals (p99 < 50 ms, 0 errors, jobs within 10 %):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
