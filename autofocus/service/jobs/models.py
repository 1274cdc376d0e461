"""The focus job: its states, its record and how it renders as JSON.

A job is created `queued`, taken by the microscope's worker (`running`) and
ends `succeeded`, `failed` or `cancelled`. A job that was running when the
daemon died is found `interrupted` on the next start. Times are seconds since
the Unix epoch internally and ISO 8601 UTC strings in JSON.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class JobState(str, enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        """True for states a job never leaves."""
        return self not in (JobState.QUEUED, JobState.RUNNING)


TERMINAL_STATES = frozenset(s for s in JobState if s.terminal)


@dataclass
class Job:
    """One focus job as stored.

    `request` is the resolved request (every field filled from the settings'
    defaults; `center_z_um` None means "where the stage is when the job
    starts"). `progress` holds `frames` (measurements so far), `max_frames`,
    `last_z_um`, `last_score` and `start_z_um`. `result` is
    `FocusResult.to_dict()` once the engine ran; `error` is one plain sentence
    when the job did not succeed and `error_code` its stable reason code
    (`hardware`, `timeout`, `cancelled`, ...) where one is known.
    """

    id: str
    seq: int
    state: JobState
    request: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_s: float = 0.0
    started_s: float | None = None
    finished_s: float | None = None
    idempotency_key: str | None = None
    cancel_requested: bool = False
    error_code: str | None = None

    def to_dict(self, *, include_curve: bool = True) -> dict[str, Any]:
        """JSON-ready view served by the API; `include_curve=False` drops the bulky curve."""
        result = self.result
        if result is not None and not include_curve:
            result = {k: v for k, v in result.items() if k not in ("curve", "commanded_z_um")}
        return {
            "id": self.id,
            "state": self.state.value,
            "request": self.request,
            "progress": self.progress,
            "result": result,
            "error": self.error,
            "error_code": self.error_code,
            "created_at": iso_utc(self.created_s),
            "started_at": iso_utc(self.started_s),
            "finished_at": iso_utc(self.finished_s),
            "cancel_requested": self.cancel_requested,
            "links": {
                "self": f"/v1/jobs/{self.id}",
                "events": f"/v1/jobs/{self.id}/events",
                "curve": f"/v1/jobs/{self.id}/curve.png",
            },
        }


def iso_utc(epoch_s: float | None) -> str | None:
    """ISO 8601 UTC time with microseconds for `epoch_s` (None stays None).

    Microseconds, so jobs submitted within one millisecond still sort in order.
    """
    if epoch_s is None:
        return None
    return (
        datetime.fromtimestamp(epoch_s, tz=timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def to_jsonable(value: Any) -> Any:
    """`value` made safe for strict JSON: NaN/±inf become None, numpy values plain Python.

    Engine results may carry NaN scores, numpy scalars or arrays in `details`
    and `fit`; strict JSON (and Starlette's encoder) refuses them.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return to_jsonable(tolist())
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    return str(value)
