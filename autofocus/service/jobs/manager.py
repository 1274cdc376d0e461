"""The job manager: validation, the bounded FIFO queue, persistence, cancel and wait.

One `JobManager` serves one microscope. Its worker thread (`worker.Worker`)
opens the microscope, runs queued jobs one at a time (FIFO) and is the only
thread that touches the hardware; the HTTP side reads a snapshot of the stage
(position, limits, camera) that the worker refreshes. Submissions are validated against
that snapshot *before* they are queued, so a request that would leave the Z
limits is refused with the stage untouched; the engine validates again when
the job starts, because the stage may have moved in between.

"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from autofocus_drivers.base import CameraInfo, Microscope

from autofocus.errors import UnknownNameError
from autofocus.logging import get_logger
from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import canonical_scorer_name, get_scorer, is_model_path
from autofocus.service.jobs.events import EventBroker
from autofocus.service.jobs.hardware import HardwareWatch
from autofocus.service.jobs.models import Job, JobState
from autofocus.service.jobs.store import JobStore, StoredEvent
from autofocus.service.jobs.watchdog import Watchdog
from autofocus.service.jobs.worker import (
    MicroscopeSnapshot,
    RunningJob,
    Worker,
    focus_request,
)
from autofocus.service.metrics import Metrics
from autofocus.settings import Settings

log = get_logger("autofocus.service.jobs")

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
    "mode",
    "rival",
    "rival_check",
    "expected_z_um",
    "expected_sigma_um",
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


class JobManager:
    """Queue, persistence and the worker thread of one microscope.

    `open_microscope` builds the microscope from the settings (default:
    `autofocus.service.microscopes.open_microscope`); it is called in the worker
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
        exit_process: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.metrics = metrics
        self._open_microscope = open_microscope
        self._queue: deque[str] = deque()
        # Hardware tasks other than focus jobs (focus maps). They share the job queue's
        # rules: one FIFO order (by `_seq`), one `queue_max`, cancellable.
        self._tasks: deque[HardwareTask] = deque()
        self._seq: dict[str, int] = {}  # job id -> its place in the FIFO order
        self._next_seq = 0
        self._current_task: HardwareTask | None = None
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._current: RunningJob | None = None
        self._thread: threading.Thread | None = None
        self._scorers: dict[str, Scorer] = {}
        self._scorer_lock = threading.Lock()
        self.microscope: Microscope | None = None
        self.snapshot = MicroscopeSnapshot(driver=settings.driver)
        self.started_s = time.time()
        self.hardware_watch = HardwareWatch(settings.hardware_timeout_s)
        self.watchdog = Watchdog(self, exit_process=exit_process)
        # Set by the watchdog when the hardware stopped answering: /readyz says it, nothing
        # new is accepted, and the process exits so systemd starts a fresh one.
        self.watchdog_reason: str | None = None
        self._last_purge_s = float("-inf")  # monotonic time of the last retention purge
        # Set while the job database cannot be written (disk full, read-only): /readyz 503,
        # submissions 503. Final states that could not be written wait in `_unwritten`
        # (served from memory) until the worker can write them.
        self.store_error: str | None = None
        self._unwritten: dict[str, tuple[dict[str, Any], StoredEvent]] = {}

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Recover after a crash, re-queue queued jobs, start the worker and the watchdog.

        A job left running by a dead process becomes `interrupted` with the Z position
        the stage was last commanded to. After an unclean stop (crash, SIGKILL, out of
        memory, watchdog exit) queued jobs become `interrupted` too, so the stage does
        not move until a client asks again, unless `resume_after_crash` is set; after a
        clean stop they run.
        """
        crashed = self.store.mark_service_started(os.getpid())
        for job, event in self.store.recover_after_crash():
            log.warning("job.interrupted", job_id=job.id, error=job.error)
            self.broker.publish(event)
        if crashed and not self.settings.resume_after_crash:
            for job, event in self.store.interrupt_queued():
                log.warning("job.interrupted", job_id=job.id, when="queued")
                self.broker.publish(event)
        with self._lock:
            for job_id in self.store.queued_ids():
                self._queue.append(job_id)
                self._seq[job_id] = self._take_seq()
                self._cancels[job_id] = threading.Event()
        if self._queue:
            log.info("jobs.requeued", count=len(self._queue))
        self.purge_old_jobs()
        self._worker = Worker(self)
        self._thread = threading.Thread(target=self._worker.main, name="microscope-worker")
        self._thread.daemon = True
        self._thread.start()
        self.watchdog.start()

    PURGE_INTERVAL_S = 3600.0

    def purge_old_jobs(self) -> int:
        """Apply the retention settings now (finished jobs past `retention_days` or beyond
        `retention_max_jobs`); return how many jobs were deleted."""
        self._last_purge_s = time.monotonic()
        try:
            n = self.store.purge(
                max_age_s=self.settings.retention_days * 86400.0,
                max_jobs=self.settings.retention_max_jobs,
            )
        except Exception as exc:  # noqa: BLE001 - retention must never stop the service
            log.warning("jobs.purge_failed", error=str(exc))
            return 0
        if n:
            log.info("jobs.purged", count=n)
        return n

    def maybe_purge(self) -> None:
        """Purge when the last purge is `PURGE_INTERVAL_S` old (called by the idle worker)."""
        if time.monotonic() - self._last_purge_s >= self.PURGE_INTERVAL_S:
            self.purge_old_jobs()

    def begin_shutdown(self) -> None:
        """Stop taking jobs and cancel the running one (its stage returns); returns at once.

        Called as soon as a shutdown signal arrives, before open HTTP streams are
        drained, so a watcher cannot keep the job (or the next one) running.
        """
        if not self._stopping.is_set():
            log.info("service.stopping", running_job=self.current_job_id)
        self._stopping.set()
        with self._lock:
            if self._current is not None:
                self._current.cancel.set()
            if self._current_task is not None:
                self._current_task.cancel.set()
            self._wake.notify_all()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the worker: cancel the running job (the stage returns), keep queued jobs."""
        self.begin_shutdown()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("worker.stop_timeout", timeout_s=timeout_s)
                return  # not a clean stop: the next start treats it as a crash
        self.watchdog.stop()
        if self.watchdog_reason is None:
            self.store.mark_service_stopped()

    @property
    def ready(self) -> bool:
        """True when the microscope is open and the worker is alive."""
        return (
            self._ready.is_set()
            and self._thread is not None
            and self._thread.is_alive()
            and not self._stopping.is_set()
            and self.watchdog_reason is None
            and self.store_error is None
        )

    @property
    def z_resolution_um(self) -> float:
        """The finest tolerance a request may ask for: the configured `z_resolution_um` or
        the driver's own step, whichever is coarser (µm)."""
        driver_step = getattr(self.microscope, "z_resolution_um", None)
        floor = float(self.settings.z_resolution_um)
        if isinstance(driver_step, int | float) and math.isfinite(driver_step):
            floor = max(floor, float(driver_step))
        return floor

    @property
    def worker_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Jobs and focus maps waiting (not counting the running one)."""
        with self._lock:
            return len(self._queue) + len(self._tasks)

    @property
    def current_task_label(self) -> str | None:
        """The label of the hardware task (focus map) the worker runs now, or None."""
        task = self._current_task
        return task.label if task is not None else None

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def _check_queue_room(self) -> None:
        waiting = len(self._queue) + len(self._tasks)
        if waiting >= self.settings.queue_max:
            raise QueueFull(
                f"{waiting} jobs and focus maps are already waiting (queue_max "
                f"{self.settings.queue_max}); try again when one has finished"
            )

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
        interrupted_id: str | None = None  # a crash-interrupted job whose key is taken over
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
                    if job.state is not JobState.INTERRUPTED:
                        return job, False
                    # Asked again after a crash interrupted it: a new job takes the key
                    # (the old one keeps its record without the key).
                    interrupted_id = job.id
            request = self.resolve(fields)
            if interrupted_id is not None:  # only once valid: a bad request keeps the key
                self.store.release_idempotency_key(interrupted_id)
            self._check_queue_room()
            job_id = uuid.uuid4().hex
            progress = {
                "frames": 0,
                "max_frames": request["max_frames"],
                "last_z_um": None,
                "last_score": None,
                "start_z_um": None,
            }
            try:
                job, event = self.store.create(
                    job_id,
                    request,
                    progress=progress,
                    idempotency_key=idempotency_key,
                    fingerprint=fingerprint,
                )
            except sqlite3.Error as exc:
                self.store_failed(exc)
                raise NotReady(self.not_ready_reason()) from None
            self._cancels[job_id] = threading.Event()
            self._queue.append(job_id)
            self._seq[job_id] = self._take_seq()
            self._wake.notify_all()
        log.info("job.queued", job_id=job_id, **{k: request[k] for k in ("strategy", "scorer")})
        self.broker.publish(event)
        return job, True

    def resolve(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The full request: `fields` over the settings' defaults, validated; see `submit`."""
        from autofocus.search.focus import search_space
        from autofocus.search.strategies.registry import available_strategies

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
            "mode": "search",
            "rival": "fail",
            "rival_check": d.rival_check,
            "expected_z_um": None,
            "expected_sigma_um": None,
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
        if req["tolerance_um"] is not None:  # None: DOF/4 of the optics (or 0.5 µm), later
            _check_tolerance(req["tolerance_um"], self.z_resolution_um)
        try:
            search_space(focus_request(req, d), snap.z_um, snap.z_limits_um)
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
                self._seq.pop(job_id, None)
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
        """The job with `job_id` (with a final state not yet written, if any); raises
        `JobNotFound`."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return self.with_unwritten(job)

    def with_unwritten(self, job: Job) -> Job:
        """`job` as it ended when its final state is still waiting to be written."""
        pending = self._unwritten.get(job.id)
        if pending is None or job.state.terminal:
            return job
        fields, _event = pending
        return dataclasses.replace(job, **fields)

    # ------------------------------------------------------- the store failing (disk full)

    def unwritten_event(self, job_id: str) -> StoredEvent | None:
        """The final `state` event of `job_id` while it waits to be written, or None."""
        pending = self._unwritten.get(job_id)
        return pending[1] if pending is not None else None

    def store_failed(self, exc: BaseException) -> None:
        """The job database could not be written: refuse new work (503) until it can."""
        if self.store_error is None:
            log.error("store.write_failed", error=str(exc), path=str(self.store.path))
        self.store_error = (
            f"the job database {self.store.path} cannot be written ({exc}); new jobs are "
            "refused until it can (free disk space)"
        )

    def finish_job(self, job_id: str, state: JobState, **fields: Any) -> StoredEvent | None:
        """`store.finish(job_id, state, **fields)`; when the database cannot be written the
        final state is kept in memory (served by `get`, announced to watchers) and written
        by `check_store` once the database works again."""
        try:
            return self.store.finish(job_id, state, **fields)
        except sqlite3.Error as exc:
            self.store_failed(exc)
        events = self.store.events(job_id)
        at_s = time.time()
        data: dict[str, Any] = {"state": state.value, "at_s": at_s, "error": fields.get("error")}
        if fields.get("error_code") is not None:
            data["error_code"] = fields["error_code"]
        event = StoredEvent(job_id, (events[-1].seq if events else 0) + 1, "state", data)
        job_fields: dict[str, Any] = {
            "state": state, "error": fields.get("error"), "result": fields.get("result"),
            "error_code": fields.get("error_code"), "finished_s": at_s,
        }
        if fields.get("progress") is not None:
            job_fields["progress"] = fields["progress"]
        self._unwritten[job_id] = (job_fields, event)
        return event

    def check_store(self) -> None:
        """While the database failed: write what waits and try a write; when both work,
        the service is ready again. Called by the idle worker."""
        if self.store_error is None:
            return
        try:
            for job_id, (fields, _event) in list(self._unwritten.items()):
                self.store.finish(
                    job_id, fields["state"], result=fields["result"], error=fields["error"],
                    progress=fields.get("progress"), finished_s=fields["finished_s"],
                    error_code=fields["error_code"],
                )
                self._unwritten.pop(job_id, None)
            self.store.probe_write()
        except sqlite3.Error:
            return
        log.info("store.writable_again", path=str(self.store.path))
        self.store_error = None

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
        if self.watchdog_reason:
            return self.watchdog_reason
        if self.store_error:
            return self.store_error
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
        if is_model_path(key):  # a model file (e.g. from `autofocus calibrate`) by path
            opts["execution_provider"] = self.settings.execution_provider
        elif key.startswith("focusnet"):
            if self.settings.model_path is not None:
                opts["model_path"] = self.settings.model_path
            opts["execution_provider"] = self.settings.execution_provider
        return opts

    # ----------------------------------------------------------------- queue

    def run_on_worker(
        self,
        fn: Callable[[Microscope, threading.Event], Any],
        *,
        label: str = "task",
        on_abandon: Callable[[str], None] | None = None,
    ) -> HardwareTask:
        """Queue `fn(microscope, cancel)` to run on the worker thread (the hardware's owner),
        in FIFO order with focus jobs and under the same `queue_max`; the task's `future`
        holds its result or exception. `cancel` is set by `cancel_task` or when the service
        stops. Raises `NotReady` when the microscope is not open, `QueueFull` past
        `queue_max`."""
        if not self.ready:
            raise NotReady(self.not_ready_reason())
        with self._lock:
            self._check_queue_room()
            task = HardwareTask(
                fn, Future(), threading.Event(), self._take_seq(), label, on_abandon
            )
            self._tasks.append(task)
            self._wake.notify_all()
        return task

    def cancel_task(self, task: HardwareTask) -> bool:
        """Cancel a hardware task: a queued one is dropped at once (its future cancelled; True),
        a running one sees its `cancel` flag at its next step (False)."""
        with self._lock:
            if task in self._tasks:
                self._tasks.remove(task)
                task.future.cancel()
                return True
        task.cancel.set()
        return False

    # ------------------------------------------- the worker's side (worker.Worker, watchdog)

    @property
    def microscope_factory(self) -> MicroscopeFactory | None:
        """The `open_microscope` given to the constructor (None: the configured driver's)."""
        return self._open_microscope

    @property
    def stop_event(self) -> threading.Event:
        """Set once shutdown began: the worker's loop ends and hardware tasks see it as cancel."""
        return self._stopping

    @property
    def running_job(self) -> RunningJob | None:
        """The job the worker runs now (its cancel flag, progress, time limit), or None."""
        return self._current

    def mark_ready(self) -> None:
        """The worker opened the microscope: `ready` may turn true."""
        self._ready.set()

    def _task_is_next(self) -> bool:
        # Caller holds the lock. FIFO across jobs and tasks: the older head goes first.
        if not self._tasks:
            return False
        return not self._queue or self._tasks[0].seq < self._seq.get(self._queue[0], 0)

    def next_task(self) -> HardwareTask | None:
        """The hardware task queued with `run_on_worker` when it is the oldest waiting entry
        (removed; now the current task), or None at once."""
        with self._lock:
            if self._stopping.is_set() or not self._task_is_next():
                return None
            self._current_task = self._tasks.popleft()
            if self._current_task.cancel.is_set() or self._stopping.is_set():
                self._current_task.cancel.set()
            return self._current_task

    def abandon_task(self, sentence: str) -> None:
        """The watchdog gave up on the hardware: the current task is cancelled and its
        `on_abandon(sentence)` tells its owner (the map fails with the reason)."""
        task = self._current_task
        if task is None:
            return
        task.cancel.set()
        if task.on_abandon is not None:
            task.on_abandon(sentence)

    def task_done(self) -> None:
        """The worker is through with the current hardware task."""
        with self._lock:
            self._current_task = None

    def next_job(self, timeout_s: float) -> str | None:
        """The id of the next queued job, now the `running_job`; None after `timeout_s`
        seconds with nothing queued, when a hardware task is older, or while stopping."""
        with self._lock:
            if not self._queue and not self._tasks:
                self._wake.wait(timeout_s)
            if not self._queue or self._stopping.is_set() or self._task_is_next():
                return None
            job_id = self._queue.popleft()
            self._seq.pop(job_id, None)
            cancel = self._cancels.setdefault(job_id, threading.Event())
            self._current = RunningJob(job_id, cancel)
            return job_id

    def job_done(self, job_id: str) -> None:
        """The worker is through with `job_id`: no job runs now and its cancel flag goes."""
        with self._lock:
            self._current = None
            self._cancels.pop(job_id, None)


@dataclass(eq=False)
class HardwareTask:
    """A queued hardware task (a focus map): `fn(microscope, cancel)`, the `future` holding
    its outcome, its own `cancel` flag, its place `seq` in the FIFO order, a `label`."""

    fn: Callable[[Microscope, threading.Event], Any]
    future: Future[Any]
    cancel: threading.Event
    seq: int
    label: str
    on_abandon: Callable[[str], None] | None = None


def _fingerprint(fields: Mapping[str, Any]) -> str:
    canon = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def _check_tolerance(tolerance_um: Any, floor_um: float) -> None:
    # A tolerance finer than the stage resolves cannot be met, and a tiny one makes every
    # "range / tolerance" count in the search astronomically large (memory, overflow).
    try:
        tol = float(tolerance_um)
    except (TypeError, ValueError):
        raise InvalidRequest(f"tolerance_um must be a number, got {tolerance_um!r}") from None
    if not math.isfinite(tol) or tol < floor_um:
        raise InvalidRequest(
            f"tolerance_um ({tol:g} µm) is below what the Z stage can resolve "
            f"(z_resolution_um = {floor_um:g} µm); ask for {floor_um:g} µm or more"
        )


def _check_roi(roi: Mapping[str, int], camera: CameraInfo | None) -> None:
    if camera is None:
        return
    x, y, w, h = roi["x_px"], roi["y_px"], roi["width_px"], roi["height_px"]
    if x + w > camera.width_px or y + h > camera.height_px:
        raise InvalidRequest(
            f"the ROI {w}×{h} px at ({x}, {y}) does not fit the {camera.width_px}×"
            f"{camera.height_px} px camera frame"
        )
