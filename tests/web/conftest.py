"""Fixtures of the back-office tests: a traded world on each database, the console app
over it, clients logged in per role; for the browser tests, chromium from Debian."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from web_world import World, copied_world, scan, scan_headers

from posbatch.web import create_app
from testbed import StepClock, postgres_url_or_skip

CHROMIUM = "/usr/bin/chromium"
REQUIRE_BROWSER_ENV = "POSBATCH_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """The traded world on SQLite, built once: each SQLite test gets a copy of its file."""
    root = tmp_path_factory.mktemp("template")
    built = World(f"sqlite:///{root / 'host.db'}", root).trade().users()
    now = built.clock.now
    built.close()
    assert not (root / "host.db-wal").exists() or (root / "host.db-wal").stat().st_size == 0
    return root / "host.db", now


@pytest.fixture
def world(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """A traded world of its own: a copy of the template, on SQLite or on PostgreSQL."""
    if db_url.startswith("sqlite"):
        built = copied_world(request.getfixturevalue("sqlite_template"), tmp_path)
        yield built
        built.close()
        return
    with postgres_copy(request.getfixturevalue("postgres_template"), tmp_path) as built:
        yield built


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One traded world per module and database, for tests that only read."""
    root = tmp_path_factory.mktemp("world")
    if request.param == "sqlite":
        built = copied_world(request.getfixturevalue("sqlite_template"), root)
        yield built
        built.close()
        return
    with postgres_copy(request.getfixturevalue("postgres_template"), root) as built:
        yield built


@dataclass(frozen=True)
class PostgresTemplate:
    base: str  # the test PostgreSQL's URL
    database: str  # the database the traded world was built in
    now: datetime  # where the world's clock stopped


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresTemplate]:
    """The traded world on PostgreSQL, built once per test process in a database of its own:
    each PostgreSQL test gets a copy (CREATE DATABASE … TEMPLATE: ~30 ms, where trading the
    world again cost more than a second)."""
    base = postgres_url_or_skip()
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    database = f"tmpl_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    try:
        root = tmp_path_factory.mktemp("pg-template")
        built = World(_database_url(base, database), root).trade().users()
        now = built.clock.now
        built.close()  # a template may have no connection open while it is copied
        yield PostgresTemplate(base, database, now)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def _database_url(base: str, database: str) -> str:
    return sa.make_url(base).set(database=database).render_as_string(hide_password=False)


@contextmanager
def postgres_copy(template: PostgresTemplate, root: Path) -> Iterator[World]:
    """A world on a copy of the traded PostgreSQL database, dropped afterwards."""
    admin = sa.create_engine(template.base, isolation_level="AUTOCOMMIT")
    database = f"t_{uuid.uuid4().hex[:16]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}" TEMPLATE "{template.database}"'))
    try:
        built = World(_database_url(template.base, database), root, clock=StepClock(template.now))
        try:
            yield built
        finally:
            built.close()
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


async def _scanned(response: httpx.Response) -> None:
    """Every answer any test receives is read and scanned: no card number beyond 6/4, no key."""
    body = (await response.aread()).decode("utf-8", "replace")
    shown = scan(body) + scan_headers(response.headers.items())
    assert [] == shown, f"{response.request.method} {response.request.url} shows {shown}"


def _client(world: World) -> httpx.AsyncClient:
    """A client of the console app, over HTTPS as far as the app knows (no socket)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world.office)),
        base_url="https://console.test",
        event_hooks={"response": [_scanned]},
    )


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(world) as c:
        yield c


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright: Debian's chromium, never a downloaded browser.

    Without it the browser tests are skipped with the reason (``apt-get install chromium``);
    with POSBATCH_REQUIRE_BROWSER=1 (set by .ci/run) they fail instead, so CI always runs them.
    """
    if not Path(CHROMIUM).is_file():
        message = f"no browser at {CHROMIUM}: apt-get install chromium (Debian's package)"
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(message + f" — required because {REQUIRE_BROWSER_ENV}=1")
        pytest.skip(message)
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
async def shared_client(shared_world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a console over the module's shared world (tests that only read)."""
    async with _client(shared_world) as c:
        yield c
