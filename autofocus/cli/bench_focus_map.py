"""`autofocus bench focus-map`: a focus map against autofocus at every field of a plate."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from autofocus.cli.bench import bench_app
from autofocus.cli.help import AutofocusCommand
from autofocus.cli.output import fail


@bench_app.command(
    "focus-map",
    cls=AutofocusCommand,
    short_help="A plate's focus map vs autofocus at every field (simulated).",
)
def bench_focus_map(
    samples: Annotated[int, typer.Option(help="Fields autofocused to build the map.")] = 24,
    every_field_sample: Annotated[
        int,
        typer.Option(help="Fields on which 'autofocus at every field' is measured and scaled "
                     "to the plate; 0 = all fields."),
    ] = 0,
    kind: Annotated[
        str, typer.Option(help="Surface: auto (by leave-one-out residual), plane, quadratic, "
                          "thin-plate.")
    ] = "auto",
    tilt_um: Annotated[float, typer.Option(help="Plate tilt, left to right (µm).")] = 20.0,
    bow_um: Annotated[float, typer.Option(help="Plate bow, centre to corner (µm).")] = 8.0,
    waviness_um: Annotated[float, typer.Option(help="Smooth waviness amplitude (µm).")] = 0.3,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """A simulated 96-well plate, 3 × 3 fields per well, tilted and bowed: build a focus map
    from a few autofocused fields, image every field at the predicted z, and compare the
    hardware time with autofocus at every field (simulator clock).

    Error = |stage position − true focus| at every field that was not autofocused.
    """
    from rich.console import Console
    from rich.table import Table

    from autofocus.bench.focus_map import PlateConfig, run_focus_map_bench

    plate = PlateConfig(tilt_um=tilt_um, bow_um=bow_um, waviness_um=waviness_um, seed=seed)
    try:
        report = run_focus_map_bench(
            samples=samples, every_field_sample=every_field_sample, plate=plate, kind=kind,
            seed=seed,
        )
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    dof = report["dof_um"]
    surface = report["map"]["surface"] or {}
    table = Table(title=f"focus map: {report['n_fields']} fields, DOF {dof:.2f} µm")
    table.add_column("")
    table.add_column("focus map", justify="right")
    table.add_column("autofocus every field", justify="right")
    table.add_row(
        "fields autofocused",
        f"{report['n_autofocused']} ({100 * report['fraction_autofocused']:.1f} %)",
        f"{report['n_fields']} (100 %)",
    )
    table.add_row(
        "p90 |z − true focus|",
        f"{report['p90_error_um']:.3f} µm ({report['p90_error_dof']:.2f} DOF)",
        f"{report['every_field_p90_error_um']:.3f} µm",
    )
    table.add_row("hardware time", f"{report['hardware_s']:.1f} s",
                  f"{report['hardware_s_every_field']:.1f} s")
    Console().print(table)
    Console().print(
        f"surface {surface.get('kind')} (leave-one-out RMS {surface.get('loo_rms_um', 0):.3f} µm, "
        f"{report['map']['n_outliers']} outliers, {report['map']['n_failed']} failed points); "
        f"max error {report['max_error_um']:.3f} µm; {100 * report['within_dof_4']:.1f} % of "
        f"fields within DOF/4; {report['speedup']:.1f}× less hardware time"
    )
