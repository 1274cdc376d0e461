"""Search benchmark: strategies side by side on the same simulated focus trials.

Each trial is a seeded simulated microscope (specimen, modality, photon
budget) with its true focus offset from the start position by up to
`offset_frac` × half the search range. Every strategy runs the very same
trials through the real engine; a run succeeds when it reports success and
|physical stage position after parking − true focus| ≤ DOF/4 (the stage
reports commanded positions; with backlash the physical one differs).
Frames and hardware time (virtual clock: moves, settling, exposures) are
what a real stage and camera would spend.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from autofocus_drivers.sim import SimConfig, SimulatedMicroscope
from autofocus_drivers.sim.faults import FaultConfig

from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import get_scorer
from autofocus.search.focus import focus


@dataclass(frozen=True)
class Trial:
    """One simulated focus problem: specimen, modality, photon flux and start offset (µm).

    `debris_dz_um` puts a debris layer that far from the specimen plane (a
    rival peak); `garbage_snaps` are the 1-based camera snaps that return a
    corrupted frame (uniform random values); `hardware_profile` the simulated
    stage and camera speeds (`autofocus_drivers.sim.profiles`). With
    `prior_offset_um` the run is a revisit: `expected_z_um` that far from the true
    focus and `expected_sigma_um` = `prior_sigma_dof` DOF.
    """

    seed: int
    specimen: str
    modality: str
    photons_per_px_ms: float
    offset_um: float
    debris_dz_um: float | None = None
    garbage_snaps: tuple[int, ...] = ()
    hardware_profile: str = "default"
    prior_offset_um: float | None = None
    prior_sigma_dof: float = 1.0


@dataclass(frozen=True)
class Contender:
    """A strategy under test: registry `strategy` name, options, and a label for the table.

    `options` (the strategy's own) may depend on the depth of field, so it is a
    function of DOF (µm); `request` holds `FocusRequest` fields the contender
    sets (e.g. `rival_check`, which the search space checks, not the strategy).
    """

    label: str
    strategy: str
    options: Callable[[float], dict[str, Any]]
    request: dict[str, Any] = dataclasses.field(default_factory=dict)


def default_contenders() -> list[Contender]:
    """The default strategy and the baselines named in the benchmark's definition."""
    return [
        Contender("guided (default, rival_check full)", "guided", lambda dof: {}),
        Contender(
            "guided, rival_check capture", "guided", lambda dof: {},
            request={"rival_check": "capture"},
        ),
        Contender("coarse-fine (previous default)", "coarse-fine", lambda dof: {}),
        Contender("sweep @ DOF/2 (exhaustive)", "sweep", lambda dof: {"step_um": dof / 2}),
        Contender("OughtaFocus defaults (10 µm, 1 µm)", "oughtafocus", lambda dof: {}),
        Contender(
            "OughtaFocus full range, DOF/4",
            "oughtafocus",
            lambda dof: {"search_range_um": None, "tolerance_um": None},
        ),
        Contender("JAF grid (3×2 µm, 11×0.2 µm)", "jaf", lambda dof: {}),
    ]


def make_trials(
    n_per_case: int = 5,
    *,
    range_um: float = 50.0,
    offset_frac: float = 0.9,
    specimens: Sequence[str] = ("beads", "cells", "fibres"),
    modalities: Sequence[str] = ("fluorescence",),
    photon_levels: Sequence[float] = (50.0, 10.0),
    seed: int = 0,
) -> list[Trial]:
    """Trials covering every specimen × modality × photon level, `n_per_case` offsets each.

    Offsets are uniform in ±`offset_frac` × range/2 (seeded).
    """
    rng = np.random.default_rng(seed)
    trials = []
    k = 0
    for specimen in specimens:
        for modality in modalities:
            for photons in photon_levels:
                for _ in range(n_per_case):
                    offset = float(rng.uniform(-1, 1) * offset_frac * range_um / 2)
                    trials.append(Trial(1000 + k, specimen, modality, photons, offset))
                    k += 1
    return trials


def trial_config(trial: Trial, *, start_z_um: float = 0.0) -> SimConfig:
    """The simulated microscope of `trial` (Gaussian camera noise: fast, same variance)."""
    config = SimConfig.preset(
        trial.specimen,
        trial.modality,
        photons_per_px_ms=trial.photons_per_px_ms,
        focus_z_um=start_z_um + trial.offset_um,
        noise_model="gaussian",  # same mean and variance as Poisson, 3-10x faster to render
        debris_dz_um=trial.debris_dz_um,
        hardware_profile=trial.hardware_profile,
    )
    if trial.garbage_snaps:
        config = dataclasses.replace(
            config, faults=FaultConfig(garbage_frame=frozenset(trial.garbage_snaps))
        )
    return config


def run_trial(
    trial: Trial, contender: Contender, scorer: Scorer, *, range_um: float
) -> dict[str, Any]:
    """Run one contender on one trial; return success, error, frames, confidence, reason code."""
    start_z_um = 0.0
    config = trial_config(trial, start_z_um=start_z_um)
    mic = SimulatedMicroscope(config, seed=trial.seed)
    dof = config.optics.depth_of_field_um
    tol = dof / 4
    prior: dict[str, float] = {}
    if trial.prior_offset_um is not None:
        prior = {"expected_z_um": mic.true_focus_z_um() + trial.prior_offset_um,
                 "expected_sigma_um": trial.prior_sigma_dof * dof}
    result = focus(
        mic,
        scorer=scorer,
        strategy=contender.strategy,
        strategy_options=contender.options(dof),
        **contender.request,
        center_z_um=start_z_um,
        range_um=range_um,
        tolerance_um=tol,
        max_frames=400,
        timeout_s=None,
        **prior,
    )
    truth = mic.true_focus_z_um()
    # Judge where the specimen really is: after parking, the stage's physical position
    # (the reported one differs by the backlash offset of a one-sided approach).
    if result.success:
        error: float | None = mic.physical_z_um - truth
    else:
        error = None if result.best_z_um is None else result.best_z_um - truth
    ok = bool(result.success and error is not None and abs(error) <= tol)
    return {
        "success": ok,
        "reported_success": result.success,
        "error_um": error,
        "frames": result.frames,
        "hardware_s": result.timing.hardware_s,
        "dof_um": dof,
        "confidence": result.confidence,
        "reason_code": result.reason_code,
        "details": {
            k: result.details.get(k) for k in ("candidates", "rivals") if k in result.details
        },
    }


def summarize(runs: Sequence[dict[str, Any]], strategy: str) -> dict[str, Any]:
    """Success rate, frames, hardware time, errors and failure codes of a set of runs."""
    errors = [abs(r["error_um"]) for r in runs if r["error_um"] is not None]
    dof = runs[0]["dof_um"] if runs else math.nan
    codes: dict[str, int] = {}
    for r in runs:
        if not r["reported_success"]:
            key = r.get("reason_code") or "unknown"
            codes[key] = codes.get(key, 0) + 1
    off_plane = [
        r for r in runs
        if r["reported_success"] and r["error_um"] is not None and abs(r["error_um"]) > dof / 2
    ]
    return {
        "strategy": strategy,
        "trials": len(runs),
        "success_rate": sum(r["success"] for r in runs) / len(runs) if runs else math.nan,
        "reported_success_rate": (
            sum(r["reported_success"] for r in runs) / len(runs) if runs else math.nan
        ),
        "wrong_successes": len(off_plane),
        "mean_frames": statistics.fmean(r["frames"] for r in runs) if runs else math.nan,
        "max_frames": max(r["frames"] for r in runs) if runs else 0,
        "mean_hardware_s": statistics.fmean(r["hardware_s"] for r in runs) if runs else math.nan,
        "median_abs_error_um": statistics.median(errors) if errors else math.nan,
        "failure_codes": codes,
        "runs": list(runs),
    }


def calibration_table(
    runs: Sequence[dict[str, Any]], edges: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 1.0001)
) -> list[dict[str, Any]]:
    """Reported successes binned by confidence: how often each bin was within DOF/4.

    One row per bin [lo, hi): n, within (count), rate. A calibrated
    confidence has rate ≥ 0.99 in the bins at and above 0.9.
    """
    rows = []
    succ = [r for r in runs if r["reported_success"]]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = [r for r in succ if lo <= r["confidence"] < hi]
        within = sum(r["success"] for r in inside)
        rows.append({
            "confidence_from": lo,
            "confidence_to": min(hi, 1.0),
            "n": len(inside),
            "within_tolerance": within,
            "rate": within / len(inside) if inside else None,
        })
    high = [r for r in succ if r["confidence"] >= 0.9]
    rows.append({
        "confidence_from": 0.9,
        "confidence_to": 1.0,
        "n": len(high),
        "within_tolerance": sum(r["success"] for r in high),
        "rate": sum(r["success"] for r in high) / len(high) if high else None,
        "summary": True,
    })
    return rows


def run_benchmark(
    trials: Sequence[Trial],
    contenders: Sequence[Contender] | None = None,
    *,
    scorer_name: str = "tenengrad",
    range_um: float = 50.0,
    progress: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run every contender on every trial; return a summary per contender and the raw runs."""
    contenders = list(contenders or default_contenders())
    scorer = get_scorer(scorer_name)
    summary: dict[str, Any] = {}
    for c in contenders:
        runs = []
        for t in trials:
            runs.append(run_trial(t, c, scorer, range_um=range_um))
            if progress is not None:
                progress()
        summary[c.label] = summarize(runs, c.strategy)
    return {
        "scorer": scorer_name,
        "range_um": range_um,
        "trials": len(trials),
        "dof_um": summary[contenders[0].label]["runs"][0]["dof_um"] if trials else None,
        "contenders": summary,
    }


# -- the named cases of `autofocus bench search --case ...` -----------------------------------

def debris_trials(n: int = 50, *, range_um: float = 50.0, seed: int = 0) -> list[Trial]:
    """`n` trials with a debris layer 10–20 µm from the specimen (either side), both in range.

    The specimen's focus offset is drawn so that specimen and debris both lie
    within ±0.9 × range/2 of the start.
    """
    rng = np.random.default_rng(seed + 101)
    kinds = ("beads", "cells", "fibres")
    half = 0.9 * range_um / 2
    out = []
    for k in range(n):
        dz = float(rng.uniform(10.0, 20.0)) * (1 if rng.random() < 0.5 else -1)
        lo, hi = max(-half, -half - dz), min(half, half - dz)
        offset = float(rng.uniform(lo, hi))
        out.append(Trial(2000 + k, kinds[k % 3], "fluorescence", (50.0, 10.0)[k % 2], offset,
                         debris_dz_um=dz))
    return out


def garbage_trials(n: int = 100, *, range_um: float = 50.0, seed: int = 0) -> list[Trial]:
    """`n` trials with 2–5 corrupted frames at random snaps among the first 14."""
    rng = np.random.default_rng(seed + 202)
    kinds = ("beads", "cells", "fibres")
    out = []
    for k in range(n):
        m = int(rng.integers(2, 6))
        snaps = tuple(sorted(int(v) for v in rng.choice(np.arange(1, 15), m, replace=False)))
        offset = float(rng.uniform(-1, 1) * 0.9 * range_um / 2)
        out.append(Trial(3000 + k, kinds[k % 3], "fluorescence", (50.0, 10.0)[k % 2], offset,
                         garbage_snaps=snaps))
    return out


def prior_trials(n_per_case: int = 20, *, range_um: float = 50.0, far_um: float | None = None,
                 seed: int = 0) -> list[Trial]:
    """The `main` trials as revisits: a prior σ = 1 DOF drawn from N(focus, σ²), or with
    `far_um` a prior that far from focus (towards the range's centre, nothing there)."""
    from autofocus_drivers.sim.optics import Optics

    dof = Optics().depth_of_field_um
    rng = np.random.default_rng(seed + 404)
    out = []
    for t in make_trials(n_per_case, range_um=range_um, seed=seed):
        if far_um is None:
            offset = float(rng.normal(0.0, dof))
        else:
            offset = -far_um if t.offset_um > 0 else far_um
        out.append(dataclasses.replace(t, prior_offset_um=offset))
    return out


def run_tracking(
    *,
    points: int = 100,
    specimen: str = "cells",
    photons_per_px_ms: float = 50.0,
    drift_dof: tuple[float, float] = (0.1, 1.0),
    scorer_name: str = "tenengrad",
    seed: int = 0,
    hardware_profile: str = "default",
) -> dict[str, Any]:
    """Time-lapse tracking: `points` time points, focus drifting 0.1–1 DOF between them.

    The first point runs a full search; each later one a `mode="track"` focus
    from where the last one parked. Drift is the specimen's own (the
    simulator's drift rate times a random wait between points), so it also
    moves during each search. Success per point: |physical z − true focus| ≤ DOF/4.
    """
    from autofocus.search.focus import focus as run_focus

    rng = np.random.default_rng(seed + 303)
    rate_um_per_s = 0.02
    config = SimConfig.preset(
        specimen, "fluorescence", photons_per_px_ms=photons_per_px_ms, focus_z_um=3.0,
        noise_model="gaussian", drift_um_per_s=rate_um_per_s,
        hardware_profile=hardware_profile,
    )
    dof = config.optics.depth_of_field_um
    scorer = get_scorer(scorer_name)
    mic = SimulatedMicroscope(config, seed=4000 + seed)
    first = run_focus(mic, scorer=scorer, strategy="guided", center_z_um=0.0, range_um=50.0,
                      tolerance_um=dof / 4, timeout_s=None)
    rows = []
    history = [mic.z_um]
    for _ in range(points):
        # The specimen drifts at a fixed rate; a random wait between points gives a random
        # drift of 0.1–1 DOF (thermal drift keeps its direction).
        step = float(rng.uniform(*drift_dof)) * dof
        mic.clock.sleep_s(step / rate_um_per_s)
        # What a time-lapse client does: predict the next focus from the last two
        # (constant drift), at most one DOF ahead.
        expected = history[-1]
        if len(history) >= 2:
            expected += float(np.clip(history[-1] - history[-2], -dof, dof))
        r = run_focus(mic, scorer=scorer, mode="track", range_um=50.0, tolerance_um=dof / 4,
                      timeout_s=None, expected_z_um=expected)
        if r.success:
            history.append(float(mic.z_um))
        err = mic.physical_z_um - mic.true_focus_z_um() if r.success else None
        rows.append({
            "success": bool(r.success and err is not None and abs(err) <= dof / 4),
            "reported_success": r.success,
            "error_um": err,
            "frames": r.frames,
            "fallback": r.details.get("track_fallback"),
            "confidence": r.confidence,
            "reason_code": r.reason_code,
            "dof_um": dof,
            "hardware_s": r.timing.hardware_s,
        })
    tracked = [r for r in rows if not r["fallback"]]
    return {
        "first_search": {"success": first.success, "frames": first.frames},
        "points": len(rows),
        "success_rate": sum(r["success"] for r in rows) / len(rows),
        "mean_frames": statistics.fmean(r["frames"] for r in rows),
        "mean_hardware_s": statistics.fmean(r["hardware_s"] for r in rows),
        "max_frames": max(r["frames"] for r in rows),
        "max_frames_tracked": max((r["frames"] for r in tracked), default=0),
        "fallbacks": len(rows) - len(tracked),
        "dof_um": dof,
        "specimen": specimen,
        "photons_per_px_ms": photons_per_px_ms,
        "runs": rows,
    }
