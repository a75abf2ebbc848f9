"""Fixtures of the terminal tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal_world import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A host core and a terminal with its journal in a SQLite file, joined in-process."""
    built = World(f"sqlite:///{tmp_path / 'journal.db'}")
    yield built
    built.terminal.journal.engine.dispose()
    built.store.close()
