"""Tables that fit the terminal: identifiers in full, lower-value columns dropped first.

A column has a priority: 0 for identifiers (stack, scorer, strategy), never
truncated and never dropped; higher numbers are dropped first when the table
does not fit the console's width (80 when output is redirected, unless
`COLUMNS` says otherwise). The caller prints which columns were left out and
that `--json`/`--csv` or a wider terminal show them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table


@dataclass(frozen=True)
class Column:
    """One table column: `header` (may hold line breaks, to stay narrow), alignment and
    `priority` (0 = never dropped)."""

    header: str
    justify: Literal["left", "center", "right"] = "right"
    priority: int = 0


def fitted_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[RenderableType]],
    console: Console,
    *,
    row_styles: Sequence[str | None] | None = None,
) -> tuple[Table, list[str]]:
    """A table of `rows` at most `console.width` wide; returns it and the dropped headers.

    String cells are shown as plain text (never parsed as Rich markup).

    Columns are dropped from the highest priority number down until the table's
    natural width fits; priority-0 columns are kept whatever the width (on a
    very narrow terminal the table is then wider than the terminal rather than
    cutting an identifier). The title wraps; cells never do.
    """
    keep = list(range(len(columns)))
    dropped: list[str] = []
    while True:
        table = _build(title, [columns[i] for i in keep], [[r[i] for i in keep] for r in rows],
                       row_styles)
        # Measured unconstrained: rich clamps a measurement to the console's width.
        width = console.measure(table, options=console.options.update_width(100_000)).maximum
        droppable = [i for i in keep if columns[i].priority > 0]
        if width <= console.width or not droppable:
            return table, dropped
        worst = max(droppable, key=lambda i: (columns[i].priority, i))
        keep.remove(worst)
        dropped.append(" ".join(columns[worst].header.split()))


def _build(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[RenderableType]],
    row_styles: Sequence[str | None] | None,
) -> Table:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for j, col in enumerate(columns):
        # Identifiers get their full width up front, so rich never shrinks them.
        min_width = (
            max([*map(len, col.header.splitlines()), *(_cell_len(row[j]) for row in rows)])
            if col.priority == 0 else None
        )
        table.add_column(col.header, justify=col.justify, no_wrap=True, min_width=min_width)
    for i, row in enumerate(rows):
        # Plain strings become Text: a stack or file name like "run[1]" is not markup.
        cells = [Text(c) if isinstance(c, str) else c for c in row]
        table.add_row(*cells, style=row_styles[i] if row_styles else None)
    return table


def _cell_len(cell: object) -> int:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.cell_len
    from rich.cells import cell_len

    return cell_len(str(cell))


def dropped_note(dropped: Sequence[str], console: Console) -> str | None:
    """The line telling which columns a narrow console left out (None when none were)."""
    if not dropped:
        return None
    return (
        f"{console.width} columns: left out {', '.join(dropped)} "
        "(--json or --csv, or a wider terminal, shows every column)"
    )


__all__ = ["Column", "dropped_note", "fitted_table"]
