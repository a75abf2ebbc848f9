"""The outstanding queue: reversals and refund resends, cleared before anything else.

Theory of operation
-------------------
A request without an answer the terminal believes (none in time, a MAC that
fails, an unMACed A0/77: :mod:`._answers`) is not forgotten: its journal row
moves (:mod:`posbatch.batch.txn_lifecycle`) at once to

- ``reversal_pending`` — a sale or void: a 0400 (reason 98 timeout, 96 fault)
  takes it back; the host answers a reversal of an unknown original 00 and
  records it, so reversing what the host never saw is harmless;
- ``resend_pending`` — a refund, which is not reversible: the same 0220 is sent
  again as is; the host answers a duplicate with its original answer.

Every flow starts with :meth:`Outstanding.prepare` — sign on if there are no
keys, then send every outstanding item, oldest first — so the totals the host
counts never include what the terminal takes back. Each item is sent until a
believed answer comes whose code is not worth a resend (below), at most
``SEND_ATTEMPTS_MAX`` times per flow; then it stays pending and goes first
next time (:class:`HostUnreachable`).

Which codes are worth a resend (:func:`worth_a_resend`) is read from the
flags of :mod:`posbatch.batch.codes`: a ``retry`` code, unless the code says
the same STAN cannot succeed. ``stan_spent`` (95: the batch is full) always —
the host keeps that answer for the STAN, and a new STAN in the next batch is
needed. ``batch_no_refused`` (77) for a refund — the host never took it (it
answers a repeat of a request it holds with the original answer, never 77), so
the financial flow makes it again under a new STAN after recovery. A reversal
answered 77 is resent: the host never refuses a reversal for its batch number,
so a 77 to one (not signed on, or a fault script's) means it reversed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from posbatch.batch.codes import CODES, ResponseCode, describe
from posbatch.batch.model import Kind
from posbatch.batch.txn_lifecycle import TxnEvent
from posbatch.errors import HostUnreachable
from posbatch.terminal._answers import Answer
from posbatch.terminal._flows import Flow
from posbatch.terminal._journal import TxnRow, TxnState
from posbatch.wire import (
    OriginalTransaction,
    RefundRequest,
    ReversalReason,
    ReversalRequest,
    TransactionResponse,
)

if TYPE_CHECKING:
    from posbatch.terminal._context import EngineContext

__all__ = ["SEND_ATTEMPTS_MAX", "Outstanding", "worth_a_resend"]

SEND_ATTEMPTS_MAX: Final = 3  # sends of one reversal / refund resend per flow


def worth_a_resend(row: ResponseCode, *, counted_in_batch: bool) -> bool:
    """Whether a request believed answered ``row`` is sent again as is, same STAN.

    ``counted_in_batch``: the request is counted in the batch it names (a refund),
    not a reversal, which the host never refuses for its batch number.
    """
    if not row.retry or row.stan_spent:
        return False
    return not (row.batch_no_refused and counted_in_batch)


# The rule applied to every row of the table, once.
_REVERSAL_RESEND_CODES: Final = frozenset(
    code for code, row in CODES.items() if worth_a_resend(row, counted_in_batch=False)
)
_REFUND_RESEND_CODES: Final = frozenset(
    code for code, row in CODES.items() if worth_a_resend(row, counted_in_batch=True)
)


class Outstanding:
    """The reversal / refund-resend queue of one journal."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def prepare(self) -> Flow[None]:
        if self.ctx.keys is None:
            yield from self.ctx.recovery.sign_on_flow()
        yield from self.flush()

    def flush_flow(self) -> Flow[int]:
        """Sign on if needed and clear every outstanding item; how many were cleared."""
        before = len(self.ctx.journal.outstanding())
        yield from self.prepare()
        return before - len(self.ctx.journal.outstanding())

    def flush(self) -> Flow[None]:
        """Send every outstanding item, and end signed on if anything was sent: an answer
        to a resend may drop the keys (A0, a 77, one not believed) and whatever the flow
        sends next — a sale, a 0500 — needs them. Keys only: the next 77 reconciles."""
        sent = False
        for outstanding in self.ctx.journal.outstanding():
            row = outstanding
            if row.state == TxnState.PENDING:
                row = self.unanswered(row, ReversalReason.TIMEOUT)
            if row.state == TxnState.REVERSAL_PENDING:
                yield from self._send_reversal(row)
                sent = True
            elif row.state == TxnState.RESEND_PENDING:
                yield from self._resend_refund(row)
                sent = True
        if sent and self.ctx.keys is None:
            yield from self.ctx.recovery.sign_on_flow(reconcile=False)

    def unanswered(self, row: TxnRow, reason: ReversalReason) -> TxnRow:
        """A request without a trustworthy answer: reverse it (refunds are resent instead)."""
        if row.kind == Kind.REFUND.value:
            changed = row.moved(TxnEvent.RESEND, updated_at=self.ctx.now().isoformat())
        else:
            changed = row.moved(
                TxnEvent.REVERSE,
                reversal_reason=reason.value,
                updated_at=self.ctx.now().isoformat(),
            )
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.txn(changed)
            writer.event(
                "unanswered",
                f"{row.kind} STAN {row.stan:06d} has no valid answer: "
                + ("resend" if row.kind == Kind.REFUND.value else f"reverse ({reason.value})"),
                txn_id=row.txn_id,
                stan=row.stan,
                batch_no=row.batch_no,
            )
        return changed

    def _send_reversal(self, row: TxnRow) -> Flow[None]:
        state = self.ctx.journal.state()
        original = None
        if row.kind == Kind.VOID.value and row.original_stan is not None:
            original = OriginalTransaction(
                row.original_batch_no or row.batch_no, row.original_stan, row.original_date
            )
        row, answer = yield from self._resend_until_answered(
            row,
            lambda: ReversalRequest(
                state.terminal_id,
                state.merchant_id,
                row.stan,
                row.batch_no,
                row.amount_fen,
                self.ctx.pan_of(row),
                original_kind=Kind(row.kind),
                reason=ReversalReason(row.reversal_reason or ReversalReason.TIMEOUT.value),
                original=original,
                expiry=row.expiry,
            ),
            resend_codes=_REVERSAL_RESEND_CODES,
            failure=f"reversal of STAN {row.stan:06d} not accepted",
            next_time="it stays pending and goes first next time",
        )
        assert isinstance(answer.message, TransactionResponse)
        code = answer.message.response_code
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.txn(row.moved(TxnEvent.REVERSED, updated_at=self.ctx.now().isoformat()))
            writer.event(
                "reversed",
                f"reversal of {row.kind} STAN {row.stan:06d} answered {describe(code)}",
                txn_id=row.txn_id,
                stan=row.stan,
                batch_no=row.batch_no,
                response_code=code,
            )

    def _resend_refund(self, row: TxnRow) -> Flow[None]:
        row, answer = yield from self._resend_until_answered(
            row,
            lambda: self.ctx.financial.refund_request(row),
            resend_codes=_REFUND_RESEND_CODES,
            failure=f"refund STAN {row.stan:06d} not answered",
            next_time="it is resent first next time",
        )
        self.ctx.financial.record_answer(row, answer)

    def _resend_until_answered(
        self,
        row: TxnRow,
        new_request: Callable[[], ReversalRequest | RefundRequest],
        *,
        resend_codes: frozenset[str],
        failure: str,
        next_time: str,
    ) -> Flow[tuple[TxnRow, Answer]]:
        """Send ``row`` again until the host answers it, believed, with no code of ``resend_codes``.

        Signs on first whenever there are no working keys (a MAC error, ours or
        the host's, drops them). An answer whose MAC does not verify counts as
        no answer. Every try is counted on the row and written to the journal;
        after ``SEND_ATTEMPTS_MAX`` tries the row stays pending and
        :class:`HostUnreachable` says so. Returns the row as written and the
        answer (its MAC verified, or an A0/77 the host sends without one).
        """
        attempts = 0
        while True:
            if self.ctx.keys is None:
                yield from self.ctx.recovery.sign_on_flow()
            answer = yield from self.ctx.answers.exchange(new_request(), TransactionResponse)
            attempts += 1
            row = replace(row, send_attempts=row.send_attempts + 1)
            code = self.ctx.answers.believed_code(answer)
            if code is None or code in resend_codes:
                with self.ctx.journal.write(self.ctx.now()) as writer:
                    writer.txn(replace(row, updated_at=self.ctx.now().isoformat()))
                if attempts >= SEND_ATTEMPTS_MAX:
                    raise HostUnreachable(f"{failure} after {attempts} tries; {next_time}")
                continue
            assert answer is not None
            return row, answer
