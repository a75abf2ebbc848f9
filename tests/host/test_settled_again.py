"""A closed batch settled again with other totals is not a repeat: compared, and on record.

An older copy of the journal, put back by hand, settles a batch the newer journal already
settled — with fewer transactions. Answering it the stored "balanced" let the terminal
close the batch with totals the host never had and left the back office nothing (found by
the simulator's copied-back journals, seeds 18, 22 and 25).
"""

from __future__ import annotations

from host_helpers import PAN, TERMINAL_ID, Terminal

from posbatch.batch.model import Kind, Reconciliation, SettlementTotals
from posbatch.batch.totals import card_type_of_pan, compute_totals
from posbatch.host import HostStore
from posbatch.wire import SettlementResponse


def _totals(*amounts_fen: int) -> SettlementTotals:
    return compute_totals((Kind.SALE, amount, card_type_of_pan(PAN)) for amount in amounts_fen)


def _settle(term: Terminal, totals: SettlementTotals) -> SettlementResponse:
    answer = term.settle(totals, batch_no=1)
    assert isinstance(answer, SettlementResponse)
    return answer


def _reconciliation(answer: SettlementResponse) -> Reconciliation:
    assert answer.totals is not None
    return answer.totals.domestic.reconciliation


def _kinds(store: HostStore) -> list[str]:
    return [item.kind for item in store.exceptions(TERMINAL_ID)]


def test_other_totals_for_a_closed_batch_are_an_error_on_record(
    store: HostStore, term: Terminal
) -> None:
    """Batch 1 settled balanced with two sales; a 0500 with one sale gets code 3 (error) and a
    settled-again-differs exception — once, however often that 0500 is repeated."""
    term.sale(1250)
    term.sale(1300)
    assert Reconciliation.BALANCED == _reconciliation(_settle(term, _totals(1250, 1300)))
    first = _settle(term, _totals(1250))
    again = _settle(term, _totals(1250))
    expected = (Reconciliation.ERROR, Reconciliation.ERROR, ["settled-again-differs"])
    assert expected == (_reconciliation(first), _reconciliation(again), _kinds(store))


def test_a_true_repeat_still_gets_the_stored_answer(store: HostStore, term: Terminal) -> None:
    """The same totals again (a 0510 lost on the way back) are a repeat: balanced, no record."""
    term.sale(1250)
    _settle(term, _totals(1250))
    assert (Reconciliation.BALANCED, []) == (
        _reconciliation(_settle(term, _totals(1250))),
        _kinds(store),
    )


def test_other_totals_equal_to_the_hosts_are_balanced(store: HostStore, term: Terminal) -> None:
    """Batch closed after upload (the first 0500 was short); a later 0500 with exactly the
    host's totals agrees with the host: balanced, nothing new on record."""
    term.sale(1250)
    term.sale(1300)
    assert Reconciliation.NOT_BALANCED == _reconciliation(_settle(term, _totals(1250)))
    assert term.upload_end(0).response_code == "00"
    before = _kinds(store)
    answer = _settle(term, _totals(1250, 1300))
    assert (Reconciliation.BALANCED, before) == (_reconciliation(answer), _kinds(store))
