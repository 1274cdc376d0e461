"""Streamed Z sweeps of the simulated microscope: frames taken while the stage moves.

Two kinds, as the stage allows (`StageConfig.sequenceable`):

- **hardware-sequenced** (a piezo stepping through a Z list on the camera's
  trigger): the stage steps to each position, settles, the camera exposes; the
  readout may overlap the next step. A frame every max(frame interval,
  exposure + step travel + settle). No smear.
- **continuous** (a motorised stage at constant speed): the stage runs from a
  run-up half an exposure's travel below the first position to half an
  exposure's travel above the last; the camera streams, each frame centred on
  its position and integrating the image over the Z travelled during its
  exposure (rendered at `SMEAR_NODES` positions and averaged). The speed is the
  lowest of the stage's speed, the gap between the two closest positions over
  the frame interval (the camera cannot go faster) and `max_smear_um` per
  exposure (so a dim plane stays visible).

Every position, the run-up included, is limit-checked before anything moves.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from autofocus_drivers.errors import LimitError

# The microscope is typed Any: `microscope` imports this module (no import cycle).
SimulatedMicroscope = Any

SMEAR_NODES = 5  # positions rendered per moving exposure


def sweep_plan(
    mic: SimulatedMicroscope, zs: list[float], max_smear_um: float | None
) -> tuple[float, float]:
    """(speed µm/s, half the travel per exposure µm) of a sweep over `zs`; ValueError for
    positions not strictly ascending or a bad `max_smear_um`."""
    if any(b <= a for a, b in zip(zs, zs[1:], strict=False)):
        raise ValueError("sweep positions must be strictly ascending")
    if max_smear_um is not None and not (math.isfinite(max_smear_um) and max_smear_um > 0):
        raise ValueError(f"max_smear_um must be > 0, got {max_smear_um}")
    stage = mic.config.stage
    if stage.sequenceable:
        return stage.speed_um_per_s, 0.0
    exposure_s = mic.exposure_ms / 1000.0
    interval_s = mic.config.camera.frame_interval_s(mic.exposure_ms)
    gaps = [b - a for a, b in zip(zs, zs[1:], strict=False)]
    speed = stage.speed_um_per_s
    if gaps:
        speed = min(speed, min(gaps) / interval_s)
    if max_smear_um is not None:
        speed = min(speed, max_smear_um / exposure_s)
    return speed, speed * exposure_s / 2


def run_sweep(
    mic: SimulatedMicroscope, zs: list[float], max_smear_um: float | None
) -> list[tuple[float, np.ndarray]]:
    """The sweep of `SimulatedMicroscope.sweep_z` (see there and the module docstring)."""
    if not zs:
        return []
    speed, half_um = sweep_plan(mic, zs, max_smear_um)
    stage = mic.config.stage
    cam = mic.config.camera
    exposure_s = mic.exposure_ms / 1000.0
    interval_s = cam.frame_interval_s(mic.exposure_ms)
    limits = mic.z_limits_um
    if mic.z_um > zs[0] - half_um + 1e-9:
        raise ValueError(
            f"a sweep starts from its run-up at or below {zs[0] - half_um:.3f} µm "
            f"(sweep_start_um); the stage is at {mic.z_um:.3f} µm"
        )
    for z in (*zs, zs[-1] + half_um):
        if not (math.isfinite(z) and limits.contains(z)):
            mic.refused_z_um.append(z)
            raise LimitError(
                f"sweep position {z:.3f} µm is outside the configured limits "
                f"[{limits.min_um}, {limits.max_um}] µm; the stage was not moved"
            )
    out: list[tuple[float, np.ndarray]] = []
    if stage.sequenceable:
        for k, z in enumerate(zs):
            mic.commanded_z_um.append(z)
            step_s = mic._stage.move(z, settle=False) + stage.settle_s  # noqa: SLF001
            if k == 0:
                mic.clock.sleep_s(step_s)  # the first step: travel from the run-up, settle
            hold_s = max(interval_s, exposure_s + step_s) if k else exposure_s
            out.append((z, mic._frame(hold_s, None)))  # noqa: SLF001
        mic.clock.sleep_s(cam.readout_ms / 1000.0)  # the last frame's readout
        return out
    for z in zs:
        # Travel to this frame's start at constant speed (no settling: it keeps moving).
        start = z - half_um
        mic.clock.sleep_s(max(0.0, start - mic.z_um) / speed)
        path = np.linspace(start, z + half_um, SMEAR_NODES)
        physical = []
        for p in path:
            mic._stage.move(float(p), settle=False)  # noqa: SLF001 - carriage follows
            physical.append(mic._stage.physical_um)  # noqa: SLF001
        mic.commanded_z_um.append(z)
        out.append((z, mic._frame(exposure_s, physical)))  # noqa: SLF001
        # Frames closer than the camera allows never happen: speed ≤ gap / interval.
    mic.clock.sleep_s(max(0.0, interval_s - exposure_s))  # the last frame's readout
    return out
