"""Docs and output agree (issue 19, item 8)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"


def _autofocus(*args: str, columns: str = "100") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFOCUS_")}
    env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "autofocus", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_focus_help_lists_every_reason_code_as_the_readme_says():
    from autofocus.search.reasons import FailureReason

    assert "`autofocus focus -h` lists them all" in (REPO / "README.md").read_text()
    text = _autofocus("focus", "-h").stdout
    assert "Failure reason codes" in text
    for reason in FailureReason:
        assert re.search(rf"^\s+{reason.value}\s", text, re.M), reason.value


def test_readme_delete_example_says_real_time():
    readme = (REPO / "README.md").read_text()
    after = readme[readme.index('curl -s -X DELETE "$URL/v1/jobs/$JOB"'):][:600]
    assert "--real-time" in after


def test_serve_banner_prints_the_numeric_z_limits(capsys):
    from autofocus.cli.serve import print_banner
    from autofocus.settings import load_settings

    print_banner(load_settings(None))
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "Z limits" in x)
    assert re.search(r"\[-?\d+(\.\d+)?, -?\d+(\.\d+)?\] µm", line), line
    assert "driver's own" not in line


@pytest.mark.skipif(not REAL.is_dir(), reason="no real corpus")
def test_eval_note_names_only_columns_its_table_left_out():
    proc = _autofocus("eval", str(REAL), "--scorer", "tenengrad", columns="80")
    assert proc.returncode == 0, proc.stderr
    note = next(x for x in proc.stderr.splitlines() if "left out" in x)
    summary = proc.stdout[proc.stdout.index("summary"):]
    for part in note.split("left out", 1)[1].split("(")[0].split(";"):
        cols, _, table = part.partition(" of the ")
        assert table.strip() in ("per-stack table", "summary"), note
        if table.strip() == "summary":
            for col in cols.split(","):
                assert col.strip() not in summary


def test_bench_score_header_says_how_batches_are_split():
    from autofocus.cli.bench import _max_batch_text

    text = _max_batch_text(1)
    assert "≤1 frame per inference call" in text and "split" in text
    assert "max_batch 1" not in text


@pytest.mark.parametrize("command", [["focus"], ["serve"], ["eval"], ["bench", "score"],
                                     ["bench", "search"], ["calibrate"]])
def test_one_metavar_style_in_every_help(command):
    text = _autofocus(*command, "-h").stdout
    options = [x for x in text.splitlines() if x.strip().startswith("-")]
    assert options
    for line in options:
        head = re.split(r"\s{2,}", line.strip())[0]
        assert "range>" not in head, line
        assert not re.search(r"(?<=[ =])[A-Z][A-Z_]+\b", head), line


def test_plot_refuses_a_non_png_name_before_moving(tmp_path):
    target = tmp_path / "curve.jpg"
    proc = _autofocus("focus", "--plot", str(target))
    assert proc.returncode == 2
    assert "does not end in .png" in proc.stderr and "curve.png" in proc.stderr
    assert not target.exists()
