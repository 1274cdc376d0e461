"""The worker's guarded microscope: every commanded Z is recorded (real SQLite) before the
simulated stage receives it, and every hardware call is visible to the watchdog."""

from __future__ import annotations

import threading
import time

import pytest

from autofocus.search.focus import focus
from autofocus.service.jobs.hardware import GuardedMicroscope, HardwareWatch
from autofocus.service.jobs.store import JobStore
from autofocus.service.microscopes import open_simulated
from autofocus.settings import load_settings


@pytest.fixture()
def sim(tmp_path):
    return open_simulated(load_settings(None, database_path=tmp_path / "x.db"))


def test_every_command_is_durable_before_it_is_sent(tmp_path, sim):
    store = JobStore(tmp_path / "jobs.db")
    store.create("job1", {}, progress={})
    seen_by_stage_at_record: list[int] = []

    def record(z_um: float) -> None:
        seen_by_stage_at_record.append(len(sim.commanded_z_um))
        store.record_command("job1", z_um)

    mic = GuardedMicroscope(sim, HardwareWatch(5.0), on_command=record)
    result = focus(mic, range_um=40, tolerance_um=0.5)
    commanded = list(result.commanded_z_um)
    assert commanded and list(sim.commanded_z_um) == commanded
    # Each record happened while the stage had received only the earlier commands.
    assert seen_by_stage_at_record == list(range(len(commanded)))
    z_um, job_id, moves = store.last_command()
    assert (z_um, job_id, moves) == (commanded[-1], "job1", len(commanded))
    store.close()


def test_a_refused_record_means_no_move(sim):
    def refuse(z_um: float) -> None:
        raise OSError("disk full")

    mic = GuardedMicroscope(sim, HardwareWatch(5.0), on_command=refuse)
    before = list(sim.commanded_z_um)
    with pytest.raises(OSError):
        mic.move_z(1.0)
    assert list(sim.commanded_z_um) == before


def test_calls_are_visible_to_the_watchdog_with_exposure_in_the_deadline(sim):
    watch = HardwareWatch(2.0)
    mic = GuardedMicroscope(sim, watch)
    mic.set_exposure_ms(500.0)
    seen = []
    inner_snap = sim.snap

    def slow_snap():
        seen.append(watch.current())
        return inner_snap()

    sim.snap = slow_snap  # observe the registration from inside the driver call
    mic.snap()
    call = seen[0]
    assert call.name == "snap" and call.device == "the camera"
    assert call.deadline_s == pytest.approx(2.5)
    assert watch.current() is None
    assert call.overdue_s(time.monotonic()) < 0

    hold = threading.Event()
    t = threading.Thread(target=lambda: _in_call(watch, hold))
    t.start()
    time.sleep(0.05)
    assert watch.current() is not None and watch.current().name == "move_z"
    hold.set()
    t.join()


def _in_call(watch: HardwareWatch, hold: threading.Event) -> None:
    with watch.call("move_z", "the Z stage", "moving to z=1.000 µm"):
        hold.wait(5)
