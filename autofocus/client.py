"""Python client of the autofocus daemon (httpx, synchronous).

    from autofocus.client import AutofocusClient

    with AutofocusClient("http://127.0.0.1:8765", token=None) as af:
        job = af.focus(range_um=40)            # blocks until the job ends
        if job.succeeded:
            print(job.best_z_um)
        job = af.focus(wait=False)             # returns at once (queued)
        for event in af.events(job.id):        # state changes and (z, score) as they happen
            print(event.event, event.data)
        af.cancel(job.id)

Errors answered by the daemon raise `ApiError` carrying the RFC 9457 problem
(`status`, `title`, `detail`); `focus(check=True)` raises `FocusFailed` when
the job ends in any state but `succeeded`. Network errors are httpx's.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
_POLL_CHUNK_S = 30.0  # one long-poll; kept below common proxy idle timeouts


class ApiError(Exception):
    """The daemon answered with an error status; `problem` is its RFC 9457 body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.title = str(problem.get("title", "error"))
        self.detail = problem.get("detail")
        super().__init__(f"{status} {self.title}: {self.detail}")


class FocusFailed(Exception):
    """A focus job ended without success; `job` says how and why (`job.error`)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"focus job {job.id} {job.state}: {job.error}")


@dataclass(frozen=True)
class Job:
    """A focus job as returned by the daemon (`raw` is the full JSON)."""

    id: str
    state: str
    error: str | None
    result: dict[str, Any] | None
    progress: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=data["id"],
            state=data["state"],
            error=data.get("error"),
            result=data.get("result"),
            progress=data.get("progress") or {},
            raw=dict(data),
        )

    @property
    def done(self) -> bool:
        """True when the job has ended (in any state)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def reason_code(self) -> str | None:
        """The stable failure code (`flat_curve`, `rival_peak`, `hardware`, …); None on success.

        The job's `error_code` (set for every failure the daemon can classify, also
        before a search ran) or its result's `reason_code`; see
        `autofocus.search.reasons.FailureReason` for the list.
        """
        code = self.raw.get("error_code")
        if code is None and self.result:
            code = self.result.get("reason_code")
        return code

    @property
    def best_z_um(self) -> float | None:
        """Where the stage was parked (µm) when the job succeeded, else None."""
        if not self.succeeded or not self.result:
            return None
        return self.result.get("best_z_um")


@dataclass(frozen=True)
class Event:
    """One server-sent event: `id` (sequence), `event` (`state`/`measurement`), `data`."""

    id: int | None
    event: str
    data: dict[str, Any]


class AutofocusClient:
    """Talks to one autofocus daemon at `base_url`.

    `token` is the bearer token when the daemon has one; `timeout_s` bounds
    each ordinary HTTP call (long polls extend it by their wait). Connection
    failures are retried `retries` times (safe: focus requests carry an
    Idempotency-Key).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout_s,
            transport=transport or httpx.HTTPTransport(retries=retries),
        )

    # ------------------------------------------------------------------ jobs

    def focus(
        self,
        *,
        wait: bool = True,
        wait_timeout_s: float | None = None,
        check: bool = False,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Start a focus job with request `fields` (`range_um=40`, `scorer="vol"`, …).

        Time-lapse tracking: `focus(mode="track", expected_z_um=z)` re-focuses with
        three frames around `z` (a full search when focus drifted more than about a
        depth of field). `rival="nearest"`/`"sharpest"` chooses between two
        candidate planes instead of failing with reason_code `rival_peak`. A revisit
        whose focus is roughly known: `focus(expected_z_um=z, expected_sigma_um=s)`
        searches near `z` first (rival check confined to z ± 3s plus the peak's width,
        full search when no plane is there).

        `wait=True` blocks until the job ends (at most `wait_timeout_s`, default:
        no limit beyond the job's own `timeout_s`) and returns the finished job;
        `wait=False` returns the queued job at once. `check=True` raises
        `FocusFailed` when a waited-for job did not succeed (or had not ended
        when `wait_timeout_s` ran out). Raises `ApiError` for refused requests
        (422 invalid, 429 queue full, 503 not ready).
        """
        key = idempotency_key or uuid.uuid4().hex
        body = {k: v for k, v in fields.items() if v is not None}
        params = {}
        deadline = None if wait_timeout_s is None else time.monotonic() + wait_timeout_s
        if wait:
            params["wait"] = _chunk(deadline)
        response = self._http.post(
            "/v1/focus",
            json=body,
            params=params,
            headers={"Idempotency-Key": key},
            timeout=self.timeout_s + float(params.get("wait", 0)),
        )
        job = Job.from_json(self._check(response))
        if wait and not job.done:
            job = self.wait(job.id, timeout_s=_remaining(deadline))
        if check and wait and not job.succeeded:
            raise FocusFailed(job)
        return job

    # ------------------------------------------------------------ focus maps

    def focus_map(
        self,
        *,
        positions: Sequence[tuple[float, float]] | None = None,
        grid: Mapping[str, Any] | None = None,
        points: Sequence[tuple[float, float, float]] | None = None,
        wait: bool = True,
        wait_timeout_s: float = 600.0,
        **fields: Any,
    ) -> dict[str, Any]:
        """Build a focus map and return it (a dict with `id`, `state`, `surface`, `points`).

        Give exactly one of `positions` [(x_um, y_um), ...] or `grid` ({x_min_um, x_max_um,
        y_min_um, y_max_um, nx, ny}) for the daemon to autofocus at (it needs an XY stage),
        or `points` [(x_um, y_um, z_um), ...] measured elsewhere. `fields`: `kind`,
        `range_um`, `range_after_map_um`, `tolerance_um`, `scorer`, ... With `wait` the call
        returns when the map is built (state `ready` or `failed`) or `wait_timeout_s` ran
        out. Raises `ApiError` for refused requests (422, 503).
        """
        body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
        if positions is not None:
            body["positions"] = [{"x_um": float(x), "y_um": float(y)} for x, y in positions]
        if grid is not None:
            body["grid"] = dict(grid)
        if points is not None:
            body["points"] = [
                {"x_um": float(x), "y_um": float(y), "z_um": float(z)} for x, y, z in points
            ]
        params = {"wait": min(wait_timeout_s, 3600.0)} if wait else {}
        response = self._http.post(
            "/v1/focus-maps", json=body, params=params,
            timeout=self.timeout_s + float(params.get("wait", 0)),
        )
        return self._check(response)

    def get_focus_map(self, map_id: str) -> dict[str, Any]:
        """The focus map `map_id` now. Raises `ApiError` (404) for an unknown id."""
        return self._check(self._http.get(f"/v1/focus-maps/{map_id}"))

    def focus_map_z(self, map_id: str, x_um: float, y_um: float) -> float:
        """The focus z (µm) map `map_id` predicts at stage position (x_um, y_um).

        Raises `ApiError` (404 unknown map, 409 not ready yet or failed)."""
        response = self._http.get(
            f"/v1/focus-maps/{map_id}/z", params={"x_um": x_um, "y_um": y_um}
        )
        return float(self._check(response)["z_um"])

    def job(self, job_id: str) -> Job:
        """The job now. Raises `ApiError` (404) for an unknown id."""
        return Job.from_json(self._check(self._http.get(f"/v1/jobs/{job_id}")))

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> Job:
        """Block until the job ends or `timeout_s` passes (then return it unfinished)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            chunk = _chunk(deadline)
            response = self._http.get(
                f"/v1/jobs/{job_id}", params={"wait": chunk}, timeout=self.timeout_s + chunk
            )
            job = Job.from_json(self._check(response))
            if job.done or (deadline is not None and time.monotonic() >= deadline):
                return job

    def cancel(self, job_id: str, *, wait: bool = True, timeout_s: float = 60.0) -> Job:
        """Cancel a job (idempotent). With `wait`, return once it has ended, i.e. the stage
        is back where the job started. Raises `ApiError` (404) for an unknown id."""
        params = {"wait": timeout_s} if wait else {}
        response = self._http.delete(
            f"/v1/jobs/{job_id}", params=params, timeout=self.timeout_s + (timeout_s if wait else 0)
        )
        return Job.from_json(self._check(response))

    def jobs(self, *, state: str | Sequence[str] | None = None, limit: int = 50) -> Iterator[Job]:
        """All jobs, newest first, optionally only in `state`(s); pages through the list."""
        states = [state] if isinstance(state, str) else list(state or [])
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit, "state": states}
            if cursor:
                params["cursor"] = cursor
            page = self._check(self._http.get("/v1/jobs", params=params))
            for item in page["items"]:
                yield Job.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def events(self, job_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """Server-sent events of a job, in order, until its final state (replayed from the
        beginning, or after `last_event_id`)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(self.timeout_s, read=None)
        with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            yield from _parse_sse(response.iter_lines())

    def curve_png(self, job_id: str) -> bytes:
        """The job's focus curve as PNG bytes."""
        response = self._http.get(f"/v1/jobs/{job_id}/curve.png")
        if response.status_code >= 400:
            self._check(response)
        return response.content

    # --------------------------------------------------------------- scoring

    def score(
        self,
        frames: Sequence[np.ndarray | bytes | str | Path],
        *,
        scorer: str | None = None,
    ) -> dict[str, Any]:
        """Score frames on the daemon: numpy arrays (sent as NPY), file paths (TIFF/PNG/NPY,
        read here) or raw file bytes. Returns {"scorer", "scores": [{file, index, score}],
        "best", "elapsed_s"}. Raises `ApiError` (413 too large, 422 corrupt/unknown scorer)."""
        octet = "application/octet-stream"
        files = []
        for i, frame in enumerate(frames):
            if isinstance(frame, np.ndarray):
                buf = io.BytesIO()
                np.save(buf, frame, allow_pickle=False)
                files.append(("files", (f"frame{i}.npy", buf.getvalue(), octet)))
            elif isinstance(frame, bytes | bytearray):
                files.append(("files", (f"frame{i}", bytes(frame), octet)))
            else:
                path = Path(frame)
                files.append(("files", (path.name, path.read_bytes(), octet)))
        params = {"scorer": scorer} if scorer else {}
        return self._check(self._http.post("/v1/score", files=files, params=params))

    # --------------------------------------------------------------- service

    def status(self) -> dict[str, Any]:
        """Version, scorer, execution provider, queue depth, current job."""
        return self._check(self._http.get("/v1/status"))

    def microscope(self) -> dict[str, Any]:
        """Driver, current z, Z limits, camera."""
        return self._check(self._http.get("/v1/microscope"))

    def ready(self) -> bool:
        """True when the daemon answers /readyz with 200."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AutofocusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _check(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text[:500]}
            raise ApiError(response.status_code, problem)
        return response.json()


def _chunk(deadline: float | None) -> float:
    if deadline is None:
        return _POLL_CHUNK_S
    return round(max(0.0, min(_POLL_CHUNK_S, deadline - time.monotonic())), 3)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Parse a text/event-stream into `Event`s (comments and keep-alives skipped)."""
    event_id: int | None = None
    kind = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(event_id, kind, json.loads("\n".join(data)))
            event_id, kind, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = int(value) if value.isdigit() else None
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
    if data:
        yield Event(event_id, kind, json.loads("\n".join(data)))
