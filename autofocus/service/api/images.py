"""Decoding uploaded frames (TIFF, PNG, NPY) into 2-D arrays, with size guards.

The format is recognised from the file's first bytes, never from its name.
A multi-page TIFF or a 3-D NPY array (n, H, W) gives several frames; an
(H, W, 3|4) array is one colour frame. Corrupt or unsupported data raises
`ImageError`; frames larger than `max_pixels` raise `ImageError` before
they are decoded (decompression bombs). `upload_cost` reads only the headers
(TIFF pages up to a cap, PNG IHDR, NPY header), so a request's pixels and bytes
can be checked against its budget before anything is decoded
(`PixelBudgetExceeded`, 413), and `ByteBudget` shares one memory budget between
concurrent requests (wait briefly, then `ScoreMemoryBusy`, 503); running out of
memory while decoding raises `DecodeOutOfMemory`, never "corrupt".
"""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from autofocus.errors import ImageError

MAX_FRAME_PIXELS = 64 * 1024 * 1024


class PixelBudgetExceeded(Exception):
    """The uploads of one request decode to more pixels than its budget (HTTP 413)."""


class ByteBudgetExceeded(PixelBudgetExceeded):
    """The uploads of one request would need more memory to decode and score than all
    requests together may use (`score_memory_mb`; HTTP 413)."""


class ScoreMemoryBusy(Exception):
    """Other uploads hold the shared memory budget for too long; retry shortly (HTTP 503)."""


class DecodeOutOfMemory(Exception):
    """The daemon ran out of memory decoding an upload (HTTP 503): not the file's fault."""


# Working memory of scoring, per decoded value, on top of the decoded frame itself: the grey
# float32 copy and the measure's intermediates (gradients, their squares). Measured: one
# 5792² float64 frame lifted the daemon's peak by ~660 MB = 268 MB decoded + ~12 B/value.
SCORING_BYTES_PER_VALUE = 16
MAX_HEADER_FRAMES = 1024  # pages read from a TIFF's headers before it is refused


@dataclass(frozen=True)
class UploadCost:
    """What one upload decodes to, from its headers only: `values` (H × W × channels, all
    frames), `frames`, and `bytes` (decoded bytes plus scoring's working memory)."""

    values: int
    frames: int
    bytes: int

    @classmethod
    def of(cls, values: int, frames: int, decoded_bytes: int) -> UploadCost:
        """The cost of `values` decoded into `decoded_bytes`, plus scoring's working memory."""
        return cls(values, frames, decoded_bytes + SCORING_BYTES_PER_VALUE * values)


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels (palette -> RGB)


def upload_cost(data: bytes, filename: str = "upload", *,
                max_frames: int = MAX_HEADER_FRAMES) -> UploadCost:
    """`UploadCost` of `data` read from its headers (TIFF pages, PNG IHDR, NPY header);
    nothing is decoded. A TIFF with more than `max_frames` pages raises
    `PixelBudgetExceeded` after reading that many page headers (not all of them). Raises
    `ImageError` naming `filename` for data that is empty, of an unknown format or has
    unreadable headers."""
    if not data:
        raise ImageError(f"{filename}: the file is empty")
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            import tifffile

            values = nbytes = frames = 0
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                for page in tif.pages:
                    frames += 1
                    if frames > max_frames:
                        raise PixelBudgetExceeded(
                            f"{filename}: the TIFF has more than {max_frames} pages; send "
                            "fewer frames per request"
                        )
                    n = math.prod(map(int, page.shape))
                    values += n
                    nbytes += n * np.dtype(page.dtype).itemsize
            return UploadCost.of(values, frames, nbytes)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            # IHDR is the first chunk: width, height, bit depth, colour type at fixed offsets.
            if len(data) < 26 or data[12:16] != b"IHDR":
                raise ImageError("corrupt PNG header")
            width, height = struct.unpack(">II", data[16:24])
            depth, colour = data[24], data[25]
            channels = _PNG_CHANNELS.get(colour)
            if channels is None or width == 0 or height == 0:
                raise ImageError("corrupt PNG header")
            values = width * height * channels
            nbytes = values * (2 if depth == 16 else 1)
            return UploadCost.of(values, 1, nbytes)
        if data[:6] == b"\x93NUMPY":
            shape, dtype = _npy_header(io.BytesIO(data))
            values = math.prod(shape)
            frames = shape[0] if len(shape) == 3 and shape[-1] not in (3, 4) else 1
            nbytes = values * np.dtype(dtype).itemsize
            return UploadCost.of(values, frames, nbytes)
        raise ImageError("not a TIFF, PNG or NPY file")
    except (ImageError, PixelBudgetExceeded) as exc:
        if isinstance(exc, ImageError) and not str(exc).startswith(f"{filename}:"):
            raise ImageError(f"{filename}: {exc}") from None
        raise
    except MemoryError:
        raise DecodeOutOfMemory(f"{filename}: the daemon ran out of memory reading it") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable header means a corrupt file
        raise ImageError(f"{filename}: corrupt or unsupported image ({exc})") from None


class ByteBudget:
    """Memory (bytes) that all `/v1/score` requests together may hold for decoding and
    scoring. `reserve(n, wait_s)` blocks up to `wait_s` seconds for room, then raises
    `ScoreMemoryBusy`; a request needing more than the whole budget raises
    `ByteBudgetExceeded` at once. Thread-safe (requests decode in the thread pool)."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = int(total_bytes)
        self.used_bytes = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, wait_s: float) -> Iterator[None]:
        if nbytes > self.total_bytes:
            raise ByteBudgetExceeded(
                f"the uploaded files need about {nbytes / 2**20:,.0f} MiB to decode and score, "
                f"more than the {self.total_bytes / 2**20:,.0f} MiB all uploads may use "
                "(score_memory_mb); send fewer or smaller frames per request"
            )
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.used_bytes + nbytes <= self.total_bytes, timeout=wait_s
            ):
                used_mib, total_mib = self.used_bytes / 2**20, self.total_bytes / 2**20
                raise ScoreMemoryBusy(
                    f"other uploads are using the memory for scoring ({used_mib:,.0f} of "
                    f"{total_mib:,.0f} MiB, score_memory_mb); try again in a few seconds"
                )
            self.used_bytes += nbytes
        try:
            yield
        finally:
            with self._cond:
                self.used_bytes -= nbytes
                self._cond.notify_all()


def count_values(data: bytes, filename: str = "upload") -> int:
    """Pixel values (H × W × channels, all pages) that `data` decodes to, from its headers
    (`upload_cost(...).values`); nothing is decoded. Raises `ImageError` naming `filename`."""
    return upload_cost(data, filename).values


def check_budget(uploads: list[tuple[str, bytes]], max_values: int) -> int:
    """Sum the `upload_cost` of `uploads` (name, bytes) from their headers; raise
    `PixelBudgetExceeded` past `max_values` values (before anything is decoded). Returns the
    bytes they need to decode and score (`UploadCost.bytes` summed)."""
    total = nbytes = 0
    for filename, data in uploads:
        cost = upload_cost(data, filename)
        total += cost.values
        nbytes += cost.bytes
        if total > max_values:
            raise PixelBudgetExceeded(
                f"the uploaded files decode to more than {max_values:,} pixels "
                f"(score_max_pixels; reached at {filename}); send fewer or smaller frames "
                "per request"
            )
    return nbytes


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
