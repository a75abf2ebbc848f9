"""The host's batch rules as one pure function: ``decide(request, snapshot, rules)``.

Theory of operation
-------------------
The host (:mod:`posbatch.host.core`) runs every request through a pipeline:
read ahead (the group's terminals, duplicates and reversals in a few
statements) → the MAK the request's MAC verifies under (the crypto stays in
the host) → **decide** → apply the effects → commit → answer. This module is
the *decide* step of every request: admission (unknown terminal, merchant,
suspension, the MAC, the keys of a sign-on coming into force), then the
rules of sign-on, sign-off, echo, sale, void, refund, reversal, settlement,
batch upload and its end.

:func:`decide` never writes. It reads what it needs from the
:class:`Snapshot`: the terminal row (with its current batch's number and
state, read ahead for the whole group) and a read-only :class:`HostView` of
the host's records, through which the rare lookups of the cold paths (a batch
named by a 77, the original of a void or refund, the records of an upload)
are made only when a rule needs them. It returns a
:class:`~posbatch.batch.host_effects.Decision`: the response, the processing
requirement of the answer's header, and the effects
(:mod:`posbatch.batch.host_effects`) — frozen dataclasses, each one write —
that the host applies in order inside the same unit of work before it answers.

The batch lifecycle is the table of :mod:`posbatch.batch.host_batch`: a move
of a batch is a :class:`~posbatch.batch.host_effects.MoveBatch` whose state
is what ``apply()`` returned (:func:`~posbatch.batch.host_effects.move_batch`),
and a request the table forbids in the batch's state raises
:class:`~posbatch.errors.IllegalTransition` (a programmer error, never a
peer's). "Behind" is :func:`posbatch.batch.counters.is_behind` (the wrap
counted). A transaction's status changes only through
:func:`~posbatch.batch.host_effects.set_status`.

Time (``snapshot.now``), the issuer, the keyed PAN hash and the RRN and
authorisation-code draws come in with the snapshot and the rules, so a
seeded simulator replays bit for bit.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from posbatch.batch.cards import card_bin8, card_expiry, check_currency, check_track2
from posbatch.batch.codes import BATCH_FULL, BATCH_NUMBER_DIFFERS, MAC_ERROR
from posbatch.batch.counters import is_behind
from posbatch.batch.host_batch import FIRST_BATCH_NO, BatchEvent
from posbatch.batch.host_effects import (
    AddException,
    AddSettlement,
    BringKeysIntoForce,
    Decision,
    Effect,
    InsertReversal,
    InsertTransaction,
    InsertUploadRecords,
    NoteStan,
    OpenFirstBatch,
    OpenNextBatch,
    RecordHostTotals,
    RecordSettlementTotals,
    RecordUploadEnd,
    SetRefundedFen,
    SignOff,
    SignOn,
    SignOnAgain,
    batch_error,
    move_batch,
    set_status,
)
from posbatch.batch.host_records import (
    BatchRow,
    CloseReason,
    ExceptionKind,
    ReversalRow,
    TerminalRow,
    TerminalStatus,
    TransactionRow,
    TransactionStatus,
    UploadRecordRow,
)
from posbatch.batch.model import (
    BatchReason,
    BatchState,
    BatchStateDetail,
    Kind,
    Reconciliation,
    SettlementTotals,
    beijing,
)
from posbatch.batch.money import format_fen
from posbatch.batch.totals import (
    TOTAL_AMOUNT_FEN_MAX,
    BatchTally,
    card_type_of_pan,
    describe_totals,
    net_fen,
)
from posbatch.batch.txn_lifecycle import HostTxnEvent
from posbatch.wire import (
    DETAIL_LAST_STAN,
    AdminResponse,
    BatchUploadEndRequest,
    BatchUploadRequest,
    BatchUploadResponse,
    EchoRequest,
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
    decode_detail,
    decode_totals,
    encode_batch_detail,
    encode_detail,
    encode_totals,
    mask_pan,
    wrap_working_keys,
)

__all__ = [
    "HostView",
    "Issuer",
    "Rules",
    "Snapshot",
    "advance",
    "answer",
    "batch_detail",
    "decide",
    "over_capacity_cause",
    "wire_time",
]

# --- what decide reads --------------------------------------------------------------------


class HostView(Protocol):
    """The host's records, read-only, as of the request (its own unit of work's writes
    included). The host implements it over the store; tests over dicts."""

    def current_batch(self, terminal: TerminalRow) -> BatchRow | None: ...
    def latest_batch(self, terminal_id: str, batch_no: int) -> BatchRow | None: ...
    def last_closed_batch(self, terminal_id: str) -> BatchRow | None: ...
    def transaction(self, batch_id: int, stan: int) -> TransactionRow | None: ...
    def transaction_by_id(self, transaction_id: int) -> TransactionRow | None: ...
    def reversals_seen(
        self, terminal_id: str, batch_no: int, stan: int, original_kind: str
    ) -> list[tuple[int | None, int]]: ...
    def reversal(
        self, terminal_id: str, batch_no: int, stan: int, original_kind: str, amount_fen: int
    ) -> ReversalRow | None: ...
    def batch_bound(self, batch_id: int) -> tuple[int, int]: ...
    def batch_tally(self, batch_id: int) -> BatchTally: ...
    def earlier_answer(self, batch_id: int, terminal_totals: str) -> str | None: ...
    def upload_record_stans(self, batch_id: int, stans: Sequence[int]) -> set[int]: ...
    def upload_records(self, batch_id: int) -> Sequence[UploadRecordRow]: ...
    def counted_transactions(self, batch_id: int) -> Sequence[TransactionRow]: ...
    def last_stan_in_batch(self, batch_id: int) -> int | None: ...


class Issuer(Protocol):
    """Who approves a sale (:class:`posbatch.host.issuer.IssuerRules` by default)."""

    def decide(self, *, pan: str, amount_fen: int, expiry: str | None, now: datetime) -> str: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a request is decided on: the registry's row of the terminal it names (read
    for update; None if no such terminal), the records, the time, and ``proof``: the
    MAK under which the request's field 64 verified — the keys in force or those of
    the last sign-on (:func:`posbatch.host.core._proven_mak`) — or None (no MAC, or
    none that verifies). A sign-on, sign-off or echo carries no MAC: its proof is None."""

    terminal: TerminalRow | None
    view: HostView
    now: datetime
    proof: bytes | None


@dataclass(frozen=True, slots=True)
class Rules:
    """The host's settings and injected sources (the same for every request)."""

    issuer: Issuer
    batch_count_max: int
    pan_hmac: Callable[[str], str]  # the keyed hash under which a PAN is matched
    rrn: Callable[[], str]  # draws a retrieval reference number
    auth_code: Callable[[], str]  # draws an authorisation code
    working_keys: Callable[[], WorkingKeys]  # draws a sign-on's PIK and MAK


def over_capacity_cause(batch_no: int, counted: BatchTally, closed_by: str) -> str:
    """The cause text of a batch-over-capacity exception record."""
    over = ", ".join(words[0] for words in (counter.words for counter in counted.overflows()))
    return (
        f"batch {batch_no:06d} held more than field 48 can count ({over} over "
        f"999 entries or 999,999,999,999 fen): {counted.describe()}; closed by "
        f"{closed_by}, its recorded totals are capped — the records are the truth"
    )


# --- answers ------------------------------------------------------------------------------------

_FINANCIAL_REQUEST = SaleRequest | VoidRequest | RefundRequest
_NOT_FOUND: Final = "25"


def wire_time(now: datetime) -> tuple[str, str]:
    """Fields 12 (hhmmss) and 13 (MMDD): ``now`` as the local time of DESIGN.md's table —
    Beijing time, the time every person and receipt reads (a naive ``now`` is UTC)."""
    local = beijing(now)
    return _wire_time(local.hour, local.minute, local.second, local.month, local.day)


@functools.lru_cache(maxsize=8)  # every answer of one second has the same two fields
def _wire_time(hour: int, minute: int, second: int, month: int, day: int) -> tuple[str, str]:
    return f"{hour:02d}{minute:02d}{second:02d}", f"{month:02d}{day:02d}"


def answer(
    request: Request,
    code: str,
    *,
    now: datetime,
    detail: str | None = None,
    totals: SettlementTotals | None = None,
    after_balanced: bool = False,
) -> Response:
    """The response to ``request`` with ``code`` (and the fields of its type given)."""
    local_time, local_date = wire_time(now)
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
            totals, local_time, local_date, detail, request.currency,
        )  # fmt: skip
    assert isinstance(request, BatchUploadRequest | BatchUploadEndRequest)
    return BatchUploadResponse(
        request.KIND, request.terminal_id, request.merchant_id, request.stan, request.batch_no,
        code, after_balanced, detail,
    )  # fmt: skip


def batch_detail(view: HostView, terminal: TerminalRow, reason: BatchReason | None) -> str:
    """Field 63: BatchStateDetail (R, B, S, L) plus ``Q=`` how the last closed batch ended."""
    current = view.current_batch(terminal)
    last = view.last_closed_batch(terminal.terminal_id)
    detail = encode_batch_detail(
        BatchStateDetail(
            reason,
            # Before the first sign-on there is no batch: report the one sign-on will open.
            FIRST_BATCH_NO if current is None else current.batch_no,
            BatchState.OPEN if current is None else current.state,
            None if last is None else last.batch_no,
        )
    )
    if last is None or last.close_reason is None:
        return detail
    items = decode_detail(detail)
    items["Q"] = str(last.close_reason).upper()
    return encode_detail(items)


def _over_capacity(totals: SettlementTotals) -> bool:
    """Whether a half of ``totals`` carries code 3: capped, not the batch's totals."""
    return Reconciliation.ERROR in (totals.domestic.reconciliation, totals.foreign.reconciliation)


# --- decide ----------------------------------------------------------------------------------


def decide(request: Request, snapshot: Snapshot, rules: Rules) -> Decision:
    """The answer to ``request`` and its effects: admission, then the batch rules.

    Admission, in this order: an unknown terminal is answered 97, a merchant id that
    is not the terminal's 03, a terminal not active 58; a sign-on, sign-off or echo
    (no MAC) is then decided. Any other request must have MACed under the terminal's
    keys (``snapshot.proof``): without that, 77 (field 63 says why) to a terminal
    that is not signed on or holds no keys, else A0 — both ask for a sign-on. A
    request MACed under the keys of the last sign-on brings them into force; one
    from a signed-off terminal under its keys in force signs it on again. Every 77
    is recorded for the back office (:func:`~posbatch.batch.host_effects.batch_error`).
    """
    terminal, now = snapshot.terminal, snapshot.now
    if terminal is None:
        return Decision(answer(request, "97", now=now))
    if terminal.merchant_id != request.merchant_id:
        return Decision(answer(request, "03", now=now))
    if terminal.status != TerminalStatus.ACTIVE:
        return Decision(answer(request, "58", now=now))
    if isinstance(request, _ADMIN_REQUEST):
        return _recorded(
            _Decider(terminal, snapshot, rules).decide(request), terminal, request, now
        )
    proof = snapshot.proof
    if proof is None:
        if not terminal.signed_on or (terminal.mak is None and terminal.pending_keys is None):
            detail = batch_detail(snapshot.view, terminal, BatchReason.NOT_SIGNED_ON)
            response = answer(request, BATCH_NUMBER_DIFFERS, now=now, detail=detail)
            return _recorded(
                Decision(response, ProcessingRequirement.SIGN_ON), terminal, request, now
            )
        return Decision(answer(request, MAC_ERROR, now=now), ProcessingRequirement.SIGN_ON)
    keys: Effect | None = None
    if proof != terminal.mak:  # the keys of the last sign-on, used for the first time
        pending = terminal.pending_keys
        assert pending is not None and pending.mak == proof
        keys = BringKeysIntoForce(terminal.terminal_id, pending)
        terminal = terminal._replace(mak=pending.mak, pending_keys=None, signed_on=True)
    elif not terminal.signed_on:  # signed off, yet it holds the keys: it is the terminal
        keys = SignOnAgain(terminal.terminal_id)
        terminal = terminal._replace(signed_on=True)
    decider = _Decider(terminal, snapshot, rules)
    if keys is not None:
        decider.effects.append(keys)
    return _recorded(decider.decide(request), terminal, request, now)


_ADMIN_REQUEST = SignOnRequest | SignOffRequest | EchoRequest


def _recorded(
    decision: Decision, terminal: TerminalRow, request: Request, now: datetime
) -> Decision:
    """``decision``, with the record of its 77 for the back office if it is one."""
    if decision.response.response_code != BATCH_NUMBER_DIFFERS:
        return decision
    record = batch_error(terminal, request, decision.response.detail, at=now)
    return Decision(decision.response, decision.requirement, (*decision.effects, record))


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A sale, void or refund that passed the batch and duplicate rules."""

    batch_id: int
    pan_hmac: str
    digest: str


class _Decider:
    """One request's decision; ``effects`` collects its writes in the order they apply."""

    def __init__(self, terminal: TerminalRow, snapshot: Snapshot, rules: Rules) -> None:
        self.view = snapshot.view
        self.terminal = terminal
        self.terminal_id = terminal.terminal_id
        self.now = snapshot.now
        self.rules = rules
        self.effects: list[Effect] = []

    def done(
        self, response: Response, requirement: ProcessingRequirement = ProcessingRequirement.NONE
    ) -> Decision:
        return Decision(response, requirement, tuple(self.effects))

    def answer(
        self,
        request: Request,
        code: str,
        *,
        totals: SettlementTotals | None = None,
        after_balanced: bool = False,
    ) -> Decision:
        return self.done(
            answer(request, code, now=self.now, totals=totals, after_balanced=after_balanced)
        )

    def decide(self, request: Request) -> Decision:
        if isinstance(request, SignOnRequest):
            return self.sign_on(request)
        if isinstance(request, SignOffRequest):
            # The keys stay: an 0820 carries no MAC, so it may come from anyone who read the
            # ids off a receipt. A request MACed under them afterwards proves the terminal
            # still holds them, and goes on; the real terminal dropped its keys.
            self.effects.append(SignOff(self.terminal_id))
            return self.answer(request, "00")
        if isinstance(request, EchoRequest):
            # A network check changes nothing here (no keys, no last STAN, no batch): doctor
            # diagnoses with it. Its 63 is the host's view, and T= the last STAN it recorded.
            return self.done(answer(request, "00", now=self.now, detail=self.echo_detail()))
        if isinstance(request, SaleRequest):
            return self.sale(request)
        if isinstance(request, VoidRequest):
            return self.void(request)
        if isinstance(request, RefundRequest):
            return self.refund(request)
        if isinstance(request, ReversalRequest):
            return self.reversal(request)
        if isinstance(request, SettlementRequest):
            self.effects.append(NoteStan(self.terminal_id, request.stan))
            return self.settlement(request)
        if isinstance(request, BatchUploadRequest):
            return self.upload(request)
        if isinstance(request, BatchUploadEndRequest):
            return self.upload_end(request)
        raise AssertionError(f"decide() takes no {type(request).__name__}")

    def move(
        self,
        batch_id: int,
        state: BatchState,
        event: BatchEvent,
        *,
        close_reason: str | None = None,
    ) -> None:
        """The batch moves as the table says (no write when it stays)."""
        move = move_batch(batch_id, state, event, at=self.now, close_reason=close_reason)
        if move is not None:
            self.effects.append(move)

    # --- sign-on and echo -------------------------------------------------------------------

    def sign_on(self, request: SignOnRequest) -> Decision:
        """签到: hand out working keys — without taking the ones in force away.

        An 0800 carries no MAC: anyone who knows the terminal's ids (printed on
        every receipt) can send one. So a sign-on never replaces the keys in
        force (``mak``/``pik``): its keys wait in ``pending_keys`` (sealed like
        every key) and come into force with the first request MACed under them
        (:func:`decide`'s admission). Until then every sign-on — a spoofed one, a
        duplicate on the line, a resend after a lost answer, whatever its STAN —
        hands out those same keys again; new ones are made only once the last
        ones were used. The real terminal therefore always ends up with keys the
        host takes, and its keys in force keep working whoever signs it on. The
        first sign-on opens batch 000001.
        """
        terminal = self.terminal
        keys = terminal.pending_keys
        if keys is None:
            keys = self.rules.working_keys()
        if terminal.current_batch_id is None:
            self.effects.append(OpenFirstBatch(self.terminal_id, self.now))
        self.effects.append(SignOn(self.terminal_id, keys, request.stan, self.now))
        current = self.view.current_batch(terminal)  # None: the first one, opened above
        response = SignOnResponse(
            request.terminal_id,
            request.merchant_id,
            request.stan,
            FIRST_BATCH_NO if current is None else current.batch_no,
            "00",
            *wire_time(self.now),
            wrap_working_keys(bytes(terminal.master_key), keys),  # the same keys, the same 62
            batch_detail(self.view, terminal, None),
        )
        uploading = current is not None and current.state == BatchState.UPLOADING
        requirement = ProcessingRequirement.SETTLE if uploading else ProcessingRequirement.NONE
        return self.done(response, requirement)

    def echo_detail(self) -> str:
        """Field 63 of an echo answer: the batch-state detail plus ``T=`` the STAN of the last
        transaction recorded in the current batch (docs/host.md; doctor compares it with the
        journal: a STAN the host holds and the journal does not is a journal copied back)."""
        detail = batch_detail(self.view, self.terminal, None)
        if self.terminal.current_batch_id is None:
            return detail
        stan = self.view.last_stan_in_batch(self.terminal.current_batch_id)
        if stan is None:
            return detail
        items = decode_detail(detail)
        items[DETAIL_LAST_STAN] = f"{stan:06d}"
        return encode_detail(items)

    def exception(
        self,
        batch: BatchRow | None,
        stan: int | None,
        kind: str,
        cause: str,
        *,
        terminal_amount_fen: int | None,
        host_amount_fen: int | None,
    ) -> None:
        self.effects.append(
            AddException(
                terminal_id=self.terminal_id,
                merchant_id=self.terminal.merchant_id,
                batch_id=None if batch is None else batch.batch_id,
                batch_no=None if batch is None else batch.batch_no,
                stan=stan,
                kind=kind,
                cause=cause,
                terminal_amount_fen=terminal_amount_fen,
                host_amount_fen=host_amount_fen,
                at=self.now,
            )
        )

    def current(self) -> BatchRow:
        current = self.view.current_batch(self.terminal)
        assert current is not None, "a signed-on terminal has a batch"
        return current

    # --- batch checks ------------------------------------------------------------------------

    def mismatch(
        self, request: Request, *, late_void: bool = False, repeat_digest: str | None = None
    ) -> Decision | None:
        """A 77 when 60.2 is not the current batch, or the current batch is not OPEN —
        unless the request repeats one (``repeat_digest``) that the batch it names holds:
        then that request's original answer."""
        if (
            request.batch_no == self.terminal.batch_no
            and self.terminal.batch_state == BatchState.OPEN
        ):
            return None
        current = self.current()
        if request.batch_no == current.batch_no and current.state == BatchState.OPEN:
            return None
        if repeat_digest is not None:
            assert isinstance(request, _FINANCIAL_REQUEST)
            named = self.view.latest_batch(self.terminal_id, request.batch_no)
            existing = (
                None if named is None else self.view.transaction(named.batch_id, request.stan)
            )
            if existing is not None and existing.request_digest == repeat_digest:
                return self._original_answer(request, existing)
        if request.batch_no == current.batch_no:
            reason = BatchReason.CLOSED  # settling: the batch takes no new transactions
        else:
            named = self.view.latest_batch(self.terminal_id, request.batch_no)
            if named is not None and named.state == BatchState.CLOSED:
                reason = BatchReason.CLOSED
            elif is_behind(request.batch_no, current.batch_no):
                reason = BatchReason.BEHIND
            else:
                reason = BatchReason.AHEAD
        if late_void and reason == BatchReason.CLOSED and request.batch_no != current.batch_no:
            assert isinstance(request, VoidRequest)
            named = self.view.latest_batch(self.terminal_id, request.batch_no)
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
            if current.state == BatchState.UPLOADING
            else ProcessingRequirement.SIGN_ON
        )
        detail = batch_detail(self.view, self.terminal, reason)
        return self.done(answer(request, "77", now=self.now, detail=detail), requirement)

    # --- financial ------------------------------------------------------------------------

    def _digest(self, request: SaleRequest | VoidRequest | RefundRequest, pan_hmac: str) -> str:
        original = getattr(request, "original", None)
        text = f"{request.KIND.value}|{request.amount_fen}|{pan_hmac}|" + (
            "" if original is None else f"{original.batch_no}/{original.stan}"
        )
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def _original_answer(
        self, request: SaleRequest | VoidRequest | RefundRequest, existing: TransactionRow
    ) -> Decision:
        """The answer ``existing`` got, for its repeat ``request``."""
        return self.done(
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
    ) -> Decision:
        approved = code == "00"
        rrn = self.rules.rrn()
        auth_code = self.rules.auth_code() if approved else None
        local_time, local_date = wire_time(self.now)
        status = TransactionStatus.APPROVED if approved else TransactionStatus.DECLINED
        if approved and request.KIND == Kind.SALE:
            seen = self.view.reversals_seen(
                self.terminal_id, request.batch_no, request.stan, Kind.SALE.value
            )
            if any(
                reversed_batch in (None, batch_id) and amount_fen == request.amount_fen
                for reversed_batch, amount_fen in seen
            ):
                # Its reversal overtook it. (A different amount under the same STAN is
                # another sale — a terminal whose counters were reset — found by sim seed 31.)
                status = TransactionStatus.REVERSED
        bin8 = card_bin8(request.pan) if approved else None  # what clearing reads: approvals
        self.effects.append(
            InsertTransaction(
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
                bin8_hmac=None if bin8 is None else self.rules.pan_hmac(bin8),
            )
        )
        self.effects.append(NoteStan(self.terminal_id, request.stan))
        return self.done(
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
    ) -> Decision | None:
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
    ) -> Decision | None:
        """The recorded 95 (63 ``R=FULL;…;F=<counter>``) when approving ``request`` would make
        the batch's totals unrepresentable in field 48; None when there is room.

        The batch's bound (every approval ever inserted, and its amount) decides at
        no cost while it is far from the limits; near them the batch is summed exactly.
        """
        count_max = self.rules.batch_count_max
        count, amount_fen = self.view.batch_bound(admitted.batch_id)
        if count < count_max and amount_fen + request.amount_fen <= TOTAL_AMOUNT_FEN_MAX:
            return None
        counter = self.view.batch_tally(admitted.batch_id).full_counter(
            request.KIND, request.amount_fen, card_type_of_pan(request.pan), count_max=count_max
        )
        if counter is None:
            return None
        items = decode_detail(batch_detail(self.view, self.terminal, BatchReason.FULL))
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
    ) -> Decision | _Admitted:
        """What every sale, void and refund passes first: the batch rules, then duplicates.

        A :class:`Decision` is the answer already (77, a late void, the original
        response of a duplicate, 94); :class:`_Admitted` lets the request go on.
        A repeat of a request the host already answered gets that answer again even
        when its batch has closed since (a refund resent after a lost answer, a late
        duplicate): a 77 would tell the terminal it was not processed while the host
        counts it. Only the same STAN with the same content is a repeat.
        """
        pan_hmac = self.rules.pan_hmac(request.pan)
        digest = self._digest(request, pan_hmac)
        refused = self.mismatch(request, late_void=late_void, repeat_digest=digest)
        if refused is not None:
            return refused
        batch_id = self.terminal.current_batch_id
        assert batch_id is not None
        existing = self.view.transaction(batch_id, request.stan)
        if existing is not None:
            if existing.request_digest != digest:
                return self.answer(request, "94")
            return self._original_answer(request, existing)
        return _Admitted(batch_id, pan_hmac, digest)

    def sale(self, request: SaleRequest) -> Decision:
        admitted = self._admit(request)
        if isinstance(admitted, Decision):
            return admitted
        # the batch is OPEN (else mismatch() answered 77): the table keeps it OPEN
        self.move(admitted.batch_id, BatchState.OPEN, BatchEvent.TRANSACTION)
        # before the issuer: never authorise what cannot be settled
        refused = self._refused(request, admitted) or self._full(request, admitted)
        if refused is not None:
            return refused
        code = self.rules.issuer.decide(
            pan=request.pan,
            amount_fen=request.amount_fen,
            expiry=card_expiry(request.expiry, request.track2),
            now=self.now,
        )
        return self._record(request, admitted.batch_id, code, admitted.pan_hmac, admitted.digest)

    def void(self, request: VoidRequest) -> Decision:
        admitted = self._admit(request, late_void=True)
        if isinstance(admitted, Decision):
            return admitted
        return self._on_original(
            request,
            admitted,
            lambda: self._void_check(request, admitted.batch_id, admitted.pan_hmac),
            lambda original: set_status(
                original.transaction_id, original.status, HostTxnEvent.VOID
            ),
        )

    def _on_original(
        self,
        request: VoidRequest | RefundRequest,
        admitted: _Admitted,
        check: Callable[[], tuple[str, TransactionRow | None]],
        change: Callable[[TransactionRow], Effect],
    ) -> Decision:
        """A void or a refund once admitted: refused (currency, card), checked against its
        original (``check``: the code and, when 00, the original), refused 95 when approving
        it would overfill the batch, recorded; approved, the original is changed too."""
        refused = self._refused(request, admitted)
        if refused is not None:
            return refused
        code, original = check()
        full = self._full(request, admitted) if code == "00" else None
        if full is not None:
            return full
        decision = self._record(
            request,
            admitted.batch_id,
            code,
            admitted.pan_hmac,
            admitted.digest,
            original_id=None if original is None else original.transaction_id,
        )
        if code != "00":
            return decision
        assert original is not None
        self.effects.append(change(original))
        return self.done(decision.response)

    def _void_check(
        self, request: VoidRequest, batch_id: int, pan_hmac: str
    ) -> tuple[str, TransactionRow | None]:
        if request.original.batch_no != request.batch_no:
            elsewhere = self.view.latest_batch(self.terminal_id, request.original.batch_no)
            found = elsewhere is not None and (
                self.view.transaction(elsewhere.batch_id, request.original.stan) is not None
            )
            return ("12" if found else _NOT_FOUND), None
        original = self.view.transaction(batch_id, request.original.stan)
        if original is None or original.status in (
            TransactionStatus.DECLINED,
            TransactionStatus.REVERSED,
        ):
            return _NOT_FOUND, None
        if original.kind != Kind.SALE or original.status == TransactionStatus.VOIDED:
            return "12", None
        if original.refunded_fen:
            return "12", None
        if original.pan_hmac != pan_hmac:
            return "14", None
        if original.amount_fen != request.amount_fen:
            return "64", None
        return "00", original

    def refund(self, request: RefundRequest) -> Decision:
        admitted = self._admit(request)
        if isinstance(admitted, Decision):
            return admitted
        return self._on_original(
            request,
            admitted,
            lambda: self._refund_check(request, admitted.pan_hmac),
            lambda original: SetRefundedFen(
                original.transaction_id, original.refunded_fen + request.amount_fen
            ),
        )

    def _refund_check(
        self, request: RefundRequest, pan_hmac: str
    ) -> tuple[str, TransactionRow | None]:
        batch = self.view.latest_batch(self.terminal_id, request.original.batch_no)
        original = (
            None if batch is None else self.view.transaction(batch.batch_id, request.original.stan)
        )
        if original is None or original.status in (
            TransactionStatus.DECLINED,
            TransactionStatus.REVERSED,
        ):
            return _NOT_FOUND, None
        if original.kind != Kind.SALE or original.status == TransactionStatus.VOIDED:
            return "12", None
        if original.pan_hmac != pan_hmac:
            return "14", None
        if (
            request.amount_fen <= 0
            or original.refunded_fen + request.amount_fen > original.amount_fen
        ):
            return "13", None
        return "00", original

    # --- reversal ------------------------------------------------------------------------------

    def reversal(self, request: ReversalRequest) -> Decision:
        kind = request.original_kind.value
        batch = self.view.latest_batch(self.terminal_id, request.batch_no)
        # A repeat is the same terminal, batch, STAN and amount (DESIGN.md's duplicate rule):
        # a reversal with another amount under that STAN — a terminal's corrected one after
        # a mismatch — is not a repeat of it and is decided on its own.
        done = self.view.reversal(
            self.terminal_id, request.batch_no, request.stan, kind, request.amount_fen
        )
        if done is not None and done.batch_id == (None if batch is None else batch.batch_id):
            return self.answer(request, done.response_code)  # idempotent: the same answer
        original = None if batch is None else self.view.transaction(batch.batch_id, request.stan)
        outcome, transaction_id = self._reverse(request, batch, original)
        self.effects.append(
            InsertReversal(
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
        )
        return self.answer(request, "00")

    def _reverse(
        self, request: ReversalRequest, batch: BatchRow | None, original: TransactionRow | None
    ) -> tuple[str, int | None]:
        """Apply the reversal if it may be; return (outcome, transaction id)."""
        if original is None:
            return "unknown-original", None
        assert batch is not None
        if original.status == TransactionStatus.DECLINED:
            return "original-declined", original.transaction_id
        if original.status == TransactionStatus.REVERSED:
            return "already-reversed", original.transaction_id
        counted = original.status in (TransactionStatus.APPROVED, TransactionStatus.VOIDED)
        if batch.state == BatchState.CLOSED:
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
        if original.kind != request.original_kind:
            mismatch = f"names a {request.original_kind.value} but the STAN is a {original.kind}"
        elif original.amount_fen != request.amount_fen:
            mismatch = (
                f"is for {format_fen(request.amount_fen)}, the {original.kind} for "
                f"{format_fen(original.amount_fen)}"
            )
        elif original.status == TransactionStatus.VOIDED:
            mismatch = "reverses a sale that was voided (reverse the void instead)"
        elif original.refunded_fen > 0:
            # A refund is not reversible (DESIGN.md): taking the sale back under it would
            # credit the card for a sale it no longer paid for.
            mismatch = (
                f"reverses a sale of which {format_fen(original.refunded_fen)} was refunded "
                "(a refund stands: the back office must return the rest)"
            )
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
        self.move(batch.batch_id, batch.state, BatchEvent.REVERSE)
        self.effects.append(
            set_status(original.transaction_id, original.status, HostTxnEvent.REVERSE)
        )
        sale_id = original.original_transaction_id
        if original.kind in (Kind.VOID, Kind.REFUND) and sale_id is not None:
            sale = self.view.transaction_by_id(sale_id)
            assert sale is not None
            if original.kind == Kind.VOID:
                # The sale of a void that stood is VOIDED (a void is approved only over an
                # approved sale, which it voids): reversing the void makes it stand again.
                # The table checks the sale's real status; any other is IllegalTransition.
                self.effects.append(
                    set_status(sale.transaction_id, sale.status, HostTxnEvent.UNVOID)
                )
            else:
                self.effects.append(
                    SetRefundedFen(sale.transaction_id, sale.refunded_fen - original.amount_fen)
                )
        return "applied", original.transaction_id

    # --- settlement and upload --------------------------------------------------------------

    def _named_batch(self, request: Request) -> tuple[BatchRow, BatchRow | None]:
        current = self.current()
        if request.batch_no == current.batch_no:
            return current, current
        named = self.view.latest_batch(self.terminal_id, request.batch_no)
        if named is not None and named.state != BatchState.CLOSED:
            named = None
        return current, named

    def _batch_77(self, request: Request, current: BatchRow) -> Decision:
        behind = is_behind(request.batch_no, current.batch_no)
        reason = BatchReason.BEHIND if behind else BatchReason.AHEAD
        detail = batch_detail(self.view, self.terminal, reason)
        return self.done(
            answer(request, "77", now=self.now, detail=detail), ProcessingRequirement.SIGN_ON
        )

    def settlement(self, request: SettlementRequest) -> Decision:
        current, batch = self._named_batch(request)
        if batch is None:
            return self._batch_77(request, current)
        refused = check_currency(request.currency)
        if refused is not None:
            return self.answer(request, refused.response_code)
        state = batch.state
        if state == BatchState.OPEN:
            counted = self.view.batch_tally(batch.batch_id)
            # A batch over field 48's capacity (from before the capacity rule; or the
            # terminal marks a half with code 3) is never balanced: batch upload carries
            # its records one by one, and the upload end closes it.
            over = not counted.fits() or _over_capacity(request.totals)
            totals = counted.capped_totals().with_reconciliation(Reconciliation.REQUEST)
            if not over and totals.same_amounts(request.totals):
                answered, result = totals.with_reconciliation(Reconciliation.BALANCED), "balanced"
                self.move(
                    batch.batch_id,
                    state,
                    BatchEvent.SETTLE_BALANCED,
                    close_reason=CloseReason.BALANCED,
                )
                self.effects.append(OpenNextBatch(self.terminal_id, batch.batch_no, self.now))
            else:
                answered = totals.with_reconciliation(Reconciliation.NOT_BALANCED)
                result = "unbalanced"
                self.move(batch.batch_id, state, BatchEvent.SETTLE_UNBALANCED)
            self.effects.append(
                RecordSettlementTotals(
                    batch.batch_id, encode_totals(request.totals), encode_totals(answered)
                )
            )
        elif batch.settle_response_code is not None:
            self.move(batch.batch_id, state, BatchEvent.SETTLE_AGAIN)
            assert batch.host_totals is not None
            answered, result = decode_totals(batch.host_totals), "repeated"
            if (
                state == BatchState.CLOSED
                and batch.terminal_totals is not None
                and not decode_totals(batch.terminal_totals).same_amounts(request.totals)
            ):
                answered, result = self._settled_again(batch, request)
        else:
            answered, result = self._settled_after_advance(batch, request)
        self.effects.append(
            AddSettlement(
                batch_id=batch.batch_id,
                terminal_id=self.terminal_id,
                batch_no=batch.batch_no,
                stan=request.stan,
                terminal_totals=encode_totals(request.totals),
                host_totals=encode_totals(answered),
                response_code="00",
                outcome=result,
                created_at=self.now,
            )
        )
        return self.answer(request, "00", totals=answered)

    def _settled_after_advance(
        self, batch: BatchRow, request: SettlementRequest
    ) -> tuple[SettlementTotals, str]:
        """A 0500 for a batch the back office closed (advance_batch) and nobody settled:
        compared only."""
        assert batch.host_totals is not None
        host = decode_totals(batch.host_totals)
        over = _over_capacity(host) or _over_capacity(request.totals)
        if not over and host.same_amounts(request.totals):
            answered, result = host.with_reconciliation(Reconciliation.BALANCED), "balanced"
        else:
            answered, result = host.with_reconciliation(Reconciliation.ERROR), "error"
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
        self.effects.append(
            RecordSettlementTotals(
                batch.batch_id, encode_totals(request.totals), encode_totals(answered)
            )
        )
        return answered, result

    def _settled_again(
        self, batch: BatchRow, request: SettlementRequest
    ) -> tuple[SettlementTotals, str]:
        """A 0500 for a closed batch with other totals than the one that closed it: not a
        repeat but another journal (restored from an older backup, or an older copy put
        back by hand) — compared, never answered "balanced" blindly: equal to the host's →
        code 1; different (or a batch over capacity, which cannot be compared) → code 3
        and, once per such totals, a settled-again-differs record for the back office. The
        host's records stand (docs/host.md)."""
        earlier = self.view.earlier_answer(batch.batch_id, encode_totals(request.totals))
        if earlier is not None:
            return decode_totals(earlier), "repeated"
        counted = self.view.batch_tally(batch.batch_id)
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

    def upload(self, request: BatchUploadRequest) -> Decision:
        current, batch = self._named_batch(request)
        if batch is None:
            return self._batch_77(request, current)
        if batch.state == BatchState.CLOSED:
            return self.answer(request, "00")  # after balanced or after the end: no change
        if batch.state == BatchState.OPEN:
            return self.answer(request, "12")  # upload before a not-balanced settlement
        self.move(batch.batch_id, batch.state, BatchEvent.UPLOAD_RECORD)
        seen = self.view.upload_record_stans(batch.batch_id, [r.stan for r in request.records])
        rows: list[UploadRecordRow] = []
        for record in request.records:
            if record.stan in seen:
                continue  # idempotent per STAN: the first record stands
            seen.add(record.stan)
            rows.append(
                UploadRecordRow(
                    stan=record.stan,
                    card_type=record.card_type.value,
                    pan_hmac=self.rules.pan_hmac(record.pan),
                    pan_masked=mask_pan(record.pan),
                    amount_fen=record.amount_fen,
                )
            )
        if rows:
            self.effects.append(InsertUploadRecords(batch.batch_id, tuple(rows), self.now))
        return self.answer(request, "00")

    def upload_end(self, request: BatchUploadEndRequest) -> Decision:
        current, batch = self._named_batch(request)
        if batch is None:
            return self._batch_77(request, current)
        if batch.state == BatchState.CLOSED:
            return self.answer(request, "00", after_balanced=request.after_balanced)
        if batch.state == BatchState.OPEN:
            return self.answer(request, "12", after_balanced=request.after_balanced)
        close = move_batch(
            batch.batch_id,
            batch.state,
            BatchEvent.UPLOAD_END,
            at=self.now,
            close_reason=CloseReason.UPLOADED,
        )
        assert close is not None  # UPLOADING --upload_end--> CLOSED
        self._reconcile(batch, request.total_records)
        counted = self.view.batch_tally(batch.batch_id)
        if not counted.fits():
            self.exception(
                batch,
                None,
                ExceptionKind.BATCH_OVER_CAPACITY,
                over_capacity_cause(batch.batch_no, counted, "batch upload"),
                terminal_amount_fen=None,
                host_amount_fen=None,
            )
        self.effects.append(RecordUploadEnd(batch.batch_id, request.total_records))
        self.effects.append(close)
        self.effects.append(OpenNextBatch(self.terminal_id, batch.batch_no, self.now))
        return self.answer(request, "00", after_balanced=request.after_balanced)

    def _reconcile(self, batch: BatchRow, total_records: int) -> None:
        """Every difference between upload and host becomes an exception with its cause."""
        host = {row.stan: row for row in self.view.counted_transactions(batch.batch_id)}
        uploaded = {row.stan: row for row in self.view.upload_records(batch.batch_id)}
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
                    f"{row.kind} STAN {stan:06d}: terminal uploaded "
                    f"{format_fen(record.amount_fen)}, host approved {format_fen(row.amount_fen)}",
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
            known = self.view.transaction(batch.batch_id, stan)
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


# --- the back office ------------------------------------------------------------------------


def advance(
    terminal: TerminalRow, batch: BatchRow, counted: BatchTally, reason: str, *, now: datetime
) -> tuple[Effect, ...]:
    """The back office closes the terminal's current ``batch`` (OPEN or UPLOADING) now.

    The batch closes with close_reason ``advanced`` and its host totals recorded
    (``counted``, capped to what field 48 can carry); nothing in it is lost or
    changed. If it holds approved transactions that no settlement covered, a
    ``batch-advanced`` exception records them for the back office (the terminal
    learns of it by a 77 with R=CLOSED; a later 0500 for the batch is compared
    with those totals, see :func:`decide`). Then the next batch opens.
    """
    close = move_batch(
        batch.batch_id, batch.state, BatchEvent.ADVANCE, at=now, close_reason=CloseReason.ADVANCED
    )
    assert close is not None  # OPEN or UPLOADING --advance--> CLOSED
    totals = counted.capped_totals()
    effects: list[Effect] = []

    def exception(kind: str, cause: str, host_amount_fen: int | None) -> AddException:
        return AddException(
            terminal_id=terminal.terminal_id,
            merchant_id=terminal.merchant_id,
            batch_id=batch.batch_id,
            batch_no=batch.batch_no,
            stan=None,
            kind=kind,
            cause=cause,
            terminal_amount_fen=None,
            host_amount_fen=host_amount_fen,
            at=now,
        )

    if not counted.fits():
        effects.append(
            exception(
                ExceptionKind.BATCH_OVER_CAPACITY,
                over_capacity_cause(batch.batch_no, counted, "the back office"),
                None,
            )
        )
    effects.append(close)
    effects.append(RecordHostTotals(batch.batch_id, encode_totals(totals)))
    entries = (
        totals.domestic.debit_count
        + totals.foreign.debit_count
        + (totals.domestic.credit_count + totals.foreign.credit_count)
    )
    if entries:
        effects.append(
            exception(
                ExceptionKind.BATCH_ADVANCED,
                f"back office advanced the batch ({reason}) while it held unsettled "
                "approvals: host totals "
                + (describe_totals(totals) if counted.fits() else counted.describe()),
                counted.net_fen,  # exact, even when the recorded totals are capped
            )
        )
    effects.append(OpenNextBatch(terminal.terminal_id, batch.batch_no, now))
    return tuple(effects)
