"""The docs' Python examples run as written against a real daemon (simulated microscope)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from sim_server import sim_server

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _python_block(doc: Path, heading: str) -> str:
    """The first ```python block after the line `heading` in `doc`."""
    text = doc.read_text(encoding="utf-8")
    after = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, f"no python block after {heading!r} in {doc}"
    return match.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with sim_server(tmp_path_factory.mktemp("docs") / "jobs.db") as srv:
        yield srv


def test_api_md_python_client_example_runs(server):
    code = _python_block(DOCS / "api.md", "## From Python (`autofocus.client`)")
    assert "http://127.0.0.1:8765" in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("http://127.0.0.1:8765", server.url), "api.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("succeeded "), lines[0]  # the blocking focus found focus
    states = [line for line in lines if line.startswith("state ")]
    assert "'succeeded'" in states[-1], states  # the brenner job too, on the default specimen
    assert lines[-1].startswith("[{") and "'score'" in lines[-1]
