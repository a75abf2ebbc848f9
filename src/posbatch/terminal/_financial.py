"""Sale, void, refund: journal first, send, write the outcome, then react to it.

Theory of operation
-------------------
Every financial flow is one loop (:meth:`Financial._transact`): clear the
outstanding queue (sign on if needed), settle first if the batch is full or a
settlement was interrupted, write the row ``pending`` with its STAN, send, and
write the outcome. A request with no answer in time is reversed (a refund
resent) at once. An answer is looked up by what it is worth (its authenticity,
:mod:`._answers`) and its response code in the **reaction table**:

=================  ==============================  ===================================
authenticity       response code                   reaction
=================  ==============================  ===================================
VERIFIED           77 (batch number differs)       RECOVER: sign on, reconcile the
                                                   batch with the 77's field 63, retry
VERIFIED           sign_on_again and retry         SIGN_ON: sign on, retry
                   (A0, 22)
VERIFIED           94 (duplicate STAN)             SETTLE_DUPLICATE: the host's batch
                                                   holds what this journal lacks:
                                                   settle it, retry in the next one
VERIFIED           95 (batch full)                 SETTLE_FULL: settle the full batch,
                                                   retry in the next one
VERIFIED           any other                       SHOW: the answer is the outcome
SIGN_ON (unMACed)  77                              RECOVER, with the sign-on's field 63
                                                   (the 77's own is not trusted)
SIGN_ON (unMACed)  A0                              SIGN_ON
UNVERIFIED         any                             NOT_BELIEVED: the STAN is reversed
                                                   (a refund resent); show that
=================  ==============================  ===================================

The table is built from the ``retry`` and ``sign_on_again`` flags of
:mod:`posbatch.batch.codes` (:func:`reaction`), with the three codes whose
reaction is a repair of the batch named: 77, 94, 95. A retried transaction
always gets a new STAN: the old one is declined, reversed or refused. A code
that says ``retry`` but asks for nothing the terminal can repair by itself
(68, 90, 96) is shown: trying again is the cashier's choice.

Every retrying reaction has a limit per transaction (``_TRIES_MAX``) and a
guard: a void is never settled away from its sale's batch (it stays declined
95: refund instead) and a 94 settles only under the ``settle_on_duplicate``
policy. A reaction not taken falls back to SHOW (verified) or NOT_BELIEVED.
A refund without a believed answer is resent as is, never again under a new
STAN — unless the host answered its resend 77 (it never took it).
"""

from __future__ import annotations

import contextlib
import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Final

from posbatch.batch.cards import (
    ENTRY_MODE_MANUAL,
    ENTRY_MODE_SWIPED,
    check_track2,
    expiry_problem,
)
from posbatch.batch.codes import (
    APPROVED,
    BATCH_FULL,
    BATCH_NUMBER_DIFFERS,
    CODES,
    DUPLICATE,
    SENT_WITHOUT_MAC,
    ResponseCode,
    describe,
    lookup,
)
from posbatch.batch.limits import AMOUNT_FEN_MAX, STAN_MAX
from posbatch.batch.model import CardType, Kind, beijing
from posbatch.batch.money import format_fen
from posbatch.batch.terminal_batch import accepts_transactions
from posbatch.batch.totals import (
    TOTAL_AMOUNT_FEN_MAX,
    TOTAL_COUNT_MAX,
    TotalsCounter,
    card_type_of_pan,
)
from posbatch.batch.txn_lifecycle import TxnEvent
from posbatch.errors import ConfigError, Declined, HostUnreachable, TerminalError
from posbatch.terminal._answers import Answer, Authenticity, authenticity, response_code
from posbatch.terminal._context import SIGN_ON_RETRIES_MAX, tally_rows
from posbatch.terminal._flows import Flow
from posbatch.terminal._journal import BatchRow, TxnRow, TxnState
from posbatch.terminal._results import TransactionResult
from posbatch.wire import (
    OriginalTransaction,
    RefundRequest,
    Request,
    ReversalReason,
    SaleRequest,
    TransactionResponse,
    VoidRequest,
    decode_detail,
    mask_pan,
)

if TYPE_CHECKING:
    from posbatch.terminal._context import EngineContext

__all__ = [
    "AMOUNT_FEN_MAX",
    "AUTO_SETTLES_MAX",
    "REACTIONS",
    "RECOVERY_RETRIES_MAX",
    "Financial",
    "Reaction",
    "reaction",
]

RECOVERY_RETRIES_MAX: Final = 1  # a request retried after a 77 recovery (a 94, a 95)
AUTO_SETTLES_MAX: Final = 2  # automatic settlements before one transaction


class Reaction(enum.StrEnum):
    SHOW = "show"  # the answer is the outcome
    NOT_BELIEVED = "not_believed"  # reversed (a refund resent): clear the queue, show that
    RECOVER = "recover"  # sign on, reconcile the batch number, retry under a new STAN
    SIGN_ON = "sign_on"  # sign on (new keys), retry under a new STAN
    SETTLE_DUPLICATE = "settle_duplicate"  # settle the host's batch we lack rows of, retry
    SETTLE_FULL = "settle_full"  # settle the full batch, retry in the next one


_TRIES_MAX: Final[dict[Reaction, int]] = {
    Reaction.RECOVER: RECOVERY_RETRIES_MAX,
    Reaction.SIGN_ON: SIGN_ON_RETRIES_MAX,
    Reaction.SETTLE_DUPLICATE: RECOVERY_RETRIES_MAX,
    Reaction.SETTLE_FULL: RECOVERY_RETRIES_MAX,
}


def _reaction_to(row: ResponseCode) -> Reaction:
    """What a believed answer with ``row``'s code makes the financial flow do."""
    if row.code == BATCH_NUMBER_DIFFERS:
        return Reaction.RECOVER
    if row.code == DUPLICATE:
        return Reaction.SETTLE_DUPLICATE
    if row.code == BATCH_FULL:
        return Reaction.SETTLE_FULL
    if row.sign_on_again and row.retry:
        return Reaction.SIGN_ON
    return Reaction.SHOW


REACTIONS: Final[dict[tuple[Authenticity, str], Reaction]] = {
    **{(Authenticity.VERIFIED, code): _reaction_to(row) for code, row in CODES.items()},
    **{(Authenticity.SIGN_ON, code): _reaction_to(lookup(code)) for code in SENT_WITHOUT_MAC},
}


def reaction(verdict: Authenticity, code: str) -> Reaction:
    """The reaction table's entry; a code it does not list is shown (verified) or not
    believed (anything else)."""
    found = REACTIONS.get((verdict, code))
    if found is not None:
        return found
    return Reaction.SHOW if verdict == Authenticity.VERIFIED else Reaction.NOT_BELIEVED


def _not_taken_for_batch(row: TxnRow) -> bool:
    """A refund the host answered 77 on a resend: it never took it. (A repeat of a request
    the host holds gets its original answer wherever its batch is, never a 77.)"""
    return (
        row.kind == Kind.REFUND.value
        and row.state == TxnState.DECLINED
        and row.response_code == BATCH_NUMBER_DIFFERS
    )


def _full_counter_named(detail: str | None) -> TotalsCounter | None:
    """The counter a 95's field 63 names (``F=``), if it names one we know."""
    try:
        return TotalsCounter(decode_detail(detail or "").get("F", ""))
    except ValueError:
        return None


class Financial:
    """Sale, void and refund flows over one journal."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def sale_flow(
        self,
        amount_fen: int,
        pan: str,
        *,
        expiry: str | None = None,
        reference: str | None = None,
        track2: str | None = None,
    ) -> Flow[TransactionResult]:
        """消费: journal, send 0200, outcome. No answer → reversed; 77 → recovered and retried.

        ``track2`` (a swiped card: ``PAN=YYMM…``) goes in field 35 with entry mode 021 and
        must name ``pan``; without it the card was keyed in (entry mode 012). Track 2 is
        never written to the journal. A card number the host would refuse (14) is refused
        here, before a STAN is taken; a full batch is settled first (see ``_transact``).
        """
        self._check_card(amount_fen, pan, expiry, track2)
        if track2 is not None and expiry is None:
            after = track2.partition("=")[2][:4]
            expiry = after if len(after) == 4 and after.isdigit() else None
        state = self.ctx.journal.state()
        if state.training:
            self.open_batch_for_transactions()
            row = self.write_pending(
                Kind.SALE, amount_fen, pan, expiry, training=True, reference=reference
            )
            return self._result(row)

        def build(row: TxnRow) -> Request:
            return SaleRequest(
                state.terminal_id,
                state.merchant_id,
                row.stan,
                row.batch_no,
                amount_fen,
                pan,
                expiry=expiry,
                entry_mode=ENTRY_MODE_MANUAL if track2 is None else ENTRY_MODE_SWIPED,
                track2=track2,
            )

        return (
            yield from self._transact(
                Kind.SALE,
                build,
                lambda: self.write_pending(Kind.SALE, amount_fen, pan, expiry, reference=reference),
                amount_fen=amount_fen,
                card_type=card_type_of_pan(pan),
            )
        )

    def void_flow(self, stan: int, *, reference: str | None = None) -> Flow[TransactionResult]:
        """消费撤销: the full amount of a sale of the current batch; 61 = the sale."""
        state = self.ctx.journal.state()
        batch = self.ctx.journal.current_batch()
        sale = self._original_sale(stan, batch.batch_no)
        if sale.batch_id != batch.batch_id:
            raise TerminalError(f"sale STAN {stan:06d} is not in the current batch: refund it")
        if sale.state != TxnState.APPROVED:
            raise TerminalError(f"sale STAN {stan:06d} is {sale.state}: it cannot be voided")
        _refuse_void_if_refunded(sale)
        pan = self.ctx.pan_of(sale)

        def build(row: TxnRow) -> Request:
            return VoidRequest(
                state.terminal_id,
                state.merchant_id,
                row.stan,
                row.batch_no,
                row.amount_fen,
                pan,
                original=OriginalTransaction(sale.batch_no, sale.stan, row.original_date),
                original_rrn=sale.rrn,
                original_auth_code=sale.auth_code,
                expiry=sale.expiry,
            )

        def write() -> TxnRow:
            current = self.ctx.journal.transaction(sale.txn_id)
            if current.state != TxnState.APPROVED:
                raise TerminalError(f"sale STAN {stan:06d} is {current.state}: not voided")
            if current.batch_id != self.ctx.journal.current_batch().batch_id:
                raise TerminalError(f"sale STAN {stan:06d} left the current batch: refund it")
            # A refund of this sale left pending went first (outstanding.prepare): it may
            # have been approved since the check above.
            _refuse_void_if_refunded(current)
            return self.write_pending(
                Kind.VOID, sale.amount_fen, pan, sale.expiry, original=sale, reference=reference
            )

        return (
            yield from self._transact(
                Kind.VOID,
                build,
                write,
                amount_fen=sale.amount_fen,
                card_type=CardType(sale.card_type),
            )
        )

    def refund_flow(
        self,
        stan: int,
        amount_fen: int,
        *,
        original_batch_no: int | None = None,
        reference: str | None = None,
    ) -> Flow[TransactionResult]:
        """退货: part or all of an earlier sale (any batch); counts in the current batch."""
        sale = self._original_sale(stan, original_batch_no)
        _refuse_refund_past_the_sale(sale, amount_fen)
        pan = self.ctx.pan_of(sale)

        def write() -> TxnRow:
            # What was outstanding went first (outstanding.prepare): a refund of this sale
            # left pending may have been approved since, or a void of it reversed.
            _refuse_refund_past_the_sale(self.ctx.journal.transaction(sale.txn_id), amount_fen)
            return self.write_pending(
                Kind.REFUND, amount_fen, pan, sale.expiry, original=sale, reference=reference
            )

        return (
            yield from self._transact(
                Kind.REFUND,
                self.refund_request,
                write,
                amount_fen=amount_fen,
                card_type=CardType(sale.card_type),
            )
        )

    def _transact(
        self,
        kind: Kind,
        build: Callable[[TxnRow], Request],
        write: Callable[[], TxnRow],
        *,
        amount_fen: int,
        card_type: CardType,
    ) -> Flow[TransactionResult]:
        """The common life of a sale, void or refund: journal, send, outcome, then what the
        reaction table says — and, before it is written, an automatic settlement of a full
        batch."""
        tries: Counter[Reaction] = Counter()  # retrying reactions taken, against their limits
        settled: list[int] = []  # batches settled by themselves before this transaction
        while True:
            yield from self.ctx.outstanding.prepare()
            if not accepts_transactions(self.ctx.journal.current_batch().settle_step):
                yield from self._finish_interrupted_settlement()
            batch = self.open_batch_for_transactions()
            counter = self._full_counter(batch, kind, amount_fen, card_type)
            if counter is not None:
                yield from self._settle_full(batch, kind, counter, settled, by_host=False)
                continue
            self.ctx.auto_settled_pending = tuple(settled)
            try:
                row = write()
            finally:
                self.ctx.auto_settled_pending = ()
            answer = yield from self.ctx.answers.exchange(build(row), TransactionResponse)
            if answer is None:
                row = self.ctx.outstanding.unanswered(row, ReversalReason.TIMEOUT)
                with contextlib.suppress(HostUnreachable):  # stays pending: goes first next time
                    yield from self.ctx.outstanding.flush()
                row = self.ctx.journal.transaction(row.txn_id)
                if _not_taken_for_batch(row) and tries[Reaction.RECOVER] < RECOVERY_RETRIES_MAX:
                    tries[Reaction.RECOVER] += 1
                    cause = f"77 on resent refund STAN {row.stan:06d}"
                    yield from self.ctx.recovery.recover(None, cause=cause)
                    continue  # the host never took it: made again in the host's batch
                return self._result(row, settled)
            verdict = authenticity(answer)
            row = self.record_answer(row, answer)
            code = response_code(answer)
            react = reaction(verdict, code)
            if not self._may(react, kind, tries):
                react = Reaction.SHOW if verdict == Authenticity.VERIFIED else Reaction.NOT_BELIEVED
            if react == Reaction.SHOW:
                return self._result(row, settled)
            if react == Reaction.NOT_BELIEVED:
                with contextlib.suppress(HostUnreachable):
                    yield from self.ctx.outstanding.flush()
                return self._result(self.ctx.journal.transaction(row.txn_id), settled)
            tries[react] += 1
            if react == Reaction.RECOVER:
                if verdict == Authenticity.VERIFIED:
                    detail = getattr(answer.message, "detail", None)
                    cause = f"77 on {kind.value} STAN {row.stan:06d}"
                else:
                    # An unMACed 77: sign on and recover, ignoring its 63 (it may be
                    # forged); the recovery's flush sends the reversal (the refund).
                    detail = None
                    cause = f"unverified 77 on {kind.value} STAN {row.stan:06d}"
                yield from self.ctx.recovery.recover(detail, cause=cause)
            elif react == Reaction.SIGN_ON:
                self.ctx.keys = None
                yield from self.ctx.outstanding.prepare()  # sign on, then the reversal first
            elif react == Reaction.SETTLE_DUPLICATE:
                # Our journal never reuses a STAN in a batch: the host's batch holds
                # transactions this journal does not know (a reinstall it could not
                # detect). Settle that batch, then retry in a fresh one.
                batch = self.ctx.journal.current_batch()
                with self.ctx.journal.write(self.ctx.now()) as writer:
                    writer.event(
                        "duplicate_stan",
                        f"94 on {kind.value} STAN {row.stan:06d}: host batch "
                        f"{batch.batch_no:06d} holds transactions this journal lacks; "
                        "settling it before retrying",
                        stan=row.stan,
                        batch_no=batch.batch_no,
                    )
                yield from self.ctx.settlement.settle_batch(recovery=True)
            else:
                assert react == Reaction.SETTLE_FULL, react
                # The host counts more in this batch than field 48 can take with this
                # request (it may hold approvals this journal lacks): settle the batch,
                # then send the transaction again, under a new STAN, in the next one.
                full = _full_counter_named(getattr(answer.message, "detail", None))
                yield from self._settle_full(
                    self.ctx.journal.current_batch(), kind, full, settled, by_host=True
                )
            if verdict != Authenticity.VERIFIED and kind == Kind.REFUND:
                # Resent as is above: never again under a new STAN, unless the host said
                # it never took it.
                row = self.ctx.journal.transaction(row.txn_id)
                if not _not_taken_for_batch(row):
                    return self._result(row, settled)
            # The old STAN is reversed, declined or refused: try again under a new one.

    def _may(self, react: Reaction, kind: Kind, tries: Counter[Reaction]) -> bool:
        """Whether ``react`` may be taken now: within its limit, and allowed for ``kind``
        (a void cannot leave its sale's batch: it stays declined 95, refund instead) and
        by the terminal's policy on 94 (``settle_on_duplicate``)."""
        limit = _TRIES_MAX.get(react)
        if limit is not None and tries[react] >= limit:
            return False
        if react == Reaction.SETTLE_FULL and kind == Kind.VOID:
            return False
        return not (react == Reaction.SETTLE_DUPLICATE and not self.ctx.settle_on_duplicate)

    def record_answer(self, row: TxnRow, answer: Answer) -> TxnRow:
        """Write the outcome of ``row`` from its answer, if verified; else reverse or resend it.

        An unMACed A0/77 is no outcome either: a genuine one means the host did
        nothing, a forged one may hide an approval, so the STAN is reversed (a
        refund resent as is) like any answer that does not verify.
        """
        response = answer.message
        assert isinstance(response, TransactionResponse)
        code = response.response_code
        now = self.ctx.now()
        if authenticity(answer) != Authenticity.VERIFIED:
            self.ctx.keys = None  # damage, keys out of step, or "sign on": sign on first
            return self.ctx.outstanding.unanswered(
                replace(row, response_code=code), ReversalReason.FAULT
            )
        outcome = row.moved(
            TxnEvent.APPROVED if code == APPROVED else TxnEvent.DECLINED,
            response_code=code,
            rrn=response.rrn,
            auth_code=response.auth_code,
            host_time=response.local_time,
            host_date=response.local_date,
            updated_at=now.isoformat(),
        )
        with self.ctx.journal.write(now) as writer:
            writer.txn(outcome)
            if code == APPROVED and row.original_txn_id is not None:
                original = self.ctx.journal.transaction(row.original_txn_id)
                if row.kind == Kind.VOID.value:
                    writer.txn(original.moved(TxnEvent.VOIDED, updated_at=now.isoformat()))
                elif row.kind == Kind.REFUND.value:
                    writer.txn(
                        replace(
                            original,
                            refunded_fen=original.refunded_fen + row.amount_fen,
                            updated_at=now.isoformat(),
                        )
                    )
        return outcome

    def write_pending(
        self,
        kind: Kind,
        amount_fen: int,
        pan: str,
        expiry: str | None,
        *,
        original: TxnRow | None = None,
        reference: str | None = None,
        training: bool = False,
    ) -> TxnRow:
        """Take a STAN and write the row ``pending``, in one journal write."""
        batch = self.ctx.journal.current_batch()
        state = self.ctx.journal.state()
        now = self.ctx.now()
        with self.ctx.journal.write(now) as writer:
            if training:
                stan = state.training_seq % STAN_MAX + 1
                writer.state(replace(state, training_seq=stan))
            else:
                stan = self.ctx.take_stan(writer, state)
            row = TxnRow(
                txn_id=self.ctx.journal.next_txn_id(),
                batch_id=batch.batch_id,
                batch_no=batch.batch_no,
                kind=kind.value,
                stan=stan,
                amount_fen=amount_fen,
                pan_sealed=self.ctx.secrets.seal_pan(
                    pan, state.terminal_id, random_bytes=self.ctx.random_bytes
                ),
                pan_masked=mask_pan(pan),
                expiry=expiry,
                card_type=card_type_of_pan(pan).value,
                state=TxnState.TRAINING if training else TxnState.PENDING,
                created_at=now.isoformat(),
                updated_at=now.isoformat(),
                original_txn_id=original.txn_id if original else None,
                original_batch_no=original.batch_no if original else None,
                original_stan=original.stan if original else None,
                original_date=(original.host_date or _beijing_mmdd(original.created_at))
                if original
                else None,
                training=training,
                reference=reference,
            )
            writer.insert_txn(row)
            settled, self.ctx.auto_settled_pending = self.ctx.auto_settled_pending, ()
            if settled and not training:
                writer.event(
                    "auto_settled",
                    f"{kind.value} STAN {stan:06d} in batch {batch.batch_no:06d}, after batch "
                    + ", ".join(f"{batch_no:06d}" for batch_no in settled)
                    + " was settled automatically (full)",
                    txn_id=row.txn_id,
                    stan=stan,
                    batch_no=batch.batch_no,
                    settled_batch_nos=list(settled),
                )
        return row

    def open_batch_for_transactions(self) -> BatchRow:
        batch = self.ctx.journal.current_batch()
        if not accepts_transactions(batch.settle_step):
            raise TerminalError(
                f"settlement of batch {batch.batch_no:06d} is under way ({batch.step}): "
                "run `settle` to finish it first"
            )
        return batch

    def _check_card(
        self, amount_fen: int, pan: str, expiry: str | None, track2: str | None = None
    ) -> None:
        """Refuse, before a STAN is spent or anything is journaled, what the host would
        refuse for the card itself (14): the batch upload could not carry the number, its
        check digit fails, or track 2 names another card (:mod:`posbatch.batch.cards`)."""
        if not 0 < amount_fen <= AMOUNT_FEN_MAX:
            raise ConfigError(f"amount {amount_fen} fen must be 1..{AMOUNT_FEN_MAX}")
        refused = check_track2(pan, track2)
        if refused is not None:
            raise Declined(
                f"{describe(refused.response_code)}: {refused} (checked on the terminal: "
                "nothing was sent)",
                response_code=refused.response_code,
            )
        problem = None if expiry is None else expiry_problem(expiry)
        if problem is not None:
            raise ConfigError(problem)

    def _original_sale(self, stan: int, batch_no: int | None) -> TxnRow:
        for row in self.ctx.journal.find(stan, batch_no):
            if row.kind == Kind.SALE.value:
                return row
        where = f" in batch {batch_no:06d}" if batch_no is not None else ""
        raise TerminalError(f"no sale with STAN {stan:06d}{where} in the journal")

    def refund_request(self, row: TxnRow) -> RefundRequest:
        state = self.ctx.journal.state()
        original_rrn = None
        if row.original_txn_id is not None:
            original_rrn = self.ctx.journal.transaction(row.original_txn_id).rrn
        return RefundRequest(
            state.terminal_id,
            state.merchant_id,
            row.stan,
            row.batch_no,
            row.amount_fen,
            self.ctx.pan_of(row),
            original=OriginalTransaction(
                row.original_batch_no or row.batch_no, row.original_stan or 0, row.original_date
            ),
            original_rrn=original_rrn,
            expiry=row.expiry,
        )

    def _full_counter(
        self, batch: BatchRow, kind: Kind, amount_fen: int, card_type: CardType
    ) -> TotalsCounter | None:
        """The field-48 counter of ``batch`` that this transaction would take past the batch
        limit (a void: past field 48 itself — it cannot leave its sale's batch); None: room.

        Counted are the approvals and the refunds still waiting for an answer (a refund
        resent may yet be approved); ``prepare`` has just flushed everything else.
        """
        rows = self.ctx.journal.transactions(batch.batch_id)
        limit = TOTAL_COUNT_MAX if kind == Kind.VOID else self.ctx.journal.state().batch_limit
        # No counter holds more entries than the batch has rows, no sum more than all its
        # amounts: far from the limits that settles it without counting (every sale asks).
        if len(rows) < limit and sum(row.amount_fen for row in rows) + amount_fen <= (
            TOTAL_AMOUNT_FEN_MAX
        ):
            return None
        counted = tally_rows(rows, with_pending_refunds=True)
        return counted.full_counter(kind, amount_fen, card_type, count_max=limit)

    def _settle_full(
        self,
        batch: BatchRow,
        kind: Kind,
        counter: TotalsCounter | None,
        settled: list[int],
        *,
        by_host: bool,
    ) -> Flow[None]:
        """交易笔数已满，请先结算 — without the cashier: settle the full batch (persisted step
        by step like any settlement, so a crash resumes it) and let the caller go on in the
        next batch. A void cannot (its sale would leave the batch): TerminalError."""
        what_en, what_zh = counter.words if counter is not None else ("a counter", "计数")
        if kind == Kind.VOID:
            raise TerminalError(
                f"批次 {batch.batch_no:06d} 的{what_zh}已满，无法撤销：请先结算，再做退货 / "
                f"batch {batch.batch_no:06d} is full ({what_en}): a void must stay in its "
                "sale's batch — settle, then refund instead"
            )
        if len(settled) >= AUTO_SETTLES_MAX:
            raise TerminalError(
                f"batch {batch.batch_no:06d} is still full after {len(settled)} automatic "
                "settlements: run `posbatch doctor`"
            )
        limit = self.ctx.journal.state().batch_limit
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.event(
                "batch_full",
                (
                    f"the host answered 95 (batch full, {what_en}) to a {kind.value}"
                    if by_host
                    else f"{what_en} of batch {batch.batch_no:06d} reached the batch limit "
                    f"({limit} per counter, or the 12-digit amount) before a {kind.value}"
                )
                + f": settling batch {batch.batch_no:06d} automatically, then the "
                f"{kind.value} goes in the next batch",
                batch_no=batch.batch_no,
                counter=None if counter is None else counter.value,
                batch_limit=limit,
                source="host" if by_host else "terminal",
            )
        result = yield from self.ctx.settlement.settle_batch(recovery=False)
        settled.append(result.batch_no)

    def _finish_interrupted_settlement(self) -> Flow[None]:
        batch = self.ctx.journal.current_batch()
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.event(
                "settle_resumed",
                f"settlement of batch {batch.batch_no:06d} was interrupted at {batch.step}: "
                "finishing it before the next transaction",
                batch_no=batch.batch_no,
                step=batch.step,
            )
        yield from self.ctx.settlement.settle_batch(recovery=False)

    def _result(self, row: TxnRow, settled: list[int] | None = None) -> TransactionResult:
        return TransactionResult(
            row.kind,
            row.txn_id,
            row.stan,
            row.batch_no,
            row.amount_fen,
            row.state,
            row.response_code,
            row.rrn,
            row.auth_code,
            row.pan_masked,
            row.training,
            tuple(settled or ()),
        )


def _beijing_mmdd(created_at: str) -> str:
    """Field 61's date of an original the host never dated: the day it was made, as the
    host dates (Beijing time, like fields 12 and 13)."""
    return f"{beijing(datetime.fromisoformat(created_at)):%m%d}"


def _refuse_void_if_refunded(sale: TxnRow) -> None:
    """TerminalError when ``sale`` was partly refunded: a void is of the full amount."""
    if sale.refunded_fen:
        raise TerminalError(f"sale STAN {sale.stan:06d} was partly refunded: refund the rest")


def _refuse_refund_past_the_sale(sale: TxnRow, amount_fen: int) -> None:
    """TerminalError when ``sale`` has nothing left to refund, ConfigError when
    ``amount_fen`` is more than it has left."""
    stan = sale.stan
    if sale.state not in TxnState.COUNTED:
        raise TerminalError(f"sale STAN {stan:06d} is {sale.state}: nothing to refund")
    if sale.state == TxnState.VOIDED:
        raise TerminalError(f"sale STAN {stan:06d} was voided already")
    left = sale.amount_fen - sale.refunded_fen
    if left <= 0:
        raise TerminalError(
            f"sale STAN {stan:06d} ({format_fen(sale.amount_fen)}) was refunded in full "
            "already: nothing is left to refund"
        )
    if not 0 < amount_fen <= left:
        # yuan, as the cashier typed it: "5000 fen" read as a different amount
        raise ConfigError(
            f"refund {format_fen(amount_fen)}: at most {format_fen(left)} of sale STAN "
            f"{stan:06d} ({format_fen(sale.amount_fen)}) is left to refund"
        )
