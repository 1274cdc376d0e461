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
