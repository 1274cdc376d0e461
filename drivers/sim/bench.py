"""Time the simulated microscope per frame: `python -m autofocus_drivers.sim.bench [size_px ...]`.

Prints, per frame size, specimen and modality, the construction time and the
time of one `snap()` (optics + camera) and of the optics alone, in ms (best of
several frames, which is robust to other processes sharing the CPU). A
measurement tool, not a test.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from autofocus_drivers.sim.config import SimConfig
from autofocus_drivers.sim.microscope import SimulatedMicroscope


def _best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * min(times)


def bench(size_px: int, repeats: int) -> None:
    """Print timings for frames of `size_px`² for the main specimen/modality/noise variants."""
    for specimen, modality, extra in (
        ("beads", "fluorescence", {}),
        ("cells", "fluorescence", {}),
        ("cells", "brightfield", {}),
        ("cells", "fluorescence", {"debris": True}),
        ("cells", "fluorescence", {"tilt_um": 5.0}),
    ):
        cfg = SimConfig.preset(specimen, modality, width_px=size_px, height_px=size_px, **extra)
        row = [f"{size_px:5d}² {specimen:6s} {modality:12s} {str(extra):17s}"]
        for noise in ("poisson", "gaussian"):
            cam = dataclasses.replace(cfg.camera, noise_model=noise)
            t0 = time.perf_counter()
            mic = SimulatedMicroscope(dataclasses.replace(cfg, camera=cam), seed=0)
            init_ms = 1000.0 * (time.perf_counter() - t0)
            mic.move_z(mic.true_focus_z_um())
            if noise == "poisson":
                optics_ms = _best_ms(lambda m=mic: m.render_relative(0.7), repeats)
                row += [f"init {init_ms:7.1f}", f"optics {optics_ms:6.2f}"]
            row.append(f"snap[{noise}] {_best_ms(mic.snap, repeats):7.2f}")
        print("  ".join(row) + "  (ms)")


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [256, 2048]
    for size in sizes:
        bench(size, repeats=50 if size <= 512 else 5)
