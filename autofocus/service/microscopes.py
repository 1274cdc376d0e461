"""Open the microscope named by the settings: simulated, Micro-Manager or replay.

`open_microscope(settings)` is the one place that maps settings to a driver,
used by the CLI and the daemon. Vendor packages are imported only for the
driver asked for. Configured Z limits (`z_min_um`, `z_max_um`) always win over
a driver's own; Micro-Manager has none, so they are required there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from autofocus_drivers.base import Microscope, ZLimits
from autofocus_drivers.errors import ConfigurationError

from autofocus.settings import Settings


def configured_limits(settings: Settings, default: ZLimits | None) -> ZLimits:
    """The Z limits from `settings`, falling back to `default` per side.

    Raises `ConfigurationError` when no limits are known (Micro-Manager
    without `z_min_um`/`z_max_um`) or they are inverted.
    """
    lo = settings.z_min_um if settings.z_min_um is not None else (default and default.min_um)
    hi = settings.z_max_um if settings.z_max_um is not None else (default and default.max_um)
    if lo is None or hi is None:
        raise ConfigurationError(
            "Z limits are not configured: give --z-min-um and --z-max-um on the command line "
            "(or z_min_um / z_max_um in the TOML file, AUTOFOCUS_Z_MIN_UM / AUTOFOCUS_Z_MAX_UM "
            "in the environment) set to the safe travel of your focus drive"
        )
    try:
        return ZLimits(float(lo), float(hi))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def check_driver_settings(settings: Settings) -> None:
    """Refuse, before anything starts, settings the configured driver cannot run with.

    Micro-Manager reports no Z limits, so `z_min_um` and `z_max_um` are required,
    plus a way to reach it (`mm.port` or `mm.headless_adapter_dir`); replay needs
    `replay.stack`. Raises `ConfigurationError` saying what to set.
    """
    if settings.driver == "micromanager":
        missing = [n for n in ("z_min_um", "z_max_um") if getattr(settings, n) is None]
        if missing:
            raise ConfigurationError(
                f"the micromanager driver needs Z limits: set {' and '.join(missing)} "
                "(AUTOFOCUS_Z_MIN_UM / AUTOFOCUS_Z_MAX_UM, or --z-min-um / --z-max-um) to the "
                "safe travel of your focus drive; Micro-Manager reports none"
            )
        if settings.mm.port is None and settings.mm.headless_adapter_dir is None:
            raise ConfigurationError(
                "the micromanager driver needs mm.port (the ZMQ server of a running "
                "Micro-Manager) or mm.headless_adapter_dir (start it in-process)"
            )
    elif settings.driver == "replay" and settings.replay.stack is None:
        raise ConfigurationError("the replay driver needs a stack: set replay.stack or --stack")


def simulated_limits(settings: Settings) -> ZLimits:
    """The Z limits (µm) the simulated microscope of `settings` runs with."""
    from autofocus_drivers.sim import SimConfig

    stage = SimConfig.preset(settings.sim.specimen, settings.sim.modality).stage
    return configured_limits(settings, ZLimits(stage.z_min_um, stage.z_max_um))


def open_simulated(settings: Settings) -> Microscope:
    """A `SimulatedMicroscope` from `settings.sim` and the configured Z limits."""
    from autofocus_drivers.sim import SimConfig, SimulatedMicroscope

    sim = settings.sim
    config = SimConfig.preset(
        sim.specimen,
        sim.modality,
        photons_per_px_ms=sim.photons_per_px_ms,
        read_noise_e=sim.read_noise_e,
        focus_z_um=sim.focus_z_um,
        debris_dz_um=sim.debris_dz_um,
        tilt_um=sim.tilt_um,
        drift_um_per_s=sim.drift_um_per_s,
        backlash_um=sim.backlash_um,
        width_px=sim.width_px,
        height_px=sim.height_px,
        noise_model=sim.noise_model,
        real_time=sim.real_time,
        hardware_profile=sim.hardware_profile,
        surface=_plate_surface(sim.surface_tilt_um, sim.surface_bow_um),
        magnification=sim.magnification,
        na=sim.na,
        immersion_index=sim.immersion_index,
    )
    own = ZLimits(config.stage.z_min_um, config.stage.z_max_um)
    limits = configured_limits(settings, own)
    start = limits.clamp(config.stage.start_z_um)
    stage = dataclasses.replace(
        config.stage, z_min_um=limits.min_um, z_max_um=limits.max_um, start_z_um=start
    )
    return SimulatedMicroscope(dataclasses.replace(config, stage=stage), seed=sim.seed)


def _plate_surface(tilt_um: float, bow_um: float) -> Any:
    """A tilted and bowed 96-well plate footprint (127.76 × 85.48 mm), or flat."""
    from autofocus_drivers.sim import SampleSurface

    if tilt_um == 0 and bow_um == 0:
        return None
    return SampleSurface.plate(width_um=127_760.0, height_um=85_480.0, tilt_um=tilt_um,
                               bow_um=bow_um)


def open_micromanager(settings: Settings) -> Microscope:
    """A Micro-Manager microscope (ZMQ server or headless) from `settings.mm`."""
    from autofocus_drivers.micromanager import open_micromanager as _open

    mm = settings.mm
    limits = configured_limits(settings, None)
    mic = _open(
        port=mm.port,
        headless_adapter_dir=mm.headless_adapter_dir,
        config_file=mm.config_file,
        focus_device=mm.focus_device,
        camera=mm.camera,
        z_limits_um=limits,
        timeout_s=mm.timeout_s,
        continuous_focus=mm.continuous_focus,
        xy_stage=mm.xy_stage,
    )
    if mm.objective_na is not None:
        mic.set_objective(na=mm.objective_na, immersion_index=mm.immersion_index,
                          wavelength_nm=mm.wavelength_nm)
    return mic


def open_replay(settings: Settings) -> Microscope:
    """A replay microscope over the recorded stack in `settings.replay.stack`."""
    from autofocus.stacks.replay import open_replay as _open

    rp = settings.replay
    if rp.stack is None:
        raise ConfigurationError("the replay driver needs a stack: set replay.stack or --stack")
    opts: dict[str, Any] = {
        "pattern": rp.pattern,
        "z_step_um": rp.z_step_um,
        "blend": rp.blend,
        "noise_sigma": rp.noise_sigma,
        "move_s_per_um": rp.move_s_per_um,
        "exposure_ms": rp.exposure_ms,
        "seed": rp.seed,
    }
    return _open(rp.stack, **opts)


_OPENERS = {"sim": open_simulated, "micromanager": open_micromanager, "replay": open_replay}


def open_microscope(settings: Settings) -> Microscope:
    """Open the driver named by `settings.driver`.

    Raises `ConfigurationError` for missing or inconsistent driver options and
    the driver's own typed errors when the hardware cannot be reached.
    """
    try:
        opener = _OPENERS[settings.driver]
    except KeyError:
        raise ConfigurationError(
            f"unknown driver {settings.driver!r}; choose one of {', '.join(_OPENERS)}"
        ) from None
    return opener(settings)
