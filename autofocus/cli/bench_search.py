"""`autofocus bench search`: search strategies side by side on the same simulated trials."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from autofocus.cli.bench import bench_app
from autofocus.cli.help import AutofocusCommand


@bench_app.command(
    "search", cls=AutofocusCommand, short_help="Strategies side by side on simulated trials."
)
def bench_search(
    per_case: Annotated[
        int, typer.Option(help="Trials per specimen × modality × photon level.")
    ] = 5,
    range_um: Annotated[float, typer.Option(help="Full search range (µm).")] = 50.0,
    scorer: Annotated[
        str, typer.Option(help="Focus measure used by every strategy.")
    ] = "tenengrad",
    specimen: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Specimen (repeatable).  [default: beads, cells, "
                     "fibres]"),
    ] = None,
    modality: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Modality (repeatable): fluorescence or "
                     "brightfield.  [default: fluorescence]"),
    ] = None,
    photons: Annotated[
        list[float] | None,
        typer.Option(metavar="PHOTONS", help="Photon level per px per ms (repeatable).  "
                     "[default: 50 and 10]"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the trial set.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the default strategy and the baselines on identical simulated trials.

    Success means |physical stage position after parking − true focus| ≤ DOF/4.
    Reports success rate, frames and hardware time (virtual clock) per strategy.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from autofocus.bench.search import default_contenders, make_trials, run_benchmark

    trials = make_trials(
        per_case,
        range_um=range_um,
        specimens=specimen or ("beads", "cells", "fibres"),
        modalities=modality or ("fluorescence",),
        photon_levels=photons or (50.0, 10.0),
        seed=seed,
    )
    contenders = default_contenders()
    err = Console(stderr=True)
    with Progress(
        TextColumn("[bold]trials[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("bench", total=len(trials) * len(contenders))
        report = run_benchmark(
            trials,
            contenders,
            scorer_name=scorer,
            range_um=range_um,
            progress=lambda: progress.advance(task),
        )
    if as_json:
        slim = {
            **report,
            "contenders": {
                k: {kk: vv for kk, vv in v.items() if kk != "runs"}
                for k, v in report["contenders"].items()
            },
        }
        sys.stdout.write(json.dumps(slim, indent=2) + "\n")
        return
    _print_table(report)


def _print_table(report: dict[str, Any]) -> None:
    from autofocus.cli.output import note, stdout_console
    from autofocus.cli.tables import Column, dropped_note, fitted_table

    console = stdout_console()
    rows = [
        [
            label,
            f"{100 * s['success_rate']:.1f} %",
            f"{s['mean_frames']:.1f}",
            str(s["max_frames"]),
            f"{s['mean_hardware_s']:.2f}",
            f"{s['median_abs_error_um']:.3f}",
        ]
        for label, s in report["contenders"].items()
    ]
    table, dropped = fitted_table(
        f"search benchmark: {report['trials']} simulated trials, range "
        f"{report['range_um']:g} µm, scorer {report['scorer']}, DOF {report['dof_um']:.2f} µm",
        [Column("strategy", "left"), Column("success\n(≤ DOF/4)"), Column("mean\nframes"),
         Column("max\nframes", priority=3), Column("mean\nhardware s", priority=2),
         Column("median\n|error| µm", priority=1)],
        rows,
        console,
    )
    console.print(table)
    message = dropped_note(dropped, console)
    if message:
        note(message, style="dim")
