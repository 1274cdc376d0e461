"""`autofocus focus`: one autofocus on a simulated, Micro-Manager or replayed microscope."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autofocus.cli.app import app
from autofocus.cli.options import (
    ConfigOpt,
    MmCameraOpt,
    MmConfigOpt,
    MmFocusDeviceOpt,
    MmHeadlessOpt,
    MmPortOpt,
    PatternOpt,
    StackOpt,
    ZMaxOpt,
    ZMinOpt,
    ZStepOpt,
    hardware_overrides,
)
from autofocus.errors import AutofocusError, MicroscopeError
from autofocus.search.focus import FocusRequest, focus
from autofocus.search.result import FocusResult, Measurement
from autofocus.service.microscopes import open_microscope
from autofocus.settings import ConfigError, Settings, load_settings

err_console = Console(stderr=True)


def die(message: str, code: int = 2) -> typer.Exit:
    """Print one red line on stderr and return the `typer.Exit` to raise."""
    # escape: messages name TOML tables like [focus], which rich would read as markup
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def build_settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    """Settings from `config` plus the command-line `overrides` (None values dropped).

    Nested groups are given as dicts (`{"sim": {"seed": 3}}`) and merged over
    the file's values. Raises `typer.Exit` with a readable message on bad values.
    """
    try:
        base = load_settings(config)
        merged: dict[str, Any] = {}
        for key, value in overrides.items():
            if isinstance(value, dict):
                group = getattr(base, key).model_dump()
                group.update({k: v for k, v in value.items() if v is not None})
                merged[key] = group
            elif value is not None:
                merged[key] = value
        return load_settings(config, **merged)
    except (FileNotFoundError, ConfigError) as exc:
        raise die(str(exc)) from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise die(f"invalid settings: {problems}") from exc


@app.command("focus")
def focus_command(
    driver: Annotated[
        str | None,
        typer.Option(help="sim, micromanager or replay; default: the settings' driver (sim)."),
    ] = None,
    config: ConfigOpt = None,
    start_z_um: Annotated[
        float | None, typer.Option(help="Move here first (µm); default: stay.")
    ] = None,
    center_z_um: Annotated[
        float | None, typer.Option(help="Centre of the search (µm); default: the start z.")
    ] = None,
    range_um: Annotated[float | None, typer.Option(help="Full width searched (µm).")] = None,
    tolerance_um: Annotated[float | None, typer.Option(help="Wanted accuracy (µm).")] = None,
    coarse_step_um: Annotated[float | None, typer.Option(help="Coarse sweep step (µm).")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Frame budget.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Search strategy name.")] = None,
    scorer: Annotated[str | None, typer.Option(help="Focus measure / model name.")] = None,
    exposure_ms: Annotated[float | None, typer.Option(help="Exposure for this run (ms).")] = None,
    backlash_um: Annotated[float | None, typer.Option(help="Approach overshoot (µm).")] = None,
    on_failure: Annotated[str | None, typer.Option(help="return (to start) or stay.")] = None,
    z_min_um: ZMinOpt = None,
    z_max_um: ZMaxOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    # simulated microscope
    seed: Annotated[int | None, typer.Option(help="[sim] Random seed.")] = None,
    specimen: Annotated[str | None, typer.Option(help="[sim] beads, cells or fibres.")] = None,
    modality: Annotated[
        str | None, typer.Option(help="[sim] fluorescence or brightfield.")
    ] = None,
    focus_z_um: Annotated[float | None, typer.Option(help="[sim] True focus (µm).")] = None,
    photons: Annotated[
        float | None, typer.Option(help="[sim] Peak photons per pixel per ms.")
    ] = None,
    read_noise_e: Annotated[float | None, typer.Option(help="[sim] Read noise (e−).")] = None,
    debris_dz_um: Annotated[
        float | None, typer.Option(help="[sim] Debris this far from focus (µm).")
    ] = None,
    tilt_um: Annotated[float | None, typer.Option(help="[sim] Focus tilt across field.")] = None,
    drift_um_per_s: Annotated[float | None, typer.Option(help="[sim] Focus drift.")] = None,
    real_time: Annotated[bool, typer.Option(help="[sim] Sleep for real (demo).")] = False,
    # Micro-Manager
    mm_port: MmPortOpt = None,
    mm_headless: MmHeadlessOpt = None,
    mm_config: MmConfigOpt = None,
    mm_focus_device: MmFocusDeviceOpt = None,
    mm_camera: MmCameraOpt = None,
    # replay
    stack: StackOpt = None,
    pattern: PatternOpt = None,
    z_step_um: ZStepOpt = None,
) -> None:
    """Run one autofocus and report where focus is, how sure, and what it cost.

    Exit code 0 when focus was found, 1 when the search failed (the stage is
    back at its start), 2 for invalid input (the stage never moved).
    """
    settings = build_settings(
        config,
        {
            "driver": driver,
            "z_min_um": z_min_um,
            "z_max_um": z_max_um,
            "sim": {
                "seed": seed,
                "specimen": specimen,
                "modality": modality,
                "focus_z_um": focus_z_um,
                "photons_per_px_ms": photons,
                "read_noise_e": read_noise_e,
                "debris_dz_um": debris_dz_um,
                "tilt_um": tilt_um,
                "drift_um_per_s": drift_um_per_s,
                "real_time": real_time or None,
            },
            **hardware_overrides(
                mm_port, mm_headless, mm_config, mm_focus_device, mm_camera,
                stack, pattern, z_step_um,
            ),
        },
    )
    d = settings.focus
    request = FocusRequest(
        scorer=scorer or d.scorer,
        strategy=strategy or d.strategy,
        center_z_um=center_z_um,
        range_um=range_um if range_um is not None else d.range_um,
        tolerance_um=tolerance_um if tolerance_um is not None else d.tolerance_um,
        coarse_step_um=coarse_step_um,
        max_frames=max_frames if max_frames is not None else d.max_frames,
        exposure_ms=exposure_ms,
        timeout_s=d.timeout_s,
        on_failure=on_failure or d.on_failure,  # type: ignore[arg-type]
        backlash_um=backlash_um if backlash_um is not None else d.backlash_um,
        settle_s=d.settle_s,
        verify=d.verify,
    )
    if request.on_failure not in ("return", "stay"):
        raise die(f"--on-failure must be 'return' or 'stay', got {request.on_failure!r}")
    try:
        microscope = open_microscope(settings)
    except (MicroscopeError, AutofocusError, ValueError) as exc:
        raise die(f"could not open the {settings.driver} microscope: {exc}") from exc
    try:
        if settings.driver == "replay":
            request = _replay_defaults(
                request, microscope, center_z_um, range_um, tolerance_um, coarse_step_um
            )
        if start_z_um is not None:
            microscope.move_z(start_z_um)
        result = _run_with_progress(microscope, request, quiet=as_json)
        report = _report(result, microscope, settings)
    except (MicroscopeError, AutofocusError, ValueError, KeyError) as exc:
        raise die(str(exc)) from exc
    finally:
        microscope.close()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_summary(report)
    raise typer.Exit(0 if result.success else 1)


def _replay_defaults(
    request: FocusRequest,
    microscope: Any,
    center_z_um: float | None,
    range_um: float | None,
    tolerance_um: float | None,
    coarse_step_um: float | None,
) -> FocusRequest:
    """Fill the request fields the user left out from the recorded stack's geometry.

    A recorded stack is often only a few µm deep with a known plane spacing, so
    the service-wide defaults (50 µm range) do not fit it.
    """
    from dataclasses import replace

    from autofocus.stacks.replay import replay_request

    fields = replay_request(
        microscope, tolerance_um=tolerance_um or getattr(microscope, "focus_tolerance_um", None)
    )
    given = {
        "center_z_um": center_z_um,
        "range_um": range_um,
        "tolerance_um": tolerance_um,
        "coarse_step_um": coarse_step_um,
    }
    return replace(
        request, **{k: (given[k] if given[k] is not None else v) for k, v in fields.items()}
    )


def _run_with_progress(microscope: Any, request: FocusRequest, *, quiet: bool) -> FocusResult:
    with Progress(
        TextColumn("[bold]focusing[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("focus", total=request.max_frames, last="")

        def on_measure(m: Measurement) -> None:
            progress.update(task, advance=1, last=f"z={m.z_um:8.3f} µm  score={m.score:.4g}")

        return focus(microscope, request, on_measure=on_measure)


def _report(result: FocusResult, microscope: Any, settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {"driver": settings.driver, **result.to_dict()}
    truth = getattr(microscope, "true_focus_z_um", None)
    true_z = truth() if callable(truth) else None
    report["true_focus_z_um"] = true_z
    # The stage reports commanded positions; a simulated stage also knows where it
    # physically is (backlash, position noise), which is what focus depends on.
    physical = getattr(microscope, "physical_z_um", None)
    if isinstance(physical, float):
        report["physical_z_um"] = physical
    if true_z is not None and result.success:
        where = physical if isinstance(physical, float) else result.best_z_um
        report["error_um"] = where - true_z
    return report


def _print_summary(report: dict[str, Any]) -> None:
    console = Console()
    ok = report["success"]
    table = Table(title="autofocus " + ("[green]succeeded[/green]" if ok else "[red]failed[/red]"))
    table.add_column("quantity")
    table.add_column("value", justify="right")

    def fmt(v: Any, unit: str = "") -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"{v:.3f}{unit}" if isinstance(v, float) else f"{v}{unit}"

    rows = [
        ("best z", fmt(report["best_z_um"], " µm")),
        ("true focus (simulator)", fmt(report.get("true_focus_z_um"), " µm")),
        ("physical z (simulator)", fmt(report.get("physical_z_um"), " µm")),
        ("error (physical − true)", fmt(report.get("error_um"), " µm")),
        ("final z", fmt(report["final_z_um"], " µm")),
        ("start z", fmt(report["start_z_um"], " µm")),
        ("confidence", fmt(report["confidence"])),
        ("frames", fmt(report["frames"])),
        ("strategy / scorer", f"{report['strategy']} / {report['scorer']}"),
        ("hardware time", fmt(report["timing"]["hardware_s"], " s")),
        ("scoring time", fmt(report["timing"]["scoring_s"], " s")),
    ]
    if not ok:
        rows.append(("reason", str(report["reason"])))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
