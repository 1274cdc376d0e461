"""The `autofocus` Typer application object; command modules register onto it.

Start-up time matters here: `autofocus --help` must answer at once, so this
module and every command module import only typer and the standard library at
module level; each command imports what it needs (numpy, the scorers, FastAPI)
when it runs. `benchmarks/bench_startup.py` measures it.

Help is rendered by click's plain formatter (`rich_markup_mode=None`), not by
typer's rich panels: importing typer's rich help costs ~60 ms, about three bare
interpreter start-ups, and the plain form shows boolean flags as flags (typer's
rich form prints `--json <bool>`). Options are grouped under the heading named
by their `rich_help_panel` (see `AutofocusCommand`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from autofocus.cli.help import AutofocusCommand, AutofocusGroup

app = typer.Typer(
    name="autofocus",
    cls=AutofocusGroup,
    help="Real-time microscope autofocus: score z-stacks, evaluate scorers, focus a microscope, "
    "serve the HTTP daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        import platform

        import autofocus

        typer.echo(f"autofocus {autofocus.__version__} (Python {platform.python_version()})")
        raise typer.Exit(0)


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    # The help text is the Typer's `help` above; this callback only adds `--version`.
    del version


__all__ = ["AutofocusCommand", "app"]
