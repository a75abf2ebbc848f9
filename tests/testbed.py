"""What every test world shares: the test identities, one clock that steps, counting bytes.

Defined once here (tests/ is on sys.path through its conftest.py); the worlds of
tests/host, tests/terminal, tests/doctor, tests/catalog and tests/clearing import them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from posbatch.storage import DATABASE_URL_ENV

if TYPE_CHECKING:
    from posbatch.host.server import HostServer

MERCHANT_ID = "898110054110001"
TERMINAL_ID = "10000001"
MASTER_KEY_HEX = "0123456789ABCDEFFEDCBA9876543210"  # as typed into a CLI or a form
MASTER_KEY = bytes.fromhex(MASTER_KEY_HEX)
START = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


SERVER_TIMEOUT_S = 10.0  # a server in a thread starts, and stops, within this


@contextmanager
def serving_in_thread(server: HostServer) -> Iterator[tuple[str, int]]:
    """``server`` listening on 127.0.0.1 (a free port) on an event loop of its own thread;
    yields its address, and closes the server, stops the loop and joins the thread after
    (the store is the caller's to close)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    address: list[tuple[str, int]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        address.append(loop.run_until_complete(server.start("127.0.0.1", 0)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(SERVER_TIMEOUT_S), "the server did not start"
    try:
        yield address[0]
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(SERVER_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(SERVER_TIMEOUT_S)
        loop.close()


class StepClock:
    """A clock that moves one second per reading; ``skip`` jumps (a day off, a night)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def skip(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def counting_bytes() -> Callable[[int], bytes]:
    """Deterministic 'random' bytes: the same sequence in every run."""
    counter = itertools.count(1)

    def random_bytes(size: int) -> bytes:
        return bytes((next(counter) * 37 + i) % 256 for i in range(size))

    return random_bytes


# --- the test PostgreSQL (tests/conftest.py's db_url, tests/web's template world) ---------

POSTGRES_URL_ENV = "POSBATCH_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "POSBATCH_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

_postgres_checked: dict[str, str | None] = {}


def _postgres_problem(url: str) -> str | None:
    """None when PostgreSQL at ``url`` answers, else why not (cached per run)."""
    if url not in _postgres_checked:
        try:
            engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
            with engine.connect() as connection:
                connection.execute(sa.text("select 1"))
            engine.dispose()
            _postgres_checked[url] = None
        except Exception as exc:  # any failure means "not available here"
            _postgres_checked[url] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return _postgres_checked[url]


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    problem = _postgres_problem(url)
    if problem is not None:
        message = f"PostgreSQL not reachable at {url} ({problem}); set {POSTGRES_URL_ENV}"
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(message + f" — required because {REQUIRE_POSTGRES_ENV}=1")
        pytest.skip(message)
    return url


def cli_database(
    db_url: str, monkeypatch: pytest.MonkeyPatch, *, also_unset: tuple[str, ...] = ()
) -> None:
    """Point the CLI under test at ``db_url``'s database: on the PostgreSQL run its fresh
    schema (POSBATCH_DATABASE_URL), else the data directory's own SQLite file (the variable
    unset, with ``also_unset``: a KEK the machine's environment might give)."""
    for name in (DATABASE_URL_ENV, *also_unset):
        monkeypatch.delenv(name, raising=False)
    if db_url.startswith("postgresql"):
        monkeypatch.setenv(DATABASE_URL_ENV, db_url)
