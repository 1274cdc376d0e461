"""A pycromanager acquisition that asks the autofocus daemon to focus at every new position.

    python examples/pycromanager_hook.py            # summary
    python examples/pycromanager_hook.py --json     # per image: position, z, the focus job

Everything runs in this process, for real: Micro-Manager's MMCore is started headless
(pycromanager, Python backend) with the DemoCamera/DStage adapters of mm-test-adapters
in their Z-dependent bead mode (true focus at Z = 0 µm); the autofocus daemon (uvicorn
on 127.0.0.1, driver `micromanager`) drives that same core; a pycromanager
`Acquisition` over three XY positions and two time points calls `autofocus_hook`,
which asks the daemon over HTTP (`POST /v1/focus?wait=`) whenever the position changes.
The stage starts 20 µm away from focus.

On a real microscope run the daemon on its own (`autofocus serve --driver micromanager
--mm-port 4827 ...`) attached to Micro-Manager, and keep only the `Acquisition` part.
Needs the `mm` extra.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
from autofocus_drivers.micromanager import demo_adapter_dir, write_democamera_focus_config

from autofocus.acquire.pycromanager_hook import autofocus_hook
from autofocus.client import AutofocusClient
from autofocus.service.api.server import BackgroundServer
from autofocus.settings import load_settings

START_Z_UM = 20.0
DOF_UM = 2.0  # DemoCamera beads: BeadBlurRate 0.5 px/µm; see docs/micromanager.md


def run(workdir: Path) -> dict[str, Any]:
    config = write_democamera_focus_config(workdir / "beads.cfg")
    settings = load_settings(
        None,
        driver="micromanager",
        z_min_um=-100.0,
        z_max_um=100.0,
        database_path=workdir / "jobs.db",
        mm={"headless_adapter_dir": str(demo_adapter_dir()), "config_file": str(config)},
    )
    images: list[dict[str, Any]] = []
    with BackgroundServer(settings) as server, AutofocusClient(server.url) as af:
        from pycromanager import Acquisition, Core, multi_d_acquisition_events

        core = Core()  # the daemon's headless core: the same MMCore
        core.set_position("Z", START_Z_UM)
        # Focus at every position and every time point (like AxesBasedAF(axes=("p", "t"))).
        # The Python backend cannot take event tags: the result goes into each image's
        # metadata through hook.annotate instead (with the Java backend, tags work too).
        hook = autofocus_hook(af, axes=("position", "time"), on_failure="skip",
                              write_tags=False, range_um=60.0, tolerance_um=0.25)

        def on_image(image: Any, metadata: dict[str, Any]) -> Any:
            image, metadata = hook.annotate(image, metadata)
            images.append({"axes": dict(metadata["Axes"]), "z_um": core.get_position("Z"),
                           "autofocus": metadata["autofocus"]})
            return image, metadata

        events = multi_d_acquisition_events(
            xy_positions=[[0.0, 0.0], [500.0, 0.0], [500.0, 500.0]], num_time_points=2
        )
        with Acquisition(directory=str(workdir), name="hook", show_display=False,
                         post_hardware_hook_fn=hook, image_process_fn=on_image) as acq:
            acq.acquire(events)
        results = list(hook.results)
    return {
        "start_z_um": START_Z_UM,
        "true_focus_z_um": 0.0,
        "dof_um": DOF_UM,
        "autofocus": results,
        "images": images,
        "all_within_dof_4": bool(images) and all(abs(i["z_um"]) <= DOF_UM / 4 for i in images),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    with tempfile.TemporaryDirectory() as tmp:
        report = run(Path(tmp))
    gc.collect()  # drop MMCore objects in this thread, before interpreter shutdown
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{len(report['autofocus'])} autofocus jobs, {len(report['images'])} images")
        for image in report["images"]:
            print(f"  {image['axes']}: z = {image['z_um']:+.3f} µm (true focus 0)")
    return 0 if report["all_within_dof_4"] else 1


if __name__ == "__main__":
    code = main()
    # The report is out: leave without the interpreter's finalization, which MMCore's C++
    # threads (headless pycromanager core) can abort now and then.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
