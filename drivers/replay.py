"""A microscope that replays a recorded z-stack: try the autofocus on your own images.

`ReplayMicroscope` implements the `Microscope` protocol over planes that were
recorded at known Z positions (µm). Its stage travels exactly the recorded Z
range (`z_limits_um` = [lowest plane, highest plane]); moving to z serves the
recorded plane **nearest** to z (a position exactly half-way between two planes
serves the lower one). With `blend=True` and a regular stack (evenly spaced
planes) it instead serves a linear blend of the two neighbouring planes,
weighted by distance — a cheap stand-in for the continuous defocus a real stage
would show between planes.

Moves, settling and exposures spend virtual time on a `autofocus_drivers.clock.Clock`
(a `VirtualClock` by default), so the engine reports hardware time as it does
for the simulator, without sleeping. Optional seeded Gaussian noise on top of
every frame checks robustness. Frames come back 2-D in the stack's dtype.

This module depends on numpy only: it takes planes already loaded (arrays, or
zero-argument callables that load them). Reading files is the autofocus
layer's job (`autofocus.stacks.replay.open_replay`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from autofocus_drivers.base import CameraInfo, ZLimits
from autofocus_drivers.clock import Clock, VirtualClock
from autofocus_drivers.errors import CameraError, ConfigurationError, StageError

PlaneSource = np.ndarray | Callable[[], np.ndarray]

# Planes whose spacing differs by less than this fraction of the median spacing count as
# evenly spaced (recorded stage positions carry rounding noise).
REGULAR_SPACING_RTOL = 0.02

# ITU-R BT.601 luma weights: colour planes are converted to grey once, here at the edge.
_LUMA = np.array([0.299, 0.587, 0.114])


class ReplayStackError(ConfigurationError):
    """The recorded planes cannot be replayed (too few, duplicate z, mixed sizes, unreadable)."""


class ReplayMicroscope:
    """A Z stage and camera that serve the planes of a recorded z-stack.

    Parameters (positions in µm, times in seconds unless named otherwise):

    - `z_um`: the Z position of every plane (any order; sorted here).
    - `images`: one 2-D array per plane (colour (H, W, 3|4) planes are converted
      to grey in their dtype), or zero-argument callables returning one; all are
      loaded and checked here, before any move.
    - `blend`: serve a distance-weighted blend of the two neighbouring planes
      instead of the nearest one; only for evenly spaced stacks.
    - `noise_sigma`: Gaussian noise added to every frame, as a fraction of the
      stack's intensity range (max − min over all planes); 0 disables it.
      Seeded by `seed`, so a replay is reproducible.
    - `move_s_per_um`, `settle_s`: virtual time per µm of travel and per move.
    - `exposure_ms`, `readout_s`: virtual time per snap (exposure + readout). The
      exposure does not change the recorded pixels.
    - `clock`: where time is spent (default: a fresh `VirtualClock`).
    - `start_z_um`: initial stage position (default: middle of the stack).
    - `true_focus_z_um`, `focus_tolerance_um`: the stack's label when known
      (reported, never used to serve frames).
    - `sources`: a name per plane (e.g. file paths) used in error messages.

    Raises `ReplayStackError` (a `ConfigurationError`) with a message naming the
    offending plane for fewer than 2 planes, duplicate or non-finite Z, a plane
    that fails to load, is not 2-D, is empty, has non-finite pixels, or differs
    in shape or dtype from the others, and for `blend=True` on an unevenly
    spaced stack; plain `ConfigurationError` for bad numbers (negative times,
    `start_z_um` outside the stack).
    """

    def __init__(
        self,
        z_um: Sequence[float],
        images: Sequence[PlaneSource],
        *,
        name: str = "replay",
        stack_name: str | None = None,
        blend: bool = False,
        noise_sigma: float = 0.0,
        seed: int = 0,
        move_s_per_um: float = 0.001,
        settle_s: float = 0.0,
        readout_s: float = 0.0,
        exposure_ms: float = 10.0,
        clock: Clock | None = None,
        start_z_um: float | None = None,
        true_focus_z_um: float | None = None,
        focus_tolerance_um: float | None = None,
        pixel_size_um: float | None = None,
        sources: Sequence[str] | None = None,
    ) -> None:
        for label, value in (
            ("noise_sigma", noise_sigma),
            ("move_s_per_um", move_s_per_um),
            ("settle_s", settle_s),
            ("readout_s", readout_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{label} must be a finite number ≥ 0, got {value}")
        _check_exposure(exposure_ms)
        self.name = name
        self.stack_name = stack_name
        self.clock: Clock = clock if clock is not None else VirtualClock()
        self.blend = bool(blend)
        self.noise_sigma = float(noise_sigma)
        self.move_s_per_um = float(move_s_per_um)
        self.settle_s = float(settle_s)
        self.readout_s = float(readout_s)
        self._exposure_ms = float(exposure_ms)
        self._rng = np.random.default_rng(seed)
        self._true_focus_z_um = None if true_focus_z_um is None else float(true_focus_z_um)
        self.focus_tolerance_um = None if focus_tolerance_um is None else float(focus_tolerance_um)
        self.pixel_size_um = pixel_size_um

        self._z, self._planes = _load_and_check(z_um, images, sources)
        self._limits = ZLimits(float(self._z[0]), float(self._z[-1]))
        self.regular = _is_regular(self._z)
        if self.blend and not self.regular:
            raise ReplayStackError(
                "blend=True needs evenly spaced planes, but this stack's Z spacing varies from "
                f"{np.diff(self._z).min():g} to {np.diff(self._z).max():g} µm; "
                "replay it without blending (nearest plane)"
            )
        first = self._planes[0]
        self.dtype: np.dtype = first.dtype
        lo = min(float(p.min()) for p in self._planes)
        hi = max(float(p.max()) for p in self._planes)
        self._noise_abs = self.noise_sigma * (hi - lo)
        self._shape: tuple[int, int] = (int(first.shape[0]), int(first.shape[1]))

        mid = 0.5 * (self._limits.min_um + self._limits.max_um)
        start = mid if start_z_um is None else float(start_z_um)
        try:
            self._limits.check(start)
        except Exception as exc:
            raise ConfigurationError(f"start_z_um: {exc}") from exc
        self._z_now_um = start
        self.commanded_z_um: list[float] = []
        self.snaps = 0
        self._closed = False

    # ------------------------------------------------------------ stack facts

    @property
    def plane_z_um(self) -> np.ndarray:
        """Z of every recorded plane in µm, ascending (a copy)."""
        return self._z.copy()

    @property
    def plane_positions_um(self) -> tuple[float, ...] | None:
        """The Z positions (µm) this stage can serve distinct frames at, or None when any
        position gives its own frame (`blend=True`). A search snaps to these planes
        instead of re-measuring one plane at finer steps."""
        return None if self.blend else tuple(float(z) for z in self._z)

    @property
    def n_planes(self) -> int:
        """Number of recorded planes."""
        return len(self._planes)

    @property
    def plane_spacing_um(self) -> float:
        """Median distance between neighbouring planes, µm."""
        return float(np.median(np.diff(self._z)))

    def plane(self, index: int) -> np.ndarray:
        """The recorded plane `index` (ascending Z order), without noise (read-only view)."""
        view = self._planes[index].view()
        view.flags.writeable = False
        return view

    def nearest_plane_index(self, z_um: float) -> int:
        """Index of the plane nearest to `z_um` (ties go to the lower plane)."""
        i = int(np.searchsorted(self._z, z_um, side="left"))
        if i <= 0:
            return 0
        if i >= len(self._z):
            return len(self._z) - 1
        return i - 1 if (z_um - self._z[i - 1]) <= (self._z[i] - z_um) else i

    def true_focus_z_um(self) -> float | None:
        """The stack's labelled in-focus Z in µm, or None when the stack carries no label."""
        return self._true_focus_z_um

    # ----------------------------------------------------------- the protocol

    @property
    def z_limits_um(self) -> ZLimits:
        """The recorded Z range: [lowest plane, highest plane] in µm."""
        return self._limits

    @property
    def z_um(self) -> float:
        """Current stage position in µm (where the last move went)."""
        return self._z_now_um

    def move_z(self, z_um: float) -> None:
        """Move to `z_um`, spending travel + settle time on the clock.

        Raises `LimitError` (without moving) outside the recorded Z range or for
        a non-finite position, `StageError` after `close()`.
        """
        self._check_open(StageError)
        z = float(z_um)
        self._limits.check(z)
        self.commanded_z_um.append(z)
        self.clock.sleep_s(abs(z - self._z_now_um) * self.move_s_per_um + self.settle_s)
        self._z_now_um = z

    def snap(self) -> np.ndarray:
        """Return the frame at the current Z (nearest plane or blend, plus noise).

        Spends exposure + readout time on the clock. The frame is a new 2-D
        array in the stack's dtype. Raises `CameraError` after `close()`.
        """
        self._check_open(CameraError)
        self.clock.sleep_s(self._exposure_ms / 1000.0 + self.readout_s)
        self.snaps += 1
        z = self._z_now_um
        if self.blend:
            frame = self._blended(z)
        else:
            frame = self._planes[self.nearest_plane_index(z)].astype(np.float64, copy=True)
        if self._noise_abs > 0:
            frame += self._rng.normal(0.0, self._noise_abs, size=frame.shape)
        return _to_dtype(frame, self.dtype)

    @property
    def exposure_ms(self) -> float:
        """Exposure time in ms (costs virtual time; does not rescale the recorded pixels)."""
        return self._exposure_ms

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the exposure in ms; raises `CameraError` unless finite and > 0."""
        self._check_open(CameraError)
        try:
            _check_exposure(exposure_ms)
        except ConfigurationError as exc:
            raise CameraError(str(exc)) from exc
        self._exposure_ms = float(exposure_ms)

    def camera_info(self) -> CameraInfo:
        """Frame size of the recorded planes and the bit depth of their dtype."""
        return CameraInfo(
            width_px=self._shape[1],
            height_px=self._shape[0],
            bit_depth=int(self.dtype.itemsize * 8),
            pixel_size_um=self.pixel_size_um,
            name=f"replay:{self.stack_name}" if self.stack_name else "replay",
        )

    def close(self) -> None:
        """Release the planes. Idempotent; later moves and snaps raise."""
        self._closed = True

    def __enter__(self) -> ReplayMicroscope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ReplayMicroscope({self.stack_name or self.name!r}, {self.n_planes} planes, "
            f"z {self._limits.min_um:g}..{self._limits.max_um:g} µm)"
        )

    # -------------------------------------------------------------- internals

    def _blended(self, z_um: float) -> np.ndarray:
        i = int(np.searchsorted(self._z, z_um, side="right")) - 1
        i = min(max(i, 0), len(self._z) - 2)
        z0, z1 = self._z[i], self._z[i + 1]
        w = min(max((z_um - z0) / (z1 - z0), 0.0), 1.0)
        a = self._planes[i].astype(np.float64)
        if w == 0.0:
            return a
        b = self._planes[i + 1].astype(np.float64)
        return (1.0 - w) * a + w * b

    def _check_open(self, error: type[Exception]) -> None:
        if self._closed:
            raise error("the replay microscope has been closed")


def _check_exposure(exposure_ms: float) -> None:
    if not (math.isfinite(exposure_ms) and exposure_ms > 0):
        raise ConfigurationError(f"exposure_ms must be a finite number > 0, got {exposure_ms}")


def _load_and_check(
    z_um: Sequence[float], images: Sequence[PlaneSource], sources: Sequence[str] | None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Load every plane, check the stack, return (ascending z, planes in the same order)."""
    z = np.asarray(list(z_um), dtype=np.float64).ravel()
    n = len(images)
    if len(z) != n:
        raise ReplayStackError(f"got {len(z)} Z positions for {n} images")
    names = list(sources) if sources is not None else [f"plane {i}" for i in range(n)]
    if len(names) != n:
        raise ReplayStackError(f"got {len(names)} source names for {n} images")
    if n < 2:
        raise ReplayStackError(
            f"a replay stack needs at least 2 planes at different Z to search between, got {n}"
        )
    for zi, name in zip(z, names, strict=True):
        if not math.isfinite(zi):
            raise ReplayStackError(f"{name}: Z position {zi} is not a finite number")
    order = np.argsort(z, kind="stable")
    z = z[order]
    names = [names[i] for i in order]
    dup = np.flatnonzero(np.diff(z) <= 0)
    if dup.size:
        i = int(dup[0])
        raise ReplayStackError(
            f"duplicate Z position {z[i]:g} µm: {names[i]} and {names[i + 1]}; "
            "every plane of a replay stack needs its own Z"
        )
    planes: list[np.ndarray] = []
    for src_index, name in zip(order, names, strict=True):
        plane = _load_plane(images[int(src_index)], name)
        if planes:
            ref = planes[0]
            if plane.shape != ref.shape:
                raise ReplayStackError(
                    f"{name} is {plane.shape[1]}×{plane.shape[0]} px but {names[0]} is "
                    f"{ref.shape[1]}×{ref.shape[0]} px; every plane must have the same size"
                )
            if plane.dtype != ref.dtype:
                raise ReplayStackError(
                    f"{name} has pixel type {plane.dtype} but {names[0]} has {ref.dtype}; "
                    "every plane must have the same pixel type"
                )
        planes.append(plane)
    return z, planes


def _load_plane(source: PlaneSource, name: str) -> np.ndarray:
    """Load one plane (calling a loader), convert colour to grey, check it; name it on error."""
    if callable(source):
        try:
            source = source()
        except Exception as exc:
            raise ReplayStackError(f"{name} could not be read: {exc}") from exc
    arr = np.asarray(source)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = _to_dtype(arr[..., :3].astype(np.float64) @ _LUMA, arr.dtype)
    if arr.ndim != 2:
        raise ReplayStackError(
            f"{name} has shape {arr.shape}; a replay plane must be a 2-D (H, W) image"
        )
    if arr.size == 0:
        raise ReplayStackError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype.kind not in "uif" or arr.dtype == np.float16:
        raise ReplayStackError(f"{name} has unsupported pixel type {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ReplayStackError(f"{name} contains NaN or infinite pixels")
    return np.ascontiguousarray(arr)


def _is_regular(z: np.ndarray) -> bool:
    """True when the planes are evenly spaced (within `REGULAR_SPACING_RTOL`)."""
    steps = np.diff(z)
    median = float(np.median(steps))
    return bool(np.all(np.abs(steps - median) <= REGULAR_SPACING_RTOL * median))


def _to_dtype(frame: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip a float frame into `dtype` (floats are just cast)."""
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(frame), info.min, info.max).astype(dtype)
    return frame.astype(dtype)


__all__ = ["REGULAR_SPACING_RTOL", "ReplayMicroscope", "ReplayStackError"]
