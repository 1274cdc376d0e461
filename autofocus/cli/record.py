"""`autofocus record-stacks`: record labelled z-stacks on this instrument for `calibrate`.

Only typer and the standard library are imported at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from autofocus.cli.app import app
from autofocus.cli.focus import build_settings
from autofocus.cli.help import AutofocusCommand
from autofocus.cli.options import (
    PANEL_OUTPUT,
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
from autofocus.cli.output import emit_json, fail, note

PANEL_STACKS = "Stacks"
PANEL_OPTICS = "Optics (written to the manifest; the simulator knows its own)"


def parse_position(text: str) -> tuple[float, float]:
    """`"X,Y"` (µm) → (x_um, y_um); raises `typer.BadParameter` naming the text."""
    import math

    parts = text.replace(";", ",").split(",")
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give a position as X,Y in µm, e.g. 100,250") \
            from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise typer.BadParameter(f"{text!r}: coordinates must be finite")
    return x, y


@app.command("record-stacks", cls=AutofocusCommand,
             short_help="Record labelled z-stacks on this instrument (for calibrate).")
def record_command(
    out: Annotated[Path, typer.Argument(help="Corpus folder to write (created; an existing "
                                             "manifest.csv is extended).")],
    driver: Annotated[str | None, typer.Option(
        help="Microscope: sim, micromanager or replay.  [default: {default:driver}]",
        rich_help_panel=PANEL_STAGE)] = None,
    config: ConfigOpt = None,
    z_min_um: ZMinOpt = None,
    z_max_um: ZMaxOpt = None,
    position: Annotated[list[str] | None, typer.Option(
        "--position", help="X,Y (µm) to record a stack at; repeat for several "
        "(needs an XY stage).  [default: where the stage is]", rich_help_panel=PANEL_STACKS)
    ] = None,
    center_z_um: Annotated[float | None, typer.Option(
        help="Centre of each stack (µm).  [default: the stage's z]",
        rich_help_panel=PANEL_STACKS)] = None,
    range_um: Annotated[float, typer.Option(help="Depth of each stack (µm).",
                                            rich_help_panel=PANEL_STACKS)] = 20.0,
    step_um: Annotated[float, typer.Option(help="Plane spacing (µm).",
                                           rich_help_panel=PANEL_STACKS)] = 1.0,
    tolerance_um: Annotated[float | None, typer.Option(
        help="How close the classical measures' picks must lie to label a stack (µm); also "
        "the label's tolerance.  [default: one step]", rich_help_panel=PANEL_STACKS)] = None,
    backlash_um: Annotated[float, typer.Option(
        help="Approach each stack from this far below (µm).",
        rich_help_panel=PANEL_STACKS)] = 0.0,
    prefix: Annotated[str, typer.Option(help="Stack names: PREFIX001, PREFIX002, …",
                                        rich_help_panel=PANEL_STACKS)] = "stack",
    modality: Annotated[str, typer.Option(help="Manifest modality text.",
                                          rich_help_panel=PANEL_STACKS)] = "",
    na: Annotated[float | None, typer.Option(min=1e-6, help="Numerical aperture.",
                                             rich_help_panel=PANEL_OPTICS)] = None,
    magnification: Annotated[float | None, typer.Option(
        min=1e-6, help="Total magnification.", rich_help_panel=PANEL_OPTICS)] = None,
    immersion_index: Annotated[float | None, typer.Option(
        min=1.0, help="Immersion refractive index (1.0 air, 1.33 water, 1.515 oil).",
        rich_help_panel=PANEL_OPTICS)] = None,
    pixel_um: Annotated[float | None, typer.Option(
        min=1e-6, help="Sample-plane pixel (µm).  [default: what the camera reports]",
        rich_help_panel=PANEL_OPTICS)] = None,
    wavelength_nm: Annotated[float | None, typer.Option(
        min=1e-6, help="Emission/illumination wavelength (nm).",
        rich_help_panel=PANEL_OPTICS)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.",
                                          rich_help_panel=PANEL_OUTPUT)] = False,
    seed: Annotated[int | None, typer.Option(help="Simulator seed.",
                                             rich_help_panel=PANEL_SIM)] = None,
    specimen: Annotated[str | None, typer.Option(help="beads, cells or fibres.",
                                                 rich_help_panel=PANEL_SIM)] = None,
    sim_modality: Annotated[str | None, typer.Option(
        "--sim-modality", help="fluorescence or brightfield.", rich_help_panel=PANEL_SIM)
    ] = None,
    mm_port: MmPortOpt = None,
    mm_headless: MmHeadlessOpt = None,
    mm_config: MmConfigOpt = None,
    mm_focus_device: MmFocusDeviceOpt = None,
    mm_camera: MmCameraOpt = None,
    stack: StackOpt = None,
    pattern: PatternOpt = None,
    z_step_um: ZStepOpt = None,
) -> None:
    """Record a z-stack at each position, label it where the classical measures agree (flag
    it where they do not) and write the corpus layout `autofocus calibrate` reads.

    The stage never leaves the Z limits and is returned to where it started, also after
    an error. Exit 0 when every stack was written, 2 for invalid input or a failure.
    """
    from autofocus_drivers.errors import MicroscopeError

    from autofocus.errors import AutofocusError
    from autofocus.service.microscopes import open_microscope
    from autofocus.stacks.record import record_stacks

    positions = [parse_position(p) for p in position or []]
    settings = build_settings(config, {
        "driver": driver, "z_min_um": z_min_um, "z_max_um": z_max_um,
        "sim": {"seed": seed, "specimen": specimen, "modality": sim_modality},
        **hardware_overrides(mm_port, mm_headless, mm_config, mm_focus_device, mm_camera,
                             stack, pattern, z_step_um),
    })
    try:
        microscope = open_microscope(settings)
    except (MicroscopeError, AutofocusError, ValueError) as exc:
        fail(f"could not open the {settings.driver} microscope: {exc}")
    try:
        report = record_stacks(
            microscope, out, positions=positions or None, center_z_um=center_z_um,
            range_um=range_um, step_um=step_um, tolerance_um=tolerance_um,
            backlash_um=backlash_um, prefix=prefix, modality=modality,
            source=f"autofocus record-stacks ({settings.driver})",
            optics={"na": na, "magnification": magnification,
                    "immersion_index": immersion_index, "pixel_um": pixel_um,
                    "wavelength_nm": wavelength_nm},
            progress=None if as_json else (lambda m: note(m, style="dim")))
    except (MicroscopeError, AutofocusError, OSError) as exc:
        fail(str(exc))
    finally:
        microscope.close()
    if as_json:
        emit_json(report)
        return
    for s in report["stacks"]:
        where = "" if s["x_um"] is None else f" at ({s['x_um']:g}, {s['y_um']:g}) µm"
        what = (f"in focus at {s['best_z_um']:g} µm" if s["best_z_um"] is not None
                else f"FLAGGED ({s['label']}: " + ", ".join(
                    f"{k} {v:g}" for k, v in s["picks_um"].items()) + " µm)")
        sys.stdout.write(f"{s['stack']}{where}: {s['planes']} planes "
                         f"{s['z_min_um']:g}…{s['z_max_um']:g} µm, {what}\n")
    note(f"wrote {report['labelled']} labelled and {report['flagged']} flagged stack(s) to "
         f"{out}; calibrate with: autofocus calibrate {out} --out site.onnx", style="green")
