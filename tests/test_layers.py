"""The house's arrows (docs/architecture.md): which room may import which, and no loops.

Read from the source with ``ast``: every ``import posbatch…`` at any depth counts for
the rooms (a lazy import inside a function is still an arrow); only module-level
imports outside ``if TYPE_CHECKING`` count for loops between files.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

SRC: Final = Path(__file__).resolve().parent.parent / "src" / "posbatch"

# room -> the rooms it may import (besides itself). Read top-down: nothing points up.
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "errors": frozenset(),
    "storage": frozenset({"errors"}),
    "cli_support": frozenset({"batch", "errors"}),
    "serving": frozenset(),  # the HTTP servers' bounds on a peer (uvicorn's protocol)
    "batch": frozenset({"errors"}),
    "wire": frozenset({"batch", "errors"}),
    # batch/host_*.py: the host's rules (decide) read wire's messages, so they stand on
    # wire, a floor above the rest of batch/ (which wire imports).
    "host_rules": frozenset({"batch", "wire", "errors"}),
    "clearing": frozenset({"batch", "errors", "wire"}),
    "host": frozenset(
        {"batch", "host_rules", "wire", "errors", "storage", "cli_support", "clearing"}
    ),
    "terminal": frozenset({"batch", "wire", "errors", "storage", "cli_support"}),
    "doctor": frozenset({"batch", "wire", "errors", "storage", "cli_support", "host", "terminal"}),
    "catalog": frozenset(
        {"batch", "wire", "errors", "storage", "cli_support", "serving", "host", "terminal"}
    ),
    "backoffice": frozenset(
        {"batch", "wire", "errors", "storage", "serving", "host", "doctor", "clearing"}
    ),
    "web": frozenset(
        {
            "batch",
            "wire",
            "errors",
            "storage",
            "cli_support",
            "serving",
            "host",
            "doctor",
            "backoffice",
        }
    ),
    # sim also works the exception queue through the back office's library (invariant 8)
    "sim": frozenset(
        {
            "batch",
            "wire",
            "errors",
            "storage",
            "host",
            "terminal",
            "doctor",
            "clearing",
            "backoffice",
            "cli_support",
        }
    ),
}
TOP: Final = frozenset({"cli", "demo", "__main__", "__init__"})  # mount everything


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[1:3] and parts[1] == "batch" and len(parts) > 2 and parts[2].startswith("host_"):
        return "host_rules"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("posbatch")}


def _sources() -> list[Path]:
    return sorted(path for path in SRC.rglob("*.py") if "migrations" not in path.parts)


def test_every_room_is_on_the_map() -> None:
    """A new package under posbatch/ must be placed in ALLOWED (and in architecture.md)."""
    rooms = {_room(_module_name(path)) for path in _sources()}
    assert set() == rooms - set(ALLOWED) - TOP


def test_no_room_imports_a_room_above_it() -> None:
    """wire never imports host, the host never imports doctor or the terminal, and so on."""
    wrong = []
    for path in _sources():
        room = _room(_module_name(path))
        if room in TOP:
            continue
        for name in _imports(path, top_level_only=False):
            target = _room(name)
            if target != room and target not in ALLOWED[room] and target not in {"__init__"}:
                wrong.append(f"{_module_name(path)} imports {name}")
    assert [] == wrong


def test_no_import_loop_between_files() -> None:
    """Module-level imports between our files form no cycle."""
    modules = {_module_name(path): path for path in _sources()}
    graph = {
        name: {
            target
            for target in _imports(path, top_level_only=True)
            if target in modules and target != name
        }
        for name, path in modules.items()
    }
    # A package's __init__ re-exports its private modules: an edge from a module to its
    # own package is not a loop of files.
    graph = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}
    loops: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                loops.append(
                    [*trail[trail.index(target) :], target] if target in trail else [node, target]
                )
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert [] == loops
