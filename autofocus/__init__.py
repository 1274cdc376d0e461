"""Real-time microscope autofocus: focus measures, search strategies, the engine, the daemon.

The public face, for a script that drives a microscope itself:

    from autofocus import FocusRequest, focus, get_scorer
    result = focus(microscope, FocusRequest(range_um=40, tolerance_um=0.5))
    result.success, result.best_z_um

The names are imported on first use, so `import autofocus` stays cheap.
Layers: `autofocus.scoring` (frames → numbers), `autofocus.search` (numbers → a
focal plane), `autofocus.stacks` (recorded z-stacks), `autofocus.service` (the
daemon), with `cli` and `bench` on top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "focus": "autofocus.search.focus",
    "FocusRequest": "autofocus.search.focus",
    "FocusResult": "autofocus.search.result",
    "get_scorer": "autofocus.scoring.registry",
}

__all__ = ["FocusRequest", "FocusResult", "__version__", "focus", "get_scorer"]

if TYPE_CHECKING:
    from autofocus.scoring.registry import get_scorer
    from autofocus.search.focus import FocusRequest, focus
    from autofocus.search.result import FocusResult


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'autofocus' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
