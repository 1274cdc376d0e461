"""A library prints nothing unless the application configures logging (issue 19, item 1).

A user's pymmcore-plus acquisition (engine set with `core.mda.set_engine`, 3 positions ×
3 time points, autofocus at every position) runs in a fresh interpreter, as a user script
does; pymmcore-plus' own logger is quietened so that anything left on stdout/stderr is ours.
Once the application configures logging (stdlib `logging.basicConfig` or our
`configure_logging`), our warnings do appear.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.mm

SCRIPT = textwrap.dedent(
    """
    import sys
    import useq
    from pymmcore_plus import configure_logging as pmm_logging
    pmm_logging(stderr_level="CRITICAL")  # pymmcore-plus' own lines are not ours
    from autofocus_drivers.mm_sim_devices import simulated_unicore
    from autofocus_drivers.sim import SampleSurface, SimConfig
    from autofocus.acquire.mda import AutofocusEngine
    from autofocus.search.focus import FocusRequest

    MODE = sys.argv[1]
    if MODE == "stdlib":
        import logging
        logging.basicConfig(level=logging.WARNING)
    elif MODE == "ours":
        from autofocus.logging import configure_logging
        configure_logging("console", "info")
    def democamera():
        # Real MMCore, DemoCamera beads (true focus Z = 0): 3 positions x 3 time points.
        import tempfile
        from pathlib import Path
        from autofocus_drivers.base import ZLimits
        from autofocus_drivers.micromanager import (
            demo_adapter_dir, write_democamera_focus_config,
        )
        from pymmcore_plus import CMMCorePlus
        core = CMMCorePlus()
        core.setDeviceAdapterSearchPaths([str(demo_adapter_dir())])
        core.loadSystemConfiguration(
            str(write_democamera_focus_config(Path(tempfile.mkdtemp()) / "beads.cfg"))
        )
        core.mda.set_engine(AutofocusEngine(
            core, z_limits_um=ZLimits(-100.0, 100.0),
            request=FocusRequest(range_um=60.0, tolerance_um=0.5),
        ))
        frames = []
        core.mda.events.frameReady.connect(lambda img, ev, meta: frames.append(meta))
        core.mda.run(useq.MDASequence(
            stage_positions=[(0.0, 0.0, 12.0), (500.0, 0.0, -12.0), (500.0, 500.0, 12.0)],
            time_plan={"interval": 0, "loops": 3}, axis_order="tpcz",
            autofocus_plan=useq.AxesBasedAF(axes=("p",)),
        ))
        assert len(frames) == 9, len(frames)
        assert all(m["autofocus"] is not None for m in frames)

    def main():
        if MODE == "democamera":
            return democamera()
        core, sim = simulated_unicore(
            SimConfig.preset("beads", focus_z_um=0.0, surface=SampleSurface.plate()), seed=4
        )
        positions = []
        for x, y in [(10_000.0, 10_000.0), (60_000.0, 40_000.0), (100_000.0, 65_000.0)]:
            sim.move_xy(x, y)
            positions.append(useq.Position(x=x, y=y, z=sim.true_focus_z_um() + 8.0))
        # Position 1 is 45 µm off: outside the ±15 µm search, so its autofocus fails and
        # the engine warns (retries, kept correction): warnings, not just info lines.
        positions[1] = positions[1].model_copy(update={"z": positions[1].z + 37.0})
        core.mda.set_engine(AutofocusEngine(
            core, z_limits_um=sim.z_limits_um, on_failure="keep",
            request=FocusRequest(range_um=30.0, tolerance_um=0.5),
            retry_widen=1.01,  # retries widen the range: keep position 1 out of reach
        ))
        frames = []
        core.mda.events.frameReady.connect(lambda img, ev, meta: frames.append(meta))
        core.mda.run(useq.MDASequence(
            stage_positions=positions, time_plan={"interval": 0, "loops": 3},
            axis_order="tpcz", autofocus_plan=useq.AxesBasedAF(axes=("p",)),
        ))
        assert len(frames) == 9, len(frames)
        assert sum(m["autofocus"]["source"] == "kept" for m in frames) == 3

    main()
    # MMCore collected in this thread, not by a worker at interpreter shutdown (aborts)
    import gc
    gc.collect()
    """
)


def _run(mode: str) -> subprocess.CompletedProcess:
    pytest.importorskip("useq")
    pytest.importorskip("pymmcore_plus")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
        timeout=300, env=env, cwd=ROOT,
    )


@pytest.mark.parametrize("core", ["none", "democamera"])
def test_acquisition_prints_nothing_of_ours_without_logging_configured(core):
    proc = _run(core)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""


def test_our_warnings_appear_once_the_application_configures_logging():
    stdlib = _run("stdlib")
    assert stdlib.returncode == 0, stdlib.stderr
    assert stdlib.stdout == ""
    assert "mda.autofocus_failed" in stdlib.stderr
    assert "search.start" not in stdlib.stderr  # info stays below the app's WARNING level
    ours = _run("ours")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == ""
    assert "mda.autofocus_failed" in ours.stderr
