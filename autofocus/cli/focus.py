"""`autofocus focus`: one autofocus on a simulated, Micro-Manager or replayed microscope.

Only typer and the standard library are imported at module level; the engine,
the drivers and the settings model are imported when the command runs.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autofocus.cli.app import app
from autofocus.cli.help import listing
from autofocus.cli.options import (
    PANEL_OUTPUT,
    PANEL_SEARCH,
    PANEL_SIM,
    PANEL_STAGE,
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
from autofocus.cli.output import fail, note

if TYPE_CHECKING:
    from autofocus.search.focus import FocusRequest
    from autofocus.search.result import FocusResult
    from autofocus.settings import Settings


def build_settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    """Settings from `config` plus the command-line `overrides` (None values dropped).

    Nested groups are given as dicts (`{"sim": {"seed": 3}}`) and merged over
    the file's values. Raises `typer.Exit` with a readable message on bad values.
    """
    from autofocus.settings import ConfigError, load_settings

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
        fail(str(exc))


@app.command(
    "focus",
    cls=listing("scorers", "strategies", "reasons"),
    short_help="Run one autofocus: where focus is, how sure, what it cost.",
)
def focus_command(
    driver: Annotated[
        str | None,
        typer.Option(help="Microscope: sim (simulated), micromanager or replay (a recorded "
                     "z-stack).  [default: the settings' driver, {default:driver}]",
                     rich_help_panel=PANEL_STAGE),
    ] = None,
    config: ConfigOpt = None,
    z_min_um: ZMinOpt = None,
    z_max_um: ZMaxOpt = None,
    start_z_um: Annotated[
        float | None,
        typer.Option(help="Move here first (µm).  [default: stay where the stage is]",
                     rich_help_panel=PANEL_STAGE),
    ] = None,
    overshoot_um: Annotated[
        float | None,
        typer.Option(help="Approach overshoot (µm): every position is approached from "
                     "this far below, so the stage's play lands the same way.  "
                     "[default: {default:focus.overshoot_um}]",
                     rich_help_panel=PANEL_STAGE),
    ] = None,
    backlash_um: Annotated[
        float | None,
        typer.Option("--backlash-um", hidden=True,
                     help="Deprecated alias of --overshoot-um."),
    ] = None,
    on_failure: Annotated[
        str | None,
        typer.Option(help="After a failed search: return (to the start z) or stay.  "
                     "[default: {default:focus.on_failure}]", rich_help_panel=PANEL_STAGE),
    ] = None,
    scorer: Annotated[
        str | None,
        typer.Option(help="Focus measure or model (listed below).  "
                     "[default: {default:focus.scorer}]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help="Search strategy (listed below).  "
                     "[default: {default:focus.strategy}]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    center_z_um: Annotated[
        float | None,
        typer.Option(help="Centre of the search (µm).  [default: the start z; replay: the "
                     "stack's middle]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    range_um: Annotated[
        float | None,
        typer.Option(help="Full width searched (µm).  [default: {default:focus.range_um}; "
                     "replay: the stack's depth]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    tolerance_um: Annotated[
        float | None,
        typer.Option(help="Wanted accuracy (µm).  [default: DOF/4 where the optics are "
                     "known, else 0.5; replay: the stack's label or plane spacing]",
                     rich_help_panel=PANEL_SEARCH),
    ] = None,
    coarse_step_um: Annotated[
        float | None,
        typer.Option(help="Coarse sweep step (µm).  [default: chosen from range and "
                     "tolerance]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    max_frames: Annotated[
        int | None,
        typer.Option(help="Frame budget.  [default: {default:focus.max_frames}]",
                     rich_help_panel=PANEL_SEARCH),
    ] = None,
    exposure_ms: Annotated[
        float | None,
        typer.Option(help="Exposure for this run (ms).  [default: the camera's]",
                     rich_help_panel=PANEL_SEARCH),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(help="search, or track: re-focus with 3 frames around --expected-z-um "
                     "(else the start z); a full search when focus drifted more than about "
                     "one depth of field.", rich_help_panel=PANEL_SEARCH),
    ] = "search",
    rival: Annotated[
        str,
        typer.Option(help="Two candidate focal planes (specimen and debris): fail (reason "
                     "rival_peak, both named), nearest (to --expected-z-um, else the start) "
                     "or sharpest.", rich_help_panel=PANEL_SEARCH),
    ] = "fail",
    rival_check: Annotated[
        str | None,
        typer.Option(help="How hard to look for a second plane: capture (what the coarse "
                     "pass sees) or full (the whole range, finely enough to see a dim "
                     "specimen under bright debris; more frames).  "
                     "[default: {default:focus.rival_check}]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    expected_z_um: Annotated[
        float | None,
        typer.Option(help="Where focus is expected (µm): centre of a track, reference of "
                     "--rival nearest.", rich_help_panel=PANEL_SEARCH),
    ] = None,
    expected_sigma_um: Annotated[
        float | None,
        typer.Option(help="With --expected-z-um: a prior for a revisit, focus expected within "
                     "this standard deviation (µm); searched there first, rival check "
                     "confined to ±3σ plus the peak's width, full search when no plane is "
                     "near.", rich_help_panel=PANEL_SEARCH),
    ] = None,
    dof_um: Annotated[
        float | None,
        typer.Option(help="Depth of field (µm).  [default: what the microscope reports, "
                     "else 4 × tolerance]", rich_help_panel=PANEL_SEARCH),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON.",
                           rich_help_panel=PANEL_OUTPUT),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Also draw the focus curve to this PNG file (as the daemon's "
                     "curve.png); the name must end in .png.", rich_help_panel=PANEL_OUTPUT),
    ] = None,
    # simulated microscope
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed: specimen, true focus, noise.  "
                     "[default: {default:sim.seed}]", rich_help_panel=PANEL_SIM),
    ] = None,
    specimen: Annotated[
        str | None,
        typer.Option(help="beads, cells or fibres.  [default: {default:sim.specimen}]",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    modality: Annotated[
        str | None,
        typer.Option(help="fluorescence or brightfield.  [default: {default:sim.modality}]",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    focus_z_um: Annotated[
        float | None,
        typer.Option(help="True focus (µm).  [default: drawn from the seed within ±10 µm]",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    photons: Annotated[
        float | None,
        typer.Option(help="Peak photons per pixel per ms.", rich_help_panel=PANEL_SIM),
    ] = None,
    read_noise_e: Annotated[
        float | None, typer.Option(help="Camera read noise (e⁻).", rich_help_panel=PANEL_SIM)
    ] = None,
    debris_dz_um: Annotated[
        float | None,
        typer.Option(help="Out-of-plane debris this far from focus (µm): a second peak.",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    tilt_um: Annotated[
        float | None,
        typer.Option(help="Focus change across the field, edge to edge (µm).",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    drift_um_per_s: Annotated[
        float | None, typer.Option(help="Focus drift (µm/s).", rich_help_panel=PANEL_SIM)
    ] = None,
    hardware_profile: Annotated[
        str | None,
        typer.Option(help="Simulated stage and camera speeds: default, motorized or piezo "
                     "(assumed figures; the profile's exposure applies unless "
                     "--exposure-ms is given).  [default: {default:sim.hardware_profile}]",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    real_time: Annotated[
        bool, typer.Option("--real-time", help="Sleep for real (a demo) instead of a virtual "
                           "clock.", rich_help_panel=PANEL_SIM),
    ] = False,
    magnification: Annotated[
        float | None,
        typer.Option(help="Objective magnification, e.g. 10, 20, 60.  [default: 20]",
                     rich_help_panel=PANEL_SIM),
    ] = None,
    na: Annotated[
        float | None,
        typer.Option("--na", help="Objective numerical aperture, e.g. 0.3, 0.75, 1.4.  "
                     "[default: 0.75]", rich_help_panel=PANEL_SIM),
    ] = None,
    immersion_index: Annotated[
        float | None,
        typer.Option(help="Immersion refractive index: 1.0 air, 1.33 water, 1.518 oil.  "
                     "[default: 1.0]", rich_help_panel=PANEL_SIM),
    ] = None,
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
    from autofocus.errors import AutofocusError, MicroscopeError
    from autofocus.search.focus import FocusRequest
    from autofocus.service.microscopes import open_microscope

    if plot is not None and plot.suffix.lower() != ".png":
        # Refused before anything moves: PNG bytes under another name mislead viewers.
        fail(f"--plot writes a PNG image; {plot.name!r} does not end in .png",
             hint=f"use --plot {plot.with_suffix('.png').name}")
    if backlash_um is not None:  # deprecated alias: "backlash" is the stage's play
        if overshoot_um is not None and overshoot_um != backlash_um:
            raise typer.BadParameter("give --overshoot-um or its old name --backlash-um, "
                                     "not both", param_hint="--backlash-um")
        note("--backlash-um is deprecated: it is the approach overshoot; use --overshoot-um")
        overshoot_um = backlash_um

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
                "magnification": magnification,
                "na": na,
                "immersion_index": immersion_index,
                "hardware_profile": hardware_profile,
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
        overshoot_um=overshoot_um if overshoot_um is not None else d.overshoot_um,
        settle_s=d.settle_s,
        verify=d.verify,
        mode=mode,
        rival=rival,
        rival_check=rival_check or d.rival_check,
        expected_z_um=expected_z_um,
        expected_sigma_um=expected_sigma_um,
        dof_um=dof_um,
    )
    if request.on_failure not in ("return", "stay"):
        fail(f"--on-failure must be 'return' or 'stay', got {request.on_failure!r}")
    if plot is not None and not plot.parent.resolve().is_dir():
        fail(f"--plot: no such folder {plot.parent}")
    try:
        microscope = open_microscope(settings)
    except (MicroscopeError, AutofocusError, ValueError) as exc:
        fail(f"could not open the {settings.driver} microscope: {exc}")
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
        fail(str(exc))
    finally:
        microscope.close()
    if plot is not None:
        try:
            write_plot(plot, report)
        except OSError as exc:
            fail(f"could not write the plot to {plot}: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print_summary(report)
        if plot is not None:
            from rich.console import Console
            from rich.text import Text

            Console(stderr=True).print(Text(f"focus curve written to {plot}", style="dim"))
    raise typer.Exit(0 if result.success else 1)


def write_plot(path: Path, report: dict[str, Any]) -> None:
    """Draw the focus curve of a `focus` report (`_report`) to the PNG file `path`.

    The same picture as the daemon's `GET /v1/jobs/{id}/curve.png`; a failed or
    cancelled run carries its reason on the picture and as PNG text metadata.
    Raises `OSError` when the file cannot be written.
    """
    from autofocus.service.api.plot import curve_png

    png = curve_png(**plot_arguments(report))
    path.write_bytes(png)


def plot_arguments(report: dict[str, Any]) -> dict[str, Any]:
    """The `curve_png` / `curve_figure` arguments for a `focus` report."""
    if report["success"]:
        state = "succeeded"
    elif report.get("error_type") == "Cancelled":
        state = "cancelled"
    else:
        state = "failed"
    return dict(
        points=[(p["z_um"], p["score"]) for p in report["curve"]],
        fit=report.get("fit"),
        best_z_um=report["best_z_um"] if report["success"] else None,
        start_z_um=report.get("start_z_um"),
        title=f"{report['driver']} · {report['strategy']} / {report['scorer']}",
        state=state,
        reason=report.get("reason"),
        reason_code=report.get("reason_code"),
        final_z_um=report.get("final_z_um"),
        planes_um=None if report["success"] else candidate_planes_um(report),
    )


def candidate_planes_um(result: dict[str, Any]) -> list[float]:
    """The candidate focal planes a result names (`details.rivals`), µm."""
    rivals = (result.get("details") or {}).get("rivals") or []
    return [float(p["z_um"]) for p in rivals if isinstance(p, dict) and "z_um" in p]


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
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from autofocus.search.focus import focus
    from autofocus.search.result import Measurement

    err_console = Console(stderr=True)
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


def physical_z_note(report: dict[str, Any]) -> str | None:
    """Why the simulator's physical z differs from the z the stage reports, or None."""
    physical = report.get("physical_z_um")
    if report.get("driver") != "sim" or not isinstance(physical, float):
        return None
    final = report.get("final_z_um")
    differs = f" ({physical - final:+.3f} µm from the final z)" if isinstance(final, float) else ""
    return (
        f"¹ where the simulated stage physically is{differs}: the stage reports the z it was "
        "commanded, but it has mechanical play (backlash: after a move up it rests about half "
        "the play below) and position noise, as a real focus drive does. Focus depends on "
        "the physical z, so the error is measured from it."
    )


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(quantity, value) rows of a focus report, labelled for the driver that produced it.

    The simulator knows its true focus and the stage's physical position; a
    replayed stack only knows the plane its label calls in focus (if any); a
    real microscope knows neither, so those rows are left out.
    """

    def fmt(v: Any, unit: str = "") -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"{v:.3f}{unit}" if isinstance(v, float) else f"{v}{unit}"

    driver = report.get("driver")
    if report.get("success"):
        rows = [("best z (focus found)", fmt(report["best_z_um"], " µm"))]
    else:
        # A failed search has no focus: its "best" sample is neither a candidate plane
        # nor where the stage is, so it is not shown as one.
        rows = [("best z", "— (no focus found)")]
        planes = (report.get("details") or {}).get("rivals") or []
        if planes:
            rows.append(("candidate planes", ", ".join(
                f"{float(p['z_um']):.3f}" for p in planes) + " µm"))
    if driver == "sim":
        rows += [
            ("true focus (simulator)", fmt(report.get("true_focus_z_um"), " µm")),
            ("physical z (simulator)¹", fmt(report.get("physical_z_um"), " µm")),
            ("error (physical − true)", fmt(report.get("error_um"), " µm")),
        ]
    elif driver == "replay":
        rows += [
            ("labelled focus (stack)", fmt(report.get("true_focus_z_um"), " µm")),
            ("error (best − label)", fmt(report.get("error_um"), " µm")),
        ]
    rows += [
        ("final z", fmt(report["final_z_um"], " µm")),
        ("start z", fmt(report["start_z_um"], " µm")),
        ("confidence", fmt(report["confidence"])),
        ("frames", fmt(report["frames"])),
        ("strategy / scorer", f"{report['strategy']} / {report['scorer']}"),
        ("hardware time", fmt(report["timing"]["hardware_s"], " s")),
        ("scoring time", fmt(report["timing"]["scoring_s"], " s")),
    ]
    return rows


def _print_summary(report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from autofocus.cli.output import stdout_console

    ok = report["success"]
    title = Text("autofocus ")
    title.append("succeeded" if ok else "failed", style="green" if ok else "red")
    table = Table(title=title)
    table.add_column("quantity", no_wrap=True)
    table.add_column("value", justify="right")
    for name, value in summary_rows(report):
        table.add_row(name, Text(value))
    console = stdout_console()
    console.print(table)
    footnote = physical_z_note(report)
    if footnote:
        console.print(Text(footnote, style="dim"))
    if not ok:
        code = report.get("reason_code")
        suffix = f" [{code}]" if code else ""
        console.print(Text(f"reason: {report['reason']}{suffix}", style="red"))
