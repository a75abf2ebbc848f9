"""The host's sans-IO heart: whole frames in, answers out, everything durable first.

Theory of operation
-------------------
:meth:`HostCore.handle_frames` takes a group of request frames (from one or
many connections) and answers them in two steps:

1. *Read* each frame without the database: framing, then the typed message.
   A frame whose TPDU/header is bad is dropped; a body that cannot be read
   but whose terminal and merchant ids can is answered 30. The fault script
   draws here, in arrival order.
2. *Process* the rest in ONE database transaction (a group commit), in order
   per terminal; the transaction commits before any answer is returned. If
   anything unexpected fails, the group is rolled back and each request is
   retried alone; the one that still fails is answered 96 (nothing of it was
   kept).

Per request the checks run in this order: terminal unknown → 97, merchant id
differs → 03, suspended → 58, then sign-on / sign-off / echo; any other
message needs a MAC that verifies under the terminal's keys in force or under
the keys its last sign-on handed out and no request used yet (which then come
into force) — else 77, 63 ``R=NOT_SIGNED_ON``, when the terminal is signed off
or never signed on, and A0 (unMACed) when it is signed on. 08xx carry no MAC,
so anyone who knows a terminal's ids can send them: a sign-on hands out keys
but takes none away, a sign-off takes nothing away either (see
:meth:`HostCore._sign_on`; docs/host.md, "Sign-on and sign-off from someone
else"). Then the batch rules of DESIGN.md "The batch lifecycle",
with the host batch state machine of :mod:`posbatch.batch.host_batch`. A
request a fault script forces is answered its code without being processed.

Which answers carry a MAC is decided in one place, :func:`_answer_mak`: every
answer except to 08xx carries field 64 — under the key the request's own MAC
verified with, else the keys in force while the terminal is signed on — 77,
96, 03, 58, 30 and forced codes included — so a terminal may believe exactly
the answers whose MAC checks. The only
answers without one are those DESIGN.md "Keys and MAC" allows (A0, whose
request's MAC failed; 77 to a terminal not signed on) and those to a
terminal whose key the host cannot know (97 unknown terminal; a frame whose
ids cannot be read is not answered at all).

Time and randomness come only from the injected ``clock`` and
``random_bytes`` (working keys, RRNs, authorisation codes), so a seeded
simulator replays bit for bit. Nothing essential lives only in memory: a new
``HostCore`` over the same store carries on where the last one stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, NamedTuple

import iso8583

from posbatch.batch.cards import check_currency, check_track2
from posbatch.batch.codes import BATCH_FULL
from posbatch.batch.counters import is_behind
from posbatch.batch.host_batch import FIRST_BATCH_NO, BatchEvent, apply
from posbatch.batch.model import (
    BatchReason,
    BatchState,
    BatchStateDetail,
    Kind,
    Reconciliation,
    SettlementTotals,
)
from posbatch.batch.totals import (
    TOTAL_AMOUNT_FEN_MAX,
    TOTAL_COUNT_MAX,
    card_type_of_pan,
    describe_totals,
    net_fen,
)
from posbatch.errors import (
    DecodeError,
    EncodeError,
    FrameError,
    HostError,
    MacError,
    PosbatchError,
)
from posbatch.host.faults import FaultAction, FaultRule, FaultScript
from posbatch.host.issuer import Issuer, IssuerRules
from posbatch.host.store import (
    CloseReason,
    ExceptionKind,
    HostStore,
    StoreTx,
    TerminalRow,
    TerminalStatus,
    TransactionRow,
    TransactionStatus,
    naive_utc,
    pending_keys_bytes,
)
from posbatch.wire import (
    DETAIL_LAST_STAN,
    MAC_BYTES,
    SPEC,
    AdminResponse,
    BatchUploadEndRequest,
    BatchUploadRequest,
    BatchUploadResponse,
    EchoRequest,
    Frame,
    Header,
    ProcessingRequirement,
    RefundRequest,
    Request,
    Response,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SettlementResponse,
    SignOffRequest,
    SignOnRequest,
    SignOnResponse,
    TransactionResponse,
    VoidRequest,
    WorkingKeys,
    check_mac,
    compute_mac,
    decode_detail,
    decode_frame,
    decode_message,
    decode_totals,
    encode_batch_detail,
    encode_detail,
    encode_frame,
    encode_message,
    encode_totals,
    has_mac,
    mask_pan,
    wrap_working_keys,
)

__all__ = ["GROUP_MAX_REQUESTS", "HostCore", "HostReply", "RequestLog"]

# The most requests one group commit may hold.
GROUP_MAX_REQUESTS: Final = 512
MAK_BYTES: Final = 8
PIK_BYTES: Final = 16
RRN_DIGITS: Final = 12
AUTH_CODE_DIGITS: Final = 6
LENGTH_PREFIX_BYTES: Final = 2

_REQUEST_MTIS: Final = frozenset({"0800", "0820", "0200", "0220", "0400", "0500", "0320"})
_MAC_ERROR: Final = "A0"
_FINANCIAL: Final = frozenset({Kind.SALE, Kind.VOID, Kind.REFUND})


@dataclass(frozen=True, slots=True)
class RequestLog:
    """What the one log line of a request says (never a PAN)."""

    terminal_id: str | None = None
    batch_no: int | None = None
    stan: int | None = None
    mti: str | None = None
    kind: str | None = None
    response_code: str | None = None
    fault: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HostReply:
    """What to do for one request frame: send ``frames`` (none = dropped) after ``delay_ms``,
    then close the connection if ``close``."""

    frames: tuple[bytes, ...] = ()
    close: bool = False
    delay_ms: int = 0
    log: RequestLog = field(default_factory=RequestLog)


@dataclass(slots=True)
class _Work:
    """One readable request waiting for the database."""

    frame: Frame
    request: Request
    fault: FaultRule | None


@dataclass(frozen=True, slots=True)
class _Outcome:
    response: Response
    requirement: ProcessingRequirement = ProcessingRequirement.NONE
    mak: bytes | None = None  # MAC the answer with this key: set only from _answer_mak
    proof: bytes | None = None  # the MAK the request's own MAC verified under


class _Admitted(NamedTuple):
    """A sale, void or refund that passed the batch and duplicate rules."""

    batch_id: int
    pan_hmac: str
    digest: str


def _response_mti(mti: str) -> str:
    return mti[:2] + str(int(mti[2]) + 1) + mti[3]


class HostCore:
    """The host: one per process (or per simulated host); shared by every session."""

    def __init__(
        self,
        store: HostStore,
        *,
        clock: Callable[[], datetime],
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        issuer: Issuer | None = None,
        faults: FaultScript | None = None,
        batch_count_max: int = TOTAL_COUNT_MAX,
    ) -> None:
        if not 1 <= batch_count_max <= TOTAL_COUNT_MAX:
            raise HostError(f"batch_count_max {batch_count_max}: 1..{TOTAL_COUNT_MAX}")
        # Entries one field-48 counter of a batch may hold (field 48 counts 999; an
        # acquirer may cap its batches lower): the next one is answered 95.
        self.batch_count_max = batch_count_max
        self.store = store
        self._clock = clock
        self._random_bytes = random_bytes
        self._issuer: Issuer = issuer if issuer is not None else IssuerRules()
        self._faults = faults

    # --- admin ---------------------------------------------------------------------------

    def set_faults(self, faults: FaultScript | None) -> None:
        """Replace the fault script at run time (None: behave)."""
        self._faults = faults

    def advance_batch(self, terminal_id: str, reason: str) -> int:
        """Back office: close the terminal's batch now (see HostStore.advance_batch)."""
        return self.store.advance_batch(terminal_id, reason, now=self._clock())

    # --- requests --------------------------------------------------------------------------

    def handle_frame(self, frame: bytes) -> HostReply:
        """One whole frame (with its 2-byte length prefix) → what to send back."""
        return self.handle_frames([frame])[0]

    def handle_frames(self, frames: Sequence[bytes]) -> list[HostReply]:
        """Many frames in ONE transaction; each answer only after the commit."""
        parsed: list[Frame | HostReply] = []
        for raw in frames:
            length = int.from_bytes(raw[:LENGTH_PREFIX_BYTES], "big") if len(raw) >= 2 else -1
            if length != len(raw) - LENGTH_PREFIX_BYTES:
                parsed.append(HostReply(close=True, log=RequestLog(error="bad length prefix")))
                continue
            try:
                parsed.append(decode_frame(raw[LENGTH_PREFIX_BYTES:]))
            except FrameError as exc:
                parsed.append(HostReply(log=RequestLog(error=str(exc))))
        return self._handle_mixed(parsed)

    def handle_decoded_frames(self, frames: Sequence[Frame]) -> list[HostReply]:
        """Like :meth:`handle_frames` for frames a FrameReader already split and read."""
        return self._handle_mixed(list(frames))

    def _handle_mixed(self, items: list[Frame | HostReply]) -> list[HostReply]:
        replies: list[HostReply | None] = [None] * len(items)
        work: list[tuple[int, _Work]] = []
        for index, item in enumerate(items):
            if isinstance(item, HostReply):
                replies[index] = item
                continue
            early = self._read(item)
            if isinstance(early, HostReply):
                replies[index] = early
            else:
                work.append((index, early))
        for start in range(0, len(work), GROUP_MAX_REQUESTS):
            chunk = work[start : start + GROUP_MAX_REQUESTS]
            for (index, _), reply in zip(
                chunk, self._process_group([w for _, w in chunk]), strict=True
            ):
                replies[index] = reply
        return [reply if reply is not None else HostReply() for reply in replies]

    def _read(self, frame: Frame) -> _Work | HostReply:
        try:
            request = decode_message(frame.body)
        except DecodeError as exc:
            return _format_error(frame, exc, self._terminal_now)
        if not isinstance(
            request,
            SignOnRequest
            | SignOffRequest
            | EchoRequest
            | SaleRequest
            | VoidRequest
            | RefundRequest
            | ReversalRequest
            | SettlementRequest
            | BatchUploadRequest
            | BatchUploadEndRequest,
        ):
            return HostReply(log=RequestLog(error="a response sent to the host: dropped"))
        kind = _kind(request)
        fault = self._faults.pick(request.terminal_id, kind) if self._faults else None
        return _Work(frame, request, fault)

    def _process_group(self, group: list[_Work]) -> list[HostReply]:
        # Lock order: by terminal (stable, so one terminal's requests keep their order).
        order = sorted(range(len(group)), key=lambda i: group[i].request.terminal_id)
        outcomes: list[_Outcome | None] = [None] * len(group)
        try:
            with self.store.transaction() as tx:
                _read_ahead(tx, group)
                for index in order:
                    outcomes[index] = self._process(tx, group[index])
        except Exception:  # isolate the failing request, answer it 96
            if len(group) == 1:
                return [self._failed(group[0])]
            return [reply for work in group for reply in self._process_group([work])]
        return [
            self._encode(work.frame, work.request, outcome, work.fault)
            for work, outcome in zip(group, outcomes, strict=True)
            if outcome is not None
        ]

    def _failed(self, work: _Work) -> HostReply:
        try:
            response = _answer(work.request, "96", now=self._clock())
            terminal = self._terminal_now(work.request.terminal_id)
            proof = None if terminal is None else _proven_mak(terminal, work.frame.body)
            outcome = _Outcome(response, mak=_answer_mak(response.response_code, terminal, proof))
            return self._encode(work.frame, work.request, outcome, None, error="processing failed")
        except PosbatchError:
            return HostReply(log=RequestLog(error="processing failed; no answer could be built"))

    def _terminal_now(self, terminal_id: str) -> TerminalRow | None:
        """The terminal as the store has it now, read on its own (None: unknown or unreadable).

        For the answers given outside a group's transaction (30, and 96 after that
        transaction failed). If the store cannot be read the answer goes without a
        MAC: the terminal then takes it as no answer (reverses or resends), which
        is safe.
        """
        try:
            with self.store.transaction() as tx:
                return tx.terminal(terminal_id)
        except Exception:  # the store is what failed: answer without a key
            return None

    def _encode(
        self,
        frame: Frame,
        request: Request,
        outcome: _Outcome,
        fault: FaultRule | None,
        *,
        error: str | None = None,
    ) -> HostReply:
        response = outcome.response
        try:
            body = encode_message(response, mak=outcome.mak)
            header = frame.header
            if header.processing_requirement != outcome.requirement:
                header = header.with_requirement(outcome.requirement)
            wire = encode_frame(Frame(frame.tpdu.reply(), header, body))
        except (EncodeError, ValueError) as exc:  # a value the wire cannot carry: our bug
            return HostReply(
                log=RequestLog(
                    terminal_id=request.terminal_id,
                    stan=request.stan,
                    mti=request.MTI,
                    error=f"answer could not be encoded: {exc}",
                )
            )
        log = RequestLog(
            terminal_id=request.terminal_id,
            batch_no=request.batch_no,
            stan=request.stan,
            mti=request.MTI,
            kind=_kind(request).value,
            response_code=response.response_code,
            fault=None if fault is None else fault.action.value,
            error=error,
        )
        if fault is None or fault.action == FaultAction.FORCE:
            return HostReply((wire,), log=log)
        if fault.action == FaultAction.DROP:
            return HostReply((), log=log)
        if fault.action == FaultAction.DELAY:
            return HostReply((wire,), delay_ms=fault.delay_ms, log=log)
        if fault.action == FaultAction.DUPLICATE:
            return HostReply((wire, wire), log=log)
        return HostReply((), close=True, log=log)

    # --- one request inside the group's transaction ---------------------------------------------

    def _process(self, tx: StoreTx, work: _Work) -> _Outcome:
        """The answer to one request, MACed by :func:`_answer_mak` (the one place that decides)."""
        terminal = tx.terminal(work.request.terminal_id, for_update=True)
        now = self._clock()
        outcome = self._decide(tx, work, terminal, now)
        if outcome.response.response_code == "77" and terminal is not None:
            tx.add_batch_error(terminal, work.request, outcome.response.detail, now=now)
        mak = _answer_mak(outcome.response.response_code, terminal, outcome.proof)
        return outcome if mak is None else replace(outcome, mak=mak)

    def _decide(
        self, tx: StoreTx, work: _Work, terminal: TerminalRow | None, now: datetime
    ) -> _Outcome:
        request = work.request
        admin = isinstance(request, SignOnRequest | SignOffRequest | EchoRequest)
        proof = None if terminal is None or admin else _proven_mak(terminal, work.frame.body)
        if work.fault is not None and work.fault.action == FaultAction.FORCE:
            assert work.fault.response_code is not None
            code = work.fault.response_code  # not processed
            return _Outcome(_answer(request, code, now=now), proof=proof)
        if terminal is None:
            return _Outcome(_answer(request, "97", now=now))
        if terminal.merchant_id != request.merchant_id:
            return _Outcome(_answer(request, "03", now=now), proof=proof)
        if terminal.status != TerminalStatus.ACTIVE:
            return _Outcome(_answer(request, "58", now=now), proof=proof)
        if isinstance(request, SignOnRequest):
            return self._sign_on(tx, terminal, request, now)
        if isinstance(request, SignOffRequest):
            # The keys stay: an 0820 carries no MAC, so it may come from anyone who read the
            # ids off a receipt. A request MACed under them afterwards proves the terminal
            # still holds them, and goes on (below); the real terminal dropped its keys.
            tx.update_terminal(request.terminal_id, signed_on=False)
            return _Outcome(_answer(request, "00", now=now))
        if isinstance(request, EchoRequest):
            # A network check changes nothing here (no keys, no last STAN, no batch): doctor
            # diagnoses with it. Its 63 is the host's view, and T= the last STAN it recorded.
            return _Outcome(_answer(request, "00", now=now, detail=_echo_detail(tx, terminal)))
        if proof is None:
            if not terminal.signed_on or (terminal.mak is None and terminal.pending_keys is None):
                detail = _detail(tx, terminal, BatchReason.NOT_SIGNED_ON)
                return _Outcome(
                    _answer(request, "77", now=now, detail=detail),
                    requirement=ProcessingRequirement.SIGN_ON,
                )
            return _Outcome(
                _answer(request, "A0", now=now), requirement=ProcessingRequirement.SIGN_ON
            )
        if proof != terminal.mak:  # the keys of the last sign-on, used for the first time
            keys = terminal.pending_keys
            assert keys is not None and keys.mak == proof
            tx.update_terminal(
                terminal.terminal_id, mak=keys.mak, pik=keys.pik, pending_keys=None, signed_on=True
            )
            terminal = tx.terminal(terminal.terminal_id)
        elif not terminal.signed_on:  # signed off, yet it holds the keys: it is the terminal
            tx.update_terminal(terminal.terminal_id, signed_on=True)
            terminal = tx.terminal(terminal.terminal_id)
        assert terminal is not None
        ctx = _Ctx(self, tx, terminal, now)
        return replace(ctx.handle(request), proof=proof)

    def _sign_on(
        self, tx: StoreTx, terminal: Any, request: SignOnRequest, now: datetime
    ) -> _Outcome:
        """签到: hand out working keys — without taking the ones in force away.

        An 0800 carries no MAC: anyone who knows the terminal's ids (printed on
        every receipt) can send one. So a sign-on never replaces the keys in
        force (``mak``/``pik``): its keys wait in ``pending_keys`` (sealed like
        every key) and come into force with the first request MACed under them
        (:meth:`_decide`). Until then every sign-on — a spoofed one, a
        duplicate on the line, a resend after a lost answer, whatever its STAN —
        hands out those same keys again; new ones are made only once the last
        ones were used. The real terminal therefore always ends up with keys the
        host takes, and its keys in force keep working whoever signs it on.
        """
        keys = terminal.pending_keys
        if keys is None:
            keys = WorkingKeys(pik=self._random_bytes(PIK_BYTES), mak=self._random_bytes(MAK_BYTES))
        if terminal.current_batch_id is None:
            tx.first_batch(terminal.terminal_id, now=now)
        tx.update_terminal(
            terminal.terminal_id,
            signed_on=True,
            pending_keys=pending_keys_bytes(keys),
            signed_on_at=_naive(now),
            last_stan=request.stan,
        )
        terminal = tx.terminal(terminal.terminal_id)
        batch = tx.current_batch(terminal)
        response = SignOnResponse(
            request.terminal_id,
            request.merchant_id,
            request.stan,
            batch.batch_no,
            "00",
            *_wire_time(now),
            wrap_working_keys(bytes(terminal.master_key), keys),  # the same keys, the same 62
            _detail(tx, terminal, None),
        )
        requirement = (
            ProcessingRequirement.SETTLE
            if batch.state == BatchState.UPLOADING.value
            else ProcessingRequirement.NONE
        )
        return _Outcome(response, requirement=requirement)

    def rrn(self) -> str:
        return f"{int.from_bytes(self._random_bytes(5), 'big') % 10**RRN_DIGITS:0{RRN_DIGITS}d}"

    def auth_code(self) -> str:
        value = int.from_bytes(self._random_bytes(4), "big") % 10**AUTH_CODE_DIGITS
        return f"{value:0{AUTH_CODE_DIGITS}d}"


def _naive(moment: datetime) -> datetime:
    return naive_utc(moment)


def _answer_mak(
    response_code: str, terminal: TerminalRow | None, proof: bytes | None = None
) -> bytes | None:
    """The key of an answer's field 64: the one rule of which answers carry a MAC.

    An answer is MACed under the key its request's own MAC verified with
    (``proof``: the keys in force, or those of the last sign-on, which that
    request just brought into force); a request whose MAC was not checked or
    did not verify gets, while the terminal is signed on, the keys it most
    likely holds: those of its last sign-on if no request used them yet (it
    signed on and has sent nothing readable since), else the keys in force —
    whatever the code, so that a terminal can believe exactly the answers
    whose MAC checks. (Should it hold the other keys, it cannot believe such
    an answer and takes it as none: it reverses or asks again, which is safe.)
    The exceptions: A0 (the request's MAC failed, so the keys may be out of
    step; DESIGN.md "Keys and MAC" has it unMACed), and a terminal whose MAK
    the host cannot use — unknown (97), or not signed on and not proven (its
    77). A 08xx answer never carries field 64 whatever this says
    (:func:`~posbatch.wire.encode_message`).
    """
    if response_code == _MAC_ERROR or terminal is None:
        return None
    if proof is not None:
        return proof
    if not terminal.signed_on:
        return None
    if terminal.pending_keys is not None:
        return terminal.pending_keys.mak
    return None if terminal.mak is None else bytes(terminal.mak)


def _proven_mak(terminal: TerminalRow, body: bytes) -> bytes | None:
    """The MAK under which ``body``'s field 64 verifies, or None.

    First the keys in force, then those of the last sign-on not used yet
    (tried only when the first do not verify: a terminal's first request after
    a sign-on, or a MAC nobody can make).
    """
    if not has_mac(body):
        return None
    if terminal.mak is not None:
        with contextlib.suppress(MacError):
            check_mac(body, bytes(terminal.mak))
            return bytes(terminal.mak)
    if terminal.pending_keys is not None:
        with contextlib.suppress(MacError):
            check_mac(body, terminal.pending_keys.mak)
            return terminal.pending_keys.mak
    return None


class _Ctx:
    """One signed-on, MAC-checked request being processed."""

    def __init__(self, core: HostCore, tx: StoreTx, terminal: Any, now: datetime):
        self.core = core
        self.tx = tx
        self.terminal = terminal
        self.now = now
        self.terminal_id: str = terminal.terminal_id

    def ok(self, response: Response) -> _Outcome:
        return _Outcome(response)

    def answer(self, request: Request, code: str, **extra: Any) -> _Outcome:
        return self.ok(_answer(request, code, now=self.now, **extra))

    def handle(self, request: Request) -> _Outcome:
        if isinstance(request, SaleRequest):
            return self.sale(request)
        if isinstance(request, VoidRequest):
            return self.void(request)
        if isinstance(request, RefundRequest):
            return self.refund(request)
        if isinstance(request, ReversalRequest):
            return self.reversal(request)
        if isinstance(request, SettlementRequest):
            self.tx.note_stan(self.terminal_id, request.stan)
            return self.settlement(request)
        if isinstance(request, BatchUploadRequest):
            return self.upload(request)
        if isinstance(request, BatchUploadEndRequest):
            return self.upload_end(request)
        raise AssertionError(f"unhandled request {type(request).__name__}")

    # --- batch checks -------------------------------------------------------------------------

    def mismatch(
        self, request: Request, *, late_void: bool = False, repeat_digest: str | None = None
    ) -> _Outcome | None:
        """A 77 when 60.2 is not the current batch, or the current batch is not OPEN —
        unless the request repeats one (``repeat_digest``) that the batch it names holds:
        then that request's original answer."""
        if (
            request.batch_no == self.terminal.batch_no
            and self.terminal.batch_state == BatchState.OPEN.value
        ):
            return None
        current = self.tx.current_batch(self.terminal)
        if request.batch_no == current.batch_no and current.state == BatchState.OPEN.value:
            return None
        if repeat_digest is not None:
            assert isinstance(request, SaleRequest | VoidRequest | RefundRequest)
            named = self.tx.latest_batch(self.terminal_id, request.batch_no)
            existing = None if named is None else self.tx.transaction(named.batch_id, request.stan)
            if existing is not None and existing.request_digest == repeat_digest:
                return self._original_answer(request, existing)
        if request.batch_no == current.batch_no:
            reason = BatchReason.CLOSED  # settling: the batch takes no new transactions
        else:
            named = self.tx.latest_batch(self.terminal_id, request.batch_no)
            if named is not None and named.state == BatchState.CLOSED.value:
                reason = BatchReason.CLOSED
            elif is_behind(request.batch_no, current.batch_no):
                reason = BatchReason.BEHIND
            else:
                reason = BatchReason.AHEAD
        if late_void and reason == BatchReason.CLOSED and request.batch_no != current.batch_no:
            assert isinstance(request, VoidRequest)
            named = self.tx.latest_batch(self.terminal_id, request.batch_no)
            self.exception(
                named,
                request.stan,
                ExceptionKind.LATE_VOID,
                f"void STAN {request.stan:06d} of sale {request.original.stan:06d} arrived after "
                f"batch {request.batch_no:06d} closed; answered 77, the sale stands — "
                "the cashier must refund instead",
                terminal_amount_fen=request.amount_fen,
                host_amount_fen=None,
            )
        requirement = (
            ProcessingRequirement.SETTLE
            if current.state == BatchState.UPLOADING.value
            else ProcessingRequirement.SIGN_ON
        )
        return _Outcome(
            _answer(request, "77", now=self.now, detail=_detail(self.tx, self.terminal, reason)),
            requirement=requirement,
        )

    def exception(
        self,
        batch: Any,
        stan: int | None,
        kind: str,
        cause: str,
        *,
        terminal_amount_fen: int | None,
        host_amount_fen: int | None,
    ) -> None:
        self.tx.add_exception(
            terminal_id=self.terminal_id,
            merchant_id=self.terminal.merchant_id,
            batch_id=None if batch is None else batch.batch_id,
            batch_no=None if batch is None else batch.batch_no,
            stan=stan,
            kind=kind,
            cause=cause,
            terminal_amount_fen=terminal_amount_fen,
            host_amount_fen=host_amount_fen,
            now=self.now,
        )

    # --- financial ------------------------------------------------------------------------

    def _digest(self, request: SaleRequest | VoidRequest | RefundRequest, pan_hmac: str) -> str:
        original = getattr(request, "original", None)
        text = f"{request.KIND.value}|{request.amount_fen}|{pan_hmac}|" + (
            "" if original is None else f"{original.batch_no}/{original.stan}"
        )
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def _duplicate(
        self, request: SaleRequest | VoidRequest | RefundRequest, batch_id: int, digest: str
    ) -> _Outcome | None:
        existing = self.tx.transaction(batch_id, request.stan)
        if existing is None:
            return None
        if existing.request_digest != digest:
            return self.answer(request, "94")
        return self._original_answer(request, existing)

    def _original_answer(
        self, request: SaleRequest | VoidRequest | RefundRequest, existing: TransactionRow
    ) -> _Outcome:
        """The answer ``existing`` got, for its repeat ``request``."""
        return self.ok(
            TransactionResponse(
                request.KIND,
                request.terminal_id,
                request.merchant_id,
                request.stan,
                request.batch_no,
                existing.response_code,
                request.amount_fen,
                rrn=existing.rrn,
                auth_code=existing.auth_code,
                local_time=existing.local_time,
                local_date=existing.local_date,
                currency=request.currency,
            )
        )

    def _record(
        self,
        request: SaleRequest | VoidRequest | RefundRequest,
        batch_id: int,
        code: str,
        pan_hmac: str,
        digest: str,
        *,
        original_id: int | None = None,
        detail: str | None = None,
    ) -> _Outcome:
        approved = code == "00"
        rrn = self.core.rrn()
        auth_code = self.core.auth_code() if approved else None
        local_time, local_date = _wire_time(self.now)
        status = TransactionStatus.APPROVED if approved else TransactionStatus.DECLINED
        if approved and request.KIND == Kind.SALE:
            seen = self.tx.reversals_seen(
                self.terminal_id, request.batch_no, request.stan, Kind.SALE.value
            )
            if any(
                reversed_batch in (None, batch_id) and amount_fen == request.amount_fen
                for reversed_batch, amount_fen in seen
            ):
                # Its reversal overtook it. (A different amount under the same STAN is
                # another sale — a terminal whose counters were reset — found by sim seed 31.)
                status = TransactionStatus.REVERSED
        self.tx.insert_transaction(
            batch_id=batch_id,
            terminal_id=self.terminal_id,
            stan=request.stan,
            kind=request.KIND.value,
            amount_fen=request.amount_fen,
            card_type=card_type_of_pan(request.pan).value,
            pan_hmac=pan_hmac,
            pan_masked=mask_pan(request.pan),
            status=status,
            response_code=code,
            rrn=rrn,
            auth_code=auth_code,
            local_time=local_time,
            local_date=local_date,
            original_transaction_id=original_id,
            request_digest=digest,
            created_at=self.now,
        )
        if status == TransactionStatus.APPROVED:
            self.tx.note_approval(batch_id, request.amount_fen)
        self.tx.note_stan(self.terminal_id, request.stan)
        return self.ok(
            TransactionResponse(
                request.KIND,
                request.terminal_id,
                request.merchant_id,
                request.stan,
                request.batch_no,
                code,
                request.amount_fen,
                rrn=rrn,
                auth_code=auth_code,
                local_time=local_time,
                local_date=local_date,
                detail=detail,
                currency=request.currency,
            )
        )

    def _refused(
        self, request: SaleRequest | VoidRequest | RefundRequest, admitted: _Admitted
    ) -> _Outcome | None:
        """The recorded decline of what no issuer is asked about: a currency other than CNY
        (30 malformed, 40 other), a card number the batch upload could not carry or that
        fails its check digit, a track 2 naming another card (14) — see
        :mod:`posbatch.batch.cards`. None: the request goes on."""
        refused = check_currency(request.currency) or check_track2(request.pan, request.track2)
        if refused is None:
            return None
        return self._record(
            request, admitted.batch_id, refused.response_code, admitted.pan_hmac, admitted.digest
        )

    def _full(
        self, request: SaleRequest | VoidRequest | RefundRequest, admitted: _Admitted
    ) -> _Outcome | None:
        """The recorded 95 (63 ``R=FULL;…;F=<counter>``) when approving ``request`` would make
        the batch's totals unrepresentable in field 48; None when there is room.

        The batch's bound (every approval ever inserted, and its amount) decides at
        no cost while it is far from the limits; near them the batch is summed exactly.
        """
        count_max = self.core.batch_count_max
        count, amount_fen = self.tx.batch_bound(admitted.batch_id)
        if count < count_max and amount_fen + request.amount_fen <= TOTAL_AMOUNT_FEN_MAX:
            return None
        counter = self.tx.batch_tally(admitted.batch_id).full_counter(
            request.KIND, request.amount_fen, card_type_of_pan(request.pan), count_max=count_max
        )
        if counter is None:
            return None
        items = decode_detail(_detail(self.tx, self.terminal, BatchReason.FULL))
        items["F"] = counter.value
        return self._record(
            request,
            admitted.batch_id,
            BATCH_FULL,
            admitted.pan_hmac,
            admitted.digest,
            detail=encode_detail(items),
        )

    def _admit(
        self, request: SaleRequest | VoidRequest | RefundRequest, *, late_void: bool = False
    ) -> _Outcome | _Admitted:
        """What every sale, void and refund passes first: the batch rules, then duplicates.

        An :class:`_Outcome` is the answer already (77, a late void, the original
        response of a duplicate, 94); :class:`_Admitted` lets the request go on.
        A repeat of a request the host already answered gets that answer again even
        when its batch has closed since (a refund resent after a lost answer, a late
        duplicate): a 77 would tell the terminal it was not processed while the host
        counts it. Only the same STAN with the same content is a repeat.
        """
        pan_hmac = self.tx.store.pan_hmac(request.pan)
        digest = self._digest(request, pan_hmac)
        refused = self.mismatch(request, late_void=late_void, repeat_digest=digest)
        if refused is not None:
            return refused
        batch_id = self.terminal.current_batch_id
        duplicate = self._duplicate(request, batch_id, digest)
        if duplicate is not None:
            return duplicate
        return _Admitted(batch_id, pan_hmac, digest)

    def sale(self, request: SaleRequest) -> _Outcome:
        admitted = self._admit(request)
        if isinstance(admitted, _Outcome):
            return admitted
        apply(BatchState.OPEN, BatchEvent.TRANSACTION)
        # before the issuer: never authorise what cannot be settled
        refused = self._refused(request, admitted) or self._full(request, admitted)
        if refused is not None:
            return refused
        batch_id, pan_hmac, digest = admitted
        code = self.core._issuer.decide(
            pan=request.pan, amount_fen=request.amount_fen, expiry=request.expiry, now=self.now
        )
        return self._record(request, batch_id, code, pan_hmac, digest)

    def void(self, request: VoidRequest) -> _Outcome:
        admitted = self._admit(request, late_void=True)
        if isinstance(admitted, _Outcome):
            return admitted
        refused = self._refused(request, admitted)
        if refused is not None:
            return refused
        batch_id, pan_hmac, digest = admitted
        code, original = self._void_check(request, batch_id, pan_hmac)
        full = self._full(request, admitted) if code == "00" else None
        if full is not None:
            return full
        outcome = self._record(
            request,
            batch_id,
            code,
            pan_hmac,
            digest,
            original_id=None if original is None else original.transaction_id,
        )
        if code == "00":
            assert original is not None
            self.tx.set_transaction(original.transaction_id, status=TransactionStatus.VOIDED)
        return outcome

    def _void_check(self, request: VoidRequest, batch_id: int, pan_hmac: str) -> tuple[str, Any]:
        if request.original.batch_no != request.batch_no:
            elsewhere = self.tx.latest_batch(self.terminal_id, request.original.batch_no)
            found = elsewhere is not None and (
                self.tx.transaction(elsewhere.batch_id, request.original.stan) is not None
            )
            return ("12" if found else "25"), None
        original = self.tx.transaction(batch_id, request.original.stan)
        if original is None or original.status in (
            TransactionStatus.DECLINED,
            TransactionStatus.REVERSED,
        ):
            return "25", None
        if original.kind != Kind.SALE.value or original.status == TransactionStatus.VOIDED:
            return "12", None
        if original.refunded_fen:
            return "12", None
        if original.pan_hmac != pan_hmac:
            return "14", None
        if original.amount_fen != request.amount_fen:
            return "64", None
        return "00", original

    def refund(self, request: RefundRequest) -> _Outcome:
        admitted = self._admit(request)
        if isinstance(admitted, _Outcome):
            return admitted
        refused = self._refused(request, admitted)
        if refused is not None:
            return refused
        batch_id, pan_hmac, digest = admitted
        code, original = self._refund_check(request, pan_hmac)
        full = self._full(request, admitted) if code == "00" else None
        if full is not None:
            return full
        outcome = self._record(
            request,
            batch_id,
            code,
            pan_hmac,
            digest,
            original_id=None if original is None else original.transaction_id,
        )
        if code == "00":
            assert original is not None
            self.tx.set_transaction(
                original.transaction_id, refunded_fen=original.refunded_fen + request.amount_fen
            )
        return outcome

    def _refund_check(self, request: RefundRequest, pan_hmac: str) -> tuple[str, Any]:
        batch = self.tx.latest_batch(self.terminal_id, request.original.batch_no)
        original = (
            None if batch is None else self.tx.transaction(batch.batch_id, request.original.stan)
        )
        if original is None or original.status in (
            TransactionStatus.DECLINED,
            TransactionStatus.REVERSED,
        ):
            return "25", None
        if original.kind != Kind.SALE.value or original.status == TransactionStatus.VOIDED:
            return "12", None
        if original.pan_hmac != pan_hmac:
            return "14", None
        if (
            request.amount_fen <= 0
            or original.refunded_fen + request.amount_fen > original.amount_fen
        ):
            return "13", None
        return "00", original

    def reversal(self, request: ReversalRequest) -> _Outcome:
        kind = request.original_kind.value
        batch = self.tx.latest_batch(self.terminal_id, request.batch_no)
        done = self.tx.reversal(self.terminal_id, request.batch_no, request.stan, kind)
        if done is not None and done.batch_id == (None if batch is None else batch.batch_id):
            return self.answer(request, done.response_code)  # idempotent: the same answer
        original = None if batch is None else self.tx.transaction(batch.batch_id, request.stan)
        outcome, transaction_id = self._reverse(request, batch, original)
        self.tx.insert_reversal(
            terminal_id=self.terminal_id,
            batch_id=None if batch is None else batch.batch_id,
            batch_no=request.batch_no,
            stan=request.stan,
            original_kind=kind,
            amount_fen=request.amount_fen,
            reason_code=request.reason.value,
            outcome=outcome,
            transaction_id=transaction_id,
            response_code="00",
            created_at=self.now,
        )
        return self.answer(request, "00")

    def _reverse(
        self, request: ReversalRequest, batch: Any, original: Any
    ) -> tuple[str, int | None]:
        """Apply the reversal if it may be; return (outcome, transaction id)."""
        if original is None:
            return "unknown-original", None
        if original.status == TransactionStatus.DECLINED:
            return "original-declined", original.transaction_id
        if original.status == TransactionStatus.REVERSED:
            return "already-reversed", original.transaction_id
        counted = original.status in (TransactionStatus.APPROVED, TransactionStatus.VOIDED)
        if batch.state == BatchState.CLOSED.value:
            if counted:
                self.exception(
                    batch,
                    request.stan,
                    ExceptionKind.LATE_REVERSAL,
                    f"reversal (reason {request.reason.value}) of {original.kind} STAN "
                    f"{request.stan:06d} arrived after batch {batch.batch_no:06d} closed; "
                    "the closed batch keeps it — the back office must return the money",
                    terminal_amount_fen=request.amount_fen,
                    host_amount_fen=original.amount_fen,
                )
            return "late", original.transaction_id
        mismatch = None
        if original.kind != request.original_kind.value:
            mismatch = f"names a {request.original_kind.value} but STAN is a {original.kind}"
        elif original.amount_fen != request.amount_fen:
            mismatch = f"amount {request.amount_fen} differs from {original.amount_fen}"
        elif original.status == TransactionStatus.VOIDED:
            mismatch = "the sale was voided; reverse the void instead"
        if mismatch is not None:
            self.exception(
                batch,
                request.stan,
                ExceptionKind.REVERSAL_MISMATCH,
                f"reversal of STAN {request.stan:06d} not applied: it {mismatch}",
                terminal_amount_fen=request.amount_fen,
                host_amount_fen=original.amount_fen,
            )
            return "mismatch", original.transaction_id
        apply(BatchState(batch.state), BatchEvent.REVERSE)
        self.tx.set_transaction(original.transaction_id, status=TransactionStatus.REVERSED)
        if original.kind == Kind.VOID.value and original.original_transaction_id is not None:
            self.tx.set_transaction(
                original.original_transaction_id, status=TransactionStatus.APPROVED
            )
        if original.kind == Kind.REFUND.value and original.original_transaction_id is not None:
            sale = self.tx.transaction_by_id(original.original_transaction_id)
            self.tx.set_transaction(
                sale.transaction_id, refunded_fen=sale.refunded_fen - original.amount_fen
            )
        return "applied", original.transaction_id

    # --- settlement and upload --------------------------------------------------------------

    def _named_batch(self, request: Request) -> tuple[Any, Any]:
        current = self.tx.current_batch(self.terminal)
        if request.batch_no == current.batch_no:
            return current, current
        named = self.tx.latest_batch(self.terminal_id, request.batch_no)
        if named is not None and named.state != BatchState.CLOSED.value:
            named = None
        return current, named

    def _batch_77(self, request: Request, current: Any) -> _Outcome:
        behind = is_behind(request.batch_no, current.batch_no)
        reason = BatchReason.BEHIND if behind else BatchReason.AHEAD
        return _Outcome(
            _answer(request, "77", now=self.now, detail=_detail(self.tx, self.terminal, reason)),
            requirement=ProcessingRequirement.SIGN_ON,
        )

    def settlement(self, request: SettlementRequest) -> _Outcome:
        current, batch = self._named_batch(request)
        if batch is None:
            return self._batch_77(request, current)
        refused = check_currency(request.currency)
        if refused is not None:
            return self.answer(request, refused.response_code)
        state = BatchState(batch.state)
        if state == BatchState.OPEN:
            counted = self.tx.batch_tally(batch.batch_id)
            # A batch over field 48's capacity (from before the capacity rule; or the
            # terminal marks a half with code 3) is never balanced: batch upload carries
            # its records one by one, and the upload end closes it.
            over = not counted.fits() or _over_capacity(request.totals)
            totals = counted.capped_totals().with_reconciliation(Reconciliation.REQUEST)
            if not over and totals.same_amounts(request.totals):
                apply(state, BatchEvent.SETTLE_BALANCED)
                answer, result = totals.with_reconciliation(Reconciliation.BALANCED), "balanced"
                self.tx.close_batch(batch.batch_id, reason=CloseReason.BALANCED, now=self.now)
                self.tx.open_next_batch(self.terminal_id, batch.batch_no, now=self.now)
            else:
                apply(state, BatchEvent.SETTLE_UNBALANCED)
                answer, result = (
                    totals.with_reconciliation(Reconciliation.NOT_BALANCED),
                    "unbalanced",
                )
                self.tx.set_batch(batch.batch_id, state=BatchState.UPLOADING.value)
            self.tx.set_batch(
                batch.batch_id,
                terminal_totals=encode_totals(request.totals),
                host_totals=encode_totals(answer),
                settle_response_code="00",
            )
        elif batch.settle_response_code is not None:
            apply(state, BatchEvent.SETTLE_AGAIN)
            answer, result = decode_totals(batch.host_totals), "repeated"
            if (
                state == BatchState.CLOSED
                and batch.terminal_totals is not None
                and not decode_totals(batch.terminal_totals).same_amounts(request.totals)
            ):
                answer, result = self._settled_again(batch, request)
        else:
            # Closed by the back office (advance_batch) and never settled: compare only.
            host = decode_totals(batch.host_totals)
            over = _over_capacity(host) or _over_capacity(request.totals)
            if not over and host.same_amounts(request.totals):
                answer, result = host.with_reconciliation(Reconciliation.BALANCED), "balanced"
            else:
                answer, result = host.with_reconciliation(Reconciliation.ERROR), "error"
                why = (
                    "the batch holds more than field 48 can count, so the totals cannot be "
                    "compared (capped on both sides; see the batch-over-capacity record)"
                    if over
                    else f"terminal totals ({describe_totals(request.totals)}) differ from "
                    f"host totals ({describe_totals(host)})"
                )
                self.exception(
                    batch,
                    request.stan,
                    ExceptionKind.SETTLED_AFTER_ADVANCE,
                    f"terminal settled batch {batch.batch_no:06d} after the back office closed "
                    f"it; {why}",
                    terminal_amount_fen=net_fen(request.totals),
                    host_amount_fen=net_fen(host),
                )
            self.tx.set_batch(
                batch.batch_id,
                terminal_totals=encode_totals(request.totals),
                host_totals=encode_totals(answer),
                settle_response_code="00",
            )
        self.tx.add_settlement(
            batch_id=batch.batch_id,
            terminal_id=self.terminal_id,
            batch_no=batch.batch_no,
            stan=request.stan,
            terminal_totals=encode_totals(request.totals),
            host_totals=encode_totals(answer),
            response_code="00",
            outcome=result,
            created_at=self.now,
        )
        return self.answer(request, "00", totals=answer)

    def _settled_again(
        self, batch: Any, request: SettlementRequest
    ) -> tuple[SettlementTotals, str]:
        """A 0500 for a closed batch with other totals than the one that closed it: not a
        repeat but another journal (restored from an older backup, or an older copy put
        back by hand) — compared, never answered "balanced" blindly: equal to the host's →
        code 1; different (or a batch over capacity, which cannot be compared) → code 3
        and, once per such totals, a settled-again-differs record for the back office. The
        host's records stand (docs/host.md)."""
        earlier = self.tx.earlier_answer(batch.batch_id, encode_totals(request.totals))
        if earlier is not None:
            return decode_totals(earlier), "repeated"
        counted = self.tx.batch_tally(batch.batch_id)
        host = counted.capped_totals()
        over = not counted.fits() or _over_capacity(request.totals)
        if not over and host.same_amounts(request.totals):
            return host.with_reconciliation(Reconciliation.BALANCED), "balanced"
        self.exception(
            batch,
            request.stan,
            ExceptionKind.SETTLED_AGAIN_DIFFERS,
            f"batch {batch.batch_no:06d} was settled again after it closed, with other totals "
            f"({describe_totals(request.totals)}) than the host's ({describe_totals(host)}"
            + ("; capped: the batch holds more than field 48 can count" if over else "")
            + "): the terminal's journal is not the one that settled it (restored from an "
            "older backup, or an older copy put back); the host's records stand",
            terminal_amount_fen=net_fen(request.totals),
            host_amount_fen=counted.net_fen,
        )
        return host.with_reconciliation(Reconciliation.ERROR), "error"

    def upload(self, request: BatchUploadRequest) -> _Outcome:
        current, batch = self._named_batch(request)
        if batch is None:
            return self._batch_77(request, current)
        state = BatchState(batch.state)
        if state == BatchState.CLOSED:
            return self.answer(request, "00")  # after balanced or after the end: no change
        if state == BatchState.OPEN:
            return self.answer(request, "12")  # upload before a not-balanced settlement
        apply(state, BatchEvent.UPLOAD_RECORD)
        seen = self.tx.upload_record_stans(batch.batch_id, [r.stan for r in request.records])
        rows = []
        for record in request.records:
            if record.stan in seen:
                continue  # idempotent per STAN: the first record stands
            seen.add(record.stan)
            rows.append(
                {
                    "batch_id": batch.batch_id,
                    "stan": record.stan,
                    "card_type": record.card_type.value,
                    "pan_hmac": self.tx.store.pan_hmac(record.pan),
                    "pan_masked": mask_pan(record.pan),
                    "amount_fen": record.amount_fen,
                    "created_at": self.now,
                }
            )
        self.tx.insert_upload_records(rows)
        return self.answer(request, "00")

    def upload_end(self, request: BatchUploadEndRequest) -> _Outcome:
        current, batch = self._named_batch(request)
        if batch is None:
            return self._batch_77(request, current)
        state = BatchState(batch.state)
        if state == BatchState.CLOSED:
            return self.answer(request, "00", after_balanced=request.after_balanced)
        if state == BatchState.OPEN:
            return self.answer(request, "12", after_balanced=request.after_balanced)
        apply(state, BatchEvent.UPLOAD_END)
        self._reconcile(batch, request.total_records)
        counted = self.tx.batch_tally(batch.batch_id)
        if not counted.fits():
            self.tx.add_over_capacity(
                self.terminal_id, self.terminal.merchant_id, batch, counted, "batch upload",
                now=self.now,
            )  # fmt: skip
        self.tx.set_batch(batch.batch_id, upload_end_records=request.total_records)
        self.tx.close_batch(batch.batch_id, reason=CloseReason.UPLOADED, now=self.now)
        self.tx.open_next_batch(self.terminal_id, batch.batch_no, now=self.now)
        return self.answer(request, "00", after_balanced=request.after_balanced)

    def _reconcile(self, batch: Any, total_records: int) -> None:
        """Every difference between upload and host becomes an exception with its cause."""
        host = {row.stan: row for row in self.tx.counted_transactions(batch.batch_id)}
        uploaded = {row.stan: row for row in self.tx.upload_records(batch.batch_id)}
        for stan, row in host.items():
            record = uploaded.get(stan)
            if record is None:
                self.exception(
                    batch,
                    stan,
                    ExceptionKind.HOST_ONLY,
                    f"host approved {row.kind} STAN {stan:06d} ({row.pan_masked}) but the "
                    "terminal did not upload it: its response was lost at the terminal, or the "
                    "terminal reversed it and the reversal never reached the host",
                    terminal_amount_fen=None,
                    host_amount_fen=row.amount_fen,
                )
            elif record.amount_fen != row.amount_fen:
                self.exception(
                    batch,
                    stan,
                    ExceptionKind.AMOUNT_DIFFERS,
                    f"{row.kind} STAN {stan:06d}: terminal uploaded {record.amount_fen} fen, "
                    f"host approved {row.amount_fen} fen",
                    terminal_amount_fen=record.amount_fen,
                    host_amount_fen=row.amount_fen,
                )
            elif record.pan_hmac != row.pan_hmac:
                self.exception(
                    batch,
                    stan,
                    ExceptionKind.PAN_DIFFERS,
                    f"{row.kind} STAN {stan:06d}: terminal uploaded card {record.pan_masked}, "
                    f"host approved card {row.pan_masked}",
                    terminal_amount_fen=record.amount_fen,
                    host_amount_fen=row.amount_fen,
                )
        for stan, record in uploaded.items():
            if stan in host:
                continue
            known = self.tx.transaction(batch.batch_id, stan)
            if known is None:
                why = "the host never received it (sent offline, or the request was lost)"
            elif known.status == TransactionStatus.REVERSED:
                why = "the host reversed it (a reversal reached the host)"
            else:
                why = f"the host {known.status} it with code {known.response_code}"
            self.exception(
                batch,
                stan,
                ExceptionKind.TERMINAL_ONLY,
                f"terminal uploaded STAN {stan:06d} ({record.pan_masked}) as approved but {why}",
                terminal_amount_fen=record.amount_fen,
                host_amount_fen=None,
            )
        if total_records != len(uploaded):
            self.exception(
                batch,
                None,
                ExceptionKind.UPLOAD_COUNT_DIFFERS,
                f"upload end says {total_records} records, the host received {len(uploaded)}",
                terminal_amount_fen=None,
                host_amount_fen=None,
            )


def _read_ahead(tx: StoreTx, group: list[_Work]) -> None:
    """Read what the group's requests will look up in three statements, not three each.

    Every terminal (locked, in terminal id order); for each sale, void or
    refund in its terminal's current batch, the transaction already under its
    STAN (a duplicate); for each such sale, the reversals that overtook it.
    """
    terminals = tx.read_terminals([work.request.terminal_id for work in group])
    stans: list[tuple[int, int]] = []
    sales: list[tuple[str, int, int]] = []
    for work in group:
        request = work.request
        if not isinstance(request, SaleRequest | VoidRequest | RefundRequest):
            continue
        terminal = terminals.get(request.terminal_id)
        if terminal is None or terminal.current_batch_id is None:
            continue
        if terminal.batch_no != request.batch_no:
            continue  # answered 77 without a lookup
        stans.append((terminal.current_batch_id, request.stan))
        if isinstance(request, SaleRequest):
            sales.append((request.terminal_id, request.batch_no, request.stan))
    tx.read_transactions(stans)
    tx.read_reversals(sales, Kind.SALE.value)


def _over_capacity(totals: SettlementTotals) -> bool:
    """Whether a half of ``totals`` carries code 3: capped, not the batch's totals."""
    return Reconciliation.ERROR in (totals.domestic.reconciliation, totals.foreign.reconciliation)


def _wire_time(now: datetime) -> tuple[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD) of ``now``."""
    return f"{now.hour:02d}{now.minute:02d}{now.second:02d}", f"{now.month:02d}{now.day:02d}"


def _kind(request: Request) -> Kind:
    return request.KIND


def _detail(tx: StoreTx, terminal: Any, reason: BatchReason | None) -> str:
    """Field 63: BatchStateDetail (R, B, S, L) plus ``Q=`` how the last closed batch ended."""
    current = tx.current_batch(terminal)
    last = tx.last_closed_batch(terminal.terminal_id)
    detail = encode_batch_detail(
        BatchStateDetail(
            reason,
            # Before the first sign-on there is no batch: report the one sign-on will open.
            FIRST_BATCH_NO if current is None else current.batch_no,
            BatchState.OPEN if current is None else BatchState(current.state),
            None if last is None else last.batch_no,
        )
    )
    if last is None or last.close_reason is None:
        return detail
    items = decode_detail(detail)
    items["Q"] = str(last.close_reason).upper()
    return encode_detail(items)


def _echo_detail(tx: StoreTx, terminal: Any) -> str:
    """Field 63 of an echo answer: the batch-state detail plus ``T=`` the STAN of the last
    transaction recorded in the current batch (docs/host.md; doctor compares it with the
    journal: a STAN the host holds and the journal does not is a journal copied back)."""
    detail = _detail(tx, terminal, None)
    if terminal.current_batch_id is None:
        return detail
    stan = tx.last_stan_in_batch(terminal.current_batch_id)
    if stan is None:
        return detail
    items = decode_detail(detail)
    items[DETAIL_LAST_STAN] = f"{stan:06d}"
    return encode_detail(items)


def _answer(request: Request, code: str, *, now: datetime, **extra: Any) -> Response:
    """The response to ``request`` with ``code`` (and ``extra`` fields of its type)."""
    local_time, local_date = _wire_time(now)
    detail = extra.pop("detail", None)
    if isinstance(request, SignOnRequest):
        return SignOnResponse(
            request.terminal_id, request.merchant_id, request.stan, request.batch_no, code,
            local_time, local_date, None, detail,
        )  # fmt: skip
    if isinstance(request, SignOffRequest | EchoRequest):
        return AdminResponse(
            request.KIND, request.terminal_id, request.merchant_id, request.stan,
            request.batch_no, code, local_time, local_date, detail,
        )  # fmt: skip
    if isinstance(request, SaleRequest | VoidRequest | RefundRequest | ReversalRequest):
        return TransactionResponse(
            request.KIND,
            request.terminal_id,
            request.merchant_id,
            request.stan,
            request.batch_no,
            code,
            request.amount_fen,
            original_kind=request.original_kind if isinstance(request, ReversalRequest) else None,
            local_time=local_time,
            local_date=local_date,
            detail=detail,
            currency=request.currency,
        )
    if isinstance(request, SettlementRequest):
        return SettlementResponse(
            request.terminal_id, request.merchant_id, request.stan, request.batch_no, code,
            extra.get("totals"), local_time, local_date, detail, request.currency,
        )  # fmt: skip
    return BatchUploadResponse(
        request.KIND, request.terminal_id, request.merchant_id, request.stan, request.batch_no,
        code, bool(extra.get("after_balanced", False)), detail,
    )  # fmt: skip


def _format_error(
    frame: Frame, error: DecodeError, terminal_now: Callable[[str], TerminalRow | None]
) -> HostReply:
    """Answer 30 when the terminal and merchant ids can still be read; else drop.

    The 30 is MACed under the MAK the host holds for that terminal (``terminal_now``
    reads it), by the rule of :func:`_answer_mak`.
    """
    log = RequestLog(error=str(error))
    try:
        fields, _ = iso8583.decode(frame.body, SPEC)
    except Exception:  # unreadable bytes: nobody to answer
        return HostReply(log=log)
    mti, terminal_id, merchant_id = fields.get("t", ""), fields.get("41"), fields.get("42")
    if mti not in _REQUEST_MTIS or not terminal_id or not merchant_id:
        return HostReply(log=log)
    answer: dict[str, str] = {
        "t": _response_mti(mti),
        "39": "30",
        "41": terminal_id,
        "42": merchant_id,
    }
    for number, digits in (("3", 6), ("4", 12), ("11", 6)):
        value = fields.get(number, "")
        if len(value) == digits and value.isdigit():
            answer[number] = value
    for number in ("49", "60"):
        value = fields.get(number, "")
        if value and value.isascii() and value.isalnum():
            answer[number] = value
    terminal = terminal_now(terminal_id)
    proof = None if terminal is None else _proven_mak(terminal, frame.body)
    mak = _answer_mak("30", terminal, proof)
    if mak is not None:
        answer["64"] = "0" * (2 * MAC_BYTES)  # placeholder, computed over the encoded body
    try:
        body, _ = iso8583.encode(answer, SPEC)
        if mak is not None:
            body[-MAC_BYTES:] = compute_mac(mak, bytes(body[:-MAC_BYTES]))
        header = Header()
        wire = encode_frame(Frame(frame.tpdu.reply(), header, bytes(body)))
    except Exception:  # whatever we salvaged does not encode: drop
        return HostReply(log=log)
    stan = answer.get("11")
    return HostReply(
        (wire,),
        log=RequestLog(
            terminal_id=terminal_id,
            stan=int(stan) if stan else None,
            mti=mti,
            response_code="30",
            error=str(error),
        ),
    )
