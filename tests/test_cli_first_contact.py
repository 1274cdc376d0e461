"""First-contact CLI output that reads right (issue 19, item 6).

"best z" vs the simulator's "physical z" is explained where both are shown; a failed
search shows no "best z" that is neither a named candidate nor where the stage is; the
approach overshoot is called `overshoot_um` / `--overshoot-um`, with the old
`backlash_um` / `--backlash-um` kept as deprecated aliases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from autofocus.search.focus import FocusRequest
from autofocus.settings import FocusDefaults, load_settings

REPO = Path(__file__).resolve().parents[1]


def _autofocus(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    env["COLUMNS"] = "100"
    return subprocess.run([sys.executable, "-m", "autofocus", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_physical_z_of_the_simulator_is_explained_next_to_best_z():
    proc = _autofocus("focus", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "best z (focus found)" in out
    assert "physical z (simulator)¹" in out
    assert "¹ where the simulated stage physically is" in out
    assert "mechanical play (backlash" in out
    assert "position noise" in out


def test_failed_search_names_its_candidates_not_a_best_z():
    proc = _autofocus("focus", "--seed", "0", "--debris-dz-um", "15")
    assert proc.returncode == 1
    report = json.loads(_autofocus("focus", "--seed", "0", "--debris-dz-um", "15",
                                   "--json").stdout)
    assert report["reason_code"] == "rival_peak"
    planes = [f"{p['z_um']:.3f}" for p in report["details"]["rivals"]]
    out = proc.stdout
    best_line = next(line for line in out.splitlines() if "best z" in line)
    assert "no focus found" in best_line
    assert f"{report['best_z_um']:.3f}" not in out  # the unnamed "best" sample is not shown
    candidates = next(line for line in out.splitlines() if "candidate planes" in line)
    assert all(z in candidates for z in planes)


def test_overshoot_um_and_its_deprecated_aliases():
    assert FocusRequest().overshoot_um == 5.0
    with pytest.warns(DeprecationWarning, match="overshoot_um"):
        old = FocusRequest(backlash_um=2.0)
    assert old.overshoot_um == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # replace() sees only the new field: no warning
        assert replace(FocusRequest(overshoot_um=3.0), range_um=10.0).overshoot_um == 3.0
    with pytest.warns(DeprecationWarning):
        assert old.backlash_um == 2.0
    with pytest.raises(TypeError, match="not both"), pytest.warns(DeprecationWarning):
        FocusRequest(overshoot_um=1.0, backlash_um=2.0)

    assert FocusDefaults().overshoot_um == 5.0
    with pytest.warns(DeprecationWarning, match="focus.overshoot_um"):
        defaults = FocusDefaults(backlash_um=3.0)
    assert defaults.overshoot_um == 3.0
    with pytest.warns(DeprecationWarning):
        settings = load_settings(None, focus={"backlash_um": 4.0})
    assert settings.focus.overshoot_um == 4.0


def test_cli_overshoot_option_and_hidden_old_name():
    help_text = _autofocus("focus", "--help").stdout
    assert "--overshoot-um" in help_text and "--backlash-um" not in help_text
    new = json.loads(_autofocus("focus", "--seed", "1", "--overshoot-um", "3", "--json").stdout)
    old = _autofocus("focus", "--seed", "1", "--backlash-um", "3", "--json")
    assert "deprecated" in old.stderr and "--overshoot-um" in old.stderr
    assert json.loads(old.stdout)["best_z_um"] == new["best_z_um"]
