"""Clocks: a virtual clock for simulation and tests, a real clock for hardware and demos.

Drivers spend time (moves, settling, exposures) through a clock so that the
simulated microscope can report realistic hardware time without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Where time is read and spent, in seconds."""

    def now_s(self) -> float:
        """Current time in seconds (monotonic; origin arbitrary)."""
        ...

    def sleep_s(self, duration_s: float) -> None:
        """Let `duration_s` seconds pass (negative or zero durations are ignored)."""
        ...


class VirtualClock:
    """A clock that advances only when slept on: instant, deterministic hardware time."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)
        self._lock = threading.Lock()

    def now_s(self) -> float:
        with self._lock:
            return self._now_s

    def sleep_s(self, duration_s: float) -> None:
        if duration_s > 0:
            with self._lock:
                self._now_s += float(duration_s)


class RealClock:
    """Wall-clock time (`time.monotonic`) and real sleeping, for hardware and demos."""

    def now_s(self) -> float:
        return time.monotonic()

    def sleep_s(self, duration_s: float) -> None:
        if duration_s > 0:
            time.sleep(duration_s)
