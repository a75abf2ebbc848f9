"""Orders and returns over HTTP: a till that reaches the back office only through ``catalog serve``.

Every route (these and the sync routes of ``_sync``) answers registered tills
only: ``Authorization: Bearer <token>`` from the till's credential
(``_tills``); no credential or a revoked one → 401. The token names the
till: it reads and writes its own orders only (another terminal's → 403/404).
Request bodies are at most :data:`REQUEST_BYTES_MAX` (413 beyond).

Endpoints (added to :func:`posbatch.catalog.create_app`)::

    POST /catalog/orders                      open a pending order   → 201 {order_id, receipt_no}
    POST /catalog/orders/{order_id}/paid      approved payment       → 200 (409 not pending / host
                                                                        holds no such approval)
    POST /catalog/orders/{order_id}/unpaid    declined / no answer   → 200 (409 if not pending)
    GET  /catalog/orders/pending              this till's pending orders
    GET  /catalog/orders/by-receipt?receipt_no=R   the order, its lines and returns (404)
    POST /catalog/returns                     open a pending return  → 201 {return_id, return_no, …}
    POST /catalog/returns/{return_id}/done    approved void/refund   → 200 (409)
    POST /catalog/returns/{return_id}/failed  declined / reversed    → 200 (409)
    GET  /catalog/returns/pending             this till's pending returns
    POST /catalog/returns/from-journal        voids/refunds made outside checkout → 200

An order or return the back office refuses is 422 with ``{"reason_en",
"reason_zh", "problems"}``: :class:`HttpOrderBook` raises it as
:class:`CheckoutRefused`, so the till shows the cashier why.

No answer repeats a card number a till sent, in whatever field (:func:`answer_errors_masked`):
a request FastAPI cannot take (a missing field, a wrong type, a body that is not JSON, a
path or query value of the wrong form) is 422 with ``{"detail": [lines]}``, one line per
problem naming where and why (``body lines[0].gtin: String should have at most 14
characters``) and never the value; every other error's detail goes through the card-number
net, a GTIN it quotes shown whole only when it could not be a card number (see
:func:`shown_gtins`).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from posbatch.batch.cards import mask_card_numbers
from posbatch.batch.limits import AMOUNT_FEN_MAX
from posbatch.catalog._checkout import (
    CART_LINES_MAX,
    LINE_QUANTITY_MAX,
    Cart,
    OpenOrder,
    OrderDraft,
    OrderLine,
    Payment,
)
from posbatch.catalog._gtin import normalize_gtin, shown_gtins
from posbatch.catalog._model import GS1_CSET82, LOT_LENGTH_MAX
from posbatch.catalog._orders_store import (
    OUTSIDE_RETURNS_MAX,
    OrderSummary,
    OutsideReturn,
    PaymentMismatch,
    ReturnSummary,
)
from posbatch.catalog._returns import OpenReturn, OrderDetail, ReturnKind, ReturnLine
from posbatch.catalog._tills import TillCredential
from posbatch.errors import CatalogError, CheckoutRefused, IllegalTransition, StorageError

if TYPE_CHECKING:
    from posbatch.catalog._store import CatalogStore

__all__ = [
    "ORDERS_TIMEOUT_MS",
    "ORDER_ROWS_MAX",
    "REQUEST_BYTES_MAX",
    "TILL_CLOCK_SKEW_MAX",
    "VALIDATION_PROBLEMS_MAX",
    "HttpOrderBook",
    "add_order_routes",
    "answer_errors_masked",
    "limit_request_bodies",
    "shown_gtins",
    "till_dependency",
    "validation_lines",
]

ORDERS_TIMEOUT_MS = 10_000
ORDER_ROWS_MAX = CART_LINES_MAX * 10
"""Most stored rows per order (a line split over several lots is one row per lot)."""
ORDER_RESPONSE_BYTES_MAX = 4 * 1024 * 1024
REQUEST_BYTES_MAX = 2 * 1024 * 1024
"""Largest request body a till may send (an order of ``ORDER_ROWS_MAX`` rows fits)."""
TILL_CLOCK_SKEW_MAX = dt.timedelta(hours=24)
"""A time a till reports (opened, closed) may differ this much from the back office's clock."""
_SCAN_RAW_MAX = 512
_TRACE_CODE = r"^\d{20}$"
# The lengths of a GTIN that the card-number net would mask (GTIN-13 and GTIN-14; a GTIN-8
# is never masked, a GTIN-12 only when it is an approvable card number).
VALIDATION_PROBLEMS_MAX = 20
"""Most lines a 422 of a request FastAPI could not take lists (the rest are counted)."""


# --- guards ----------------------------------------------------------------------------


def till_dependency(store: CatalogStore) -> Callable[..., str]:
    """A FastAPI dependency: the terminal ID of the till whose credential came, else 401."""
    bearer = Depends(HTTPBearer(auto_error=False))

    def till(credentials: HTTPAuthorizationCredentials | None = bearer) -> str:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                401,
                "a till credential is required (Authorization: Bearer …); "
                "issue one with `posbatch catalog add-till`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            terminal_id = store.till_of(credentials.credentials)
        except StorageError as exc:
            raise HTTPException(503, f"back office storage unavailable: {exc}") from exc
        if terminal_id is None:
            raise HTTPException(
                401, "unknown or revoked till credential", headers={"WWW-Authenticate": "Bearer"}
            )
        return str(terminal_id)

    return till


_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


class _BodyLimit:
    """ASGI: refuse a request body over ``limit`` bytes with 413, declared or streamed.

    The body is read here first (never more than ``limit`` + one chunk), then
    handed to the app; a declared Content-Length over the limit is refused
    before a byte of the body is read.
    """

    def __init__(self, app: Callable[[_Scope, _Receive, _Send], Awaitable[None]], limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    async def _refuse(self, send: _Send) -> None:
        body = json.dumps({"detail": f"request body over {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[_Message], receive: _Receive) -> _Receive:
    """A receive that first gives ``messages``, then what the client sends next."""
    pending = list(messages)

    async def replayed() -> _Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def limit_request_bodies(app: FastAPI, limit: int = REQUEST_BYTES_MAX) -> None:
    app.add_middleware(_BodyLimit, limit=limit)


# --- errors: nothing a till sent comes back whole ---------------------------------------------


def _masked(value: Any) -> Any:
    """``value`` (an error's detail: text, or lists and dicts of it) through the net."""
    if isinstance(value, str):
        return mask_card_numbers(value, allowed=shown_gtins(value))
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {_masked(str(key)): _masked(item) for key, item in value.items()}
    return value


def _where(loc: Sequence[Any]) -> str:
    """``body lines[0].gtin`` for pydantic's ``("body", "lines", 0, "gtin")``."""
    kinds = ("body", "query", "path", "header", "cookie")
    parts = list(loc)
    head = str(parts.pop(0)) if parts and parts[0] in kinds else "request"
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else ("." if name else "") + str(part)
    return f"{head} {name}".strip()


def validation_lines(errors: Sequence[Any]) -> list[str]:
    """One line per problem of a request FastAPI could not take: where, and why — never the
    value (pydantic's ``input``), and through the card-number net besides (a key of a JSON
    object is the sender's text too)."""
    lines = []
    for error in errors[:VALIDATION_PROBLEMS_MAX]:
        where = _where(error.get("loc", ())) if isinstance(error, dict) else "request"
        why = str(error.get("msg", "not valid")) if isinstance(error, dict) else "not valid"
        lines.append(mask_card_numbers(f"{where}: {why}"))
    if len(errors) > VALIDATION_PROBLEMS_MAX:
        lines.append(f"… {len(errors) - VALIDATION_PROBLEMS_MAX} more problems")
    return lines


def answer_errors_masked(app: FastAPI) -> None:
    """Answer ``app``'s errors without repeating what the caller sent.

    FastAPI's own 422 lists each problem with the ``input`` it refused — a card number a
    till put in any field came back whole. Here a request FastAPI cannot take is 422 with
    ``{"detail": [one line per problem]}`` (:func:`validation_lines`), and every
    HTTPException's detail (ours quote a receipt number, a lot, a GTIN) goes through the
    card-number net.
    """

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        del request
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_lines(exc.errors())}, status_code=422)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        del request
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse(
            {"detail": _masked(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    app.add_exception_handler(RequestValidationError, refused)
    app.add_exception_handler(StarletteHTTPException, failed)


def _near(moment: dt.datetime, now: dt.datetime, what: str) -> None:
    if abs(moment - now) > TILL_CLOCK_SKEW_MAX:
        raise HTTPException(
            422,
            f"{what} {moment.isoformat()} is more than {TILL_CLOCK_SKEW_MAX} from the back "
            f"office's clock ({now.isoformat()}): set the till's clock",
        )


# --- bodies ----------------------------------------------------------------------------------


class _LineModel(BaseModel):
    line_no: int = Field(ge=1, le=CART_LINES_MAX)
    gtin: str = Field(max_length=14)
    product_name: str = Field(min_length=1, max_length=200)
    price_fen: int = Field(ge=0, le=AMOUNT_FEN_MAX)
    lot_no: str | None = Field(default=None, min_length=1, max_length=LOT_LENGTH_MAX)
    quantity: int = Field(ge=1, le=LINE_QUANTITY_MAX)
    lot_source: Literal["scan", "manual", "fefo", "none"]
    scan_raw: str | None = Field(default=None, max_length=_SCAN_RAW_MAX)
    serial: str | None = Field(default=None, min_length=1, max_length=20)
    trace_code: str | None = Field(default=None, pattern=_TRACE_CODE)
    expiry_scanned: dt.date | None = None


class _OpenModel(BaseModel):
    terminal_id: str = Field(min_length=8, max_length=8)
    opened_at: AwareDatetime
    catalog_version: int = Field(ge=0, le=2**31 - 1)
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


class _ReturnLineModel(BaseModel):
    line_no: int = Field(ge=1, le=CART_LINES_MAX)
    quantity: int = Field(ge=1, le=LINE_QUANTITY_MAX)
    lot_no: str | None = Field(default=None, min_length=1, max_length=LOT_LENGTH_MAX)


class _OpenReturnModel(BaseModel):
    receipt_no: str = Field(min_length=10, max_length=40)
    lines: list[_ReturnLineModel] | None = Field(default=None, max_length=ORDER_ROWS_MAX)
    void_allowed: bool
    restock: bool
    opened_at: AwareDatetime


class _OutsideModel(BaseModel):
    receipt_no: str = Field(min_length=10, max_length=40)
    kind: Literal["void", "refund"]
    stan: str = Field(pattern=r"^\d{6}$")
    batch_no: str = Field(pattern=r"^\d{6}$")
    amount_fen: int = Field(ge=1, le=AMOUNT_FEN_MAX)
    rrn: str | None = Field(default=None, max_length=12)
    auth_code: str | None = Field(default=None, max_length=6)


class _OutsideListModel(BaseModel):
    returns: list[_OutsideModel] = Field(max_length=OUTSIDE_RETURNS_MAX)
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
        for what, value in (("lot", line.lot_no), ("serial", line.serial)):
            if value is not None and set(value) - GS1_CSET82:
                raise HTTPException(
                    422, f"line {line.line_no}: {what} {value!r} is not in GS1 character set 82"
                )
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
                line.serial,
                line.trace_code,
                line.expiry_scanned,
            )
        )
    return OrderDraft(model.catalog_version, tuple(lines))


def _refused(exc: CheckoutRefused) -> HTTPException:
    problems = getattr(exc, "problems", [])
    return HTTPException(
        422,
        {
            "reason_en": exc.reason_en,
            "reason_zh": exc.reason_zh,
            "problems": [
                {"line_no": p.line_no, "message_en": p.message_en, "message_zh": p.message_zh}
                for p in problems
            ],
        },
    )


def _call(action: Callable[[], Any]) -> Any:
    """Run a store call; its errors as HTTP answers (never a 500 for a peer's mistake)."""
    try:
        return action()
    except CheckoutRefused as exc:
        raise _refused(exc) from exc
    except (IllegalTransition, PaymentMismatch) as exc:
        raise HTTPException(409, str(exc)) from exc
    except StorageError as exc:
        raise HTTPException(503, f"back office storage unavailable: {exc}") from exc
    except CatalogError as exc:
        raise HTTPException(404, str(exc)) from exc


def add_order_routes(
    app: FastAPI,
    store: CatalogStore,
    *,
    till: Callable[..., str],
    clock: Callable[[], dt.datetime],
) -> None:
    """Serve the order and return endpoints of the module docstring from ``store``."""
    caller = Depends(till)  # the till's terminal ID, from its credential

    @app.post("/catalog/orders", status_code=201)
    def open_order(body: _OpenModel, terminal_id: str = caller) -> dict[str, Any]:
        if body.terminal_id != terminal_id:
            raise HTTPException(
                403, f"this credential is till {terminal_id}'s, not {body.terminal_id}'s"
            )
        now = clock()
        _near(body.opened_at, now, "opened_at")
        draft = _draft(body)
        order = _call(
            lambda: store.open_draft(
                draft, terminal_id=terminal_id, opened_at=body.opened_at, today=now.date()
            )
        )
        return {"order_id": order.order_id, "receipt_no": order.receipt_no}

    @app.post("/catalog/orders/{order_id}/paid")
    def paid(order_id: int, body: _PaidModel, terminal_id: str = caller) -> dict[str, str]:
        payment = _payment(body.payment)
        if not payment.approved or payment.stan is None or payment.batch_no is None:
            raise HTTPException(
                422, "a paid order needs an approved payment with STAN and batch_no"
            )
        _near(body.closed_at, clock(), "closed_at")
        _call(
            lambda: store.complete_order(
                order_id, payment, closed_at=body.closed_at, terminal_id=terminal_id
            )
        )
        return {"status": "paid"}

    @app.post("/catalog/orders/{order_id}/unpaid")
    def unpaid(order_id: int, body: _UnpaidModel, terminal_id: str = caller) -> dict[str, str]:
        payment = _payment(body.payment) if body.payment is not None else None
        _call(
            lambda: store.close_unpaid(
                order_id,
                payment=payment,
                note=body.note,
                closed_at=body.closed_at,
                terminal_id=terminal_id,
            )
        )
        return {"status": "unpaid"}

    @app.get("/catalog/orders/pending")
    def pending(terminal_id: str = caller) -> list[dict[str, Any]]:
        return [
            {
                "order_id": order.order_id,
                "receipt_no": order.receipt_no,
                "terminal_id": order.terminal_id,
                "status": order.status,
                "total_fen": order.total_fen,
                "opened_at": order.opened_at.isoformat(),
            }
            for order in _call(lambda: store.pending_orders(terminal_id))
        ]

    @app.get("/catalog/orders/by-receipt")
    def by_receipt(
        receipt_no: str = Query(min_length=10, max_length=40), terminal_id: str = caller
    ) -> dict[str, Any]:
        detail = _call(lambda: store.order_detail(receipt_no))
        if detail is None or detail.terminal_id != terminal_id:
            raise HTTPException(404, f"no receipt {receipt_no} of till {terminal_id}")
        document: dict[str, Any] = detail.to_json()
        return document

    @app.post("/catalog/returns", status_code=201)
    def open_return(body: _OpenReturnModel, terminal_id: str = caller) -> dict[str, Any]:
        _near(body.opened_at, clock(), "opened_at")
        requests = (
            None
            if body.lines is None
            else [ReturnLine(line.line_no, line.quantity, line.lot_no) for line in body.lines]
        )
        opened = _call(
            lambda: store.open_return(
                body.receipt_no,
                requests,
                void_allowed=body.void_allowed,
                restock=body.restock,
                terminal_id=terminal_id,
                opened_at=body.opened_at,
            )
        )
        return {
            "return_id": opened.return_id,
            "return_no": opened.return_no,
            "kind": str(opened.kind),
            "amount_fen": opened.amount_fen,
            "takes": [list(take) for take in opened.takes],
        }

    @app.post("/catalog/returns/{return_id}/done")
    def return_done(return_id: int, body: _PaidModel, terminal_id: str = caller) -> dict[str, str]:
        payment = _payment(body.payment)
        if not payment.approved or payment.stan is None or payment.batch_no is None:
            raise HTTPException(422, "a return is done by an approved void/refund with STAN")
        _near(body.closed_at, clock(), "closed_at")
        _call(
            lambda: store.complete_return(
                return_id, payment, closed_at=body.closed_at, terminal_id=terminal_id
            )
        )
        return {"status": "done"}

    @app.post("/catalog/returns/{return_id}/failed")
    def return_failed(
        return_id: int, body: _UnpaidModel, terminal_id: str = caller
    ) -> dict[str, str]:
        payment = _payment(body.payment) if body.payment is not None else None
        _call(
            lambda: store.fail_return(
                return_id,
                payment=payment,
                note=body.note,
                closed_at=body.closed_at,
                terminal_id=terminal_id,
            )
        )
        return {"status": "failed"}

    @app.get("/catalog/returns/pending")
    def returns_pending(terminal_id: str = caller) -> list[dict[str, Any]]:
        return [
            {
                "return_id": item.return_id,
                "return_no": item.return_no,
                "receipt_no": item.receipt_no,
                "terminal_id": item.terminal_id,
                "kind": item.kind,
                "amount_fen": item.amount_fen,
                "opened_at": item.opened_at.isoformat(),
            }
            for item in _call(lambda: store.pending_returns(terminal_id))
        ]

    @app.post("/catalog/returns/from-journal")
    def from_journal(body: _OutsideListModel, terminal_id: str = caller) -> dict[str, Any]:
        found = [
            OutsideReturn(
                item.receipt_no,
                item.kind,
                item.stan,
                item.batch_no,
                item.amount_fen,
                item.rrn,
                item.auth_code,
            )
            for item in body.returns
        ]
        recorded = _call(
            lambda: store.record_outside_returns(terminal_id, found, closed_at=body.closed_at)
        )
        return {"recorded": [list(item) for item in recorded]}


# --- the client --------------------------------------------------------------------------------


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
    """Orders and returns written to the back office through ``catalog serve`` (stdlib urllib)."""

    def __init__(self, base_url: str, credential: TillCredential) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise CatalogError(f"orders go to an http(s):// back office, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._credential = credential

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self._credential.token}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=ORDERS_TIMEOUT_MS / 1000) as response:  # noqa: S310
                raw = response.read(ORDER_RESPONSE_BYTES_MAX + 1)
        except urllib.error.HTTPError as exc:
            detail_bytes = exc.read(ORDER_RESPONSE_BYTES_MAX)
            exc.close()
            raise self._error(method, path, exc.code, detail_bytes) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise CatalogError(f"back office {self.base_url} unreachable: {exc}") from exc
        if len(raw) > ORDER_RESPONSE_BYTES_MAX:
            raise CatalogError(f"back office {self.base_url}: answer too large")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise CatalogError(f"back office {self.base_url}: answer is not JSON") from exc

    def _error(self, method: str, path: str, code: int, raw: bytes) -> CatalogError:
        try:
            detail = json.loads(raw).get("detail")
        except (ValueError, AttributeError):
            detail = raw.decode("utf-8", "replace")
        if isinstance(detail, list):  # a 422 of a request the back office could not take
            detail = "; ".join(str(line) for line in detail)
        if code == 422 and isinstance(detail, dict) and "reason_en" in detail:
            return CheckoutRefused(str(detail["reason_en"]), reason_zh=str(detail["reason_zh"]))
        if code == 409:
            return PaymentMismatch(
                f"back office {self.base_url}: {method} {path} → HTTP 409: {detail}"
            )
        return CatalogError(f"back office {self.base_url}: {method} {path} → HTTP {code}: {detail}")

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
                        "serial": line.serial,
                        "trace_code": line.trace_code,
                        "expiry_scanned": line.expiry_scanned.isoformat()
                        if line.expiry_scanned
                        else None,
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

    def order_detail(self, receipt_no: str) -> OrderDetail | None:
        query = urllib.parse.urlencode({"receipt_no": receipt_no})
        try:
            answer = self._call("GET", f"/catalog/orders/by-receipt?{query}")
        except CatalogError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        try:
            return OrderDetail.from_json(answer)
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"back office {self.base_url}: bad order answer") from exc

    def open_return(
        self,
        receipt_no: str,
        requests: Sequence[ReturnLine] | None,
        *,
        void_allowed: bool,
        restock: bool,
        terminal_id: str,
        opened_at: dt.datetime,
    ) -> OpenReturn:
        del terminal_id  # the credential names the till
        answer = self._call(
            "POST",
            "/catalog/returns",
            {
                "receipt_no": receipt_no,
                "lines": None
                if requests is None
                else [
                    {"line_no": r.line_no, "quantity": r.quantity, "lot_no": r.lot_no}
                    for r in requests
                ],
                "void_allowed": void_allowed,
                "restock": restock,
                "opened_at": opened_at.isoformat(),
            },
        )
        try:
            return OpenReturn(
                int(answer["return_id"]),
                str(answer["return_no"]),
                ReturnKind(answer["kind"]),
                int(answer["amount_fen"]),
                tuple((int(a), int(b)) for a, b in answer["takes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"back office {self.base_url}: bad return answer") from exc

    def complete_return(self, return_id: int, payment: Payment, *, closed_at: dt.datetime) -> None:
        self._call(
            "POST",
            f"/catalog/returns/{return_id}/done",
            {"payment": _payment_json(payment), "closed_at": closed_at.isoformat()},
        )

    def fail_return(
        self, return_id: int, *, payment: Payment | None, note: str, closed_at: dt.datetime
    ) -> None:
        self._call(
            "POST",
            f"/catalog/returns/{return_id}/failed",
            {
                "payment": None if payment is None else _payment_json(payment),
                "note": note[:200],
                "closed_at": closed_at.isoformat(),
            },
        )

    def pending_returns(self) -> list[ReturnSummary]:
        answer = self._call("GET", "/catalog/returns/pending")
        try:
            return [
                ReturnSummary(
                    int(item["return_id"]),
                    str(item["return_no"]),
                    str(item["receipt_no"]),
                    str(item["terminal_id"]),
                    str(item["kind"]),
                    int(item["amount_fen"]),
                    dt.datetime.fromisoformat(item["opened_at"]),
                )
                for item in answer
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"back office {self.base_url}: bad pending-returns answer") from exc

    def record_outside_returns(
        self, terminal_id: str, found: Sequence[OutsideReturn], *, closed_at: dt.datetime
    ) -> list[tuple[str, str]]:
        del terminal_id  # the credential names the till
        answer = self._call(
            "POST",
            "/catalog/returns/from-journal",
            {
                "returns": [
                    {
                        "receipt_no": item.receipt_no,
                        "kind": item.kind,
                        "stan": item.stan,
                        "batch_no": item.batch_no,
                        "amount_fen": item.amount_fen,
                        "rrn": item.rrn,
                        "auth_code": item.auth_code,
                    }
                    for item in found
                ],
                "closed_at": closed_at.isoformat(),
            },
        )
        try:
            return [(str(a), str(b)) for a, b in answer["recorded"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"back office {self.base_url}: bad answer") from exc
