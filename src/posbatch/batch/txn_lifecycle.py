"""The life of one transaction, on the terminal and on the host: two tables.

Theory of operation
-------------------
A transaction row is written once and then only moves along a table; its state
is a plain string because the journals and host databases already hold these
exact strings (``"reversal_pending"``, ``"voided"`` …) — this module names them,
it does not change them. :func:`apply_terminal` and :func:`apply_host` give the
state after an event or raise :class:`~posbatch.errors.IllegalTransition`:
a move the table does not list is a programming error, never passed silently.

The terminal's journal row (``TxnState``) is born ``pending`` (written before its
request leaves, DESIGN.md "Journal first") or ``training`` (never sent)::

    pending ----approved-----------------------------> approved --voided--> voided
       |   \\---declined-----------------------------> declined
       |    \\--reverse (sale/void, no trusted answer)-> reversal_pending --reversed--> reversed
       \\------resend (refund, no trusted answer)-----> resend_pending
                                                          |  resend (still none)
                                                          +--approved / declined-->

- ``reverse``: a sale or void has no answer the terminal believes; a 0400 must go
  before anything else. ``reversed``: the host answered that 0400.
- ``resend``: a refund is never reversed (it is not reversible, DESIGN.md
  "Messages"); it is sent again as is until answered — the host answers a
  duplicate with its original answer.
- ``voided``: the void of this sale was approved; the sale still counts (its
  void credits it), so ``voided`` is in :attr:`TxnState.COUNTED`.
- ``training`` never moves: training rows are never sent.

The host's transaction row (``TransactionStatus``) is born ``approved`` or
``declined`` when its request is answered — or ``reversed`` when the reversal of
that STAN overtook it. After that::

    approved --reverse--> reversed      (a reversal of it applied, batch still open)
    approved --void-----> voided        (a sale whose void was approved)
    voided   --unvoid---> approved      (the void itself was reversed: the sale stands)

A declined or reversed row never changes again; a closed batch's rows never
change at all (a late reversal becomes an exception record instead: that is a
batch rule, :mod:`posbatch.batch.host_batch`, not one of this table).
"""

from __future__ import annotations

import enum
from typing import Final

from posbatch.errors import IllegalTransition

__all__ = [
    "HOST_MACHINE_NAME",
    "HOST_TRANSITIONS",
    "TERMINAL_MACHINE_NAME",
    "TERMINAL_TRANSITIONS",
    "HostTxnEvent",
    "TransactionStatus",
    "TxnEvent",
    "TxnState",
    "apply_host",
    "apply_terminal",
]

TERMINAL_MACHINE_NAME: Final = "terminal transaction"
HOST_MACHINE_NAME: Final = "host transaction"


class TxnState:
    """States of a journal transaction row (strings, as stored)."""

    PENDING: Final = "pending"  # written, request not answered yet
    APPROVED: Final = "approved"
    DECLINED: Final = "declined"
    REVERSAL_PENDING: Final = "reversal_pending"  # no (trustworthy) answer: 0400 must go first
    REVERSED: Final = "reversed"  # the host answered the reversal
    VOIDED: Final = "voided"  # a sale whose void was approved
    RESEND_PENDING: Final = "resend_pending"  # a refund with no answer: resent as is (host dedupes)
    TRAINING: Final = "training"  # training mode: never sent, never counted

    # What counts in settlement totals and goes to batch upload.
    COUNTED: Final = frozenset({APPROVED, VOIDED})
    # What must be cleared with the host before anything else is sent.
    OUTSTANDING: Final = frozenset({PENDING, REVERSAL_PENDING, RESEND_PENDING})


class TxnEvent(enum.StrEnum):
    APPROVED = "approved"  # a verified answer 00
    DECLINED = "declined"  # a verified answer with any other code
    REVERSE = "reverse"  # a sale or void without a trusted answer: a 0400 must go first
    RESEND = "resend"  # a refund without a trusted answer: sent again as is
    REVERSED = "reversed"  # the host answered the 0400
    VOIDED = "voided"  # the void of this sale was approved


_T = TxnState
_TE = TxnEvent

TERMINAL_TRANSITIONS: Final[dict[tuple[str, TxnEvent], str]] = {
    (_T.PENDING, _TE.APPROVED): _T.APPROVED,
    (_T.PENDING, _TE.DECLINED): _T.DECLINED,
    (_T.PENDING, _TE.REVERSE): _T.REVERSAL_PENDING,
    (_T.PENDING, _TE.RESEND): _T.RESEND_PENDING,
    (_T.REVERSAL_PENDING, _TE.REVERSED): _T.REVERSED,
    (_T.RESEND_PENDING, _TE.APPROVED): _T.APPROVED,
    (_T.RESEND_PENDING, _TE.DECLINED): _T.DECLINED,
    (_T.RESEND_PENDING, _TE.RESEND): _T.RESEND_PENDING,  # its resend had no trusted answer
    (_T.APPROVED, _TE.VOIDED): _T.VOIDED,
}


def apply_terminal(state: str, event: TxnEvent) -> str:
    """The journal row's state after ``event``; :class:`IllegalTransition` if not in the table."""
    after = TERMINAL_TRANSITIONS.get((state, event))
    if after is None:
        raise IllegalTransition(TERMINAL_MACHINE_NAME, state, event.value)
    return after


class TransactionStatus:
    """States of a host transaction row (strings, as stored)."""

    APPROVED: Final = "approved"
    DECLINED: Final = "declined"
    REVERSED: Final = "reversed"
    VOIDED: Final = "voided"  # a sale whose void stands

    # What counts in a batch's totals (a voided sale still counts: its void credits it).
    COUNTED: Final = frozenset({APPROVED, VOIDED})


class HostTxnEvent(enum.StrEnum):
    REVERSE = "reverse"  # a reversal of this transaction applied (its batch still open)
    VOID = "void"  # the void of this sale was approved
    UNVOID = "unvoid"  # the void of this sale was reversed: the sale stands again


_H = TransactionStatus
_HE = HostTxnEvent

HOST_TRANSITIONS: Final[dict[tuple[str, HostTxnEvent], str]] = {
    (_H.APPROVED, _HE.REVERSE): _H.REVERSED,
    (_H.APPROVED, _HE.VOID): _H.VOIDED,
    (_H.VOIDED, _HE.UNVOID): _H.APPROVED,
}


def apply_host(status: str, event: HostTxnEvent) -> str:
    """The host row's status after ``event``; :class:`IllegalTransition` if not in the table."""
    after = HOST_TRANSITIONS.get((status, event))
    if after is None:
        raise IllegalTransition(HOST_MACHINE_NAME, status, event.value)
    return after
