"""Simulated hardware profiles: how fast the simulated stage and camera are.

The search's cost is hardware time (travel, settling, exposure, readout), so
benchmarks state which hardware they assume. These three profiles are
**assumptions**, round figures for typical classes of focus drive and camera,
not measurements of any particular instrument:

- `default`: 500 µm/s, 20 ms settle, 10 ms exposure, no readout; streams at up
  to 1/exposure frames per second while the stage moves at constant speed.
- `motorized`: 300 µm/s, 40 ms settle, 20 ms exposure + 10 ms readout; streams
  at ≤ 30 fps at constant speed.
- `piezo`: 2 mm/s, 5 ms settle, 10 ms exposure + 2 ms readout overlapping the
  next exposure; ≤ 100 fps, hardware-sequenced Z.

`default` is the simulator as it always was (same frames, same clock) with
streaming allowed; `motorized` a stepper-motor focus drive with a CCD-like
camera; `piezo` a piezo Z stage whose positions the controller steps through
on the camera's trigger.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from autofocus_drivers.sim.errors import require

PROFILE_NAMES = ("default", "motorized", "piezo")


@dataclass(frozen=True)
class HardwareProfile:
    """Speeds of one simulated stage and camera (µm, s, ms, frames per second).

    `speed_um_per_s` stage travel speed; `settle_s` wait after every stop;
    `exposure_ms` the camera's exposure; `readout_ms` time to read a frame out;
    `readout_overlaps` True when the readout runs during the next exposure
    (streamed frames then come every max(exposure, readout, 1/fps));
    `max_fps` the camera's frame-rate limit while streaming; `sequenced` True
    when the stage steps through a Z list on the camera's trigger (no settle
    between streamed frames).
    """

    name: str
    speed_um_per_s: float
    settle_s: float
    exposure_ms: float
    readout_ms: float
    readout_overlaps: bool
    max_fps: float | None
    sequenced: bool

    def apply(self, config):  # noqa: ANN001, ANN201 - SimConfig (import cycle)
        """`config` (a `SimConfig`) with this profile's stage and camera speeds."""
        stage = dataclasses.replace(
            config.stage, speed_um_per_s=self.speed_um_per_s, settle_s=self.settle_s,
            sequenceable=self.sequenced,
        )
        camera = dataclasses.replace(
            config.camera, exposure_ms=self.exposure_ms, readout_ms=self.readout_ms,
            readout_overlaps=self.readout_overlaps, max_fps=self.max_fps,
        )
        return dataclasses.replace(config, stage=stage, camera=camera)


PROFILES: dict[str, HardwareProfile] = {
    "default": HardwareProfile("default", 500.0, 0.020, 10.0, 0.0, False, None, False),
    "motorized": HardwareProfile("motorized", 300.0, 0.040, 20.0, 10.0, False, 30.0, False),
    "piezo": HardwareProfile("piezo", 2000.0, 0.005, 10.0, 2.0, True, 100.0, True),
}


def hardware_profile(name: str) -> HardwareProfile:
    """The profile called `name` (`PROFILE_NAMES`); `SimConfigError` for another name."""
    key = str(name).lower()
    require(key in PROFILES, f"hardware_profile must be one of {PROFILE_NAMES}, got {name!r}")
    return PROFILES[key]
