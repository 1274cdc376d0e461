"""`autofocus calibrate`: refit the focus model's output layer on your own labelled z-stacks.

Prints the leave-one-stack-out table (refit vs stock model vs classical
measures) and writes the model (`--out PATH.onnx`) with its card (`.json`) and
summary (`.md`); serve it with `--scorer PATH.onnx`. Errors are one red line
on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from autofocus.cli.app import app
from autofocus.cli.offline import _emit_json, _errors_to_exit, _stderr, _stdout


@app.command("calibrate")
def calibrate_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Corpus folder(s) with a manifest.csv labelling each stack "
                            "(best_z_um, tolerance_um); 3–30 labelled stacks in all."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the model (.onnx); "
                                                          "its card goes beside it.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Model to start from: an .onnx path (default: the newest shipped).")
    ] = None,
    dof_um: Annotated[float | None, typer.Option(
        "--dof-um", min=1e-6,
        help="Depth of field (µm) of the stacks' objective: also refits the distance estimate."),
    ] = None,
    l2: Annotated[float, typer.Option("--l2", min=0.0,
                                      help="Pull towards the stock weights.")] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
) -> None:
    """Retrain the model's head on labelled z-stacks (numpy/scipy, minutes on a CPU)."""
    from autofocus.stacks.calibrate import calibrate

    with _errors_to_exit():
        err = _stderr()
        report = calibrate(paths, out, model=model, dof_um=dof_um, l2=l2,
                           progress=lambda msg: err.print(Text(msg, style="dim")))
        if json_output:
            _emit_json(report)
            return
        table = Table(title=f"leave-one-stack-out on {len(report['stacks'])} stacks "
                            f"(each judged by a refit that never saw it)")
        for col in ("scorer", "within tolerance", "top-0", "mean spearman"):
            table.add_column(col, justify="left" if col == "scorer" else "right")
        for name, v in report["loso"].items():
            s = v["summary"]
            rho = "–" if s["mean_spearman"] is None else f"{s['mean_spearman']:+.3f}"
            table.add_row(name, f"{s['within_tolerance']}/{s['stacks']}", str(s["top0"]), rho)
        console = _stdout()
        console.print(table)
        if report["skipped_unlabelled"]:
            err.print(Text("skipped unlabelled: " + ", ".join(report["skipped_unlabelled"]),
                           style="yellow"))
        console.print(Text(f"wrote {out} (+ .json card, .md summary) in {report['seconds']} s; "
                           f"serve it with --scorer {out}"))
