"""A pycromanager `Acquisition` hook that autofocuses (through the HTTP service).

pycromanager calls a `post_hardware_hook_fn` after the hardware has moved to an event's
position and before the image is taken. With hardware sequencing it hands the hook a
*list* of events (pycro-manager #394) and expects the list back; without, one event
(a dict). `autofocus_hook(client)` handles both.

When it focuses, like useq's `AxesBasedAF(axes=...)`: whenever the value of any of
`axes` changes from one event to the next ("position" = the XY position, however the
event names it: `position`, or the grid's `row`/`column`; "time" = every time point;
any other pycromanager axis name works too). The default `("position",)` focuses at
every new position; `("position", "time")` also at every time point of one position.

What it gives back: the event(s) it was given, with the autofocus result written into
each event's `tags` (pycromanager stores tags in the image metadata): `autofocus_state`
("succeeded"/"failed"/...), `autofocus_z_um` (the focus z, µm, or absent on failure),
`autofocus_job_id`, and on failure `autofocus_error` and `autofocus_reason_code`. On a
failed autofocus `on_failure` decides: `"keep"` (default) images where the stage is (the
service put it back where it was), `"skip"` returns `None`, which tells pycromanager not
to acquire, for every event until the next autofocus succeeds; a callable `(position,
job)` is called, then the image is kept.

pycromanager's Python backend (headless `Core()` started with the Python backend,
pycromanager 1.0) crashes on an event that carries `tags` (its `event_from_json` calls
a `setTags` it lacks). There pass `write_tags=False` and `image_process_fn=hook.annotate`:
`annotate` writes the same result into each image's metadata under `"autofocus"`
(it works with either backend).

    from pycromanager import Acquisition, multi_d_acquisition_events
    from autofocus.acquire.pycromanager_hook import autofocus_hook
    from autofocus.client import AutofocusClient

    with AutofocusClient("http://127.0.0.1:8765") as af:
        hook = autofocus_hook(af, axes=("position", "time"), on_failure="skip", range_um=30)
        with Acquisition(directory="/data", name="plate7", post_hardware_hook_fn=hook) as acq:
            acq.acquire(multi_d_acquisition_events(xy_positions=xy_um, num_time_points=3))
        print(hook.results)       # one entry per autofocus: key, position, job state, z, error
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AutofocusHook", "autofocus_hook", "event_position"]

_UNSET = object()
HOOK_FAILURE_POLICIES: tuple[str, ...] = ("keep", "skip")


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
    """Callable hook: `hook(event_or_events, *pycromanager_args) -> event_or_events | None`.

    `client` an `AutofocusClient`; `focus_kwargs` go to `client.focus` (range_um,
    tolerance_um, ...). `axes` the pycromanager axes whose change triggers an autofocus
    ("position" stands for the XY position as `axis` names it). `on_failure` "keep",
    "skip" (return None: the image is not acquired) or a callable `(position, job)`.
    `results` lists every autofocus asked for, in order. `write_tags` False leaves the
    events' `tags` alone (pycromanager's Python backend; use `annotate`). A revisit of a position
    that focused before asks with a prior: `expected_z_um` its last focus and
    `expected_sigma_um` = `revisit_sigma_um` (default: the depth of field the last
    result reported; 0 turns priors off), so the service searches there first.
    """

    client: Any
    focus_kwargs: dict[str, Any] = field(default_factory=dict)
    axis: str = "position"
    on_failure: str | Callable[[Any, Any], None] | None = "keep"
    results: list[dict[str, Any]] = field(default_factory=list)
    axes: tuple[str, ...] = ("position",)
    revisit_sigma_um: float | None = None
    write_tags: bool = True
    _last: Any = field(default=_UNSET, repr=False)
    _tags: dict[str, Any] = field(default_factory=dict, repr=False)
    _failed: bool = field(default=False, repr=False)
    _by_axes: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict, repr=False)
    _prior: dict[Any, tuple[float, float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.axes, str):
            self.axes = (self.axes,)
        if not self.axes:
            raise ValueError("axes must name at least one pycromanager axis, e.g. ('position',)")
        if self.on_failure is None:
            self.on_failure = "keep"
        if not callable(self.on_failure) and self.on_failure not in HOOK_FAILURE_POLICIES:
            raise ValueError(
                f"on_failure must be 'keep', 'skip' or a callable, got {self.on_failure!r}"
            )

    def key(self, event: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values of `axes` for one event: a change of any of them means autofocus."""
        axes = event.get("axes") or {}
        return tuple(
            event_position(event, self.axis) if name == "position" else axes.get(name)
            for name in self.axes
        )

    def __call__(self, events: Any, *_: Any) -> Any:
        batch: Sequence[Any]
        if isinstance(events, Mapping):
            batch = [events]
        elif isinstance(events, Sequence) and not isinstance(events, (str, bytes)):
            batch = events  # a hardware-sequenced batch: all at one position, in order
        else:
            raise TypeError(
                f"pycromanager hook expected an event dict or a list of them, got "
                f"{type(events).__name__}"
            )
        skip = False
        for event in batch:
            key = self.key(event)
            if key != self._last:
                self._last = key
                self._focus(key, event_position(event, self.axis))
            self._by_axes[_axes_key(event.get("axes") or {})] = dict(self._tags)
            if self.write_tags:
                tags = event.get("tags")
                if isinstance(event, dict) and not isinstance(tags, dict):
                    tags = event["tags"] = {}
                if isinstance(tags, dict):
                    tags.update(self._tags)
            skip = skip or (self._failed and self.on_failure == "skip")
        return None if skip else events

    def annotate(self, image: Any, metadata: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """A pycromanager `image_process_fn`: the image's autofocus result into its metadata.

        Sets `metadata["autofocus"]` to the tags written for the event with the image's
        `Axes` (None when the hook never saw that event) and returns `(image, metadata)`.
        """
        axes = metadata.get("Axes") or metadata.get("axes") or {}
        metadata["autofocus"] = self._by_axes.get(_axes_key(axes))
        return image, metadata

    def _focus(self, key: tuple[Any, ...], position: Any) -> None:
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
                "key": dict(zip(self.axes, key, strict=True)),
                "position": position,
                "job_id": job.id,
                "state": job.state,
                "z_um": job.best_z_um,
                "error": job.error,
            }
        )
        self._failed = not job.succeeded
        self._tags = {"autofocus_state": str(job.state), "autofocus_job_id": str(job.id)}
        if job.succeeded and job.best_z_um is not None:
            self._tags["autofocus_z_um"] = float(job.best_z_um)
        if self._failed:
            self._tags["autofocus_error"] = str(job.error or job.state)
            if job.reason_code:
                self._tags["autofocus_reason_code"] = str(job.reason_code)
            if callable(self.on_failure):
                self.on_failure(position, job)


def _axes_key(axes: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((str(k), v) for k, v in axes.items()))


def autofocus_hook(
    client: Any,
    *,
    axes: Sequence[str] = ("position",),
    axis: str = "position",
    on_failure: str | Callable[[Any, Any], None] | None = "keep",
    write_tags: bool = True,
    revisit_sigma_um: float | None = None,
    **focus_kwargs: Any,
) -> AutofocusHook:
    """A pycromanager `post_hardware_hook_fn` that autofocuses when any of `axes` changes.

    See `AutofocusHook`; `focus_kwargs` (e.g. `range_um=30`) go to every `client.focus`;
    `revisit_sigma_um` the prior's σ at a revisit (default: the reported DOF; 0: off).
    """
    return AutofocusHook(client, dict(focus_kwargs), axis, on_failure, axes=tuple(axes),
                         write_tags=write_tags, revisit_sigma_um=revisit_sigma_um)
