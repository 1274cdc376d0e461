"""Training and evaluation data for focusnet-v3: synthetic stacks, no-specimen frames, features.

Frames reach the model through exactly the serving path: the model's input
function (`autofocus.scoring.model.model_input`, preprocessing version "2")
and the *same ONNX front end* the shipped graph contains (run with
onnxruntime), so the head is trained on the features it will see at run
time. Stacks come from `autofocus_models.pipeline.synth` (the simulator's optics and
camera chain) across its conditions: the training mix, a second layer of
dust/structure, debris planes, strong-phase brightfield, sparse specimens,
low light; JPEG and saturation are part of the mix. No-specimen frames
(blank, empty background with uneven illumination, noise only, saturated,
JPEG-compressed) are made here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from autofocus_models.pipeline import spec
from autofocus_models.pipeline.data import FeatureStack
from autofocus_models.pipeline.synth import expose, make_stack
from autofocus_models.pipeline.v3 import graph

from autofocus.scoring.model import model_input
from autofocus.scoring.preprocess import RAW_PREPROCESS_VERSION

FRAME_PX = (192, 192)
"""Training frame size: 3 × 3 patches of 64 px (cheap to render, enough for top-k pooling)."""

N_PLANES = 15

TRAIN_MIX = (("train", 0.35), ("train_v2", 0.25), ("sparse", 0.12), ("debris", 0.1),
             ("bf_phase", 0.1), ("low_light", 0.08))
"""(synth condition, share of the training stacks)."""


class FrontEnd:
    """The v3 ONNX front end in onnxruntime: model inputs → features (N, 26, gh, gw)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        model = graph.build_onnx(graph.random_head(8, np.random.default_rng(0)))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(model.SerializeToString(), opts,
                                          providers=["CPUExecutionProvider"])

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack([np.asarray(i, np.float32) for i in images])[:, None]
        return self._sess.run(["features"], {graph.INPUT_NAME: x})[0]


def model_images(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames → v3 model inputs (the serving preprocessing)."""
    return [model_input(f, RAW_PREPROCESS_VERSION, spec.PATCH_PX) for f in frames]


def condition_seeds(n_stacks: int, seed0: int) -> list[tuple[str, int]]:
    """(condition, seed) for `n_stacks` stacks split by `TRAIN_MIX`, seeds from `seed0`."""
    out = []
    for condition, share in TRAIN_MIX:
        k = max(1, int(round(share * n_stacks)))
        out += [(condition, seed0 + i) for i in range(k)]
    return out


def feature_stacks(jobs: Sequence[tuple[str, int]], front: FrontEnd | None = None,
                   shape: tuple[int, int] = FRAME_PX, n_planes: int = N_PLANES
                   ) -> list[FeatureStack]:
    """Render the (condition, seed) stacks and compute their features."""
    front = front or FrontEnd()
    out = []
    for condition, seed in jobs:
        st = make_stack(seed, condition, shape=shape, n_planes=n_planes)
        feats = front(model_images(list(st.frames)))
        out.append(FeatureStack(st.name, feats, st.dz_um, st.dof_um, st.meta))
    return out


NO_SPECIMEN_KINDS = ("dark", "flat", "gradient", "noise", "saturated", "hot_pixels")


def no_specimen_frame(rng: np.random.Generator, shape: tuple[int, int] = FRAME_PX,
                      kind: str | None = None) -> tuple[np.ndarray, str]:
    """One frame with no usable specimen, through the same camera chain; returns (frame, kind).

    Kinds: `dark` (offset + read noise), `flat` (uniform light + shot noise),
    `gradient` (uneven illumination, nothing in it), `noise` (high-gain
    noise only), `saturated` (clipped at full scale), `hot_pixels` (dark frame
    with a few hot pixels). One in four 8-bit frames is JPEG-compressed.
    """
    kind = kind or str(rng.choice(NO_SPECIMEN_KINDS))
    h, w = shape
    bit_depth = int(rng.choice([8, 12, 16]))
    max_adu = (1 << bit_depth) - 1
    level = {"dark": 0.0, "flat": math.exp(rng.uniform(math.log(5), math.log(20000))),
             "gradient": math.exp(rng.uniform(math.log(5), math.log(20000))),
             "noise": math.exp(rng.uniform(math.log(0.5), math.log(50))),
             "saturated": 1e6, "hot_pixels": 0.0}[kind]
    photons = np.full(shape, level, np.float32)
    if kind == "gradient":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = rng.uniform(-0.5, 1.5) * h, rng.uniform(-0.5, 1.5) * w
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / float(max(h, w) ** 2)
        photons *= (1.0 - rng.uniform(0.1, 0.7) * np.clip(r2, 0, 1)).astype(np.float32)
    qe = float(rng.uniform(0.5, 0.9))
    read_noise = float(rng.uniform(0.8, 6.0))
    full_well = float(rng.choice([10_000.0, 30_000.0, 80_000.0]))
    offset = float(rng.uniform(0.0, 0.05) * max_adu)
    if kind == "saturated":
        gain = max(full_well / max_adu * rng.uniform(0.2, 0.9), 0.05)
    elif kind == "noise":
        gain = rng.uniform(0.05, 0.5)
    else:
        peak_e = max(level * qe, 50.0)
        gain = max(peak_e / ((max_adu - offset) * rng.uniform(0.2, 0.9)), 0.05)
    frame = expose(photons, rng, qe=qe, read_noise_e=read_noise, gain_e_per_adu=gain,
                   offset_adu=offset, bit_depth=bit_depth, full_well_e=full_well)
    if kind == "hot_pixels":
        n = int(rng.integers(1, 6))
        frame[rng.integers(0, h, n), rng.integers(0, w, n)] = max_adu
    if bit_depth == 8 and rng.random() < 0.25:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
        frame = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return frame, kind


def no_specimen_features(n: int, seed: int, front: FrontEnd | None = None,
                         shape: tuple[int, int] = FRAME_PX) -> tuple[np.ndarray, list[str]]:
    """Features (n, 26, gh, gw) of `n` no-specimen frames drawn from `seed`, and their kinds."""
    front = front or FrontEnd()
    rng = np.random.default_rng([seed, 77])
    frames, kinds = zip(*(no_specimen_frame(rng, shape) for _ in range(n)), strict=True)
    feats = np.concatenate([front(model_images(frames[i:i + 256]))
                            for i in range(0, n, 256)])
    return feats, list(kinds)


