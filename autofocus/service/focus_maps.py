"""Focus maps held by the daemon: built on the worker thread, queried over HTTP.

A map is built either from sample positions the daemon autofocuses at itself
(`positions` or a `grid`; needs an XY stage) or from points measured elsewhere
(`points` with z). Building runs on the worker thread that owns the microscope,
between focus jobs (`JobManager.run_on_worker`). Maps are kept, keyed by id, at most
`MAX_MAPS` (the oldest is dropped), in memory and in the daemon's SQLite file (table
`focus_maps`): after a restart a ready map answers again (refitted from its stored
points) and a map that was being built reads `failed` with the reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autofocus.search.maps import FocusMap, MapPoint, build_focus_map, grid_positions
from autofocus.service.jobs.worker import focus_request
from autofocus.settings import Settings

MAX_MAPS = 64
MAX_POSITIONS = 1000


@dataclass
class MapRecord:
    """One map: `state` "building" → "ready" | "failed" | "cancelled", the `FocusMap`
    (its points so far while building). `task` is its queued hardware task while building."""

    id: str
    state: str
    source: str
    created_s: float
    focus_map: FocusMap | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    task: Any = None
    cancelled: bool = False

    def summary(self) -> dict[str, Any]:
        """`to_dict` without the per-point list (what `GET /v1/focus-maps` lists)."""
        out = self.to_dict()
        out.pop("points", None)
        out.setdefault("n_points", 0)
        return out

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


INTERRUPTED = "the service stopped while the map was being built; build it again"


class FocusMapRegistry:
    """The daemon's focus maps (thread-safe), persisted in SQLite at `database_path`
    (None: memory only)."""

    def __init__(self, database_path: str | Path | None = None) -> None:
        self._maps: OrderedDict[str, MapRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if database_path is not None:
            self._db = sqlite3.connect(
                str(database_path), check_same_thread=False, isolation_level=None, timeout=10.0
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS focus_maps (id TEXT PRIMARY KEY, created_s REAL, "
                "state TEXT, source TEXT, error TEXT, kind TEXT, points TEXT)"
            )
            self._load()

    def get(self, map_id: str) -> MapRecord | None:
        with self._lock:
            return self._maps.get(map_id)

    def list(self, limit: int | None = None) -> list[MapRecord]:
        """The maps held, newest first (at most `limit`)."""
        with self._lock:
            records = list(self._maps.values())
        records.sort(key=lambda r: r.created_s, reverse=True)
        return records[:limit] if limit is not None else records

    def cancel(self, manager: Any, map_id: str) -> MapRecord | None:
        """Cancel a map being built: a queued one ends at once (state `cancelled`, nothing
        moved), a running one stops at its next stage move (the Z stage returns to where that
        point's search started) and ends `cancelled` with the points measured so far. A
        finished map is left as it is. None for an unknown id."""
        record = self.get(map_id)
        if record is None:
            return None
        if record.state == "building" and record.task is not None:
            manager.cancel_task(record.task)
        return record

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _add(self, record: MapRecord) -> None:
        with self._lock:
            self._maps[record.id] = record
            while len(self._maps) > MAX_MAPS:
                old_id, _ = self._maps.popitem(last=False)
                if self._db is not None:
                    self._db.execute("DELETE FROM focus_maps WHERE id = ?", (old_id,))
        self.save(record)

    def save(self, record: MapRecord) -> None:
        """Write `record` (state, error, its points) to the database."""
        if self._db is None:
            return
        fmap = record.focus_map
        points = json.dumps([p.to_dict() for p in fmap.points] if fmap else [])
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO focus_maps VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.created_s, record.state, record.source, record.error,
                 fmap.kind if fmap else "auto", points),
            )

    def _load(self) -> None:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, created_s, state, source, error, kind, points FROM focus_maps "
            "ORDER BY created_s"
        ).fetchall()
        for map_id, created_s, state, source, error, kind, points_json in rows[-MAX_MAPS:]:
            points = [
                MapPoint(p["x_um"], p["y_um"], p["z_um"], success=p["success"],
                         reason=p["reason"], confidence=p["confidence"], frames=p["frames"],
                         hardware_s=p["hardware_s"])
                for p in json.loads(points_json)
            ]
            if state == "building":
                state, error = "failed", INTERRUPTED
            record = MapRecord(map_id, state, source, created_s, FocusMap(points, kind=kind),
                               error)
            record.done.set()
            self._maps[map_id] = record
            if error == INTERRUPTED:
                self.save(record)

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
        # The same defaults and checks as a job (tolerance floor, limits, names, ...).
        request = focus_request(manager.resolve(request_fields), settings.focus)
        scorer = manager.scorer(request.scorer)  # UnknownNameError (422) before queueing
        record = MapRecord(uuid.uuid4().hex, "building", "autofocus", time.time())
        record.focus_map = FocusMap(kind=kind)

        def task(microscope: Any, cancel: threading.Event) -> FocusMap:
            try:
                return build_focus_map(
                    microscope, positions, request, kind=kind, cancel=cancel,
                    focus_map=record.focus_map, range_after_map_um=range_after_map_um,
                    scorer=scorer,
                )
            finally:
                if cancel.is_set():
                    record.cancelled = True

        def abandon(sentence: str) -> None:  # the watchdog gave up on the hardware
            record.state, record.task = "failed", None
            record.error = (
                f"{sentence}; the stage position is unknown. The autofocus service restarts "
                "itself (watchdog); check the hardware before building the map again"
            )
            try:
                self.save(record)
            finally:
                record.done.set()

        record.task = manager.run_on_worker(  # QueueFull: nothing kept
            task, label=record.id, on_abandon=abandon
        )
        self._add(record)
        record.task.future.add_done_callback(lambda f: _finish(record, f, self))
        return record


def _finish(record: MapRecord, future: Future[Any], registry: FocusMapRegistry) -> None:
    try:
        _settle(record, future)
    finally:
        registry.save(record)
        record.done.set()


def _settle(record: MapRecord, future: Future[Any]) -> None:
    record.task = None
    if future.cancelled():
        record.state = "cancelled"
        record.error = "the focus map was cancelled before it started; the stage was not moved"
        return
    exc = future.exception()
    if record.cancelled:
        n = len(record.focus_map.points) if record.focus_map else 0
        record.state = "cancelled"
        record.error = (
            f"the focus map was cancelled after {n} of its sample positions; the Z stage "
            "returned to where the interrupted search started"
        )
        if exc is not None:
            record.error += f" ({exc})"
    elif exc is not None:
        record.state, record.error = "failed", str(exc) or type(exc).__name__
    elif record.focus_map is None or not record.focus_map.ready:
        record.state = "failed"
        record.error = (
            "too few sample positions could be focused to fit a surface: "
            + str(record.focus_map.fit_error if record.focus_map else "no map")
        )
    else:
        record.state = "ready"


def grid(
    x_min_um: float, x_max_um: float, y_min_um: float, y_max_um: float, nx: int, ny: int
) -> list[tuple[float, float]]:
    """Sample positions on an nx × ny grid (serpentine order)."""
    return grid_positions((x_min_um, x_max_um), (y_min_um, y_max_um), nx, ny)
