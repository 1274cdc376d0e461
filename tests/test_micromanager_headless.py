"""Starting and stopping headless Micro-Manager (pycromanager, Python backend) for real.

Kept apart from test_micromanager.py: pycromanager runs one in-process core at a time,
and these tests start and stop their own.
"""

from __future__ import annotations

import pytest
from autofocus_drivers import ConfigurationError, MicroscopeError, ZLimits

pytestmark = pytest.mark.mm

LIMITS = ZLimits(-50.0, 50.0)


@pytest.fixture(autouse=True)
def _needs_mm():
    try:
        import mm_test_adapters  # noqa: F401
        import pycromanager  # noqa: F401
    except Exception as exc:
        pytest.skip(f"Micro-Manager extra not importable ({exc}); pip install '.[mm]'")
    from mmpycorex import is_pymmcore_active

    if is_pymmcore_active():
        pytest.skip("another test left a headless Micro-Manager core running")
    yield
    assert not is_pymmcore_active(), "the test leaked a headless core"


def test_close_stops_headless_and_a_restart_works():
    from autofocus_drivers.micromanager import DEMO_ADAPTERS, open_micromanager
    from mmpycorex import is_pymmcore_active

    for _ in range(2):  # pycromanager is not re-entrant by itself; the driver makes it so
        mic = open_micromanager(headless_adapter_dir=DEMO_ADAPTERS, z_limits_um=LIMITS)
        assert is_pymmcore_active()
        mic.move_z(1.5)
        assert mic.snap().shape == (512, 512)
        mic.close()
        assert not is_pymmcore_active()
        mic.close()  # idempotent
        with pytest.raises(MicroscopeError, match="closed"):
            mic.snap()


def test_context_manager_closes():
    from autofocus_drivers.micromanager import (
        MicroManagerMicroscope,
        demo_adapter_dir,
        demo_config_file,
    )
    from mmpycorex import is_pymmcore_active

    with MicroManagerMicroscope.start_headless(
        demo_adapter_dir(), demo_config_file(), z_limits_um=LIMITS, timeout_s=2.0
    ) as mic:
        assert mic.core.get_timeout_ms() == 2000
    assert not is_pymmcore_active()


def test_bad_config_is_a_configuration_error_and_leaves_nothing_running(tmp_path):
    from autofocus_drivers.micromanager import MicroManagerMicroscope, demo_adapter_dir

    bad = tmp_path / "broken.cfg"
    bad.write_text("Device,Camera,NoSuchAdapter,DCam\nProperty,Core,Initialize,1\n")
    with pytest.raises(ConfigurationError, match="could not load broken.cfg"):
        MicroManagerMicroscope.start_headless(demo_adapter_dir(), bad, z_limits_um=LIMITS)
    with pytest.raises(ConfigurationError, match="not found"):
        MicroManagerMicroscope.start_headless(
            demo_adapter_dir(), tmp_path / "missing.cfg", z_limits_um=LIMITS
        )


def test_wrong_device_name_at_start_stops_the_core_again():
    from autofocus_drivers.micromanager import DEMO_ADAPTERS, open_micromanager

    with pytest.raises(ConfigurationError, match=r'focus device "Zeta" is not loaded'):
        open_micromanager(
            headless_adapter_dir=DEMO_ADAPTERS, focus_device="Zeta", z_limits_um=LIMITS
        )


def test_democamera_dstage_that_ignores_its_sequence_is_caught():
    """DStage with UseSequences=Yes reports sequencing but does not follow the sequence
    (issue 22): the sweep notices the stage never reached its last position, redoes the
    sweep stop-and-go and never trusts the stage with a sequence again."""
    from autofocus_drivers.micromanager import DEMO_ADAPTERS, open_micromanager

    mic = open_micromanager(headless_adapter_dir=DEMO_ADAPTERS, z_limits_um=LIMITS)
    try:
        mic.core.setProperty(mic.focus_device, "UseSequences", "Yes")
        assert mic.sweep_sequenced
        mic.move_z(-3.0)
        frames = mic.sweep_z([-2.0, -1.0, 0.0, 1.0])
        assert [z for z, _ in frames] == [-2.0, -1.0, 0.0, 1.0]
        assert mic.z_um == pytest.approx(1.0)  # the stop-and-go redo went everywhere
        assert not mic.sweep_sequenced
    finally:
        mic.close()
