"""The worker thread that owns the microscope: opens it, runs queued jobs one at a time, reports.

`Worker.main` is the body of the one thread that touches the hardware. It takes
job ids from the `JobManager`'s queue, runs each through `autofocus.search.focus`,
streams every measurement to the store and the event broker, and refreshes the
`MicroscopeSnapshot` that the HTTP side reads. It survives anything a job
throws: the job ends `failed` with the reason and the next job runs.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from autofocus_drivers.base import CameraInfo, ZLimits

from autofocus.errors import AutofocusError, MicroscopeError
from autofocus.logging import get_logger
from autofocus.scoring.base import Scorer, offers_estimate
from autofocus.scoring.preprocess import crop_roi
from autofocus.search.result import Measurement
from autofocus.service.jobs.hardware import GuardedMicroscope
from autofocus.service.jobs.models import JobState
from autofocus.service.metrics import Metrics

if TYPE_CHECKING:
    from autofocus.search.focus import FocusRequest
    from autofocus.settings import FocusDefaults

log = get_logger("autofocus.jobs")


@dataclass
class MicroscopeSnapshot:
    """What the HTTP side may know about the microscope without touching it.

    Refreshed by the worker thread at start-up, after every measurement and job,
    and about once a second while idle. `z_um` is the last position read or
    commanded; `error` says why the microscope is not available.
    """

    driver: str
    name: str | None = None
    z_limits_um: ZLimits | None = None
    camera: CameraInfo | None = None
    z_um: float | None = None
    exposure_ms: float | None = None
    updated_s: float | None = None
    error: str | None = None
    # Request defaults that depend on the microscope itself (a replayed stack is a few µm
    # deep with a known plane spacing, so the service-wide 50 µm range cannot fit it).
    request_defaults: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        cam = self.camera
        return {
            "driver": self.driver,
            "name": self.name,
            "z_um": self.z_um,
            "z_limits_um": (
                {"min_um": self.z_limits_um.min_um, "max_um": self.z_limits_um.max_um}
                if self.z_limits_um
                else None
            ),
            "camera": (
                {
                    "name": cam.name,
                    "width_px": cam.width_px,
                    "height_px": cam.height_px,
                    "bit_depth": cam.bit_depth,
                    "pixel_size_um": cam.pixel_size_um,
                }
                if cam
                else None
            ),
            "exposure_ms": self.exposure_ms,
            "updated_s": self.updated_s,
            "error": self.error,
        }


class JobScorer:
    """A scorer used by jobs and uploads: crops to the ROI and times every `score()` call.

    Delegates everything else (e.g. `active_provider`) to the wrapped scorer.
    `roi` is (x_px, y_px, width_px, height_px) or None.
    """

    def __init__(
        self,
        inner: Scorer,
        metrics: Metrics,
        *,
        source: str,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.metrics = metrics
        self.source = source
        self.roi = roi
        if offers_estimate(inner):
            # Only an estimator's wrapper looks like a `DefocusEstimator`; frames are cropped
            # to the ROI for the estimate as for the score.
            self.estimate = self._estimate_roi

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return self._timed(self.inner.score, frames)

    def score_for_estimate(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """The inner estimator's `score_for_estimate` (or `score`), on the ROI, timed."""
        fn = getattr(self.inner, "score_for_estimate", None) or self.inner.score
        return self._timed(fn, frames)

    def _estimate_roi(self, frames: Sequence[np.ndarray], z_um: Sequence[float], *,
                      dof_um: float | None = None) -> Any:
        """The inner scorer's defocus estimate of the ROI of `frames` (bound as
        `estimate` only when the inner scorer offers one)."""
        return self.inner.estimate(self._crop(frames), z_um,  # type: ignore[attr-defined]
                                   dof_um=dof_um)

    def _crop(self, frames: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        return frames if self.roi is None else [crop_roi(f, self.roi) for f in frames]

    def _timed(self, fn: Any, frames: Sequence[np.ndarray]) -> np.ndarray:
        frames = self._crop(frames)
        t = time.perf_counter()
        try:
            return fn(frames)
        finally:
            self.metrics.scoring_latency.observe(time.perf_counter() - t, {"source": self.source})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class RunningJob:
    """The job the worker runs now: its cancel flag, live progress, when it was taken
    (`started_s`, monotonic seconds) and its own time limit (`timeout_s`, once known)."""

    job_id: str
    cancel: threading.Event
    progress: dict[str, Any] = field(default_factory=dict)
    started_s: float = field(default_factory=time.monotonic)
    timeout_s: float | None = None
    store_error: str | None = None  # set when this job's record could not be written


def focus_request(req: Mapping[str, Any], defaults: FocusDefaults) -> FocusRequest:
    """The `FocusRequest` of a job's stored request `req` (the API fields, every one filled
    in from the settings at submission); the stage handling (backlash, settle, verify) comes
    from the `[focus]` settings `defaults`. Fields that jobs stored by an older version
    lack take their defaults. Used to validate a submission and to run the job."""
    from autofocus.search.focus import FocusRequest

    return FocusRequest(
        scorer=req["scorer"],
        strategy=req["strategy"],
        center_z_um=req["center_z_um"],
        range_um=float(req["range_um"]),
        tolerance_um=None if req.get("tolerance_um") is None else float(req["tolerance_um"]),
        coarse_step_um=req.get("coarse_step_um"),
        max_frames=int(req["max_frames"]),
        exposure_ms=req["exposure_ms"],
        timeout_s=req["timeout_s"],
        on_failure=req["on_failure"],
        overshoot_um=defaults.overshoot_um,
        settle_s=defaults.settle_s,
        verify=defaults.verify,
        mode=str(req.get("mode", "search")),
        rival=str(req.get("rival", "fail")),
        rival_check=str(req.get("rival_check", "full")),
        expected_z_um=req.get("expected_z_um"),
        expected_sigma_um=req.get("expected_sigma_um"),
    )


class Worker:
    """Runs jobs on the microscope for one `JobManager` (its queue, store, broker, settings)."""

    def __init__(self, manager: Any) -> None:
        # `manager` is the owning `JobManager`; not imported here so the two modules
        # stay a one-way street (manager → worker).
        self.m = manager

    def main(self) -> None:
        structlog.contextvars.clear_contextvars()
        try:
            opener = self.m.microscope_factory
            if opener is None:
                from autofocus.service.microscopes import open_microscope as opener
            watch = self.m.hardware_watch
            with watch.call("open", "the microscope", "opening it", deadline_s=watch_open_s(
                self.m.settings.hardware_timeout_s
            )):
                raw = opener(self.m.settings)
            self.m.microscope = GuardedMicroscope(raw, watch, on_command=self._record_command)
            self._refresh_snapshot(full=True)
            self.m.mark_ready()
            _warm_imports()
            log.info("microscope.open", driver=self.m.settings.driver, **self._snapshot_log())
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and 503s
            self.m.snapshot.error = f"the microscope could not be opened: {exc}"
            log.error("microscope.open_failed", error=str(exc), error_type=type(exc).__name__)
            return
        try:
            self.m.scorer(self.m.settings.focus.scorer)  # load the default model before the 1st job
        except Exception as exc:  # noqa: BLE001 - a job naming it will fail with the reason
            log.warning("scorer.load_failed", scorer=self.m.settings.focus.scorer, error=str(exc))
        try:
            while not self.m.stop_event.is_set():
                self._run_tasks()
                job_id = self.m.next_job(timeout_s=1.0)
                if job_id is None:
                    self._refresh_snapshot()
                    self.m.check_store()
                    if self.m.store_error is None:
                        self.m.maybe_purge()
                    continue
                structlog.contextvars.bind_contextvars(job_id=job_id)
                try:
                    self._run(job_id)
                except BaseException as exc:  # noqa: BLE001 - the worker must survive any job
                    log.exception("job.worker_error")
                    self._fail_unexpectedly(job_id, exc)
                finally:
                    self.m.job_done(job_id)
                    structlog.contextvars.unbind_contextvars("job_id")
                    self._refresh_snapshot()
        finally:
            try:
                self.m.microscope.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("microscope.close_failed", error=str(exc))

    def _run_tasks(self) -> None:
        """Run the hardware tasks queued with `JobManager.run_on_worker` (focus maps)."""
        while (task := self.m.next_task()) is not None:
            future = task.future
            try:
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(task.fn(self.m.microscope, task.cancel))
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                    future.set_exception(exc)
            finally:
                self.m.task_done()
                self._refresh_snapshot()

    def _record_command(self, z_um: float) -> None:
        # Durable before the move is sent: a crash right after still reports this z.
        running = self.m.running_job
        job_id = running.job_id if running is not None else None
        try:
            moves = self.m.store.record_command(job_id, z_um)
        except sqlite3.Error as exc:
            # The database cannot be written (disk full): the move still goes out, because
            # refusing it could strand the stage (this may be the return move); the job is
            # stopped at its next step, returns the stage and fails `internal`.
            self._store_failed(exc)
            log.error("stage.command_not_recorded", z_um=z_um, error=str(exc))
            return
        if running is not None:
            running.progress["commanded_z_um"] = z_um
            running.progress["commanded_moves"] = moves

    def _store_failed(self, exc: BaseException) -> None:
        self.m.store_failed(exc)
        running = self.m.running_job
        if running is not None:
            running.store_error = str(exc)
            running.cancel.set()

    def _run(self, job_id: str) -> None:
        from autofocus.search.focus import focus

        running = self.m.running_job
        assert running is not None and self.m.microscope is not None
        job = self.m.store.get(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return
        if running.cancel.is_set():
            self._finish(
                job_id,
                JobState.CANCELLED,
                None,
                "the job was cancelled before it started; the stage was not moved",
            )
            return
        mic = self.m.microscope
        req = job.request
        running.timeout_s = req.get("timeout_s")
        start_z = float(mic.z_um)
        progress: dict[str, Any] = dict(job.progress)
        progress.update(
            frames=0, max_frames=req["max_frames"], start_z_um=start_z, last_z_um=start_z
        )
        running.progress = progress
        try:
            self.m.broker.publish(self.m.store.mark_running(job_id, progress))
        except sqlite3.Error as exc:
            self._store_failed(exc)
            self._finish(job_id, JobState.FAILED, None, _store_sentence(exc, None),
                         progress, error_code=INTERNAL)
            return
        log.info("job.running", start_z_um=start_z)
        t0 = time.perf_counter()

        def on_measure(m: Measurement) -> None:
            progress["frames"] = m.index + 1
            progress["last_z_um"] = m.z_um
            progress["last_score"] = m.score if math.isfinite(m.score) else None
            self.m.snapshot.z_um = m.z_um
            data = {"index": m.index, "z_um": m.z_um, "score": m.score, "t_s": m.t_s}
            try:
                self.m.broker.publish(self.m.store.add_measurement(job_id, data, progress))
            except sqlite3.Error as exc:
                self._store_failed(exc)

        roi = req.get("roi")
        try:
            scorer = JobScorer(
                self.m.scorer(req["scorer"]),
                self.m.metrics,
                source="job",
                roi=(roi["x_px"], roi["y_px"], roi["width_px"], roi["height_px"]) if roi else None,
            )
            request = focus_request(req, self.m.settings.focus)
            result = focus(
                mic, request, scorer=scorer, cancel=running.cancel, on_measure=on_measure
            )
        except (AutofocusError, MicroscopeError, ValueError, KeyError) as exc:
            # Raised before the first move (e.g. the stage moved since submission and the
            # range now leaves the limits): the stage was not touched.
            self._finish(job_id, JobState.FAILED, None, _sentence(exc), progress, t0)
            return
        result_dict = result.to_dict()
        result_dict["commanded_z_um"] = list(result.commanded_z_um)
        self.m.metrics.frames_total.inc(result.frames)
        if result.success:
            state, error = JobState.SUCCEEDED, None
        elif result.cancelled:
            state = JobState.CANCELLED
            error = result.reason or "the job was cancelled"
            if self.m.stop_event.is_set():
                error = "the job was cancelled because the autofocus service was shutting down"
            if result.final_z_um is not None:
                error += f"; the stage is at z={result.final_z_um:.3f} µm"
        else:
            state, error = JobState.FAILED, result.reason or "the focus search failed"
        progress["final_z_um"] = result.final_z_um
        code = None if state is JobState.SUCCEEDED else result.reason_code
        store_error = running.store_error
        if store_error is not None:  # stopped because its record could not be written
            state, code = JobState.FAILED, INTERNAL
            error = _store_sentence(store_error, result.final_z_um, result.start_z_um)
        self._finish(job_id, state, result_dict, error, progress, t0, error_code=code)

    def _finish(
        self,
        job_id: str,
        state: JobState,
        result: dict[str, Any] | None,
        error: str | None,
        progress: dict[str, Any] | None = None,
        t0: float | None = None,
        *,
        error_code: str | None = None,
    ) -> None:
        event = self.m.finish_job(
            job_id, state, result=result, error=error, progress=progress, error_code=error_code
        )
        if event is None:  # already ended (the watchdog failed it while the call hung)
            log.warning("job.finished_twice", state=state.value, error=error)
            return
        self.m.metrics.jobs_finished_total.inc(labels={"state": state.value})
        if t0 is not None:
            elapsed_s = time.perf_counter() - t0
            self.m.metrics.focus_duration.observe(elapsed_s, {"outcome": state.value})
        else:
            elapsed_s = None
        log.info(
            f"job.{state.value}",
            error=error,
            elapsed_s=elapsed_s,
            best_z_um=(result or {}).get("best_z_um"),
        )
        self.m.broker.publish(event)

    def _fail_unexpectedly(self, job_id: str, exc: BaseException) -> None:
        try:
            job = self.m.store.get(job_id)
            if job is not None and not job.state.terminal:
                self._finish(
                    job_id,
                    JobState.FAILED,
                    None,
                    f"internal error ({type(exc).__name__}): {exc}; the stage may not be back "
                    "at its start position",
                )
        except Exception:  # noqa: BLE001 - even the database may be the problem
            log.exception("job.finish_failed")

    def _refresh_snapshot(self, *, full: bool = False) -> None:
        mic = self.m.microscope
        if mic is None:
            return
        try:
            if full:
                self.m.snapshot.name = getattr(mic, "name", None)
                self.m.snapshot.z_limits_um = mic.z_limits_um
                self.m.snapshot.camera = mic.camera_info()
                if hasattr(mic, "plane_spacing_um"):
                    from autofocus.stacks.replay import replay_request

                    self.m.snapshot.request_defaults = replay_request(
                        mic, tolerance_um=getattr(mic, "focus_tolerance_um", None)
                    )
            self.m.snapshot.z_um = float(mic.z_um)
            self.m.snapshot.exposure_ms = float(mic.exposure_ms)
            self.m.snapshot.updated_s = time.time()
        except Exception as exc:  # noqa: BLE001 - shown on /v1/microscope, next job reports it
            if full:
                raise
            log.warning("microscope.read_failed", error=str(exc))

    def _snapshot_log(self) -> dict[str, Any]:
        s = self.m.snapshot
        return {
            "z_um": s.z_um,
            "z_min_um": s.z_limits_um.min_um if s.z_limits_um else None,
            "z_max_um": s.z_limits_um.max_um if s.z_limits_um else None,
        }



def _warm_imports() -> None:
    """Import what validating a submission needs, on the worker thread, so the first
    `POST /v1/focus` does not pay for it (about a second on a slow machine)."""
    import autofocus.search.focus  # noqa: F401
    import autofocus.search.strategies.registry  # noqa: F401


def watch_open_s(hardware_timeout_s: float) -> float:
    """How long opening the microscope may take before the watchdog trips: loading a
    Micro-Manager configuration legitimately takes longer than one call (seconds)."""
    return max(60.0, 2.0 * float(hardware_timeout_s))


INTERNAL = "internal"  # the reason code of a job stopped because the store failed


def _store_sentence(
    exc: object, final_z_um: float | None, start_z_um: float | None = None
) -> str:
    where = (
        f"; the stage was returned to z={final_z_um:.3f} µm"
        + (f" (it started at z={start_z_um:.3f} µm)" if start_z_um is not None else "")
        if final_z_um is not None
        else "; the stage was not moved"
    )
    return (
        f"the job database could not be written ({exc}), so the job was stopped{where}. "
        "Free disk space; the service accepts jobs again once it can write"
    )


def _sentence(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, AutofocusError | MicroscopeError) else f"invalid request: {text}"
