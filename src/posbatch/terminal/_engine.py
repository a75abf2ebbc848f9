"""The terminal engine: every flow written once, as a sans-IO generator over the journal.

Theory of operation
-------------------
:class:`Terminal` owns a :class:`~posbatch.terminal._journal.Journal` and the
working keys of the current sign-on (in memory only: after a restart the
terminal signs on again, as a real terminal does every morning). Each public
``*_flow`` method returns a generator (see :mod:`._flows`); a driver feeds it
answers. The plain methods (``sale``, ``settle`` …) run the same flow over the
synchronous link given at construction.

Journal first: a transaction row is written ``pending`` (with its STAN taken)
before its request is yielded; the outcome is written when the answer comes.
Every flow starts by clearing what is outstanding (``_prepare``): sign on if
there are no keys, then send every pending reversal (0400) and every refund
still without an answer (resent as is: the host answers a duplicate with the
original response). A request with no answer (or an answer whose MAC fails)
becomes a pending reversal at once.

Answers are believed only when they are authentic. Every answer except to
sign-on/sign-off/echo (08xx) carries field 64 (DESIGN.md "Keys and MAC"), so
the terminal checks it under the MAK of the sign-on the request was sent
under, for every code, and sorts the answer (:func:`_authenticity`):

=========== ============================ =========================================
verdict     when                         what the flow does
=========== ============================ =========================================
VERIFIED    field 64 checks              acts on the answer
SIGN_ON     no good MAC, code A0 or 77   signs on, but believes nothing else of it
                                         (the host sends these unMACed only when
                                         it cannot MAC: A0, our MAC failed; 77,
                                         we are not signed on and it has no MAK)
UNVERIFIED  field 64 wrong or missing,   not believed: what the answer claims may
            any other code               be damage or forgery
=========== ============================ =========================================

An UNVERIFIED answer is treated as no answer, and the keys are dropped (the
next request signs on first): a MAC that fails under our key is either
damage on the line or keys out of step with the host, and a sign-on repairs
the second for the price of one exchange in the first. A CUP terminal does
this for an approval (reversal reason 96: the MAC of an approval failed);
here it holds for every code, because that is the only reading that keeps
the promise: believing a
forged 0410 "00" would show a sale as reversed that the host still counts;
believing a forged decline would hide an approval. So a sale or void without
a verified answer is reversed (reason 96), a refund is resent as is (the host
answers a duplicate with its original, MACed answer), a reversal stays
``reversal_pending`` and is sent again by the bounded retry loop, and a
settlement (0510) or batch upload (0330) answer is treated like A0 there —
sign on and send again, ``SIGN_ON_RETRIES_MAX`` times, then
:class:`HostUnreachable` with the step kept for the next ``settle`` (a
repeated 0500 or 0320 is harmless by the host's rules).

A SIGN_ON answer is the same "no answer" for the request, plus a sign-on.
The host MACs every answer whenever it holds our MAK (posbatch.host.core,
``_answer_mak``), so a genuine unMACed A0/77 means it did nothing with the
request; a forged one may hide an approval. Hence a sale or void answered so
is reversed (reason 96; the host answers a reversal of an unknown original
00 and records it) before it is tried again under a new STAN — after a
sign-on for A0, after recovery for 77, whose field 63 is not trusted (the
sign-on's is used) — and a refund is resent as is, never under a new STAN.
A reversal or refund resend answered so is sent again after a sign-on; a
0510 or 0330 answered 77 without a good MAC is sent again after a sign-on
(it is not "closed by the host"). A VERIFIED 77 is believed: the host did
not take the request, so it is declined 77, recovery runs and it is retried
without a reversal.

Settlement walks :mod:`posbatch.batch.terminal_batch` step by step, persisting
each move; recovery on 77 signs on and applies :func:`decide_recovery`.
Limits: ``SEND_ATTEMPTS_MAX`` per outstanding item per flow,
``RECOVERY_RETRIES_MAX`` per request, ``SIGN_ON_RETRIES_MAX`` after an A0.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, TypeVar

from posbatch.batch import terminal_batch as tb
from posbatch.batch.cards import ENTRY_MODE_MANUAL, ENTRY_MODE_SWIPED, check_track2
from posbatch.batch.codes import APPROVED, BATCH_FULL, describe
from posbatch.batch.counters import STAN_MAX, next_batch_no, next_stan, parse_batch_no
from posbatch.batch.limits import UPLOAD_RECORDS_MAX
from posbatch.batch.model import BatchStateDetail, CardType, Kind, Reconciliation, SettlementTotals
from posbatch.batch.terminal_batch import (
    LocalBatchView,
    RecoveryAction,
    RecoveryDecision,
    SettleEvent,
    SettleStep,
)
from posbatch.batch.totals import (
    TOTAL_AMOUNT_FEN_MAX,
    TOTAL_COUNT_MAX,
    BatchTally,
    TotalsCounter,
    card_type_of_pan,
    tally,
)
from posbatch.errors import (
    ConfigError,
    Declined,
    DecodeError,
    HostUnreachable,
    KeyCheckError,
    MacError,
    NotSignedOn,
    TerminalError,
)
from posbatch.terminal._flows import Exchange, Flow, Reply, Send, Timeout, run_flow
from posbatch.terminal._journal import BatchRow, Journal, StateRow, TxnRow, TxnState, Writer
from posbatch.terminal._secrets import TerminalSecrets
from posbatch.wire import (
    AdminResponse,
    BatchUploadEndRequest,
    BatchUploadRequest,
    BatchUploadResponse,
    EchoRequest,
    Frame,
    FrameReader,
    Header,
    Message,
    OriginalTransaction,
    ProcessingRequirement,
    RefundRequest,
    Request,
    ReversalReason,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SettlementResponse,
    SignOffRequest,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    TransactionResponse,
    UploadRecord,
    VoidRequest,
    WorkingKeys,
    check_mac,
    decode_batch_detail,
    decode_detail,
    decode_message,
    decode_totals,
    encode_batch_detail,
    encode_frame,
    encode_message,
    encode_totals,
    mask_pan,
    unwrap_working_keys,
)

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

RESPONSE_TIMEOUT_MS: Final = 30_000  # CUP terminals wait 30-60 s for an answer
SEND_ATTEMPTS_MAX: Final = 3  # sends of one reversal / refund resend per flow
RECOVERY_RETRIES_MAX: Final = 1  # a request retried after a 77 recovery
SIGN_ON_RETRIES_MAX: Final = 1  # a request retried after A0 / a sign-on request
STALE_FRAMES_MAX: Final = 4  # frames read for one request before giving up on its answer
RECOVERY_DEPTH_MAX: Final = 2  # nested recoveries (recovery → settle → 77 → …)
AMOUNT_FEN_MAX: Final = 999_999_999_999
# The terminal settles by itself before one field-48 counter of its batch passes this
# many entries (a setting of the journal, ``StateRow.batch_limit``); field 48 counts 999.
BATCH_LIMIT_DEFAULT: Final = 500
BATCH_LIMIT_MAX: Final = TOTAL_COUNT_MAX
AUTO_SETTLES_MAX: Final = 2  # automatic settlements before one transaction
_BATCH_ERROR: Final = "77"
_MAC_ERROR: Final = "A0"
_DUPLICATE: Final = "94"
# Codes after which a refund is worth resending; any other (verified) answer closes it.
_RETRY_CODES: Final = frozenset({"96", "90", "68", "22", _MAC_ERROR})
# A reversal is resent after a 77 too: the host never refuses a reversal for its batch
# number, so a 77 to one (not signed on, or a fault script's) means it reversed nothing.
_REVERSAL_RETRY_CODES: Final = _RETRY_CODES | {_BATCH_ERROR}
# The codes a host may send without a valid MAC (DESIGN.md "Keys and MAC").
_SIGN_ON_CODES: Final = frozenset({_MAC_ERROR, _BATCH_ERROR})

_T = TypeVar("_T")
_M = TypeVar("_M")


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """What a sale, void or refund came to (``approved`` is the only thing a till needs)."""

    kind: str
    txn_id: int
    stan: int
    batch_no: int
    amount_fen: int
    state: str
    response_code: str | None
    rrn: str | None
    auth_code: str | None
    pan_masked: str
    training: bool = False
    # Batches this terminal settled by itself before the transaction, because they were
    # full (its own limit, or the host's 95): the cashier did nothing, the receipt says so.
    settled_batch_nos: tuple[int, ...] = ()

    @property
    def approved(self) -> bool:
        return self.state in TxnState.COUNTED or self.state == TxnState.TRAINING

    @property
    def message(self) -> str:
        if self.state == TxnState.TRAINING:
            return "培训模式 / training mode: not sent to the host"
        if self.state in (TxnState.REVERSAL_PENDING, TxnState.REVERSED):
            return "无应答，已冲正 / no valid answer: the transaction is reversed"
        if self.response_code is None:
            return "无应答 / no answer yet"
        return describe(self.response_code)


@dataclass(frozen=True, slots=True)
class SignOnResult:
    batch_no: int  # the terminal's current batch after sign-on
    host_batch_no: int
    recovery: RecoveryDecision


@dataclass(frozen=True, slots=True)
class SettlementResult:
    batch_no: int
    balanced: bool | None
    terminal_totals: SettlementTotals | None
    host_totals: SettlementTotals | None
    uploaded_count: int
    close_reason: str
    resumed_from: str
    next_batch_no: int


@dataclass(frozen=True, slots=True)
class BalanceResult:
    batch_no: int
    step: str
    totals: SettlementTotals  # field 48 as the 0500 would carry it (capped if over capacity)
    approved_count: int
    outstanding_count: int
    training_count: int
    tally: BatchTally = field(default_factory=BatchTally)  # the batch counted exactly
    batch_limit: int = BATCH_LIMIT_DEFAULT  # entries per counter before it settles by itself

    @property
    def fullest(self) -> int:
        """The highest of the batch's four field-48 counts (what the batch limit is about)."""
        return max(
            self.tally.domestic.debit_count,
            self.tally.domestic.credit_count,
            self.tally.foreign.debit_count,
            self.tally.foreign.credit_count,
        )


@dataclass(frozen=True, slots=True)
class _Answer:
    message: Message
    body: bytes
    header: Header
    mak: bytes | None  # the MAK its request was sent under (None: an 08xx exchange)


class _Authenticity(enum.Enum):
    """What an answer of a MACed exchange is worth (see the theory of operation)."""

    VERIFIED = "verified"
    SIGN_ON = "sign_on"
    UNVERIFIED = "unverified"


def _authenticity(answer: _Answer) -> _Authenticity:
    """Sort ``answer`` by its field 64 under the MAK its request was sent with."""
    if answer.mak is not None:
        try:
            check_mac(answer.body, answer.mak)
        except MacError:
            pass
        else:
            return _Authenticity.VERIFIED
    if _response_code(answer) in _SIGN_ON_CODES:
        return _Authenticity.SIGN_ON
    return _Authenticity.UNVERIFIED


def _acted_on(answer: _Answer) -> bool:
    """Whether a settlement or upload answer may be acted on: verified, or an unMACed A0.

    An unMACed 77 is not: the host MACs every 77 to a signed-on terminal, so
    one without a good MAC is either "not signed on" (signing on and sending
    again gets the real answer) or forged (it would close the batch as closed
    by the host without settling it).
    """
    verdict = _authenticity(answer)
    if verdict == _Authenticity.SIGN_ON:
        return _response_code(answer) == _MAC_ERROR
    return verdict == _Authenticity.VERIFIED


def _not_taken_for_batch(row: TxnRow) -> bool:
    """A refund the host answered 77 on a resend: it never took it. (A repeat of a request
    the host holds gets its original answer wherever its batch is, never a 77.)"""
    return (
        row.kind == Kind.REFUND.value
        and row.state == TxnState.DECLINED
        and row.response_code == _BATCH_ERROR
    )


def _response_code(answer: _Answer) -> str:
    code: str = getattr(answer.message, "response_code")  # noqa: B009  every answer type has one
    return code


def _tally(rows: list[TxnRow], *, with_pending_refunds: bool = False) -> BatchTally:
    """What ``rows`` count in field 48, exactly (and, if told, the refunds still waiting
    for an answer: a refund resent may yet be approved)."""
    return tally(
        (Kind(row.kind), row.amount_fen, CardType(row.card_type))
        for row in rows
        if row.counted or (with_pending_refunds and row.state == TxnState.RESEND_PENDING)
    )


def _full_counter_named(detail: str | None) -> TotalsCounter | None:
    """The counter a 95's field 63 names (``F=``), if it names one we know."""
    try:
        return TotalsCounter(decode_detail(detail or "").get("F", ""))
    except ValueError:
        return None


def _check_batch_limit(limit: int) -> None:
    if not 1 <= limit <= BATCH_LIMIT_MAX:
        raise ConfigError(f"batch limit {limit}: 1..{BATCH_LIMIT_MAX} transactions per counter")


def _reconciliation_error(totals: SettlementTotals) -> bool:
    return Reconciliation.ERROR in (totals.domestic.reconciliation, totals.foreign.reconciliation)


def _settle_totals(text: str | None) -> SettlementTotals | None:
    return decode_totals(text) if text else None


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
    ) -> None:
        self.journal = journal
        self._secrets = secrets
        self._clock = clock
        self._exchange = exchange
        self._random_bytes = random_bytes
        self.timeout_ms = timeout_ms
        self._tpdu = tpdu or Tpdu()
        self._header = header or Header()
        self._keys: WorkingKeys | None = None
        self._recovery_depth = 0
        # Batches settled automatically before the transaction being written (its receipt
        # says so: an ``auto_settled`` event in the same journal write as its row).
        self._auto_settled_pending: tuple[int, ...] = ()
        # Policy for a 94 to a fresh STAN (the host's batch holds transactions this
        # journal lacks): True (default) settles that batch at once and retries the
        # request in the next one; False only shows the decline (doctor diagnoses it).
        self.settle_on_duplicate = settle_on_duplicate
        self.last_host_detail: BatchStateDetail | None = None  # field 63 of the last sign-on

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
        _check_batch_limit(batch_limit)
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
        return self._keys is not None

    def forget_keys(self) -> None:
        """Drop the working keys (as a power cut does); the next flow signs on."""
        self._keys = None

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
        counted = _tally(rows)
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
        _check_batch_limit(limit)
        now = self._clock()
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
        now = self._clock()
        with self.journal.write(now) as writer:
            writer.state(replace(self.journal.state(), training=enabled))
            writer.event("training", f"training mode {'on' if enabled else 'off'}")

    def mark_restored(self, why: str) -> None:
        """Treat this journal as restored (as ``restore_journal`` does): its next sign-on
        settles the host's open batch before any new transaction. For a journal found
        older than the host's records — copied back by hand, never restored."""
        now = self._clock()
        with self.journal.write(now) as writer:
            writer.state(replace(self.journal.state(), resync_pending=True))
            writer.event("restored", why)

    def pan_of(self, row: TxnRow) -> str:
        """The clear PAN of a journal row (for batch upload and refunds; never print it)."""
        return self._secrets.open_pan(row.pan_sealed, self.journal.state().terminal_id)

    # --- helpers: counters, frames, answers ---------------------------------------------

    def _now(self) -> datetime:
        return self._clock()

    def _take_stan(self, writer: Writer, state: StateRow) -> int:
        stan = next_stan(state.stan) if state.stan else 1
        writer.state(replace(state, stan=stan))
        return stan

    def _new_stan(self) -> int:
        with self.journal.write(self._now()) as writer:
            return self._take_stan(writer, self.journal.state())

    def _frame(self, message: Request, *, mac: bool) -> bytes:
        mak = None
        if mac:
            if self._keys is None:
                raise NotSignedOn("no working keys: sign on first")
            mak = self._keys.mak
        body = encode_message(message, mak=mak)
        return encode_frame(Frame(self._tpdu, self._header, body))

    def _exchange_flow(
        self, message: Request, expected: type[_M], *, mac: bool = True
    ) -> Flow[_Answer | None]:
        """Send ``message``; the answer if one of type ``expected`` for its STAN came in time.

        A frame that is not that answer (a duplicate of an earlier answer still in
        the stream, garbage) is skipped and the flow keeps listening
        (``Send(b"")``), at most ``STALE_FRAMES_MAX`` times.
        """
        frame = self._frame(message, mac=mac)
        mak = self._keys.mak if mac and self._keys is not None else None
        reply: Reply = yield Send(frame, self.timeout_ms)
        for _ in range(STALE_FRAMES_MAX):
            if isinstance(reply, Timeout):
                return None
            answer = self._match(reply, message, expected, mak)
            if answer is not None:
                return answer
            reply = yield Send(b"", self.timeout_ms)
        return None

    def _match(
        self, reply: bytes, message: Request, expected: type[_M], mak: bytes | None
    ) -> _Answer | None:
        try:
            frames = FrameReader().feed(reply)
            if len(frames) != 1:
                return None
            frame = frames[0]
            answer = decode_message(frame.body)
        except (DecodeError, ValueError):
            return None
        if not isinstance(answer, expected):
            return None
        if (
            getattr(answer, "stan", None) != message.stan
            or getattr(answer, "terminal_id", None) != message.terminal_id
            or getattr(answer, "kind", getattr(answer, "KIND", None)) != message.KIND
        ):
            return None
        if frame.header.processing_requirement == ProcessingRequirement.SIGN_ON:
            self._keys = None
        return _Answer(answer, frame.body, frame.header, mak)

    def _totals(self, rows: list[TxnRow]) -> SettlementTotals:
        """Field 48 of ``rows``: capped and marked (code 3) where it does not fit — a batch
        from before the capacity rules still settles, by batch upload."""
        return _tally(rows).capped_totals()

    def _view(self, batch: BatchRow) -> LocalBatchView:
        rows = self.journal.transactions(batch.batch_id)
        return LocalBatchView(
            batch.batch_no,
            batch.settle_step,
            sum(1 for row in rows if row.counted),
            sum(1 for row in rows if row.state in TxnState.OUTSTANDING),
        )

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

    def _move(self, batch: BatchRow, event: SettleEvent, **changes: object) -> BatchRow:
        step = tb.apply(batch.settle_step, event)
        moved = replace(batch, step=step.value, **changes)  # type: ignore[arg-type]
        with self.journal.write(self._now()) as writer:
            writer.batch(moved)
            writer.event("settle_step", f"batch {batch.batch_no:06d}: {event.value} → {step}")
        return moved

    def _close(
        self,
        batch: BatchRow,
        event: SettleEvent,
        reason: str,
        *,
        host_batch_no: int | None = None,
        changes: dict[str, object] | None = None,
    ) -> BatchRow:
        """Close ``batch`` and open the next one, in one journal write; the closed row."""
        step = tb.apply(batch.settle_step, event)
        now = self._now()
        closed = replace(
            batch,
            step=step.value,
            closed_at=now.isoformat(),
            close_reason=reason,
            **(changes or {}),  # type: ignore[arg-type]
        )
        following = host_batch_no if host_batch_no is not None else next_batch_no(batch.batch_no)
        opened = BatchRow(
            self.journal.next_batch_id(), following, SettleStep.OPEN.value, now.isoformat()
        )
        with self.journal.write(now) as writer:
            writer.batch(closed)
            writer.insert_batch(opened)
            writer.state(replace(self.journal.state(), batch_id=opened.batch_id))
            writer.event(
                "batch_closed",
                f"batch {batch.batch_no:06d} closed ({reason}); batch {following:06d} opened",
                batch_no=batch.batch_no,
                next_batch_no=following,
                reason=reason,
            )
        return closed

    # --- sign-on, sign-off, echo ----------------------------------------------------------

    def sign_on_flow(self, *, reconcile: bool = True) -> Flow[SignOnResult]:
        """0800: new working keys; adopt or reconcile the host's batch number (60.2, 63)."""
        state = self.journal.state()
        batch = self.journal.current_batch()
        stan = self._new_stan()
        request = SignOnRequest(state.terminal_id, state.merchant_id, stan, batch.batch_no)
        answer = yield from self._exchange_flow(request, SignOnResponse, mac=False)
        if answer is None:
            raise HostUnreachable("sign-on not answered")
        response = answer.message
        assert isinstance(response, SignOnResponse)
        if response.response_code != APPROVED:
            raise Declined(
                f"sign-on refused: {describe(response.response_code)}",
                response_code=response.response_code,
            )
        if response.working_keys is None:
            raise Declined("sign-on answer carries no working keys", response_code="96")
        try:
            self._keys = unwrap_working_keys(self._secrets.master_key, response.working_keys)
        except KeyCheckError as exc:
            raise TerminalError(f"sign-on keys do not check: wrong master key? ({exc})") from exc
        detail = response.batch_state
        self.last_host_detail = detail
        if not reconcile:
            decision = tb.decide_recovery(self._view(batch), response.batch_no, detail)
            return SignOnResult(batch.batch_no, response.batch_no, decision)
        decision = yield from self._reconcile(response.batch_no, detail, cause="sign-on")
        if self.journal.state().resync_pending:
            yield from self._resync(response.batch_no, detail)
        return SignOnResult(self.journal.current_batch().batch_no, response.batch_no, decision)

    def _resync(self, host_batch_no: int, detail: BatchStateDetail | None) -> Flow[None]:
        """A new or restored journal: settle the host's open batch before trading.

        The journal cannot know what that batch already holds (approvals made
        before a reinstall or after the backup); reusing its STANs would be
        answered 94. Settling it hands the host our records and lets it put
        what only it has into exceptions; nothing is lost on either side. A
        host that has never seen this terminal (batch 000001, none closed) has
        nothing to resync.
        """
        fresh_host = host_batch_no == 1 and (detail is None or detail.last_closed_batch_no is None)
        known_history = bool(self.journal.events("restored") or self.journal.events("reinstalled"))
        if known_history or not fresh_host:
            batch = self.journal.current_batch()
            with self.journal.write(self._now()) as writer:
                writer.event(
                    "resync",
                    f"new or restored journal: settling the host's batch {host_batch_no:06d} "
                    "before any new transaction",
                    host_batch_no=host_batch_no,
                    local_batch_no=batch.batch_no,
                )
            yield from self._flush()
            yield from self._settle_batch(recovery=True)
        with self.journal.write(self._now()) as writer:
            writer.state(replace(self.journal.state(), resync_pending=False))

    def _reconcile(
        self, host_batch_no: int, detail: BatchStateDetail | None, *, cause: str
    ) -> Flow[RecoveryDecision]:
        batch = self.journal.current_batch()
        decision = tb.decide_recovery(self._view(batch), host_batch_no, detail)
        if decision.action == RecoveryAction.RESUME:
            return decision
        with self.journal.write(self._now()) as writer:
            writer.event(
                "recovery",
                decision.reason,
                cause=cause,
                action=decision.action.value,
                local_batch_no=batch.batch_no,
                host_batch_no=host_batch_no,
                detail=encode_batch_detail(detail) if detail is not None else None,
            )
        if decision.action == RecoveryAction.ADOPT:
            self._renumber(batch, host_batch_no, "adopted at " + cause)
        elif decision.action == RecoveryAction.SET_ASIDE:
            self._close(batch, SettleEvent.HOST_CLOSED, "set_aside", host_batch_no=host_batch_no)
        elif self._recovery_depth < RECOVERY_DEPTH_MAX:
            self._recovery_depth += 1
            try:
                yield from self._settle_batch(recovery=True)
            finally:
                self._recovery_depth -= 1
            current = self.journal.current_batch()
            if current.batch_no != host_batch_no and not self._view(current).counted_count:
                self._renumber(current, host_batch_no, "adopted after settling the old batch")
        else:
            raise TerminalError("recovery did not converge: run `posbatch doctor`")
        return decision

    def _renumber(self, batch: BatchRow, batch_no: int, why: str) -> None:
        tb.apply(batch.settle_step, SettleEvent.RENUMBER)
        with self.journal.write(self._now()) as writer:
            writer.batch(replace(batch, batch_no=batch_no))
            writer.event(
                "batch_renumbered",
                f"batch {batch.batch_no:06d} → {batch_no:06d} ({why})",
                old_batch_no=batch.batch_no,
                new_batch_no=batch_no,
            )

    def set_batch_no_flow(self, first: str, second: str) -> Flow[SignOnResult]:
        """Manual batch number: typed twice, accepted only if the host agrees."""
        typed = parse_batch_no(first)
        if parse_batch_no(second) != typed:
            raise ConfigError("the two entries differ: type the batch number again")
        batch = self.journal.current_batch()
        view = self._view(batch)
        if batch.settle_step != SettleStep.OPEN or view.counted_count or view.pending_count:
            raise ConfigError(
                f"batch {batch.batch_no:06d} holds transactions: settle it before renumbering"
            )
        result = yield from self.sign_on_flow(reconcile=False)
        if result.host_batch_no != typed:
            with self.journal.write(self._now()) as writer:
                writer.event(
                    "manual_batch_no_refused",
                    f"typed {typed:06d}, host has {result.host_batch_no:06d}",
                    typed=typed,
                    host_batch_no=result.host_batch_no,
                )
            raise ConfigError(
                f"the host's batch number is {result.host_batch_no:06d}, not {typed:06d}: "
                "nothing changed (typing it would have caused a 77)"
            )
        if typed != batch.batch_no:
            self._renumber(batch, typed, "typed by hand, confirmed by the host")
        with self.journal.write(self._now()) as writer:
            writer.event(
                "manual_batch_no", f"batch number {typed:06d} entered and confirmed", typed=typed
            )
        return SignOnResult(typed, result.host_batch_no, result.recovery)

    def sign_off_flow(self) -> Flow[str]:
        state = self.journal.state()
        stan = self._new_stan()
        request = SignOffRequest(
            state.terminal_id, state.merchant_id, stan, self.journal.current_batch().batch_no
        )
        answer = yield from self._exchange_flow(request, AdminResponse, mac=False)
        self._keys = None
        if answer is None:
            raise HostUnreachable("sign-off not answered")
        assert isinstance(answer.message, AdminResponse)
        return answer.message.response_code

    def echo_flow(self) -> Flow[str]:
        state = self.journal.state()
        stan = self._new_stan()
        request = EchoRequest(
            state.terminal_id, state.merchant_id, stan, self.journal.current_batch().batch_no
        )
        answer = yield from self._exchange_flow(request, AdminResponse, mac=False)
        if answer is None:
            raise HostUnreachable("echo not answered")
        assert isinstance(answer.message, AdminResponse)
        return answer.message.response_code

    def probe_flow(self, offset: int, timeout_ms: int) -> Flow[AdminResponse | None]:
        """An echo test that changes nothing, for doctor: the answer, or None (no answer).

        Its STAN is borrowed, not taken: the ``offset``-th after the journal's last
        (1 = the next one), and nothing is written. An echo changes nothing on the host
        either (docs/host.md), so the next real request may use the same STAN.
        """
        state = self.journal.state()
        stan = state.stan or STAN_MAX
        for _ in range(offset):
            stan = next_stan(stan)
        request = EchoRequest(
            state.terminal_id, state.merchant_id, stan, self.journal.current_batch().batch_no
        )
        frame = self._frame(request, mac=False)
        reply: Reply = yield Send(frame, timeout_ms)
        for _ in range(STALE_FRAMES_MAX):
            if isinstance(reply, Timeout):
                return None
            answer = self._match(reply, request, AdminResponse, None)
            if answer is not None:
                assert isinstance(answer.message, AdminResponse)
                return answer.message
            reply = yield Send(b"", timeout_ms)
        return None

    # --- outstanding items: reversals and refund resends ------------------------------------

    def _prepare(self) -> Flow[None]:
        if self._keys is None:
            yield from self.sign_on_flow()
        yield from self._flush()

    def flush_flow(self) -> Flow[int]:
        """Sign on if needed and clear every outstanding item; how many were cleared."""
        before = len(self.journal.outstanding())
        yield from self._prepare()
        return before - len(self.journal.outstanding())

    def _flush(self) -> Flow[None]:
        """Send every outstanding item, and end signed on if anything was sent: an answer
        to a resend may drop the keys (A0, a 77, one not believed) and whatever the flow
        sends next — a sale, a 0500 — needs them. Keys only: the next 77 reconciles."""
        sent = False
        for outstanding in self.journal.outstanding():
            row = outstanding
            if row.state == TxnState.PENDING:
                row = self._unanswered(row, ReversalReason.TIMEOUT)
            if row.state == TxnState.REVERSAL_PENDING:
                yield from self._send_reversal(row)
                sent = True
            elif row.state == TxnState.RESEND_PENDING:
                yield from self._resend_refund(row)
                sent = True
        if sent and self._keys is None:
            yield from self.sign_on_flow(reconcile=False)

    def _unanswered(self, row: TxnRow, reason: ReversalReason) -> TxnRow:
        """A request without a trustworthy answer: reverse it (refunds are resent instead)."""
        if row.kind == Kind.REFUND.value:
            changed = replace(
                row, state=TxnState.RESEND_PENDING, updated_at=self._now().isoformat()
            )
        else:
            changed = replace(
                row,
                state=TxnState.REVERSAL_PENDING,
                reversal_reason=reason.value,
                updated_at=self._now().isoformat(),
            )
        with self.journal.write(self._now()) as writer:
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
        state = self.journal.state()
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
                self.pan_of(row),
                original_kind=Kind(row.kind),
                reason=ReversalReason(row.reversal_reason or ReversalReason.TIMEOUT.value),
                original=original,
                expiry=row.expiry,
            ),
            retry_codes=_REVERSAL_RETRY_CODES,
            failure=f"reversal of STAN {row.stan:06d} not accepted",
            next_time="it stays pending and goes first next time",
        )
        assert isinstance(answer.message, TransactionResponse)
        code = answer.message.response_code
        with self.journal.write(self._now()) as writer:
            writer.txn(replace(row, state=TxnState.REVERSED, updated_at=self._now().isoformat()))
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
            lambda: self._refund_request(row),
            retry_codes=_RETRY_CODES,
            failure=f"refund STAN {row.stan:06d} not answered",
            next_time="it is resent first next time",
        )
        self._record_answer(row, answer)

    def _resend_until_answered(
        self,
        row: TxnRow,
        new_request: Callable[[], ReversalRequest | RefundRequest],
        *,
        retry_codes: frozenset[str],
        failure: str,
        next_time: str,
    ) -> Flow[tuple[TxnRow, _Answer]]:
        """Send ``row`` again until the host answers it, authentic, with no code of ``retry_codes``.

        Signs on first whenever there are no working keys (a MAC error, ours or
        the host's, drops them). An answer whose MAC does not verify counts as
        no answer. Every try is counted on the row and written to the journal;
        after ``SEND_ATTEMPTS_MAX`` tries the row stays pending and
        :class:`HostUnreachable` says so. Returns the row as written and the
        answer (its MAC verified, or an A0/77 the host sends without one).
        """
        attempts = 0
        while True:
            if self._keys is None:
                yield from self.sign_on_flow()
            answer = yield from self._exchange_flow(new_request(), TransactionResponse)
            attempts += 1
            row = replace(row, send_attempts=row.send_attempts + 1)
            code = self._believed_code(answer)
            if code is None or code in retry_codes:
                with self.journal.write(self._now()) as writer:
                    writer.txn(replace(row, updated_at=self._now().isoformat()))
                if attempts >= SEND_ATTEMPTS_MAX:
                    raise HostUnreachable(f"{failure} after {attempts} tries; {next_time}")
                continue
            assert answer is not None
            return row, answer

    def _believed_code(self, answer: _Answer | None) -> str | None:
        """The response code of ``answer`` if it is believed, else None (as no answer).

        Only a verified answer is believed; an unMACed A0/77 asks for a sign-on
        and says nothing about the request (sent again after it). Drops the
        working keys when the answer asks for a sign-on (A0, 77) or is not
        verified, so the next request signs on first.
        """
        if answer is None:
            return None
        verdict = _authenticity(answer)
        code = _response_code(answer)
        if verdict != _Authenticity.VERIFIED or code in _SIGN_ON_CODES:
            self._keys = None
        return code if verdict == _Authenticity.VERIFIED else None

    # --- financial transactions --------------------------------------------------------

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
        if expiry is not None and not (len(expiry) == 4 and expiry.isascii() and expiry.isdigit()):
            raise ConfigError("expiry is YYMM, 4 digits")

    def _open_batch_for_transactions(self) -> BatchRow:
        batch = self.journal.current_batch()
        if not tb.accepts_transactions(batch.settle_step):
            raise TerminalError(
                f"settlement of batch {batch.batch_no:06d} is under way ({batch.step}): "
                "run `settle` to finish it first"
            )
        return batch

    def _write_pending(
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
        batch = self.journal.current_batch()
        state = self.journal.state()
        now = self._now()
        with self.journal.write(now) as writer:
            if training:
                stan = state.training_seq % 999_999 + 1
                writer.state(replace(state, training_seq=stan))
            else:
                stan = self._take_stan(writer, state)
            row = TxnRow(
                txn_id=self.journal.next_txn_id(),
                batch_id=batch.batch_id,
                batch_no=batch.batch_no,
                kind=kind.value,
                stan=stan,
                amount_fen=amount_fen,
                pan_sealed=self._secrets.seal_pan(
                    pan, state.terminal_id, random_bytes=self._random_bytes
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
                original_date=(original.host_date or original.created_at[5:10].replace("-", ""))
                if original
                else None,
                training=training,
                reference=reference,
            )
            writer.insert_txn(row)
            settled, self._auto_settled_pending = self._auto_settled_pending, ()
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

    def _record_answer(self, row: TxnRow, answer: _Answer) -> TxnRow:
        """Write the outcome of ``row`` from its answer, if verified; else reverse or resend it.

        An unMACed A0/77 is no outcome either: a genuine one means the host did
        nothing, a forged one may hide an approval, so the STAN is reversed (a
        refund resent as is) like any answer that does not verify.
        """
        response = answer.message
        assert isinstance(response, TransactionResponse)
        code = response.response_code
        now = self._now()
        if _authenticity(answer) != _Authenticity.VERIFIED:
            self._keys = None  # damage, keys out of step, or "sign on": sign on first
            return self._unanswered(replace(row, response_code=code), ReversalReason.FAULT)
        outcome = replace(
            row,
            state=TxnState.APPROVED if code == APPROVED else TxnState.DECLINED,
            response_code=code,
            rrn=response.rrn,
            auth_code=response.auth_code,
            host_time=response.local_time,
            host_date=response.local_date,
            updated_at=now.isoformat(),
        )
        with self.journal.write(now) as writer:
            writer.txn(outcome)
            if code == APPROVED and row.original_txn_id is not None:
                original = self.journal.transaction(row.original_txn_id)
                if row.kind == Kind.VOID.value:
                    writer.txn(replace(original, state=TxnState.VOIDED, updated_at=now.isoformat()))
                elif row.kind == Kind.REFUND.value:
                    writer.txn(
                        replace(
                            original,
                            refunded_fen=original.refunded_fen + row.amount_fen,
                            updated_at=now.isoformat(),
                        )
                    )
        return outcome

    def _financial(
        self,
        kind: Kind,
        build: Callable[[TxnRow], Request],
        write: Callable[[], TxnRow],
        *,
        amount_fen: int,
        card_type: CardType,
    ) -> Flow[TransactionResult]:
        """The common life of a sale, void or refund: journal, send, outcome, 77/A0/94/95
        handling — and, before it is written, an automatic settlement of a full batch."""
        retries_77 = 0
        retries_a0 = 0
        retries_94 = 0
        retries_95 = 0
        settled: list[int] = []  # batches settled by themselves before this transaction
        while True:
            yield from self._prepare()
            if not tb.accepts_transactions(self.journal.current_batch().settle_step):
                yield from self._finish_interrupted_settlement()
            batch = self._open_batch_for_transactions()
            counter = self._full_counter(batch, kind, amount_fen, card_type)
            if counter is not None:
                yield from self._settle_full(batch, kind, counter, settled, by_host=False)
                continue
            self._auto_settled_pending = tuple(settled)
            try:
                row = write()
            finally:
                self._auto_settled_pending = ()
            answer = yield from self._exchange_flow(build(row), TransactionResponse)
            if answer is None:
                row = self._unanswered(row, ReversalReason.TIMEOUT)
                with contextlib.suppress(HostUnreachable):  # stays pending: goes first next time
                    yield from self._flush()
                row = self.journal.transaction(row.txn_id)
                if _not_taken_for_batch(row) and retries_77 < RECOVERY_RETRIES_MAX:
                    retries_77 += 1
                    cause = f"77 on resent refund STAN {row.stan:06d}"
                    yield from self._recover(None, cause=cause)
                    continue  # the host never took it: made again in the host's batch
                return self._result(row, settled)
            row = self._record_answer(row, answer)
            code = _response_code(answer)
            if row.state in (TxnState.REVERSAL_PENDING, TxnState.RESEND_PENDING):
                asks_sign_on = _authenticity(answer) == _Authenticity.SIGN_ON
                if asks_sign_on and code == _BATCH_ERROR and retries_77 < RECOVERY_RETRIES_MAX:
                    # An unMACed 77: sign on and recover, ignoring its 63 (it may be
                    # forged); the recovery's flush sends the reversal (the refund).
                    retries_77 += 1
                    cause = f"unverified 77 on {kind.value} STAN {row.stan:06d}"
                    yield from self._recover(None, cause=cause)
                elif asks_sign_on and code == _MAC_ERROR and retries_a0 < SIGN_ON_RETRIES_MAX:
                    retries_a0 += 1
                    yield from self._prepare()  # sign on, then the reversal (the refund) first
                else:
                    with contextlib.suppress(HostUnreachable):
                        yield from self._flush()
                    return self._result(self.journal.transaction(row.txn_id), settled)
                if kind == Kind.REFUND:  # resent as is above: never again under a new STAN,
                    row = self.journal.transaction(row.txn_id)
                    if not _not_taken_for_batch(row):  # unless the host said it never took it
                        return self._result(row, settled)
                continue  # the old STAN is reversed (or refused): try again under a new one
            if code == _BATCH_ERROR and retries_77 < RECOVERY_RETRIES_MAX:
                retries_77 += 1
                detail = getattr(answer.message, "detail", None)
                yield from self._recover(detail, cause=f"77 on {kind.value} STAN {row.stan:06d}")
                continue
            if (
                code == _DUPLICATE
                and self.settle_on_duplicate
                and retries_94 < RECOVERY_RETRIES_MAX
            ):
                # Our journal never reuses a STAN in a batch: the host's batch holds
                # transactions this journal does not know (a reinstall it could not
                # detect). Settle that batch, then retry in a fresh one.
                retries_94 += 1
                batch = self.journal.current_batch()
                with self.journal.write(self._now()) as writer:
                    writer.event(
                        "duplicate_stan",
                        f"94 on {kind.value} STAN {row.stan:06d}: host batch "
                        f"{batch.batch_no:06d} holds transactions this journal lacks; "
                        "settling it before retrying",
                        stan=row.stan,
                        batch_no=batch.batch_no,
                    )
                yield from self._settle_batch(recovery=True)
                continue
            if code == BATCH_FULL and kind != Kind.VOID and retries_95 < RECOVERY_RETRIES_MAX:
                # The host counts more in this batch than field 48 can take with this
                # request (it may hold approvals this journal lacks): settle the batch,
                # then send the transaction again, under a new STAN, in the next one. A
                # void cannot leave its sale's batch: it stays declined 95 (refund instead).
                retries_95 += 1
                full = _full_counter_named(getattr(answer.message, "detail", None))
                yield from self._settle_full(
                    self.journal.current_batch(), kind, full, settled, by_host=True
                )
                continue
            if code == _MAC_ERROR and retries_a0 < SIGN_ON_RETRIES_MAX:
                retries_a0 += 1
                self._keys = None
                continue
            return self._result(row, settled)

    def _full_counter(
        self, batch: BatchRow, kind: Kind, amount_fen: int, card_type: CardType
    ) -> TotalsCounter | None:
        """The field-48 counter of ``batch`` that this transaction would take past the batch
        limit (a void: past field 48 itself — it cannot leave its sale's batch); None: room.

        Counted are the approvals and the refunds still waiting for an answer (a refund
        resent may yet be approved); ``_prepare`` has just flushed everything else.
        """
        rows = self.journal.transactions(batch.batch_id)
        limit = TOTAL_COUNT_MAX if kind == Kind.VOID else self.journal.state().batch_limit
        # No counter holds more entries than the batch has rows, no sum more than all its
        # amounts: far from the limits that settles it without counting (every sale asks).
        if len(rows) < limit and sum(row.amount_fen for row in rows) + amount_fen <= (
            TOTAL_AMOUNT_FEN_MAX
        ):
            return None
        counted = _tally(rows, with_pending_refunds=True)
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
        limit = self.journal.state().batch_limit
        with self.journal.write(self._now()) as writer:
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
        result = yield from self._settle_batch(recovery=False)
        settled.append(result.batch_no)

    def _finish_interrupted_settlement(self) -> Flow[None]:
        batch = self.journal.current_batch()
        with self.journal.write(self._now()) as writer:
            writer.event(
                "settle_resumed",
                f"settlement of batch {batch.batch_no:06d} was interrupted at {batch.step}: "
                "finishing it before the next transaction",
                batch_no=batch.batch_no,
                step=batch.step,
            )
        yield from self._settle_batch(recovery=False)

    def _recover(self, detail_text: str | None, *, cause: str) -> Flow[None]:
        """On 77: sign on (new keys, the host's batch) and reconcile the journal with it.

        ``detail_text`` is the 77's field 63 when its MAC verified (None: the
        sign-on's field 63 is used).
        """
        detail = decode_batch_detail(detail_text) if detail_text else None
        with self.journal.write(self._now()) as writer:
            writer.event(
                "batch_error",
                f"77 {cause}; host says {detail_text or 'nothing in 63'}",
                detail=detail_text,
            )
        self._keys = None
        result = yield from self.sign_on_flow(reconcile=False)
        host_detail = detail if detail is not None else self.last_host_detail
        yield from self._reconcile(result.host_batch_no, host_detail, cause=cause)
        if self.journal.state().resync_pending:
            yield from self._resync(result.host_batch_no, host_detail)
        yield from self._flush()

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
        here, before a STAN is taken; a full batch is settled first (see ``_financial``).
        """
        self._check_card(amount_fen, pan, expiry, track2)
        if track2 is not None and expiry is None:
            after = track2.partition("=")[2][:4]
            expiry = after if len(after) == 4 and after.isdigit() else None
        state = self.journal.state()
        if state.training:
            self._open_batch_for_transactions()
            row = self._write_pending(
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
            yield from self._financial(
                Kind.SALE,
                build,
                lambda: self._write_pending(
                    Kind.SALE, amount_fen, pan, expiry, reference=reference
                ),
                amount_fen=amount_fen,
                card_type=card_type_of_pan(pan),
            )
        )

    def _original_sale(self, stan: int, batch_no: int | None) -> TxnRow:
        for row in self.journal.find(stan, batch_no):
            if row.kind == Kind.SALE.value:
                return row
        where = f" in batch {batch_no:06d}" if batch_no is not None else ""
        raise TerminalError(f"no sale with STAN {stan:06d}{where} in the journal")

    def void_flow(self, stan: int, *, reference: str | None = None) -> Flow[TransactionResult]:
        """消费撤销: the full amount of a sale of the current batch; 61 = the sale."""
        state = self.journal.state()
        batch = self.journal.current_batch()
        sale = self._original_sale(stan, batch.batch_no)
        if sale.batch_id != batch.batch_id:
            raise TerminalError(f"sale STAN {stan:06d} is not in the current batch: refund it")
        if sale.state != TxnState.APPROVED:
            raise TerminalError(f"sale STAN {stan:06d} is {sale.state}: it cannot be voided")
        if sale.refunded_fen:
            raise TerminalError(f"sale STAN {stan:06d} was partly refunded: refund the rest")
        pan = self.pan_of(sale)

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
            current = self.journal.transaction(sale.txn_id)
            if current.state != TxnState.APPROVED:
                raise TerminalError(f"sale STAN {stan:06d} is {current.state}: not voided")
            if current.batch_id != self.journal.current_batch().batch_id:
                raise TerminalError(f"sale STAN {stan:06d} left the current batch: refund it")
            return self._write_pending(
                Kind.VOID, sale.amount_fen, pan, sale.expiry, original=sale, reference=reference
            )

        return (
            yield from self._financial(
                Kind.VOID,
                build,
                write,
                amount_fen=sale.amount_fen,
                card_type=CardType(sale.card_type),
            )
        )

    def _refund_request(self, row: TxnRow) -> RefundRequest:
        state = self.journal.state()
        original_rrn = None
        if row.original_txn_id is not None:
            original_rrn = self.journal.transaction(row.original_txn_id).rrn
        return RefundRequest(
            state.terminal_id,
            state.merchant_id,
            row.stan,
            row.batch_no,
            row.amount_fen,
            self.pan_of(row),
            original=OriginalTransaction(
                row.original_batch_no or row.batch_no, row.original_stan or 0, row.original_date
            ),
            original_rrn=original_rrn,
            expiry=row.expiry,
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
        if sale.state not in TxnState.COUNTED:
            raise TerminalError(f"sale STAN {stan:06d} is {sale.state}: nothing to refund")
        if sale.state == TxnState.VOIDED:
            raise TerminalError(f"sale STAN {stan:06d} was voided already")
        left = sale.amount_fen - sale.refunded_fen
        if not 0 < amount_fen <= left:
            raise ConfigError(f"refund {amount_fen} fen: 1..{left} fen of the sale is left")
        pan = self.pan_of(sale)

        def write() -> TxnRow:
            return self._write_pending(
                Kind.REFUND, amount_fen, pan, sale.expiry, original=sale, reference=reference
            )

        return (
            yield from self._financial(
                Kind.REFUND,
                self._refund_request,
                write,
                amount_fen=amount_fen,
                card_type=CardType(sale.card_type),
            )
        )

    # --- settlement ------------------------------------------------------------------------

    def settle_flow(self) -> Flow[SettlementResult]:
        """结算: resume the current batch's settlement where the journal says it stopped.

        If signing on already closed that batch (recovery found the host had
        closed it, e.g. our 0510 was lost), its result is returned and the new
        batch is left open.
        """
        batch = self.journal.current_batch()
        yield from self._prepare()
        settled = self.journal.batch(batch.batch_id)
        if settled.settle_step == SettleStep.CLOSED:
            return self._settlement_result(settled, batch.step)
        return (yield from self._settle_batch(recovery=False))

    def _settle_batch(self, *, recovery: bool) -> Flow[SettlementResult]:
        batch = self.journal.current_batch()
        resumed_from = batch.step
        state = self.journal.state()
        if batch.settle_step in (SettleStep.OPEN, SettleStep.FLUSHING):
            batch = self._move(batch, SettleEvent.BEGIN)
            yield from self._flush()
            batch = self._move(batch, SettleEvent.FLUSHED)
        sign_on_retries = 0
        while batch.settle_step == SettleStep.SETTLING:
            totals = self._totals(self.journal.transactions(batch.batch_id))
            request = SettlementRequest(
                state.terminal_id, state.merchant_id, self._new_stan(), batch.batch_no, totals
            )
            answer = yield from self._exchange_flow(request, SettlementResponse)
            if answer is None:
                raise HostUnreachable(
                    f"settlement of batch {batch.batch_no:06d} not answered; settle again"
                )
            response = answer.message
            assert isinstance(response, SettlementResponse)
            code = response.response_code
            authentic = _acted_on(answer)
            if (code == _MAC_ERROR or not authentic) and sign_on_retries < SIGN_ON_RETRIES_MAX:
                sign_on_retries += 1
                yield from self.sign_on_flow(reconcile=False)
                continue
            if not authentic:
                raise HostUnreachable(
                    f"the answer to the settlement of batch {batch.batch_no:06d} failed its "
                    "MAC check; settle again"
                )
            if code == _BATCH_ERROR:
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
                closed = self._close(batch, SettleEvent.BALANCED, "balanced", changes=changes)
                return self._settlement_result(closed, resumed_from)
            if response.totals.balanced or _reconciliation_error(response.totals):
                # The host closed this batch before (a repeated answer, or a batch the back
                # office closed): nothing to upload; the difference is the back office's.
                changes["balanced"] = False
                closed = self._close(
                    batch, SettleEvent.HOST_CLOSED, "closed_by_host", changes=changes
                )
                with self.journal.write(self._now()) as writer:
                    writer.event(
                        "closed_by_host",
                        f"batch {batch.batch_no:06d} was closed by the host; terminal totals "
                        f"{encode_totals(totals)} host totals {encode_totals(response.totals)}"
                        + ("" if same else ": they differ, see the host's exceptions"),
                        batch_no=batch.batch_no,
                        same_totals=same,
                    )
                return self._settlement_result(closed, resumed_from)
            batch = self._move(batch, SettleEvent.NOT_BALANCED, **changes)
        if batch.settle_step == SettleStep.UPLOADING:
            batch = yield from self._upload(batch)
        if batch.settle_step == SettleStep.ENDING:
            batch = yield from self._upload_end(batch)
        return self._settlement_result(batch, resumed_from)

    def _settle_refused(
        self, batch: BatchRow, answer: _Answer, recovery: bool, resumed_from: str
    ) -> Flow[SettlementResult]:
        """A 77 to our 0500: inside recovery the host closed the batch; else recover first."""
        if recovery:
            detail = getattr(answer.message, "detail", None)
            closed = self._close(
                batch,
                SettleEvent.HOST_CLOSED,
                "closed_by_host",
                changes={"settle_response_code": _BATCH_ERROR},
            )
            with self.journal.write(self._now()) as writer:
                writer.event(
                    "closed_by_host",
                    f"the host closed batch {batch.batch_no:06d} without our settlement; "
                    "its approvals stay in that host batch, totals not compared",
                    batch_no=batch.batch_no,
                    detail=detail,
                )
            return self._settlement_result(closed, resumed_from)
        yield from self._recover(
            getattr(answer.message, "detail", None),
            cause=f"77 on settlement of batch {batch.batch_no:06d}",
        )
        settled = self.journal.batch(batch.batch_id)
        if settled.settle_step == SettleStep.CLOSED:
            return self._settlement_result(settled, resumed_from)
        return (yield from self._settle_batch(recovery=True))

    def _upload(self, batch: BatchRow) -> Flow[BatchRow]:
        state = self.journal.state()
        while True:
            rows = [
                row
                for row in self.journal.transactions(batch.batch_id)
                if row.counted and not row.uploaded
            ]
            if not rows:
                return self._move(batch, SettleEvent.UPLOADED)
            chunk = rows[:UPLOAD_RECORDS_MAX]
            records = tuple(
                UploadRecord(CardType(row.card_type), row.stan, self.pan_of(row), row.amount_fen)
                for row in chunk
            )
            request = BatchUploadRequest(
                state.terminal_id, state.merchant_id, self._new_stan(), batch.batch_no, records
            )
            approved = yield from self._upload_exchange(batch, request, "batch upload")
            if not approved:
                return self.journal.batch(batch.batch_id)
            now = self._now()
            batch = replace(
                batch,
                uploaded_count=batch.uploaded_count + len(chunk),
                upload_messages=batch.upload_messages + 1,
            )
            with self.journal.write(now) as writer:
                for row in chunk:
                    writer.txn(replace(row, uploaded=True, updated_at=now.isoformat()))
                writer.batch(batch)

    def _upload_end(self, batch: BatchRow) -> Flow[BatchRow]:
        """Send the upload end (0320/207); the batch row as it is afterwards (closed)."""
        state = self.journal.state()
        total = sum(1 for row in self.journal.transactions(batch.batch_id) if row.uploaded)
        request = BatchUploadEndRequest(
            state.terminal_id, state.merchant_id, self._new_stan(), batch.batch_no, total
        )
        approved = yield from self._upload_exchange(batch, request, "upload end")
        if approved:
            return self._close(batch, SettleEvent.ENDED, "uploaded")
        return self.journal.batch(batch.batch_id)  # closed by the host

    def _upload_exchange(
        self,
        batch: BatchRow,
        request: BatchUploadRequest | BatchUploadEndRequest,
        what: str,
    ) -> Flow[bool]:
        """Send one 0320 of ``batch``: True once approved, False when the host closed the batch.

        A MAC error (A0, or an answer whose own MAC fails) signs on again and sends
        the request again with a new STAN, at most ``SIGN_ON_RETRIES_MAX`` times; a
        77 closes the batch as closed by the host; no answer, an answer still not
        authentic, or any other code raises.
        """
        sign_on_retries = 0
        while True:
            answer = yield from self._exchange_flow(request, BatchUploadResponse)
            if answer is None:
                raise HostUnreachable(
                    f"{what} of batch {batch.batch_no:06d} not answered; settle again"
                )
            assert isinstance(answer.message, BatchUploadResponse)
            code = answer.message.response_code
            authentic = _acted_on(answer)
            if (code == _MAC_ERROR or not authentic) and sign_on_retries < SIGN_ON_RETRIES_MAX:
                sign_on_retries += 1
                yield from self.sign_on_flow(reconcile=False)
                request = replace(request, stan=self._new_stan())
                continue
            if not authentic:
                raise HostUnreachable(
                    f"the answer to the {what} of batch {batch.batch_no:06d} failed its MAC "
                    "check; settle again"
                )
            if code == _BATCH_ERROR:
                self._close(batch, SettleEvent.HOST_CLOSED, "closed_by_host")
                return False
            if code != APPROVED:
                raise Declined(f"{what} refused: {describe(code)}", response_code=code)
            return True

    def _settlement_result(self, batch: BatchRow, resumed_from: str) -> SettlementResult:
        return SettlementResult(
            batch.batch_no,
            batch.balanced,
            _settle_totals(batch.terminal_totals),
            _settle_totals(batch.host_totals),
            batch.uploaded_count,
            batch.close_reason or batch.step,
            resumed_from,
            self.journal.current_batch().batch_no,
        )

    # --- iteration helpers for reports -------------------------------------------------------

    def iter_batch(self, batch_id: int) -> Iterator[TxnRow]:
        yield from self.journal.transactions(batch_id)
