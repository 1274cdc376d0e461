"""The `autofocus` Typer application object; command modules register onto it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="autofocus",
    help="Real-time microscope autofocus: score z-stacks, evaluate scorers, focus a microscope, "
    "serve the HTTP daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
