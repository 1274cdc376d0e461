"""Strategies by name: `make_strategy("coarse-fine", space, **options)`.

Names are case-insensitive and "_" equals "-". Built in: guided (the default; alias "auto"),
track, sweep, golden, brent, hillclimb, coarse-fine, and the benchmark baselines
oughtafocus and jaf.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from autofocus.errors import UnknownNameError
from autofocus.search.strategies.base import SearchSpace, Strategy

DEFAULT_STRATEGY = "guided"

StrategyFactory = Callable[..., Strategy]

_REGISTRY: dict[str, StrategyFactory] = {}
_ALIASES: dict[str, str] = {}
_DESCRIPTIONS: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_strategy(
    name: str,
    factory: StrategyFactory,
    *,
    aliases: Sequence[str] = (),
    description: str = "",
) -> None:
    """Register `factory(space, **options) -> Strategy` under `name` and its aliases."""
    key = _key(name)
    _REGISTRY[key] = factory
    _DESCRIPTIONS[key] = description
    for alias in aliases:
        _ALIASES[_key(alias)] = key


def canonical_strategy_name(name: str) -> str:
    """The registered name for `name` or an alias; raises `UnknownNameError` listing the names."""
    _ensure_builtin_loaded()
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownNameError(
            f"unknown strategy {name!r}; available: {', '.join(available_strategies())}"
            f" (alias: {', '.join(f'{a} = {k}' for a, k in sorted(_ALIASES.items()))})"
        )
    return key


def make_strategy(name: str, space: SearchSpace, **options: Any) -> Strategy:
    """A fresh strategy `name` over `space`; `options` are the strategy's keyword options.

    Raises `UnknownNameError` for an unknown name and `ValueError` for an
    option the strategy does not take or a bad option value.
    """
    key = canonical_strategy_name(name)
    factory = _REGISTRY[key]
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        params = {}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if params and not accepts_any:
        allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"strategy {key!r} does not take option(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(allowed) or 'none'}"
            )
    return factory(space, **options)


def available_strategies() -> list[str]:
    """Registered strategy names (without aliases), sorted."""
    _ensure_builtin_loaded()
    return sorted(_REGISTRY)


def describe_strategies() -> dict[str, str]:
    """Registered names with a one-line description each."""
    _ensure_builtin_loaded()
    return {k: _DESCRIPTIONS[k] for k in sorted(_REGISTRY)}


def _ensure_builtin_loaded() -> None:
    if "coarse-fine" in _REGISTRY:
        return
    from autofocus.search.strategies.baselines import JAF, OughtaFocus
    from autofocus.search.strategies.brent import Brent
    from autofocus.search.strategies.coarse_fine import CoarseFine
    from autofocus.search.strategies.golden import GoldenSection
    from autofocus.search.strategies.guided import Guided
    from autofocus.search.strategies.hillclimb import HillClimb
    from autofocus.search.strategies.sweep import Sweep
    from autofocus.search.strategies.track import Track

    register_strategy(
        "coarse-fine",
        CoarseFine,
        aliases=("coarsefine",),
        description="coarse sweep (one batch), failure checks, then a few points fitted with a "
        "peak model (the previous default)",
    )
    register_strategy(
        "guided",
        Guided,
        aliases=("auto", "default"),
        description="few frames (default): defocus-estimate jumps when the scorer offers "
        "them, else a wide-capture sweep stepped from the optics, then a bracketed fit and "
        "trust checks",
    )
    register_strategy(
        "track",
        Track,
        description="time-lapse: 3 frames around the last focus; a full guided search when "
        "focus drifted more than about one depth of field",
    )
    register_strategy(
        "sweep", Sweep, description="exhaustive sweep at half the depth of field, then a peak fit"
    )
    register_strategy(
        "golden", GoldenSection, description="golden-section search (assumes one peak)"
    )
    register_strategy(
        "brent", Brent, description="Brent's method: parabolic steps with golden fallback"
    )
    register_strategy(
        "hillclimb",
        HillClimb,
        aliases=("hill-climb",),
        description="climb from the current z; for small drifts",
    )
    register_strategy(
        "oughtafocus",
        OughtaFocus,
        description="baseline: Micro-Manager OughtaFocus (Brent, ±5 µm, tolerance 1 µm)",
    )
    register_strategy(
        "jaf",
        JAF,
        description="baseline: Micro-Manager JAF(H&P) two-pass grid (3 × 2 µm, 11 × 0.2 µm)",
    )
