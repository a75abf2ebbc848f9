"""Orders and returns in the back office: written, checked, completed; traced and reported.

Orders — theory of operation. An order is a table-driven state machine
(:data:`ORDER_TRANSITIONS`, applied by :func:`next_order_status`)::

    pending --paid--> paid --refunded_part--> part_refunded --refunded_all--> refunded
       |               |  \\--refunded_all--> refunded        \\--refunded_part--> part_refunded
       |               \\--voided--> voided
       \\--unpaid--> unpaid

It is written *pending* before the card is charged, after the back office
checked every line (``_rules``: a stale or hostile till cannot sell a
recalled lot, an unknown product, a unit sold already); a crash after the
charge leaves it pending (``pending_orders``), never lost. *Paid* names the
card transaction (batch_no, STAN): the host's store is asked where it can be
(``_verify``), one card transaction completes one order only
(``catalog_payments_used``), and the sale's stock movements are written in
the same transaction. Returns (``_returns``) move an order on to voided,
part_refunded or refunded and put stock back.

Units named by a serial (21) or a drug traceability code are *out* from the
moment their order is written until it is closed unpaid or they come back
(``catalog_units_out``, whose primary key refuses the same unit twice even
from two tills at the same instant).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.catalog import _tables as t
from posbatch.catalog._checkout import Cart, OpenOrder, OrderDraft, Payment
from posbatch.catalog._model import Lot
from posbatch.catalog._returns import (
    OpenReturn,
    OrderDetail,
    OrderLineView,
    ReturnKind,
    ReturnLine,
    ReturnView,
    next_return_status,
    plan_return,
    receipt_no_forms,
    receipt_number,
    return_number,
)
from posbatch.catalog._rules import (
    OrderRefused,
    UnitKey,
    line_units,
    order_problems,
    unit_keys,
)
from posbatch.catalog._stock import Movement, MovementKind, StockMixin, StockRow, record_movements
from posbatch.catalog._store_base import lot_of, product_of, stored, utc
from posbatch.catalog._verify import CardTransaction, PaymentCheck, PaymentVerifier
from posbatch.errors import CatalogError, IllegalTransition

__all__ = [
    "ORDER_TRANSITIONS",
    "OUTSIDE_RETURNS_MAX",
    "PENDING_ROWS_MAX",
    "TRACE_ROWS_MAX",
    "OrderSummary",
    "OrdersMixin",
    "OutsideReturn",
    "PaymentMismatch",
    "RecallReport",
    "ReturnSummary",
    "ReturnedRow",
    "TraceRow",
    "next_order_status",
]

TRACE_ROWS_MAX = 10_000
PENDING_ROWS_MAX = 1_000
OUTSIDE_RETURNS_MAX = 1_000
"""Most journal voids/refunds one reconciliation call may carry."""

ORDER_TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "paid"): "paid",
    ("pending", "unpaid"): "unpaid",
    ("paid", "voided"): "voided",
    ("paid", "refunded_part"): "part_refunded",
    ("paid", "refunded_all"): "refunded",
    ("part_refunded", "refunded_part"): "part_refunded",
    ("part_refunded", "refunded_all"): "refunded",
}
_SOLD_STATUSES = ("paid", "voided", "refunded", "part_refunded", "pending")


def next_order_status(status: str, event: str) -> str:
    """The status after ``event``; :class:`IllegalTransition` if the table has no such move."""
    try:
        return ORDER_TRANSITIONS[status, event]
    except KeyError:
        raise IllegalTransition("order", status, event) from None


class PaymentMismatch(CatalogError):  # noqa: N818 - the name says what happened
    """The host's store holds no approval matching what the till reported: not completed."""


@dataclass(frozen=True, slots=True)
class OrderSummary:
    order_id: int
    receipt_no: str
    terminal_id: str
    status: str
    total_fen: int
    opened_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ReturnSummary:
    return_id: int
    return_no: str
    receipt_no: str
    terminal_id: str
    kind: str
    amount_fen: int
    opened_at: dt.datetime


@dataclass(frozen=True, slots=True)
class OutsideReturn:
    """A void or refund found in a terminal journal, of a sale that paid ``receipt_no``."""

    receipt_no: str
    kind: str
    stan: str
    batch_no: str
    amount_fen: int
    rrn: str | None = None
    auth_code: str | None = None


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One order line that sold (or is selling) a lot or a unit."""

    order_id: int
    receipt_no: str
    terminal_id: str
    status: str
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    batch_no: str | None
    stan: str | None
    rrn: str | None
    gtin: str
    product_name: str
    lot_no: str | None
    quantity: int
    returned: int = 0
    payment_check: str | None = None
    serial: str | None = None
    trace_code: str | None = None
    expiry_scanned: dt.date | None = None

    @property
    def line_status(self) -> str:
        """This line's own state: ``voided``, ``refunded`` (all of it back),
        ``part_refunded`` (some back); nothing back: ``paid`` when the order was
        partly refunded (other lines came back), else the order's status."""
        if self.returned <= 0:
            return "paid" if self.status in ("part_refunded", "refunded") else self.status
        if self.status == "voided":
            return "voided"
        return "refunded" if self.returned >= self.quantity else "part_refunded"

    def to_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "receipt_no": self.receipt_no,
            "terminal_id": self.terminal_id,
            "status": self.status,
            "line_status": self.line_status,
            "opened_at": self.opened_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "batch_no": self.batch_no,
            "stan": self.stan,
            "rrn": self.rrn,
            "gtin": self.gtin,
            "product_name": self.product_name,
            "lot_no": self.lot_no,
            "quantity": self.quantity,
            "returned": self.returned,
            "payment_check": self.payment_check,
            "serial": self.serial,
            "trace_code": self.trace_code,
            "expiry_scanned": self.expiry_scanned.isoformat() if self.expiry_scanned else None,
        }


@dataclass(frozen=True, slots=True)
class ReturnedRow:
    """Units of a lot that came back: by which return, of which receipt, where they went."""

    return_no: str
    receipt_no: str
    terminal_id: str
    kind: str
    quantity: int
    closed_at: dt.datetime | None
    quarantined: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "return_no": self.return_no,
            "receipt_no": self.receipt_no,
            "terminal_id": self.terminal_id,
            "kind": self.kind,
            "quantity": self.quantity,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class RecallReport:
    """Everything about a lot a recall needs: who bought it, what is here, what came back."""

    lot: Lot
    product_name: str
    recalls: list[Any]
    stock: StockRow
    sales: list[TraceRow]
    returned: list[ReturnedRow]

    @property
    def sold_quantity(self) -> int:
        return sum(row.quantity for row in self.sales if row.status != "pending")

    @property
    def returned_quantity(self) -> int:
        return sum(row.quantity for row in self.returned)

    def to_json(self) -> dict[str, Any]:
        return {
            "gtin": self.lot.gtin,
            "product_name": self.product_name,
            "lot_no": self.lot.lot_no,
            "expiry": self.lot.expiry.isoformat() if self.lot.expiry else None,
            "recalled": self.lot.recalled,
            "recalls": [recall.to_json() for recall in self.recalls],
            "on_hand": self.stock.on_hand,
            "quarantined": self.stock.quarantined,
            "sold_quantity": self.sold_quantity,
            "returned_quantity": self.returned_quantity,
            "sales": [row.to_json() for row in self.sales],
            "returned": [row.to_json() for row in self.returned],
        }


def _payment_values(payment: Payment) -> dict[str, Any]:
    return {
        "stan": payment.stan,
        "batch_no": payment.batch_no,
        "rrn": payment.rrn,
        "auth_code": payment.auth_code,
        "response_code": payment.response_code,
    }


class OrdersMixin(StockMixin):
    """Orders, returns, traces (see the module docstring)."""

    payment_verifier: PaymentVerifier | None = None

    # --- writing an order --------------------------------------------------------------

    def open_order(self, cart: Cart, *, terminal_id: str, opened_at: dt.datetime) -> OpenOrder:
        """Write the order and its lines as pending; the receipt number is ``TERMINAL-NORDERID``
        (:func:`~posbatch.catalog._returns.receipt_number`)."""
        return self.open_draft(
            OrderDraft.of(cart),
            terminal_id=terminal_id,
            opened_at=opened_at,
            today=opened_at.date(),
        )

    def open_draft(
        self, draft: OrderDraft, *, terminal_id: str, opened_at: dt.datetime, today: dt.date
    ) -> OpenOrder:
        """Check ``draft`` against the catalog as of ``today`` and write it pending.

        :class:`OrderRefused` (nothing written) names every line that must not
        be sold — see ``_rules``.
        """
        with self._write() as connection:
            gtins = sorted({line.gtin for line in draft.lines})
            lot_numbers = sorted({line.lot_no for line in draft.lines if line.lot_no})
            products = {
                row.gtin: product_of(row)
                for row in connection.execute(
                    sa.select(t.products).where(t.products.c.gtin.in_(gtins))
                )
            }
            lots = {
                (row.gtin, row.lot_no): lot_of(row)
                for row in connection.execute(
                    sa.select(t.lots).where(t.lots.c.gtin.in_(gtins)).with_for_update()
                )
            }
            elsewhere: dict[str, list[str]] = {}
            for row in connection.execute(
                sa.select(t.lots.c.lot_no, t.lots.c.gtin).where(t.lots.c.lot_no.in_(lot_numbers))
            ):
                elsewhere.setdefault(row.lot_no, []).append(row.gtin)
            units = [unit for _, unit in unit_keys(draft)]
            problems = order_problems(
                draft,
                products=products,
                lots=lots,
                lots_elsewhere=elsewhere,
                units_sold=self._units_sold(connection, units),
                today=today,
                head_version=self._head(connection),
            )
            if problems:
                raise OrderRefused(problems)
            result = connection.execute(
                sa.insert(t.orders).values(
                    terminal_id=terminal_id,
                    status="pending",
                    total_fen=draft.total_fen,
                    catalog_version=draft.catalog_version,
                    opened_at=stored(opened_at),
                )
            )
            assert result.inserted_primary_key is not None
            order_id = int(result.inserted_primary_key[0])
            receipt_no = receipt_number(terminal_id, order_id)
            connection.execute(
                sa.update(t.orders)
                .where(t.orders.c.order_id == order_id)
                .values(receipt_no=receipt_no)
            )
            connection.execute(
                sa.insert(t.order_lines),
                [
                    {
                        "order_id": order_id,
                        "line_no": line.line_no,
                        "gtin": line.gtin,
                        "product_name": products[line.gtin].name,
                        "price_fen": line.price_fen,
                        "lot_no": line.lot_no,
                        "quantity": line.quantity,
                        "lot_source": line.lot_source,
                        "scan_raw": line.scan_raw,
                        "serial": line.serial,
                        "trace_code": line.trace_code,
                        "expiry_scanned": line.expiry_scanned,
                    }
                    for line in draft.lines
                ],
            )
            ids = list(
                connection.execute(
                    sa.select(t.order_lines.c.order_line_id)
                    .where(t.order_lines.c.order_id == order_id)
                    .order_by(t.order_lines.c.order_line_id)
                ).scalars()
            )
            rows_out = [
                {"kind": kind, "gtin": gtin, "code": code, "order_line_id": line_id}
                for line_id, line in zip(ids, draft.lines, strict=True)
                for kind, gtin, code in line_units(line)
            ]
            if rows_out:
                connection.execute(sa.insert(t.units_out), rows_out)
        return OpenOrder(order_id, receipt_no)

    @staticmethod
    def _units_sold(connection: Connection, units: Sequence[UnitKey]) -> dict[UnitKey, str]:
        found: dict[UnitKey, str] = {}
        for kind, gtin, code in units:
            row = connection.execute(
                sa.select(t.orders.c.receipt_no)
                .select_from(
                    t.units_out.join(
                        t.order_lines,
                        t.order_lines.c.order_line_id == t.units_out.c.order_line_id,
                    ).join(t.orders, t.orders.c.order_id == t.order_lines.c.order_id)
                )
                .where(
                    t.units_out.c.kind == kind,
                    t.units_out.c.gtin == gtin,
                    t.units_out.c.code == code,
                )
            ).first()
            if row is not None:
                found[kind, gtin, code] = row.receipt_no
        return found

    # --- verifying and completing ---------------------------------------------------------

    def _verify(self, transaction: CardTransaction) -> tuple[PaymentCheck, str]:
        if self.payment_verifier is None:
            return PaymentCheck.UNVERIFIED, "no host store to ask"
        return self.payment_verifier.check(transaction)

    def _order_row(self, order_id: int, terminal_id: str | None) -> Any:
        with self._begin() as connection:
            row = connection.execute(
                sa.select(t.orders).where(t.orders.c.order_id == order_id)
            ).first()
        if row is None or (terminal_id is not None and row.terminal_id != terminal_id):
            raise CatalogError(f"no order {order_id}" + (" of this till" if row else ""))
        return row

    @staticmethod
    def _transition(connection: Connection, order_id: int, event: str) -> tuple[Any, str]:
        row = connection.execute(
            sa.select(t.orders).where(t.orders.c.order_id == order_id).with_for_update()
        ).first()
        if row is None:
            raise CatalogError(f"no order {order_id}")
        return row, next_order_status(row.status, event)

    @staticmethod
    def _use_payment(
        connection: Connection,
        terminal_id: str,
        payment: Payment,
        *,
        order_id: int,
        return_id: int | None = None,
    ) -> None:
        """One card transaction completes one order or return: refuse it a second time."""
        if payment.stan is None or payment.batch_no is None:
            raise CatalogError("an approved payment names its batch_no and STAN")
        used = connection.execute(
            sa.select(t.payments_used).where(
                t.payments_used.c.terminal_id == terminal_id,
                t.payments_used.c.batch_no == payment.batch_no,
                t.payments_used.c.stan == payment.stan,
            )
        ).first()
        if used is not None:
            raise PaymentMismatch(
                f"STAN {payment.stan} of batch {payment.batch_no} already completed order "
                f"{used.order_id}" + (f" (return {used.return_id})" if used.return_id else "")
            )
        connection.execute(
            sa.insert(t.payments_used).values(
                terminal_id=terminal_id,
                batch_no=payment.batch_no,
                stan=payment.stan,
                order_id=order_id,
                return_id=return_id,
            )
        )

    def complete_order(
        self,
        order_id: int,
        payment: Payment,
        *,
        closed_at: dt.datetime,
        terminal_id: str | None = None,
    ) -> None:
        """Record an approved payment and the sale's stock movements, atomically.

        :class:`PaymentMismatch` (nothing changes) when the host's store holds
        no such approval, or the card transaction completed another order.
        ``terminal_id``: the till asking (over HTTP) must be the order's.
        """
        if not payment.approved:
            raise CatalogError(f"order {order_id}: payment {payment.response_code} not approved")
        order = self._order_row(order_id, terminal_id)
        verdict, reason = self._verify(
            CardTransaction(
                "sale",
                order.terminal_id,
                payment.batch_no or "",
                payment.stan or "",
                int(order.total_fen),
            )
        )
        with self._write() as connection:
            row, status = self._transition(connection, order_id, "paid")
            if verdict == PaymentCheck.MISMATCH:
                raise PaymentMismatch(f"order {row.receipt_no} not completed: {reason}")
            self._use_payment(connection, row.terminal_id, payment, order_id=order_id)
            connection.execute(
                sa.update(t.orders)
                .where(t.orders.c.order_id == order_id)
                .values(
                    status=status,
                    closed_at=stored(closed_at),
                    payment_check=str(verdict),
                    **_payment_values(payment),
                )
            )
            sold = connection.execute(
                sa.select(t.order_lines.c.gtin, t.order_lines.c.lot_no, t.order_lines.c.quantity)
                .where(t.order_lines.c.order_id == order_id)
                .order_by(t.order_lines.c.order_line_id)
            ).all()
            version = self._new_version(connection, at=closed_at, reason=f"sale {row.receipt_no}")
            for line in sold:
                record_movements(
                    connection,
                    [self._sale_movement(connection, line, order_id)],
                    at=closed_at,
                    version=version,
                )

    def _sale_movement(self, connection: Connection, line: Any, order_id: int) -> Movement:
        """A sold line's movement. The units of an order still pending when its lot was
        recalled had left the shop already: the recall's quarantine gives them back."""
        quantity = int(line.quantity)
        recall_id = (
            None if line.lot_no is None else self.active_recall(connection, line.gtin, line.lot_no)
        )
        from_quarantine = 0
        if recall_id is not None:
            held = connection.execute(
                sa.select(t.lots.c.quarantined).where(
                    t.lots.c.gtin == line.gtin, t.lots.c.lot_no == line.lot_no
                )
            ).scalar_one()
            from_quarantine = max(
                0, min(quantity, int(held), self.set_aside_by(connection, recall_id))
            )
        return Movement(
            line.gtin,
            line.lot_no or t.NO_LOT,
            MovementKind.SALE,
            -(quantity - from_quarantine),
            -from_quarantine,
            "sold while the order was pending, the lot recalled meanwhile"
            if from_quarantine
            else None,
            order_id=order_id,
            recall_id=recall_id if from_quarantine else None,
        )

    def close_unpaid(
        self,
        order_id: int,
        *,
        payment: Payment | None,
        note: str,
        closed_at: dt.datetime,
        terminal_id: str | None = None,
    ) -> None:
        """Close an order whose payment was declined or never answered; stock is untouched."""
        if terminal_id is not None:
            self._order_row(order_id, terminal_id)
        with self._write() as connection:
            _, status = self._transition(connection, order_id, "unpaid")
            values: dict[str, Any] = {
                "status": status,
                "closed_at": stored(closed_at),
                "note": note[:200],
            }
            if payment is not None:
                values |= {
                    "stan": payment.stan,
                    "batch_no": payment.batch_no,
                    "rrn": payment.rrn,
                    "response_code": payment.response_code,
                }
            connection.execute(
                sa.update(t.orders).where(t.orders.c.order_id == order_id).values(**values)
            )
            self._free_units(
                connection,
                sa.select(t.order_lines.c.order_line_id).where(
                    t.order_lines.c.order_id == order_id
                ),
            )

    @staticmethod
    def _free_units(connection: Connection, line_ids: Any) -> None:
        connection.execute(sa.delete(t.units_out).where(t.units_out.c.order_line_id.in_(line_ids)))

    def pending_orders(self, terminal_id: str | None = None) -> list[OrderSummary]:
        """Orders written before a payment whose outcome was never recorded."""
        statement = (
            sa.select(t.orders)
            .where(t.orders.c.status == "pending")
            .order_by(t.orders.c.order_id)
            .limit(PENDING_ROWS_MAX)
        )
        if terminal_id is not None:
            statement = statement.where(t.orders.c.terminal_id == terminal_id)
        with self._begin() as connection:
            rows = connection.execute(statement).all()
        return [
            OrderSummary(
                row.order_id,
                row.receipt_no,
                row.terminal_id,
                row.status,
                int(row.total_fen),
                utc(row.opened_at),
            )
            for row in rows
        ]

    # --- order detail ------------------------------------------------------------------------

    def order_detail(self, receipt_no: str) -> OrderDetail | None:
        """The order with this receipt number, its lines (and what came back), its returns."""
        with self._begin() as connection:
            return self._order_detail(connection, receipt_no)

    @staticmethod
    def _order_detail(connection: Connection, receipt_no: str) -> OrderDetail | None:
        order = connection.execute(
            sa.select(t.orders).where(t.orders.c.receipt_no.in_(receipt_no_forms(receipt_no)))
        ).first()
        if order is None:
            return None
        returns = connection.execute(
            sa.select(t.returns)
            .where(t.returns.c.order_id == order.order_id)
            .order_by(t.returns.c.return_id)
        ).all()
        return_lines = connection.execute(
            sa.select(t.return_lines)
            .where(t.return_lines.c.return_id.in_([r.return_id for r in returns]))
            .order_by(t.return_lines.c.return_line_id)
        ).all()
        done = {r.return_id for r in returns if r.status == "done"}
        returned: dict[int, int] = {}
        lines_of: dict[int, list[tuple[int, int]]] = {}
        for line in return_lines:
            lines_of.setdefault(line.return_id, []).append((line.order_line_id, line.quantity))
            if line.return_id in done:
                returned[line.order_line_id] = returned.get(line.order_line_id, 0) + int(
                    line.quantity
                )
        rows = connection.execute(
            sa.select(t.order_lines)
            .where(t.order_lines.c.order_id == order.order_id)
            .order_by(t.order_lines.c.order_line_id)
        ).all()
        return OrderDetail(
            order.order_id,
            order.receipt_no,
            order.terminal_id,
            order.status,
            int(order.total_fen),
            utc(order.opened_at),
            utc(order.closed_at) if order.closed_at else None,
            order.stan,
            order.batch_no,
            order.payment_check,
            tuple(
                OrderLineView(
                    row.order_line_id,
                    row.line_no,
                    row.gtin,
                    row.product_name,
                    int(row.price_fen),
                    row.lot_no,
                    int(row.quantity),
                    returned.get(row.order_line_id, 0),
                    row.serial,
                    row.trace_code,
                    row.expiry_scanned,
                )
                for row in rows
            ),
            tuple(
                ReturnView(
                    r.return_id,
                    r.return_no,
                    r.kind,
                    r.status,
                    int(r.amount_fen),
                    r.source,
                    utc(r.opened_at),
                    utc(r.closed_at) if r.closed_at else None,
                    r.stan,
                    r.batch_no,
                    r.note,
                    r.payment_check,
                    tuple(lines_of.get(r.return_id, [])),
                )
                for r in returns
            ),
        )

    # --- returns --------------------------------------------------------------------------------

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
        """Write a return pending (``_returns.plan_return`` decides what may come back)."""
        with self._write() as connection:
            detail = self._order_detail(connection, receipt_no)
            if detail is None or detail.terminal_id != terminal_id:
                raise CatalogError(f"no receipt {receipt_no} of terminal {terminal_id}")
            plan = plan_return(detail, requests, void_allowed=void_allowed)
            return_no = return_number(detail.receipt_no, len(detail.returns) + 1)
            return_id = self._insert_return(
                connection,
                detail,
                return_no=return_no,
                kind=plan.kind,
                amount_fen=plan.amount_fen,
                restock=restock,
                source="till",
                status="pending",
                opened_at=opened_at,
                takes=plan.takes,
            )
        return OpenReturn(return_id, return_no, plan.kind, plan.amount_fen, plan.takes)

    @staticmethod
    def _insert_return(
        connection: Connection,
        detail: OrderDetail,
        *,
        return_no: str,
        kind: str,
        amount_fen: int,
        restock: bool,
        source: str,
        status: str,
        opened_at: dt.datetime,
        takes: Sequence[tuple[int, int]],
        **values: Any,
    ) -> int:
        result = connection.execute(
            sa.insert(t.returns).values(
                order_id=detail.order_id,
                return_no=return_no,
                terminal_id=detail.terminal_id,
                kind=str(kind),
                status=status,
                amount_fen=amount_fen,
                restock=restock,
                source=source,
                opened_at=stored(opened_at),
                **values,
            )
        )
        assert result.inserted_primary_key is not None
        return_id = int(result.inserted_primary_key[0])
        if takes:
            connection.execute(
                sa.insert(t.return_lines),
                [
                    {"return_id": return_id, "order_line_id": row_id, "quantity": quantity}
                    for row_id, quantity in takes
                ],
            )
        return return_id

    def _return_row(self, return_id: int, terminal_id: str | None) -> Any:
        with self._begin() as connection:
            row = connection.execute(
                sa.select(t.returns).where(t.returns.c.return_id == return_id)
            ).first()
        if row is None or (terminal_id is not None and row.terminal_id != terminal_id):
            raise CatalogError(f"no return {return_id}" + (" of this till" if row else ""))
        return row

    def complete_return(
        self,
        return_id: int,
        payment: Payment,
        *,
        closed_at: dt.datetime,
        terminal_id: str | None = None,
    ) -> None:
        """Record the approved void/refund and put the goods back, atomically."""
        if not payment.approved:
            raise CatalogError(f"return {return_id}: payment {payment.response_code} not approved")
        pending = self._return_row(return_id, terminal_id)
        verdict, reason = self._verify(
            CardTransaction(
                pending.kind,
                pending.terminal_id,
                payment.batch_no or "",
                payment.stan or "",
                int(pending.amount_fen),
            )
        )
        with self._write() as connection:
            row = connection.execute(
                sa.select(t.returns).where(t.returns.c.return_id == return_id).with_for_update()
            ).one()
            status = next_return_status(row.status, "approved")
            if verdict == PaymentCheck.MISMATCH:
                raise PaymentMismatch(f"return {row.return_no} not completed: {reason}")
            self._use_payment(
                connection, row.terminal_id, payment, order_id=row.order_id, return_id=return_id
            )
            connection.execute(
                sa.update(t.returns)
                .where(t.returns.c.return_id == return_id)
                .values(
                    status=status,
                    closed_at=stored(closed_at),
                    payment_check=str(verdict),
                    **_payment_values(payment),
                )
            )
            self._goods_back(connection, row, closed_at=closed_at)

    def _goods_back(self, connection: Connection, row: Any, *, closed_at: dt.datetime) -> None:
        """Stock back (or to quarantine), units free, the order's status moved on."""
        takes = connection.execute(
            sa.select(
                t.return_lines.c.order_line_id,
                t.return_lines.c.quantity,
                t.order_lines.c.gtin,
                t.order_lines.c.lot_no,
            )
            .join(t.order_lines, t.order_lines.c.order_line_id == t.return_lines.c.order_line_id)
            .where(t.return_lines.c.return_id == row.return_id)
            .order_by(t.return_lines.c.return_line_id)
        ).all()
        version = self._new_version(connection, at=closed_at, reason=f"return {row.return_no}")
        movements = []
        for take in takes:
            recall_id = None
            expired = False
            if take.lot_no is not None:
                recall_id = self.active_recall(connection, take.gtin, take.lot_no)
                lot = connection.execute(
                    sa.select(t.lots.c.expiry).where(
                        t.lots.c.gtin == take.gtin, t.lots.c.lot_no == take.lot_no
                    )
                ).first()
                expired = (
                    lot is not None and lot.expiry is not None and lot.expiry < closed_at.date()
                )
            aside = recall_id is not None or expired or not row.restock
            why = (
                "recalled lot"
                if recall_id is not None
                else "expired lot"
                if expired
                else "put aside by the cashier"
                if not row.restock
                else None
            )
            quantity = int(take.quantity)
            movements.append(
                Movement(
                    take.gtin,
                    take.lot_no or t.NO_LOT,
                    MovementKind.RETURN,
                    0 if aside else quantity,
                    quantity if aside else 0,
                    f"{row.kind} {row.return_no}" + (f": {why}, quarantined" if why else ""),
                    order_id=row.order_id,
                    return_id=row.return_id,
                    recall_id=recall_id,
                )
            )
        record_movements(connection, movements, at=closed_at, version=version)
        if takes:
            self._free_units(connection, [take.order_line_id for take in takes])
        if row.kind == ReturnKind.VOID:
            event = "voided"
        else:
            detail = self._order_detail(
                connection,
                connection.execute(
                    sa.select(t.orders.c.receipt_no).where(t.orders.c.order_id == row.order_id)
                ).scalar_one(),
            )
            assert detail is not None
            everything = all(line.remaining == 0 for line in detail.lines)
            money_back = detail.refunded_fen >= detail.total_fen
            event = "refunded_all" if everything or money_back else "refunded_part"
        _, status = self._transition(connection, row.order_id, event)
        connection.execute(
            sa.update(t.orders).where(t.orders.c.order_id == row.order_id).values(status=status)
        )

    def fail_return(
        self,
        return_id: int,
        *,
        payment: Payment | None,
        note: str,
        closed_at: dt.datetime,
        terminal_id: str | None = None,
    ) -> None:
        """Close a return whose void/refund was declined, reversed or never sent."""
        self._return_row(return_id, terminal_id)
        with self._write() as connection:
            row = connection.execute(
                sa.select(t.returns).where(t.returns.c.return_id == return_id).with_for_update()
            ).one()
            values: dict[str, Any] = {
                "status": next_return_status(row.status, "failed"),
                "closed_at": stored(closed_at),
                "note": note[:200],
            }
            if payment is not None:
                values |= _payment_values(payment)
            connection.execute(
                sa.update(t.returns).where(t.returns.c.return_id == return_id).values(**values)
            )

    def pending_returns(self, terminal_id: str | None = None) -> list[ReturnSummary]:
        """Returns written before their void/refund's outcome was recorded."""
        statement = (
            sa.select(t.returns, t.orders.c.receipt_no)
            .join(t.orders, t.orders.c.order_id == t.returns.c.order_id)
            .where(t.returns.c.status == "pending")
            .order_by(t.returns.c.return_id)
            .limit(PENDING_ROWS_MAX)
        )
        if terminal_id is not None:
            statement = statement.where(t.returns.c.terminal_id == terminal_id)
        with self._begin() as connection:
            rows = connection.execute(statement).all()
        return [
            ReturnSummary(
                row.return_id,
                row.return_no,
                row.receipt_no,
                row.terminal_id,
                row.kind,
                int(row.amount_fen),
                utc(row.opened_at),
            )
            for row in rows
        ]

    def record_outside_returns(
        self, terminal_id: str, found: Sequence[OutsideReturn], *, closed_at: dt.datetime
    ) -> list[tuple[str, str]]:
        """Record voids/refunds made outside checkout (found in ``terminal_id``'s journal).

        Idempotent: a card transaction recorded already is skipped. A void,
        or a refund of all that is left, brings every remaining line back; a
        partial refund is recorded as money only (its lines are unknown) and
        said so. Returns (receipt_no, what was done) for each one recorded.
        """
        if len(found) > OUTSIDE_RETURNS_MAX:
            raise CatalogError(f"at most {OUTSIDE_RETURNS_MAX} journal returns per call")
        done: list[tuple[str, str]] = []
        for item in found:
            if item.kind not in (ReturnKind.VOID, ReturnKind.REFUND):
                raise CatalogError(f"{item.kind!r} is not a void or refund")
            with self._begin() as connection:
                used = connection.execute(
                    sa.select(t.payments_used.c.order_id).where(
                        t.payments_used.c.terminal_id == terminal_id,
                        t.payments_used.c.batch_no == item.batch_no,
                        t.payments_used.c.stan == item.stan,
                    )
                ).first()
                detail = self._order_detail(connection, item.receipt_no)
            if used is not None or detail is None or detail.terminal_id != terminal_id:
                continue
            if detail.status not in ("paid", "part_refunded"):
                continue  # pending: recovered first; unpaid: the sale never counted
            payment = Payment(True, "00", item.stan, item.batch_no, item.rrn, item.auth_code)
            verdict, reason = self._verify(
                CardTransaction(item.kind, terminal_id, item.batch_no, item.stan, item.amount_fen)
            )
            if verdict == PaymentCheck.MISMATCH:
                done.append((item.receipt_no, f"not recorded: {reason}"))
                continue
            left_fen = detail.total_fen - detail.refunded_fen
            everything = item.kind == ReturnKind.VOID or item.amount_fen == left_fen
            takes = (
                tuple((row.order_line_id, row.remaining) for row in detail.lines if row.remaining)
                if everything
                else ()
            )
            note = f"{item.kind} made outside checkout, found in the terminal journal" + (
                ""
                if everything
                else ": lines not stated, goods not booked back — count them with "
                "`posbatch catalog adjust`"
            )
            with self._write() as connection:
                fresh = self._order_detail(connection, item.receipt_no)
                assert fresh is not None
                return_id = self._insert_return(
                    connection,
                    fresh,
                    return_no=return_number(fresh.receipt_no, len(fresh.returns) + 1),
                    kind=item.kind,
                    amount_fen=item.amount_fen,
                    restock=True,
                    source="journal",
                    status="done",
                    opened_at=closed_at,
                    takes=takes,
                    closed_at=stored(closed_at),
                    note=note[:200],
                    payment_check=str(verdict),
                    **_payment_values(payment),
                )
                self._use_payment(
                    connection, terminal_id, payment, order_id=fresh.order_id, return_id=return_id
                )
                row = connection.execute(
                    sa.select(t.returns).where(t.returns.c.return_id == return_id)
                ).one()
                self._goods_back(connection, row, closed_at=closed_at)
            what = "all lines back" if everything else "money only, lines not stated"
            done.append((item.receipt_no, f"{item.kind} STAN {item.stan}: {what}"))
        return done

    # --- payments checked again ------------------------------------------------------------------

    def verify_payments(self) -> list[tuple[str, str, str]]:
        """Ask the host again about every unverified order and return: (number, verdict, why).

        Verified or mismatched ones are marked so; unreachable stays unverified.
        """
        with self._begin() as connection:
            orders = connection.execute(
                sa.select(t.orders).where(t.orders.c.payment_check == PaymentCheck.UNVERIFIED)
            ).all()
            returns = connection.execute(
                sa.select(t.returns).where(t.returns.c.payment_check == PaymentCheck.UNVERIFIED)
            ).all()
        checks: list[tuple[str, sa.Table, Any, CardTransaction]] = [
            (
                row.receipt_no,
                t.orders,
                t.orders.c.order_id == row.order_id,
                CardTransaction(
                    "sale", row.terminal_id, row.batch_no or "", row.stan or "", int(row.total_fen)
                ),
            )
            for row in orders
        ] + [
            (
                row.return_no,
                t.returns,
                t.returns.c.return_id == row.return_id,
                CardTransaction(
                    row.kind,
                    row.terminal_id,
                    row.batch_no or "",
                    row.stan or "",
                    int(row.amount_fen),
                ),
            )
            for row in returns
        ]
        results: list[tuple[str, str, str]] = []
        for number, table, where, transaction in checks:
            verdict, reason = self._verify(transaction)
            results.append((number, str(verdict), reason))
            if verdict != PaymentCheck.UNVERIFIED:
                with self._begin() as connection:
                    connection.execute(
                        sa.update(table).where(where).values(payment_check=str(verdict))
                    )
        return results

    # --- traces -------------------------------------------------------------------------------

    def _trace(self, connection: Connection, where: Any, include_unpaid: bool) -> list[TraceRow]:
        returned = (
            sa.select(
                t.return_lines.c.order_line_id,
                sa.func.sum(t.return_lines.c.quantity).label("returned"),
            )
            .join(t.returns, t.returns.c.return_id == t.return_lines.c.return_id)
            .where(t.returns.c.status == "done")
            .group_by(t.return_lines.c.order_line_id)
            .subquery()
        )
        statement = (
            sa.select(
                t.orders.c.order_id,
                t.orders.c.receipt_no,
                t.orders.c.terminal_id,
                t.orders.c.status,
                t.orders.c.opened_at,
                t.orders.c.closed_at,
                t.orders.c.batch_no,
                t.orders.c.stan,
                t.orders.c.rrn,
                t.orders.c.payment_check,
                t.order_lines.c.gtin,
                t.order_lines.c.product_name,
                t.order_lines.c.lot_no,
                t.order_lines.c.quantity,
                t.order_lines.c.serial,
                t.order_lines.c.trace_code,
                t.order_lines.c.expiry_scanned,
                sa.func.coalesce(returned.c.returned, 0).label("returned"),
            )
            .join(t.orders, t.orders.c.order_id == t.order_lines.c.order_id)
            .outerjoin(returned, returned.c.order_line_id == t.order_lines.c.order_line_id)
            .where(where)
            .order_by(t.orders.c.opened_at, t.orders.c.order_id, t.order_lines.c.order_line_id)
            .limit(TRACE_ROWS_MAX)
        )
        if not include_unpaid:
            statement = statement.where(t.orders.c.status != "unpaid")
        return [
            TraceRow(
                order_id=row.order_id,
                receipt_no=row.receipt_no,
                terminal_id=row.terminal_id,
                status=row.status,
                opened_at=utc(row.opened_at),
                closed_at=utc(row.closed_at) if row.closed_at else None,
                batch_no=row.batch_no,
                stan=row.stan,
                rrn=row.rrn,
                gtin=row.gtin,
                product_name=row.product_name,
                lot_no=row.lot_no,
                quantity=int(row.quantity),
                returned=int(row.returned),
                payment_check=row.payment_check,
                serial=row.serial,
                trace_code=row.trace_code,
                expiry_scanned=row.expiry_scanned,
            )
            for row in connection.execute(statement)
        ]

    def trace_lot(
        self, lot_no: str, *, gtin: str | None = None, include_unpaid: bool = False
    ) -> list[TraceRow]:
        """Every order line that sold ``lot_no`` (of ``gtin`` if given), oldest first.

        Paid, voided, refunded and pending orders (a pending one may have been
        charged); unpaid ones (declined, not answered) only with ``include_unpaid``.
        """
        where = t.order_lines.c.lot_no == lot_no
        if gtin is not None:
            where = sa.and_(where, t.order_lines.c.gtin == gtin)
        with self._begin() as connection:
            return self._trace(connection, where, include_unpaid)

    def trace_unit(self, code: str, *, include_unpaid: bool = False) -> list[TraceRow]:
        """Every order line that sold the unit with this serial or drug traceability code."""
        where = sa.or_(t.order_lines.c.serial == code, t.order_lines.c.trace_code == code)
        with self._begin() as connection:
            return self._trace(connection, where, include_unpaid)

    def recall_report(self, lot_no: str, *, gtin: str | None = None) -> RecallReport:
        """Every sale of the lot, what is on hand and quarantined, what came back, the recalls."""
        with self._begin() as connection:
            lot_row = self._lot_for_update(connection, lot_no, gtin)
            lot = lot_of(lot_row)
            product = connection.execute(
                sa.select(t.products.c.name).where(t.products.c.gtin == lot.gtin)
            ).scalar_one()
            sales = self._trace(
                connection,
                sa.and_(t.order_lines.c.lot_no == lot.lot_no, t.order_lines.c.gtin == lot.gtin),
                include_unpaid=False,
            )
            stock = self._stock_rows(connection, at=None, gtin=lot.gtin, lot_no=lot.lot_no)[0]
            returned_rows = connection.execute(
                sa.select(
                    t.returns.c.return_no,
                    t.orders.c.receipt_no,
                    t.returns.c.terminal_id,
                    t.returns.c.kind,
                    t.returns.c.closed_at,
                    t.returns.c.return_id,
                    t.return_lines.c.quantity,
                )
                .join(t.return_lines, t.return_lines.c.return_id == t.returns.c.return_id)
                .join(
                    t.order_lines, t.order_lines.c.order_line_id == t.return_lines.c.order_line_id
                )
                .join(t.orders, t.orders.c.order_id == t.returns.c.order_id)
                .where(
                    t.returns.c.status == "done",
                    t.order_lines.c.lot_no == lot.lot_no,
                    t.order_lines.c.gtin == lot.gtin,
                )
                .order_by(t.returns.c.return_id)
            ).all()
            aside = {
                row.return_id
                for row in connection.execute(
                    sa.select(t.movements.c.return_id).where(
                        t.movements.c.gtin == lot.gtin,
                        t.movements.c.lot_no == lot.lot_no,
                        t.movements.c.kind == MovementKind.RETURN,
                        t.movements.c.quarantined_delta > 0,
                    )
                )
            }
        return RecallReport(
            lot,
            product,
            self.recall_history(lot.gtin, lot.lot_no),
            stock,
            sales,
            [
                ReturnedRow(
                    row.return_no,
                    row.receipt_no,
                    row.terminal_id,
                    row.kind,
                    int(row.quantity),
                    utc(row.closed_at) if row.closed_at else None,
                    row.return_id in aside,
                )
                for row in returned_rows
            ],
        )
