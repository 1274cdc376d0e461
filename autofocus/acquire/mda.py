"""Software autofocus inside a pymmcore-plus multi-dimensional acquisition (MDA).

pymmcore-plus's stock `MDAEngine` answers a `useq.HardwareAutofocus` event (what
`AxesBasedAF(axes=("p",))` inserts at every new position) only with a hardware
autofocus device; without one it logs "No autofocus device found" and acquires
out of focus. `AutofocusEngine` is that engine with our image-based autofocus in
its place, on the same core as the acquisition:

- per position it stores a Z correction exactly like the stock engine
  (`_z_correction[p] += found − before`), so every later event at that position,
  z-stacks included, is shifted by it;
- it retries up to the event's `max_retries` and then applies `on_failure`:
  `"keep"` the last good correction of the position (or the focus map's), `"skip"`
  the position's images until its next autofocus succeeds, or `"stop"` the run: the
  runner is cancelled the way pymmcore-plus cancels (`runner.cancel()`: no further
  event, `sequenceCanceled` then `sequenceFinished`); only when no runner can be found
  is `AcquisitionStopped` raised instead;
- `AxesBasedAF.autofocus_motor_offset` is honoured as a Z offset (µm) from the found
  focus at which the position is imaged (the metadata's `z_um` stays the focus found,
  `offset_um` says the offset);
- `AxesBasedAF.autofocus_device_name`: by default our software autofocus runs even
  when it names a hardware autofocus device the core has (said once, as a
  `UserWarning` and a log warning); `device_autofocus="device"` delegates those
  events to the device's `fullFocus` (pymmcore-plus' stock behaviour, offset set on
  the device) while everything else stays ours (Z limits, approach from below,
  per-frame `"autofocus"` metadata with `source="device"`);
- every frame's metadata carries `"autofocus"`: the focus result that placed it
  (z, confidence, frames, reason, where the z came from);
- around the search it applies an optional focus channel preset and exposure and
  restores channel, exposure, shutter state and auto-shutter afterwards;
- with a `FocusMap` it places positions that have no autofocus of their own at the
  map's z, and refreshes the map with an autofocus every `map_refresh_positions`
  positions or `map_refresh_s` seconds;
- every Z it commands, its own and the acquisition's, is checked against
  `z_limits_um` (an event outside them is skipped, never sent), and approached from
  below like the autofocus's own moves, so mechanical backlash lands the same way.

Set it on the core's own runner, which is what napari-micromanager and the
pymmcore-widgets MDA widget run; importing this module changes nothing globally::

    engine = AutofocusEngine(core, z_limits_um=ZLimits(-100, 100))
    core.mda.set_engine(engine)          # or: core.register_mda_engine(engine)
    core.mda.run(sequence)

Needs the `mm` extra (pymmcore-plus, useq-schema).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from autofocus_drivers.base import ZLimits
from autofocus_drivers.micromanager import MicroManagerMicroscope
from pymmcore_plus.mda import MDAEngine
from useq import HardwareAutofocus, MDAEvent

from autofocus.errors import AutofocusError, ConfigurationError, LimitError, MicroscopeError
from autofocus.logging import get_logger
from autofocus.scoring.base import Scorer
from autofocus.scoring.registry import get_scorer
from autofocus.search.focus import DEFAULT_TOLERANCE_UM, FocusRequest, focus
from autofocus.search.maps.focus_map import FocusMap, MapPoint, map_point_verdict
from autofocus.search.result import FocusResult

try:  # pymmcore-plus ≥ 0.16 lets setup_event skip an event cleanly
    from pymmcore_plus.mda import SkipEvent
except ImportError:  # pragma: no cover - older pymmcore-plus: images are dropped instead
    SkipEvent = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus
    from pymmcore_plus.metadata import FrameMetaV1

__all__ = ["AcquisitionStopped", "AutofocusEngine", "FailurePolicy", "PositionFocus"]

log = get_logger("autofocus.acquire.mda")

FailurePolicy = Literal["keep", "skip", "stop"]
FAILURE_POLICIES: tuple[str, ...] = ("keep", "skip", "stop")
DeviceAutofocus = Literal["software", "device"]
DEVICE_AUTOFOCUS_MODES: tuple[str, ...] = ("software", "device")


class AcquisitionStopped(AutofocusError):
    """The autofocus failed at a position, the policy is `"stop"` and no runner was found.

    With a runner (the core's `core.mda`, one passed as `runner=`, or the runner
    that called `setup_sequence`) the run is cancelled instead, as pymmcore-plus
    cancels: `sequenceCanceled` then `sequenceFinished`, nothing raised.
    """


@dataclass(frozen=True)
class PositionFocus:
    """Where one position's Z came from, as recorded in the frame metadata.

    `source` is "autofocus" (a search at this visit), "map" (the focus map's
    prediction), "kept" (autofocus failed; the last good correction was kept) or
    "skipped" (autofocus failed; the position's images are skipped). `z_um` the
    focus z found or predicted (µm), `correction_um` the offset applied to the
    position's z, `attempts` autofocus runs made (1 + retries).
    """

    p_index: int | None
    source: str
    success: bool
    z_um: float | None
    correction_um: float
    confidence: float | None = None
    frames: int = 0
    attempts: int = 0
    reason: str | None = None
    error_type: str | None = None
    hardware_s: float = 0.0
    x_um: float | None = None
    y_um: float | None = None
    offset_um: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_index": self.p_index,
            "source": self.source,
            "success": self.success,
            "z_um": self.z_um,
            "correction_um": round(self.correction_um, 6),
            "confidence": self.confidence,
            "frames": self.frames,
            "attempts": self.attempts,
            "reason": self.reason,
            "error_type": self.error_type,
            "hardware_s": round(self.hardware_s, 6),
            "x_um": self.x_um,
            "y_um": self.y_um,
            "offset_um": self.offset_um,
        }


class AutofocusEngine(MDAEngine):
    """A pymmcore-plus `MDAEngine` that answers `HardwareAutofocus` events with our autofocus.

    `mmc` the `CMMCorePlus` (or `UniMMCore`) running the acquisition. `z_limits_um`
    (required: Micro-Manager knows none) bounds every Z move. `request` the focus
    search (range, tolerance, strategy; `center_z_um` is ignored: each search is
    centred where the position put the stage); `scorer` a name or a loaded `Scorer`.
    `on_failure` the failure policy (see the module docstring). `focus_channel`
    (group, preset) and `focus_exposure_ms` are applied for the search only.
    `focus_map`, `map_refresh_positions`, `map_refresh_s`: place positions without
    an autofocus event from the map and refresh it. `approach_from_below` makes every
    acquisition Z move come from `request.overshoot_um` below, like the autofocus's own
    moves, so the stage's play lands the same way. A revisit (a position that was
    autofocused before, or placed from the focus map) searches with a prior:
    `expected_z_um` where the position's last focus (or the map's prediction) put the
    stage, `expected_sigma_um` = `revisit_sigma_um` (default: one depth of field,
    the request's `dof_um` or 4 × its tolerance; 0 turns priors off). A retry never
    repeats the same search: it drops the prior and widens the range by
    `retry_widen` per attempt (inside the Z limits). Remaining keyword arguments go
    to `MDAEngine` (e.g. `use_hardware_sequencing`). `device_autofocus` "software"
    (default: ours, also where the event names a hardware autofocus device) or
    "device" (such events run the device's `fullFocus`). `runner` the `MDARunner`
    to cancel under `on_failure="stop"` (default: `mmc.mda` when this engine is set
    there, else the runner that starts the sequence). Raises `ConfigurationError`
    for an unknown policy, mode or focus channel.
    """

    def __init__(
        self,
        mmc: CMMCorePlus,
        *,
        z_limits_um: ZLimits,
        request: FocusRequest | None = None,
        scorer: Scorer | str | None = None,
        on_failure: FailurePolicy = "keep",
        focus_channel: tuple[str, str] | None = None,
        focus_exposure_ms: float | None = None,
        focus_map: FocusMap | None = None,
        map_refresh_positions: int | None = None,
        map_refresh_s: float | None = None,
        approach_from_below: bool = True,
        revisit_sigma_um: float | None = None,
        retry_widen: float = 1.5,
        device_autofocus: DeviceAutofocus = "software",
        runner: Any = None,
        **engine_kwargs: Any,
    ) -> None:
        super().__init__(mmc, **engine_kwargs)
        if not isinstance(z_limits_um, ZLimits):
            raise ConfigurationError("z_limits_um must be a ZLimits(min_um, max_um)")
        if on_failure not in FAILURE_POLICIES:
            raise ConfigurationError(
                f"on_failure must be one of {', '.join(FAILURE_POLICIES)}, got {on_failure!r}"
            )
        if device_autofocus not in DEVICE_AUTOFOCUS_MODES:
            raise ConfigurationError(
                f"device_autofocus must be one of {', '.join(DEVICE_AUTOFOCUS_MODES)}, "
                f"got {device_autofocus!r}"
            )
        if focus_channel is not None:
            group, preset = focus_channel
            if not mmc.isGroupDefined(group) or not mmc.isConfigDefined(group, preset):
                raise ConfigurationError(
                    f'focus channel "{group}/{preset}" is not defined in Micro-Manager '
                    f"(groups: {', '.join(mmc.getAvailableConfigGroups()) or 'none'})"
                )
        if focus_exposure_ms is not None and not (
            math.isfinite(focus_exposure_ms) and focus_exposure_ms > 0
        ):
            raise ConfigurationError(f"focus_exposure_ms must be > 0, got {focus_exposure_ms!r}")
        for name, value in (("map_refresh_positions", map_refresh_positions),
                            ("map_refresh_s", map_refresh_s)):
            if value is not None and not value > 0:
                raise ConfigurationError(f"{name} must be > 0 or None, got {value!r}")
        if revisit_sigma_um is not None and not (
            math.isfinite(revisit_sigma_um) and revisit_sigma_um >= 0
        ):
            raise ConfigurationError(f"revisit_sigma_um must be ≥ 0, got {revisit_sigma_um!r}")
        if not (math.isfinite(retry_widen) and retry_widen > 1):
            raise ConfigurationError(f"retry_widen must be > 1, got {retry_widen!r}")
        self.revisit_sigma_um = revisit_sigma_um
        self.retry_widen = float(retry_widen)
        self.z_limits_um = z_limits_um
        self.device_autofocus: DeviceAutofocus = device_autofocus
        self.runner = runner
        self._sequence_runner: Any = None
        self._said_software_instead = False
        self.approach_from_below = approach_from_below
        self.request = request or FocusRequest(range_um=60.0)
        self.on_failure: FailurePolicy = on_failure
        self.focus_channel = focus_channel
        self.focus_exposure_ms = focus_exposure_ms
        self.focus_map = focus_map
        self.map_refresh_positions = map_refresh_positions
        self.map_refresh_s = map_refresh_s
        self._scorer: Scorer = (
            get_scorer(scorer or self.request.scorer) if not hasattr(scorer, "score")
            else scorer  # type: ignore[assignment]
        )
        self.stop_reason: str | None = None
        """Why the last run was stopped (on_failure="stop"), else None."""
        self.focus_log: list[PositionFocus] = []
        """Every autofocus, map placement and failure of the last run, in order."""
        self._position_focus: dict[int | None, PositionFocus] = {}
        self._autofocused: set[int | None] = set()
        self._skipped: set[int | None] = set()
        self._since_refresh = 0
        self._microscope: MicroManagerMicroscope | None = None

    # ------------------------------------------------------------ sequence

    def setup_sequence(self, sequence: Any) -> Any:
        """Reset per-position state and open the Z stage/camera the autofocus drives."""
        self._position_focus.clear()
        self._autofocused.clear()
        self._skipped.clear()
        self.focus_log = []
        self.stop_reason = None
        self._since_refresh = 0
        self._sequence_runner = self._find_runner()
        summary = super().setup_sequence(sequence)
        self._microscope = MicroManagerMicroscope(
            self.mmcore, z_limits_um=self.z_limits_um, continuous_focus="pause"
        )
        return summary

    def _find_runner(self) -> Any:
        """The `MDARunner` running this engine: given, the core's, or the caller's."""
        if self.runner is not None:
            return self.runner
        core_runner = getattr(self.mmcore, "mda", None)
        if core_runner is not None and getattr(core_runner, "engine", None) is self:
            return core_runner
        frame = sys._getframe(1)
        while frame is not None:  # a dedicated MDARunner called setup_sequence
            caller = frame.f_locals.get("self")
            if caller is not None and getattr(caller, "_engine", None) is self and callable(
                getattr(caller, "cancel", None)
            ):
                return caller
            frame = frame.f_back
        return None

    def teardown_sequence(self, sequence: Any) -> None:
        if self._microscope is not None:
            self._microscope.close()  # restores nothing else: the core stays as it was
            self._microscope = None
        super().teardown_sequence(sequence)

    # --------------------------------------------------------------- events

    def setup_event(self, event: MDAEvent) -> None:
        """Move to the event as the stock engine does, placing Z from the map when due.

        Image events of a position whose autofocus failed under the "skip" policy are
        skipped here (nothing moves).
        """
        p_idx = event.index.get("p")
        is_af = isinstance(getattr(event, "action", None), HardwareAutofocus)
        if not is_af and p_idx in self._skipped and SkipEvent is not None:
            raise SkipEvent(reason=f"autofocus failed at position {p_idx}")
        if not is_af and self.focus_map is not None and p_idx not in self._autofocused:
            self._place_from_map(event, p_idx)
        super().setup_event(event)
        if not is_af and self._refresh_due(event, p_idx):
            self._autofocus_here(event, max_retries=1, refresh=True)
            if self.stop_reason is not None and SkipEvent is not None:
                raise SkipEvent(reason=self.stop_reason)  # cancelled: image nothing more
            super().setup_event(event)  # back to the event's z with the new correction

    def exec_event(self, event: MDAEvent) -> Iterable[Any]:
        """Run our autofocus for `HardwareAutofocus` events; acquire images otherwise."""
        action = getattr(event, "action", None)
        if isinstance(action, HardwareAutofocus):
            if self._hardware_device(action) is not None and self.device_autofocus == "device":
                return self._device_autofocus(event, action)
            self._autofocus_here(event, max_retries=max(1, int(action.max_retries)),
                                 offset_um=float(action.autofocus_motor_offset or 0.0))
            return ()
        if event.index.get("p") in self._skipped:
            return ()  # older pymmcore-plus without SkipEvent: drop the images
        return super().exec_event(event)

    def _hardware_device(self, action: HardwareAutofocus) -> str | None:
        """The hardware autofocus device the event names and the core has, else None."""
        name = getattr(action, "autofocus_device_name", None)
        if not name:
            return None
        try:
            from pymmcore_plus import DeviceType

            devices = set(self.mmcore.getLoadedDevicesOfType(DeviceType.AutoFocus))
        except Exception:  # noqa: BLE001 - a core that cannot list devices has none
            return None
        if name not in devices:
            return None
        if self.device_autofocus == "software" and not self._said_software_instead:
            self._said_software_instead = True
            message = (
                f"the acquisition names the hardware autofocus device {name!r}; this engine "
                "runs its software (image-based) autofocus instead. Pass "
                "AutofocusEngine(..., device_autofocus='device') to use the device's fullFocus."
            )
            log.warning("mda.software_autofocus_instead_of_device", device=name)
            warnings.warn(message, UserWarning, stacklevel=2)
        return name

    def _device_autofocus(self, event: MDAEvent, action: HardwareAutofocus) -> Iterable[Any]:
        """The stock engine's `fullFocus` path; the result is recorded like ours."""
        p_idx = event.index.get("p")
        before = self._z_correction.get(p_idx, 0.0)
        self._af_succeeded = False
        core = self.mmcore
        previous_device = core.getAutoFocusDevice()
        core.setAutoFocusDevice(str(action.autofocus_device_name))  # the one the event names
        try:
            for _ in super().exec_event(event) or ():  # its autofocus branch yields nothing
                pass
        finally:
            if previous_device != action.autofocus_device_name:
                core.setAutoFocusDevice(previous_device)
        ok = bool(self._af_succeeded)
        z_now = float(self.mmcore.getZPosition()) if self.mmcore.getFocusDevice() else None
        record = PositionFocus(
            p_idx, "device", ok, z_now if ok else None, self._z_correction.get(p_idx, before),
            attempts=1, reason=None if ok else "device fullFocus failed",
            x_um=event.x_pos, y_um=event.y_pos,
        )
        if ok:
            self._autofocused.add(p_idx)
            self._skipped.discard(p_idx)
        else:
            failed = self._apply_failure_policy(record)
            if failed is None:
                return ()
            record = failed
        self._record(record)
        return ()

    def get_frame_metadata(self, event: MDAEvent, *args: Any, **kwargs: Any) -> FrameMetaV1:
        """The stock frame metadata plus `"autofocus"`: how this position's Z was chosen."""
        meta = super().get_frame_metadata(event, *args, **kwargs)
        record = self._position_focus.get(event.index.get("p"))
        meta["autofocus"] = record.to_dict() if record is not None else None  # type: ignore[typeddict-unknown-key]
        return meta

    def _set_event_z(self, event: MDAEvent) -> None:
        """Command the event's z plus the position's correction, never outside the limits."""
        core = self.mmcore
        if not core.getFocusDevice():
            return super()._set_event_z(event)
        p_idx = event.index.get("p")
        target = float(event.z_pos) + self._z_correction.setdefault(p_idx, 0.0)  # type: ignore[arg-type]
        if not self.z_limits_um.contains(target):
            message = (
                f"position {p_idx}: z {target:.3f} µm is outside the Z limits "
                f"[{self.z_limits_um.min_um}, {self.z_limits_um.max_um}] µm; event skipped"
            )
            log.warning("mda.z_outside_limits", p_index=p_idx, z_um=target)
            if SkipEvent is not None:
                raise SkipEvent(reason=message)
            raise LimitError(message)
        # Approach from below, as the autofocus does, so backlash lands the same way and the
        # z found is the z imaged (a focus drive's play can be a DOF or more).
        below = self.z_limits_um.clamp(target - self.request.overshoot_um)
        if self.approach_from_below and core.getZPosition() > below:
            core.setZPosition(below)
            core.waitForDevice(core.getFocusDevice())
        core.setZPosition(target)

    # ------------------------------------------------------------ autofocus

    def _home_z(self, event: MDAEvent) -> float | None:
        """The position's own z: the event's z minus its relative z-plan offset."""
        if event.z_pos is None:
            return None
        z = float(event.z_pos)
        seq = event.sequence
        if seq is not None and seq.z_plan is not None and "z" in event.index:
            if seq.z_plan.is_relative:
                z -= list(seq.z_plan)[event.index["z"]]
        return z

    def _autofocus_here(
        self, event: MDAEvent, *, max_retries: int, refresh: bool = False, offset_um: float = 0.0
    ) -> None:
        mic = self._microscope
        assert mic is not None, "setup_sequence was not called"
        p_idx = event.index.get("p")
        before_z = float(mic.z_um)
        result: FocusResult | None = None
        attempts = 0
        hardware_s = 0.0
        reason: str | None = None
        error_type: str | None = None
        with self._focus_conditions():
            for attempts in range(1, max_retries + 1):
                request = self._attempt_request(p_idx, before_z, attempts)
                try:
                    result = focus(mic, request, scorer=self._scorer)
                except (AutofocusError, MicroscopeError, ValueError) as exc:  # refused, unmoved
                    result = None
                    reason, error_type = str(exc), type(exc).__name__
                    break
                hardware_s += result.timing.hardware_s
                if result.success:
                    break
                log.warning("mda.autofocus_retry", p_index=p_idx, attempt=attempts,
                            reason=result.reason)
        if result is not None:
            reason, error_type = result.reason, result.error_type
        if result is not None and result.success and result.best_z_um is not None:
            found = float(result.best_z_um)
            # Image at the focus found plus the acquisition's motor offset (µm).
            correction = found + offset_um - before_z + self._z_correction.get(p_idx, 0.0)
            self._z_correction[p_idx] = correction
            self._autofocused.add(p_idx)
            self._skipped.discard(p_idx)
            self._af_succeeded = True
            record = PositionFocus(
                p_idx, "autofocus", True, found, correction,
                confidence=round(float(result.confidence), 4), frames=result.frames,
                attempts=attempts, hardware_s=hardware_s, x_um=event.x_pos, y_um=event.y_pos,
                offset_um=offset_um,
            )
            self._add_map_point(event, found, result)
        else:
            self._af_succeeded = False
            frames = result.frames if result is not None else 0
            record = PositionFocus(
                p_idx, "kept", False, None, self._z_correction.get(p_idx, 0.0),
                frames=frames, attempts=attempts, reason=reason, error_type=error_type,
                hardware_s=hardware_s, x_um=event.x_pos, y_um=event.y_pos,
            )
            failed = self._apply_failure_policy(record)
            if failed is None:
                return
            record = failed
        self._record(record)
        if refresh:
            self._since_refresh = 0

    def _attempt_request(self, p_idx: int | None, z_um: float, attempt: int) -> FocusRequest:
        """The search of attempt `attempt` (1-based) at a position whose stage is at `z_um`.

        First attempt at a revisit: the configured search with a prior at `z_um` (where
        the last focus or the map put the stage). A retry drops the prior and widens
        the range by `retry_widen` per retry, up to the Z limits' span, so it never
        repeats the search that failed.
        """
        req = self.request
        if attempt > 1:
            span = self.z_limits_um.max_um - self.z_limits_um.min_um
            widened = min(req.range_um * self.retry_widen ** (attempt - 1), span)
            req = replace(req, range_um=widened, expected_sigma_um=None)
            log.info("mda.autofocus_retry_widened", p_index=p_idx, attempt=attempt,
                     range_um=widened)
        elif req.expected_sigma_um is None and self._is_revisit(p_idx):
            sigma = self.revisit_sigma_um
            if sigma is None:
                tolerance = req.tolerance_um or DEFAULT_TOLERANCE_UM
                sigma = req.dof_um if req.dof_um is not None else 4.0 * tolerance
            if sigma > 0:
                req = replace(req, expected_z_um=z_um, expected_sigma_um=float(sigma))
        return replace(req, center_z_um=self._search_center(z_um, req.range_um))

    def _is_revisit(self, p_idx: int | None) -> bool:
        """True when the position's z comes from an earlier focus or the focus map."""
        last = self._position_focus.get(p_idx)
        return last is not None and last.success and last.source in ("autofocus", "map")

    def _apply_failure_policy(self, record: PositionFocus) -> PositionFocus | None:
        """The failed autofocus's record under `on_failure` (to record); None once stopped.

        "stop" cancels the runner as pymmcore-plus does (`runner.cancel()`: the runner
        stops at this event's boundary and emits `sequenceCanceled`); without a runner it
        raises `AcquisitionStopped`.
        """
        p_idx, policy = record.p_index, self.on_failure
        if policy == "stop":
            self._record(replace(record, source="stopped"))
            message = (
                f"autofocus failed at position {p_idx} after {record.attempts} attempt(s): "
                f"{record.reason}; acquisition stopped (on_failure='stop')"
            )
            log.warning("mda.autofocus_failed", p_index=p_idx, policy=policy,
                        reason=record.reason)
            runner = self._sequence_runner
            if runner is None:
                raise AcquisitionStopped(message)
            self.stop_reason = message
            runner.cancel()
            return None
        if policy == "skip":
            self._skipped.add(p_idx)
        log.warning("mda.autofocus_failed", p_index=p_idx, policy=policy, reason=record.reason)
        return replace(record, source="skipped" if policy == "skip" else "kept")

    def _record(self, record: PositionFocus) -> None:
        self._position_focus[record.p_index] = record
        self.focus_log.append(record)

    def _search_center(self, z_um: float, range_um: float | None = None) -> float:
        """Centre the search at `z_um`, moved inwards just enough to keep the range legal."""
        half = (self.request.range_um if range_um is None else range_um) / 2
        lo, hi = self.z_limits_um.min_um + half, self.z_limits_um.max_um - half
        return z_um if lo > hi else min(max(z_um, lo), hi)

    # --------------------------------------------------------- focus map

    def _place_from_map(self, event: MDAEvent, p_idx: int | None) -> None:
        fmap = self.focus_map
        home = self._home_z(event)
        if fmap is None or not fmap.ready or event.x_pos is None or event.y_pos is None:
            return
        if home is None:
            return
        predicted = fmap.predict_z_um(float(event.x_pos), float(event.y_pos))
        correction = predicted - home
        previous = self._position_focus.get(p_idx)
        self._z_correction[p_idx] = correction
        if previous is None or previous.source != "map" or previous.z_um != predicted:
            self._record(PositionFocus(
                p_idx, "map", True, predicted, correction,
                x_um=event.x_pos, y_um=event.y_pos,
            ))
            self._since_refresh += 1

    def _refresh_due(self, event: MDAEvent, p_idx: int | None) -> bool:
        fmap = self.focus_map
        if fmap is None or p_idx in self._autofocused or event.x_pos is None:
            return False
        if not fmap.ready:
            return True  # too few points to predict: measure this position
        if self.map_refresh_positions and self._since_refresh >= self.map_refresh_positions:
            return True
        return bool(self.map_refresh_s and time.monotonic() - fmap.updated_s >= self.map_refresh_s)

    def _add_map_point(self, event: MDAEvent, z_um: float, result: FocusResult) -> None:
        if self.focus_map is None or event.x_pos is None or event.y_pos is None:
            return
        if map_point_verdict(result) is not None:  # e.g. a rival plane: not a map point
            return
        self.focus_map.add(MapPoint(
            float(event.x_pos), float(event.y_pos), z_um, confidence=float(result.confidence),
            frames=result.frames, hardware_s=result.timing.hardware_s,
        ))

    # ------------------------------------------------------ channel/shutter

    def _focus_conditions(self) -> _FocusConditions:
        return _FocusConditions(self.mmcore, self.focus_channel, self.focus_exposure_ms)


class _FocusConditions:
    """Apply the focus channel/exposure and restore channel, exposure and shutter after."""

    def __init__(
        self, core: Any, channel: tuple[str, str] | None, exposure_ms: float | None
    ) -> None:
        self.core, self.channel, self.exposure_ms = core, channel, exposure_ms
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        core = self.core
        self._saved = {
            "exposure_ms": core.getExposure(),
            "autoshutter": core.getAutoShutter(),
            "shutter_open": core.getShutterOpen() if core.getShutterDevice() else None,
        }
        if self.channel is not None:
            group, preset = self.channel
            self._saved["config"] = (group, core.getCurrentConfig(group))
            core.setConfig(group, preset)
            core.waitForConfig(group, preset)
        if self.exposure_ms is not None:
            core.setExposure(float(self.exposure_ms))
        if not self._saved["autoshutter"]:
            # The acquisition holds the shutter open (keep_shutter_open); autofocus frames
            # need light too, and the shutter state is put back afterwards.
            core.setAutoShutter(True)

    def __exit__(self, *exc_info: object) -> None:
        core, saved = self.core, self._saved
        problems: list[str] = []
        steps: list[tuple[str, Any]] = []
        if "config" in saved:
            group, preset = saved["config"]
            if preset:
                steps.append((f"channel {group}/{preset}", lambda: core.setConfig(group, preset)))
        steps.append(("exposure", lambda: core.setExposure(saved["exposure_ms"])))
        steps.append(("auto-shutter", lambda: core.setAutoShutter(saved["autoshutter"])))
        if saved.get("shutter_open") is not None:
            steps.append(("shutter", lambda: core.setShutterOpen(saved["shutter_open"])))
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - report all, raise none from cleanup
                problems.append(f"{what}: {exc}")
        if problems:
            log.error("mda.restore_failed", problems=problems)


def positions_report(engine: AutofocusEngine) -> list[dict[str, Any]]:
    """The last record per position (as in the frame metadata), in position order."""
    last: dict[int | None, PositionFocus] = {}
    for rec in engine.focus_log:
        last[rec.p_index] = rec
    return [last[k].to_dict() for k in sorted(last, key=lambda k: (k is None, k or 0))]

