"""Tests of the simulated microscope: optics, camera noise, stage mechanics, faults, clock."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from autofocus_drivers import (
    CameraError,
    DeviceTimeout,
    LimitError,
    Microscope,
    RealClock,
    StageError,
    VirtualClock,
)
from autofocus_drivers.sim import (
    Calls,
    CameraConfig,
    FaultConfig,
    Optics,
    SimConfig,
    SimConfigError,
    SimulatedMicroscope,
    SpecimenConfig,
    StageConfig,
    defocus_image,
    defocus_otf,
)

# --- helpers ----------------------------------------------------------------------------------


def sharpness(frame: np.ndarray) -> float:
    """Gradient energy: mean squared difference of neighbouring pixels."""
    f = frame.astype(np.float64)
    return float((np.diff(f, axis=0) ** 2).mean() + (np.diff(f, axis=1) ** 2).mean())


def config(
    specimen: str = "cells",
    modality: str = "fluorescence",
    *,
    size_px: int = 128,
    camera: dict | None = None,
    stage: dict | None = None,
    faults: FaultConfig | None = None,
    **specimen_kw,
) -> SimConfig:
    """A config with a fixed focus at 0 µm and an ideal stage unless told otherwise."""
    specimen_kw.setdefault("focus_z_um", 0.0)
    stage_kw = {"backlash_um": 0.0, "position_noise_um": 0.0, "step_um": 0.0}
    stage_kw.update(stage or {})
    camera_kw = {"bleach_per_ms": 0.0}  # frames repeat exactly unless a test wants bleaching
    camera_kw.update(camera or {})
    return SimConfig(
        modality=modality,
        specimen=SpecimenConfig(kind=specimen, **specimen_kw),
        camera=CameraConfig(width_px=size_px, height_px=size_px, **camera_kw),
        stage=StageConfig(**stage_kw),
        faults=faults or FaultConfig(),
    )


def snap_at(mic: SimulatedMicroscope, z_um: float) -> np.ndarray:
    mic.move_z(z_um)
    return mic.snap()


# --- (i) optics -------------------------------------------------------------------------------


def test_depth_of_field_of_known_objectives():
    # 20×/0.75 air at 520 nm on 6.5 µm pixels: 0.52/0.75² + 6.5/(20·0.75).
    assert Optics().depth_of_field_um == pytest.approx(0.52 / 0.5625 + 6.5 / 15.0, rel=1e-12)
    assert Optics().depth_of_field_um == pytest.approx(1.35778, abs=1e-5)
    # 60×/1.4 oil (n = 1.515): 0.52·1.515/1.96 + 1.515·6.5/84 ≈ 0.5192 µm.
    oil = Optics(na=1.4, immersion_index=1.515, magnification=60)
    assert oil.depth_of_field_um == pytest.approx(0.519171, abs=1e-5)
    assert Optics().sample_pixel_um == pytest.approx(0.325)


def test_blur_radius_follows_the_marginal_ray_angle():
    optics = Optics(na=0.75)
    # tan(asin(0.75)) = 0.75/√(1−0.5625) ≈ 1.1339
    assert optics.blur_radius_um(2.0) == pytest.approx(2 * 0.75 / math.sqrt(0.4375))
    assert optics.blur_radius_um(-2.0) == optics.blur_radius_um(2.0)
    assert optics.diffraction_sigma_um == pytest.approx(0.21 * 0.52 / 0.75)


def test_defocus_otf_is_unity_at_dc_and_falls_with_defocus():
    optics = Optics()
    otfs = [defocus_otf((64, 64), dz, optics) for dz in (0.0, 1.0, 3.0)]
    for otf in otfs:
        assert otf.shape == (64, 33)
        assert otf[0, 0] == pytest.approx(1.0)
    energy = [float(np.sum(otf**2)) for otf in otfs]
    assert energy[0] > energy[1] > energy[2]


def test_defocus_image_conserves_flux_and_blurs_monotonically():
    rng = np.random.default_rng(1)
    img = np.zeros((96, 80))
    img[rng.integers(0, 96, 60), rng.integers(0, 80, 60)] = 1000.0
    img += 10.0
    optics = Optics()
    out = [defocus_image(img, dz, optics) for dz in (0.0, 0.5, 1.0, 2.0, 4.0)]
    for o in out:
        assert o.shape == img.shape and o.dtype == np.float64
        assert o.mean() == pytest.approx(img.mean(), rel=0.02)  # reflect padding ≈ conserves
    s = [sharpness(o) for o in out]
    assert all(a > b for a, b in zip(s, s[1:], strict=False)), s
    assert np.allclose(defocus_image(img, 1.5, optics), defocus_image(img, -1.5, optics))
    with pytest.raises(ValueError):
        defocus_image(np.zeros((4, 4, 3)), 1.0, optics)


# --- (a) focus curve --------------------------------------------------------------------------


@pytest.mark.parametrize("specimen", ["cells", "fibres", "beads"])
def test_sharpness_falls_monotonically_with_defocus(specimen):
    dof = Optics().depth_of_field_um
    steps = [0.0, 0.5, 1.0, 2.0, 4.0] if specimen != "beads" else [0.0, 0.5, 1.0, 2.0]
    curves = []
    for seed in range(3):
        mic = SimulatedMicroscope(config(specimen), seed=seed)
        curves.append(
            {
                sign * k: np.mean([sharpness(snap_at(mic, sign * k * dof)) for _ in range(2)])
                for k in steps
                for sign in (-1, 1)
            }
        )
    mean = {k: np.mean([c[k] for c in curves]) for k in curves[0]}
    for sign in (-1, 1):
        values = [mean[sign * k] for k in steps]
        assert all(a > b for a, b in zip(values, values[1:], strict=False)), (sign, values)


def test_noise_free_focus_peak_is_at_the_true_focus():
    mic = SimulatedMicroscope(config("cells", camera={"noise_model": "none"}, focus_z_um=3.7))
    zs = np.arange(-2.0, 9.01, 0.1)
    curve = [sharpness(snap_at(mic, z)) for z in zs]
    assert zs[int(np.argmax(curve))] == pytest.approx(3.7, abs=0.051)
    assert mic.true_focus_z_um() == 3.7


# --- (b) camera noise, saturation, bleaching --------------------------------------------------


@pytest.mark.parametrize("noise_model", ["poisson", "gaussian"])
def test_flat_field_noise_matches_the_model(noise_model):
    cam = {
        "photons_per_px_ms": 0.0,
        "background_photons_per_px_ms": 50.0,  # 500 photons per pixel in 10 ms
        "quantum_efficiency": 0.7,
        "read_noise_e": 3.0,
        "gain_e_per_adu": 2.0,
        "offset_adu": 100.0,
        "noise_model": noise_model,
    }
    mic = SimulatedMicroscope(config("beads", size_px=256, density=0.0, camera=cam), seed=4)
    frame = mic.snap().astype(np.float64)
    electrons = 0.7 * 500
    assert frame.mean() == pytest.approx(100 + electrons / 2.0, rel=0.005)
    expected_var = (electrons + 3.0**2) / 2.0**2 + 1 / 12  # + ADC rounding
    assert frame.var() == pytest.approx(expected_var, rel=0.03)


def test_low_light_counts_are_poisson():
    cam = {
        "photons_per_px_ms": 0.0,
        "background_photons_per_px_ms": 0.3,  # 3 photons → 2.1 e− per pixel
        "read_noise_e": 0.0,
        "gain_e_per_adu": 1.0,
        "offset_adu": 10.0,
    }
    mic = SimulatedMicroscope(config("beads", size_px=256, density=0.0, camera=cam), seed=5)
    electrons = mic.snap().astype(np.int64) - 10
    counts = np.bincount(electrons.ravel(), minlength=4)[:4] / electrons.size
    lam = 2.1
    expected = [math.exp(-lam) * lam**k / math.factorial(k) for k in range(4)]
    assert counts == pytest.approx(expected, abs=0.006)


def test_saturation_clips_at_the_full_well():
    cam = {"photons_per_px_ms": 1e5, "gain_e_per_adu": 1.0, "full_well_e": 2000.0,
           "offset_adu": 100.0, "read_noise_e": 1.5}
    mic = SimulatedMicroscope(config("beads", modality="brightfield", density=0.0, camera=cam))
    frame = mic.snap().astype(np.float64)
    assert frame.mean() == pytest.approx(2100.0, abs=0.5)
    assert frame.std() == pytest.approx(1.5, rel=0.2)  # only read noise is left
    assert frame.max() < 4095


def test_saturation_clips_at_the_adc_range():
    cam = {"photons_per_px_ms": 1e5, "gain_e_per_adu": 4.0, "full_well_e": 30000.0}
    frame = SimulatedMicroscope(config("beads", "brightfield", density=0.0, camera=cam)).snap()
    assert frame.dtype == np.uint16 and np.all(frame == 4095)
    cam8 = dict(cam, bit_depth=8)
    frame8 = SimulatedMicroscope(config("beads", "brightfield", density=0.0, camera=cam8)).snap()
    assert frame8.dtype == np.uint8 and np.all(frame8 == 255)


def test_photobleaching_reduces_fluorescence_with_cumulative_exposure():
    cam = {"bleach_per_ms": 0.01, "background_photons_per_px_ms": 0.0, "noise_model": "none",
           "offset_adu": 0.0, "photons_per_px_ms": 200.0}
    mic = SimulatedMicroscope(config("cells", camera=cam))
    signal = [mic.snap().astype(np.float64).sum() for _ in range(4)]
    for k, s in enumerate(signal):
        assert s / signal[0] == pytest.approx(math.exp(-0.01 * 10.0 * k), rel=0.01)
    assert mic.cumulative_exposure_ms == pytest.approx(40.0)
    # Transmitted light does not bleach.
    bright = SimulatedMicroscope(config("cells", "brightfield", camera=cam))
    first, later = bright.snap().sum(), [bright.snap().sum() for _ in range(3)][-1]
    assert later == first


# --- (c) backlash -----------------------------------------------------------------------------


def test_backlash_offsets_depend_on_approach_direction_and_are_repeatable():
    mic = SimulatedMicroscope(config(stage={"backlash_um": 2.0, "step_um": 0.01}))
    mic.move_z(10.0)  # from below (start 0)
    from_below = mic.physical_z_um
    assert mic.z_um == 10.0
    mic.move_z(20.0)
    mic.move_z(10.0)  # from above
    from_above = mic.physical_z_um
    assert mic.z_um == 10.0
    assert from_above - from_below == pytest.approx(2.0, abs=1e-9)
    mic.move_z(0.0)
    mic.move_z(10.0)  # from below again
    assert mic.physical_z_um == pytest.approx(from_below, abs=1e-12)
    # A reversal smaller than the dead band leaves the carriage where it was.
    mic.move_z(9.2)
    assert mic.physical_z_um == pytest.approx(from_below, abs=1e-12)


def test_backlash_is_visible_in_the_image():
    cam = {"noise_model": "none"}
    mic = SimulatedMicroscope(config(camera=cam, stage={"backlash_um": 2.0}, focus_z_um=1.0))
    mic.move_z(-5.0)
    below = snap_at(mic, 0.0)  # approached from below: carriage at −1 µm, 2 µm from focus
    mic.move_z(5.0)
    above = snap_at(mic, 0.0)  # approached from above: carriage at +1 µm, in focus
    mic.move_z(-5.0)
    again = snap_at(mic, 0.0)
    assert np.array_equal(below, again)
    assert sharpness(above) > 2 * sharpness(below)


def test_stage_quantises_and_jitters_the_physical_position():
    mic = SimulatedMicroscope(config(stage={"step_um": 0.1, "position_noise_um": 0.0}))
    mic.move_z(1.234)
    assert mic.z_um == 1.234 and mic.physical_z_um == pytest.approx(1.2)
    noisy = SimulatedMicroscope(config(stage={"position_noise_um": 0.05}), seed=2)
    errors = []
    for z in np.linspace(1, 50, 200):
        noisy.move_z(float(z))
        errors.append(noisy.physical_z_um - z)
    assert np.std(errors) == pytest.approx(0.05, rel=0.25)


# --- (d) limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_z", [100.5, -1000.0, math.nan, math.inf, -math.inf])
def test_out_of_range_moves_raise_and_do_not_move(bad_z):
    mic = SimulatedMicroscope(config())
    mic.move_z(12.5)
    before = (mic.z_um, mic.physical_z_um, mic.clock.now_s(), mic.move_count)
    with pytest.raises(LimitError, match="outside the configured limits"):
        mic.move_z(bad_z)
    assert (mic.z_um, mic.physical_z_um, mic.clock.now_s(), mic.move_count) == before
    assert mic.commanded_z_um == [12.5]
    assert len(mic.refused_z_um) == 1


def test_moves_to_the_limits_themselves_are_accepted():
    mic = SimulatedMicroscope(config())
    assert (mic.z_limits_um.min_um, mic.z_limits_um.max_um) == (-100.0, 100.0)
    mic.move_z(100.0)
    mic.move_z(-100.0)
    assert mic.z_um == -100.0 and mic.commanded_z_um == [100.0, -100.0]


# --- (e) faults -------------------------------------------------------------------------------


def test_stage_faults_fire_on_the_configured_moves():
    faults = FaultConfig(stage_error=2, stage_timeout="4+", timeout_s=1.5)
    mic = SimulatedMicroscope(config(faults=faults))
    mic.move_z(1.0)
    with pytest.raises(StageError, match="move 2"):
        mic.move_z(2.0)
    assert mic.z_um == 1.0  # not moved
    mic.move_z(3.0)
    for n in (4, 5):
        t0 = mic.clock.now_s()
        with pytest.raises(DeviceTimeout):
            mic.move_z(float(n))
        assert mic.clock.now_s() - t0 == pytest.approx(1.5)
        assert mic.z_um == 3.0
    assert mic.move_count == 5
    assert mic.commanded_z_um == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_camera_faults_fire_on_the_configured_snaps():
    faults = FaultConfig(camera_error={2}, blank_frame=3, garbage_frame=Calls(from_n=4))
    mic = SimulatedMicroscope(config(faults=faults, camera={"offset_adu": 100.0}))
    good = mic.snap()
    assert good.max() > 200
    with pytest.raises(CameraError, match="snap 2"):
        mic.snap()
    blank = mic.snap()
    assert np.all(blank == 100) and blank.shape == good.shape and blank.dtype == good.dtype
    for _ in range(2):
        garbage = mic.snap()
        assert garbage.min() < 50 and garbage.max() > 4000
        assert garbage.std() == pytest.approx(4096 / math.sqrt(12), rel=0.05)
    assert mic.snap_count == 5


def test_fault_schedules_parse():
    assert Calls.parse(3).fires(3) and not Calls.parse(3).fires(4)
    assert Calls.parse("2,5").at == frozenset({2, 5})
    assert Calls.parse("3+").fires(10) and not Calls.parse("3+").fires(2)
    assert Calls.parse([1, 2]).fires(1) and Calls.parse(None).empty
    with pytest.raises(SimConfigError):
        Calls.parse("x+")
    with pytest.raises(SimConfigError):
        Calls.parse(0)


# --- (f) clock --------------------------------------------------------------------------------


def test_virtual_clock_advances_by_move_settle_and_exposure():
    mic = SimulatedMicroscope(
        config(stage={"speed_um_per_s": 500.0, "settle_s": 0.02}, camera={"exposure_ms": 10.0})
    )
    assert isinstance(mic.clock, VirtualClock) and mic.clock.now_s() == 0.0
    mic.move_z(50.0)
    assert mic.clock.now_s() == pytest.approx(50 / 500 + 0.02)
    mic.snap()
    assert mic.clock.now_s() == pytest.approx(0.12 + 0.010)
    mic.set_exposure_ms(25.0)
    mic.snap()
    assert mic.clock.now_s() == pytest.approx(0.13 + 0.025)
    mic.move_z(40.0)
    assert mic.clock.now_s() == pytest.approx(0.155 + 10 / 500 + 0.02)


def test_real_time_uses_the_real_clock():
    cfg = dataclasses.replace(config(stage={"settle_s": 0.0}), real_time=True)
    mic = SimulatedMicroscope(cfg)
    assert isinstance(mic.clock, RealClock)
    mic.set_exposure_ms(1.0)
    t0 = mic.clock.now_s()
    mic.snap()
    assert mic.clock.now_s() - t0 >= 0.001


def test_drift_moves_the_focus_with_hardware_time():
    mic = SimulatedMicroscope(config(drift_um_per_s=0.5, camera={"noise_model": "none"}))
    at_start = snap_at(mic, 0.0)
    mic.clock.sleep_s(10.0)
    assert mic.true_focus_z_um() == pytest.approx(0.5 * mic.clock.now_s())
    assert mic.true_focus_z_um() > 5.0
    stale = snap_at(mic, 0.0)
    fresh = snap_at(mic, mic.true_focus_z_um())
    assert sharpness(stale) < 0.5 * sharpness(at_start)
    assert sharpness(fresh) == pytest.approx(sharpness(at_start), rel=0.05)


# --- (g) brightfield --------------------------------------------------------------------------


def test_brightfield_phase_contrast_inverts_through_focus():
    cam = {"noise_model": "none"}
    mic = SimulatedMicroscope(config("cells", "brightfield", camera=cam, absorption_scale=0.0))
    background = mic.snap().astype(np.float64).mean()
    frames = {dz: snap_at(mic, dz).astype(np.float64) - background for dz in (-1.5, 0.0, 1.5)}
    corr = np.corrcoef(frames[-1.5].ravel(), frames[1.5].ravel())[0, 1]
    assert corr < -0.6, corr
    # A pure phase object is (almost) invisible exactly at focus.
    assert frames[0.0].std() < 0.2 * min(frames[-1.5].std(), frames[1.5].std())


def test_brightfield_is_bright_with_darker_absorbing_objects():
    mic = SimulatedMicroscope(config("cells", "brightfield", density=0.2, phase_scale=0.0,
                                     camera={"noise_model": "none"}))
    frame = mic.snap().astype(np.float64)
    background = np.percentile(frame, 95)
    assert background > 1000 and frame.min() < background * 0.97


# --- (h) debris -------------------------------------------------------------------------------


def debris_curve(amount: float, seed: int = 3):
    mic = SimulatedMicroscope(config("cells", debris_amount=amount, debris_dz_um=15.0), seed=seed)
    zs = np.arange(-6.0, 24.01, 1.0)
    return zs, np.array([sharpness(snap_at(mic, z)) for z in zs])


def test_debris_gives_a_second_peak_at_its_own_depth():
    zs, curve = debris_curve(0.5)
    assert zs[int(np.argmax(curve))] == 0.0
    i = int(np.where(zs == 15.0)[0][0])
    assert curve[i] > curve[i - 1] and curve[i] > curve[i + 1]
    valley = curve[(zs > 3) & (zs < 12)].min()
    assert curve[i] > 1.3 * valley
    # Without debris there is no second peak.
    _, clean = debris_curve(0.0)
    assert clean[i] < 1.05 * clean[(zs > 3) & (zs < 12)].min()


def test_strong_debris_can_outshine_the_specimen():
    zs, curve = debris_curve(2.0)
    assert zs[int(np.argmax(curve))] == 15.0  # the hard case: the wrong peak is the highest


# --- tilt, specimens, determinism, protocol ---------------------------------------------------


def test_tilt_makes_focus_vary_across_the_field():
    mic = SimulatedMicroscope(
        config("cells", size_px=192, tilt_x_um=6.0, camera={"noise_model": "none"})
    )
    zs = np.arange(-4.0, 4.01, 0.25)
    left, right = [], []
    for z in zs:
        frame = snap_at(mic, z)
        left.append(sharpness(frame[:, :64]))
        right.append(sharpness(frame[:, -64:]))
    # The thirds' centres lie at ∓1/3 of the field: focus −2 µm (left), +2 µm (right).
    assert zs[int(np.argmax(left))] == pytest.approx(-2.0, abs=0.5)
    assert zs[int(np.argmax(right))] == pytest.approx(2.0, abs=0.5)
    assert mic.true_focus_z_um(x_px=0) == pytest.approx(-3.0 * (1 - 1 / 192))


@pytest.mark.parametrize("specimen", ["beads", "cells", "fibres"])
def test_density_zero_gives_an_empty_field(specimen):
    cam = {"noise_model": "none", "background_photons_per_px_ms": 0.0}
    frame = SimulatedMicroscope(config(specimen, density=0.0, camera=cam)).snap()
    assert np.all(frame == 100)


def test_given_image_is_used_as_the_in_focus_specimen():
    rng = np.random.default_rng(0)
    image = np.kron(rng.random((20, 20)), np.ones((5, 5))) * 3000 + 200  # 100×100, blocky
    mic = SimulatedMicroscope(SimConfig.preset(image, width_px=128, height_px=96, focus_z_um=2.0))
    assert mic.config.specimen.kind == "image"
    frame = snap_at(mic, 2.0)
    assert frame.shape == (96, 128)
    assert sharpness(frame) > 3 * sharpness(snap_at(mic, 5.0))


def test_same_seed_and_calls_give_identical_frames():
    cfg = SimConfig.preset("cells", "fluorescence", debris=True, tilt_um=2.0, width_px=96,
                           height_px=96)

    def run(seed):
        mic = SimulatedMicroscope(cfg, seed=seed)
        frames = []
        for z in (mic.true_focus_z_um(), 3.0, -2.0):
            mic.move_z(z)
            frames.append(mic.snap())
        return mic, frames

    (m1, a), (m2, b), (_, c) = run(7), run(7), run(8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    assert m1.physical_z_um == m2.physical_z_um


def test_default_focus_is_drawn_from_the_seed():
    foci = [SimulatedMicroscope(seed=s).true_focus_z_um() for s in range(6)]
    assert all(-10 <= f <= 10 for f in foci) and len(set(foci)) == 6
    same = SimConfig(specimen=SpecimenConfig(seed=11))
    a, b = SimulatedMicroscope(same, seed=1), SimulatedMicroscope(same, seed=2)
    assert a.true_focus_z_um() == b.true_focus_z_um()


def test_implements_the_microscope_protocol():
    mic = SimulatedMicroscope()
    assert isinstance(mic, Microscope) and mic.name == "sim"
    info = mic.camera_info()
    assert (info.width_px, info.height_px, info.bit_depth) == (256, 256, 12)
    assert info.pixel_size_um == pytest.approx(0.325)
    frame = mic.snap()
    assert frame.shape == (256, 256) and frame.dtype == np.uint16
    assert mic.exposure_ms == 10.0
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError):
            mic.set_exposure_ms(bad)
    mic.close()
    mic.close()
    with pytest.raises(StageError):
        mic.move_z(1.0)
    with pytest.raises(CameraError):
        mic.snap()


def test_roi_crops_the_frame():
    mic = SimulatedMicroscope(config(size_px=128, camera={"noise_model": "none"}))
    full = mic.snap()
    mic.set_roi(10, 20, 64, 32)
    assert mic.snap().shape == (32, 64)
    assert (mic.camera_info().width_px, mic.camera_info().height_px) == (64, 32)
    np.testing.assert_array_equal(mic.snap(), full[20:52, 10:74])
    with pytest.raises(SimConfigError):
        mic.set_roi(100, 0, 64, 32)
    mic.clear_roi()
    assert mic.snap().shape == (128, 128)


def test_large_frames_work():
    mic = SimulatedMicroscope(SimConfig.preset("beads", width_px=2048, height_px=2048))
    frame = mic.snap()
    assert frame.shape == (2048, 2048) and frame.dtype == np.uint16


@pytest.mark.parametrize(
    "make",
    [
        lambda: Optics(na=1.2),
        lambda: Optics(magnification=0),
        lambda: CameraConfig(bit_depth=20),
        lambda: CameraConfig(quantum_efficiency=1.5),
        lambda: CameraConfig(noise_model="shot"),
        lambda: StageConfig(z_min_um=10, z_max_um=-10),
        lambda: StageConfig(start_z_um=500),
        lambda: SpecimenConfig(kind="worms"),
        lambda: SpecimenConfig(density=2.0),
        lambda: SpecimenConfig(kind="image"),
        lambda: SimConfig(modality="phase-contrast"),
        lambda: SimConfig.preset("beads", photons_per_px_ms=-1),
    ],
)
def test_invalid_configuration_is_refused_with_a_clear_error(make):
    with pytest.raises(SimConfigError) as info:
        make()
    assert isinstance(info.value, ValueError) and str(info.value)


def test_preset_sets_the_common_knobs():
    cfg = SimConfig.preset(
        "fibres", "brightfield", photons_per_px_ms=300, read_noise_e=2.5, focus_z_um=4.0,
        debris=True, tilt_um=3.0, drift_um_per_s=0.1, backlash_um=0.5, width_px=64, height_px=48,
        noise_model="gaussian",
    )
    assert cfg.modality == "brightfield" and cfg.specimen.kind == "fibres"
    assert cfg.camera.photons_per_px_ms == 300 and cfg.camera.read_noise_e == 2.5
    assert (cfg.camera.width_px, cfg.camera.height_px) == (64, 48)
    assert cfg.specimen.focus_z_um == 4.0 and cfg.specimen.has_debris
    assert cfg.specimen.tilt_x_um == 3.0 and cfg.specimen.drift_um_per_s == 0.1
    assert cfg.stage.backlash_um == 0.5 and cfg.camera.noise_model == "gaussian"
    assert SimulatedMicroscope(cfg).snap().shape == (48, 64)
