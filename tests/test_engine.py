"""Engine tests against the real simulated microscope.

Every commanded Z is recorded (by the engine and by the simulator) and checked
against the limits; failures, faults and cancels must end as failed results
with the stage back where it started.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
from autofocus_drivers.sim import FaultConfig, SimConfig, SimulatedMicroscope
from autofocus_drivers.sim.faults import Calls

from autofocus.errors import LimitError
from autofocus.scoring.registry import get_scorer
from autofocus.search.engine import Engine
from autofocus.search.focus import FocusRequest, focus, search_space
from autofocus.search.strategies.base import SearchOutcome, SearchSpace


def make_sim(seed: int = 1, *, faults: FaultConfig | None = None, **preset) -> SimulatedMicroscope:
    config = SimConfig.preset("beads", **preset)
    if faults is not None:
        config = dataclasses.replace(config, faults=faults)
    return SimulatedMicroscope(config, seed=seed)


def dof_um(mic: SimulatedMicroscope) -> float:
    return mic.config.optics.depth_of_field_um


def test_focus_finds_true_focus_and_parks_there():
    mic = make_sim(3, focus_z_um=4.2)
    tol = dof_um(mic) / 4
    result = focus(mic, range_um=40, tolerance_um=tol)
    assert result.success, result.reason
    # The stage reports commanded positions; with backlash the physical position differs
    # by a constant when approached from one side, so judge where the specimen really is.
    assert abs(mic.physical_z_um - mic.true_focus_z_um()) <= tol
    assert result.final_z_um == pytest.approx(result.best_z_um)
    assert mic.z_um == pytest.approx(result.best_z_um)
    assert result.frames == len(result.curve) + 1  # + the verification frame
    assert result.timing.hardware_s > 0 and result.timing.exposure_s > 0


def test_every_commanded_z_inside_limits_near_the_edge():
    # Focus close to the lower limit, a big backlash overshoot: the overshoot must be clamped.
    mic = make_sim(2, focus_z_um=-93.0, backlash_um=0.5)
    mic.move_z(-85.0)
    result = focus(mic, center_z_um=-85.0, range_um=30, tolerance_um=0.3, overshoot_um=20)
    lim = mic.z_limits_um
    assert mic.commanded_z_um, "the simulator recorded no moves"
    assert all(lim.min_um <= z <= lim.max_um for z in mic.commanded_z_um)
    assert all(lim.min_um <= z <= lim.max_um for z in result.commanded_z_um)
    assert not mic.refused_z_um
    assert result.success, result.reason


class _WildStrategy:
    """A deliberately misbehaving strategy (a test double: our real strategies never ask
    outside the space, so this is the only way to check the engine's clamp)."""

    name = "wild"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.history: list[tuple[float, float]] = []
        self._asked = False

    def ask(self) -> list[float]:
        if self._asked:
            return []
        self._asked = True
        return [self.space.z_min_um - 50, 0.0, self.space.z_max_um + 50]

    def tell(self, z_um, scores) -> None:
        self.history.extend(zip(z_um, scores, strict=True))

    @property
    def done(self) -> bool:
        return self._asked and bool(self.history)

    def outcome(self) -> SearchOutcome:
        z, s = max(self.history, key=lambda p: p[1])
        return SearchOutcome(True, z, s, 0.5)


def test_engine_clamps_positions_asked_outside_the_limits():
    mic = make_sim(4, focus_z_um=0.0)
    lim = mic.z_limits_um
    space = SearchSpace(0.0, 10.0, lim.min_um, lim.max_um, 0.5)
    result = Engine(mic, get_scorer("tenengrad"), verify=False).run(_WildStrategy(space))
    assert all(lim.min_um <= z <= lim.max_um for z in mic.commanded_z_um)
    assert len(result.details["clamped"]) == 2
    assert not mic.refused_z_um


@pytest.mark.parametrize(
    "faults, error_type",
    [
        (FaultConfig(camera_error=Calls.parse(5)), "CameraError"),
        (FaultConfig(stage_error=Calls.parse(4)), "StageError"),
        (FaultConfig(stage_timeout=Calls.parse(6)), "DeviceTimeout"),
    ],
)
def test_fault_mid_search_fails_cleanly_and_returns_to_start(faults, error_type):
    mic = make_sim(5, faults=faults, focus_z_um=3.0)
    mic.move_z(1.5)
    start = mic.z_um
    result = focus(mic, range_um=40, tolerance_um=0.4)
    assert not result.success
    assert result.error_type == error_type
    assert result.reason_code == "hardware"
    assert result.reason and len(result.reason) > 10
    assert result.final_z_um == pytest.approx(start)
    assert mic.z_um == pytest.approx(start)


class _BrokenScorer:
    """A scorer with a bug (a fake: a programming error cannot be produced otherwise)."""

    name = "broken"

    def score(self, frames):
        raise ZeroDivisionError("a bug in a scorer")


def test_a_bug_is_reported_as_internal_not_hardware():
    mic = make_sim(5, focus_z_um=3.0)
    mic.move_z(1.5)
    start = mic.z_um
    result = focus(mic, scorer=_BrokenScorer(), range_um=40, tolerance_um=0.4)
    assert not result.success
    assert result.reason_code == "internal"
    assert mic.z_um == pytest.approx(start)


def test_stay_on_failure_does_not_return():
    mic = make_sim(5, faults=FaultConfig(camera_error=Calls.parse(5)), focus_z_um=3.0)
    mic.move_z(1.5)
    result = focus(mic, range_um=40, tolerance_um=0.4, on_failure="stay")
    assert not result.success
    assert mic.z_um != pytest.approx(1.5)


def test_cancel_returns_stage_to_start():
    mic = make_sim(6, focus_z_um=-2.0)
    mic.move_z(7.0)
    cancel = threading.Event()
    seen = []

    def on_measure(m):
        seen.append(m)
        if len(seen) == 3:
            cancel.set()

    result = focus(mic, range_um=40, tolerance_um=0.4, cancel=cancel, on_measure=on_measure)
    assert result.cancelled and not result.success
    assert mic.z_um == pytest.approx(7.0)
    assert "cancel" in result.reason


def test_blank_frame_is_tolerated():
    mic = make_sim(7, faults=FaultConfig(blank_frame=Calls.parse(2)), focus_z_um=1.0)
    tol = dof_um(mic) / 4
    result = focus(mic, range_um=40, tolerance_um=tol)
    assert result.success, result.reason
    assert any(m.score != m.score for m in result.curve)  # the NaN of the blank frame
    assert abs(mic.physical_z_um - mic.true_focus_z_um()) <= tol


def test_garbage_frame_at_chosen_plane_is_caught_or_harmless():
    """A garbage frame scores as very sharp; either the search is not fooled, or the
    verification frame catches it and the stage goes back to the start."""
    mic = make_sim(8, faults=FaultConfig(garbage_frame=Calls.parse(3)), focus_z_um=5.0)
    tol = dof_um(mic) / 4
    result = focus(mic, range_um=40, tolerance_um=tol)
    if result.success:
        assert abs(mic.physical_z_um - mic.true_focus_z_um()) <= tol
    else:
        assert mic.z_um == pytest.approx(result.start_z_um)


def test_flat_curve_is_no_focus_signal_and_stage_returns():
    # Focus far outside the searched range: nothing but noise-level contrast.
    mic = make_sim(9, focus_z_um=90.0)
    result = focus(mic, center_z_um=-50, range_um=20, tolerance_um=0.4)
    assert not result.success
    assert result.error_type in {"NoFocusSignal", "SearchFailed"}
    assert mic.z_um == pytest.approx(0.0)


def test_invalid_request_never_moves_the_stage():
    mic = make_sim(10)
    with pytest.raises(LimitError):
        focus(mic, center_z_um=95.0, range_um=20)
    with pytest.raises(ValueError):
        focus(mic, range_um=-5)
    with pytest.raises(KeyError):
        focus(mic, scorer="no-such-scorer")
    assert mic.move_count == 0


def test_search_space_rejects_nan():
    mic = make_sim(10)
    with pytest.raises(ValueError):
        search_space(FocusRequest(center_z_um=float("nan")), 0.0, mic.z_limits_um)


def test_final_approach_is_from_below():
    mic = make_sim(11, focus_z_um=-3.0)
    mic.move_z(10.0)
    result = focus(mic, range_um=40, tolerance_um=0.4, overshoot_um=5.0)
    assert result.success
    # Parking: the last move ends on best z and the one before it lies below it.
    last, before = result.commanded_z_um[-1], result.commanded_z_um[-2]
    assert last == pytest.approx(result.best_z_um)
    assert before < last


def test_exposure_restored_after_run():
    mic = make_sim(12)
    mic.set_exposure_ms(7.0)
    focus(mic, range_um=30, tolerance_um=0.5, exposure_ms=20.0)
    assert mic.exposure_ms == pytest.approx(7.0)


def test_timeout_fails_and_returns():
    mic = make_sim(13, focus_z_um=2.0)
    result = focus(mic, range_um=40, tolerance_um=0.4, timeout_s=0.05)
    assert not result.success and result.error_type == "FocusTimeout"
    assert mic.z_um == pytest.approx(0.0)


def test_every_frame_reaches_on_measure_while_the_batch_is_still_being_acquired():
    """Live progress: a one-batch sweep reports its first measurements long before its
    last frame is taken (frames are scored one by one while the scorer keeps up)."""
    mic = make_sim(2, focus_z_um=1.0)
    snaps_at_report: list[int] = []
    result = focus(
        mic, strategy="sweep", range_um=20.0, tolerance_um=0.5,
        on_measure=lambda m: snaps_at_report.append(mic.snap_count),
    )
    assert len(snaps_at_report) == len(result.curve) >= 20
    assert snaps_at_report[0] < len(result.curve) // 2
    assert snaps_at_report == sorted(snaps_at_report)


def test_a_run_of_corrupted_frames_is_retaken_until_usable():
    """Coarse frames 1 and 2 and their first re-takes (snaps 4 and 5) are corrupted: they
    are re-taken again (up to 3 times), so every coarse position gets a usable frame."""
    mic = make_sim(3, faults=FaultConfig(garbage_frame=frozenset({1, 2, 4, 5})), focus_z_um=-4.4)
    result = focus(mic, range_um=50, tolerance_um=0.34, timeout_s=None)
    assert result.details["retaken"] == 4
    coarse = [-50 / 3, 0.0, 50 / 3]
    usable = [m.z_um for m in result.curve if m.score == m.score]  # not NaN
    assert all(any(abs(z - c) <= 0.35 for z in usable) for c in coarse)
    assert result.success


def test_approach_overshoot_is_a_waypoint_without_settling():
    # The overshoot below a target is never imaged: on a stage that can pass through a
    # position without settling (the simulator), only the imaged stops pay the settle.
    mic = make_sim(3, focus_z_um=4.2)
    settle_s = mic.config.stage.settle_s
    moves: list[tuple[str, float]] = []
    real_move, real_waypoint = mic.move_z, mic.move_z_waypoint
    mic.move_z = lambda z: (moves.append(("stop", z)), real_move(z))[1]  # type: ignore[method-assign]
    mic.move_z_waypoint = lambda z: (  # type: ignore[method-assign]
        moves.append(("waypoint", z)), real_waypoint(z))[1]
    result = focus(mic, range_um=40, tolerance_um=dof_um(mic) / 4, backlash_um=5)
    assert result.success, result.reason
    waypoints = [z for kind, z in moves if kind == "waypoint"]
    assert waypoints, "no position was approached from above"
    # Each waypoint is followed by a stop above it: the approach is still from below.
    for (kind, z), (_, z_next) in zip(moves, moves[1:], strict=False):
        if kind == "waypoint":
            assert z_next > z
    travel_um = sum(abs(b - a) for a, b in zip([0.0, *result.commanded_z_um],
                                               result.commanded_z_um, strict=False))
    stops = len(moves) - len(waypoints)
    expected_s = (travel_um / mic.config.stage.speed_um_per_s + stops * settle_s
                  + result.frames * mic.exposure_ms / 1000)
    assert result.timing.hardware_s == pytest.approx(expected_s, rel=1e-6)
