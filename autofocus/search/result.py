"""What a focus run reports: measurements, timing breakdown and the result.

Plain dataclasses with `to_dict()` for JSON (CLI, HTTP API, persistence).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """One measured position: commanded `z_um`, its `score` (NaN when the frame was
    unusable), the hardware-clock time `t_s` since the run started, and its index."""

    index: int
    z_um: float
    score: float
    t_s: float


@dataclass
class Timing:
    """Where the time of one focus run went, in seconds.

    `move_s`, `settle_s` and `exposure_s` are hardware-clock time (virtual on the
    simulator); `scoring_s` is wall time spent scoring (partly overlapped with
    acquisition); `overhead_s` is wall time in the engine outside hardware calls
    and scoring. `hardware_s` is the hardware-clock time of the whole run and
    `elapsed_s` its wall time.
    """

    move_s: float = 0.0
    settle_s: float = 0.0
    exposure_s: float = 0.0
    scoring_s: float = 0.0
    overhead_s: float = 0.0
    hardware_s: float = 0.0
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


@dataclass
class FocusResult:
    """The outcome of one autofocus run.

    `success` is True when a focus was found and the stage parked there
    (`final_z_um` ≈ `best_z_um`). On failure or cancel `reason` says why in one
    sentence, `error_type` names the error class (e.g. `StageError`,
    `NoFocusSignal`, `Cancelled`) and the stage is back at `start_z_um` unless the
    request said `on_failure="stay"`. `reason_code` is the stable
    `FailureReason` code of a failure (None on success). `curve` holds every measurement in order;
    `frames` counts frames acquired (including the verification frame).
    """

    success: bool
    best_z_um: float | None
    best_score: float | None
    confidence: float
    reason: str | None
    error_type: str | None
    start_z_um: float
    final_z_um: float | None
    frames: int
    curve: list[Measurement]
    timing: Timing
    strategy: str
    scorer: str
    fit: dict[str, Any] | None = None
    commanded_z_um: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    reason_code: str | None = None

    @property
    def cancelled(self) -> bool:
        """True when the run was cancelled."""
        return self.error_type == "Cancelled"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (curve as a list of {z_um, score, t_s})."""
        return {
            "success": self.success,
            "best_z_um": self.best_z_um,
            "best_score": self.best_score,
            "confidence": round(self.confidence, 4),
            "reason": self.reason,
            "reason_code": self.reason_code,
            "error_type": self.error_type,
            "start_z_um": self.start_z_um,
            "final_z_um": self.final_z_um,
            "frames": self.frames,
            "strategy": self.strategy,
            "scorer": self.scorer,
            "curve": [
                {"z_um": m.z_um, "score": _json_float(m.score), "t_s": round(m.t_s, 6)}
                for m in self.curve
            ],
            "fit": self.fit,
            "timing": self.timing.to_dict(),
            "details": self.details,
        }


def _json_float(x: float) -> float | None:
    return None if x != x else float(x)  # NaN -> null
