"""Opening recorded stacks for replay: bad input fails clearly before any search; labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from autofocus_drivers.errors import ConfigurationError
from autofocus_drivers.replay import ReplayMicroscope
from scipy.ndimage import gaussian_filter

import autofocus.stacks.search_eval as search_eval
from autofocus.errors import StackError
from autofocus.search.focus import focus
from autofocus.stacks.replay import find_label, open_replay, replay_request

_SPECIMEN = np.random.default_rng(0).random((32, 32))
FOCUS_Z_UM = -1.0  # off the stack's centre, so a search that just returns the centre fails


def _blob(z_um: float, shape=(32, 32), dtype=np.uint16) -> np.ndarray:
    """A random texture blurred by the defocus |z − focus|: one plane of a tiny stack.

    In focus the blur is still 0.8 px: optics never resolve single-pixel white noise
    (the PSF spans ≥ 2 px at Nyquist sampling), and the engine rejects a frame of
    uncorrelated pixels as a corrupted transfer.
    """
    specimen = np.resize(_SPECIMEN, shape)
    img = gaussian_filter(specimen, 0.8 + 1.5 * abs(z_um - FOCUS_Z_UM), mode="reflect")
    return (100 + 800 * img).astype(dtype)


def _write_stack(folder: Path, zs, *, name="s", shapes=None, dtypes=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, z in enumerate(zs):
        shape = shapes[i] if shapes else (32, 32)
        dtype = dtypes[i] if dtypes else np.uint16
        tifffile.imwrite(folder / f"{name}_z{z:+.2f}.tif", _blob(z, shape, dtype))
    return folder


@pytest.fixture
def no_search(monkeypatch):
    """Fail the test if a search starts (the error must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a search started although the stack is bad")

    monkeypatch.setattr(search_eval, "focus", refuse)


def test_a_good_stack_replays_and_focuses(tmp_path):
    folder = _write_stack(tmp_path / "s", np.arange(-3.0, 3.01, 0.5))
    mic = open_replay(folder)
    assert isinstance(mic, ReplayMicroscope)
    assert mic.n_planes == 13 and mic.regular
    assert (mic.z_limits_um.min_um, mic.z_limits_um.max_um) == (-3.0, 3.0)
    assert mic.true_focus_z_um() is None  # no manifest
    mic.move_z(-3.0)
    result = focus(mic, **replay_request(mic))
    assert result.success, result.reason
    assert abs(result.best_z_um - FOCUS_Z_UM) <= 0.5
    assert result.frames < mic.n_planes


def test_one_plane_is_refused(tmp_path):
    folder = _write_stack(tmp_path / "s", [0.0])
    with pytest.raises(StackError, match="has 1 plane; at least 2"):
        open_replay(folder)


def test_duplicate_z_is_refused(tmp_path):
    folder = _write_stack(tmp_path / "s", [0.0, 1.0, 2.0])
    tifffile.imwrite(folder / "s_z+1.0.tif", _blob(1.0))  # same z as s_z+1.00.tif
    with pytest.raises(StackError, match=r"two planes at z = 1 µm"):
        open_replay(folder)


def test_mixed_sizes_are_refused(tmp_path):
    folder = _write_stack(tmp_path / "s", [0.0, 1.0, 2.0], shapes=[(32, 32), (32, 32), (32, 40)])
    with pytest.raises(StackError, match=r"differ in size.*40×32 px"):
        open_replay(folder)


def test_mixed_pixel_types_are_refused(tmp_path):
    folder = _write_stack(tmp_path / "s", [0.0, 1.0, 2.0], dtypes=[np.uint16, np.uint8, np.uint16])
    with pytest.raises(StackError, match="same pixel type"):
        open_replay(folder)


def test_unreadable_file_is_refused_naming_it(tmp_path):
    folder = _write_stack(tmp_path / "s", [0.0, 1.0, 2.0])
    (folder / "s_z+3.00.tif").write_bytes(b"this is not a TIFF file")
    with pytest.raises(StackError, match=r"s_z\+3\.00\.tif"):
        open_replay(folder)


def test_truncated_pixels_are_refused_naming_the_file(tmp_path):
    # A valid header with missing pixel data passes the header check and fails on load.
    folder = _write_stack(tmp_path / "s", [0.0, 1.0, 2.0])
    bad = folder / "s_z+1.00.tif"
    tifffile.imwrite(bad, _blob(1.0), compression="zlib")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(StackError, match=r"s_z\+1\.00\.tif"):
        open_replay(folder)


def test_csv_stack_with_duplicate_z_is_refused(tmp_path):
    _write_stack(tmp_path / "s", [0.0, 1.0])
    csv = tmp_path / "list.csv"
    csv.write_text("image_path,z_um\ns/s_z+0.00.tif,5\ns/s_z+1.00.tif,5\n")
    with pytest.raises(StackError, match="two planes at z = 5"):
        open_replay(csv)


def test_missing_stack_is_refused(tmp_path):
    with pytest.raises(StackError, match="no such file or folder"):
        open_replay(tmp_path / "nope")


def test_bad_driver_options_stay_configuration_errors(tmp_path):
    folder = _write_stack(tmp_path / "s", [0.0, 1.0, 2.0])
    with pytest.raises(ConfigurationError, match="move_s_per_um"):
        open_replay(folder, move_s_per_um=-1.0)
    with pytest.raises(StackError, match="evenly spaced"):
        _write_stack(tmp_path / "t", [0.0, 1.0, 5.0])
        open_replay(tmp_path / "t", blend=True)


def _corpus(root: Path, bad: str) -> Path:
    """A two-stack labelled corpus whose second stack has the defect `bad`."""
    rows = ["stack,path,z_um,best_z_um,tolerance_um,label"]
    good = _write_stack(root / "good", [-1.0, 0.0, 1.0], name="good")
    for p in sorted(good.iterdir()):
        z = float(p.stem.split("_z")[1])
        rows.append(f"good,good/{p.name},{z},0,0.5,annotated")
    shapes = [(32, 32), (32, 32), (16, 16)] if bad == "sizes" else None
    zs = [0.0] if bad == "one" else [-1.0, 0.0, 1.0]
    folder = _write_stack(root / "bad", zs, name="bad", shapes=shapes)
    for p in sorted(folder.iterdir()):
        z = 0.0 if bad == "dup" else float(p.stem.split("_z")[1])
        rows.append(f"bad,bad/{p.name},{z},0,0.5,annotated")
    if bad == "unreadable":
        (folder / "bad_z+5.00.tif").write_bytes(b"garbage")
        rows.append("bad,bad/bad_z+5.00.tif,5,0,0.5,annotated")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("one", "has 1 plane"),
        ("dup", "two planes at z = 0"),
        ("sizes", "differ in size"),
        ("unreadable", r"bad_z\+5\.00\.tif"),
    ],
)
def test_search_evaluation_refuses_a_bad_stack_before_any_search(tmp_path, no_search, bad, match):
    corpus = _corpus(tmp_path, bad)
    with pytest.raises(StackError, match=match):
        search_eval.evaluate_search(corpus)


def test_label_comes_from_the_manifest_next_to_the_stack(tmp_path):
    corpus = _corpus(tmp_path, "none")
    label = find_label(corpus / "good", "good")
    assert label is not None and label.best_z_um == 0.0 and label.tolerance_um == 0.5
    mic = open_replay(corpus / "good")
    assert mic.true_focus_z_um() == 0.0 and mic.focus_tolerance_um == 0.5
    (corpus / "manifest.csv").write_text("not,a,manifest\n")
    assert open_replay(corpus / "good").true_focus_z_um() is None  # ignored, not fatal


def test_replay_request_ties_the_search_to_the_planes(tmp_path):
    mic = ReplayMicroscope(np.arange(15) * 0.1 - 0.7, [_blob(z) for z in range(15)])
    req = replay_request(mic, tolerance_um=0.1)
    assert req["center_z_um"] == pytest.approx(0.0)
    assert req["range_um"] == pytest.approx(1.4)
    assert req["tolerance_um"] == pytest.approx(0.1)
    # 4 planes per coarse step would give 4 coarse points; at least 5 are asked for
    assert req["coarse_step_um"] == pytest.approx(1.4 / 4)
    long = ReplayMicroscope(np.arange(101) * 0.05, [_blob(0)] * 101)
    assert replay_request(long)["coarse_step_um"] == pytest.approx(0.2)
