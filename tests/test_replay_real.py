"""Autofocus through the replay driver on the real labelled z-stacks (../shared/data/real).

The search evaluation runs once per module (each stack read once) with the
default strategy and the default scorer from the bottom, middle and top of
every stack; the tests check what the report says.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from rich.console import Console

from autofocus.cli.offline import _print_search
from autofocus.search.focus import focus
from autofocus.search.strategies.registry import DEFAULT_STRATEGY
from autofocus.stacks.replay import open_replay, replay_request
from autofocus.stacks.search_eval import evaluate_search

SCORER = "tenengrad"
SLACK_UM = 1e-9


@pytest.fixture(scope="module")
def report(real_data_dir):
    return evaluate_search(real_data_dir, [DEFAULT_STRATEGY], scorer=SCORER)


def _entries(report, *, regular: bool):
    entries = [e for e in report["stacks"] if e["regular"] is regular]
    assert entries, f"no {'regular' if regular else 'irregular'} labelled stack in the corpus"
    return entries


def test_every_labelled_stack_is_searched_from_three_starts(report):
    names = {e["stack"] for e in report["stacks"]}
    assert {"dfnn_microtubules_single", "dfnn_mitochondria_single"} <= names
    for entry in report["stacks"]:
        starts = sorted(r["start_z_um"] for r in entry["runs"])
        assert len(starts) == 3
        assert starts[0] == entry["z_min_um"] and starts[-1] == entry["z_max_um"]
        assert all(r["hardware_s"] > 0 for r in entry["runs"])  # virtual time was spent


def test_regular_stacks_land_where_exhaustive_scoring_does_with_fewer_frames(report):
    for entry in _entries(report, regular=True):
        ex, tol = entry["exhaustive"], entry["tolerance_um"]
        for run in entry["runs"]:
            where = f"{entry['stack']} from {run['start']}: {run['reason']}"
            assert run["found"], where
            # Where scoring every plane picks an in-focus plane, the search is in focus too;
            if ex["success"]:
                assert run["success"], where
            # where it does not (the scorer's peak is off the label), the search finds the
            # scorer's peak: it is no worse than exhaustive scoring with the same scorer,
            else:
                assert abs(run["best_z_um"] - ex["z_um"]) <= tol + SLACK_UM, where
            # with fewer frames (verification frame included) than the stack has planes.
            assert run["frames"] < entry["planes"], where


def test_the_default_strategy_succeeds_where_exhaustive_scoring_does_on_regular_stacks(report):
    good = [e for e in _entries(report, regular=True) if e["exhaustive"]["success"]]
    assert len(good) >= 2  # the two dfnn *_single stacks
    assert all(r["success"] for e in good for r in e["runs"])


def test_irregular_stacks_never_park_on_a_wrong_plane(report):
    # Sparse, unevenly spaced stacks (wafer tiles, sephace) are hard: the search may fail
    # or park between planes. It must never park where the replay shows an out-of-focus
    # plane, and a failed search must put the stage back where it started.
    for entry in _entries(report, regular=False):
        for run in entry["runs"]:
            where = f"{entry['stack']} from {run['start']}"
            if run["found"]:
                assert run["plane_success"], where
            else:
                assert run["reason"], where
                assert run["final_z_um"] == pytest.approx(run["start_z_um"]), where


def test_summary_and_table_agree_with_the_runs(report):
    s = report["summary"][DEFAULT_STRATEGY]
    runs = [r for e in report["stacks"] for r in e["runs"]]
    assert s["runs"] == len(runs)
    assert s["successes"] == sum(r["success"] for r in runs)
    assert s["regular_runs_fewer_frames"] == s["regular_runs"]
    console = Console(record=True, width=220)
    _print_search(report, console)
    text = console.export_text()
    for entry in report["stacks"]:
        assert entry["stack"] in text
    assert f"{s['successes']}/{s['runs']}" in text


def test_open_replay_reads_a_real_stack_and_its_label(real_data_dir):
    mic = open_replay(real_data_dir / "dfnn_microtubules_single")
    assert mic.n_planes == 15 and mic.regular
    assert mic.true_focus_z_um() == 0.0 and mic.focus_tolerance_um == pytest.approx(0.1)
    assert (mic.z_limits_um.min_um, mic.z_limits_um.max_um) == pytest.approx((-0.7, 0.7))
    frame = mic.snap()
    assert frame.dtype == np.uint16 and frame.shape == (800, 512)
    assert mic.camera_info().bit_depth == 16


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_survives_seeded_noise(real_data_dir, seed):
    # 2 % of the stack's intensity range, fresh per frame; 5 % starts to fail (see docs).
    mic = open_replay(real_data_dir / "dfnn_microtubules_single", noise_sigma=0.02, seed=seed)
    mic.move_z(mic.z_limits_um.max_um)
    result = focus(mic, **replay_request(mic, tolerance_um=mic.focus_tolerance_um))
    assert result.success, result.reason
    assert abs(result.best_z_um - mic.true_focus_z_um()) <= mic.focus_tolerance_um
    assert math.isclose(result.final_z_um, result.best_z_um, abs_tol=1e-9)
