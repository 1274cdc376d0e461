"""`autofocus bench search`: search strategies side by side on the same simulated trials.

Cases (`--case`, repeatable; default `main`):

- `main`: specimens × photon levels × `--per-case` offsets over `--range-um`;
  also prints the confidence calibration table of the first contender.
- `debris`: a debris layer 10–20 µm from the specimen (`--debris-trials`, 50).
- `garbage`: 2–5 corrupted frames per run (`--garbage-trials`, 100).
- `range200`: the `main` trials over a 200 µm range.
- `tracking`: 100 time points of 0.1–1 DOF drift, `mode="track"`.
- `prior`: the `main` trials as revisits, a prior (σ = 1 DOF) drawn around focus.
- `prior-far`: the `main` trials with a prior 20 µm from focus (nothing there).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autofocus.cli.bench import bench_app
from autofocus.cli.help import AutofocusCommand
from autofocus.cli.output import fail

if TYPE_CHECKING:
    from autofocus.bench.search import Contender, Trial

CASES = ("main", "debris", "garbage", "range200", "tracking", "prior", "prior-far")


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
    case: Annotated[
        list[str] | None,
        typer.Option(metavar="CASE", help=f"Case to run (repeatable): {', '.join(CASES)}, or "
                     "all.  [default: main]"),
    ] = None,
    debris_count: Annotated[
        int, typer.Option("--debris-trials", help="Trials of the debris case.", min=1)
    ] = 50,
    garbage_count: Annotated[
        int, typer.Option("--garbage-trials", help="Trials of the garbage case.", min=1)
    ] = 100,
    track_points: Annotated[
        int, typer.Option("--track-points", help="Time points of the tracking case.", min=1)
    ] = 100,
    track_specimen: Annotated[
        str, typer.Option(help="Specimen of the tracking case.")
    ] = "cells",
    strategy: Annotated[
        list[str] | None,
        typer.Option(metavar="PREFIX",
                     help="Only contenders whose label starts with this (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the trial set.")] = 0,
    hardware_profile: Annotated[
        str, typer.Option(help="Simulated stage and camera speeds: default, motorized or "
                          "piezo (assumed figures, see README).")
    ] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the default strategy and the baselines on identical simulated trials.

    Success means |physical stage position after parking − true focus| ≤ DOF/4;
    "wrong successes" are reported successes more than DOF/2 off the specimen
    plane. Reports success, frames, hardware time (virtual clock) and failure
    codes per strategy, per case.
    """
    import os

    from autofocus.bench.search import (
        calibration_table,
        debris_trials,
        default_contenders,
        garbage_trials,
        make_trials,
        prior_trials,
        run_tracking,
    )

    if "AUTOFOCUS_LOG_LEVEL" not in os.environ:
        from autofocus.logging import configure_logging

        # The garbage and debris cases make the engine warn on every injected frame by design;
        # the tables report those outcomes, so only errors are logged here.
        configure_logging("console", "error")
    cases = list(case or ["main"])
    if "all" in cases:
        cases = list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        fail(f"unknown case(s) {unknown}; choose from {CASES}")
    from autofocus_drivers.sim import PROFILE_NAMES

    if hardware_profile not in PROFILE_NAMES:
        fail(f"--hardware-profile must be one of {', '.join(PROFILE_NAMES)}, "
             f"got {hardware_profile!r}")
    contenders = default_contenders()
    if strategy:
        contenders = [c for c in contenders if any(c.label.startswith(s) for s in strategy)]
    reports: dict[str, Any] = {}
    for name in cases:
        if name == "tracking":
            reports[name] = run_tracking(points=track_points, specimen=track_specimen,
                                         scorer_name=scorer, seed=seed,
                                         hardware_profile=hardware_profile)
            continue
        rng = 200.0 if name == "range200" else range_um
        if name == "debris":
            trials = debris_trials(debris_count, range_um=range_um, seed=seed)
        elif name == "garbage":
            trials = garbage_trials(garbage_count, range_um=range_um, seed=seed)
        elif name in ("prior", "prior-far"):
            trials = prior_trials(per_case, range_um=range_um, seed=seed,
                                  far_um=20.0 if name == "prior-far" else None)
        else:  # main and range200 differ only in the range
            trials = make_trials(
                per_case,
                range_um=rng,
                specimens=specimen or ("beads", "cells", "fibres"),
                modalities=modality or ("fluorescence",),
                photon_levels=photons or (50.0, 10.0),
                seed=seed,
            )
        trials = [dataclasses.replace(t, hardware_profile=hardware_profile) for t in trials]
        reports[name] = _run(trials, contenders, scorer, rng, name)
    if as_json:
        sys.stdout.write(json.dumps(_slim(reports), indent=2) + "\n")
        return
    for name, report in reports.items():
        if name == "tracking":
            _print_tracking(report)
        else:
            _print_table(report, name)
            if name == "main":
                first = next(iter(report["contenders"].values()))
                label = next(iter(report["contenders"]))
                _print_calibration(calibration_table(first["runs"]), label)


def _run(
    trials: Sequence[Trial], contenders: Sequence[Contender], scorer: str, range_um: float,
    name: str,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from autofocus.bench.search import run_benchmark

    err = Console(stderr=True)
    with Progress(
        TextColumn(f"[bold]{name}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("bench", total=len(trials) * len(contenders))
        return run_benchmark(
            trials,
            contenders,
            scorer_name=scorer,
            range_um=range_um,
            progress=lambda: progress.advance(task),
        )


def _slim(reports: dict[str, Any]) -> dict[str, Any]:
    from autofocus.bench.search import calibration_table

    out: dict[str, Any] = {}
    for name, report in reports.items():
        if name == "tracking":
            out[name] = {k: v for k, v in report.items() if k != "runs"}
            continue
        out[name] = {
            **report,
            "contenders": {
                k: {kk: vv for kk, vv in v.items() if kk != "runs"}
                for k, v in report["contenders"].items()
            },
        }
        if name == "main":
            first = next(iter(report["contenders"].values()))
            out[name]["calibration"] = calibration_table(first["runs"])
    return out


def _print_table(report: dict[str, Any], name: str) -> None:
    rows = []
    for label, s in report["contenders"].items():
        codes = ", ".join(f"{k} {v}" for k, v in sorted(s["failure_codes"].items()))
        rows.append([
            label,
            f"{100 * s['success_rate']:.1f} %",
            str(s["wrong_successes"]),
            f"{s['mean_frames']:.1f}",
            str(s["max_frames"]),
            f"{s['mean_hardware_s']:.2f}",
            f"{s['median_abs_error_um']:.3f}",
            codes or "–",
        ])
    _print_fitted(
        f"search benchmark, case {name}: {report['trials']} simulated trials, range "
        f"{report['range_um']:g} µm, scorer {report['scorer']}, DOF {report['dof_um']:.2f} µm",
        [("strategy", "left", 0), ("success\n≤ DOF/4", "right", 0),
         ("wrong\n> DOF/2", "right", 1), ("mean\nframes", "right", 0),
         # Hardware seconds are the cost (issue 22): kept beside frames at any width.
         ("max\nframes", "right", 4), ("mean\nhardware s", "right", 0),
         ("median\n|error| µm", "right", 3), ("failure codes", "left", 5)],
        rows,
    )


def _print_calibration(rows: list[dict[str, Any]], label: str) -> None:
    cells = []
    for r in rows:
        span = ("≥ 0.90 (all)" if r.get("summary")
                else f"{r['confidence_from']:.2f}–{r['confidence_to']:.2f}")
        rate = "–" if r["rate"] is None else f"{100 * r['rate']:.1f} %"
        cells.append([span, str(r["n"]), str(r["within_tolerance"]), rate])
    _print_fitted(
        f"confidence calibration of {label} (reported successes)",
        [("confidence", "right", 0), ("n", "right", 0), ("within DOF/4", "right", 0),
         ("rate", "right", 0)],
        cells,
    )


def _print_tracking(report: dict[str, Any]) -> None:
    _print_fitted(
        f"tracking: {report['specimen']}, {report['photons_per_px_ms']:g} photons/px/ms, "
        f"{report['points']} time points, drift 0.1–1 DOF between points, "
        f"DOF {report['dof_um']:.2f} µm",
        [("within\nDOF/4", "right", 0), ("mean\nframes", "right", 0),
         ("mean\nhardware s", "right", 0),
         ("max frames\n(tracked)", "right", 0), ("max frames\n(all)", "right", 1),
         ("full-search\nfallbacks", "right", 0)],
        [[
            f"{100 * report['success_rate']:.1f} %",
            f"{report['mean_frames']:.2f}",
            f"{report['mean_hardware_s']:.3f}",
            str(report["max_frames_tracked"]),
            str(report["max_frames"]),
            str(report["fallbacks"]),
        ]],
    )


def _print_fitted(title: str, columns: Sequence[tuple[str, str, int]],
                  rows: Sequence[Sequence[str]]) -> None:
    """A table fitted to stdout's width (80 when redirected): (header, justify, priority)
    columns, the highest priority numbers left out first, and a note saying which."""
    from autofocus.cli.output import note, stdout_console
    from autofocus.cli.tables import Column, dropped_note, fitted_table

    console = stdout_console()
    table, dropped = fitted_table(
        title, [Column(h, j, p) for h, j, p in columns], rows, console  # type: ignore[arg-type]
    )
    console.print(table)
    message = dropped_note(dropped, console)
    if message:
        note(message, style="dim")
