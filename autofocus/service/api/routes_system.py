"""Service endpoints: microscope, status, health, readiness and Prometheus metrics."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

import autofocus
from autofocus.service.api.schemas import MicroscopeOut, StatusOut, problem
from autofocus.service.api.security import require_token
from autofocus.service.jobs.manager import JobManager, NotReady
from autofocus.service.jobs.models import JobState
from autofocus.service.metrics import CONTENT_TYPE

router = APIRouter(tags=["service"])
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["service"])
protected = APIRouter(dependencies=[Depends(require_token)], tags=["service"])


def _manager(request: Request) -> JobManager:
    return request.app.state.manager


@v1.get("/microscope", response_model=MicroscopeOut, responses=problem(401, 422))
async def get_microscope(request: Request) -> Response:
    """Driver, current z (as last read by the worker), Z limits, camera and exposure."""
    manager = _manager(request)
    body = manager.snapshot.to_dict()
    body["ready"] = manager.ready
    body["busy"] = manager.current_job_id is not None or manager.current_task_label is not None
    return JSONResponse(body)


@v1.get("/status", response_model=StatusOut, responses=problem(401, 422))
async def get_status(request: Request) -> Response:
    """Version, default scorer and its execution provider, queue depth, the running job."""
    manager = _manager(request)
    settings = manager.settings
    scorer = manager.cached_scorer(settings.focus.scorer)
    provider = getattr(scorer, "active_provider", None) if scorer is not None else None
    return JSONResponse(
        {
            "version": autofocus.__version__,
            "driver": settings.driver,
            "ready": manager.ready,
            "scorer": scorer.name if scorer is not None else settings.focus.scorer,
            "execution_provider": provider
            if isinstance(provider, str) or provider is None
            else str(provider),
            "strategy": settings.focus.strategy,
            "queue_depth": manager.queue_depth,
            "queue_max": settings.queue_max,
            "current_job": manager.current_job_id,
            "current_map": manager.current_task_label,
            "uptime_s": round(time.time() - manager.started_s, 3),
        }
    )


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """200 while the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses=problem(503))
async def readyz(request: Request) -> dict[str, object]:
    """200 when the microscope is open and its worker runs; 503 with the reason otherwise."""
    manager = _manager(request)
    if not manager.ready:
        raise NotReady(manager.not_ready_reason())
    return {"status": "ready", "driver": manager.settings.driver}


@protected.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE: {}}}, **problem(401)},
)
async def metrics(request: Request) -> Response:
    """Jobs by state, queue depth, frames, focus duration and scoring latency histograms."""
    manager = _manager(request)
    counts = manager.store.counts_by_state()
    text = manager.metrics.render(
        {
            "autofocus_jobs": (
                "Jobs in the database by state.",
                {(s.value,): counts.get(s.value, 0) for s in JobState},
                ("state",),
            ),
            "autofocus_queue_depth": (
                "Jobs waiting for the microscope.",
                {(): manager.queue_depth},
                (),
            ),
            "autofocus_ready": (
                "1 when the microscope is open and the worker runs.",
                {(): int(manager.ready)},
                (),
            ),
        }
    )
    return Response(text, media_type=CONTENT_TYPE)
