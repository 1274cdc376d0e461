"""`autofocus record-stacks`: acquire labelled z-stacks on the instrument itself.

At the current XY position, or at each given (x, y) position, the stage steps
through planes `step_um` apart over `range_um` around a centre z (default: where
the stage is), snapping one frame per plane; planes outside the Z limits are
left out, never commanded (a stack with fewer than `MIN_PLANES` planes inside
the limits is refused before anything moves). Afterwards — and after a failure
or a cancel — the stage goes back to the XY and Z it started from.

Each stack is labelled where the classical measures (`LABEL_MEASURES`) agree: the
planes they rank sharpest lie within `tolerance_um` of one another and none of
them is the stack's first or last plane. The label is then their median plane
(`label` = `classical`); otherwise the stack is written without `best_z_um`
and flagged (`label` = `disagree` or `edge`, the picks in `note`), so
`autofocus calibrate` skips it and a person can look.

What is written is the corpus layout of `../shared/data/real`: a folder per
stack holding one TIFF per plane named `<stack>_z<z_um>.tif`, and `manifest.csv`
(one row per plane) with the optional optics columns `na, magnification,
immersion_index, pixel_um, wavelength_nm` where they are known, plus the stack's
`x_um, y_um` and the `note`. An existing manifest is kept and extended; new
stacks get the next free `<prefix>NNN` names.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autofocus.errors import AutofocusError
from autofocus.stacks.readers import MANIFEST_COLUMNS, OPTICS_COLUMNS

MIN_PLANES = 3
"""Fewest planes inside the Z limits that make a stack worth recording."""

MAX_PLANES = 1000
"""Most planes per stack (a typo in `step_um` should not take a day)."""

LABEL_MEASURES = ("tenengrad", "brenner", "vol")
"""The classical measures whose agreement labels a stack."""

EXTRA_COLUMNS = ("modality", "source", "license", *OPTICS_COLUMNS, "x_um", "y_um", "note")
"""Manifest columns written after the required ones."""


class RecordError(AutofocusError):
    """Why stacks cannot be recorded, in one sentence (nothing moved when raised before
    the first stack)."""


class RecordCancelled(AutofocusError):
    """Recording was cancelled; the stage is back at its start, finished stacks are kept."""


@dataclass
class RecordedStack:
    """One stack written: `name`, its XY (µm, None without an XY stage), plane z (µm),
    the label (`best_z_um` None when flagged), `label` kind, each measure's pick (µm)."""

    name: str
    x_um: float | None
    y_um: float | None
    z_um: list[float]
    best_z_um: float | None
    tolerance_um: float
    label: str
    picks: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"stack": self.name, "x_um": self.x_um, "y_um": self.y_um,
                "planes": len(self.z_um), "z_min_um": min(self.z_um),
                "z_max_um": max(self.z_um), "best_z_um": self.best_z_um,
                "tolerance_um": self.tolerance_um, "label": self.label,
                "flagged": self.best_z_um is None, "picks_um": self.picks}


def plan_planes(center_z_um: float, range_um: float, step_um: float,
                z_min_um: float, z_max_um: float) -> np.ndarray:
    """Plane z (µm, ascending) `step_um` apart spanning `range_um` around `center_z_um`,
    keeping only those inside [z_min_um, z_max_um].

    Raises `RecordError` for a non-positive or non-finite step/range, more than
    `MAX_PLANES` planes, or fewer than `MIN_PLANES` inside the limits.
    """
    for name, v in (("range_um", range_um), ("step_um", step_um)):
        if not (math.isfinite(v) and v > 0):
            raise RecordError(f"{name} must be a positive number of micrometres, got {v}")
    if not math.isfinite(center_z_um):
        raise RecordError(f"centre z must be finite, got {center_z_um}")
    half = int(math.floor(range_um / 2.0 / step_um + 1e-9))
    if 2 * half + 1 > MAX_PLANES:
        raise RecordError(f"{2 * half + 1} planes per stack asked ({range_um:g} µm in "
                          f"{step_um:g} µm steps); at most {MAX_PLANES}")
    z = center_z_um + step_um * np.arange(-half, half + 1)
    inside = z[(z >= z_min_um - 1e-9) & (z <= z_max_um + 1e-9)]
    if inside.size < MIN_PLANES:
        raise RecordError(
            f"only {inside.size} plane(s) of the stack around {center_z_um:g} µm lie inside the "
            f"Z limits [{z_min_um:g}, {z_max_um:g}] µm; at least {MIN_PLANES} are needed "
            "(move the centre or narrow the range)")
    return inside


def label_stack(z_um: np.ndarray, frames: Sequence[np.ndarray], tolerance_um: float,
                measures: Sequence[str] = LABEL_MEASURES
                ) -> tuple[float | None, str, dict[str, float]]:
    """(best_z_um or None, label kind, each measure's sharpest plane z) for one stack.

    `classical` when every measure's sharpest plane lies within `tolerance_um`
    of the others and none is the first or last plane (the median pick is the
    label); `edge` when one is at the stack's end (focus may lie outside it);
    `disagree` otherwise.
    """
    from autofocus.scoring.registry import get_scorer

    z = np.asarray(z_um, np.float64)
    picks: dict[str, float] = {}
    at_edge = False
    for name in measures:
        scores = np.asarray(get_scorer(name).score(frames), np.float64)
        i = int(np.nanargmax(scores))
        picks[name] = float(z[i])
        at_edge |= i in (0, z.size - 1)
    values = np.array(list(picks.values()))
    if at_edge:
        return None, "edge", picks
    if values.max() - values.min() > tolerance_um + 1e-9:
        return None, "disagree", picks
    return float(np.median(values)), "classical", picks


def microscope_optics(microscope: Any) -> dict[str, float | None]:
    """What the driver knows of its optics, as manifest optics columns (None = unknown).

    The simulator knows all of them; Micro-Manager and replay only the pixel size.
    """
    optics: dict[str, float | None] = dict.fromkeys(OPTICS_COLUMNS)
    sim_optics = getattr(getattr(microscope, "config", None), "optics", None)
    if sim_optics is not None and hasattr(sim_optics, "sample_pixel_um"):
        optics.update(na=sim_optics.na, magnification=sim_optics.magnification,
                      immersion_index=sim_optics.immersion_index,
                      pixel_um=sim_optics.sample_pixel_um,
                      wavelength_nm=sim_optics.wavelength_nm)
        return optics
    try:
        pixel = microscope.camera_info().pixel_size_um
    except Exception:  # noqa: BLE001 - a camera that cannot say: the column stays empty
        pixel = None
    if pixel is not None and pixel > 0:
        optics["pixel_um"] = float(pixel)
    return optics


def _next_names(out_dir: Path, prefix: str, count: int) -> list[str]:
    taken = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    if (out_dir / "manifest.csv").is_file():
        with open(out_dir / "manifest.csv", newline="") as f:
            taken |= {row.get("stack", "") for row in csv.DictReader(f)}
    names, i = [], 1
    while len(names) < count:
        name = f"{prefix}{i:03d}"
        if name not in taken:
            names.append(name)
        i += 1
    return names


def _append_manifest(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Add `rows` to `out_dir/manifest.csv` (created if absent), keeping existing rows and
    columns; written to a temporary file and renamed, so a crash never leaves half a file."""
    path = out_dir / "manifest.csv"
    header: list[str] = [*MANIFEST_COLUMNS, *EXTRA_COLUMNS]
    old: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            old = list(reader)
            existing = list(reader.fieldnames or [])
        header = existing + [c for c in header if c not in existing]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(old)
        writer.writerows(rows)
    tmp.replace(path)


def _fmt(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def record_stacks(
    microscope: Any,
    out_dir: str | Path,
    *,
    positions: Sequence[tuple[float, float]] | None = None,
    center_z_um: float | None = None,
    range_um: float = 20.0,
    step_um: float = 1.0,
    tolerance_um: float | None = None,
    backlash_um: float = 0.0,
    prefix: str = "stack",
    modality: str = "",
    source: str = "",
    license: str = "",
    optics: dict[str, float | None] | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Record one labelled z-stack per position into the corpus folder `out_dir`.

    `positions` (x_um, y_um) pairs (None: one stack where the stage is; needs an
    XY stage otherwise); `center_z_um` the stacks' centre (None: the stage's z at
    the start); `range_um`, `step_um` the stack's depth and plane spacing (µm);
    `tolerance_um` how close the classical picks must lie to agree, also the
    label's tolerance (None: one step); `backlash_um` each stack is approached from
    this far below its first plane (clamped to the limits); `optics` manifest
    optics values given by the user, over what the driver knows
    (`microscope_optics`); `cancel` is checked between planes.

    Returns {"out_dir", "stacks": [RecordedStack.to_dict()], "labelled", "flagged",
    "frames", "elapsed_s", "optics"}. Raises `RecordError` for a bad plan (nothing
    moved), `RecordCancelled` when cancelled, the driver's errors on hardware
    failure; in every case the stage is returned to its start XY and Z.
    """
    import tifffile
    from autofocus_drivers.base import xy_stage_of

    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RecordError(f"{out} exists and is not a folder")
    if not prefix or any(c in prefix for c in "/\\,\"'") or prefix.startswith("."):
        raise RecordError(f"stack name prefix {prefix!r} must be a plain file-name part")
    tol = float(tolerance_um) if tolerance_um is not None else float(step_um)
    if not (math.isfinite(tol) and tol > 0):
        raise RecordError(f"tolerance_um must be positive, got {tolerance_um}")
    limits = microscope.z_limits_um
    start_z = float(microscope.z_um)
    center = start_z if center_z_um is None else float(center_z_um)
    planes = plan_planes(center, range_um, step_um, limits.min_um, limits.max_um)
    stage_xy = None
    if positions:
        stage_xy = xy_stage_of(microscope)  # ConfigurationError before anything moves
    start_xy = stage_xy.xy_um if stage_xy is not None else None
    where: list[tuple[float | None, float | None]] = (
        [(float(x), float(y)) for x, y in positions] if positions else
        [start_xy if start_xy is not None else (None, None)])  # type: ignore[list-item]
    known = microscope_optics(microscope)
    known.update({k: v for k, v in (optics or {}).items() if v is not None})
    optics_cells = {k: "" if known.get(k) is None else f"{known[k]:.6g}" for k in OPTICS_COLUMNS}
    out.mkdir(parents=True, exist_ok=True)
    names = _next_names(out, prefix, len(where))
    approach = limits.clamp(float(planes[0]) - max(0.0, backlash_um))
    recorded: list[RecordedStack] = []
    frames_taken = 0
    try:
        for name, (x, y) in zip(names, where, strict=True):
            if stage_xy is not None and x is not None and y is not None:
                say(f"{name}: moving to x={x:g} y={y:g} µm")
                stage_xy.move_xy(x, y)
            folder = out / name
            folder.mkdir(parents=True, exist_ok=False)
            frames: list[np.ndarray] = []
            rows: list[dict[str, Any]] = []
            if approach < planes[0]:
                microscope.move_z(approach)
            for z in planes:
                if cancel is not None and cancel.is_set():
                    raise RecordCancelled(f"recording cancelled during {name}; the stage was "
                                          "returned to its start")
                microscope.move_z(float(z))
                frame = np.asarray(microscope.snap())
                frames_taken += 1
                file = folder / f"{name}_z{z:+.4f}.tif"
                tifffile.imwrite(file, frame, compression="zlib")
                frames.append(frame)
                rows.append({"stack": name, "path": f"{name}/{file.name}", "z_um": _fmt(z)})
            best, kind, picks = label_stack(planes, frames, tol)
            note = " ".join(f"{k}={v:g}" for k, v in picks.items())
            for row in rows:
                row.update(best_z_um=_fmt(best), tolerance_um=_fmt(tol), label=kind,
                           modality=modality, source=source, license=license,
                           x_um=_fmt(x, 3), y_um=_fmt(y, 3), note=note, **optics_cells)
            _append_manifest(out, rows)
            recorded.append(RecordedStack(name, x, y, [float(z) for z in planes], best, tol,
                                          kind, picks))
            say(f"{name}: {len(planes)} planes, " + (
                f"labelled {best:g} µm" if best is not None else f"flagged ({kind}: {note})"))
    finally:
        # Back where the user left the stage, whatever happened (each move checked by the
        # driver against its limits; the start z was inside them).
        if stage_xy is not None and start_xy is not None:
            stage_xy.move_xy(*start_xy)
        if microscope.z_um != start_z:
            if backlash_um > 0 and limits.contains(start_z - backlash_um):
                microscope.move_z(start_z - backlash_um)
            microscope.move_z(start_z)
    labelled = sum(s.best_z_um is not None for s in recorded)
    return {"out_dir": str(out), "stacks": [s.to_dict() for s in recorded],
            "labelled": labelled, "flagged": len(recorded) - labelled,
            "frames": frames_taken, "elapsed_s": round(time.perf_counter() - t0, 3),
            "optics": known}


__all__ = ["LABEL_MEASURES", "MIN_PLANES", "RecordCancelled", "RecordError", "RecordedStack",
           "label_stack", "microscope_optics", "plan_planes", "record_stacks"]
