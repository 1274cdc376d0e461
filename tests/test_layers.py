"""The house's shape, checked from the source (ast, nothing is imported or executed).

- no import cycle between modules of `autofocus/` and `drivers/`;
- `drivers` never imports `autofocus`;
- each room of `autofocus/` imports only the rooms above it (DESIGN.md):
  scoring → (errors, logging: both leaves); search → scoring, autofocus_drivers.base;
  stacks → scoring, search, drivers;
  acquire (acquisition integrations) → search, scoring, the HTTP client, drivers;
  service → everything below it; nothing below `service` imports FastAPI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("autofocus", "drivers")
"""The folders read; `drivers/` is installed as the import package `autofocus_drivers`."""
IMPORT_NAMES = {"autofocus": "autofocus", "drivers": "autofocus_drivers"}

# What each room of autofocus/ may import from the project (prefix match on module names).
ALLOWED = {
    # autofocus.logging is a leaf like autofocus.errors (it imports nothing of ours):
    # every room logs through its get_logger, silent unless the application configures
    # logging (issue 19).
    "autofocus.scoring": ("autofocus.scoring", "autofocus.errors", "autofocus.logging"),
    "autofocus.search": (
        "autofocus.search", "autofocus.scoring", "autofocus.errors", "autofocus.logging",
        "autofocus_drivers",
    ),
    "autofocus.stacks": (
        "autofocus.stacks", "autofocus.search", "autofocus.scoring", "autofocus.errors",
        "autofocus.logging", "autofocus_drivers",
    ),
    "autofocus.acquire": (
        "autofocus.acquire", "autofocus.search", "autofocus.scoring", "autofocus.errors",
        "autofocus.logging", "autofocus.client", "autofocus_drivers",
    ),
    "autofocus.service": (
        "autofocus.service", "autofocus.stacks", "autofocus.search", "autofocus.scoring",
        "autofocus.errors", "autofocus.settings", "autofocus.logging", "autofocus_drivers",
    ),
}
WEB = ("fastapi", "starlette", "uvicorn")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = IMPORT_NAMES.get(parts[0], parts[0])
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every absolute module name `path` imports, at any depth (lazy imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        # `from a.b import c` names module a.b.c when it exists, else a.b.
        graph[name] = {m for m in imports_of(path) if m in files}
    return graph


def raw_imports() -> dict[str, set[str]]:
    return {
        module_name(p): imports_of(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
    }


def in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def test_no_import_cycles():
    graph = project_graph()
    # A package's __init__ importing its own children is not a cycle of design.
    edges = {
        src: {dst for dst in dsts if not (dst.startswith(src + ".") and src in graph)}
        for src, dsts in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_drivers_never_import_autofocus():
    bad = {
        src: sorted(m for m in mods if in_room(m, "autofocus"))
        for src, mods in raw_imports().items()
        if in_room(src, "autofocus_drivers")
    }
    assert not {k: v for k, v in bad.items() if v}


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_rooms_import_only_the_rooms_above(room):
    allowed = ALLOWED[room]
    bad: dict[str, list[str]] = {}
    for src, mods in raw_imports().items():
        if not in_room(src, room):
            continue
        wrong = [
            m for m in mods
            if (in_room(m, "autofocus") or in_room(m, "autofocus_drivers"))
            and m != "autofocus"
            and not any(in_room(m, a) for a in allowed)
        ]
        if wrong:
            bad[src] = sorted(wrong)
    assert not bad, f"{room} imports outside its layer: {bad}"


def test_scoring_never_imports_search_or_service():
    for src, mods in raw_imports().items():
        if in_room(src, "autofocus.scoring"):
            assert not [m for m in mods if in_room(m, "autofocus.search")
                        or in_room(m, "autofocus.service")], src


def test_nothing_below_service_imports_a_web_framework():
    for src, mods in raw_imports().items():
        below = in_room(src, "autofocus_drivers") or any(
            in_room(src, r) for r in ("autofocus.scoring", "autofocus.search", "autofocus.stacks")
        ) or (in_room(src, "autofocus.service") and not in_room(src, "autofocus.service.api"))
        if below:
            web = sorted(m for m in mods if any(in_room(m, w) for w in WEB))
            assert not web, f"{src} imports {web}"


def test_top_level_stays_small():
    top = sorted(p.name for p in (ROOT / "autofocus").glob("*.py"))
    assert len(top) <= 6, top


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    """The cycle finder itself: two modules importing each other are reported."""
    pkg = tmp_path / "autofocus"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from autofocus import b\n")
    (pkg / "b.py").write_text("import autofocus.a\n")
    (tmp_path / "drivers").mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()
