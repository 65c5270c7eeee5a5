"""The rooms of gradcheck stay what docs/architecture.md says: data flows one way, no import
circle, no arrow back up, no module that grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gradcheck_cli"

LAYERS = {
    # the floor: imports nothing of the package
    "errors": 0,
    "exit_codes": 0,
    "sanitize": 0,
    "numerics": 1,
    "diagnosis": 1,
    "report": 2,
    "settings": 2,
    "checks": 3,
    "frameworks": 3,
    "project_report": 3,
    "subject": 4,
    "adapters": 5,
    "session": 6,
    "render": 6,
    "project": 7,
    "api": 8,
    "commands": 8,
    "cli": 9,
    "entry": 10,
    "__main__": 11,
    "__init__": 11,
}
"""A room imports only from rooms of a lower layer, or within itself (without a circle)."""

LONGEST_MODULE = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package's modules that `module` imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: set(_imports(m, p, known)) for m, p in modules.items()}


def test_every_room_has_a_layer() -> None:
    """A new room is placed on purpose: docs/architecture.md and LAYERS say where."""
    rooms = {_room(m) for m in _modules()}
    assert rooms <= set(LAYERS), sorted(rooms - set(LAYERS))


def test_imports_never_run_back_up() -> None:
    """Every import goes to a lower layer, or stays inside its own room."""
    upward = [
        f"{source} -> {target}"
        for source, targets in _graph().items()
        for target in targets
        if _room(source) != _room(target)
        and LAYERS[_room(target)] >= LAYERS[_room(source)]
        and _room(target) != "__init__"  # every module imports its package's root first
    ]
    assert not upward, upward


def test_no_import_circle() -> None:
    """No module imports itself back through others (a circle means a missing room)."""
    graph = _graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if _room(target) == "__init__":
                continue
            if state.get(target) == 1:
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_grows_past_a_readers_reach(module: str) -> None:
    """A module a newcomer can read in one sitting: at most 600 lines."""
    lines = _modules()[module].read_text(encoding="utf-8").count("\n")
    assert lines <= LONGEST_MODULE, f"{module}: {lines} lines"
