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

Processing is a pipeline: *read ahead* (:func:`_read_ahead`: the group's
terminals, duplicates and overtaking reversals in a few statements) → per
request (:meth:`HostCore._process`) the terminal's row and the MAK its field
64 verifies under (:func:`_proven_mak`: the crypto stays here) → *decide*
(:func:`posbatch.batch.host_rules.decide`, pure: admission — 97, 03, 58,
sign-on, the MAC's 77 / A0, the keys of a sign-on brought into force — then
the batch rules, returning the answer and typed effects) → *apply the
effects* (:meth:`~posbatch.host.unit_of_work.StoreTx.apply`) → after the
commit, *answer* (:meth:`HostCore._encode`). A request a fault script forces
is answered its code without being decided (a forced 77 is recorded for the
back office like any other).

08xx carry no MAC, so anyone who knows a terminal's ids can send them: a
sign-on hands out keys but takes none away, a sign-off takes nothing away
either (see :func:`~posbatch.batch.host_rules.decide`; docs/host.md,
"Sign-on and sign-off from someone else").

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
import enum
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, NamedTuple, TypeAlias

import iso8583

from posbatch.batch.codes import BATCH_NUMBER_DIFFERS, MAC_ERROR
from posbatch.batch.host_effects import batch_error
from posbatch.batch.host_records import TerminalRow
from posbatch.batch.host_rules import (
    Rules,
    Snapshot,
    answer,
    batch_detail,
    decide,
)
from posbatch.batch.model import Kind
from posbatch.batch.totals import TOTAL_COUNT_MAX
from posbatch.errors import (
    DecodeError,
    EncodeError,
    FrameError,
    HostError,
    MacError,
    PosbatchError,
    StoreBusyError,
)
from posbatch.host._salvage import salvage_read
from posbatch.host.faults import FaultAction, FaultRule, FaultScript
from posbatch.host.issuer import Issuer, IssuerRules
from posbatch.host.store import HostStore, StoreTx
from posbatch.wire import (
    LENGTH_BYTES,
    MAC_BYTES,
    MAK_BYTES,
    PIK_BYTES,
    SPEC,
    BatchUploadEndRequest,
    BatchUploadRequest,
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
    SignOffRequest,
    SignOnRequest,
    VoidRequest,
    WorkingKeys,
    check_mac,
    compute_mac,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    has_mac,
)

__all__ = ["GROUP_REQUESTS_MAX", "HostCore", "HostReply", "OpenGroup", "RequestLog"]

# The most requests one group commit may hold.
GROUP_REQUESTS_MAX: Final = 512
RRN_DIGITS: Final = 12
AUTH_CODE_DIGITS: Final = 6

_REQUEST_MTIS: Final = frozenset({"0800", "0820", "0200", "0220", "0400", "0500", "0320"})


class RequestLog(NamedTuple):
    """What the one log line of a request says (never a PAN).

    This and :class:`HostReply` are NamedTuples (immutable, like a frozen dataclass, and
    a few µs cheaper to make: one of each for every request).
    """

    terminal_id: str | None = None
    batch_no: int | None = None
    stan: int | None = None
    mti: str | None = None
    kind: str | None = None
    response_code: str | None = None
    fault: str | None = None
    error: str | None = None


class HostReply(NamedTuple):
    """What to do for one request frame: send ``frames`` (none = dropped) after ``delay_ms``,
    then close the connection if ``close``."""

    frames: tuple[bytes, ...] = ()
    close: bool = False
    delay_ms: int = 0
    log: RequestLog = RequestLog()


@dataclass(slots=True)
class _Work:
    """One readable request waiting for the database."""

    frame: Frame
    request: Request
    fault: FaultRule | None


@dataclass(slots=True)
class _Outcome:
    """One request's answer as decided (made fresh per request; only _process sets ``mak``)."""

    response: Response
    requirement: ProcessingRequirement = ProcessingRequirement.NONE
    mak: bytes | None = None  # MAC the answer with this key: set only from _answer_mak
    proof: bytes | None = None  # the MAK the request's own MAC verified under


def _response_mti(mti: str) -> str:
    return mti[:2] + str(int(mti[2]) + 1) + mti[3]


_Transaction: TypeAlias = contextlib.AbstractContextManager[StoreTx]


class _Busy(enum.Enum):
    BUSY = "busy"


_BUSY: Final = _Busy.BUSY  # _begin: the write lock was held elsewhere, nothing done


def _commit(transaction: _Transaction) -> bool:
    """Write what the unit of work deferred and commit; False when that failed (rolled back)."""
    try:
        transaction.__exit__(None, None, None)
    except Exception:
        return False
    return True


class OpenGroup:
    """A group processed in an open transaction (:meth:`HostCore.open_group`)."""

    def __init__(
        self,
        core: HostCore,
        replies: list[HostReply | None],
        places: list[int],
        group: list[_Work],
    ) -> None:
        self._core = core
        self._replies = replies
        self._places = places  # where each request of ``group`` stands among the frames
        self._group = group
        self._begun: tuple[_Transaction, list[_Outcome]] | None = None
        self._answered: list[HostReply] | None = None  # set by commit when it had to isolate
        self._outcomes: list[_Outcome] = []
        # Set by begin(wait=False) when another process held SQLite's write lock.
        self.waiting = False

    def begin(self, *, wait: bool = True) -> None:
        """Process the group in one open transaction (none when no request is left).

        Without ``wait``, when another process holds SQLite's write lock nothing is
        done and :attr:`waiting` is set: call again (the server waits on its event
        loop meanwhile, reading).
        """
        if not self._group:
            return
        begun = self._core._begin(self._group, wait=wait)
        self.waiting = isinstance(begun, _Busy)
        self._begun = None if isinstance(begun, _Busy) else begun

    def commit(self) -> None:
        """The writes and COMMIT (or, if the group failed, each request alone): any thread."""
        begun, self._begun = self._begun, None
        if not self._group:
            return
        if begun is None or not _commit(begun[0]):
            self._answered = self._core._isolate(self._group)
        else:
            self._outcomes = begun[1]

    def replies(self) -> list[HostReply]:
        """Every frame's reply, in frame order; only after :meth:`commit`."""
        answered = self._answered
        if answered is None and self._group:
            answered = self._core._answers(self._group, self._outcomes)
        for place, reply in zip(self._places, answered or [], strict=True):
            self._replies[place] = reply
        return [reply if reply is not None else HostReply() for reply in self._replies]


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
        self.store = store
        self._clock = clock
        self._random_bytes = random_bytes
        self._faults = faults
        self._rules = Rules(
            issuer=issuer if issuer is not None else IssuerRules(),
            batch_count_max=batch_count_max,
            pan_hmac=store.pan_hmac,
            rrn=self.rrn,
            auth_code=self.auth_code,
            working_keys=self._working_keys,
        )

    @property
    def batch_count_max(self) -> int:
        return self._rules.batch_count_max

    @property
    def _issuer(self) -> Issuer:
        return self._rules.issuer

    @_issuer.setter
    def _issuer(self, issuer: Issuer) -> None:
        self._rules = replace(self._rules, issuer=issuer)

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
            length = int.from_bytes(raw[:LENGTH_BYTES], "big") if len(raw) >= 2 else -1
            if length != len(raw) - LENGTH_BYTES:
                parsed.append(HostReply(close=True, log=RequestLog(error="bad length prefix")))
                continue
            try:
                parsed.append(decode_frame(raw[LENGTH_BYTES:]))
            except FrameError as exc:
                parsed.append(HostReply(log=RequestLog(error=str(exc))))
        return self._handle_mixed(parsed)

    def handle_decoded_frames(self, frames: Sequence[Frame]) -> list[HostReply]:
        """Like :meth:`handle_frames` for frames a FrameReader already split and read."""
        return self._handle_mixed(list(frames))

    def open_group(self, frames: Sequence[Frame], *, wait: bool = True) -> OpenGroup:
        """:meth:`handle_decoded_frames` in three steps, for a server's event loop.

        This call does the Python work of the whole group — read, admit, decide,
        apply — in ONE open transaction; :meth:`OpenGroup.commit` then writes what
        was deferred and commits (the part that waits on the disk or the database:
        the server runs it in a worker thread when a database server does the work);
        :meth:`OpenGroup.replies` encodes the answers. At most
        :data:`GROUP_REQUESTS_MAX` frames. Nothing is answered before the commit, and
        a group that fails anywhere is done again one request at a time inside
        ``commit`` (the failing one answered 96), exactly as ``handle_decoded_frames``.
        ``wait``: as in :meth:`OpenGroup.begin`. A group with no request left (every
        frame answered already) begins no transaction.
        """
        if len(frames) > GROUP_REQUESTS_MAX:
            raise HostError(f"a group holds at most {GROUP_REQUESTS_MAX} requests")
        replies, work = self._read_all(frames)
        opened = OpenGroup(self, replies, [index for index, _ in work], [w for _, w in work])
        opened.begin(wait=wait)
        return opened

    def _read_all(
        self, items: Sequence[Frame | HostReply]
    ) -> tuple[list[HostReply | None], list[tuple[int, _Work]]]:
        """Each item's reply when it has one already (a framing error, an unreadable body),
        and the readable requests with their places among the items."""
        replies: list[HostReply | None] = [None] * len(items)
        work: list[tuple[int, _Work]] = []
        for index, item in enumerate(items):
            early = item if isinstance(item, HostReply) else self._read(item)
            if isinstance(early, HostReply):
                replies[index] = early
            else:
                work.append((index, early))
        return replies, work

    def _handle_mixed(self, items: list[Frame | HostReply]) -> list[HostReply]:
        replies, work = self._read_all(items)
        for start in range(0, len(work), GROUP_REQUESTS_MAX):
            chunk = work[start : start + GROUP_REQUESTS_MAX]
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
        begun = self._begin(group)
        if begun is None or isinstance(begun, _Busy) or not _commit(begun[0]):
            return self._isolate(group)
        return self._answers(group, begun[1])

    def _begin(
        self, group: list[_Work], *, wait: bool = True
    ) -> tuple[_Transaction, list[_Outcome]] | _Busy | None:
        """The group processed in one transaction left open (None: it failed, rolled back;
        _BUSY: not ``wait`` and another process held SQLite's write lock, nothing done)."""
        # Lock order: by terminal (stable, so one terminal's requests keep their order).
        order = sorted(range(len(group)), key=lambda i: group[i].request.terminal_id)
        outcomes: list[_Outcome | None] = [None] * len(group)
        transaction = self.store.transaction(wait=wait)
        try:
            tx = transaction.__enter__()
        except StoreBusyError:
            return _BUSY
        except Exception:
            return None
        try:
            _read_ahead(tx, group)
            for index in order:
                outcomes[index] = self._process(tx, group[index])
        except Exception:
            with contextlib.suppress(Exception):  # roll back; the group is done again alone
                transaction.__exit__(*sys.exc_info())
            return None
        return transaction, [outcome for outcome in outcomes if outcome is not None]

    def _isolate(self, group: list[_Work]) -> list[HostReply]:
        """Each request of a failed group alone; the one that still fails is answered 96."""
        if len(group) == 1:
            return [self._failed(group[0])]
        return [reply for work in group for reply in self._process_group([work])]

    def _answers(self, group: list[_Work], outcomes: list[_Outcome]) -> list[HostReply]:
        return [
            self._encode(work.frame, work.request, outcome, work.fault)
            for work, outcome in zip(group, outcomes, strict=True)
        ]

    def _failed(self, work: _Work) -> HostReply:
        try:
            response = answer(work.request, "96", now=self._clock())
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
        """The answer to one request: a forced fault's code, or :func:`decide`'s answer (its
        effects applied in this unit of work); MACed by :func:`_answer_mak` (the one place
        that decides)."""
        request = work.request
        terminal = tx.terminal(request.terminal_id, for_update=True)
        now = self._clock()
        admin = isinstance(request, SignOnRequest | SignOffRequest | EchoRequest)
        proof = None if terminal is None or admin else _proven_mak(terminal, work.frame.body)
        if work.fault is not None and work.fault.action == FaultAction.FORCE:
            assert work.fault.response_code is not None
            code = work.fault.response_code  # not processed
            # Read like the host's own: a 77 or an A0 asks for a sign-on (header digit 6),
            # and a 77 says the host's batch state in 63 (no reason: nothing was decided).
            sign_on = code in (BATCH_NUMBER_DIFFERS, MAC_ERROR)
            requirement = ProcessingRequirement.SIGN_ON if sign_on else ProcessingRequirement.NONE
            if code == BATCH_NUMBER_DIFFERS and terminal is not None:
                detail = batch_detail(tx, terminal, None)  # no R=: its record says FORCED
                response = answer(request, code, now=now, detail=detail)
                tx.apply((batch_error(terminal, request, detail, at=now),))
            else:
                response = answer(request, code, now=now)
            outcome = _Outcome(response, requirement, proof=proof)
        else:
            decision = decide(request, Snapshot(terminal, tx, now, proof), self._rules)
            tx.apply(decision.effects)
            outcome = _Outcome(decision.response, decision.requirement, proof=proof)
        outcome.mak = _answer_mak(outcome.response.response_code, terminal, outcome.proof)
        return outcome

    def _working_keys(self) -> WorkingKeys:
        """A sign-on's new PIK and MAK (drawn PIK first, as ever: a seeded run replays)."""
        return WorkingKeys(pik=self._random_bytes(PIK_BYTES), mak=self._random_bytes(MAK_BYTES))

    def rrn(self) -> str:
        return f"{int.from_bytes(self._random_bytes(5), 'big') % 10**RRN_DIGITS:0{RRN_DIGITS}d}"

    def auth_code(self) -> str:
        value = int.from_bytes(self._random_bytes(4), "big") % 10**AUTH_CODE_DIGITS
        return f"{value:0{AUTH_CODE_DIGITS}d}"


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
    if response_code == MAC_ERROR or terminal is None:
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


def _kind(request: Request) -> Kind:
    return request.KIND


def _format_error(
    frame: Frame, error: DecodeError, terminal_now: Callable[[str], TerminalRow | None]
) -> HostReply:
    """Answer 30 when the terminal and merchant ids can still be read; else drop.

    They are read by :func:`~posbatch.host._salvage.salvage_read`, which walks
    bodies the profile refuses (fields outside it, a secondary bitmap, fields
    longer than it allows). The answer carries only fields of the profile, and
    only well-formed ones: 41, 42 and whichever of 3, 4, 11, 49 and 60 are. The 30
    is MACed under the MAK the host holds for that terminal (``terminal_now``
    reads it), by the rule of :func:`_answer_mak`.
    """
    log = RequestLog(error=str(error))
    mti = frame.body[:2].hex()
    fields = salvage_read(frame.body) if mti in _REQUEST_MTIS else None
    if fields is None:  # unreadable bytes: nobody to answer
        return HostReply(log=log)
    terminal_id, merchant_id = fields.get("41", ""), fields.get("42", "")
    if not (terminal_id and merchant_id and terminal_id.isascii() and merchant_id.isascii()):
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
    currency, field60 = fields.get("49", ""), fields.get("60", "")
    if currency.isascii() and currency.isalnum():
        answer["49"] = currency
    if field60.isascii() and field60.isdigit() and len(field60) <= SPEC["60"]["max_len"]:
        answer["60"] = field60
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
