"""The host-side batch state machine: one table and one function applying it.

Theory of operation
-------------------
The host owns every terminal's batch. For one (merchant, terminal) exactly one
batch is *current*; it starts ``OPEN`` at the terminal's first sign-on with
batch_no 000001. Financial requests (sale, void, refund, reversal) are only
accepted in the current batch while it is ``OPEN``.

Settlement (0500) compares the terminal's field-48 totals with the host's:

- balanced → ``OPEN --settle_balanced--> CLOSED`` at once; no upload needed.
- not balanced → ``OPEN --settle_unbalanced--> UPLOADING``; the host answers
  its own totals with code 2 and waits for batch upload. While ``UPLOADING``
  the terminal sends 0320 record messages (``upload_record``, idempotent per
  STAN) and a reversal of a transaction of the batch still applies
  (``reverse``: the batch is not closed yet); new sales are refused. A repeated
  0500 in ``UPLOADING`` (``settle_again``) gets the same code-2 answer.
- the upload ends with 207 → ``UPLOADING --upload_end--> CLOSED``: every
  difference between the uploaded records and the host's transactions becomes
  an exception record; nothing is silently "fixed".

A back-office change (``advance``) closes an ``OPEN`` or ``UPLOADING`` batch
without the terminal: it is one of the real causes of a 77.

Whenever a batch closes the terminal's batch number advances (999999 wraps to
000001, see :func:`next_batch_no`) and a new ``OPEN`` batch becomes current. A
``CLOSED`` batch never changes: a repeated 0500 for it gets the stored answer
(``settle_again``), a 0320/202 that a terminal still sends after a balanced
settlement is answered 00 (``upload_end`` is *not* applied — callers check
``state`` first and answer without a transition), and a late reversal is only
recorded as an exception.
"""

from __future__ import annotations

import enum
from typing import Final

from posbatch.batch.counters import next_batch_no
from posbatch.batch.model import BatchState
from posbatch.errors import IllegalTransition

__all__ = [
    "FIRST_BATCH_NO",
    "TRANSITIONS",
    "BatchEvent",
    "BatchState",
    "allows",
    "apply",
    "next_batch_no",
]

MACHINE_NAME: Final = "host batch"
FIRST_BATCH_NO: Final = 1


class BatchEvent(enum.StrEnum):
    TRANSACTION = "transaction"  # a sale, void or refund approved or declined in the batch
    REVERSE = "reverse"  # a reversal of one of the batch's transactions applied
    SETTLE_BALANCED = "settle_balanced"
    SETTLE_UNBALANCED = "settle_unbalanced"
    SETTLE_AGAIN = "settle_again"  # repeated 0500 for a batch already settled
    UPLOAD_RECORD = "upload_record"
    UPLOAD_END = "upload_end"
    ADVANCE = "advance"  # back office closes the batch without the terminal


_OPEN = BatchState.OPEN
_UPLOADING = BatchState.UPLOADING
_CLOSED = BatchState.CLOSED

TRANSITIONS: Final[dict[tuple[BatchState, BatchEvent], BatchState]] = {
    (_OPEN, BatchEvent.TRANSACTION): _OPEN,
    (_OPEN, BatchEvent.REVERSE): _OPEN,
    (_OPEN, BatchEvent.SETTLE_BALANCED): _CLOSED,
    (_OPEN, BatchEvent.SETTLE_UNBALANCED): _UPLOADING,
    (_OPEN, BatchEvent.ADVANCE): _CLOSED,
    (_UPLOADING, BatchEvent.REVERSE): _UPLOADING,
    (_UPLOADING, BatchEvent.SETTLE_AGAIN): _UPLOADING,
    (_UPLOADING, BatchEvent.UPLOAD_RECORD): _UPLOADING,
    (_UPLOADING, BatchEvent.UPLOAD_END): _CLOSED,
    (_UPLOADING, BatchEvent.ADVANCE): _CLOSED,
    (_CLOSED, BatchEvent.SETTLE_AGAIN): _CLOSED,
}


def apply(state: BatchState, event: BatchEvent) -> BatchState:
    """The state after ``event``; :class:`IllegalTransition` if the table forbids it."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        raise IllegalTransition(MACHINE_NAME, state.value, event.value)
    return after


def allows(state: BatchState, event: BatchEvent) -> bool:
    """Whether the table has a move for ``event`` in ``state``."""
    return (state, event) in TRANSITIONS
