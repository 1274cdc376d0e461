"""Recording labelled z-stacks over HTTP (`autofocus record-stacks` as a daemon job).

`POST /v1/record-stacks` queues the recording on the worker thread that owns the
hardware (between focus jobs, as focus maps are), answers 202 with the
recording's id (`?wait=SECONDS` answers when done), and `GET
/v1/record-stacks/{id}` reports it; `DELETE` cancels it (between planes; the
stage returns to its start). The corpus is written under the daemon's data
folder (beside the job database): `recordings/<folder>`, never at a path a
client names, so a client cannot write elsewhere on the host.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from autofocus.service.api.problems import problem_response
from autofocus.service.api.schemas import problem
from autofocus.service.api.security import require_token

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)],
                   tags=["calibration"])

_LOCK = threading.Lock()
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RecordId = Annotated[str, Path(min_length=1, max_length=64, description="Recording id.")]


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    x_um: float = Field(ge=-1e7, le=1e7)
    y_um: float = Field(ge=-1e7, le=1e7)


class Optics(BaseModel):
    """What the manifest records about the instrument (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    na: float | None = Field(None, gt=0, le=2)
    magnification: float | None = Field(None, gt=0, le=1e4)
    immersion_index: float | None = Field(None, ge=1, le=3)
    pixel_um: float | None = Field(None, gt=0, le=1e3)
    wavelength_nm: float | None = Field(None, gt=0, le=1e5)


class RecordBody(BaseModel):
    """Record a z-stack at each position (none: where the stage is)."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False,
        json_schema_extra={"examples": [{"folder": "site", "range_um": 20, "step_um": 1,
                                         "positions": [{"x_um": 0, "y_um": 0}]}]})
    folder: str = Field("site", description="Corpus folder under the daemon's recordings/.")
    positions: list[Position] | None = Field(None, min_length=1, max_length=100)
    center_z_um: float | None = Field(None, ge=-1e6, le=1e6)
    range_um: float = Field(20.0, gt=0, le=1e5)
    step_um: float = Field(1.0, gt=0, le=1e4)
    tolerance_um: float | None = Field(None, gt=0, le=1e4)
    backlash_um: float = Field(0.0, ge=0, le=1e4)
    prefix: str = Field("stack", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    modality: str = Field("", max_length=200)
    optics: Optics | None = None


def _records(request: Request) -> dict[str, dict[str, Any]]:
    with _LOCK:
        if not hasattr(request.app.state, "recordings"):
            request.app.state.recordings = {}
        return request.app.state.recordings


def _view(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def _response(rec: dict[str, Any], *, created: bool = False) -> JSONResponse:
    status = 202 if rec["state"] in ("queued", "running") else (201 if created else 200)
    headers = {"Location": f"/v1/record-stacks/{rec['id']}"} if created else None
    return JSONResponse(_view(rec), status_code=status, headers=headers)


@router.post("/record-stacks", status_code=202, summary="Record labelled z-stacks",
             responses={201: {"description": "Done within `wait`."},
                        **problem(400, 401, 403, 413, 415, 421, 422, 429, 503)})
async def post_record_stacks(
    request: Request, body: RecordBody,
    wait: Annotated[float | None, Query(ge=0, le=3600, description="Wait ≤ s.")] = None,
) -> Response:
    """Queue a recording on the hardware worker: 202 with its id (state `queued`/`running`);
    with `?wait=SECONDS`, 201 with the report once done. The stacks are labelled where
    tenengrad, brenner and vol agree and flagged where they do not (`stacks[].flagged`)."""
    from autofocus.service.jobs.manager import NotReady
    from autofocus.stacks.record import record_stacks

    if not _FOLDER.match(body.folder) or ".." in body.folder:
        return problem_response(request, 422, "validation-error", "Invalid request",
                                f"folder {body.folder!r} must be a plain folder name "
                                "(letters, digits, _ . -)")
    manager = request.app.state.manager
    root = FsPath(request.app.state.settings.database_path).expanduser().resolve().parent
    out_dir = root / "recordings" / body.folder
    rec: dict[str, Any] = {"id": uuid.uuid4().hex[:12], "state": "queued",
                           "out_dir": str(out_dir), "created": time.time(),
                           "request": body.model_dump(), "result": None, "error": None,
                           "_task": None, "_done": threading.Event()}

    def task(microscope: Any, cancel: threading.Event) -> dict[str, Any]:
        # `cancel`: the hardware task's own flag, set by DELETE and by the daemon stopping.
        rec["state"] = "running"
        optics = body.optics.model_dump() if body.optics else None
        return record_stacks(
            microscope, out_dir,
            positions=[(p.x_um, p.y_um) for p in body.positions] if body.positions else None,
            center_z_um=body.center_z_um, range_um=body.range_um, step_um=body.step_um,
            tolerance_um=body.tolerance_um, backlash_um=body.backlash_um, prefix=body.prefix,
            modality=body.modality, source="autofocus daemon record-stacks", optics=optics,
            cancel=cancel)

    try:
        # FIFO with focus jobs and maps under queue_max (QueueFull answers 429).
        rec["_task"] = manager.run_on_worker(task, label="record-stacks")
    except NotReady as exc:
        return problem_response(request, 503, "not-ready", "Not ready", str(exc))

    def finished(f: Any) -> None:
        from autofocus.stacks.record import RecordCancelled

        exc = f.exception()
        if exc is None:
            rec.update(state="succeeded", result=f.result())
        else:
            rec.update(state="cancelled" if isinstance(exc, RecordCancelled) else "failed",
                       error=str(exc) or type(exc).__name__)
        rec["_done"].set()

    rec["_task"].future.add_done_callback(finished)
    _records(request)[rec["id"]] = rec
    if wait:
        await asyncio.get_running_loop().run_in_executor(None, rec["_done"].wait, wait)
    return _response(rec, created=True)


def _missing(request: Request, rec_id: str) -> Response:
    return problem_response(request, 404, "recording-not-found", "Recording not found",
                            f"no recording {rec_id!r}")


@router.get("/record-stacks/{rec_id}", summary="A recording",
            responses=problem(401, 404, 422))
async def get_record_stacks(request: Request, rec_id: RecordId) -> Response:
    """The recording: state, folder, and once done the stacks written (labels and flags)."""
    rec = _records(request).get(rec_id)
    return _missing(request, rec_id) if rec is None else _response(rec)


@router.delete("/record-stacks/{rec_id}", summary="Cancel a recording",
               responses=problem(401, 404, 422))
async def cancel_record_stacks(request: Request, rec_id: RecordId) -> Response:
    """Cancel between planes; the stage returns to its start; finished stacks are kept."""
    rec = _records(request).get(rec_id)
    if rec is None:
        return _missing(request, rec_id)
    rec["_task"].cancel.set()  # between planes, or at once when it starts if still queued
    return _response(rec)
