"""The fitted surface of a focus map sampled on a grid: what the web page draws as a heat map."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from autofocus.service.api import routes_maps
from autofocus.service.api.schemas import problem
from autofocus.service.api.security import require_token

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["focus maps"])

MARGIN = 0.08
"""The grid spans the sample points' bounding box widened by this fraction on each side."""


@router.get(
    "/focus-maps/{map_id}/z-grid",
    summary="The fitted focus surface on a grid",
    responses=problem(401, 404, 409, 422),
)
async def get_focus_map_grid(
    request: Request,
    map_id: Annotated[str, Path(min_length=1, max_length=64, description="Focus map id.")],
    nx: Annotated[int, Query(ge=2, le=200, description="Grid columns.")] = 40,
    ny: Annotated[int, Query(ge=2, le=200, description="Grid rows.")] = 40,
) -> Response:
    """`{"x_um": [nx], "y_um": [ny], "z_um": [ny][nx], "kind", "loo_rms_um"}`: the surface's
    predicted focus z (µm) over the sample points' bounding box (plus a small margin), for a
    heat map; null where the prediction is not finite or lies outside the Z limits (where
    `GET .../z` answers 422). 404 for an unknown map, 409 while it is not ready."""
    fmap = routes_maps.ready_map(request, map_id)
    if isinstance(fmap, Response):
        return fmap
    xs_pts = [p.x_um for p in fmap.points]
    ys_pts = [p.y_um for p in fmap.points]
    x_lo, x_hi = _span(min(xs_pts), max(xs_pts))
    y_lo, y_hi = _span(min(ys_pts), max(ys_pts))
    xs, ys = np.linspace(x_lo, x_hi, nx), np.linspace(y_lo, y_hi, ny)
    gx, gy = np.meshgrid(xs, ys)
    z = fmap.predict_many_um(gx.ravel(), gy.ravel()).reshape(ny, nx)
    loo = fmap.surface.loo_rms_um
    # As GET .../z refuses them: a prediction that is not finite or lies outside the Z limits
    # is no focus z (null), so the heat map shows a hole rather than an impossible height.
    limits = request.app.state.manager.snapshot.z_limits_um
    lo, hi = (limits.min_um, limits.max_um) if limits is not None else (-math.inf, math.inf)
    return JSONResponse(
        {
            "map_id": map_id,
            "x_um": xs.tolist(),
            "y_um": ys.tolist(),
            "z_um": [[v if math.isfinite(v) and lo <= v <= hi else None for v in row]
                     for row in z.tolist()],
            "kind": fmap.surface.kind,
            "loo_rms_um": None if not math.isfinite(loo) else loo,
        }
    )


def _span(lo: float, hi: float) -> tuple[float, float]:
    width = hi - lo if hi > lo else max(abs(lo) * 0.1, 100.0)
    pad = MARGIN * width
    if hi <= lo:
        return lo - width / 2 - pad, hi + width / 2 + pad
    return lo - pad, hi + pad
