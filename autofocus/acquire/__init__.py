"""Autofocus inside acquisitions: the ways an acquisition program calls our autofocus.

- `autofocus.acquire.mda`: `AutofocusEngine`, a pymmcore-plus MDA engine that runs our
  autofocus for `useq.HardwareAutofocus` events, in-process, on the acquisition's core
  (needs the `mm` extra; imported only when used).
- `autofocus.acquire.pycromanager_hook`: a pycromanager `Acquisition` hook that asks the
  autofocus service over HTTP at every new position.

Nothing here changes global state on import: an engine is used only when set on a runner.
"""
