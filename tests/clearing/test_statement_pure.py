"""Statements and clearing files as pure functions of records and rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from clearing_world import CREDIT_PAN, DEBIT_PAN, RULES_FROM, beijing_time, standard_rates
from hypothesis import given, settings
from hypothesis import strategies as st

from posbatch.clearing import (
    CAP_FEN_MIN,
    CardBin,
    CardClass,
    ClearingRecord,
    ClearingRules,
    CreditFeeRule,
    FeeSchedule,
    Funding,
    LineKind,
    MerchantTerms,
    OriginalSale,
    SettlementCycle,
    beijing,
    build_statement,
    clearing_file,
    credit_pieces,
    price_lines,
    render_statement,
    returned_fee_fen,
    trading_day,
)
from posbatch.errors import ClearingError
from posbatch.wire import mask_pan
from testbed import MERCHANT_ID, TERMINAL_ID

DAY = date(2026, 9, 30)


def rules(**terms: object) -> ClearingRules:
    return ClearingRules(
        fee_schedules=(
            FeeSchedule(None, RULES_FROM, standard_rates(), {CardClass.DOMESTIC_DEBIT: 2_000}),
        ),
        merchant_terms=(MerchantTerms(None, RULES_FROM, **terms),) if terms else (),  # type: ignore[arg-type]
        card_bins=(
            CardBin("622202", Funding.DEBIT, RULES_FROM),
            CardBin("622588", Funding.CREDIT, RULES_FROM),
        ),
    )


@dataclass
class Ledger:
    """Hand-written host records: sales, and credits pointing at them."""

    records: list[ClearingRecord] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def sale(
        self, at: str, amount_fen: int, pan: str = DEBIT_PAN, *, reversed_at: str | None = None
    ) -> ClearingRecord:
        number = next(self.ids)
        record = ClearingRecord(
            number, MERCHANT_ID, TERMINAL_ID, 1, 1, number, f"{number:012d}", "sale", amount_fen,
            "00", mask_pan(pan), beijing_time(at),
            None if reversed_at is None else beijing_time(reversed_at),
        )  # fmt: skip
        self.records.append(record)
        return record

    def credit(
        self,
        kind: str,
        sale: ClearingRecord,
        at: str,
        amount_fen: int,
        *,
        reversed_at: str | None = None,
    ) -> ClearingRecord:
        number = next(self.ids)
        original = OriginalSale(
            sale.transaction_id, sale.batch_no, sale.stan, sale.amount_fen, sale.card_type,
            sale.pan_masked, sale.approved_at,
        )  # fmt: skip
        approved_at = beijing_time(at)
        siblings = [
            (r.transaction_id, r.amount_fen, r.approved_at, r.reversed_at)
            for r in self.records
            if r.original is not None and r.original.transaction_id == sale.transaction_id
        ] + [(number, amount_fen, approved_at, None)]
        record = ClearingRecord(
            number, MERCHANT_ID, TERMINAL_ID, 1, 1, number, f"{number:012d}", kind, amount_fen,
            sale.card_type, sale.pan_masked, approved_at,
            None if reversed_at is None else beijing_time(reversed_at), original,
            credit_pieces(number, sale.amount_fen, siblings),
        )  # fmt: skip
        self.records.append(record)
        return record


def statement_of(ledger: Ledger, day: date = DAY, **terms: object):  # type: ignore[no-untyped-def]
    return build_statement(MERCHANT_ID, day, ledger.records, rules(**terms))


def test_fees_and_net_of_a_day() -> None:
    """Two debit sales (one capped) and a credit-card sale: fees, net, gross = fees + net."""
    ledger = Ledger()
    ledger.sale("2026-09-30 10:00", 10_000)
    ledger.sale("2026-09-30 11:00", 1_000_000)
    ledger.sale("2026-09-30 12:00", 1_000_000, CREDIT_PAN)
    statement = statement_of(ledger)
    assert (3, 2_010_000, 60 + 2_000 + 6_000, 2_010_000 - 8_060) == (
        statement.total.count,
        statement.gross_fen,
        statement.fee_fen,
        statement.net_fen,
    )


def test_a_sale_after_the_cut_off_belongs_to_the_next_day() -> None:
    """23:30 on 29 Sep is on 30 Sep's statement, not on 29 Sep's."""
    ledger = Ledger()
    ledger.sale("2026-09-29 23:30", 10_000)
    assert (0, 1) == (
        statement_of(ledger, date(2026, 9, 29)).total.count,
        statement_of(ledger).total.count,
    )


def test_a_voided_sale_costs_nothing_by_default() -> None:
    """Void fee rule 'returned' (the default): sale +0.60, void -0.60, net 0."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-30 10:00", 10_000)
    ledger.credit("void", sale, "2026-09-30 10:05", 10_000)
    statement = statement_of(ledger)
    assert ([60, -60], 0, 0) == (
        [line.fee_fen for line in statement.lines],
        statement.gross_fen,
        statement.net_fen,
    )


def test_a_refund_keeps_the_fee_by_default() -> None:
    """Refund fee rule 'kept' (the default): the merchant paid 0.60 and keeps paying it."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-30 10:00", 10_000)
    ledger.credit("refund", sale, "2026-09-30 15:00", 10_000)
    statement = statement_of(ledger)
    assert (0, 60, -60) == (statement.gross_fen, statement.fee_fen, statement.net_fen)


def test_the_refund_rule_returned_gives_the_fee_back_in_proportion() -> None:
    """With refunds 'returned', a half refund gives half the fee back."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-30 10:00", 10_000)
    ledger.credit("refund", sale, "2026-09-30 15:00", 5_000)
    statement = statement_of(ledger, refund_fee=CreditFeeRule.RETURNED)
    assert [60, -30] == [line.fee_fen for line in statement.lines]


def test_the_void_rule_kept_keeps_the_fee() -> None:
    """With voids 'kept', a voided sale still costs its fee."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-30 10:00", 10_000)
    ledger.credit("void", sale, "2026-09-30 10:05", 10_000)
    assert 60 == statement_of(ledger, void_fee=CreditFeeRule.KEPT).fee_fen


def test_a_credit_returns_the_fee_priced_on_the_sale_s_day() -> None:
    """A refund on 30 Sep of a 29 Sep sale returns what the sale cost on 29 Sep."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-29 10:00", 1_000_000)  # capped at 20.00
    ledger.credit("refund", sale, "2026-09-30 10:00", 500_000)
    statement = statement_of(ledger, refund_fee=CreditFeeRule.RETURNED)
    line = statement.lines[0]
    assert (-500_000, -1_000, date(2026, 9, 29)) == (
        line.amount_fen,
        line.fee_fen,
        line.original.trading_day if line.original else None,
    )


def test_a_reversal_after_the_cut_off_is_an_adjustment_on_its_own_day() -> None:
    """Reversed on 1 Oct at 09:00 (batch still open): 30 Sep keeps the sale, 1 Oct takes it
    back — amount and fee — so each day's statement stays as issued."""
    ledger = Ledger()
    ledger.sale("2026-09-30 10:00", 10_000, reversed_at="2026-10-01 09:00")
    before = statement_of(ledger)
    after = statement_of(ledger, date(2026, 10, 1))
    line = after.lines[0]
    assert (10_000, 60) == (before.gross_fen, before.fee_fen)
    assert (LineKind.REVERSAL, LineKind.SALE, -10_000, -60, -9_940) == (
        line.kind,
        line.reverses,
        line.amount_fen,
        line.fee_fen,
        line.net_fen,
    )


def test_a_reversal_within_the_day_leaves_nothing() -> None:
    """Approved and reversed on the same trading day: on no statement at all."""
    ledger = Ledger()
    ledger.sale("2026-09-30 10:00", 10_000, reversed_at="2026-09-30 10:01")
    assert (0, 0) == (
        statement_of(ledger).total.count,
        statement_of(ledger, date(2026, 10, 1)).total.count,
    )


def test_a_missing_schedule_is_an_error_not_a_free_sale() -> None:
    """Without any fee schedule in force, clearing refuses and says what to set."""
    ledger = Ledger()
    ledger.sale("2026-09-30 10:00", 10_000)
    with pytest.raises(ClearingError, match="set-fees"):
        build_statement(MERCHANT_ID, DAY, ledger.records, ClearingRules())


def test_an_unknown_bin_is_priced_as_credit_and_counted() -> None:
    """A card no BIN entry matches pays the uncapped credit rate and is flagged."""
    ledger = Ledger()
    ledger.sale("2026-09-30 10:00", 1_000_000, "6217003810012345677")
    statement = statement_of(ledger)
    assert (6_000, 1, CardClass.DOMESTIC_CREDIT) == (
        statement.fee_fen,
        statement.unknown_bins,
        statement.lines[0].card_class,
    )


def test_statement_lines_never_show_more_than_6_and_4_digits() -> None:
    """Even a record holding a whole card number (a damaged row) is shown masked."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-30 10:00", 10_000)
    ledger.records[0] = sale._replace(pan_masked=DEBIT_PAN)
    assert "622202*********0128" == statement_of(ledger).lines[0].pan_masked


def test_the_clearing_file_agrees_with_the_statements() -> None:
    """One line per merchant with the statement's count, gross, fees, net and arrival."""
    ledger = Ledger()
    sale = ledger.sale("2026-09-30 10:00", 10_000)
    ledger.credit("void", sale, "2026-09-30 10:05", 10_000)
    ledger.sale("2026-09-30 12:00", 1_234_567, CREDIT_PAN)
    statement = statement_of(ledger)
    document = clearing_file(DAY, ledger.records, rules())
    (line,) = document.lines
    assert (statement.total, statement.arrival) == (line.total, line.arrival)


def test_instant_merchants_pay_the_instant_rate_and_arrive_the_same_day() -> None:
    """A D+0 merchant's sale pays the extra rate; the money arrives on the trading day."""
    ledger = Ledger()
    ledger.sale("2026-10-03 10:00", 10_000)
    extra = standard_rates("0.05")[CardClass.DOMESTIC_DEBIT]
    schedule = FeeSchedule(None, RULES_FROM, standard_rates(), instant_rate=extra)
    instant = ClearingRules(
        fee_schedules=(schedule,),
        merchant_terms=(MerchantTerms(MERCHANT_ID, RULES_FROM, SettlementCycle.D0),),
        card_bins=(CardBin("622202", Funding.DEBIT, RULES_FROM),),
    )
    statement = build_statement(MERCHANT_ID, date(2026, 10, 3), ledger.records, instant)
    assert (65, date(2026, 10, 3)) == (statement.fee_fen, statement.arrival.arrival_date)


@pytest.mark.parametrize(
    ("cycle", "moment", "fee_fen", "arrival"),
    [
        # a working day: paid that day, faster than T+1 (the next working day)
        (SettlementCycle.T0, "2026-09-30 10:00", 65, date(2026, 9, 30)),
        # National Day: paid on the next working day, as T+1 pays — no instant rate
        (SettlementCycle.T0, "2026-10-03 10:00", 60, date(2026, 10, 8)),
        (SettlementCycle.T1, "2026-10-03 10:00", 60, date(2026, 10, 8)),
        # D+0 pays on the holiday itself: the instant rate
        (SettlementCycle.D0, "2026-10-03 10:00", 65, date(2026, 10, 3)),
    ],
)
def test_the_instant_rate_is_charged_only_on_days_paid_faster_than_t1(
    cycle: SettlementCycle, moment: str, fee_fen: int, arrival: date
) -> None:
    """T+0 on a non-working day arrives when T+1 would: charging it the instant rate would
    sell the merchant nothing. The statement's schedule line says which it is."""
    ledger = Ledger()
    ledger.sale(moment, 10_000)
    extra = standard_rates("0.05")[CardClass.DOMESTIC_DEBIT]
    schedule = FeeSchedule(None, RULES_FROM, standard_rates(), instant_rate=extra)
    rules = ClearingRules(
        fee_schedules=(schedule,),
        merchant_terms=(MerchantTerms(MERCHANT_ID, RULES_FROM, cycle),),
        card_bins=(CardBin("622202", Funding.DEBIT, RULES_FROM),),
    )
    day = date.fromisoformat(moment[:10])
    statement = build_statement(MERCHANT_ID, day, ledger.records, rules)
    assert (fee_fen, arrival) == (statement.fee_fen, statement.arrival.arrival_date)
    text = render_statement(statement)
    charged = "instant 即时到账 extra 0.05%\n" in text
    waived = "not charged this day" in text
    assert (charged, waived) == (fee_fen == 65, cycle.instant and fee_fen == 60)


# --- no fen created or lost, over any mix ------------------------------------------------

_STEP = st.tuples(
    st.sampled_from(["sale", "void", "refund", "reverse"]),
    st.integers(min_value=1, max_value=3_000_000),
    st.integers(min_value=0, max_value=10_000),  # which earlier item
    st.integers(min_value=1, max_value=4 * 3600),  # seconds later
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(_STEP, min_size=1, max_size=40),
    void_fee=st.sampled_from(CreditFeeRule),
    refund_fee=st.sampled_from(CreditFeeRule),
    cap=st.none() | st.integers(min_value=CAP_FEN_MIN, max_value=3_000),
)
def test_no_fen_is_created_or_lost(
    steps: list[tuple[str, int, int, int]],
    void_fee: CreditFeeRule,
    refund_fee: CreditFeeRule,
    cap: int | None,
) -> None:
    """Over any mix of sales, voids, refunds and reversals spread over days: every line's
    amount = fee + net; every day's statements sum to the day's standing amounts; each sale's
    fees over all days lie between 0 and its own fee (0 when credited in full and returned);
    and no line counts twice."""
    schedule = FeeSchedule(None, RULES_FROM, standard_rates(), {CardClass.DOMESTIC_DEBIT: cap})
    clearing_rules = ClearingRules(
        fee_schedules=(schedule,),
        merchant_terms=(MerchantTerms(None, RULES_FROM, SettlementCycle.T1, void_fee, refund_fee),),
        card_bins=(CardBin("622202", Funding.DEBIT, RULES_FROM),),
    )
    ledger = Ledger()
    moment = beijing_time("2026-09-29 20:00")
    state: dict[int, dict[str, int]] = {}  # sale id → credited, voided
    for action, amount, pick, seconds in steps:
        moment += timedelta(seconds=seconds)
        at = _beijing_text(moment)
        standing = [r for r in ledger.records if r.reversed_at is None]
        sales = [r for r in standing if r.kind == "sale"]
        if action == "sale" or not standing:
            sale = ledger.sale(at, amount)
            state[sale.transaction_id] = {"credited": 0, "voided": 0}
        elif action == "reverse":
            # a reversal takes back a credit, or a sale nothing credits (the host refuses
            # a reversal of a voided sale; a refunded sale's terminal had its answer)
            credited = {r.original.transaction_id for r in standing if r.original is not None}
            targets = [r for r in standing if r.transaction_id not in credited]
            target = targets[pick % len(targets)]
            _reverse(ledger, target, moment)
            if target.original is not None:
                entry = state[target.original.transaction_id]
                entry["credited"] -= target.amount_fen
                entry["voided"] = 0
        elif sales:
            sale = sales[pick % len(sales)]
            left = sale.amount_fen - state[sale.transaction_id]["credited"]
            if left <= 0 or state[sale.transaction_id]["voided"]:
                continue
            if action == "void" and not state[sale.transaction_id]["credited"]:
                ledger.credit("void", sale, at, sale.amount_fen)
                state[sale.transaction_id]["voided"] = 1
                state[sale.transaction_id]["credited"] = sale.amount_fen
            else:
                piece = min(left, amount)
                ledger.credit("refund", sale, at, piece)
                state[sale.transaction_id]["credited"] += piece
    moments = [r.approved_at for r in ledger.records]
    moments += [r.reversed_at for r in ledger.records if r.reversed_at is not None]
    days = sorted({trading_day(moment) for moment in moments})
    lines = []
    for day in days:
        statement = build_statement(MERCHANT_ID, day, ledger.records, clearing_rules)
        assert statement.gross_fen == statement.fee_fen + statement.net_fen
        assert all(line.amount_fen == line.fee_fen + line.net_fen for line in statement.lines)
        lines.extend(statement.lines)
    # every record counts once per placement; net over all days = the standing amounts
    standing_gross = sum(
        (r.amount_fen if r.kind == "sale" else -r.amount_fen)
        for r in ledger.records
        if r.reversed_at is None
    )
    assert standing_gross == sum(line.amount_fen for line in lines)
    # per sale: the fees of the sale and its credits over all days lie in [0, the sale's fee],
    # and are exactly 0 when the standing credits cover it with the fee returned
    by_sale: dict[int, int] = {}
    for record, line in _pairs(ledger, lines):
        sale_id = (
            record.transaction_id if record.original is None else record.original.transaction_id
        )
        by_sale[sale_id] = by_sale.get(sale_id, 0) + line.fee_fen
    for sale_id, fees in by_sale.items():
        sale = next(r for r in ledger.records if r.transaction_id == sale_id)
        own = clearing_rules.schedule_for(MERCHANT_ID, DAY).sale_fee_fen(
            sale.amount_fen, CardClass.DOMESTIC_DEBIT, instant=False
        )
        assert 0 <= fees <= own, (sale_id, fees, own)
        if sale.reversed_at is None and state[sale_id]["credited"] == sale.amount_fen:
            rule = void_fee if state[sale_id]["voided"] else refund_fee
            if rule is CreditFeeRule.RETURNED and not _mixed(ledger, sale_id):
                assert 0 == fees, (sale_id, fees)


def _beijing_text(moment: datetime) -> str:
    return beijing(moment).strftime("%Y-%m-%d %H:%M:%S.%f")


def _mixed(ledger: Ledger, sale_id: int) -> bool:
    """Whether the sale's standing credits are of both kinds (then each kind's own rule)."""
    kinds = {
        r.kind
        for r in ledger.records
        if r.original is not None and r.original.transaction_id == sale_id and r.reversed_at is None
    }
    return len(kinds) > 1


def _reverse(ledger: Ledger, target: ClearingRecord, moment: datetime) -> None:
    index = ledger.records.index(target)
    ledger.records[index] = target._replace(reversed_at=moment)


def _pairs(ledger: Ledger, lines: list) -> list:  # type: ignore[type-arg]
    by_id = {record.transaction_id: record for record in ledger.records}
    return [(by_id[line.transaction_id], line) for line in lines]


def test_price_lines_is_the_one_pricing_of_statements_and_files() -> None:
    """The clearing file's totals are sums of exactly the statement's lines."""
    ledger = Ledger()
    for minute in range(10):
        ledger.sale(f"2026-09-30 10:{minute:02d}", 1_000 + 777 * minute)
    priced = price_lines(DAY, ledger.records, rules())[MERCHANT_ID]
    document = clearing_file(DAY, ledger.records, rules())
    assert sum(line.fee_fen for line in priced) == document.total.fee_fen


def test_a_refund_reversed_after_a_later_one_frees_only_its_own_pieces() -> None:
    """Sale of 0.07 with a 1-fen fee: refund 0.01, refund 0.03, the first reversed, refund
    0.01 again. The standing refunds return 1 fen, not 2 (the case that once made a fen)."""
    t = [beijing_time(f"2026-09-30 10:0{minute}") for minute in range(5)]
    siblings = [(1, 1, t[0], t[2]), (2, 3, t[1], None), (3, 1, t[3], None)]
    pieces = {credit: credit_pieces(credit, 7, siblings) for credit in (2, 3)}
    returned = sum(returned_fee_fen(1, 7, pieces[credit]) for credit in (2, 3))
    assert ({2: ((1, 4),), 3: ((0, 1),)}, 1) == (pieces, returned)


@settings(max_examples=400)
@given(
    amount_fen=st.integers(min_value=1, max_value=12),
    fee_fen=st.integers(min_value=0, max_value=12),
    events=st.lists(
        st.tuples(st.booleans(), st.integers(min_value=1, max_value=12), st.integers(0, 20)),
        max_size=14,
    ),
)
def test_standing_credits_never_return_more_than_the_fee(
    amount_fen: int, fee_fen: int, events: list[tuple[bool, int, int]]
) -> None:
    """Any sequence of credits and reversals of them: the standing credits return between 0
    and the sale's fee, and exactly the fee when they cover the sale."""
    moment = beijing_time("2026-09-30 10:00")
    credits: list[list] = []  # type: ignore[type-arg]  # [id, amount, approved_at, reversed_at]
    for is_credit, amount, pick in events:
        moment += timedelta(seconds=1)
        standing = [c for c in credits if c[3] is None]
        left = amount_fen - sum(c[1] for c in standing)
        if is_credit and left > 0:
            credits.append([len(credits) + 1, min(amount, left), moment, None])
        elif standing and not is_credit:
            standing[pick % len(standing)][3] = moment
    siblings = [tuple(c) for c in credits]
    standing = [c for c in credits if c[3] is None]
    returned = sum(
        returned_fee_fen(fee_fen, amount_fen, credit_pieces(c[0], amount_fen, siblings))  # type: ignore[arg-type]
        for c in standing
    )
    assert 0 <= returned <= fee_fen
    if sum(c[1] for c in standing) == amount_fen:
        assert fee_fen == returned
