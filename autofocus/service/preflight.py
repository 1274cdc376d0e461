"""Checks of the whole configuration before the daemon starts (`autofocus serve`).

Everything that would otherwise start a daemon that then refuses every request
(an unknown default strategy or scorer, a default tolerance below the stage's
resolution) or dies with a traceback (a database path that is a directory, a
file that is not SQLite, a place that cannot be written) is refused here with
one sentence, so `serve` exits 2 with one line before it listens.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from autofocus_drivers.errors import ConfigurationError

from autofocus.errors import UnknownNameError
from autofocus.settings import Settings


def check_service_settings(settings: Settings) -> None:
    """Raise `ConfigurationError` (one sentence) for settings the daemon cannot serve with:
    `[focus] strategy` or `scorer` unknown (a scorer is a registered name or the path of an
    existing `.onnx` model file), `[focus] tolerance_um` below `z_resolution_um` (µm), or a
    `database_path` that cannot hold the job database. Opens (and creates) the database."""
    from autofocus.scoring.registry import canonical_scorer_name
    from autofocus.search.strategies.registry import available_strategies

    focus = settings.focus
    strategies = available_strategies()
    if focus.strategy not in strategies:
        raise ConfigurationError(
            f"[focus] strategy {focus.strategy!r} is unknown; available: {', '.join(strategies)}"
        )
    try:
        canonical_scorer_name(str(focus.scorer))
    except UnknownNameError as exc:
        raise ConfigurationError(f"[focus] scorer: {exc}") from None
    if focus.tolerance_um < settings.z_resolution_um:
        raise ConfigurationError(
            f"[focus] tolerance_um {focus.tolerance_um:g} µm is below the stage resolution "
            f"z_resolution_um {settings.z_resolution_um:g} µm; no search can meet it"
        )
    check_database_path(settings.database_path)


def check_database_path(path: Path) -> None:
    """Raise `ConfigurationError` when the job database cannot live at `path`: a folder, a
    file that is not an SQLite database (or of a newer schema), or a place that cannot be
    created or written."""
    from autofocus.service.jobs.store import JobStore

    if Path(path).is_dir():
        raise ConfigurationError(f"database_path {path} is a folder, not a database file")
    try:
        store = JobStore(path)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigurationError(f"database_path {path} cannot be used: {exc}") from None
    try:
        store.probe_write()
    except sqlite3.Error as exc:
        raise ConfigurationError(f"database_path {path} cannot be written: {exc}") from None
    finally:
        store.close()
