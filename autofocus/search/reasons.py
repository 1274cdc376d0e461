"""Why a focus search did not succeed: one stable code per cause, with a plain sentence each.

Programs branch on the code (`FailureReason.RIVAL_PEAK == "rival_peak"`); people
read the message, which names the numbers of the case (z in µm, frames, limits).
The codes are the same in the CLI's JSON, the HTTP results and the client.
"""

from __future__ import annotations

from enum import Enum


class FailureReason(str, Enum):
    """A stable failure code; `.sentence` is its plain-language meaning."""

    FLAT_CURVE = "flat_curve"
    EDGE_PEAK = "edge_peak"
    RIVAL_PEAK = "rival_peak"
    IMPLAUSIBLE_PEAK = "implausible_peak"
    BUDGET_EXHAUSTED = "budget_exhausted"
    VERIFY_FAILED = "verify_failed"
    NO_SPECIMEN = "no_specimen"
    HARDWARE = "hardware"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INTERNAL = "internal"
    INTERRUPTED = "interrupted"

    @property
    def sentence(self) -> str:
        """What the code means, in one sentence a microscopist understands."""
        return _SENTENCES[self]


_SENTENCES = {
    FailureReason.FLAT_CURVE: "the sharpness hardly changed over the searched range, so no "
    "focal plane stands out (no specimen in view, or focus is outside the range)",
    FailureReason.EDGE_PEAK: "the sharpest frames lie at the edge of the searched range and "
    "the Z limits do not allow looking further",
    FailureReason.RIVAL_PEAK: "two candidate focal planes were found and the request's rival "
    "policy does not choose between them",
    FailureReason.IMPLAUSIBLE_PEAK: "the sharpness peak is much narrower than the depth of "
    "field or fits badly, so it is not a focal plane (garbage frames or noise)",
    FailureReason.BUDGET_EXHAUSTED: "the frame budget ran out before focus was found",
    FailureReason.VERIFY_FAILED: "the frame taken at the chosen plane did not confirm it",
    FailureReason.NO_SPECIMEN: "the field of view holds no usable specimen (blank, empty "
    "background, saturated or noise only)",
    FailureReason.HARDWARE: "the stage or the camera failed or did not answer",
    FailureReason.CANCELLED: "the search was cancelled",
    FailureReason.TIMEOUT: "the search ran out of time",
    FailureReason.INTERNAL: "the autofocus software itself failed (a bug: the log has the "
    "traceback)",
    FailureReason.INTERRUPTED: "the autofocus service stopped (crash, kill, power loss) while "
    "the job was queued or running; the stage did not return",
}

__all__ = ["FailureReason"]
