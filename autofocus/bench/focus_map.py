"""Focus-map benchmark: a 96-well plate, 3 × 3 fields per well, tilted and bowed.

Two ways to image every field in focus, on the same simulated microscope (our
physics: backlash, settle, noise; hardware time on its virtual clock):

- **focus map**: autofocus at a few sample fields spread over the plate (farthest-
  point sampling of the well centres), fit a surface (`FocusMap`, model chosen by
  leave-one-out residual, outliers dropped), then visit every field, move Z to the
  predicted focus and take its image;
- **autofocus at every field**: move to each field, autofocus, take the image.

Reported: the fraction of fields autofocused, the error of the predicted focus at
every field that was *not* autofocused (|predicted − true|, in µm and in units of the
objective's depth of field), and the hardware time of both ways side by side. The
every-field way is measured on `every_field_sample` fields spread over the plate and
scaled to all fields (`--every-field-sample 0` measures all of them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from autofocus.search.focus import FocusRequest, focus
from autofocus.search.maps import build_focus_map, spread_positions

ROWS = 8
COLUMNS = 12
WELL_PITCH_UM = 9_000.0
A1_CENTER_UM = (14_380.0, 11_240.0)  # SBS/ANSI 96-well footprint, from the plate corner
PLATE_SIZE_UM = (127_760.0, 85_480.0)


@dataclass(frozen=True)
class PlateConfig:
    """The plate and its imperfections, µm: tilt left→right, bow centre→corner, waviness."""

    tilt_um: float = 20.0
    bow_um: float = 8.0
    waviness_um: float = 0.3
    field_spacing_um: float = 600.0
    fields_per_side: int = 3
    seed: int = 0


def plate_fields(cfg: PlateConfig) -> list[tuple[str, float, float]]:
    """Every field (well name, x_um, y_um), serpentine well order, fields row by row."""
    fields = []
    offsets = (np.arange(cfg.fields_per_side) - (cfg.fields_per_side - 1) / 2) * (
        cfg.field_spacing_um
    )
    for r in range(ROWS):
        cols = range(COLUMNS) if r % 2 == 0 else range(COLUMNS - 1, -1, -1)
        for c in cols:
            cx = A1_CENTER_UM[0] + c * WELL_PITCH_UM
            cy = A1_CENTER_UM[1] + r * WELL_PITCH_UM
            name = f"{'ABCDEFGH'[r]}{c + 1}"
            for dy in offsets:
                for dx in offsets:
                    fields.append((name, float(cx + dx), float(cy + dy)))
    return fields


def make_microscope(cfg: PlateConfig, seed: int) -> Any:
    """The simulated microscope over the plate (beads, fluorescence, Gaussian noise)."""
    from autofocus_drivers.sim import SampleSurface, SimConfig, SimulatedMicroscope

    surface = SampleSurface.plate(
        width_um=PLATE_SIZE_UM[0], height_um=PLATE_SIZE_UM[1], tilt_um=cfg.tilt_um,
        bow_um=cfg.bow_um, waviness_um=cfg.waviness_um, seed=cfg.seed,
    )
    config = SimConfig.preset(
        "beads", focus_z_um=0.0, surface=surface, noise_model="gaussian",
        width_px=128, height_px=128,
    )
    return SimulatedMicroscope(config, seed=seed)


def run_focus_map_bench(
    *,
    samples: int = 24,
    every_field_sample: int = 0,
    plate: PlateConfig | None = None,
    kind: str = "auto",
    range_um: float = 60.0,
    range_after_map_um: float = 20.0,
    tolerance_um: float = 0.25,
    seed: int = 0,
) -> dict[str, Any]:
    """Run both ways on the plate and return the report (see the module docstring)."""
    cfg = plate or PlateConfig()
    fields = plate_fields(cfg)
    n_fields = len(fields)
    if not 3 <= samples <= n_fields:
        raise ValueError(f"samples must be between 3 and {n_fields}, got {samples}")
    xy = [(x, y) for _, x, y in fields]
    request = FocusRequest(range_um=range_um, tolerance_um=tolerance_um)
    wall_t0 = time.perf_counter()

    # --- focus map: autofocus at spread-out sample fields, then image every field -----------
    mic = make_microscope(cfg, seed)
    dof_um = mic.optics.depth_of_field_um
    # Sample among the well-centre fields, so a sample is a typical field of its well.
    centre = (cfg.fields_per_side * cfg.fields_per_side) // 2
    centres = list(range(centre, n_fields, cfg.fields_per_side**2))
    chosen = [centres[i] for i in spread_positions([xy[i] for i in centres], samples)]
    chosen = _serpentine(chosen, xy)
    start_s = mic.clock.now_s()
    fmap = build_focus_map(
        mic, [xy[i] for i in chosen], request, kind=kind, range_after_map_um=range_after_map_um
    )
    map_build_s = mic.clock.now_s() - start_s
    sampled = set(chosen)
    errors_um: list[float] = []
    image_t0 = mic.clock.now_s()
    for i, (x, y) in enumerate(xy):
        mic.move_xy(x, y)
        z = mic.z_limits_um.clamp(fmap.predict_z_um(x, y))
        _approach(mic, z, request.overshoot_um)
        mic.snap()
        if i not in sampled:
            errors_um.append(abs(mic.physical_z_um - mic.true_focus_z_um()))
    imaging_s = mic.clock.now_s() - image_t0
    map_total_s = mic.clock.now_s() - start_s
    err = np.asarray(errors_um)
    mic.close()

    # --- autofocus at every field (measured on a spread subset, scaled to all fields) ------
    mic2 = make_microscope(cfg, seed)
    subset = list(range(n_fields)) if every_field_sample <= 0 else _serpentine(
        spread_positions(xy, min(every_field_sample, n_fields)), xy
    )
    af_errors: list[float] = []
    af_success = 0
    t0 = mic2.clock.now_s()
    previous_z = None
    for i in subset:
        x, y = xy[i]
        mic2.move_xy(x, y)
        if previous_z is not None:  # start each search where the last field was in focus
            _approach(mic2, previous_z, request.overshoot_um)
        result = focus(mic2, request)
        if result.success:
            af_success += 1
            previous_z = result.best_z_um
            af_errors.append(abs(mic2.physical_z_um - mic2.true_focus_z_um()))
        mic2.snap()
    every_measured_s = mic2.clock.now_s() - t0
    every_field_s = every_measured_s * n_fields / len(subset)
    mic2.close()

    return {
        "plate": {
            "wells": ROWS * COLUMNS,
            "fields_per_well": cfg.fields_per_side**2,
            "tilt_um": cfg.tilt_um,
            "bow_um": cfg.bow_um,
            "waviness_um": cfg.waviness_um,
        },
        "n_fields": n_fields,
        "dof_um": dof_um,
        "n_autofocused": len(chosen),
        "fraction_autofocused": len(chosen) / n_fields,
        "map": fmap.to_dict() | {"points": None},
        "map_points": [p.to_dict() for p in fmap.points],
        "n_predicted": int(err.size),
        "p50_error_um": float(np.percentile(err, 50)),
        "p90_error_um": float(np.percentile(err, 90)),
        "max_error_um": float(err.max()),
        "p90_error_dof": float(np.percentile(err, 90) / dof_um),
        "within_dof_4": float(np.mean(err <= dof_um / 4)),
        "hardware_s": map_total_s,
        "hardware_s_map_build": map_build_s,
        "hardware_s_imaging": imaging_s,
        "hardware_s_every_field": every_field_s,
        "every_field_measured_fields": len(subset),
        "every_field_success": af_success / len(subset),
        "every_field_p90_error_um": (
            float(np.percentile(af_errors, 90)) if af_errors else math.nan
        ),
        "speedup": every_field_s / map_total_s if map_total_s > 0 else math.nan,
        "wall_s": time.perf_counter() - wall_t0,
    }


def _approach(mic: Any, z_um: float, overshoot_um: float) -> None:
    """Move to `z_um` from below (as the engine does), so backlash lands the same way."""
    limits = mic.z_limits_um
    below = limits.clamp(z_um - overshoot_um)
    if mic.z_um > below:
        mic.move_z(below)
    mic.move_z(limits.clamp(z_um))


def _serpentine(indices: list[int], xy: list[tuple[float, float]]) -> list[int]:
    """`indices` in a short stage path: rows of similar y, alternating x direction."""
    ys = sorted({round(xy[i][1], -3) for i in indices})
    out = []
    for k, y in enumerate(ys):
        row = sorted((i for i in indices if round(xy[i][1], -3) == y), key=lambda i: xy[i][0])
        out.extend(row if k % 2 == 0 else row[::-1])
    return out


