"""Serving the daemon's app on uvicorn: in the foreground (`serve`) or on a background thread.

`build_server(app, settings)` is the one place the uvicorn server is set up,
for `autofocus serve` and for `BackgroundServer` alike:

- on SIGTERM/SIGINT the job manager is told at once (`begin_shutdown`): the
  running job is cancelled and returns the stage, no queued job starts, and
  open event streams and long-polls end when the worker has stopped — an open
  watcher cannot keep a job running through shutdown;
- connections are bounded (`GuardedHttpProtocol`): at most `max_connections`
  open at once (more are answered 503 and closed at once), a request's headers
  must arrive within `header_timeout_s` and its body may not stall longer than
  `body_timeout_s` (then 408 and the connection is closed), so stalled
  clients cannot exhaust the file descriptors.

    with BackgroundServer(load_settings(database_path=tmp / "jobs.db")) as server:
        httpx.get(server.url + "/v1/status")

The background server listens on 127.0.0.1 on a free port and is really served
over TCP, exactly like `autofocus serve`, only inside this process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from autofocus.logging import get_logger
from autofocus.service.api.app import create_app
from autofocus.service.api.problems import problem_body
from autofocus.service.jobs.manager import JobManager
from autofocus.settings import Settings

log = get_logger("autofocus.service")

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


_REFUSED_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/problem+json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def _raw_problem(template: bytes, status: int, slug: str, title: str, detail: str) -> bytes:
    body = json.dumps(problem_body(status, slug, title, detail)).encode()
    return template % (len(body), body)


def guarded_protocol(
    *, max_connections: int, header_timeout_s: float, body_timeout_s: float
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a connection cap and header/body read timeouts."""
    refused = _raw_problem(
        _REFUSED_503, 503, "too-many-connections", "Too many connections",
        f"the daemon already holds {max_connections} connections (max_connections); "
        "try again in a moment",
    )
    header_late = _raw_problem(
        _TIMEOUT_408, 408, "request-timeout", "Request timeout",
        f"the request headers did not arrive within {header_timeout_s:g} s (header_timeout_s)",
    )
    body_late = _raw_problem(
        _TIMEOUT_408, 408, "request-timeout", "Request timeout",
        f"the request body stalled for more than {body_timeout_s:g} s (body_timeout_s)",
    )

    class GuardedHttpProtocol(HttpToolsProtocol):
        _read_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(refused)
                transport.close()
                return
            self._arm(header_timeout_s, header_late)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(header_timeout_s, header_late)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(body_timeout_s, body_late)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm(body_timeout_s, body_late)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def _arm(self, delay_s: float, answer: bytes) -> None:
            self._disarm()
            self._read_timer = self.loop.call_later(delay_s, self._read_timed_out, answer)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self, answer: bytes) -> None:
            self._read_timer = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is None or cycle.response_complete or not cycle.response_started:
                self.transport.write(answer)
            self.transport.close()

    return GuardedHttpProtocol


def raise_fd_limit(max_connections: int) -> None:
    """Raise the soft open-files limit so `max_connections` fit with room to spare."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(4096, 2 * max_connections + 256)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("server.fd_limit", soft=soft, wanted=want, error=str(exc))


def build_server(app: FastAPI, settings: Settings, **overrides: Any) -> DaemonServer:
    """The uvicorn server for `app` with the daemon's connection limits and shutdown rules."""
    raise_fd_limit(settings.max_connections)
    options: dict[str, Any] = {
        "http": guarded_protocol(
            max_connections=settings.max_connections,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
        ),
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
