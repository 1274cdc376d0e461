"""The Micro-Manager `Microscope`: a Z stage and a camera on top of an MMCore.

Three ways to get an MMCore:

- `MicroManagerMicroscope.connect(port=4827)`: the core of a running Micro-Manager,
  over its ZMQ server (Java bridge). Images come back as FLAT arrays there.
- `MicroManagerMicroscope.start_headless(adapter_dir, config_file)`: an in-process
  pymmcore core started by `pycromanager.start_headless(..., python_backend=True)`;
  stopped again by `close()`.
- `MicroManagerMicroscope(core, ...)`: any core object you already hold (pycromanager's
  snake_case pymmcore, a raw `pymmcore.CMMCore`, a pymmcore-plus `CMMCorePlus` /
  `UniMMCore`). Method names are looked up in snake_case first, then camelCase.

Micro-Manager knows no Z travel limits, so they come from configuration and are
enforced here before any command reaches the stage. Vendor exceptions become the
project's typed errors, each naming the device. pycromanager is imported lazily.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from autofocus_drivers.base import CameraInfo, ZLimits
from autofocus_drivers.clock import RealClock
from autofocus_drivers.errors import (
    CameraError,
    ConfigurationError,
    DeviceTimeout,
    MicroscopeError,
    StageError,
)
from autofocus_drivers.micromanager.core_api import (
    Roi,
    core_method,
    device_type_name,
    looks_like_timeout,
    roi_tuple,
    str_list,
    vendor_message,
)
from autofocus_drivers.micromanager.session import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    connect_core,
    start_headless_core,
    stop_headless,
)

log = logging.getLogger(__name__)

ContinuousFocusMode = Literal["refuse", "pause"]
"""What to do when a hardware autofocus (PFS, CRISP, ...) is locked: refuse Z moves, or
switch it off for the search and back on afterwards."""


class MicroManagerMicroscope:
    """A Z stage and a camera driven through Micro-Manager's MMCore.

    `core` is an MMCore object (see the module docstring for the ways in). `focus_device`
    names the Z drive (default: the core's focus device) and `camera` the camera
    (default: the core's camera); unknown names, non-stage focus devices and hardware
    autofocus devices raise `ConfigurationError` listing what is loaded. When a named
    camera is not the core's current camera it is made current (MMCore snaps only with
    the current camera) and the previous one is restored by `close()`.

    `z_limits_um` is required: Micro-Manager reports no travel limits, and a move outside
    them raises `LimitError` before anything is sent. Stage failures raise `StageError`
    (`DeviceTimeout` when a wait timed out), camera failures `CameraError`, each naming
    the device. Time is wall-clock (`RealClock`). Use one instance from one thread.

    `continuous_focus` decides what happens when a hardware autofocus is locked:
    "refuse" (default) raises `StageError` before any Z move; "pause" switches it off
    before the first move and back on when the search ends (`search_session`) or the
    microscope is closed. `xy_stage` names the XY stage used by focus maps (default:
    the core's XY stage; `has_xy_stage` is False when there is none).
    """

    def __init__(
        self,
        core: Any,
        *,
        z_limits_um: ZLimits,
        focus_device: str | None = None,
        camera: str | None = None,
        name: str = "micromanager",
        on_close: Callable[[], None] | None = None,
        continuous_focus: ContinuousFocusMode = "refuse",
        xy_stage: str | None = None,
    ) -> None:
        if not isinstance(z_limits_um, ZLimits):
            raise ConfigurationError(
                "z_limits_um must be a ZLimits(min_um, max_um): Micro-Manager exposes no Z "
                "limits, so they must be configured before the first move"
            )
        if continuous_focus not in ("refuse", "pause"):
            raise ConfigurationError(
                f"continuous_focus must be 'refuse' or 'pause', got {continuous_focus!r}"
            )
        self.name = name
        self.clock = RealClock()
        self.continuous_focus: ContinuousFocusMode = continuous_focus
        self._resume_continuous_focus = False
        self._core = core
        self._limits = z_limits_um
        self._on_close = on_close
        self._closed = False
        self._restore_camera: str | None = None

        # Resolve every core method once: the per-frame path then costs one attribute call.
        m = lambda snake: core_method(core, snake)  # noqa: E731
        self._set_position = m("set_position")
        self._get_position = m("get_position")
        self._wait_for_device = m("wait_for_device")
        self._snap_image = m("snap_image")
        self._get_image = m("get_image")
        self._get_image_width = m("get_image_width")
        self._get_image_height = m("get_image_height")
        self._get_exposure = m("get_exposure")
        self._set_exposure = m("set_exposure")
        self._get_roi = m("get_roi")
        self._set_roi = m("set_roi")
        self._clear_roi = m("clear_roi")
        self._get_x_position = m("get_x_position")
        self._get_y_position = m("get_y_position")
        self._set_xy_position = m("set_xy_position")

        try:
            loaded = str_list(m("get_loaded_devices")())
            types = {label: device_type_name(m("get_device_type")(label)) for label in loaded}
            core_focus = str(m("get_focus_device")())
            core_camera = str(m("get_camera_device")())
            autofocus = str(m("get_auto_focus_device")())
            core_xy = str(m("get_xy_stage_device")())
        except MicroscopeError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"could not read the device list from Micro-Manager: {vendor_message(exc)}"
            ) from exc
        self._device_types = types
        self._autofocus_device = autofocus
        self._focus_device = self._choose_focus_device(focus_device, core_focus, types, autofocus)
        self._camera = self._choose_camera(camera, core_camera, types)
        if self._camera != core_camera:
            try:
                m("set_camera_device")(self._camera)
            except Exception as exc:
                raise ConfigurationError(
                    f'could not make "{self._camera}" the current camera: {vendor_message(exc)}'
                ) from exc
            self._restore_camera = core_camera
        self._is_continuous_focus_enabled = m("is_continuous_focus_enabled")
        self._enable_continuous_focus = m("enable_continuous_focus")
        self._xy_stage = self._choose_xy_stage(xy_stage, core_xy, types)
        if self.hardware_autofocus_engaged() and continuous_focus == "refuse":
            log.warning(
                "hardware autofocus %r is engaged; software autofocus jobs will be refused "
                "until it is switched off (or continuous_focus='pause' is set)",
                autofocus,
            )

    # ----------------------------------------------------------------- ways in
    @classmethod
    def connect(
        cls,
        *,
        port: int = DEFAULT_PORT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        z_limits_um: ZLimits,
        focus_device: str | None = None,
        camera: str | None = None,
        continuous_focus: ContinuousFocusMode = "refuse",
        xy_stage: str | None = None,
    ) -> MicroManagerMicroscope:
        """Attach to a running Micro-Manager over its ZMQ server on 127.0.0.1:`port`.

        Fails fast with `ConfigurationError` (saying how to enable the server) when nothing
        listens on the port, and within `timeout_s` seconds when something listens but no
        Micro-Manager answers. Closing leaves Micro-Manager running.
        """
        return cls(
            connect_core(port, timeout_s),
            z_limits_um=z_limits_um,
            focus_device=focus_device,
            camera=camera,
            continuous_focus=continuous_focus,
            xy_stage=xy_stage,
        )

    @classmethod
    def start_headless(
        cls,
        adapter_dir: str | os.PathLike[str],
        config_file: str | os.PathLike[str],
        *,
        z_limits_um: ZLimits,
        focus_device: str | None = None,
        camera: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        buffer_size_mb: int = 64,
        continuous_focus: ContinuousFocusMode = "refuse",
        xy_stage: str | None = None,
    ) -> MicroManagerMicroscope:
        """Start MMCore in this process (pycromanager headless, Python backend) and drive it.

        `adapter_dir` is the folder holding the `mmgr_dal_*` device adapters (a Micro-Manager
        installation, or `demo_adapter_dir()`); `config_file` a Micro-Manager hardware
        configuration (.cfg). `timeout_s` becomes MMCore's device-wait timeout.
        `buffer_size_mb` sizes MMCore's sequence buffer: snaps do not use it, and
        pycromanager's default (1 GB, zero-filled) costs seconds at every start. Only one
        headless core may run per process; `close()` stops it. Raises `ConfigurationError`
        for missing paths, a config that fails to load, or a headless core already running.
        """
        core = start_headless_core(
            adapter_dir, config_file, timeout_s=timeout_s, buffer_size_mb=buffer_size_mb
        )
        try:
            return cls(
                core,
                z_limits_um=z_limits_um,
                focus_device=focus_device,
                camera=camera,
                on_close=stop_headless,
                continuous_focus=continuous_focus,
                xy_stage=xy_stage,
            )
        except BaseException:
            stop_headless()
            raise

    # --------------------------------------------------------------- selection
    @staticmethod
    def _choose_focus_device(
        requested: str | None, core_focus: str, types: dict[str, str], autofocus: str
    ) -> str:
        stages = sorted(label for label, kind in types.items() if kind == "StageDevice")
        listing = _listing(types)
        if requested is None:
            if not core_focus:
                raise ConfigurationError(
                    f"Micro-Manager has no focus device set; name the Z drive with "
                    f"focus_device (Z stages: {stages or 'none'}; loaded: {listing})"
                )
            requested = core_focus
        if requested not in types:
            raise ConfigurationError(
                f'focus device "{requested}" is not loaded in Micro-Manager '
                f"(Z stages: {stages or 'none'}; loaded: {listing})"
            )
        kind = types[requested]
        if requested == autofocus or kind == "AutoFocusDevice":
            raise ConfigurationError(
                f'"{requested}" is a hardware autofocus device, not a Z drive; name the Z '
                f"stage itself as focus device (Z stages: {stages or 'none'})"
            )
        if kind != "StageDevice":
            raise ConfigurationError(
                f'focus device "{requested}" is a {kind}, not a Z stage '
                f"(Z stages: {stages or 'none'}; loaded: {listing})"
            )
        return requested

    @staticmethod
    def _choose_xy_stage(requested: str | None, core_xy: str, types: dict[str, str]) -> str | None:
        stages = sorted(label for label, kind in types.items() if kind == "XYStageDevice")
        if requested is None:
            return core_xy or None
        if types.get(requested) != "XYStageDevice":
            raise ConfigurationError(
                f'XY stage "{requested}" is not loaded in Micro-Manager '
                f"(XY stages: {stages or 'none'}; loaded: {_listing(types)})"
            )
        return requested

    @staticmethod
    def _choose_camera(requested: str | None, core_camera: str, types: dict[str, str]) -> str:
        cameras = sorted(label for label, kind in types.items() if kind == "CameraDevice")
        listing = _listing(types)
        if requested is None:
            if not core_camera:
                raise ConfigurationError(
                    f"Micro-Manager has no camera set; name one with camera "
                    f"(cameras: {cameras or 'none'}; loaded: {listing})"
                )
            requested = core_camera
        if requested not in types:
            raise ConfigurationError(
                f'camera "{requested}" is not loaded in Micro-Manager '
                f"(cameras: {cameras or 'none'}; loaded: {listing})"
            )
        if types[requested] != "CameraDevice":
            raise ConfigurationError(
                f'"{requested}" is a {types[requested]}, not a camera '
                f"(cameras: {cameras or 'none'}; loaded: {listing})"
            )
        return requested

    # ------------------------------------------------------------------ facts
    @property
    def core(self) -> Any:
        """The underlying MMCore object (for property access the protocol does not cover)."""
        return self._core

    @property
    def focus_device(self) -> str:
        """Label of the Z drive this driver moves."""
        return self._focus_device

    @property
    def camera(self) -> str:
        """Label of the camera this driver snaps with."""
        return self._camera

    @property
    def loaded_devices(self) -> dict[str, str]:
        """Every loaded device label with its type name ('StageDevice', 'CameraDevice', ...)."""
        return dict(self._device_types)

    @property
    def z_limits_um(self) -> ZLimits:
        """The configured Z travel limits in µm."""
        return self._limits

    def _refuse_if_hardware_autofocus_engaged(self) -> None:
        if not self.hardware_autofocus_engaged():
            return
        if self.continuous_focus == "pause":
            self._pause_hardware_autofocus()
            return
        raise StageError(
            f'hardware autofocus "{self._autofocus_device}" is engaged (continuous focus '
            f'on); switch it off before moving "{self._focus_device}" for software autofocus '
            "(or set mm.continuous_focus = \"pause\" to have it switched off and back on)"
        )

    def _pause_hardware_autofocus(self) -> None:
        try:
            self._enable_continuous_focus(False)
        except Exception as exc:
            raise StageError(
                f'could not switch hardware autofocus "{self._autofocus_device}" off: '
                f"{vendor_message(exc)}"
            ) from exc
        self._resume_continuous_focus = True
        log.info("hardware autofocus %r switched off for the search", self._autofocus_device)

    def resume_hardware_autofocus(self) -> None:
        """Switch a hardware autofocus paused by this driver back on (no-op otherwise).

        Raises `StageError` when the device refuses; the flag is cleared either way.
        """
        if not self._resume_continuous_focus:
            return
        self._resume_continuous_focus = False
        try:
            self._enable_continuous_focus(True)
        except Exception as exc:
            raise StageError(
                f'could not switch hardware autofocus "{self._autofocus_device}" back on: '
                f"{vendor_message(exc)}"
            ) from exc
        log.info("hardware autofocus %r switched back on", self._autofocus_device)

    @contextmanager
    def search_session(self) -> Iterator[MicroManagerMicroscope]:
        """One focus search: with `continuous_focus="pause"` a locked hardware autofocus is
        switched off before the first move and back on when the search ends."""
        self._check_open()
        try:
            yield self
        finally:
            try:
                self.resume_hardware_autofocus()
            except StageError:  # the search's own outcome stands; the log says what is off
                log.exception("hardware autofocus was left switched off")

    def hardware_autofocus_engaged(self) -> bool:
        """True when a hardware autofocus (e.g. PFS, CRISP) is in continuous-focus mode."""
        if not self._autofocus_device:
            return False
        try:
            return bool(self._is_continuous_focus_enabled())
        except Exception:
            return False

    # ------------------------------------------------------------------ stage
    @property
    def z_um(self) -> float:
        """Current Z position of the focus device in µm, as the stage reports it."""
        self._check_open()
        try:
            return float(self._get_position(self._focus_device))
        except Exception as exc:
            raise self._stage_error("could not report its position", exc) from exc

    def move_z(self, z_um: float) -> None:
        """Move the focus device to `z_um` and wait until MMCore reports it no longer busy.

        Raises `LimitError` (nothing sent) outside the configured limits, `StageError`
        when a hardware autofocus is engaged (nothing sent) or the stage refuses the move,
        and `DeviceTimeout` when it does not settle within MMCore's timeout.
        """
        self._check_open()
        self._limits.check(z_um)
        target = float(z_um)
        self._refuse_if_hardware_autofocus_engaged()
        try:
            self._set_position(self._focus_device, target)
        except Exception as exc:
            raise self._stage_error(f"failed to move to {target:g} µm", exc) from exc
        self.wait_for_stage()

    # -- streamed sweeps (autofocus_drivers.base.ZSweep) --------------------------------
    @property
    def sweep_sequenced(self) -> bool:
        """True when the focus stage is sequenceable: `sweep_z` is hardware-sequenced
        (a stage sequence stepped by the camera's sequence acquisition)."""
        from autofocus_drivers.micromanager.sweep import is_sequenced

        return is_sequenced(self)

    def sweep_start_um(self, z_um: Sequence[float], *,
                       max_smear_um: float | None = None) -> float:
        """Where a sweep over `z_um` starts: its first position (the stage steps, it does
        not move during an exposure, so there is no run-up)."""
        return float(z_um[0])

    def sweep_z(self, z_um: Sequence[float], *,
                max_smear_um: float | None = None) -> list[tuple[float, np.ndarray]]:
        """One frame per ascending position of `z_um` (µm) as [(z_um, frame)]:
        hardware-sequenced when the focus stage is sequenceable, else stop-and-go (a
        settled move and a snap each). `max_smear_um` is moot: the stage never moves
        during an exposure. Raises `LimitError` before moving for a position outside the
        limits, `StageError`/`CameraError`/`DeviceTimeout` as `move_z` and `snap` do.
        """
        from autofocus_drivers.micromanager.sweep import sweep

        self._check_open()
        self._refuse_if_hardware_autofocus_engaged()
        return sweep(self, z_um)

    def wait_for_stage(self) -> None:
        """Block until the focus device is idle; `DeviceTimeout` when MMCore's wait times out."""
        try:
            self._wait_for_device(self._focus_device)
        except Exception as exc:
            raise self._stage_error("did not finish moving", exc) from exc

    # --------------------------------------------------------------- XY stage
    @property
    def has_xy_stage(self) -> bool:
        """True when an XY stage is configured (focus maps need one)."""
        return self._xy_stage is not None

    @property
    def xy_stage(self) -> str | None:
        """Label of the XY stage used for focus maps, or None."""
        return self._xy_stage

    def _require_xy(self) -> str:
        if self._xy_stage is None:
            raise ConfigurationError(
                "Micro-Manager has no XY stage set; focus maps need one (load an XY stage "
                "or name it with xy_stage)"
            )
        return self._xy_stage

    @property
    def xy_um(self) -> tuple[float, float]:
        """Current XY stage position (x_um, y_um) as the stage reports it."""
        self._check_open()
        label = self._require_xy()
        try:
            x = float(self._get_x_position(label))
            y = float(self._get_y_position(label))
        except Exception as exc:
            raise StageError(
                f'XY stage "{label}" could not report its position: {vendor_message(exc)}'
            ) from exc
        return (x, y)

    def move_xy(self, x_um: float, y_um: float) -> None:
        """Move the XY stage to (x_um, y_um) and wait until it is idle.

        Raises `ConfigurationError` without an XY stage, `StageError` (or `DeviceTimeout`)
        when the stage refuses or does not settle. Micro-Manager enforces the stage's own
        travel limits.
        """
        self._check_open()
        label = self._require_xy()
        if not (math.isfinite(x_um) and math.isfinite(y_um)):
            raise StageError(f"XY position must be finite numbers, got ({x_um}, {y_um})")
        try:
            self._set_xy_position(label, float(x_um), float(y_um))
            self._wait_for_device(label)
        except Exception as exc:
            message = f'XY stage "{label}" failed to move to ({x_um:g}, {y_um:g}) µm: '
            message += vendor_message(exc)
            raise (DeviceTimeout if looks_like_timeout(exc) else StageError)(message) from exc

    # ----------------------------------------------------------------- camera
    def snap(self) -> np.ndarray:
        """Expose once and return the frame as a 2-D array (H, W) of the camera's dtype.

        Over the Java bridge MMCore hands back a flat array; it is reshaped with the
        core's current image width and height. Raises `CameraError` when the snap fails,
        the size does not match, or the camera is in a colour mode.
        """
        self._check_open()
        try:
            self._snap_image()
            pixels = self._get_image()
        except Exception as exc:
            raise self._camera_error("failed to snap an image", exc) from exc
        frame = np.asarray(pixels)
        if frame.ndim == 1:
            frame = self._unflatten(frame)
        if frame.ndim != 2:
            raise CameraError(
                f'camera "{self._camera}" returned a {frame.ndim}-D image {frame.shape}; '
                "autofocus needs a monochrome pixel type"
            )
        return frame

    def _unflatten(self, flat: np.ndarray) -> np.ndarray:
        try:
            height = int(self._get_image_height())
            width = int(self._get_image_width())
        except Exception as exc:
            raise self._camera_error("could not report its image size", exc) from exc
        if height * width != flat.size:
            raise CameraError(
                f'camera "{self._camera}" returned {flat.size} pixels for a {width}x{height} '
                "image; a colour pixel type or a multi-channel camera is not supported"
            )
        return flat.reshape(height, width)

    @property
    def exposure_ms(self) -> float:
        """The camera's current exposure time in milliseconds."""
        self._check_open()
        try:
            return float(self._get_exposure(self._camera))
        except Exception as exc:
            raise self._camera_error("could not report its exposure", exc) from exc

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the exposure time in milliseconds and check that the camera took it.

        Raises `CameraError` for a non-positive value, a refusal, or a camera that
        silently keeps another value (DemoCamera ignores values above MaximumExposureMs).
        """
        self._check_open()
        if not (math.isfinite(exposure_ms) and exposure_ms > 0):
            raise CameraError(f"exposure must be a positive number of ms, got {exposure_ms!r}")
        try:
            self._set_exposure(self._camera, float(exposure_ms))
            actual_ms = float(self._get_exposure(self._camera))
        except Exception as exc:
            raise self._camera_error(f"refused exposure {exposure_ms:g} ms", exc) from exc
        # Cameras round exposures to their line time; a clamp or a silent refusal is larger.
        if abs(actual_ms - exposure_ms) > max(0.01, 0.02 * exposure_ms):
            raise CameraError(
                f'camera "{self._camera}" did not accept exposure {exposure_ms:g} ms: it '
                f"reports {actual_ms:g} ms (outside its allowed range?)"
            )

    @property
    def roi(self) -> Roi:
        """The camera's current region of interest `(x, y, width, height)` in pixels."""
        self._check_open()
        try:
            return roi_tuple(self._get_roi(self._camera))
        except Exception as exc:
            raise self._camera_error("could not report its ROI", exc) from exc

    def set_roi(self, roi: Sequence[int] | None) -> None:
        """Set the camera ROI `(x, y, width, height)` in pixels; `None` means the full frame.

        The ROI is checked against the full sensor (at the current binning) first. Raises
        `CameraError` for an ROI that does not fit or that the camera refuses; the previous
        ROI is then put back.
        """
        self._check_open()
        previous = self.roi
        try:
            self._clear_roi()
            full_w, full_h = int(self._get_image_width()), int(self._get_image_height())
        except Exception as exc:
            raise self._camera_error("could not reset its ROI", exc) from exc
        if roi is None:
            return
        try:
            x, y, w, h = (int(v) for v in roi)
        except (TypeError, ValueError) as exc:
            self._put_back_roi(previous, full_w, full_h)
            raise CameraError(
                f"ROI must be four integers (x, y, width, height), got {roi!r}"
            ) from exc
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > full_w or y + h > full_h:
            self._put_back_roi(previous, full_w, full_h)
            raise CameraError(
                f'ROI ({x}, {y}, {w}, {h}) does not fit camera "{self._camera}" '
                f"({full_w}x{full_h} px)"
            )
        if (x, y, w, h) == (0, 0, full_w, full_h):
            return
        try:
            self._set_roi(self._camera, x, y, w, h)
        except Exception as exc:
            self._put_back_roi(previous, full_w, full_h)
            raise self._camera_error(f"refused ROI ({x}, {y}, {w}, {h})", exc) from exc

    def _put_back_roi(self, previous: Roi, full_w: int, full_h: int) -> None:
        if previous != (0, 0, full_w, full_h):
            try:
                self._set_roi(self._camera, *previous)
            except Exception:  # already raising a clearer error; the log keeps this one
                log.exception("could not restore ROI %s on %s", previous, self._camera)

    def set_objective(
        self, *, na: float, immersion_index: float = 1.0, wavelength_nm: float = 550.0
    ) -> None:
        """Tell the driver the objective in use: numerical aperture `na`, the immersion
        medium's refractive index and the wavelength (nm). `depth_of_field_um` then comes
        from them and Micro-Manager's pixel size. Raises `ConfigurationError` for an NA not
        below the immersion index or non-positive numbers."""
        values = (na, immersion_index, wavelength_nm)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
            raise ConfigurationError(f"objective numbers must be positive and finite: {values}")
        if not 0 < na < immersion_index:
            raise ConfigurationError(
                f"objective_na ({na}) must be below the immersion index ({immersion_index})")
        self._objective = (float(na), float(immersion_index), float(wavelength_nm))

    @property
    def depth_of_field_um(self) -> float | None:
        """Depth of field (µm) of the configured objective: λ·n/NA² + n·pixel/NA (the
        wave-optical and the detector term, pixel size at the sample from Micro-Manager's
        pixel calibration; 0 when it has none), or None when no objective was set."""
        objective = getattr(self, "_objective", None)
        if objective is None:
            return None
        na, n, wavelength_nm = objective
        try:
            pixel_um = float(core_method(self._core, "get_pixel_size_um")())
        except Exception:  # noqa: BLE001 - no pixel calibration: the wave term alone
            pixel_um = 0.0
        pixel_um = pixel_um if math.isfinite(pixel_um) and pixel_um > 0 else 0.0
        return wavelength_nm / 1000.0 * n / na**2 + n * pixel_um / na

    def camera_info(self) -> CameraInfo:
        """Current frame size (after ROI and binning), bit depth and pixel size of the camera."""
        self._check_open()
        try:
            width = int(self._get_image_width())
            height = int(self._get_image_height())
            bit_depth = int(core_method(self._core, "get_image_bit_depth")())
            pixel_um = float(core_method(self._core, "get_pixel_size_um")())
        except MicroscopeError:
            raise
        except Exception as exc:
            raise self._camera_error("could not report its frame geometry", exc) from exc
        return CameraInfo(
            width_px=width,
            height_px=height,
            bit_depth=bit_depth,
            pixel_size_um=pixel_um if pixel_um > 0 else None,
            name=self._camera,
        )

    # -------------------------------------------------------------------- jobs
    @contextmanager
    def job_settings(
        self, *, exposure_ms: float | None = None, roi: Sequence[int] | None = None
    ) -> Iterator[MicroManagerMicroscope]:
        """Apply a job's exposure (ms) and ROI, and restore both afterwards whatever happens.

        `None` keeps the current value. On exit the saved exposure and ROI are put back if
        they differ, also after an exception or a cancel. Raises `StageError` up front when
        a hardware autofocus is engaged (it would fight the Z moves). A failure to restore
        is raised as `CameraError` when the job itself succeeded, otherwise logged and
        noted on the job's exception, which propagates unchanged.
        """
        self._check_open()
        self._refuse_if_hardware_autofocus_engaged()
        with self.search_session():
            yield from self._job_settings(exposure_ms, roi)

    def _job_settings(
        self, exposure_ms: float | None, roi: Sequence[int] | None
    ) -> Iterator[MicroManagerMicroscope]:
        saved_exposure_ms = self.exposure_ms
        saved_roi = self.roi
        try:
            if roi is not None:
                self.set_roi(roi)
            if exposure_ms is not None:
                self.set_exposure_ms(exposure_ms)
            yield self
        except BaseException as exc:
            problem = self._restore(saved_exposure_ms, saved_roi)
            if problem is not None:
                log.error("%s", problem)
                if hasattr(exc, "add_note"):
                    exc.add_note(str(problem))
            raise
        else:
            problem = self._restore(saved_exposure_ms, saved_roi)
            if problem is not None:
                raise problem

    def _restore(self, exposure_ms: float, roi: Roi) -> CameraError | None:
        failures: list[str] = []
        try:
            if roi_tuple(self._get_roi(self._camera)) != roi:
                # Clear first: a full-frame ROI is restored by clearing, and some cameras
                # refuse a new ROI that is not inside the current one.
                self._clear_roi()
                if roi_tuple(self._get_roi(self._camera)) != roi:
                    self._set_roi(self._camera, *roi)
        except Exception as exc:
            failures.append(f"ROI {roi} ({vendor_message(exc)})")
        try:
            if float(self._get_exposure(self._camera)) != exposure_ms:
                self._set_exposure(self._camera, exposure_ms)
        except Exception as exc:
            failures.append(f"exposure {exposure_ms:g} ms ({vendor_message(exc)})")
        if failures:
            return CameraError(
                f'could not restore camera "{self._camera}" settings after the job: '
                + "; ".join(failures)
            )
        return None

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Give the camera role back to the previous camera and stop a headless core. Idempotent."""
        if self._closed:
            return
        try:
            self.resume_hardware_autofocus()
        except StageError:
            log.exception("could not switch the hardware autofocus back on")
        self._closed = True
        try:
            if self._restore_camera is not None:
                core_method(self._core, "set_camera_device")(self._restore_camera)
        except Exception:
            log.exception("could not restore camera %r", self._restore_camera)
        finally:
            if self._on_close is not None:
                self._on_close()

    def __enter__(self) -> MicroManagerMicroscope:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"MicroManagerMicroscope(focus_device={self._focus_device!r}, "
            f"camera={self._camera!r}, z_limits_um={self._limits})"
        )

    # ---------------------------------------------------------------- helpers
    def _check_open(self) -> None:
        if self._closed:
            raise MicroscopeError("the Micro-Manager microscope has been closed")

    def _stage_error(self, what: str, exc: BaseException) -> StageError:
        message = f'Z stage "{self._focus_device}" {what}: {vendor_message(exc)}'
        return DeviceTimeout(message) if looks_like_timeout(exc) else StageError(message)

    def _camera_error(self, what: str, exc: BaseException) -> CameraError:
        return CameraError(f'camera "{self._camera}" {what}: {vendor_message(exc)}')


def _listing(types: dict[str, str]) -> str:
    shown = [f"{label} ({kind})" for label, kind in sorted(types.items()) if label != "Core"]
    return ", ".join(shown) if shown else "no devices"
