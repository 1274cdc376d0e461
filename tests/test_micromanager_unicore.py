"""Our simulated microscope inside the real MMCore (pymmcore-plus UniMMCore Python devices).

The Micro-Manager driver runs unchanged on a `UniMMCore` whose focus stage and camera
are `autofocus_drivers.mm_sim_devices` wrapping a `SimulatedMicroscope`: every call crosses the
real core (pymmcore + pymmcore-plus), and the physics (backlash, blur, noise, faults)
is ours. The simulator's ground truth (true focus, commanded z) checks the outcome.
"""

from __future__ import annotations

import pytest
from autofocus_drivers import CameraError, ConfigurationError, Microscope, StageError

pytestmark = pytest.mark.mm

TOLERANCE_UM = 0.5


@pytest.fixture(autouse=True)
def _needs_pymmcore_plus():
    try:
        from pymmcore_plus.experimental.unicore import UniMMCore  # noqa: F401
    except Exception as exc:
        pytest.skip(f"pymmcore-plus (UniMMCore) not importable ({exc}); pip install '.[mm]'")


def _scope(config=None, *, seed=0):
    from autofocus_drivers.micromanager import MicroManagerMicroscope
    from autofocus_drivers.mm_sim_devices import simulated_unicore

    core, sim = simulated_unicore(config, seed=seed)
    return MicroManagerMicroscope(core, z_limits_um=sim.z_limits_um), sim


def _config(**kwargs):
    from autofocus_drivers.sim import SimConfig

    return SimConfig.preset("beads", **kwargs)


def test_sim_devices_are_mmcore_devices_and_the_driver_finds_them():
    from autofocus_drivers.mm_sim_devices import SIM_CAMERA_LABEL, SIM_STAGE_LABEL

    mic, sim = _scope(_config(focus_z_um=4.0), seed=2)
    core = mic.core
    assert core.isPyDevice(SIM_STAGE_LABEL) and core.isPyDevice(SIM_CAMERA_LABEL)
    assert (mic.focus_device, mic.camera) == (SIM_STAGE_LABEL, SIM_CAMERA_LABEL)
    assert isinstance(mic, Microscope)
    mic.move_z(12.5)
    assert sim.commanded_z_um == [12.5]  # the move reached our stage model through MMCore
    assert mic.z_um == pytest.approx(12.5)
    frame = mic.snap()
    info = sim.camera_info()
    assert frame.shape == (info.height_px, info.width_px) and frame.dtype.kind == "u"
    assert sim.snap_count == 1


def test_exposure_and_roi_cross_the_core_and_are_restored():
    mic, sim = _scope(_config(), seed=3)
    before_exposure, before_roi = mic.exposure_ms, mic.roi
    with mic.job_settings(exposure_ms=4.0, roi=(16, 32, 64, 48)):
        assert sim.exposure_ms == pytest.approx(4.0)
        assert mic.snap().shape == (48, 64)
    assert mic.exposure_ms == pytest.approx(before_exposure)
    assert sim.exposure_ms == pytest.approx(before_exposure)
    assert mic.roi == before_roi


def test_injected_stage_fault_is_a_stage_error_naming_the_device():
    from dataclasses import replace

    from autofocus_drivers.sim import FaultConfig

    config = replace(_config(), faults=FaultConfig(stage_error=2))
    mic, sim = _scope(config, seed=4)
    mic.move_z(5.0)
    with pytest.raises(StageError, match=r'Z stage "SimZ" failed to move to 9 µm: .*fault'):
        mic.move_z(9.0)
    assert mic.z_um == pytest.approx(5.0)


def test_injected_camera_fault_is_a_camera_error_naming_the_device():
    from dataclasses import replace

    from autofocus_drivers.sim import FaultConfig

    mic, _ = _scope(replace(_config(), faults=FaultConfig(camera_error=1)), seed=5)
    with pytest.raises(CameraError, match=r'camera "SimCam" failed to snap an image: .*fault'):
        mic.snap()
    assert mic.snap().ndim == 2  # only the first snap was scheduled to fail


def test_labels_already_taken_are_refused():
    from autofocus_drivers.mm_sim_devices import load_simulated_devices
    from autofocus_drivers.sim import SimulatedMicroscope

    mic, _ = _scope(_config(), seed=6)
    with pytest.raises(ConfigurationError, match='"SimZ" is already loaded'):
        load_simulated_devices(mic.core, SimulatedMicroscope(_config(), seed=7))


def _focus_api():
    try:
        from autofocus.search.focus import FocusRequest, focus
    except ImportError as exc:
        pytest.skip(f"the autofocus engine is not importable yet ({exc})")
    return FocusRequest, focus


@pytest.mark.parametrize("seed", [11, 12])
def test_autofocus_through_mmcore_finds_the_simulated_focus(seed):
    FocusRequest, focus = _focus_api()
    mic, sim = _scope(_config(), seed=seed)
    true_z = sim.true_focus_z_um()
    mic.move_z(true_z + 30.0)
    result = focus(mic, FocusRequest(range_um=80.0, tolerance_um=TOLERANCE_UM))
    assert result.success, result.reason
    assert abs(result.best_z_um - true_z) <= 2 * TOLERANCE_UM
    assert mic.z_um == pytest.approx(result.best_z_um, abs=1e-6)
    assert all(sim.z_limits_um.contains(z) for z in sim.commanded_z_um)


def test_camera_fault_mid_autofocus_through_mmcore_returns_to_start():
    from dataclasses import replace

    from autofocus_drivers.sim import FaultConfig

    FocusRequest, focus = _focus_api()
    mic, sim = _scope(replace(_config(), faults=FaultConfig(camera_error="4+")), seed=13)
    start = sim.true_focus_z_um() + 20.0
    mic.move_z(start)
    result = focus(mic, FocusRequest(range_um=60.0, tolerance_um=TOLERANCE_UM))
    assert not result.success
    assert result.error_type == "CameraError" and '"SimCam"' in result.reason
    assert mic.z_um == pytest.approx(start)
    assert sim.commanded_z_um[-1] == pytest.approx(start)


def test_stock_pymmcore_plus_mda_runs_on_the_simulated_core():
    """`core.mda.run` used to fail in the auto-shutter with 'No device with label ""'."""
    import useq
    from autofocus_drivers.mm_sim_devices import SIM_SHUTTER_LABEL, SIM_XY_LABEL, simulated_unicore

    core, sim = simulated_unicore(_config(focus_z_um=0.0), seed=5)
    assert core.getShutterDevice() == SIM_SHUTTER_LABEL
    assert core.getXYStageDevice() == SIM_XY_LABEL
    frames = []
    core.mda.events.frameReady.connect(lambda img, event, meta: frames.append((img, event)))
    sequence = useq.MDASequence(
        stage_positions=[(100.0, 200.0, 0.0), (2500.0, 300.0, 3.0)],
        z_plan={"range": 2.0, "step": 1.0},
    )
    core.mda.run(sequence)
    assert len(frames) == 6
    assert sim.xy_um == (2500.0, 300.0)
    # Auto-shutter opened the light path for every snap and closed it afterwards.
    assert not core.getShutterOpen() and not sim.light_on
    lit = frames[0][0].astype(float).mean()
    core.snapImage()  # auto-shutter: lit as well
    assert core.getImage().astype(float).mean() == pytest.approx(lit, rel=0.2)
    core.setAutoShutter(False)
    core.snapImage()  # shutter closed, auto-shutter off: camera noise only
    assert core.getImage().astype(float).mean() < lit


def test_a_sequenceable_stage_sweeps_hardware_sequenced_and_the_search_uses_it():
    # Issue 22: the piezo profile's stage really sequences (a step per camera trigger).
    from autofocus.search.focus import focus

    mic, sim = _scope(_config(focus_z_um=3.0, hardware_profile="piezo"), seed=4)
    assert mic.sweep_sequenced
    mic.move_z(-2.0)
    moves_before = len(sim.commanded_z_um)
    frames = mic.sweep_z([-1.0, 0.0, 1.0, 2.0])
    assert [z for z, _ in frames] == [-1.0, 0.0, 1.0, 2.0]
    # The stage stepped through the sequence: one settled move to the start, then a step
    # per frame, none sent by the driver in between.
    assert sim.commanded_z_um[moves_before:] == [-1.0, -1.0, 0.0, 1.0, 2.0]
    assert sim.snap_count == 4 and len({f.tobytes() for _, f in frames}) == 4
    dof = sim.optics.depth_of_field_um
    result = focus(mic, range_um=30, tolerance_um=dof / 4, timeout_s=None)
    assert result.success, result.reason
    assert result.details["sweeps"] >= 1
    assert abs(sim.physical_z_um - sim.true_focus_z_um()) <= dof / 4


def test_a_stage_that_cannot_sequence_sweeps_stop_and_go():
    mic, sim = _scope(_config(focus_z_um=3.0), seed=4)  # the default profile: no sequencing
    assert not mic.sweep_sequenced
    mic.move_z(-2.0)
    moves_before = len(sim.commanded_z_um)
    frames = mic.sweep_z([-1.0, 0.0, 1.0])
    assert [z for z, _ in frames] == [-1.0, 0.0, 1.0]
    assert sim.commanded_z_um[moves_before:] == [-1.0, 0.0, 1.0]
    with pytest.raises(Exception, match="limit"):
        mic.sweep_z([0.0, 500.0])
