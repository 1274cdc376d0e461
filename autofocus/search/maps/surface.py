"""Focus surfaces: fit z(x, y) through measured focus positions and predict it anywhere.

Three models, from stiff to flexible: a `plane` (3 coefficients), a `quadratic`
(6: tilt plus bow and twist) and a smoothing `thin-plate` spline (a plane plus a
bending term, needs 10 or more points). `fit_surface(..., kind="auto")` fits every
model the points support and keeps the one with the smallest leave-one-out error
(each point predicted by a fit that did not see it), preferring the stiffer model
unless the flexible one is clearly better, so a few noisy points do not buy wiggles.

Points whose leave-one-out error is far beyond the others (a wrong plane picked by
the autofocus, a bubble, a scratch) are flagged as outliers and left out of the
fit. All coordinates and heights are micrometres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

SurfaceKind = Literal["plane", "quadratic", "thin-plate"]
SURFACE_KINDS: tuple[SurfaceKind, ...] = ("plane", "quadratic", "thin-plate")
MIN_POINTS: dict[str, int] = {"plane": 3, "quadratic": 6, "thin-plate": 10}
"""Fewest points each model needs; `auto` also wants two spare points beyond these."""

_PREFER_STIFFER = 0.85
"""A more flexible model must cut the leave-one-out RMS below this fraction to win ..."""
_MIN_GAIN_UM = 0.005
"""... and by at least this much (µm): no model wins on round-off of an exact fit."""


class SurfaceFitError(ValueError):
    """The points cannot support the requested surface (too few, collinear, not finite)."""


@dataclass(frozen=True)
class Surface:
    """A fitted focus surface z(x, y) in µm; call `predict_um` for new positions.

    `kind` the model; `rms_um` the RMS of the fit residuals; `loo_rms_um` the RMS of
    the leave-one-out errors (an honest estimate of the prediction error at a new
    position); `n_points` the points used (outliers excluded).
    """

    kind: SurfaceKind
    n_points: int
    rms_um: float
    loo_rms_um: float
    center_um: tuple[float, float]
    scale_um: float
    coefficients: tuple[float, ...] = ()
    nodes_um: tuple[tuple[float, float], ...] = ()
    smoothing: float = 0.0
    _rbf: Any = field(default=None, repr=False, compare=False)

    def predict_um(self, x_um: Any, y_um: Any) -> np.ndarray:
        """Predicted focus z (µm) at stage positions `x_um`, `y_um` (scalars or arrays)."""
        x = np.asarray(x_um, dtype=float)
        y = np.asarray(y_um, dtype=float)
        u, v = self._normalise(x, y)
        if self.kind == "thin-plate":
            pts = np.stack([np.ravel(u), np.ravel(v)], axis=1)
            return np.asarray(self._rbf(pts)).reshape(np.broadcast(x, y).shape)
        design = _design(self.kind, np.ravel(u), np.ravel(v))
        return (design @ np.asarray(self.coefficients)).reshape(np.broadcast(x, y).shape)

    def _normalise(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx, cy = self.center_um
        return (x - cx) / self.scale_um, (y - cy) / self.scale_um

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (model, point count, residual and leave-one-out RMS)."""
        return {
            "kind": self.kind,
            "n_points": self.n_points,
            "rms_um": _json(self.rms_um),
            "loo_rms_um": _json(self.loo_rms_um),  # None: too few points to estimate
        }


def _json(v: float) -> float | None:
    return round(v, 6) if math.isfinite(v) else None


def _design(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    ones = np.ones_like(u)
    if kind == "plane":
        return np.stack([ones, u, v], axis=1)
    return np.stack([ones, u, v, u * u, u * v, v * v], axis=1)


def _check_points(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
    if not (x.shape == y.shape == z.shape and x.ndim == 1):
        raise SurfaceFitError("x_um, y_um and z_um must be 1-D sequences of the same length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(z))):
        raise SurfaceFitError("focus-map points must be finite numbers")


def _fit_one(
    kind: SurfaceKind, x: np.ndarray, y: np.ndarray, z: np.ndarray, smoothing: float
) -> Surface:
    n = x.size
    if n < MIN_POINTS[kind]:
        raise SurfaceFitError(
            f"a {kind} surface needs at least {MIN_POINTS[kind]} points, got {n}"
        )
    center = (float(np.mean(x)), float(np.mean(y)))
    span = max(float(np.ptp(x)), float(np.ptp(y)))
    scale = span / 2.0 if span > 0 else 1.0
    u, v = (x - center[0]) / scale, (y - center[1]) / scale
    if kind == "thin-plate":
        from scipy.interpolate import RBFInterpolator

        pts = np.stack([u, v], axis=1)
        if np.linalg.matrix_rank(_design("plane", u, v)) < 3:
            raise SurfaceFitError("focus-map points are collinear; a surface needs a 2-D spread")
        rbf = RBFInterpolator(pts, z, kernel="thin_plate_spline", smoothing=smoothing, degree=1)
        fitted = rbf(pts)
        surface = Surface(
            kind, n, _rms(z - fitted), math.nan, center, scale,
            nodes_um=tuple(zip(x.tolist(), y.tolist(), strict=True)),
            smoothing=smoothing, _rbf=rbf,
        )
    else:
        design = _design(kind, u, v)
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise SurfaceFitError(
                f"the points do not determine a {kind} surface (collinear or too few distinct "
                "positions); spread them over the area in both x and y"
            )
        coef, *_ = np.linalg.lstsq(design, z, rcond=None)
        surface = Surface(
            kind, n, _rms(z - design @ coef), math.nan, center, scale,
            coefficients=tuple(float(c) for c in coef),
        )
    return surface


def _rms(r: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(r)))) if r.size else math.nan


def loo_errors(
    kind: SurfaceKind, x: np.ndarray, y: np.ndarray, z: np.ndarray, smoothing: float = 0.0
) -> np.ndarray:
    """Leave-one-out errors (µm): each point's z minus the prediction of a fit without it.

    NaN where the remaining points cannot support the model.
    """
    n = x.size
    out = np.full(n, math.nan)
    if kind != "thin-plate":
        # Exact closed form for least squares: r_i / (1 - h_ii).
        center = (np.mean(x), np.mean(y))
        span = max(float(np.ptp(x)), float(np.ptp(y)))
        scale = span / 2.0 if span > 0 else 1.0
        design = _design(kind, (x - center[0]) / scale, (y - center[1]) / scale)
        if n <= design.shape[1] or np.linalg.matrix_rank(design) < design.shape[1]:
            return out
        pinv = np.linalg.pinv(design)
        hat = np.einsum("ij,ji->i", design, pinv)
        resid = z - design @ (pinv @ z)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(hat < 1 - 1e-9, resid / (1 - hat), math.nan)
        return out
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        keep[i] = False
        try:
            s = _fit_one(kind, x[keep], y[keep], z[keep], smoothing)
            out[i] = z[i] - float(s.predict_um(x[i], y[i]))
        except (SurfaceFitError, np.linalg.LinAlgError, ValueError):
            pass
        keep[i] = True
    return out


def _with_loo(surface: Surface, loo: np.ndarray) -> Surface:
    finite = loo[np.isfinite(loo)]
    from dataclasses import replace

    return replace(surface, loo_rms_um=_rms(finite) if finite.size else math.nan)


@dataclass(frozen=True)
class SurfaceReport:
    """A fitted surface plus what happened to every input point.

    `used[i]` False marks point i as an outlier left out of the fit; `residuals_um[i]`
    is point i's z minus the surface (outliers included); `loo_errors_um[i]` its
    leave-one-out error under the chosen model (NaN for outliers); `candidates` the
    leave-one-out RMS (µm) of every model that was tried.
    """

    surface: Surface
    used: np.ndarray
    residuals_um: np.ndarray
    loo_errors_um: np.ndarray
    candidates: dict[str, float]


def fit_surface(
    x_um: Sequence[float],
    y_um: Sequence[float],
    z_um: Sequence[float],
    *,
    kind: SurfaceKind | Literal["auto"] = "auto",
    smoothing: float = 1e-3,
    outlier_sigma: float = 4.0,
    outlier_min_um: float = 1.0,
    max_outlier_fraction: float = 0.25,
) -> SurfaceReport:
    """Fit a focus surface through points (x_um, y_um, z_um) and flag outliers.

    `kind` one of `SURFACE_KINDS` or "auto" (the model with the smallest leave-one-out
    RMS, the stiffer one unless a flexible one is clearly better). `smoothing` is the
    thin-plate spline's regularisation in normalised units. A point is an outlier
    when its leave-one-out error exceeds both `outlier_sigma` robust standard
    deviations (from the median absolute deviation) and `outlier_min_um`; the worst
    is removed and the fit repeated, up to `max_outlier_fraction` of the points.
    Raises `SurfaceFitError` when too few usable points remain or they are collinear.
    """
    x = np.asarray(x_um, dtype=float)
    y = np.asarray(y_um, dtype=float)
    z = np.asarray(z_um, dtype=float)
    _check_points(x, y, z)
    if kind != "auto" and kind not in SURFACE_KINDS:
        raise SurfaceFitError(
            f"surface kind must be one of {SURFACE_KINDS} or 'auto', got {kind!r}"
        )
    n = x.size
    if n < MIN_POINTS["plane"]:
        raise SurfaceFitError(f"a focus surface needs at least 3 points, got {n}")
    used = np.ones(n, dtype=bool)
    max_out = int(math.floor(max_outlier_fraction * n))
    while True:
        surface, loo, candidates = _choose(kind, x[used], y[used], z[used], smoothing)
        finite = np.abs(loo[np.isfinite(loo)])
        if used.sum() - 1 < MIN_POINTS[surface.kind] + (2 if kind == "auto" else 0):
            break
        if finite.size == 0 or (~used).sum() >= max_out:
            break
        robust_sigma = 1.4826 * float(np.median(finite))
        threshold = max(outlier_sigma * robust_sigma, outlier_min_um)
        worst = int(np.nanargmax(np.abs(np.where(np.isfinite(loo), loo, 0.0))))
        if abs(loo[worst]) <= threshold:
            break
        used[np.flatnonzero(used)[worst]] = False
    loo_all = np.full(n, math.nan)
    loo_all[used] = loo
    residuals = z - surface.predict_um(x, y)
    return SurfaceReport(surface, used, residuals, loo_all, candidates)


def _choose(
    kind: SurfaceKind | Literal["auto"],
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    smoothing: float,
) -> tuple[Surface, np.ndarray, dict[str, float]]:
    if kind != "auto":
        surface = _fit_one(kind, x, y, z, smoothing)
        loo = loo_errors(kind, x, y, z, smoothing)
        return _with_loo(surface, loo), loo, {kind: _with_loo(surface, loo).loo_rms_um}
    best: tuple[Surface, np.ndarray] | None = None
    candidates: dict[str, float] = {}
    for k in SURFACE_KINDS:
        # Two spare points beyond the minimum, so the leave-one-out error means something.
        if x.size < MIN_POINTS[k] + 2:
            continue
        try:
            s = _fit_one(k, x, y, z, smoothing)
        except SurfaceFitError:
            continue
        loo = loo_errors(k, x, y, z, smoothing)
        s = _with_loo(s, loo)
        candidates[k] = s.loo_rms_um
        if not math.isfinite(s.loo_rms_um):
            continue
        if best is None or s.loo_rms_um < min(
            _PREFER_STIFFER * best[0].loo_rms_um, best[0].loo_rms_um - _MIN_GAIN_UM
        ):
            best = (s, loo)
    if best is None:  # 3-4 points: a plane through them, with no honest error estimate
        s = _fit_one("plane", x, y, z, smoothing)
        loo = loo_errors("plane", x, y, z, smoothing)
        candidates["plane"] = _with_loo(s, loo).loo_rms_um
        return _with_loo(s, loo), loo, candidates
    return best[0], best[1], candidates
