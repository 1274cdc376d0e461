"""Focus maps held by the daemon: built on the worker thread, queried over HTTP.

A map is built either from sample positions the daemon autofocuses at itself
(`positions` or a `grid`; needs an XY stage) or from points measured elsewhere
(`points` with z). Building runs on the worker thread that owns the microscope,
between focus jobs (`JobManager.run_on_worker`). Maps live in memory, keyed by id,
at most `MAX_MAPS` (the oldest is dropped); they are cheap to rebuild and a restart
forgets them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from autofocus.errors import UnknownNameError
from autofocus.search.focus import FocusRequest, search_space
from autofocus.search.maps import FocusMap, build_focus_map, grid_positions
from autofocus.search.strategies.registry import available_strategies
from autofocus.service.jobs.manager import InvalidRequest
from autofocus.settings import Settings

MAX_MAPS = 64
MAX_POSITIONS = 1000


@dataclass
class MapRecord:
    """One map: `state` "building" → "ready" | "failed", the `FocusMap` once built."""

    id: str
    state: str
    source: str
    created_s: float
    focus_map: FocusMap | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "source": self.source,
            "created_s": self.created_s,
            "error": self.error,
        }
        if self.focus_map is not None:
            out.update(self.focus_map.to_dict())
            out["ready"] = self.focus_map.ready
        return out


class FocusMapRegistry:
    """The daemon's focus maps (thread-safe)."""

    def __init__(self) -> None:
        self._maps: OrderedDict[str, MapRecord] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, map_id: str) -> MapRecord | None:
        with self._lock:
            return self._maps.get(map_id)

    def _add(self, record: MapRecord) -> None:
        with self._lock:
            self._maps[record.id] = record
            while len(self._maps) > MAX_MAPS:
                self._maps.popitem(last=False)

    def from_points(self, points: list[tuple[float, float, float]], kind: str) -> MapRecord:
        """A map fitted through measured (x_um, y_um, z_um) points; no hardware involved.

        Raises `SurfaceFitError` (a ValueError) for points that cannot carry a surface.
        """
        fmap = FocusMap.from_points(points, kind=kind)
        if not fmap.ready:
            raise ValueError(f"the points cannot carry a focus surface: {fmap.fit_error}")
        record = MapRecord(uuid.uuid4().hex, "ready", "points", time.time(), fmap)
        record.done.set()
        self._add(record)
        return record

    def build(
        self,
        manager: Any,
        settings: Settings,
        positions: list[tuple[float, float]],
        *,
        kind: str,
        request_fields: dict[str, Any],
        range_after_map_um: float | None,
    ) -> MapRecord:
        """Queue a map built by autofocusing at `positions` on the worker thread.

        Returns the record at once (state "building"). Raises `NotReady` when the
        microscope is not open.
        """
        d = settings.focus
        request = FocusRequest(
            scorer=request_fields.get("scorer") or d.scorer,
            strategy=request_fields.get("strategy") or d.strategy,
            range_um=request_fields.get("range_um") or d.range_um,
            tolerance_um=request_fields.get("tolerance_um") or d.tolerance_um,
            max_frames=request_fields.get("max_frames") or d.max_frames,
            timeout_s=d.timeout_s,
            backlash_um=d.backlash_um,
            settle_s=d.settle_s,
            verify=d.verify,
        )
        _validate(manager, request)
        scorer = manager.scorer(request.scorer)  # UnknownNameError (422) before queueing
        record = MapRecord(uuid.uuid4().hex, "building", "autofocus", time.time())
        record.focus_map = FocusMap(kind=kind)

        def task(microscope: Any, cancel: threading.Event) -> FocusMap:
            return build_focus_map(
                microscope, positions, request, kind=kind, cancel=cancel,
                focus_map=record.focus_map, range_after_map_um=range_after_map_um,
                scorer=scorer,
            )

        future = manager.run_on_worker(task)
        future.add_done_callback(lambda f: _finish(record, f))
        self._add(record)
        return record


def _validate(manager: Any, request: FocusRequest) -> None:
    """Refuse a request no sample point could run (before anything is queued or moves):
    an unknown strategy, bad numbers, or a search range wider than the Z limits."""
    strategies = available_strategies()
    if request.strategy not in strategies:
        raise UnknownNameError(
            f"unknown strategy {request.strategy!r}; available: {', '.join(strategies)}"
        )
    limits = manager.snapshot.z_limits_um
    if limits is None:
        return
    try:
        search_space(request, (limits.min_um + limits.max_um) / 2, limits)
    except ValueError as exc:  # LimitError passes through as it is (422 as well)
        raise InvalidRequest(str(exc)) from exc


def _finish(record: MapRecord, future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        record.state, record.error = "failed", str(exc) or type(exc).__name__
    elif record.focus_map is None or not record.focus_map.ready:
        record.state = "failed"
        record.error = (
            "too few sample positions could be focused to fit a surface: "
            + str(record.focus_map.fit_error if record.focus_map else "no map")
        )
    else:
        record.state = "ready"
    record.done.set()


def grid(
    x_min_um: float, x_max_um: float, y_min_um: float, y_max_um: float, nx: int, ny: int
) -> list[tuple[float, float]]:
    """Sample positions on an nx × ny grid (serpentine order)."""
    return grid_positions((x_min_um, x_max_um), (y_min_um, y_max_um), nx, ny)
