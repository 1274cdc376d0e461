"""`autofocus bench score`: runs end to end (tiny frames) and reports both sides per batch size.

Speed goals are checked by running the benchmark itself (see models/README.md),
not here: this only checks the command works and reports what it claims.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.logging import configure_logging


def setup_module() -> None:
    # As `autofocus.cli.main` does: logs to stderr, stdout carries only the JSON.
    configure_logging("console", "warning")


def test_bench_score_reports_model_and_opencv_side_by_side():
    _load_commands()
    result = CliRunner().invoke(
        app,
        ["bench", "score", "--size", "128", "--batch", "1", "--batch", "3", "--repeats", "1",
         "--distinct", "2", "--provider", "cpu", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scorer"] == "focusnet"
    assert report["active_provider"] == "CPUExecutionProvider"
    assert report["frame"] == {"shape": [128, 128], "dtype": "uint16", "distinct": 2}
    assert [r["batch"] for r in report["rows"]] == [1, 3]
    for row in report["rows"]:
        assert row["model_fps"] > 0 and row["baseline_fps"] > 0
        ratio = row["model_ms_per_frame"] / row["baseline_ms_per_frame"]
        assert abs(row["cost_ratio"] - ratio) < 1e-9
        assert row["prepare_ms_per_frame"] > 0 and row["infer_ms_per_frame"] > 0


def test_bench_score_rejects_a_broken_model_in_one_line(tmp_path):
    _load_commands()
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"nope")
    result = CliRunner().invoke(app, ["bench", "score", "--model", str(bad), "--size", "64"])
    assert result.exit_code == 2
    assert "card" in result.output and "Traceback" not in result.output
