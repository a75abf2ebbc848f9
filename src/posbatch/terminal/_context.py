"""What the rooms of the terminal engine share: one journal, one sign-on, one clock.

Theory of operation
-------------------
The engine is one :class:`~posbatch.terminal._engine.Terminal` facade over five
rooms, each a small class holding this context (``ctx``)::

    _answers.Answers          send a request, match its answer, what it is believed to be
    _outstanding.Outstanding  the reversal / refund-resend queue, cleared before anything else
    _recovery.Recovery        sign-on (and sign-off, echo), reconciliation on 77, resync
    _financial.Financial      sale, void, refund: journal, send, the reaction table
    _settlement.Settlement    settlement (0500), batch upload (0320), closing a batch

A room reaches another through the context (``self.ctx.recovery.sign_on_flow()``):
the flows call each other in a circle — a sale flushes reversals, a flush may
sign on, a sign-on may settle an old batch, a settlement flushes — and the
context is the one place that knows every room. It holds no logic of its own
beyond the counters every room takes (STAN) and the journal's view of a batch.

The working keys (``keys``) live here, in memory only: after a restart the
terminal signs on again, as a real terminal does every morning. Any room may
drop them (an answer that asks for a sign-on, or one not believed); the next
request signs on first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Final

from posbatch.batch.counters import next_stan
from posbatch.batch.model import BatchStateDetail, CardType, Kind
from posbatch.batch.terminal_batch import LocalBatchView
from posbatch.batch.totals import BatchTally, tally
from posbatch.terminal._journal import BatchRow, Journal, StateRow, TxnRow, TxnState, Writer
from posbatch.terminal._secrets import TerminalSecrets
from posbatch.wire import Header, Message, Tpdu, WorkingKeys

if TYPE_CHECKING:
    from posbatch.terminal._answers import Answers
    from posbatch.terminal._financial import Financial
    from posbatch.terminal._outstanding import Outstanding
    from posbatch.terminal._recovery import Recovery
    from posbatch.terminal._settlement import Settlement

__all__ = ["RESPONSE_TIMEOUT_MS", "SIGN_ON_RETRIES_MAX", "EngineContext", "tally_rows"]

RESPONSE_TIMEOUT_MS: Final = 30_000  # CUP terminals wait 30-60 s for an answer
SIGN_ON_RETRIES_MAX: Final = 1  # a request retried after A0 / a sign-on request


class EngineContext:
    """The state the rooms share, and the rooms themselves (set once by ``Terminal``)."""

    answers: Answers
    outstanding: Outstanding
    recovery: Recovery
    financial: Financial
    settlement: Settlement

    def __init__(
        self,
        journal: Journal,
        secrets: TerminalSecrets,
        *,
        clock: Callable[[], datetime],
        random_bytes: Callable[[int], bytes],
        timeout_ms: int,
        tpdu: Tpdu,
        header: Header,
        settle_on_duplicate: bool,
        on_answer: Callable[[Message], None] | None = None,
    ) -> None:
        self.journal = journal
        self.secrets = secrets
        self.clock = clock
        self.random_bytes = random_bytes
        self.timeout_ms = timeout_ms
        self.tpdu = tpdu
        self.header = header
        self.keys: WorkingKeys | None = None
        self.recovery_depth = 0
        # Batches settled automatically before the transaction being written (its receipt
        # says so: an ``auto_settled`` event in the same journal write as its row).
        self.auto_settled_pending: tuple[int, ...] = ()
        # Policy for a 94 to a fresh STAN (the host's batch holds transactions this
        # journal lacks): True (default) settles that batch at once and retries the
        # request in the next one; False only shows the decline (doctor diagnoses it).
        self.settle_on_duplicate = settle_on_duplicate
        self.last_host_detail: BatchStateDetail | None = None  # field 63 of the last sign-on
        # Shown every message the terminal decodes from the line (the simulator counts the
        # 77s it meets with it, reusing this decode rather than making its own).
        self.on_answer = on_answer

    def now(self) -> datetime:
        return self.clock()

    def take_stan(self, writer: Writer, state: StateRow) -> int:
        stan = next_stan(state.stan) if state.stan else 1
        writer.state(replace(state, stan=stan))
        return stan

    def new_stan(self) -> int:
        with self.journal.write(self.now()) as writer:
            return self.take_stan(writer, self.journal.state())

    def view(self, batch: BatchRow) -> LocalBatchView:
        """What the journal knows of ``batch``, as the recovery decision reads it."""
        rows = self.journal.transactions(batch.batch_id)
        return LocalBatchView(
            batch.batch_no,
            batch.settle_step,
            sum(1 for row in rows if row.counted),
            sum(1 for row in rows if row.state in TxnState.OUTSTANDING),
        )

    def pan_of(self, row: TxnRow) -> str:
        """The clear PAN of a journal row (for batch upload and refunds; never print it)."""
        return self.secrets.open_pan(row.pan_sealed, self.journal.state().terminal_id)


def tally_rows(rows: list[TxnRow], *, with_pending_refunds: bool = False) -> BatchTally:
    """What ``rows`` count in field 48, exactly (and, if told, the refunds still waiting
    for an answer: a refund resent may yet be approved)."""
    return tally(
        (Kind(row.kind), row.amount_fen, CardType(row.card_type))
        for row in rows
        if row.counted or (with_pending_refunds and row.state == TxnState.RESEND_PENDING)
    )
