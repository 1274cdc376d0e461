"""Request and response models of API v1 (they are also the OpenAPI documentation).

Names carry their units (`z_um`, `exposure_ms`, `timeout_s`). Requests are
strict: unknown fields (e.g. `range` without a unit), strings where numbers
belong, NaN and infinities are refused with 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _whole_float_to_int(value: Any) -> Any:
    # JSON has one number type: many clients (JavaScript, some JSON encoders) write 30 as
    # 30.0. A whole float is that integer; 30.5, "30" and true stay refused (strict mode).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeInt = Annotated[int, BeforeValidator(_whole_float_to_int)]
"""An integer field that also accepts a whole JSON float (3.0) but not 3.5, "3" or true."""


class Roi(BaseModel):
    """Region of the camera frame that is scored, in pixels from the top-left corner."""

    model_config = _STRICT

    x_px: WholeInt = Field(ge=0, le=100_000)
    y_px: WholeInt = Field(ge=0, le=100_000)
    width_px: WholeInt = Field(ge=8, le=100_000)
    height_px: WholeInt = Field(ge=8, le=100_000)


class FocusBody(BaseModel):
    """A focus job. Every field is optional; missing fields take the daemon's defaults."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [{"range_um": 40.0, "tolerance_um": 0.5, "scorer": "tenengrad"}]
        },
    )

    strategy: str | None = Field(
        None, min_length=1, max_length=64,
        description="Search strategy, e.g. `guided` (default) or `coarse-fine`.",
    )
    scorer: str | None = Field(
        None, min_length=1, max_length=64, description="Focus measure or model, e.g. `tenengrad`."
    )
    center_z_um: float | None = Field(
        None, ge=-1e6, le=1e6, description="Centre of the search, µm (default: the stage position)."
    )
    range_um: float | None = Field(None, gt=0, le=1e5, description="Full width searched, µm.")
    tolerance_um: float | None = Field(None, gt=0, le=1e4, description="Accuracy wanted, µm.")
    exposure_ms: float | None = Field(
        None, gt=0, le=60_000, description="Exposure for this job, ms (restored afterwards)."
    )
    roi: Roi | None = Field(None, description="Score only this region of the frame.")
    max_frames: WholeInt | None = Field(None, ge=3, le=10_000, description="Frame budget.")
    timeout_s: float | None = Field(None, gt=0, le=3600, description="Give up after, seconds.")
    on_failure: Literal["return", "stay"] | None = Field(
        None, description="`return` the stage to its start on failure (default) or `stay`."
    )
    mode: Literal["search", "track"] | None = Field(
        None,
        description="`search` (default) or `track`: time-lapse re-focus with 3 frames around "
        "`expected_z_um` (else the stage position); a full search when focus drifted more "
        "than about one depth of field (the result's details say so).",
    )
    rival: Literal["fail", "nearest", "sharpest"] | None = Field(
        None,
        description="Two candidate focal planes (e.g. specimen and debris): `fail` (default, "
        "reason_code `rival_peak`, both named), `nearest` to `expected_z_um` (else the "
        "start), or `sharpest`.",
    )
    rival_check: Literal["capture", "full"] | None = Field(
        None,
        description="`full` (default, `[focus] rival_check`): the whole range sampled finely "
        "enough to see a dim specimen under bright debris (about range / 3 DOF more frames); "
        "`capture`: only rivals the coarse pass can see (fewer frames; for clean specimens).",
    )
    expected_z_um: float | None = Field(
        None, ge=-1e6, le=1e6,
        description="Where focus is expected, µm: centre of a track, reference of `nearest`.",
    )


class Progress(BaseModel):
    frames: int = 0
    max_frames: int | None = None
    last_z_um: float | None = None
    last_score: float | None = None
    start_z_um: float | None = None
    model_config = ConfigDict(extra="allow")


class JobOut(BaseModel):
    """A focus job as the API returns it. `result` follows `FocusResult.to_dict()`."""

    id: str
    state: JobStateName
    request: dict[str, Any]
    progress: Progress
    result: dict[str, Any] | None
    error: str | None = Field(description="Why the job did not succeed, in plain words.")
    error_code: str | None = Field(
        None,
        description="Stable reason code when the job did not succeed: `hardware` (a stage or "
        "camera call did not answer, see the watchdog), `timeout`, `cancelled`, ...",
    )
    created_at: str
    started_at: str | None
    finished_at: str | None
    cancel_requested: bool
    links: dict[str, str]


class JobList(BaseModel):
    """A page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobOut]
    next_cursor: str | None


class Problem(BaseModel):
    """An RFC 9457 problem detail (`application/problem+json`)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class FrameScore(BaseModel):
    file: str
    index: int = Field(description="Frame index within the file (pages of a TIFF, planes of NPY).")
    score: float | None = Field(description="Sharpness (higher is sharper); null if unusable.")


class ScoreOut(BaseModel):
    scorer: str
    scores: list[FrameScore]
    best: int | None = Field(description="Position in `scores` of the sharpest frame.")
    elapsed_s: float


class MicroscopeOut(BaseModel):
    driver: str
    name: str | None
    ready: bool
    busy: bool
    z_um: float | None
    z_limits_um: dict[str, float] | None
    camera: dict[str, Any] | None
    exposure_ms: float | None
    updated_s: float | None
    error: str | None


class StatusOut(BaseModel):
    version: str
    driver: str
    ready: bool
    scorer: str
    execution_provider: str | None
    strategy: str
    queue_depth: int
    queue_max: int
    current_job: str | None
    current_map: str | None = None
    uptime_s: float


def problem(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem+json answers with these status codes."""
    texts = {
        400: "The body could not be parsed (e.g. not valid UTF-8).",
        401: "Missing or wrong bearer token.",
        404: "No such job.",
        409: "Conflict.",
        403: "Cross-origin request refused (browser pages: own origin or `cors_origins`).",
        413: "Request body too large (JSON `max_json_kb`, uploads `max_upload_mb`, "
        "decoded pixels `score_max_pixels`).",
        415: "The body is not `application/json` (uploads: `multipart/form-data`).",
        421: "The Host header is not an allowed name (`allowed_hosts`).",
        422: "Invalid request (validation, unknown name, outside the Z limits, bad image).",
        429: "The job queue is full; retry later.",
        503: "The microscope is not ready.",
    }
    return {
        c: {"model": Problem, "content": {"application/problem+json": {}}, "description": texts[c]}
        for c in codes
    }
