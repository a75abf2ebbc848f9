"""Fixtures of the catalog tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn
from catalog_samples import NOW, catalog_lots, catalog_products, sample_snapshot

from posbatch.catalog import CatalogSnapshot, CatalogStore, TillCredential, create_app

SERVER_START_POLLS_MAX = 500
TILL_ID = "10000009"


@pytest.fixture
def snapshot() -> CatalogSnapshot:
    """The sample catalog of catalog_samples, as checkout sees it."""
    return sample_snapshot()


@pytest.fixture
def back_office(db_url: str) -> Iterator[CatalogStore]:
    """The back office store (SQLite and PostgreSQL) with the sample catalog."""
    store = CatalogStore.open(db_url)
    store.import_catalog(catalog_products(), catalog_lots(), at=NOW, reason="sample")
    yield store
    store.close()


@pytest.fixture
def till(back_office: CatalogStore) -> TillCredential:
    """The credential of till 10000009, registered with the back office."""
    return back_office.add_till(TILL_ID, issued_by="test", at=NOW)


@pytest.fixture
def served(back_office: CatalogStore) -> Iterator[str]:
    """The back office served by uvicorn on a free loopback port (its clock at NOW)."""
    config = uvicorn.Config(
        create_app(back_office, clock=lambda: NOW),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(SERVER_START_POLLS_MAX):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join()
