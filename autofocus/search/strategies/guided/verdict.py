"""The guided search's verdict on its refined candidates: success, or why not.

`Verdict._verdict` fails a search whose frames nearly all look empty to the
defocus estimate (`no_specimen`), keeps each plane once, applies the space's rival policy,
fails a peak at the end of the searched interval (`edge_peak`) or one whose
width the optics cannot produce (`implausible_peak`), and finishes with the
chosen peak and its confidence.
"""

from __future__ import annotations

from typing import Any

from autofocus.search.reasons import FailureReason
from autofocus.search.strategies.common import edge_reason, jsonable
from autofocus.search.strategies.guided.samples import GuidedSamples
from autofocus.search.strategies.guided.shape import Refined
from autofocus.search.trust import (
    choose,
    peak_confidence,
    rival_sentence,
    width_plausible,
)

# Without known optics (DOF guessed as 4 × tolerance) the width rule is this much laxer.
UNKNOWN_OPTICS_WIDTH_FACTOR = 0.5
# With a defocus estimator: when at least this share of the frames measured over the whole
# search, and every frame within a DOF of a found peak, say no usable specimen with at least
# `EMPTY_FRAME_P`, the field is empty (a real plane's own frames show its specimen).
EMPTY_SHARE = 0.85
EMPTY_FRAME_P = 0.9
# ... judged on at least this many frames (a search that stopped after a few frames,
# e.g. with corrupted ones among them, has not looked at the range).
EMPTY_MIN_FRAMES = 15
# A contrast-inverted plane is placed from two estimates: success only when they agree within
# the tolerance or this many DOF.
INVERSION_MAX_BOUND_DOF = 0.45


class Verdict(GuidedSamples):
    """Judges the refined candidates and ends the search."""

    def _empty_everywhere(self, peaks_z: list[float]) -> tuple[int, int]:
        """(frames whose estimate says no usable specimen with ≥ `EMPTY_FRAME_P`, frames
        with an estimate) over the whole search, or (0, n) when a frame within a DOF of
        one of `peaks_z` shows a specimen; (0, 0) without a defocus estimator."""
        dof = self.space.dof
        pairs = self._estimated("no_specimen_p")
        if any(p < EMPTY_FRAME_P and any(abs(z - pz) <= dof for pz in peaks_z)
               for z, p in pairs):
            return 0, len(pairs)
        return sum(p >= EMPTY_FRAME_P for _, p in pairs), len(pairs)

    def _inversion_refusal(self, res: Refined) -> Any:
        """A contrast-inverted plane (see `guided.inversion`) the search cannot stand behind:
        the failure when its two estimates disagree by more than the tolerance or
        `INVERSION_MAX_BOUND_DOF` DOF (or the pair may be two planes), else None."""
        space, dof = self.space, self.space.dof
        assert res.peak is not None and res.inversion_bound_um is not None
        bound = res.inversion_bound_um
        limit = max(space.tolerance_um, INVERSION_MAX_BOUND_DOF * dof)
        inv = self.details.get("contrast_inversion", {})
        z = res.peak.z_um
        if inv.get("ambiguous"):
            a, b = sorted((inv["max_um"], inv["second_max_um"]))
            return self.fail(
                f"two sharpness maxima at z = {a:.2f} and {b:.2f} µm ({(b - a) / dof:.1f} DOF "
                f"apart) with a deep minimum at z = {inv['dip_um']:.2f} µm between them: two "
                "planes, or one plane whose contrast inverts through focus (brightfield) at "
                "the minimum; the focus curve cannot tell which",
                code=FailureReason.CONTRAST_INVERSION.value,
                **self.details,
            )
        if bound > limit:
            return self.fail(
                f"contrast inverts through focus: contrast maxima at z = "
                f"{inv.get('max_um', z):.2f} and {inv.get('second_max_um', z):.2f} µm about a "
                f"minimum at z = {inv.get('dip_um', z):.2f} µm, which puts the plane "
                f"{bound:.2f} µm away from the maxima's middle; that cannot place it within "
                f"{limit:.2f} µm",
                code=FailureReason.CONTRAST_INVERSION.value,
                **self.details,
            )
        return None

    def _verdict(self, refined: list[Refined], *, reference: float | None) -> Any:
        space, dof = self.space, self.space.dof
        empty, judged = self._empty_everywhere(
            [r.peak.z_um for r in refined if r.peak is not None])
        if judged >= EMPTY_MIN_FRAMES and empty >= EMPTY_SHARE * judged:
            # Not one part of the range showed a specimen: any "peak" is noise on an empty
            # field (the probes alone cannot tell it from a sparse specimen far out of focus).
            self.details["empty_frames"] = [empty, judged]
            return self.fail(
                f"no usable specimen: {empty} of {judged} frames over the whole range look "
                "blank, empty, saturated or noise only to the defocus estimate",
                code=FailureReason.NO_SPECIMEN.value,
                **self.details,
            )
        found: list[Refined] = []
        for r in refined:  # two candidates can lead to the same plane: keep it once
            if r.peak is not None and all(
                abs(r.peak.z_um - f.peak.z_um) > dof for f in found if f.peak is not None
            ):
                found.append(r)
        self.details["peaks"] = [r.peak.to_dict() for r in found if r.peak is not None]
        if not found:
            return self.fail(
                "no focus signal: the wide-capture curve rose but no frame near it was sharper "
                "than the noise of the focus measure",
                code=FailureReason.FLAT_CURVE.value,
                **self.details,
            )
        peaks = [r.peak for r in found if r.peak is not None]
        # One name per plane; a peak clearly out of the noise is a plane whatever its height.
        best, rival_list = self._rivals(peaks, distinct=True)
        assert best is not None
        if reference is None:
            reference = space.center_z_um
        chosen_peak = choose(best, rival_list, space.rival, reference_z_um=reference)
        if rival_list:
            self.details["rivals"] = [p.to_dict() for p in [best, *rival_list]]
        if chosen_peak is None:
            out = self.fail(rival_sentence([best, *rival_list]),
                            code=FailureReason.RIVAL_PEAK.value, **self.details)
            out.details["candidates"] = jsonable([p.to_dict() for p in [best, *rival_list]])
            return out
        res = next(r for r in found if r.peak is chosen_peak)
        p = chosen_peak
        lo, hi = space.lo_um, space.hi_um
        ext_lo, ext_hi = space.ext_lo_um, space.ext_hi_um
        if res.width_unresolved and not res.at_edge:
            pass  # recorded planes too far apart to measure a width: the plane is the answer
        elif res.at_edge or p.hwhm_um is None:
            z_edge = p.z_um
            if z_edge <= ext_lo + 0.5 * dof or z_edge >= ext_hi - 0.5 * dof:
                return self.fail(edge_reason(z_edge), code=FailureReason.EDGE_PEAK.value,
                                 **self.details)
            return self.fail(
                f"not a focal plane: the sharpest frame at z = {p.z_um:.2f} µm has no measured "
                "peak around it (its neighbours could not bracket it)",
                code=FailureReason.IMPLAUSIBLE_PEAK.value,
                **self.details,
            )
        width_dof = dof if space.dof_um else UNKNOWN_OPTICS_WIDTH_FACTOR * dof
        if res.inversion_bound_um is not None:
            # The pair's own width is no test of the plane between them; agreement is.
            refusal = self._inversion_refusal(res)
            if refusal is not None:
                return refusal
        elif not res.width_unresolved and not width_plausible(p.hwhm_um, width_dof):
            return self.fail(
                f"not a focal plane: the peak at z = {p.z_um:.2f} µm is {2 * p.hwhm_um:.2f} µm "
                f"wide (full width at half maximum) where the depth of field is {dof:.2f} µm",
                code=FailureReason.IMPLAUSIBLE_PEAK.value,
                **self.details,
            )
        if not (ext_lo < p.z_um < ext_hi):
            return self.fail(edge_reason(p.z_um), code=FailureReason.EDGE_PEAK.value,
                             **self.details)
        self.details["extended_beyond_range"] = not (lo <= p.z_um <= hi)
        conf = peak_confidence(
            res.snr, r2=res.r2, spacing_dof=res.spacing_dof, width_ok=True
        )
        if res.inversion_bound_um is not None:
            # The answer is an interval's middle: confidence falls with the interval's width.
            conf *= max(0.0, 1.0 - res.inversion_bound_um / dof)
        best_z = p.z_um
        if space.planes_um:
            best_z = self.clamp(best_z)
        return self.finish(
            success=True,
            best_z_um=best_z,
            best_score=p.score,
            details={**self.details, "snr": res.snr, "r2": res.r2,
                     "spacing_dof": res.spacing_dof, "hwhm_um": p.hwhm_um},
            confidence_value=conf,
        )
