"""`autofocus.client.AutofocusClient` against a real server with the simulated microscope."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sim_server import sim_server

from autofocus.client import ApiError, AutofocusClient, FocusFailed, _parse_sse

TOKEN = "client-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(
        tmp_path_factory.mktemp("client") / "jobs.db",
        api_token=TOKEN,
        sim={"real_time": True},
        focus={"settle_s": 0.02},
    ) as srv:
        yield srv


@pytest.fixture()
def af(server):
    with AutofocusClient(server.url, token=TOKEN, timeout_s=30) as client:
        yield client


def test_blocking_focus_and_read_back(server, af):
    job = af.focus(range_um=40)
    assert job.done and job.state in ("succeeded", "failed")
    if job.succeeded:
        assert job.best_z_um == pytest.approx(server.manager.microscope.z_um, abs=0.1)
    assert af.job(job.id).raw == job.raw
    assert af.status()["ready"] is True
    assert af.microscope()["driver"] == "sim"
    assert af.curve_png(job.id)[:4] == b"\x89PNG"
    assert af.ready()


def test_non_blocking_events_and_wait(af):
    job = af.focus(wait=False, range_um=40)
    assert job.state in ("queued", "running") and not job.done
    events = list(af.events(job.id))
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "state" and events[0].data["state"] == "queued"
    assert events[-1].data["state"] in ("succeeded", "failed")
    done = af.wait(job.id, timeout_s=30)
    assert done.done
    measured = [e.data["z_um"] for e in events if e.event == "measurement"]
    assert measured == [p["z_um"] for p in done.result["curve"]]
    tail = list(af.events(job.id, last_event_id=len(events) - 1))
    assert len(tail) == 1 and tail[0].id == len(events)


def test_cancel_and_check(server, af):
    start_z = af.microscope()["z_um"]
    job = af.focus(wait=False, range_um=60, tolerance_um=0.25)
    for event in af.events(job.id):
        if event.event == "measurement":
            break
    cancelled = af.cancel(job.id)
    assert cancelled.state == "cancelled"
    assert server.manager.microscope.z_um == pytest.approx(start_z, abs=0.1)
    assert af.cancel(job.id).state == "cancelled"  # idempotent
    with pytest.raises(ApiError) as info:
        af.cancel("no-such-job")
    assert info.value.status == 404 and info.value.problem["title"] == "Job not found"
    with pytest.raises(FocusFailed) as failed:
        af.focus(range_um=40, check=True, timeout_s=0.05)  # the job's own time limit
    assert failed.value.job.state == "failed"
    assert "timeout" in failed.value.job.error
    assert server.manager.microscope.z_um == pytest.approx(start_z, abs=0.1)


def test_refused_requests_raise_api_error(af):
    with pytest.raises(ApiError) as info:
        af.focus(range_um=5000)
    assert info.value.status == 422 and "limits" in info.value.detail
    with pytest.raises(ApiError) as info:
        af.focus(scorer="nope")
    assert info.value.status == 422
    with AutofocusClient(af._http.base_url.__str__(), token="wrong") as bad:
        with pytest.raises(ApiError) as info:
            bad.status()
        assert info.value.status == 401


def test_score_arrays_bytes_and_paths(server, af, tmp_path):
    mic = server.manager.microscope
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 4000, (64, 64)).astype(np.uint16)
    flat = np.full((64, 64), 100, np.uint16) + rng.integers(0, 3, (64, 64)).astype(np.uint16)
    path = tmp_path / "sharp.npy"
    np.save(path, sharp)
    buf = io.BytesIO()
    np.save(buf, flat)
    moves = len(mic.commanded_z_um)
    out = af.score([sharp, buf.getvalue(), path], scorer="brenner")
    assert out["scorer"] == "brenner" and len(out["scores"]) == 3
    values = [s["score"] for s in out["scores"]]
    assert values[0] == pytest.approx(values[2]) and values[0] > values[1]
    assert len(mic.commanded_z_um) == moves  # scoring uploads never touches the microscope
    with pytest.raises(ApiError) as info:
        af.score([b"garbage"])
    assert info.value.status == 422


def test_jobs_pagination(af):
    all_jobs = list(af.jobs(limit=2))
    assert len(all_jobs) >= 4
    assert len({j.id for j in all_jobs}) == len(all_jobs)
    cancelled = list(af.jobs(state="cancelled"))
    assert cancelled and all(j.state == "cancelled" for j in cancelled)


def test_sse_parser_handles_comments_and_multiline():
    lines = [
        ": keep-alive",
        "",
        "id: 1",
        "event: state",
        'data: {"a":',
        "data: 1}",
        "",
        "event: x",
        "data: {}",
    ]
    events = list(_parse_sse(iter(lines)))
    assert [(e.id, e.event, e.data) for e in events] == [(1, "state", {"a": 1}), (None, "x", {})]
