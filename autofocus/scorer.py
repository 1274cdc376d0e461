"""The `Scorer` protocol and the registry of scorers by name.

A scorer turns a batch of frames into one sharpness number per frame (higher is
sharper). Classical measures and the ONNX focus model implement the same
protocol and are chosen by name: `get_scorer("tenengrad")`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from autofocus.errors import UnknownNameError


@runtime_checkable
class Scorer(Protocol):
    """Scores frames: `score(frames)` returns a float64 array of shape (len(frames),).

    Frames are 2-D (H, W) arrays of any real dtype (colour frames are converted
    to grey by the shared preprocessing). Higher means sharper. Raises
    `autofocus.errors.ImageError` on an empty, non-finite or wrongly shaped frame.
    """

    name: str

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...


ScorerFactory = Callable[..., Scorer]

_REGISTRY: dict[str, ScorerFactory] = {}
_ALIASES: dict[str, str] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_scorer(
    name: str, factory: ScorerFactory, *, aliases: Sequence[str] = (), description: str = ""
) -> None:
    """Register `factory` (called with keyword options) under `name` and its aliases."""
    key = name.lower()
    _REGISTRY[key] = factory
    _DESCRIPTIONS[key] = description
    for alias in aliases:
        _ALIASES[alias.lower()] = key


def _ensure_builtin_loaded() -> None:
    # Importing the modules registers their scorers; done lazily to avoid import cycles.
    import autofocus.measures  # noqa: F401

    try:
        import autofocus.onnx_scorer  # noqa: F401
    except ImportError:  # pragma: no cover - onnxruntime missing: classical measures only
        pass


def canonical_scorer_name(name: str) -> str:
    """The registered name for `name` or one of its aliases; raises `UnknownNameError`."""
    _ensure_builtin_loaded()
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownNameError(
            f"unknown scorer {name!r}; available: {', '.join(available_scorers())}"
        )
    return key


def get_scorer(name: str, **options: Any) -> Scorer:
    """Build the scorer registered as `name` (or an alias), passing `options` through."""
    return _REGISTRY[canonical_scorer_name(name)](**options)


def available_scorers() -> list[str]:
    """Registered scorer names, sorted."""
    _ensure_builtin_loaded()
    return sorted(_REGISTRY)


def scorer_descriptions() -> dict[str, str]:
    """One-line description for each registered scorer name."""
    _ensure_builtin_loaded()
    return {k: _DESCRIPTIONS[k] for k in sorted(_REGISTRY)}
