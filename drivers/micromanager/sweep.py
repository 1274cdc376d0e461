"""Streamed Z sweeps through Micro-Manager: hardware-sequenced where the stage can.

When the focus stage is sequenceable (`isStageSequenceable`), the positions are
loaded as a stage sequence (`loadStageSequence`, `startStageSequence`) and the
camera runs a sequence acquisition of as many frames: the stage steps to the next
position on each camera trigger, no software move between frames. Otherwise (a
stage that cannot sequence) the sweep is stop-and-go: a settled move and a snap
per position. Either way every position is limit-checked before anything moves,
and both sequences are stopped however the sweep ends. A stage that accepts a
sequence but does not follow it (it does not end at the last position) is
caught: that sweep is redone stop-and-go and the stage is not sequenced again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from autofocus_drivers.errors import CameraError, DeviceTimeout
from autofocus_drivers.micromanager.core_api import core_method

# Wait for the sequence's frames at most this long beyond the exposures themselves.
SEQUENCE_MARGIN_S = 10.0
# After a sequence the stage must stand this close to its last position (µm).
SEQUENCE_ARRIVAL_UM = 0.05

log = logging.getLogger("autofocus_drivers.micromanager.sweep")


def is_sequenced(mic: Any) -> bool:
    """True when the focus stage of `mic` (a `MicroManagerMicroscope`) is sequenceable
    and has not been caught ignoring a sequence it accepted."""
    if getattr(mic, "_sequence_ignored", False):
        return False
    try:
        return bool(core_method(mic.core, "is_stage_sequenceable")(mic.focus_device))
    except Exception:  # noqa: BLE001 - a core without the call cannot sequence
        return False


def sweep(mic: Any, zs: Sequence[float]) -> list[tuple[float, np.ndarray]]:
    """The frames of `zs` (ascending µm) as [(z_um, frame)]: sequenced or stop-and-go."""
    positions = [float(z) for z in zs]
    if any(b <= a for a, b in zip(positions, positions[1:], strict=False)):
        raise ValueError("sweep positions must be strictly ascending")
    for z in positions:
        mic.z_limits_um.check(z)
    if not positions:
        return []
    if is_sequenced(mic):
        out = _sequenced(mic, positions)
        # A stage that reports sequencing but ignores the sequence (DemoCamera's DStage)
        # would hand back every frame from one Z: after the sweep it must stand at the
        # last position, else the frames are discarded and the stage is never trusted
        # with a sequence again.
        if abs(mic.z_um - positions[-1]) <= SEQUENCE_ARRIVAL_UM or len(positions) == 1:
            return out
        log.warning("the focus stage %r accepted a Z sequence but stands at %.3f µm, "
                    "not %.3f µm: sweeping stop-and-go from now on",
                    mic.focus_device, mic.z_um, positions[-1])
        mic._sequence_ignored = True  # noqa: SLF001
    out = []
    for z in positions:
        mic.move_z(z)
        out.append((z, mic.snap()))
    return out


def _sequenced(mic: Any, zs: list[float]) -> list[tuple[float, np.ndarray]]:
    core, stage = mic.core, mic.focus_device
    m = lambda name: core_method(core, name)  # noqa: E731
    max_len = int(m("get_stage_sequence_max_length")(stage))
    if len(zs) > max_len:
        # Longer than the controller holds: in chunks it does hold, in order.
        out: list[tuple[float, np.ndarray]] = []
        for k in range(0, len(zs), max_len):
            out.extend(_sequenced(mic, zs[k:k + max_len]))
        return out
    mic.move_z(zs[0])  # the first position, settled (the sweep's run-up)
    m("load_stage_sequence")(stage, zs)
    frames: list[np.ndarray] = []
    started = False
    try:
        m("start_stage_sequence")(stage)
        m("start_sequence_acquisition")(len(zs), 0.0, True)
        started = True
        deadline = time.monotonic() + len(zs) * (mic.exposure_ms / 1000.0) + SEQUENCE_MARGIN_S
        while len(frames) < len(zs):
            if int(m("get_remaining_image_count")()) > 0:
                frames.append(_frame(mic, m("pop_next_image")()))
            elif not m("is_sequence_running")() and int(m("get_remaining_image_count")()) == 0:
                break
            elif time.monotonic() > deadline:
                raise DeviceTimeout(
                    f"the sequenced sweep delivered {len(frames)} of {len(zs)} frames in time")
            else:
                time.sleep(0.001)
    finally:
        if started:
            try:
                m("stop_sequence_acquisition")()
            except Exception:  # noqa: BLE001, S110 - stopping what may have ended
                pass
        try:
            m("stop_stage_sequence")(stage)
        except Exception:  # noqa: BLE001, S110
            pass
        mic.wait_for_stage()
    if len(frames) != len(zs):
        raise CameraError(f"the sequenced sweep delivered {len(frames)} of {len(zs)} frames")
    return list(zip(zs, frames, strict=True))


def _frame(mic: Any, pixels: Any) -> np.ndarray:
    frame = np.asarray(pixels)
    if frame.ndim == 1:
        frame = mic._unflatten(frame)  # noqa: SLF001 - the driver's own reshaping
    return frame
