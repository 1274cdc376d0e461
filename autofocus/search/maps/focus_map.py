"""Focus maps: autofocus at a few XY positions, fit a surface, predict focus everywhere else.

A plate scan with thousands of tiles cannot afford an autofocus at every tile.
`build_focus_map(microscope, positions)` autofocuses at N sample positions
(given, or from `grid_positions` / `spread_positions`), and `FocusMap` fits a
surface through the good ones (`autofocus.search.maps.surface`) and predicts z
at any (x, y). A failed autofocus (no focus, a rival plane, a hardware error) is
recorded with its reason but is never a map point; a point the fit cannot
explain is flagged as an outlier and left out. Units: µm and seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from autofocus_drivers.base import Microscope, xy_stage_of

from autofocus.search.focus import (
    DEFAULT_TOLERANCE_UM,
    FocusRequest,
    focus,
    microscope_dof_um,
)
from autofocus.search.maps.surface import (
    SURFACE_KINDS,
    Surface,
    SurfaceFitError,
    SurfaceKind,
    fit_surface,
)
from autofocus.search.result import FocusResult

__all__ = [
    "FocusMap",
    "MapPoint",
    "build_focus_map",
    "grid_positions",
    "spread_positions",
]


@dataclass
class MapPoint:
    """One sample position of a focus map and what the autofocus found there.

    `z_um` the focus found (None when the autofocus failed); `success` False points
    are never fitted and carry `reason`; `used` / `outlier` / `residual_um` are set by
    the fit (residual = measured z − surface). `hardware_s` the hardware time spent
    at this point (XY move + autofocus).
    """

    x_um: float
    y_um: float
    z_um: float | None
    success: bool = True
    reason: str | None = None
    confidence: float | None = None
    frames: int = 0
    hardware_s: float = 0.0
    used: bool = False
    outlier: bool = False
    residual_um: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "x_um": self.x_um,
            "y_um": self.y_um,
            "z_um": self.z_um,
            "success": self.success,
            "reason": self.reason,
            "confidence": self.confidence
            if self.confidence is None or math.isfinite(self.confidence) else None,
            "frames": self.frames,
            "hardware_s": round(self.hardware_s, 6),
            "used": self.used,
            "outlier": self.outlier,
            "residual_um": None if self.residual_um is None else round(self.residual_um, 6),
        }


class FocusMap:
    """Focus z (µm) as a fitted surface over stage XY (µm).

    Build one from autofocus results (`build_focus_map`) or from points measured
    elsewhere (`FocusMap.from_points([(x, y, z), ...])`). `kind` is a surface model
    name or "auto" (chosen by leave-one-out residual). `predict_z_um(x, y)` raises
    `SurfaceFitError` while fewer than 3 good points exist. `add(point)` appends a
    point and refits, so a map can be refreshed during an acquisition.
    """

    def __init__(
        self,
        points: Iterable[MapPoint] = (),
        *,
        kind: SurfaceKind | str = "auto",
        outlier_min_um: float = 1.0,
    ) -> None:
        if kind != "auto" and kind not in SURFACE_KINDS:
            raise SurfaceFitError(
                f"surface kind must be one of {', '.join(SURFACE_KINDS)} or 'auto', got {kind!r}"
            )
        self.kind = kind
        self.outlier_min_um = float(outlier_min_um)
        self.points: list[MapPoint] = list(points)
        self.surface: Surface | None = None
        self.candidates: dict[str, float] = {}
        self.fit_error: str | None = None
        self.updated_s = time.monotonic()
        self.refit()

    @classmethod
    def from_points(
        cls, xyz_um: Iterable[Sequence[float]], *, kind: SurfaceKind | str = "auto"
    ) -> FocusMap:
        """A map through measured (x_um, y_um, z_um) triples."""
        points = [MapPoint(float(x), float(y), float(z)) for x, y, z in xyz_um]
        return cls(points, kind=kind)

    @property
    def ready(self) -> bool:
        """True when a surface is fitted and `predict_z_um` can answer."""
        return self.surface is not None

    def add(self, point: MapPoint, *, refit: bool = True) -> None:
        """Append a sample point (failed ones are kept for the record, never fitted)."""
        self.points.append(point)
        if refit:
            self.refit()

    def refit(self) -> None:
        """Fit the surface through the successful points; mark outliers and residuals."""
        good = [p for p in self.points if p.success and p.z_um is not None]
        for p in self.points:
            p.used, p.outlier, p.residual_um = False, False, None
        self.updated_s = time.monotonic()
        self.surface, self.candidates, self.fit_error = None, {}, None
        if len(good) < 3:
            self.fit_error = f"{len(good)} good points; a surface needs at least 3"
            return
        try:
            report = fit_surface(
                [p.x_um for p in good],
                [p.y_um for p in good],
                [p.z_um for p in good],  # type: ignore[misc]
                kind=self.kind,  # type: ignore[arg-type]
                outlier_min_um=self.outlier_min_um,
            )
        except SurfaceFitError as exc:  # e.g. the first points lie on one line
            self.fit_error = str(exc)
            return
        for p, used, resid in zip(good, report.used, report.residuals_um, strict=True):
            p.used, p.outlier, p.residual_um = bool(used), not bool(used), float(resid)
        self.surface, self.candidates = report.surface, report.candidates

    def predict_z_um(self, x_um: float, y_um: float) -> float:
        """The focus z (µm) the surface predicts at stage position (x_um, y_um)."""
        if self.surface is None:
            raise SurfaceFitError(f"the focus map cannot predict yet: {self.fit_error}")
        if not (math.isfinite(x_um) and math.isfinite(y_um)):
            raise ValueError(f"x_um and y_um must be finite numbers, got {x_um}, {y_um}")
        # A degenerate fit may overflow to inf: callers check the number, no warning needed.
        with np.errstate(over="ignore", invalid="ignore"):
            return float(self.surface.predict_um(float(x_um), float(y_um)))

    def predict_many_um(self, x_um: Sequence[float], y_um: Sequence[float]) -> np.ndarray:
        """Vectorised `predict_z_um` (µm)."""
        if self.surface is None:
            raise SurfaceFitError(f"the focus map cannot predict yet: {self.fit_error}")
        return np.asarray(self.surface.predict_um(np.asarray(x_um), np.asarray(y_um)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: surface (model, RMS, leave-one-out RMS), candidates, every point."""
        good = [p for p in self.points if p.used]
        return {
            "kind": self.kind,
            "surface": self.surface.to_dict() if self.surface else None,
            "fit_error": self.fit_error,
            "candidates_loo_rms_um": {k: _round(v) for k, v in self.candidates.items()},
            "n_points": len(self.points),
            "n_used": len(good),
            "n_failed": sum(not p.success for p in self.points),
            "n_outliers": sum(p.outlier for p in self.points),
            "points": [p.to_dict() for p in self.points],
        }


def _round(v: float) -> float | None:
    return None if not math.isfinite(v) else round(v, 6)


def grid_positions(
    x_range_um: tuple[float, float], y_range_um: tuple[float, float], nx: int, ny: int
) -> list[tuple[float, float]]:
    """An `nx` × `ny` grid spanning the ranges (corners included), in serpentine order."""
    if nx < 1 or ny < 1:
        raise ValueError(f"grid needs nx, ny ≥ 1, got {nx}, {ny}")
    xs = np.linspace(*x_range_um, nx) if nx > 1 else np.array([np.mean(x_range_um)])
    ys = np.linspace(*y_range_um, ny) if ny > 1 else np.array([np.mean(y_range_um)])
    out: list[tuple[float, float]] = []
    for j, y in enumerate(ys):
        row = xs if j % 2 == 0 else xs[::-1]
        out.extend((float(x), float(y)) for x in row)
    return out


def spread_positions(candidates: Sequence[tuple[float, float]], n: int) -> list[int]:
    """Indices of `n` of `candidates` spread over their area (farthest-point sampling).

    Starts from the candidate nearest a corner, then repeatedly takes the candidate
    farthest from all chosen ones, so corners and edges are covered first.
    """
    pts = np.asarray(candidates, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError("candidates must be a non-empty sequence of (x_um, y_um)")
    n = min(int(n), len(pts))
    first = int(np.argmin(pts[:, 0] + pts[:, 1]))
    chosen = [first]
    dist = np.hypot(*(pts - pts[first]).T)
    while len(chosen) < n:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.hypot(*(pts - pts[nxt]).T))
    return chosen


PointCallback = Callable[[MapPoint, FocusResult | None], None]


def map_point_verdict(result: FocusResult) -> str | None:
    """None when `result` may be a focus-map point, else why not (one sentence).

    Only an unambiguous success is a map point: a failed search is not, and neither is
    one that saw a rival focal plane (failure code `rival_peak`, or a success whose
    strategy resolved rivals by a policy: `details["rivals"]`), because on a neighbouring
    field the other plane may be the specimen.
    """
    if getattr(result, "reason_code", None) == "rival_peak":
        return result.reason or "two candidate focal planes were found"
    if not result.success or result.best_z_um is None:
        return result.reason or "the autofocus failed"
    rivals = (result.details or {}).get("rivals")
    if isinstance(rivals, list) and len(rivals) > 1:
        zs = ", ".join(
            f"{r['z_um']:.2f}" for r in rivals if isinstance(r, dict) and "z_um" in r
        )
        return f"a rival focal plane was seen ({zs or len(rivals)} µm); not used as a map point"
    return None


def build_focus_map(
    microscope: Microscope,
    positions: Sequence[tuple[float, float]],
    request: FocusRequest | None = None,
    *,
    kind: SurfaceKind | str = "auto",
    scorer: Any = None,
    cancel: threading.Event | None = None,
    on_point: PointCallback | None = None,
    focus_map: FocusMap | None = None,
    range_after_map_um: float | None = None,
) -> FocusMap:
    """Autofocus at every (x_um, y_um) of `positions` and fit a `FocusMap`.

    The microscope needs an XY stage (`ConfigurationError` otherwise). Once three
    points succeeded, each next search is centred on the map's prediction (kept
    inside the Z limits) instead of the last z, so `request.range_um` can stay
    small on a tilted sample (`range_after_map_um`, default `request.range_um`, is the
    search range once the map predicts), and the prediction is the search's prior
    (`expected_z_um`, with `expected_sigma_um` the larger of one DOF and the map's
    leave-one-out RMS error): searched there first, blind when nothing is near. A
    point whose autofocus fails is recorded with the reason and not fitted. `cancel`
    stops between points; `on_point` is called after every point. Raises
    `ValueError`/`LimitError` for an invalid request before the first move.
    """
    xy = xy_stage_of(microscope)
    req = request or FocusRequest()
    fmap = focus_map if focus_map is not None else FocusMap(kind=kind)
    if not positions:
        raise ValueError("a focus map needs at least one sample position")
    limits = microscope.z_limits_um
    clock = microscope.clock
    for x_um, y_um in positions:
        if cancel is not None and cancel.is_set():
            break
        t0 = clock.now_s()
        xy.move_xy(float(x_um), float(y_um))
        point_req = req
        if fmap.ready:
            predicted = fmap.predict_z_um(x_um, y_um)
            range_um = range_after_map_um if range_after_map_um is not None else req.range_um
            half = range_um / 2
            center = min(max(predicted, limits.min_um + half), limits.max_um - half)
            point_req = replace(req, center_z_um=center, range_um=range_um)
            sigma = _prediction_sigma_um(fmap, req, microscope)
            if sigma is not None and req.expected_sigma_um is None:
                # The prediction is a prior: searched first, the full search if nothing's there.
                point_req = replace(point_req, expected_z_um=predicted, expected_sigma_um=sigma)
        result = focus(microscope, point_req, scorer=scorer, cancel=cancel)
        verdict = map_point_verdict(result)
        ok = verdict is None
        point = MapPoint(
            float(x_um),
            float(y_um),
            float(result.best_z_um) if ok else None,  # type: ignore[arg-type]
            success=ok,
            reason=verdict,
            confidence=round(float(result.confidence), 4),
            frames=result.frames,
            hardware_s=clock.now_s() - t0,
        )
        fmap.add(point)
        if on_point is not None:
            on_point(point, result)
    return fmap


def _prediction_sigma_um(fmap: FocusMap, req: FocusRequest, microscope: object) -> float | None:
    """The σ (µm) of the map's prediction as a prior: the larger of one depth of field
    (the request's, the microscope's, else 4 × tolerance) and the map's leave-one-out
    RMS error when it has one. A request without a tolerance counts `DEFAULT_TOLERANCE_UM`."""
    tolerance = req.tolerance_um or DEFAULT_TOLERANCE_UM
    dof = req.dof_um or microscope_dof_um(microscope) or 4.0 * tolerance
    loo = [v for v in fmap.candidates.values() if v is not None and np.isfinite(v)]
    return float(max([dof, *([min(loo)] if loo else [])]))
