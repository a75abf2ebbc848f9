"""Yuan typed by people to fen, and receipts in 32 and 80 columns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from terminal_world import PAN, World

from posbatch.batch.model import CardTotals, Kind, Reconciliation, SettlementTotals
from posbatch.errors import ConfigError
from posbatch.host import FaultAction, FaultRule
from posbatch.terminal import (
    BatchRow,
    StateRow,
    TxnRow,
    format_fen,
    parse_yuan,
    render_receipt,
    render_settlement_report,
)
from posbatch.terminal._receipts import _columns
from posbatch.wire import encode_totals
from testbed import MERCHANT_ID, TERMINAL_ID


@pytest.mark.parametrize(
    ("typed", "fen"),
    [("12.50", 1250), ("12.5", 1250), ("12", 1200), ("0.01", 1), (" 7.05 ", 705)],
)
def test_yuan_to_fen_is_exact(typed: str, fen: int) -> None:
    """Typed yuan become exact integer fen."""
    assert parse_yuan(typed) == fen


@pytest.mark.parametrize(
    "typed",
    ["12.505", "-1", "+1", "1e3", "1,000", "nan", "inf", "", "0", "0.00", ".5", "１２", "1.2.3"],
)
def test_bad_amounts_are_refused(typed: str) -> None:
    """Three decimals, signs, exponents, separators, zero and full-width digits are refused."""
    with pytest.raises(ConfigError):
        parse_yuan(typed)


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("10000000000", "too large: at most 10 digits of yuan (9999999999.99)"),
        ("12345678901.5", "too large: at most 10 digits of yuan (9999999999.99)"),
        ("12.505", "must be yuan with at most 2 decimals"),
    ],
)
def test_a_refused_amount_says_what_is_wrong(typed: str, reason: str) -> None:
    """11 digits of yuan are 'too large', not 'at most 2 decimals'."""
    with pytest.raises(ConfigError) as error:
        parse_yuan(typed)
    assert reason in str(error.value)


def test_the_largest_amount_field_4_carries_is_accepted() -> None:
    """9999999999.99 yuan (and leading zeros) is 999,999,999,999 fen."""
    assert (parse_yuan("9999999999.99"), parse_yuan("000012.50")) == (999_999_999_999, 1250)


@given(st.integers(min_value=1, max_value=999_999_999_999))
def test_fen_round_trip(amount_fen: int) -> None:
    """format_fen then parse_yuan gives the same fen."""
    assert parse_yuan(format_fen(amount_fen)) == amount_fen


STATE = StateRow(MERCHANT_ID, TERMINAL_ID, "h:1", 9, 1, False, 0, "2026-11-25T09:30:00")
ROW = TxnRow(
    txn_id=1,
    batch_id=1,
    batch_no=3,
    kind="sale",
    stan=7,
    amount_fen=1250,
    pan_sealed="x",
    pan_masked="622202*********0128",
    expiry=None,
    card_type="00",
    state="approved",
    created_at="2026-11-25T09:31:00",
    updated_at="2026-11-25T09:31:01",
    response_code="00",
    rrn="000000123456",
    auth_code="654321",
    host_time="093101",
    host_date="1125",
)


@pytest.mark.parametrize("width", [32, 80])
def test_receipt_fits_its_width(width: int) -> None:
    """No receipt line is wider than the paper (Chinese characters count double)."""
    text = render_receipt(ROW, STATE, width=width)
    assert max(_columns(line) for line in text.splitlines()) <= width


def test_receipt_shows_what_the_cardholder_checks() -> None:
    """Batch, STAN, masked PAN, amount in yuan, RRN and auth code are on the slip."""
    text = render_receipt(ROW, STATE, width=32)
    for expected in ("000003", "000007", "622202*********0128", "12.50", "000000123456", "654321"):
        assert expected in text


def test_settlement_report_says_balanced() -> None:
    """The settlement report shows the verdict and the totals of both sides."""
    totals = SettlementTotals(CardTotals(1250, 1, 0, 0, Reconciliation.BALANCED))
    batch = BatchRow(
        1,
        3,
        "closed",
        "2026-11-25T09:30:00",
        terminal_totals=encode_totals(totals),
        host_totals=encode_totals(totals),
        balanced=True,
        close_reason="balanced",
    )
    text = render_settlement_report(batch, [ROW], STATE, width=80)
    assert ("对账平 BALANCED" in text, text.count("1 / 12.50")) == (True, 2)
    # when the batch opened, in Beijing time (the journal keeps UTC): 09:30 UTC is 17:30
    assert "2026-11-25 17:30" in next(line for line in text.splitlines() if "OPENED" in line)


def test_settlement_report_lists_what_happened(world: World) -> None:
    """A reversal in the batch appears among the report's exceptions."""
    world.terminal.sign_on()
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    world.terminal.sale(1250, PAN)
    world.terminal.settle()
    batch = world.terminal.journal.batches()[0]
    text = render_settlement_report(
        batch,
        world.terminal.journal.transactions(batch.batch_id),
        world.terminal.state(),
        exceptions=world.terminal.batch_notes(batch.batch_no),
        width=80,
    )
    assert ("unanswered: sale STAN 000002" in text, "reversed: reversal of sale" in text) == (
        True,
        True,
    )
