"""`autofocus focus` end to end through the CLI: the report says what each driver knows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.logging import configure_logging

runner = CliRunner()


def setup_module() -> None:
    # As `autofocus.cli.main` does: logs to stderr, stdout carries only tables/JSON/CSV.
    configure_logging("console", "warning")
    _load_commands()


def test_sim_json_and_table_label_the_simulator_truth():
    res = runner.invoke(app, ["focus", "--seed", "3", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["driver"] == "sim" and report["success"] is True
    assert abs(report["error_um"]) < 0.5
    res = runner.invoke(app, ["focus", "--seed", "3"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "true focus (simulator)" in res.stdout and "labelled focus" not in res.stdout


def test_replay_report_is_not_labelled_as_the_simulator(real_data_dir):
    stack = real_data_dir / "dfnn_microtubules_single"
    if not stack.is_dir():
        pytest.skip(f"{stack} not present")
    res = runner.invoke(app, ["focus", "--driver", "replay", "--stack", str(stack)],
                        env={"COLUMNS": "80"})
    assert res.exit_code in (0, 1), res.output
    assert "simulator" not in res.stdout
    assert "labelled focus (stack)" in res.stdout


def test_invalid_input_is_one_line_and_exit_2():
    res = runner.invoke(app, ["focus", "--on-failure", "explode"])
    assert res.exit_code == 2
    assert "--on-failure must be 'return' or 'stay'" in res.stderr
    assert "Traceback" not in res.output
