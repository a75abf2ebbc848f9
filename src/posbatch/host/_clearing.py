"""The host's side of clearing: the rules it keeps and the records it reads for them.

:class:`ClearingStore` wraps a :class:`~posbatch.host.HostStore`: it writes
the effective-dated clearing rules (fee schedules, merchant terms, card BINs,
working-day overrides, published years, cut-offs) and reads, for a trading
day, every record :mod:`posbatch.clearing` needs — then calls its pure
functions. :meth:`ClearingStore.statement` and :meth:`ClearingStore.clearing_file`
are the one call a CLI command or a back-office page makes.

It also reads the back office's resolutions of exceptions (差错, ``host_exception_work``)
by the moment they were resolved: those that move the merchant's money are the day's
adjustments (差错调整), which a clearing run keeps beside the lines
(``host_clearing_adjustments``, keyed by exception: an exception is paid once).

Rules about *when* a change may take effect (the past is never rewritten):
fee schedules, merchant terms and card BINs from a coming trading day on — or from the
one under way only when they price (and pay) none of the transactions already made that
day otherwise: a transaction keeps the price it was made at, and the refusal says how
many it would re-price, for how much, and whose; working-day overrides for dates from the
current trading day on; a new cut-off only from the next trading day on (moving the
current day's end would move transactions already made between days). Nothing takes
effect on a day already cleared (even with a clock behind the runs).

A clearing run keeps, per (trading day, merchant), the arrival date it computed with its
cycle and whether it was provisional (``host_clearing_arrivals``): a cleared day's
arrival is read from there, never computed again from a calendar that may have changed
since (an override, a release of the holidays package). Running a cleared day again
changes nothing it kept — figures that would differ are refused, arrivals kept stay — and
only adds the arrivals of a day cleared before they were kept.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posbatch.batch.cards import bin8_text, mask_card_numbers
from posbatch.batch.money import format_fen
from posbatch.clearing import (
    AdjustmentLine,
    AdjustmentRecord,
    Arrival,
    BatchRecord,
    CardBin,
    CardClass,
    ClearingFile,
    ClearingRecord,
    ClearingRules,
    CreditFeeRule,
    CutoffChange,
    CutoffSchedule,
    ExceptionRecord,
    FeeSchedule,
    Funding,
    LineKind,
    MerchantTerms,
    OriginalRef,
    OriginalSale,
    Repricing,
    SettlementCycle,
    Statement,
    StatementLine,
    StatementSummary,
    SummaryPart,
    Totals,
    WorkingDayCalendar,
    adjustment_fen,
    adjustment_lines,
    arrival_date,
    assemble_statement,
    beijing,
    check_cutoff,
    check_merchant_id,
    clearing_file_of,
    credit_pieces,
    price_lines,
    repricing,
    summarize,
    summary_parts,
    trading_day,
    trading_day_bounds,
)
from posbatch.errors import ClearingError, StorageError
from posbatch.host import _schema as t
from posbatch.host.store import HostStore, TransactionStatus, naive_utc

__all__ = [
    "CLEARING_GRACE",
    "NOTE_CHARS_MAX",
    "ClearedDay",
    "ClearingStore",
    "merchant_has_terminal",
]

NOTE_CHARS_MAX: Final = 200
# A trading day is cleared this long after its cut-off at the earliest: a write that was
# in flight at the cut-off (another host process) is committed by then.
CLEARING_GRACE: Final = timedelta(minutes=5)
READ_DAYS_MAX: Final = 366
INSERT_ROWS_MAX: Final = 5_000
# Ids one IN (...) list carries at most (SQLite's parameter limit is 32,766).
IDS_PER_QUERY_MAX: Final = 5_000
# Entries one rules table may hold: a BIN file has thousands, a schedule table far fewer.
RULE_ROWS_MAX: Final = 200_000
# host_reversals.outcome of a reversal that took its original back (written in SQL below too)
APPLIED: Final = "applied"
_CREDIT_KINDS: Final = ("void", "refund")
# Enum(value) costs more than the rest of reading a kept row: look values up instead.
_CARD_CLASSES: Final = {card_class.value: card_class for card_class in CardClass}
_LINE_KINDS: Final = {kind.value: kind for kind in LineKind}
_CLASS_COLUMNS: Final = {
    CardClass.DOMESTIC_DEBIT: "domestic_debit",
    CardClass.DOMESTIC_CREDIT: "domestic_credit",
    CardClass.FOREIGN_DEBIT: "foreign_debit",
    CardClass.FOREIGN_CREDIT: "foreign_credit",
}


def merchant_has_terminal(connection: Connection, merchant_id: str) -> bool:
    """Whether a terminal of ``merchant_id`` is registered on this host (on ``connection``:
    a caller's unit of work may ask it beside its writes)."""
    found = connection.execute(
        sa.select(t.terminals.c.terminal_id)
        .where(t.terminals.c.merchant_id == merchant_id)
        .limit(1)
    ).first()
    return found is not None


class ClearedDay(NamedTuple):
    """A clearing run: the day, its lines' totals, when it ran, and its adjustments (差错调整:
    the merchants' net is ``totals.net_fen + adjustment_fen``)."""

    trading_day: date
    totals: Totals
    cleared_at: datetime
    adjustment_fen: int = 0


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _maybe_aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)


def _rate(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise StorageError(f"host store: rate {text!r} is not a decimal") from exc


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), IDS_PER_QUERY_MAX):
        yield ids[start : start + IDS_PER_QUERY_MAX]


_COLUMNS: Final = (
    "transaction_id, terminal_id, batch_id, stan, rrn, kind, amount_fen, card_type, "
    "pan_masked, created_at, status, original_transaction_id, bin8_hmac"
)
# The rows of a trading day that may count (host_transactions holds sales, voids, refunds).
_DAY_SQL: Final = (
    f"SELECT {_COLUMNS} FROM host_transactions "  # noqa: S608 - constants only
    "WHERE created_at >= ? AND created_at < ? "
    "AND status IN ('approved', 'voided', 'reversed') AND kind IN ('sale', 'void', 'refund')"
)
_LINE_COLUMNS: Final = (
    "trading_day, merchant_id, transaction_id, at, terminal_id, batch_id, batch_no, stan, rrn, "
    "kind, reverses, card_class, bin_known, pan_masked, amount_fen, fee_fen, net_fen, "
    "original_batch_no, original_stan, original_day"
)
_INSERT_LINE_SQL: Final = (
    f"INSERT INTO host_clearing_lines ({_LINE_COLUMNS}) "  # noqa: S608 - constants only
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COPY_LINES_SQL: Final = f"COPY host_clearing_lines ({_LINE_COLUMNS}) FROM STDIN"
# Approved before the day, taken back by a reversal applied within it.
_REVERSED_WITHIN_SQL: Final = (
    f"SELECT {_COLUMNS} FROM host_transactions "  # noqa: S608 - constants only
    "WHERE created_at < ? AND status = 'reversed' AND transaction_id IN ("
    "SELECT transaction_id FROM host_reversals WHERE outcome = ? "
    "AND created_at >= ? AND created_at < ? AND transaction_id IS NOT NULL)"
)


# A merchant's kept lines of a cleared day, in the statement's order.
_KEPT_LINES_SQL: Final = (
    "SELECT transaction_id, at, terminal_id, batch_id, batch_no, stan, rrn, kind, reverses, "
    "card_class, bin_known, pan_masked, amount_fen, fee_fen, net_fen, original_batch_no, "
    "original_stan, original_day FROM host_clearing_lines "
    "WHERE trading_day = ? AND merchant_id = ? ORDER BY at, transaction_id"
)


def _day_of(value: date | str) -> date:
    # SQLite keeps a Date as text "2026-09-30"; PostgreSQL's driver gives a date
    return value if isinstance(value, date) else date.fromisoformat(value)


def _from_text(value: str) -> datetime:
    # SQLite keeps a DateTime as text "2026-09-30 02:00:00.000000" (naive UTC)
    return datetime.fromisoformat(value + "+00:00")


def _time_reader(sample: object) -> Any:
    """How to turn what the driver returns for a time column into an aware UTC datetime."""
    return _from_text if isinstance(sample, str) else _aware


@contextmanager
def _bulk() -> Iterator[None]:
    """A statement run makes a few objects per record and frees none of them until it
    ends: the cyclic garbage collector would walk them again and again (it doubled the
    run's time in bench/clearing.py). No cycle is made here, so it waits until the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _note(note: str) -> str:
    """A note as kept: one line, bounded, and never a card number — an operator pasting a
    remark with one in it must not write it to disk in clear (masked to 6/4 by the net)."""
    cleaned = " ".join(note.split())
    if len(cleaned) > NOTE_CHARS_MAX or not cleaned.isprintable():
        raise ClearingError(f"a note is at most {NOTE_CHARS_MAX} printable characters")
    return mask_card_numbers(cleaned)


class ClearingStore:
    """Clearing rules and reads over one :class:`HostStore`."""

    def __init__(self, store: HostStore) -> None:
        self.store = store
        self.engine = store.engine
        self._local = threading.local()
        dialect = store.engine.dialect
        processor = sa.Date().dialect_impl(dialect).bind_processor(dialect)
        self._bind_date: Any = processor or (lambda day: day)

    def _write(self) -> Any:
        return self.store.transaction()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        pinned = getattr(self._local, "connection", None)
        if pinned is not None:
            yield pinned  # within _reading(): the block's one connection
            return
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Every read of the block (in this thread) on one connection: a statement run makes
        a dozen small reads, and a connection per read cost more than they did."""
        if getattr(self._local, "connection", None) is not None:
            yield
            return
        with self.engine.connect() as connection:
            self._local.connection = connection
            try:
                yield
            finally:
                self._local.connection = None

    # --- the clock-dependent rule: never rewrite the past -------------------------------

    def current_trading_day(self, now: datetime) -> date:
        return trading_day(now, self.cutoffs())

    def _not_before_today(self, day: date, now: datetime, what: str) -> None:
        today = self.current_trading_day(now)
        if day < today:
            raise ClearingError(
                f"{what} cannot take effect on {day}: trading day {today} is under way and "
                "earlier days are cleared (their statements never change)"
            )
        with self._read() as connection:
            last = connection.execute(sa.select(sa.func.max(t.cleared_days.c.trading_day))).scalar()
        if last is not None and day <= last:  # a clock behind the clearing runs
            raise ClearingError(
                f"{what} cannot take effect on {day}: trading day {last} is cleared "
                "(its statements never change)"
            )

    def _reprices_nothing_made(
        self,
        what: str,
        effective_from: date,
        now: datetime,
        changed: Callable[[ClearingRules], ClearingRules],
        *,
        merchant_id: str | None = None,
    ) -> None:
        """Refuse a rule taking effect on the trading day under way that would price (or pay)
        otherwise a transaction already made that day: a transaction keeps the price it was
        made at. Nothing made yet today, or nothing priced differently: it may.
        ``merchant_id``: the rule is that merchant's own (only its records are read)."""
        today = self.current_trading_day(now)
        if effective_from != today:
            return
        with self._reading():
            before = self.rules()
            start, end = trading_day_bounds(today, before.cutoffs)
            records = self.records(start, end, merchant_id=merchant_id)
        if not records:
            return
        with _bulk():
            found = repricing(today, records, before, changed(before))
        if found.count:
            raise ClearingError(
                _repricing_text(what, found), shown_ids=frozenset(found.merchant_ids)
            )

    # --- fee schedules --------------------------------------------------------------------

    def set_fee_schedule(self, schedule: FeeSchedule, *, now: datetime) -> FeeSchedule:
        """Record ``schedule`` (history kept); return it with its id. From the trading day under
        way only if it re-prices none of the transactions already made that day."""
        self._not_before_today(schedule.effective_from, now, "a fee schedule")
        self._reprices_nothing_made(
            "a fee schedule",
            schedule.effective_from,
            now,
            lambda rules: replace(
                rules,
                fee_schedules=(
                    *rules.fee_schedules,
                    replace(schedule, schedule_id=_next_id(rules.fee_schedules, "schedule_id")),
                ),
            ),
            merchant_id=schedule.merchant_id,
        )
        values: dict[str, Any] = {
            "merchant_id": schedule.merchant_id,
            "effective_from": schedule.effective_from,
            "instant_rate": str(schedule.instant_rate),
            "created_at": naive_utc(now),
        }
        for card_class, column in _CLASS_COLUMNS.items():
            values[f"{column}_rate"] = str(schedule.rates[card_class])
            values[f"{column}_cap_fen"] = schedule.cap_fen(card_class)
        with self._write() as tx:
            schedule_id = tx.connection.execute(
                t.fee_schedules.insert().values(**values).returning(t.fee_schedules.c.schedule_id)
            ).scalar_one()
        return self._schedule_of(values | {"schedule_id": schedule_id})

    def _schedule_of(self, row: Any) -> FeeSchedule:
        get = row.__getitem__ if isinstance(row, dict) else row._mapping.__getitem__
        return FeeSchedule(
            merchant_id=get("merchant_id"),
            effective_from=get("effective_from"),
            rates={card_class: _rate(get(f"{column}_rate"))
                   for card_class, column in _CLASS_COLUMNS.items()},
            caps_fen={card_class: get(f"{column}_cap_fen")
                      for card_class, column in _CLASS_COLUMNS.items()},
            instant_rate=_rate(get("instant_rate")),
            schedule_id=get("schedule_id"),
        )  # fmt: skip

    def fee_schedules(
        self, merchant_id: str | None = None, *, every: bool = False
    ) -> list[FeeSchedule]:
        """Schedules in entry order: the standard's (``merchant_id`` None), a merchant's, or
        ``every`` one."""
        query = sa.select(t.fee_schedules).order_by(t.fee_schedules.c.schedule_id)
        if not every:
            query = query.where(
                t.fee_schedules.c.merchant_id.is_(None)
                if merchant_id is None
                else t.fee_schedules.c.merchant_id == check_merchant_id(merchant_id)
            )
        with self._read() as connection:
            rows = connection.execute(query.limit(RULE_ROWS_MAX)).all()
        return [self._schedule_of(row) for row in rows]

    # --- merchant terms -------------------------------------------------------------------

    def set_merchant_terms(self, terms: MerchantTerms, *, now: datetime) -> MerchantTerms:
        """Record ``terms`` (history kept); from the trading day under way only if they change
        the price or the arrival of none of the transactions already made that day."""
        self._not_before_today(terms.effective_from, now, "merchant terms")
        self._reprices_nothing_made(
            "merchant terms",
            terms.effective_from,
            now,
            lambda rules: replace(
                rules,
                merchant_terms=(
                    *rules.merchant_terms,
                    replace(terms, terms_id=_next_id(rules.merchant_terms, "terms_id")),
                ),
            ),
            merchant_id=terms.merchant_id,
        )
        with self._write() as tx:
            terms_id = tx.connection.execute(
                t.merchant_terms.insert()
                .values(
                    merchant_id=terms.merchant_id,
                    effective_from=terms.effective_from,
                    cycle=terms.cycle.value,
                    void_fee=terms.void_fee.value,
                    refund_fee=terms.refund_fee.value,
                    created_at=naive_utc(now),
                )
                .returning(t.merchant_terms.c.terms_id)
            ).scalar_one()
        return MerchantTerms(
            terms.merchant_id, terms.effective_from, terms.cycle, terms.void_fee,
            terms.refund_fee, terms_id,
        )  # fmt: skip

    def merchant_terms(
        self, merchant_id: str | None = None, *, every: bool = False
    ) -> list[MerchantTerms]:
        query = sa.select(t.merchant_terms).order_by(t.merchant_terms.c.terms_id)
        if not every:
            query = query.where(
                t.merchant_terms.c.merchant_id.is_(None)
                if merchant_id is None
                else t.merchant_terms.c.merchant_id == check_merchant_id(merchant_id)
            )
        with self._read() as connection:
            rows = connection.execute(query.limit(RULE_ROWS_MAX)).all()
        try:
            return [
                MerchantTerms(
                    row.merchant_id,
                    row.effective_from,
                    SettlementCycle(row.cycle),
                    CreditFeeRule(row.void_fee),
                    CreditFeeRule(row.refund_fee),
                    row.terms_id,
                )
                for row in rows
            ]
        except ValueError as exc:
            raise StorageError(f"host store: merchant terms row: {exc}") from exc

    # --- card BINs ------------------------------------------------------------------------

    def set_card_bins(self, bins: Sequence[CardBin], *, now: datetime) -> int:
        """Record BIN entries (all or none); return how many. Those from the trading day under
        way only if they re-price none of the transactions already made that day."""
        for entry in bins:
            self._not_before_today(entry.effective_from, now, "a BIN entry")
        if len(bins) > RULE_ROWS_MAX:
            raise ClearingError(f"at most {RULE_ROWS_MAX} BIN entries at once")
        today = self.current_trading_day(now)
        if any(entry.effective_from == today for entry in bins):

            def changed(rules: ClearingRules) -> ClearingRules:
                first = _next_id(rules.card_bins, "bin_id")
                added = (replace(entry, bin_id=first + index) for index, entry in enumerate(bins))
                return replace(rules, card_bins=(*rules.card_bins, *added))

            self._reprices_nothing_made("BIN entries", today, now, changed)
        rows = [
            {
                "prefix": entry.prefix,
                "funding": entry.funding.value,
                "effective_from": entry.effective_from,
                "created_at": naive_utc(now),
            }
            for entry in bins
        ]
        if rows:
            with self._write() as tx:
                tx.connection.execute(t.card_bins.insert(), rows)
        return len(rows)

    def card_bins(self) -> list[CardBin]:
        with self._read() as connection:
            rows = connection.execute(
                sa.select(t.card_bins).order_by(t.card_bins.c.bin_id).limit(RULE_ROWS_MAX)
            ).all()
        try:
            return [
                CardBin(row.prefix, Funding(row.funding), row.effective_from, row.bin_id)
                for row in rows
            ]
        except ValueError as exc:
            raise StorageError(f"host store: card BIN row: {exc}") from exc

    # --- the calendar ---------------------------------------------------------------------

    def set_working_day(self, day: date, working: bool | None, *, note: str, now: datetime) -> None:
        """Override ``day``: a working day (True), a day off (False), or back to the library
        (None)."""
        self._not_before_today(day, now, "a working-day override")
        cleaned = _note(note)
        with self._write() as tx:
            connection = tx.connection
            connection.execute(t.working_days.delete().where(t.working_days.c.day == day))
            if working is not None:
                connection.execute(
                    t.working_days.insert().values(
                        day=day, working=working, note=cleaned, updated_at=naive_utc(now)
                    )
                )

    def working_days(self) -> list[tuple[date, bool, str]]:
        with self._read() as connection:
            rows = connection.execute(
                sa.select(t.working_days).order_by(t.working_days.c.day).limit(RULE_ROWS_MAX)
            ).all()
        return [(row.day, bool(row.working), row.note) for row in rows]

    def publish_year(self, year: int, *, note: str, now: datetime, published: bool = True) -> None:
        """Mark ``year``'s State Council notice entered (its dates are no longer provisional)."""
        if not 2000 <= year <= 2100:
            raise ClearingError(f"year {year} is not one this calendar covers (2000..2100)")
        cleaned = _note(note)
        with self._write() as tx:
            connection = tx.connection
            connection.execute(t.calendar_years.delete().where(t.calendar_years.c.year == year))
            if published:
                connection.execute(
                    t.calendar_years.insert().values(
                        year=year, note=cleaned, created_at=naive_utc(now)
                    )
                )

    def published_years(self) -> list[tuple[int, str]]:
        with self._read() as connection:
            rows = connection.execute(
                sa.select(t.calendar_years).order_by(t.calendar_years.c.year)
            ).all()
        return [(row.year, row.note) for row in rows]

    def calendar(self) -> WorkingDayCalendar:
        return WorkingDayCalendar(
            {day: working for day, working, _note in self.working_days()},
            frozenset(year for year, _note in self.published_years()),
        )

    # --- cut-off --------------------------------------------------------------------------

    def set_cutoff(self, effective_from: date, cutoff: time, *, now: datetime) -> None:
        """From trading day ``effective_from`` (after the current one) on, days end at
        ``cutoff``."""
        check_cutoff(cutoff)
        today = self.current_trading_day(now)
        if effective_from <= today:
            raise ClearingError(
                f"a new cut-off takes effect from a coming trading day (after {today}), "
                f"not {effective_from}: the days under way keep their bounds"
            )
        # a clock behind the clearing runs: the cut-off ends trading day effective_from,
        # and a cleared day's bounds never move
        self._not_before_today(effective_from, now, "a new cut-off")
        with self._write() as tx:
            tx.connection.execute(
                t.cutoffs.insert().values(
                    effective_from=effective_from,
                    cutoff=f"{cutoff:%H:%M}",
                    created_at=naive_utc(now),
                )
            )

    def cutoffs(self) -> CutoffSchedule:
        with self._read() as connection:
            rows = connection.execute(
                sa.select(t.cutoffs).order_by(t.cutoffs.c.cutoff_id).limit(RULE_ROWS_MAX)
            ).all()
        latest: dict[date, time] = {}
        for row in rows:  # the later entry of a day wins
            hour, _, minute = row.cutoff.partition(":")
            latest[row.effective_from] = time(int(hour), int(minute))
        return CutoffSchedule(tuple(CutoffChange(day, cutoff) for day, cutoff in latest.items()))

    # --- everything together ----------------------------------------------------------------

    def rules(self) -> ClearingRules:
        """Every rule in force over time, read once (a statement run reads it once)."""
        with self._reading():
            return ClearingRules(
                fee_schedules=tuple(self.fee_schedules(every=True)),
                merchant_terms=tuple(self.merchant_terms(every=True)),
                card_bins=tuple(self.card_bins()),
                calendar=self.calendar(),
                cutoffs=self.cutoffs(),
                bin8_key=self.bin8_key,
            )

    def bin8_key(self, prefix: str) -> str:
        """The key under which the host keeps cards that begin with the 8-digit BIN
        ``prefix`` (``host_transactions.bin8_hmac``: cards.card_bin8 under the PAN key)."""
        return self.store.pan_hmac(bin8_text(prefix))

    def has_merchant(self, merchant_id: str) -> bool:
        """Whether a terminal of ``merchant_id`` is registered on this host."""
        with self._read() as connection:
            return merchant_has_terminal(connection, merchant_id)

    def merchants(self) -> list[str]:
        """Every merchant with a terminal on this host."""
        with self._read() as connection:
            return list(
                connection.execute(
                    sa.select(t.terminals.c.merchant_id)
                    .distinct()
                    .order_by(t.terminals.c.merchant_id)
                ).scalars()
            )

    def arrival(
        self, day: date, *, merchant_id: str | None = None, cycle: SettlementCycle | None = None
    ) -> Arrival:
        """When the net of trading day ``day`` arrives: ``cycle``, else the merchant's (or the
        standard terms') cycle. A merchant's cleared day: the arrival its clearing run kept
        (what was promised), whatever the calendar says now."""
        if cycle is None and merchant_id is not None:
            kept = self.kept_arrivals(day, merchant_id=check_merchant_id(merchant_id))
            if merchant_id in kept:
                return kept[merchant_id]
        rules = self.rules()
        if cycle is None:
            cycle = rules.terms_for(check_merchant_id(merchant_id), day).cycle
        return arrival_date(day, cycle, rules.calendar)

    # --- the records of a trading day ----------------------------------------------------------

    def records(
        self, start: datetime, end: datetime, *, merchant_id: str | None = None
    ) -> list[ClearingRecord]:
        """Every record that may count on ``[start, end)``: approved then, or reversed then.

        The day's rows are read through the driver's cursor (a statement run reads a whole
        day: SQLAlchemy's per-row processing would cost more than the clearing itself).
        """
        hot = self.store.sql
        begin, finish = hot.datetime(naive_utc(start)), hot.datetime(naive_utc(end))
        with self._read() as connection:
            cursor = connection.connection.cursor()
            try:
                merchant_of = self._merchant_of(cursor, merchant_id)
                terminal_ids = sorted(merchant_of)
                if merchant_id is not None and len(terminal_ids) <= IDS_PER_QUERY_MAX:
                    # one merchant's: the database skips the others' rows (a page, not a run)
                    marks = ", ".join("?" * len(terminal_ids)) or "NULL"
                    cursor.execute(
                        hot.sql(f"{_DAY_SQL} AND terminal_id IN ({marks})"),
                        (begin, finish, *terminal_ids),
                    )
                else:
                    cursor.execute(hot.sql(_DAY_SQL), (begin, finish))
                rows: list[Any] = list(cursor.fetchall())
                if merchant_id is not None:
                    rows = [row for row in rows if row[1] in merchant_of]
                rows += [
                    row
                    for row in self._reversed_within(cursor, begin, finish, terminal_ids)
                    if row[1] in merchant_of
                ]
                read_time = _time_reader(rows[0][9]) if rows else _aware
                reversed_at = self._reversal_times(
                    cursor, [row[0] for row in rows if row[10] == TransactionStatus.REVERSED]
                )
                originals = self._originals(
                    cursor, sorted({row[11] for row in rows if row[11] is not None})
                )
                siblings = self._siblings(cursor, sorted(originals))
                batch_no_of = self._batch_numbers(cursor, {row[2] for row in rows})
            finally:
                cursor.close()
        make = ClearingRecord._make
        reversed_status = TransactionStatus.REVERSED
        records: list[ClearingRecord] = []
        append = records.append
        for row in rows:
            (transaction_id, terminal_id, batch_id, stan, rrn, kind, amount_fen, card_type,
             pan_masked, created_at, status, original_id, bin8_key) = row  # fmt: skip
            approved_at = read_time(created_at)
            taken_back: datetime | None = None
            if status == reversed_status:
                # A sale whose reversal overtook it was recorded reversed: it never stood.
                taken_back = reversed_at.get(transaction_id, approved_at)
            original = None
            pieces: tuple[tuple[int, int], ...] = ()
            if original_id is not None:
                original = originals.get(original_id)
                if original is not None:
                    pieces = credit_pieces(
                        transaction_id, original.amount_fen, siblings.get(original_id, ())
                    )
            append(
                make((transaction_id, merchant_of[terminal_id], terminal_id, batch_id,
                      batch_no_of[batch_id], stan, rrn, kind, amount_fen, card_type, pan_masked,
                      approved_at, taken_back, original, pieces, bin8_key))
            )  # fmt: skip
        return records

    def _merchant_of(self, cursor: Any, merchant_id: str | None) -> dict[str, str]:
        """terminal_id → merchant_id (only ``merchant_id``'s terminals when given)."""
        if merchant_id is None:
            cursor.execute("SELECT terminal_id, merchant_id FROM host_terminals")
        else:
            cursor.execute(
                self.store.sql.sql(
                    "SELECT terminal_id, merchant_id FROM host_terminals WHERE merchant_id = ?"
                ),
                (merchant_id,),
            )
        return dict(cursor.fetchall())

    def _in_ids(self, cursor: Any, sql: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """``sql`` (ending in ``IN``) run over ``ids`` in chunks; every row."""
        found: list[tuple[Any, ...]] = []
        for chunk in _chunks(ids):
            marks = ", ".join("?" * len(chunk))
            cursor.execute(self.store.sql.sql(f"{sql} ({marks})"), tuple(chunk))
            found.extend(cursor.fetchall())
        return found

    def _reversed_within(
        self, cursor: Any, begin: Any, finish: Any, terminal_ids: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """Transactions approved before ``begin`` that a reversal took back within
        ``[begin, finish)`` (of ``terminal_ids`` when they fit one statement; the caller keeps
        its merchant's), by transaction id.

        One statement: the database picks them (it read every reversal of the day and every
        transaction they named, of every merchant, into Python — 40 % of a merchant's
        statement page with 2,000 reversals a day)."""
        sql = _REVERSED_WITHIN_SQL
        parameters: tuple[Any, ...] = (begin, APPLIED, begin, finish)
        if terminal_ids and len(terminal_ids) <= IDS_PER_QUERY_MAX:
            sql += f" AND terminal_id IN ({', '.join('?' * len(terminal_ids))})"
            parameters += tuple(terminal_ids)
        cursor.execute(self.store.sql.sql(sql + " ORDER BY transaction_id"), parameters)
        return list(cursor.fetchall())

    def reversal_times(self, transaction_ids: Sequence[int]) -> dict[int, datetime]:
        """When an applied reversal took each of ``transaction_ids`` back (absent: none did)."""
        with self._read() as connection:
            cursor = connection.connection.cursor()
            try:
                return self._reversal_times(cursor, transaction_ids)
            finally:
                cursor.close()

    def _reversal_times(self, cursor: Any, ids: Sequence[int]) -> dict[int, datetime]:
        """When an applied reversal took each of ``ids`` back (the first one, if several)."""
        rows = self._in_ids(
            cursor,
            "SELECT transaction_id, created_at FROM host_reversals "
            "WHERE outcome = 'applied' AND transaction_id IN",
            sorted(set(ids)),
        )
        found: dict[int, datetime] = {}
        for transaction_id, created_at in rows:
            moment = _time_reader(created_at)(created_at)
            if transaction_id not in found or moment < found[transaction_id]:
                found[transaction_id] = moment
        return found

    def _originals(self, cursor: Any, ids: Sequence[int]) -> dict[int, OriginalSale]:
        rows = self._in_ids(
            cursor,
            "SELECT t.transaction_id, b.batch_no, t.stan, t.amount_fen, t.card_type, "
            "t.pan_masked, t.created_at, t.bin8_hmac FROM host_transactions t "
            "JOIN host_batches b ON b.batch_id = t.batch_id WHERE t.transaction_id IN",
            ids,
        )
        return {
            row[0]: OriginalSale(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                _time_reader(row[6])(row[6]),
                row[7],
            )
            for row in rows
        }

    def _siblings(
        self, cursor: Any, original_ids: Sequence[int]
    ) -> dict[int, list[tuple[int, int, datetime, datetime | None]]]:
        """Per sale: (transaction_id, amount_fen, approved_at, reversed_at) of each credit the
        host approved."""
        rows = [
            row
            for row in self._in_ids(
                cursor,
                "SELECT original_transaction_id, transaction_id, amount_fen, status, kind, "
                "created_at FROM host_transactions WHERE original_transaction_id IN",
                original_ids,
            )
            if row[4] in _CREDIT_KINDS
            and row[3] in (TransactionStatus.APPROVED, TransactionStatus.REVERSED)
        ]
        reversed_at = self._reversal_times(
            cursor, [row[1] for row in rows if row[3] == TransactionStatus.REVERSED]
        )
        found: dict[int, list[tuple[int, int, datetime, datetime | None]]] = {}
        for original_id, transaction_id, amount_fen, status, _kind, created_at in rows:
            approved_at = _time_reader(created_at)(created_at)
            taken_back = None
            if status == TransactionStatus.REVERSED:
                taken_back = reversed_at.get(transaction_id, approved_at)
            found.setdefault(original_id, []).append(
                (transaction_id, amount_fen, approved_at, taken_back)
            )
        return found

    def _batch_numbers(self, cursor: Any, batch_ids: Iterable[int]) -> dict[int, int]:
        rows = self._in_ids(
            cursor,
            "SELECT batch_id, batch_no FROM host_batches WHERE batch_id IN",
            sorted(batch_ids),
        )
        return {batch_id: batch_no for batch_id, batch_no in rows}

    def batches(self, batch_ids: Iterable[int]) -> list[BatchRecord]:
        found: list[BatchRecord] = []
        with self._read() as connection:
            for chunk in _chunks(sorted(set(batch_ids))):
                for row in connection.execute(
                    sa.select(t.batches).where(t.batches.c.batch_id.in_(chunk))
                ):
                    found.append(
                        BatchRecord(
                            row.batch_id,
                            row.terminal_id,
                            row.batch_no,
                            row.state,
                            _aware(row.opened_at),
                            _maybe_aware(row.closed_at),
                            row.close_reason,
                            row.settle_response_code,
                        )
                    )
        return found

    def exceptions(
        self,
        start: datetime,
        end: datetime,
        *,
        merchant_id: str | None = None,
        cutoffs: CutoffSchedule | None = None,
    ) -> list[ExceptionRecord]:
        """Exception (差错) records raised within ``[start, end)`` (of one merchant if given),
        each with where it was settled as the store knows it now: the trading day its
        clearing run kept its adjustment on, else the one its resolution falls in (under
        ``cutoffs``, else those in force); none when it is open or moves no money."""
        exceptions, work, kept = t.exceptions.c, t.exception_work.c, t.clearing_adjustments.c
        query = (
            sa.select(
                t.exceptions,
                work.resolution,
                work.amount_fen.label("resolved_amount_fen"),
                work.resolved_at,
                kept.trading_day.label("kept_day"),
                kept.amount_fen.label("kept_fen"),
            )
            .select_from(
                t.exceptions.outerjoin(
                    t.exception_work, work.exception_id == exceptions.exception_id
                ).outerjoin(t.clearing_adjustments, kept.exception_id == exceptions.exception_id)
            )
            .where(
                exceptions.created_at >= naive_utc(start), exceptions.created_at < naive_utc(end)
            )
            .order_by(exceptions.exception_id)
        )
        if merchant_id is not None:
            query = query.where(exceptions.merchant_id == merchant_id)
        with self._reading():
            with self._read() as connection:
                rows = connection.execute(query).all()
            if cutoffs is None and any(row.resolution is not None for row in rows):
                cutoffs = self.cutoffs()
        found = []
        for row in rows:
            resolved_at = _maybe_aware(row.resolved_at)
            settled_on: date | None = None
            signed = 0
            if row.kept_day is not None:
                settled_on, signed = _day_of(row.kept_day), row.kept_fen
            elif row.resolution is not None and resolved_at is not None:
                signed = adjustment_fen(row.resolution, row.resolved_amount_fen)
                if signed and cutoffs is not None:
                    settled_on = trading_day(resolved_at, cutoffs)
            found.append(
                ExceptionRecord(
                    row.exception_id, row.merchant_id, row.terminal_id, row.batch_no, row.stan,
                    row.kind, row.cause, row.terminal_amount_fen, row.host_amount_fen,
                    _aware(row.created_at), None if resolved_at is None else row.resolution,
                    resolved_at, signed, settled_on,
                )
            )  # fmt: skip
        return found

    def adjustment_records(
        self, start: datetime, end: datetime, *, merchant_id: str | None = None
    ) -> list[AdjustmentRecord]:
        """Exceptions (差错) the back office resolved within ``[start, end)`` (of one merchant
        if given), whatever the resolution: :func:`~posbatch.clearing.adjustment_lines` takes
        the ones that move the merchant's money."""
        work, exceptions = t.exception_work.c, t.exceptions.c
        query = (
            sa.select(
                exceptions.exception_id,
                exceptions.merchant_id,
                exceptions.terminal_id,
                exceptions.kind,
                work.resolution,
                work.amount_fen,
                work.resolved_at,
            )
            .select_from(
                t.exception_work.join(t.exceptions, exceptions.exception_id == work.exception_id)
            )
            .where(
                work.resolution.is_not(None),
                work.resolved_at >= naive_utc(start),
                work.resolved_at < naive_utc(end),
            )
            .order_by(exceptions.exception_id)
        )
        if merchant_id is not None:
            query = query.where(exceptions.merchant_id == merchant_id)
        with self._read() as connection:
            rows = connection.execute(query).all()
        return [
            AdjustmentRecord(
                row.exception_id, row.merchant_id, row.terminal_id, row.kind, row.resolution,
                row.amount_fen, _aware(row.resolved_at),
            )
            for row in rows
        ]  # fmt: skip

    def _adjustments(
        self, day: date, rules: ClearingRules, *, cleared: bool, merchant_id: str | None = None
    ) -> dict[str, list[AdjustmentLine]]:
        """Per merchant, the adjustment lines of ``day``: kept by its clearing run when the day
        is ``cleared``, else computed from the resolutions as they are."""
        if cleared:
            return self._kept_adjustments(day, merchant_id=merchant_id)
        start, end = trading_day_bounds(day, rules.cutoffs)
        records = self.adjustment_records(start, end, merchant_id=merchant_id)
        only = None if merchant_id is None else (merchant_id,)
        return adjustment_lines(day, records, rules.cutoffs, merchant_ids=only)

    def _kept_adjustments(
        self, day: date, *, merchant_id: str | None = None
    ) -> dict[str, list[AdjustmentLine]]:
        adjustments = t.clearing_adjustments.c
        query = (
            sa.select(t.clearing_adjustments)
            .where(adjustments.trading_day == day)
            .order_by(adjustments.at, adjustments.exception_id)
        )
        if merchant_id is not None:
            query = query.where(adjustments.merchant_id == merchant_id)
        with self._read() as connection:
            rows = connection.execute(query).all()
        found: dict[str, list[AdjustmentLine]] = {} if merchant_id is None else {merchant_id: []}
        for row in rows:
            found.setdefault(row.merchant_id, []).append(
                AdjustmentLine(
                    row.exception_id, _aware(row.at), row.terminal_id, row.kind,
                    row.resolution, row.amount_fen,
                )
            )  # fmt: skip
        return found

    # --- clearing runs (清算) ------------------------------------------------------------------

    def clear_day(
        self, day: date, *, now: datetime, rules: ClearingRules | None = None
    ) -> ClearedDay:
        """Price every line of trading day ``day`` and keep them: the day is cleared.

        Only once the day has ended (and :data:`CLEARING_GRACE` has passed, for a write
        still in flight at the cut-off). All of it is written in one unit of work: a crash
        leaves the day uncleared, and the run can simply be made again. Clearing a cleared
        day again computes it afresh and changes nothing; figures that would differ are an
        error (what was paid is never rewritten). ``rules``: as read by :meth:`rules` (a run
        over many days reads them once).
        """
        rules = rules or self.rules()
        start, end = trading_day_bounds(day, rules.cutoffs)
        ready = end + CLEARING_GRACE
        if _aware(now) < ready:
            raise ClearingError(
                f"trading day {day} can be cleared from {beijing(ready):%Y-%m-%d %H:%M} "
                f"Beijing time (it ends at the cut-off {beijing(end):%H:%M}, then "
                f"{CLEARING_GRACE.seconds // 60} minutes' grace)"
            )
        with _bulk():
            lines_of = price_lines(day, self.records(start, end), rules)
        adjusted = adjustment_lines(day, self.adjustment_records(start, end), rules.cutoffs)
        every = [line for lines in lines_of.values() for line in lines]
        totals = Totals(
            len(every),
            sum(line.amount_fen for line in every),
            sum(line.fee_fen for line in every),
            sum(line.net_fen for line in every),
        )
        # the arrival each merchant is promised, kept with the run: a calendar changed later
        # (an override, a new holidays release) never moves it
        arrivals = {
            merchant_id: rules.arrival(merchant_id, day)
            for merchant_id in sorted(set(lines_of) | set(adjusted))
        }
        done = self.cleared_day(day)
        if done is not None:
            return self._run_again(done, totals, adjusted, arrivals, now)
        hot = self.store.sql
        on_day = self._bind_date(day)
        rows = [
            (
                on_day,
                merchant_id,
                line.transaction_id,
                hot.datetime(naive_utc(line.at)),
                line.terminal_id,
                line.batch_id,
                line.batch_no,
                line.stan,
                line.rrn,
                line.kind.value,
                None if line.reverses is None else line.reverses.value,
                line.card_class.value,
                line.bin_known,
                line.pan_masked,
                line.amount_fen,
                line.fee_fen,
                line.net_fen,
                None if line.original is None else line.original.batch_no,
                None if line.original is None else line.original.stan,
                None if line.original is None else self._bind_date(line.original.trading_day),
            )
            for merchant_id, lines in lines_of.items()
            for line in lines
        ]
        cleared_at = naive_utc(now)
        try:
            self._keep(
                day, totals, lines_of, rows, cleared_at, adjusted=adjusted, arrivals=arrivals
            )
        except StorageError:
            done = self.cleared_day(day)
            if done is None:
                raise
            # another run cleared it meanwhile
            return self._run_again(done, totals, adjusted, arrivals, now)
        adjustment = sum(line.amount_fen for lines in adjusted.values() for line in lines)
        return ClearedDay(day, totals, _aware(cleared_at), adjustment)

    def _keep(
        self,
        day: date,
        totals: Totals,
        lines_of: dict[str, list[StatementLine]],
        rows: list[tuple[Any, ...]],
        cleared_at: datetime,
        *,
        adjusted: dict[str, list[AdjustmentLine]],
        arrivals: dict[str, Arrival],
    ) -> None:
        """Write a clearing run: the day, its sums, its lines, its adjustments and each
        merchant's arrival, in one unit of work."""
        with self._write() as tx:
            connection = tx.connection
            connection.execute(
                t.cleared_days.insert().values(
                    trading_day=day,
                    lines=totals.count,
                    gross_fen=totals.gross_fen,
                    fee_fen=totals.fee_fen,
                    net_fen=totals.net_fen,
                    cleared_at=cleared_at,
                )
            )
            sums = [
                {
                    "trading_day": day,
                    "merchant_id": merchant_id,
                    "card_class": part.card_class.value,
                    "kind": part.kind.value,
                    "lines": part.totals.count,
                    "gross_fen": part.totals.gross_fen,
                    "fee_fen": part.totals.fee_fen,
                    "net_fen": part.totals.net_fen,
                    "unknown_bins": part.unknown_bins,
                }
                for merchant_id, lines in lines_of.items()
                for part in summary_parts(lines)
            ]
            if sums:
                connection.execute(t.clearing_sums.insert(), sums)
            kept = [
                {
                    "exception_id": line.exception_id,
                    "trading_day": day,
                    "merchant_id": merchant_id,
                    "terminal_id": line.terminal_id,
                    "kind": line.kind,
                    "resolution": line.resolution,
                    "amount_fen": line.amount_fen,
                    "at": naive_utc(line.at),
                }
                for merchant_id, lines in adjusted.items()
                for line in lines
            ]
            if kept:
                # the exception is the key: one kept on another day already fails the run
                connection.execute(t.clearing_adjustments.insert(), kept)
            if arrivals:
                connection.execute(
                    t.clearing_arrivals.insert(), _arrival_rows(day, arrivals, cleared_at)
                )
            # through the driver: a day is many rows, each written once
            cursor = tx.cursor()
            try:
                if self.engine.dialect.name == "postgresql":
                    with cursor.copy(_COPY_LINES_SQL) as copy:  # ten times executemany's speed
                        for row in rows:
                            copy.write_row(row)
                else:
                    insert = self.store.sql.sql(_INSERT_LINE_SQL)
                    for chunk in range(0, len(rows), INSERT_ROWS_MAX):
                        cursor.executemany(insert, rows[chunk : chunk + INSERT_ROWS_MAX])
            except self.engine.dialect.loaded_dbapi.Error as exc:
                raise StorageError(f"host store: clearing lines of {day}: {exc}") from exc

    def _run_again(
        self,
        done: ClearedDay,
        totals: Totals,
        adjusted: dict[str, list[AdjustmentLine]],
        arrivals: dict[str, Arrival],
        now: datetime,
    ) -> ClearedDay:
        """A run of a day already cleared: ``done`` if the records give what it kept (else
        the refusal to rewrite it). The arrivals it kept stay as they are; a merchant without
        one (a day cleared before they were kept) gets the one computed now."""
        same = _same_run(done, totals, self._kept_adjustments(done.trading_day), adjusted)
        kept = self.kept_arrivals(done.trading_day)
        missing = {
            merchant_id: arrival
            for merchant_id, arrival in arrivals.items()
            if merchant_id not in kept
        }
        if missing:
            try:
                with self._write() as tx:
                    tx.connection.execute(
                        t.clearing_arrivals.insert(),
                        _arrival_rows(done.trading_day, missing, naive_utc(now)),
                    )
            except StorageError:
                # another run kept them meanwhile: theirs stand
                if set(missing) - set(self.kept_arrivals(done.trading_day)):
                    raise
        return same

    def kept_arrivals(self, day: date, *, merchant_id: str | None = None) -> dict[str, Arrival]:
        """Per merchant, the arrival the clearing run of ``day`` kept (none: not cleared, or
        cleared before arrivals were kept)."""
        arrivals = t.clearing_arrivals.c
        query = sa.select(t.clearing_arrivals).where(arrivals.trading_day == day)
        if merchant_id is not None:
            query = query.where(arrivals.merchant_id == merchant_id)
        with self._read() as connection:
            rows = connection.execute(query).all()
        try:
            return {
                row.merchant_id: Arrival(
                    row.trading_day,
                    SettlementCycle(row.cycle),
                    row.arrival_date,
                    bool(row.provisional),
                )
                for row in rows
            }
        except ValueError as exc:
            raise StorageError(f"host store: clearing arrival: {exc}") from exc

    def cleared_day(self, day: date) -> ClearedDay | None:
        """The clearing run of ``day``, or None if the day is not cleared (one statement:
        a night's checks ask it of every day of a run)."""
        adjustments = t.clearing_adjustments.c
        adjustment = (
            sa.select(sa.func.coalesce(sa.func.sum(adjustments.amount_fen), 0))
            .where(adjustments.trading_day == t.cleared_days.c.trading_day)
            .scalar_subquery()
        )
        with self._read() as connection:
            row = connection.execute(
                sa.select(t.cleared_days, adjustment.label("adjustment_fen")).where(
                    t.cleared_days.c.trading_day == day
                )
            ).first()
        if row is None:
            return None
        return ClearedDay(
            row.trading_day,
            Totals(row.lines, row.gross_fen, row.fee_fen, row.net_fen),
            _aware(row.cleared_at),
            int(row.adjustment_fen),
        )

    def cleared_days(self, *, limit: int = READ_DAYS_MAX) -> list[ClearedDay]:
        """The last ``limit`` cleared days, oldest first."""
        # each day with the adjustments its run kept: they are paid in the day's net
        adjustments = (
            sa.select(
                t.clearing_adjustments.c.trading_day,
                sa.func.sum(t.clearing_adjustments.c.amount_fen).label("amount_fen"),
            )
            .group_by(t.clearing_adjustments.c.trading_day)
            .subquery()
        )
        with self._read() as connection:
            rows = connection.execute(
                sa.select(t.cleared_days, adjustments.c.amount_fen.label("adjustment_fen"))
                .select_from(
                    t.cleared_days.outerjoin(
                        adjustments, adjustments.c.trading_day == t.cleared_days.c.trading_day
                    )
                )
                .order_by(t.cleared_days.c.trading_day.desc())
                .limit(limit)
            ).all()
        return [
            ClearedDay(
                row.trading_day,
                Totals(row.lines, row.gross_fen, row.fee_fen, row.net_fen),
                _aware(row.cleared_at),
                int(row.adjustment_fen or 0),
            )
            for row in reversed(rows)
        ]

    def _kept_lines(self, day: date, merchant_id: str) -> list[StatementLine]:
        """The lines the clearing run kept for ``merchant_id``'s statement of ``day``.

        Read through the driver's cursor, as :meth:`records` reads a day: SQLAlchemy's
        per-row processing cost a merchant's statement page more than the query did."""
        with self._read() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(
                    self.store.sql.sql(_KEPT_LINES_SQL), (self._bind_date(day), merchant_id)
                )
                rows = cursor.fetchall()
            finally:
                cursor.close()
        if not rows:
            return []
        read_time = _time_reader(rows[0][1])
        make = StatementLine._make
        lines: list[StatementLine] = []
        append = lines.append
        try:
            for row in rows:
                (transaction_id, at, terminal_id, batch_id, batch_no, stan, rrn, kind, reverses,
                 card_class, bin_known, pan_masked, amount_fen, fee_fen, net_fen,
                 original_batch_no, original_stan, original_day) = row  # fmt: skip
                original = None
                if original_batch_no is not None:
                    original = OriginalRef(original_batch_no, original_stan, _day_of(original_day))
                append(
                    make((transaction_id, read_time(at), terminal_id, batch_id, batch_no, stan,
                          rrn, _LINE_KINDS[kind],
                          None if reverses is None else _LINE_KINDS[reverses],
                          _CARD_CLASSES[card_class], bool(bin_known), pan_masked, amount_fen,
                          fee_fen, net_fen, original))
                )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise StorageError(f"host store: clearing line: {exc}") from exc
        return lines

    def _kept_parts(self, day: date) -> dict[str, list[SummaryPart]]:
        """Per merchant, the cleared day's sums per (card class, kind), as the run kept them."""
        with self._read() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(
                    self.store.sql.sql(
                        "SELECT merchant_id, card_class, kind, lines, gross_fen, fee_fen, "
                        "net_fen, unknown_bins FROM host_clearing_sums WHERE trading_day = ?"
                    ),
                    (self._bind_date(day),),
                )
                rows = cursor.fetchall()
            finally:
                cursor.close()
        parts: dict[str, list[SummaryPart]] = {}
        try:
            for merchant_id, card_class, kind, lines, gross, fee, net, unknown in rows:
                parts.setdefault(merchant_id, []).append(
                    SummaryPart(
                        _CARD_CLASSES[card_class],
                        _LINE_KINDS[kind],
                        Totals(lines, gross, fee, net),
                        unknown,
                    )
                )
        except KeyError as exc:
            raise StorageError(f"host store: clearing sums: unknown {exc}") from exc
        return parts

    # --- the one call of a CLI command or a page -----------------------------------------------

    def statement(self, merchant_id: str, day: date) -> Statement:
        """对账单 of ``merchant_id`` for trading day ``day``: from the clearing run if the day is
        cleared, else computed from the host's records as they are now."""
        check_merchant_id(merchant_id)
        with self._read() as connection:
            known = connection.execute(
                sa.select(t.terminals.c.terminal_id)
                .where(t.terminals.c.merchant_id == merchant_id)
                .limit(1)
            ).first()
        if known is None:
            raise ClearingError(f"merchant {merchant_id} has no terminal on this host")
        rules = self.rules()
        start, end = trading_day_bounds(day, rules.cutoffs)
        cleared = self.cleared_day(day) is not None
        arrival: Arrival | None = None
        if cleared:
            lines = self._kept_lines(day, merchant_id)
            arrival = self.kept_arrivals(day, merchant_id=merchant_id).get(merchant_id)
        else:
            records = self.records(start, end, merchant_id=merchant_id)
            lines = price_lines(day, records, rules, merchant_ids=(merchant_id,))[merchant_id]
        adjusted = self._adjustments(day, rules, cleared=cleared, merchant_id=merchant_id)
        return assemble_statement(
            merchant_id,
            day,
            lines,
            rules,
            batches=self.batches({line.batch_id for line in lines}),
            exceptions=self.exceptions(start, end, merchant_id=merchant_id, cutoffs=rules.cutoffs),
            cleared=cleared,
            adjustments=adjusted.get(merchant_id, []),
            arrival=arrival,
        )

    def _parts(
        self, day: date, rules: ClearingRules, *, cleared: bool
    ) -> dict[str, list[SummaryPart]]:
        if cleared:
            return self._kept_parts(day)
        start, end = trading_day_bounds(day, rules.cutoffs)
        with _bulk():
            lines_of = price_lines(day, self.records(start, end), rules)
        return {merchant_id: summary_parts(lines) for merchant_id, lines in lines_of.items()}

    def summaries(self, day: date, *, rules: ClearingRules | None = None) -> list[StatementSummary]:
        """Every merchant's statement figures of trading day ``day`` (a statement run): by
        card class and kind, fees, net, arrival — from the clearing run when cleared."""
        rules, parts, adjusted, arrivals, _cleared = self._day_figures(day, rules)
        return [
            summarize(
                merchant_id, day, parts.get(merchant_id, ()), rules,
                adjustment_fen=sum(line.amount_fen for line in adjusted.get(merchant_id, ())),
                arrival=arrivals.get(merchant_id),
            )
            for merchant_id in sorted(set(parts) | set(adjusted))
        ]  # fmt: skip

    def clearing_file(self, day: date) -> ClearingFile:
        """清算文件 of trading day ``day``: every merchant's count, gross, fees, net, arrival."""
        rules, parts, adjusted, arrivals, cleared = self._day_figures(day, None)
        return clearing_file_of(day, parts, rules, adjusted, arrivals, cleared=cleared)

    def _day_figures(
        self, day: date, rules: ClearingRules | None
    ) -> tuple[
        ClearingRules,
        dict[str, list[SummaryPart]],
        dict[str, list[AdjustmentLine]],
        dict[str, Arrival],
        bool,
    ]:
        """The rules (``rules``, or those in force) and, per merchant, ``day``'s sums,
        adjustment lines and kept arrivals, and whether the day is cleared, on one
        connection: that is asked once, so the sums, the adjustments and the label come
        from the same side of a clearing run made meanwhile."""
        with self._reading():
            rules = rules or self.rules()
            cleared = self.cleared_day(day) is not None
            parts = self._parts(day, rules, cleared=cleared)
            adjusted = self._adjustments(day, rules, cleared=cleared)
            arrivals = self.kept_arrivals(day)
        return rules, parts, adjusted, arrivals, cleared


def _same_run(
    done: ClearedDay,
    totals: Totals,
    kept: dict[str, list[AdjustmentLine]],
    adjusted: dict[str, list[AdjustmentLine]],
) -> ClearedDay:
    """``done`` if it kept ``totals`` and the ``adjusted`` lines; else the refusal to rewrite
    what was paid."""
    kept_set = {(merchant_id, line) for merchant_id, lines in kept.items() for line in lines}
    now_set = {(merchant_id, line) for merchant_id, lines in adjusted.items() for line in lines}
    if kept_set != now_set:
        raise ClearingError(
            f"trading day {done.trading_day} was cleared at "
            f"{beijing(done.cleared_at):%Y-%m-%d %H:%M} with {len(kept_set)} adjustment(s) of "
            f"{format_fen(sum(line.amount_fen for _m, line in kept_set))}; the resolutions now "
            f"give {len(now_set)} of {format_fen(sum(line.amount_fen for _m, line in now_set))}. "
            "A cleared day is never rewritten"
        )
    if done.totals != totals:
        raise ClearingError(
            f"trading day {done.trading_day} was cleared at "
            f"{beijing(done.cleared_at):%Y-%m-%d %H:%M} with {_describe(done.totals)}; the "
            f"records now give {_describe(totals)}. A cleared day is never rewritten: record "
            "the difference as an exception"
        )
    return done


# Merchants one refusal names at most (the rest are counted).
MERCHANTS_NAMED_MAX: Final = 5


def _next_id(entries: Iterable[Any], name: str) -> int:
    return max((getattr(entry, name) for entry in entries), default=0) + 1


def _repricing_text(what: str, found: Repricing) -> str:
    """One line: what a rule from the day under way would re-price, and the day it may take
    effect from."""
    day = found.trading_day
    merchants = ", ".join(found.merchant_ids[:MERCHANTS_NAMED_MAX])
    if len(found.merchant_ids) > MERCHANTS_NAMED_MAX:
        merchants += f" and {len(found.merchant_ids) - MERCHANTS_NAMED_MAX} more"
    return (
        f"{what} from {day} would re-price {found.count} transaction(s) already made on "
        f"trading day {day} (gross {format_fen(found.gross_fen)}, fees "
        f"{format_fen(found.fee_before_fen)} -> {format_fen(found.fee_after_fen)}) of "
        f"merchant(s) {merchants}: a transaction keeps the price it was made at; set it from "
        f"{day + timedelta(days=1)} (the next trading day)"
    )


def _arrival_rows(
    day: date, arrivals: dict[str, Arrival], recorded_at: datetime
) -> list[dict[str, Any]]:
    return [
        {
            "trading_day": day,
            "merchant_id": merchant_id,
            "cycle": arrival.cycle.value,
            "arrival_date": arrival.arrival_date,
            "provisional": arrival.provisional,
            "recorded_at": recorded_at,
        }
        for merchant_id, arrival in arrivals.items()
    ]


def _describe(totals: Totals) -> str:
    return (
        f"{totals.count} lines, gross {format_fen(totals.gross_fen)}, fees "
        f"{format_fen(totals.fee_fen)}, net {format_fen(totals.net_fen)}"
    )
