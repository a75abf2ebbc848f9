"""Fixtures of the host tests: a store on each database, a core over it, a signed-on
terminal on an in-memory session, and a real loopback server in a background thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from host_helpers import (
    RunningHost,
    Terminal,
    new_core,
    open_store,
    session_terminal,
)

from posbatch.host import HostCore, HostStore
from posbatch.host.server import HostServer
from testbed import serving_in_thread


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
    with serving_in_thread(HostServer(new_core(store))) as (host, port):
        yield RunningHost(host, port, store)
    store.close()
