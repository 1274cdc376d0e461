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
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from autofocus_drivers.base import Microscope, ZLimits

from autofocus.errors import LimitError
from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import get_scorer
from autofocus.search.engine import Engine, MeasureCallback, OnFailure
from autofocus.search.result import FocusResult
from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.registry import DEFAULT_STRATEGY, make_strategy

DEFAULT_TOLERANCE_UM = 0.5
"""The tolerance (µm) when none is given and the depth of field is unknown."""


@dataclass
class FocusRequest:
    """Parameters of one focus run, in micrometres, milliseconds and seconds.

    `center_z_um` None means "where the stage is now". `range_um` is the full
    width searched (center ± range/2). `tolerance_um` is the accuracy wanted
    (None: a quarter of the depth of field where the optics are known, from
    `dof_um` or the microscope, else `DEFAULT_TOLERANCE_UM`);
    `coarse_step_um` the spacing of a coarse sweep (default: from the strategy).
    `mode` "search" (default: the request's strategy) or "track" (time-lapse:
    three frames around the current z, a full search only when focus drifted
    more than about one DOF; the strategy is then `track`). `rival` what to do
    when the curve holds two candidate focal planes:
    "fail" (default), "nearest" (to `expected_z_um`, else the start) or
    "sharpest"; `rival_check` "full" (default: the whole range sampled finely
    enough to see a dim specimen under bright debris; about range / 3 DOF more
    frames) or "capture" (only rivals the coarse pass can see: fewer frames,
    for specimens known to be free of debris). `dof_um`
    the depth of field (default: what the microscope reports, else 4 ×
    tolerance). `edge_extension_um` how far beyond an end of
    the range a strategy may follow a peak found at that end (default a
    quarter of the range; always inside the Z limits). `expected_sigma_um`
    with `expected_z_um` is a prior for a revisit (the position's last focus,
    a focus map's prediction): `guided` searches near it first and confines
    its rival check to expected_z_um ± 3σ plus the peak's width (stated in
    `details["prior"]`), and falls back to the blind search when no plane is
    near. Without it `expected_z_um` keeps its meaning (track centre,
    reference of `rival: nearest`). `stream` when to take a batch as one
    streamed Z sweep ("sequenced": only on hardware-sequenced stages; "always";
    "off"; see `Engine`). `overshoot_um` how far
    below every target the stage goes first, so each position is approached from
    below and the stage's play lands the same way (formerly `backlash_um`, still
    accepted as a deprecated alias: "backlash" is the stage's play itself).
    """

    scorer: str = "tenengrad"
    strategy: str = DEFAULT_STRATEGY
    center_z_um: float | None = None
    range_um: float = 50.0
    tolerance_um: float | None = None
    coarse_step_um: float | None = None
    max_frames: int = 60
    exposure_ms: float | None = None
    timeout_s: float | None = 120.0
    on_failure: OnFailure = "return"
    overshoot_um: float = 5.0
    settle_s: float = 0.0
    verify: bool = True
    scorer_options: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    rival: str = "fail"
    rival_check: str = "full"
    mode: str = "search"
    expected_z_um: float | None = None
    expected_sigma_um: float | None = None
    dof_um: float | None = None
    edge_extension_um: float | None = None
    stream: str = "sequenced"


_dataclass_init = FocusRequest.__init__


def _init_with_deprecated_alias(
    self: FocusRequest, *args: Any, backlash_um: float | None = None, **kwargs: Any
) -> None:
    """`FocusRequest(backlash_um=...)`: deprecated alias of `overshoot_um`."""
    if backlash_um is not None:
        warnings.warn(
            "FocusRequest(backlash_um=...) is deprecated: it is the approach overshoot, not "
            "the stage's play; use overshoot_um", DeprecationWarning, stacklevel=2,
        )
        if "overshoot_um" in kwargs and kwargs["overshoot_um"] != backlash_um:
            raise TypeError("give overshoot_um or its deprecated alias backlash_um, not both")
        kwargs["overshoot_um"] = float(backlash_um)
    _dataclass_init(self, *args, **kwargs)


def _get_backlash_um(self: FocusRequest) -> float:
    warnings.warn("FocusRequest.backlash_um is deprecated: use overshoot_um",
                  DeprecationWarning, stacklevel=2)
    return self.overshoot_um


def _set_backlash_um(self: FocusRequest, value: float) -> None:
    warnings.warn("FocusRequest.backlash_um is deprecated: use overshoot_um",
                  DeprecationWarning, stacklevel=2)
    self.overshoot_um = float(value)


# The old name stays accepted by the constructor and readable/writable on instances; it
# is no dataclass field, so `replace()` and `fields()` see only `overshoot_um`.
FocusRequest.__init__ = _init_with_deprecated_alias  # type: ignore[method-assign]
FocusRequest.backlash_um = property(_get_backlash_um, _set_backlash_um)  # type: ignore[attr-defined]


def microscope_dof_um(microscope: object) -> float | None:
    """The depth of field (µm) a microscope reports (`depth_of_field_um`), or None."""
    try:
        value = getattr(microscope, "depth_of_field_um", None)
        value = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def microscope_planes_um(microscope: object) -> tuple[float, ...] | None:
    """The discrete Z planes a microscope serves (`plane_positions_um`: a replayed stack).

    None when any position gives its own frame.
    """
    planes = getattr(microscope, "plane_positions_um", None)
    return tuple(float(p) for p in planes) if planes else None


def search_space(
    request: FocusRequest,
    current_z_um: float,
    limits: ZLimits,
    *,
    dof_um: float | None = None,
    planes_um: tuple[float, ...] | None = None,
) -> SearchSpace:
    """The `SearchSpace` of `request` on a stage at `current_z_um` with `limits`.

    Raises `LimitError` when the requested interval is not entirely inside the
    limits (the microscopist asked for something the stage must not do) and
    `ValueError` for non-positive or non-finite numbers.
    """
    center = current_z_um if request.center_z_um is None else float(request.center_z_um)
    known_dof = request.dof_um if request.dof_um is not None else dof_um
    tolerance = request.tolerance_um
    if tolerance is None:
        # The optics set the scale: a quarter of the depth of field where it is known.
        known = known_dof is not None and math.isfinite(known_dof) and known_dof > 0
        tolerance = 0.25 * float(known_dof) if known else DEFAULT_TOLERANCE_UM
        tolerance = min(tolerance, request.range_um / 4) if request.range_um > 0 else tolerance
    for name, value in (
        ("center_z_um", center),
        ("range_um", request.range_um),
        ("tolerance_um", tolerance),
    ):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if request.range_um <= 0 or tolerance <= 0:
        raise ValueError("range_um and tolerance_um must be positive")
    if tolerance > request.range_um / 2:
        raise ValueError(
            f"tolerance_um ({tolerance}) must be smaller than half of range_um "
            f"({request.range_um})"
        )
    lo, hi = center - request.range_um / 2, center + request.range_um / 2
    if not (limits.contains(lo) and limits.contains(hi)):
        raise LimitError(
            f"the search range {lo:.3f}..{hi:.3f} µm (center {center:.3f} ± "
            f"{request.range_um / 2:g} µm) leaves the Z limits [{limits.min_um}, "
            f"{limits.max_um}] µm; the stage was not moved"
        )
    for name, opt in (
        ("expected_z_um", request.expected_z_um),
        ("expected_sigma_um", request.expected_sigma_um),
        ("dof_um", request.dof_um),
        ("edge_extension_um", request.edge_extension_um),
    ):
        if opt is not None and not math.isfinite(opt):
            raise ValueError(f"{name} must be a finite number, got {opt}")
    if request.dof_um is not None and request.dof_um <= 0:
        raise ValueError(f"dof_um must be positive, got {request.dof_um}")
    if request.edge_extension_um is not None and request.edge_extension_um < 0:
        raise ValueError(f"edge_extension_um must be ≥ 0, got {request.edge_extension_um}")
    if request.mode not in ("search", "track"):
        raise ValueError(f"mode must be 'search' or 'track', got {request.mode!r}")
    # rival and rival_check are checked by SearchSpace itself.
    ext = request.edge_extension_um
    return SearchSpace(
        center_z_um=center,
        range_um=float(request.range_um),
        z_min_um=limits.min_um,
        z_max_um=limits.max_um,
        tolerance_um=float(tolerance),
        coarse_step_um=request.coarse_step_um,
        max_frames=int(request.max_frames),
        dof_um=known_dof,
        edge_extension_um=0.25 * float(request.range_um) if ext is None else float(ext),
        planes_um=planes_um,
        rival=request.rival,
        reference_z_um=request.expected_z_um,
        rival_check=request.rival_check,
        prior_sigma_um=request.expected_sigma_um,
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
    space = search_space(
        req,
        float(microscope.z_um),
        microscope.z_limits_um,
        dof_um=microscope_dof_um(microscope),
        planes_um=microscope_planes_um(microscope),
    )
    scorer_obj = scorer or get_scorer(req.scorer, **req.scorer_options)
    name = "track" if req.mode == "track" else req.strategy
    strategy = make_strategy(name, space, **req.strategy_options)
    engine = Engine(
        microscope,
        scorer_obj,
        backlash_um=req.overshoot_um,  # the Engine's name for the approach overshoot
        settle_s=req.settle_s,
        verify=req.verify,
        dof_um=space.dof_um,
        stream=req.stream,  # type: ignore[arg-type]
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
