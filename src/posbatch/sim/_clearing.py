"""The merchant's money in the simulation: seeded clearing rules, the nightly clearing run,
and invariant 8 — statements reconcile with the host's approved transactions.

Theory of operation
-------------------
:func:`set_up` draws the clearing rules of a run from the seed's ``clearing`` stream (its
own stream: nothing else shifts): a standard fee schedule (a debit cap or none), merchants
with their own schedule, cycle (T+1, T+0, D+0) and void/refund fee rules, BIN entries for
all but one of the workload's cards (so an unknown BIN is priced too), and the cut-off —
usually 23:00, but on some seeds 12:30, 16:00 or midnight, so that trading days split the
shop's hours and voids, refunds and reversals fall on another day than their sale.

Every night :func:`clear_ended_days` clears each trading day that has ended (as an
acquirer's nightly run does), then :func:`take` copies what the checker needs:

- per (merchant, trading day), the statement's figures (from the clearing run when the
  day is cleared, computed from the records when not) and each cleared day's figures
  computed afresh from the records;
- the host's approved transactions, read from its tables with bare SQL (the rows the
  checker's snapshot reads the same night, :mod:`posbatch.sim._host_rows`) with the moment
  a reversal took each back, summed per (merchant, trading day) by :func:`host_sums` —
  independently of the statement code: only :func:`posbatch.clearing.trading_day`, the
  one function of the trading day, is shared.

:func:`violations` then checks invariant 8: for every trading day, every merchant's
statement gross equals the host's approved transactions of that day (a transaction
reversed after its day's cut-off counts on its day and is taken back on the reversal's),
fees + net = gross over the lines, the statement's adjustments (差错调整) equal what the
back office resolved that trading day (summed by :func:`desk_sums` from the back office's
own export) and its net = gross − fees + those adjustments, a cleared day computed again
gives what the run kept, adjustments included (what was paid never changes), and a
T+1/T+0 arrival is a working day not before the trading day.

So that adjustments are exercised, the back office works every night too
(:func:`work_exceptions`): after the clearing run it resolves some of the open exceptions
— drawn from the seed's own ``backoffice`` stream (no other stream shifts, and nothing
it does reaches a terminal, so digests and outcomes stay as they were) — with one of the
resolutions their kind allows, for the amount the exception records.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Final

from posbatch.backoffice import Actor, ExceptionFilter, ExceptionWork, Resolution, Scope
from posbatch.batch.model import Kind
from posbatch.clearing import (
    ADJUSTMENT_SIGNS,
    CardBin,
    CardClass,
    ClearingRules,
    CreditFeeRule,
    FeeSchedule,
    Funding,
    MerchantTerms,
    SettlementCycle,
    Totals,
    clearing_file,
    trading_day,
    trading_day_bounds,
)
from posbatch.errors import BackOfficeError, ConfigError
from posbatch.host import ClearingStore, HostStore, TransactionStatus
from posbatch.host._clearing import CLEARING_GRACE
from posbatch.sim._host_rows import HostRows, read_host_rows

__all__ = [
    "RECHECK_DAYS_MAX",
    "ClearingSnapshot",
    "DayFigures",
    "clear_ended_days",
    "desk_sums",
    "host_sums",
    "set_up",
    "take",
    "violations",
    "work_exceptions",
]

# Cut-offs a seed may draw (weights): the default most often, and ones inside trading hours.
CUTOFF_CHOICES: Final = ((time(23, 0), 5), (time(12, 30), 2), (time(16, 0), 2), (time(0, 0), 1))
# Cleared days computed again each night: the last few (all of them at the final check).
RECHECK_DAYS_MAX: Final = 7
# The workload's cards by BIN; one is left out on purpose (an unknown BIN is priced as credit).
SIM_BINS: Final = (("622202", Funding.DEBIT), ("622588", Funding.CREDIT),
                   ("411111", Funding.CREDIT), ("555555", Funding.CREDIT))  # fmt: skip
_SIGN: Final = {Kind.SALE: 1, Kind.VOID: -1, Kind.REFUND: -1}
# The share of open exceptions the back office resolves each night.
RESOLVE_SHARE: Final = 0.5
DESK: Final = Actor("sim-desk", "ops", "sim")


def _rates(generator: random.Random) -> dict[CardClass, Decimal]:
    domestic = Decimal(generator.choice(("0.0038", "0.0055", "0.006", "0.0078")))
    foreign = Decimal(generator.choice(("0.018", "0.025")))
    return {
        CardClass.DOMESTIC_DEBIT: domestic,
        CardClass.DOMESTIC_CREDIT: domestic,
        CardClass.FOREIGN_DEBIT: foreign,
        CardClass.FOREIGN_CREDIT: foreign,
    }


def set_up(
    store: HostStore, generator: random.Random, merchant_ids: Sequence[str], *, start: datetime
) -> date:
    """The run's clearing rules, entered (as an operator would) before its first day; the
    first trading day they apply to."""
    clearing = ClearingStore(store)
    entered = start - timedelta(days=2)
    first_day = trading_day(start) - timedelta(days=1)
    cap = generator.choice((None, 2_000, 2_500))
    instant = Decimal(generator.choice(("0", "0.0005", "0.001")))
    clearing.set_fee_schedule(
        FeeSchedule(None, first_day, _rates(generator), {CardClass.DOMESTIC_DEBIT: cap},
                    instant_rate=instant),
        now=entered,
    )  # fmt: skip
    clearing.set_card_bins(
        [CardBin(prefix, funding, first_day) for prefix, funding in SIM_BINS], now=entered
    )
    rules = list(CreditFeeRule)
    for merchant_id in merchant_ids:
        if generator.random() < 0.3:
            clearing.set_fee_schedule(
                FeeSchedule(merchant_id, first_day, _rates(generator),
                            {CardClass.DOMESTIC_DEBIT: generator.choice((None, 1_300))},
                            instant_rate=instant),
                now=entered,
            )  # fmt: skip
        if generator.random() < 0.5:
            clearing.set_merchant_terms(
                MerchantTerms(
                    merchant_id,
                    first_day,
                    generator.choice((SettlementCycle.T1, SettlementCycle.T0, SettlementCycle.D0)),
                    generator.choice(rules),
                    generator.choice(rules),
                ),
                now=entered,
            )
    cutoff = generator.choices(
        [choice for choice, _weight in CUTOFF_CHOICES],
        [weight for _choice, weight in CUTOFF_CHOICES],
    )[0]
    if cutoff != time(23, 0):
        clearing.set_cutoff(first_day, cutoff, now=entered - timedelta(days=1))
    return first_day


def clear_ended_days(
    store: HostStore, now: datetime, *, since: date, rules: ClearingRules | None = None
) -> list[date]:
    """The nightly run: clear every trading day from ``since`` that ended (with the grace)
    and is not cleared yet; return them. ``rules``: as read by ``ClearingStore.rules`` this
    night (read here if not given)."""
    clearing = ClearingStore(store)
    rules = rules or clearing.rules()
    cleared = []
    day = since
    while trading_day_bounds(day, rules.cutoffs)[1] + CLEARING_GRACE <= now:
        if clearing.cleared_day(day) is None:
            clearing.clear_day(day, now=now, rules=rules)
            cleared.append(day)
        day += timedelta(days=1)
    return cleared


def work_exceptions(store: HostStore, generator: random.Random, now: datetime) -> int:
    """The back office's night: resolve some open exceptions (seeded); how many."""
    work = ExceptionWork(store)
    resolved = 0
    for item in list(work.export(Scope(None), ExceptionFilter())):
        if generator.random() >= RESOLVE_SHARE:
            continue
        resolution = generator.choice(item.resolutions)
        if resolution.moves_money and item.natural_amount_fen is None:
            if Resolution.CONFIRM_HOST not in item.resolutions:
                continue
            resolution = Resolution.CONFIRM_HOST
        try:
            work.resolve(DESK, [item.exception_id], resolution.value, "sim: nightly work", now=now)
        except (BackOfficeError, ConfigError):
            continue  # refused (its amount, a cleared day): left open, as a person would
        resolved += 1
    return resolved


def desk_sums(
    rows: Iterable[tuple[str, str, int | None, datetime]], day_of: Callable[[datetime], date]
) -> dict[tuple[str, date], int]:
    """(merchant, trading day) → the signed fen the back office's resolutions of that day
    move; ``rows``: (merchant_id, resolution, amount_fen, resolved_at)."""
    sums: dict[tuple[str, date], int] = {}
    for merchant_id, resolution, amount_fen, resolved_at in rows:
        sign = ADJUSTMENT_SIGNS[resolution]
        if sign and amount_fen is not None:
            key = (merchant_id, day_of(resolved_at))
            sums[key] = sums.get(key, 0) + sign * amount_fen
    return sums


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One merchant's statement figures of one trading day."""

    merchant_id: str
    trading_day: date
    total: Totals
    cycle: SettlementCycle
    arrival: date
    arrival_working: bool  # the arrival date is a working day (for T+1 / T+0)
    cleared: bool
    recomputed: Totals | None  # a cleared day computed again from the records
    adjustment_fen: int = 0  # the statement's adjustments (差错调整)
    recomputed_adjustment_fen: int | None = None  # a cleared day's, computed again

    @property
    def net_fen(self) -> int:
        """What the statement pays: gross - fees + adjustments."""
        return self.total.net_fen + self.adjustment_fen


@dataclass(frozen=True, slots=True)
class ClearingSnapshot:
    """What invariant 8 reads, copied at the end of a simulated day."""

    figures: tuple[DayFigures, ...]
    host_sums: tuple[tuple[str, date, int, int], ...]  # merchant, day, count, gross fen
    terminal_of: tuple[tuple[str, str], ...]  # merchant → a terminal of it (for the trace)
    # merchant, day, signed fen the back office's resolutions of that day move
    adjustments: tuple[tuple[str, date, int], ...] = ()


def host_sums(
    rows: Iterable[tuple[str, int, Kind, int, str, datetime]],
    reversed_at: dict[int, datetime],
    day_of: Callable[[datetime], date],
) -> dict[tuple[str, date], list[int]]:
    """(merchant, trading day) → [count, gross] from the host's transactions.

    ``rows``: (merchant_id, transaction_id, kind, amount_fen, status, approved_at). A
    standing approval counts on its trading day; one a reversal took back after its day
    counts on its day and is taken back (count and amount) on the reversal's day; one
    taken back within its day (or overtaken by its reversal) counts nowhere.
    """
    sums: dict[tuple[str, date], list[int]] = {}

    def add(merchant_id: str, day: date, signed_fen: int) -> None:
        entry = sums.setdefault((merchant_id, day), [0, 0])
        entry[0] += 1
        entry[1] += signed_fen

    for merchant_id, transaction_id, kind, amount_fen, status, approved_at in rows:
        signed = _SIGN[kind] * amount_fen
        approved_day = day_of(approved_at)
        if status in (TransactionStatus.APPROVED, TransactionStatus.VOIDED):
            add(merchant_id, approved_day, signed)
        elif status == TransactionStatus.REVERSED:
            taken_back = reversed_at.get(transaction_id)
            if taken_back is None:
                continue  # its reversal overtook it: it never stood
            reversed_day = day_of(taken_back)
            if reversed_day != approved_day:
                add(merchant_id, approved_day, signed)
                add(merchant_id, reversed_day, -signed)
    return sums


def take(
    store: HostStore,
    terminal_ids: Sequence[str],
    *,
    since: date,
    now: datetime,
    final: bool,
    host_rows: HostRows | None = None,
    rules: ClearingRules | None = None,
) -> ClearingSnapshot:
    """Statements' figures and the host's own sums, for the trading days from ``since`` to the
    one under way at ``now``. ``host_rows``: the host's records already read this night (the
    checker's snapshot reads the same; read here if not given); ``rules``: the clearing rules
    read this night (the nightly run's; read here if not given)."""
    clearing = ClearingStore(store)
    rules = rules or clearing.rules()
    until = rules.trading_day(now)
    host = read_host_rows(store.engine) if host_rows is None else host_rows
    rows = []
    terminal_of: dict[str, str] = {}
    reversed_ids = []
    for terminal_id in terminal_ids:
        merchant_id = host.merchant_of.get(terminal_id)
        if merchant_id is None:
            continue
        terminal_of.setdefault(merchant_id, terminal_id)
        for txn in host.transactions.get(terminal_id, ()):
            if txn.kind not in _SIGN:
                continue
            rows.append(
                (merchant_id, txn.transaction_id, Kind(txn.kind), txn.amount_fen, txn.status,
                 txn.created_at)
            )  # fmt: skip
            if txn.status == TransactionStatus.REVERSED:
                reversed_ids.append(txn.transaction_id)
    sums = host_sums(rows, clearing.reversal_times(reversed_ids), rules.trading_day)
    desk = desk_sums(
        (
            (item.merchant_id, item.resolution, item.amount_fen, item.resolved_at)
            for item in ExceptionWork(store).export(Scope(None), ExceptionFilter(status=None))
            if item.resolution is not None and item.resolved_at is not None
        ),
        rules.trading_day,
    )
    figures = []
    day = since
    while day <= until:
        run = clearing.cleared_day(day)
        done = run is not None
        # a day cleared on an earlier night (the one just cleared is what it kept, trivially)
        recheck = (
            run is not None
            and run.cleared_at < now
            and (final or (until - day).days < RECHECK_DAYS_MAX)
        )
        again: dict[str, tuple[Totals, int]] = {}
        if recheck:
            start, end = trading_day_bounds(day, rules.cutoffs)
            computed = clearing_file(
                day, clearing.records(start, end), rules, clearing.adjustment_records(start, end)
            )
            again = {line.merchant_id: (line.total, line.adjustment_fen) for line in computed.lines}
        for summary in clearing.summaries(day, rules=rules):
            arrival = summary.arrival
            figures.append(
                DayFigures(
                    summary.merchant_id,
                    day,
                    summary.total,
                    arrival.cycle,
                    arrival.arrival_date,
                    rules.calendar.is_working_day(arrival.arrival_date),
                    done,
                    again.get(summary.merchant_id, (Totals(), 0))[0] if recheck else None,
                    summary.adjustment_fen,
                    again.get(summary.merchant_id, (Totals(), 0))[1] if recheck else None,
                )
            )
        day += timedelta(days=1)
    return ClearingSnapshot(
        tuple(figures),
        tuple(
            (merchant_id, day, count, gross)
            for (merchant_id, day), (count, gross) in sorted(sums.items())
            if since <= day <= until
        ),
        tuple(sorted(terminal_of.items())),
        tuple(
            (merchant_id, day, fen)
            for (merchant_id, day), fen in sorted(desk.items())
            if since <= day <= until
        ),
    )


def violations(snapshot: ClearingSnapshot) -> list[tuple[str, str]]:
    """Invariant 8's violations as (terminal_id, message); empty when the money reconciles."""
    terminal_of = dict(snapshot.terminal_of)
    found: list[tuple[str, str]] = []
    statements = {(f.merchant_id, f.trading_day): f for f in snapshot.figures}
    host = {
        (merchant_id, day): (count, gross) for merchant_id, day, count, gross in snapshot.host_sums
    }
    desk = {(merchant_id, day): fen for merchant_id, day, fen in snapshot.adjustments}
    for key in sorted(set(statements) | set(host) | set(desk)):
        merchant_id, day = key
        figures = statements.get(key)
        count, gross = host.get(key, (0, 0))
        where = terminal_of.get(merchant_id, merchant_id)
        shown = (0, 0) if figures is None else (figures.total.count, figures.total.gross_fen)
        if shown != (count, gross):
            found.append((where, f"merchant {merchant_id} trading day {day}: statement has "
                                 f"{shown[0]} lines, gross {shown[1]} fen; the host's approved "
                                 f"transactions {count}, {gross} fen"))  # fmt: skip
        adjusted = desk.get(key, 0)
        shown_adjustment = 0 if figures is None else figures.adjustment_fen
        if shown_adjustment != adjusted:
            found.append((where, f"merchant {merchant_id} trading day {day}: statement has "
                                 f"adjustments of {shown_adjustment} fen; the back office "
                                 f"resolved {adjusted} fen that day"))  # fmt: skip
        if figures is None:
            continue
        total = figures.total
        if total.fee_fen + total.net_fen != total.gross_fen:
            found.append((where, f"merchant {merchant_id} trading day {day}: fees "
                                 f"{total.fee_fen} + net {total.net_fen} != gross "
                                 f"{total.gross_fen}"))  # fmt: skip
        elif figures.net_fen != total.gross_fen - total.fee_fen + adjusted:
            found.append((where, f"merchant {merchant_id} trading day {day}: net "
                                 f"{figures.net_fen} != gross {total.gross_fen} - fees "
                                 f"{total.fee_fen} + adjustments {adjusted}"))  # fmt: skip
        if figures.recomputed is not None and figures.recomputed != total:
            found.append((where, f"merchant {merchant_id} trading day {day} was cleared "
                                 f"as {total}; computed again: {figures.recomputed}"))  # fmt: skip
        if (
            figures.recomputed_adjustment_fen is not None
            and figures.recomputed_adjustment_fen != figures.adjustment_fen
        ):
            found.append((where, f"merchant {merchant_id} trading day {day} was cleared "
                                 f"with adjustments of {figures.adjustment_fen} fen; computed "
                                 f"again: {figures.recomputed_adjustment_fen}"))  # fmt: skip
        if figures.cycle in (SettlementCycle.T1, SettlementCycle.T0) and (
            not figures.arrival_working
            or figures.arrival < day + timedelta(days=figures.cycle is SettlementCycle.T1)
        ):
            found.append((where, f"merchant {merchant_id} trading day {day}: "
                                 f"{figures.cycle} arrival {figures.arrival} is not a "
                                 "working day after it"))  # fmt: skip
    return found
