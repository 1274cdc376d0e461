"""SQLite persistence of jobs and their events (one file, WAL journal).

Every state change and every measurement is committed before it is
announced, so a client replaying a job's events after a crash sees exactly
what happened up to the crash. WAL with `synchronous=NORMAL` survives a
killed process (SIGKILL); only a power cut may lose the last commits.

One connection guarded by a lock: the worker thread writes, the event loop
reads; every call is a short transaction.

Besides jobs and events the file holds two one-row tables: `stage` (the Z
position last commanded, written *before* the command is sent, so an
interrupted job reports it exactly) and `service` (whether the daemon that
last used the file stopped cleanly, so a restart can tell a crash).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autofocus.service.jobs.models import Job, JobState, to_jsonable

INTERRUPTED_CODE = "interrupted"  # FailureReason.INTERRUPTED: the job's error_code
SCHEMA_VERSION = 2  # 2: jobs.error_code, the stage and service tables, jobs_finished index

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    progress TEXT NOT NULL,
    result TEXT,
    error TEXT,
    created_s REAL NOT NULL,
    started_s REAL,
    finished_s REAL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_s);
CREATE TABLE IF NOT EXISTS stage (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    commanded_z_um REAL,
    job_id TEXT,
    moves INTEGER NOT NULL DEFAULT 0,
    at_s REAL
);
CREATE TABLE IF NOT EXISTS service (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    running INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    started_s REAL,
    stopped_s REAL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class StoredEvent:
    """One event of a job: its per-job sequence number (from 1), kind and JSON data."""

    job_id: str
    seq: int
    kind: str
    data: dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), separators=(",", ":"), allow_nan=False)


class JobStore:
    """Jobs and events in one SQLite file at `path` (created with its folder if missing).

    Raises `sqlite3.DatabaseError` when the file is not a database or a newer
    schema than this code knows.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path} was written by a newer autofocus (schema {version}); "
                    f"this one knows schema {SCHEMA_VERSION}"
                )
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
            if columns and "error_code" not in columns:  # a schema-1 file: upgrade in place
                self._db.execute("ALTER TABLE jobs ADD COLUMN error_code TEXT")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO stage (id, moves) VALUES (1, 0)")
            self._db.execute("INSERT OR IGNORE INTO service (id, running) VALUES (1, 0)")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ writes

    def create(
        self,
        job_id: str,
        request: dict[str, Any],
        *,
        progress: dict[str, Any],
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        created_s: float | None = None,
    ) -> tuple[Job, StoredEvent]:
        """Insert a new queued job and its first `state` event; return both.

        Raises `sqlite3.IntegrityError` when `idempotency_key` is already used.
        """
        created = time.time() if created_s is None else created_s
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO jobs (id, state, request, progress, created_s, idempotency_key,"
                " fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    JobState.QUEUED.value,
                    _dumps(request),
                    _dumps(progress),
                    created,
                    idempotency_key,
                    fingerprint,
                ),
            )
            event = self._append_event(job_id, "state", {"state": "queued", "at_s": created})
            job = self._get(job_id)
        assert job is not None
        return job, event

    def mark_running(
        self, job_id: str, progress: dict[str, Any], started_s: float | None = None
    ) -> StoredEvent:
        """Move a queued job to running; return the `state` event."""
        started = time.time() if started_s is None else started_s
        with self._lock, self._tx():
            self._db.execute(
                "UPDATE jobs SET state=?, started_s=?, progress=? WHERE id=?",
                (JobState.RUNNING.value, started, _dumps(progress), job_id),
            )
            return self._append_event(job_id, "state", {"state": "running", "at_s": started})

    def add_measurement(
        self, job_id: str, measurement: dict[str, Any], progress: dict[str, Any]
    ) -> StoredEvent:
        """Record one measured (z, score) and the job's new progress; return the event."""
        with self._lock, self._tx():
            self._db.execute("UPDATE jobs SET progress=? WHERE id=?", (_dumps(progress), job_id))
            return self._append_event(job_id, "measurement", measurement)

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        result: dict[str, Any] | None,
        error: str | None,
        progress: dict[str, Any] | None = None,
        finished_s: float | None = None,
        error_code: str | None = None,
    ) -> StoredEvent | None:
        """Put a job in a terminal `state` with its result, error and reason code; return the
        event. A job that has already ended is left as it is (None is returned): the
        watchdog and a worker coming back from a hung call may both try to end it."""
        if not state.terminal:
            raise ValueError(f"finish() needs a terminal state, got {state.value}")
        finished = time.time() if finished_s is None else finished_s
        live = (JobState.QUEUED.value, JobState.RUNNING.value)
        with self._lock, self._tx():
            # progress None keeps the stored one (COALESCE).
            cur = self._db.execute(
                "UPDATE jobs SET state=?, result=?, error=?, finished_s=?,"
                " progress=COALESCE(?, progress), error_code=? WHERE id=? AND state IN (?, ?)",
                (
                    state.value,
                    _opt_dumps(result),
                    error,
                    finished,
                    _opt_dumps(progress),
                    error_code,
                    job_id,
                    *live,
                ),
            )
            if cur.rowcount == 0:
                return None
            data: dict[str, Any] = {"state": state.value, "at_s": finished, "error": error}
            if error_code is not None:
                data["error_code"] = error_code
            if result is not None:
                data["best_z_um"] = result.get("best_z_um")
                data["success"] = result.get("success")
            return self._append_event(job_id, "state", data)

    def record_command(self, job_id: str | None, z_um: float) -> int:
        """Make the Z position about to be commanded durable; return the job's move count.

        Called before every move is sent, so after a crash the position the stage
        was last told to go to is known exactly (`last_command`).
        """
        now = time.time()
        with self._lock, self._tx():
            self._db.execute(
                "UPDATE stage SET commanded_z_um=?, at_s=?,"
                " moves=CASE WHEN job_id IS ? THEN moves + 1 ELSE 1 END, job_id=? WHERE id=1",
                (float(z_um), now, job_id, job_id),
            )
            return int(self._db.execute("SELECT moves FROM stage WHERE id=1").fetchone()[0])

    def probe_write(self) -> None:
        """Write (and commit) one row: raises `sqlite3.Error` while the file cannot be
        written (disk full, read-only), returns once it can again."""
        with self._lock, self._tx():
            self._db.execute("UPDATE service SET pid=pid WHERE id=1")

    def last_command(self) -> tuple[float | None, str | None, int]:
        """(z_um, job_id, moves of that job) of the last commanded Z position."""
        with self._lock:
            row = self._db.execute(
                "SELECT commanded_z_um, job_id, moves FROM stage WHERE id=1"
            ).fetchone()
        return row["commanded_z_um"], row["job_id"], int(row["moves"])

    def mark_service_started(self, pid: int) -> bool:
        """Note that a daemon uses the file now; return True when the previous one did not
        stop cleanly (it crashed, was killed or the watchdog made it exit)."""
        with self._lock, self._tx():
            crashed = bool(self._db.execute("SELECT running FROM service WHERE id=1").fetchone()[0])
            self._db.execute(
                "UPDATE service SET running=1, pid=?, started_s=? WHERE id=1", (pid, time.time())
            )
        return crashed

    def mark_service_stopped(self) -> None:
        """Note a clean stop (queued jobs may run after the next start)."""
        with self._lock, self._tx():
            self._db.execute("UPDATE service SET running=0, stopped_s=? WHERE id=1", (time.time(),))

    def release_idempotency_key(self, job_id: str) -> None:
        """Detach the idempotency key from `job_id` so a new job can be created with it."""
        with self._lock, self._tx():
            self._db.execute("UPDATE jobs SET idempotency_key=NULL WHERE id=?", (job_id,))

    def interrupt_queued(self) -> list[tuple[Job, StoredEvent]]:
        """After a crash: mark every queued job `interrupted` (not started, stage not moved)."""
        error = (
            "the autofocus service stopped unexpectedly before this job started; it was not "
            "started and the stage was not moved. Submit it again to run it (the same "
            "Idempotency-Key is accepted)"
        )
        out: list[tuple[Job, StoredEvent]] = []
        now = time.time()
        with self._lock, self._tx():
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE state=? ORDER BY seq", (JobState.QUEUED.value,)
            ).fetchall()
            for row in rows:
                out.append(self._interrupt(row["id"], error, now))
        return out

    def set_cancel_requested(self, job_id: str) -> None:
        """Remember that a cancel was asked for (shown in the job)."""
        with self._lock, self._tx():
            self._db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))

    def recover_after_crash(self) -> list[tuple[Job, StoredEvent]]:
        """Mark jobs left `running` by a dead process `interrupted`; return them with events.

        The error names the last stage position the job recorded, because the
        stage may have been left anywhere within the searched range.
        """
        out: list[tuple[Job, StoredEvent]] = []
        now = time.time()
        with self._lock, self._tx():
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state=? ORDER BY seq", (JobState.RUNNING.value,)
            ).fetchall()
            stage = self._db.execute(
                "SELECT commanded_z_um, job_id, moves FROM stage WHERE id=1"
            ).fetchone()
            for row in rows:
                job = _row_to_job(row)
                moves = 0
                if stage is not None and stage["job_id"] == job.id:
                    last_z, moves = stage["commanded_z_um"], int(stage["moves"])
                    where = (
                        f"; the stage was last commanded to z={last_z:.3f} µm (it may have "
                        "stopped on its way there)"
                    )
                else:
                    # Every move is recorded before it is sent, so this job had not moved
                    # the stage yet (or the file predates the record: then the last
                    # position the job measured is the best there is).
                    last_z = job.progress.get("last_z_um")
                    if last_z is None:
                        last_z = job.progress.get("start_z_um")
                    where = (
                        f"; the last stage position it recorded was z={last_z:.3f} µm"
                        if isinstance(last_z, int | float)
                        else "; the stage position is unknown"
                    )
                error = (
                    "the autofocus service stopped while this job was running"
                    + where
                    + ", so the stage may not be back at its start position"
                )
                progress = dict(job.progress)
                progress["interrupted_z_um"] = last_z
                progress["commanded_moves"] = moves
                out.append(self._interrupt(job.id, error, now, progress, last_z_um=last_z))
        return out

    def _interrupt(
        self,
        job_id: str,
        error: str,
        now: float,
        progress: dict[str, Any] | None = None,
        **event_data: Any,
    ) -> tuple[Job, StoredEvent]:
        """Mark `job_id` interrupted with `error` (and `progress` when given) inside the
        caller's transaction; return the job and its state event (`event_data` added)."""
        self._db.execute(
            "UPDATE jobs SET state=?, error=?, finished_s=?, progress=COALESCE(?, progress),"
            " error_code=? WHERE id=?",
            (JobState.INTERRUPTED.value, error, now, _opt_dumps(progress), INTERRUPTED_CODE,
             job_id),
        )
        event = self._append_event(
            job_id, "state", {"state": "interrupted", "at_s": now, "error": error,
                              "error_code": INTERRUPTED_CODE, **event_data}
        )
        job = self._get(job_id)
        assert job is not None
        return job, event

    def purge(
        self,
        *,
        max_age_s: float,
        max_jobs: int,
        now_s: float | None = None,
        batch: int = 500,
    ) -> int:
        """Delete finished jobs older than `max_age_s` and beyond the newest `max_jobs`
        finished ones, with their events and idempotency keys; return how many went.

        Queued and running jobs are never deleted (only finished jobs have
        `finished_s`). Works through the `jobs_finished` index in short
        transactions of at most `batch` jobs, so readers are never held up long.
        """
        now = time.time() if now_s is None else now_s
        by_age = (
            "SELECT id FROM jobs WHERE finished_s < ? ORDER BY finished_s LIMIT ?",
            (now - max_age_s, batch),
        )
        # Beyond the newest `max_jobs` finished jobs (ties on time broken by submission order).
        by_count = (
            "SELECT id FROM jobs WHERE finished_s IS NOT NULL"
            " ORDER BY finished_s DESC, seq DESC LIMIT ? OFFSET ?",
            (batch, max(0, int(max_jobs))),
        )
        purged = 0
        for query, args in (by_age, by_count):
            while True:
                with self._lock, self._tx():
                    ids = [r[0] for r in self._db.execute(query, args)]
                    if ids:
                        marks = ",".join("?" * len(ids))
                        self._db.execute(f"DELETE FROM events WHERE job_id IN ({marks})", ids)
                        self._db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
                purged += len(ids)
                if len(ids) < batch:
                    break
        return purged

    # ------------------------------------------------------------------- reads

    def get(self, job_id: str) -> Job | None:
        """The job with `job_id`, or None."""
        with self._lock:
            return self._get(job_id)

    def find_by_idempotency_key(self, key: str) -> tuple[Job, str | None] | None:
        """The job created with `key` and its request fingerprint, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE idempotency_key=?", (key,)).fetchone()
        return None if row is None else (_row_to_job(row), row["fingerprint"])

    def list(
        self,
        *,
        states: Iterable[JobState] = (),
        limit: int = 50,
        before_seq: int | None = None,
    ) -> list[Job]:
        """Jobs newest first, optionally only in `states`, older than `before_seq`."""
        clauses, args = [], []
        state_values = [s.value for s in states]
        if state_values:
            clauses.append(f"state IN ({','.join('?' * len(state_values))})")
            args.extend(state_values)
        if before_seq is not None:
            clauses.append("seq < ?")
            args.append(before_seq)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*args, int(limit))
            ).fetchall()
        return [_row_to_job(r) for r in rows]

    def queued_ids(self) -> list[str]:
        """Ids of queued jobs in submission (FIFO) order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE state=? ORDER BY seq", (JobState.QUEUED.value,)
            ).fetchall()
        return [r["id"] for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        """Number of jobs in every state (zeros included)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            found = {r["state"]: r["n"] for r in rows}
        return {s.value: int(found.get(s.value, 0)) for s in JobState}

    def events(self, job_id: str, *, after_seq: int = 0) -> list[StoredEvent]:
        """Events of `job_id` with a sequence number above `after_seq`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM events WHERE job_id=? AND seq>? ORDER BY seq", (job_id, after_seq)
            ).fetchall()
        return [StoredEvent(job_id, r["seq"], r["kind"], json.loads(r["data"])) for r in rows]

    # --------------------------------------------------------------- internals

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def _get(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _row_to_job(row)

    def _append_event(self, job_id: str, kind: str, data: dict[str, Any]) -> StoredEvent:
        seq = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id=?", (job_id,)
        ).fetchone()[0]
        clean = to_jsonable(data)
        self._db.execute(
            "INSERT INTO events (job_id, seq, kind, data) VALUES (?, ?, ?, ?)",
            (job_id, seq, kind, json.dumps(clean, separators=(",", ":"))),
        )
        return StoredEvent(job_id, int(seq), kind, clean)


class _Transaction:
    """`BEGIN IMMEDIATE` … `COMMIT` (or `ROLLBACK` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
        else:
            self._rollback()

    def _rollback(self) -> None:
        # After SQLITE_FULL SQLite may have rolled back already; a second ROLLBACK would
        # raise "no transaction is active" and hide the real error.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _opt_dumps(value: dict[str, Any] | None) -> str | None:
    return None if value is None else _dumps(value)


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        seq=int(row["seq"]),
        state=JobState(row["state"]),
        request=json.loads(row["request"]),
        progress=json.loads(row["progress"]),
        result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
        created_s=float(row["created_s"]),
        started_s=row["started_s"],
        finished_s=row["finished_s"],
        idempotency_key=row["idempotency_key"],
        cancel_requested=bool(row["cancel_requested"]),
        error_code=row["error_code"],
    )
