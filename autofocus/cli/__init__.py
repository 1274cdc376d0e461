"""Command-line interface `autofocus`.

Each sub-module registers its commands on `autofocus.cli.app.app`; importing
them here assembles the whole CLI.
"""

from __future__ import annotations

import importlib
import os

from autofocus.cli.app import app
from autofocus.logging import configure_logging

_COMMAND_MODULES = (
    "offline", "focus", "serve", "bench", "bench_search", "bench_focus_map", "calibrate",
)


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"autofocus.cli.{name}")
        except ModuleNotFoundError as exc:
            # A command module not written yet is skipped; a missing dependency is not.
            if exc.name != f"autofocus.cli.{name}":
                raise


def main() -> None:
    """Entry point of the `autofocus` console script.

    Logs go to stderr (stdout carries tables and JSON); the level comes from
    `AUTOFOCUS_LOG_LEVEL` (default warning; `serve` reconfigures for the daemon).
    """
    configure_logging("console", os.environ.get("AUTOFOCUS_LOG_LEVEL", "warning"))
    _load_commands()
    app()


__all__ = ["app", "main"]
