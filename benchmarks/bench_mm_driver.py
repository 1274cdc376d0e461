"""Driver overhead per frame on DemoCamera: time in our code vs time inside MMCore calls.

A headless MMCore (pycromanager, Python backend, mm-test-adapters demo configuration)
is driven through `MicroManagerMicroscope` for N frames of `move_z` + `snap`. Every core
call goes through a timing proxy, so the wall time splits into time inside MMCore and
time in our code (the proxy's own bookkeeping is charged to our code: the ratio is an
upper bound). A bare loop of the same MMCore calls without the driver is timed too, as
a cross-check of the difference.

    python benchmarks/bench_mm_driver.py --frames 300 --exposure-ms 1
    python benchmarks/bench_mm_driver.py --beads --json   # DemoCamera bead (focus) mode
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from typing import Any

from autofocus_drivers import ZLimits
from autofocus_drivers.micromanager import (
    MicroManagerMicroscope,
    demo_adapter_dir,
    demo_config_file,
    write_democamera_focus_config,
)


class TimingCore:
    """Wraps an MMCore; every method call adds its duration to `core_s` and counts in `calls`."""

    def __init__(self, core: Any) -> None:
        self._core = core
        self.core_s = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._core, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.core_s += time.perf_counter() - start
                self.calls += 1

        return timed

    def reset(self) -> None:
        self.core_s = 0.0
        self.calls = 0


def _z_schedule(frames: int) -> list[float]:
    # A sweep like an autofocus coarse pass: distinct positions, so every move is real.
    return [-20.0 + 40.0 * i / max(frames - 1, 1) for i in range(frames)]


def run(frames: int, exposure_ms: float, beads: bool, repeats: int) -> dict[str, Any]:
    """Time `repeats` rounds of `frames` frames; returns medians in µs per frame."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_democamera_focus_config(tmp) if beads else demo_config_file()
        owner = MicroManagerMicroscope.start_headless(
            demo_adapter_dir(), cfg, z_limits_um=ZLimits(-50.0, 50.0)
        )
    try:
        raw = owner.core
        raw.set_exposure("Camera", exposure_ms)
        proxy = TimingCore(raw)
        mic = MicroManagerMicroscope(proxy, z_limits_um=ZLimits(-50.0, 50.0))
        zs = _z_schedule(frames)
        for z in zs[:10]:  # warm-up: first snaps allocate buffers
            mic.move_z(z)
            mic.snap()

        driver_total, driver_core, bare_total = [], [], []
        for _ in range(repeats):
            proxy.reset()
            start = time.perf_counter()
            for z in zs:
                mic.move_z(z)
                mic.snap()
            driver_total.append(time.perf_counter() - start)
            driver_core.append(proxy.core_s)
            calls_per_frame = proxy.calls / frames

            start = time.perf_counter()
            for z in zs:
                raw.set_position("Z", z)
                raw.wait_for_device("Z")
                raw.snap_image()
                raw.get_image()
            bare_total.append(time.perf_counter() - start)

        total_s = statistics.median(driver_total)
        core_s = statistics.median(driver_core)
        ours_s = total_s - core_s
        bare_s = statistics.median(bare_total)
        us = 1e6 / frames
        return {
            "frames": frames,
            "repeats": repeats,
            "exposure_ms": exposure_ms,
            "democamera_mode": "Fluorescent Beads" if beads else "Artificial Waves",
            "core_calls_per_frame": calls_per_frame,
            "per_frame_total_us": total_s * us,
            "per_frame_in_mmcore_us": core_s * us,
            "per_frame_in_our_code_us": ours_s * us,
            "overhead_ratio_ours_to_mmcore": ours_s / core_s,
            "bare_loop_per_frame_us": bare_s * us,
            "driver_minus_bare_per_frame_us": (total_s - bare_s) * us,
        }
    finally:
        owner.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--exposure-ms", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beads", action="store_true", help="DemoCamera bead (focus) mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.frames, args.exposure_ms, args.beads, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            shown = f"{value:.4g}" if isinstance(value, float) else value
            print(f"{key:34s} {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
