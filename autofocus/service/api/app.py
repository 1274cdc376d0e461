"""The FastAPI application factory of the autofocus daemon.

`create_app(settings)` wires the routers, the problem+json handler, the
request middleware (ids, body limit, metrics, access log), optional CORS and
a lifespan that opens the job database, recovers after a crash and starts the
microscope worker. Serve it with uvicorn (`autofocus serve`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

import autofocus
from autofocus.logging import get_logger
from autofocus.service.api.docs import install_offline_docs
from autofocus.service.api.guards import BrowserGuardMiddleware, allowed_host_names
from autofocus.service.api.middleware import RequestContextMiddleware
from autofocus.service.api.page import install_web_page
from autofocus.service.api.problems import install_problem_handlers
from autofocus.service.api.routes_jobs import router as jobs_router
from autofocus.service.api.routes_map_grid import router as map_grid_router
from autofocus.service.api.routes_maps import router as maps_router
from autofocus.service.api.routes_record import router as record_router
from autofocus.service.api.routes_score import router as score_router
from autofocus.service.api.routes_system import protected as protected_router
from autofocus.service.api.routes_system import router as system_router
from autofocus.service.api.routes_system import v1 as system_v1_router
from autofocus.service.api.security import AuthThrottle, token_refusal
from autofocus.service.jobs.events import EventBroker
from autofocus.service.jobs.manager import JobManager, MicroscopeFactory
from autofocus.service.jobs.store import JobStore
from autofocus.service.metrics import Metrics
from autofocus.settings import Settings

log = get_logger("autofocus.service")

DESCRIPTION = """\
Brings a microscope into focus on request. `POST /v1/focus` queues a focus job
(every field optional; `?wait=SECONDS` answers when it ends); the job moves the
Z stage, scores frames, parks the stage at the sharpest plane, or returns it to
where it started on failure or cancel. Positions are micrometres (`*_um`).
Errors are RFC 9457 problem+json. When an API token is configured every `/v1`
endpoint and `/metrics` need `Authorization: Bearer <token>`.
"""


def create_app(settings: Settings, *, open_microscope: MicroscopeFactory | None = None) -> FastAPI:
    """Build the ASGI app for `settings`.

    `open_microscope(settings)` builds the microscope in the worker thread
    (default: `autofocus.service.microscopes.open_microscope`). Nothing is opened until
    the app starts (lifespan): then the SQLite file at `settings.database_path`
    is opened (created if missing), jobs left running by a crash are marked
    `interrupted`, queued jobs are re-queued and the worker starts.
    """
    metrics = Metrics()
    broker = EventBroker()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker.bind_loop(asyncio.get_running_loop())
        store = await run_in_threadpool(JobStore, settings.database_path)
        manager = JobManager(settings, store, broker, metrics, open_microscope=open_microscope)
        app.state.manager = manager
        manager.start()
        log.info(
            "service.started",
            version=autofocus.__version__,
            driver=settings.driver,
            database_path=str(settings.database_path),
            auth=bool(settings.api_token),
        )
        try:
            yield
        finally:
            broker.close_all()
            await run_in_threadpool(manager.stop)
            store.close()
            log.info("service.stopped")

    app = FastAPI(
        title="autofocus",
        version=autofocus.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from installed assets, not a CDN: install_offline_docs
        redoc_url=None,
    )
    install_offline_docs(app)
    install_web_page(app)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.broker = broker
    app.state.auth_throttle = AuthThrottle()
    app.state.token_refusal = token_refusal  # 401 before 422 (problems.handle_exception)
    install_problem_handlers(app)
    app.include_router(jobs_router)
    app.include_router(maps_router)
    app.include_router(record_router)
    app.include_router(map_grid_router)
    app.include_router(score_router)
    app.include_router(system_v1_router)
    app.include_router(system_router)
    app.include_router(protected_router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "X-Request-ID"],
        )
    # Outermost last: request ids and logs wrap the browser guard, which wraps CORS.
    app.add_middleware(
        BrowserGuardMiddleware,
        allowed_hosts=allowed_host_names(settings),
        cors_origins=list(settings.cors_origins),
    )
    app.add_middleware(
        RequestContextMiddleware,
        max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
        max_json_bytes=int(settings.max_json_kb * 1024),
        metrics=metrics,
    )
    return app
