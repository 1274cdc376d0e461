"""Real images in training, leave-one-stack-out: synthetic defocus of real in-focus planes.

For each labelled real stack, its in-focus plane (the plane nearest the label)
is cut into tiles; each tile becomes the specimen of a synthetic stack
(`autofocus_models.pipeline.synth.make_stack(..., specimen_image=tile)`: the simulator's
optics and camera chain, random objective, light and nuisances). A model whose
real-stack figures are reported is trained only on tiles of the *other* stacks
(`fold_stacks(..., exclude=name)`): the stack being judged never trains the
model that judges it.

`python -m autofocus_models.pipeline.v3.real_aug CACHE_DIR [REAL_DIR]` runs the LOSO
evaluation: per held-out stack, a head trained on synthetic + real-derived
stacks of the other folds scores the held-out stack's real planes (through the
same ONNX front end), judged like `autofocus eval`; then the same head's output
layer is refitted on the other real stacks (`autofocus calibrate`'s maths) and
judged again. Prints and writes `loso.json` in CACHE_DIR.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from autofocus_models.pipeline import data as feature_cache
from autofocus_models.pipeline.v3 import data

TILES_PER_STACK = 12
STACKS_PER_TILE = 4


def in_focus_tiles(real_dir: Path, rng: np.random.Generator,
                   tiles: int = TILES_PER_STACK) -> dict[str, list[np.ndarray]]:
    """Grey tiles (FRAME_PX) of each labelled stack's in-focus plane, by stack name."""
    from autofocus.scoring.preprocess import to_grey
    from autofocus.stacks.readers import iter_corpus

    out: dict[str, list[np.ndarray]] = {}
    th, tw = data.FRAME_PX
    for stack, label in iter_corpus(real_dir):
        if label is None or not label.labelled:
            continue
        z = np.asarray(stack.z_um)
        img = to_grey(stack.planes[int(np.argmin(np.abs(z - label.best_z_um)))].load())
        h, w = img.shape
        if h < th or w < tw:
            img = np.pad(img, ((0, max(0, th - h)), (0, max(0, tw - w))), mode="symmetric")
            h, w = img.shape
        out[stack.name] = [
            np.ascontiguousarray(img[y:y + th, x:x + tw]) for y, x in
            zip(rng.integers(0, h - th + 1, tiles), rng.integers(0, w - tw + 1, tiles),
                strict=True)]
    return out


def real_feature_stacks(tiles: dict[str, list[np.ndarray]], front: data.FrontEnd,
                        seed0: int = 5_000_000) -> dict[str, list[data.FeatureStack]]:
    """Synthetic stacks with real in-focus tiles as specimens, features by source stack."""
    from autofocus_models.pipeline.synth import make_stack

    out: dict[str, list[data.FeatureStack]] = {}
    seed = seed0
    for name, tile_list in tiles.items():
        for tile in tile_list:
            for _ in range(STACKS_PER_TILE):
                seed += 1
                st = make_stack(seed, "train", shape=data.FRAME_PX, n_planes=data.N_PLANES,
                                specimen_image=tile)
                feats = front(data.model_images(list(st.frames)))
                out.setdefault(name, []).append(data.FeatureStack(
                    f"real_{name}_{seed}", feats, st.dz_um, st.dof_um,
                    {**st.meta, "condition": "real_tile", "source_stack": name}))
    return out


def main(argv: list[str]) -> int:
    from autofocus_models.pipeline.data import default_real_dir
    from autofocus_models.pipeline.train import channel_last
    from autofocus_models.pipeline.v3.train import TrainConfig, fit_head

    from autofocus.scoring.calibration import (
        CalStack,
        OutputLayer,
        fit_output_layer,
        stack_logits,
    )
    from autofocus.stacks.evaluation import judge_curve
    from autofocus.stacks.readers import iter_corpus

    cache = Path(argv[0])
    real_dir = Path(argv[1]) if len(argv) > 1 else default_real_dir()
    t0 = time.perf_counter()
    front = data.FrontEnd()
    synth = feature_cache.load_feature_stacks(str(cache / "train_1500.npz"))
    blank = np.load(cache / "blank_train_6000.npz")["features"]
    tiles = in_focus_tiles(real_dir, np.random.default_rng(0))
    real_aug = real_feature_stacks(tiles, front)
    print(f"[{time.perf_counter() - t0:6.1f} s] {sum(map(len, real_aug.values()))} real-tile "
          "stacks", flush=True)
    labelled = [(s, lab) for s, lab in iter_corpus(real_dir) if lab is not None and lab.labelled]
    import torch

    def hidden_of(head, feats):
        with torch.no_grad():
            return [h.numpy().astype(np.float64) for h in head.hidden_layer(channel_last(feats))]

    real_feats = {}
    for stack, label in labelled:
        imgs = data.model_images(stack.images())
        real_feats[stack.name] = ([front([i])[0] for i in imgs], np.asarray(stack.z_um),
                                  float(label.best_z_um), float(label.tolerance_um))
    rows = {"base": [], "base+calibrated": []}
    for held, _ in labelled:
        train = synth + [fs for name, lst in real_aug.items() if name != held.name for fs in lst]
        head, _ = fit_head(train, blank, TrainConfig())
        w = head.weights()
        stock = OutputLayer(w["head_out.weight"].astype(np.float64),
                            w["head_out.bias"].astype(np.float64))
        cal = {}
        for name, (feats, z, best, tol) in real_feats.items():
            cal[name] = CalStack(name, [hidden_of(head, f[None])[0] for f in feats], z, best, tol)
        layer = fit_output_layer([c for n, c in cal.items() if n != held.name], stock)
        for key, lay in (("base", stock), ("base+calibrated", layer)):
            c = cal[held.name]
            v = judge_curve(c.z_um, stack_logits(c, lay), c.best_z_um, c.tolerance_um)
            rows[key].append({"stack": held.name, "error_um": v["error_um"],
                              "within_tolerance": v["within_tolerance"], "top0": v["top0"],
                              "spearman": v["spearman"]})
        print(f"[{time.perf_counter() - t0:6.1f} s] fold {held.name}: "
              f"{rows['base'][-1]} | {rows['base+calibrated'][-1]}", flush=True)
    summary = {k: {"within_tolerance": sum(bool(r["within_tolerance"]) for r in v),
                   "top0": sum(bool(r["top0"]) for r in v),
                   "mean_spearman": float(np.mean([r["spearman"] for r in v])),
                   "stacks": len(v)} for k, v in rows.items()}
    print(json.dumps(summary, indent=1))
    (cache / "loso.json").write_text(json.dumps({"summary": summary, "per_stack": rows},
                                                indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
