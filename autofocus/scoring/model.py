"""The learned focus model at run time: an ONNX file + model card, scored with onnxruntime.

    from autofocus.scoring.registry import get_scorer
    scorer = get_scorer("focusnet")                 # the model shipped in `models/`
    scorer = get_scorer("focusnet", model_path="my.onnx", provider="cuda", max_batch=16)
    scores = scorer.score(frames)                   # float64 (n,), higher = sharper
    scorer.active_provider                          # "CPUExecutionProvider", ...

Every frame goes through `autofocus.scoring.preprocess.prepare` (the same function the
model was trained on; the card's preprocessing version must match), is
centre-cropped to whole 64-px patches (mirror-padded when smaller than one
patch), and frames of equal size are stacked into batches of at most
`max_batch` that go to onnxruntime in one call each: one host→device copy per
batch, never per patch (the patches are cut inside the graph).

Everything that can be wrong with the model is found at construction and
raised as one `ModelError`: a missing or unreadable file or card, a file whose
SHA-256 differs from the card's, a card for another preprocessing version, a
graph whose inputs/outputs do not match the card, an execution provider that
was explicitly asked for but does not work, or a smoke inference that fails.
No torch is imported here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autofocus.errors import ImageError, ModelError
from autofocus.logging import get_logger
from autofocus.scoring.base import DefocusEstimate, DefocusEstimator, ScorerEntry
from autofocus.scoring.defocus import (
    FRAME_BANDS,
    FRAME_CONTRAST,
    PairHead,
    fit_focus,
    frame_spectrum,
)
from autofocus.scoring.empty_field import combine_no_specimen, empty_field_p
from autofocus.scoring.preprocess import (
    PREPROCESS_VERSION,
    RAW_PREPROCESS_VERSION,
    SUPPORTED_PREPROCESS_VERSIONS,
    prepare,
    prepare_raw,
    validate_roi,
)

log = get_logger(__name__)

DEFAULT_MODEL_FILE = "focusnet-v1.onnx"
"""The first shipped model's file name: the fallback when no `focusnet-v<N>.onnx` is found."""

_VERSIONED_MODEL = re.compile(r"^focusnet-v(\d+)\.onnx$")

ProviderChoice = Literal["auto", "cpu", "cuda", "tensorrt"]

CPU_BATCH_PIXELS = 1 << 22
"""On CPU (max_batch None), frames of one size are stacked up to this many pixels per call."""

CPU_MAX_BATCH = 32
"""...and at most this many frames per call."""

GRAPH_OPTIMIZATION = "ORT_ENABLE_EXTENDED"
"""onnxruntime graph optimisation level (chosen by measurement; see models/README.md)."""

DEFAULT_GPU_BATCH = 16
"""Frames per onnxruntime call on a GPU provider when `max_batch` is not given."""

_PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _models_dir() -> Path:
    try:
        return Path(str(resources.files("autofocus_models")))
    except ModuleNotFoundError:  # pragma: no cover - models package not installed
        return Path(__file__).resolve().parents[1] / "models"


def shipped_models() -> dict[int, Path]:
    """The versioned models shipped in `models/`: {version number: .onnx path}.

    Only files named `focusnet-v<N>.onnx` with a card (`.json`) beside them count.
    """
    found = {}
    directory = _models_dir()
    if directory.is_dir():
        for path in directory.iterdir():
            m = _VERSIONED_MODEL.match(path.name)
            if m and card_path_for(path).is_file():
                found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def default_model_path() -> Path:
    """The model `get_scorer("focusnet")` serves: the newest shipped full model (may not exist).

    A full model offers the defocus estimate as well as the score (its card
    declares `DEFOCUS_OUTPUTS`): a search that asks `focusnet` for a distance
    to focus keeps getting one when a newer score-only model ships
    (focusnet-v4 is one). Without any full model, the newest shipped file.
    Every version stays loadable as `get_scorer("focusnet-v<N>")` or by `model_path`.
    """
    models = shipped_models()
    full = [v for v, path in models.items()
            if offers_defocus(_card_or_empty(card_path_for(path)))]
    if full:
        return models[max(full)]
    return models[max(models)] if models else _models_dir() / DEFAULT_MODEL_FILE


def _card_or_empty(card_path: Path) -> dict[str, Any]:
    try:
        return load_card(card_path)
    except ModelError:
        return {}


def model_id(card: dict[str, Any], model_path: str | Path) -> str:
    """A model's id as its card gives it: `name version` (e.g. `focusnet v3-calibrated`),
    else the file's stem."""
    parts = [str(card[k]) for k in ("name", "version") if card.get(k)]
    return " ".join(parts) or Path(model_path).stem


def model_label(model_path: str | Path, card: dict[str, Any]) -> str:
    """How reports name a model: `focusnet` for a shipped file, else the file name with
    its card's id, e.g. `site.onnx (focusnet v3-calibrated)`, so a table or a job result
    says which file scored (a calibrated model is not the stock one)."""
    path = Path(model_path)
    try:
        shipped = path.resolve() in {p.resolve() for p in shipped_models().values()}
    except OSError:
        shipped = False
    return OnnxFocusScorer.name if shipped else f"{path.name} ({model_id(card, path)})"


def card_path_for(model_path: str | Path) -> Path:
    """The model card that belongs to `model_path`: same name with `.json`."""
    return Path(model_path).with_suffix(".json")


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class InputSpec:
    """What the graph accepts, read from the card: input name, patch size, smallest side (px)."""

    name: str
    patch_px: int
    min_side_px: int


def load_card(card_path: str | Path) -> dict[str, Any]:
    """Read and sanity-check a model card JSON; raises `ModelError` naming the problem."""
    path = Path(card_path)
    if not path.is_file():
        raise ModelError(f"model card {path} is missing (it must sit next to the .onnx file)")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model card {path} is unreadable: {exc}") from None
    if not isinstance(card, dict):
        raise ModelError(f"model card {path} is not a JSON object")
    for key in ("sha256", "preprocess", "input", "outputs"):
        if key not in card:
            raise ModelError(f"model card {path} lacks the required field {key!r}")
    return card


def fit_to_patches(img: np.ndarray, patch_px: int) -> np.ndarray:
    """Centre-crop a 2-D image to whole `patch_px` patches; mirror-pad a side shorter than one.

    The graph ignores any remainder anyway; cropping here keeps the grid
    centred (as `autofocus.scoring.preprocess.tile_grid` does). Returns a view when
    only cropping is needed.
    """
    h, w = img.shape
    if h < patch_px or w < patch_px:
        ph, pw = max(0, patch_px - h), max(0, patch_px - w)
        # Repeated mirror padding also covers images smaller than half a patch.
        while ph or pw:
            sy, sx = min(ph, img.shape[0]), min(pw, img.shape[1])
            img = np.pad(img, ((sy // 2, sy - sy // 2), (sx // 2, sx - sx // 2)),
                         mode="symmetric")
            ph, pw = ph - sy, pw - sx
        h, w = img.shape
    rows, cols = h // patch_px, w // patch_px
    y0, x0 = (h - rows * patch_px) // 2, (w - cols * patch_px) // 2
    return img[y0 : y0 + rows * patch_px, x0 : x0 + cols * patch_px]


def model_input(frame: np.ndarray, preprocess_version: str, patch_px: int, *,
                roi: Sequence[int] | None = None) -> np.ndarray:
    """The float32 (h, w) image a model with card preprocessing `preprocess_version` sees.

    The one definition used by serving (`OnnxFocusScorer.prepare`), by training
    (`autofocus_models.pipeline`) and by on-site calibration: version "1" is
    `prepare` (percentile-normalised, focusnet-v1/v2), version "2" is
    `prepare_raw` (grey, camera units, focusnet-v3); then `fit_to_patches`.
    Raises `ImageError` for a bad frame or ROI and `ModelError` for an unknown version.
    """
    if preprocess_version == RAW_PREPROCESS_VERSION:
        img = prepare_raw(frame, roi=roi)
    elif preprocess_version == PREPROCESS_VERSION:
        img = prepare(frame, roi=roi)
    else:
        raise ModelError(f"unknown preprocessing version {preprocess_version!r}")
    if img.ndim != 2:
        raise ImageError(f"preprocessing returned shape {img.shape}; expected a 2-D image")
    return fit_to_patches(img, patch_px)


def _quiet_ort_logging(ort: Any) -> None:
    # onnxruntime prints an error for every GPU provider whose libraries are missing;
    # the probe below reports the outcome itself, once, as a structured log event.
    ort.set_default_logger_severity(4)


class OnnxFocusScorer:
    """The `focusnet` scorer: a focus model in ONNX, checked against its model card.

    `model_path` the .onnx file (None = the model shipped in `models/`);
    `card_path` its card (None = same name with `.json`); `provider` "auto"
    (CUDA when present *and* working, else CPU), "cpu", "cuda" or "tensorrt"
    (an explicit GPU choice that does not work raises `ModelError`;
    `execution_provider` is accepted as an alias, matching the settings
    name); `max_batch` frames per onnxruntime call (≥ 1; None = on CPU as many
    frames of one size as fit `CPU_BATCH_PIXELS` (one 2048² frame, 32 of 256²),
    which measured fastest, `DEFAULT_GPU_BATCH` on a GPU); `roi` (x, y, w, h)
    pixels cropped from every frame before preprocessing; `threads`
    onnxruntime intra-op threads (None = onnxruntime's default: all cores).

    `score(frames)` returns float64 (n,), higher = sharper: for focusnet-v1…v3
    in [0, 1], the model's estimate of 1/(1+(dz/σ)²); for a card with
    `"score_kind": "logodds"` (focusnet-v4) the odds exp(logit) > 0, computed in
    float64 from the graph's unbounded log-odds, so it never saturates and
    stays positive like a classical energy (the searches take its log and
    ratios). Raises `ModelError` at construction (see module doc) and
    `ImageError` for a bad frame.
    """

    name = "focusnet"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        card_path: str | Path | None = None,
        provider: ProviderChoice | str = "auto",
        execution_provider: str | None = None,
        max_batch: int | None = None,
        roi: Sequence[int] | None = None,
        threads: int | None = None,
    ) -> None:
        if execution_provider is not None:
            provider = execution_provider
        provider = str(provider).lower()
        if provider not in ("auto", *_PROVIDER_NAMES):
            raise ModelError(
                f"unknown execution provider {provider!r}; choose auto, cpu, cuda or tensorrt"
            )
        if max_batch is not None and (int(max_batch) != max_batch or max_batch < 1):
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        self.roi = validate_roi(roi) if roi is not None else None
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        if not self.model_path.is_file():
            raise ModelError(f"focus model file {self.model_path} does not exist")
        self.card_path = Path(card_path) if card_path is not None else card_path_for(
            self.model_path
        )
        self.card = load_card(self.card_path)
        self.name = model_label(self.model_path, self.card)
        self._check_card_against_file()
        self.input = self._input_spec()
        self._session, self.active_provider = self._open_session(provider, threads)
        # Measured: on CPU one 2048² frame per call is fastest (no 16 MB batch-assembly
        # copy, the frame stays in cache), but small frames gain from stacking — the
        # graph's fixed per-node cost is shared (256²: 146 → 72 µs per frame in batches
        # of 8). A GPU wants batches to amortise the launch and transfer overheads.
        self._cpu_auto_batch = (max_batch is None
                                and self.active_provider == "CPUExecutionProvider")
        if max_batch is None:
            max_batch = 1 if self._cpu_auto_batch else DEFAULT_GPU_BATCH
        self.max_batch = int(max_batch)
        self._check_graph()
        self._smoke_test()
        self.requested_provider = provider
        self.timing = {"prepare_s": 0.0, "infer_s": 0.0, "frames": 0}
        self._lock = threading.Lock()
        log.info(
            "focusnet.loaded",
            model=str(self.model_path),
            sha256=self.card["sha256"][:12],
            provider=self.active_provider,
            requested=provider,
            max_batch=self.max_batch,
        )

    # -- construction-time checks ---------------------------------------------------------

    def _check_card_against_file(self) -> None:
        digest = sha256_of(self.model_path)
        if digest != self.card["sha256"]:
            raise ModelError(
                f"focus model {self.model_path.name} does not match its card "
                f"{self.card_path.name}: sha256 {digest[:12]}… vs {str(self.card['sha256'])[:12]}…"
                " (the file is corrupt or was replaced; re-export the model or restore the file)"
            )
        version = str(self.card["preprocess"].get("version"))
        if version not in SUPPORTED_PREPROCESS_VERSIONS:
            raise ModelError(
                f"focus model {self.model_path.name} was trained on preprocessing version "
                f"{version}, but this installation's autofocus.scoring.preprocess supports "
                f"versions {', '.join(SUPPORTED_PREPROCESS_VERSIONS)}: retrain or install the "
                "matching model"
            )
        self.preprocess_version = version
        self.score_kind = str(self.card.get("score_kind", "probability"))
        if self.score_kind not in ("probability", "logodds"):
            raise ModelError(f"model card {self.card_path.name} has an unknown score_kind "
                             f"{self.score_kind!r} (probability or logodds)")

    def _input_spec(self) -> InputSpec:
        spec = self.card["input"]
        try:
            return InputSpec(str(spec["name"]), int(spec["patch_px"]), int(spec["min_side_px"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card {self.card_path} has a bad input spec: {exc}") from None

    def _open_session(self, provider: str, threads: int | None) -> tuple[Any, str]:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
            raise ModelError(f"onnxruntime is not installed: {exc}") from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        # ORT_ENABLE_ALL adds NCHWc layout reorders around the strided convolutions; on
        # these small graphs they cost more than they save (`autofocus bench score`).
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
        # Spinning intra-op threads keep burning CPU for a while after each inference;
        # a focus job scores a few frames at a time, so the spin is pure waste.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = set(ort.get_available_providers())
        if provider == "auto":
            candidates = [p for p in ("cuda",) if _PROVIDER_NAMES[p] in available]
        elif provider == "cpu":
            candidates = []
        else:
            candidates = [provider]
        for choice in candidates:
            wanted = _PROVIDER_NAMES[choice]
            chain = [wanted, "CUDAExecutionProvider"] if choice == "tensorrt" else [wanted]
            session, why = self._try_gpu_session(ort, options, [*chain, "CPUExecutionProvider"],
                                                 wanted)
            if session is not None:
                return session, wanted
            if provider != "auto":
                raise ModelError(f"execution provider {choice!r} was requested but {why}")
            log.info("focusnet.provider_unavailable", provider=wanted, reason=why)
        try:
            session = ort.InferenceSession(str(self.model_path), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(
                f"focus model {self.model_path} cannot be loaded by onnxruntime: {exc}"
            ) from None
        return session, "CPUExecutionProvider"

    def _try_gpu_session(self, ort: Any, options: Any, chain: list[str],
                         wanted: str) -> tuple[Any | None, str]:
        """A session whose first provider really is `wanted`, or (None, why not)."""
        if wanted not in set(ort.get_available_providers()):
            return None, f"{wanted} is not in this onnxruntime build"
        _quiet_ort_logging(ort)
        try:
            session = ort.InferenceSession(str(self.model_path), options, providers=chain)
        except Exception as exc:
            return None, f"creating a session with it failed: {exc}"
        finally:
            ort.set_default_logger_severity(2)
        # onnxruntime silently falls back to CPU when the GPU libraries are missing.
        if session.get_providers()[0] != wanted:
            return None, "its libraries or device are missing (onnxruntime fell back to CPU)"
        try:
            probe = np.zeros((1, 1, self.input.min_side_px, self.input.min_side_px), np.float32)
            session.run(None, {self.input.name: probe})
        except Exception as exc:
            return None, f"a test inference on it failed: {exc}"
        return session, ""

    def _check_graph(self) -> None:
        inputs = self._session.get_inputs()
        names = [i.name for i in inputs]
        if len(inputs) != 1 or names[0] != self.input.name:
            raise ModelError(
                f"focus model {self.model_path.name} has inputs {names}, "
                f"its card says [{self.input.name!r}]"
            )
        if inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4:
            raise ModelError(
                f"focus model input {names[0]!r} is {inputs[0].type} {inputs[0].shape}; "
                "expected a float32 (N, 1, H, W) tensor"
            )
        outputs = [o.name for o in self._session.get_outputs()]
        if "score" not in outputs:
            raise ModelError(f"focus model {self.model_path.name} has no 'score' output: {outputs}")
        self._output_index = outputs.index("score")

    def _smoke_test(self) -> None:
        side = max(self.input.min_side_px, self.input.patch_px)
        probe = np.full((1, 1, side, side), 0.5, np.float32)
        try:
            out = self._session.run(None, {self.input.name: probe})[self._output_index]
        except Exception as exc:
            raise ModelError(f"focus model {self.model_path.name} fails a test inference: {exc}"
                             ) from None
        if np.shape(out) != (1,) or not np.all(np.isfinite(out)):
            raise ModelError(
                f"focus model {self.model_path.name} returned {np.shape(out)} / non-finite "
                "scores for a test frame; expected one finite score per frame"
            )

    # -- scoring --------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"OnnxFocusScorer(model={self.model_path.name!r}, "
                f"provider={self.active_provider!r}, max_batch={self.max_batch})")

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The float32 (h, w) model input for one frame (see `model_input`)."""
        return model_input(frame, self.preprocess_version, self.input.patch_px, roi=self.roi)

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Sharpness of each frame, float64 (n,), higher = sharper (see class doc)."""
        if self.score_kind == "logodds":
            return np.exp(self.logodds(frames))
        return self.run(frames, output="score")

    def logodds(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """The graph's log-odds per frame, float64 (n,): `logit` (log of `score` for a
        "logodds" model; the logit before the sigmoid for v1-v3)."""
        if len(frames) == 1:
            return np.asarray(self._run_one(frames[0], ("logit",))[0], dtype=np.float64)
        return self.run(frames, output="logit")

    def run(self, frames: Sequence[np.ndarray], output: str = "score") -> np.ndarray:
        """Run the model on `frames` and return the named output (`score`, `logit`, ...).

        Per-frame outputs come back as float64 (n,); map outputs (`patch_logits`,
        `hidden`, `features`) as a list-like object array of per-frame arrays,
        since frame sizes may differ. Raises `ValueError` for an unknown output.
        """
        return self.run_outputs(frames, (output,))[output]

    def run_outputs(self, frames: Sequence[np.ndarray],
                    outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Several named outputs from one pass over `frames` (see `run` for the shapes)."""
        n = len(frames)
        out_names = [o.name for o in self._session.get_outputs()]
        for output in outputs:
            if output not in out_names:
                raise ValueError(f"the model has no output {output!r}; it has {out_names}")
        ranks = {o.name: len(o.shape) for o in self._session.get_outputs()}
        if n == 0:
            return {o: np.zeros(0, dtype=np.float64) for o in outputs}
        results: dict[str, list[Any]] = {o: [None] * n for o in outputs}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(self._input_shape(frame), []).append(i)
        prepare_s = infer_s = 0.0
        # Frames are prepared chunk by chunk, so memory holds one batch, not the whole call.
        for shape, members in groups.items():
            step = self.max_batch
            if self._cpu_auto_batch and len(shape) == 2:
                step = max(1, min(CPU_MAX_BATCH, CPU_BATCH_PIXELS // (shape[0] * shape[1])))
            for start in range(0, len(members), step):
                t0 = time.perf_counter()
                imgs = [self.prepare(frames[i]) for i in members[start : start + step]]
                t1 = time.perf_counter()
                sub_groups: dict[tuple[int, int], list[int]] = {}
                for j, img in enumerate(imgs):  # the predicted shape is only a grouping hint
                    sub_groups.setdefault(img.shape, []).append(j)
                for js in sub_groups.values():
                    batch = self._batch([imgs[j] for j in js])
                    values = self._session.run(list(outputs), {self.input.name: batch})
                    for name, v in zip(outputs, values, strict=True):
                        for b, j in enumerate(js):
                            i = members[start + j]
                            results[name][i] = (float(v[b]) if ranks[name] == 1
                                                else np.asarray(v[b]))
                prepare_s += t1 - t0
                infer_s += time.perf_counter() - t1
        with self._lock:
            self.timing["prepare_s"] += prepare_s
            self.timing["infer_s"] += infer_s
            self.timing["frames"] += n
        out: dict[str, np.ndarray] = {}
        for name in outputs:
            if ranks[name] == 1:
                values_1d = np.asarray(results[name], dtype=np.float64)
                if not np.all(np.isfinite(values_1d)):
                    bad = int(np.count_nonzero(~np.isfinite(values_1d)))
                    log.warning("focusnet.nonfinite", frames=n, nonfinite=bad, output=name)
                out[name] = values_1d
            else:
                arr = np.empty(n, dtype=object)
                arr[:] = [r[0] if name == "patch_logits" else r for r in results[name]]
                out[name] = arr
        return out

    def _run_one(self, frame: np.ndarray, outputs: Sequence[str]) -> list[Any]:
        """The raw graph `outputs` for one frame, skipping `run_outputs`' batching logic (the
        common case in a search: one frame per move); counted in `timing`."""
        t0 = time.perf_counter()
        img = self.prepare(frame)
        t1 = time.perf_counter()
        values = self._session.run(list(outputs), {self.input.name: self._batch([img])})
        with self._lock:
            self.timing["prepare_s"] += t1 - t0
            self.timing["infer_s"] += time.perf_counter() - t1
            self.timing["frames"] += 1
        return values

    def _input_shape(self, frame: object) -> tuple[int, ...]:
        """The (h, w) `prepare(frame)` will have, from the frame's shape alone (no pixels read).

        A frame whose shape cannot be read returns its raw shape; `prepare` then raises.
        """
        shape = np.shape(frame)
        if len(shape) < 2:
            return tuple(shape)
        h, w = int(shape[0]), int(shape[1])
        if self.roi is not None:
            w, h = self.roi[2], self.roi[3]
        p = self.input.patch_px
        return (max(h, p) // p * p, max(w, p) // p * p)

    @staticmethod
    def _batch(images: list[np.ndarray]) -> np.ndarray:
        if len(images) == 1:
            # A contiguous crop goes in without a copy.
            return np.ascontiguousarray(images[0], dtype=np.float32)[None, None]
        h, w = images[0].shape
        batch = np.empty((len(images), 1, h, w), dtype=np.float32)
        for j, img in enumerate(images):
            batch[j, 0] = img
        return batch

    def describe(self) -> dict[str, Any]:
        """Model, card summary and active provider, for status endpoints and logs."""
        return {
            "scorer": self.name,
            "model_path": str(self.model_path),
            "model_file": self.model_path.name,
            "model_id": model_id(self.card, self.model_path),
            "sha256": self.card["sha256"],
            "model_version": self.card.get("version"),
            "preprocess_version": self.preprocess_version,
            "score_kind": self.score_kind,
            "defocus_estimate": isinstance(self, DefocusEstimator),
            "active_provider": self.active_provider,
            "requested_provider": self.requested_provider,
            "max_batch": self.max_batch,
            "cpu_auto_batch": self._cpu_auto_batch,
        }


DEFOCUS_OUTPUTS = ("distance_dof", "log_distance", "log_distance_var", "no_specimen_p")
"""Graph outputs that make a model a `DefocusEstimator` (focusnet-v3 and later)."""

CACHED_OUTPUTS = ("logit", *DEFOCUS_OUTPUTS, "features")
"""What one pass keeps per frame for a later `estimate` (see `FrameOutputCache`)."""

MIN_SIGMA_DOF = 0.05
"""Floor of a per-frame distance uncertainty (DOF units): the label itself is this coarse."""


class FrameOutputCache:
    """The graph outputs of the last `capacity` frames scored, looked up by the frame itself.

    A search scores each frame as it arrives and then asks for the defocus
    estimate of the whole batch: with this cache the graph runs once per frame.
    The key is where the pixels are (data address, shape, strides, dtype — so
    two views of one crop match) plus a hash of about 4,096 of them, so a driver
    that refills one buffer in place, or a new frame allocated where a freed one
    was, gets fresh outputs (camera noise changes the sample). No frame is kept
    alive by the cache (entries are a few dozen numbers: 2048² frames must not
    pile up in memory). Thread-safe; least recently used entries are dropped
    first.
    """

    def __init__(self, capacity: int = 128) -> None:
        self.capacity = int(capacity)
        self._entries: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(frame: np.ndarray) -> tuple[Any, ...]:
        """Data address, shape, strides, dtype and a strided pixel sample of `frame`."""
        a = np.asarray(frame)
        if a.ndim >= 2:
            sample = a[:: max(1, a.shape[0] // 64), :: max(1, a.shape[1] // 64)]
        else:
            sample = a.reshape(-1)[:: max(1, a.size // 4096)]
        return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str,
                hash(np.ascontiguousarray(sample).tobytes()))

    def get(self, frame: np.ndarray) -> dict[str, Any] | None:
        """The outputs stored for these very pixels, or None."""
        k = self.key(frame)
        with self._lock:
            hit = self._entries.get(k)
            if hit is not None:
                self._entries.move_to_end(k)
            return hit

    def put(self, frame: np.ndarray, outputs: dict[str, Any]) -> None:
        """Remember `outputs` for `frame` (dropping the oldest entries beyond capacity)."""
        k = self.key(frame)
        with self._lock:
            self._entries[k] = outputs
            self._entries.move_to_end(k)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class OnnxDefocusScorer(OnnxFocusScorer):
    """A focus model that also estimates the distance to focus (focusnet-v3 and later).

    Everything `OnnxFocusScorer` does, plus `estimate(frames, z_um, dof_um=)`
    (the `DefocusEstimator` capability). `dof_um` given at construction is the
    default depth of field (µm) for µm conversions, e.g. from the settings'
    optics; a request may override it per call.
    """

    def __init__(self, model_path: str | Path | None = None, *, dof_um: float | None = None,
                 **options: Any) -> None:
        super().__init__(model_path, **options)
        if dof_um is not None and not (math.isfinite(dof_um) and dof_um > 0):
            raise ValueError(f"dof_um must be a positive number of micrometres, got {dof_um!r}")
        self.dof_um = dof_um
        names = {o.name for o in self._session.get_outputs()}
        missing = [o for o in DEFOCUS_OUTPUTS if o not in names]
        if missing:
            raise ModelError(f"focus model {self.model_path.name} lacks the defocus outputs "
                             f"{missing}; its card claims a defocus estimate")
        self.dist_offset = float(self.card.get("defocus", {}).get("dist_offset", 0.3))
        self.pair_head = PairHead.from_card(self.card.get("pair_head"))
        self._cache = FrameOutputCache()

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Sharpness of each frame, float64 (n,) in [0, 1]: sigmoid of the graph's logit.

        Computed here in float64 from `logit`: the graph's float32 `score` output
        rounds to 1.0 for logits above ~16, which would turn the top of a focus
        curve into ties. Asks the graph for the logit alone (fastest); a search
        that will also want `estimate` calls `score_for_estimate` instead.
        """
        if len(frames) == 1:
            logits = np.asarray(self._run_one(frames[0], ("logit",))[0], dtype=np.float64)
        else:
            logits = self.run(frames, output="logit")
        return 1.0 / (1.0 + np.exp(-logits))

    def score_for_estimate(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """`score`, keeping the frames' defocus outputs for a later `estimate` of them.

        The engine scores every frame as it arrives and asks for the batch's
        estimate afterwards: with this the graph runs once per frame, not twice
        (`FrameOutputCache`). Costs about 0.05 ms more per frame than `score` at
        256² on a 2-core CPU (more outputs to fetch), so `score` stays the lean path.
        """
        return 1.0 / (1.0 + np.exp(-self._frame_outputs(frames, reuse=False)["logit"]))

    def _frame_outputs(self, frames: Sequence[np.ndarray], *,
                       reuse: bool) -> dict[str, np.ndarray]:
        """Per-frame graph outputs (`CACHED_OUTPUTS`, `features` as the frame-level
        feature vector (n, k)); every pass is remembered, and with `reuse` a frame
        already in the cache is not run again (`estimate` reuses, `score_for_estimate`
        does not: each of its calls is a real inference)."""
        rows = [self._cache.get(f) if reuse else None for f in frames]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo:
            for i, row in zip(todo, self._run_rows([frames[i] for i in todo]), strict=True):
                self._cache.put(frames[i], row)
                rows[i] = row
        out = {name: np.asarray([r[name] for r in rows], dtype=np.float64)  # type: ignore[index]
               for name in CACHED_OUTPUTS if name != "features"}
        out["features"] = (np.stack([r["features"] for r in rows])  # type: ignore[index]
                           if rows else np.zeros((0, 0)))
        return out

    def _run_rows(self, frames: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """One graph pass over `frames`: per frame, the scalar outputs of `CACHED_OUTPUTS`
        and `features` reduced to its frame-level channels (broadcast over the patches)."""
        if len(frames) == 1:
            values = self._run_one(frames[0], CACHED_OUTPUTS)
            row: dict[str, Any] = {n: float(v[0]) for n, v in
                                   zip(CACHED_OUTPUTS[:-1], values[:-1], strict=True)}
            row["features"] = np.array(values[-1][0, :, 0, 0], dtype=np.float64)
            return [row]
        out = self.run_outputs(frames, CACHED_OUTPUTS)
        return [{**{n: float(out[n][k]) for n in CACHED_OUTPUTS[:-1]},
                 "features": np.asarray(out["features"][k], dtype=np.float64)[:, 0, 0]}
                for k in range(len(frames))]

    def estimate(self, frames: Sequence[np.ndarray], z_um: Sequence[float], *,
                 dof_um: float | None = None) -> DefocusEstimate:
        """Per-frame distance to focus (DOF units) with uncertainty, no-specimen probability,
        and, from frames at ≥ 2 distinct z with a known DOF, the signed focal plane (µm).

        `no_specimen_p` is the larger of the graph's probability and the classical
        empty-field test's (`autofocus.scoring.empty_field`).

        `z_um` the stage z (µm) of each frame; `dof_um` the depth of field in µm
        (None = the scorer's default, which may be None: then no µm figures).
        The focal plane is the inverse-variance weighted V-fit of the distances
        (`autofocus.scoring.defocus.fit_focus`), frames weighted by 1 − their
        no-specimen probability, with the card's pair head (change of band
        energies between two frames of the field, which cancels the specimen)
        deciding which side of each frame pair focus lies on. Raises
        `ValueError` when `z_um` does not have one finite value per frame or
        `dof_um` is not positive, `ImageError` for a bad frame.
        """
        z = np.asarray(z_um, dtype=np.float64).ravel()
        if z.size != len(frames):
            raise ValueError(f"got {len(frames)} frames but {z.size} z positions")
        if not np.all(np.isfinite(z)):
            raise ValueError("z positions must be finite micrometres")
        dof = self.dof_um if dof_um is None else float(dof_um)
        if dof is not None and not (math.isfinite(dof) and dof > 0):
            raise ValueError(f"dof_um must be a positive number of micrometres, got {dof_um!r}")
        out = self._frame_outputs(frames, reuse=True)
        distance = np.maximum(out["distance_dof"], 0.0)
        # The graph regresses log(|dz| + offset) with a Gaussian of variance exp(lv):
        # by the delta method the distance's sigma is (|dz| + offset) · exp(lv / 2).
        lv = np.clip(out["log_distance_var"], -12.0, 6.0)
        sigma = np.maximum(np.exp(out["log_distance"]) * np.exp(0.5 * lv), MIN_SIGMA_DOF)
        greys = [prepare_raw(f, roi=self.roi) for f in frames]  # for the tests below, once
        # Per frame: the graph's probability, raised to the classical empty-field test's where
        # that finds nothing but smooth light and noise (uneven illumination the model misses):
        # max(p_model, p_empty), see autofocus.scoring.empty_field. The graph learned to tell
        # a defocused sparse specimen from an empty field, which the classical test cannot:
        # its own probability stays the field-level judgement (`field_no_specimen_p`) and
        # weights the V-fit.
        model_p = np.clip(out["no_specimen_p"], 0.0, 1.0)
        no_specimen = combine_no_specimen(model_p, empty_field_p(greys))
        focus_z = focus_sigma = side_p = None
        side_settled = None
        if dof is not None and np.unique(z).size >= 2:
            pairs = self._pairs(greys, z, out, dof) if self.pair_head is not None else None
            fit = fit_focus(z, distance * dof, sigma * dof, weight=1.0 - model_p,
                            pairs=pairs)
            focus_z, focus_sigma = fit.focus_z_um, fit.focus_sigma_um
            side_p, side_settled = fit.side_p, fit.side_settled
        return DefocusEstimate(distance_dof=distance, sigma_dof=sigma,
                               no_specimen_p=no_specimen, dof_um=dof,
                               focus_z_um=focus_z, focus_sigma_um=focus_sigma,
                               side_p=side_p, side_settled=side_settled,
                               field_no_specimen_p=model_p)

    def _pairs(self, greys: Sequence[np.ndarray], z: np.ndarray, out: dict[str, np.ndarray],
               dof: float) -> list[tuple[int, int, float]]:
        """Pair-head log-odds for frames a known Δz apart (0.3–`max_gap_dof` DOF); `greys`
        the frames as `prepare_raw` gives them."""
        head = self.pair_head
        assert head is not None
        frame = out["features"]  # (n, k) frame-level channels
        m = out["log_distance"]
        spectra: dict[int, np.ndarray] = {}

        def spectrum(k: int) -> np.ndarray | None:
            if not head.needs_spectra:
                return None
            if k not in spectra:
                spectra[k] = frame_spectrum(greys[k])
            return spectra[k]

        pairs = []
        for i in range(z.size):
            for j in range(i + 1, z.size):
                gap = abs(z[j] - z[i]) / dof
                if 0.3 <= gap <= head.max_gap_dof:
                    pairs.append((i, j, head.logodds(
                        frame[i][FRAME_BANDS], frame[i][FRAME_CONTRAST], m[i],
                        frame[j][FRAME_BANDS], frame[j][FRAME_CONTRAST], m[j],
                        spectrum(i), spectrum(j))))
        return pairs


def offers_defocus(card: dict[str, Any]) -> bool:
    """True when a model card declares the defocus outputs (a v3-style model)."""
    return all(o in card.get("outputs", {}) for o in DEFOCUS_OUTPUTS)


def open_model(model_path: str | Path | None = None, **options: Any) -> OnnxFocusScorer:
    """The right scorer class for the model at `model_path` (None = newest shipped model).

    A model whose card declares the defocus outputs opens as `OnnxDefocusScorer`
    (it offers `estimate`); older models as `OnnxFocusScorer` (`dof_um` is then
    ignored). Raises `ModelError` like the constructors.
    """
    path = Path(model_path) if model_path is not None else default_model_path()
    card_path = options.get("card_path") or card_path_for(path)
    if Path(card_path).is_file() and offers_defocus(load_card(card_path)):
        return OnnxDefocusScorer(path, **options)
    options.pop("dof_um", None)
    return OnnxFocusScorer(path, **options)


def _factory(**options: Any) -> OnnxFocusScorer:
    return open_model(**options)


def _versioned_factory(path: Path) -> Any:
    def factory(**options: Any) -> OnnxFocusScorer:
        options.setdefault("model_path", path)
        return open_model(**options)

    return factory


def builtin_scorers() -> list[ScorerEntry]:
    """`focusnet` (the newest shipped full model, see `default_model_path`) and a pinned
    `focusnet-v<N>` per shipped version."""
    entries = [
        ScorerEntry(
            "focusnet",
            _factory,
            ("onnx", "model", "learned"),
            "learned multi-scale focus model with defocus estimate (ONNX, batched; the newest "
            "shipped full model)",
        )
    ]
    for version, path in shipped_models().items():
        # Pinned names, so a search can ask for one model version whatever is newest.
        entries.append(ScorerEntry(
            f"focusnet-v{version}", _versioned_factory(path),
            description=f"focusnet version {version} ({path.name}), pinned",
        ))
    return entries


__all__ = [
    "DEFAULT_MODEL_FILE",
    "InputSpec",
    "OnnxDefocusScorer",
    "OnnxFocusScorer",
    "model_input",
    "offers_defocus",
    "open_model",
    "builtin_scorers",
    "card_path_for",
    "default_model_path",
    "fit_to_patches",
    "load_card",
    "model_id",
    "model_label",
    "sha256_of",
    "shipped_models",
]
