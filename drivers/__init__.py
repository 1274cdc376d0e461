"""Hardware abstraction layer: the `Microscope` protocol and its drivers.

This package depends on numpy only; vendor packages (pycromanager, pymmcore-plus)
are imported lazily by the drivers that need them.
"""

import logging as _logging

from autofocus_drivers.base import CameraInfo, Microscope, XYStage, ZLimits, xy_stage_of
from autofocus_drivers.clock import Clock, RealClock, VirtualClock
from autofocus_drivers.errors import (
    CameraError,
    ConfigurationError,
    DeviceTimeout,
    LimitError,
    MicroscopeError,
    StageError,
)

# A library stays silent unless the application configures logging.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "XYStage",
    "xy_stage_of",
    "CameraError",
    "CameraInfo",
    "Clock",
    "ConfigurationError",
    "DeviceTimeout",
    "LimitError",
    "Microscope",
    "MicroscopeError",
    "RealClock",
    "StageError",
    "VirtualClock",
    "ZLimits",
]
