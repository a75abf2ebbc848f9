"""What the back office reads: the overview of a trading day, terminals, batches,
transactions (keyset search and streamed export), batch-number errors by cause.

Every read takes a :class:`Scope`: a merchant user's scope names their merchant and
every query is limited to that merchant's terminals — a record of another merchant is
"not found", whatever id is asked for. Times are UTC in and out; pages and exports show
them in Beijing time (:mod:`posbatch.backoffice._time`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final, NamedTuple

import sqlalchemy as sa

from posbatch.backoffice._db import aware, naive, read
from posbatch.backoffice._filters import Cursor, Scope, TransactionFilter
from posbatch.backoffice._time import CUTOFF_DEFAULT, Cutoff, trading_day_bounds
from posbatch.batch.codes import lookup
from posbatch.batch.model import BatchState, CardTotals, CardType, Kind, SettlementTotals
from posbatch.batch.totals import CREDIT_KINDS, DEBIT_KINDS, net_fen
from posbatch.errors import DecodeError, NotFound
from posbatch.host import _schema as t
from posbatch.host.store import HostStore, TransactionStatus
from posbatch.wire import decode_totals

__all__ = [
    "BATCH_ERROR_DAYS",
    "EXPORT_ROWS_MAX",
    "SEARCH_PAGE_ROWS",
    "UNSETTLED_HOURS",
    "BatchDetail",
    "BatchRow",
    "Overview",
    "Queries",
    "TerminalRow",
    "TransactionRow",
]

SEARCH_PAGE_ROWS: Final = 50
BATCH_PAGE_ROWS: Final = 100
TERMINAL_PAGE_ROWS: Final = 100
EXPORT_ROWS_MAX: Final = 200_000
EXPORT_CHUNK_ROWS: Final = 1_000
# A terminal whose open batch holds approvals and was opened (= its last settlement) longer
# ago than this has not settled: the overview lists it.
UNSETTLED_HOURS: Final = 24
UNSETTLED_LIST_MAX: Final = 50
# A batch settled unbalanced whose upload has not ended this long after: stuck.
STUCK_UPLOAD_MINUTES: Final = 30
BATCH_ERROR_DAYS: Final = 14
# A merchant with more terminals than this is searched with an IN (one plan for all).
MERCHANT_TERMINALS_UNION_MAX: Final = 64
_COUNTED: Final = tuple(sorted(TransactionStatus.COUNTED))  # one order, for IN (...)

tx = t.transactions.c
term = t.terminals.c
bt = t.batches.c


# --- read models -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionRow:
    transaction_id: int
    created_at: datetime
    terminal_id: str
    merchant_id: str
    batch_id: int
    batch_no: int
    stan: int
    kind: str
    amount_fen: int
    card_type: str
    pan_masked: str
    status: str
    response_code: str
    rrn: str | None
    auth_code: str | None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.created_at, self.transaction_id)


@dataclass(frozen=True, slots=True)
class CodeCount:
    response_code: str
    meaning_en: str
    meaning_zh: str
    count: int


@dataclass(frozen=True, slots=True)
class UnsettledTerminal:
    terminal_id: str
    merchant_id: str
    batch_id: int
    batch_no: int
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class Overview:
    day: date
    start: datetime
    end: datetime
    debit_count: int
    debit_fen: int
    credit_count: int
    credit_fen: int
    codes: list[CodeCount]
    approved_count: int
    declined_count: int
    batches_open: int
    batches_uploading: int
    batches_stuck: int
    closed_by_reason: dict[str, int]
    open_exceptions: int
    open_exception_fen: int
    open_exceptions_by_kind: dict[str, int]
    unsettled: list[UnsettledTerminal]
    batch_errors: list[tuple[date, dict[str, int]]]  # oldest day first

    @property
    def net_fen(self) -> int:
        return self.debit_fen - self.credit_fen


@dataclass(frozen=True, slots=True)
class TerminalRow:
    terminal_id: str
    merchant_id: str
    status: str
    signed_on: bool
    signed_on_at: datetime | None
    batch_id: int | None
    batch_no: int | None
    batch_state: str | None
    last_seen_at: datetime | None
    last_settlement_at: datetime | None
    last_settlement_outcome: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BatchRow:
    batch_id: int
    terminal_id: str
    merchant_id: str
    batch_no: int
    state: str
    opened_at: datetime
    closed_at: datetime | None
    close_reason: str | None
    settle_response_code: str | None
    terminal_totals: SettlementTotals | None
    host_totals: SettlementTotals | None


@dataclass(frozen=True, slots=True)
class TotalsDifference:
    """terminal − host, per card class: debit and credit amounts and counts."""

    domestic: CardTotals
    foreign: CardTotals
    debit_fen: int
    credit_fen: int
    net_fen: int

    @property
    def none(self) -> bool:
        return (
            self.debit_fen == 0
            and self.credit_fen == 0
            and self.net_fen == 0
            and (
                self.domestic.debit_count == self.domestic.credit_count == 0
                and self.foreign.debit_count == self.foreign.credit_count == 0
            )
        )


@dataclass(frozen=True, slots=True)
class UploadRow:
    stan: int
    card_type: str
    pan_masked: str
    amount_fen: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SettlementRow:
    settlement_id: int
    stan: int
    terminal_totals: SettlementTotals | None
    host_totals: SettlementTotals | None
    response_code: str
    outcome: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BatchDetail:
    batch: BatchRow
    counted: SettlementTotals  # what the host counts now from its transactions
    difference: TotalsDifference | None  # terminal − host, once the terminal reported
    uploads: list[UploadRow]
    uploads_more: bool
    upload_end_records: int | None
    settlements: list[SettlementRow]
    transactions: list[TransactionRow]
    next_stan: int | None  # the next page of the batch's transactions starts after it


def _totals(text: str | None) -> SettlementTotals | None:
    if text is None:
        return None
    try:
        return decode_totals(text)
    except DecodeError:
        return None


def _scoped_terminals(scope: Scope) -> Any:
    return sa.select(term.terminal_id).where(term.merchant_id == scope.merchant_id)


_TRANSACTION_COLUMNS: Final = (
    tx.transaction_id, tx.created_at, tx.terminal_id, term.merchant_id, tx.batch_id,
    bt.batch_no, tx.stan, tx.kind, tx.amount_fen, tx.card_type, tx.pan_masked, tx.status,
    tx.response_code, tx.rrn, tx.auth_code,
)  # fmt: skip


def _transactions_shown() -> sa.Select[Any]:
    """Transactions as a page shows them: with their merchant id and batch number."""
    return (
        sa.select(*_TRANSACTION_COLUMNS)
        .select_from(t.transactions)
        .join(t.terminals, term.terminal_id == tx.terminal_id)
        .join(t.batches, bt.batch_id == tx.batch_id)
    )


def _transaction(row: Any) -> TransactionRow:
    return TransactionRow(
        row[0], aware(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        row[10], row[11], row[12], row[13], row[14],
    )  # fmt: skip


# The filters a search may set (TransactionFilter's fields but the merchant), in one order:
# each a bound parameter of the same name.
_FILTER_CLAUSES: Final[dict[str, Callable[[], Any]]] = {
    "terminal_id": lambda: tx.terminal_id == sa.bindparam("terminal_id"),
    "since": lambda: tx.created_at >= sa.bindparam("since", type_=tx.created_at.type),
    "until": lambda: tx.created_at < sa.bindparam("until", type_=tx.created_at.type),
    "stan": lambda: tx.stan == sa.bindparam("stan"),
    "rrn": lambda: tx.rrn == sa.bindparam("rrn"),
    "last4": lambda: t.LAST4_EXPRESSION == sa.bindparam("last4", type_=sa.String),
    "amount_fen": lambda: tx.amount_fen == sa.bindparam("amount_fen"),
    "response_code": lambda: tx.response_code == sa.bindparam("response_code"),
    "status": lambda: tx.status == sa.bindparam("status"),
    "kind": lambda: tx.kind == sa.bindparam("kind"),
}


def _filtered(inner: sa.Select[Any], filters: tuple[str, ...], after: bool) -> sa.Select[Any]:
    """``inner`` (over host_transactions) with the named filters (all but the merchant's)."""
    for name in filters:
        inner = inner.where(_FILTER_CLAUSES[name]())
    if after:
        inner = inner.where(
            sa.tuple_(tx.created_at, tx.transaction_id)
            < sa.tuple_(
                sa.bindparam("after_at", type_=tx.created_at.type),
                sa.bindparam("after_id", type_=tx.transaction_id.type),
            )
        )
    return inner.order_by(tx.created_at.desc(), tx.transaction_id.desc())


@functools.lru_cache(maxsize=256)
def _search_shape(
    filters: tuple[str, ...], merchants: int, branches: int | None, after: bool, limit: int
) -> sa.Select[Any]:
    """The statement of every search of one shape — which filters are set, how many
    merchants, how many terminals unioned — its values left to bound parameters. Built
    once per shape (building the union of a merchant's terminals costs milliseconds of
    Python; a page should not pay it on every request), then shared: statements are
    immutable."""
    columns = (
        tx.transaction_id, tx.created_at, tx.terminal_id, tx.batch_id, tx.stan, tx.kind,
        tx.amount_fen, tx.card_type, tx.pan_masked, tx.status, tx.response_code, tx.rrn,
        tx.auth_code,
    )  # fmt: skip
    if branches is not None:
        parts = [
            _filtered(
                sa.select(*columns).where(tx.terminal_id == sa.bindparam(f"terminal_{index}")),
                filters,
                after,
            )
            .limit(limit)
            .subquery()
            for index in range(branches)
        ]
        if not parts:  # a merchant without terminals: nothing, by an always-false filter
            parts = [_filtered(sa.select(*columns).where(sa.false()), filters, after).subquery()]
        union = sa.union_all(*(sa.select(part) for part in parts)).subquery("each")
        u = union.c
        found = (
            sa.select(union)
            .order_by(u.created_at.desc(), u.transaction_id.desc())
            .limit(limit)
            .subquery("found")
        )
    else:
        inner = sa.select(*columns)
        for index in range(merchants):
            inner = inner.where(
                tx.terminal_id.in_(
                    sa.select(term.terminal_id).where(
                        term.merchant_id == sa.bindparam(f"merchant_{index}")
                    )
                )
            )
        found = _filtered(inner, filters, after).limit(limit).subquery("found")
    f = found.c
    return (
        sa.select(
            f.transaction_id, f.created_at, f.terminal_id, term.merchant_id, f.batch_id,
            bt.batch_no, f.stan, f.kind, f.amount_fen, f.card_type, f.pan_masked, f.status,
            f.response_code, f.rrn, f.auth_code,
        )
        .select_from(found)
        .join(t.terminals, term.terminal_id == f.terminal_id)
        .join(t.batches, bt.batch_id == f.batch_id)
        .order_by(f.created_at.desc(), f.transaction_id.desc())
    )  # fmt: skip


def search_query(
    scope: Scope,
    search: TransactionFilter,
    *,
    after: Cursor | None,
    limit: int,
    merchant_terminals: Sequence[str] | None = None,
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The one statement of a transaction search page and the values of its parameters.

    The filters, the order and the limit apply to ``host_transactions`` alone; the page's
    merchant id and batch number are joined to the rows found only. A search within one
    merchant whose terminals are given (``merchant_terminals``, at most
    MERCHANT_TERMINALS_UNION_MAX) is a UNION ALL of one limited branch per terminal, each
    read from that terminal's (terminal_id, created_at) index — both databases otherwise
    either walk every transaction by time to find the merchant's (PostgreSQL: 19,000 rows
    for 51) or look up all of the merchant's rows before the limit.
    """
    merchants = sorted({m for m in (scope.merchant_id, search.merchant_id) if m is not None})
    values: dict[str, Any] = {}
    filters = tuple(name for name in _FILTER_CLAUSES if getattr(search, name) is not None)
    for name in filters:
        value = getattr(search, name)
        values[name] = naive(value) if isinstance(value, datetime) else value
    if after is not None:
        values["after_at"], values["after_id"] = naive(after.created_at), after.row_id
    branches: int | None = None
    if merchant_terminals is not None and len(merchants) == 1 and not search.terminal_id:
        unioned = merchant_terminals[:MERCHANT_TERMINALS_UNION_MAX]
        branches = len(unioned)
        values.update({f"terminal_{i}": terminal_id for i, terminal_id in enumerate(unioned)})
    else:
        values.update({f"merchant_{i}": merchant_id for i, merchant_id in enumerate(merchants)})
    statement = _search_shape(filters, len(merchants), branches, after is not None, limit)
    return statement, values


def search_statement(
    scope: Scope,
    search: TransactionFilter,
    *,
    after: Cursor | None,
    limit: int,
    merchant_terminals: Sequence[str] | None = None,
) -> sa.Select[Any]:
    """:func:`search_query`'s statement with its values bound (the bench runs it bare)."""
    statement, values = search_query(
        scope, search, after=after, limit=limit, merchant_terminals=merchant_terminals
    )
    return statement.params(values)


class _BatchStatements(NamedTuple):
    header: sa.Select[Any]
    scoped_header: sa.Select[Any]
    groups: sa.Select[Any]
    uploads: sa.Select[Any]
    settlements: sa.Select[Any]
    page: sa.Select[Any]
    page_after: sa.Select[Any]


@functools.cache
def _batch_statements() -> _BatchStatements:
    """The batch page's statements, built once, the batch (and the rest) bound at execution."""
    u = t.upload_records.c
    s = t.settlements.c
    batch_id = sa.bindparam("batch_id", type_=bt.batch_id.type)
    header = (
        sa.select(t.batches, term.merchant_id)
        .join(t.terminals, term.terminal_id == bt.terminal_id)
        .where(bt.batch_id == batch_id)
    )
    page = (
        _transactions_shown()
        .where(tx.batch_id == batch_id)
        .order_by(tx.stan)
        .limit(BATCH_PAGE_ROWS + 1)
    )
    return _BatchStatements(
        header=header,
        scoped_header=header.where(term.merchant_id == sa.bindparam("merchant_id")),
        groups=sa.select(tx.kind, tx.card_type, sa.func.count(), sa.func.sum(tx.amount_fen))
        .where(tx.batch_id == batch_id, tx.status.in_(_COUNTED))
        .group_by(tx.kind, tx.card_type),
        uploads=sa.select(u.stan, u.card_type, u.pan_masked, u.amount_fen, u.created_at)
        .where(u.batch_id == batch_id)
        .order_by(u.stan)
        .limit(BATCH_PAGE_ROWS + 1),
        settlements=sa.select(
            s.settlement_id,
            s.stan,
            s.terminal_totals,
            s.host_totals,
            s.response_code,
            s.outcome,
            s.created_at,
        )
        .where(s.batch_id == batch_id)
        .order_by(s.settlement_id)
        .limit(BATCH_PAGE_ROWS),
        page=page,
        page_after=page.where(tx.stan > sa.bindparam("after_stan", type_=tx.stan.type)),
    )


def _empty_totals() -> list[int]:
    return [0, 0, 0, 0]


def _counted_totals(rows: Sequence[Any]) -> SettlementTotals:
    """Totals from (kind, card_type, count, amount) groups of counted transactions."""
    sums = {CardType.DOMESTIC.value: _empty_totals(), CardType.FOREIGN.value: _empty_totals()}
    for kind, card_type, count, amount_fen in rows:
        half = sums.setdefault(card_type, _empty_totals())
        if Kind(kind) in DEBIT_KINDS:
            half[0] += int(amount_fen or 0)
            half[1] += int(count)
        elif Kind(kind) in CREDIT_KINDS:
            half[2] += int(amount_fen or 0)
            half[3] += int(count)
    domestic, foreign = sums[CardType.DOMESTIC.value], sums[CardType.FOREIGN.value]
    return SettlementTotals(
        CardTotals(domestic[0], domestic[1], domestic[2], domestic[3]),
        CardTotals(foreign[0], foreign[1], foreign[2], foreign[3]),
    )


def _difference(terminal: SettlementTotals, host: SettlementTotals) -> TotalsDifference:
    def half(a: CardTotals, b: CardTotals) -> CardTotals:
        return CardTotals(
            a.debit_amount_fen - b.debit_amount_fen,
            a.debit_count - b.debit_count,
            a.credit_amount_fen - b.credit_amount_fen,
            a.credit_count - b.credit_count,
        )

    domestic = half(terminal.domestic, host.domestic)
    foreign = half(terminal.foreign, host.foreign)
    return TotalsDifference(
        domestic,
        foreign,
        domestic.debit_amount_fen + foreign.debit_amount_fen,
        domestic.credit_amount_fen + foreign.credit_amount_fen,
        net_fen(terminal) - net_fen(host),
    )


def _terminal_rows() -> sa.Select[Any]:
    """Terminals with their current batch and, from indexed subqueries, when the host last
    recorded a request of theirs and their last settlement (one statement per page)."""
    s = t.settlements.c
    last_tx = (
        sa.select(sa.func.max(tx.created_at))
        .where(tx.terminal_id == term.terminal_id)
        .scalar_subquery()
    )
    last_error = (
        sa.select(sa.func.max(t.batch_errors.c.created_at))
        .where(t.batch_errors.c.terminal_id == term.terminal_id)
        .scalar_subquery()
    )
    last_settlement = (
        sa.select(sa.func.max(s.settlement_id))
        .where(s.terminal_id == term.terminal_id)
        .scalar_subquery()
    )
    return (
        sa.select(
            term.terminal_id, term.merchant_id, term.status, term.signed_on, term.signed_on_at,
            term.current_batch_id, bt.batch_no, bt.state, term.created_at,
            last_tx.label("last_tx"), last_error.label("last_error"),
            last_settlement.label("last_settlement"),
        )
        .select_from(t.terminals)
        .outerjoin(t.batches, bt.batch_id == term.current_batch_id)
    )  # fmt: skip


def _with_settlements(connection: sa.Connection, found: Sequence[Any]) -> list[TerminalRow]:
    s = t.settlements.c
    ids = [row.last_settlement for row in found if row.last_settlement is not None]
    settled = {
        r[0]: (aware(r[1]), r[2])
        for r in connection.execute(
            sa.select(s.settlement_id, s.created_at, s.outcome).where(s.settlement_id.in_(ids))
        ).all()
    } if ids else {}  # fmt: skip
    rows = []
    for row in found:
        settlement = settled.get(row.last_settlement)
        seen = [m for m in (row.signed_on_at, row.last_tx, row.last_error) if m is not None]
        if settlement is not None:
            seen.append(settlement[0].replace(tzinfo=None))
        rows.append(
            TerminalRow(
                terminal_id=row.terminal_id,
                merchant_id=row.merchant_id,
                status=row.status,
                signed_on=bool(row.signed_on),
                signed_on_at=None if row.signed_on_at is None else aware(row.signed_on_at),
                batch_id=row.current_batch_id,
                batch_no=row.batch_no,
                batch_state=row.state,
                last_seen_at=aware(max(m.replace(tzinfo=None) for m in seen)) if seen else None,
                last_settlement_at=None if settlement is None else settlement[0],
                last_settlement_outcome=None if settlement is None else settlement[1],
                created_at=aware(row.created_at),
            )
        )
    return rows


class Queries:
    """The back office's reads over one host store."""

    def __init__(
        self, store: HostStore, *, cutoff: Callable[[], Cutoff] = lambda: CUTOFF_DEFAULT
    ) -> None:
        self.store = store
        self._cutoff = cutoff

    @property
    def cutoff(self) -> Cutoff:
        """What ends the trading days (the office's: fixed, or the acquirer's schedule)."""
        return self._cutoff()

    # --- overview ------------------------------------------------------------------------

    def overview(self, scope: Scope, day: date, *, now: datetime) -> Overview:
        start, end = trading_day_bounds(day, cutoff=self.cutoff)
        in_day = sa.and_(tx.created_at >= naive(start), tx.created_at < naive(end))
        scoped = tx.terminal_id.in_(_scoped_terminals(scope)) if scope.merchant_id else sa.true()
        with read(self.store) as connection:
            groups = connection.execute(
                sa.select(tx.kind, tx.card_type, sa.func.count(), sa.func.sum(tx.amount_fen))
                .where(in_day, scoped, tx.status.in_(_COUNTED))
                .group_by(tx.kind, tx.card_type)
            ).all()
            code_rows = connection.execute(
                sa.select(tx.response_code, sa.func.count())
                .where(in_day, scoped)
                .group_by(tx.response_code)
                .order_by(tx.response_code)
            ).all()
            batch_scope = (
                bt.terminal_id.in_(_scoped_terminals(scope)) if scope.merchant_id else sa.true()
            )
            states: dict[str, int] = dict(
                connection.execute(
                    sa.select(bt.state, sa.func.count())
                    .where(bt.state.in_((BatchState.OPEN.value, BatchState.UPLOADING.value)))
                    .where(batch_scope)
                    .group_by(bt.state)
                ).all()
            )
            stuck_before = naive(now - timedelta(minutes=STUCK_UPLOAD_MINUTES))
            last_settle = (
                sa.select(sa.func.max(t.settlements.c.created_at))
                .where(t.settlements.c.batch_id == bt.batch_id)
                .scalar_subquery()
            )
            stuck = connection.execute(
                sa.select(sa.func.count())
                .select_from(t.batches)
                .where(bt.state == BatchState.UPLOADING.value, batch_scope)
                .where(sa.func.coalesce(last_settle, bt.opened_at) < stuck_before)
            ).scalar_one()
            closed: dict[str | None, int] = dict(
                connection.execute(
                    sa.select(bt.close_reason, sa.func.count())
                    .where(bt.closed_at >= naive(start), bt.closed_at < naive(end), batch_scope)
                    .group_by(bt.close_reason)
                ).all()
            )
            exceptions = self._open_exceptions(connection, scope)
            unsettled = self._unsettled(connection, scope, now)
            errors = self._batch_errors(connection, scope, day)
        debit = credit = (0, 0)
        totals = _counted_totals(groups)
        debit = (
            totals.domestic.debit_count + totals.foreign.debit_count,
            totals.domestic.debit_amount_fen + totals.foreign.debit_amount_fen,
        )
        credit = (
            totals.domestic.credit_count + totals.foreign.credit_count,
            totals.domestic.credit_amount_fen + totals.foreign.credit_amount_fen,
        )
        codes = []
        for code, count in code_rows:
            meaning = lookup(code)
            codes.append(CodeCount(code, meaning.meaning_en, meaning.meaning_zh, int(count)))
        approved = sum(c.count for c in codes if c.response_code == "00")
        return Overview(
            day=day,
            start=start,
            end=end,
            debit_count=debit[0],
            debit_fen=debit[1],
            credit_count=credit[0],
            credit_fen=credit[1],
            codes=codes,
            approved_count=approved,
            declined_count=sum(c.count for c in codes) - approved,
            batches_open=int(states.get(BatchState.OPEN.value, 0)),
            batches_uploading=int(states.get(BatchState.UPLOADING.value, 0)),
            batches_stuck=int(stuck),
            closed_by_reason={str(k): int(v) for k, v in closed.items()},
            open_exceptions=exceptions[0],
            open_exception_fen=exceptions[1],
            open_exceptions_by_kind=exceptions[2],
            unsettled=unsettled,
            batch_errors=errors,
        )

    def _open_exceptions(
        self, connection: sa.Connection, scope: Scope
    ) -> tuple[int, int, dict[str, int]]:
        e = t.exceptions.c
        w = t.exception_work.c
        query = (
            sa.select(
                e.kind,
                sa.func.count(),
                sa.func.sum(
                    sa.func.abs(sa.func.coalesce(e.host_amount_fen, e.terminal_amount_fen, 0))
                ),
            )
            .select_from(t.exceptions.outerjoin(t.exception_work, w.exception_id == e.exception_id))
            .where(sa.or_(w.status.is_(None), w.status == "open"))
            .group_by(e.kind)
        )
        if scope.merchant_id is not None:
            query = query.where(e.merchant_id == scope.merchant_id)
        rows = connection.execute(query).all()
        return (
            sum(int(r[1]) for r in rows),
            sum(int(r[2] or 0) for r in rows),
            {r[0]: int(r[1]) for r in rows},
        )

    def _unsettled(
        self, connection: sa.Connection, scope: Scope, now: datetime
    ) -> list[UnsettledTerminal]:
        before = naive(now - timedelta(hours=UNSETTLED_HOURS))
        holds = sa.exists().where(tx.batch_id == bt.batch_id, tx.status.in_(_COUNTED))
        query = (
            sa.select(term.terminal_id, term.merchant_id, bt.batch_id, bt.batch_no, bt.opened_at)
            .select_from(t.terminals)
            .join(t.batches, bt.batch_id == term.current_batch_id)
            .where(bt.state != BatchState.CLOSED.value, bt.opened_at < before, holds)
            .order_by(bt.opened_at)
            .limit(UNSETTLED_LIST_MAX)
        )
        if scope.merchant_id is not None:
            query = query.where(term.merchant_id == scope.merchant_id)
        return [
            UnsettledTerminal(r[0], r[1], r[2], r[3], aware(r[4]))
            for r in connection.execute(query).all()
        ]

    def _batch_errors(
        self, connection: sa.Connection, scope: Scope, day: date
    ) -> list[tuple[date, dict[str, int]]]:
        e = t.batch_errors.c
        out = []
        for back in range(BATCH_ERROR_DAYS - 1, -1, -1):
            each = day - timedelta(days=back)
            start, end = trading_day_bounds(each, cutoff=self.cutoff)
            query = (
                sa.select(e.reason, sa.func.count())
                .where(e.created_at >= naive(start), e.created_at < naive(end))
                .group_by(e.reason)
            )
            if scope.merchant_id is not None:
                query = query.where(e.merchant_id == scope.merchant_id)
            out.append((each, {str(r): int(c) for r, c in connection.execute(query).all()}))
        return out

    # --- transactions ----------------------------------------------------------------------

    def search(
        self,
        scope: Scope,
        search: TransactionFilter,
        *,
        after: Cursor | None = None,
        limit: int = SEARCH_PAGE_ROWS,
    ) -> tuple[list[TransactionRow], Cursor | None]:
        """One page, newest first, and the cursor of the next page (None: the last page)."""
        limit = max(1, min(limit, SEARCH_PAGE_ROWS))
        with read(self.store) as connection:
            statement, values = search_query(
                scope, search, after=after, limit=limit + 1,
                merchant_terminals=self._merchant_terminals(connection, scope, search),
            )  # fmt: skip
            rows = [_transaction(row) for row in connection.execute(statement, values)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].cursor if more and rows else None)

    def export(self, scope: Scope, search: TransactionFilter) -> Iterator[TransactionRow]:
        """Every matching row, newest first, read in keyset chunks (bounded memory), at most
        EXPORT_ROWS_MAX; whether more match past the last one sent: :meth:`more_after`."""
        after: Cursor | None = None
        sent = 0
        while sent < EXPORT_ROWS_MAX:
            chunk = min(EXPORT_CHUNK_ROWS, EXPORT_ROWS_MAX - sent)
            with read(self.store) as connection:
                statement, values = search_query(
                    scope, search, after=after, limit=chunk,
                    merchant_terminals=self._merchant_terminals(connection, scope, search),
                )  # fmt: skip
                rows = [_transaction(row) for row in connection.execute(statement, values)]
            yield from rows
            sent += len(rows)
            if len(rows) < chunk:
                return
            after = rows[-1].cursor

    def more_after(self, scope: Scope, search: TransactionFilter, row: TransactionRow) -> bool:
        """True if a row matching ``search`` comes after ``row`` (an export that stopped at
        EXPORT_ROWS_MAX says so rather than end as if it were whole)."""
        with read(self.store) as connection:
            statement, values = search_query(
                scope, search, after=row.cursor, limit=1,
                merchant_terminals=self._merchant_terminals(connection, scope, search),
            )  # fmt: skip
            return connection.execute(statement, values).first() is not None

    def _merchant_terminals(
        self, connection: sa.Connection, scope: Scope, search: TransactionFilter
    ) -> list[str] | None:
        """The terminals of the one merchant searched, when few enough for a UNION ALL."""
        merchants = {scope.merchant_id, search.merchant_id} - {None}
        if len(merchants) != 1 or search.terminal_id is not None:
            return None
        ids = list(
            connection.execute(
                sa.select(term.terminal_id)
                .where(term.merchant_id == merchants.pop())
                .order_by(term.terminal_id)
                .limit(MERCHANT_TERMINALS_UNION_MAX + 1)
            ).scalars()
        )
        return ids if len(ids) <= MERCHANT_TERMINALS_UNION_MAX else None

    def transaction(self, scope: Scope, transaction_id: int) -> TransactionRow:
        query = _transactions_shown().where(tx.transaction_id == transaction_id)
        if scope.merchant_id is not None:
            query = query.where(term.merchant_id == scope.merchant_id)
        with read(self.store) as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound(f"no transaction {transaction_id}")
        return _transaction(row)

    # --- terminals -------------------------------------------------------------------------

    def terminals(
        self,
        scope: Scope,
        *,
        merchant_id: str | None = None,
        status: str | None = None,
        after: str | None = None,
        limit: int = TERMINAL_PAGE_ROWS,
    ) -> tuple[list[TerminalRow], str | None]:
        """Terminals by id, one page, with their state and when the host last heard them."""
        limit = max(1, min(limit, TERMINAL_PAGE_ROWS))
        query = _terminal_rows().order_by(term.terminal_id).limit(limit + 1)
        if scope.merchant_id is not None:
            query = query.where(term.merchant_id == scope.merchant_id)
        if merchant_id is not None:
            query = query.where(term.merchant_id == merchant_id)
        if status is not None:
            query = query.where(term.status == status)
        if after is not None:
            query = query.where(term.terminal_id > after)
        with read(self.store) as connection:
            found = connection.execute(query).all()
            rows = _with_settlements(connection, found[:limit])
        more = len(found) > limit
        return rows, (rows[-1].terminal_id if more and rows else None)

    def terminal(self, scope: Scope, terminal_id: str) -> TerminalRow:
        query = _terminal_rows().where(term.terminal_id == terminal_id)
        if scope.merchant_id is not None:
            query = query.where(term.merchant_id == scope.merchant_id)
        with read(self.store) as connection:
            found = connection.execute(query).all()
            if not found:
                raise NotFound(f"no terminal {terminal_id}")
            return _with_settlements(connection, found)[0]

    # --- batches ---------------------------------------------------------------------------

    def batches(
        self,
        scope: Scope,
        *,
        terminal_id: str | None = None,
        merchant_id: str | None = None,
        state: str | None = None,
        before_id: int | None = None,
        limit: int = BATCH_PAGE_ROWS,
    ) -> tuple[list[BatchRow], int | None]:
        """Batches, newest first, one page, and where the next page starts."""
        limit = max(1, min(limit, BATCH_PAGE_ROWS))
        query = (
            sa.select(t.batches, term.merchant_id)
            .join(t.terminals, term.terminal_id == bt.terminal_id)
            .order_by(bt.batch_id.desc())
            .limit(limit + 1)
        )
        if scope.merchant_id is not None:
            query = query.where(term.merchant_id == scope.merchant_id)
        if merchant_id is not None:
            query = query.where(term.merchant_id == merchant_id)
        if terminal_id is not None:
            query = query.where(bt.terminal_id == terminal_id)
        if state is not None:
            query = query.where(bt.state == state)
        if before_id is not None:
            query = query.where(bt.batch_id < before_id)
        with read(self.store) as connection:
            rows = [self._batch_row(row) for row in connection.execute(query).all()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1].batch_id if more and rows else None)

    def _batch_row(self, row: Any) -> BatchRow:
        return BatchRow(
            batch_id=row.batch_id,
            terminal_id=row.terminal_id,
            merchant_id=row.merchant_id,
            batch_no=row.batch_no,
            state=row.state,
            opened_at=aware(row.opened_at),
            closed_at=None if row.closed_at is None else aware(row.closed_at),
            close_reason=row.close_reason,
            settle_response_code=row.settle_response_code,
            terminal_totals=_totals(row.terminal_totals),
            host_totals=_totals(row.host_totals),
        )

    def batch(self, scope: Scope, batch_id: int, *, after_stan: int | None = None) -> BatchDetail:
        """A batch: totals as reported and as counted, the difference, uploads, settlement
        answers and one page of its transactions (by STAN)."""
        statements = _batch_statements()
        by_batch = {"batch_id": batch_id}
        with read(self.store) as connection:
            if scope.merchant_id is None:
                header = connection.execute(statements.header, by_batch)
            else:
                header = connection.execute(
                    statements.scoped_header, {**by_batch, "merchant_id": scope.merchant_id}
                )
            found = header.first()
            if found is None:
                raise NotFound(f"no batch {batch_id}")
            batch = self._batch_row(found)
            groups = connection.execute(statements.groups, by_batch).all()
            uploads = connection.execute(statements.uploads, by_batch).all()
            settlements = connection.execute(statements.settlements, by_batch).all()
            page = (
                connection.execute(statements.page, by_batch)
                if after_stan is None
                else connection.execute(
                    statements.page_after, {**by_batch, "after_stan": after_stan}
                )
            )
            transactions = [_transaction(row) for row in page]
            end_records = found.upload_end_records
        counted = _counted_totals(groups)
        more = len(transactions) > BATCH_PAGE_ROWS
        transactions = transactions[:BATCH_PAGE_ROWS]
        return BatchDetail(
            batch=batch,
            counted=counted,
            difference=(
                None
                if batch.terminal_totals is None
                else _difference(batch.terminal_totals, batch.host_totals or counted)
            ),
            uploads=[
                UploadRow(r[0], r[1], r[2], r[3], aware(r[4])) for r in uploads[:BATCH_PAGE_ROWS]
            ],
            uploads_more=len(uploads) > BATCH_PAGE_ROWS,
            upload_end_records=end_records,
            settlements=[
                SettlementRow(r[0], r[1], _totals(r[2]), _totals(r[3]), r[4], r[5], aware(r[6]))
                for r in settlements
            ],
            transactions=transactions,
            next_stan=transactions[-1].stan if more and transactions else None,
        )
