"""The guided search's estimate path: jump to where the defocus model says focus is.

`EstimatePath._estimate_path` probes two frames, stops on a blank field
(`no_specimen`), fuses the signed focal-plane estimates (`_fused_focus`),
brackets and fits the fine peak there (under `rival_check="full"` then looks
for a second plane in the rest of the range, `RivalChecks`), and hands over
to the classical path (returns None) when the estimate is uncertain, out of
range or contradicted by the bracket.
"""

from __future__ import annotations

import math

import numpy as np

from autofocus.search.reasons import FailureReason
from autofocus.search.strategies.common import Step
from autofocus.search.strategies.guided.rivals import RivalChecks
from autofocus.search.strategies.guided.shape import coarse_step_um
from autofocus.search.strategies.guided.verdict import Verdict

# Both probe frames must be at least this likely empty before the search stops with
# `no_specimen` (a far-defocused sparse field can look empty to the model).
NO_SPECIMEN_P = 0.97


class EstimatePath(RivalChecks, Verdict):
    """The guided search with a scorer that offers defocus estimates."""

    def _estimate_path(self) -> Step:
        """Probe, jump, bracket, fit; returns an outcome, or None to fall back."""
        space, dof = self.space, self.space.dof
        z0 = min(max(space.center_z_um, space.lo_um + 0.5 * dof), space.hi_um - 0.5 * dof)
        probe = [z0 - 0.5 * dof, z0 + 0.5 * dof]
        yield probe
        self.details["path"] = "estimate"
        no_spec = self._no_specimen_p()
        if no_spec is not None and no_spec >= NO_SPECIMEN_P:
            return self.fail(
                f"no usable specimen: the defocus estimate gives {100 * no_spec:.0f} % probability "
                "that the field is blank, empty, saturated or noise only",
                code=FailureReason.NO_SPECIMEN.value,
                **self.details,
            )
        fused = self._fused_focus()
        if fused is None:
            self.details["fallback"] = "no signed estimate"
            return None
        zf, sig = fused
        self.details["fused_um"] = [zf, sig]
        if sig > self.max_estimate_sigma_dof * dof:
            self.details["fallback"] = f"estimate too uncertain (σ {sig:.2f} µm)"
            return None
        if not space.ext_lo_um <= zf <= space.ext_hi_um:
            self.details["fallback"] = f"estimate {zf:.2f} µm outside the range"
            return None
        b = self.bracket_dof * dof
        yield self._fresh([zf - b, zf, zf + b])
        # Every frame here is near focus: the fine baseline is not seen, so the fit
        # takes half the lowest score as baseline (a wider, never narrower, peak).
        self._near_focus_only = True
        window = 3.0 * dof
        z_top = self._fine_peak(zf, window, final=False)
        got = None if z_top is None else (yield from self._bracket(z_top, zf, window))
        self._near_focus_only = False
        if got is None or got.peak is None:
            self.details["fallback"] = "no peak where the estimate pointed"
            return None
        refused = self._fused_focus()
        zf2, sig2 = refused if refused is not None else (zf, sig)
        self.details["fused_final_um"] = [zf2, sig2]
        if abs(got.peak.z_um - zf2) > 3.0 * max(sig2, 0.5 * dof):
            self.details["fallback"] = "the bracket disagrees with the estimate"
            return None
        refined = [got]
        if self.rival_check == "full":
            # The estimate points at the plane the model finds likeliest; a second plane
            # (debris) elsewhere in the range is only seen by looking there.
            cell = coarse_step_um(space.hi_um - space.lo_um, dof, self.step_factor)
            refined = yield from self._full_rival_check(refined, cell)
            refined = yield from self._confirm_dips(refined, cell)
        return self._verdict(refined, reference=zf2)

    def _no_specimen_p(self) -> float | None:
        """The lowest field-level no-specimen probability of the frames so far (None
        without estimates): the field is called empty only when every frame says so."""
        ps = [p for _, p in self._estimated("field_no_specimen_p", fallback="no_specimen_p")]
        return min(ps) if ps else None

    def _fused_focus(self) -> tuple[float, float] | None:
        """Inverse-variance fusion of every signed focal-plane estimate so far (µm, σ µm)."""
        zs, ws = [], []
        for _, est in self.estimates:
            z, sig = getattr(est, "focus_z_um", None), getattr(est, "focus_sigma_um", None)
            if z is None or sig is None or not (math.isfinite(z) and math.isfinite(sig)):
                continue
            sig = max(float(sig), 1e-6)
            zs.append(float(z))
            ws.append(1.0 / sig**2)
        if not zs:
            return None
        w = np.asarray(ws)
        z = float(np.sum(w * np.asarray(zs)) / np.sum(w))
        sig = float(1.0 / math.sqrt(np.sum(w)))
        # Estimates that disagree beyond their errors widen the fused uncertainty.
        if len(zs) >= 2:
            chi2 = float(np.sum(w * (np.asarray(zs) - z) ** 2)) / (len(zs) - 1)
            sig *= math.sqrt(max(chi2, 1.0))
        return z, sig
