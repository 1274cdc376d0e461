"""Focus maps over HTTP: build one, read it, ask it for the focus z at (x, y)."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Annotated, Literal

from autofocus_drivers.base import xy_stage_of
from autofocus_drivers.errors import ConfigurationError
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autofocus.search.maps import FocusMap, SurfaceFitError
from autofocus.service.api.problems import problem_response
from autofocus.service.api.schemas import problem
from autofocus.service.api.security import require_token
from autofocus.service.focus_maps import MAX_POSITIONS, FocusMapRegistry, MapRecord, grid

_REGISTRY_LOCK = threading.Lock()

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["focus maps"])

MapId = Annotated[str, Path(min_length=1, max_length=64, description="Focus map id.")]
Coordinate = Annotated[float, Field(ge=-1e7, le=1e7)]


class XY(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    x_um: Coordinate
    y_um: Coordinate


class XYZ(XY):
    z_um: Annotated[float, Field(ge=-1e6, le=1e6)]


class Grid(BaseModel):
    """An nx × ny grid of sample positions spanning the rectangle (corners included)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    x_min_um: Coordinate
    x_max_um: Coordinate
    y_min_um: Coordinate
    y_max_um: Coordinate
    nx: int = Field(ge=1, le=100)
    ny: int = Field(ge=1, le=100)


class FocusMapBody(BaseModel):
    """A focus map: give exactly one of `positions`, `grid` (the daemon autofocuses at
    each; needs an XY stage) or `points` (z measured elsewhere; fitted at once)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"grid": {"x_min_um": 0, "x_max_um": 20000, "y_min_um": 0, "y_max_um": 10000,
                          "nx": 4, "ny": 3}, "range_um": 60, "range_after_map_um": 20},
                {"points": [{"x_um": 0, "y_um": 0, "z_um": 1.2},
                            {"x_um": 9000, "y_um": 0, "z_um": 3.4},
                            {"x_um": 0, "y_um": 9000, "z_um": 0.7}]},
            ]
        },
    )

    positions: list[XY] | None = Field(None, min_length=1, max_length=MAX_POSITIONS)
    grid: Grid | None = None
    points: list[XYZ] | None = Field(None, min_length=3, max_length=MAX_POSITIONS)
    kind: Literal["auto", "plane", "quadratic", "thin-plate"] = Field(
        "auto", description="Surface model; `auto` picks by leave-one-out residual."
    )
    range_um: float | None = Field(None, gt=0, le=1e5, description="First searches' range, µm.")
    range_after_map_um: float | None = Field(
        None, gt=0, le=1e5, description="Search range once the map predicts, µm."
    )
    tolerance_um: float | None = Field(None, gt=0, le=1e4)
    scorer: str | None = Field(None, min_length=1, max_length=64)
    strategy: str | None = Field(None, min_length=1, max_length=64)
    max_frames: int | None = Field(None, ge=3, le=10_000)

    @model_validator(mode="after")
    def _one_source(self) -> FocusMapBody:
        given = [n for n in ("positions", "grid", "points") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of positions, grid or points")
        if self.grid is not None and self.grid.nx * self.grid.ny > MAX_POSITIONS:
            raise ValueError(f"a grid may hold at most {MAX_POSITIONS} positions")
        return self


def _registry(request: Request) -> FocusMapRegistry:
    registry = getattr(request.app.state, "focus_maps", None)
    if registry is None:
        with _REGISTRY_LOCK:
            registry = getattr(request.app.state, "focus_maps", None)
            if registry is None:
                path = request.app.state.settings.database_path
                registry = request.app.state.focus_maps = FocusMapRegistry(path)
    return registry


def _not_found(request: Request, map_id: str) -> Response:
    return problem_response(
        request, 404, "focus-map-not-found", "Focus map not found", f"no focus map {map_id!r}"
    )


def ready_map(request: Request, map_id: str) -> FocusMap | Response:
    """The ready map `map_id` (with a fitted surface), or the problem to answer instead:
    404 for an unknown map, 409 while it is not ready."""
    record = _registry(request).get(map_id)
    if record is None:
        return _not_found(request, map_id)
    fmap = record.focus_map
    if record.state != "ready" or fmap is None or fmap.surface is None:
        return problem_response(
            request, 409, "focus-map-not-ready", "Focus map not ready",
            f"focus map {map_id} is {record.state}" + (f": {record.error}" if record.error else ""),
        )
    return fmap


def _record_response(record: MapRecord, *, created: bool = False) -> JSONResponse:
    status = 202 if record.state == "building" else (201 if created else 200)
    headers = {"Location": f"/v1/focus-maps/{record.id}"} if created else None
    return JSONResponse(record.to_dict(), status_code=status, headers=headers)


@router.post(
    "/focus-maps",
    status_code=202,
    summary="Build a focus map",
    responses={201: {"description": "Fitted at once from `points`."},
               **problem(400, 401, 403, 413, 415, 421, 422, 429, 503)},
)
async def post_focus_map(
    request: Request,
    body: FocusMapBody,
    wait: Annotated[float | None, Query(ge=0, le=3600, description="Wait ≤ s.")] = None,
) -> Response:
    """From `points`: fitted at once (201). From `positions`/`grid`: queued with the focus
    jobs (FIFO, the same `queue_max`: 429 past it), the daemon autofocuses at each in turn
    (202, state `building`; `?wait=SECONDS` answers when done; `DELETE` cancels)."""
    registry = _registry(request)
    if body.points is not None:
        try:
            record = registry.from_points(
                [(p.x_um, p.y_um, p.z_um) for p in body.points], body.kind
            )
        except (SurfaceFitError, ValueError) as exc:
            return problem_response(request, 422, "focus-map-fit", "Cannot fit a focus map",
                                    str(exc))
        return _record_response(record, created=True)
    manager = request.app.state.manager
    if manager.microscope is not None:
        try:
            xy_stage_of(manager.microscope)
        except ConfigurationError as exc:
            return problem_response(request, 422, "no-xy-stage", "No XY stage", str(exc))
    if body.grid is not None:
        g = body.grid
        positions = grid(g.x_min_um, g.x_max_um, g.y_min_um, g.y_max_um, g.nx, g.ny)
    else:
        positions = [(p.x_um, p.y_um) for p in body.positions or []]
    fields = body.model_dump(
        include={"range_um", "tolerance_um", "scorer", "strategy", "max_frames"},
        exclude_none=True,
    )
    record = registry.build(
        manager, request.app.state.settings, positions, kind=body.kind,
        request_fields=fields, range_after_map_um=body.range_after_map_um,
    )
    if wait:
        await asyncio.get_running_loop().run_in_executor(None, record.done.wait, wait)
    return _record_response(record, created=True)


@router.get("/focus-maps", summary="List focus maps", responses=problem(401, 422))
async def list_focus_maps(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 100,
) -> Response:
    """`{"items": [...]}`: the maps held (at most 64), newest first; each as `GET
    /v1/focus-maps/{id}` answers it but without `points` (`n_points` counts them)."""
    items = [r.summary() for r in _registry(request).list(limit)]
    return JSONResponse({"items": items})


@router.delete(
    "/focus-maps/{map_id}",
    summary="Cancel a focus map",
    responses={202: {"description": "Cancel pending."}, **problem(401, 403, 404, 421, 422)},
)
async def cancel_focus_map(
    request: Request,
    map_id: MapId,
    wait: Annotated[float | None, Query(ge=0, le=3600, description="Wait ≤ s.")] = None,
) -> Response:
    """Cancel a map being built, as `DELETE /v1/jobs/{id}` cancels a job: a queued one ends at
    once (200, `cancelled`, nothing moved); one being built stops at its next stage move, the
    Z stage returns to where that point's search started (202 until it has; `?wait=SECONDS`
    waits). A finished map is left as it is (200)."""
    registry = _registry(request)
    record = registry.cancel(request.app.state.manager, map_id)
    if record is None:
        return _not_found(request, map_id)
    if wait and record.state == "building":
        await asyncio.get_running_loop().run_in_executor(None, record.done.wait, wait)
    return _record_response(record)


@router.get("/focus-maps/{map_id}", summary="A focus map", responses=problem(401, 404, 422))
async def get_focus_map(request: Request, map_id: MapId) -> Response:
    """The map: state, surface model and residuals, every sample point (outliers flagged)."""
    record = _registry(request).get(map_id)
    if record is None:
        return _not_found(request, map_id)
    return _record_response(record)


@router.get(
    "/focus-maps/{map_id}/z",
    summary="Predicted focus z at (x, y)",
    responses=problem(401, 404, 409, 422),
)
async def get_focus_map_z(
    request: Request,
    map_id: MapId,
    x_um: Annotated[float, Query(ge=-1e7, le=1e7, description="Stage x, µm.")],
    y_um: Annotated[float, Query(ge=-1e7, le=1e7, description="Stage y, µm.")],
) -> Response:
    """`{"x_um", "y_um", "z_um", "kind", "loo_rms_um"}`: the surface's focus z there, with the
    map's leave-one-out RMS as an honest error estimate. 409 while the map is not ready; 422
    when the prediction is not a finite number or lies outside the Z limits."""
    fmap = ready_map(request, map_id)
    if isinstance(fmap, Response):
        return fmap
    if not (math.isfinite(x_um) and math.isfinite(y_um)):
        return problem_response(request, 422, "validation-error", "Invalid request",
                                "x_um and y_um must be finite")
    z_um = fmap.predict_z_um(x_um, y_um)
    if not math.isfinite(z_um):
        return problem_response(
            request, 422, "focus-map-no-prediction", "No usable prediction",
            f"focus map {map_id} predicts no finite z at x={x_um:g} µm, y={y_um:g} µm: its "
            "points are degenerate (nearly coincident or collinear); build it again from "
            "points spread over the area",
        )
    limits = request.app.state.manager.snapshot.z_limits_um
    if limits is not None and not (limits.min_um <= z_um <= limits.max_um):
        return problem_response(
            request, 422, "prediction-outside-z-limits", "Prediction outside the Z limits",
            f"focus map {map_id} predicts z={z_um:.3f} µm at x={x_um:g} µm, y={y_um:g} µm, "
            f"outside the Z limits [{limits.min_um:g}, {limits.max_um:g}] µm; the map does "
            "not hold there (extrapolated far beyond its points, or fitted from wrong ones)",
        )
    return JSONResponse(
        {
            "map_id": map_id,
            "x_um": x_um,
            "y_um": y_um,
            "z_um": z_um,
            "kind": fmap.surface.kind,
            "loo_rms_um": None if math.isnan(fmap.surface.loo_rms_um)
            else fmap.surface.loo_rms_um,
        }
    )
