"""Z-stack readers: folders of planes, multi-page (OME-)TIFFs, CSV lists, the manifest."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from autofocus.errors import StackError
from autofocus.stacks.readers import (
    Plane,
    ZStack,
    read_image,
    read_manifest,
    read_stack,
    z_from_name,
)

Z_UM = [-10.0, 2.5, -0.25, 0.0, 1352.25]
NAMES = [
    "S001_z-10.tif",
    "S001_z+2.5.tif",
    "S001_z-0.2500.tif",
    "S001_z0.tif",
    "S001_z+1352.25.tif",
]


def _img(seed: int, shape=(24, 32), dtype=np.uint16, colour=False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    full = shape + ((3,) if colour else ())
    if np.dtype(dtype).kind == "f":
        return rng.random(full).astype(dtype)
    hi = np.iinfo(dtype).max
    return rng.integers(0, hi, full, dtype=dtype)


def _write_png(path: Path, img: np.ndarray) -> None:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    assert cv2.imwrite(str(path), bgr)


# -- z in file names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, z",
    [
        ("S001_z-10.tif", -10.0),
        ("sephace_set1_z+1352.2500.tif", 1352.25),
        ("a_z0.5um.png", 0.5),
        ("a_z.5.jpg", 0.5),
        ("a_z1e-1.tif", 0.1),
        ("S001_z10_c1.tif", None),
        ("noz.tif", None),
    ],
)
def test_z_from_name_default_pattern(name, z):
    assert z_from_name(name) == (pytest.approx(z) if z is not None else None)


def test_z_from_name_custom_pattern():
    assert z_from_name("plane_0012um_t0.png", r"plane_(\d+)um") == 12.0
    assert z_from_name("x-Z=3.5.tif", r"Z=(?P<z>[-\d.]+)") == 3.5
    with pytest.raises(StackError, match="invalid z pattern"):
        z_from_name("a.tif", "(")
    with pytest.raises(StackError, match="group"):
        z_from_name("a_z1.tif", "_z")


# -- folder of planes ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("colour", [False, True])
def test_folder_of_tiffs_sorted_by_z_and_lazy(tmp_path, dtype, colour):
    folder = tmp_path / "S001"
    folder.mkdir()
    written = {}
    for i, (name, z) in enumerate(zip(NAMES, Z_UM, strict=True)):
        img = _img(i, dtype=dtype, colour=colour)
        tifffile.imwrite(folder / name, img, photometric="rgb" if colour else "minisblack")
        written[z] = img
    (folder / "notes.txt").write_text("not an image")
    (folder / "overview.tif").write_bytes(b"skipped: no z in the name, never opened")
    stack = read_stack(folder)
    assert stack.name == "S001" and len(stack) == 5
    np.testing.assert_array_equal(stack.z_um, sorted(Z_UM))
    assert [Path(s).name for s in stack.skipped] == ["overview.tif"]
    for plane in stack.planes:
        img = plane.load()
        assert img.dtype == np.dtype(dtype) and img.shape == written[plane.z_um].shape
        np.testing.assert_array_equal(img, written[plane.z_um])
    assert stack.validate() is stack


def test_folder_of_png_and_jpeg_colour_is_rgb(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    _write_png(folder / "mixed_z1.png", rgb)
    _write_png(folder / "mixed_z2.jpg", rgb)
    grey16 = _img(3, shape=(20, 30), dtype=np.uint16)
    _write_png(folder / "mixed_z3.png", grey16)
    stack = read_stack(folder).validate()
    png, jpg, png16 = stack.images()
    np.testing.assert_array_equal(png, rgb)  # lossless and in RGB order
    assert (
        jpg.shape == (20, 30, 3)
        and abs(int(jpg[..., 0].mean()) - 200) < 5
        and jpg[..., 2].max() < 20
    )
    assert png16.dtype == np.uint16
    np.testing.assert_array_equal(png16, grey16)


def test_folder_with_custom_pattern(tmp_path):
    for z in (0, 5, 10):
        tifffile.imwrite(tmp_path / f"plane_{z:04d}um.tif", _img(z))
    stack = read_stack(tmp_path, pattern=r"plane_(\d+)um")
    np.testing.assert_array_equal(stack.z_um, [0.0, 5.0, 10.0])


def test_folder_errors(tmp_path):
    with pytest.raises(StackError, match="no TIFF, PNG or JPEG"):
        read_stack(tmp_path)
    tifffile.imwrite(tmp_path / "image.tif", _img(0))
    with pytest.raises(StackError, match="z position in its name"):
        read_stack(tmp_path)
    with pytest.raises(StackError, match="no such file or folder"):
        read_stack(tmp_path / "missing")
    with pytest.raises(StackError, match="invalid z pattern"):
        read_stack(tmp_path, pattern="[")


@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg"])
def test_corrupt_file_error_names_the_file(tmp_path, suffix):
    tifffile.imwrite(tmp_path / "S_z0.tif", _img(0))
    bad = tmp_path / f"S_z1{suffix}"
    bad.write_bytes(b"\x00garbage, not an image" * 10)
    stack = read_stack(tmp_path)  # lazy: reading the names works
    with pytest.raises(StackError, match=bad.name):
        stack.images()
    with pytest.raises(StackError, match=bad.name):
        stack.validate()  # the size check opens every header
    with pytest.raises(StackError, match=bad.name):
        read_image(bad)


def test_missing_file_error_names_the_file(tmp_path):
    plane = Plane(str(tmp_path / "gone_z1.tif"), 1.0)
    with pytest.raises(StackError, match="gone_z1.tif"):
        plane.load()


# -- validation ------------------------------------------------------------------------


def test_validate_rejects_one_plane(tmp_path):
    tifffile.imwrite(tmp_path / "S_z0.tif", _img(0))
    with pytest.raises(StackError, match="1 plane;"):
        read_stack(tmp_path).validate()
    read_stack(tmp_path).validate(min_planes=1)


def test_validate_rejects_duplicate_z(tmp_path):
    tifffile.imwrite(tmp_path / "S_z1.tif", _img(0))
    tifffile.imwrite(tmp_path / "S_z1.000.tif", _img(1))
    tifffile.imwrite(tmp_path / "S_z2.tif", _img(2))
    with pytest.raises(StackError, match=r"two planes at z = 1 µm: S_z1.*tif and S_z1.*tif"):
        read_stack(tmp_path).validate()


def test_validate_rejects_mixed_sizes(tmp_path):
    tifffile.imwrite(tmp_path / "S_z1.tif", _img(0, shape=(24, 32)))
    tifffile.imwrite(tmp_path / "S_z2.tif", _img(1, shape=(24, 32), colour=True))  # same size
    _write_png(tmp_path / "S_z3.png", _img(2, shape=(30, 32), dtype=np.uint8))
    with pytest.raises(
        StackError, match=r"differ in size: S_z1.tif is 32×24 px but S_z3.png is 32×30"
    ):
        read_stack(tmp_path).validate()
    read_stack(tmp_path).validate(check_sizes=False)


def test_zstack_sorts_planes():
    stack = ZStack("s", [Plane("b", 2.0), Plane("a", -1.0), Plane("c", 0.5)])
    assert [p.path for p in stack.planes] == ["a", "c", "b"]


# -- multi-page TIFF --------------------------------------------------------------------


def _zyx(n=4, dtype=np.uint16, colour=False) -> np.ndarray:
    return np.stack([_img(i, dtype=dtype, colour=colour) for i in range(n)])


def test_ome_tiff_z_step_from_physical_size(tmp_path):
    data = _zyx(4)
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeZ": 0.5})
    stack = read_stack(path).validate()
    assert stack.name == "cells" and stack.z_step_um == pytest.approx(0.5)
    np.testing.assert_allclose(stack.z_um, [0.0, 0.5, 1.0, 1.5])
    for i, plane in enumerate(stack.planes):
        assert plane.page == i and plane.label == f"cells.ome.tif#{i}"
        np.testing.assert_array_equal(plane.load(), data[i])
    # An explicit step wins over the metadata.
    np.testing.assert_allclose(read_stack(path, z_step_um=2.0).z_um, [0, 2, 4, 6])


def test_ome_tiff_in_nanometres_and_colour(tmp_path):
    data = _zyx(3, dtype=np.uint8, colour=True)
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="rgb",
        metadata={"axes": "ZYXS", "PhysicalSizeZ": 250.0, "PhysicalSizeZUnit": "nm"},
    )
    stack = read_stack(path).validate()
    np.testing.assert_allclose(stack.z_um, [0.0, 0.25, 0.5])
    np.testing.assert_array_equal(stack.planes[2].load(), data[2])


def test_imagej_tiff_spacing(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _zyx(3, dtype=np.float32),
        imagej=True,
        metadata={"spacing": 0.3, "unit": "um", "axes": "ZYX"},
    )
    np.testing.assert_allclose(read_stack(path).z_um, [0.0, 0.3, 0.6])


def test_plain_multipage_tiff_needs_a_z_step(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _zyx(3), photometric="minisblack")
    with pytest.raises(StackError, match="z_step_um"):
        read_stack(path)
    np.testing.assert_allclose(read_stack(path, z_step_um=1.5).z_um, [0.0, 1.5, 3.0])
    with pytest.raises(StackError, match="positive"):
        read_stack(path, z_step_um=-1.0)


def test_multichannel_tiff_is_refused(tmp_path):
    path = tmp_path / "czyx.ome.tif"
    data = np.zeros((2, 3, 16, 16), np.uint16)
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CZYX", "PhysicalSizeZ": 1.0})
    with pytest.raises(StackError, match="single channel"):
        read_stack(path)


def test_corrupt_multipage_tiff_names_the_file(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 50)
    with pytest.raises(StackError, match="broken.tif"):
        read_stack(path)


def test_unsupported_stack_file(tmp_path):
    path = tmp_path / "stack.zip"
    path.write_bytes(b"PK")
    with pytest.raises(StackError, match="not a z-stack"):
        read_stack(path)


# -- CSV list ---------------------------------------------------------------------------


def test_csv_stack_with_relative_paths_and_scores(tmp_path):
    (tmp_path / "img").mkdir()
    imgs = {}
    for i, z in enumerate([3.0, -1.0, 1.0]):
        img = _img(i, dtype=np.uint8, colour=i == 0)
        _write_png(tmp_path / "img" / f"p{i}.png", img)
        imgs[z] = img
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(
        "image_path,z_um,focus_score\nimg/p0.png,3.0,0.5\nimg/p1.png,-1,\nimg/p2.png,1.0,2\n"
    )
    stack = read_stack(csv_path).validate()
    assert stack.name == "list"
    np.testing.assert_array_equal(stack.z_um, [-1.0, 1.0, 3.0])
    assert [p.focus_score for p in stack.planes] == [None, 2.0, 0.5]
    for plane in stack.planes:
        np.testing.assert_array_equal(plane.load(), imgs[plane.z_um])


@pytest.mark.parametrize(
    "text, match",
    [
        ("path,z\na.png,1\n", "missing image_path, z_um"),
        ("image_path,z_um\nimg/missing.png,1\n", r"line 2: image file not found: .*missing.png"),
        ("image_path,z_um\nimg/p.png,abc\n", "line 2: z_um/focus_score is not a number"),
        ("image_path,z_um\nimg/p.png,nan\n", "line 2: z_um is not finite"),
        ("image_path,z_um\n", "lists no images"),
    ],
)
def test_csv_errors(tmp_path, text, match):
    (tmp_path / "img").mkdir()
    _write_png(tmp_path / "img" / "p.png", _img(0, dtype=np.uint8))
    csv_path = tmp_path / "s.csv"
    csv_path.write_text(text)
    with pytest.raises(StackError, match=match):
        read_stack(csv_path)


# -- manifest ---------------------------------------------------------------------------


def test_read_manifest(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "manifest.csv").write_text(
        "stack,path,z_um,best_z_um,tolerance_um,label,modality,source,license\n"
        "a,a/a_z1.tif,1,0.5,0.25,annotated,brightfield,here,MIT\n"
        "a,a/a_z0.tif,0,0.5,0.25,annotated,brightfield,here,MIT\n"
        "b,b/b_z0.tif,0,,0.3,none,fluorescence,there,GPL\n"
    )
    labels = read_manifest(tmp_path)
    assert list(labels) == ["a", "b"]
    a, b = labels["a"], labels["b"]
    assert a.labelled and a.best_z_um == 0.5 and a.tolerance_um == 0.25 and a.label == "annotated"
    assert a.modality == "brightfield" and a.z_um == (1.0, 0.0)
    assert Path(a.paths[0]) == (tmp_path / "a" / "a_z1.tif").resolve()
    assert a.to_stack().z_um.tolist() == [0.0, 1.0]
    assert not b.labelled and b.best_z_um is None and b.tolerance_um == 0.3


def test_read_manifest_errors(tmp_path):
    with pytest.raises(StackError, match="no manifest.csv"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("stack,path\na,a.tif\n")
    with pytest.raises(StackError, match="missing column"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text(
        "stack,path,z_um,best_z_um,tolerance_um,label\na,x.tif,0,1,1,annotated\na,y.tif,1,2,1,x\n"
    )
    with pytest.raises(StackError, match="line 3: stack 'a' has conflicting"):
        read_manifest(tmp_path)


def test_real_manifest_and_folders_agree(real_data_dir):
    labels = read_manifest(real_data_dir)
    assert len(labels) == 13
    assert sum(label.labelled for label in labels.values()) == 10
    assert labels["sephace_set1"].best_z_um == pytest.approx(1352.25)
    assert len(labels["dfnn_microtubules_stack"].paths) == 31
    for name in ("sephace_set1", "wafer_l1jpeg_iy025", "flowdec_bead"):
        from_folder = read_stack(real_data_dir / name).validate()
        from_manifest = labels[name].to_stack()
        np.testing.assert_allclose(from_folder.z_um, from_manifest.z_um, atol=1e-9)
        def resolved(stack):
            return [Path(p.path).resolve() for p in stack.planes]

        assert resolved(from_folder) == resolved(from_manifest)
    # The README calls them colour JPEGs; the files are 8-bit greyscale JPEGs.
    wafer = read_stack(real_data_dir / "wafer_l1jpeg_iy025").planes[0].load()
    assert wafer.shape[:2] == (1200, 1920) and wafer.dtype == np.uint8
