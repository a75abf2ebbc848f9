"""8-digit BINs (ISO/IEC 7812-1:2017): the longest prefix wins, an 8-digit entry beats the
6-digit one covering it, on cards the host approved (SQLite and PostgreSQL) — and digits
7-8 of a card are never stored or shown in clear."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from clearing_world import MERCHANT_ID, RULES_FROM, SET_AT, World, beijing_time

from posbatch.clearing import (
    CardBin,
    CardClass,
    ClearingRules,
    Funding,
    render_statement,
    statement_csv,
)
from posbatch.errors import ClearingError

SEP_30 = date(2026, 9, 30)
LATER = beijing_time("2026-10-09 12:00")
# Two cards of one 6-digit BIN, 622848 (credit); the 8-digit BIN 62284812 is debit.
PAN_8_DEBIT = "6228481212345677"
PAN_6_CREDIT = "6228489912345673"
SHORT_PAN = "622848121234561"  # 15 digits: matched on its first 6 only (PCI's 16+ rule)
BIN8 = "62284812"


def _bins(world: World) -> None:
    world.standard_rules()  # debit 0.60 % capped at 20.00, credit 0.60 % uncapped
    world.clearing.set_card_bins(
        [CardBin("622848", Funding.CREDIT, RULES_FROM), CardBin(BIN8, Funding.DEBIT, RULES_FROM)],
        now=SET_AT,
    )


def test_an_8_digit_bin_beats_the_6_digit_one_on_approved_cards(world: World) -> None:
    """10,000.00 on a card of 62284812 is debit (capped: 20.00); on 62284899, under the
    same 6 digits, credit (60.00) — before and after the day is cleared."""
    _bins(world)
    till = world.at("2026-09-30 10:00").till()
    till.sale(1_000_000, PAN_8_DEBIT)
    till.sale(1_000_000, PAN_6_CREDIT)
    figures = [
        (line.card_class, line.bin_known, line.fee_fen)
        for line in world.clearing.statement(MERCHANT_ID, SEP_30).lines
    ]
    assert figures == [
        (CardClass.DOMESTIC_DEBIT, True, 2_000),
        (CardClass.DOMESTIC_CREDIT, True, 6_000),
    ]
    world.clearing.clear_day(SEP_30, now=LATER)
    kept = world.clearing.statement(MERCHANT_ID, SEP_30)
    assert kept.cleared
    assert [(line.card_class, line.fee_fen) for line in kept.lines] == [
        (c, f) for c, _k, f in figures
    ]


def test_a_card_under_16_digits_is_matched_on_its_first_6(world: World) -> None:
    _bins(world)
    world.at("2026-09-30 10:00").till().sale(1_000_000, SHORT_PAN)
    (line,) = world.clearing.statement(MERCHANT_ID, SEP_30).lines
    assert (line.card_class, line.fee_fen) == (CardClass.DOMESTIC_CREDIT, 6_000)


def test_digits_7_and_8_are_neither_stored_nor_shown(world: World) -> None:
    """The host keeps a keyed hash of the first 8 digits, never the digits: no column of
    the card's row holds 62284812, and the statement (text and CSV, before and after the
    clearing run) shows the card masked 6/4 beside its class — never the BIN it matched."""
    _bins(world)
    world.at("2026-09-30 10:00").till().sale(10_000, PAN_8_DEBIT)
    with world.store.engine.connect() as connection:
        rows = [
            *connection.execute(sa.text("SELECT * FROM host_transactions")),
            *connection.execute(sa.text("SELECT * FROM host_clearing_lines")),
        ]
    assert rows and not [row for row in rows if any(BIN8 in str(value) for value in row)]
    for _run in range(2):
        statement = world.clearing.statement(MERCHANT_ID, SEP_30)
        for shown in (render_statement(statement), statement_csv(statement)):
            assert "622848******5677" in shown
            assert BIN8 not in shown
        world.clearing.clear_day(SEP_30, now=LATER)


def test_an_8_digit_bin_from_today_that_reprices_a_card_of_today_is_refused(
    world: World,
) -> None:
    """The 8-digit BIN would make today's 622848 12… sale debit: refused, as a 6-digit one."""
    _bins(world)
    world.at("2026-09-30 10:00").till().sale(1_000_000, PAN_6_CREDIT)
    now = beijing_time("2026-09-30 11:00")
    # not this card's 8 digits: it re-prices nothing made today, so it is taken
    world.clearing.set_card_bins([CardBin("62284855", Funding.DEBIT, SEP_30)], now=now)
    with pytest.raises(ClearingError, match="re-price 1 transaction"):
        world.clearing.set_card_bins([CardBin("62284899", Funding.DEBIT, SEP_30)], now=now)


@pytest.mark.parametrize("prefix", ["6", "6228481", "622848123", "6228481x"])
def test_a_bin_prefix_is_2_to_6_digits_or_8(prefix: str) -> None:
    with pytest.raises(ClearingError, match=r"2\.\.6 digits or an 8-digit BIN"):
        CardBin(prefix, Funding.DEBIT, RULES_FROM)


def test_longest_prefix_in_the_rules() -> None:
    """The pure rules: the 8-digit entry (by the card's key) beats 6 and 2 digits; a card
    without a key, or with another one, falls back to its first 6; 8-digit entries match
    nothing when no key function is given."""
    bins = (
        CardBin("62", Funding.DEBIT, RULES_FROM),
        CardBin("622848", Funding.CREDIT, RULES_FROM),
        CardBin(BIN8, Funding.DEBIT, RULES_FROM),
    )
    rules = ClearingRules(card_bins=bins, bin8_key=lambda prefix: f"key-{prefix}")
    day = SEP_30
    assert rules.funding_of("622848******5677", day, f"key-{BIN8}") == (Funding.DEBIT, True)
    assert rules.funding_of("622848******5673", day, "key-62284899") == (Funding.CREDIT, True)
    assert rules.funding_of("622848******5673", day) == (Funding.CREDIT, True)
    assert rules.funding_of("621700******5677", day, "key-62170012") == (Funding.DEBIT, True)
    unkeyed = ClearingRules(card_bins=bins)
    assert unkeyed.funding_of("622848******5677", day, f"key-{BIN8}") == (Funding.CREDIT, True)
    # an 8-digit entry in force only from a later day does not match before it
    later = ClearingRules(
        card_bins=(*bins[:2], CardBin(BIN8, Funding.DEBIT, date(2026, 10, 1))),
        bin8_key=lambda prefix: f"key-{prefix}",
    )
    assert later.funding_of("622848******5677", day, f"key-{BIN8}") == (Funding.CREDIT, True)
