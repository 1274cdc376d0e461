"""Command-line options shared by `autofocus focus` and `autofocus serve`.

Declared once as annotated types so both commands offer the same hardware
options with the same help, and mapped once onto the settings groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[Path | None, typer.Option(help="TOML settings file.")]
ZMinOpt = Annotated[float | None, typer.Option(help="Lower Z limit (µm).")]
ZMaxOpt = Annotated[float | None, typer.Option(help="Upper Z limit (µm).")]
MmPortOpt = Annotated[int | None, typer.Option(help="[mm] ZMQ server port.")]
MmHeadlessOpt = Annotated[
    Path | None, typer.Option(help="[mm] Start headless with adapters from this folder.")
]
MmConfigOpt = Annotated[Path | None, typer.Option(help="[mm] Micro-Manager .cfg file.")]
MmFocusDeviceOpt = Annotated[str | None, typer.Option(help="[mm] Z drive name.")]
MmCameraOpt = Annotated[str | None, typer.Option(help="[mm] Camera name.")]
StackOpt = Annotated[Path | None, typer.Option(help="[replay] Recorded z-stack.")]
PatternOpt = Annotated[str | None, typer.Option(help="[replay] File-name regex.")]
ZStepOpt = Annotated[float | None, typer.Option(help="[replay] Z step of a TIFF.")]


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
