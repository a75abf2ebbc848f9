"""Fixture ``world``: a host (SQLite and PostgreSQL) whose clock the test sets, with tills."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clearing_world import World


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    built = World(db_url)
    yield built
    built.close()
