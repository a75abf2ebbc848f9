"""Fixture ``world``: a real host and a real terminal joined in-process (see doctor_world)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_world import World


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    """A host and a terminal, joined in-process; the host store on SQLite and PostgreSQL."""
    built = World(db_url, tmp_path / "terminal")
    yield built
    built.close()
