"""The SQLite job store, job records, event broker and metrics text (no server needed)."""

from __future__ import annotations

import asyncio
import math
import sqlite3

import numpy as np
import pytest

from autofocus.service.jobs.events import EventBroker
from autofocus.service.jobs.models import Job, JobState, iso_utc, to_jsonable
from autofocus.service.jobs.store import JobStore
from autofocus.service.metrics import Counter, Histogram, Metrics


def _new(store: JobStore, job_id: str, key: str | None = None) -> Job:
    job, event = store.create(
        job_id, {"range_um": 40.0}, progress={"frames": 0}, idempotency_key=key, fingerprint="f"
    )
    assert event.seq == 1 and event.data["state"] == "queued"
    return job


def test_lifecycle_is_persisted_across_reopen(tmp_path):
    path = tmp_path / "sub" / "jobs.db"
    store = JobStore(path)
    _new(store, "a")
    store.mark_running("a", {"frames": 0, "start_z_um": 1.5, "last_z_um": 1.5})
    e = store.add_measurement(
        "a", {"index": 0, "z_um": 2.0, "score": math.nan}, {"frames": 1, "last_z_um": 2.0}
    )
    assert e.seq == 3 and e.data["score"] is None  # NaN stored as null
    store.finish(
        "a",
        JobState.SUCCEEDED,
        result={"best_z_um": 2.0, "success": True, "fit": {"r2": np.float64(0.9)}},
        error=None,
    )
    store.close()

    again = JobStore(path)
    job = again.get("a")
    assert job is not None and job.state is JobState.SUCCEEDED
    assert job.result == {"best_z_um": 2.0, "success": True, "fit": {"r2": 0.9}}
    assert job.started_s is not None and job.finished_s >= job.started_s >= job.created_s
    kinds = [(ev.seq, ev.kind, ev.data.get("state")) for ev in again.events("a")]
    assert kinds == [
        (1, "state", "queued"),
        (2, "state", "running"),
        (3, "measurement", None),
        (4, "state", "succeeded"),
    ]
    assert [ev.seq for ev in again.events("a", after_seq=2)] == [3, 4]
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError):
        again.finish("a", JobState.RUNNING, result=None, error=None)


def test_recover_marks_running_interrupted_and_keeps_queued(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for job_id in ("old", "mid", "q1", "q2"):
        _new(store, job_id)
    store.mark_running("old", {"frames": 0})
    store.finish("old", JobState.FAILED, result=None, error="no focus signal")
    store.mark_running("mid", {"frames": 2, "start_z_um": 0.0, "last_z_um": 12.25})
    recovered = store.recover_after_crash()
    assert [j.id for j, _ in recovered] == ["mid"]
    job, event = recovered[0]
    assert job.state is JobState.INTERRUPTED
    assert "z=12.250 µm" in job.error and job.progress["interrupted_z_um"] == 12.25
    assert event.data["state"] == "interrupted" and event.seq == 3
    assert store.queued_ids() == ["q1", "q2"]
    assert store.get("old").error == "no focus signal"
    assert store.recover_after_crash() == []
    assert store.counts_by_state() == {
        "queued": 2,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 0,
        "interrupted": 1,
    }


def test_list_filters_and_cursor_pages(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    for i in range(7):
        _new(store, f"j{i}")
    store.finish("j3", JobState.CANCELLED, result=None, error="cancelled")
    page1 = store.list(limit=3)
    assert [j.id for j in page1] == ["j6", "j5", "j4"]
    page2 = store.list(limit=3, before_seq=page1[-1].seq)
    assert [j.id for j in page2] == ["j3", "j2", "j1"]
    assert [j.id for j in store.list(states=[JobState.CANCELLED])] == ["j3"]
    assert [j.id for j in store.list(states=[JobState.QUEUED], limit=2)] == ["j6", "j5"]


def test_idempotency_key_is_unique(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    _new(store, "a", key="k1")
    found = store.find_by_idempotency_key("k1")
    assert found is not None and found[0].id == "a" and found[1] == "f"
    assert store.find_by_idempotency_key("k2") is None
    with pytest.raises(sqlite3.IntegrityError):
        _new(store, "b", key="k1")
    assert store.get("b") is None  # the failed insert left nothing behind


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "jobs.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        JobStore(path)


def test_job_json_view():
    job = Job(
        id="x",
        seq=1,
        state=JobState.RUNNING,
        request={},
        created_s=0.0,
        result={"curve": [1], "best_z_um": 1.0},
    )
    d = job.to_dict(include_curve=False)
    assert d["state"] == "running" and d["created_at"] == "1970-01-01T00:00:00.000000Z"
    assert "curve" not in d["result"] and d["links"]["events"] == "/v1/jobs/x/events"
    assert iso_utc(None) is None
    assert JobState.CANCELLED.terminal and not JobState.QUEUED.terminal
    assert to_jsonable({"a": (np.int64(3), np.array([1.5, np.inf])), "b": JobState.FAILED}) == {
        "a": [3, [1.5, None]],
        "b": "failed",
    }


def test_broker_delivers_in_order_and_drops_slow_readers(tmp_path):
    store = JobStore(tmp_path / "jobs.db")

    async def scenario() -> None:
        broker = EventBroker(max_backlog=5)
        broker.bind_loop(asyncio.get_running_loop())
        _new(store, "a")
        with broker.subscribe("a") as fast, broker.subscribe("a") as slow:
            events = [store.add_measurement("a", {"index": i}, {}) for i in range(4)]
            for e in events:
                broker.publish(e)  # from this thread; delivery happens on the loop
            got = [await fast.get() for _ in range(4)]
            assert [e.seq for e in got] == [2, 3, 4, 5]
            for i in range(4, 10):
                e = store.add_measurement("a", {"index": i}, {})
                broker.publish(e)
            await asyncio.sleep(0.05)
            # `slow` never read: it was dropped with a closing None once 5 behind.
            items = []
            while not slow.queue.empty():
                items.append(slow.queue.get_nowait())
            assert items[-1] is None and len(items) <= 6
        assert broker._subs == {}

    asyncio.run(scenario())


def test_metrics_text_format():
    m = Metrics()
    m.frames_total.inc(17)
    m.focus_duration.observe(0.3, {"outcome": "succeeded"})
    m.focus_duration.observe(3.0, {"outcome": "succeeded"})
    text = m.render({"autofocus_jobs": ("Jobs.", {("queued",): 2}, ("state",))})
    assert "autofocus_frames_total 17" in text
    assert 'autofocus_jobs{state="queued"} 2' in text
    assert 'autofocus_focus_duration_seconds_bucket{outcome="succeeded",le="0.25"} 0' in text
    assert 'autofocus_focus_duration_seconds_bucket{outcome="succeeded",le="0.5"} 1' in text
    assert 'autofocus_focus_duration_seconds_bucket{outcome="succeeded",le="+Inf"} 2' in text
    assert 'autofocus_focus_duration_seconds_count{outcome="succeeded"} 2' in text
    assert "# TYPE autofocus_scoring_latency_seconds histogram" in text
    c = Counter("x_total", "X.", ["a"])
    with pytest.raises(ValueError):
        c.inc(-1, {"a": "1"})
    with pytest.raises(ValueError):
        c.inc(1, {"b": "1"})
    c.inc(1, {"a": 'quote"d\n'})
    assert 'x_total{a="quote\\"d\\n"} 1' in "\n".join(c.render())
    h = Histogram("h", "H.", [1.0])
    h.observe(math.nan)
    assert h.count() == 0
