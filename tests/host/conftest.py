"""Fixtures of the host tests: a store on each database, a core over it, a signed-on
terminal on an in-memory session, and a real loopback server in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from host_helpers import (
    ANSWER_TIMEOUT_S,
    RunningHost,
    Terminal,
    new_core,
    open_store,
    session_terminal,
)

from posbatch.host import HostCore, HostStore
from posbatch.host.server import HostServer


@pytest.fixture
def store(db_url: str) -> Iterator[HostStore]:
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def core(store: HostStore) -> HostCore:
    return new_core(store)


@pytest.fixture
def term(core: HostCore) -> Terminal:
    terminal = session_terminal(core)
    assert terminal.sign_on().response_code == "00"
    return terminal


@pytest.fixture
def running_host(db_url: str) -> Iterator[RunningHost]:
    """A HostServer on 127.0.0.1 (free port) over a fresh store, in its own thread."""
    store = open_store(db_url)
    core = new_core(store)
    loop = asyncio.new_event_loop()
    server = HostServer(core)
    started = threading.Event()
    address: list[tuple[str, int]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        address.append(loop.run_until_complete(server.start("127.0.0.1", 0)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(ANSWER_TIMEOUT_S)
    host, port = address[0]
    yield RunningHost(host, port, store)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(ANSWER_TIMEOUT_S)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(ANSWER_TIMEOUT_S)
    loop.close()
    store.close()
