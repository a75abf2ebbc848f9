"""Settlement and batch upload: the persisted walk of :mod:`posbatch.batch.terminal_batch`.

Theory of operation
-------------------
Settlement walks the terminal batch table step by step, persisting each move
(:meth:`Settlement.move`), so a terminal killed at any point resumes at the
step it reached::

    OPEN → FLUSHING (the outstanding queue is cleared) → SETTLING (0500 with the
    totals) → CLOSED when balanced, or → UPLOADING (0320 records, 8 a message,
    each flagged when acknowledged) → ENDING (0320/207) → CLOSED

Closing a batch opens the next one in the same journal write
(:meth:`Settlement.close`). The answers to a 0500 or 0320 are acted on only when
verified or an unMACed A0 (:func:`._answers.acted_on`): a MAC error, or a
code whose row in :mod:`posbatch.batch.codes` says ``sign_on_again`` (A0, 22), signs on
and sends again, ``SIGN_ON_RETRIES_MAX`` times, then :class:`HostUnreachable`
with the step kept for the next ``settle`` (a repeated 0500 or 0320 is
harmless by the host's rules). A verified 77 means the host closed the batch
without us: inside recovery it closes locally as ``closed_by_host``; outside,
recovery runs first and settlement resumes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from posbatch.batch.codes import APPROVED, BATCH_NUMBER_DIFFERS, describe, lookup
from posbatch.batch.counters import next_batch_no
from posbatch.batch.limits import UPLOAD_RECORDS_MAX
from posbatch.batch.model import CardType, Reconciliation, SettlementTotals
from posbatch.batch.terminal_batch import SettleEvent, SettleStep
from posbatch.batch.terminal_batch import apply as settle_apply
from posbatch.errors import Declined, HostUnreachable
from posbatch.terminal._answers import Answer, acted_on
from posbatch.terminal._context import SIGN_ON_RETRIES_MAX, tally_rows
from posbatch.terminal._flows import Flow
from posbatch.terminal._journal import BatchRow, TxnRow
from posbatch.terminal._results import SettlementResult
from posbatch.wire import (
    BatchUploadEndRequest,
    BatchUploadRequest,
    BatchUploadResponse,
    SettlementRequest,
    SettlementResponse,
    UploadRecord,
    decode_totals,
    encode_totals,
)

if TYPE_CHECKING:
    from posbatch.terminal._context import EngineContext

__all__ = ["Settlement"]


class Settlement:
    """Settlement (0500), batch upload (0320) and the moves of the batch row."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def settle_flow(self) -> Flow[SettlementResult]:
        """结算: resume the current batch's settlement where the journal says it stopped.

        If signing on already closed that batch (recovery found the host had
        closed it, e.g. our 0510 was lost), its result is returned and the new
        batch is left open.
        """
        batch = self.ctx.journal.current_batch()
        yield from self.ctx.outstanding.prepare()
        settled = self.ctx.journal.batch(batch.batch_id)
        if settled.settle_step == SettleStep.CLOSED:
            return self.result(settled, batch.step)
        return (yield from self.settle_batch(recovery=False))

    def settle_batch(self, *, recovery: bool) -> Flow[SettlementResult]:
        """Settle the current batch from its persisted step to CLOSED (``recovery``: inside
        a recovery, where a 77 to the 0500 means the host closed the batch already)."""
        batch = self.ctx.journal.current_batch()
        resumed_from = batch.step
        state = self.ctx.journal.state()
        if batch.settle_step in (SettleStep.OPEN, SettleStep.FLUSHING):
            batch = self.move(batch, SettleEvent.BEGIN)
            yield from self.ctx.outstanding.flush()
            batch = self.move(batch, SettleEvent.FLUSHED)
        sign_on_retries = 0
        while batch.settle_step == SettleStep.SETTLING:
            totals = self._totals(self.ctx.journal.transactions(batch.batch_id))
            request = SettlementRequest(
                state.terminal_id, state.merchant_id, self.ctx.new_stan(), batch.batch_no, totals
            )
            answer = yield from self.ctx.answers.exchange(request, SettlementResponse)
            if answer is None:
                raise HostUnreachable(
                    f"settlement of batch {batch.batch_no:06d} not answered; settle again"
                )
            response = answer.message
            assert isinstance(response, SettlementResponse)
            code = response.response_code
            authentic = acted_on(answer)
            if (_asks_sign_on(code) or not authentic) and sign_on_retries < SIGN_ON_RETRIES_MAX:
                sign_on_retries += 1
                yield from self.ctx.recovery.sign_on_flow(reconcile=False)
                continue
            if not authentic:
                raise HostUnreachable(
                    f"the answer to the settlement of batch {batch.batch_no:06d} failed its "
                    "MAC check; settle again"
                )
            if code == BATCH_NUMBER_DIFFERS:
                return (yield from self._settle_refused(batch, answer, recovery, resumed_from))
            if code != APPROVED or response.totals is None:
                raise Declined(
                    f"settlement of batch {batch.batch_no:06d} refused: {describe(code)}",
                    response_code=code,
                )
            changes: dict[str, object] = {
                "terminal_totals": encode_totals(totals),
                "host_totals": encode_totals(response.totals),
                "settle_response_code": code,
                "balanced": response.totals.balanced,
            }
            same = totals.same_amounts(response.totals)
            if response.totals.balanced and same:
                closed = self.close(batch, SettleEvent.BALANCED, "balanced", changes=changes)
                return self.result(closed, resumed_from)
            if response.totals.balanced or _reconciliation_error(response.totals):
                # The host closed this batch before (a repeated answer, or a batch the back
                # office closed): nothing to upload; the difference is the back office's.
                changes["balanced"] = False
                closed = self.close(
                    batch, SettleEvent.HOST_CLOSED, "closed_by_host", changes=changes
                )
                with self.ctx.journal.write(self.ctx.now()) as writer:
                    writer.event(
                        "closed_by_host",
                        f"batch {batch.batch_no:06d} was closed by the host; terminal totals "
                        f"{encode_totals(totals)} host totals {encode_totals(response.totals)}"
                        + ("" if same else ": they differ, see the host's exceptions"),
                        batch_no=batch.batch_no,
                        same_totals=same,
                    )
                return self.result(closed, resumed_from)
            batch = self.move(batch, SettleEvent.NOT_BALANCED, **changes)
        if batch.settle_step == SettleStep.UPLOADING:
            batch = yield from self._upload(batch)
        if batch.settle_step == SettleStep.ENDING:
            batch = yield from self._upload_end(batch)
        return self.result(batch, resumed_from)

    def _settle_refused(
        self, batch: BatchRow, answer: Answer, recovery: bool, resumed_from: str
    ) -> Flow[SettlementResult]:
        """A 77 to our 0500: inside recovery the host closed the batch; else recover first."""
        if recovery:
            detail = getattr(answer.message, "detail", None)
            closed = self.close(
                batch,
                SettleEvent.HOST_CLOSED,
                "closed_by_host",
                changes={"settle_response_code": BATCH_NUMBER_DIFFERS},
            )
            with self.ctx.journal.write(self.ctx.now()) as writer:
                writer.event(
                    "closed_by_host",
                    f"the host closed batch {batch.batch_no:06d} without our settlement; "
                    "its approvals stay in that host batch, totals not compared",
                    batch_no=batch.batch_no,
                    detail=detail,
                )
            return self.result(closed, resumed_from)
        yield from self.ctx.recovery.recover(
            getattr(answer.message, "detail", None),
            cause=f"77 on settlement of batch {batch.batch_no:06d}",
        )
        settled = self.ctx.journal.batch(batch.batch_id)
        if settled.settle_step == SettleStep.CLOSED:
            return self.result(settled, resumed_from)
        return (yield from self.settle_batch(recovery=True))

    def _upload(self, batch: BatchRow) -> Flow[BatchRow]:
        state = self.ctx.journal.state()
        while True:
            rows = [
                row
                for row in self.ctx.journal.transactions(batch.batch_id)
                if row.counted and not row.uploaded
            ]
            if not rows:
                return self.move(batch, SettleEvent.UPLOADED)
            chunk = rows[:UPLOAD_RECORDS_MAX]
            records = tuple(
                UploadRecord(
                    CardType(row.card_type), row.stan, self.ctx.pan_of(row), row.amount_fen
                )
                for row in chunk
            )
            request = BatchUploadRequest(
                state.terminal_id, state.merchant_id, self.ctx.new_stan(), batch.batch_no, records
            )
            approved = yield from self._upload_exchange(batch, request, "batch upload")
            if not approved:
                return self.ctx.journal.batch(batch.batch_id)
            now = self.ctx.now()
            batch = replace(
                batch,
                uploaded_count=batch.uploaded_count + len(chunk),
                upload_messages=batch.upload_messages + 1,
            )
            with self.ctx.journal.write(now) as writer:
                for row in chunk:
                    writer.txn(replace(row, uploaded=True, updated_at=now.isoformat()))
                writer.batch(batch)

    def _upload_end(self, batch: BatchRow) -> Flow[BatchRow]:
        """Send the upload end (0320/207); the batch row as it is afterwards (closed)."""
        state = self.ctx.journal.state()
        total = sum(1 for row in self.ctx.journal.transactions(batch.batch_id) if row.uploaded)
        request = BatchUploadEndRequest(
            state.terminal_id, state.merchant_id, self.ctx.new_stan(), batch.batch_no, total
        )
        approved = yield from self._upload_exchange(batch, request, "upload end")
        if approved:
            return self.close(batch, SettleEvent.ENDED, "uploaded")
        return self.ctx.journal.batch(batch.batch_id)  # closed by the host

    def _upload_exchange(
        self,
        batch: BatchRow,
        request: BatchUploadRequest | BatchUploadEndRequest,
        what: str,
    ) -> Flow[bool]:
        """Send one 0320 of ``batch``: True once approved, False when the host closed the batch.

        A MAC error (A0, or an answer whose own MAC fails) or a 22 signs on again and sends
        the request again with a new STAN, at most ``SIGN_ON_RETRIES_MAX`` times; a
        77 closes the batch as closed by the host; no answer, an answer still not
        authentic, or any other code raises.
        """
        sign_on_retries = 0
        while True:
            answer = yield from self.ctx.answers.exchange(request, BatchUploadResponse)
            if answer is None:
                raise HostUnreachable(
                    f"{what} of batch {batch.batch_no:06d} not answered; settle again"
                )
            assert isinstance(answer.message, BatchUploadResponse)
            code = answer.message.response_code
            authentic = acted_on(answer)
            if (_asks_sign_on(code) or not authentic) and sign_on_retries < SIGN_ON_RETRIES_MAX:
                sign_on_retries += 1
                yield from self.ctx.recovery.sign_on_flow(reconcile=False)
                request = replace(request, stan=self.ctx.new_stan())
                continue
            if not authentic:
                raise HostUnreachable(
                    f"the answer to the {what} of batch {batch.batch_no:06d} failed its MAC "
                    "check; settle again"
                )
            if code == BATCH_NUMBER_DIFFERS:
                self.close(batch, SettleEvent.HOST_CLOSED, "closed_by_host")
                return False
            if code != APPROVED:
                raise Declined(f"{what} refused: {describe(code)}", response_code=code)
            return True

    def move(self, batch: BatchRow, event: SettleEvent, **changes: object) -> BatchRow:
        """Persist ``batch``'s next step by the settlement table (an illegal move raises)."""
        step = settle_apply(batch.settle_step, event)
        moved = replace(batch, step=step.value, **changes)  # type: ignore[arg-type]
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.batch(moved)
            writer.event("settle_step", f"batch {batch.batch_no:06d}: {event.value} → {step}")
        return moved

    def close(
        self,
        batch: BatchRow,
        event: SettleEvent,
        reason: str,
        *,
        host_batch_no: int | None = None,
        changes: dict[str, object] | None = None,
    ) -> BatchRow:
        """Close ``batch`` and open the next one, in one journal write; the closed row."""
        step = settle_apply(batch.settle_step, event)
        now = self.ctx.now()
        closed = replace(
            batch,
            step=step.value,
            closed_at=now.isoformat(),
            close_reason=reason,
            **(changes or {}),  # type: ignore[arg-type]
        )
        following = host_batch_no if host_batch_no is not None else next_batch_no(batch.batch_no)
        opened = BatchRow(
            self.ctx.journal.next_batch_id(), following, SettleStep.OPEN.value, now.isoformat()
        )
        with self.ctx.journal.write(now) as writer:
            writer.batch(closed)
            writer.insert_batch(opened)
            writer.state(replace(self.ctx.journal.state(), batch_id=opened.batch_id))
            writer.event(
                "batch_closed",
                f"batch {batch.batch_no:06d} closed ({reason}); batch {following:06d} opened",
                batch_no=batch.batch_no,
                next_batch_no=following,
                reason=reason,
            )
        return closed

    def result(self, batch: BatchRow, resumed_from: str) -> SettlementResult:
        """What the settlement of ``batch`` came to, for the report."""
        return SettlementResult(
            batch.batch_no,
            batch.balanced,
            _settle_totals(batch.terminal_totals),
            _settle_totals(batch.host_totals),
            batch.uploaded_count,
            batch.close_reason or batch.step,
            resumed_from,
            self.ctx.journal.current_batch().batch_no,
        )

    def _totals(self, rows: list[TxnRow]) -> SettlementTotals:
        """Field 48 of ``rows``: capped and marked (code 3) where it does not fit — a batch
        from before the capacity rules still settles, by batch upload."""
        return tally_rows(rows).capped_totals()


def _asks_sign_on(code: str) -> bool:
    """Whether a believed 0510/0330 code says sign on and send again (codes.py
    ``sign_on_again``: A0, 22) — all but 77, which here says the host closed the batch."""
    return lookup(code).sign_on_again and code != BATCH_NUMBER_DIFFERS


def _reconciliation_error(totals: SettlementTotals) -> bool:
    return Reconciliation.ERROR in (totals.domestic.reconciliation, totals.foreign.reconciliation)


def _settle_totals(text: str | None) -> SettlementTotals | None:
    return decode_totals(text) if text else None
