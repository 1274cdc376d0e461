"""What a scorer is: the `Scorer` protocol, the optional defocus estimate, registry entries.

A scorer turns a batch of frames into one sharpness number per frame (higher is
sharper). Classical measures and the ONNX focus model implement the same
protocol. A learned scorer may also offer `estimate(...)`: how far each frame is
from focus, with an uncertainty, whether the field holds a specimen at all,
and — from frames a known Δz apart — on which side focus lies. A strategy asks
`isinstance(scorer, DefocusEstimator)` and does without it when the answer is no.

This module imports nothing of `autofocus`, so every scorer module and the
registry can depend on it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """Scores frames: `score(frames)` returns a float64 array of shape (len(frames),).

    Frames are 2-D (H, W) arrays of any real dtype (colour frames are converted
    to grey by the shared preprocessing). Higher means sharper. Raises
    `autofocus.errors.ImageError` on an empty, non-finite or wrongly shaped frame.
    """

    name: str

    def score(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class DefocusEstimate:
    """A scorer's estimate of how far frames are from focus (all arrays have one entry per frame).

    - `distance_dof`: estimated |z − z_focus| in depth-of-field units (≥ 0).
    - `sigma_dof`: one-sigma uncertainty of `distance_dof`, in DOF units (> 0).
    - `no_specimen_p`: probability that the frame holds no usable specimen
      (blank, empty background, saturated, noise only), 0–1.
    - `field_no_specimen_p`: the estimator's judgement of the *field* (None = the
      same as `no_specimen_p`): a sparse specimen far out of focus shows nothing in
      its frame, so a frame-level test may call it empty while the field does hold a
      specimen. A search deciding to stop before sweeping uses this one.
    - `dof_um`: the depth of field (µm) used for µm conversions; None when the
      optics are unknown (then only DOF units are meaningful).
    - `focus_z_um`, `focus_sigma_um`: a signed estimate of the focal plane (µm,
      stage coordinates) and its one-sigma uncertainty, available when the frames
      were taken at two or more distinct z and `dof_um` is known; else None.
    - `side_p`: probability (0.5–1) that focus lies on `focus_z_um`'s side of
      the frames rather than at the mirror solution; `side_settled`: True when
      the mirror solution is ruled out (the estimator's own threshold), False
      when the side is a guess — then `focus_sigma_um` already spans both
      solutions and a search should probe rather than jump. None with no
      `focus_z_um`.
    """

    distance_dof: np.ndarray
    sigma_dof: np.ndarray
    no_specimen_p: np.ndarray
    dof_um: float | None
    focus_z_um: float | None = None
    focus_sigma_um: float | None = None
    side_p: float | None = None
    side_settled: bool | None = None
    field_no_specimen_p: np.ndarray | None = None

    @property
    def distance_um(self) -> np.ndarray | None:
        """`distance_dof` in micrometres, or None when `dof_um` is unknown."""
        return None if self.dof_um is None else self.distance_dof * self.dof_um

    @property
    def sigma_um(self) -> np.ndarray | None:
        """`sigma_dof` in micrometres, or None when `dof_um` is unknown."""
        return None if self.dof_um is None else self.sigma_dof * self.dof_um


@runtime_checkable
class DefocusEstimator(Protocol):
    """The optional capability of a scorer that knows how far focus is.

    `estimate(frames, z_um, dof_um=...)` takes frames and the stage z (µm) each
    was taken at, and returns a `DefocusEstimate`. Raises
    `autofocus.errors.ImageError` on frames `score` would refuse.

    An estimator may also offer `score_for_estimate(frames)`: the same scores as
    `score`, keeping what a later `estimate` of those very frames needs, so a
    search that scores frames one by one and then asks for their estimate runs
    its model once per frame. The engine uses it when present (optional: not
    part of the isinstance check).
    """

    def estimate(
        self, frames: Sequence[np.ndarray], z_um: Sequence[float], *, dof_um: float | None = None
    ) -> DefocusEstimate: ...


def offers_estimate(scorer: object) -> bool:
    """True when `scorer` offers a defocus estimate (implements `DefocusEstimator`)."""
    return isinstance(scorer, DefocusEstimator)


ScorerFactory = Callable[..., Scorer]


@dataclass(frozen=True)
class ScorerEntry:
    """One registered scorer: name, factory (called with keyword options), aliases, one-liner."""

    name: str
    factory: ScorerFactory
    aliases: tuple[str, ...] = ()
    description: str = ""

    def build(self, **options: Any) -> Scorer:
        """Call the factory with `options`."""
        return self.factory(**options)
