"""The engine: the only place that talks to both the hardware and the scorer.

`Engine.run(strategy)` drives an ask/tell search strategy against a
`Microscope` and a `Scorer`. It owns the safety rules:

- every commanded Z lies within the microscope's Z limits (positions asked
  outside are clamped, and the clamp is reported);
- every position is approached from below (overshoot by `backlash_um`, itself
  clamped to the limits) so mechanical backlash always lands the same way;
- on failure, timeout or cancel the stage returns to where it started
  (`on_failure="return"`, the default) — the engine never leaves the stage
  somewhere surprising — and the run ends as a failed `FocusResult` with a
  plain-words reason: no exception escapes `run`.

Within a batch of positions the engine acquires frames in ascending Z while a
worker thread scores the frames already acquired, so acquisition overlaps
scoring.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

import numpy as np
import structlog

from autofocus.errors import (
    AutofocusError,
    ImageError,
    LimitError,
    MicroscopeError,
    NoFocusSignal,
)
from autofocus.scoring.base import Scorer
from autofocus.search.result import FocusResult, Measurement, Timing
from autofocus.search.strategies.base import SearchOutcome, Strategy
from drivers.base import Microscope

log = structlog.get_logger("autofocus.search.engine")

OnFailure = Literal["return", "stay"]
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
    number of frames handed to the scorer at once.
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
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer") as pool:
            while not self.strategy.done:
                batch = [float(z) for z in self.strategy.ask()]
                if not batch:
                    break
                scores = self._measure_batch(batch, pool)
                self.strategy.tell(batch, scores)
        return self.strategy.outcome()

    def _measure_batch(self, batch: Sequence[float], pool: ThreadPoolExecutor) -> list[float]:
        """Acquire the batch in ascending Z, scoring chunks in `pool` as frames arrive."""
        order = sorted(range(len(batch)), key=lambda i: batch[i])
        scores: list[float] = [math.nan] * len(batch)
        pending_idx: list[int] = []
        pending_frames: list[np.ndarray] = []
        futures: list[tuple[list[int], Future[np.ndarray]]] = []
        for n, i in enumerate(order):
            self._check_cancel_and_timeout()
            z_um = self._move(batch[i])
            frame = self._snap()
            self.frames += 1
            pending_idx.append(i)
            pending_frames.append(frame)
            batch[i] = z_um  # type: ignore[index]  # the position actually commanded
            if len(pending_frames) >= self.engine.score_batch or n == len(order) - 1:
                futures.append((pending_idx, pool.submit(self._score, pending_frames)))
                pending_idx, pending_frames = [], []
        for idx, fut in futures:
            chunk = fut.result()
            for i, s in zip(idx, chunk, strict=True):
                scores[i] = float(s)
                m = Measurement(
                    index=len(self.curve),
                    z_um=float(batch[i]),
                    score=float(s),
                    t_s=self.clock.now_s() - self.t0_hw,
                )
                self.curve.append(m)
                self.log.debug("focus.measure", z_um=m.z_um, score=m.score)
                if self.on_measure is not None:
                    try:
                        self.on_measure(m)
                    except Exception as exc:  # noqa: BLE001 - a watcher must not kill the run
                        self.log.warning("focus.on_measure_failed", error=str(exc))
        return scores

    def _score(self, frames: list[np.ndarray]) -> np.ndarray:
        """Score frames; unusable (blank/constant) frames get NaN instead of a score."""
        t = time.perf_counter()
        usable = [i for i, f in enumerate(frames) if _usable(f)]
        out = np.full(len(frames), np.nan)
        if usable:
            s = np.asarray(self.scorer.score([frames[i] for i in usable]), dtype=float)
            if s.shape != (len(usable),):
                raise ImageError(
                    f"scorer {self.scorer.name!r} returned {s.shape} scores "
                    f"for {len(usable)} frames"
                )
            out[usable] = s
        self.score_wall_s += time.perf_counter() - t
        return out

    # ---------------------------------------------------------------- hardware

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
            self._command(self.limits.clamp(target - backlash))
        self._command(target)
        if self.engine.settle_s > 0:
            t = self.clock.now_s()
            self.clock.sleep_s(self.engine.settle_s)
            self.timing.settle_s += self.clock.now_s() - t
        return target

    def _command(self, z_um: float) -> None:
        self.limits.check(z_um)  # the last line of defence: never command outside
        self.commanded.append(z_um)
        t_hw, t_wall = self.clock.now_s(), time.perf_counter()
        self.mic.move_z(z_um)
        self.timing.move_s += self.clock.now_s() - t_hw
        self.hw_wall_s += time.perf_counter() - t_wall

    def _snap(self) -> np.ndarray:
        t_hw, t_wall = self.clock.now_s(), time.perf_counter()
        frame = self.mic.snap()
        self.timing.exposure_s += self.clock.now_s() - t_hw
        self.hw_wall_s += time.perf_counter() - t_wall
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
            shape = getattr(frame, "shape", type(frame).__name__)
            raise ImageError(f"the camera returned an unusable image (shape {shape})")
        return frame

    def _check_cancel_and_timeout(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the focus job was cancelled")
        if self.timeout_s is not None:
            elapsed = max(time.perf_counter() - self.t0_wall, self.clock.now_s() - self.t0_hw)
            if elapsed > self.timeout_s:
                raise FocusTimeout(f"the search took longer than its {self.timeout_s:g} s timeout")

    # ------------------------------------------------------------ end of run

    def _park(self, outcome: SearchOutcome) -> None:
        """Move to the best Z (from below) and, when enabled, verify the frame there."""
        assert outcome.best_z_um is not None
        self._check_cancel_and_timeout()
        self._move(outcome.best_z_um)
        if not self.engine.verify:
            return
        frame = self._snap()
        self.frames += 1
        score = float(self._score([frame])[0])
        finite = [m.score for m in self.curve if math.isfinite(m.score)]
        lo, hi = min(finite), max(finite)
        threshold = lo + 0.5 * (hi - lo)
        self.verify_score = score
        if not math.isfinite(score) or score < threshold:
            raise VerificationFailed(
                f"the frame re-acquired at the chosen z={outcome.best_z_um:.3f} µm scored "
                f"{score:.4g}, below the curve's midpoint {threshold:.4g}: the camera or stage "
                "gave inconsistent results"
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
        if error is not None:
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
        result = FocusResult(
            success=error is None,
            best_z_um=outcome.best_z_um if outcome else None,
            best_score=outcome.best_score if outcome else None,
            confidence=outcome.confidence if outcome and error is None else 0.0,
            reason=reason,
            error_type=error_type,
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


def _usable(frame: np.ndarray) -> bool:
    """A frame is unusable when it is constant (blank) or has non-finite pixels."""
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        return False
    return bool(frame.max() != frame.min())


def _outcome_error_class(outcome: SearchOutcome) -> type[AutofocusError]:
    if outcome.reason and "no focus signal" in outcome.reason.lower():
        return NoFocusSignal
    return SearchFailed
