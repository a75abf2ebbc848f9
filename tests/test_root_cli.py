"""The command line: every command is documented with an example (sqlite-utils style)."""

from __future__ import annotations

from typing import Any

import typer.main

from posbatch.cli import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every leaf command below ``command``, with its full name (a group that runs by
    itself, like ``checkout``, is a leaf)."""
    children = getattr(command, "commands", None)
    if not children:
        return [(" ".join(path), command)]
    found: list[tuple[str, Any]] = []
    for name, child in sorted(children.items()):
        found.extend(_commands(child, (*path, name)))
    return found


def test_every_command_has_an_example() -> None:
    """A command whose help has no `Example:` line is undocumented: the test names it
    (`checkout`, a group that runs by itself, was not looked at)."""
    root = typer.main.get_command(app)
    undocumented = [
        name for name, command in _commands(root) if "Example:" not in (command.help or "")
    ]
    assert [] == undocumented


def test_the_demo_command_exists() -> None:
    """`posbatch demo` is what `make demo` runs."""
    names = [name for name, _ in _commands(typer.main.get_command(app))]
    assert "demo" in names
