"""The worker's view of the microscope: durable commanded positions and timed hardware calls.

`GuardedMicroscope` wraps the driver the worker opened. Before every `move_z`
it hands the target to `on_command` (the job store writes it to SQLite), so
after a crash the interrupted job reports the position the stage was last
commanded to, exactly; and every call that talks to the hardware (move, snap,
position and exposure reads, the XY stage's moves and reads) is registered with
a `HardwareWatch`, so the watchdog can tell a stage that stopped answering from a slow search.

Nothing here can interrupt a hung driver call (Python cannot); the watchdog
(`autofocus.service.jobs.watchdog`) decides what happens then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from autofocus_drivers.base import CameraInfo, Microscope, ZLimits


@dataclass(frozen=True)
class HardwareCall:
    """One hardware call in progress: what (`name`, e.g. "move_z"), which device in plain
    words (`device`, e.g. "the Z stage"), details (`detail`, e.g. "to z=12.000 µm"), when it
    started (`started_s`, monotonic seconds) and how long it may take (`deadline_s`)."""

    name: str
    device: str
    detail: str
    started_s: float
    deadline_s: float

    def overdue_s(self, now_s: float) -> float:
        """Seconds past the deadline at monotonic `now_s` (≤ 0 while on time)."""
        return now_s - self.started_s - self.deadline_s


class HardwareWatch:
    """The hardware call in progress (at most one: the worker thread owns the hardware).

    Thread-safe: the worker registers calls with `call()`, the watchdog reads
    `current()` from its own thread.
    """

    def __init__(self, default_deadline_s: float) -> None:
        self.default_deadline_s = float(default_deadline_s)
        self._current: HardwareCall | None = None
        self._lock = threading.Lock()

    @contextmanager
    def call(
        self, name: str, device: str, detail: str = "", deadline_s: float | None = None
    ) -> Iterator[None]:
        """Register a hardware call for the duration of the `with` block."""
        entry = HardwareCall(
            name,
            device,
            detail,
            time.monotonic(),
            self.default_deadline_s if deadline_s is None else float(deadline_s),
        )
        with self._lock:
            outer = self._current
            self._current = entry if outer is None else outer
        try:
            yield
        finally:
            with self._lock:
                self._current = outer

    def current(self) -> HardwareCall | None:
        """The call in progress, or None when the worker is not inside the driver."""
        with self._lock:
            return self._current


class GuardedMicroscope:
    """A `Microscope` that records every commanded Z before sending it and times every call.

    `on_command(z_um)` runs before each `move_z` is sent to the driver (it must
    make the position durable and may raise to refuse the move); `watch`
    receives every hardware call. Other attributes (`clock`, `name`, driver
    extras such as `commanded_z_um` or `plane_spacing_um`) pass through.
    """

    def __init__(
        self,
        inner: Microscope,
        watch: HardwareWatch,
        on_command: Callable[[float], None] | None = None,
    ) -> None:
        self.inner = inner
        self.watch = watch
        self.on_command = on_command
        self._last_exposure_ms = 0.0  # known after the first read or set

    # -- the stage --------------------------------------------------------------------
    @property
    def z_limits_um(self) -> ZLimits:
        return self.inner.z_limits_um

    @property
    def z_um(self) -> float:
        with self.watch.call("z_um", "the Z stage", "reading its position"):
            return self.inner.z_um

    def move_z(self, z_um: float) -> None:
        if self.on_command is not None:
            self.on_command(float(z_um))
        with self.watch.call("move_z", "the Z stage", f"moving to z={z_um:.3f} µm"):
            self.inner.move_z(z_um)

    # -- the XY stage (focus maps) -------------------------------------------------------
    # Defined here, not passed through `__getattr__`: a hung XY stage must trip the watchdog
    # like a hung Z stage. `xy_stage_of` still refuses a driver without `has_xy_stage`.
    @property
    def xy_um(self) -> tuple[float, float]:
        with self.watch.call("xy_um", "the XY stage", "reading its position"):
            return self.inner.xy_um  # type: ignore[attr-defined,no-any-return]

    def move_xy(self, x_um: float, y_um: float) -> None:
        with self.watch.call(
            "move_xy", "the XY stage", f"moving to x={x_um:.1f} µm, y={y_um:.1f} µm"
        ):
            self.inner.move_xy(x_um, y_um)  # type: ignore[attr-defined]

    # -- the camera -------------------------------------------------------------------
    def snap(self) -> np.ndarray:
        # A long exposure is not a hang: the deadline is the exposure plus the usual margin.
        deadline_s = self.watch.default_deadline_s + self._last_exposure_ms / 1000.0
        with self.watch.call("snap", "the camera", "acquiring a frame", deadline_s=deadline_s):
            return self.inner.snap()

    @property
    def exposure_ms(self) -> float:
        with self.watch.call("exposure_ms", "the camera", "reading the exposure"):
            value = self.inner.exposure_ms
        self._last_exposure_ms = _finite_or(value, self._last_exposure_ms)
        return value

    def set_exposure_ms(self, exposure_ms: float) -> None:
        with self.watch.call("set_exposure_ms", "the camera", f"setting {exposure_ms:g} ms"):
            self.inner.set_exposure_ms(exposure_ms)
        self._last_exposure_ms = _finite_or(exposure_ms, self._last_exposure_ms)

    def camera_info(self) -> CameraInfo:
        with self.watch.call("camera_info", "the camera", "reading its geometry"):
            return self.inner.camera_info()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _finite_or(value: object, default: float) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return v if v == v and abs(v) != float("inf") and v >= 0 else default
