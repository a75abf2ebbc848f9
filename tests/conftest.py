"""Shared fixtures.

``db_url`` runs a storage test twice: on a fresh SQLite file and on a fresh
PostgreSQL schema. Without a reachable PostgreSQL the second run is skipped
with the reason; with ``POSBATCH_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) it
fails instead, so CI always covers both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import posbatch.storage
from migration_replay import MigrationReplay
from testbed import postgres_url_or_skip

# Set to 1 to run every PostgreSQL migration through Alembic (no replay).
REAL_MIGRATIONS_ENV = "POSBATCH_TESTS_REAL_MIGRATIONS"


@pytest.fixture(scope="session", autouse=True)
def migration_replay() -> Iterator[MigrationReplay]:
    """PostgreSQL migrations to head run once per process, then replayed (migration_replay.py)."""
    replay = MigrationReplay()
    replay.enabled = os.environ.get(REAL_MIGRATIONS_ENV) != "1"
    real = posbatch.storage.command
    posbatch.storage.command = replay  # type: ignore[assignment]
    try:
        yield replay
    finally:
        posbatch.storage.command = real


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose search_path is a brand-new schema, dropped after the test."""
    base = postgres_url_or_skip()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(base)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield request.getfixturevalue("postgres_schema_url")


# Suites whose PostgreSQL runs repeat rules their SQLite runs already hold (the host's
# decisions, the doctor's causes and evidence): those runs are in `make test-slow`, which CI
# runs too. Everything that depends on the database — locking, worker processes, migrations,
# the back office's and clearing's stores, the CLIs on POSBATCH_DATABASE_URL — keeps its
# PostgreSQL runs in `make test`. Each such run costs a fresh schema (its migrations are
# replayed after the first of a process: migration_replay.py).
POSTGRES_IN_SLOW_RUN: frozenset[str] = frozenset(
    {
        "tests/host/test_busy_shop.py",
        "tests/host/test_attack.py",
        "tests/host/test_core.py",
        "tests/host/test_promise_host.py",
        "tests/host/test_design_batch_flows.py",
        "tests/doctor/test_causes.py",
        "tests/doctor/test_doctor_evidence.py",
        "tests/doctor/test_duplicate_terminal_id.py",
        # what a page or an HTTP error shows of hostile input: the card-number net's
        # rules, the same whatever store answered
        "tests/web/test_web_echo.py",
        "tests/catalog/test_catalog_http_masking.py",
        # who may reach each route, and every page's answer to hostile parameters: the
        # console's rules; their PostgreSQL runs (a value PostgreSQL refuses and SQLite
        # keeps) stay in make test-slow, which CI runs
        "tests/web/test_web_routes.py",
        # the wire's rules — MACs on answers, requests the profile cannot decode, forged
        # sign-ons, peers that starve others — and what the clearing CLI and the console say
        # to bad input: one decision whichever store is under it (session 12: the default run
        # had reached 4 min 50 s)
        "tests/host/test_answer_macs.py",
        "tests/host/test_wire_probe.py",
        "tests/host/test_salvage.py",
        "tests/host/test_spoofed_sign_on.py",
        "tests/host/test_server_limits.py",
        "tests/clearing/test_clearing_cli.py",
        "tests/web/test_web_hostile.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        callspec = getattr(item, "callspec", None)
        # the store is a fixture's parameter: the per-test ``db_url``, the back office's
        # module-wide ``shared_world`` (tests/web/conftest.py), ... whatever its name
        if callspec is None or "postgresql" not in callspec.params.values():
            continue
        if Path(str(item.path)).relative_to(root).as_posix() in POSTGRES_IN_SLOW_RUN:
            item.add_marker(pytest.mark.slow)
