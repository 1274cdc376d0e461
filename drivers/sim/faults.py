"""Injected hardware faults: which call fails, and how.

Calls are numbered from 1 per device: the n-th accepted `move_z` (one that
passed the limit check) and the n-th `snap`. A fault schedule (`Calls`) names
single calls, a set of calls, or every call from some number on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from autofocus_drivers.sim.errors import SimConfigError, require


@dataclass(frozen=True)
class Calls:
    """A set of 1-based call numbers: those in `at`, plus every call ≥ `from_n` if given."""

    at: frozenset[int] = frozenset()
    from_n: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", frozenset(int(n) for n in self.at))
        require(all(n >= 1 for n in self.at), f"call numbers start at 1, got {set(self.at)}")
        require(self.from_n is None or self.from_n >= 1, f"from_n must be ≥ 1, got {self.from_n}")

    def fires(self, n: int) -> bool:
        """True when call number `n` is in the set."""
        return n in self.at or (self.from_n is not None and n >= self.from_n)

    @property
    def empty(self) -> bool:
        """True when no call fires."""
        return not self.at and self.from_n is None

    @classmethod
    def parse(cls, value: Calls | int | str | Iterable[int] | None) -> Calls:
        """Build from None (never), 3 (the 3rd call), "3+" (3rd and later), {2, 5} or "2,5"."""
        if value is None:
            return cls()
        if isinstance(value, Calls):
            return value
        if isinstance(value, bool):
            raise SimConfigError(f"a fault schedule cannot be a bool, got {value!r}")
        if isinstance(value, int):
            return cls(at=frozenset({value}))
        if isinstance(value, str):
            text = value.strip()
            if text.endswith("+"):
                return cls(from_n=_int(text[:-1], value))
            return cls(at=frozenset(_int(t, value) for t in text.split(",") if t.strip()))
        try:
            return cls(at=frozenset(_int(v, value) for v in value))
        except TypeError:
            raise SimConfigError(f"cannot read a fault schedule from {value!r}") from None


def _int(token: object, whole: object) -> int:
    try:
        return int(str(token).strip())
    except ValueError:
        raise SimConfigError(f"bad call number {token!r} in fault schedule {whole!r}") from None


@dataclass(frozen=True)
class FaultConfig:
    """Which calls fail. Each field accepts anything `Calls.parse` reads (int, "n+", set, Calls).

    `stage_error` move raises `StageError` (stage not moved); `stage_timeout`
    move raises `DeviceTimeout` after `timeout_s` of hardware time (stage not
    moved); `camera_error` snap raises `CameraError` (no time spent);
    `blank_frame` snap returns a frame at the bias offset (no light);
    `garbage_frame` snap returns uniform random values over the ADC range.
    """

    stage_error: Calls = field(default_factory=Calls)
    stage_timeout: Calls = field(default_factory=Calls)
    camera_error: Calls = field(default_factory=Calls)
    blank_frame: Calls = field(default_factory=Calls)
    garbage_frame: Calls = field(default_factory=Calls)
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "timeout_s":
                object.__setattr__(self, f.name, Calls.parse(getattr(self, f.name)))
        require(self.timeout_s >= 0, f"timeout_s must be ≥ 0, got {self.timeout_s}")

    def move_fault(self, n: int) -> str | None:
        """"error", "timeout" or None for the n-th accepted move."""
        if self.stage_error.fires(n):
            return "error"
        if self.stage_timeout.fires(n):
            return "timeout"
        return None

    def snap_fault(self, n: int) -> str | None:
        """"error", "blank", "garbage" or None for the n-th snap."""
        if self.camera_error.fires(n):
            return "error"
        if self.blank_frame.fires(n):
            return "blank"
        if self.garbage_frame.fires(n):
            return "garbage"
        return None
