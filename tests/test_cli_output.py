"""CLI output a person can read at 80 columns and a program can parse; hints on wrong input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.logging import configure_logging

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def setup_module() -> None:
    # As `autofocus.cli.main` does: logs to stderr, stdout carries only tables/JSON/CSV.
    configure_logging("console", "warning")
    _load_commands()


def _autofocus(*args: str, columns: str | None) -> subprocess.CompletedProcess[str]:
    """`autofocus ARGS` in a fresh process with stdout redirected (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "autofocus", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _write_stack(folder: Path, name: str, seed: int, zs=(-1.0, 0.0, 1.0)) -> None:
    rng = np.random.default_rng(seed)
    obj = np.zeros((48, 48), np.float32)
    obj[rng.integers(2, 46, 40), rng.integers(2, 46, 40)] = 1.0
    obj = 200.0 + 3000.0 * cv2.GaussianBlur(obj, (0, 0), 0.8)
    folder.mkdir(parents=True, exist_ok=True)
    for z in zs:
        img = cv2.GaussianBlur(obj, (0, 0), 0.3 + 1.5 * abs(z)) + rng.normal(0, 2.0, obj.shape)
        tifffile.imwrite(folder / f"{name}_z{z:+.1f}.tif", np.clip(img, 0, 65535).astype(np.uint16))


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Two labelled stacks with long names, for width checks."""
    rows = ["stack,path,z_um,best_z_um,tolerance_um,label"]
    for seed, name in enumerate(("a_rather_long_stack_name_number_one",
                                 "a_rather_long_stack_name_number_two")):
        _write_stack(tmp_path / name, name, seed)
        for z in (-1.0, 0.0, 1.0):
            rows.append(f"{name},{name}/{name}_z{z:+.1f}.tif,{z},0.0,0.5,annotated")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_real_eval_at_80_columns_prints_every_stack_name_in_full(real_data_dir):
    from autofocus.stacks.readers import read_manifest

    proc = _autofocus("eval", str(real_data_dir), "--scorer", "tenengrad", columns="80")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in read_manifest(real_data_dir):
        assert any(line.split() and line.split()[0] == name for line in lines), name
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert "left out" in proc.stderr  # says which columns a wider terminal would show


def test_redirected_output_is_not_wider_than_80_columns(corpus):
    proc = _autofocus("eval", str(corpus), "--scorer", "tenengrad", columns=None)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line.rstrip()) for line in proc.stdout.splitlines()) <= 80
    assert "a_rather_long_stack_name_number_one" in proc.stdout
    wide = runner.invoke(app, ["eval", str(corpus), "-s", "tenengrad"], env={"COLUMNS": "200"})
    assert "planes" in wide.stdout and "left out" not in wide.stderr


def test_bench_search_tables_fit_80_columns_when_redirected():
    proc = _autofocus("bench", "search", "--per-case", "1", "--specimen", "beads", "--photons",
                      "50", "--case", "main", "--case", "tracking", "--track-points", "3",
                      "--strategy", "guided", columns=None)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line.rstrip()) for line in proc.stdout.splitlines()) <= 80
    for label in ("guided (default, rival_check full)", "guided, rival_check capture"):
        assert label in proc.stdout  # identifiers in full
    assert "confidence calibration" in proc.stdout and "tracking" in proc.stdout
    assert "left out" in proc.stderr  # says which columns a wider terminal would show
    # Hardware seconds stay beside frames even at 80 columns (issue 22), tracking included.
    assert proc.stdout.count("hardware s") >= 2, proc.stdout


def test_csv_outputs_every_column(corpus):
    res = runner.invoke(app, ["eval", str(corpus), "-s", "tenengrad", "-s", "vol", "--csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 4
    assert {r["scorer"] for r in rows} == {"tenengrad", "vol"}
    assert set(rows[0]) >= {"stack", "planes", "chosen_z_um", "best_z_um", "error_um",
                            "within_tolerance", "spearman"}
    stack = corpus / "a_rather_long_stack_name_number_one"
    res = runner.invoke(app, ["stack", str(stack), "--csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [float(r["z_um"]) for r in rows] == [-1.0, 0.0, 1.0]
    assert [r["best"] for r in rows].count("True") == 1
    res = runner.invoke(app, ["stack", str(stack), "--csv", "--json"])
    assert res.exit_code == 2 and "exclusive" in res.stderr


def test_eval_on_one_stack_suggests_the_stack_command(corpus):
    stack = corpus / "a_rather_long_stack_name_number_one"
    res = runner.invoke(app, ["eval", str(stack)])
    assert res.exit_code == 2
    assert f"autofocus stack {stack}" in res.stderr
    tiff = corpus / "pages.tif"
    tifffile.imwrite(tiff, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    res = runner.invoke(app, ["eval", str(tiff)])
    assert res.exit_code == 2 and f"autofocus stack {tiff}" in res.stderr


def test_stack_on_a_corpus_suggests_eval(corpus):
    res = runner.invoke(app, ["stack", str(corpus)])
    assert res.exit_code == 2
    assert f"autofocus eval {corpus}" in res.stderr


def test_eval_on_an_unlabelled_corpus_says_how_to_label(tmp_path):
    for seed, name in enumerate(("s1", "s2")):
        _write_stack(tmp_path / name, name, seed)
    res = runner.invoke(app, ["eval", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "none of the 2 stack(s)" in res.stderr and "is labelled" in res.stderr
    assert "manifest.csv" in res.stderr and "best_z_um" in res.stderr


def test_tiff_without_z_step_names_the_flag(tmp_path):
    tiff = tmp_path / "pages.tif"
    tifffile.imwrite(tiff, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    res = runner.invoke(app, ["stack", str(tiff)])
    assert res.exit_code == 2 and "--z-step-um" in res.stderr
    res = runner.invoke(app, ["stack", str(tiff), "--z-step-um", "0.5", "--json"])
    assert res.exit_code == 0, res.output


def test_error_messages_keep_square_brackets(corpus):
    stack = corpus / "a_rather_long_stack_name_number_one"
    res = runner.invoke(app, ["stack", str(stack), "--pattern", "_z([eE]"])
    assert res.exit_code == 2
    assert "_z([eE]" in res.stderr, res.stderr
    res = runner.invoke(app, ["focus", "--on-failure", "[red]x[/red]"])
    assert res.exit_code == 2 and "[red]x[/red]" in res.stderr


def test_search_eval_csv_and_table(corpus):
    res = runner.invoke(app, ["eval", str(corpus), "--search", "--csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    from autofocus.search.strategies.registry import DEFAULT_STRATEGY

    assert {r["strategy"] for r in rows} == {DEFAULT_STRATEGY}
    assert len(rows) == 2 * 3  # two stacks × three starts
    res = runner.invoke(app, ["eval", str(corpus), "--search"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "a_rather_long_stack_name_number_two" in res.stdout
    assert max(len(line.rstrip()) for line in res.stdout.splitlines()) <= 80
    report = json.loads(runner.invoke(app, ["eval", str(corpus), "--search", "--json"]).stdout)
    assert report["strategies"] == [DEFAULT_STRATEGY]  # the default the help names
    # Hardware seconds sit beside frames wherever the table has the room (issue 22).
    res = runner.invoke(app, ["eval", str(corpus), "--search"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "hardware s" in res.stdout
    assert f"{report['summary'][DEFAULT_STRATEGY]['hardware_s']:.2f}" in res.stdout


def test_bracketed_names_are_shown_verbatim(tmp_path):
    for name in ("run[1]", "run[bold]2"):
        _write_stack(tmp_path / name, name, 0)
    rows = ["stack,path,z_um,best_z_um,tolerance_um,label"]
    for name in ("run[1]", "run[bold]2"):
        rows += [f"{name},{name}/{name}_z{z:+.1f}.tif,{z},0.0,0.5,annotated" for z in (-1, 0, 1)]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    res = runner.invoke(app, ["eval", str(tmp_path), "-s", "tenengrad"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert "run[1]" in res.stdout and "run[bold]2" in res.stdout
