"""Where the CLI writes: tables and JSON/CSV on stdout, errors and progress on stderr.

Every error is one line `error: ...` on stderr and exit code 2 (1 is kept for
"ran, but the answer is no", e.g. a failed focus). Messages are printed as
plain text, never parsed as Rich markup, so a regex such as `[eE]` or a path
with brackets reaches the user intact.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

EXIT_ERROR = 2
"""Exit code for invalid input or an error that stopped the command."""


def stdout_console() -> Console:
    """A console on stdout, built per call so test runners that swap sys.stdout are honoured.

    Its width is the terminal's; redirected to a file or pipe it is `COLUMNS` or 80,
    and the tables fold or drop columns to fit (`autofocus.cli.tables`).
    """
    from rich.console import Console

    return Console(file=sys.stdout)


def stderr_console() -> Console:
    """A console on stderr that never wraps a message mid-line."""
    from rich.console import Console

    return Console(file=sys.stderr, soft_wrap=True)


def note(message: str, style: str = "yellow") -> None:
    """One plain-text line on stderr (a hint or a warning), never parsed as markup."""
    from rich.text import Text

    stderr_console().print(Text(message, style=style))


def fail(message: str, code: int = EXIT_ERROR, *, hint: str | None = None) -> NoReturn:
    """Print `error: message` (and an optional `hint:` line) on stderr and exit with `code`."""
    from rich.text import Text

    console = stderr_console()
    console.print(Text(f"error: {message}", style="bold red"))
    if hint:
        console.print(Text(f"hint: {hint}", style="yellow"))
    raise typer.Exit(code)


@contextmanager
def errors_to_exit() -> Iterator[None]:
    """Turn any error into one red line on stderr and exit code 2 (never a traceback)."""
    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        from autofocus.errors import AutofocusError

        if isinstance(exc, AutofocusError | OSError | ValueError):
            fail(str(exc) or type(exc).__name__)
        # A bug: still one line, but say it is internal.
        fail(f"internal error ({type(exc).__name__}): {exc}")


def emit_json(data: Any) -> None:
    """`data` as indented JSON on stdout (NaN refused: JSON has none)."""
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def emit_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV table on stdout; None is written as an empty cell, floats in full precision."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    sys.stdout.flush()


def one_output_format(json_output: bool, csv_output: bool) -> None:
    """Refuse `--json` together with `--csv` (exit 2)."""
    if json_output and csv_output:
        fail("--json and --csv are exclusive; pick one")


__all__ = [
    "EXIT_ERROR",
    "emit_csv",
    "emit_json",
    "errors_to_exit",
    "fail",
    "note",
    "one_output_format",
    "stderr_console",
    "stdout_console",
]
