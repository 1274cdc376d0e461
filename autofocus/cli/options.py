"""Command-line options shared by `autofocus focus` and `autofocus serve`.

Declared once as annotated types so both commands offer the same hardware
options with the same help under the same headings, and mapped once onto the
settings groups. Only typer and the standard library are imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

PANEL_SEARCH = "Search"
PANEL_OUTPUT = "Output"
PANEL_STAGE = "Stage and configuration"
PANEL_SIM = "Simulated microscope (--driver sim)"
PANEL_MM = "Micro-Manager (--driver micromanager)"
PANEL_REPLAY = "Recorded z-stack (--driver replay)"

ConfigOpt = Annotated[
    Path | None,
    typer.Option(help="TOML settings file (default: AUTOFOCUS_CONFIG, else built-in defaults).",
                 rich_help_panel=PANEL_STAGE),
]
ZMinOpt = Annotated[
    float | None,
    typer.Option(help="Lower Z limit (µm); no Z outside the limits is ever commanded.",
                 rich_help_panel=PANEL_STAGE),
]
ZMaxOpt = Annotated[
    float | None, typer.Option(help="Upper Z limit (µm).", rich_help_panel=PANEL_STAGE)
]
MmPortOpt = Annotated[
    int | None,
    typer.Option(help="Attach to Micro-Manager's ZMQ server on this port (e.g. 4827).",
                 rich_help_panel=PANEL_MM),
]
MmHeadlessOpt = Annotated[
    Path | None,
    typer.Option(help="Start a headless core with the device adapters in this folder.",
                 rich_help_panel=PANEL_MM),
]
MmConfigOpt = Annotated[
    Path | None,
    typer.Option(help="Micro-Manager hardware configuration (.cfg) to load.",
                 rich_help_panel=PANEL_MM),
]
MmFocusDeviceOpt = Annotated[
    str | None,
    typer.Option(help="Z drive device name (default: the core's focus device).",
                 rich_help_panel=PANEL_MM),
]
MmCameraOpt = Annotated[
    str | None,
    typer.Option(help="Camera device name (default: the core's camera).",
                 rich_help_panel=PANEL_MM),
]
StackOpt = Annotated[
    Path | None,
    typer.Option(help="Recorded z-stack: a folder of <name>_z<µm>.tif planes, a multi-page "
                 "(OME-)TIFF or a CSV with image_path,z_um.", rich_help_panel=PANEL_REPLAY),
]
PatternOpt = Annotated[
    str | None,
    typer.Option(help="Regex finding z (µm) in a plane's file name (named group 'z' or the "
                 "first group).", rich_help_panel=PANEL_REPLAY),
]
ZStepOpt = Annotated[
    float | None,
    typer.Option("--z-step-um", help="Plane spacing (µm) of a multi-page TIFF that does not "
                 "record it.", rich_help_panel=PANEL_REPLAY),
]


def hardware_overrides(
    mm_port: int | None,
    mm_headless: Path | None,
    mm_config: Path | None,
    mm_focus_device: str | None,
    mm_camera: str | None,
    stack: Path | None,
    pattern: str | None,
    z_step_um: float | None,
) -> dict[str, dict[str, Any]]:
    """The `mm` and `replay` settings groups from the command-line options both
    `focus` and `serve` take (None = keep the configured value)."""
    return {
        "mm": {
            "port": mm_port,
            "headless_adapter_dir": mm_headless,
            "config_file": mm_config,
            "focus_device": mm_focus_device,
            "camera": mm_camera,
        },
        "replay": {"stack": stack, "pattern": pattern, "z_step_um": z_step_um},
    }
