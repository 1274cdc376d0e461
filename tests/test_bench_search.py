"""`autofocus bench search`: every default contender runs (options and request accepted)."""

from __future__ import annotations

from autofocus.bench.search import default_contenders, make_trials, run_trial
from autofocus.scoring.registry import get_scorer


def test_every_default_contender_runs_and_request_settings_reach_the_strategy():
    trial = make_trials(1, specimens=("beads",), photon_levels=(50.0,))[0]
    scorer = get_scorer("tenengrad")
    frames = {}
    for contender in default_contenders():
        run = run_trial(trial, contender, scorer, range_um=50.0)
        assert run["frames"] > 0, contender.label
        frames[contender.label] = run["frames"]
    # rival_check is a request setting: the capture-only check spends fewer frames than the
    # full one, which samples the whole range for a dim second plane.
    full, capture = (frames[c.label] for c in default_contenders()[:2])
    assert capture < full
