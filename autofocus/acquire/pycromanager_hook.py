"""A pycromanager `Acquisition` hook that autofocuses (through the HTTP service) per position.

pycromanager calls a `post_hardware_hook_fn` after the hardware has moved to an event's
position and before the image is taken. With hardware sequencing it hands the hook a
*list* of events (pycro-manager #394) and expects the list back; without, one event
(a dict). `autofocus_hook(client)` handles both: it asks the service to focus once
whenever an event arrives at a position it has not just focused at, and returns what
it was given, unchanged.

    from pycromanager import Acquisition, multi_d_acquisition_events
    from autofocus.acquire.pycromanager_hook import autofocus_hook
    from autofocus.client import AutofocusClient

    with AutofocusClient("http://127.0.0.1:8765") as af:
        hook = autofocus_hook(af, range_um=30)
        with Acquisition(directory="/data", name="plate7", post_hardware_hook_fn=hook) as acq:
            acq.acquire(multi_d_acquisition_events(xy_positions=xy_um, num_time_points=3))
        print(hook.results)       # one entry per autofocus: position, job state, z, error
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AutofocusHook", "autofocus_hook", "event_position"]


def event_position(event: Mapping[str, Any], axis: str = "position") -> Any:
    """The position key of one pycromanager event: its `axis` value (e.g. "position" or
    the XY grid's "row"/"column" pair), or None when the event names no position."""
    axes = event.get("axes") or {}
    if axis in axes:
        return axes[axis]
    if "row" in axes or "column" in axes:
        return (axes.get("row"), axes.get("column"))
    return None


@dataclass
class AutofocusHook:
    """Callable hook: `hook(event_or_events, *pycromanager_args) -> event_or_events`.

    `client` an `AutofocusClient`; `focus_kwargs` go to `client.focus` (range_um,
    tolerance_um, ...). `on_failure` is called with (position, job) when the service
    could not focus (the stage is back where it was); the default only records it.
    `results` lists every autofocus asked for, in order. A revisit of a position
    that focused before asks with a prior: `expected_z_um` its last focus and
    `expected_sigma_um` = `revisit_sigma_um` (default: the depth of field the last
    result reported; 0 turns priors off), so the service searches there first.
    """

    client: Any
    focus_kwargs: dict[str, Any] = field(default_factory=dict)
    axis: str = "position"
    on_failure: Callable[[Any, Any], None] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    revisit_sigma_um: float | None = None
    _last: Any = field(default=object(), repr=False)
    _prior: dict[Any, tuple[float, float]] = field(default_factory=dict, repr=False)

    def __call__(self, events: Any, *_: Any) -> Any:
        batch: Sequence[Mapping[str, Any]]
        if isinstance(events, Mapping):
            batch = [events]
        elif isinstance(events, Sequence) and not isinstance(events, (str, bytes)):
            batch = events  # a hardware-sequenced batch: all at one position, in order
        else:
            raise TypeError(
                f"pycromanager hook expected an event dict or a list of them, got "
                f"{type(events).__name__}"
            )
        for event in batch:
            position = event_position(event, self.axis)
            if position != self._last:
                self._last = position
                self._focus(position)
        return events

    def _focus(self, position: Any) -> None:
        kwargs = dict(self.focus_kwargs)
        prior = self._prior.get(position) if position is not None else None
        if prior is not None and "expected_sigma_um" not in kwargs:
            kwargs["expected_z_um"], kwargs["expected_sigma_um"] = prior
        job = self.client.focus(**kwargs)
        if job.succeeded and job.best_z_um is not None and position is not None:
            details = (job.result or {}).get("details") or {}
            sigma = self.revisit_sigma_um
            if sigma is None:
                sigma = details.get("dof_um")
            if sigma:
                self._prior[position] = (float(job.best_z_um), float(sigma))
        self.results.append(
            {
                "position": position,
                "job_id": job.id,
                "state": job.state,
                "z_um": job.best_z_um,
                "error": job.error,
            }
        )
        if not job.succeeded and self.on_failure is not None:
            self.on_failure(position, job)


def autofocus_hook(
    client: Any,
    *,
    axis: str = "position",
    on_failure: Callable[[Any, Any], None] | None = None,
    revisit_sigma_um: float | None = None,
    **focus_kwargs: Any,
) -> AutofocusHook:
    """A pycromanager `post_hardware_hook_fn` that autofocuses at every new position.

    See `AutofocusHook`; `focus_kwargs` (e.g. `range_um=30`) go to every `client.focus`;
    `revisit_sigma_um` the prior's σ at a revisit (default: the reported DOF; 0: off).
    """
    return AutofocusHook(client, dict(focus_kwargs), axis, on_failure,
                         revisit_sigma_um=revisit_sigma_um)
