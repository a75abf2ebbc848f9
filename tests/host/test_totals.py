"""Settlement totals arithmetic (posbatch.batch.totals)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.batch.model import CardTotals, CardType, Kind, Reconciliation, SettlementTotals
from posbatch.batch.totals import card_type_of_pan, compute_totals, describe_totals, net_fen
from posbatch.errors import BatchError
from posbatch.wire import decode_totals, encode_totals

_D = CardType.DOMESTIC
_F = CardType.FOREIGN


def test_empty_batch_has_zero_totals() -> None:
    """No transactions: every amount and count is zero."""
    assert SettlementTotals() == compute_totals([])


def test_sales_are_debits_voids_and_refunds_credits() -> None:
    """Sales add to debits; voids and refunds add to credits, per card side."""
    entries = [
        (Kind.SALE, 100, _D),
        (Kind.SALE, 250, _D),
        (Kind.VOID, 100, _D),
        (Kind.REFUND, 30, _F),
        (Kind.SALE, 999, _F),
    ]
    expected = SettlementTotals(CardTotals(350, 2, 100, 1), CardTotals(999, 1, 30, 1))
    assert expected == compute_totals(entries)


def test_reconciliation_code_is_set_on_both_halves() -> None:
    """The reconciliation code asked for closes each half."""
    totals = compute_totals([(Kind.SALE, 1, _D)], reconciliation=Reconciliation.BALANCED)
    expected = (Reconciliation.BALANCED, Reconciliation.BALANCED)
    assert expected == (
        totals.domestic.reconciliation,
        totals.foreign.reconciliation,
    )


@pytest.mark.parametrize("kind", [Kind.REVERSAL, Kind.SETTLEMENT, Kind.SIGN_ON])
def test_kinds_outside_totals_are_refused(kind: Kind) -> None:
    """Only sales, voids and refunds count; anything else is a caller's bug."""
    with pytest.raises(BatchError):
        compute_totals([(kind, 1, _D)])


def test_count_over_field_48_is_refused() -> None:
    """A thousand sales on one side do not fit the n3 count."""
    with pytest.raises(BatchError, match="do not fit"):
        compute_totals([(Kind.SALE, 1, _D)] * 1000)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([Kind.SALE, Kind.VOID, Kind.REFUND]),
            st.integers(0, 10**9),
            st.sampled_from([_D, _F]),
        ),
        max_size=50,
    )
)
def test_totals_round_trip_through_field_48(entries: list[tuple[Kind, int, CardType]]) -> None:
    """Whatever the entries, the totals encode and decode to themselves."""
    totals = compute_totals(entries)
    assert totals == decode_totals(encode_totals(totals))


@pytest.mark.parametrize(
    ("pan", "card_type"),
    [("6222021234567890128", _D), ("9555001234567890", _D), ("4111111111111111", _F)],
)
def test_card_type_follows_the_bin(pan: str, card_type: CardType) -> None:
    """UnionPay and 9… BINs are domestic; other cards are foreign."""
    assert card_type == card_type_of_pan(pan)


def test_totals_read_as_people_read_them() -> None:
    """An exception record says sales, credits and net in yuan, not field-48 digits."""
    totals = compute_totals([(Kind.SALE, 7188, _D), (Kind.SALE, 12, _D), (Kind.VOID, 12, _D)])
    expected = "domestic sales 2 / 72.00, credits 1 / 0.12; net 71.88"
    assert expected == describe_totals(totals)


def test_foreign_half_is_named_only_when_it_holds_something() -> None:
    """A foreign card adds the foreign half; the net covers both halves."""
    totals = compute_totals([(Kind.SALE, 100, _D), (Kind.REFUND, 250, _F)])
    assert -150 == net_fen(totals)
    expected = (
        "domestic sales 1 / 1.00, credits 0 / 0.00; foreign sales 0 / 0.00, credits 1 / 2.50;"
        " net -1.50"
    )
    assert expected == describe_totals(totals)
