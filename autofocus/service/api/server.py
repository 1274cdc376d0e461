"""Run the daemon's app on uvicorn in a background thread (tests, benchmarks, notebooks).

    with BackgroundServer(load_settings(database_path=tmp / "jobs.db")) as server:
        httpx.get(server.url + "/v1/status")

The server listens on 127.0.0.1 on a free port and is really served over TCP,
exactly like `autofocus serve`, only inside this process.
"""

from __future__ import annotations

import socket
import threading
import time

from fastapi import FastAPI

from autofocus.service.api.app import create_app
from autofocus.service.jobs.manager import JobManager
from autofocus.settings import Settings


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
        import uvicorn

        self.port = port or free_port()
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": self.port})
        self.app: FastAPI = create_app(self.settings)
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
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
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
