"""The terminal-side settlement state machine and the recovery decision on 77.

Theory of operation
-------------------
The terminal keeps exactly one *current* batch. Its ``step`` is persisted in
the journal after every move, so a terminal killed at any point resumes at
the step it reached; nothing in this module touches storage.

Settlement (结算) walks the table below::

    OPEN --begin--> FLUSHING --flushed--> SETTLING --balanced-----> CLOSED
                                              |
                                              +--not_balanced--> UPLOADING --uploaded--> ENDING
                                                                                          |
    CLOSED <---------------------------------------------------------------- ended -------+

- ``FLUSHING``: every pending reversal of the terminal is sent first, so the
  totals the host compares no longer include what the terminal takes back.
  From here on the batch takes no new transactions.
- ``SETTLING``: the 0500 with the terminal's totals is (re)sent until it is
  answered. A repeated 0500 is harmless: the host answers a batch it already
  closed with the same result, and an open batch is compared again.
- ``UPLOADING``: the host answered "not balanced"; every approved record is
  uploaded, 8 per 0320, each flagged in the journal when its 0330 says 00.
  A resumed upload sends only unflagged records (the host ignores a record it
  already has anyway).
- ``ENDING``: the 0320/207 upload end is (re)sent until answered.
- ``CLOSED``: the batch is closed locally; the engine opens the next batch
  (``next_batch_no``) in the same journal transaction.

Two events come from recovery rather than from settlement: ``host_closed``
(the host closed this batch without us — a lost 0510, a back-office advance,
an old batch auto-closed — so it closes locally from any open step, the
journal keeping every approval and the reason) and ``renumber`` (an OPEN batch
with nothing to settle takes the host's batch number).

The recovery decision (:func:`decide_recovery`) compares the journal's view
of the current batch with what the host says at sign-on (60.2 and field 63):

=================================================  =========================
situation                                          action
=================================================  =========================
same batch number as the host                      ``RESUME`` (just retry)
nothing to settle locally, batch still OPEN        ``ADOPT`` the host's number
local batch behind the host or reported closed     ``SETTLE_CLOSED``: ask the
                                                   host for its answer with
                                                   the 0500, then close
local batch ahead of the host, with approvals      ``SET_ASIDE``: close it
                                                   unreconciled for the back
                                                   office, adopt the host's
=================================================  =========================

No action ever deletes or rewrites an approval: a batch set aside or closed
by the host keeps all its rows, and the event log says what happened and why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from posbatch.batch.counters import is_behind
from posbatch.batch.model import BatchReason, BatchStateDetail
from posbatch.errors import IllegalTransition

__all__ = [
    "MACHINE_NAME",
    "TRANSITIONS",
    "LocalBatchView",
    "RecoveryAction",
    "RecoveryDecision",
    "SettleEvent",
    "SettleStep",
    "accepts_transactions",
    "apply",
    "decide_recovery",
    "is_behind",
]

MACHINE_NAME: Final = "terminal settlement"


class SettleStep(enum.StrEnum):
    OPEN = "open"
    FLUSHING = "flushing"
    SETTLING = "settling"
    UPLOADING = "uploading"
    ENDING = "ending"
    CLOSED = "closed"


class SettleEvent(enum.StrEnum):
    BEGIN = "begin"
    FLUSHED = "flushed"
    BALANCED = "balanced"
    NOT_BALANCED = "not_balanced"
    UPLOADED = "uploaded"
    ENDED = "ended"
    HOST_CLOSED = "host_closed"
    RENUMBER = "renumber"


_S = SettleStep
_E = SettleEvent

TRANSITIONS: Final[dict[tuple[SettleStep, SettleEvent], SettleStep]] = {
    (_S.OPEN, _E.BEGIN): _S.FLUSHING,
    (_S.OPEN, _E.RENUMBER): _S.OPEN,
    (_S.OPEN, _E.HOST_CLOSED): _S.CLOSED,
    (_S.FLUSHING, _E.BEGIN): _S.FLUSHING,  # settle again after an interruption
    (_S.FLUSHING, _E.FLUSHED): _S.SETTLING,
    (_S.FLUSHING, _E.HOST_CLOSED): _S.CLOSED,
    (_S.SETTLING, _E.BALANCED): _S.CLOSED,
    (_S.SETTLING, _E.NOT_BALANCED): _S.UPLOADING,
    (_S.SETTLING, _E.HOST_CLOSED): _S.CLOSED,
    (_S.UPLOADING, _E.UPLOADED): _S.ENDING,
    (_S.UPLOADING, _E.HOST_CLOSED): _S.CLOSED,
    (_S.ENDING, _E.ENDED): _S.CLOSED,
    (_S.ENDING, _E.HOST_CLOSED): _S.CLOSED,
}


def apply(step: SettleStep, event: SettleEvent) -> SettleStep:
    """The step after ``event``; :class:`IllegalTransition` if the table has no such move."""
    after = TRANSITIONS.get((step, event))
    if after is None:
        raise IllegalTransition(MACHINE_NAME, step.value, event.value)
    return after


def accepts_transactions(step: SettleStep) -> bool:
    """Only an OPEN batch takes sales, voids and refunds; settlement freezes it."""
    return step == SettleStep.OPEN


class RecoveryAction(enum.StrEnum):
    RESUME = "resume"
    ADOPT = "adopt"
    SETTLE_CLOSED = "settle_closed"
    SET_ASIDE = "set_aside"


@dataclass(frozen=True, slots=True)
class LocalBatchView:
    """What the journal knows about its current batch."""

    batch_no: int
    step: SettleStep
    counted_count: int  # approved transactions that count in settlement totals
    pending_count: int  # reversals or refunds still waiting for an answer


@dataclass(frozen=True, slots=True)
class RecoveryDecision:
    action: RecoveryAction
    host_batch_no: int
    reason: str  # one sentence for the event log and for doctor


def decide_recovery(
    local: LocalBatchView, host_batch_no: int, detail: BatchStateDetail | None
) -> RecoveryDecision:
    """What to do when the host's batch number (sign-on 60.2) differs or a 77 came back."""
    local_no = local.batch_no
    if local_no == host_batch_no:
        return RecoveryDecision(
            RecoveryAction.RESUME,
            host_batch_no,
            f"terminal and host agree on batch {local_no:06d}",
        )
    empty = local.counted_count == 0 and local.pending_count == 0
    if empty and local.step == SettleStep.OPEN:
        return RecoveryDecision(
            RecoveryAction.ADOPT,
            host_batch_no,
            f"local batch {local_no:06d} holds nothing to settle; "
            f"adopting the host's batch {host_batch_no:06d}",
        )
    closed_on_host = (
        (detail is not None and detail.reason == BatchReason.CLOSED)
        or (
            detail is not None
            and detail.last_closed_batch_no is not None
            and (
                detail.last_closed_batch_no == local_no
                or is_behind(local_no, detail.last_closed_batch_no)
            )
        )
        or is_behind(local_no, host_batch_no)
    )
    if closed_on_host:
        return RecoveryDecision(
            RecoveryAction.SETTLE_CLOSED,
            host_batch_no,
            f"local batch {local_no:06d} is behind the host's {host_batch_no:06d}: "
            "the host closed it already; asking for its settlement answer, then closing",
        )
    return RecoveryDecision(
        RecoveryAction.SET_ASIDE,
        host_batch_no,
        f"local batch {local_no:06d} is ahead of the host's {host_batch_no:06d} and "
        f"holds {local.counted_count} approval{'' if local.counted_count == 1 else 's'} "
        "the host does not place in a batch "
        "we can settle: set aside for the back office, nothing deleted",
    )
