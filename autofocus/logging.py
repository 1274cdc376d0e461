"""structlog set-up: JSON lines in the daemon, pretty key/value output on a terminal.

The CLI and the daemon call `configure_logging(format, level)` once at start-up. Events
are key/value (`job_id`, `z_um`, `score`, ...); context bound with
`structlog.contextvars.bind_contextvars(job_id=...)` is added to every event.

As a library (an MDA engine, a pycromanager hook, `focus()` in a script) we print
nothing unless the application configures logging: every module logs through
`get_logger(name)`, which goes to structlog once the application (or
`configure_logging`) has configured structlog, and otherwise to the standard library
logger of the same name ("autofocus.…"), which has a `NullHandler` and so stays
silent until the application configures `logging` (then our warnings show at its
level, rendered as `event key=value ...`).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "json", "console"]

#: Library convention: silent unless the application adds handlers (no "last resort"
#: stderr output of our warnings).
for _package in ("autofocus", "autofocus_drivers", "autofocus_models"):
    logging.getLogger(_package).addHandler(logging.NullHandler())

_STDLIB_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.stdlib.filter_by_level,  # cheap: nothing is rendered below the logger's level
    structlog.contextvars.merge_contextvars,
    structlog.processors.format_exc_info,
    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
]


class LibraryLogger:
    """A structlog-style logger that is silent unless the application configures logging.

    Each call goes to `structlog.get_logger(name)` when structlog is configured (the CLI,
    the daemon, or an application that uses structlog), and otherwise to
    `logging.getLogger(name)` (silent by default: see the module docstring). Supports
    the usual `debug/info/warning/error/exception(event, **kv)` and `bind(**kv)`.
    """

    __slots__ = ("_name", "_context")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = dict(context or {})

    def _target(self) -> Any:
        if structlog.is_configured():
            logger = structlog.get_logger(self._name)
        else:
            logger = structlog.wrap_logger(
                logging.getLogger(self._name), processors=_STDLIB_PROCESSORS,
                wrapper_class=structlog.stdlib.BoundLogger,
            )
        return logger.bind(**self._context) if self._context else logger

    def bind(self, **values: Any) -> LibraryLogger:
        """A logger that adds `values` to every event."""
        return LibraryLogger(self._name, {**self._context, **values})

    def new(self, **values: Any) -> LibraryLogger:
        return LibraryLogger(self._name, values)

    def unbind(self, *keys: str) -> LibraryLogger:
        return LibraryLogger(self._name, {k: v for k, v in self._context.items() if k not in keys})

    def __getattr__(self, method: str) -> Any:
        return getattr(self._target(), method)


def get_logger(name: str) -> LibraryLogger:
    """The logger every module of the library uses (silent unless logging is configured)."""
    return LibraryLogger(name)


def configure_logging(log_format: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog and the standard library logging to write to stderr.

    `log_format="auto"` chooses pretty console output when stderr is a
    terminal and JSON otherwise. `level` is a standard level name.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(name)s %(message)s")
