"""Serving the daemon's app on uvicorn: in the foreground (`serve`) or on a background thread.

`build_server(app, settings)` is the one place the uvicorn server is set up,
for `autofocus serve` and for `BackgroundServer` alike:

- on SIGTERM/SIGINT the job manager is told at once (`begin_shutdown`): the
  running job is cancelled and returns the stage, no queued job starts, and
  open event streams and long-polls end when the worker has stopped — an open
  watcher cannot keep a job running through shutdown;

    with BackgroundServer(load_settings(database_path=tmp / "jobs.db")) as server:
        httpx.get(server.url + "/v1/status")

The background server listens on 127.0.0.1 on a free port and is really served
over TCP, exactly like `autofocus serve`, only inside this process.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import FrameType
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from autofocus.service.api.app import create_app
from autofocus.service.jobs.manager import JobManager
from autofocus.settings import Settings


log = structlog.get_logger("autofocus.service")

GRACEFUL_SHUTDOWN_S = 5  # open streams get this long to end before they are cut


class DaemonServer(uvicorn.Server):
    """uvicorn's server, plus: a shutdown signal reaches the job manager at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown_started = False

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.begin_shutdown()

    def begin_shutdown(self) -> None:
        """Cancel the running job and stop taking jobs now; end the watchers when the worker
        has stopped. Safe from a signal handler (the work happens on a thread)."""
        if self._shutdown_started:
            return
        self._shutdown_started = True
        threading.Thread(target=self._shutdown_jobs, name="shutdown", daemon=True).start()

    def _shutdown_jobs(self) -> None:
        manager = getattr(self._app.state, "manager", None)
        if manager is None:
            return
        manager.begin_shutdown()
        thread = getattr(manager, "_thread", None)
        if thread is not None:
            thread.join(GRACEFUL_SHUTDOWN_S * 6)
        broker = getattr(self._app.state, "broker", None)
        loop = self._loop
        if broker is not None and loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(broker.close_all)
            except RuntimeError:  # the loop closed meanwhile
                pass


def build_server(app: FastAPI, settings: Settings, **overrides: Any) -> DaemonServer:
    """The uvicorn server for `app` with the daemon's connection limits and shutdown rules."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # structlog (configure_logging) owns the output
        "access_log": False,  # our middleware logs requests with their request ids
        "server_header": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "lifespan": "on",
    }
    options.update(overrides)
    return DaemonServer(uvicorn.Config(app, **options), app)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """uvicorn serving `create_app(settings)` on a thread; `url`, `app`, `manager`.

    `start()` waits until the socket listens and (with `wait_ready`) the microscope
    is open, raising `RuntimeError` after `timeout_s`. `stop()` shuts down cleanly.
    """

    def __init__(self, settings: Settings, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.app: FastAPI = create_app(self.settings)
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = build_server(self.app, self.settings, timeout_graceful_shutdown=2)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)

    @property
    def manager(self) -> JobManager:
        return self.app.state.manager

    def start(self, *, wait_ready: bool = True, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread died while starting")
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
            time.sleep(0.02)
        while wait_ready and not self.manager.ready:
            if self.manager.snapshot.error:
                raise RuntimeError(self.manager.snapshot.error)
            if time.monotonic() > deadline:
                raise RuntimeError("the microscope did not become ready in time")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._server.should_exit = True
        self._server.begin_shutdown()
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
