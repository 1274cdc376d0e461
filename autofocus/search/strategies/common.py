"""The common machinery of every strategy: generator-driven ask/tell, history, budget.

A strategy is written as a generator (`SearchStrategy._search`) that yields a
batch of Z positions (µm) and receives their scores (same order, NaN for an
unusable frame), and finally returns a `SearchOutcome`. `SearchStrategy` turns
that generator into the ask/tell `Strategy` protocol of `base.py`:

- positions are clamped into [space.lo_um, space.hi_um];
- a position already measured (within 1e-9 µm) is answered from memory instead
  of being asked again, and duplicates inside one batch are asked once;
- a batch that would take the search past `space.max_frames` is refused by
  throwing `FrameBudgetExhausted` into the generator, which may catch it and
  finish with what it has; if it does not, the search ends as a failure;
- non-finite scores reach the generator as NaN.

This module also holds the failure sentences shared by the strategies.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from autofocus.search.reasons import FailureReason
from autofocus.search.strategies.base import SearchOutcome, SearchSpace
from autofocus.search.strategies.peakfit import (
    PeakFit,
    confidence,
    contrast,
    finite_points,
    noise_sigma,
    prominence,
)

# Two positions closer than this are the same position.
SAME_Z_UM = 1e-9

Search = Generator[list[float], list[float], SearchOutcome]
# A sub-step of a search, used with `yield from`, returning a value of its own.
Step = Generator[list[float], list[float], Any]


class FrameBudgetExhausted(Exception):
    """Thrown into a search generator when its next batch would exceed `max_frames`."""

    def __init__(self, wanted: int, left: int) -> None:
        super().__init__(f"the next batch needs {wanted} frame(s) but only {left} remain")
        self.wanted = wanted
        self.left = left


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars/arrays turned into Python ones and NaN/±inf into None.

    Outcome `fit` and `details` travel through the HTTP API as JSON, which has
    no NaN or infinity.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def flat_reason(scores: Any) -> str:
    """The failure sentence for a curve without a focus peak.

    It states what was measured (the spread of the scores) without judging
    it: a curve can vary a lot and still be flat compared with its noise.
    """
    return (
        "no focus signal: no peak stood out of the noise of the focus curve "
        f"(scores spread by {100.0 * contrast(scores):.1f} % of the highest, "
        "all of it within the frame-to-frame noise)"
    )


def reason_code(reason: str | None) -> str | None:
    """The `FailureReason` code of a strategy failure sentence (None for None)."""
    if reason is None:
        return None
    text = reason.lower()
    for needle, code in (
        ("no focus signal", FailureReason.FLAT_CURVE),
        ("edge of the search range", FailureReason.EDGE_PEAK),
        ("candidate focal planes", FailureReason.RIVAL_PEAK),
        ("max_frames", FailureReason.BUDGET_EXHAUSTED),
        ("too few frames", FailureReason.FLAT_CURVE),
        ("no usable specimen", FailureReason.NO_SPECIMEN),
        ("not a focal plane", FailureReason.IMPLAUSIBLE_PEAK),
    ):
        if needle in text:
            return code.value
    return FailureReason.IMPLAUSIBLE_PEAK.value


def edge_reason(z_um: float) -> str:
    """The failure sentence for a sharpest plane at the edge of the searched range."""
    return (
        f"the sharpest plane is at the edge of the search range (z={z_um:.2f} µm); "
        "focus is probably outside it — widen range_um or move center_z_um"
    )


def too_few_reason(usable: int, total: int) -> str:
    """The failure sentence for too few usable (finite-score) frames."""
    return (
        f"too few frames: only {usable} of {total} frames gave a usable focus score "
        "(need at least 3)"
    )


def budget_reason(max_frames: int) -> str:
    """The failure sentence for a search stopped by `max_frames`."""
    return (
        f"too few frames: the search needed more than max_frames={max_frames} frames "
        "to reach the requested tolerance"
    )


class SearchStrategy:
    """Base class of the focus search strategies (ask/tell over a generator).

    Subclasses set `name` and implement `_search()`. Construct with a
    `SearchSpace`; options are keyword arguments of the subclass. `history` is
    every (z_um, score) told, in order; `frames` is its length.
    """

    name: str = "base"

    def __init__(self, space: SearchSpace) -> None:
        if not isinstance(space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.history: list[tuple[float, float]] = []
        self._known: list[tuple[float, float]] = []  # (asked z, sanitised score)
        self._gen: Search | None = None
        self._batch: list[float] = []  # the generator's whole current batch
        self._pending: list[float] = []  # its positions not measured yet
        self._outcome: SearchOutcome | None = None
        self._capture: list[tuple[float, float, float]] = []  # (asked z, capture, rel. noise)
        self.estimates: list[tuple[list[float], Any]] = []  # (asked z, DefocusEstimate)

    # -- the Strategy protocol -------------------------------------------------------
    def ask(self) -> list[float]:
        """The next positions to measure (µm, inside [lo_um, hi_um]); [] once done."""
        self._start()
        return [] if self._outcome is not None else list(self._pending)

    def tell(self, z_um: Sequence[float], scores: Sequence[float]) -> None:
        """Report the scores of the positions from the last `ask()`, in the same order.

        `z_um` are the positions actually measured (a stage may round them); they
        must match the asked ones to within half the tolerance. Raises
        `ValueError` on a length or position mismatch and `RuntimeError` when
        the search is already done.
        """
        self._start()
        if self._outcome is not None:
            raise RuntimeError(f"{self.name}: tell() after the search is done")
        z_list = [float(z) for z in z_um]
        s_list = [float(s) for s in scores]
        if len(z_list) != len(self._pending) or len(s_list) != len(self._pending):
            raise ValueError(
                f"{self.name}: tell() got {len(z_list)} positions and {len(s_list)} scores "
                f"for the {len(self._pending)} asked"
            )
        slack = max(0.5 * self.space.tolerance_um, 1e-6)
        for asked, told in zip(self._pending, z_list, strict=True):
            if not abs(asked - told) <= slack:
                raise ValueError(
                    f"{self.name}: tell() position {told} µm does not match the asked "
                    f"{asked} µm (same order as ask() is required)"
                )
        for asked, told, score in zip(self._pending, z_list, s_list, strict=True):
            self.history.append((told, score))
            self._known.append((asked, score if math.isfinite(score) else math.nan))
        self._pending = []
        self._advance(("send", [self.score_at(z) for z in self._batch]))

    @property
    def done(self) -> bool:
        """True once the search has converged, failed or run out of frames."""
        self._start()
        return self._outcome is not None

    def outcome(self) -> SearchOutcome:
        """The result; raises `RuntimeError` before the search is done."""
        self._start()
        if self._outcome is None:
            raise RuntimeError(f"{self.name}: outcome() before the search is done")
        return self._outcome

    @property
    def frames(self) -> int:
        """Frames measured so far."""
        return len(self.history)

    def frame_bound(self) -> int:
        """The most frames this strategy can ask for over its space (never above max_frames)."""
        return self.space.max_frames

    @property
    def frames_left(self) -> int:
        """Frames still allowed by `space.max_frames`."""
        return self.space.max_frames - len(self.history)

    # -- for subclasses ------------------------------------------------------------------
    def _search(self) -> Search:  # pragma: no cover - abstract
        raise NotImplementedError
        yield []

    def bounds(self) -> tuple[float, float]:
        """The interval this strategy may ask positions in (µm): [lo_um, hi_um] by default."""
        return self.space.lo_um, self.space.hi_um

    def clamp(self, z_um: float) -> float:
        """`z_um` clamped into `bounds()`, and onto the nearest plane when the space has planes."""
        lo, hi = self.bounds()
        z = min(max(float(z_um), lo), hi)
        planes = self.space.planes_um
        if planes:
            inside = [p for p in planes if lo - SAME_Z_UM <= p <= hi + SAME_Z_UM] or list(planes)
            z = min(inside, key=lambda p: (abs(p - z), p))
        return z

    def observe(
        self,
        z_um: Sequence[float],
        *,
        capture: Sequence[float] | None = None,
        capture_noise: Sequence[float] | None = None,
        estimate: Any = None,
    ) -> None:
        """Extra per-frame information for the positions of the last `ask()` (same order).

        Called by the engine just before `tell()`: `capture` the wide-capture
        score of each frame (`autofocus.search.frames.capture_score`, NaN for an
        unusable frame), `capture_noise` its expected relative noise, `estimate`
        the scorer's `DefocusEstimate` for these frames when it offers one.
        The base class keeps them (`capture_at`, `estimates`); strategies that
        do not use them ignore them.
        """
        if capture is not None:
            noise = list(capture_noise) if capture_noise is not None else [math.nan] * len(capture)
            for asked, c, n in zip(self._pending, capture, noise, strict=False):
                self._capture.append((asked, float(c), float(n)))
        if estimate is not None:
            self.estimates.append((list(self._pending), estimate))

    def capture_at(self, z_um: float) -> float:
        """The capture score measured at `z_um` (NaN when unknown or unusable)."""
        for k, c, _ in self._capture:
            if abs(k - z_um) <= SAME_Z_UM:
                return c
        return math.nan

    def is_known(self, z_um: float) -> bool:
        """True when `z_um` has been measured already (within 1e-9 µm)."""
        return any(abs(k - z_um) <= SAME_Z_UM for k, _ in self._known)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Every measured (z, score) with a finite score, sorted by z (as told)."""
        return finite_points([z for z, _ in self.history], [s for _, s in self.history])

    def finish(
        self,
        *,
        success: bool,
        best_z_um: float | None,
        best_score: float | None,
        reason: str | None = None,
        fit: PeakFit | None = None,
        details: dict[str, Any] | None = None,
        curve: tuple[np.ndarray, np.ndarray] | None = None,
        code: str | None = None,
        confidence_value: float | None = None,
    ) -> SearchOutcome:
        """Build the outcome, computing confidence from `curve` (default: all points).

        The confidence (see `peakfit.confidence`) uses the prominence of `curve`,
        the noise (the fit's residual standard deviation when there is a fit
        with spare degrees of freedom, else the robust estimate of
        `peakfit.noise_sigma`) and the R² of `fit`; on failure it is capped at
        0.5 so a failed search never looks trustworthy.
        """
        z, s = self.points() if curve is None else curve
        prom, _ = prominence(s)
        if fit is not None and fit.resid_sigma is not None and fit.n_points >= 7:
            sigma = fit.resid_sigma
        else:
            sigma = noise_sigma(z, s)
        r2 = fit.r2 if fit is not None and fit.kind not in ("argmax", "half-max") else None
        conf = confidence(prom, sigma, r2) if confidence_value is None else float(confidence_value)
        if not success:
            conf = min(conf, 0.5)
        info: dict[str, Any] = {"frames": self.frames, "noise_sigma": sigma, "prominence": prom}
        info.update(details or {})
        if success and best_z_um is not None and self.space.planes_um:
            on_plane = self._sharper_adjacent_plane(float(best_z_um))
            if on_plane is not None and abs(on_plane[0] - best_z_um) > SAME_Z_UM:
                info["moved_onto_recorded_plane_from_um"] = float(best_z_um)
                best_z_um, best_score = on_plane
        return SearchOutcome(
            success=success,
            best_z_um=None if best_z_um is None else float(best_z_um),
            best_score=None if best_score is None else float(best_score),
            confidence=conf,
            reason=reason,
            fit=None if fit is None or fit.kind == "argmax" else jsonable(fit.to_dict()),
            details=jsonable(info),
            code=code if code is not None or success else reason_code(reason),
        )

    def _sharper_adjacent_plane(self, z_um: float) -> tuple[float, float] | None:
        """Recorded planes only: of the measured planes either side of `z_um`, the sharper.

        A replayed stack can only show recorded planes, so a fitted centre
        between two planes is parked on the sharper of them (None when no
        plane around `z_um` was measured).
        """
        z, s = self.points()
        if z.size == 0:
            return None
        below = np.flatnonzero(z <= z_um + SAME_Z_UM)
        above = np.flatnonzero(z >= z_um - SAME_Z_UM)
        idx = [int(below[-1])] if below.size else []
        if above.size:
            idx.append(int(above[0]))
        k = max(idx, key=lambda i: s[i])
        return float(z[k]), float(s[k])

    def best_measured(self) -> tuple[float | None, float | None]:
        """(z, score) of the best finite measurement so far, or (None, None)."""
        z, s = self.points()
        if z.size == 0:
            return None, None
        i = int(np.argmax(s))
        return float(z[i]), float(s[i])

    def fail(self, reason: str, code: str | None = None, **details: Any) -> SearchOutcome:
        """A failure outcome carrying the best measurement so far (for information).

        `code` is a `FailureReason` value; None infers it from the sentence.
        """
        z, s = self.best_measured()
        return self.finish(
            success=False, best_z_um=z, best_score=s, reason=reason, details=details, code=code
        )

    # -- driving the generator -------------------------------------------------------------
    def _start(self) -> None:
        if self._gen is None:
            self._gen = self._search()
            self._advance(("send", None))

    def score_at(self, z_um: float, default: float = math.nan) -> float:
        """The score measured at `z_um` (NaN if unusable), or `default` if never measured."""
        for k, score in self._known:
            if abs(k - z_um) <= SAME_Z_UM:
                return score
        return default

    def _advance(self, action: tuple[str, Any]) -> None:
        assert self._gen is not None
        while True:
            try:
                if action[0] == "send":
                    batch = self._gen.send(action[1])
                else:
                    batch = self._gen.throw(action[1])
            except StopIteration as stop:
                self._finish_with(stop.value)
                return
            except FrameBudgetExhausted:
                self._finish_with(self.fail(budget_reason(self.space.max_frames)))
                return
            zs = [self.clamp(z) for z in batch]
            if any(not math.isfinite(z) for z in zs):
                raise ValueError(f"{self.name}: asked for a non-finite position {batch}")
            new: list[float] = []
            for z in zs:
                unknown = not any(abs(k - z) <= SAME_Z_UM for k, _ in self._known)
                if unknown and not any(abs(n - z) <= SAME_Z_UM for n in new):
                    new.append(z)
            if not new:
                action = ("send", [self.score_at(z) for z in zs])
                continue
            if len(new) > self.frames_left:
                action = ("throw", FrameBudgetExhausted(len(new), self.frames_left))
                continue
            self._batch = zs
            self._pending = new
            return

    def _finish_with(self, outcome: SearchOutcome | None) -> None:
        if not isinstance(outcome, SearchOutcome):
            outcome = self.fail("internal error: the search ended without an outcome")
        self._outcome = outcome
        self._pending = []
        self._batch = []
        if self._gen is not None:
            self._gen.close()


def is_flat(z_um: Any, scores: Any, *, min_contrast: float, min_snr: float) -> bool:
    """True when a sampled curve shows no focus peak.

    Flat means the relative contrast (max − min)/max is below `min_contrast`, or
    — with at least 6 samples — the peak rises less than `min_snr` times the
    robust noise estimate above the curve's 20th percentile.
    """
    z, s = finite_points(z_um, scores)
    if z.size == 0 or contrast(s) < min_contrast:
        return True
    if z.size >= 6 and min_snr > 0:
        prom, _ = prominence(s)
        sigma = noise_sigma(z, s)
        if sigma > 0 and prom < min_snr * sigma:
            return True
    return False


def probe_edges(strategy: SearchStrategy, a_um: float, b_um: float) -> Step:
    """Generator step: if the final bracket [a, b] touches an end of the range, measure it.

    Used by the bracketing strategies, which never sample the range ends
    themselves. Returns (as the generator's value) the end's position when its
    score is the best measured — the peak is then probably beyond the range —
    and None otherwise or when no frame is left for the probe.
    """
    space = strategy.space
    near = max(space.tolerance_um, 1e-9)
    for edge, touches in (
        (space.lo_um, a_um - space.lo_um <= near),
        (space.hi_um, space.hi_um - b_um <= near),
    ):
        if not touches:
            continue
        if not strategy.is_known(edge):
            if strategy.frames_left < 1:
                return None
            yield [edge]
        edge_score = strategy.score_at(edge)
        _, best = strategy.best_measured()
        if math.isfinite(edge_score) and best is not None and edge_score >= best:
            return edge
    return None


def check_bracket(strategy: SearchStrategy, a_um: float, b_um: float) -> Step:
    """Generator step shared by the bracketing strategies once their bracket [a, b] is final.

    Probes a range end the bracket touches (see `probe_edges`), then fails the
    search (returns the failed `Search`) for too few usable frames, a flat curve
    or a peak at the edge; returns None when the bracket holds a real peak.
    """
    details = {"bracket_um": [a_um, b_um]}
    z, _ = strategy.points()
    if z.size < 3:
        return strategy.fail(too_few_reason(int(z.size), strategy.frames), **details)
    edge = yield from probe_edges(strategy, a_um, b_um)
    z, s = strategy.points()
    # Only the bracketing strategies (which define these thresholds) call this.
    min_contrast, min_snr = strategy.min_contrast, strategy.min_snr  # type: ignore[attr-defined]
    if is_flat(z, s, min_contrast=min_contrast, min_snr=min_snr):
        return strategy.fail(flat_reason(s), **details)
    if edge is not None:
        return strategy.fail(edge_reason(edge), **details)
    return None
