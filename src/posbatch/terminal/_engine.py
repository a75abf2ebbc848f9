"""The terminal engine: every flow written once, as a sans-IO generator over the journal.

Theory of operation
-------------------
:class:`Terminal` is the facade: it owns a
:class:`~posbatch.terminal._journal.Journal` and the working keys of the current
sign-on (in memory only). Each public ``*_flow`` method returns a generator (see
:mod:`._flows`); a driver feeds it answers. The plain methods (``sale``,
``settle`` …) run the same flow over the synchronous link given at construction.

Journal first: a transaction row is written ``pending`` (with its STAN taken)
before its request is yielded; the outcome is written when the answer comes.
Every flow starts by clearing what is outstanding: sign on if there are no
keys, then send every pending reversal (0400) and every refund still without
an answer. A request with no answer (or one not believed) becomes a pending
reversal at once.

Inside, the engine is five rooms sharing one context (:mod:`._context`), each
with its own theory of operation:

=====================  ===============================================================
room                   what it holds
=====================  ===============================================================
:mod:`._answers`       the exchange of one request, and what an answer is believed to
                       be (VERIFIED / SIGN_ON / UNVERIFIED: the MAC checks)
:mod:`._outstanding`   the reversal / refund-resend queue, cleared before anything else
:mod:`._recovery`      sign-on (sign-off, echo), reconciliation on 77, resync after a
                       reinstall or restore, the manual batch number
:mod:`._financial`     sale, void, refund; the reaction table (authenticity, response
                       code) → reaction, built from :mod:`posbatch.batch.codes`
:mod:`._settlement`    settlement, batch upload, the batch row's moves
=====================  ===============================================================

A journal row's state moves only through :mod:`posbatch.batch.txn_lifecycle`;
a batch's step only through :mod:`posbatch.batch.terminal_batch`.
Limits: ``SEND_ATTEMPTS_MAX`` per outstanding item per flow,
``RECOVERY_RETRIES_MAX`` per request, ``SIGN_ON_RETRIES_MAX`` after an A0,
``RECOVERY_DEPTH_MAX`` nested recoveries, ``STALE_FRAMES_MAX`` frames per answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from posbatch.batch.model import BatchStateDetail
from posbatch.batch.terminal_batch import SettleStep
from posbatch.errors import ConfigError
from posbatch.terminal._answers import Answers
from posbatch.terminal._context import RESPONSE_TIMEOUT_MS, EngineContext, tally_rows
from posbatch.terminal._financial import Financial
from posbatch.terminal._flows import Exchange, Flow, run_flow
from posbatch.terminal._journal import BatchRow, Journal, StateRow, TxnRow, TxnState
from posbatch.terminal._outstanding import Outstanding
from posbatch.terminal._recovery import Recovery
from posbatch.terminal._results import (
    BATCH_LIMIT_DEFAULT,
    BATCH_LIMIT_MAX,
    BalanceResult,
    SettlementResult,
    SignOnResult,
    TransactionResult,
    check_batch_limit,
)
from posbatch.terminal._secrets import TerminalSecrets
from posbatch.terminal._settlement import Settlement
from posbatch.wire import AdminResponse, Header, Message, Tpdu

__all__ = [
    "BATCH_LIMIT_DEFAULT",
    "BATCH_LIMIT_MAX",
    "RESPONSE_TIMEOUT_MS",
    "BalanceResult",
    "SettlementResult",
    "SignOnResult",
    "Terminal",
    "TransactionResult",
]

_T = TypeVar("_T")


class Terminal:
    """A terminal engine over one journal. Not thread-safe: one request in flight."""

    def __init__(
        self,
        journal: Journal,
        secrets: TerminalSecrets,
        *,
        clock: Callable[[], datetime],
        exchange: Exchange | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        timeout_ms: int = RESPONSE_TIMEOUT_MS,
        tpdu: Tpdu | None = None,
        header: Header | None = None,
        settle_on_duplicate: bool = True,
        on_answer: Callable[[Message], None] | None = None,
    ) -> None:
        self._exchange = exchange
        self._ctx = ctx = EngineContext(
            journal,
            secrets,
            clock=clock,
            random_bytes=random_bytes,
            timeout_ms=timeout_ms,
            tpdu=tpdu or Tpdu(),
            header=header or Header(),
            settle_on_duplicate=settle_on_duplicate,
            on_answer=on_answer,
        )
        ctx.answers = Answers(ctx)
        ctx.outstanding = Outstanding(ctx)
        ctx.recovery = Recovery(ctx)
        ctx.financial = Financial(ctx)
        ctx.settlement = Settlement(ctx)

    # --- what the rooms share, as attributes of the facade -----------------------------

    @property
    def journal(self) -> Journal:
        return self._ctx.journal

    @journal.setter
    def journal(self, journal: Journal) -> None:
        self._ctx.journal = journal

    @property
    def timeout_ms(self) -> int:
        return self._ctx.timeout_ms

    @timeout_ms.setter
    def timeout_ms(self, timeout_ms: int) -> None:
        self._ctx.timeout_ms = timeout_ms

    @property
    def settle_on_duplicate(self) -> bool:
        """Policy for a 94 to a fresh STAN: settle the host's batch and retry (True), or
        only show the decline (False: doctor diagnoses it)."""
        return self._ctx.settle_on_duplicate

    @settle_on_duplicate.setter
    def settle_on_duplicate(self, settle: bool) -> None:
        self._ctx.settle_on_duplicate = settle

    @property
    def last_host_detail(self) -> BatchStateDetail | None:
        """Field 63 of the last sign-on."""
        return self._ctx.last_host_detail

    # --- set-up -------------------------------------------------------------------

    @staticmethod
    def initialize(
        journal: Journal,
        *,
        merchant_id: str,
        terminal_id: str,
        host_address: str,
        clock: Callable[[], datetime],
        batch_no: int = 1,
        reinstall: bool = False,
        batch_limit: int = BATCH_LIMIT_DEFAULT,
    ) -> None:
        """Write the first state row and batch of a new journal (refuses a used one).

        Every new journal is ``resync_pending``: its first sign-on settles the
        host's open batch if the host knows this terminal already (a batch
        after 000001 or a closed one). ``reinstall`` says so even when the host
        is still in batch 000001 (software reinstalled before any settlement).
        """
        if journal.initialized:
            raise ConfigError("this journal is initialised already")
        Terminal.check_identity(merchant_id=merchant_id, terminal_id=terminal_id)
        check_batch_limit(batch_limit)
        now = clock()
        at = now.isoformat()
        with journal.write(now) as writer:
            writer.insert_batch(BatchRow(1, batch_no, SettleStep.OPEN.value, at))
            writer.insert_state(
                StateRow(
                    merchant_id,
                    terminal_id,
                    host_address,
                    0,
                    1,
                    False,
                    0,
                    at,
                    True,
                    batch_limit=batch_limit,
                )
            )
            writer.event("initialized", f"terminal {terminal_id} of merchant {merchant_id}")
            if reinstall:
                writer.event("reinstalled", "journal created by a reinstall: resync at sign-on")

    @staticmethod
    def check_identity(*, merchant_id: str, terminal_id: str) -> None:
        """ConfigError unless the ids are what fields 41 (ans8) and 42 (ans15) carry."""
        if not (len(terminal_id) == 8 and terminal_id.isascii() and terminal_id.isprintable()):
            raise ConfigError(f"terminal ID {terminal_id!r} must be 8 printable ascii characters")
        if not (len(merchant_id) == 15 and merchant_id.isascii() and merchant_id.isprintable()):
            raise ConfigError(f"merchant ID {merchant_id!r} must be 15 printable ascii characters")

    @property
    def signed_on(self) -> bool:
        return self._ctx.keys is not None

    def forget_keys(self) -> None:
        """Drop the working keys (as a power cut does); the next flow signs on."""
        self._ctx.keys = None

    def run(self, flow: Flow[_T]) -> _T:
        """Run ``flow`` over the synchronous link given at construction."""
        if self._exchange is None:
            raise ConfigError("this terminal has no synchronous link: use a driver")
        return run_flow(flow, self._exchange)

    # --- plain (synchronous) API ----------------------------------------------------

    def sign_on(self) -> SignOnResult:
        return self.run(self.sign_on_flow())

    def sign_off(self) -> str:
        return self.run(self.sign_off_flow())

    def echo(self) -> str:
        return self.run(self.echo_flow())

    def sale(
        self,
        amount_fen: int,
        pan: str,
        *,
        expiry: str | None = None,
        reference: str | None = None,
        track2: str | None = None,
    ) -> TransactionResult:
        return self.run(
            self.sale_flow(amount_fen, pan, expiry=expiry, reference=reference, track2=track2)
        )

    def void(self, stan: int, *, reference: str | None = None) -> TransactionResult:
        return self.run(self.void_flow(stan, reference=reference))

    def refund(
        self,
        stan: int,
        amount_fen: int,
        *,
        original_batch_no: int | None = None,
        reference: str | None = None,
    ) -> TransactionResult:
        return self.run(
            self.refund_flow(
                stan, amount_fen, original_batch_no=original_batch_no, reference=reference
            )
        )

    def settle(self) -> SettlementResult:
        return self.run(self.settle_flow())

    def flush(self) -> int:
        return self.run(self.flush_flow())

    def set_batch_no(self, first: str, second: str) -> SignOnResult:
        return self.run(self.set_batch_no_flow(first, second))

    # --- local reads ------------------------------------------------------------------

    def state(self) -> StateRow:
        return self.journal.state()

    def current_batch(self) -> BatchRow:
        return self.journal.current_batch()

    def balance(self) -> BalanceResult:
        """Local totals of the current batch (no message sent)."""
        batch = self.journal.current_batch()
        rows = self.journal.transactions(batch.batch_id)
        counted = tally_rows(rows)
        return BalanceResult(
            batch.batch_no,
            batch.step,
            counted.capped_totals(),
            sum(1 for row in rows if row.counted),
            sum(1 for row in rows if row.state in TxnState.OUTSTANDING),
            sum(1 for row in rows if row.training),
            counted,
            self.journal.state().batch_limit,
        )

    def set_batch_limit(self, limit: int) -> None:
        """Settings: settle by itself before one field-48 counter passes ``limit`` (1..999)."""
        check_batch_limit(limit)
        now = self._ctx.now()
        state = self.journal.state()
        with self.journal.write(now) as writer:
            writer.state(replace(state, batch_limit=limit))
            writer.event(
                "settings",
                f"batch limit {state.batch_limit} → {limit} per counter",
                batch_limit=limit,
            )

    def receipt_notes(self, row: TxnRow) -> list[str]:
        """Lines the receipt of ``row`` adds: batches settled by themselves before it."""
        notes = []
        for event in self.journal.events("auto_settled"):
            if event.details.get("txn_id") != row.txn_id:
                continue
            for batch_no in event.details.get("settled_batch_nos", []):
                notes.append(
                    f"批次 {batch_no:06d} 已满，已自动结算 / "
                    f"batch {batch_no:06d} was full: settled automatically"
                )
        return notes

    def batch_notes(self, batch_no: int) -> list[str]:
        """What went wrong or was repaired in batch ``batch_no`` (for the settlement report)."""
        notable = {
            "closed_by_host",
            "recovery",
            "duplicate_stan",
            "unanswered",
            "reversed",
            "batch_full",
        }
        notes = []
        for event in self.journal.events():
            if event.type not in notable:
                continue
            numbers = {event.details.get(key) for key in ("batch_no", "local_batch_no")}
            if batch_no in numbers:
                notes.append(f"{event.type}: {event.message}")
        return notes

    def set_training(self, enabled: bool) -> None:
        now = self._ctx.now()
        with self.journal.write(now) as writer:
            writer.state(replace(self.journal.state(), training=enabled))
            writer.event("training", f"training mode {'on' if enabled else 'off'}")

    def mark_restored(self, why: str) -> None:
        """Treat this journal as restored (as ``restore_journal`` does): its next sign-on
        settles the host's open batch before any new transaction. For a journal found
        older than the host's records — copied back by hand, never restored."""
        now = self._ctx.now()
        with self.journal.write(now) as writer:
            writer.state(replace(self.journal.state(), resync_pending=True))
            writer.event("restored", why)

    def pan_of(self, row: TxnRow) -> str:
        """The clear PAN of a journal row (for batch upload and refunds; never print it)."""
        return self._ctx.pan_of(row)

    # --- flows (each a generator a driver runs) -------------------------------------------

    def sign_on_flow(self, *, reconcile: bool = True) -> Flow[SignOnResult]:
        """0800: new working keys; adopt or reconcile the host's batch number (60.2, 63)."""
        return self._ctx.recovery.sign_on_flow(reconcile=reconcile)

    def set_batch_no_flow(self, first: str, second: str) -> Flow[SignOnResult]:
        """Manual batch number: typed twice, accepted only if the host agrees."""
        return self._ctx.recovery.set_batch_no_flow(first, second)

    def sign_off_flow(self) -> Flow[str]:
        return self._ctx.recovery.sign_off_flow()

    def echo_flow(self) -> Flow[str]:
        return self._ctx.recovery.echo_flow()

    def probe_flow(self, offset: int, timeout_ms: int) -> Flow[AdminResponse | None]:
        """An echo test that changes nothing, for doctor: the answer, or None (no answer)."""
        return self._ctx.recovery.probe_flow(offset, timeout_ms)

    def flush_flow(self) -> Flow[int]:
        """Sign on if needed and clear every outstanding item; how many were cleared."""
        return self._ctx.outstanding.flush_flow()

    def sale_flow(
        self,
        amount_fen: int,
        pan: str,
        *,
        expiry: str | None = None,
        reference: str | None = None,
        track2: str | None = None,
    ) -> Flow[TransactionResult]:
        """消费: journal, send 0200, outcome. No answer → reversed; 77 → recovered and retried."""
        return self._ctx.financial.sale_flow(
            amount_fen, pan, expiry=expiry, reference=reference, track2=track2
        )

    def void_flow(self, stan: int, *, reference: str | None = None) -> Flow[TransactionResult]:
        """消费撤销: the full amount of a sale of the current batch; 61 = the sale."""
        return self._ctx.financial.void_flow(stan, reference=reference)

    def refund_flow(
        self,
        stan: int,
        amount_fen: int,
        *,
        original_batch_no: int | None = None,
        reference: str | None = None,
    ) -> Flow[TransactionResult]:
        """退货: part or all of an earlier sale (any batch); counts in the current batch."""
        return self._ctx.financial.refund_flow(
            stan, amount_fen, original_batch_no=original_batch_no, reference=reference
        )

    def settle_flow(self) -> Flow[SettlementResult]:
        """结算: resume the current batch's settlement where the journal says it stopped."""
        return self._ctx.settlement.settle_flow()

    # --- iteration helpers for reports -------------------------------------------------------

    def iter_batch(self, batch_id: int) -> Iterator[TxnRow]:
        yield from self.journal.transactions(batch_id)
