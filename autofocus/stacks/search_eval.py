"""Measure search strategies on recorded z-stacks: `autofocus eval DIR --search`.

For every labelled stack of a corpus (a folder with a `manifest.csv`, as in
`shared/data/real`), `evaluate_search` replays the stack as a microscope
(`autofocus_drivers.replay.ReplayMicroscope`) and runs each strategy through the real
engine (`autofocus.search.focus.focus`) from several start positions — by default the
bottom, the middle and the top of the stack. Each run is judged against the
label:

* `success`: the search succeeded and |best z − label| ≤ the manifest's
  tolerance (the same rule as the exhaustive result);
* `plane_success`: the plane the replay serves at the chosen z is within
  tolerance of the label — on sparse, irregular stacks a chosen z between two
  planes can be "wrong" by the strict rule while the image there is the
  in-focus plane;
* `frames`: frames acquired, including the engine's verification frame.

Next to the runs stands the exhaustive result with the same scorer: every
plane scored, the sharpest chosen (`autofocus.stacks.evaluation.judge_curve`).

By default every search is centred on the middle of the stack and covers the
whole recorded range; the start position is only where the stage is before
the run (it matters to strategies that start from the current z). Recorded
stacks are usually centred on focus, which flatters any search centred on the
middle (a strategy that returned the centre would look perfect), so `windows`
can add searches over the lower or upper `WINDOW_FRACTION` of the stack,
where focus lies off-centre. The tolerance and coarse step come from the
plane spacing (`autofocus.stacks.replay.replay_request`). Each stack is read
once.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from autofocus_drivers.replay import ReplayMicroscope

from autofocus.scoring.registry import canonical_scorer_name, get_scorer
from autofocus.search.focus import FocusRequest, focus
from autofocus.search.strategies.registry import DEFAULT_STRATEGY, canonical_strategy_name
from autofocus.stacks.evaluation import judge_curve, scorer_label
from autofocus.stacks.readers import iter_corpus
from autofocus.stacks.replay import load_planes, replay_from_stack, replay_request

DEFAULT_STARTS: tuple[str, ...] = ("low", "middle", "high")
"""Start positions: the bottom, the middle and the top of the searched interval."""

WINDOWS: tuple[str, ...] = ("full", "low", "high")
"""Searched intervals: the whole stack, its lower or its upper `WINDOW_FRACTION`."""

WINDOW_FRACTION = 2.0 / 3.0

ProgressCallback = Callable[[str, int, int], None]
"""`progress(stack_name, stacks_done, stacks_total)`; called with ("", 0, total) first."""

# Manifest z values are decimal strings: compare errors with a little slack.
_TOL_SLACK_UM = 1e-9


def window_um(mic: ReplayMicroscope, window: str) -> tuple[float, float]:
    """The interval (lo, hi) in µm searched for `window`: "full", "low" or "high".

    "low"/"high" are the lower/upper `WINDOW_FRACTION` of the recorded range.
    Raises `ValueError` for another name.
    """
    limits = mic.z_limits_um
    lo, hi = limits.min_um, limits.max_um
    width = WINDOW_FRACTION * (hi - lo)
    if window == "full":
        return lo, hi
    if window == "low":
        return lo, lo + width
    if window == "high":
        return hi - width, hi
    raise ValueError(f"unknown window {window!r}; use {', '.join(WINDOWS)}")


def start_position_um(
    mic: ReplayMicroscope, start: str | float, interval_um: tuple[float, float] | None = None
) -> float:
    """The stage position (µm) named by `start`: "low", "middle", "high" or a number.

    Names refer to `interval_um` (default: the whole stack). Raises
    `ValueError` for an unknown name and `LimitError` for a number outside the
    stack.
    """
    limits = mic.z_limits_um
    lo, hi = interval_um if interval_um is not None else (limits.min_um, limits.max_um)
    if isinstance(start, str):
        named = {"low": lo, "middle": 0.5 * (lo + hi), "high": hi}
        if start not in named:
            raise ValueError(f"unknown start {start!r}; use low, middle, high or a z in µm")
        return float(named[start])
    limits.check(float(start))
    return float(start)


def evaluate_search(
    directory: str | Path,
    strategies: Sequence[str] | None = None,
    *,
    scorer: str = "tenengrad",
    starts: Sequence[str | float] = DEFAULT_STARTS,
    windows: Sequence[str] = ("full",),
    stacks: Sequence[str] | None = None,
    request_options: Mapping[str, Any] | None = None,
    replay_options: Mapping[str, Any] | None = None,
    scorer_options: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run each strategy from each start on every labelled stack of `directory`; judge them.

    `strategies` are registered names or aliases (default: the default
    strategy); `scorer` names the scorer used for the searches and for the
    exhaustive best plane; `starts` are "low", "middle", "high" (of the
    searched interval) or z values in µm; `windows` are the intervals searched
    ("full", "low", "high"; see `window_um`). `stacks` restricts the run to
    those stack names. `request_options` override `FocusRequest` fields (e.g.
    `{"max_frames": 40}`, or a fixed `tolerance_um`); `replay_options` go to
    `ReplayMicroscope` (e.g. `{"noise_sigma": 0.02, "blend": True}`; the seed
    is offset per run).

    Returns plain JSON types: `{"corpus", "scorer", "strategies", "starts",
    "windows", "stacks": [{stack, planes, regular, spacing_um, z_min_um,
    z_max_um, best_z_um, tolerance_um, request (of the full window),
    exhaustive: {z_um, error_um, success, frames}, runs: [{strategy, window,
    lo_um, hi_um, start, start_z_um, found, best_z_um, error_um,
    plane_z_um, plane_error_um, success, plane_success, final_z_um, frames,
    hardware_s, elapsed_s, reason}]}], "skipped": [unlabelled stack names], "summary":
    {strategy: {...}}}` (see `summarise_runs`). Raises `UnknownNameError` for
    an unknown strategy or scorer before any image is read, `StackError` for an
    unreadable or unusable stack (naming the file), `ValueError` for a corpus
    without labelled stacks, an unknown stack name, or a bad start or window.
    """
    names = _canonical_strategies(strategies)
    scorer_name = canonical_scorer_name(scorer)
    scorer_obj = get_scorer(scorer_name, **dict(scorer_options or {}))
    for s in starts:
        if isinstance(s, str) and s not in DEFAULT_STARTS:
            raise ValueError(f"unknown start {s!r}; use low, middle, high or a z in µm")
    for w in windows:
        if w not in WINDOWS:
            raise ValueError(f"unknown window {w!r}; use {', '.join(WINDOWS)}")
    wanted = set(stacks) if stacks is not None else None

    corpus = []
    skipped: list[str] = []
    for stack, label in iter_corpus(directory):
        if wanted is not None and stack.name not in wanted:
            continue
        if label is None or not label.labelled:
            skipped.append(stack.name)
            continue
        corpus.append((stack, label))
    if wanted is not None and (missing := wanted - {s.name for s, _ in corpus} - set(skipped)):
        raise ValueError(f"no stack named {', '.join(sorted(missing))} in {directory}")
    if not corpus:
        raise ValueError(f"{directory} holds no labelled stack (manifest best_z_um/tolerance_um)")
    # Check every stack (plane count, distinct z, sizes from the file headers) before the
    # first search, so a bad stack stops the evaluation before any time is spent on it.
    for stack, _ in corpus:
        stack.validate(min_planes=2)

    total = len(corpus)
    if progress is not None:
        progress("", 0, total)
    entries: list[dict[str, Any]] = []
    for done, (stack, label) in enumerate(corpus, start=1):
        images = load_planes(stack)
        assert label.best_z_um is not None and label.tolerance_um is not None
        truth, tol = float(label.best_z_um), float(label.tolerance_um)
        probe = replay_from_stack(stack, images, label=label, **dict(replay_options or {}))
        fields = {**replay_request(probe, tolerance_um=tol), **dict(request_options or {})}
        scores = np.asarray(scorer_obj.score([probe.plane(i) for i in range(len(images))]))
        verdict = judge_curve(probe.plane_z_um, scores, truth, tol)
        entry: dict[str, Any] = {
            "stack": stack.name,
            "planes": probe.n_planes,
            "regular": probe.regular,
            "spacing_um": probe.plane_spacing_um,
            "z_min_um": probe.z_limits_um.min_um,
            "z_max_um": probe.z_limits_um.max_um,
            "best_z_um": truth,
            "tolerance_um": tol,
            "request": fields,
            "exhaustive": {
                "z_um": verdict["chosen_z_um"],
                "error_um": verdict["error_um"],
                "success": bool(verdict["within_tolerance"]),
                "frames": probe.n_planes,
            },
            "runs": [],
        }
        run_index = 0
        for name in names:
            for window in windows:
                interval = window_um(probe, window)
                win_fields = {
                    **replay_request(probe, tolerance_um=tol, lo_um=interval[0], hi_um=interval[1]),
                    **dict(request_options or {}),
                }
                for start in starts:
                    options = dict(replay_options or {})
                    options["seed"] = int(options.get("seed", 0)) + run_index
                    run_index += 1
                    mic = replay_from_stack(stack, images, label=label, **options)
                    try:
                        run = _run_one(
                            mic,
                            name,
                            start,
                            interval,
                            scorer_name,
                            scorer_obj,
                            win_fields,
                            truth,
                            tol,
                        )
                    finally:
                        mic.close()
                    entry["runs"].append({"window": window, **run})
        entries.append(entry)
        del images
        if progress is not None:
            progress(stack.name, done, total)
    return {
        "corpus": str(directory),
        "scorer": scorer_label(scorer_name, scorer_obj),
        "strategies": names,
        "starts": [s if isinstance(s, str) else float(s) for s in starts],
        "windows": list(windows),
        "stacks": entries,
        "skipped": skipped,
        "summary": {n: summarise_runs(entries, n) for n in names},
    }


def _canonical_strategies(strategies: Sequence[str] | None) -> list[str]:
    names: list[str] = []
    for s in strategies or [DEFAULT_STRATEGY]:
        key = canonical_strategy_name(s)
        if key not in names:
            names.append(key)
    return names


def _run_one(
    mic: ReplayMicroscope,
    strategy: str,
    start: str | float,
    interval_um: tuple[float, float],
    scorer_name: str,
    scorer_obj: Any,
    fields: Mapping[str, Any],
    truth: float,
    tol: float,
) -> dict[str, Any]:
    """One search on a fresh replay microscope, judged against the label."""
    z0 = start_position_um(mic, start, interval_um)
    mic.move_z(z0)
    request = FocusRequest(**{**fields, "scorer": scorer_name, "strategy": strategy})
    t0 = time.perf_counter()
    result = focus(mic, request, scorer=scorer_obj)
    elapsed_s = time.perf_counter() - t0
    best = result.best_z_um if result.success else None
    plane_z = None if best is None else float(mic.plane_z_um[mic.nearest_plane_index(best)])
    error = None if best is None else best - truth
    plane_error = None if plane_z is None else plane_z - truth
    # Frames that re-measured a plane already measured in this run (the verification
    # frame is a deliberate re-take and does not count).
    seen: set[int] = set()
    remeasured = 0
    for m in result.curve:
        k = mic.nearest_plane_index(m.z_um)
        remeasured += k in seen
        seen.add(k)
    return {
        "strategy": strategy,
        "lo_um": interval_um[0],
        "hi_um": interval_um[1],
        "start": start if isinstance(start, str) else float(start),
        "start_z_um": z0,
        "found": result.success,
        "best_z_um": best,
        "error_um": error,
        "plane_z_um": plane_z,
        "plane_error_um": plane_error,
        "success": error is not None and abs(error) <= tol + _TOL_SLACK_UM,
        "plane_success": plane_error is not None and abs(plane_error) <= tol + _TOL_SLACK_UM,
        "final_z_um": result.final_z_um,
        "frames": result.frames,
        "remeasured_planes": remeasured,
        "hardware_s": result.timing.hardware_s,
        "elapsed_s": elapsed_s,
        "reason": result.reason,
        "reason_code": result.reason_code,
    }


def summarise_runs(entries: Sequence[Mapping[str, Any]], strategy: str) -> dict[str, Any]:
    """Totals of one strategy over the stacks of an `evaluate_search` report.

    Returns `runs`, `successes`, `plane_successes`, `found` (searches that
    ended with a focus), `mean_frames`, `median_abs_error_um` and
    `max_abs_error_um` (over found runs; None when none), `remeasured_planes`
    (frames, verification excluded, that re-measured an already measured plane), `stacks_where_
    exhaustive_succeeds`, `successes_where_exhaustive_succeeds` and
    `runs_where_exhaustive_succeeds` (does the search match the exhaustive
    choice where that choice is right?), `regular_runs_fewer_frames`
    (runs on evenly spaced stacks that used fewer frames than the stack has
    planes) out of `regular_runs`, and `hardware_s` (mean per run).
    """
    runs = [(e, r) for e in entries for r in e["runs"] if r["strategy"] == strategy]
    errors = [abs(r["error_um"]) for _, r in runs if r["error_um"] is not None]
    ex_ok = [(e, r) for e, r in runs if e["exhaustive"]["success"]]
    regular = [(e, r) for e, r in runs if e["regular"]]
    return {
        "runs": len(runs),
        "successes": sum(r["success"] for _, r in runs),
        "plane_successes": sum(r["plane_success"] for _, r in runs),
        "found": sum(r["found"] for _, r in runs),
        "mean_frames": statistics.fmean(r["frames"] for _, r in runs) if runs else None,
        "remeasured_planes": sum(r.get("remeasured_planes", 0) for _, r in runs),
        "median_abs_error_um": statistics.median(errors) if errors else None,
        "max_abs_error_um": max(errors) if errors else None,
        "stacks_where_exhaustive_succeeds": sum(e["exhaustive"]["success"] for e in entries),
        "runs_where_exhaustive_succeeds": len(ex_ok),
        "successes_where_exhaustive_succeeds": sum(r["success"] for _, r in ex_ok),
        "regular_runs": len(regular),
        "regular_runs_fewer_frames": sum(r["frames"] < e["planes"] for e, r in regular),
        "hardware_s": statistics.fmean(r["hardware_s"] for _, r in runs) if runs else None,
    }


__all__ = [
    "DEFAULT_STARTS",
    "WINDOWS",
    "WINDOW_FRACTION",
    "window_um",
    "evaluate_search",
    "start_position_um",
    "summarise_runs",
]
