"""Orders over HTTP: a till that reaches the back office only through ``catalog serve``.

Endpoints (added to :func:`posbatch.catalog.create_app`)::

    POST /catalog/orders                      open a pending order   → 201 {order_id, receipt_no}
    POST /catalog/orders/{order_id}/paid      approved payment       → 200 (409 if not pending)
    POST /catalog/orders/{order_id}/unpaid    declined / no answer   → 200 (409 if not pending)
    GET  /catalog/orders/pending?terminal_id= orders still pending   → 200 [...]

Bodies are checked like any peer input (422 with the reason; 404 for an
unknown order). :class:`HttpOrderBook` is the client, an ``OrderBook`` for
:func:`pay_cart` and a ledger for :func:`recover_pending_orders`. The
endpoints trust the network they are served on (no authentication): run
``catalog serve`` on the shop's LAN or behind an authenticating proxy.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field

from posbatch.catalog._checkout import (
    CART_LINES_MAX,
    LINE_QUANTITY_MAX,
    Cart,
    OpenOrder,
    OrderDraft,
    OrderLine,
    Payment,
)
from posbatch.catalog._gtin import normalize_gtin
from posbatch.catalog._model import GS1_CSET82
from posbatch.catalog._store import CatalogStore, OrderSummary
from posbatch.errors import CatalogError, IllegalTransition

__all__ = ["ORDERS_TIMEOUT_MS", "ORDER_ROWS_MAX", "HttpOrderBook", "add_order_routes"]

ORDERS_TIMEOUT_MS = 10_000
ORDER_ROWS_MAX = CART_LINES_MAX * 10
"""Most stored rows per order (a line split over several lots is one row per lot)."""
ORDER_RESPONSE_BYTES_MAX = 4 * 1024 * 1024


class _LineModel(BaseModel):
    line_no: int = Field(ge=1, le=CART_LINES_MAX)
    gtin: str = Field(max_length=14)
    product_name: str = Field(min_length=1, max_length=200)
    price_fen: int = Field(ge=0, le=999_999_999_999)
    lot_no: str | None = Field(default=None, min_length=1, max_length=20)
    quantity: int = Field(ge=1, le=LINE_QUANTITY_MAX)
    lot_source: Literal["scan", "manual", "fefo", "none"]
    scan_raw: str | None = Field(default=None, max_length=512)


class _OpenModel(BaseModel):
    terminal_id: str = Field(min_length=8, max_length=8)
    opened_at: AwareDatetime
    catalog_version: int = Field(ge=0)
    lines: list[_LineModel] = Field(min_length=1, max_length=ORDER_ROWS_MAX)


class _PaymentModel(BaseModel):
    approved: bool
    response_code: str = Field(max_length=2)
    stan: str | None = Field(default=None, pattern=r"^\d{6}$")
    batch_no: str | None = Field(default=None, pattern=r"^\d{6}$")
    rrn: str | None = Field(default=None, max_length=12)
    auth_code: str | None = Field(default=None, max_length=6)


class _PaidModel(BaseModel):
    payment: _PaymentModel
    closed_at: AwareDatetime


class _UnpaidModel(BaseModel):
    payment: _PaymentModel | None = None
    note: str = Field(max_length=200)
    closed_at: AwareDatetime


def _payment(model: _PaymentModel) -> Payment:
    return Payment(
        model.approved, model.response_code, model.stan, model.batch_no, model.rrn, model.auth_code
    )


def _draft(model: _OpenModel) -> OrderDraft:
    lines = []
    for line in model.lines:
        try:
            gtin = normalize_gtin(line.gtin)
        except CatalogError as exc:
            raise HTTPException(422, f"line {line.line_no}: {exc}") from exc
        if line.lot_no is not None and set(line.lot_no) - GS1_CSET82:
            raise HTTPException(422, f"line {line.line_no}: lot {line.lot_no!r} is not a GS1 lot")
        lines.append(
            OrderLine(
                line.line_no,
                gtin,
                line.product_name,
                line.price_fen,
                line.lot_no,
                line.quantity,
                line.lot_source,
                line.scan_raw,
            )
        )
    return OrderDraft(model.catalog_version, tuple(lines))


def add_order_routes(app: FastAPI, store: CatalogStore) -> None:
    """Serve the order endpoints of the module docstring from ``store``."""

    @app.post("/catalog/orders", status_code=201)
    def open_order(body: _OpenModel) -> dict[str, Any]:
        order = store.open_draft(
            _draft(body), terminal_id=body.terminal_id, opened_at=body.opened_at
        )
        return {"order_id": order.order_id, "receipt_no": order.receipt_no}

    def _close(action: str, call: Any) -> dict[str, str]:
        try:
            call()
        except IllegalTransition as exc:
            raise HTTPException(409, str(exc)) from exc
        except CatalogError as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"status": action}

    @app.post("/catalog/orders/{order_id}/paid")
    def paid(order_id: int, body: _PaidModel) -> dict[str, str]:
        payment = _payment(body.payment)
        if not payment.approved:
            raise HTTPException(422, "a paid order needs an approved payment")
        return _close(
            "paid", lambda: store.complete_order(order_id, payment, closed_at=body.closed_at)
        )

    @app.post("/catalog/orders/{order_id}/unpaid")
    def unpaid(order_id: int, body: _UnpaidModel) -> dict[str, str]:
        payment = _payment(body.payment) if body.payment is not None else None
        return _close(
            "unpaid",
            lambda: store.close_unpaid(
                order_id, payment=payment, note=body.note, closed_at=body.closed_at
            ),
        )

    @app.get("/catalog/orders/pending")
    def pending(
        terminal_id: str | None = Query(None, min_length=8, max_length=8),
    ) -> list[dict[str, Any]]:
        return [
            {
                "order_id": order.order_id,
                "receipt_no": order.receipt_no,
                "terminal_id": order.terminal_id,
                "status": order.status,
                "total_fen": order.total_fen,
                "opened_at": order.opened_at.isoformat(),
            }
            for order in store.pending_orders()
            if terminal_id is None or order.terminal_id == terminal_id
        ]


def _payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "approved": payment.approved,
        "response_code": payment.response_code,
        "stan": payment.stan,
        "batch_no": payment.batch_no,
        "rrn": payment.rrn,
        "auth_code": payment.auth_code,
    }


class HttpOrderBook:
    """Orders written to the back office through ``catalog serve`` (stdlib urllib)."""

    def __init__(self, base_url: str) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise CatalogError(f"orders go to an http(s):// back office, not {base_url!r}")
        self.base_url = base_url.rstrip("/")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=ORDERS_TIMEOUT_MS / 1000) as response:  # noqa: S310
                raw = response.read(ORDER_RESPONSE_BYTES_MAX + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(ORDER_RESPONSE_BYTES_MAX).decode("utf-8", "replace")
            exc.close()
            raise CatalogError(
                f"back office {self.base_url}: {method} {path} → HTTP {exc.code}: {detail}"
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise CatalogError(f"back office {self.base_url} unreachable: {exc}") from exc
        if len(raw) > ORDER_RESPONSE_BYTES_MAX:
            raise CatalogError(f"back office {self.base_url}: answer too large")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise CatalogError(f"back office {self.base_url}: answer is not JSON") from exc

    def open_order(self, cart: Cart, *, terminal_id: str, opened_at: dt.datetime) -> OpenOrder:
        draft = OrderDraft.of(cart)
        answer = self._call(
            "POST",
            "/catalog/orders",
            {
                "terminal_id": terminal_id,
                "opened_at": opened_at.isoformat(),
                "catalog_version": draft.catalog_version,
                "lines": [
                    {
                        "line_no": line.line_no,
                        "gtin": line.gtin,
                        "product_name": line.product_name,
                        "price_fen": line.price_fen,
                        "lot_no": line.lot_no,
                        "quantity": line.quantity,
                        "lot_source": line.lot_source,
                        "scan_raw": line.scan_raw,
                    }
                    for line in draft.lines
                ],
            },
        )
        try:
            return OpenOrder(int(answer["order_id"]), str(answer["receipt_no"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"back office {self.base_url}: bad order answer") from exc

    def complete_order(self, order_id: int, payment: Payment, *, closed_at: dt.datetime) -> None:
        self._call(
            "POST",
            f"/catalog/orders/{order_id}/paid",
            {"payment": _payment_json(payment), "closed_at": closed_at.isoformat()},
        )

    def close_unpaid(
        self, order_id: int, *, payment: Payment | None, note: str, closed_at: dt.datetime
    ) -> None:
        self._call(
            "POST",
            f"/catalog/orders/{order_id}/unpaid",
            {
                "payment": None if payment is None else _payment_json(payment),
                "note": note[:200],
                "closed_at": closed_at.isoformat(),
            },
        )

    def pending_orders(self) -> list[OrderSummary]:
        answer = self._call("GET", "/catalog/orders/pending")
        try:
            return [
                OrderSummary(
                    int(item["order_id"]),
                    str(item["receipt_no"]),
                    str(item["terminal_id"]),
                    str(item["status"]),
                    int(item["total_fen"]),
                    dt.datetime.fromisoformat(item["opened_at"]),
                )
                for item in answer
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"back office {self.base_url}: bad pending-orders answer") from exc
