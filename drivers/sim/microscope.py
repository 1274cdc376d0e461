"""`SimulatedMicroscope`: the `Microscope` protocol over a physically modelled microscope.

One frame is the whole chain, in order:

1. stage      where the carriage physically is (backlash, steps, noise)   µm
2. specimen   where its focus is now (drift with hardware time, tilt,
              the sample surface's height at the XY position)             µm
3. optics     the image at that defocus (`ImageFormation`)                relative intensity
4. light      × photon flux × exposure (× bleaching in fluorescence)      photons/px
5. camera     QE, shot noise, full well, read noise, ADC (`Sensor`)       ADU

Moves and exposures spend time on `clock` (virtual by default). The test-only
extras (`true_focus_z_um`, `physical_z_um`, `commanded_z_um`, `refused_z_um`,
`move_count`, `snap_count`) are ground truth an autofocus engine must never read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from autofocus_drivers.base import CameraInfo, ZLimits
from autofocus_drivers.clock import Clock, RealClock, VirtualClock
from autofocus_drivers.errors import CameraError, DeviceTimeout, LimitError, StageError
from autofocus_drivers.sim.camera import Sensor
from autofocus_drivers.sim.config import SimConfig
from autofocus_drivers.sim.errors import require
from autofocus_drivers.sim.optics import Optics
from autofocus_drivers.sim.render import ImageFormation
from autofocus_drivers.sim.specimen import make_specimen
from autofocus_drivers.sim.stage import StageMechanics


class SimulatedMicroscope:
    """A simulated Z stage + camera looking at a procedural or given specimen.

    `config` everything about the microscope (default `SimConfig()`: beads in
    fluorescence, 20×/0.75 air, 256×256 12-bit camera). `seed` makes the
    specimen, its true focus (drawn within ±10 µm unless configured), the stage
    noise and the camera noise reproducible: the same seed and the same call
    sequence give identical frames. `clock` overrides the clock (default:
    `VirtualClock`, or `RealClock` when `config.real_time`).

    Errors: `LimitError` (move outside limits or non-finite; not moved),
    `StageError`/`DeviceTimeout`/`CameraError` (injected faults, or use after
    `close()`), `SimConfigError` (invalid exposure or ROI).
    """

    name = "sim"

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        seed: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.config = config if config is not None else SimConfig()
        cfg = self.config
        self.optics: Optics = cfg.optics
        self.seed = int(seed)
        root = np.random.SeedSequence(self.seed)
        sample_ss, stage_ss, noise_ss, fault_ss = root.spawn(4)
        if cfg.specimen.seed is not None:
            sample_ss = np.random.SeedSequence(int(cfg.specimen.seed))
        specimen_rng, focus_rng = (np.random.default_rng(s) for s in sample_ss.spawn(2))
        self._fault_rng = np.random.default_rng(fault_ss)

        self.clock: Clock = clock if clock is not None else (
            RealClock() if cfg.real_time else VirtualClock()
        )
        self._t0_s = self.clock.now_s()

        spec = cfg.specimen
        if spec.focus_z_um is not None:
            self._focus_z_um = float(spec.focus_z_um)
        else:
            r = spec.random_focus_range_um
            self._focus_z_um = float(focus_rng.uniform(-r, r))

        cam = cfg.camera
        self._sensor_shape = (int(cam.height_px), int(cam.width_px))
        pixel_um = self.optics.sample_pixel_um
        maps = make_specimen(spec, self._sensor_shape, pixel_um, specimen_rng)
        self._optics_image = ImageFormation(
            maps,
            self.optics,
            cfg.modality,
            pixel_um=pixel_um,
            tilt_x_um=spec.tilt_x_um,
            tilt_y_um=spec.tilt_y_um,
            debris_dz_um=spec.debris_dz_um,
            max_focus_nodes=cfg.max_focus_nodes,
        )
        self._stage = StageMechanics(cfg.stage, np.random.default_rng(stage_ss))
        self._sensor = Sensor(cam, np.random.default_rng(noise_ss))
        self._limits = cfg.stage.limits
        self._xy_um: tuple[float, float] = (float(cfg.xy.start_um[0]), float(cfg.xy.start_um[1]))
        self._exposure_ms = float(cam.exposure_ms)
        self._bleach_exposure_ms = 0.0  # cumulative light dose on the specimen
        self._roi: tuple[int, int, int, int] | None = None
        self._closed = False
        self._light_on = True

        self.commanded_z_um: list[float] = []
        self.refused_z_um: list[float] = []
        self._move_count = 0
        self._snap_count = 0

    # -- the Microscope protocol ----------------------------------------------------------------

    @property
    def depth_of_field_um(self) -> float:
        """The objective's depth of field in µm (from NA, wavelength, immersion index, pixel)."""
        return float(self.config.optics.depth_of_field_um)

    @property
    def z_limits_um(self) -> ZLimits:
        """Configured Z travel limits (µm)."""
        return self._limits

    @property
    def z_um(self) -> float:
        """Reported Z position (µm): the last commanded position that was reached."""
        return self._stage.commanded_um

    def move_z(self, z_um: float) -> None:
        """Move to `z_um` µm and wait (on `clock`) for the travel and settling time.

        Raises `LimitError` without moving for non-finite or out-of-limit
        positions (recorded in `refused_z_um`); `StageError` or `DeviceTimeout`
        for injected faults (the stage does not move); `StageError` after close.
        """
        self._move_z(z_um, settle=True)

    def move_z_waypoint(self, z_um: float) -> None:
        """Move to `z_um` µm and wait for the travel only, not the settling (a waypoint
        of an approach: nothing is imaged there). Same errors as `move_z`."""
        self._move_z(z_um, settle=False)

    def _move_z(self, z_um: float, *, settle: bool) -> None:
        if self._closed:
            raise StageError("the simulated microscope is closed; the stage cannot move")
        z = float(z_um)
        if not math.isfinite(z) or not self._limits.contains(z):
            self.refused_z_um.append(z)
            raise LimitError(
                f"Z position {z} µm is outside the configured limits "
                f"[{self._limits.min_um}, {self._limits.max_um}] µm; the stage was not moved"
            )
        self._move_count += 1
        self.commanded_z_um.append(z)
        fault = self.config.faults.move_fault(self._move_count)
        if fault == "error":
            raise StageError(f"simulated stage fault on move {self._move_count} (to {z} µm)")
        if fault == "timeout":
            self.clock.sleep_s(self.config.faults.timeout_s)
            raise DeviceTimeout(
                f"simulated stage did not answer within {self.config.faults.timeout_s} s "
                f"on move {self._move_count} (to {z} µm)"
            )
        self.clock.sleep_s(self._stage.move(z, settle=settle))

    def snap(self) -> np.ndarray:
        """Expose for `exposure_ms` (plus readout) and return one frame (H, W) in ADU.

        The dtype is uint8 for bit depths ≤ 8, else uint16. Raises `CameraError`
        for an injected camera fault or after close; injected blank/garbage
        frames are returned, not raised.
        """
        cam = self.config.camera
        return self._frame((self._exposure_ms + cam.readout_ms) / 1000.0, None)

    def sweep_z(
        self, z_um: Sequence[float], *, max_smear_um: float | None = None
    ) -> list[tuple[float, np.ndarray]]:
        """Stream one frame centred at each ascending position of `z_um` (µm) while Z moves.

        A sequenceable stage (the `piezo` profile) steps to each position on the
        camera's trigger: no smear, a frame every max(frame interval, exposure +
        step + settle). Otherwise the stage runs at constant speed, no faster than
        its own speed, than the camera's frame rate allows for the closest two
        positions, or than `max_smear_um` of travel per exposure; each frame
        integrates the image over the Z travelled during its exposure (motion
        blur). The stage must stand at `sweep_start_um(z_um)` or below, approached
        from below. Returns [(z_um, frame)] in order. Raises `LimitError` without
        moving when a position (or the travel past the last) leaves the limits,
        `ValueError` for positions not strictly ascending, and the camera's and
        stage's injected faults as `snap`/`move_z` do.
        """
        from autofocus_drivers.sim.sweep import run_sweep

        return run_sweep(self, [float(z) for z in z_um], max_smear_um)

    @property
    def sweep_sequenced(self) -> bool:
        """True when sweeps are hardware-sequenced (a stage that steps on the camera's
        trigger, the `piezo` profile), False for constant-speed sweeps."""
        return bool(self.config.stage.sequenceable)

    def sweep_start_um(self, z_um: Sequence[float], *, max_smear_um: float | None = None) -> float:
        """Where the stage must stand (approached from below) before `sweep_z(z_um)`: the
        run-up half an exposure's travel below the first position (µm)."""
        from autofocus_drivers.sim.sweep import sweep_plan

        zs = [float(z) for z in z_um]
        return zs[0] - sweep_plan(self, zs, max_smear_um)[1]

    def _frame(self, hold_s: float, z_path_um: Sequence[float] | None) -> np.ndarray:
        """One exposure: faults, `hold_s` on the clock, light and dose; `z_path_um` the
        physical positions the stage passed during the exposure (None: standing still)."""
        if self._closed:
            raise CameraError("the simulated microscope is closed; the camera cannot expose")
        self._snap_count += 1
        fault = self.config.faults.snap_fault(self._snap_count)
        if fault == "error":
            raise CameraError(f"simulated camera fault on snap {self._snap_count}")
        t_start_s = self.clock.now_s()
        self.clock.sleep_s(hold_s)
        shape = self._frame_shape()
        if fault == "blank":
            return self._sensor.blank_frame(shape)
        if not self._light_on:  # shutter closed: dark frame, no bleaching
            return self._sensor.read_out(np.zeros(shape, dtype=np.float32))
        dose_before_ms = self._bleach_exposure_ms
        self._bleach_exposure_ms += self._exposure_ms
        if fault == "garbage":
            return self._sensor.garbage_frame(shape, self._fault_rng)
        return self._expose(t_start_s, dose_before_ms, z_path_um)

    @property
    def exposure_ms(self) -> float:
        """Current exposure time in ms."""
        return self._exposure_ms

    def set_exposure_ms(self, exposure_ms: float) -> None:
        """Set the exposure time (ms, finite and > 0; else `SimConfigError`, a ValueError)."""
        value = float(exposure_ms)
        require(math.isfinite(value) and value > 0, f"exposure_ms must be > 0, got {exposure_ms}")
        self._exposure_ms = value

    def camera_info(self) -> CameraInfo:
        """Frame size (current ROI), bit depth and sample-plane pixel size (µm)."""
        h, w = self._frame_shape()
        return CameraInfo(
            width_px=w,
            height_px=h,
            bit_depth=int(self.config.camera.bit_depth),
            pixel_size_um=self.optics.sample_pixel_um,
            name="sim-camera",
        )

    def close(self) -> None:
        """Release the simulated hardware; later moves/snaps raise. Idempotent."""
        self._closed = True

    # -- optional capability: XY stage -----------------------------------------------------------

    has_xy_stage = True

    @property
    def xy_um(self) -> tuple[float, float]:
        """Current XY stage position (x_um, y_um)."""
        return self._xy_um

    def move_xy(self, x_um: float, y_um: float) -> None:
        """Move the XY stage to (x_um, y_um) µm and wait (on `clock`) for travel and settling.

        Raises `LimitError` without moving outside the XY travel (or non-finite), and
        `StageError` after close. The sample's focus follows `config.surface` there.
        """
        if self._closed:
            raise StageError("the simulated microscope is closed; the XY stage cannot move")
        target = (float(x_um), float(y_um))
        xy = self.config.xy
        if not xy.contains(*target):
            raise LimitError(
                f"XY position ({target[0]}, {target[1]}) µm is outside the XY travel "
                f"x [{xy.x_min_um}, {xy.x_max_um}], y [{xy.y_min_um}, {xy.y_max_um}] µm; "
                "the stage was not moved"
            )
        self.clock.sleep_s(xy.move_time_s(self._xy_um, target))
        self._xy_um = target

    # -- optional capability: shutter --------------------------------------------------------------

    @property
    def light_on(self) -> bool:
        """True while the light path is open (the default; a shutter device may close it)."""
        return self._light_on

    def set_light(self, on: bool) -> None:
        """Open (True) or close (False) the light path; closed, frames hold only camera noise."""
        self._light_on = bool(on)

    # -- optional capability: region of interest ------------------------------------------------

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        """Read out only the sensor region x..x+width, y..y+height (pixels). `SimConfigError`
        when it does not fit on the sensor."""
        sh, sw = self._sensor_shape
        x, y, width, height = int(x), int(y), int(width), int(height)
        require(
            0 <= x and 0 <= y and width >= 1 and height >= 1 and x + width <= sw
            and y + height <= sh,
            f"ROI x={x}, y={y}, {width}×{height} px does not fit the {sw}×{sh} px sensor",
        )
        self._roi = (x, y, width, height)

    def clear_roi(self) -> None:
        """Read out the full sensor again."""
        self._roi = None

    # -- ground truth for tests (never for the engine) ------------------------------------------

    def true_focus_z_um(
        self,
        x_px: float | None = None,
        y_px: float | None = None,
        *,
        xy_um: tuple[float, float] | None = None,
    ) -> float:
        """Stage Z (µm) that puts the specimen in focus now (drift included).

        At the field centre by default, or at sensor pixel (x_px, y_px) of a tilted specimen;
        at the XY stage's current position on the sample surface, or at stage position
        `xy_um` without moving there.
        """
        spec = self.config.specimen
        elapsed_s = self.clock.now_s() - self._t0_s
        z = self._focus_z_um + spec.drift_um_per_s * elapsed_s + self._surface_um(xy_um)
        h, w = self._sensor_shape
        if x_px is not None:
            z += spec.tilt_x_um * ((x_px + 0.5) / w - 0.5)
        if y_px is not None:
            z += spec.tilt_y_um * ((y_px + 0.5) / h - 0.5)
        return z

    @property
    def physical_z_um(self) -> float:
        """Where the stage carriage really is (µm), backlash and noise included."""
        return self._stage.physical_um

    @property
    def move_count(self) -> int:
        """Number of accepted `move_z` calls (limit-refused calls are not counted)."""
        return self._move_count

    @property
    def snap_count(self) -> int:
        """Number of `snap` calls, including faulted ones."""
        return self._snap_count

    @property
    def cumulative_exposure_ms(self) -> float:
        """Total light dose delivered to the specimen so far (ms of exposure)."""
        return self._bleach_exposure_ms

    def render_relative(self, dz_um: float) -> np.ndarray:
        """The noise-free optical image (relative intensity) at `dz_um` from focus (tests)."""
        return self._optics_image.render(dz_um)

    # -- internals ------------------------------------------------------------------------------

    def _surface_um(self, xy_um: tuple[float, float] | None = None) -> float:
        return float(self.config.surface.height_um(*(xy_um or self._xy_um)))

    def _frame_shape(self) -> tuple[int, int]:
        if self._roi is None:
            return self._sensor_shape
        return self._roi[3], self._roi[2]

    def _expose(self, t_start_s: float, dose_before_ms: float,
                z_path_um: Sequence[float] | None = None) -> np.ndarray:
        cam = self.config.camera
        spec = self.config.specimen
        # Stage and specimen: defocus of the field centre at the start of the exposure.
        focus_z_um = self._focus_z_um + spec.drift_um_per_s * (t_start_s - self._t0_s)
        focus_z_um += self._surface_um()
        dz_um = self._stage.physical_um - focus_z_um
        # Optics: relative intensity of the image on the sensor (averaged over the Z the
        # stage travelled during the exposure when it was moving: motion blur).
        if z_path_um:
            relative = np.mean([self._optics_image.render(z - focus_z_um) for z in z_path_um],
                               axis=0).astype(np.float32)
        else:
            relative = self._optics_image.render(dz_um)
        if self._roi is not None:
            x, y, w, h = self._roi
            relative = relative[y : y + h, x : x + w]
        # Light: photon flux integrated over the exposure; fluorophores bleach with dose.
        signal_flux = cam.signal_photons_per_px_ms(self.config.modality)
        if self.config.modality == "fluorescence" and cam.bleach_per_ms > 0:
            signal_flux *= math.exp(-cam.bleach_per_ms * dose_before_ms)
        photons = relative * np.float32(signal_flux * self._exposure_ms)
        if cam.background_photons_per_px_ms > 0:
            photons += np.float32(cam.background_photons_per_px_ms * self._exposure_ms)
        # Camera: photons → electrons → ADU.
        return self._sensor.read_out(photons)
