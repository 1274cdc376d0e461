"""Calling an MMCore whatever its flavour: snake_case or camelCase methods, Java shadows, errors.

pycromanager's cores, raw `pymmcore.CMMCore`, pymmcore-plus's `CMMCorePlus` and a
Java core over the ZMQ bridge spell methods and return values differently; these
helpers hide that, so the rest of the driver calls one API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autofocus_drivers.errors import ConfigurationError

Roi = tuple[int, int, int, int]
"""A camera region of interest `(x, y, width, height)` in (binned) pixels."""

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
_CAMEL_EXCEPTIONS = {
    "get_roi": "getROI",
    "set_roi": "setROI",
    "clear_roi": "clearROI",
    "get_xy_stage_device": "getXYStageDevice",
    "set_xy_position": "setXYPosition",
}


def camel(snake: str) -> str:
    if snake in _CAMEL_EXCEPTIONS:
        return _CAMEL_EXCEPTIONS[snake]
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def core_method(core: Any, snake: str) -> Callable[..., Any]:
    """The bound core method called `snake` (pycromanager, Java bridge) or its camelCase twin."""
    for name in (snake, camel(snake)):
        method = getattr(core, name, None)
        if callable(method):
            return method
    raise ConfigurationError(
        f"the Micro-Manager core object ({type(core).__name__}) has no method {snake!r} "
        f"or {camel(snake)!r}; is it an MMCore?"
    )


def str_list(value: Any) -> list[str]:
    """A Python list from a pymmcore tuple or a Java `StrVector` shadow (size()/get(i))."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if hasattr(value, "size") and hasattr(value, "get"):
        return [str(value.get(i)) for i in range(int(value.size()))]
    return [str(v) for v in value]


def roi_tuple(value: Any) -> Roi:
    """`(x, y, w, h)` from a pymmcore list or a Java `java.awt.Rectangle` shadow."""
    if all(hasattr(value, f) for f in ("x", "y", "width", "height")):
        return (int(value.x), int(value.y), int(value.width), int(value.height))
    x, y, w, h = (int(v) for v in value)
    return (x, y, w, h)


def device_type_name(value: Any) -> str:
    """'StageDevice', 'CameraDevice', ... from an int, an IntEnum or a Java DeviceType shadow."""
    if hasattr(value, "swig_value"):  # mmcorej.DeviceType over the Java bridge
        value = value.swig_value()
    elif hasattr(value, "to_string"):
        return str(value.to_string())
    try:
        return _DEVICE_TYPES.get(int(value), f"type {int(value)}")
    except (TypeError, ValueError):
        return str(value)


def vendor_message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def looks_like_timeout(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, TimeoutError) or "timed out" in text or "timeout" in text


def missing_extra(package: str) -> str:
    return (
        f"{package} is not installed; install the Micro-Manager extra: "
        "pip install 'autofocus-service[mm]'"
    )
