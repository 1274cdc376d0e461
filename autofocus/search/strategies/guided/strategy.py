"""`guided`: find focus with few frames, using what the scorer and the optics tell.

Two paths, chosen by what the engine passes in (`configure`):

**With a defocus estimate** (a scorer that offers `DefocusEstimator`):
probe two frames one DOF apart around the start; if both say "no specimen"
fail with `no_specimen` before sweeping an empty field. Fuse every signed
focal-plane estimate so far by inverse-variance weighting, jump there and
bracket it with 3 frames (± `bracket_dof` DOF), fit the fine scores, and add
a frame at the fitted centre when no sample lies within DOF/4 of it; under
`rival_check="full"` the rest of the range is then checked for a second plane
exactly as on the classical path (step 5). When the
fused estimate is uncertain (σ above `max_estimate_sigma_dof` DOF), lies
outside the range, or the bracket disagrees with it, the classical path
below takes over with every frame measured so far.

**Classical** (any scorer): the engine also measures each frame's
wide-capture score (`autofocus.search.frames.capture_score`), which rises
several DOF from focus where fine measures are still at their noise floor.

1. Coarse pass, one batch: ⌈range / h⌉ positions at the centres of equal
   cells, h = `step_factor` (2.4) × DOF × √(range / DOF) — from the optics, growing
   with the square root of the range. A frame that could not be scored is
   re-taken once a tenth of a DOF away.
2. Where the capture score rises by more than `min_rise` (relative, and at
   least 6 noise sigmas) above the lowest one, the curve is "rising". No
   rising sample: halve the spacing (up to 3 times, not below 5 DOF); still none:
   `flat_curve`.
3. Candidates: the rising local maxima (up to `max_candidates`), highest
   first; a candidate whose capture rise is below `candidate_ratio` of the
   best one's is not refined.
4. Each candidate is localised by bisecting the capture curve around it
   (vertex of a log-parabola) until a fine score rises, then bracketed and
   fitted with the fine scores (log-parabola through the top three, plus a
   frame at the centre when none lies within DOF/4 of it).
5. Verdict (`autofocus.search.trust`): the peak's half-width must be
   plausible for the DOF (`implausible_peak`), a candidate whose fine score
   never rises is dropped, two confirmed peaks ≥ 3 DOF apart with the
   smaller at least 12 % of the larger are rivals — the space's `rival`
   policy fails (`rival_peak`, naming both) or picks one. A peak at an end of
   the searched interval is followed up to `space.edge_extension_um` beyond
   it (inside the limits); still at the end: `edge_peak`.

**With a prior** (`expected_z_um` with `expected_sigma_um`, a revisit): the
frames near the prior first and a rival check confined to its reach
(`autofocus.search.strategies.guided.prior`); no plane there, or a second one
within reach, falls back to the paths above with every frame kept.

`details` records the path taken, the coarse step, the candidates and peaks.
"""

from __future__ import annotations

from typing import Any

from autofocus.search.strategies.base import SearchSpace
from autofocus.search.strategies.common import Search
from autofocus.search.strategies.guided.capture import CapturePath
from autofocus.search.strategies.guided.estimate import EstimatePath
from autofocus.search.strategies.guided.prior import PriorPath


class Guided(PriorPath, EstimatePath, CapturePath):
    """Few-frame focus search: estimate-guided when the scorer can, capture-guided otherwise.

    Options: `step_factor` (2.4) scales the coarse step; `min_rise` (0.5) the
    relative capture rise that counts as "rising"; `max_candidates` (3);
    `candidate_ratio` (0.1); `bracket_dof` (0.7) the half-spacing of the fine
    bracket in DOF; `max_estimate_sigma_dof` (1.0). See the module docstring.
    """

    name = "guided"
    wants_capture = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        step_factor: float = 2.4,
        min_rise: float = 0.5,
        max_candidates: int = 3,
        candidate_ratio: float = 0.1,
        bracket_dof: float = 0.7,
        max_estimate_sigma_dof: float = 1.0,
        centre_probe: bool = True,
    ) -> None:
        super().__init__(space)
        if not step_factor > 0:
            raise ValueError(f"step_factor must be positive, got {step_factor}")
        if not min_rise > 0:
            raise ValueError(f"min_rise must be positive, got {min_rise}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be ≥ 1, got {max_candidates}")
        if not bracket_dof > 0:
            raise ValueError(f"bracket_dof must be positive, got {bracket_dof}")
        self.step_factor = float(step_factor)
        self.min_rise = float(min_rise)
        self.max_candidates = int(max_candidates)
        self.candidate_ratio = float(candidate_ratio)
        self.bracket_dof = float(bracket_dof)
        self.max_estimate_sigma_dof = float(max_estimate_sigma_dof)
        self.centre_probe = bool(centre_probe)
        self.rival_check = space.rival_check  # checked by SearchSpace
        self.estimates_offered = False
        self._excluded: list[float] = []  # positions whose frames proved unusable
        self._near_focus_only = False  # estimate path: every frame is close to focus
        self._span: tuple[float, float] | None = None  # where the current candidate may lie
        self.details: dict[str, Any] = {}

    def configure(self, *, estimates: bool) -> None:
        """Tell the strategy whether the engine will pass defocus estimates (before `ask`)."""
        self.estimates_offered = bool(estimates)

    def _search(self) -> Search:
        dof = self.space.dof
        self.details = {"dof_um": dof}
        if self.space.prior_sigma_um is not None:  # a revisit: search near the prior first
            result = yield from self._prior_path()
            if result is not None:
                return result
        if self.estimates_offered:
            result = yield from self._estimate_path()
            if result is not None:
                return result
        return (yield from self._classical_path())
