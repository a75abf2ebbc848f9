"""An echo test (0820/301) changes nothing on the host and tells the host's view in field 63.

Doctor diagnoses with echo tests only (docs/host.md): what they may not touch is what a
later diagnosis reads — keys, signed-on state, the last STAN seen, batches.
"""

from __future__ import annotations

from host_helpers import MERCHANT_ID, TERMINAL_ID, Terminal

from posbatch.host import HostStore
from posbatch.wire import (
    DETAIL_LAST_STAN,
    AdminResponse,
    EchoRequest,
    decode_batch_detail,
    decode_detail,
    decode_totals,
)


def _echo(term: Terminal, stan: int) -> AdminResponse:
    answer = term.request(EchoRequest(TERMINAL_ID, MERCHANT_ID, stan, term.batch_no))
    assert isinstance(answer, AdminResponse)
    return answer


def _host_state(store: HostStore) -> tuple[object, ...]:
    return (
        store.terminal(TERMINAL_ID),
        tuple(store.batches(TERMINAL_ID)),
        tuple(store.transactions(TERMINAL_ID)),
        tuple(store.exceptions(TERMINAL_ID)),
    )


def test_echo_changes_nothing_on_the_host(store: HostStore, term: Terminal) -> None:
    """Echoes with any STAN — lower than the last seen, or higher — leave the terminal's row
    (keys' sign-on time, last STAN), its batches and transactions as they were."""
    term.sale(1250)
    term.sale(1300)
    before = _host_state(store)
    for stan in (1, 2, 500, 999_999):
        assert "00" == _echo(term, stan).response_code
    assert before == _host_state(store)


def test_echo_answer_carries_the_batch_state_and_the_last_stan(term: Terminal) -> None:
    """Field 63 of the answer: the host's batch, its state, the last closed batch and how it
    closed, and T= the STAN of the last transaction of the current batch."""
    term.sale(1250)
    assert term.settle(decode_totals("0" * 62)).response_code == "00"  # not balanced
    assert term.upload_end(0).response_code == "00"  # closes it (an exception for the sale)
    term.batch_no = 2
    term.sale(800)
    last = term.stan
    answer = _echo(term, 77)
    detail = decode_batch_detail(answer.detail or "")
    items = decode_detail(answer.detail or "")
    expected = (2, "OPEN", 1, "UPLOADED", f"{last:06d}", True)
    assert detail is not None
    assert expected == (
        detail.host_batch_no,
        detail.host_batch_state.value,
        detail.last_closed_batch_no,
        items.get("Q"),
        items.get(DETAIL_LAST_STAN),
        answer.local_time is not None and answer.local_date is not None,
    )


def test_echo_of_a_batch_without_transactions_has_no_last_stan(term: Terminal) -> None:
    """A batch that holds no transaction yet: no T= (nothing to compare)."""
    items = decode_detail(_echo(term, 9).detail or "")
    assert (DETAIL_LAST_STAN in items, items.get("B")) == (False, "000001")
