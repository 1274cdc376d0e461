"""The ask/tell search protocol shared by every focus search strategy.

A strategy is a pure state machine over (z, score) pairs: no hardware, no
clock, no I/O. The engine asks it for the next batch of Z positions, measures
them and tells it the scores, until `done`. Positions are in micrometres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from autofocus.search.trust import RIVAL_POLICIES


@dataclass(frozen=True)
class SearchSpace:
    """Where and how finely to search, in micrometres.

    `center_z_um` ± `range_um`/2, intersected with the hard limits
    [`z_min_um`, `z_max_um`], is the interval searched (`lo_um`..`hi_um`).
    `tolerance_um` is the accuracy wanted (typically a quarter of the depth of
    field); `coarse_step_um` is the spacing of a first sweep (default
    8 × tolerance, about twice the depth of field). `max_frames` caps how many
    positions a strategy may ask for in total. `dof_um` is the optics' depth of
    field (None: 4 × tolerance). `edge_extension_um` lets a strategy that finds
    the sharpest plane at an end of the range look that far beyond it (never
    outside the limits). `planes_um`, when set, are the only positions the
    microscope can serve (a replayed z-stack): strategies snap to them.
    `rival` is the rival-peak policy ("fail", "nearest", "sharpest") and
    `reference_z_um` the z that "nearest" measures from (default: the centre).
    `rival_check` how hard a strategy that checks for rivals looks: "capture"
    (from its coarse pass) or "full" (sample the whole range finely enough to
    see a dim plane; more frames). `prior_sigma_um`, with `reference_z_um`, is a
    prior for a revisit: focus expected at `reference_z_um` ± this standard
    deviation (µm); strategies that use it search there first.
    """

    center_z_um: float
    range_um: float
    z_min_um: float
    z_max_um: float
    tolerance_um: float
    coarse_step_um: float | None = None
    max_frames: int = 200
    dof_um: float | None = None
    edge_extension_um: float = 0.0
    planes_um: tuple[float, ...] | None = None
    rival: str = "fail"
    reference_z_um: float | None = None
    rival_check: str = "capture"
    prior_sigma_um: float | None = None

    def __post_init__(self) -> None:
        if not self.range_um > 0:
            raise ValueError(f"range_um must be positive, got {self.range_um}")
        if not self.tolerance_um > 0:
            raise ValueError(f"tolerance_um must be positive, got {self.tolerance_um}")
        if self.z_min_um >= self.z_max_um:
            raise ValueError("z_min_um must be below z_max_um")
        if self.hi_um - self.lo_um <= 0:
            raise ValueError(
                f"the search range {self.center_z_um} ± {self.range_um / 2} µm does not overlap "
                f"the Z limits [{self.z_min_um}, {self.z_max_um}] µm"
            )
        if self.max_frames < 3:
            raise ValueError("max_frames must be at least 3")
        if self.dof_um is not None and not (math.isfinite(self.dof_um) and self.dof_um > 0):
            raise ValueError(f"dof_um must be a positive number, got {self.dof_um}")
        if not (math.isfinite(self.edge_extension_um) and self.edge_extension_um >= 0):
            raise ValueError(f"edge_extension_um must be ≥ 0, got {self.edge_extension_um}")
        if self.prior_sigma_um is not None:
            if not (math.isfinite(self.prior_sigma_um) and self.prior_sigma_um > 0):
                raise ValueError(
                    f"expected_sigma_um must be a positive number, got {self.prior_sigma_um}")
            if self.reference_z_um is None:
                raise ValueError("expected_sigma_um needs expected_z_um (the prior's centre)")
        if self.rival_check not in ("capture", "full"):
            raise ValueError(f"rival_check must be 'capture' or 'full', got {self.rival_check!r}")
        if self.rival not in RIVAL_POLICIES:
            policies = ", ".join(RIVAL_POLICIES)
            raise ValueError(f"rival must be one of {policies}, got {self.rival!r}")
        if self.planes_um is not None:
            planes = tuple(sorted(float(p) for p in self.planes_um))
            if not planes or not all(math.isfinite(p) for p in planes):
                raise ValueError("planes_um must be a non-empty list of finite positions")
            object.__setattr__(self, "planes_um", planes)

    @property
    def dof(self) -> float:
        """Depth of field in µm: `dof_um`, or 4 × `tolerance_um` when the optics are unknown."""
        return float(self.dof_um) if self.dof_um else 4.0 * self.tolerance_um

    @property
    def ext_lo_um(self) -> float:
        """Lowest position an edge extension may reach (inside the limits)."""
        return max(self.lo_um - self.edge_extension_um, self.z_min_um)

    @property
    def ext_hi_um(self) -> float:
        """Highest position an edge extension may reach (inside the limits)."""
        return min(self.hi_um + self.edge_extension_um, self.z_max_um)

    @property
    def lo_um(self) -> float:
        """Lower end of the searched interval (inside the limits)."""
        return max(self.center_z_um - self.range_um / 2, self.z_min_um)

    @property
    def hi_um(self) -> float:
        """Upper end of the searched interval (inside the limits)."""
        return min(self.center_z_um + self.range_um / 2, self.z_max_um)

    @property
    def step_um(self) -> float:
        """Coarse sweep spacing: `coarse_step_um` or 8 × `tolerance_um`."""
        return self.coarse_step_um if self.coarse_step_um else 8.0 * self.tolerance_um


@dataclass
class SearchOutcome:
    """What a finished search concluded.

    `best_z_um`/`best_score` are None only when nothing usable was found.
    `confidence` is in [0, 1] (peak prominence and fit quality). On failure
    `success` is False and `reason` is one plain sentence (flat curve, peak at
    the edge of the range, too few frames). `fit` optionally describes a fitted
    peak for plotting, e.g. {"kind": "parabola", "coeffs": [a, b, c], "z_min_um":
    .., "z_max_um": ..} with score = a z² + b z + c. `code` is the failure's
    `FailureReason` value (None on success).
    """

    success: bool
    best_z_um: float | None
    best_score: float | None
    confidence: float
    reason: str | None = None
    fit: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    code: str | None = None


@runtime_checkable
class Strategy(Protocol):
    """Ask/tell focus search.

    - `ask()` returns the next batch of Z positions (µm) to measure, all within
      [space.lo_um, space.hi_um] (a strategy that follows a peak past an end may go
      up to `space.edge_extension_um` beyond, inside the limits); it returns [] only
      once `done` is True.
    - `tell(z_um, scores)` reports the measured scores for exactly the positions
      from the last `ask()` (same order). A NaN score means the frame was
      unusable; strategies must tolerate it.
    - `done` becomes True when the strategy has converged, failed, or would
      exceed `space.max_frames`.
    - `outcome()` (valid once done) summarises the search.
    - `history` holds every (z_um, score) told so far, in order.

    Optional, when a strategy defines them: `wants_capture = True` asks the engine
    for each frame's wide-capture score; `configure(estimates=...)` is called once
    before the first `ask()` with whether the scorer offers defocus estimates;
    `observe(z_um, capture=..., capture_noise=..., estimate=...)` receives them
    for the last batch just before `tell()`.
    """

    name: str
    space: SearchSpace
    history: list[tuple[float, float]]

    def ask(self) -> list[float]: ...

    def tell(self, z_um: Sequence[float], scores: Sequence[float]) -> None: ...

    @property
    def done(self) -> bool: ...

    def outcome(self) -> SearchOutcome: ...
