"""The Micro-Manager driver against the REAL MMCore and device adapters (no mocks).

One headless MMCore (pycromanager, Python backend) is started for the module with the
mm-test-adapters demo configuration, DemoCamera switched to its Z-dependent bead mode.
Extra real adapters are loaded into it for failure cases: Utilities "Multi Camera"
(fails to snap when it has no physical camera) and NotificationTester "NTAsyncStage"
(a stage that takes time to move, for waits and timeouts).
"""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest
from autofocus_drivers import (
    CameraError,
    ConfigurationError,
    DeviceTimeout,
    LimitError,
    Microscope,
    RealClock,
    StageError,
    ZLimits,
)

pytestmark = pytest.mark.mm

LIMITS = ZLimits(-100.0, 100.0)


def _mm_available() -> str | None:
    try:
        import mm_test_adapters  # noqa: F401
        import pycromanager  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native library
        return f"Micro-Manager extra not importable ({exc}); pip install '.[mm]'"
    return None


@pytest.fixture(scope="module")
def mic(tmp_path_factory):
    """The driver on a headless MMCore; the extra devices are loaded into the same core."""
    reason = _mm_available()
    if reason:
        pytest.skip(reason)
    from autofocus_drivers.micromanager import (
        MicroManagerMicroscope,
        demo_adapter_dir,
        write_democamera_focus_config,
    )

    cfg = write_democamera_focus_config(tmp_path_factory.mktemp("mmcfg"))
    scope = MicroManagerMicroscope.start_headless(demo_adapter_dir(), cfg, z_limits_um=LIMITS)
    core = scope.core
    core.load_device("MultiCam", "Utilities", "Multi Camera")
    core.load_device("AsyncZ", "NotificationTester", "NTAsyncStage")
    core.initialize_device("MultiCam")
    core.initialize_device("AsyncZ")
    core.set_property("MultiCam", "Physical Camera 1", "Camera")
    yield scope
    scope.close()


@pytest.fixture(autouse=True)
def _fresh_state(request):
    """Every test starts at Z = 0 with 10 ms exposure, full frame, camera "Camera"."""
    if "mic" not in request.fixturenames:
        yield
        return
    scope = request.getfixturevalue("mic")
    core = scope.core
    core.set_camera_device("Camera")
    core.clear_roi()
    core.set_exposure("Camera", 10.0)
    core.set_property("MultiCam", "Physical Camera 1", "Camera")
    core.set_timeout_ms(5000)
    core.enable_continuous_focus(False)
    core.set_position("Z", 0.0)
    core.wait_for_device("AsyncZ")
    core.set_property("AsyncZ", "SlewTimePerStep_s", "0.0001")
    core.set_position("AsyncZ", 0.0)
    core.wait_for_device("AsyncZ")
    yield


def _other(mic, **kwargs):
    """A second driver on the module's core (it does not own the core: no on_close)."""
    from autofocus_drivers.micromanager import MicroManagerMicroscope

    kwargs.setdefault("z_limits_um", LIMITS)
    return MicroManagerMicroscope(mic.core, **kwargs)


def _other_on(core):
    from autofocus_drivers.micromanager import MicroManagerMicroscope

    return MicroManagerMicroscope(core, z_limits_um=LIMITS)


def _sharpness(frame: np.ndarray) -> float:
    """Mean squared gradient of the min-max normalised frame (brightness-independent)."""
    img = frame.astype(np.float64)
    img = (img - img.min()) / max(float(np.ptp(img)), 1e-12)
    gy, gx = np.gradient(img)
    return float(np.mean(gx * gx + gy * gy))


# ------------------------------------------------------------------------ basics
def test_is_a_microscope_on_wall_clock(mic):
    assert isinstance(mic, Microscope)
    assert isinstance(mic.clock, RealClock)
    assert mic.focus_device == "Z" and mic.camera == "Camera"
    info = mic.camera_info()
    assert (info.width_px, info.height_px, info.bit_depth) == (512, 512, 16)
    assert info.name == "Camera"
    assert mic.z_limits_um == LIMITS


def test_move_waits_and_reports_position(mic):
    mic.move_z(7.25)
    assert mic.z_um == pytest.approx(7.25)
    assert mic.core.get_position("Z") == pytest.approx(7.25)
    frame = mic.snap()
    assert frame.ndim == 2 and frame.shape == (512, 512) and frame.dtype == np.uint16


def test_move_waits_for_a_slow_stage(mic):
    """NTAsyncStage is busy while it slews; move_z returns only once it has arrived."""
    mic.core.set_property("AsyncZ", "SlewTimePerStep_s", "0.001")  # 0.1 µm steps: 10 ms/µm
    slow = _other(mic, focus_device="AsyncZ")
    start_s = time.monotonic()
    slow.move_z(5.0)
    assert time.monotonic() - start_s >= 0.04  # 50 steps of 1 ms
    assert not mic.core.device_busy("AsyncZ")
    assert slow.z_um == pytest.approx(5.0)


def test_democamera_blurs_away_from_z0(mic):
    """Bead mode: sharpness falls monotonically with |z| on both sides of Z = 0."""
    scores = {}
    for z in (-30.0, -10.0, 0.0, 10.0, 30.0):
        mic.move_z(z)
        scores[z] = _sharpness(mic.snap())
    assert scores[0.0] > scores[10.0] > scores[30.0]
    assert scores[0.0] > scores[-10.0] > scores[-30.0]


# ------------------------------------------------------------------------ limits
def test_limits_are_enforced_before_any_command(mic):
    mic.move_z(12.0)
    for bad in (100.5, -150.0, math.nan, math.inf):
        with pytest.raises(LimitError, match="outside the configured limits"):
            mic.move_z(bad)
        assert mic.z_um == pytest.approx(12.0)
    mic.move_z(100.0)  # the limit itself is allowed
    assert mic.z_um == pytest.approx(100.0)


def test_limits_are_required(mic):
    from autofocus_drivers.micromanager import MicroManagerMicroscope

    with pytest.raises(ConfigurationError, match="ZLimits"):
        MicroManagerMicroscope(mic.core, z_limits_um=(-1.0, 1.0))


# ------------------------------------------------------------------ device names
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"focus_device": "ZDrive"}, r'focus device "ZDrive" is not loaded.*Z \(StageDevice\)'),
        ({"camera": "Cam2"}, r'camera "Cam2" is not loaded.*cameras: \[.*Camera'),
        ({"focus_device": "Autofocus"}, r"hardware autofocus device, not a Z drive"),
        ({"focus_device": "Camera"}, r"CameraDevice, not a Z stage"),
        ({"camera": "Z"}, r"StageDevice, not a camera"),
    ],
)
def test_wrong_device_names_are_clear_and_move_nothing(mic, kwargs, message):
    mic.move_z(3.0)
    with pytest.raises(ConfigurationError, match=message):
        _other(mic, **kwargs)
    assert mic.z_um == pytest.approx(3.0)
    assert mic.core.get_camera_device() == "Camera"


def test_named_camera_becomes_current_and_is_given_back(mic):
    multi = _other(mic, camera="MultiCam")
    assert mic.core.get_camera_device() == "MultiCam"
    assert multi.snap().shape == (512, 512)
    multi.close()
    assert mic.core.get_camera_device() == "Camera"


# -------------------------------------------------------------- failing devices
def test_failing_stage_is_a_stage_error_and_stays_put(mic):
    """DStage refuses positions beyond ±300 µm; limits wider than that let the move through."""
    wide = _other(mic, z_limits_um=ZLimits(-1000.0, 1000.0))
    wide.move_z(20.0)
    with pytest.raises(StageError, match=r'"Z" failed to move to 500 µm: .*out of range') as err:
        wide.move_z(500.0)
    assert not isinstance(err.value, DeviceTimeout)
    assert wide.z_um == pytest.approx(20.0)


def test_stage_that_does_not_settle_is_a_device_timeout(mic):
    core = mic.core
    core.set_property("AsyncZ", "SlewTimePerStep_s", "0.01")  # 100 ms per µm
    core.set_timeout_ms(150)
    slow = _other(mic, focus_device="AsyncZ")
    with pytest.raises(DeviceTimeout, match=r'"AsyncZ" did not finish moving: .*timed out'):
        slow.move_z(5.0)
    core.set_timeout_ms(5000)
    slow.wait_for_stage()
    assert slow.z_um == pytest.approx(5.0)


def test_failing_camera_is_a_camera_error_and_leaves_stage(mic):
    multi = _other(mic, camera="MultiCam")
    multi.move_z(4.0)
    mic.core.set_property("MultiCam", "Physical Camera 1", "Undefined")
    with pytest.raises(CameraError, match=r'camera "MultiCam" failed to snap.*physical camera'):
        multi.snap()
    assert multi.z_um == pytest.approx(4.0)
    multi.close()


def test_refused_exposure_is_a_camera_error(mic):
    """DemoCamera silently keeps its exposure above MaximumExposureMs (10000 ms)."""
    with pytest.raises(CameraError, match=r'"Camera" did not accept exposure 20000 ms'):
        mic.set_exposure_ms(20000.0)
    assert mic.exposure_ms == pytest.approx(10.0)
    with pytest.raises(CameraError, match="positive"):
        mic.set_exposure_ms(-1.0)


def test_engaged_hardware_autofocus_blocks_z_moves(mic):
    """DemoCamera's DAutoFocus in continuous mode stands in for a locked PFS / CRISP."""
    mic.move_z(6.0)
    mic.core.enable_continuous_focus(True)
    assert mic.hardware_autofocus_engaged()
    with pytest.raises(StageError, match=r'hardware autofocus "Autofocus" is engaged'):
        mic.move_z(8.0)
    with pytest.raises(StageError, match="switch it off"):
        with mic.job_settings(exposure_ms=2.0):
            pytest.fail("unreachable")
    assert mic.z_um == pytest.approx(6.0)
    assert mic.exposure_ms == pytest.approx(10.0)
    mic.core.enable_continuous_focus(False)
    mic.move_z(8.0)
    assert mic.z_um == pytest.approx(8.0)


# ----------------------------------------------------------------- job settings
def test_job_settings_apply_and_restore(mic):
    assert (mic.exposure_ms, mic.roi) == (10.0, (0, 0, 512, 512))
    with mic.job_settings(exposure_ms=3.5, roi=(64, 32, 200, 100)) as scope:
        assert scope is mic
        assert mic.exposure_ms == pytest.approx(3.5)
        assert mic.roi == (64, 32, 200, 100)
        assert mic.snap().shape == (100, 200)
    assert mic.exposure_ms == pytest.approx(10.0)
    assert mic.roi == (0, 0, 512, 512)
    assert mic.snap().shape == (512, 512)


def test_job_settings_restore_after_failure(mic):
    mic.core.set_roi("Camera", 8, 8, 300, 300)  # a user's ROI is put back, not cleared
    mic.core.set_exposure("Camera", 25.0)
    with pytest.raises(RuntimeError, match="job blew up"):
        with mic.job_settings(exposure_ms=1.0, roi=(0, 0, 64, 64)):
            assert mic.roi == (0, 0, 64, 64)
            raise RuntimeError("job blew up")
    assert mic.exposure_ms == pytest.approx(25.0)
    assert mic.roi == (8, 8, 300, 300)


def test_job_settings_restore_after_a_bad_setting(mic):
    # The ROI is applied before the exposure is refused: both must come back.
    with pytest.raises(CameraError, match="did not accept exposure"):
        with mic.job_settings(exposure_ms=20000.0, roi=(0, 0, 128, 128)):
            pytest.fail("the job body must not run with settings that were refused")
    assert mic.exposure_ms == pytest.approx(10.0)
    assert mic.roi == (0, 0, 512, 512)
    with pytest.raises(CameraError, match=r"does not fit camera \"Camera\" \(512x512 px\)"):
        with mic.job_settings(roi=(400, 400, 200, 200)):
            pytest.fail("unreachable")
    assert mic.roi == (0, 0, 512, 512)


def test_set_roi_none_is_full_frame(mic):
    mic.set_roi((10, 10, 50, 60))
    assert mic.camera_info().width_px == 50 and mic.camera_info().height_px == 60
    mic.set_roi(None)
    assert mic.roi == (0, 0, 512, 512)


# ------------------------------------------------------------ Java bridge branch
class _JavaRectangle:
    def __init__(self, x: int, y: int, width: int, height: int) -> None:
        self.x, self.y, self.width, self.height = x, y, width, height


class _JavaStrVector:
    def __init__(self, items) -> None:
        self._items = list(items)

    def size(self) -> int:
        return len(self._items)

    def get(self, i: int) -> str:
        return self._items[i]


class _JavaDeviceType:
    def __init__(self, value: int) -> None:
        self._value = value

    def swig_value(self) -> int:
        return self._value


class JavaBridgeLikeCore:
    """Test double for pycromanager's Java-bridge core (`ZMQRemoteMMCoreJ`).

    Why a double: the real bridge needs a running Java Micro-Manager with its ZMQ server,
    and there is no Java on this machine. So this wraps the REAL in-process MMCore and
    changes only what crossing the bridge changes: `get_image` returns the FLAT pixel
    array (MMCoreJ returns a Java `short[]`), `get_roi` returns a `java.awt.Rectangle`
    with x/y/width/height fields, device lists come back as `StrVector` objects with
    `size()`/`get(i)`, and device types as `DeviceType` objects with `swig_value()`.
    Every other call goes to the real core.
    """

    def __init__(self, core) -> None:
        self._core = core

    def get_image(self):
        return np.asarray(self._core.get_image()).ravel()

    def get_roi(self, *label):
        return _JavaRectangle(*self._core.get_roi(*label))

    def get_loaded_devices(self):
        return _JavaStrVector(self._core.get_loaded_devices())

    def get_device_type(self, label):
        return _JavaDeviceType(int(self._core.get_device_type(label)))

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_flat_java_images_are_reshaped(mic):
    bridge = _other_on(JavaBridgeLikeCore(mic.core))
    assert np.asarray(bridge.core.get_image()).ndim == 1
    with bridge.job_settings(roi=(16, 8, 120, 40)):
        assert bridge.roi == (16, 8, 120, 40)
        frame = bridge.snap()
        assert frame.shape == (40, 120)
    assert bridge.roi == (0, 0, 512, 512)
    bridge.move_z(0.0)
    flat_frame = bridge.snap()
    mic.core.snap_image()
    direct = mic.core.get_image()
    assert flat_frame.shape == direct.shape == (512, 512)
    np.testing.assert_array_equal(flat_frame, direct)  # bead mode is noiseless


def test_flat_image_of_wrong_size_is_a_camera_error(mic):
    class TruncatingBridge(JavaBridgeLikeCore):
        """As above, but the bridge delivers a truncated pixel buffer."""

        def get_image(self):
            return super().get_image()[:-7]

    bridge = _other_on(TruncatingBridge(mic.core))
    with pytest.raises(CameraError, match=r"returned 262137 pixels for a 512x512 image"):
        bridge.snap()


# ---------------------------------------------------------------- ways in / out
def test_second_headless_core_is_refused(mic):
    from autofocus_drivers.micromanager import (
        MicroManagerMicroscope,
        demo_adapter_dir,
        demo_config_file,
    )

    with pytest.raises(ConfigurationError, match="already running"):
        MicroManagerMicroscope.start_headless(
            demo_adapter_dir(), demo_config_file(), z_limits_um=LIMITS
        )
    assert mic.snap().shape == (512, 512)  # the running one is untouched


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_to_closed_port_fails_fast_and_says_how_to_fix():
    from autofocus_drivers.micromanager import open_micromanager

    port = _free_port()
    start_s = time.monotonic()
    with pytest.raises(ConfigurationError) as err:
        open_micromanager(port=port, z_limits_um=(-10.0, 10.0), timeout_s=5.0)
    assert time.monotonic() - start_s < 1.0
    text = str(err.value)
    assert f"port {port}" in text and "connection refused" in text
    assert "Tools > Options" in text and f"Run server on port {port}" in text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_connect_to_a_port_that_is_not_micromanager_times_out():
    """Something listens but never speaks ZMQ: bounded by timeout_s, not a hang."""
    if _mm_available():
        pytest.skip(_mm_available())
    from autofocus_drivers.micromanager import MicroManagerMicroscope

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        start_s = time.monotonic()
        with pytest.raises(ConfigurationError, match="no Micro-Manager ZMQ server answered"):
            MicroManagerMicroscope.connect(port=port, timeout_s=0.3, z_limits_um=LIMITS)
        assert time.monotonic() - start_s < 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 4827, "headless_adapter_dir": "x"}, "not both"),
        ({"headless_adapter_dir": "/nonexistent-adapters"}, "needs a hardware configuration"),
        ({"port": 4827, "config_file": "a.cfg"}, "only applies to headless"),
        ({"port": 0}, "port must be 1-65535"),
        ({"headless_adapter_dir": "/nonexistent", "config_file": "a.cfg"}, "does not exist"),
    ],
)
def test_factory_rejects_contradictory_options(kwargs, message):
    from autofocus_drivers.micromanager import open_micromanager

    with pytest.raises(ConfigurationError, match=message):
        open_micromanager(z_limits_um=(-10.0, 10.0), **kwargs)


def test_factory_rejects_bad_limits():
    from autofocus_drivers.micromanager import open_micromanager

    with pytest.raises(ConfigurationError, match="bad Z limits"):
        open_micromanager(port=4827, z_limits_um=(10.0, -10.0))


# ------------------------------------------------------- end to end: autofocus
# DemoCamera (bead mode) is sharpest at Z = 0 µm: every bead is a Gaussian of sigma
# sqrt(size^2 + (BeadBlurRate * |z|)^2) px, z being the position of the stage "Z".
DEMOCAMERA_FOCUS_Z_UM = 0.0
TOLERANCE_UM = 1.0


def _focus_api():
    try:
        from autofocus.search.focus import FocusRequest, focus
    except ImportError as exc:
        pytest.skip(f"the autofocus engine is not importable yet ({exc})")
    return FocusRequest, focus


@pytest.mark.parametrize("start_z_um", [30.0, -30.0])
def test_autofocus_finds_democamera_focus_from_30um_away(mic, start_z_um):
    FocusRequest, focus = _focus_api()
    mic.move_z(start_z_um)
    request = FocusRequest(range_um=80.0, tolerance_um=TOLERANCE_UM, exposure_ms=2.0)
    with mic.job_settings(roi=(64, 64, 384, 384)):
        result = focus(mic, request)
        assert mic.roi == (64, 64, 384, 384)
    assert result.success, result.reason
    assert result.start_z_um == pytest.approx(start_z_um)
    assert abs(result.best_z_um - DEMOCAMERA_FOCUS_Z_UM) <= TOLERANCE_UM
    assert mic.z_um == pytest.approx(result.best_z_um, abs=1e-6)  # parked at best
    assert mic.exposure_ms == pytest.approx(10.0)  # the run's 2 ms exposure was undone
    assert mic.roi == (0, 0, 512, 512)
    assert all(LIMITS.contains(m.z_um) for m in result.curve)


def test_camera_failing_mid_autofocus_returns_stage_to_start(mic):
    """The real Multi Camera adapter loses its physical camera after three frames."""
    FocusRequest, focus = _focus_api()
    multi = _other(mic, camera="MultiCam")
    multi.move_z(30.0)
    seen = []

    def unplug_after_three(measurement):
        seen.append(measurement)
        if len(seen) == 3:
            mic.core.set_property("MultiCam", "Physical Camera 1", "Undefined")

    result = focus(
        multi, FocusRequest(range_um=80.0, tolerance_um=TOLERANCE_UM), on_measure=unplug_after_three
    )
    assert not result.success
    assert result.error_type == "CameraError"
    assert '"MultiCam"' in result.reason and "physical camera" in result.reason
    assert multi.z_um == pytest.approx(30.0)
    multi.close()


def test_stage_failing_mid_autofocus_returns_stage_to_start(mic):
    """Limits wider than DStage's ±300 µm travel: the search runs into the real refusal."""
    FocusRequest, focus = _focus_api()
    wide = _other(mic, z_limits_um=ZLimits(-1000.0, 1000.0))
    wide.move_z(280.0)
    # A small ROI: DemoCamera renders beads 150 px wide out here, slowly on a full frame.
    with wide.job_settings(roi=(224, 224, 64, 64)):
        result = focus(wide, FocusRequest(range_um=80.0, tolerance_um=TOLERANCE_UM))
    assert wide.roi == (0, 0, 512, 512)
    assert not result.success
    assert result.error_type == "StageError"
    assert '"Z"' in result.reason and "out of range" in result.reason
    assert wide.z_um == pytest.approx(280.0)


def test_continuous_focus_pause_switches_it_off_for_the_search_and_back_on(mic):
    """mm.continuous_focus = "pause": DAutoFocus (standing in for PFS) is off while the
    software autofocus moves Z, and locked again when the search has ended."""
    from autofocus.search.focus import focus

    pausing = _other(mic, continuous_focus="pause")
    pausing.move_z(15.0)
    mic.core.enable_continuous_focus(True)
    seen_engaged: list[bool] = []
    result = focus(
        pausing, range_um=60, on_measure=lambda m: seen_engaged.append(
            bool(mic.core.is_continuous_focus_enabled())
        ),
    )
    assert result.success, result.reason
    assert abs(result.best_z_um) < 1.0
    assert seen_engaged and not any(seen_engaged)
    assert mic.core.is_continuous_focus_enabled()  # switched back on
    mic.core.enable_continuous_focus(False)


def test_continuous_focus_refuse_is_the_default_and_fails_the_search_unmoved(mic):
    from autofocus.search.focus import focus

    mic.move_z(4.0)
    mic.core.enable_continuous_focus(True)
    result = focus(mic, range_um=20)
    assert not result.success and result.error_type == "StageError"
    assert "continuous_focus" in result.reason and "pause" in result.reason
    assert mic.core.is_continuous_focus_enabled()
    mic.core.enable_continuous_focus(False)
    assert mic.z_um == pytest.approx(4.0)


def test_focus_map_prior_without_tolerance_or_objective_falls_back_to_the_default(mic):
    """No tolerance_um and no objective (the depth of field unknown): the map's prediction
    still becomes a prior, its σ from the default tolerance, not a TypeError on None."""
    from autofocus.search.focus import FocusRequest
    from autofocus.search.maps import build_focus_map, grid_positions

    scope = _other(mic)
    assert scope.depth_of_field_um is None
    scope.move_z(12.0)
    fmap = build_focus_map(
        scope, grid_positions((0.0, 1000.0), (0.0, 600.0), 2, 2),
        FocusRequest(range_um=40.0), range_after_map_um=10.0,
    )
    assert fmap.ready and all(p.success for p in fmap.points)
    assert abs(fmap.predict_z_um(500.0, 300.0)) < 0.5


def test_xy_stage_of_the_core_is_used_for_focus_maps(mic):
    """DemoCamera's DXYStage ("XY"): the driver moves it, and a focus map built through
    Micro-Manager finds DemoCamera's focus plane (Z = 0 everywhere)."""
    from autofocus.search.focus import FocusRequest
    from autofocus.search.maps import build_focus_map, grid_positions

    assert mic.has_xy_stage and mic.xy_stage == "XY"
    mic.move_xy(120.0, -40.0)
    assert mic.xy_um == pytest.approx((120.0, -40.0), abs=0.01)  # DXYStage steps
    mic.move_z(12.0)
    fmap = build_focus_map(
        mic, grid_positions((0.0, 1000.0), (0.0, 600.0), 2, 2),
        FocusRequest(range_um=40.0, tolerance_um=0.25), range_after_map_um=10.0,
    )
    assert fmap.ready and all(p.success for p in fmap.points)
    assert abs(fmap.predict_z_um(500.0, 300.0)) < 0.5
    with pytest.raises(ConfigurationError, match='XY stage "Nope" is not loaded'):
        _other(mic, xy_stage="Nope")
