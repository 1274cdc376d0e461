"""One call to focus a microscope: validate the request, build scorer and strategy, run.

`focus(microscope, ...)` is what the CLI, the HTTP worker and scripts use. It
validates everything before the stage moves: a range that leaves the Z
limits, an unknown scorer or strategy, or nonsense numbers raise at once
(`LimitError`, `UnknownNameError`, `ValueError`) with the stage untouched.
Everything that goes wrong after the first move ends as a failed
`FocusResult` instead (see `autofocus.search.engine`).
"""

from __future__ import annotations

import math
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from autofocus.errors import LimitError
from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import get_scorer
from autofocus.search.engine import Engine, MeasureCallback, OnFailure
from autofocus.search.result import FocusResult
from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.registry import DEFAULT_STRATEGY, make_strategy
from drivers.base import Microscope, ZLimits


@dataclass
class FocusRequest:
    """Parameters of one focus run, in micrometres, milliseconds and seconds.

    `center_z_um` None means "where the stage is now". `range_um` is the full
    width searched (center ± range/2). `tolerance_um` is the accuracy wanted;
    `coarse_step_um` the spacing of a coarse sweep (default 8 × tolerance).
    """

    scorer: str = "tenengrad"
    strategy: str = DEFAULT_STRATEGY
    center_z_um: float | None = None
    range_um: float = 50.0
    tolerance_um: float = 0.5
    coarse_step_um: float | None = None
    max_frames: int = 60
    exposure_ms: float | None = None
    timeout_s: float | None = 120.0
    on_failure: OnFailure = "return"
    backlash_um: float = 5.0
    settle_s: float = 0.0
    verify: bool = True
    scorer_options: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)


def search_space(request: FocusRequest, current_z_um: float, limits: ZLimits) -> SearchSpace:
    """The `SearchSpace` of `request` on a stage at `current_z_um` with `limits`.

    Raises `LimitError` when the requested interval is not entirely inside the
    limits (the microscopist asked for something the stage must not do) and
    `ValueError` for non-positive or non-finite numbers.
    """
    center = current_z_um if request.center_z_um is None else float(request.center_z_um)
    for name, value in (
        ("center_z_um", center),
        ("range_um", request.range_um),
        ("tolerance_um", request.tolerance_um),
    ):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if request.range_um <= 0 or request.tolerance_um <= 0:
        raise ValueError("range_um and tolerance_um must be positive")
    if request.tolerance_um > request.range_um / 2:
        raise ValueError(
            f"tolerance_um ({request.tolerance_um}) must be smaller than half of range_um "
            f"({request.range_um})"
        )
    lo, hi = center - request.range_um / 2, center + request.range_um / 2
    if not (limits.contains(lo) and limits.contains(hi)):
        raise LimitError(
            f"the search range {lo:.3f}..{hi:.3f} µm (center {center:.3f} ± "
            f"{request.range_um / 2:g} µm) leaves the Z limits [{limits.min_um}, "
            f"{limits.max_um}] µm; the stage was not moved"
        )
    return SearchSpace(
        center_z_um=center,
        range_um=float(request.range_um),
        z_min_um=limits.min_um,
        z_max_um=limits.max_um,
        tolerance_um=float(request.tolerance_um),
        coarse_step_um=request.coarse_step_um,
        max_frames=int(request.max_frames),
    )


def focus(
    microscope: Microscope,
    request: FocusRequest | None = None,
    *,
    scorer: Scorer | str | None = None,
    cancel: threading.Event | None = None,
    on_measure: MeasureCallback | None = None,
    **overrides: Any,
) -> FocusResult:
    """Focus `microscope` once and return the `FocusResult`.

    Pass a `FocusRequest` or its fields as keyword overrides
    (`focus(mic, range_um=40, scorer="vol")`). `scorer` may also be a ready
    `Scorer` object, to reuse a loaded model across runs. Raises before moving for invalid requests
    (see module docstring); never raises after the first move.
    """
    req = request or FocusRequest()
    if isinstance(scorer, str):
        overrides["scorer"], scorer = scorer, None
    if overrides:
        req = FocusRequest(**{**req.__dict__, **overrides})
    space = search_space(req, float(microscope.z_um), microscope.z_limits_um)
    scorer_obj = scorer or get_scorer(req.scorer, **req.scorer_options)
    strategy = make_strategy(req.strategy, space, **req.strategy_options)
    engine = Engine(
        microscope,
        scorer_obj,
        backlash_um=req.backlash_um,
        settle_s=req.settle_s,
        verify=req.verify,
    )
    # A driver may bracket a search (Micro-Manager: pause a locked hardware autofocus).
    session = getattr(microscope, "search_session", None)
    with session() if callable(session) else nullcontext():
        return engine.run(
            strategy,
            cancel=cancel,
            on_measure=on_measure,
            on_failure=req.on_failure,
            timeout_s=req.timeout_s,
            exposure_ms=req.exposure_ms,
        )
