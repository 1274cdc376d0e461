"""Progress bars for long commands, on stderr and only on a terminal.

In a log file or a pipe a progress bar is noise (and a stray blank line before
an error message), so it is shown only when stderr is a terminal and the
command's output is not JSON/CSV meant for a program. Use:

    with progress_bar("scoring stacks", total=n) as bar:
        for item in items:
            ...
            bar.advance(label=item.name)

or hand `bar.callback()` to a function that reports `(label, done, total)`
(the signature of `evaluate_corpus` / `evaluate_search` progress callbacks).
Any command may use it (e.g. `autofocus calibrate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Bar:
    """A handle on one progress task; every method is a no-op when the bar is hidden."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, steps: float = 1, *, label: str | None = None) -> None:
        """Count `steps` more done; `label` (e.g. the stack just finished) is shown beside it."""
        fields = {"label": label} if label is not None else {}
        self._progress.update(self._task, advance=steps, **fields)

    def update(self, done: float, total: float | None = None, *, label: str | None = None) -> None:
        """Set the count done (and the total when it became known)."""
        fields: dict[str, Any] = {"label": label} if label is not None else {}
        if total is not None:
            fields["total"] = total
        self._progress.update(self._task, completed=done, **fields)

    def callback(self) -> Callable[[str, int, int], None]:
        """`(label, done, total)` → update; for library functions that report progress so."""

        def report(label: str, done: int, total: int) -> None:
            self.update(done, total, label=label)

        return report


@contextmanager
def progress_bar(
    description: str, total: float | None = None, *, enabled: bool = True
) -> Iterator[Bar]:
    """A transient progress bar on stderr: `description`, bar, done/total, label, elapsed.

    Hidden (all updates ignored) when `enabled` is False or stderr is not a terminal.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}", markup=False),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    ) as progress:
        task = progress.add_task(description, total=total, label="")
        yield Bar(progress, task)


__all__ = ["Bar", "progress_bar"]
