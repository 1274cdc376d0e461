"""Our simulated microscope inside Micro-Manager, as pymmcore-plus `UniMMCore` Python devices.

`SimZStage` and `SimCamera` wrap one `SimulatedMicroscope` (drivers.sim), so the real
MMCore (pymmcore-plus' `UniMMCore`, which routes calls for Python devices to Python
objects and everything else to C++ adapters) drives our physics: backlash, settling,
defocus blur, shot and read noise, injected faults. Any Micro-Manager client code
(`MicroManagerMicroscope`, pymmcore-plus MDA, napari-micromanager) can then run on it:

    core, sim = simulated_unicore(SimConfig.preset("beads"), seed=1)
    mic = MicroManagerMicroscope(core, z_limits_um=sim.z_limits_um)

Limits of the mapping: UniMMCore derives the bit depth from the frame dtype (16 for
our 12-bit camera); ROI is cropped in software by `SimpleCameraDevice`; the stage's
moves spend time on the simulator's clock (virtual unless `real_time`), so the device
is never busy when MMCore polls it. Needs the `mm` extra (pymmcore-plus).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from drivers.errors import ConfigurationError

if TYPE_CHECKING:  # the real imports happen lazily, in the functions below
    from pymmcore_plus.experimental.unicore import UniMMCore

    from drivers.sim import SimConfig, SimulatedMicroscope

__all__ = ["SIM_CAMERA_LABEL", "SIM_STAGE_LABEL", "load_simulated_devices", "simulated_unicore"]

SIM_STAGE_LABEL = "SimZ"
SIM_CAMERA_LABEL = "SimCam"


def _unicore_module() -> Any:
    try:
        from pymmcore_plus.experimental import unicore
    except ImportError as exc:
        raise ConfigurationError(
            "pymmcore-plus is not installed; install the Micro-Manager extra: "
            "pip install 'autofocus-service[mm]'"
        ) from exc
    return unicore


def _device_classes() -> tuple[type, type]:
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

        def get_exposure(self) -> float:
            return float(self._mic.exposure_ms)

        def set_exposure(self, exposure: float) -> None:
            self._mic.set_exposure_ms(float(exposure))

        def sensor_shape(self) -> tuple[int, int]:
            return self._shape

        def dtype(self) -> np.dtype:
            return self._dtype

        def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
            frame = self._mic.snap()
            buffer[:] = frame
            return {"z_um": float(self._mic.z_um)}

    _CLASSES = (SimZStage, SimCamera)
    return _CLASSES


_CLASSES: tuple[type, type] | None = None


def load_simulated_devices(
    core: UniMMCore,
    microscope: SimulatedMicroscope,
    *,
    stage_label: str = SIM_STAGE_LABEL,
    camera_label: str = SIM_CAMERA_LABEL,
    make_current: bool = True,
) -> None:
    """Load `microscope`'s stage and camera into `core` as Python devices and initialise them.

    With `make_current` they become the core's focus device and camera. Raises
    `ConfigurationError` when pymmcore-plus is missing or a label is already taken.
    """
    stage_cls, camera_cls = _device_classes()
    loaded = set(core.getLoadedDevices())
    for label in (stage_label, camera_label):
        if label in loaded:
            raise ConfigurationError(f'device label "{label}" is already loaded in this core')
    core.loadPyDevice(stage_label, stage_cls(microscope))
    core.loadPyDevice(camera_label, camera_cls(microscope))
    core.initializeDevice(stage_label)
    core.initializeDevice(camera_label)
    if make_current:
        core.setFocusDevice(stage_label)
        core.setCameraDevice(camera_label)


def simulated_unicore(
    config: SimConfig | None = None, *, seed: int = 0
) -> tuple[UniMMCore, SimulatedMicroscope]:
    """A fresh `UniMMCore` with a new `SimulatedMicroscope` loaded as its focus stage and camera.

    Returns the core and the simulator (the latter for ground truth in tests). Raises
    `ConfigurationError` when pymmcore-plus is missing.
    """
    unicore = _unicore_module()
    from drivers.sim import SimulatedMicroscope

    microscope = SimulatedMicroscope(config, seed=seed)
    core = unicore.UniMMCore()
    load_simulated_devices(core, microscope)
    return core, microscope
