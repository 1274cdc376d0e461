"""Our simulated microscope inside Micro-Manager, as pymmcore-plus `UniMMCore` Python devices.

`SimZStage`, `SimCamera`, `SimXYStage` and `SimShutter` wrap one `SimulatedMicroscope`
(autofocus_drivers.sim), so the real
MMCore (pymmcore-plus' `UniMMCore`, which routes calls for Python devices to Python
objects and everything else to C++ adapters) drives our physics: backlash, settling,
defocus blur, shot and read noise, injected faults. Any Micro-Manager client code
(`MicroManagerMicroscope`, pymmcore-plus MDA, napari-micromanager) can then run on it:

    core, sim = simulated_unicore(SimConfig.preset("beads"), seed=1)
    mic = MicroManagerMicroscope(core, z_limits_um=sim.z_limits_um)
    core.mda.run(useq.MDASequence(...))      # the stock pymmcore-plus MDA runs too

The shutter is a light-path shutter in front of the specimen: the core's auto-shutter
opens it for each snap, as on a real microscope (without a shutter device MMCore's
auto-shutter fails with "No device with label ''"). With the shutter closed the
simulated camera sees no specimen light (fluorescence) or no lamp (bright field).

Limits of the mapping: UniMMCore derives the bit depth from the frame dtype (16 for
our 12-bit camera); ROI is cropped in software by `SimpleCameraDevice`; the stage's
moves spend time on the simulator's clock (virtual unless `real_time`), so the device
is never busy when MMCore polls it. Needs the `mm` extra (pymmcore-plus).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from autofocus_drivers.errors import ConfigurationError

if TYPE_CHECKING:  # the real imports happen lazily, in the functions below
    from autofocus_drivers.sim import SimConfig, SimulatedMicroscope
    from pymmcore_plus.experimental.unicore import UniMMCore

__all__ = [
    "SIM_CAMERA_LABEL",
    "SIM_SHUTTER_LABEL",
    "SIM_STAGE_LABEL",
    "SIM_XY_LABEL",
    "load_simulated_devices",
    "simulated_unicore",
]

SIM_STAGE_LABEL = "SimZ"
SIM_CAMERA_LABEL = "SimCam"
SIM_XY_LABEL = "SimXY"
SIM_SHUTTER_LABEL = "SimShutter"


def _unicore_module() -> Any:
    try:
        from pymmcore_plus.experimental import unicore
    except ImportError as exc:
        raise ConfigurationError(
            "pymmcore-plus is not installed; install the Micro-Manager extra: "
            "pip install 'autofocus-service[mm]'"
        ) from exc
    return unicore


def _device_classes() -> tuple[type, type, type, type]:
    """Build the device classes on first use, so importing this module needs no pymmcore-plus."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    unicore = _unicore_module()

    class SimZStage(unicore.StageDevice):
        """Z stage of a `SimulatedMicroscope`: moves obey its mechanics and limits (µm).

        A move outside the simulator's limits, or an injected stage fault, raises the
        simulator's `LimitError` / `StageError` / `DeviceTimeout`; MMCore passes it on.
        """

        def __init__(self, microscope: SimulatedMicroscope) -> None:
            super().__init__()
            self._mic = microscope

        def set_position_um(self, val: float) -> None:
            self._mic.move_z(float(val))

        def get_position_um(self) -> float:
            return float(self._mic.z_um)

        def home(self) -> None:
            self._mic.move_z(self._mic.z_limits_um.clamp(0.0))

        def stop(self) -> None:
            """Moves complete inside `set_position_um`; there is never a move to stop."""

        def set_origin(self) -> None:
            raise NotImplementedError("the simulated stage has a fixed origin")

        # A sequenceable stage (the simulator's `piezo` profile) really sequences: the
        # loaded positions are stepped through, one per camera trigger (each frame the
        # camera takes while the sequence runs), with no software move in between.
        def get_sequence_max_length(self) -> int:
            return 1024 if self._mic.config.stage.sequenceable else 0

        def send_sequence(self, sequence: tuple[float, ...]) -> None:
            for z in sequence:
                self._mic.z_limits_um.check(float(z))
            self._loaded = [float(z) for z in sequence]

        def start_sequence(self) -> None:
            self._armed = list(getattr(self, "_loaded", []))

        def stop_sequence(self) -> None:
            self._armed = []

        def trigger(self) -> None:
            """The camera's trigger: step to the next loaded position, if a sequence runs."""
            armed = getattr(self, "_armed", None)
            if armed:
                self._mic.move_z(armed.pop(0))

    class SimCamera(unicore.SimpleCameraDevice):
        """Camera of a `SimulatedMicroscope`: full-frame exposures of the simulated specimen.

        Exposure is in ms. Frames are uint8 or uint16 as the simulator makes them. An
        injected camera fault raises the simulator's `CameraError`; MMCore passes it on.
        """

        def __init__(self, microscope: SimulatedMicroscope) -> None:
            super().__init__()
            self._mic = microscope
            self._mic.clear_roi()  # ROI is cropped by SimpleCameraDevice, on full frames
            info = microscope.camera_info()
            self._shape = (int(info.height_px), int(info.width_px))
            self._dtype = np.dtype(np.uint8 if info.bit_depth <= 8 else np.uint16)
            self._core_ref: Any = None  # weakref to the core, set by load_simulated_devices
            self.shutter_label: str | None = None
            self.stage: Any = None  # the SimZStage its trigger steps, set on loading

        def get_exposure(self) -> float:
            return float(self._mic.exposure_ms)

        def set_exposure(self, exposure: float) -> None:
            self._mic.set_exposure_ms(float(exposure))

        def sensor_shape(self) -> tuple[int, int]:
            return self._shape

        def dtype(self) -> np.dtype:
            return self._dtype

        def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
            # C++ MMCore opens the auto-shutter around a snap; UniMMCore does not for a
            # Python camera, so the camera does it here, as the core would.
            core = self._core_ref() if self._core_ref is not None else None
            auto = (
                core is not None
                and core.getAutoShutter()
                and core.getShutterDevice() == self.shutter_label
                and not self._mic.light_on
            )
            if auto:
                self._mic.set_light(True)
            if self.stage is not None:
                self.stage.trigger()  # a running stage sequence steps on each exposure
            try:
                frame = self._mic.snap()
            finally:
                if auto:
                    self._mic.set_light(False)
            buffer[:] = frame
            return {"z_um": float(self._mic.z_um)}

    class SimXYStage(unicore.XYStageDevice):
        """XY stage of a `SimulatedMicroscope` (µm): moves spend travel + settle time on its
        clock, and the specimen's focus follows the simulated sample surface."""

        def __init__(self, microscope: SimulatedMicroscope) -> None:
            super().__init__()
            self._mic = microscope

        def set_position_um(self, x: float, y: float) -> None:
            self._mic.move_xy(float(x), float(y))

        def get_position_um(self) -> tuple[float, float]:
            x, y = self._mic.xy_um
            return (float(x), float(y))

        def set_origin_x(self) -> None:
            raise NotImplementedError("the simulated XY stage has a fixed origin")

        def set_origin_y(self) -> None:
            raise NotImplementedError("the simulated XY stage has a fixed origin")

        def home(self) -> None:
            self._mic.move_xy(0.0, 0.0)

        def stop(self) -> None:
            """Moves complete inside `set_position_um`; there is never a move to stop."""

    class SimShutter(unicore.ShutterDevice):
        """The light-path shutter of a `SimulatedMicroscope`: closed, the camera sees no
        specimen light."""

        def __init__(self, microscope: SimulatedMicroscope) -> None:
            super().__init__()
            self._mic = microscope

        def get_open(self) -> bool:
            return bool(self._mic.light_on)

        def set_open(self, open: bool) -> None:  # noqa: A002 - pymmcore-plus' signature
            self._mic.set_light(bool(open))

    _CLASSES = (SimZStage, SimCamera, SimXYStage, SimShutter)
    return _CLASSES


_CLASSES: tuple[type, type, type, type] | None = None


def load_simulated_devices(
    core: UniMMCore,
    microscope: SimulatedMicroscope,
    *,
    stage_label: str = SIM_STAGE_LABEL,
    camera_label: str = SIM_CAMERA_LABEL,
    xy_label: str | None = SIM_XY_LABEL,
    shutter_label: str | None = SIM_SHUTTER_LABEL,
    make_current: bool = True,
) -> None:
    """Load `microscope`'s stages, camera and shutter into `core` as Python devices.

    `xy_label` / `shutter_label` None leave that device out. With `make_current` they
    become the core's focus device, camera, XY stage and shutter. Raises
    `ConfigurationError` when pymmcore-plus is missing or a label is already taken.
    """
    stage_cls, camera_cls, xy_cls, shutter_cls = _device_classes()
    devices = [(stage_label, stage_cls), (camera_label, camera_cls)]
    if xy_label is not None:
        devices.append((xy_label, xy_cls))
    if shutter_label is not None:
        devices.append((shutter_label, shutter_cls))
    loaded = set(core.getLoadedDevices())
    for label, _ in devices:
        if label in loaded:
            raise ConfigurationError(f'device label "{label}" is already loaded in this core')
    stage_device = None
    for label, cls in devices:
        device = cls(microscope)
        if cls is stage_cls:
            stage_device = device
        if cls is camera_cls:
            device._core_ref = weakref.ref(core)
            device.shutter_label = shutter_label
            device.stage = stage_device  # its trigger steps a running stage sequence
        core.loadPyDevice(label, device)
        core.initializeDevice(label)
    if make_current:
        core.setFocusDevice(stage_label)
        core.setCameraDevice(camera_label)
        if xy_label is not None:
            core.setXYStageDevice(xy_label)
        if shutter_label is not None:
            core.setShutterDevice(shutter_label)
            core.setShutterOpen(False)  # auto-shutter opens it for each snap


def simulated_unicore(
    config: SimConfig | None = None, *, seed: int = 0
) -> tuple[UniMMCore, SimulatedMicroscope]:
    """A fresh `UniMMCore` with a new `SimulatedMicroscope` loaded as its focus stage,
    camera, XY stage and shutter (ready for `core.mda.run`).

    Returns the core and the simulator (the latter for ground truth in tests). Raises
    `ConfigurationError` when pymmcore-plus is missing.
    """
    unicore = _unicore_module()
    from autofocus_drivers.sim import SimulatedMicroscope

    microscope = SimulatedMicroscope(config, seed=seed)
    core = unicore.UniMMCore()
    load_simulated_devices(core, microscope)
    return core, microscope
