"""Command-line interface `autofocus`.

Each sub-module registers its commands on `autofocus.cli.app.app`; importing
them here assembles the whole CLI. Command modules import only typer and the
standard library at module level (what a command needs is imported when it
runs), so `autofocus --help` stays fast; `tests/test_cli_help.py` checks that
it imports neither FastAPI, uvicorn, onnxruntime nor scipy.
"""

from __future__ import annotations

import importlib

from autofocus.cli.app import app
from autofocus.cli.help import enable_command_logging

_COMMAND_MODULES = (
    "offline", "focus", "serve", "bench", "bench_search", "bench_focus_map", "calibrate",
    "record",
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
    Logging is configured when a command starts (`autofocus.cli.help`), not here.
    """
    enable_command_logging()
    _load_commands()
    app(prog_name="autofocus")


__all__ = ["app", "main"]
