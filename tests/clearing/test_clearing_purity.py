"""posbatch.clearing is pure: no I/O, no clock, no database (what makes it testable alone)."""

from __future__ import annotations

import ast
from pathlib import Path

import posbatch.clearing

PACKAGE = Path(posbatch.clearing.__file__).parent
FORBIDDEN_MODULES = (
    "asyncio", "socket", "sqlalchemy", "alembic", "os", "pathlib", "subprocess", "time",
    "random", "secrets", "threading", "posbatch.host", "posbatch.storage", "posbatch.terminal",
    "posbatch.sim", "typer",
)  # fmt: skip
FORBIDDEN_CALLS = ("now", "today", "utcnow", "open", "print", "input")


def _imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    return found


def _calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(
                function, "id", "")  # fmt: skip
            found.append(name)
    return found


def test_clearing_imports_no_io_clock_or_database() -> None:
    """No module of posbatch.clearing imports I/O, clock, randomness or storage."""
    bad = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module in _imports(tree):
            if any(module == name or module.startswith(name + ".") for name in FORBIDDEN_MODULES):
                bad.append(f"{path.name}: import {module}")
    assert [] == bad


def test_clearing_never_reads_the_clock_or_files() -> None:
    """No call to now()/today()/open()/print() anywhere in posbatch.clearing."""
    bad = [
        f"{path.name}: {name}()"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in _calls(ast.parse(path.read_text(encoding="utf-8")))
        if name in FORBIDDEN_CALLS
    ]
    assert [] == bad
