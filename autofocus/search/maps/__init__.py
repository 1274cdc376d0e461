"""Focus maps: focus z as a fitted surface over the XY stage (see `focus_map`, `surface`)."""

from autofocus.search.maps.focus_map import (
    FocusMap,
    MapPoint,
    build_focus_map,
    grid_positions,
    map_point_verdict,
    spread_positions,
)
from autofocus.search.maps.surface import SURFACE_KINDS, Surface, SurfaceFitError, fit_surface

__all__ = [
    "SURFACE_KINDS",
    "FocusMap",
    "MapPoint",
    "Surface",
    "SurfaceFitError",
    "build_focus_map",
    "fit_surface",
    "grid_positions",
    "map_point_verdict",
    "spread_positions",
]
