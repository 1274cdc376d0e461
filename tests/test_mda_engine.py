"""`AutofocusEngine`: our autofocus inside pymmcore-plus MDAs, on real cores.

The simulated microscope runs inside pymmcore-plus' `UniMMCore` (real MMCore, our
physics as Python devices), so the true focus at every position is known. The real
MMCore with DemoCamera/DStage runs through `examples/mda_autofocus.py --democamera` in
a subprocess (as a user runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mda_autofocus.py"

pytestmark = pytest.mark.mm


@pytest.fixture(autouse=True)
def _needs_pymmcore_plus():
    try:
        import useq  # noqa: F401
        from pymmcore_plus.experimental.unicore import UniMMCore  # noqa: F401
    except Exception as exc:
        pytest.skip(f"pymmcore-plus not importable ({exc}); pip install '.[mm]'")


def _run_example(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--json", *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_example_on_the_simulated_core_puts_every_position_within_dof_4():
    report = _run_example("--seed", "2")
    dof = report["dof_um"]
    assert len(report["positions"]) >= 3
    for pos in report["positions"]:
        assert abs(pos["start_z_um"] - pos["true_focus_z_um"]) == pytest.approx(20.0)
        assert pos["focus"]["source"] == "autofocus" and pos["focus"]["success"]
        assert abs(pos["error_um"]) <= dof / 4, pos
    assert report["all_within_dof_4"]


def test_example_on_real_mmcore_democamera_beads():
    report = _run_example("--democamera")
    assert report["core"] == "democamera"
    for pos in report["positions"]:
        assert abs(pos["start_z_um"]) == pytest.approx(20.0)
        assert abs(pos["z_um"]) <= report["dof_um"] / 4, pos  # DemoCamera focus: Z = 0
    assert report["all_within_dof_4"]


# ------------------------------------------------------------- in-process, simulated core
def _setup(seed: int = 3, *, positions=None, **engine_kwargs):
    import useq
    from autofocus_drivers.mm_sim_devices import simulated_unicore
    from autofocus_drivers.sim import SampleSurface, SimConfig
    from pymmcore_plus.mda import MDARunner

    from autofocus.acquire.mda import AutofocusEngine
    from autofocus.search.focus import FocusRequest

    config = SimConfig.preset("beads", focus_z_um=0.0, surface=SampleSurface.plate())
    core, sim = simulated_unicore(config, seed=seed)
    truth = []
    for x, y in positions or [(10_000.0, 10_000.0), (60_000.0, 40_000.0), (100_000.0, 65_000.0)]:
        sim.move_xy(x, y)
        truth.append((x, y, sim.true_focus_z_um()))
    engine_kwargs.setdefault("request", FocusRequest(range_um=60.0, tolerance_um=0.25))
    engine = AutofocusEngine(core, z_limits_um=sim.z_limits_um, **engine_kwargs)
    runner = MDARunner()
    runner.set_engine(engine)
    frames: list[tuple] = []
    runner.events.frameReady.connect(
        lambda img, ev, meta: frames.append(
            (ev.index.get("p"), ev.index.get("z"), core.getZPosition(), sim.physical_z_um,
             sim.true_focus_z_um(), meta)
        )
    )
    return useq, core, sim, engine, runner, truth, frames


def test_correction_applies_to_the_whole_relative_z_stack_and_lands_in_metadata():
    useq, core, sim, engine, runner, truth, frames = _setup()
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 15.0) for x, y, z in truth],
        z_plan={"range": 2.0, "step": 1.0},  # relative: -1, 0, +1 µm around the position
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )
    runner.run(seq)
    assert len(frames) == 9
    dof = sim.optics.depth_of_field_um
    for p, zi, z_cmd, phys, true_z, meta in frames:
        focus = meta["autofocus"]
        assert focus["source"] == "autofocus" and focus["p_index"] == p
        assert focus["frames"] > 0 and focus["confidence"] > 0
        # Every plane of the stack is shifted by the position's correction, and approached
        # from below like the autofocus's moves, so the planes really are -1, 0, +1 µm.
        assert z_cmd - focus["z_um"] == pytest.approx((-1.0, 0.0, 1.0)[zi], abs=1e-6)
        assert phys - true_z == pytest.approx((-1.0, 0.0, 1.0)[zi], abs=dof / 4)
    assert [r.source for r in engine.focus_log] == ["autofocus"] * 3


def _record_at_each_snap(sim, read) -> list:
    """What `read()` returns just before each of the simulator's snaps, in order.

    Instrumentation around the real simulator's snap, not a fake: the frame is still the
    simulator's own."""
    seen = []
    real_snap = sim.snap

    def recording_snap():
        seen.append(read())
        return real_snap()

    sim.snap = recording_snap  # type: ignore[method-assign]
    return seen


def _second_position_out_of_reach(useq, truth):
    """Three positions 5, 45 and −5 µm off their focus: a 30 µm search misses the second."""
    offsets = [5.0, 45.0, -5.0]
    return useq.MDASequence(
        stage_positions=[
            useq.Position(x=x, y=y, z=z + o)
            for (x, y, z), o in zip(truth, offsets, strict=True)
        ],
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )


def test_keep_policy_retries_then_keeps_the_last_good_correction():
    """Position 1 starts 45 µm off: outside the ±15 µm search, so the search fails."""
    from autofocus.search.focus import FocusRequest

    useq, core, sim, engine, runner, truth, frames = _setup(
        request=FocusRequest(range_um=30.0, tolerance_um=0.25), on_failure="keep",
        retry_widen=1.01,  # retries widen the range; barely here, so all three miss
    )
    seq = _second_position_out_of_reach(useq, truth)
    runner.run(seq)
    assert [f[0] for f in frames] == [0, 1, 2]  # every position imaged
    failed = frames[1][5]["autofocus"]
    assert failed["source"] == "kept" and not failed["success"]
    assert failed["attempts"] == 3  # useq's HardwareAutofocus.max_retries default
    assert failed["reason"]
    assert frames[1][2] == pytest.approx(truth[1][2] + 45.0, abs=1e-6)  # its own z, unchanged
    for i in (0, 2):
        assert abs(frames[i][3] - frames[i][4]) <= sim.optics.depth_of_field_um / 4


def test_skip_policy_drops_the_position():
    from autofocus.search.focus import FocusRequest

    request = FocusRequest(range_um=30.0, tolerance_um=0.25)
    useq, core, sim, engine, runner, truth, frames = _setup(request=request, on_failure="skip",
                                                            retry_widen=1.01)
    runner.run(_second_position_out_of_reach(useq, truth))
    assert [f[0] for f in frames] == [0, 2]
    assert engine.focus_log[1].source == "skipped"


def test_focus_channel_and_exposure_are_applied_for_the_search_and_restored():
    useq, core, sim, engine, runner, truth, frames = _setup()
    core.defineConfig("Channel", "Acquire", "SimCam", "Exposure", "20")
    core.defineConfig("Channel", "Focus", "SimCam", "Exposure", "4")
    from autofocus.acquire.mda import AutofocusEngine

    engine = AutofocusEngine(
        core, z_limits_um=sim.z_limits_um, request=engine.request,
        focus_channel=("Channel", "Focus"),
    )
    runner.set_engine(engine)
    exposures = _record_at_each_snap(sim, lambda: sim.exposure_ms)
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 10.0) for x, y, z in truth[:2]],
        channels=[useq.Channel(config="Acquire", group="Channel")],
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )
    runner.run(seq)
    assert len(frames) == 2
    assert all(meta["autofocus"]["success"] for *_, meta in frames)
    assert set(exposures) == {4.0, 20.0}
    assert exposures.count(20.0) == 2  # the two images, at the acquisition's channel
    assert core.getCurrentConfig("Channel") == "Acquire" and core.getExposure() == 20.0
    assert core.getAutoShutter() and not core.getShutterOpen() and not sim.light_on


def test_unknown_focus_channel_and_policy_are_refused():
    from autofocus.acquire.mda import AutofocusEngine
    from autofocus.errors import ConfigurationError

    useq, core, sim, engine, runner, truth, frames = _setup()
    with pytest.raises(ConfigurationError, match="not defined"):
        AutofocusEngine(core, z_limits_um=sim.z_limits_um, focus_channel=("Nope", "X"))
    with pytest.raises(ConfigurationError, match="on_failure"):
        AutofocusEngine(core, z_limits_um=sim.z_limits_um, on_failure="retry")  # type: ignore[arg-type]


def test_events_outside_the_z_limits_are_skipped_not_sent():
    from autofocus_drivers.base import ZLimits

    useq, core, sim, engine, runner, truth, frames = _setup()
    engine.z_limits_um = ZLimits(-50.0, 50.0)
    x, y, z = truth[0]
    seq = useq.MDASequence(stage_positions=[useq.Position(x=x, y=y, z=80.0)])
    runner.run(seq)
    assert frames == []
    assert 80.0 not in sim.commanded_z_um


def test_engine_is_not_installed_globally():
    useq, core, sim, engine, runner, truth, frames = _setup()
    from autofocus.acquire.mda import AutofocusEngine

    assert not isinstance(core.mda.engine, AutofocusEngine)


def test_shutter_held_open_by_the_acquisition_is_put_back_after_the_search():
    """keep_shutter_open_across z: the stock engine holds the shutter open with auto-shutter
    off; the search needs light too and must leave that state as it found it."""
    useq, core, sim, engine, runner, truth, frames = _setup()
    x, y, z = truth[0]
    states = _record_at_each_snap(sim, lambda: (sim.light_on, core.getAutoShutter()))
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 8.0)],
        z_plan={"range": 2.0, "step": 1.0},
        keep_shutter_open_across=("z",),
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )
    runner.run(seq)
    assert len(frames) == 3
    assert all(light for light, _ in states)  # every frame, search and images, had light
    assert frames[1][5]["autofocus"]["success"]
    assert core.getAutoShutter() and not sim.light_on  # the stock teardown's state


def test_revisits_search_with_the_positions_last_focus_as_a_prior():
    """3 positions × 3 time points (issue 22): every revisit starts at the position's last
    focus and finds it again in a few frames, within DOF/4."""
    useq, core, sim, engine, runner, truth, frames = _setup()
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 8.0) for x, y, z in truth],
        time_plan={"interval": 0, "loops": 3},
        axis_order="tpz",
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )
    runner.run(seq)
    assert len(frames) == 9
    log = engine.focus_log
    assert [r.source for r in log] == ["autofocus"] * 9 and all(r.success for r in log)
    first, revisits = log[:3], log[3:]
    dof = sim.optics.depth_of_field_um
    for _, _, _, phys, true_z, _ in frames:
        assert abs(phys - true_z) <= dof / 4
    # A blind search of the 60 µm range costs ~30 frames; a revisit with its prior a few.
    assert all(r.frames <= 10 for r in revisits), [r.frames for r in revisits]
    assert sum(r.frames for r in revisits) < sum(r.frames for r in first) / 2


def test_a_retry_widens_the_range_instead_of_repeating_the_search():
    from autofocus.search.focus import FocusRequest

    useq, core, sim, engine, runner, truth, frames = _setup(
        request=FocusRequest(range_um=30.0, tolerance_um=0.25), retry_widen=2.0
    )
    asked: list[float] = []
    real = engine._attempt_request
    engine._attempt_request = lambda p, z, a: (  # records the range of each attempt
        lambda r: (asked.append(r.range_um), r)[1])(real(p, z, a))
    # Position 1 starts 28 µm off: beyond the first ±15 µm search (and its 7.5 µm edge
    # extension), inside the retry's ±30.
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + o)
                         for (x, y, z), o in zip(truth, [5.0, 28.0, -5.0], strict=True)],
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )
    runner.run(seq)
    second = [r for r in engine.focus_log if r.p_index == 1][-1]
    assert second.success and second.attempts == 2
    assert asked == [30.0, 30.0, 60.0, 30.0]  # p0, p1 (failed), p1 widened, p2
    assert abs(frames[1][3] - frames[1][4]) <= sim.optics.depth_of_field_um / 4


# ------------------------------------------------------------- issue 19, item 4
@pytest.mark.parametrize("where", ["core.mda", "dedicated runner"])
def test_stop_policy_cancels_the_runner_like_pymmcore_plus(where):
    """on_failure="stop": no exception, no further event; sequenceCanceled, then Finished."""
    from autofocus.search.focus import FocusRequest

    request = FocusRequest(range_um=30.0, tolerance_um=0.25)
    useq, core, sim, engine, runner, truth, frames = _setup(request=request, on_failure="stop",
                                                            retry_widen=1.01)
    if where == "core.mda":
        runner = core.mda
        core.mda.set_engine(engine)
        runner.events.frameReady.connect(lambda img, ev, meta: frames.append(
            (ev.index.get("p"), None, None, None, None, meta)))
    signals: list[str] = []
    runner.events.sequenceCanceled.connect(lambda seq: signals.append("canceled"))
    runner.events.sequenceFinished.connect(lambda seq: signals.append("finished"))
    runner.run(_second_position_out_of_reach(useq, truth))
    assert [f[0] for f in frames] == [0]
    assert signals == ["canceled", "finished"]
    assert engine.focus_log[-1].source == "stopped"
    assert "position 1" in engine.stop_reason


def test_motor_offset_images_at_the_found_focus_plus_the_offset():
    useq, core, sim, engine, runner, truth, frames = _setup()
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 10.0) for x, y, z in truth[:2]],
        autofocus_plan=useq.AxesBasedAF(axes=("p",), autofocus_motor_offset=3.0),
    )
    runner.run(seq)
    assert len(frames) == 2
    for _p, _z, z_cmd, phys, true_z, meta in frames:
        focus = meta["autofocus"]
        assert focus["success"] and focus["offset_um"] == 3.0
        assert z_cmd - focus["z_um"] == pytest.approx(3.0, abs=1e-6)
        assert phys - true_z == pytest.approx(3.0, abs=sim.optics.depth_of_field_um / 4)


def _with_demo_autofocus_device(core):
    from autofocus_drivers.micromanager import demo_adapter_dir

    core.setDeviceAdapterSearchPaths([str(demo_adapter_dir())])
    core.loadDevice("AF", "DemoCamera", "DAutoFocus")
    core.initializeDevice("AF")


def test_named_hardware_autofocus_device_is_said_once_then_software_runs():
    useq, core, sim, engine, runner, truth, frames = _setup()
    _with_demo_autofocus_device(core)
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 10.0) for x, y, z in truth],
        autofocus_plan=useq.AxesBasedAF(axes=("p",), autofocus_device_name="AF"),
    )
    with pytest.warns(UserWarning, match="software") as caught:
        runner.run(seq)
    assert len([w for w in caught if "hardware autofocus device" in str(w.message)]) == 1
    assert [r.source for r in engine.focus_log] == ["autofocus"] * 3


def test_device_autofocus_option_delegates_to_the_devices_full_focus():
    useq, core, sim, engine, runner, truth, frames = _setup(device_autofocus="device")
    _with_demo_autofocus_device(core)
    snaps = _record_at_each_snap(sim, lambda: sim.physical_z_um)
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 10.0) for x, y, z in truth[:2]],
        autofocus_plan=useq.AxesBasedAF(axes=("p",), autofocus_device_name="AF"),
    )
    runner.run(seq)
    assert [r.source for r in engine.focus_log] == ["device"] * 2
    assert len(snaps) == 2  # the two images only: no software search ran
    assert all(meta["autofocus"]["source"] == "device" for *_, meta in frames)


# ------------------------------------------------------------- issue 19, item 3
def test_registered_engine_runs_under_core_run_mda():
    """What GUIs do: the engine registered on the core; the widget calls core.run_mda."""
    useq, core, sim, engine, runner, truth, frames = _setup()
    registered: list[object] = []
    core.events.mdaEngineRegistered.connect(lambda new, old: registered.append(new))
    core.register_mda_engine(engine)
    assert registered == [engine] and core.mda.engine is engine
    got: list[dict] = []
    core.mda.events.frameReady.connect(lambda img, ev, meta: got.append(meta["autofocus"]))
    seq = useq.MDASequence(
        stage_positions=[useq.Position(x=x, y=y, z=z + 12.0) for x, y, z in truth],
        autofocus_plan=useq.AxesBasedAF(axes=("p",)),
    )
    core.run_mda(seq).join(timeout=120)  # a thread, as the MDA widget's Run button starts
    assert [g["source"] for g in got] == ["autofocus"] * 3
    assert all(g["success"] for g in got)


def test_example_uses_the_cores_own_runner():
    text = EXAMPLE.read_text()
    assert "MDARunner" not in text and "core.register_mda_engine(engine)" in text
