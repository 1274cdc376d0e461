"""The simulated microscope driven by a real in-focus image (skipped without the real data)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from autofocus_drivers.sim import Optics, SimConfig, SimulatedMicroscope, defocus_image

REAL_DIR = Path(
    os.environ.get(
        "AUTOFOCUS_REAL_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real",
    )
)
STACK = "dfnn_microtubules_stack"


def in_focus_plane() -> np.ndarray:
    """The annotated in-focus plane of the DFNN microtubule stack."""
    manifest = REAL_DIR / "manifest.csv"
    if not manifest.is_file():
        pytest.skip(f"real z-stacks not found at {REAL_DIR} (set AUTOFOCUS_REAL_DATA)")
    tifffile = pytest.importorskip("tifffile")
    with manifest.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["stack"] == STACK]
    best = [r for r in rows if r["best_z_um"] and float(r["z_um"]) == float(r["best_z_um"])]
    if not best:
        pytest.skip(f"{STACK} has no annotated in-focus plane in {manifest}")
    return np.asarray(tifffile.imread(REAL_DIR / best[0]["path"]), dtype=np.float64)


def sharpness(frame: np.ndarray) -> float:
    f = frame.astype(np.float64)
    return float((np.diff(f, axis=0) ** 2).mean() + (np.diff(f, axis=1) ** 2).mean())


def test_real_in_focus_plane_as_specimen_gives_a_peaked_focus_curve():
    plane = in_focus_plane()
    cfg = SimConfig.preset(plane, width_px=256, height_px=256, focus_z_um=-4.0, backlash_um=0)
    mic = SimulatedMicroscope(cfg, seed=1)
    dof = mic.optics.depth_of_field_um
    curve = {}
    for k in (-3, -1, 0, 1, 3):
        mic.move_z(-4.0 + k * dof)
        curve[k] = np.mean([sharpness(mic.snap()) for _ in range(2)])
    assert curve[0] > curve[1] > curve[3]
    assert curve[0] > curve[-1] > curve[-3]


def test_defocus_image_on_a_real_plane_keeps_shape_and_flux():
    plane = in_focus_plane()
    blurred = defocus_image(plane, 2.0, Optics())
    assert blurred.shape == plane.shape
    assert blurred.mean() == pytest.approx(plane.mean(), rel=0.01)
    assert sharpness(blurred) < 0.5 * sharpness(plane)
