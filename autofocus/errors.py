"""Typed errors of the autofocus service.

Hardware errors come from `autofocus_drivers.errors` and are re-exported here so callers
need one import. Every error carries one sentence a microscopist understands.
"""

from __future__ import annotations

from autofocus_drivers.errors import (
    CameraError,
    ConfigurationError,
    DeviceTimeout,
    LimitError,
    MicroscopeError,
    StageError,
)


class AutofocusError(Exception):
    """Base class of errors raised by the autofocus layer (not the hardware)."""


class NoFocusSignal(AutofocusError):
    """The focus curve is flat: no plane is measurably sharper than the others."""


class UnknownNameError(AutofocusError, KeyError):
    """A scorer, strategy or driver name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class StackError(AutofocusError):
    """A z-stack could not be read or is unusable (names the offending file)."""


class ImageError(AutofocusError):
    """An image is corrupt, empty, of an unsupported type or shape, or not finite."""


class ModelError(AutofocusError):
    """A focus model file is missing, corrupt or does not match its model card."""


__all__ = [
    "AutofocusError",
    "CameraError",
    "ConfigurationError",
    "DeviceTimeout",
    "ImageError",
    "LimitError",
    "MicroscopeError",
    "ModelError",
    "NoFocusSignal",
    "StackError",
    "StageError",
    "UnknownNameError",
]
