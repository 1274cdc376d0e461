"""`autofocus calibrate`: refit the focus model's heads on your own labelled z-stacks.

Prints the leave-one-stack-out table (refit vs stock model vs classical
measures; the stock row says when the stock model was trained on these very
stacks), the defocus table (distance error in DOF, side accuracy) where a depth
of field is known, warnings on stderr, and writes the model (`--out PATH.onnx`)
with its card (`.json`) and summary (`.md`); serve it with `--scorer
PATH.onnx`. Errors are one red line on stderr and exit code 2. Only typer and
the standard library are imported at module level (what the command needs is imported when it runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autofocus.cli.app import app
from autofocus.cli.help import listing
from autofocus.cli.output import emit_json, errors_to_exit, note, stdout_console
from autofocus.cli.tables import Column, dropped_note, fitted_table


@app.command("calibrate", cls=listing())
def calibrate_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Corpus folder(s) with a manifest.csv labelling each stack "
                            "(best_z_um, tolerance_um; optics columns give the DOF); 2–30 labelled "
                            "stacks in all (2 with a warning)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the model (.onnx); "
                                                          "its card goes beside it.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="Model to start from: an .onnx path (default: the newest shipped).")
    ] = None,
    dof_um: Annotated[float | None, typer.Option(
        "--dof-um", min=1e-6,
        help="Depth of field (µm) of the stacks' objective, over what the manifest's optics "
             "give: with a DOF the distance estimate and side head are refitted too."),
    ] = None,
    l2: Annotated[float, typer.Option("--l2", min=0.0,
                                      help="Pull towards the stock weights.")] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
) -> None:
    """Retrain the model's heads on labelled z-stacks (numpy/scipy, seconds to minutes on a CPU)."""
    with errors_to_exit():
        from autofocus.stacks.calibrate import calibrate, row_name

        report = calibrate(paths, out, model=model, dof_um=dof_um, l2=l2,
                           progress=lambda msg: note(msg, style="dim"))
        for warning in report["warnings"]:
            note(f"warning: {warning}")
        if json_output:
            emit_json(report)
            return
        console = stdout_console()
        rows = []
        for name, v in report["loso"].items():
            s = v["summary"]
            rho = "–" if s["mean_spearman"] is None else f"{s['mean_spearman']:+.3f}"
            rows.append([row_name(name, report), f"{s['within_tolerance']}/{s['stacks']}",
                         str(s["top0"]), rho])
        table, dropped = fitted_table(
            f"leave-one-stack-out on {len(report['stacks'])} stacks (each judged by a refit "
            "that never saw it)",
            [Column("scorer", "left"), Column("within\ntolerance"), Column("top-0"),
             Column("mean\nspearman", priority=1)],
            rows, console)
        console.print(table)
        extra = dropped_note(dropped, console)
        if extra:
            note(extra)
        d = report["defocus"]["summary"]
        if d["stacks"]:
            drows = []
            for key in ("stock", "calibrated"):
                v = d[key]
                acc = "–" if v["side_accuracy"] is None else f"{v['side_accuracy']:.3f}"
                drows.append([key, f"{v['median_distance_error_dof']:.2f}", acc,
                              str(v["pairs"])])
            dtable, _ = fitted_table(
                f"defocus estimate, leave-one-stack-out on {d['stacks']} stacks with a known DOF",
                [Column("model", "left"), Column("median distance\nerror (DOF)"),
                 Column("side\naccuracy"), Column("pairs", priority=1)], drows, console)
            console.print(dtable)
        if report["stock_trained_on"]:
            note(f"the stock model {report['stock_model']} was trained on "
                 f"{len(report['stock_trained_on'])} of these stacks "
                 f"({', '.join(report['stock_trained_on'])}): its row is not a held-out figure")
        if report["skipped_unlabelled"]:
            note("skipped unlabelled: " + ", ".join(report["skipped_unlabelled"]))
        note(f"wrote {out} (+ .json card, .md summary) in {report['seconds']} s; "
             f"serve it with --scorer {out}", style="green")
