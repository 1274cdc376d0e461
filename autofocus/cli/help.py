"""Help formatting and command start-up shared by every `autofocus` command.

`AutofocusCommand` is the click command class of every sub-command:

- its `--help` groups options under headings (the `rich_help_panel` given to
  `typer.Option`: "Search", "Simulator (--driver sim)", ...), general options first;
- it can append lists that live in registries (every registered scorer and
  strategy with a one-line description), imported only when help is shown, so
  the lists are never stale and `autofocus --help` imports no scorer;
- it configures logging (to stderr) just before the command body runs, not at
  import, so `--help` never imports structlog (only when started by `main`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from typer import _click
from typer.core import TyperCommand, TyperGroup

GENERAL_PANEL = "Options"


def _scorer_rows() -> list[tuple[str, str]]:
    from autofocus.scoring.registry import available_scorers, scorer_descriptions

    descriptions = scorer_descriptions()
    return [(name, descriptions.get(name, "")) for name in available_scorers()]


def _strategy_rows() -> list[tuple[str, str]]:
    from autofocus.search.strategies.registry import describe_strategies

    return list(describe_strategies().items())


def _reason_rows() -> list[tuple[str, str]]:
    from autofocus.search.reasons import FailureReason

    return [(reason.value, reason.sentence) for reason in FailureReason]


LISTS: dict[str, tuple[str, Callable[[], list[tuple[str, str]]]]] = {
    "scorers": ("Scorers (--scorer)", _scorer_rows),
    "strategies": ("Strategies (--strategy)", _strategy_rows),
    "reasons": ("Failure reason codes (printed as [code] after the reason)", _reason_rows),
}
"""Lists a command's help can append: key → (heading, rows loaded on demand)."""


_SETTING_DEFAULT = re.compile(r"\{default:([a-z_]+(?:\.[a-z_]+)*)\}")


def settings_default(path: str) -> Any:
    """The built-in default of the setting at dotted `path` (e.g. `focus.range_um`).

    Help texts write `{default:focus.range_um}` so the default shown is the one
    `autofocus.settings` really has; it is looked up only when help is printed.
    """
    from autofocus.settings import Settings

    model: Any = Settings
    *groups, name = path.split(".")
    for group in groups:
        model = model.model_fields[group].annotation
    return model.model_fields[name].get_default(call_default_factory=True)


def expand_help(text: str) -> str:
    """`text` with every `{default:PATH}` replaced by that setting's built-in default."""
    return _SETTING_DEFAULT.sub(lambda m: f"{settings_default(m.group(1))}", text)


CONFIGURE_LOGGING = False
"""Set by `autofocus.cli.main`: a command then configures logging before it runs. Left
False when the app is driven in-process (typer's CliRunner in tests), whose swapped
stderr is closed after each call and must not become the log's destination."""


def enable_command_logging() -> None:
    """Make every command configure logging before it runs (what `autofocus.cli.main` does)."""
    global CONFIGURE_LOGGING
    CONFIGURE_LOGGING = True


def configure_cli_logging() -> None:
    """Logs to stderr (stdout carries tables and JSON), at `AUTOFOCUS_LOG_LEVEL` (warning)."""
    from autofocus.logging import configure_logging

    configure_logging("console", os.environ.get("AUTOFOCUS_LOG_LEVEL", "warning"))


_RANGE_METAVAR = re.compile(r"<(int|float) range>")
_UPPER_METAVAR = re.compile(r"(?<=[ =])([A-Z][A-Z_]*)(?=$|\.\.\.| )")


def consistent_metavar(opts: str) -> str:
    """One metavar style in every help: `<int>`, `<float>`, `<name>` (typer mixes `<int
    range>` and upper-case `NAME`)."""
    opts = _RANGE_METAVAR.sub(r"<\1>", opts)
    return _UPPER_METAVAR.sub(lambda m: f"<{m.group(1).lower()}>", opts)


class AutofocusCommand(TyperCommand):
    """A typer command whose help groups options by panel and may list registry entries."""

    help_lists: tuple[str, ...] = ()
    """Keys of `LISTS` appended to this command's help."""

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        panels: dict[str, list[tuple[str, str]]] = {GENERAL_PANEL: []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            record = (record[0], expand_help(record[1]))
            if param.param_type_name == "argument":
                arguments.append(record)
                continue
            record = (consistent_metavar(record[0]), record[1])
            panel = getattr(param, "rich_help_panel", None) or GENERAL_PANEL
            panels.setdefault(panel, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for name, rows in panels.items():
            if rows:
                with formatter.section(name):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        for key in self.help_lists:
            heading, rows = LISTS[key]
            with formatter.section(heading):
                formatter.write_dl(rows())
        super().format_epilog(ctx, formatter)

    def invoke(self, ctx: _click.Context) -> object:
        if CONFIGURE_LOGGING:
            configure_cli_logging()
        return super().invoke(ctx)


def listing(*keys: str) -> type[AutofocusCommand]:
    """An `AutofocusCommand` class whose help ends with the lists named by `keys`."""
    unknown = set(keys) - set(LISTS)
    if unknown:
        raise ValueError(f"unknown help lists {sorted(unknown)}; known: {sorted(LISTS)}")
    return type("AutofocusListingCommand", (AutofocusCommand,), {"help_lists": tuple(keys)})


class AutofocusGroup(TyperGroup):
    """The top-level group (and `bench`): plain help, sub-commands in registration order."""


__all__ = [
    "AutofocusCommand",
    "AutofocusGroup",
    "configure_cli_logging",
    "enable_command_logging",
    "listing",
]
