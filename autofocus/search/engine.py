"""The engine: the only place that talks to both the hardware and the scorer.

`Engine.run(strategy)` drives an ask/tell search strategy against a
`Microscope` and a `Scorer`. It owns the safety rules:

- every commanded Z lies within the microscope's Z limits (positions asked
  outside are clamped, and the clamp is reported);
- every position is approached from below (overshoot by `backlash_um`, itself
  clamped to the limits) so mechanical backlash always lands the same way; the
  overshoot is a waypoint (`move_z_waypoint` where the microscope offers it: no
  settling wait, nothing is imaged there), taken once per batch since a batch is
  one ascending pass;
- on failure, timeout or cancel the stage returns to where it started
  (`on_failure="return"`, the default) — the engine never leaves the stage
  somewhere surprising — and the run ends as a failed `FocusResult` with a
  plain-words reason: no exception escapes `run`.

A batch of at least `STREAM_MIN_FRAMES` positions on a microscope that streams Z
sweeps (`autofocus_drivers.base.ZSweep`) is one sweep: to its run-up from below,
then frames while Z moves (or steps, hardware-sequenced), every position recorded
and limit-checked first, with at most `STREAM_SMEAR_DOF` DOF of travel per
exposure. Within a batch of positions the engine acquires frames in ascending Z while a
worker thread scores the frames already acquired, so acquisition overlaps
scoring; every frame reaches `on_measure` as soon as its score is known (frames
go to the scorer one by one while it keeps up, in small batches when it is
busy). A frame that cannot be scored (blank, non-finite, a corrupted transfer:
`frames.frame_problem`) gets a NaN score. For strategies that want it the
engine also measures each frame's wide-capture score, and when the scorer
offers a defocus estimate it passes the batch's estimate to the strategy.
The verification frame at the chosen Z must itself be usable and consistent
with the curve; a bad one is re-taken once. A failed run carries a stable
`reason_code` (`autofocus.search.reasons.FailureReason`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
from autofocus_drivers.base import Microscope, sweep_of

from autofocus.errors import (
    AutofocusError,
    ImageError,
    LimitError,
    MicroscopeError,
    NoFocusSignal,
)
from autofocus.logging import get_logger
from autofocus.scoring.base import DefocusEstimate, DefocusEstimator, Scorer, offers_estimate
from autofocus.search.frames import capture_of_usable, capture_rel_noise, frame_problem
from autofocus.search.reasons import FailureReason
from autofocus.search.result import FocusResult, Measurement, Timing
from autofocus.search.strategies.base import SearchOutcome, Strategy
from autofocus.search.strategies.common import reason_code

log = get_logger("autofocus.search.engine")

OnFailure = Literal["return", "stay"]

# A batch this long is streamed when the microscope can (the coarse pass, the rival check).
STREAM_MIN_FRAMES = 4
# At most this many DOF of travel during one streamed exposure: a dim bead plane stands
# out of the noise only within about half a DOF of its peak, so the smear stays below it.
STREAM_SMEAR_DOF = 0.5
StreamPolicy = Literal["off", "sequenced", "always"]
STREAM_POLICIES: tuple[str, ...] = ("off", "sequenced", "always")
MeasureCallback = Callable[[Measurement], None]


class Cancelled(AutofocusError):
    """The run was cancelled by its caller."""


class FocusTimeout(AutofocusError):
    """The run took longer than its `timeout_s`."""


class SearchFailed(AutofocusError):
    """The search strategy ended without a trustworthy focus (reason in the message)."""


class VerificationFailed(AutofocusError):
    """The frame re-acquired at the chosen Z did not reproduce the sharpness measured there."""


class Engine:
    """Runs focus searches on one microscope with one scorer.

    `backlash_um` (≥ 0) is the overshoot used to approach every position from
    below; `settle_s` is an extra wait after each move (hardware clock);
    `verify` re-acquires one frame at the chosen Z and fails the run when its
    score falls below the middle of the measured curve (catches a garbage frame
    or a stage that did not go where it said). `score_batch` is the largest
    number of frames handed to the scorer at once. `stream` lets a batch of at
    least `STREAM_MIN_FRAMES` positions be taken as one streamed sweep when the
    microscope offers one (`autofocus_drivers.base.ZSweep`; needs `dof_um`):
    "sequenced" (default) only where the stage steps through the positions on the
    camera's trigger (`sweep_sequenced`), "always" also at constant speed (slower
    than stopping on the simulated `default` and `motorized` profiles: the smear
    limit caps the speed), "off" never.
    """

    def __init__(
        self,
        microscope: Microscope,
        scorer: Scorer,
        *,
        backlash_um: float = 5.0,
        settle_s: float = 0.0,
        verify: bool = True,
        score_batch: int = 8,
        dof_um: float | None = None,
        stream: StreamPolicy = "sequenced",
    ) -> None:
        if backlash_um < 0 or not math.isfinite(backlash_um):
            raise ValueError(f"backlash_um must be a finite number ≥ 0, got {backlash_um}")
        if settle_s < 0:
            raise ValueError(f"settle_s must be ≥ 0, got {settle_s}")
        self.microscope = microscope
        self.scorer = scorer
        self.backlash_um = float(backlash_um)
        self.settle_s = float(settle_s)
        self.verify = verify
        self.score_batch = max(1, int(score_batch))
        self.dof_um = dof_um
        if stream not in STREAM_POLICIES:
            raise ValueError(f"stream must be one of {STREAM_POLICIES}, got {stream!r}")
        self.stream: StreamPolicy = stream

    # ----------------------------------------------------------------- public

    def run(
        self,
        strategy: Strategy,
        *,
        cancel: threading.Event | None = None,
        on_measure: MeasureCallback | None = None,
        on_failure: OnFailure = "return",
        timeout_s: float | None = None,
        exposure_ms: float | None = None,
    ) -> FocusResult:
        """Run `strategy` to completion and park the stage at the best Z.

        `cancel` (set from another thread) stops the run between moves;
        `on_measure` is called with every `Measurement` as its score arrives;
        `timeout_s` bounds the run (wall time or hardware time, whichever is
        larger); `exposure_ms` sets the exposure for this run and restores the
        previous one afterwards. Never raises for hardware, scoring, cancel or
        timeout problems: they end as a failed `FocusResult`.
        """
        run = _Run(self, strategy, cancel, on_measure, timeout_s)
        return run.execute(on_failure=on_failure, exposure_ms=exposure_ms)


class _Run:
    """State of one engine run (kept off `Engine` so an engine can be reused)."""

    def __init__(
        self,
        engine: Engine,
        strategy: Strategy,
        cancel: threading.Event | None,
        on_measure: MeasureCallback | None,
        timeout_s: float | None,
    ) -> None:
        self.engine = engine
        self.mic = engine.microscope
        self.scorer = engine.scorer
        self.strategy = strategy
        self.cancel = cancel
        self.on_measure = on_measure
        self.timeout_s = timeout_s
        self.limits = self.mic.z_limits_um
        self.clock = self.mic.clock
        self.timing = Timing()
        self.curve: list[Measurement] = []
        self.commanded: list[float] = []
        self.clamped: list[tuple[float, float]] = []
        self.frames = 0
        self.t0_wall = time.perf_counter()
        self.t0_hw = self.clock.now_s()
        self.hw_wall_s = 0.0  # wall time spent inside hardware calls
        self.score_wall_s = 0.0
        self.unusable_frames = 0
        self.sweeps = 0
        self.wants_capture = False
        self.estimator: DefocusEstimator | None = None
        self.log = log.bind(strategy=strategy.name, scorer=self.scorer.name)

    # ------------------------------------------------------------- top level

    def execute(self, *, on_failure: OnFailure, exposure_ms: float | None) -> FocusResult:
        start_z_um = float("nan")
        outcome: SearchOutcome | None = None
        error: Exception | None = None
        final_z: float | None = None
        previous_exposure_ms: float | None = None
        try:
            start_z_um = float(self.mic.z_um)
            if not self.limits.contains(start_z_um):
                raise LimitError(
                    f"the stage is at z={start_z_um:.3f} µm, outside the configured limits "
                    f"[{self.limits.min_um}, {self.limits.max_um}] µm; refusing to search"
                )
            if exposure_ms is not None:
                previous_exposure_ms = float(self.mic.exposure_ms)
                self.mic.set_exposure_ms(exposure_ms)
            self.log.info("focus.start", start_z_um=start_z_um)
            outcome = self._search()
            if outcome.success and outcome.best_z_um is not None:
                self._park(outcome)
                final_z = float(self.mic.z_um)
            else:
                error = _outcome_error_class(outcome)(outcome.reason or "the search found no focus")
        except Exception as exc:  # noqa: BLE001 - every failure becomes a result
            error = exc
            if not isinstance(exc, MicroscopeError | AutofocusError):
                self.log.exception("focus.internal_error")
        finally:
            if previous_exposure_ms is not None:
                try:
                    self.mic.set_exposure_ms(previous_exposure_ms)
                except Exception as exc:  # noqa: BLE001
                    self.log.warning("focus.exposure_restore_failed", error=str(exc))
        if error is not None:
            final_z = self._recover(start_z_um, on_failure)
        return self._result(start_z_um, final_z, outcome, error)

    # ------------------------------------------------------------------ search

    def _search(self) -> SearchOutcome:
        strategy = self.strategy
        self.wants_capture = bool(getattr(strategy, "wants_capture", False))
        self.estimator = self.scorer if offers_estimate(self.scorer) else None
        # An estimator that can keep its scoring pass for the estimate runs its model once.
        self.score_fn = (getattr(self.scorer, "score_for_estimate", None)
                         if self.estimator is not None else None) or self.scorer.score
        observe = getattr(strategy, "observe", None)
        configure = getattr(strategy, "configure", None)
        if callable(configure):
            configure(estimates=self.estimator is not None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer") as pool:
            while not strategy.done:
                batch = [float(z) for z in strategy.ask()]
                if not batch:
                    break
                measured = self._measure_batch(batch, pool)
                if callable(observe):
                    observe(
                        measured.z_um,
                        capture=measured.capture if self.wants_capture else None,
                        capture_noise=measured.capture_noise if self.wants_capture else None,
                        estimate=measured.estimate,
                    )
                strategy.tell(measured.z_um, measured.scores)
        return strategy.outcome()

    def _measure_batch(self, batch: Sequence[float], pool: ThreadPoolExecutor) -> _Batch:
        """Acquire the batch in ascending Z while `pool` scores each frame as it arrives.

        Every frame is handed to the scorer as soon as it is acquired, and its
        `Measurement` reaches `on_measure` as soon as its score is known (in the
        order measured), so progress is live even for a long batch.
        """
        order = sorted(range(len(batch)), key=lambda i: batch[i])
        z_done = list(batch)
        out = _Batch(
            z_um=z_done,
            scores=[math.nan] * len(batch),
            capture=[math.nan] * len(batch),
            capture_noise=[math.nan] * len(batch),
        )
        futures: list[tuple[list[int], Future[tuple[np.ndarray, list[float], list[float]]]]] = []
        frames: list[np.ndarray] = []
        pending_idx: list[int] = []
        pending: list[np.ndarray] = []
        emitted = 0

        def submit() -> None:
            nonlocal pending_idx, pending
            if pending:
                futures.append((pending_idx, pool.submit(self._score, pending)))
                pending_idx, pending = [], []

        try:
            for i, z_i, frame in self._acquire(batch, order):
                z_done[i] = z_i
                self.frames += 1
                if self.estimator is not None:
                    frames.append(frame)
                pending_idx.append(i)
                pending.append(frame)
                # Hand frames to the scorer as soon as it is free (batched while it is busy).
                busy = bool(futures) and not futures[-1][1].done()
                if not busy or len(pending) >= self.engine.score_batch:
                    submit()
                emitted = self._emit_done(futures, emitted, out, block=False)
        finally:
            submit()
            emitted = self._emit_done(futures, emitted, out, block=True)
        # Only frames that could be scored are estimated: a corrupted transfer would feed
        # the model's distance and the signed V-fit a made-up reading.
        usable = [k for k, i in enumerate(order) if math.isfinite(out.scores[i])]
        if self.estimator is not None and usable:
            try:
                t = time.perf_counter()
                est = self.estimator.estimate([frames[k] for k in usable],
                                              [z_done[order[k]] for k in usable],
                                              dof_um=self.engine.dof_um)
                self.score_wall_s += time.perf_counter() - t
            except Exception as exc:  # noqa: BLE001 - an estimate is optional help
                self.log.warning("focus.estimate_failed", error=str(exc))
                out.estimate = None
            else:
                # Per usable frame in acquisition order; the strategy wants every asked
                # position in ask order (NaN where the frame was unusable).
                out.estimate = _estimate_by_ask(est, [order[k] for k in usable], len(batch))
        return out

    def _emit_done(
        self,
        futures: list[tuple[list[int], Future[tuple[np.ndarray, list[float], list[float]]]]],
        emitted: int,
        out: _Batch,
        *,
        block: bool,
    ) -> int:
        """Report scored chunks in acquisition order; returns how many chunks are reported."""
        while emitted < len(futures):
            idx, fut = futures[emitted]
            if not block and not fut.done():
                break
            scores, capture, noise = fut.result()
            for k, i in enumerate(idx):
                s = float(scores[k])
                out.scores[i], out.capture[i], out.capture_noise[i] = s, capture[k], noise[k]
                m = Measurement(
                    index=len(self.curve),
                    z_um=float(out.z_um[i]),
                    score=s,
                    t_s=self.clock.now_s() - self.t0_hw,
                )
                self.curve.append(m)
                self.log.debug("focus.measure", z_um=m.z_um, score=m.score)
                if self.on_measure is not None:
                    try:
                        self.on_measure(m)
                    except Exception as exc:  # noqa: BLE001 - a watcher must not kill the run
                        self.log.warning("focus.on_measure_failed", error=str(exc))
            emitted += 1
        return emitted

    def _score(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[float], list[float]]:
        """Score frames; unusable frames (blank, non-finite, corrupted) get NaN.

        Also returns each frame's wide-capture score and its relative noise
        (NaN unless the strategy asked for them).
        """
        t = time.perf_counter()
        problems = [frame_problem(f) for f in frames]
        usable = [i for i, p in enumerate(problems) if p is None]
        for p in problems:
            if p is not None:
                self.unusable_frames += 1
                self.log.warning("focus.unusable_frame", problem=p)
        out = np.full(len(frames), np.nan)
        if usable:
            s = np.asarray(self.score_fn([frames[i] for i in usable]), dtype=float)
            if s.shape != (len(usable),):
                raise ImageError(
                    f"scorer {self.scorer.name!r} returned {s.shape} scores "
                    f"for {len(usable)} frames"
                )
            out[usable] = s
        capture = [math.nan] * len(frames)
        noise = [math.nan] * len(frames)
        if self.wants_capture:
            for i in usable:  # already checked by frame_problem above
                capture[i] = capture_of_usable(frames[i])
                noise[i] = capture_rel_noise(frames[i].shape)
        self.score_wall_s += time.perf_counter() - t
        return out, capture, noise

    # ---------------------------------------------------------------- hardware

    def _acquire(self, batch: Sequence[float], order: Sequence[int]):  # noqa: ANN202
        """Yield (index, z commanded, frame) for the batch in ascending Z: one streamed
        sweep when the microscope offers one and the batch is long enough, else a stop
        and a snap per position."""
        zs = self._sweep_positions(batch, order)
        if zs is not None:
            yield from self._sweep(batch, order, zs)
            return
        for i in order:
            self._check_cancel_and_timeout()
            z = self._move(batch[i])
            yield i, z, self._snap()

    def _sweep_positions(self, batch: Sequence[float], order: Sequence[int]) -> list[float] | None:
        """The clamped ascending positions of a batch worth streaming, or None."""
        engine = self.engine
        if engine.stream == "off" or len(batch) < STREAM_MIN_FRAMES or sweep_of(self.mic) is None:
            return None
        sequenced = getattr(self.mic, "sweep_sequenced", False) is True
        if not sequenced and (engine.stream == "sequenced" or engine.dof_um is None):
            return None  # a moving exposure needs the DOF to bound its smear
        if not all(math.isfinite(batch[i]) for i in order):
            return None
        zs = [self.limits.clamp(batch[i]) for i in order]
        if any(b - a < 1e-6 for a, b in zip(zs, zs[1:], strict=False)):
            return None  # repeated positions (clamped together): stop and go
        return zs

    def _sweep(self, batch: Sequence[float], order: Sequence[int],  # noqa: ANN202
               zs: list[float]):
        """Stream the frames of `zs` (`batch` in `order`, clamped) in one sweep; yields as
        `_acquire`.

        The stage first goes to the sweep's run-up, approached from below like any move;
        every position is limit-checked and recorded before the sweep starts. The travel
        per exposure is at most `STREAM_SMEAR_DOF` DOF, so a dim plane stays visible.
        """
        sweeper = sweep_of(self.mic)
        assert sweeper is not None
        dof = self.engine.dof_um
        smear_um = STREAM_SMEAR_DOF * dof if dof is not None else None
        for i, z in zip(order, zs, strict=True):
            asked = batch[i]
            if abs(asked - z) > 1e-9:
                self.clamped.append((asked, z))
                self.log.warning("focus.clamped", asked_z_um=asked, z_um=z)
        start = float(sweeper.sweep_start_um(zs, max_smear_um=smear_um))
        self._check_cancel_and_timeout()
        self._move(self.limits.clamp(start))
        for z in zs:
            self.limits.check(z)  # the last line of defence, as for every move
            self.commanded.append(z)
        t_hw, t_wall = self.clock.now_s(), time.perf_counter()
        pairs = sweeper.sweep_z(zs, max_smear_um=smear_um)
        self.timing.exposure_s += self.clock.now_s() - t_hw
        self.hw_wall_s += time.perf_counter() - t_wall
        self.sweeps += 1
        if len(pairs) != len(zs):
            raise ImageError(f"the sweep returned {len(pairs)} frames for {len(zs)} positions")
        for i, (z, frame) in zip(order, pairs, strict=True):
            yield i, float(z), _checked_frame(frame)

    def _move(self, z_um: float, *, approach: bool = True) -> float:
        """Move to `z_um` (clamped to the limits), approaching from below; return the target."""
        if not math.isfinite(z_um):
            raise LimitError(f"refusing to move to a non-finite Z ({z_um})")
        target = self.limits.clamp(z_um)
        if abs(target - z_um) > 1e-9:
            self.clamped.append((z_um, target))
            self.log.warning("focus.clamped", asked_z_um=z_um, z_um=target)
        backlash = self.engine.backlash_um
        if approach and backlash > 0 and target < float(self.mic.z_um) - 1e-9:
            # The overshoot is a waypoint: nothing is imaged there, so a stage that can
            # pass through without settling saves one settle per approach.
            self._command(self.limits.clamp(target - backlash), waypoint=True)
        self._command(target)
        if self.engine.settle_s > 0:
            t = self.clock.now_s()
            self.clock.sleep_s(self.engine.settle_s)
            self.timing.settle_s += self.clock.now_s() - t
        return target

    def _command(self, z_um: float, *, waypoint: bool = False) -> None:
        self.limits.check(z_um)  # the last line of defence: never command outside
        self.commanded.append(z_um)
        t_hw, t_wall = self.clock.now_s(), time.perf_counter()
        through = getattr(self.mic, "move_z_waypoint", None) if waypoint else None
        if callable(through):
            through(z_um)
        else:
            self.mic.move_z(z_um)
        self.timing.move_s += self.clock.now_s() - t_hw
        self.hw_wall_s += time.perf_counter() - t_wall

    def _snap(self) -> np.ndarray:
        t_hw, t_wall = self.clock.now_s(), time.perf_counter()
        frame = self.mic.snap()
        self.timing.exposure_s += self.clock.now_s() - t_hw
        self.hw_wall_s += time.perf_counter() - t_wall
        return _checked_frame(frame)

    def _check_cancel_and_timeout(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the focus job was cancelled")
        if self.timeout_s is not None:
            elapsed = max(time.perf_counter() - self.t0_wall, self.clock.now_s() - self.t0_hw)
            if elapsed > self.timeout_s:
                raise FocusTimeout(f"the search took longer than its {self.timeout_s:g} s timeout")

    # ------------------------------------------------------------ end of run

    def _park(self, outcome: SearchOutcome) -> None:
        """Move to the best Z (from below) and, when enabled, verify the frame there.

        The verification frame must itself be usable and its score must lie
        between a floor and a little above the curve's top (a corrupted frame
        scores far above anything measured). The floor is the middle of the
        measured curve, or lower where the curve measured there is itself lower
        (a contrast-inverted plane sits at a contrast minimum): a quarter of the
        curve's range below its value interpolated at the chosen z. One
        bad frame is re-taken once; a second failure fails the run
        (`verify_failed`), blaming the camera or stage only when a frame measured
        at that z during the search did pass (otherwise the fit, not the hardware,
        is what the frame contradicts).
        """
        assert outcome.best_z_um is not None
        self._check_cancel_and_timeout()
        self._move(outcome.best_z_um)
        # A tracking strategy whose frames already agree on one peak needs no extra frame.
        if not self.engine.verify or outcome.details.get("verified_in_search"):
            return
        measured = sorted((m.z_um, m.score) for m in self.curve if math.isfinite(m.score))
        lo, hi = min(s for _, s in measured), max(s for _, s in measured)
        local = float(np.interp(outcome.best_z_um, [z for z, _ in measured],
                                [s for _, s in measured]))
        threshold = min(lo + 0.5 * (hi - lo), local - 0.25 * (hi - lo))
        # Far above anything the curve (or its fitted top) reached: not the same plane.
        top = max(hi, outcome.best_score) if outcome.best_score is not None else hi
        ceiling = top + 4.0 * (top - lo)
        scores: list[float] = []
        for attempt in range(2):
            self._check_cancel_and_timeout()
            frame = self._snap()
            self.frames += 1
            score = float(self._score([frame])[0][0])
            scores.append(score)
            if math.isfinite(score) and threshold <= score <= ceiling:
                break
            self.log.warning("focus.verify_retake", attempt=attempt + 1, score=score)
        self.verify_score = scores[-1]
        self.verify_scores = scores
        score = scores[-1]
        if not (math.isfinite(score) and threshold <= score <= ceiling):
            shown = ", ".join("unusable" if not math.isfinite(v) else f"{v:.4g}" for v in scores)
            same_z = 0.1 * (self.engine.dof_um or 1.0)
            seen_ok = any(abs(z - outcome.best_z_um) <= same_z and threshold <= s <= ceiling
                          for z, s in measured)
            blame = (
                "the camera or stage gave inconsistent results (a frame taken there during "
                "the search did score within it)" if seen_ok else
                "the plane the fit put there is not confirmed by a frame taken there (no "
                "sign of a camera or stage fault: the re-takes agree with each other)"
                if all(math.isfinite(v) for v in scores) and len(scores) > 1
                and abs(scores[0] - scores[1]) <= 0.1 * max(abs(scores[0]), 1e-12) else
                "the camera or stage gave inconsistent results"
            )
            raise VerificationFailed(
                f"the frames re-acquired at the chosen z={outcome.best_z_um:.3f} µm scored "
                f"{shown}, outside the {threshold:.4g}..{ceiling:.4g} the measured curve allows: "
                f"{blame}"
            )

    def _recover(self, start_z_um: float, on_failure: OnFailure) -> float | None:
        """After a failure: go back to the start (unless told to stay); return where we are."""
        if on_failure == "return" and math.isfinite(start_z_um):
            if self.limits.contains(start_z_um):
                try:
                    self._move(start_z_um)
                except Exception as exc:  # noqa: BLE001
                    self.return_error = f"could not return to the start z: {exc}"
                    self.log.error("focus.return_failed", error=str(exc))
        try:
            return float(self.mic.z_um)
        except Exception:  # noqa: BLE001 - the stage may be the thing that failed
            return None

    def _result(
        self,
        start_z_um: float,
        final_z: float | None,
        outcome: SearchOutcome | None,
        error: Exception | None,
    ) -> FocusResult:
        elapsed = time.perf_counter() - self.t0_wall
        self.timing.scoring_s = self.score_wall_s
        self.timing.hardware_s = self.clock.now_s() - self.t0_hw
        self.timing.elapsed_s = elapsed
        self.timing.overhead_s = max(0.0, elapsed - self.hw_wall_s - self.score_wall_s)
        reason = None
        error_type = None
        code = None
        if error is not None:
            code = _reason_code(error, outcome)
            reason = str(error) or type(error).__name__
            error_type = type(error).__name__
            if not isinstance(error, MicroscopeError | AutofocusError):
                reason = f"internal error ({error_type}): {reason}"
            extra = getattr(self, "return_error", None)
            if extra:
                reason = f"{reason}; {extra}"
        details: dict[str, object] = dict(outcome.details) if outcome else {}
        if self.clamped:
            details["clamped"] = [{"asked_z_um": a, "z_um": b} for a, b in self.clamped]
        if hasattr(self, "verify_score"):
            details["verify_score"] = self.verify_score
            if len(self.verify_scores) > 1:
                details["verify_retaken"] = True
        if self.unusable_frames:
            details["unusable_frames"] = self.unusable_frames
        if self.sweeps:
            details["sweeps"] = self.sweeps
        result = FocusResult(
            success=error is None,
            best_z_um=outcome.best_z_um if outcome else None,
            best_score=outcome.best_score if outcome else None,
            confidence=outcome.confidence if outcome and error is None else 0.0,
            reason=reason,
            error_type=error_type,
            reason_code=code,
            start_z_um=start_z_um,
            final_z_um=final_z,
            frames=self.frames,
            curve=self.curve,
            timing=self.timing,
            strategy=self.strategy.name,
            scorer=self.scorer.name,
            fit=outcome.fit if outcome else None,
            commanded_z_um=self.commanded,
            details=details,
        )
        event = "focus.done" if result.success else "focus.failed"
        self.log.info(
            event,
            best_z_um=result.best_z_um,
            final_z_um=final_z,
            frames=self.frames,
            reason=reason,
        )
        return result


@dataclass
class _Batch:
    """What one measured batch gave, in the order the strategy asked: the positions
    actually commanded, fine scores, capture scores and their relative noise, and
    the scorer's defocus estimate (or None)."""

    z_um: list[float]
    scores: list[float]
    capture: list[float]
    capture_noise: list[float]
    estimate: DefocusEstimate | None = None


def _checked_frame(frame: object) -> np.ndarray:
    """`frame` when it is an image array; `ImageError` for anything else."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise ImageError(f"the camera returned an unusable image (shape {shape})")
    return frame


def _estimate_by_ask(est: DefocusEstimate, ask_index: list[int], n: int) -> DefocusEstimate:
    """`est` (one entry per estimated frame, which was asked at `ask_index[j]`) spread over
    the `n` asked positions in ask order, NaN where no frame was estimated."""
    def spread(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        if a.shape != (len(ask_index),):
            return a
        full = np.full(n, np.nan)
        full[ask_index] = a
        return full
    return dataclasses.replace(
        est,
        distance_dof=spread(est.distance_dof),
        sigma_dof=spread(est.sigma_dof),
        no_specimen_p=spread(est.no_specimen_p),
        field_no_specimen_p=(None if est.field_no_specimen_p is None
                             else spread(est.field_no_specimen_p)),
    )


def _reason_code(error: Exception, outcome: SearchOutcome | None) -> str:
    """The `FailureReason` code of a failed run."""
    if isinstance(error, Cancelled):
        return FailureReason.CANCELLED.value
    if isinstance(error, FocusTimeout):
        return FailureReason.TIMEOUT.value
    if isinstance(error, VerificationFailed):
        return FailureReason.VERIFY_FAILED.value
    if isinstance(error, SearchFailed | NoFocusSignal) and outcome is not None:
        return outcome.code or reason_code(outcome.reason) or FailureReason.FLAT_CURVE.value
    if isinstance(error, AutofocusError | MicroscopeError | OSError | TimeoutError):
        return FailureReason.HARDWARE.value  # driver errors, bad frames, model files, I/O
    # Not one of ours: a bug in a strategy, scorer or driver adapter, not the hardware.
    return FailureReason.INTERNAL.value


def _outcome_error_class(outcome: SearchOutcome) -> type[AutofocusError]:
    if outcome.reason and "no focus signal" in outcome.reason.lower():
        return NoFocusSignal
    return SearchFailed
