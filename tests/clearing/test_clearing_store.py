"""Clearing over the host's own records (SQLite and PostgreSQL): statements, clearing runs,
the rules the store keeps, and what it refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, time, timedelta

import pytest
import sqlalchemy as sa
from clearing_world import (
    CREDIT_PAN,
    MERCHANT_ID,
    OTHER_MERCHANT_ID,
    RULES_FROM,
    SET_AT,
    World,
    beijing_time,
    standard_rates,
)

from posbatch.batch.model import Kind
from posbatch.clearing import (
    CardBin,
    CardClass,
    CreditFeeRule,
    FeeSchedule,
    Funding,
    LineKind,
    MerchantTerms,
    SettlementCycle,
    summary_parts,
    trading_day_bounds,
)
from posbatch.errors import ClearingError
from posbatch.host import ClearingStore, ExceptionKind
from posbatch.host import _schema as t

SEP_29 = date(2026, 9, 29)
SEP_30 = date(2026, 9, 30)
OCT_1 = date(2026, 10, 1)
LATER = beijing_time("2026-10-09 12:00")  # every day of these tests has ended by then


def test_the_issue_fee_examples_through_the_host(world: World) -> None:
    """100.00 debit → 0.60; 10,000.00 debit → 20.00 (cap); 10,000.00 credit → 60.00;
    0.55 → 0.00 — on sales the host approved."""
    world.standard_rules()
    till = world.at("2026-09-30 10:00").till()
    till.sale(10_000)
    till.sale(1_000_000)
    till.sale(1_000_000, CREDIT_PAN)
    till.sale(55)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert [60, 2_000, 6_000, 0] == [line.fee_fen for line in statement.lines]
    assert (2_010_055, 8_060, 2_001_995) == (
        statement.gross_fen,
        statement.fee_fen,
        statement.net_fen,
    )


def test_a_sale_at_23_30_is_on_the_next_trading_day(world: World) -> None:
    """The host approves at 23:30 on 29 Sep: 30 Sep's statement, paid on 8 Oct."""
    world.standard_rules()
    world.at("2026-09-29 23:30").till().sale(10_000)
    before = world.clearing.statement(MERCHANT_ID, SEP_29)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert (0, 1, date(2026, 10, 8)) == (
        before.total.count,
        statement.total.count,
        statement.arrival.arrival_date,
    )


def test_void_and_partial_refund_through_the_host(world: World) -> None:
    """A voided sale nets zero with its fee returned; a refund keeps the fee (defaults)."""
    world.standard_rules()
    till = world.at("2026-09-30 10:00").till()
    voided = till.sale(10_000)
    till.void(voided, 10_000)
    kept = till.sale(20_000)
    till.refund(kept, 5_000)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert [
        (LineKind.SALE, 10_000, 60),
        (LineKind.VOID, -10_000, -60),
        (LineKind.SALE, 20_000, 120),
        (LineKind.REFUND, -5_000, 0),
    ] == [(line.kind, line.amount_fen, line.fee_fen) for line in statement.lines]


def test_a_reversal_after_the_cut_off_is_taken_back_the_next_day(world: World) -> None:
    """A shop that did not settle: its 22:50 sale is reversed at 23:10. The 29 Sep statement
    keeps the sale; 30 Sep's takes it back, amount and fee."""
    world.standard_rules()
    till = world.at("2026-09-29 22:50").till()
    stan = till.sale(10_000)
    world.at("2026-09-29 23:10")
    till.reverse(stan, 10_000)
    first = world.clearing.statement(MERCHANT_ID, SEP_29)
    second = world.clearing.statement(MERCHANT_ID, SEP_30)
    (line,) = second.lines
    assert ((10_000, 60), (LineKind.REVERSAL, LineKind.SALE, -10_000, -60)) == (
        (first.gross_fen, first.fee_fen),
        (line.kind, line.reverses, line.amount_fen, line.fee_fen),
    )


def test_a_refund_of_an_earlier_batch_returns_the_fee_priced_then(world: World) -> None:
    """With refunds 'returned': a refund on 30 Sep of a capped 29 Sep sale (batch settled)
    returns half of the 20.00 it cost."""
    world.standard_rules(refund_fee=CreditFeeRule.RETURNED)
    till = world.at("2026-09-29 10:00").till()
    stan = till.sale(1_000_000)
    till.settle()
    world.at("2026-09-30 10:00")
    till.refund(stan, 500_000, batch_no=1)
    (line,) = world.clearing.statement(MERCHANT_ID, SEP_30).lines
    assert (-500_000, -1_000, SEP_29) == (
        line.amount_fen,
        line.fee_fen,
        line.original.trading_day if line.original else None,
    )


def test_batches_and_money_exceptions_are_on_the_statement(world: World) -> None:
    """A batch settled balanced, one closed by the back office while holding a sale: both
    listed with how they closed; the back office's exception (差错) is listed too."""
    world.standard_rules()
    till = world.at("2026-09-30 10:00").till()
    till.sale(10_000)
    till.settle()
    till.sale(20_000)
    world.at("2026-09-30 11:00")
    world.core.advance_batch(till.terminal_id, "cut-over fix")
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert [
        (1, 10_000, "已结算 对账平 settled, balanced"),
        (1, 20_000, "后台结批 closed by the back office"),
    ] == [(batch.count, batch.gross_fen, batch.settled) for batch in statement.batches]
    assert [(ExceptionKind.BATCH_ADVANCED, 20_000)] == [
        (record.kind, record.host_amount_fen) for record in statement.exceptions
    ]


def test_a_merchant_s_statement_holds_only_its_own(world: World) -> None:
    """Two merchants trade the same day: each statement holds its own lines only."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    world.till("10000002", OTHER_MERCHANT_ID).sale(99_900)
    mine = world.clearing.statement(MERCHANT_ID, SEP_30)
    theirs = world.clearing.statement(OTHER_MERCHANT_ID, SEP_30)
    document = world.clearing.clearing_file(SEP_30)
    assert ([10_000], [99_900]) == (
        [line.amount_fen for line in mine.lines],
        [line.amount_fen for line in theirs.lines],
    )
    assert [(MERCHANT_ID, 10_000), (OTHER_MERCHANT_ID, 99_900)] == [
        (line.merchant_id, line.total.gross_fen) for line in document.lines
    ]


def test_an_unknown_merchant_is_an_error(world: World) -> None:
    """A statement of a merchant with no terminal here says so."""
    with pytest.raises(ClearingError, match="has no terminal on this host"):
        world.clearing.statement("898110054119999", SEP_30)


# --- clearing runs ---------------------------------------------------------------------


def _trade(world: World) -> None:
    world.standard_rules()
    till = world.at("2026-09-29 22:50").till()
    stan = till.sale(10_000)
    till.sale(1_000_000, CREDIT_PAN)
    world.at("2026-09-30 09:00")
    till.void(stan, 10_000)
    till.sale(33_333)


def test_a_cleared_day_reads_back_as_it_was_computed(world: World) -> None:
    """After the clearing run, the statement, the summaries and the clearing file read from
    what it kept are those computed before it."""
    _trade(world)
    computed = world.clearing.statement(MERCHANT_ID, SEP_30)
    summaries = world.clearing.summaries(SEP_30)
    document = world.clearing.clearing_file(SEP_30)
    world.clearing.clear_day(SEP_30, now=LATER)
    kept = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert (computed.lines, computed.total, False, True) == (
        kept.lines,
        kept.total,
        computed.cleared,
        kept.cleared,
    )
    cleared = world.clearing.clearing_file(SEP_30)
    assert (summaries, document, False, True) == (
        world.clearing.summaries(SEP_30),
        replace(cleared, cleared=False),
        document.cleared,
        cleared.cleared,
    )


def test_the_kept_sums_are_the_sums_of_the_kept_lines(world: World) -> None:
    """What a statement run reads (the kept sums) adds up the lines the run kept."""
    _trade(world)
    world.clearing.clear_day(SEP_30, now=LATER)
    lines = world.clearing.statement(MERCHANT_ID, SEP_30).lines
    (summary,) = world.clearing.summaries(SEP_30)
    by_class: dict[CardClass, tuple[int, int, int]] = {}
    for part in summary_parts(lines):
        count, gross, fee = by_class.get(part.card_class, (0, 0, 0))
        by_class[part.card_class] = (
            count + part.totals.count,
            gross + part.totals.gross_fen,
            fee + part.totals.fee_fen,
        )
    assert by_class == {
        card_class: (totals.count, totals.gross_fen, totals.fee_fen)
        for card_class, totals in summary.by_class
        if totals.count
    }


def test_a_day_is_cleared_once_and_never_rewritten(world: World) -> None:
    """Clearing again changes nothing; a row written into the cleared day afterwards (a late
    write) makes the next run refuse rather than rewrite what was paid."""
    _trade(world)
    first = world.clearing.clear_day(SEP_30, now=LATER)
    again = world.clearing.clear_day(SEP_30, now=LATER + timedelta(days=1))
    assert first == again
    start, _end = trading_day_bounds(SEP_30)
    with world.store.transaction() as tx:
        row = tx.connection.execute(t.transactions.select().limit(1)).first()
        assert row is not None
        values = dict(row._mapping)
        values.pop("transaction_id")
        values.update(stan=999_999, created_at=(start + timedelta(hours=1)).replace(tzinfo=None))
        tx.connection.execute(t.transactions.insert().values(**values))
    with pytest.raises(ClearingError, match="never rewritten"):
        world.clearing.clear_day(SEP_30, now=LATER)


def test_a_day_under_way_cannot_be_cleared(world: World) -> None:
    """30 Sep ends at 23:00 Beijing; the run is refused until 23:05 (the grace)."""
    world.standard_rules()
    with pytest.raises(ClearingError, match="can be cleared from 2026-09-30 23:05"):
        world.clearing.clear_day(SEP_30, now=beijing_time("2026-09-30 23:04"))
    assert world.clearing.clear_day(SEP_30, now=beijing_time("2026-09-30 23:05")).totals.count == 0


def test_cleared_days_are_listed(world: World) -> None:
    """Each run is listed with its totals."""
    _trade(world)
    world.clearing.clear_day(SEP_29, now=LATER)
    world.clearing.clear_day(SEP_30, now=LATER)
    assert [(SEP_29, 2), (SEP_30, 2)] == [
        (done.trading_day, done.totals.count) for done in world.clearing.cleared_days()
    ]


# --- the rules the store keeps --------------------------------------------------------


def test_a_merchant_schedule_wins_and_history_is_kept(world: World) -> None:
    """The standard applies until the merchant's own schedule takes effect; both stay."""
    world.standard_rules()
    own = FeeSchedule(MERCHANT_ID, OCT_1, standard_rates(debit="0.38"))
    world.clearing.set_fee_schedule(own, now=SET_AT)
    till = world.at("2026-09-30 10:00").till()
    till.sale(10_000)
    world.at("2026-10-01 10:00")
    till.sale(10_000)
    assert ([60], [38], 2) == (
        [line.fee_fen for line in world.clearing.statement(MERCHANT_ID, SEP_30).lines],
        [line.fee_fen for line in world.clearing.statement(MERCHANT_ID, OCT_1).lines],
        len(world.clearing.fee_schedules(every=True)),
    )


def test_the_later_entry_of_one_day_wins(world: World) -> None:
    """Two schedules for the same day: the one entered last is in force (a correction)."""
    world.standard_rules()
    world.clearing.set_fee_schedule(
        FeeSchedule(None, RULES_FROM, standard_rates(debit="0.50")), now=SET_AT
    )
    world.at("2026-09-30 10:00").till().sale(10_000)
    assert [50] == [line.fee_fen for line in world.clearing.statement(MERCHANT_ID, SEP_30).lines]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("fees", "cannot take effect on 2026-09-29: trading day 2026-09-30 is under way"),
        ("terms", "cannot take effect on 2026-09-29"),
        ("bin", "cannot take effect on 2026-09-29"),
        ("day", "cannot take effect on 2026-09-29"),
        ("cutoff", "takes effect from a coming trading day"),
    ],
)
def test_nothing_changes_a_day_already_traded(world: World, change: str, message: str) -> None:
    """Rules take effect from the day under way (fees, terms, BINs, overrides) or the next
    (the cut-off) — never earlier: cleared days never change."""
    now = beijing_time("2026-09-30 10:00")
    with pytest.raises(ClearingError, match=message):
        if change == "fees":
            world.clearing.set_fee_schedule(FeeSchedule(None, SEP_29, standard_rates()), now=now)
        elif change == "terms":
            world.clearing.set_merchant_terms(MerchantTerms(None, SEP_29), now=now)
        elif change == "bin":
            world.clearing.set_card_bins([CardBin("62", Funding.DEBIT, SEP_29)], now=now)
        elif change == "day":
            world.clearing.set_working_day(SEP_29, False, note="typhoon", now=now)
        else:
            world.clearing.set_cutoff(SEP_30, time(22, 0), now=now)


def test_a_cut_off_change_moves_the_days_after_it(world: World) -> None:
    """From 1 Oct days end at 22:00: a 22:30 sale on 1 Oct trades on 2 Oct."""
    world.standard_rules()
    world.clearing.set_cutoff(OCT_1, time(22, 0), now=beijing_time("2026-09-30 10:00"))
    world.at("2026-10-01 22:30").till().sale(10_000)
    assert (0, 1) == (
        world.clearing.statement(MERCHANT_ID, OCT_1).total.count,
        world.clearing.statement(MERCHANT_ID, date(2026, 10, 2)).total.count,
    )


def test_overrides_and_published_years_reach_the_arrival(world: World) -> None:
    """An override and a published year, kept in the store, decide the arrival date."""
    now = beijing_time("2026-09-30 10:00")
    world.clearing.set_working_day(date(2026, 10, 8), False, note="test override", now=now)
    world.clearing.publish_year(2027, note="notice entered", now=now)
    assert (date(2026, 10, 9), date(2027, 1, 4), False) == (
        world.clearing.arrival(SEP_30).arrival_date,
        world.clearing.arrival(date(2026, 12, 31)).arrival_date,
        world.clearing.arrival(date(2026, 12, 31)).provisional,
    )
    world.clearing.set_working_day(date(2026, 10, 8), None, note="", now=now)
    assert date(2026, 10, 8) == world.clearing.arrival(SEP_30).arrival_date


def test_a_merchant_on_d0_pays_the_instant_rate(world: World) -> None:
    """A D+0 merchant's sale costs the schedule's instant rate more, paid out the same day."""
    world.clearing.set_fee_schedule(
        FeeSchedule(None, RULES_FROM, standard_rates(), instant_rate=standard_rates("0.05")[
            CardClass.DOMESTIC_DEBIT]), now=SET_AT)  # fmt: skip
    world.clearing.set_card_bins([CardBin("622202", Funding.DEBIT, RULES_FROM)], now=SET_AT)
    world.set_cycle(MERCHANT_ID, SettlementCycle.D0)
    world.at("2026-10-03 10:00").till().sale(10_000)
    statement = world.clearing.statement(MERCHANT_ID, date(2026, 10, 3))
    assert (65, date(2026, 10, 3)) == (statement.fee_fen, statement.arrival.arrival_date)


def test_a_reversed_void_restores_the_sale_on_the_statement(world: World) -> None:
    """The void's answer was lost and it was reversed at once: only the sale counts."""
    world.standard_rules()
    till = world.at("2026-09-30 10:00").till()
    stan = till.sale(10_000)
    void_stan = till.void(stan, 10_000)
    till.reverse(void_stan, 10_000, kind=Kind.VOID)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert [(LineKind.SALE, 10_000, 60)] == [
        (line.kind, line.amount_fen, line.fee_fen) for line in statement.lines
    ]


def test_two_clearing_runs_at_once_keep_one(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second run that started before the first one committed meets its rows and returns
    the first run (same figures) instead of failing or writing twice."""
    _trade(world)
    first = world.clearing.clear_day(SEP_30, now=LATER)
    real = ClearingStore.cleared_day
    looked: list[date] = []

    def not_yet(self: ClearingStore, day: date) -> object:
        looked.append(day)
        return None if len(looked) == 1 else real(self, day)  # blind the first look only

    monkeypatch.setattr(ClearingStore, "cleared_day", not_yet)
    assert first == world.clearing.clear_day(SEP_30, now=LATER + timedelta(hours=1))


def test_a_note_with_a_card_number_is_kept_masked(world: World) -> None:
    """An operator who pastes a remark holding a card number into a calendar override or a
    published year's note never writes it to the store in clear: it is kept masked 6/4."""
    now = beijing_time("2026-09-30 10:00")
    world.clearing.set_working_day(
        date(2027, 2, 20), True, note="per call 6222021234567890128 notice", now=now
    )
    world.clearing.publish_year(2027, note="card 6222 0212 3456 7890 128", now=now)
    with world.store.transaction() as tx:
        kept = [
            *tx.connection.execute(sa.select(t.working_days.c.note)).scalars(),
            *tx.connection.execute(sa.select(t.calendar_years.c.note)).scalars(),
        ]
    assert ["per call 622202*********0128 notice", "card 622202*********0128"] == kept


def test_a_cut_off_never_moves_a_cleared_day(world: World) -> None:
    """With a clock behind the clearing runs, a cut-off from a day already cleared is refused
    (it would move that day's end after it was paid), as fees and terms are."""
    world.standard_rules()
    world.clearing.clear_day(OCT_1, now=LATER)
    with pytest.raises(ClearingError, match="cannot take effect on 2026-10-01: trading day "
                       "2026-10-01 is cleared"):  # fmt: skip
        world.clearing.set_cutoff(OCT_1, time(22, 0), now=beijing_time("2026-09-30 10:00"))
    assert () == world.clearing.cutoffs().changes
