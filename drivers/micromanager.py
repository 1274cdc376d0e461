"""Micro-Manager driver: a `Microscope` on top of MMCore, reached through pycromanager.

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
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from drivers.base import CameraInfo, ZLimits
from drivers.clock import RealClock
from drivers.errors import (
    CameraError,
    ConfigurationError,
    DeviceTimeout,
    MicroscopeError,
    StageError,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT_S",
    "DEMO_ADAPTERS",
    "MicroManagerMicroscope",
    "Roi",
    "demo_adapter_dir",
    "demo_config_file",
    "open_micromanager",
    "write_democamera_focus_config",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 4827
"""Port of Micro-Manager's ZMQ (pycro-manager) server."""

DEFAULT_TIMEOUT_S = 5.0
"""Default for answering the ZMQ handshake and, headless, for MMCore's device waits."""

DEMO_ADAPTERS = "mm-test-adapters"
"""Special `headless_adapter_dir` value: the DemoCamera adapters of the mm-test-adapters package."""

Roi = tuple[int, int, int, int]
"""A camera region of interest `(x, y, width, height)` in (binned) pixels."""

_ENABLE_SERVER_HINT = (
    "Start Micro-Manager and enable its server: Tools > Options > 'Run server on port {port}' "
    "(newer versions call it 'Run pycro-manager server on port {port}'). Without a running "
    "Micro-Manager, start it headless instead "
    "(--mm-headless ADAPTER_DIR --mm-config FILE)."
)

# MMCore's DeviceType enum (MMDeviceConstants.h); pymmcore returns plain ints.
_DEVICE_TYPES = {
    0: "UnknownType",
    1: "AnyType",
    2: "CameraDevice",
    3: "ShutterDevice",
    4: "StateDevice",
    5: "StageDevice",
    6: "XYStageDevice",
    7: "SerialDevice",
    8: "GenericDevice",
    9: "AutoFocusDevice",
    10: "CoreDevice",
    11: "ImageProcessorDevice",
    12: "SignalIODevice",
    13: "MagnifierDevice",
    14: "SLMDevice",
    15: "HubDevice",
    16: "GalvoDevice",
}

# camelCase spellings that a mechanical snake->camel conversion gets wrong.
_CAMEL_EXCEPTIONS = {"get_roi": "getROI", "set_roi": "setROI", "clear_roi": "clearROI"}


def _camel(snake: str) -> str:
    if snake in _CAMEL_EXCEPTIONS:
        return _CAMEL_EXCEPTIONS[snake]
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _core_method(core: Any, snake: str) -> Callable[..., Any]:
    """The bound core method called `snake` (pycromanager, Java bridge) or its camelCase twin."""
    for name in (snake, _camel(snake)):
        method = getattr(core, name, None)
        if callable(method):
            return method
    raise ConfigurationError(
        f"the Micro-Manager core object ({type(core).__name__}) has no method {snake!r} "
        f"or {_camel(snake)!r}; is it an MMCore?"
    )


def _str_list(value: Any) -> list[str]:
    """A Python list from a pymmcore tuple or a Java `StrVector` shadow (size()/get(i))."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if hasattr(value, "size") and hasattr(value, "get"):
        return [str(value.get(i)) for i in range(int(value.size()))]
    return [str(v) for v in value]


def _roi_tuple(value: Any) -> Roi:
    """`(x, y, w, h)` from a pymmcore list or a Java `java.awt.Rectangle` shadow."""
    if all(hasattr(value, f) for f in ("x", "y", "width", "height")):
        return (int(value.x), int(value.y), int(value.width), int(value.height))
    x, y, w, h = (int(v) for v in value)
    return (x, y, w, h)


def _device_type_name(value: Any) -> str:
    """'StageDevice', 'CameraDevice', ... from an int, an IntEnum or a Java DeviceType shadow."""
    if hasattr(value, "swig_value"):  # mmcorej.DeviceType over the Java bridge
        value = value.swig_value()
    elif hasattr(value, "to_string"):
        return str(value.to_string())
    try:
        return _DEVICE_TYPES.get(int(value), f"type {int(value)}")
    except (TypeError, ValueError):
        return str(value)


def _vendor_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _looks_like_timeout(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, TimeoutError) or "timed out" in text or "timeout" in text


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
    ) -> None:
        if not isinstance(z_limits_um, ZLimits):
            raise ConfigurationError(
                "z_limits_um must be a ZLimits(min_um, max_um): Micro-Manager exposes no Z "
                "limits, so they must be configured before the first move"
            )
        self.name = name
        self.clock = RealClock()
        self._core = core
        self._limits = z_limits_um
        self._on_close = on_close
        self._closed = False
        self._restore_camera: str | None = None

        # Resolve every core method once: the per-frame path then costs one attribute call.
        m = lambda snake: _core_method(core, snake)  # noqa: E731
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

        try:
            loaded = _str_list(m("get_loaded_devices")())
            types = {label: _device_type_name(m("get_device_type")(label)) for label in loaded}
            core_focus = str(m("get_focus_device")())
            core_camera = str(m("get_camera_device")())
            autofocus = str(m("get_auto_focus_device")())
        except MicroscopeError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"could not read the device list from Micro-Manager: {_vendor_message(exc)}"
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
                    f'could not make "{self._camera}" the current camera: {_vendor_message(exc)}'
                ) from exc
            self._restore_camera = core_camera
        self._is_continuous_focus_enabled = m("is_continuous_focus_enabled")
        if self.hardware_autofocus_engaged():
            log.warning(
                "hardware autofocus %r is engaged; software autofocus jobs will be refused "
                "until it is switched off",
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
    ) -> MicroManagerMicroscope:
        """Attach to a running Micro-Manager over its ZMQ server on 127.0.0.1:`port`.

        Fails fast with `ConfigurationError` (saying how to enable the server) when nothing
        listens on the port, and within `timeout_s` seconds when something listens but no
        Micro-Manager answers. Closing leaves Micro-Manager running.
        """
        if not (isinstance(port, int) and 0 < port < 65536):
            raise ConfigurationError(f"Micro-Manager port must be 1-65535, got {port!r}")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigurationError(f"timeout_s must be a positive number, got {timeout_s!r}")
        hint = _ENABLE_SERVER_HINT.format(port=port)
        _probe_tcp_port(port, timeout_s, hint)
        try:
            # Not pycromanager.Core(): that returns an in-process headless core whenever one
            # is running, whatever port was asked for.
            from mmpycorex.core import ZMQRemoteMMCoreJ
        except ImportError as exc:
            raise ConfigurationError(_missing_extra("pycromanager")) from exc
        try:
            core = ZMQRemoteMMCoreJ(port=port, timeout=int(timeout_s * 1000))
        except Exception as exc:
            raise ConfigurationError(
                f"something listens on port {port} but no Micro-Manager ZMQ server answered "
                f"within {timeout_s:g} s ({_vendor_message(exc)}). {hint}"
            ) from exc
        return cls(core, z_limits_um=z_limits_um, focus_device=focus_device, camera=camera)

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
        adapter_path = Path(adapter_dir).expanduser().resolve()
        config_path = Path(config_file).expanduser().resolve()
        if not adapter_path.is_dir():
            raise ConfigurationError(f"Micro-Manager adapter folder {adapter_path} does not exist")
        if not config_path.is_file():
            raise ConfigurationError(f"Micro-Manager configuration file {config_path} not found")
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ConfigurationError(f"timeout_s must be a positive number, got {timeout_s!r}")
        try:
            import pycromanager
            from mmpycorex import is_pymmcore_active
        except ImportError as exc:
            raise ConfigurationError(_missing_extra("pycromanager")) from exc
        if is_pymmcore_active():
            raise ConfigurationError(
                "a headless Micro-Manager core is already running in this process; close the "
                "microscope that started it first (pycromanager runs one per process)"
            )
        try:
            # An absolute config path: pycromanager resolves relative ones against adapter_dir.
            pycromanager.start_headless(
                str(adapter_path),
                str(config_path),
                python_backend=True,
                buffer_size_mb=int(buffer_size_mb),
            )
        except Exception as exc:
            _stop_headless()
            raise ConfigurationError(
                f"Micro-Manager could not load {config_path.name} with the adapters in "
                f"{adapter_path}: {_vendor_message(exc)}"
            ) from exc
        try:
            core = pycromanager.Core()
            _core_method(core, "set_timeout_ms")(int(timeout_s * 1000))
            return cls(
                core,
                z_limits_um=z_limits_um,
                focus_device=focus_device,
                camera=camera,
                on_close=_stop_headless,
            )
        except BaseException:
            _stop_headless()
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
        if self.hardware_autofocus_engaged():
            raise StageError(
                f'hardware autofocus "{self._autofocus_device}" is engaged (continuous focus '
                f'on); switch it off before moving "{self._focus_device}" for software autofocus'
            )

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

    def wait_for_stage(self) -> None:
        """Block until the focus device is idle; `DeviceTimeout` when MMCore's wait times out."""
        try:
            self._wait_for_device(self._focus_device)
        except Exception as exc:
            raise self._stage_error("did not finish moving", exc) from exc

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
            return _roi_tuple(self._get_roi(self._camera))
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

    def camera_info(self) -> CameraInfo:
        """Current frame size (after ROI and binning), bit depth and pixel size of the camera."""
        self._check_open()
        try:
            width = int(self._get_image_width())
            height = int(self._get_image_height())
            bit_depth = int(_core_method(self._core, "get_image_bit_depth")())
            pixel_um = float(_core_method(self._core, "get_pixel_size_um")())
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
            if _roi_tuple(self._get_roi(self._camera)) != roi:
                # Clear first: a full-frame ROI is restored by clearing, and some cameras
                # refuse a new ROI that is not inside the current one.
                self._clear_roi()
                if _roi_tuple(self._get_roi(self._camera)) != roi:
                    self._set_roi(self._camera, *roi)
        except Exception as exc:
            failures.append(f"ROI {roi} ({_vendor_message(exc)})")
        try:
            if float(self._get_exposure(self._camera)) != exposure_ms:
                self._set_exposure(self._camera, exposure_ms)
        except Exception as exc:
            failures.append(f"exposure {exposure_ms:g} ms ({_vendor_message(exc)})")
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
        self._closed = True
        try:
            if self._restore_camera is not None:
                _core_method(self._core, "set_camera_device")(self._restore_camera)
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
        message = f'Z stage "{self._focus_device}" {what}: {_vendor_message(exc)}'
        return DeviceTimeout(message) if _looks_like_timeout(exc) else StageError(message)

    def _camera_error(self, what: str, exc: BaseException) -> CameraError:
        return CameraError(f'camera "{self._camera}" {what}: {_vendor_message(exc)}')


def _listing(types: dict[str, str]) -> str:
    shown = [f"{label} ({kind})" for label, kind in sorted(types.items()) if label != "Core"]
    return ", ".join(shown) if shown else "no devices"


def _missing_extra(package: str) -> str:
    return (
        f"{package} is not installed; install the Micro-Manager extra: "
        "pip install 'autofocus-service[mm]'"
    )


def _probe_tcp_port(port: int, timeout_s: float, hint: str) -> None:
    """Fail fast when nothing listens: a ZMQ client would otherwise retry silently."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=min(timeout_s, 2.0)):
            pass
    except ConnectionRefusedError as exc:
        raise ConfigurationError(
            f"no Micro-Manager ZMQ server is running on port {port} (connection refused). {hint}"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"could not reach a Micro-Manager ZMQ server on port {port}: {exc}. {hint}"
        ) from exc


def _stop_headless() -> None:
    """Stop pycromanager's in-process core and let a later start build a fresh engine."""
    import pycromanager
    from pycromanager.acquisition.acq_eng_py.internal.engine import Engine

    pycromanager.stop_headless()
    # pycromanager keeps its acquisition engine as a class-level singleton that is shut down
    # but never cleared; clearing it lets a later start_headless make a working one.
    if hasattr(Engine, "singleton"):
        del Engine.singleton


# ---------------------------------------------------------------------- demo kit
def demo_adapter_dir() -> Path:
    """The folder of Micro-Manager's demo adapters shipped by the mm-test-adapters package.

    Raises `ConfigurationError` when the package is not installed.
    """
    try:
        import mm_test_adapters
    except ImportError as exc:
        raise ConfigurationError(_missing_extra("mm-test-adapters")) from exc
    return Path(mm_test_adapters.device_adapter_path())


def demo_config_file() -> Path:
    """`MMConfig_demo.cfg` as shipped next to the mm-test-adapters demo adapters."""
    return demo_adapter_dir() / "MMConfig_demo.cfg"


# DemoCamera only couples its image to Z in "Fluorescent Beads" mode: each bead is a
# Gaussian of sigma sqrt((BeadSize*f)^2 + (BeadBlurRate*|z|)^2) px, where z is the position
# of the stage labelled "Z", so the true focus is Z = 0 µm. The default "Artificial Waves"
# mode only dims with |z| (a brightness change, invisible to normalised focus measures).
DEMOCAMERA_FOCUS_PROPERTIES: tuple[tuple[str, str, str], ...] = (
    ("Camera", "Mode", "Fluorescent Beads"),
    ("Camera", "BeadBlurRate", "0.5"),
    ("Camera", "BeadSize", "2.0"),
    ("Camera", "BeadDensity", "100"),
)
"""Device properties that make DemoCamera's image blur with Z (focus at Z = 0 µm)."""


def write_democamera_focus_config(destination: str | os.PathLike[str]) -> Path:
    """Write the demo configuration with DemoCamera switched to its Z-dependent bead mode.

    The file is the shipped `MMConfig_demo.cfg` plus `DEMOCAMERA_FOCUS_PROPERTIES` as
    post-initialisation `Property` lines; `destination` is a file path or a folder (then
    `MMConfig_demo_focus.cfg` inside it). Returns the path written.
    """
    dest = Path(destination)
    if dest.is_dir():
        dest = dest / "MMConfig_demo_focus.cfg"
    lines = [demo_config_file().read_text(), "", "# Autofocus demo: DemoCamera blurs with |Z|"]
    lines += [f"Property,{dev},{prop},{value}" for dev, prop, value in DEMOCAMERA_FOCUS_PROPERTIES]
    dest.write_text("\n".join(lines) + "\n")
    return dest


# -------------------------------------------------------------------------- factory
def open_micromanager(
    *,
    port: int | None = None,
    headless_adapter_dir: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    focus_device: str | None = None,
    camera: str | None = None,
    z_limits_um: ZLimits | tuple[float, float],
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> MicroManagerMicroscope:
    """Open a Micro-Manager microscope from settings or CLI options (exactly one way in).

    `port`: attach to a running Micro-Manager's ZMQ server. `headless_adapter_dir` (+
    `config_file`): start MMCore in-process; the value `"mm-test-adapters"` means the demo
    adapters of that package, and a missing `config_file` then means its
    `MMConfig_demo.cfg`. `z_limits_um` is `ZLimits` or `(min_um, max_um)`. Raises
    `ConfigurationError` for contradictory or missing options and everything the two
    constructors raise.
    """
    if port is not None and headless_adapter_dir is not None:
        raise ConfigurationError(
            "choose one way into Micro-Manager: a port (running Micro-Manager) or a headless "
            "adapter folder, not both"
        )
    try:
        limits = z_limits_um if isinstance(z_limits_um, ZLimits) else ZLimits(*z_limits_um)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bad Z limits {z_limits_um!r}: {exc}") from exc
    if headless_adapter_dir is not None:
        adapter_dir: Path
        if str(headless_adapter_dir) == DEMO_ADAPTERS:
            adapter_dir = demo_adapter_dir()
        else:
            adapter_dir = Path(headless_adapter_dir)
        if config_file is None:
            if str(headless_adapter_dir) != DEMO_ADAPTERS:
                raise ConfigurationError(
                    "headless Micro-Manager needs a hardware configuration file (--mm-config)"
                )
            config_file = demo_config_file()
        return MicroManagerMicroscope.start_headless(
            adapter_dir,
            config_file,
            z_limits_um=limits,
            focus_device=focus_device,
            camera=camera,
            timeout_s=timeout_s,
        )
    if config_file is not None:
        raise ConfigurationError(
            "a configuration file only applies to headless mode; a running Micro-Manager "
            "uses the configuration it was started with"
        )
    return MicroManagerMicroscope.connect(
        port=DEFAULT_PORT if port is None else port,
        timeout_s=timeout_s,
        z_limits_um=limits,
        focus_device=focus_device,
        camera=camera,
    )
