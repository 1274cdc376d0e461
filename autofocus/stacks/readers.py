"""Read through-focus z-stacks from disk: folders of planes, multi-page TIFFs, CSV lists.

Three layouts, all giving a `ZStack` whose `planes` are sorted by z (µm) and
load lazily (`Plane.load()`):

* a **folder** of single-plane images with the z position in the file name,
  `<name>_z<float>.<ext>`, e.g. `S001/S001_z-10.tif` or
  `sephace_set1_z+1352.2500.tif` (the regex is configurable; files whose names
  do not match are skipped and listed in `ZStack.skipped`);
* a **multi-page TIFF / OME-TIFF** (one page per plane): the z step comes from
  OME `PhysicalSizeZ` (or per-plane OME `PositionZ`), ImageJ `spacing`, or the
  `z_step_um` argument, which wins when given; with none of them it is an error;
* a **CSV** with header `image_path,z_um[,focus_score]`, paths relative to the
  CSV file.

Images may be grey or colour, uint8/uint16/float, TIFF (read with tifffile),
PNG or JPEG (OpenCV). Colour is returned in RGB(A) order, the convention of
`autofocus.scoring.preprocess`. Any problem (missing, unreadable or corrupt file,
unusable layout) raises `autofocus.errors.StackError` naming the file.

`read_manifest(dir)` reads the `manifest.csv` of a corpus of labelled stacks
(see `shared/data/real/README.md`).
"""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile

from autofocus.errors import StackError

DEFAULT_Z_PATTERN = r"_z(?P<z>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?:_?(?:um|µm))?$"
"""Finds the z position (µm) at the end of a file name without extension: `..._z-1.25`."""

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg")

# Length units of OME/ImageJ metadata, in micrometres.
_UNIT_UM = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "\u03bcm": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}


def _planar_to_last(arr: np.ndarray) -> np.ndarray:
    # A planar (separate-samples) RGB page decodes as (3, H, W); frames are (H, W, 3).
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        return np.moveaxis(arr, 0, -1)
    return arr


def _check_pixels(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise StackError(
            f"{source}: expected one grey or colour image, got pixels of shape {arr.shape}"
        )
    if arr.size == 0:
        raise StackError(f"{source}: the image is empty")
    if arr.dtype.kind not in "buif":
        raise StackError(f"{source}: unsupported pixel type {arr.dtype}")
    return arr


def read_image(path: str | Path, page: int | None = None) -> np.ndarray:
    """Read one image: (H, W) grey or (H, W, 3|4) RGB(A), in the file's dtype.

    TIFF files are read with tifffile (`page` selects a page of a multi-page
    file, default the first); PNG/JPEG with OpenCV (BGR converted to RGB).
    Raises `StackError` naming the file when it is missing, unreadable,
    corrupt, or does not hold a single 2-D grey/colour image.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(p) as tf:
                index = page or 0
                if index >= len(tf.pages):
                    raise StackError(f"{p}: has {len(tf.pages)} page(s), page {index} requested")
                arr = _planar_to_last(tf.pages[index].asarray())
        elif suffix in IMAGE_SUFFIXES:
            if page not in (None, 0):
                raise StackError(f"{p}: a {suffix} file has a single image, page {page} requested")
            # np.fromfile + imdecode instead of cv2.imread: reports errors and handles
            # non-ASCII paths on every platform.
            data = np.fromfile(p, dtype=np.uint8)
            arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
            if arr is None:
                raise StackError(f"cannot read image {p}: not a valid {suffix} file (corrupt?)")
            if arr.ndim == 3 and arr.shape[2] == 3:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
            elif arr.ndim == 3 and arr.shape[2] == 4:
                arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
        else:
            raise StackError(f"{p}: unsupported image type {suffix!r}; use TIFF, PNG or JPEG")
    except StackError:
        raise
    except FileNotFoundError:
        raise StackError(f"image file not found: {p}") from None
    except Exception as exc:  # tifffile/codec errors come in many types
        raise StackError(f"cannot read image {p}: {exc}") from None
    return _check_pixels(arr, str(p))


def read_image_shape(path: str | Path, page: int | None = None) -> tuple[int, int]:
    """(H, W) in pixels of an image file, read from its header without decoding pixels.

    Raises `StackError` naming the file when it cannot be opened.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            with tifffile.TiffFile(p) as tf:
                shape = tf.pages[page or 0].shape
                if len(shape) == 3 and shape[0] in (3, 4) and shape[2] not in (3, 4):
                    shape = shape[1:]
                return int(shape[0]), int(shape[1])
        from PIL import Image  # lazily: only needed for PNG/JPEG headers

        with Image.open(p) as im:
            width, height = im.size
            return int(height), int(width)
    except FileNotFoundError:
        raise StackError(f"image file not found: {p}") from None
    except Exception as exc:
        raise StackError(f"cannot read image {p}: {exc}") from None


@dataclass(frozen=True)
class Plane:
    """One plane of a z-stack: an image file (or one page of it) at `z_um` micrometres.

    `page` is the page index inside a multi-page TIFF (None for a one-image
    file); `focus_score` is a reference score given by a CSV stack, if any.
    Nothing is read until `load()`.
    """

    path: str
    z_um: float
    page: int | None = None
    focus_score: float | None = None

    @property
    def label(self) -> str:
        """Short display name: the file name, with `#page` for a page of a multi-page TIFF."""
        name = Path(self.path).name
        return name if self.page is None else f"{name}#{self.page}"

    def load(self) -> np.ndarray:
        """The plane's pixels, (H, W) grey or (H, W, 3|4) RGB(A); raises `StackError`."""
        return read_image(self.path, self.page)

    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels from the file header (no decoding); raises `StackError`."""
        return read_image_shape(self.path, self.page)


@dataclass
class ZStack:
    """A through-focus series: `planes` sorted by z (µm, ascending).

    `name` is the stack's name (folder or file stem), `source` the path it was
    read from, `z_step_um` the nominal step when the format records one, and
    `skipped` the image files of a folder that were ignored because their name
    carries no z position. Construction sorts the planes; it does not validate
    them (call `validate`).
    """

    name: str
    planes: list[Plane]
    source: str = ""
    z_step_um: float | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.planes = sorted(self.planes, key=lambda p: p.z_um)

    def __len__(self) -> int:
        return len(self.planes)

    @property
    def z_um(self) -> np.ndarray:
        """The planes' z positions in micrometres, ascending (float64 array)."""
        return np.array([p.z_um for p in self.planes], dtype=np.float64)

    def images(self) -> list[np.ndarray]:
        """Load every plane's pixels, in z order; raises `StackError` naming a bad file."""
        return [p.load() for p in self.planes]

    def validate(self, min_planes: int = 2, *, check_sizes: bool = True) -> ZStack:
        """Check the stack can make a focus curve; return it for chaining.

        Raises `StackError` with one clear sentence when the stack has fewer than
        `min_planes` planes, two planes at the same z (within 1 nm), a non-finite
        z, or (with `check_sizes`, read from file headers) planes of different
        pixel sizes.
        """
        n = len(self.planes)
        if n < min_planes:
            raise StackError(
                f"stack {self.name!r} has {n} plane{'s' if n != 1 else ''}; "
                f"at least {min_planes} are needed for a focus curve"
            )
        for plane in self.planes:
            if not math.isfinite(plane.z_um):
                raise StackError(f"stack {self.name!r}: {plane.label} has z = {plane.z_um}")
        for a, b in zip(self.planes, self.planes[1:], strict=False):
            if abs(b.z_um - a.z_um) < 1e-3:
                raise StackError(
                    f"stack {self.name!r} has two planes at z = {a.z_um:g} µm: "
                    f"{a.label} and {b.label}"
                )
        if check_sizes and n:
            first = self.planes[0]
            h0, w0 = first.shape()
            for plane in self.planes[1:]:
                h, w = plane.shape()
                if (h, w) != (h0, w0):
                    raise StackError(
                        f"planes of stack {self.name!r} differ in size: {first.label} is "
                        f"{w0}×{h0} px but {plane.label} is {w}×{h} px"
                    )
        return self


def _compile_pattern(pattern: str | None) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern or DEFAULT_Z_PATTERN)
    except re.error as exc:
        raise StackError(f"invalid z pattern {pattern!r}: {exc}") from None
    if "z" not in rx.groupindex and rx.groups < 1:
        raise StackError(
            f"z pattern {pattern!r} needs a group capturing the z value, e.g. (?P<z>...)"
        )
    return rx


def z_from_name(name: str, pattern: str | None = None) -> float | None:
    """The z position (µm) in a file name (extension removed), or None if it has none.

    `pattern` is a regex searched in the name without its extension; its named
    group `z` (or else its first group) must capture a float. Default:
    `DEFAULT_Z_PATTERN` (`<anything>_z<float>`, optional `um` suffix). Raises
    `StackError` for an invalid pattern or a captured value that is not a number.
    """
    rx = _compile_pattern(pattern)
    stem = Path(name).stem
    m = rx.search(stem)
    if m is None:
        return None
    text = m.group("z") if "z" in rx.groupindex else m.group(1)
    try:
        z = float(text)
    except (TypeError, ValueError):
        raise StackError(f"{name}: z value {text!r} is not a number") from None
    if not math.isfinite(z):
        raise StackError(f"{name}: z value {text!r} is not finite")
    return z


def _read_folder(folder: Path, pattern: str | None) -> ZStack:
    _compile_pattern(pattern)  # a bad pattern is an error even for an empty folder
    planes: list[Plane] = []
    skipped: list[str] = []
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    for p in files:
        z = z_from_name(p.name, pattern)
        if z is None:
            skipped.append(str(p))
        else:
            planes.append(Plane(str(p), z))
    if not files:
        raise StackError(f"folder {folder} holds no TIFF, PNG or JPEG images")
    if not planes:
        raise StackError(
            f"none of the {len(files)} images in {folder} has a z position in its name "
            f"(expected names like {folder.name}_z-1.5.tif; pattern "
            f"{pattern or DEFAULT_Z_PATTERN!r})"
        )
    return ZStack(name=folder.name, planes=planes, source=str(folder), skipped=skipped)


def _ome_z(ome_xml: str, n_planes: int) -> tuple[float | None, list[float] | None]:
    """(PhysicalSizeZ in µm, per-plane PositionZ list in µm) from OME-XML; None where absent."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None, None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None
    step = None
    size = pixels.get("PhysicalSizeZ")
    if size is not None:
        scale = _UNIT_UM.get(pixels.get("PhysicalSizeZUnit", "µm"))
        try:
            value = float(size) * scale if scale is not None else None
        except ValueError:
            value = None
        if value is not None and math.isfinite(value) and value > 0:
            step = value
    positions: dict[int, float] = {}
    for el in pixels:
        if el.tag.rsplit("}", 1)[-1] != "Plane" or el.get("PositionZ") is None:
            continue
        if int(el.get("TheC", 0)) != 0 or int(el.get("TheT", 0)) != 0:
            continue
        scale = _UNIT_UM.get(el.get("PositionZUnit", "µm"))
        try:
            z = float(el.get("PositionZ", "nan")) * (scale if scale is not None else math.nan)
        except ValueError:
            continue
        if math.isfinite(z):
            positions[int(el.get("TheZ", 0))] = z
    plane_z = [positions[i] for i in range(n_planes)] if len(positions) == n_planes else None
    if plane_z is not None and len(set(plane_z)) < n_planes:
        plane_z = None  # a constant PositionZ (common default) says nothing about z
    return step, plane_z


def _imagej_step(meta: dict | None) -> float | None:
    if not meta or "spacing" not in meta:
        return None
    scale = _UNIT_UM.get(str(meta.get("unit", "micron")).strip().replace("\\u00B5", "µ"))
    try:
        step = float(meta["spacing"]) * scale if scale is not None else None
    except (TypeError, ValueError):
        return None
    return step if step is not None and math.isfinite(step) and step > 0 else None


def _read_multipage_tiff(path: Path, z_step_um: float | None) -> ZStack:
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            axes, shape = series.axes, series.shape
            n_pages = len(series.pages)
            ome = tf.ome_metadata if tf.is_ome else None
            imagej = tf.imagej_metadata if tf.is_imagej else None
    except FileNotFoundError:
        raise StackError(f"stack file not found: {path}") from None
    except Exception as exc:
        raise StackError(f"cannot read TIFF stack {path}: {exc}") from None
    image_axes = set("YXS")
    extra = {ax: n for ax, n in zip(axes, shape, strict=True) if ax not in image_axes and n > 1}
    z_axes = [ax for ax in extra if ax in "ZIQ"]
    if len(extra) > 1 or (extra and not z_axes):
        described = ", ".join(f"{n} along {ax}" for ax, n in extra.items())
        raise StackError(
            f"{path}: expected one image per z plane, but the TIFF has axes {axes!r} "
            f"({described}); export a single channel and time point"
        )
    n_planes = next(iter(extra.values())) if extra else 1
    if n_pages != n_planes:
        raise StackError(
            f"{path}: {n_planes} planes stored in {n_pages} pages; only one page per plane "
            "is supported"
        )
    ome_step, ome_positions = _ome_z(ome, n_planes) if ome else (None, None)
    if z_step_um is not None:
        if not (math.isfinite(z_step_um) and z_step_um > 0):
            raise StackError(f"z_step_um must be a positive number, got {z_step_um}")
        z_values = [i * z_step_um for i in range(n_planes)]
        step = z_step_um
    elif ome_positions is not None:
        z_values, step = ome_positions, ome_step
    else:
        step = ome_step or _imagej_step(imagej)
        if step is None and n_planes > 1:
            raise StackError(
                f"{path}: the TIFF records no z step (no OME PhysicalSizeZ or ImageJ "
                "spacing); give the plane spacing in µm: --z-step-um on the command line, "
                "z_step_um in Python or in the [replay] settings"
            )
        z_values = [i * (step or 0.0) for i in range(n_planes)]
    planes = [Plane(str(path), float(z), page=i) for i, z in enumerate(z_values)]
    name = path.name.split(".")[0] or path.stem
    return ZStack(name=name, planes=planes, source=str(path), z_step_um=step)


def _read_csv_rows(path: Path, *, not_found: str, what: str) -> tuple[list[str], list[dict]]:
    """Header (stripped names) and rows of a CSV file; `StackError` when it cannot be read."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            return header, list(reader)
    except FileNotFoundError:
        raise StackError(not_found) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StackError(f"cannot read {what}: {exc}") from None


def _read_csv(path: Path) -> ZStack:
    header, rows = _read_csv_rows(
        path, not_found=f"stack file not found: {path}", what=f"CSV stack {path}"
    )
    missing = [c for c in ("image_path", "z_um") if c not in header]
    if missing:
        raise StackError(
            f"{path}: header must be image_path,z_um[,focus_score]; missing {', '.join(missing)}"
        )
    planes = []
    for line, row in enumerate(rows, start=2):
        rel = (row.get("image_path") or "").strip()
        if not rel:
            raise StackError(f"{path} line {line}: empty image_path")
        try:
            z = float(row["z_um"])
            score_text = (row.get("focus_score") or "").strip()
            score = float(score_text) if score_text else None
        except (TypeError, ValueError):
            raise StackError(f"{path} line {line}: z_um/focus_score is not a number") from None
        if not math.isfinite(z):
            raise StackError(f"{path} line {line}: z_um is not finite")
        image = (path.parent / rel).resolve()
        if not image.is_file():
            raise StackError(f"{path} line {line}: image file not found: {image}")
        planes.append(Plane(str(image), z, focus_score=score))
    if not planes:
        raise StackError(f"{path}: lists no images")
    return ZStack(name=path.stem, planes=planes, source=str(path))


def read_stack(
    path: str | Path, *, pattern: str | None = None, z_step_um: float | None = None
) -> ZStack:
    """Read a z-stack from a folder of planes, a multi-page TIFF or a CSV list (see module doc).

    `pattern` (regex for z in file names, folders only; see `z_from_name`) and
    `z_step_um` (plane spacing in µm, multi-page TIFFs only; overrides file
    metadata) are optional. Planes are sorted by z and not yet loaded; the stack
    is not validated (call `ZStack.validate`). Raises `StackError` for a
    missing path, an unsupported file type, or an unusable layout.
    """
    p = Path(path)
    if p.is_dir():
        return _read_folder(p, pattern)
    if not p.exists():
        raise StackError(f"no such file or folder: {p}")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _read_csv(p)
    if suffix in TIFF_SUFFIXES:
        return _read_multipage_tiff(p, z_step_um)
    raise StackError(
        f"{p}: not a z-stack; give a folder of <name>_z<um>.tif images, a multi-page TIFF "
        "or a CSV with image_path,z_um"
    )


@dataclass(frozen=True)
class StackLabel:
    """The manifest entry of one stack of a labelled corpus.

    `best_z_um` is the in-focus z (None when the stack has no independent
    label), `tolerance_um` how far from it a choice still counts as in focus,
    `label` the kind of label (`annotated`, `filename`, `none`), `modality`,
    `source`, `license` free text; `paths` (absolute) and `z_um` list the
    planes in manifest order.
    """

    stack: str
    best_z_um: float | None
    tolerance_um: float | None
    label: str
    modality: str
    source: str
    license: str
    paths: tuple[str, ...]
    z_um: tuple[float, ...]
    na: float | None = None
    magnification: float | None = None
    immersion_index: float | None = None
    pixel_um: float | None = None
    wavelength_nm: float | None = None

    @property
    def dof_um(self) -> float | None:
        """Depth of field (µm) from the recorded optics, None when they are not recorded.

        λ·n/NA² (wave optics; needs `na` and `wavelength_nm`, `immersion_index`
        defaults to 1.0 = air) plus n·e/(M·NA) with the sample-plane pixel
        `pixel_um` standing for e/M (the pixel-limited term; left out without it).
        """
        return depth_of_field_um(self.na, self.wavelength_nm, self.immersion_index,
                                 self.pixel_um)

    @property
    def labelled(self) -> bool:
        """True when the stack has an in-focus z and a tolerance to judge a choice by."""
        return self.best_z_um is not None and self.tolerance_um is not None

    def to_stack(self) -> ZStack:
        """The stack as a `ZStack` using the manifest's z values (not yet loaded)."""
        planes = [Plane(p, z) for p, z in zip(self.paths, self.z_um, strict=True)]
        directory = str(Path(self.paths[0]).parent) if self.paths else ""
        return ZStack(name=self.stack, planes=planes, source=directory)


def _optional_float(text: str | None, where: str) -> float | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise StackError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise StackError(f"{where}: {text!r} is not finite")
    return value


MANIFEST_COLUMNS = ("stack", "path", "z_um", "best_z_um", "tolerance_um", "label")

OPTICS_COLUMNS = ("na", "magnification", "immersion_index", "pixel_um", "wavelength_nm")
"""Optional manifest columns recording the instrument: numerical aperture, total
magnification, immersion refractive index, sample-plane pixel (µm), wavelength (nm)."""


def depth_of_field_um(na: float | None, wavelength_nm: float | None,
                      immersion_index: float | None = None,
                      pixel_um: float | None = None) -> float | None:
    """Depth of field in µm: λ·n/NA² + n·pixel/NA (pixel = sample-plane pixel, µm).

    The same formula as the simulator's objective (`Optics.depth_of_field_um`,
    where e/M is the sample-plane pixel). Returns None when `na` or
    `wavelength_nm` is missing or not positive; `immersion_index` None means air.
    """
    if not na or not wavelength_nm or na <= 0 or wavelength_nm <= 0:
        return None
    n = immersion_index if immersion_index and immersion_index >= 1.0 else 1.0
    dof = wavelength_nm / 1000.0 * n / na**2
    if pixel_um is not None and pixel_um > 0:
        dof += n * pixel_um / na
    return float(dof)


def read_manifest(directory: str | Path) -> dict[str, StackLabel]:
    """Per-stack labels and plane paths from `directory/manifest.csv`, in file order.

    Columns: `stack, path, z_um, best_z_um, tolerance_um, label` (required),
    `modality, source, license` and the optics `na, magnification,
    immersion_index, pixel_um, wavelength_nm` (optional: absent or empty is
    None; read from the stack's first row); paths are relative to `directory`.
    Raises `StackError` when the manifest is missing, lacks a column, has a
    non-numeric z or optics value (or one not positive), or gives one stack two
    different labels.
    """
    root = Path(directory)
    manifest = root / "manifest.csv"
    header, rows = _read_csv_rows(
        manifest, not_found=f"no manifest.csv in {root}", what=str(manifest)
    )
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise StackError(f"{manifest}: missing column(s) {', '.join(missing)}")
    grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in enumerate(rows, start=2):
        name = (row.get("stack") or "").strip()
        if not name:
            raise StackError(f"{manifest} line {line}: empty stack name")
        grouped.setdefault(name, []).append((line, row))
    labels: dict[str, StackLabel] = {}
    for name, entries in grouped.items():
        line0, first = entries[0]
        best = _optional_float(first.get("best_z_um"), f"{manifest} line {line0} best_z_um")
        tol = _optional_float(first.get("tolerance_um"), f"{manifest} line {line0} tolerance_um")
        paths, zs = [], []
        for line, row in entries:
            where = f"{manifest} line {line}"
            if (
                _optional_float(row.get("best_z_um"), where) != best
                or _optional_float(row.get("tolerance_um"), where) != tol
            ):
                raise StackError(f"{where}: stack {name!r} has conflicting best_z_um/tolerance_um")
            z = _optional_float(row.get("z_um"), f"{where} z_um")
            if z is None:
                raise StackError(f"{where}: z_um is empty")
            rel = (row.get("path") or "").strip()
            if not rel:
                raise StackError(f"{where}: empty path")
            paths.append(str((root / rel).resolve()))
            zs.append(z)
        optics: dict[str, float | None] = {}
        for col in OPTICS_COLUMNS:
            value = _optional_float(first.get(col), f"{manifest} line {line0} {col}")
            if value is not None and value <= 0:
                raise StackError(f"{manifest} line {line0}: {col} must be positive, got {value}")
            optics[col] = value
        labels[name] = StackLabel(
            stack=name,
            best_z_um=best,
            tolerance_um=tol,
            label=(first.get("label") or "").strip() or ("none" if best is None else "unknown"),
            modality=(first.get("modality") or "").strip(),
            source=(first.get("source") or "").strip(),
            license=(first.get("license") or "").strip(),
            paths=tuple(paths),
            z_um=tuple(zs),
            **optics,
        )
    return labels


def iter_corpus(
    directory: str | Path, *, pattern: str | None = None
) -> Iterable[tuple[ZStack, StackLabel | None]]:
    """The stacks of a corpus folder with their labels.

    With a `manifest.csv` the stacks (and labels) come from it; without one,
    each sub-folder holding `<name>_z<um>` images is an unlabelled stack
    (label None). Raises `StackError` as `read_manifest` / `read_stack` do, and
    when the folder holds no stack at all.
    """
    root = Path(directory)
    if not root.is_dir():
        raise StackError(f"no such folder: {root}")
    if (root / "manifest.csv").is_file():
        for label in read_manifest(root).values():
            yield label.to_stack(), label
        return
    found = False
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            stack = read_stack(sub, pattern=pattern)
        except StackError:
            continue  # a folder without z-named images is not a stack
        found = True
        yield stack, None
    if not found:
        raise StackError(f"{root} has no manifest.csv and no sub-folder of z-named images")


__all__ = [
    "DEFAULT_Z_PATTERN",
    "IMAGE_SUFFIXES",
    "MANIFEST_COLUMNS",
    "OPTICS_COLUMNS",
    "Plane",
    "StackLabel",
    "ZStack",
    "depth_of_field_um",
    "iter_corpus",
    "read_image",
    "read_image_shape",
    "read_manifest",
    "read_stack",
    "z_from_name",
]
