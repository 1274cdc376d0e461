"""Offline commands: `autofocus stack` (score one z-stack) and `autofocus eval` (judge scorers).

Both print rich tables to stdout, or JSON to stdout only with `--json`.
Progress and errors go to stderr; an error is one red line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autofocus.cli.app import app
from autofocus.cli.help import AutofocusCommand, listing

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from rich.text import Text

DEFAULT_EVAL_SCORERS = ("tenengrad", "vol", "nvar", "brenner")

EXIT_ERROR = 2


def _stdout() -> Console:
    from rich.console import Console

    # Built per call (not at import) so test runners that swap sys.stdout are honoured.
    console = Console(file=sys.stdout)
    if not console.is_terminal:
        # Piped to a file or pager: rich would assume 80 columns and truncate the tables.
        console = Console(file=sys.stdout, width=160)
    return console


def _stderr() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, soft_wrap=True)


@contextmanager
def _errors_to_exit() -> Iterator[None]:
    """Turn any error into one red line on stderr and exit code 2 (never a traceback)."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        from autofocus.errors import AutofocusError

        if isinstance(exc, AutofocusError | OSError | ValueError):
            _fail(str(exc) or type(exc).__name__)
        # A bug: still one line, but say it is internal.
        _fail(f"internal error ({type(exc).__name__}): {exc}")


def _fail(message: str) -> None:
    from rich.text import Text

    _stderr().print(Text(f"error: {message}", style="bold red"))
    raise typer.Exit(EXIT_ERROR)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def _um(z: float | None) -> str:
    return "–" if z is None else f"{z:+.3f}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _yes_no(flag: bool | None) -> Text:
    from rich.text import Text

    if flag is None:
        return Text("–", style="dim")
    return Text("yes", style="green") if flag else Text("no", style="red")


@app.command("stack", cls=AutofocusCommand)
def stack_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder of <name>_z<um>.tif|png|jpg planes, a multi-page (OME-)TIFF, "
            "or a CSV with image_path,z_um[,focus_score].",
            metavar="STACK",
            show_default=False,
        ),
    ],
    scorer: Annotated[
        str,
        typer.Option("--scorer", "-s", metavar="NAME",
                     help="Focus scorer (`autofocus eval --help` lists them)."),
    ] = "tenengrad",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    pattern: Annotated[
        str | None,
        typer.Option(
            "--pattern",
            help="Regex finding z (µm) in a file name without extension; named group 'z' "
            "or first group. Default: '_z<float>' at the end of the name.",
        ),
    ] = None,
    z_step_um: Annotated[
        float | None,
        typer.Option("--z-step-um", help="Plane spacing (µm) of a multi-page TIFF that does "
                     "not record it."),
    ] = None,
) -> None:
    """Score every plane of one z-stack and report the sharpest plane.

    To judge scorers against labels on several stacks, use `autofocus eval`.
    """
    from rich.table import Table
    from rich.text import Text

    from autofocus.stacks.evaluation import score_stack

    with _errors_to_exit():
        result = score_stack(path, scorer, pattern=pattern, z_step_um=z_step_um)
        if json_output:
            _emit_json(result)
            return
        out = _stdout()
        table = Table(title=f"{result['stack']} — scorer {result['scorer']}")
        table.add_column("#", justify="right")
        table.add_column("z (µm)", justify="right")
        table.add_column("score", justify="right")
        table.add_column("relative", justify="right")
        table.add_column("plane")
        best_score = result["best_score"]
        for i, plane in enumerate(result["planes"]):
            score = plane["score"]
            rel = score / best_score if score is not None and best_score else None
            name = Path(plane["path"]).name + (
                f"#{plane['page']}" if plane["page"] is not None else ""
            )
            is_best = i == result["best_index"]
            table.add_row(
                str(i),
                _um(plane["z_um"]),
                _num(score),
                "–" if rel is None else f"{rel:.3f}",
                name + ("  ◀ best" if is_best else ""),
                style="bold green" if is_best else None,
            )
        out.print(table)
        out.print(
            Text(f"best z = {result['best_z_um']:+.4f} µm  ({Path(result['best_path']).name})")
        )
        if result["skipped"]:
            _stderr().print(
                Text(f"skipped {len(result['skipped'])} file(s) without z in the name", "yellow")
            )


def _progress_printer(progress: Progress) -> Callable[[str, int, int], None]:
    task: list[Any] = []

    def update(stack: str, done: int, total: int) -> None:
        if not task:
            task.append(progress.add_task("scoring", total=total))
        progress.update(task[0], completed=done, description=f"scored {stack}" if stack else "")

    return update


def _eval_tables(result: dict[str, Any]) -> list[Table]:
    from rich.table import Table

    tables = []
    for name, summary in result["scorers"].items():
        table = Table(title=f"scorer {name} (z, error and tolerance in µm)")
        for col, justify in (
            ("stack", "left"),
            ("planes", "right"),
            ("chosen z", "right"),
            ("best z", "right"),
            ("error", "right"),
            ("tol", "right"),
            ("in tol", "center"),
            ("top-0", "center"),
            ("top-1", "center"),
            ("spearman", "right"),
        ):
            table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for e in summary["stacks"]:
            labelled = e["best_z_um"] is not None
            table.add_row(
                e["stack"],
                str(e["planes"]),
                _um(e["chosen_z_um"]),
                _um(e["best_z_um"]),
                _um(e["error_um"]),
                f"{e['tolerance_um']:.3g}" if labelled and e["tolerance_um"] is not None else "–",
                _yes_no(e["within_tolerance"]),
                _yes_no(e["top0"]),
                _yes_no(e["top1"]),
                "–" if e["spearman"] is None else f"{e['spearman']:+.2f}",
                style=None if labelled else "dim",
            )
        tables.append(table)
    summary_table = Table(
        title=f"summary — {result['labeled']} labelled of {result['stacks']} stacks"
    )
    for col in ("scorer", "in tolerance", "top-0", "top-1", "mean spearman", "score time (s)"):
        summary_table.add_column(col, justify="left" if col == "scorer" else "right")
    for name, s in result["scorers"].items():
        n = s["labeled"]
        summary_table.add_row(
            name,
            f"{s['within_tolerance']}/{n}",
            f"{s['top0']}/{n}",
            f"{s['top1']}/{n}",
            "–" if s["mean_spearman"] is None else f"{s['mean_spearman']:+.3f}",
            f"{s['score_s']:.2f}",
        )
    tables.append(summary_table)
    return tables


@app.command("eval", cls=listing("scorers", "strategies"))
def eval_command(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Corpus folder: a manifest.csv with labels (stack,path,z_um,best_z_um,"
            "tolerance_um,label,...) or sub-folders of z-named images.",
            metavar="CORPUS",
            show_default=False,
        ),
    ],
    scorer: Annotated[
        list[str] | None,
        typer.Option(
            "--scorer",
            "-s",
            metavar="NAME",
            help="Scorer to evaluate (repeatable; listed below); with --search only the "
            "first is used.  [default: " + ", ".join(DEFAULT_EVAL_SCORERS) + "; with "
            "--search: tenengrad]",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Run search strategies through the replay driver from several start "
            "positions instead of scoring every plane (uses the first --scorer).",
        ),
    ] = False,
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy",
            metavar="NAME",
            help="Strategy run by --search (repeatable; listed below).  "
            "[default: {default:focus.strategy}]",
        ),
    ] = None,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="WINDOW",
            help="Interval searched by --search: full, low or high (repeatable).  "
            "[default: full]",
        ),
    ] = None,
) -> None:
    """Judge scorers (or with --search, strategies) on labelled z-stacks.

    Each scorer scores every plane of every stack; its sharpest plane is
    compared with the stack's label. With `--search`, each strategy runs on
    every labelled stack through the replay driver instead, from the bottom,
    middle and top, next to the exhaustive best-plane result.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autofocus.stacks.evaluation import evaluate_corpus

    names = list(scorer) if scorer else list(DEFAULT_EVAL_SCORERS)
    if search:
        _eval_search(directory, names[0] if scorer else "tenengrad", strategy, window, json_output)
        return
    with _errors_to_exit():
        err = _stderr()
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            # Only on a terminal: in a log or pipe a progress bar is noise (and a
            # stray blank line before an error message).
            disable=not err.is_terminal,
        ) as progress:
            result = evaluate_corpus(directory, names, progress=_progress_printer(progress))
        if json_output:
            _emit_json(result)
            return
        out = _stdout()
        for table in _eval_tables(result):
            out.print(table)


def _eval_search(
    directory: Path,
    scorer: str,
    strategies: list[str] | None,
    windows: list[str] | None,
    json_output: bool,
) -> None:
    """`autofocus eval --search`: strategies through the replay driver on every stack."""
    from autofocus.settings import FocusDefaults
    from autofocus.stacks.search_eval import evaluate_search, render_search_table

    with _errors_to_exit():
        report = evaluate_search(
            directory,
            strategies or [FocusDefaults().strategy],  # what the help says the default is
            scorer=scorer,
            windows=tuple(windows or ["full"]),
        )
        if json_output:
            _emit_json(report)
            return
        _stdout().print(render_search_table(report))
