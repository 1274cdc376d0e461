"""Open a recorded z-stack as a replay microscope (`autofocus_drivers.replay.ReplayMicroscope`).

`open_replay(path)` reads the stack with `autofocus.stacks.readers.read_stack` (a
folder of `<name>_z<um>.tif` planes, a multi-page TIFF or a CSV list), checks
it, loads every plane and hands them to the driver — so a bad stack (one plane,
two planes at the same z, planes of different sizes or pixel types, an
unreadable file) fails here with a `StackError` naming the stack and file,
before any search starts. When a `manifest.csv` next to the stack (in its
folder or the folder above) labels it, the driver carries the label:
`mic.true_focus_z_um()` and `mic.focus_tolerance_um`.

`replay_request(mic)` gives the focus-request fields that search a replayed
stack sensibly: the whole recorded range, and a tolerance and coarse step tied
to the plane spacing (searching finer than the planes is pointless).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from autofocus_drivers.replay import ReplayMicroscope, ReplayStackError

from autofocus.errors import StackError
from autofocus.logging import get_logger
from autofocus.stacks.readers import StackLabel, ZStack, read_manifest, read_stack

log = get_logger("autofocus.replay")

# Coarse sweep of a replayed stack: about this many planes per coarse step, but at least
# `MIN_COARSE_POINTS` points over the stack, so short stacks (15 planes) still get a curve.
COARSE_PLANES_PER_STEP = 4.0
MIN_COARSE_POINTS = 5


def open_replay(
    path: str | Path,
    *,
    pattern: str | None = None,
    z_step_um: float | None = None,
    label: StackLabel | None = None,
    **options: Any,
) -> ReplayMicroscope:
    """A `ReplayMicroscope` serving the stack at `path` (folder, multi-page TIFF or CSV).

    `pattern` and `z_step_um` are as for `read_stack`. `label` overrides the
    manifest lookup (by default a `manifest.csv` in the stack folder or its
    parent labels the stack when it names it). `options` go to
    `ReplayMicroscope` (`blend`, `noise_sigma`, `seed`, `move_s_per_um`,
    `settle_s`, `readout_s`, `exposure_ms`, `clock`, `start_z_um`).
    Loads every plane into memory. Raises `StackError` for a missing or
    unusable stack (naming the file), `ConfigurationError` for bad driver options.
    """
    stack = read_stack(path, pattern=pattern, z_step_um=z_step_um)
    stack.validate(min_planes=2)
    if label is None:
        label = find_label(path, stack.name)
    images = load_planes(stack)
    return replay_from_stack(stack, images, label=label, **options)


def load_planes(stack: ZStack) -> list[np.ndarray]:
    """Every plane's pixels in z order; raises `StackError` naming an unreadable file."""
    return [plane.load() for plane in stack.planes]


def replay_from_stack(
    stack: ZStack,
    images: Sequence[np.ndarray],
    *,
    label: StackLabel | None = None,
    **options: Any,
) -> ReplayMicroscope:
    """A `ReplayMicroscope` over `stack` whose planes are already loaded (`images`, z order).

    Lets an evaluation load a stack once and replay it many times. `label`
    (optional) supplies `true_focus_z_um` and `focus_tolerance_um`; `options`
    go to `ReplayMicroscope`. Raises `StackError` (the driver's message
    prefixed with the stack name) for planes the driver refuses,
    `autofocus_drivers.errors.ConfigurationError` for bad options.
    """
    if len(images) != len(stack.planes):
        raise ValueError(f"got {len(images)} images for {len(stack.planes)} planes")
    labelled = label is not None and label.labelled
    kwargs: dict[str, Any] = {
        "stack_name": stack.name,
        "true_focus_z_um": label.best_z_um if labelled else None,
        "focus_tolerance_um": label.tolerance_um if labelled else None,
        **options,
    }
    try:
        return ReplayMicroscope(
            [p.z_um for p in stack.planes],
            images,
            sources=[p.label for p in stack.planes],
            **kwargs,
        )
    except ReplayStackError as exc:
        raise StackError(f"stack {stack.name!r}: {exc}") from exc


def find_label(path: str | Path, stack_name: str) -> StackLabel | None:
    """The manifest label of `stack_name`, from `manifest.csv` in `path` or its parent folder.

    Returns None when no manifest names the stack or it gives no `best_z_um`.
    A manifest that cannot be read is logged and ignored: it must not stop a
    replay of a stack that is fine.
    """
    p = Path(path).resolve()
    folders = [p, p.parent] if p.is_dir() else [p.parent]
    for folder in folders:
        if not (folder / "manifest.csv").is_file():
            continue
        try:
            labels = read_manifest(folder)
        except StackError as exc:
            log.warning("replay.manifest_unreadable", folder=str(folder), error=str(exc))
            continue
        found = labels.get(stack_name)
        if found is not None and found.labelled:
            return found
    return None


def replay_request(
    mic: ReplayMicroscope,
    *,
    tolerance_um: float | None = None,
    lo_um: float | None = None,
    hi_um: float | None = None,
) -> dict[str, float]:
    """Focus-request fields that search a replayed stack at the planes' resolution.

    Returns `center_z_um`, `range_um`, `tolerance_um` and `coarse_step_um`
    (µm), ready for `autofocus.search.focus.focus(mic, **fields)`. The searched
    interval is `lo_um`..`hi_um` (default: the whole recorded range). The
    tolerance is the median plane spacing (nearest-plane replay cannot resolve
    finer), capped by `tolerance_um` (e.g. the label's) and by a quarter of the
    interval; the coarse step is about `COARSE_PLANES_PER_STEP` planes but gives
    at least `MIN_COARSE_POINTS` points over the interval — the default
    8 × tolerance would leave a 15-plane stack with 3 coarse points. Raises
    `ValueError` for an interval that is empty or leaves the stack.
    """
    limits = mic.z_limits_um
    lo = limits.min_um if lo_um is None else float(lo_um)
    hi = limits.max_um if hi_um is None else float(hi_um)
    if not (limits.contains(lo) and limits.contains(hi) and lo < hi):
        raise ValueError(
            f"search interval {lo:g}..{hi:g} µm is empty or leaves the stack "
            f"[{limits.min_um:g}, {limits.max_um:g}] µm"
        )
    range_um = hi - lo
    spacing = mic.plane_spacing_um
    tol = spacing if tolerance_um is None else min(spacing, float(tolerance_um))
    tol = min(tol, range_um / 4.0)
    coarse = min(COARSE_PLANES_PER_STEP * spacing, range_um / (MIN_COARSE_POINTS - 1))
    coarse = max(coarse, tol)
    return {
        "center_z_um": 0.5 * (lo + hi),
        "range_um": range_um,
        "tolerance_um": tol,
        "coarse_step_um": coarse,
    }


__all__ = [
    "COARSE_PLANES_PER_STEP",
    "MIN_COARSE_POINTS",
    "find_label",
    "load_planes",
    "open_replay",
    "replay_from_stack",
    "replay_request",
]
