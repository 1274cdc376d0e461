"""The watchdog: a hard deadline on every hardware call and on every job — never a silent stall.

A driver call that never returns (a stage controller that stopped answering,
a camera stuck in an exposure) cannot be interrupted from Python, and it holds
the only thread allowed to touch the hardware. So when a hardware call has
been running longer than `hardware_timeout_s`, or a job longer than its own
`timeout_s` plus `hardware_timeout_s`, the watchdog

1. fails the running job (or focus map) with reason code `hardware` and a sentence naming the
   device ("the Z stage did not answer within 30 s (moving to z=12.000 µm)")
   and the position last commanded, and tells every watcher;
2. turns `/readyz` into 503 with that reason and refuses new work;
3. after `EXIT_DELAY_S` (so waiting clients get the answer) exits the process
   with `EXIT_CODE`, without a clean-stop mark: systemd (`Restart=on-failure`)
   starts a fresh daemon, which treats jobs queued at that moment as
   interrupted by a crash (the stage does not move until a client asks again).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from autofocus.logging import get_logger
from autofocus.search.reasons import FailureReason
from autofocus.service.jobs.models import JobState

log = get_logger("autofocus.watchdog")

EXIT_CODE = 70  # EX_SOFTWARE: systemd's Restart=on-failure restarts on any non-zero code
EXIT_DELAY_S = 1.0
HARDWARE = FailureReason.HARDWARE.value  # the job's reason code when the watchdog trips


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    os._exit(code)  # the hung thread cannot be joined; a normal exit would wait for it


class Watchdog:
    """Checks the manager's hardware calls and running job every `interval_s` seconds.

    `exit_process(code)` ends the process (default: `os._exit` after flushing the
    log); tests embedding the service may pass their own.
    """

    def __init__(
        self,
        manager: Any,
        *,
        interval_s: float = 0.1,
        exit_process: Callable[[int], None] | None = None,
    ) -> None:
        self.m = manager
        self.interval_s = float(interval_s)
        self.exit_process = exit_process or _exit_now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tripped: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            reason = self.check(time.monotonic())
            if reason is not None:
                self.trip(reason)
                return

    def check(self, now_s: float) -> str | None:
        """The sentence saying what is overdue at monotonic `now_s`, or None."""
        call = self.m.hardware_watch.current()
        if call is not None and call.overdue_s(now_s) > 0:
            return f"{call.device} did not answer within {call.deadline_s:g} s ({call.detail})"
        running = self.m.running_job
        limit_s = getattr(running, "timeout_s", None)
        if running is not None and isinstance(limit_s, int | float):
            grace_s = float(self.m.settings.hardware_timeout_s)
            if now_s - running.started_s > float(limit_s) + grace_s:
                return (
                    f"the focus job did not stop within {grace_s:g} s after its "
                    f"{float(limit_s):g} s time limit"
                )
        return None

    def trip(self, sentence: str) -> None:
        """Fail the running job, turn not-ready with the reason, then exit the process."""
        self.tripped = sentence
        self.m.watchdog_reason = (
            f"watchdog: {sentence}; the autofocus service is restarting (exit code {EXIT_CODE})"
        )
        log.error("watchdog.tripped", reason=sentence, exit_code=EXIT_CODE)
        try:
            self._fail_running_job(sentence)
        except Exception:  # noqa: BLE001 - the exit below matters more
            log.exception("watchdog.fail_job_failed")
        try:
            self.m.abandon_task(sentence)  # a focus map being built fails with the reason
        except Exception:  # noqa: BLE001 - the exit below matters more
            log.exception("watchdog.fail_task_failed")
        time.sleep(EXIT_DELAY_S)
        self.exit_process(EXIT_CODE)

    def _fail_running_job(self, sentence: str) -> None:
        running = self.m.running_job
        if running is None:
            return
        running.cancel.set()
        progress = dict(running.progress)
        z_um = progress.get("commanded_z_um")
        where = (
            f"the stage was last commanded to z={z_um:.3f} µm and its position is now unknown"
            if isinstance(z_um, int | float)
            else "the stage position is unknown"
        )
        error = (
            f"{sentence}; {where}. The autofocus service restarts "
            "itself (watchdog); check the hardware before focusing again"
        )
        progress["interrupted_z_um"] = z_um
        event = self.m.finish_job(
            running.job_id,
            JobState.FAILED,
            result=None,
            error=error,
            progress=progress,
            error_code=HARDWARE,
        )
        if event is not None:
            self.m.metrics.jobs_finished_total.inc(labels={"state": JobState.FAILED.value})
            self.m.broker.publish(event)
            log.error("job.failed", job_id=running.job_id, error=error, error_code=HARDWARE)
