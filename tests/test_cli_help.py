"""The command line's first contact: a fast `--help`, `--version`, `-h`, and help that is true.

Start-up speed itself is measured by `benchmarks/bench_startup.py` (a ratio to
a bare interpreter in the same run), not timed here; this checks the cause of
a slow start: which heavy packages `autofocus --help` imports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import autofocus
from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.logging import configure_logging

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("fastapi", "uvicorn", "onnxruntime", "scipy")

runner = CliRunner()


def setup_module() -> None:
    # As `autofocus.cli.main` does: logs to stderr, stdout carries only tables/JSON/CSV.
    configure_logging("console", "warning")
    _load_commands()


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


def _imported_by(argv: list[str]) -> list[str]:
    """Heavy top-level packages imported by running `autofocus argv` in a fresh interpreter."""
    code = (
        "import json, sys\n"
        f"sys.argv = ['autofocus', *{argv!r}]\n"
        "from autofocus.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["serve", "--help"]])
def test_help_imports_no_heavy_package(argv):
    assert _imported_by(argv) == []


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"autofocus {autofocus.__version__} ")
    assert runner.invoke(app, ["-h"]).stdout == runner.invoke(app, ["--help"]).stdout
    assert "Usage:" in runner.invoke(app, ["focus", "-h"]).stdout


def test_boolean_flags_take_no_value():
    for command in (["focus"], ["stack"], ["eval"], ["bench", "score"], ["bench", "search"]):
        text = _help(*command)
        assert re.search(r"^\s+--json\s{2,}\S", text, re.M), text  # no metavar after the flag
        assert "<bool>" not in text
    result = runner.invoke(app, ["focus", "--json", "true"])
    assert result.exit_code == 2  # a flag: "true" is an unexpected extra argument


def test_focus_help_lists_every_scorer_and_strategy_and_shows_defaults():
    from autofocus.scoring.registry import available_scorers
    from autofocus.search.strategies.registry import available_strategies
    from autofocus.settings import FocusDefaults

    text = _help("focus")
    scorers = text.split("Scorers (--scorer):")[1].split("Strategies (--strategy):")[0]
    strategies = text.split("Strategies (--strategy):")[1]
    for name in available_scorers():
        assert re.search(rf"^\s+{re.escape(name)}\s", scorers, re.M), name
    for name in available_strategies():
        assert re.search(rf"^\s+{re.escape(name)}\s", strategies, re.M), name
    defaults = FocusDefaults()
    flat = " ".join(text.split())
    assert f"Full width searched (µm). [default: {defaults.range_um}" in flat
    assert defaults.tolerance_um is None  # unset: from the optics
    assert "Wanted accuracy (µm). [default: DOF/4 where the optics are known, else 0.5" in flat
    # Options grouped by the hardware they belong to.
    headings = [line for line in text.splitlines() if line and not line.startswith(" ")]
    for heading in ("Search:", "Simulated microscope (--driver sim):",
                    "Micro-Manager (--driver micromanager):",
                    "Recorded z-stack (--driver replay):"):
        assert heading in headings
    sim_part = text.split("Simulated microscope (--driver sim):")[1].split("Micro-Manager")[0]
    assert "--seed" in sim_part and "--mm-port" not in sim_part


def test_help_fits_80_columns():
    for command in (["focus"], ["eval"], ["serve"], []):
        text = _help(*command) if command else runner.invoke(
            app, ["--help"], env={"COLUMNS": "80"}).stdout
        assert max(len(line) for line in text.splitlines()) <= 80, command
