"""A physically modelled simulated microscope (numpy/scipy only).

    from drivers.sim import SimConfig, SimulatedMicroscope
    mic = SimulatedMicroscope(SimConfig.preset("cells", "brightfield", debris=True), seed=3)
    mic.move_z(2.5)
    frame = mic.snap()          # uint16 (256, 256)

`defocus_image(in_focus, dz_um, optics)` blurs any in-focus image to a given
defocus with the same optical model (for synthetic training stacks).
"""

from drivers.sim.camera import CameraConfig
from drivers.sim.config import SimConfig
from drivers.sim.errors import SimConfigError
from drivers.sim.faults import Calls, FaultConfig
from drivers.sim.microscope import SimulatedMicroscope
from drivers.sim.optics import Optics, defocus_image, defocus_otf
from drivers.sim.specimen import SpecimenConfig
from drivers.sim.stage import StageConfig
from drivers.sim.xy import SampleSurface, XYStageConfig

__all__ = [
    "Calls",
    "CameraConfig",
    "FaultConfig",
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
]
