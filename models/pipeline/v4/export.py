"""Write focusnet-v4 (and its classical-channels ablation) as ONNX files with cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from autofocus_models.pipeline.v4 import features as F
from autofocus_models.pipeline.v4 import graph


def export(heads: dict[str, tuple[np.ndarray, float]], report: dict[str, Any], out: Path) -> None:
    """`heads["full"]` → `out` (+ `.json` card), `heads["classical"]` → `out` with
    `-classical` before the suffix (an ablation file, not shipped under models/)."""
    from autofocus.scoring.model import sha256_of

    for label, path in (("full", out), ("classical", out.with_name(out.stem + "-classical.onnx"))):
        w, b = heads[label]
        model = graph.build(w, b)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        card = {
            "name": "focusnet-v4" if label == "full" else "focusnet-v4-classical",
            "version": 4,
            "file": path.name,
            "sha256": sha256_of(path),
            "bytes": path.stat().st_size,
            "score_kind": "logodds",
            "preprocess": {"version": "2"},
            "input": {"name": graph.INPUT_NAME, "dtype": "float32", "shape": ["N", 1, "H", "W"],
                      "patch_px": F.PATCH_PX, "min_side_px": F.PATCH_PX,
                      "intensity": "autofocus.scoring.preprocess.prepare_raw(frame): grey, "
                                   "camera units, not normalised"},
            "outputs": {
                "score": "(N,) float32, unbounded: log-odds that the frame is its stack's "
                         "sharpest plane (listwise fit); higher = sharper",
                "logit": "(N,) float32: the same value",
                "features": f"(N, {len(F.NAMES)}) float32: channels {F.NAMES}",
            },
            "onnx": {"opset": graph.OPSET, "ir_version": graph.IR_VERSION},
            "head": {"channels": F.NAMES, "weights": [float(v) for v in w], "bias": float(b),
                     "inputs": "all channels" if label == "full" else "classical channels only"},
            "training": report,
            "real_training_stacks": [],
            "built_with": "python -m autofocus_models.pipeline.v4.train --out "
                          + str(out),
        }
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")



def rebuild(path: Path) -> None:
    """Re-export `path` from its card's head (after a graph change that keeps the channels);
    updates the card's sha256 and bytes."""
    from autofocus.scoring.model import sha256_of

    card_path = path.with_suffix(".json")
    card = json.loads(card_path.read_text())
    onnx.save(graph.build(card["head"]["weights"], card["head"]["bias"]), str(path))
    card["sha256"], card["bytes"] = sha256_of(path), path.stat().st_size
    card_path.write_text(json.dumps(card, indent=2) + "\n")


__all__ = ["export", "rebuild"]


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        rebuild(Path(arg))
