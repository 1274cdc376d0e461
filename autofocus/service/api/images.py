"""Decoding uploaded frames (TIFF, PNG, NPY) into 2-D arrays, with size guards.

The format is recognised from the file's first bytes, never from its name.
A multi-page TIFF or a 3-D NPY array (n, H, W) gives several frames; an
(H, W, 3|4) array is one colour frame. Corrupt or unsupported data raises
`ImageError`; frames larger than `max_pixels` raise `ImageError` before
they are decoded (decompression bombs). `count_values` reads only the headers,
so a request's total can be checked against its budget before anything is
decoded (`PixelBudgetExceeded`); running out of memory while decoding raises
`DecodeOutOfMemory`, never "corrupt".
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

from autofocus.errors import ImageError

MAX_FRAME_PIXELS = 64 * 1024 * 1024


class PixelBudgetExceeded(Exception):
    """The uploads of one request decode to more pixels than its budget (HTTP 413)."""


class DecodeOutOfMemory(Exception):
    """The daemon ran out of memory decoding an upload (HTTP 503): not the file's fault."""


def count_values(data: bytes, filename: str = "upload") -> int:
    """Pixel values (H × W × channels, all pages) that `data` decodes to, from its headers.

    Nothing is decoded. Raises `ImageError` naming `filename` for data that is
    empty, of an unknown format or has unreadable headers.
    """
    if not data:
        raise ImageError(f"{filename}: the file is empty")
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                return sum(math.prod(map(int, page.shape)) for page in tif.pages)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                return img.width * img.height * max(1, len(img.getbands()))
        if data[:6] == b"\x93NUMPY":
            return math.prod(_npy_header(io.BytesIO(data))[0])
        raise ImageError("not a TIFF, PNG or NPY file")
    except ImageError as exc:
        raise ImageError(f"{filename}: {exc}") from None
    except MemoryError:
        raise DecodeOutOfMemory(f"{filename}: the daemon ran out of memory reading it") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable header means a corrupt file
        raise ImageError(f"{filename}: corrupt or unsupported image ({exc})") from None


def check_budget(uploads: list[tuple[str, bytes]], max_values: int) -> int:
    """Sum `count_values` over `uploads` (name, bytes); raise `PixelBudgetExceeded` past
    `max_values` (before anything is decoded). Returns the total."""
    total = 0
    for filename, data in uploads:
        total += count_values(data, filename)
        if total > max_values:
            raise PixelBudgetExceeded(
                f"the uploaded files decode to more than {max_values:,} pixels "
                f"(score_max_pixels; reached at {filename}); send fewer or smaller frames "
                "per request"
            )
    return total


def decode_frames(
    data: bytes, filename: str = "upload", *, max_pixels: int = MAX_FRAME_PIXELS
) -> list[np.ndarray]:
    """Frames in `data` (TIFF, PNG or NPY bytes) as 2-D or (H, W, 3|4) arrays.

    Raises `ImageError` naming `filename` when the data is empty, of an unknown
    format, corrupt, has no pixels, too many pixels, or a non-numeric dtype.
    """
    if not data:
        raise ImageError(f"{filename}: the file is empty")
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            frames = _decode_tiff(data, max_pixels)
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            frames = _decode_png(data, max_pixels)
        elif data[:6] == b"\x93NUMPY":
            frames = _decode_npy(data, max_pixels)
        else:
            raise ImageError("not a TIFF, PNG or NPY file")
    except ImageError as exc:
        raise ImageError(f"{filename}: {exc}") from None
    except MemoryError:
        raise DecodeOutOfMemory(
            f"{filename}: the daemon ran out of memory decoding it (the file itself may be "
            "fine); try again with fewer or smaller frames"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means a corrupt file
        raise ImageError(f"{filename}: corrupt or unsupported image ({exc})") from None
    out: list[np.ndarray] = []
    for frame in frames:
        out.extend(_split_frames(np.asarray(frame), filename))
    if not out:
        raise ImageError(f"{filename}: no image data")
    return out


def _split_frames(arr: np.ndarray, filename: str) -> list[np.ndarray]:
    if arr.dtype.kind not in "uifb":
        raise ImageError(f"{filename}: pixel type {arr.dtype} is not numeric")
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.size == 0:
        raise ImageError(f"{filename}: the image has no pixels")
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        return [arr]  # one colour frame
    if arr.ndim == 3:
        return [arr[i] for i in range(arr.shape[0])]
    raise ImageError(f"{filename}: expected a 2-D image or a stack of them, got shape {arr.shape}")


def _check_pixels(shape: tuple[int, ...], max_pixels: int) -> None:
    n = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if n > max_pixels:
        raise ImageError(f"the image has {n} values, more than the limit of {max_pixels}")


def _decode_tiff(data: bytes, max_pixels: int) -> list[np.ndarray]:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        pages = list(tif.pages)
        if not pages:
            raise ImageError("the TIFF has no pages")
        frames = []
        total = 0
        for page in pages:
            shape = tuple(page.shape)
            _check_pixels(shape, max_pixels)
            total += int(np.prod(shape))
            _check_pixels((total,), max_pixels)
            frames.append(page.asarray())
        return frames


def _decode_png(data: bytes, max_pixels: int) -> list[np.ndarray]:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            _check_pixels((img.width, img.height), max_pixels)
            img.load()
            if img.mode == "P":
                img = img.convert("RGB")
            return [np.asarray(img)]


def _decode_npy(data: bytes, max_pixels: int) -> list[np.ndarray]:
    buf = io.BytesIO(data)
    shape, _dtype = _npy_header(buf)
    _check_pixels(shape, max_pixels)
    buf.seek(0)
    return [np.load(buf, allow_pickle=False)]


def _npy_header(buf: io.BytesIO) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(buf)
    elif version == (2, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(buf)
    else:
        raise ImageError(f"unsupported NPY version {version}")
    return tuple(int(d) for d in shape), dtype
