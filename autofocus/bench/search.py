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

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import get_scorer
from autofocus.search.focus import focus
from drivers.sim import SimConfig, SimulatedMicroscope


@dataclass(frozen=True)
class Trial:
    """One simulated focus problem: specimen, modality, photon flux and start offset (µm)."""

    seed: int
    specimen: str
    modality: str
    photons_per_px_ms: float
    offset_um: float


@dataclass(frozen=True)
class Contender:
    """A strategy under test: registry `strategy` name, options, and a label for the table.

    `options` may depend on the depth of field, so it is a function of DOF (µm).
    """

    label: str
    strategy: str
    options: Callable[[float], dict[str, Any]]


def default_contenders() -> list[Contender]:
    """The default strategy and the baselines named in the benchmark's definition."""
    return [
        Contender("coarse-fine (default)", "coarse-fine", lambda dof: {}),
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


def run_trial(
    trial: Trial, contender: Contender, scorer: Scorer, *, range_um: float
) -> dict[str, Any]:
    """Run one contender on one trial; return success, error, frames and hardware time."""
    start_z_um = 0.0
    config = SimConfig.preset(
        trial.specimen,
        trial.modality,
        photons_per_px_ms=trial.photons_per_px_ms,
        focus_z_um=start_z_um + trial.offset_um,
        noise_model="gaussian",  # same mean and variance as Poisson, 3-10x faster to render
    )
    mic = SimulatedMicroscope(config, seed=trial.seed)
    dof = config.optics.depth_of_field_um
    tol = dof / 4
    result = focus(
        mic,
        scorer=scorer,
        strategy=contender.strategy,
        strategy_options=contender.options(dof),
        center_z_um=start_z_um,
        range_um=range_um,
        tolerance_um=tol,
        max_frames=400,
        timeout_s=None,
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
    }


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
        errors = [abs(r["error_um"]) for r in runs if r["error_um"] is not None]
        summary[c.label] = {
            "strategy": c.strategy,
            "trials": len(runs),
            "success_rate": sum(r["success"] for r in runs) / len(runs),
            "mean_frames": statistics.fmean(r["frames"] for r in runs),
            "max_frames": max(r["frames"] for r in runs),
            "mean_hardware_s": statistics.fmean(r["hardware_s"] for r in runs),
            "median_abs_error_um": statistics.median(errors) if errors else math.nan,
            "runs": runs,
        }
    return {
        "scorer": scorer_name,
        "range_um": range_um,
        "trials": len(trials),
        "dof_um": summary[contenders[0].label]["runs"][0]["dof_um"] if trials else None,
        "contenders": summary,
    }
