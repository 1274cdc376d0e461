"""`autofocus calibrate`: clear one-line errors, and a calibrated model that serves by path.

Corpora are written to tmp folders from the simulated microscope's synthetic
stacks (real files: TIFF planes + manifest.csv), so no fakes are involved.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from autofocus_models.pipeline.synth import make_stack
from typer.testing import CliRunner

from autofocus.cli import _load_commands
from autofocus.cli.app import app
from autofocus.scoring.calibration import read_output_layer
from autofocus.scoring.registry import get_scorer
from autofocus.stacks.calibrate import CalibrationError, calibrate, collect_stacks

_load_commands()


def _write_corpus(root: Path, n_stacks: int, *, labelled: bool = True, seed0: int = 0,
                  planes: int = 7, names: list[str] | None = None,
                  optics: dict[str, float] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n_stacks):
        st = make_stack(3_600_000 + seed0 + k, "train", shape=(128, 128), n_planes=planes)
        name = names[k] if names else f"s{seed0 + k}"
        (root / name).mkdir()
        z = st.dz_um + 10.0
        for frame, zi in zip(st.frames, z, strict=True):
            rel = f"{name}/{name}_z{zi:+.4f}.tif"
            tifffile.imwrite(root / rel, frame)
            nearest = float(z[np.argmin(np.abs(st.dz_um))])
            rows.append({"stack": name, "path": rel, "z_um": f"{zi:.4f}",
                         "best_z_um": f"{nearest:.4f}" if labelled else "",
                         "tolerance_um": f"{max(st.dof_um / 2, abs(np.diff(z)).max()):.4f}",
                         "label": "annotated" if labelled else "none", **(optics or {})})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus"), 3)


def test_calibrate_writes_a_servable_model_with_a_loso_card(corpus, tmp_path):
    out = tmp_path / "site.onnx"
    report = calibrate([corpus], out)
    assert report["stacks"] == ["s0", "s1", "s2"]
    assert set(report["loso"]) >= {"calibrated", "stock", "tenengrad", "brenner", "nvar", "vol"}
    for v in report["loso"].values():
        assert v["summary"]["stacks"] == 3 and len(v["per_stack"]) == 3
    assert report["parity_max_abs_logit_diff"] < 1e-3
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["calibration"]["stacks"] == report["stacks"]
    assert card["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.with_suffix(".md").is_file()
    served = get_scorer(str(out), provider="cpu")
    assert served.model_path == out
    stock = get_scorer("focusnet-v3", provider="cpu")
    # Only the score row may move without a DOF; the specimen row never does.
    new, old = read_output_layer(served), read_output_layer(stock)
    np.testing.assert_allclose(new.weight[1:], old.weight[1:], atol=1e-6)
    assert not np.allclose(new.weight[0], old.weight[0])
    scores = served.score([np.zeros((64, 64), np.uint16)])
    assert scores.shape == (1,)


def test_cli_calibrate_prints_the_loso_table(corpus, tmp_path):
    result = CliRunner().invoke(app, ["calibrate", str(corpus), "--out",
                                      str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "leave-one-stack-out" in result.output and "calibrated" in result.output


@pytest.mark.parametrize("case", ["unlabelled_stack", "unlabelled_corpus", "too_few",
                                  "mixed_sizes", "unreadable", "missing", "bad_out"])
def test_bad_input_is_one_clear_line(case, corpus, tmp_path):
    out = tmp_path / "x.onnx"
    if case == "unlabelled_stack":
        args, match = [corpus / "s0"], "'s0'.* is unlabelled"
    elif case == "unlabelled_corpus":
        args, match = [_write_corpus(tmp_path / "u", 3, labelled=False)], (
            "at least 2 labelled stacks, found 0 .unlabelled, skipped: s0, s1, s2")
    elif case == "too_few":
        args, match = [_write_corpus(tmp_path / "f", 1)], "at least 2 labelled stacks, found 1"
    elif case == "mixed_sizes":
        root = _write_corpus(tmp_path / "m", 3)
        first = sorted((root / "s1").glob("*.tif"))[0]
        tifffile.imwrite(first, np.zeros((100, 90), np.uint16))
        args, match = [root], "planes of stack 's1' differ in size"
    elif case == "unreadable":
        root = _write_corpus(tmp_path / "r", 3)
        sorted((root / "s2").glob("*.tif"))[3].write_bytes(b"not a tiff at all")
        args, match = [root], "s2"
    elif case == "missing":
        args, match = [tmp_path / "nowhere"], "no such file or folder"
    else:
        args, match = [corpus], "must name an .onnx file"
        out = tmp_path / "x.bin"
    with pytest.raises(Exception, match=match):
        calibrate(args, out)
    result = CliRunner().invoke(app, ["calibrate", *map(str, args), "--out", str(out)])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output


def test_too_many_stacks_are_refused(monkeypatch, corpus):
    import autofocus.stacks.calibrate as cal

    monkeypatch.setattr(cal, "MAX_STACKS", 2)
    with pytest.raises(CalibrationError, match="at most 2 labelled stacks"):
        collect_stacks([corpus])


def test_two_stacks_calibrate_with_a_warning(tmp_path):
    root = _write_corpus(tmp_path / "two", 2)
    report = calibrate([root], tmp_path / "two.onnx")
    assert report["stacks"] == ["s0", "s1"]
    assert any("only 2 labelled stacks" in w for w in report["warnings"])
    result = CliRunner().invoke(app, ["calibrate", str(root), "--out",
                                      str(tmp_path / "two-cli.onnx")])
    assert result.exit_code == 0, result.output
    assert "warning: only 2 labelled stacks" in result.output


def test_optics_columns_refit_distance_rows_and_side_head(tmp_path):
    """With the optics recorded in the manifest (no --dof-um), the distance and
    uncertainty rows and the pair head's output weights are refitted, and the report
    carries distance error (DOF) and side accuracy for stock and refit."""
    optics = {"na": "0.75", "magnification": "20", "immersion_index": "1.0",
              "pixel_um": "0.325", "wavelength_nm": "520"}
    root = _write_corpus(tmp_path / "o", 3, planes=11, optics=optics)
    out = tmp_path / "o.onnx"
    report = calibrate([root], out)
    assert list(report["dof_um_per_stack"].values()) == [pytest.approx(0.52 / 0.75**2
                                                                       + 0.325 / 0.75)] * 3
    assert report["rows_refit"][:3] == ["score", "log_distance", "log_distance_var"]
    d = report["defocus"]
    assert d["summary"]["stacks"] == 3
    for key in ("stock", "calibrated"):
        assert d["summary"][key]["median_distance_error_dof"] >= 0
    served = get_scorer(str(out), provider="cpu")
    stock = get_scorer("focusnet-v3", provider="cpu")
    new, old = read_output_layer(served), read_output_layer(stock)
    assert not np.allclose(new.weight[1], old.weight[1])
    np.testing.assert_allclose(new.weight[3], old.weight[3], atol=1e-6)  # specimen row
    assert "pair_head.weights" in report["rows_refit"]
    assert not np.allclose(served.pair_head.weights, stock.pair_head.weights)
    assert served.card["pair_head"]["calibrated_on"] == report["stacks"]
    assert d["summary"]["calibrated"]["pairs"] > 0


def test_stock_row_says_it_was_trained_on_these_stacks(tmp_path):
    """A corpus holding a stack the stock model was trained on: the table says so."""
    root = _write_corpus(tmp_path / "t", 3, names=["sephace_set1", "mine_a", "mine_b"])
    out = tmp_path / "t.onnx"
    report = calibrate([root], out)
    assert report["stock_trained_on"] == ["sephace_set1"]
    result = CliRunner().invoke(app, ["calibrate", str(root), "--out",
                                      str(tmp_path / "t2.onnx")], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "stock (trained on 1/3)" in result.output
    assert "not a held-out figure" in result.output
    # ...and the calibrated file's card keeps the record for the next calibration from it.
    card = json.loads(out.with_suffix(".json").read_text())
    assert "sephace_set1" in card["training"]["real_stacks"]
