"""Typed hardware errors.

Every error carries a message a microscopist can act on. Drivers translate their
vendor's exceptions into these so the engine and the API never see vendor types.
"""

from __future__ import annotations


class MicroscopeError(Exception):
    """Base class of every hardware error raised by a driver."""


class StageError(MicroscopeError):
    """The Z stage failed to move, report its position or settle."""


class CameraError(MicroscopeError):
    """The camera failed to expose, returned no image or returned an unusable image."""


class LimitError(MicroscopeError):
    """A requested Z position lies outside the configured Z limits; the stage was not moved."""


class DeviceTimeout(StageError):
    """A device did not answer within its timeout."""


class ConfigurationError(MicroscopeError):
    """The driver is configured wrongly (unknown device name, missing file, bad limits)."""
