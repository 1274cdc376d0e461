"""Refit a v3 model's pair head as version 2 (radial band-power ratios + the v1 features).

Why: the v1 pair head reads only the 12 frame-averaged Walsh–Hadamard band
energies; on held-out pairs 1 DOF apart it settles the side of focus in 83 %
of 192² px frames. Version 2 adds `autofocus.scoring.defocus.frame_spectrum`
(16 log-spaced radial bands, Hann-windowed, noise floor removed) of both
frames: the ratio of two frames' band powers is the ratio of the optical
transfer functions at the two planes, which cancels the specimen band by band.

Data: synthetic stacks (the v3 training mix of conditions, seeds from
`PAIR_SEED0` = 5 000 000, never used by training or by the held-out
evaluation at 3 000 000) rendered on a fixed grid −8…8 DOF in 0.5 DOF steps;
pairs on the same side of focus, both ≥ 0.5 DOF from it, 0.5–`MAX_GAP_DOF`
DOF apart; per-frame graph outputs come from the served ONNX file through
`open_model` (the serving path), so training and serving share one feature
definition. Logistic regression without bias (antisymmetric), L2 1e-3.

    python -m autofocus_models.pipeline.v3.pair_v2 models/focusnet-v3.onnx [--stacks 600]

rewrites the card's `pair_head` section (the ONNX file is unchanged).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from autofocus_models.pipeline.card import update_card
from autofocus_models.pipeline.synth import make_stack
from autofocus_models.pipeline.v3.data import TRAIN_MIX
from autofocus_models.pipeline.v3.pairs import (
    MAX_GAP_DOF,
    fit_pair_head,
    same_side_pairs,
    train_accuracy,
)

from autofocus.scoring.defocus import FRAME_BANDS, FRAME_CONTRAST, PairHead, frame_spectrum
from autofocus.scoring.preprocess import prepare_raw

PAIR_SEED0 = 5_000_000
GRID_DOF = np.arange(-8.0, 8.0 + 1e-9, 0.5)
FRAME_PX = (192, 192)
L2 = 1e-3


class StackOutputs(NamedTuple):
    """One training stack's per-frame pair-head inputs (as served) and signed defocus."""

    cond: str
    features: list[np.ndarray]  # graph `features`, frame-level channels, per frame
    log_distance: np.ndarray  # (n,) graph `log_distance`
    spectra: list[np.ndarray]  # `frame_spectrum` per frame
    dz_dof: np.ndarray  # (n,) signed defocus in DOF units


def training_stacks(model_path: Path, n_stacks: int, seed0: int = PAIR_SEED0,
                    shape: tuple[int, int] = FRAME_PX) -> Iterator[StackOutputs]:
    """The pair heads' training stacks (the v3 training mix, seeds from `seed0`, on
    `GRID_DOF`) with each frame's served inputs to the pair head (`StackOutputs`)."""
    from autofocus.scoring.model import open_model

    scorer = open_model(model_path, provider="cpu")
    for ci, (cond, share) in enumerate(TRAIN_MIX):
        for i in range(max(1, int(round(share * n_stacks)))):
            st = make_stack(seed0 + 10_000 * ci + i, cond, shape=shape, dz_dof=GRID_DOF)
            yield stack_outputs(scorer, list(st.frames), st.dz_um / st.dof_um, cond)


def stack_outputs(scorer: Any, frames: list[np.ndarray], dz_dof: np.ndarray,
                  cond: str = "") -> StackOutputs:
    """Per-frame pair-head inputs of one stack as the served scorer computes them: the
    graph's frame-level `features` and `log_distance`, `frame_spectrum(prepare_raw(frame))`."""
    out = scorer.run_outputs(frames, ("log_distance", "features"))
    return StackOutputs(cond, [np.asarray(x)[:, 0, 0] for x in out["features"]],
                        np.asarray(out["log_distance"], np.float64),
                        [frame_spectrum(prepare_raw(fr)) for fr in frames],
                        np.asarray(dz_dof, np.float64))


def pair_dataset_v2(model_path: Path, n_stacks: int, seed0: int = PAIR_SEED0,
                    shape: tuple[int, int] = FRAME_PX) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X (n, 101), y (n,) 1 when frame b is closer, condition per pair)."""
    head = PairHead(np.zeros(1), np.ones(1), MAX_GAP_DOF, version=2)
    xs, ys, conds = [], [], []
    for so in training_stacks(model_path, n_stacks, seed0, shape):
        f, m, spec, d = so.features, so.log_distance, so.spectra, so.dz_dof
        for a, b in same_side_pairs(d, min_gap_dof=0.5):
            xs.append(head.pair_features(f[a][FRAME_BANDS], f[a][FRAME_CONTRAST], m[a],
                                         f[b][FRAME_BANDS], f[b][FRAME_CONTRAST], m[b],
                                         spec[a], spec[b]))
            ys.append(float(abs(d[b]) < abs(d[a])))
            conds.append(so.cond)
    return np.asarray(xs), np.asarray(ys), conds


def refit(model_path: Path, n_stacks: int = 600) -> dict:
    """Fit the version-2 pair head for `model_path` and return the card section."""
    t0 = time.perf_counter()
    x, y, _ = pair_dataset_v2(model_path, n_stacks)
    v1 = fit_pair_head(x, y, l2=L2)
    head = PairHead(v1.weights, v1.scale, MAX_GAP_DOF, version=2)
    acc = train_accuracy(head, x, y)
    return {"version": 2, "weights": [float(v) for v in head.weights],
            "scale": [float(v) for v in head.scale], "max_gap_dof": head.max_gap_dof,
            "train_pairs": int(y.size), "train_accuracy": acc, "train_stacks": n_stacks,
            "train_seed0": PAIR_SEED0, "grid_dof": [float(GRID_DOF[0]), float(GRID_DOF[-1]), 0.5],
            "l2": L2, "fit_s": round(time.perf_counter() - t0, 1),
            "features": "autofocus.scoring.defocus.spectrum_pair_features (64) of frame_spectrum "
                        "+ PairHead.features (37)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--stacks", type=int, default=600)
    args = ap.parse_args(argv)
    section = refit(args.model, args.stacks)
    store_pair_head(args.model, section)
    return 0


def store_pair_head(model_path: Path, section: dict[str, Any]) -> None:
    """Write `section` as the card's `pair_head` (the ONNX file is untouched) and say so."""
    update_card(model_path, lambda card: card.update(pair_head=section))
    print(f"pair head v{section.get('version', 2)}: {section['train_pairs']} pairs, training "
          f"accuracy {section['train_accuracy']:.3f}, {section['fit_s']} s → "
          f"{Path(model_path).with_suffix('.json')}")


if __name__ == "__main__":
    raise SystemExit(main())
