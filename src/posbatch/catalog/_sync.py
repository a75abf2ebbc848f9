"""Catalog sync: the back office publishes changes, a terminal's copy pulls them.

The changes document (JSON, the same over HTTP and in a file)::

    {"format": "posbatch-catalog-changes/2", "store_id": "6f1c…",
     "since_version": 0, "head_version": 7,
     "products": [{"gtin": "06901234567892", "name": "Milk 1L", "price_fen": 1250,
                   "lot_tracked": true, "trace_prefix": null, "quantity_on_hand": 0,
                   "quarantined": 0, "version": 3}, ...],
     "lots": [{"gtin": "06901234567892", "lot_no": "L2611A", "expiry": "2026-12-31",
               "quantity_on_hand": 40, "quarantined": 0, "recalled": false,
               "version": 7}, ...]}

Served by :func:`create_app` at ``GET /catalog/changes?since=N`` to tills
that present their credential (``_tills``); a file is written by
``posbatch catalog changes --since N --output FILE``. ``store_id`` is the
back office's identity: a copy follows one back office and refuses changes
from another (a second shop's server, a restored test system). A document
is read as a peer's input: anything malformed is a :class:`CatalogError`,
never a crash, and nothing of it is applied.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from posbatch.batch.model import BEIJING
from posbatch.catalog._gtin import normalize_gtin
from posbatch.catalog._model import GS1_CSET82, LOT_LENGTH_MAX, ChangeSet, Lot, Product
from posbatch.catalog._orders_http import (
    add_order_routes,
    answer_errors_masked,
    limit_request_bodies,
    till_dependency,
)
from posbatch.catalog._store import CatalogStore
from posbatch.catalog._tills import TillCredential
from posbatch.catalog._trace_code import check_trace_prefix
from posbatch.errors import CatalogError

__all__ = [
    "CHANGES_FORMAT",
    "SYNC_RESPONSE_BYTES_MAX",
    "SYNC_TIMEOUT_MS",
    "SyncResult",
    "changes_from_json",
    "changes_to_json",
    "create_app",
    "fetch_changes",
    "fetch_head_version",
    "sync_replica",
    "write_changes_file",
]

CHANGES_FORMAT = "posbatch-catalog-changes/2"
STORE_ID_LENGTH_MAX = 36
SYNC_TIMEOUT_MS = 10_000
SYNC_RESPONSE_BYTES_MAX = 128 * 1024 * 1024


def changes_to_json(changes: ChangeSet) -> dict[str, Any]:
    return {
        "format": CHANGES_FORMAT,
        "store_id": changes.store_id,
        "since_version": changes.since_version,
        "head_version": changes.head_version,
        "products": [
            {
                "gtin": p.gtin,
                "name": p.name,
                "price_fen": p.price_fen,
                "lot_tracked": p.lot_tracked,
                "trace_prefix": p.trace_prefix,
                "quantity_on_hand": p.quantity_on_hand,
                "quarantined": p.quarantined,
                "version": p.version,
            }
            for p in changes.products
        ],
        "lots": [
            {
                "gtin": lot.gtin,
                "lot_no": lot.lot_no,
                "expiry": lot.expiry.isoformat() if lot.expiry else None,
                "quantity_on_hand": lot.quantity_on_hand,
                "quarantined": lot.quarantined,
                "recalled": lot.recalled,
                "version": lot.version,
            }
            for lot in changes.lots
        ],
    }


def _field(item: dict[str, Any], name: str, kind: type) -> Any:
    value = item[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def changes_from_json(document: Any, *, source: str = "changes") -> ChangeSet:
    """A :class:`ChangeSet` from a decoded document; :class:`CatalogError` if malformed."""
    try:
        if not isinstance(document, dict):
            raise TypeError("the document is not a JSON object")
        if document.get("format") != CHANGES_FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, expected {CHANGES_FORMAT!r}")
        store_id = _field(document, "store_id", str)
        if not 0 < len(store_id) <= STORE_ID_LENGTH_MAX:
            raise ValueError(f"store_id {store_id!r} is not a store identity")
        since = _field(document, "since_version", int)
        head = _field(document, "head_version", int)
        if not 0 <= since <= head:
            raise ValueError(f"versions since={since} head={head} are out of order")
        products = []
        for item in _field(document, "products", list):
            gtin = normalize_gtin(_field(item, "gtin", str))
            price_fen = _field(item, "price_fen", int)
            if price_fen < 0:
                raise ValueError(f"price_fen of {gtin} is negative")
            prefix = item["trace_prefix"]
            if prefix is not None and not isinstance(prefix, str):
                raise TypeError(f"trace_prefix must be a string, got {prefix!r}")
            products.append(
                Product(
                    gtin,
                    _field(item, "name", str),
                    price_fen,
                    _field(item, "lot_tracked", bool),
                    _version(item, head),
                    _field(item, "quantity_on_hand", int),
                    None
                    if prefix is None
                    else check_trace_prefix(_field(item, "trace_prefix", str)),
                    _field(item, "quarantined", int),
                )
            )
        lots = []
        for item in _field(document, "lots", list):
            lot_no = _field(item, "lot_no", str)
            if not lot_no or len(lot_no) > LOT_LENGTH_MAX or set(lot_no) - GS1_CSET82:
                raise ValueError(f"lot_no {lot_no!r} is not a GS1 lot")
            expiry = item["expiry"]
            lots.append(
                Lot(
                    normalize_gtin(_field(item, "gtin", str)),
                    lot_no,
                    None if expiry is None else dt.date.fromisoformat(expiry),
                    _field(item, "quantity_on_hand", int),
                    _field(item, "recalled", bool),
                    _version(item, head),
                    _field(item, "quarantined", int),
                )
            )
    except (KeyError, TypeError, ValueError, CatalogError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CatalogError(f"catalog changes from {source} are malformed: {detail}") from exc
    return ChangeSet(since, head, tuple(products), tuple(lots), store_id=store_id)


def _version(item: dict[str, Any], head: int) -> int:
    version = _field(item, "version", int)
    if not 0 < version <= head:
        raise ValueError(f"row version {version} is outside 1..{head}")
    return int(version)


def write_changes_file(changes: ChangeSet, path: Path) -> None:
    """Write a changes document atomically (temporary file, then rename)."""
    if not path.name or path.is_dir():
        raise CatalogError(f"the changes file {str(path)!r} must be a file name, not a directory")
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(changes_to_json(changes), ensure_ascii=False), "utf-8")
    temporary.replace(path)


def _http_get(source: str, path: str, credential: TillCredential | None) -> bytes:
    url = f"{source.rstrip('/')}{path}"
    headers = {} if credential is None else {"Authorization": f"Bearer {credential.token}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - callers check the scheme
    try:
        with urllib.request.urlopen(request, timeout=SYNC_TIMEOUT_MS / 1000) as response:  # noqa: S310
            body: bytes = response.read(SYNC_RESPONSE_BYTES_MAX + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        hint = (
            ": this till has no valid credential (posbatch catalog add-till)"
            if exc.code == HTTPStatus.UNAUTHORIZED
            else ""
        )
        raise CatalogError(
            f"catalog sync from {source}: HTTP {exc.code} {exc.reason}{hint}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CatalogError(f"catalog sync: cannot reach {source}: {exc}") from exc
    return body


def fetch_head_version(source: str, *, credential: TillCredential | None = None) -> int:
    """The newest catalog version at ``source`` (HTTP: ``GET /catalog/version``)."""
    if urllib.parse.urlsplit(source).scheme in ("http", "https"):
        try:
            document = json.loads(_http_get(source, "/catalog/version", credential))
            version = document["version"]
        except (ValueError, TypeError, KeyError) as exc:
            raise CatalogError(f"{source}/catalog/version is not a version document") from exc
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise CatalogError(f"{source}/catalog/version is not a version document")
        return version
    return fetch_changes(source, since=0).head_version


def fetch_changes(
    source: str, *, since: int, credential: TillCredential | None = None
) -> ChangeSet:
    """Changes after ``since`` from ``source``: an ``http(s)://`` host or a changes file."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in ("http", "https"):
        body = _http_get(source, f"/catalog/changes?since={since}", credential)
    elif scheme in ("", "file"):
        path = Path(urllib.parse.urlsplit(source).path if scheme == "file" else source)
        try:
            with path.open("rb") as stream:
                body = stream.read(SYNC_RESPONSE_BYTES_MAX + 1)
        except OSError as exc:
            raise CatalogError(f"catalog sync: cannot read {path}: {exc.strerror}") from exc
    else:
        raise CatalogError(f"catalog sync: {source!r} is neither http(s):// nor a file")
    if len(body) > SYNC_RESPONSE_BYTES_MAX:
        raise CatalogError(f"catalog changes from {source} exceed {SYNC_RESPONSE_BYTES_MAX} bytes")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"catalog changes from {source} are not JSON: {exc}") from exc
    return changes_from_json(document, source=source)


@dataclass(frozen=True, slots=True)
class SyncResult:
    from_version: int
    to_version: int
    rows_applied: int


def sync_replica(
    replica: CatalogStore,
    source: str,
    *,
    now: dt.datetime,
    credential: TillCredential | None = None,
) -> SyncResult:
    """Pull what changed since the copy's version and apply it in one transaction.

    With a ``credential`` the till authenticates to ``catalog serve`` and the
    changes must come from the back office that issued it.
    """
    state = replica.replica_state()
    local = state.version if state is not None else 0
    changes = fetch_changes(source, since=local, credential=credential)
    applied = replica.apply_changes(
        changes,
        synced_at=now,
        source=source,
        expected_store_id=None if credential is None else credential.store_id,
    )
    return SyncResult(local, changes.head_version, applied)


def create_app(
    store: CatalogStore,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(BEIJING),
) -> FastAPI:
    """The back office's HTTP API (``posbatch catalog serve``): catalog changes and orders.

    Every route answers registered tills only (``Authorization: Bearer``);
    ``clock`` gives the back office's own date for the order checks.
    """
    app = FastAPI(title="posbatch catalog", docs_url=None, redoc_url=None, openapi_url=None)
    till = till_dependency(store)
    limit_request_bodies(app)
    answer_errors_masked(app)  # no 422 or other error repeats what a till sent

    caller = Depends(till)

    @app.get("/catalog/changes")
    def changes(since: int = Query(0, ge=0, le=2**31 - 1), _till: str = caller) -> JSONResponse:
        return JSONResponse(changes_to_json(store.changes_since(since)))

    @app.get("/catalog/version")
    def version(_till: str = caller) -> dict[str, int]:
        return {"version": store.version()}

    add_order_routes(app, store, till=till, clock=clock)
    return app
