"""The registry of scorers by name: `get_scorer("tenengrad")`, `get_scorer("focusnet")`.

The built-in scorers are listed as `"module:function"` providers that are
imported on first use, so importing the registry imports no scorer module (no
OpenCV, no onnxruntime) and no scorer module imports the registry (no cycle).
Each provider function returns a list of `ScorerEntry`. Code outside the package
can add its own scorers with `register_scorer`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from typing import Any

from autofocus.errors import UnknownNameError
from autofocus.scoring.base import Scorer, ScorerEntry, ScorerFactory

BUILTIN_PROVIDERS: tuple[tuple[str, bool], ...] = (
    ("autofocus.scoring.classical:builtin_scorers", True),
    # The model needs onnxruntime; without it only the classical measures exist.
    ("autofocus.scoring.model:builtin_scorers", False),
)
"""`("module:function", required)` for each group of built-in scorers."""

_ENTRIES: dict[str, ScorerEntry] = {}
_ALIASES: dict[str, str] = {}
_LOADED = False
_LOCK = threading.Lock()


def register_scorer(
    name: str, factory: ScorerFactory, *, aliases: Sequence[str] = (), description: str = ""
) -> None:
    """Register `factory` (called with keyword options) under `name` and its aliases."""
    _add(ScorerEntry(name.lower(), factory, tuple(a.lower() for a in aliases), description))


def _add(entry: ScorerEntry) -> None:
    _ENTRIES[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name


def _resolve(spec: str) -> list[ScorerEntry]:
    module_name, _, function = spec.partition(":")
    return list(getattr(importlib.import_module(module_name), function)())


def _ensure_builtin_loaded() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        for spec, required in BUILTIN_PROVIDERS:
            try:
                entries = _resolve(spec)
            except ImportError:
                if required:
                    raise
                continue  # pragma: no cover - onnxruntime missing
            for entry in entries:
                # A user registration made before first use wins over a built-in of the same name.
                if entry.name not in _ENTRIES:
                    _add(entry)
        _LOADED = True


def is_model_path(name: str) -> bool:
    """True when `name` names an ONNX model file (`*.onnx`) rather than a registered scorer."""
    return str(name).lower().endswith(".onnx")


def canonical_scorer_name(name: str) -> str:
    """The registered name for `name` or one of its aliases; raises `UnknownNameError`.

    A path to an ONNX model file (`*.onnx`, e.g. one written by `autofocus
    calibrate`) is its own name; it must exist.
    """
    if is_model_path(name):
        from pathlib import Path

        if not Path(name).is_file():
            raise UnknownNameError(f"model file {name!r} does not exist")
        return str(name)
    _ensure_builtin_loaded()
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _ENTRIES:
        raise UnknownNameError(
            f"unknown scorer {name!r}; available: {', '.join(available_scorers())}"
        )
    return key


def check_scorer(name: str) -> str:
    """Check at start-up that `name` can be served; return how reports will name it.

    A registered name (or alias) must exist; a model file (`*.onnx`) must exist,
    have a card that matches it, and load (`open_model`, on the CPU). Raises
    `UnknownNameError` or `ModelError` with one sentence naming the problem.
    """
    key = canonical_scorer_name(name)
    if not is_model_path(key):
        return key
    from autofocus.scoring.model import open_model

    return str(open_model(key, provider="cpu").name)


def get_scorer(name: str, **options: Any) -> Scorer:
    """Build the scorer registered as `name` (or an alias), passing `options` through.

    `name` may also be a path to an ONNX model file with its card beside it.
    """
    key = canonical_scorer_name(name)
    if is_model_path(key):
        from autofocus.scoring.model import open_model

        return open_model(key, **options)
    return _ENTRIES[key].build(**options)


def available_scorers() -> list[str]:
    """Registered scorer names, sorted."""
    _ensure_builtin_loaded()
    return sorted(_ENTRIES)


def scorer_descriptions() -> dict[str, str]:
    """One-line description for each registered scorer name."""
    _ensure_builtin_loaded()
    return {k: _ENTRIES[k].description for k in sorted(_ENTRIES)}


__all__ = [
    "BUILTIN_PROVIDERS",
    "Scorer",
    "available_scorers",
    "canonical_scorer_name",
    "check_scorer",
    "get_scorer",
    "is_model_path",
    "register_scorer",
    "scorer_descriptions",
]
