"""deploy/autofocus.example.toml documents every setting, and every line of it is valid."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel

from autofocus.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "autofocus.example.toml"


def _uncommented(text: str) -> str:
    # "# key = value" lines are settings; "## ..." lines are prose.
    return re.sub(r"(?m)^# (?=[a-z_]+ = )", "", text)


def test_example_as_shipped_gives_the_defaults(monkeypatch):
    for name in list(os.environ):
        if name.startswith("AUTOFOCUS_"):
            monkeypatch.delenv(name)
    assert load_settings(EXAMPLE) == load_settings(None)


def test_every_setting_is_documented_and_valid(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("AUTOFOCUS_"):
            monkeypatch.delenv(name)
    text = _uncommented(EXAMPLE.read_text(encoding="utf-8"))
    path = tmp_path / "all.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path)  # raises on any unknown key or bad value
    assert settings.api_token and settings.z_min_um == -100.0

    documented: dict[str, set[str]] = {"": set()}
    group = ""
    for line in text.splitlines():
        if m := re.match(r"^\[(\w+)\]", line):
            group = m.group(1)
            documented.setdefault(group, set())
        elif m := re.match(r"^([a-z_]+) = ", line):
            documented[group].add(m.group(1))
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            assert set(annotation.model_fields) == documented[name], name
        else:
            assert name in documented[""], name


def test_the_file_is_parsed_once_and_ranks_below_the_environment(tmp_path, monkeypatch):
    from autofocus.settings import tomllib  # the TOML parser pydantic-settings uses too

    for name in list(os.environ):
        if name.startswith("AUTOFOCUS_"):
            monkeypatch.delenv(name)
    path = tmp_path / "af.toml"
    path.write_text("port = 9001\nqueue_max = 3\n[focus]\nrange_um = 77.0\n", encoding="utf-8")
    parses = []
    for fn in ("load", "loads"):  # a spy: counts the parses, then parses for real
        real = getattr(tomllib, fn)
        monkeypatch.setattr(tomllib, fn, lambda *a, _real=real, **k: parses.append(1) or
                            _real(*a, **k))
    monkeypatch.setenv("AUTOFOCUS_QUEUE_MAX", "5")
    settings = load_settings(path, host="127.0.0.2")
    assert len(parses) == 1
    assert (settings.port, settings.queue_max, settings.focus.range_um, settings.host) == (
        9001, 5, 77.0, "127.0.0.2")
    parses.clear()
    monkeypatch.setenv("AUTOFOCUS_CONFIG", str(path))  # the file named by the environment
    assert load_settings().port == 9001 and len(parses) == 1
