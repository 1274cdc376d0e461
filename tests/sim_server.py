"""A real uvicorn on 127.0.0.1 serving the simulated microscope, in the test process.

`sim_server(db_path, **settings)` is the set-up the HTTP test modules share:
console logging at `log_level`, settings from `load_settings` keywords on the
SQLite file `db_path`, and a `BackgroundServer` running for the `with` block.
Tests that need signals, /proc or exit codes use `daemon_proc.Daemon` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autofocus.logging import configure_logging
from autofocus.service.api.server import BackgroundServer
from autofocus.settings import load_settings


@contextmanager
def sim_server(
    db_path: Path, *, log_level: str = "warning", **settings: Any
) -> Iterator[BackgroundServer]:
    """A started `BackgroundServer` on the simulated microscope; stopped on leaving."""
    configure_logging("console", log_level)
    with BackgroundServer(load_settings(None, database_path=db_path, **settings)) as srv:
        yield srv
