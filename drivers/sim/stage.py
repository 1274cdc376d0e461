"""The Z stage: limits, step resolution, speed, settling, backlash and position noise.

Backlash is modelled as mechanical play (a dead band `backlash_um` wide
between the motor and the carriage). The carriage only moves when the motor
pushes on one side of the gap, so after a move up it sits `backlash_um/2` below
the commanded position and after a move down `backlash_um/2` above it; a small
reversal inside the gap does not move it at all. The stage *reports* the
commanded position, as real encoder-less focus drives do, so the error is
invisible to the software except through the image. Approaching a target from
the same side is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from autofocus_drivers.base import ZLimits
from autofocus_drivers.sim.errors import require


@dataclass(frozen=True)
class StageConfig:
    """Z stage parameters, all in µm and seconds.

    `z_min_um`/`z_max_um` travel limits; `start_z_um` initial position;
    `step_um` motor step (position quantisation, 0 = continuous);
    `speed_um_per_s` travel speed; `settle_s` settling time after every move;
    `backlash_um` width of the mechanical dead band; `position_noise_um`
    Gaussian σ of where the carriage actually stops on each move;
    `sequenceable` True when the controller can step through a list of Z
    positions on the camera's trigger (a piezo with hardware sequencing).
    """

    z_min_um: float = -100.0
    z_max_um: float = 100.0
    start_z_um: float = 0.0
    step_um: float = 0.01
    speed_um_per_s: float = 500.0
    settle_s: float = 0.02
    backlash_um: float = 1.0
    position_noise_um: float = 0.02
    sequenceable: bool = False

    def __post_init__(self) -> None:
        try:
            limits = ZLimits(self.z_min_um, self.z_max_um)
        except ValueError as exc:
            require(False, f"stage limits: {exc}")
            raise  # pragma: no cover - require always raises here
        require(
            limits.contains(self.start_z_um),
            f"start_z_um {self.start_z_um} µm lies outside the limits "
            f"[{self.z_min_um}, {self.z_max_um}] µm",
        )
        require(
            math.isfinite(self.speed_um_per_s) and self.speed_um_per_s > 0,
            f"speed_um_per_s must be > 0, got {self.speed_um_per_s}",
        )
        for name in ("step_um", "settle_s", "backlash_um", "position_noise_um"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, f"{name} must be ≥ 0, got {value}")

    @property
    def limits(self) -> ZLimits:
        """The travel limits as a `ZLimits`."""
        return ZLimits(self.z_min_um, self.z_max_um)


class StageMechanics:
    """The stage's mechanical state: commanded, carriage (play model) and physical positions."""

    def __init__(self, config: StageConfig, rng: np.random.Generator):
        self.config = config
        self._rng = rng
        self.commanded_um = float(config.start_z_um)
        self._carriage_um = self._quantise(config.start_z_um)
        self.physical_um = self._carriage_um

    def _quantise(self, z_um: float) -> float:
        step = self.config.step_um
        return round(z_um / step) * step if step > 0 else float(z_um)

    def move(self, z_um: float, *, settle: bool = True) -> float:
        """Move to `z_um` (already limit-checked); return the time it takes in seconds
        (travel, plus the settling time unless `settle` is False: a waypoint)."""
        cfg = self.config
        duration_s = abs(z_um - self.commanded_um) / cfg.speed_um_per_s
        if settle:
            duration_s += cfg.settle_s
        motor_um = self._quantise(z_um)
        half_play = cfg.backlash_um / 2.0
        # Play operator: the carriage follows only once the motor takes up the gap.
        if motor_um > self._carriage_um + half_play:
            self._carriage_um = motor_um - half_play
        elif motor_um < self._carriage_um - half_play:
            self._carriage_um = motor_um + half_play
        noise_um = (
            self._rng.normal(0.0, cfg.position_noise_um) if cfg.position_noise_um > 0 else 0.0
        )
        self.physical_um = self._carriage_um + noise_um
        self.commanded_um = float(z_um)
        return duration_s
