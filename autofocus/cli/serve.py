"""`autofocus serve`: run the HTTP daemon (FastAPI on uvicorn).

With no options and no configuration it serves the simulated microscope on
127.0.0.1:8765. It refuses to listen on a non-loopback address unless an API
token is configured (`AUTOFOCUS_API_TOKEN` or `api_token` in the file; never
on the command line, where `ps` would show it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from autofocus.cli.app import app
from autofocus.cli.focus import build_settings, die
from autofocus.cli.help import AutofocusCommand
from autofocus.cli.options import (
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

if TYPE_CHECKING:
    from autofocus.settings import Settings


@app.command("serve", cls=AutofocusCommand)
def serve_command(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (8765).")] = None,
    driver: Annotated[
        str | None,
        typer.Option(help="Microscope: sim (simulated), micromanager or replay (a recorded "
                     "z-stack).  [default: {default:driver}]", rich_help_panel=PANEL_STAGE),
    ] = None,
    database_path: Annotated[
        Path | None, typer.Option("--database", help="SQLite job database file.")
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="auto, json or console.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    real_time: Annotated[
        bool | None,
        typer.Option(
            "--real-time/--virtual-time",
            help="Spend hardware time for real (a demo) or on a virtual clock.  "
            "[default: virtual]",
            rich_help_panel=PANEL_SIM,
        ),
    ] = None,
    z_min_um: ZMinOpt = None,
    z_max_um: ZMaxOpt = None,
    mm_port: MmPortOpt = None,
    mm_headless: MmHeadlessOpt = None,
    mm_config: MmConfigOpt = None,
    mm_focus_device: MmFocusDeviceOpt = None,
    mm_camera: MmCameraOpt = None,
    stack: StackOpt = None,
    pattern: PatternOpt = None,
    z_step_um: ZStepOpt = None,
) -> None:
    """Serve the autofocus HTTP API (v1) until interrupted (SIGINT/SIGTERM stop it cleanly:
    a running job is cancelled and returns the stage; queued jobs wait for the next start)."""
    from autofocus.logging import configure_logging
    from autofocus.service.api.security import InsecureBindError, check_bind_allowed

    settings = build_settings(
        config,
        {
            "host": host,
            "port": port,
            "driver": driver,
            "database_path": database_path,
            "log_format": log_format,
            "log_level": log_level,
            "z_min_um": z_min_um,
            "z_max_um": z_max_um,
            "sim": {"real_time": real_time},
            **hardware_overrides(
                mm_port, mm_headless, mm_config, mm_focus_device, mm_camera,
                stack, pattern, z_step_um,
            ),
        },
    )
    try:
        check_bind_allowed(settings)
    except InsecureBindError as exc:
        raise die(str(exc)) from exc
    configure_logging(settings.log_format, settings.log_level)
    run_server(settings)


def run_server(settings: Settings) -> None:
    """Serve `settings` with uvicorn in the foreground (blocks until shutdown).

    Raises `InsecureBindError` for a non-loopback host without a token.
    """
    import uvicorn

    from autofocus.service.api import create_app
    from autofocus.service.api.security import check_bind_allowed

    check_bind_allowed(settings)
    # The worker thread that drives the hardware competes for the GIL with the event loop.
    # With the default 5 ms switch interval a busy loop (many polling clients) delays every
    # wake-up of the worker by up to 5 ms, which stretches focus jobs; 1 ms keeps them on time.
    sys.setswitchinterval(float(os.environ.get("AUTOFOCUS_SWITCH_INTERVAL_S", "0.001")))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # structlog (configure_logging) owns the output
        access_log=False,  # our middleware logs requests with their request ids
        server_header=False,
        timeout_graceful_shutdown=5,  # SSE streams would otherwise hold shutdown open
    )
