"""Export a trained v3 head to ONNX, check parity with the training maths, write the card.

Parity: the training features came from the ONNX front end (onnxruntime), so
the check runs whole frames through the exported file with the *serving*
scorer (`autofocus.scoring.model.open_model`: the same input function) and
compares every pooled output with the torch head applied to the features of
the same frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from autofocus_models.pipeline import spec
from autofocus_models.pipeline.card import write_card
from autofocus_models.pipeline.v3 import graph

PARITY_TOLERANCE = 1e-3


def card_outputs() -> dict[str, str]:
    """The `outputs` section of a v3 card (the runtime checks the names)."""
    return {
        "score": "(N,) float32 in [0, 1]: sigmoid(logit), estimate of 1/(1+(dz/DOF)²); ranking",
        "logit": "(N,) float32: mean of the top-k patch score logits",
        "distance_dof": "(N,) float32 ≥ 0: estimated |dz| in depth-of-field units",
        "log_distance": f"(N,) float32: m, the mean of log(|dz|/DOF + {graph.DIST_OFFSET})",
        "log_distance_var": "(N,) float32: log of the variance of that Gaussian (NLL-trained)",
        "no_specimen_p": "(N,) float32 in [0, 1]: probability the field holds no usable specimen",
        "hidden": "(N, H, H//64, W//64) float32: last hidden layer per patch (calibration)",
        "features": "(N, 26, H//64, W//64) float32: front-end features per patch",
    }


def input_card() -> dict[str, Any]:
    """The `input` section of a v3 card."""
    return {
        "name": graph.INPUT_NAME, "dtype": "float32", "shape": ["N", 1, "H", "W"],
        "patch_px": spec.PATCH_PX, "min_side_px": spec.MIN_INPUT_PX,
        "intensity": "autofocus.scoring.preprocess.prepare_raw(frame) — grey luminance in "
                     "camera units, NOT normalised (the graph normalises band energies)",
        "layout": "frames centre-cropped to whole 64-px patches; sides < 64 px mirror-padded",
    }


def parity_check(head: Any, model_path: Path, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """Max |difference| between the served ONNX outputs and the torch head on `frames`.

    Raises AssertionError above `PARITY_TOLERANCE`.
    """
    from autofocus_models.pipeline.v3.data import FrontEnd, model_images
    from autofocus_models.pipeline.v3.train import predict

    from autofocus.scoring.model import open_model

    scorer = open_model(model_path, provider="cpu")
    served = scorer.run_outputs(frames, ("logit", "log_distance", "log_distance_var"))
    front = FrontEnd()
    feats = [front([img])[0] for img in model_images(frames)]
    torch_out = [predict(head, f[None]) for f in feats]
    diffs = {}
    for name, key in (("logit", "logit"), ("log_distance", "m"), ("log_distance_var", "lv")):
        ref = np.array([o[key][0] for o in torch_out])
        diffs[name] = float(np.max(np.abs(served[name] - ref)))
    worst = max(diffs.values())
    assert worst < PARITY_TOLERANCE, f"served ONNX and torch head differ by {worst:.3g}: {diffs}"
    return {"max_abs_diff": diffs, "tolerance": PARITY_TOLERANCE, "frames": len(frames)}


def export(head: Any, out_dir: Path, stem: str, card_extra: Mapping[str, Any],
           parity_frames: Sequence[np.ndarray]) -> tuple[Path, dict]:
    """Write `<stem>.onnx` and `<stem>.json`; returns (path, card). Raises on parity failure."""
    from autofocus.scoring.model import sha256_of
    from autofocus.scoring.preprocess import RAW_PREPROCESS_VERSION

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.onnx"
    onnx.save(graph.build_onnx(head.weights(), doc=f"{stem}: defocus-aware focus model",
                               topk_div=head.topk_div), path)
    card: dict[str, Any] = {
        "name": "focusnet", "version": stem.split("-")[-1], "file": path.name,
        "sha256": sha256_of(path), "bytes": path.stat().st_size,
        "onnx": {"opset": graph.OPSET, "ir_version": graph.IR_VERSION,
                 "dynamic": ["N", "H", "W"]},
        "preprocess": {"version": RAW_PREPROCESS_VERSION,
                       "function": "autofocus.scoring.preprocess.prepare_raw",
                       "intensity": "raw"},
        "input": input_card(), "outputs": card_outputs(),
        "defocus": {"dist_offset": graph.DIST_OFFSET,
                    "calibratable": [graph.OUT_WEIGHT, graph.OUT_BIAS]},
        "architecture": {
            "front_end": "3 levels of the fixed 4×4 Walsh–Hadamard bank, stride 4, on RAW "
                         "intensities; band energies per 64-px patch; normalised in the graph "
                         "by the frame's detail energy V; frame contrast log(V/mean²) kept",
            "features": graph.feature_names(),
            "head": f"per-patch MLP {graph.N_FEATURES}→{head.hidden}→{head.hidden}→4 "
                    "(score logit, log-distance mean, log-variance, specimen logit)",
            "pooling": f"top k = max(1, n_patches // {head.topk_div}) patches by score logit "
                       "(distance and variance averaged over them); specimen logit: mean of the "
                       f"top max(1, n_patches // {graph.TOPK_Q_DIV})",
            "trainable_parameters": int(sum(p.numel() for p in head.parameters())),
        },
    }
    card.update(card_extra)
    write_card(card, path.with_suffix(".json"))  # the served scorer needs it for parity
    card["parity"] = parity_check(head, path, parity_frames) if parity_frames else None
    write_card(card, path.with_suffix(".json"))
    return path, card
