"""Catalog sync: a terminal copy pulls changes from a file or from the HTTP endpoint."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog_samples import MILK, NOW, catalog_lots, catalog_products

from posbatch.catalog import (
    CatalogStore,
    ChangeSet,
    TillCredential,
    changes_from_json,
    changes_to_json,
    fetch_head_version,
    sync_replica,
    write_changes_file,
)
from posbatch.errors import CatalogError

SERVER_START_POLLS_MAX = 500


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[CatalogStore]:
    """A terminal's empty catalog copy (a local SQLite file)."""
    store = CatalogStore.open(f"sqlite:///{tmp_path / 'terminal' / 'catalog.db'}")
    yield store
    store.close()


def test_first_sync_from_file_copies_everything(
    back_office: CatalogStore, copy: CatalogStore, tmp_path: Path
) -> None:
    """A copy synced from a full changes file equals the back office, at its version."""
    path = tmp_path / "changes.json"
    write_changes_file(back_office.changes_since(0), path)
    result = sync_replica(copy, str(path), now=NOW)
    expected = (0, 1, 9, back_office.products_and_lots())
    assert expected == (
        result.from_version,
        result.to_version,
        result.rows_applied,
        copy.products_and_lots(),
    )


def test_sync_over_http_pulls_only_new_changes(
    back_office: CatalogStore, copy: CatalogStore, served: str, till: TillCredential
) -> None:
    """After a price change, an HTTP sync applies just that product and records the version."""
    sync_replica(copy, served, now=NOW, credential=till)
    products = [
        dataclasses.replace(p, price_fen=1300) if p.gtin == MILK else p for p in catalog_products()
    ]
    back_office.import_catalog(products, catalog_lots(), at=NOW, reason="price")
    result = sync_replica(copy, served, now=NOW, credential=till)
    product = copy.snapshot().product(MILK)
    expected = (1, 2, 1, 1300, 2)
    assert expected == (
        result.from_version,
        result.to_version,
        result.rows_applied,
        product.price_fen if product else None,
        copy.snapshot().version,
    )


def test_copy_records_sync_time_for_staleness(copy: CatalogStore, tmp_path: Path) -> None:
    """The copy's snapshot carries when it was synced (checkout warns when it is old)."""
    path = tmp_path / "empty.json"
    path.write_text(
        json.dumps(
            {
                "format": "posbatch-catalog-changes/2",
                "store_id": "a-store",
                "since_version": 0,
                "head_version": 0,
                "products": [],
                "lots": [],
            }
        )
    )
    sync_replica(copy, str(path), now=NOW)
    assert NOW == copy.snapshot().synced_at


def test_sync_from_older_source_is_refused(
    back_office: CatalogStore, copy: CatalogStore, tmp_path: Path
) -> None:
    """A source older than the copy (restored backup, wrong host) is refused, nothing applied."""
    sync_replica(copy, _file(tmp_path, back_office.changes_since(0)), now=NOW)
    old = dataclasses.replace(back_office.changes_since(0), head_version=0, products=(), lots=())
    path = tmp_path / "old.json"
    path.write_text(json.dumps(changes_to_json(old) | {"since_version": 0}))
    with pytest.raises(CatalogError) as caught:
        sync_replica(copy, str(path), now=NOW)
    expected = (
        f"{path} is at version 0, older than this copy (1): "
        "wrong source, or the back office was restored from a backup"
    )
    assert expected == str(caught.value)


def _file(tmp_path: Path, change_set: ChangeSet) -> str:
    path = tmp_path / "full.json"
    write_changes_file(change_set, path)
    return str(path)


MALFORMED = [
    pytest.param([], "the document is not a JSON object", id="not-object"),
    pytest.param(
        {"format": "other/1"},
        "format is 'other/1', expected 'posbatch-catalog-changes/2'",
        id="wrong-format",
    ),
    pytest.param(
        {
            "format": "posbatch-catalog-changes/2",
            "store_id": "s",
            "since_version": 0,
            "head_version": 1,
            "products": [
                {
                    "gtin": "6901234567891",
                    "name": "x",
                    "price_fen": 1,
                    "lot_tracked": False,
                    "version": 1,
                }
            ],
            "lots": [],
        },
        "GTIN 6901234567891 has a bad check digit: expected 2, got 1",
        id="bad-gtin",
    ),
    pytest.param(
        {
            "format": "posbatch-catalog-changes/2",
            "store_id": "s",
            "since_version": 0,
            "head_version": 1,
            "products": [
                {"gtin": MILK, "name": "x", "price_fen": 1.5, "lot_tracked": False, "version": 1}
            ],
            "lots": [],
        },
        "price_fen must be an integer, got 1.5",
        id="float-price",
    ),
    pytest.param(
        {
            "format": "posbatch-catalog-changes/2",
            "store_id": "s",
            "since_version": 0,
            "head_version": 1,
        },
        "missing field 'products'",
        id="missing-products",
    ),
]


@pytest.mark.parametrize(("document", "detail"), MALFORMED)
def test_malformed_changes_are_refused(document: object, detail: str) -> None:
    """A malformed changes document is a CatalogError naming the problem, never a crash."""
    with pytest.raises(CatalogError) as caught:
        changes_from_json(document, source="peer")
    assert f"catalog changes from peer are malformed: {detail}" == str(caught.value)


def test_unreachable_host_is_a_catalog_error(copy: CatalogStore) -> None:
    """Nothing listening at the source is reported as a CatalogError, copy untouched."""
    with pytest.raises(CatalogError, match=r"cannot reach http://127\.0\.0\.1:9"):
        sync_replica(copy, "http://127.0.0.1:9", now=NOW)


def test_endpoint_refuses_negative_version(served: str, till: TillCredential) -> None:
    """A till asking for changes since -1 gets HTTP 422, not a server error."""
    request = urllib.request.Request(
        f"{served}/catalog/changes?since=-1", headers={"Authorization": f"Bearer {till.token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    caught.value.close()
    assert 422 == caught.value.code


def test_head_version_over_http(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """GET /catalog/version gives the back office's newest version."""
    expected = 1
    assert expected == fetch_head_version(served, credential=till)
