"""The daemon's web page for the person at the microscope: the installed files it is made of.

Plain HTML, CSS and JavaScript in `static/` (package data): no CDN, no fonts
from elsewhere, works offline. `autofocus.service.api.page` serves them at `/`
and `/ui/...`; this package holds no web framework code, only the files and
`read_asset` to read them.
"""

from __future__ import annotations

from importlib import resources

ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
"""The files of `static/` that are served, with their media types (nothing else is)."""


def read_asset(name: str) -> bytes:
    """The bytes of the installed file `static/<name>`.

    Raises `KeyError` for a name not in `ASSETS` (no path from a URL reaches the
    file system) and `FileNotFoundError` when the package was installed without
    its data files.
    """
    if name not in ASSETS:
        raise KeyError(name)
    return (resources.files(__package__) / "static" / name).read_bytes()
