"""Micro-Manager driver: a `Microscope` on top of MMCore, reached through pycromanager.

- `session`: reaching a core (a running Micro-Manager over ZMQ, or MMCore started
  headless in this process) and the demo kit of `mm-test-adapters`.
- `microscope`: `MicroManagerMicroscope`, the `Microscope` adapter over any core.
- `core_api`: calling a core whatever its flavour (snake/camelCase, Java shadows).
- `open_micromanager(...)` (here): one way in from settings or CLI options.
"""

from __future__ import annotations

import os
from pathlib import Path

from autofocus_drivers.base import ZLimits
from autofocus_drivers.errors import ConfigurationError
from autofocus_drivers.micromanager.core_api import Roi
from autofocus_drivers.micromanager.microscope import ContinuousFocusMode, MicroManagerMicroscope
from autofocus_drivers.micromanager.session import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    DEMO_ADAPTERS,
    DEMOCAMERA_FOCUS_PROPERTIES,
    demo_adapter_dir,
    demo_config_file,
    resolve_config_file,
    write_democamera_focus_config,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT_S",
    "DEMOCAMERA_FOCUS_PROPERTIES",
    "DEMO_ADAPTERS",
    "ContinuousFocusMode",
    "MicroManagerMicroscope",
    "Roi",
    "demo_adapter_dir",
    "demo_config_file",
    "open_micromanager",
    "resolve_config_file",
    "write_democamera_focus_config",
]


def open_micromanager(
    *,
    port: int | None = None,
    headless_adapter_dir: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    focus_device: str | None = None,
    camera: str | None = None,
    z_limits_um: ZLimits | tuple[float, float],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    continuous_focus: ContinuousFocusMode = "refuse",
    xy_stage: str | None = None,
) -> MicroManagerMicroscope:
    """Open a Micro-Manager microscope from settings or CLI options (exactly one way in).

    `port`: attach to a running Micro-Manager's ZMQ server. `headless_adapter_dir` (+
    `config_file`): start MMCore in-process; the value `"mm-test-adapters"` means the demo
    adapters of that package, and a missing `config_file` then means its
    `MMConfig_demo.cfg`; a relative `config_file` is looked up in the adapter folder
    first, then in the current folder. `z_limits_um` is `ZLimits` or `(min_um, max_um)`.
    `continuous_focus` and `xy_stage`: see `MicroManagerMicroscope`. Raises
    `ConfigurationError` for contradictory or missing options and everything the two
    constructors raise.
    """
    if port is not None and headless_adapter_dir is not None:
        raise ConfigurationError(
            "choose one way into Micro-Manager: a port (running Micro-Manager) or a headless "
            "adapter folder, not both"
        )
    try:
        limits = z_limits_um if isinstance(z_limits_um, ZLimits) else ZLimits(*z_limits_um)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bad Z limits {z_limits_um!r}: {exc}") from exc
    if headless_adapter_dir is not None:
        adapter_dir: Path
        if str(headless_adapter_dir) == DEMO_ADAPTERS:
            adapter_dir = demo_adapter_dir()
        else:
            adapter_dir = Path(headless_adapter_dir)
        if config_file is None:
            if str(headless_adapter_dir) != DEMO_ADAPTERS:
                raise ConfigurationError(
                    "headless Micro-Manager needs a hardware configuration file (--mm-config)"
                )
            config_file = demo_config_file()
        return MicroManagerMicroscope.start_headless(
            adapter_dir,
            config_file,
            z_limits_um=limits,
            focus_device=focus_device,
            camera=camera,
            timeout_s=timeout_s,
            continuous_focus=continuous_focus,
            xy_stage=xy_stage,
        )
    if config_file is not None:
        raise ConfigurationError(
            "a configuration file only applies to headless mode; a running Micro-Manager "
            "uses the configuration it was started with"
        )
    return MicroManagerMicroscope.connect(
        port=DEFAULT_PORT if port is None else port,
        timeout_s=timeout_s,
        z_limits_um=limits,
        focus_device=focus_device,
        camera=camera,
        continuous_focus=continuous_focus,
        xy_stage=xy_stage,
    )
