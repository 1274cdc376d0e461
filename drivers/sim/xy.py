"""The XY stage and the sample surface it moves across.

A slide or a multiwell plate is never flat in the microscope's frame: it sits
tilted in its holder and sags (or bulges) towards its middle. `SampleSurface`
is that height profile, z(x, y) in µm at stage position (x, y) in µm: a tilt,
a bow that grows with the squared distance from the centre, and optional smooth
waviness. The simulated specimen's focus at an XY position is its focus at the
surface's centre plus this height.

`XYStageConfig` is the motorised XY stage: travel limits, speed and settling.
Moves take max(|dx|, |dy|) / speed + settle seconds (both axes move at once).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from autofocus_drivers.sim.errors import require


@dataclass(frozen=True)
class SampleSurface:
    """Height of the sample (µm) across the XY travel, relative to its centre.

    `center_um` the stage position of zero height; `tilt_x_um_per_mm`,
    `tilt_y_um_per_mm` slopes; `bow_um` height change from the centre to the
    distance `bow_radius_um` (positive: the rim is higher, as for a plate that
    sags in the middle), growing with the squared distance; `waviness_um` the
    amplitude of a smooth random undulation of wavelength `waviness_period_um`
    (drawn from `waviness_seed`).
    """

    center_um: tuple[float, float] = (0.0, 0.0)
    tilt_x_um_per_mm: float = 0.0
    tilt_y_um_per_mm: float = 0.0
    bow_um: float = 0.0
    bow_radius_um: float = 50_000.0
    waviness_um: float = 0.0
    waviness_period_um: float = 30_000.0
    waviness_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("tilt_x_um_per_mm", "tilt_y_um_per_mm", "bow_um", "waviness_um"):
            value = getattr(self, name)
            require(math.isfinite(value), f"{name} must be a finite number, got {value}")
        require(self.bow_radius_um > 0, f"bow_radius_um must be > 0, got {self.bow_radius_um}")
        require(
            self.waviness_period_um > 0,
            f"waviness_period_um must be > 0, got {self.waviness_period_um}",
        )

    @classmethod
    def plate(
        cls,
        *,
        width_um: float = 108_000.0,
        height_um: float = 72_000.0,
        tilt_um: float = 20.0,
        bow_um: float = 8.0,
        waviness_um: float = 0.0,
        seed: int = 0,
    ) -> SampleSurface:
        """A plate of `width_um` × `height_um` with its corner A1 at (0, 0).

        `tilt_um` height change left to right (and half of it top to bottom),
        `bow_um` height change from the plate centre to its corners.
        """
        half_diag = math.hypot(width_um / 2, height_um / 2)
        return cls(
            center_um=(width_um / 2, height_um / 2),
            tilt_x_um_per_mm=tilt_um / (width_um / 1000.0),
            tilt_y_um_per_mm=0.5 * tilt_um / (height_um / 1000.0),
            bow_um=bow_um,
            bow_radius_um=half_diag,
            waviness_um=waviness_um,
            waviness_seed=seed,
        )

    @functools.cached_property
    def _waves(self) -> tuple[tuple[float, float], ...]:
        """(angle, phase) of the three waviness components, drawn once from the seed."""
        rng = np.random.default_rng(self.waviness_seed)
        return tuple(tuple(float(v) for v in rng.uniform(0, 2 * math.pi, 2)) for _ in range(3))

    def height_um(self, x_um: float | np.ndarray, y_um: float | np.ndarray) -> np.ndarray | float:
        """Sample height (µm) at stage position (x_um, y_um), zero at `center_um`."""
        dx = np.asarray(x_um, dtype=float) - self.center_um[0]
        dy = np.asarray(y_um, dtype=float) - self.center_um[1]
        z = (self.tilt_x_um_per_mm * dx + self.tilt_y_um_per_mm * dy) / 1000.0
        z = z + self.bow_um * (dx * dx + dy * dy) / self.bow_radius_um**2
        if self.waviness_um:
            k = 2 * math.pi / self.waviness_period_um
            for angle, phase in self._waves:
                z = z + (self.waviness_um / 3) * np.sin(
                    k * (dx * math.cos(angle) + dy * math.sin(angle)) + phase
                )
        return float(z) if np.ndim(z) == 0 else z


@dataclass(frozen=True)
class XYStageConfig:
    """A motorised XY stage: travel limits (µm), start position, speed (µm/s), settle (s)."""

    x_min_um: float = -1_000.0
    x_max_um: float = 120_000.0
    y_min_um: float = -1_000.0
    y_max_um: float = 90_000.0
    start_um: tuple[float, float] = (0.0, 0.0)
    speed_um_per_s: float = 20_000.0
    settle_s: float = 0.05

    def __post_init__(self) -> None:
        require(self.x_min_um < self.x_max_um, "XY stage: x_min_um must be below x_max_um")
        require(self.y_min_um < self.y_max_um, "XY stage: y_min_um must be below y_max_um")
        require(self.contains(*self.start_um), f"XY start {self.start_um} lies outside the travel")
        require(self.speed_um_per_s > 0, "XY stage speed must be > 0")
        require(self.settle_s >= 0, "XY stage settle time must be ≥ 0")

    def contains(self, x_um: float, y_um: float) -> bool:
        """True when (x_um, y_um) is finite and inside the travel limits."""
        return (
            math.isfinite(x_um)
            and math.isfinite(y_um)
            and self.x_min_um <= x_um <= self.x_max_um
            and self.y_min_um <= y_um <= self.y_max_um
        )

    def move_time_s(self, from_um: tuple[float, float], to_um: tuple[float, float]) -> float:
        """Seconds to travel between two positions and settle (both axes move at once)."""
        dist = max(abs(to_um[0] - from_um[0]), abs(to_um[1] - from_um[1]))
        return dist / self.speed_um_per_s + self.settle_s
