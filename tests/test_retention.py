"""Retention: finished jobs (their events and idempotency keys) are purged by age and by
count; queued and running jobs never are. A real SQLite file."""

from __future__ import annotations

import time

from autofocus.service.jobs.models import JobState
from autofocus.service.jobs.store import JobStore


def _job(store: JobStore, i: int, *, finished_s: float | None, key: str | None = None) -> str:
    job_id = f"job{i:05d}"
    store.create(
        job_id,
        {"range_um": 40},
        progress={},
        idempotency_key=key,
        fingerprint="f",
        created_s=finished_s or time.time(),
    )
    if finished_s is not None:
        store.mark_running(job_id, {})
        store.add_measurement(job_id, {"z_um": 1.0, "score": 2.0}, {})
        store.finish(
            job_id, JobState.SUCCEEDED, result={"best_z_um": 1.0}, error=None, finished_s=finished_s
        )
    return job_id


def test_purge_by_age_and_count(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    now = time.time()
    old = [_job(store, i, finished_s=now - 40 * 86400, key=f"k{i}") for i in range(5)]
    recent = [_job(store, 100 + i, finished_s=now - 3600) for i in range(8)]
    queued = _job(store, 999, finished_s=None)

    purged = store.purge(max_age_s=30 * 86400, max_jobs=5, now_s=now)
    assert purged == 5 + 3
    for job_id in old + recent[:3]:
        assert store.get(job_id) is None and store.events(job_id) == []
    for job_id in recent[3:]:
        assert store.get(job_id) is not None and store.events(job_id)
    assert store.get(queued) is not None  # never purged
    assert store.find_by_idempotency_key("k0") is None  # the key can be used again
    plan = store._db.execute(
        "EXPLAIN QUERY PLAN SELECT seq FROM jobs WHERE finished_s < ? ORDER BY finished_s", (now,)
    ).fetchall()
    assert any("INDEX" in str(tuple(r)) for r in plan)
    store.close()


def test_the_daemon_purges_at_start(tmp_path):
    import httpx
    from sim_server import sim_server

    db = tmp_path / "jobs.db"
    store = JobStore(db)
    now = time.time()
    old = _job(store, 1, finished_s=now - 400 * 86400)
    keep = _job(store, 2, finished_s=now - 60)
    store.close()
    with sim_server(db, retention_days=30) as srv:
        with httpx.Client(base_url=srv.url) as http:
            assert http.get(f"/v1/jobs/{old}").status_code == 404
            assert http.get(f"/v1/jobs/{keep}").status_code == 200
