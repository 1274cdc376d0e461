"""The pycromanager hook of docs/micromanager.md against a real autofocus server.

pycromanager itself calls the hook; here the hook is called the way pycromanager calls
it, with one event (a dict) or a hardware-sequenced batch (a list, pycro-manager #394),
and asks a real `autofocus serve` (uvicorn on 127.0.0.1, simulated microscope).
"""

from __future__ import annotations

import pytest
from sim_server import sim_server

from autofocus.acquire.pycromanager_hook import autofocus_hook, event_position
from autofocus.client import AutofocusClient


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db = tmp_path_factory.mktemp("hook") / "jobs.db"
    with sim_server(db, sim={"seed": 4}) as srv, AutofocusClient(srv.url, timeout_s=60) as af:
        yield af


def _event(position: int, z: int = 0) -> dict:
    return {"axes": {"position": position, "z": z}, "x": 1000.0 * position, "y": 0.0}


def test_single_events_focus_once_per_new_position(client):
    hook = autofocus_hook(client, range_um=40)
    events = [_event(0, 0), _event(0, 1), _event(1, 0), _event(1, 1), _event(0, 0)]
    for event in events:
        assert hook(event) is event  # returned unchanged: pycromanager acquires it
    assert [r["position"] for r in hook.results] == [0, 1, 0]
    assert all(r["state"] == "succeeded" for r in hook.results), hook.results
    # The revisit of position 0 asked with its last focus as a prior (issue 22).
    revisit = client.job(hook.results[2]["job_id"])
    assert revisit.raw["request"]["expected_z_um"] == pytest.approx(hook.results[0]["z_um"])
    assert revisit.raw["request"]["expected_sigma_um"] > 0
    assert revisit.result["details"]["path"] == "prior"


def test_sequenced_batches_arrive_as_lists_and_are_returned_as_lists(client):
    hook = autofocus_hook(client, range_um=40)
    batch = [_event(2, z) for z in range(4)]
    assert hook(batch, object(), object()) is batch  # (event, bridge, event_queue) signature
    assert [r["position"] for r in hook.results] == [2]
    assert hook([_event(2, 4)]) and len(hook.results) == 1  # same position: no new focus
    hook([_event(3, 0), _event(3, 1)])
    assert [r["position"] for r in hook.results] == [2, 3]


def test_failure_callback_and_bad_input(client):
    """A search 60 µm above the specimen sees no focus: the job fails, the callback runs."""
    failures = []
    hook = autofocus_hook(
        client, center_z_um=70.0, range_um=20, on_failure=lambda pos, job: failures.append(pos)
    )
    hook(_event(7))
    assert hook.results[0]["state"] == "failed" and failures == [7]
    with pytest.raises(TypeError, match="event dict or a list"):
        hook(42)


def test_axes_like_axes_based_af_focus_every_time_point_of_one_position(client):
    """A single-position time-lapse: axes=("position", "time") focuses at every time point."""
    timelapse = [{"axes": {"time": t}, "tags": {"user": "kept"}} for t in range(5)]
    per_position = autofocus_hook(client, range_um=40)
    for event in timelapse:
        per_position(dict(event))
    assert len(per_position.results) == 1
    per_time = autofocus_hook(client, axes=("position", "time"), range_um=40)
    out = [per_time(dict(event, tags=dict(event["tags"]))) for event in timelapse]
    assert [r["key"] for r in per_time.results] == [{"position": None, "time": t}
                                                    for t in range(5)]
    for event, result in zip(out, per_time.results, strict=True):
        tags = event["tags"]  # the result rides along into pycromanager's image metadata
        assert tags["user"] == "kept"
        assert tags["autofocus_state"] == "succeeded"
        assert tags["autofocus_z_um"] == result["z_um"]
        assert tags["autofocus_job_id"] == result["job_id"]


def test_skip_policy_returns_none_until_the_next_autofocus_succeeds(client):
    failing = autofocus_hook(client, center_z_um=70.0, range_um=20, on_failure="skip")
    event = _event(5)
    assert failing(event) is None  # pycromanager acquires nothing for it
    assert event["tags"]["autofocus_state"] == "failed"
    assert event["tags"]["autofocus_error"] and "autofocus_z_um" not in event["tags"]
    assert failing(_event(5, 1)) is None  # same position, no new autofocus: still skipped
    assert failing([_event(5, 2), _event(5, 3)]) is None
    assert len(failing.results) == 1
    with pytest.raises(ValueError, match="on_failure"):
        autofocus_hook(client, on_failure="stop")


def test_event_position_reads_position_or_grid():
    assert event_position({"axes": {"position": 3}}) == 3
    assert event_position({"axes": {"row": 1, "column": 2}}) == (1, 2)
    assert event_position({"axes": {"time": 0}}) is None


def test_example_real_pycromanager_acquisition_with_the_hook():
    """examples/pycromanager_hook.py: a real pycromanager Acquisition (headless MMCore,
    DemoCamera beads) whose hook asks a real daemon driving that same core."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("pycromanager")
    pytest.importorskip("mm_test_adapters")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / "pycromanager_hook.py"), "--json"],
        capture_output=True, text=True, timeout=300, env=env, cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert [r["position"] for r in report["autofocus"]] == [0, 1, 2, 0, 1, 2]
    assert all(r["state"] == "succeeded" for r in report["autofocus"])
    assert len(report["images"]) == 6
    assert all(abs(i["z_um"]) <= report["dof_um"] / 4 for i in report["images"])
    for image in report["images"]:  # each image's metadata names the autofocus that placed it
        assert image["autofocus"]["autofocus_state"] == "succeeded"
        assert image["autofocus"]["autofocus_z_um"] == pytest.approx(image["z_um"], abs=0.5)
