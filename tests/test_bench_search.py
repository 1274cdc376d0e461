"""`autofocus bench search`: every contender of the default table runs (one trial each).

The benchmark's numbers live in README.md; this only guards that each
contender's options are ones its strategy or the request accepts, so
`autofocus bench search` (and `make bench`) cannot crash half-way.
"""

from __future__ import annotations

from autofocus.bench.search import default_contenders, make_trials, run_benchmark


def test_every_default_contender_runs_a_trial():
    trials = make_trials(1, specimens=("beads",), photon_levels=(50.0,))
    report = run_benchmark(trials, default_contenders(), range_um=20.0)
    assert set(report["contenders"]) == {c.label for c in default_contenders()}
    for label, summary in report["contenders"].items():
        assert summary["trials"] == 1, label
        assert summary["mean_frames"] > 0, label


def test_request_settings_reach_the_strategy():
    # rival_check is a request field: the capture-only check spends fewer frames than the
    # full one, which samples the whole range for a dim second plane.
    from autofocus.bench.search import run_trial
    from autofocus.scoring.registry import get_scorer

    trial = make_trials(1, specimens=("beads",), photon_levels=(50.0,))[0]
    full, capture = (run_trial(trial, c, get_scorer("tenengrad"), range_um=50.0)["frames"]
                     for c in default_contenders()[:2])
    assert capture < full
