"""Focus jobs over HTTP: submit, read, list, cancel, stream events, plot the curve."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from autofocus.service.api.plot import curve_png
from autofocus.service.api.schemas import FocusBody, JobList, JobOut, JobStateName, problem
from autofocus.service.api.security import require_token
from autofocus.service.jobs.manager import InvalidRequest, JobManager
from autofocus.service.jobs.models import TERMINAL_STATES, Job, JobState
from autofocus.service.jobs.store import StoredEvent

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["jobs"])

MAX_WAIT_S = 3600.0
SSE_KEEPALIVE_S = 15.0
_TERMINAL = {s.value for s in TERMINAL_STATES}

JobId = Annotated[str, Path(min_length=1, max_length=64, description="Job id.")]
WaitQuery = Annotated[
    float | None,
    Query(ge=0, le=MAX_WAIT_S, description="Hold the request until the job ends, ≤ seconds."),
]


def _manager(request: Request) -> JobManager:
    return request.app.state.manager


def _job_response(job: Job, *, location: bool = False) -> JSONResponse:
    status = 200 if job.state.terminal else 202
    headers = {"Location": f"/v1/jobs/{job.id}"} if location else None
    return JSONResponse(job.to_dict(), status_code=status, headers=headers)


# OpenAPI links from a submitted job to what can be done with it (clients and the
# stateful fuzz test follow them).
_JOB_LINKS = {
    name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}}
    for name, op in (
        ("GetJob", "getJob"),
        ("CancelJob", "cancelJob"),
        ("JobEvents", "jobEvents"),
        ("JobCurve", "jobCurve"),
    )
}

# Event and cursor numbers are SQLite integers: plain ASCII digits, at most 18 of them.
_SEQ_NUMBER = re.compile(r"[0-9]{1,18}")


@router.post(
    "/focus",
    status_code=202,
    response_model=JobOut,
    summary="Start a focus job",
    operation_id="postFocus",
    responses={
        200: {"model": JobOut, "description": "The job ended within `wait` seconds."},
        202: {"description": "The job is queued or running.", "links": _JOB_LINKS},
        **problem(400, 401, 403, 413, 415, 421, 422, 429, 503),
    },
)
async def post_focus(
    request: Request,
    body: FocusBody | None = None,
    wait: WaitQuery = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Retrying a POST with the same key returns the same job.",
        ),
    ] = None,
) -> Response:
    """Queue a focus job (202 with the job). With `?wait=SECONDS` the answer comes when the
    job ends (200) or the wait runs out (202). Bad requests are refused (422) before anything
    is queued: the stage does not move."""
    manager = _manager(request)
    fields = body.model_dump(exclude_none=True) if body is not None else {}
    # In the thread pool: the first submission imports the search code (about a second),
    # which must not stall every other request on the event loop.
    job, _created = await run_in_threadpool(
        manager.submit, fields, idempotency_key=idempotency_key
    )
    if wait:
        job = await manager.wait(job.id, wait)
    return _job_response(job, location=True)


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Read a job",
    operation_id="getJob",
    responses={
        202: {"model": JobOut, "description": "Job not finished."},
        **problem(401, 404, 422),
    },
)
async def get_job(request: Request, job_id: JobId, wait: WaitQuery = None) -> Response:
    """The job (200 when finished, 202 while queued or running). `?wait=SECONDS` long-polls
    until the job ends."""
    manager = _manager(request)
    job = await manager.wait(job_id, wait) if wait else manager.get(job_id)
    return _job_response(job)


@router.get(
    "/jobs",
    response_model=JobList,
    summary="List jobs",
    operation_id="listJobs",
    responses=problem(401, 422),
)
async def list_jobs(
    request: Request,
    state: Annotated[
        list[JobStateName] | None, Query(description="Only jobs in these states.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=32, description="`next_cursor` of the previous page."),
    ] = None,
) -> Response:
    """Jobs newest first (each without its curve: read the job for that), paged by cursor."""
    before: int | None = None
    if cursor is not None:
        if not _SEQ_NUMBER.fullmatch(cursor):
            raise InvalidRequest(f"cursor {cursor!r} is not one this service handed out")
        before = int(cursor)
    manager = _manager(request)
    jobs = [
        manager.with_unwritten(j)
        for j in manager.store.list(
            states=[JobState(s) for s in state or ()], limit=limit, before_seq=before
        )
    ]
    next_cursor = str(jobs[-1].seq) if len(jobs) == limit else None
    return JSONResponse(
        {"items": [j.to_dict(include_curve=False) for j in jobs], "next_cursor": next_cursor}
    )


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Cancel a job",
    operation_id="cancelJob",
    responses={
        202: {"model": JobOut, "description": "Cancel pending."},
        **problem(401, 403, 404, 421, 422),
    },
)
async def cancel_job(request: Request, job_id: JobId, wait: WaitQuery = None) -> Response:
    """Cancel: a queued job ends at once; a running one stops at its next move and returns the
    stage to where it started (202 until it has; `?wait=SECONDS` waits for it). Cancelling a
    finished job changes nothing (200)."""
    manager = _manager(request)
    job = manager.cancel(job_id)
    if wait and not job.state.terminal:
        job = await manager.wait(job_id, wait)
    return _job_response(job)


@router.get(
    "/jobs/{job_id}/events",
    summary="Stream job events (SSE)",
    operation_id="jobEvents",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: `state` and `measurement`, `id` = sequence.",
        },
        **problem(401, 404, 422),
    },
)
async def job_events(
    request: Request,
    job_id: JobId,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Server-sent events of a job: every state change and every measured (z, score), in
    order, from the beginning (or after `Last-Event-ID`); the stream ends with the job's
    final state. Works for finished jobs by replaying."""
    manager = _manager(request)
    manager.get(job_id)  # 404 before the stream starts
    after = 0
    if last_event_id:
        if not _SEQ_NUMBER.fullmatch(last_event_id):
            raise InvalidRequest(
                f"Last-Event-ID {last_event_id!r} is not the id of an event this stream sent "
                "(a decimal number)"
            )
        after = int(last_event_id)
    return StreamingResponse(
        _event_stream(manager, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _event_stream(manager: JobManager, job_id: str, after: int) -> AsyncIterator[str]:
    # Subscribe before replaying so nothing published in between is lost; duplicates
    # are dropped by sequence number.
    with manager.broker.subscribe(job_id) as sub:
        last = after
        for event in manager.store.events(job_id, after_seq=last):
            yield _sse(event)
            last = event.seq
            if _is_end(event):
                return
        if manager.get(job_id).state.terminal:
            # Resumed after the final event (what a browser's EventSource sends when it
            # reconnects): nothing is left to send, so the stream ends now. Events stored
            # between the replay and this read come first; a final state not yet written
            # (database full) comes from memory.
            for event in manager.store.events(job_id, after_seq=last):
                yield _sse(event)
                last = event.seq
            pending = manager.unwritten_event(job_id)
            if pending is not None and pending.seq > last:
                yield _sse(pending)
            return
        while True:
            try:
                event = await asyncio.wait_for(sub.get(), SSE_KEEPALIVE_S)
            except asyncio.TimeoutError:  # builtin TimeoutError only from 3.11
                yield ": keep-alive\n\n"
                continue
            if event is None or event.seq > last + 1:
                # Closed (shutdown, slow reader) or a gap: send what the store has, then end
                # unless the job goes on.
                for missed in manager.store.events(job_id, after_seq=last):
                    yield _sse(missed)
                    last = missed.seq
                    if _is_end(missed):
                        return
                if event is None:
                    return
                continue
            if event.seq <= last:
                continue
            yield _sse(event)
            last = event.seq
            if _is_end(event):
                return


def _is_end(event: StoredEvent) -> bool:
    return event.kind == "state" and event.data.get("state") in _TERMINAL


def _sse(event: StoredEvent) -> str:
    data = json.dumps({"job_id": event.job_id, "seq": event.seq, **event.data})
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n"


@router.get(
    "/jobs/{job_id}/curve.png",
    summary="Plot the focus curve",
    operation_id="jobCurve",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "PNG image."},
        **problem(401, 404, 422),
    },
)
async def job_curve(request: Request, job_id: JobId) -> Response:
    """The job's focus curve as a PNG: measured points, the fit, the chosen z (also for a job
    still running: the points so far). A failed or cancelled job's picture names the
    reason, also as PNG text metadata (`State`, `Reason`)."""
    manager = _manager(request)
    job = manager.get(job_id)
    result = job.result or {}
    if result.get("curve") is not None:
        points = [(p["z_um"], p["score"]) for p in result["curve"]]
    else:
        points = [
            (e.data["z_um"], e.data.get("score"))
            for e in manager.store.events(job_id)
            if e.kind == "measurement"
        ]
    title = f"job {job.id[:8]} · {job.request.get('strategy')} / {job.request.get('scorer')}"
    png = await run_in_threadpool(
        curve_png,
        points,
        fit=result.get("fit"),
        best_z_um=result.get("best_z_um") if result.get("success") else None,
        start_z_um=job.progress.get("start_z_um"),
        title=title,
        state=job.state.value,
        reason=job.error or result.get("reason"),
        reason_code=result.get("reason_code"),
        final_z_um=result.get("final_z_um"),
        planes_um=None if result.get("success") else [
            float(p["z_um"]) for p in (result.get("details") or {}).get("rivals") or []
            if isinstance(p, dict) and "z_um" in p
        ],
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})
