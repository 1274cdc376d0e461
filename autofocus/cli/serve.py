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
from autofocus.cli.focus import build_settings
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
from autofocus.cli.output import fail

if TYPE_CHECKING:
    from autofocus.settings import Settings


@app.command(
    "serve", cls=AutofocusCommand, short_help="Serve the HTTP API (v1) until interrupted."
)
def serve_command(
    config: ConfigOpt = None,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on; another than loopback needs an API token.  "
                     "[default: {default:host}]"),
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.  [default: {default:port}]")] = None,
    driver: Annotated[
        str | None,
        typer.Option(help="Microscope: sim (simulated), micromanager or replay (a recorded "
                     "z-stack).  [default: {default:driver}]", rich_help_panel=PANEL_STAGE),
    ] = None,
    database_path: Annotated[
        Path | None,
        typer.Option("--database", help="SQLite job database file.  [default: autofocus.db "
                     "in the user's data directory, e.g. ~/.local/share/autofocus/]"),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="auto (console on a terminal, else JSON), json or console.  "
                     "[default: {default:log_format}]"),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="debug, info, warning or error.  [default: {default:log_level}]"),
    ] = None,
    real_time: Annotated[
        bool | None,
        typer.Option(
            "--real-time/--virtual-time",
            help="Spend hardware time for real (a demo) or on a virtual clock.  "
            "[default: virtual]",
            rich_help_panel=PANEL_SIM,
        ),
    ] = None,
    scorer: Annotated[
        str | None,
        typer.Option(help="Default focus measure or model for jobs that name none: a "
                     "registered name (autofocus focus -h lists them) or a model file, e.g. "
                     "site.onnx from `autofocus calibrate`; checked at start.  "
                     "[default: {default:focus.scorer}]"),
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
    from autofocus_drivers.errors import ConfigurationError

    from autofocus.errors import ModelError, UnknownNameError
    from autofocus.logging import configure_logging
    from autofocus.scoring.registry import check_scorer
    from autofocus.service.api.security import InsecureBindError, check_bind_allowed
    from autofocus.service.microscopes import check_driver_settings
    from autofocus.service.preflight import check_service_settings

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
            "focus": {"scorer": scorer},
            **hardware_overrides(
                mm_port, mm_headless, mm_config, mm_focus_device, mm_camera,
                stack, pattern, z_step_um,
            ),
        },
    )
    try:
        check_bind_allowed(settings)
        check_driver_settings(settings)  # e.g. Micro-Manager without Z limits: exit 2 now
        check_service_settings(settings)  # names, tolerance floor, the database: exit 2 now
    except (InsecureBindError, ConfigurationError) as exc:
        fail(str(exc))
    try:
        scorer_label = check_scorer(settings.focus.scorer)
    except (UnknownNameError, ModelError) as exc:
        fail(f"scorer: {str(exc).strip(chr(34) + chr(39))}")
    configure_logging(settings.log_format, settings.log_level)
    print_banner(settings, scorer_label)
    run_server(settings)


def print_banner(settings: Settings, scorer: str | None = None) -> None:
    """Say on stderr where the daemon listens, what it drives, its Z limits, its default
    scorer (`scorer`: how reports name it; None = the configured name) and its database."""
    from rich.console import Console
    from rich.text import Text

    import autofocus

    url = f"http://{settings.host}:{settings.port}"
    if settings.driver == "micromanager":
        mm = settings.mm
        driver = ("Micro-Manager, " + (f"attached on port {mm.port}" if mm.port is not None
                                       else f"headless ({mm.config_file or 'demo config'})"))
    elif settings.driver == "replay":
        driver = f"replay of the recorded stack {settings.replay.stack}"
    else:
        driver = f"simulated microscope ({settings.sim.specimen}, {settings.sim.modality})"
    if settings.driver == "sim":
        from autofocus.service.microscopes import simulated_limits

        own = simulated_limits(settings)
        limits = f"[{own.min_um:g}, {own.max_um:g}] µm"
        if settings.z_min_um is None and settings.z_max_um is None:
            limits += " (the simulated stage's travel)"
    elif settings.z_min_um is None and settings.z_max_um is None:
        limits = "the driver's own"
        if settings.driver == "micromanager":
            limits += " (none configured: set z_min_um and z_max_um before first use)"
        elif settings.driver == "replay":
            limits = "the recorded stack's z range"
    else:
        def show(z: float | None) -> str:
            return "driver's" if z is None else f"{z:g}"

        limits = f"[{show(settings.z_min_um)}, {show(settings.z_max_um)}] µm"
    lines = [
        f"autofocus {autofocus.__version__} serving {url}  (API docs: {url}/docs)",
        f"  driver:   {driver}",
        f"  Z limits: {limits}",
        f"  scorer:   {scorer or settings.focus.scorer}",
        f"  database: {Path(settings.database_path).expanduser().resolve()}",
        f"  auth:     {'bearer token required' if settings.api_token else 'none (loopback only)'}",
    ]
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    for line in lines:
        console.print(Text(line))


def run_server(settings: Settings) -> None:
    """Serve `settings` with uvicorn in the foreground (blocks until shutdown).

    Raises `InsecureBindError` for a non-loopback host without a token.
    """
    from autofocus.service.api import create_app
    from autofocus.service.api.security import check_bind_allowed
    from autofocus.service.api.server import build_server

    check_bind_allowed(settings)
    # The worker thread that drives the hardware competes for the GIL with the event loop.
    # With the default 5 ms switch interval a busy loop (many polling clients) delays every
    # wake-up of the worker by up to 5 ms, which stretches focus jobs; 1 ms keeps them on time.
    sys.setswitchinterval(float(os.environ.get("AUTOFOCUS_SWITCH_INTERVAL_S", "0.001")))
    # Connection limits, read timeouts and the shutdown rules live in build_server.
    build_server(create_app(settings), settings).run()
