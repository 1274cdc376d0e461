"""Data for training and evaluation: synthetic feature stacks and real labelled z-stacks.

Training only learns the head of focusnet, so each synthetic frame is turned
once into its per-patch front-end features (`FeatureStack`). Frames pass through
exactly the serving path: `autofocus.scoring.preprocess.prepare` (the shared
preprocessing) and `autofocus.scoring.model.fit_to_patches`.

Real stacks are read with `autofocus.stacks.readers.iter_corpus` from a folder laid out
as `shared/data/real` (one sub-folder per stack + `manifest.csv`). They are
used for evaluation and the parity check only, never for training.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from autofocus_models.pipeline import spec
from autofocus_models.pipeline.synth import make_stack

from autofocus.scoring.model import fit_to_patches
from autofocus.scoring.preprocess import prepare


@dataclass
class FeatureStack:
    """Front-end features of one stack: (n_planes, N_FEATURES, rows, cols) float32 + defocus."""

    name: str
    features: np.ndarray
    dz_um: np.ndarray
    dof_um: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RealStack:
    """A real z-stack: images (camera dtype), z (µm) and, when labelled, best z and tolerance."""

    name: str
    images: list[np.ndarray]
    z_um: np.ndarray
    best_z_um: float | None
    tolerance_um: float | None
    modality: str = ""


def model_inputs(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frames → the float32 2-D images the model sees (shared preprocessing + patch crop)."""
    return [fit_to_patches(prepare(f), spec.PATCH_PX) for f in frames]


def front_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """Front-end features (n, N_FEATURES, rows, cols) of equally sized model inputs (torch)."""
    import torch
    from autofocus_models.pipeline.net import FrontEnd

    front = FrontEnd()
    with torch.no_grad():
        x = torch.from_numpy(np.stack([np.asarray(i, np.float32) for i in images])[:, None])
        return front(x).numpy()


def _synth_job(args: tuple[int, str, tuple[int, int], int]) -> FeatureStack:
    import torch

    torch.set_num_threads(1)
    seed, condition, shape, n_planes = args
    st = make_stack(seed, condition, shape=shape, n_planes=n_planes)
    feats = front_features(model_inputs(list(st.frames)))
    return FeatureStack(st.name, feats.astype(np.float32), st.dz_um, st.dof_um, st.meta)


def synth_feature_stacks(seeds: Sequence[int], condition: str = "train", *,
                         shape: tuple[int, int] = (256, 256), n_planes: int = 21,
                         workers: int = 2) -> Iterator[FeatureStack]:
    """Render synthetic stacks for `seeds` and yield their features, in seed order.

    `workers` > 1 uses that many spawned processes (each with one torch thread).
    """
    jobs = [(int(s), condition, shape, n_planes) for s in seeds]
    if workers <= 1:
        yield from map(_synth_job, jobs)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(_synth_job, jobs, chunksize=4)


def real_stacks(directory: str | Path) -> list[RealStack]:
    """All stacks of a real corpus folder (see module doc), labelled or not, in manifest order.

    Raises `autofocus.errors.StackError` for an unreadable corpus.
    """
    from autofocus.stacks.readers import iter_corpus

    out = []
    for stack, label in iter_corpus(directory):
        stack.validate()
        labelled = label is not None and label.labelled
        out.append(RealStack(
            name=stack.name,
            images=stack.images(),
            z_um=np.asarray(stack.z_um, dtype=np.float64),
            best_z_um=label.best_z_um if labelled else None,
            tolerance_um=label.tolerance_um if labelled else None,
            modality=label.modality if label is not None else "",
        ))
    return out


def default_real_dir() -> Path:
    """`shared/data/real` beside the repository (override with AUTOFOCUS_REAL_DATA)."""
    import os

    env = os.environ.get("AUTOFOCUS_REAL_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"


def save_feature_stacks(path: str | Path, stacks: Sequence[FeatureStack]) -> None:
    """Cache feature stacks in one .npz (features, dz, DOF, names, meta as JSON)."""
    import json

    np.savez_compressed(
        path,
        features=np.stack([s.features for s in stacks]),
        dz_um=np.stack([s.dz_um for s in stacks]),
        dof_um=np.array([s.dof_um for s in stacks]),
        names=np.array([s.name for s in stacks]),
        meta=np.array([json.dumps(s.meta, default=float) for s in stacks]),
    )


def load_feature_stacks(path: str | Path) -> list[FeatureStack]:
    """Read stacks written by `save_feature_stacks`."""
    import json

    with np.load(path, allow_pickle=False) as z:
        return [
            FeatureStack(str(n), f, d, float(dof), json.loads(str(m)))
            for f, d, dof, n, m in zip(z["features"], z["dz_um"], z["dof_um"], z["names"],
                                       z["meta"], strict=True)
        ]
