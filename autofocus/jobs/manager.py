"""The job manager: validation, the bounded FIFO queue and the worker that owns the microscope.

One `JobManager` serves one microscope. Its worker thread opens the
microscope, runs queued jobs one at a time (FIFO) and is the only thread that
touches the hardware; the HTTP side reads a snapshot of the stage (position,
limits, camera) that the worker refreshes. Submissions are validated against
that snapshot *before* they are queued, so a request that would leave the Z
limits is refused with the stage untouched; the engine validates again when
the job starts, because the stage may have moved in between.

The worker survives anything a job throws: the job ends `failed` with the
reason and the next job runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from autofocus.errors import AutofocusError, ImageError, MicroscopeError, UnknownNameError
from autofocus.jobs.events import EventBroker
from autofocus.jobs.models import Job, JobState
from autofocus.jobs.store import JobStore, StoredEvent
from autofocus.metrics import Metrics
from autofocus.result import Measurement
from autofocus.scorer import Scorer, canonical_scorer_name, get_scorer
from autofocus.settings import Settings
from drivers.base import CameraInfo, Microscope, ZLimits

log = structlog.get_logger("autofocus.jobs")

MicroscopeFactory = Callable[[Settings], Microscope]

REQUEST_FIELDS = (
    "strategy",
    "scorer",
    "center_z_um",
    "range_um",
    "tolerance_um",
    "exposure_ms",
    "roi",
    "max_frames",
    "timeout_s",
    "on_failure",
)


class QueueFull(Exception):
    """The job queue holds `queue_max` jobs already; retry later (HTTP 429)."""


class JobNotFound(KeyError):
    """No job has this id (HTTP 404)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


class IdempotencyConflict(Exception):
    """An `Idempotency-Key` was reused with a different request (HTTP 422)."""


class InvalidRequest(ValueError):
    """A request that is well-formed but cannot be run (range, ROI, numbers); HTTP 422."""


class NotReady(Exception):
    """The microscope is not open (yet, or it failed to open); HTTP 503."""


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

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        if self.roi is not None:
            x, y, w, h = self.roi
            cropped = []
            for f in frames:
                c = f[y : y + h, x : x + w]
                if c.shape[0] != h or c.shape[1] != w:
                    raise ImageError(
                        f"the ROI {w}×{h} px at ({x}, {y}) does not fit a "
                        f"{f.shape[1]}×{f.shape[0]} px frame"
                    )
                cropped.append(c)
            frames = cropped
        t = time.perf_counter()
        try:
            return self.inner.score(frames)
        finally:
            self.metrics.scoring_latency.observe(time.perf_counter() - t, {"source": self.source})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class _Running:
    job_id: str
    cancel: threading.Event
    progress: dict[str, Any] = field(default_factory=dict)


class JobManager:
    """Queue, persistence and the worker thread of one microscope.

    `open_microscope` builds the microscope from the settings (default:
    `autofocus.microscopes.open_microscope`); it is called in the worker
    thread, which then owns the hardware. Call `start()` once, `stop()` at
    shutdown.
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        broker: EventBroker,
        metrics: Metrics,
        *,
        open_microscope: MicroscopeFactory | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self._open_microscope = open_microscope
        self._queue: deque[str] = deque()
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._current: _Running | None = None
        self._thread: threading.Thread | None = None
        self._scorers: dict[str, Scorer] = {}
        self._scorer_lock = threading.Lock()
        self.microscope: Microscope | None = None
        self.snapshot = MicroscopeSnapshot(driver=settings.driver)
        self.started_s = time.time()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Recover after a crash (running → interrupted), re-queue queued jobs, start the worker."""
        for job, event in self.store.recover_after_crash():
            log.warning("job.interrupted", job_id=job.id, error=job.error)
            self.broker.publish(event)
        with self._lock:
            for job_id in self.store.queued_ids():
                self._queue.append(job_id)
                self._cancels[job_id] = threading.Event()
        if self._queue:
            log.info("jobs.requeued", count=len(self._queue))
        self._thread = threading.Thread(target=self._worker_main, name="microscope-worker")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the worker: cancel the running job (the stage returns), keep queued jobs."""
        self._stopping.set()
        with self._lock:
            if self._current is not None:
                self._current.cancel.set()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("worker.stop_timeout", timeout_s=timeout_s)

    @property
    def ready(self) -> bool:
        """True when the microscope is open and the worker is alive."""
        return (
            self._ready.is_set()
            and self._thread is not None
            and self._thread.is_alive()
            and not self._stopping.is_set()
        )

    @property
    def worker_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._lock:
            return len(self._queue)

    @property
    def current_job_id(self) -> str | None:
        running = self._current
        return running.job_id if running else None

    # ------------------------------------------------------------- submission

    def submit(
        self, fields: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Validate `fields` (API request, unset fields absent), queue a job; return (job, created).

        With an `idempotency_key` already used for the same request, returns that
        job and `created=False`. Raises `IdempotencyConflict` (same key, other
        request), `NotReady`, `UnknownNameError`, `LimitError` or `ValueError`
        (invalid request; nothing queued, stage untouched) and `QueueFull`.
        """
        fingerprint = _fingerprint(fields)
        with self._lock:
            if idempotency_key is not None:
                found = self.store.find_by_idempotency_key(idempotency_key)
                if found is not None:
                    job, old_fingerprint = found
                    if old_fingerprint != fingerprint:
                        raise IdempotencyConflict(
                            f"the Idempotency-Key {idempotency_key!r} was already used for a "
                            "different request"
                        )
                    return job, False
            request = self.resolve(fields)
            if len(self._queue) >= self.settings.queue_max:
                raise QueueFull(
                    f"{len(self._queue)} jobs are already waiting (queue_max "
                    f"{self.settings.queue_max}); try again when one has finished"
                )
            job_id = uuid.uuid4().hex
            progress = {
                "frames": 0,
                "max_frames": request["max_frames"],
                "last_z_um": None,
                "last_score": None,
                "start_z_um": None,
            }
            job, event = self.store.create(
                job_id,
                request,
                progress=progress,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
            )
            self._cancels[job_id] = threading.Event()
            self._queue.append(job_id)
            self._wake.notify_all()
        log.info("job.queued", job_id=job_id, **{k: request[k] for k in ("strategy", "scorer")})
        self.broker.publish(event)
        return job, True

    def resolve(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The full request: `fields` over the settings' defaults, validated; see `submit`."""
        from autofocus.focus import FocusRequest, search_space
        from autofocus.strategies.registry import available_strategies

        if not self.ready:
            raise NotReady(self.not_ready_reason())
        unknown = set(fields) - set(REQUEST_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown request fields: {', '.join(sorted(unknown))}")
        d = self.settings.focus
        req: dict[str, Any] = {
            "strategy": d.strategy,
            "scorer": d.scorer,
            "center_z_um": None,
            "range_um": d.range_um,
            "tolerance_um": d.tolerance_um,
            "exposure_ms": None,
            "roi": None,
            "max_frames": d.max_frames,
            "timeout_s": d.timeout_s,
            "on_failure": d.on_failure,
            "coarse_step_um": None,
        }
        snap_defaults = self.snapshot.request_defaults or {}
        req.update({k: v for k, v in snap_defaults.items() if k in req})
        req.update({k: v for k, v in fields.items() if v is not None})
        strategies = available_strategies()
        if req["strategy"] not in strategies:
            raise UnknownNameError(
                f"unknown strategy {req['strategy']!r}; available: {', '.join(strategies)}"
            )
        req["scorer"] = canonical_scorer_name(str(req["scorer"]))
        snap = self.snapshot
        assert snap.z_limits_um is not None and snap.z_um is not None
        focus_request = FocusRequest(
            scorer=req["scorer"],
            strategy=req["strategy"],
            center_z_um=req["center_z_um"],
            range_um=float(req["range_um"]),
            tolerance_um=float(req["tolerance_um"]),
            max_frames=int(req["max_frames"]),
        )
        try:
            search_space(focus_request, snap.z_um, snap.z_limits_um)
        except ValueError as exc:  # LimitError is not a ValueError and passes through as it is
            raise InvalidRequest(str(exc)) from exc
        if req["roi"] is not None:
            _check_roi(req["roi"], snap.camera)
        return req

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one ends at once, a running one stops at its next move
        and returns the stage to its start. Finished jobs are left as they are.
        Raises `JobNotFound`."""
        event: StoredEvent | None = None
        with self._lock:
            job = self.store.get(job_id)
            if job is None:
                raise JobNotFound(f"no job with id {job_id!r}")
            if job.state is JobState.QUEUED and job_id in self._queue:
                self._queue.remove(job_id)
                self._cancels.pop(job_id, None)
                event = self.store.finish(
                    job_id,
                    JobState.CANCELLED,
                    result=None,
                    error="the job was cancelled before it started; the stage was not moved",
                )
                self.metrics.jobs_finished_total.inc(labels={"state": "cancelled"})
            elif not job.state.terminal:
                cancel = self._cancels.get(job_id)
                if cancel is not None:
                    cancel.set()
                self.store.set_cancel_requested(job_id)
        if event is not None:
            log.info("job.cancelled", job_id=job_id, when="queued")
            self.broker.publish(event)
        job = self.store.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job:
        """The job with `job_id`; raises `JobNotFound`."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        """Wait (without blocking the event loop) until the job ends or `timeout_s` passes."""
        with self.broker.subscribe(job_id) as sub:
            job = self.get(job_id)
            deadline = time.monotonic() + max(0.0, timeout_s)
            while not job.state.terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(sub.get(), remaining)
                except asyncio.TimeoutError:  # builtin TimeoutError only from 3.11
                    break
                if event is None:  # feed closed (shutdown or overflow): answer with what we have
                    break
                if event.kind == "state" and JobState(event.data["state"]).terminal:
                    break
            return self.get(job_id)

    def not_ready_reason(self) -> str:
        if self.snapshot.error:
            return self.snapshot.error
        if self._stopping.is_set():
            return "the autofocus service is shutting down"
        if self._thread is not None and not self._thread.is_alive():
            return "the microscope worker is not running"
        return "the microscope is still being opened"

    # ---------------------------------------------------------------- scorers

    def scorer(self, name: str) -> Scorer:
        """A shared scorer instance by (canonical) name, built once; raises `UnknownNameError`."""
        key = canonical_scorer_name(name)
        with self._scorer_lock:
            scorer = self._scorers.get(key)
            if scorer is None:
                scorer = get_scorer(key, **self._scorer_options(key))
                self._scorers[key] = scorer
            return scorer

    def cached_scorer(self, name: str) -> Scorer | None:
        """The scorer already built under `name`, or None (never builds)."""
        try:
            key = canonical_scorer_name(name)
        except UnknownNameError:
            return None
        with self._scorer_lock:
            return self._scorers.get(key)

    def _scorer_options(self, key: str) -> dict[str, Any]:
        # The learned scorer needs the model file and provider from the settings; the
        # classical measures take no options.
        opts: dict[str, Any] = {}
        if key.startswith("focusnet"):
            if self.settings.model_path is not None:
                opts["model_path"] = self.settings.model_path
            opts["execution_provider"] = self.settings.execution_provider
        return opts

    # ----------------------------------------------------------------- worker

    def _worker_main(self) -> None:
        structlog.contextvars.clear_contextvars()
        try:
            opener = self._open_microscope
            if opener is None:
                from autofocus.microscopes import open_microscope as opener
            self.microscope = opener(self.settings)
            self._refresh_snapshot(full=True)
            self._ready.set()
            log.info("microscope.open", driver=self.settings.driver, **self._snapshot_log())
        except Exception as exc:  # noqa: BLE001 - reported by /readyz and 503s
            self.snapshot.error = f"the microscope could not be opened: {exc}"
            log.error("microscope.open_failed", error=str(exc), error_type=type(exc).__name__)
            return
        try:
            self.scorer(self.settings.focus.scorer)  # load the default model before the 1st job
        except Exception as exc:  # noqa: BLE001 - a job naming it will fail with the reason
            log.warning("scorer.load_failed", scorer=self.settings.focus.scorer, error=str(exc))
        try:
            while not self._stopping.is_set():
                job_id = self._next_job(timeout_s=1.0)
                if job_id is None:
                    self._refresh_snapshot()
                    continue
                structlog.contextvars.bind_contextvars(job_id=job_id)
                try:
                    self._run(job_id)
                except BaseException as exc:  # noqa: BLE001 - the worker must survive any job
                    log.exception("job.worker_error")
                    self._fail_unexpectedly(job_id, exc)
                finally:
                    with self._lock:
                        self._current = None
                        self._cancels.pop(job_id, None)
                    structlog.contextvars.unbind_contextvars("job_id")
                    self._refresh_snapshot()
        finally:
            try:
                self.microscope.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("microscope.close_failed", error=str(exc))

    def _next_job(self, timeout_s: float) -> str | None:
        with self._lock:
            if not self._queue:
                self._wake.wait(timeout_s)
            if not self._queue or self._stopping.is_set():
                return None
            job_id = self._queue.popleft()
            cancel = self._cancels.setdefault(job_id, threading.Event())
            self._current = _Running(job_id, cancel)
            return job_id

    def _run(self, job_id: str) -> None:
        from autofocus.focus import FocusRequest, focus

        running = self._current
        assert running is not None and self.microscope is not None
        job = self.store.get(job_id)
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
        mic = self.microscope
        req = job.request
        d = self.settings.focus
        start_z = float(mic.z_um)
        progress: dict[str, Any] = dict(job.progress)
        progress.update(
            frames=0, max_frames=req["max_frames"], start_z_um=start_z, last_z_um=start_z
        )
        running.progress = progress
        self.broker.publish(self.store.mark_running(job_id, progress))
        log.info("job.running", start_z_um=start_z)
        t0 = time.perf_counter()

        def on_measure(m: Measurement) -> None:
            progress["frames"] = m.index + 1
            progress["last_z_um"] = m.z_um
            progress["last_score"] = m.score if math.isfinite(m.score) else None
            self.snapshot.z_um = m.z_um
            data = {"index": m.index, "z_um": m.z_um, "score": m.score, "t_s": m.t_s}
            self.broker.publish(self.store.add_measurement(job_id, data, progress))

        roi = req.get("roi")
        try:
            scorer = JobScorer(
                self.scorer(req["scorer"]),
                self.metrics,
                source="job",
                roi=(roi["x_px"], roi["y_px"], roi["width_px"], roi["height_px"]) if roi else None,
            )
            request = FocusRequest(
                scorer=req["scorer"],
                strategy=req["strategy"],
                center_z_um=req["center_z_um"],
                range_um=float(req["range_um"]),
                tolerance_um=float(req["tolerance_um"]),
                coarse_step_um=req.get("coarse_step_um"),
                max_frames=int(req["max_frames"]),
                exposure_ms=req["exposure_ms"],
                timeout_s=req["timeout_s"],
                on_failure=req["on_failure"],
                backlash_um=d.backlash_um,
                settle_s=d.settle_s,
                verify=d.verify,
            )
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
        self.metrics.frames_total.inc(result.frames)
        if result.success:
            state, error = JobState.SUCCEEDED, None
        elif result.cancelled:
            state = JobState.CANCELLED
            error = result.reason or "the job was cancelled"
            if self._stopping.is_set():
                error = "the job was cancelled because the autofocus service was shutting down"
            if result.final_z_um is not None:
                error += f"; the stage is at z={result.final_z_um:.3f} µm"
        else:
            state, error = JobState.FAILED, result.reason or "the focus search failed"
        progress["final_z_um"] = result.final_z_um
        self._finish(job_id, state, result_dict, error, progress, t0)

    def _finish(
        self,
        job_id: str,
        state: JobState,
        result: dict[str, Any] | None,
        error: str | None,
        progress: dict[str, Any] | None = None,
        t0: float | None = None,
    ) -> None:
        event = self.store.finish(job_id, state, result=result, error=error, progress=progress)
        self.metrics.jobs_finished_total.inc(labels={"state": state.value})
        if t0 is not None:
            elapsed_s = time.perf_counter() - t0
            self.metrics.focus_duration.observe(elapsed_s, {"outcome": state.value})
        else:
            elapsed_s = None
        log.info(
            f"job.{state.value}",
            error=error,
            elapsed_s=elapsed_s,
            best_z_um=(result or {}).get("best_z_um"),
        )
        self.broker.publish(event)

    def _fail_unexpectedly(self, job_id: str, exc: BaseException) -> None:
        try:
            job = self.store.get(job_id)
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
        mic = self.microscope
        if mic is None:
            return
        try:
            if full:
                self.snapshot.name = getattr(mic, "name", None)
                self.snapshot.z_limits_um = mic.z_limits_um
                self.snapshot.camera = mic.camera_info()
                if hasattr(mic, "plane_spacing_um"):
                    from autofocus.replay_stack import replay_request

                    self.snapshot.request_defaults = replay_request(
                        mic, tolerance_um=getattr(mic, "focus_tolerance_um", None)
                    )
            self.snapshot.z_um = float(mic.z_um)
            self.snapshot.exposure_ms = float(mic.exposure_ms)
            self.snapshot.updated_s = time.time()
        except Exception as exc:  # noqa: BLE001 - shown on /v1/microscope, next job reports it
            if full:
                raise
            log.warning("microscope.read_failed", error=str(exc))

    def _snapshot_log(self) -> dict[str, Any]:
        s = self.snapshot
        return {
            "z_um": s.z_um,
            "z_min_um": s.z_limits_um.min_um if s.z_limits_um else None,
            "z_max_um": s.z_limits_um.max_um if s.z_limits_um else None,
        }


def _fingerprint(fields: Mapping[str, Any]) -> str:
    canon = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def _check_roi(roi: Mapping[str, int], camera: CameraInfo | None) -> None:
    if camera is None:
        return
    x, y, w, h = roi["x_px"], roi["y_px"], roi["width_px"], roi["height_px"]
    if x + w > camera.width_px or y + h > camera.height_px:
        raise InvalidRequest(
            f"the ROI {w}×{h} px at ({x}, {y}) does not fit the {camera.width_px}×"
            f"{camera.height_px} px camera frame"
        )


def _sentence(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, AutofocusError | MicroscopeError) else f"invalid request: {text}"
