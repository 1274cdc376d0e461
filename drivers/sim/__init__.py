"""A physically modelled simulated microscope (numpy/scipy only).

    from autofocus_drivers.sim import SimConfig, SimulatedMicroscope
    mic = SimulatedMicroscope(SimConfig.preset("cells", "brightfield", debris=True), seed=3)
    mic.move_z(2.5)
    frame = mic.snap()          # uint16 (256, 256)

`defocus_image(in_focus, dz_um, optics)` blurs any in-focus image to a given
defocus with the same optical model (for synthetic training stacks).
"""

from autofocus_drivers.sim.camera import CameraConfig
from autofocus_drivers.sim.config import SimConfig
from autofocus_drivers.sim.errors import SimConfigError
from autofocus_drivers.sim.faults import Calls, FaultConfig
from autofocus_drivers.sim.microscope import SimulatedMicroscope
from autofocus_drivers.sim.optics import Optics, defocus_image, defocus_otf
from autofocus_drivers.sim.profiles import PROFILE_NAMES, HardwareProfile, hardware_profile
from autofocus_drivers.sim.specimen import SpecimenConfig
from autofocus_drivers.sim.stage import StageConfig
from autofocus_drivers.sim.xy import SampleSurface, XYStageConfig

__all__ = [
    "Calls",
    "CameraConfig",
    "FaultConfig",
    "HardwareProfile",
    "PROFILE_NAMES",
    "Optics",
    "SimConfig",
    "SimConfigError",
    "SampleSurface",
    "SimulatedMicroscope",
    "SpecimenConfig",
    "StageConfig",
    "XYStageConfig",
    "defocus_image",
    "defocus_otf",
    "hardware_profile",
]
