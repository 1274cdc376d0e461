"""The replay driver on synthetic planes: serving, limits, time, blend, noise, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from autofocus_drivers import ConfigurationError, LimitError, Microscope, VirtualClock
from autofocus_drivers.errors import CameraError, StageError
from autofocus_drivers.replay import ReplayMicroscope


def _planes(values, shape=(8, 6), dtype=np.uint16):
    """One constant plane per value (plus a gradient so it is not blank)."""
    ramp = np.arange(shape[0] * shape[1]).reshape(shape) % 3
    return [(np.full(shape, v) + ramp).astype(dtype) for v in values]


def _mic(z=(0.0, 1.0, 2.0, 3.0), values=(100, 200, 300, 400), **kw):
    return ReplayMicroscope(list(z), _planes(values), **kw)


def test_implements_the_microscope_protocol():
    mic = _mic()
    assert isinstance(mic, Microscope)
    assert mic.name == "replay"
    info = mic.camera_info()
    assert (info.width_px, info.height_px, info.bit_depth) == (6, 8, 16)


def test_limits_are_the_recorded_range_and_start_in_the_middle():
    mic = _mic(z=(-2.0, 0.5, 4.0), values=(1, 2, 3))
    assert (mic.z_limits_um.min_um, mic.z_limits_um.max_um) == (-2.0, 4.0)
    assert mic.z_um == pytest.approx(1.0)


def test_serves_the_nearest_plane_and_ties_go_low():
    mic = _mic()
    expected = {0.0: 100, 0.49: 100, 0.5: 100, 0.51: 200, 1.7: 300, 2.5: 300, 3.0: 400}
    for z, base in expected.items():
        mic.move_z(z)
        frame = mic.snap()
        assert frame.dtype == np.uint16 and frame.shape == (8, 6)
        assert int(frame.min()) == base, z
        assert mic.nearest_plane_index(z) == [100, 200, 300, 400].index(base)


def test_unsorted_input_is_sorted_with_its_images():
    mic = ReplayMicroscope([2.0, 0.0, 1.0], _planes([30, 10, 20]))
    assert list(mic.plane_z_um) == [0.0, 1.0, 2.0]
    mic.move_z(0.0)
    assert int(mic.snap().min()) == 10
    mic.move_z(2.0)
    assert int(mic.snap().min()) == 30


def test_move_outside_the_stack_raises_without_moving():
    mic = _mic()
    mic.move_z(1.0)
    for bad in (-0.01, 3.5, math.nan, math.inf):
        with pytest.raises(LimitError, match="outside"):
            mic.move_z(bad)
    assert mic.z_um == 1.0
    assert mic.commanded_z_um == [1.0]


def test_moves_and_exposures_cost_virtual_time():
    clock = VirtualClock()
    mic = _mic(clock=clock, move_s_per_um=0.01, settle_s=0.02, exposure_ms=5.0, readout_s=0.003)
    assert mic.clock is clock
    mic.move_z(0.0)  # from the middle (1.5): 1.5 µm
    assert clock.now_s() == pytest.approx(1.5 * 0.01 + 0.02)
    t = clock.now_s()
    mic.snap()
    assert clock.now_s() - t == pytest.approx(0.005 + 0.003)
    mic.set_exposure_ms(40.0)
    t = clock.now_s()
    mic.snap()
    assert clock.now_s() - t == pytest.approx(0.040 + 0.003)
    assert mic.exposure_ms == 40.0
    with pytest.raises(CameraError):
        mic.set_exposure_ms(0.0)


def test_blend_interpolates_between_neighbours_on_regular_stacks():
    mic = _mic(blend=True)
    mic.move_z(1.25)
    frame = mic.snap()
    ref = 0.75 * mic.plane(1).astype(float) + 0.25 * mic.plane(2).astype(float)
    assert np.array_equal(frame, np.rint(ref).astype(np.uint16))
    mic.move_z(3.0)
    assert np.array_equal(mic.snap(), mic.plane(3))


def test_blend_refused_on_irregular_stacks():
    with pytest.raises(ConfigurationError, match="evenly spaced"):
        _mic(z=(0.0, 1.0, 5.0, 6.0), blend=True)


def test_noise_is_seeded_fresh_per_snap_and_keeps_dtype():
    a, b, c = _mic(noise_sigma=0.05, seed=3), _mic(noise_sigma=0.05, seed=3), _mic(seed=3)
    fa1, fa2 = a.snap(), a.snap()
    assert np.array_equal(fa1, b.snap())
    assert not np.array_equal(fa1, fa2)
    assert fa1.dtype == np.uint16
    clean = c.snap().astype(float)
    # sigma is 5 % of the stack's intensity range (≈ 302 counts): ≈ 15 counts rms
    assert 8 < np.std(fa1.astype(float) - clean) < 25


def test_noise_is_clipped_into_the_dtype():
    planes = [np.array([[0, 255], [0, 255]], np.uint8), np.array([[0, 255], [255, 0]], np.uint8)]
    mic = ReplayMicroscope([0.0, 1.0], planes, noise_sigma=1.0)
    frame = mic.snap()
    assert frame.dtype == np.uint8


def test_colour_planes_become_grey_in_their_dtype():
    rgb = [np.zeros((4, 5, 3), np.uint8) + v for v in (10, 200)]
    rgb[0][0, 0] = (255, 0, 0)
    mic = ReplayMicroscope([0.0, 1.0], rgb)
    mic.move_z(0.0)
    frame = mic.snap()
    assert frame.shape == (4, 5) and frame.dtype == np.uint8
    assert frame[0, 0] == round(0.299 * 255)


def test_label_is_reported_not_used():
    mic = _mic(true_focus_z_um=1.2, focus_tolerance_um=0.1)
    assert mic.true_focus_z_um() == 1.2 and mic.focus_tolerance_um == 0.1
    assert _mic().true_focus_z_um() is None


def test_close_is_idempotent_and_stops_the_hardware():
    mic = _mic()
    mic.close()
    mic.close()
    with pytest.raises(StageError):
        mic.move_z(1.0)
    with pytest.raises(CameraError):
        mic.snap()


@pytest.mark.parametrize(
    ("z", "images", "match"),
    [
        ([0.0], _planes([1]), "at least 2 planes"),
        ([], [], "at least 2 planes"),
        ([0.0, 1.0, 1.0], _planes([1, 2, 3]), r"duplicate Z position 1 µm"),
        ([0.0, math.nan], _planes([1, 2]), "not a finite number"),
        ([0.0, 1.0], _planes([1]), "2 Z positions for 1 images"),
        ([0.0, 1.0], [_planes([1])[0], _planes([2], shape=(8, 7))[0]], "same size"),
        ([0.0, 1.0], [_planes([1])[0], _planes([2], dtype=np.uint8)[0]], "same pixel type"),
        ([0.0, 1.0], [np.zeros((2, 2)), np.full((2, 2), np.nan)], "NaN or infinite"),
        ([0.0, 1.0], [np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2, 2))], "must be a 2-D"),
        ([0.0, 1.0], [np.zeros((0, 3)), np.zeros((0, 3))], "empty"),
    ],
)
def test_bad_stacks_are_refused_with_a_clear_message(z, images, match):
    with pytest.raises(ConfigurationError, match=match):
        ReplayMicroscope(z, images)


def test_loader_failures_name_the_plane():
    def broken():
        raise OSError("not a TIFF file")

    loaders = [lambda: _planes([1])[0], broken]
    with pytest.raises(ConfigurationError, match=r"b\.tif could not be read: not a TIFF file"):
        ReplayMicroscope([0.0, 1.0], loaders, sources=["a.tif", "b.tif"])


def test_bad_numbers_are_refused():
    with pytest.raises(ConfigurationError, match="noise_sigma"):
        _mic(noise_sigma=-1)
    with pytest.raises(ConfigurationError, match="exposure_ms"):
        _mic(exposure_ms=0)
    with pytest.raises(ConfigurationError, match="start_z_um"):
        _mic(start_z_um=10.0)


def test_the_driver_does_not_import_the_autofocus_layer():
    import subprocess
    import sys

    code = (
        "import sys, autofocus_drivers.replay; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'autofocus'); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
