"""`python -m autofocus_models.pipeline.v3.build` — render, train, export and evaluate focusnet-v3.

Steps (timed): render the synthetic training stacks and no-specimen frames
and compute their features through the ONNX front end (cached in `--cache`),
train the head, export ONNX + card with the parity check, then evaluate
(`autofocus_models.pipeline.v3.evaluate`) and write the metrics into the card and its
Markdown. Seeds: training 0…, held-out validation from 2 000 000, held-out
test from 3 000 000 (disjoint).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from autofocus_models.pipeline import data as feature_cache
from autofocus_models.pipeline.card import update_card
from autofocus_models.pipeline.v3 import data
from autofocus_models.pipeline.v3.train import TrainConfig, fit_head

MODELS_DIR = Path(__file__).resolve().parents[2]


def _step(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)


def training_data(n_stacks: int, n_blank: int, cache: Path | None, t0: float):
    """(feature stacks, no-specimen features) for training, from `cache` when present."""
    front = data.FrontEnd()
    stack_file = cache / f"train_{n_stacks}.npz" if cache else None
    blank_file = cache / f"blank_train_{n_blank}.npz" if cache else None
    if stack_file and stack_file.is_file():
        stacks = feature_cache.load_feature_stacks(str(stack_file))
    else:
        _step(f"rendering {n_stacks} training stacks", t0)
        stacks = data.feature_stacks(data.condition_seeds(n_stacks, 0), front)
        if stack_file:
            feature_cache.save_feature_stacks(str(stack_file), stacks)
    if blank_file and blank_file.is_file():
        blank = np.load(blank_file)["features"]
    else:
        _step(f"rendering {n_blank} no-specimen frames", t0)
        blank, _ = data.no_specimen_features(n_blank, 0, front)
        if blank_file:
            np.savez_compressed(blank_file, features=blank)
    return stacks, blank


def parity_frames() -> list[np.ndarray]:
    """Frames of several sizes and dtypes for the export parity check (synthetic, seeded)."""
    from autofocus_models.pipeline.synth import make_stack

    frames = []
    for seed, shape in ((5, (192, 256)), (6, (100, 130)), (7, (256, 256))):
        st = make_stack(3_000_000 + seed, "train", shape=shape, n_planes=5)
        frames += list(st.frames[::2])
    rng = np.random.default_rng(0)
    frames.append(data.no_specimen_frame(rng, (128, 128), "dark")[0])
    return frames


def _calibrate_on_real(base: Path, base_card: dict, args: argparse.Namespace, t0: float) -> Path:
    """Refit the base model's score row on the real corpus; the result is the shipped file."""
    from autofocus.stacks.calibrate import calibrate

    out = args.out / f"{args.stem}.onnx"
    _step(f"refitting the output layer on the stacks of {args.real}", t0)
    report = calibrate([args.real], out, model=str(base))
    report["note"] = ("the base model saw in-focus tiles of every stack here, so these LOSO "
                      "figures only measure the refit; the clean LOSO figures of the whole "
                      "recipe are metrics.real_loso")
    loso = (args.cache / "loso.json") if args.cache else None

    def change(card: dict) -> None:
        card.update(version=args.stem.split("-")[-1], parity=base_card["parity"],
                    calibration=report, base_sha256=base_card["sha256"])
        if loso is not None and loso.is_file():
            card.setdefault("metrics", {})["real_loso"] = {
                "command": "python -m autofocus_models.pipeline.v3.real_aug CACHE_DIR",
                "protocol": "per held-out stack: base head trained on synthetic stacks + tiles "
                            "of the other stacks' in-focus planes, output layer refitted on the "
                            "other stacks; the held-out stack's planes scored and judged as "
                            "autofocus eval",
                **json.loads(loso.read_text())}

    update_card(out, change)
    out.with_suffix(".md").unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--stacks", type=int, default=1500)
    p.add_argument("--blank", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=MODELS_DIR)
    p.add_argument("--stem", default="focusnet-v3")
    p.add_argument("--pair-stacks", type=int, default=600,
                   help="stacks for the version-2 pair head (0 = keep the v1 head)")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--real", type=Path, default=None,
                   help="labelled real corpus: its in-focus planes go through synthetic defocus "
                        "into training, and the output layer is then refitted on its stacks "
                        "(autofocus calibrate's maths); the card embeds the LOSO report of "
                        "the same recipe (autofocus_models.pipeline.v3.real_aug, cached loso.json)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    stacks, blank = training_data(args.stacks, args.blank, args.cache, t0)
    if args.real:
        from autofocus_models.pipeline.v3.real_aug import in_focus_tiles, real_feature_stacks

        tiles = in_focus_tiles(args.real, np.random.default_rng(0))
        real = real_feature_stacks(tiles, data.FrontEnd())
        stacks = stacks + [fs for lst in real.values() for fs in lst]
        _step(f"+ {sum(map(len, real.values()))} stacks of real in-focus tiles from "
              f"{len(real)} stacks", t0)
    config = TrainConfig(epochs=args.epochs)
    _step(f"training the head on {len(stacks)} stacks + {len(blank)} no-specimen frames", t0)
    head, history = fit_head(stacks, blank, config, log=True)
    from collections import Counter

    from autofocus_models.pipeline.v3.export import export

    extra = {
        "created_by": "python -m autofocus_models.pipeline.v3.build",
        "built_with": "python -m autofocus_models.pipeline.v3.build " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "training": {
            "source": "synthetic stacks (autofocus_models.pipeline.synth through "
                      "autofocus_drivers.sim optics and "
                      "a camera chain) + generated no-specimen frames"
                      + (" + real in-focus tiles through the same synthetic defocus"
                         if args.real else "; no real image"),
            "stacks": len(stacks), "planes_per_stack": int(stacks[0].features.shape[0]),
            "frame_px": list(data.FRAME_PX),
            "conditions": dict(Counter(s.meta.get("condition") for s in stacks)),
            "no_specimen_frames": int(len(blank)),
            "kinds_of_no_specimen": list(data.NO_SPECIMEN_KINDS),
            "config": config.as_dict(), "train_s": round(history["train_s"], 1),
        },
    }
    from autofocus_models.pipeline.v3.pairs import (
        card_section,
        fit_pair_head,
        pair_dataset,
        train_accuracy,
    )
    from autofocus_models.pipeline.v3.train import predict

    pick = np.random.default_rng(0).permutation(len(stacks))[:800]  # all conditions
    sub = [stacks[i] for i in sorted(pick)]
    px, py = pair_dataset(sub, [predict(head, s.features)["m"] for s in sub])
    pair = fit_pair_head(px, py)
    acc = train_accuracy(pair, px, py)
    _step(f"pair head on {len(py)} pairs: training accuracy {acc:.3f}", t0)
    extra["pair_head"] = card_section(pair, acc, len(py))
    _step("exporting ONNX + parity check", t0)
    base_dir = (args.cache or args.out) / "base" if args.real else args.out
    path, card = export(head, base_dir, args.stem, extra, parity_frames())
    _step(f"wrote {path} (parity {json.dumps(card['parity']['max_abs_diff'])})", t0)
    if args.real:
        path = _calibrate_on_real(path, card, args, t0)
    if args.pair_stacks > 0:
        from autofocus_models.pipeline.v3.pair_v2 import refit

        _step(f"pair head v2 on {args.pair_stacks} stacks (radial band powers)", t0)
        section = refit(path, args.pair_stacks)
        update_card(path, lambda card: card.update(pair_head=section))
    if not args.no_eval:
        from autofocus_models.pipeline.v3.evaluate import evaluate_into_card

        evaluate_into_card(path, t0=t0)
    _step("done", t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
