"""Transaction lifecycle tables: every legal move, every illegal one refused, strings kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch import host
from posbatch.batch.txn_lifecycle import (
    HOST_TRANSITIONS,
    TERMINAL_TRANSITIONS,
    HostTxnEvent,
    TransactionStatus,
    TxnEvent,
    TxnState,
    apply_host,
    apply_terminal,
)
from posbatch.errors import IllegalTransition
from posbatch.host import store

_T = TxnState
_E = TxnEvent
_H = TransactionStatus
_HE = HostTxnEvent

TERMINAL_STATES = [
    _T.PENDING,
    _T.APPROVED,
    _T.DECLINED,
    _T.REVERSAL_PENDING,
    _T.REVERSED,
    _T.VOIDED,
    _T.RESEND_PENDING,
    _T.TRAINING,
]
HOST_STATES = [_H.APPROVED, _H.DECLINED, _H.REVERSED, _H.VOIDED]


def test_terminal_states_are_the_stored_strings() -> None:
    """The journals already hold these exact strings: the table names them, never renames."""
    assert [
        "pending",
        "approved",
        "declined",
        "reversal_pending",
        "reversed",
        "voided",
        "resend_pending",
        "training",
    ] == TERMINAL_STATES


def test_host_statuses_are_the_stored_strings() -> None:
    """The host databases already hold these exact strings."""
    assert ["approved", "declined", "reversed", "voided"] == HOST_STATES


def test_host_store_re_exports_the_one_transaction_status() -> None:
    """``posbatch.host.store.TransactionStatus`` is the lifecycle module's, not a copy."""
    assert (store.TransactionStatus, host.TransactionStatus) == (
        TransactionStatus,
        TransactionStatus,
    )


def test_what_counts_and_what_is_outstanding() -> None:
    """A voided sale still counts (its void credits it); three states must clear first."""
    assert (
        frozenset({"approved", "voided"}),
        {"pending", "reversal_pending", "resend_pending"},
    ) == (
        _T.COUNTED,
        set(_T.OUTSTANDING),
    )


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (_T.PENDING, _E.APPROVED, _T.APPROVED),
        (_T.PENDING, _E.DECLINED, _T.DECLINED),
        (_T.PENDING, _E.REVERSE, _T.REVERSAL_PENDING),
        (_T.PENDING, _E.RESEND, _T.RESEND_PENDING),
        (_T.REVERSAL_PENDING, _E.REVERSED, _T.REVERSED),
        (_T.RESEND_PENDING, _E.APPROVED, _T.APPROVED),
        (_T.RESEND_PENDING, _E.DECLINED, _T.DECLINED),
        (_T.RESEND_PENDING, _E.RESEND, _T.RESEND_PENDING),
        (_T.APPROVED, _E.VOIDED, _T.VOIDED),
    ],
)
def test_terminal_moves(state: str, event: TxnEvent, after: str) -> None:
    """Each move of the terminal table, as the engine makes it."""
    assert after == apply_terminal(state, event)


def test_terminal_table_has_exactly_those_moves() -> None:
    """Nine moves, no more: anything else is a programming error."""
    assert 9 == len(TERMINAL_TRANSITIONS)


@given(st.sampled_from(TERMINAL_STATES), st.sampled_from(list(TxnEvent)))
def test_terminal_illegal_moves_raise(state: str, event: TxnEvent) -> None:
    """A move the table does not list raises IllegalTransition naming state and event."""
    if (state, event) in TERMINAL_TRANSITIONS:
        assert apply_terminal(state, event) in TERMINAL_STATES
        return
    with pytest.raises(IllegalTransition) as raised:
        apply_terminal(state, event)
    assert (raised.value.machine, raised.value.state, raised.value.event) == (
        "terminal transaction",
        state,
        event.value,
    )


@pytest.mark.parametrize("state", [_T.REVERSED, _T.DECLINED, _T.VOIDED, _T.TRAINING])
def test_terminal_final_states_never_move(state: str) -> None:
    """Reversed, declined, voided and training rows take no event at all."""
    for event in TxnEvent:
        with pytest.raises(IllegalTransition):
            apply_terminal(state, event)


def test_a_reversal_pending_is_never_approved() -> None:
    """Once a 0400 must go, no answer to the original request can make it count again."""
    with pytest.raises(IllegalTransition, match="reversal_pending"):
        apply_terminal(_T.REVERSAL_PENDING, _E.APPROVED)


@pytest.mark.parametrize(
    ("status", "event", "after"),
    [
        (_H.APPROVED, _HE.REVERSE, _H.REVERSED),
        (_H.APPROVED, _HE.VOID, _H.VOIDED),
        (_H.VOIDED, _HE.UNVOID, _H.APPROVED),
    ],
)
def test_host_moves(status: str, event: HostTxnEvent, after: str) -> None:
    """Each move of the host table."""
    assert after == apply_host(status, event)


def test_host_table_has_exactly_those_moves() -> None:
    """Three moves: a declined or reversed row never changes."""
    assert 3 == len(HOST_TRANSITIONS)


@given(st.sampled_from(HOST_STATES), st.sampled_from(list(HostTxnEvent)))
def test_host_illegal_moves_raise(status: str, event: HostTxnEvent) -> None:
    """A move the host table does not list raises IllegalTransition."""
    if (status, event) in HOST_TRANSITIONS:
        assert apply_host(status, event) in HOST_STATES
        return
    with pytest.raises(IllegalTransition) as raised:
        apply_host(status, event)
    assert (raised.value.machine, raised.value.state) == ("host transaction", status)


def test_a_voided_sale_cannot_be_reversed_on_the_host() -> None:
    """The host reverses the void, not the voided sale (a mismatch it records instead)."""
    with pytest.raises(IllegalTransition):
        apply_host(_H.VOIDED, _HE.REVERSE)


def test_an_unknown_stored_string_is_refused() -> None:
    """A state the table does not know (a damaged row) raises rather than moving on."""
    with pytest.raises(IllegalTransition):
        apply_terminal("approvd", _E.VOIDED)
