"""The one error type of the simulator's configuration."""

from __future__ import annotations

from autofocus_drivers.errors import ConfigurationError


class SimConfigError(ConfigurationError, ValueError):
    """A simulator setting is invalid (wrong range, wrong unit, inconsistent with another).

    It is both a `autofocus_drivers.errors.ConfigurationError` (so the service reports it like any
    driver misconfiguration) and a `ValueError` (so plain argument validation catches it).
    """


def require(condition: bool, message: str) -> None:
    """Raise `SimConfigError(message)` unless `condition` holds."""
    if not condition:
        raise SimConfigError(message)
