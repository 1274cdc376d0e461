"""The `Microscope` protocol: the Z stage and camera the autofocus engine drives.

A microscope is synchronous and thread-confined: one worker thread owns it. All
positions are in micrometres. A driver never moves outside `z_limits_um`; asked
to, it raises `LimitError` without moving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from autofocus_drivers.clock import Clock
from autofocus_drivers.errors import ConfigurationError, LimitError


@dataclass(frozen=True)
class ZLimits:
    """Inclusive Z travel limits in micrometres (`min_um` < `max_um`)."""

    min_um: float
    max_um: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.min_um) and np.isfinite(self.max_um)):
            raise ValueError(f"Z limits must be finite numbers, got {self.min_um}, {self.max_um}")
        if self.min_um >= self.max_um:
            raise ValueError(
                f"Z lower limit {self.min_um} µm must be below the upper limit {self.max_um} µm"
            )

    def contains(self, z_um: float, tol_um: float = 1e-9) -> bool:
        """True when `z_um` lies within the limits (with a tiny float tolerance)."""
        return self.min_um - tol_um <= z_um <= self.max_um + tol_um

    def clamp(self, z_um: float) -> float:
        """The position nearest to `z_um` that lies within the limits."""
        return float(min(max(z_um, self.min_um), self.max_um))

    def check(self, z_um: float) -> None:
        """Raise `LimitError` when `z_um` is not a finite position within the limits."""
        if not np.isfinite(z_um) or not self.contains(z_um):
            raise LimitError(
                f"Z position {z_um} µm is outside the configured limits "
                f"[{self.min_um}, {self.max_um}] µm; the stage was not moved"
            )


@dataclass(frozen=True)
class CameraInfo:
    """What a camera reports about itself: frame size in pixels, bit depth, pixel size."""

    width_px: int
    height_px: int
    bit_depth: int
    pixel_size_um: float | None = None
    name: str = "camera"


@runtime_checkable
class Microscope(Protocol):
    """A Z stage plus a camera.

    `move_z` blocks until the stage has arrived and settled; `snap` exposes and
    returns one 2-D frame (H, W) of the camera's dtype. Errors are the types in
    `autofocus_drivers.errors`.
    """

    name: str
    clock: Clock

    @property
    def z_limits_um(self) -> ZLimits:
        """Configured Z travel limits."""
        ...

    @property
    def z_um(self) -> float:
        """Current Z position as reported by the stage, in µm."""
        ...

    def move_z(self, z_um: float) -> None:
        """Move to `z_um` and wait until settled. Raises `LimitError` outside the limits."""
        ...

    def snap(self) -> np.ndarray:
        """Expose and return one frame as a 2-D array."""
        ...

    @property
    def exposure_ms(self) -> float:
        """Current exposure time in milliseconds."""
        ...

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the exposure time in milliseconds."""
        ...

    def camera_info(self) -> CameraInfo:
        """Frame geometry and bit depth of the camera."""
        ...

    def close(self) -> None:
        """Release the hardware. Idempotent."""
        ...


class XYStage(Protocol):
    """Optional capability of a `Microscope`: a motorised XY stage (focus maps need one).

    Positions in micrometres. `move_xy` blocks until the stage has arrived and settled;
    it raises `LimitError` or `StageError` without moving when it cannot go there.
    `has_xy_stage` is False on a driver that could have one but has none configured.
    """

    has_xy_stage: bool

    @property
    def xy_um(self) -> tuple[float, float]:
        """Current (x_um, y_um) as reported by the stage."""
        ...

    def move_xy(self, x_um: float, y_um: float) -> None:
        """Move to (x_um, y_um) and wait until settled."""
        ...


class WaypointZ(Protocol):
    """Optional capability of a `Microscope`: pass through a Z position without settling.

    `move_z_waypoint(z_um)` moves to `z_um` µm (same limits and errors as
    `move_z`) and returns as soon as the stage has arrived, without the settling
    wait: nothing is imaged there. The engine uses it for the overshoot of an
    approach from below; the next `move_z` settles as usual. A driver whose
    stage cannot tell "arrived" from "settled" simply does not offer it.
    """

    def move_z_waypoint(self, z_um: float) -> None:
        """Move to `z_um` µm without waiting for the stage to settle."""
        ...


class ZSweep(Protocol):
    """Optional capability of a `Microscope`: frames streamed while Z moves.

    `sweep_start_um(z_um, max_smear_um=...)` is where the stage must stand (approached
    from below) before the sweep; `sweep_z(z_um, max_smear_um=...)` then returns one
    frame centred at each strictly ascending position, as [(z_um, frame)], either from
    a hardware-sequenced stage (a Z list stepped on the camera's trigger) or from a
    stage moving at constant speed with at most `max_smear_um` of travel during an
    exposure. Same limits and errors as `move_z` and `snap`; positions are checked
    before anything moves. `sweep_sequenced` says which of the two kinds it is.
    """

    sweep_sequenced: bool

    def sweep_start_um(self, z_um: Sequence[float], *,
                       max_smear_um: float | None = None) -> float:
        """The run-up position (µm) of a sweep over `z_um`."""
        ...

    def sweep_z(self, z_um: Sequence[float], *,
                max_smear_um: float | None = None) -> list[tuple[float, np.ndarray]]:
        """Stream one frame per position of `z_um` (ascending µm)."""
        ...


def sweep_of(microscope: object) -> ZSweep | None:
    """`microscope` as a `ZSweep` when it streams Z sweeps, else None. A wrapper says
    so with `offers_sweep` (its own `sweep_z` exists whether or not the driver's does)."""
    offers = getattr(microscope, "offers_sweep", None)
    if offers is None:
        offers = callable(getattr(microscope, "sweep_z", None)) and callable(
            getattr(microscope, "sweep_start_um", None))
    return microscope if offers else None  # type: ignore[return-value]


def xy_stage_of(microscope: object) -> XYStage:
    """`microscope` as an `XYStage`, or `ConfigurationError` saying it has none."""
    # Not isinstance(): a runtime protocol check would read `xy_um`, which asks the hardware.
    has_one = getattr(microscope, "has_xy_stage", False) is True
    if not (has_one and callable(getattr(microscope, "move_xy", None))):
        name = getattr(microscope, "name", type(microscope).__name__)
        raise ConfigurationError(f"the {name} microscope has no XY stage; focus maps need one")
    return microscope  # type: ignore[return-value]
