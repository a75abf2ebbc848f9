"""decide(): the host's batch rules without a database — tables over an in-memory view."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.batch.counters import BATCH_NO_MAX
from posbatch.batch.host_batch import TRANSITIONS, BatchEvent
from posbatch.batch.host_effects import (
    AddException,
    AddSettlement,
    BringKeysIntoForce,
    InsertReversal,
    InsertTransaction,
    InsertUploadRecords,
    MoveBatch,
    NoteStan,
    OpenFirstBatch,
    OpenNextBatch,
    RecordBatchError,
    RecordHostTotals,
    RecordSettlementTotals,
    RecordUploadEnd,
    SetRefundedFen,
    SetTransactionStatus,
    SignOff,
    SignOn,
    SignOnAgain,
    move_batch,
)
from posbatch.batch.host_records import (
    BatchRow,
    CloseReason,
    ExceptionKind,
    ReversalRow,
    TerminalRow,
    TransactionRow,
    TransactionStatus,
    UploadRecordRow,
)
from posbatch.batch.host_rules import (
    Rules,
    Snapshot,
    advance,
    decide,
)
from posbatch.batch.model import (
    BatchReason,
    BatchState,
    CardTotals,
    CardType,
    Kind,
    SettlementTotals,
)
from posbatch.batch.totals import BatchTally, tally_sums
from posbatch.errors import IllegalTransition
from posbatch.host.issuer import (
    TEST_PAN_APPROVED,
    TEST_PAN_INSUFFICIENT_FUNDS,
    IssuerRules,
)
from posbatch.wire import (
    BatchUploadEndRequest,
    BatchUploadRequest,
    EchoRequest,
    OriginalTransaction,
    ProcessingRequirement,
    RefundRequest,
    Request,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SignOffRequest,
    SignOnRequest,
    UploadRecord,
    VoidRequest,
    WorkingKeys,
    decode_batch_detail,
    encode_totals,
    unwrap_working_keys,
)
from testbed import MERCHANT_ID, TERMINAL_ID

NOW = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
CURRENT = 5  # the current batch's number
CURRENT_ID = 50  # its batch_id
CLOSED_ID = 40  # batch 4, closed balanced
SALE_STAN = 7  # an approved sale of the current batch, 1,000 fen
SALE_ID = 700
OTHER_PAN = "6222020000000000008"  # Luhn-valid, another card


def _hmac(pan: str) -> str:
    return "h" + pan


@dataclass
class View:
    """An in-memory HostView: batches, transactions, reversals, upload records."""

    batches: list[BatchRow]
    transactions: list[TransactionRow] = field(default_factory=list)
    reversals_done: dict[tuple[str, int, int, str, int], ReversalRow] = field(default_factory=dict)
    reversals_overtaken: dict[tuple[str, int, int, str], list[tuple[int | None, int]]] = field(
        default_factory=dict
    )
    settled: dict[tuple[int, str], str] = field(default_factory=dict)
    uploads: dict[int, list[UploadRecordRow]] = field(default_factory=dict)

    def current_batch(self, terminal: TerminalRow) -> BatchRow | None:
        return next((b for b in self.batches if b.batch_id == terminal.current_batch_id), None)

    def latest_batch(self, terminal_id: str, batch_no: int) -> BatchRow | None:
        named = [b for b in self.batches if b.batch_no == batch_no]
        return max(named, key=lambda b: b.batch_id) if named else None

    def last_closed_batch(self, terminal_id: str) -> BatchRow | None:
        closed = [b for b in self.batches if b.state == BatchState.CLOSED]
        return max(closed, key=lambda b: b.batch_id) if closed else None

    def transaction(self, batch_id: int, stan: int) -> TransactionRow | None:
        return next(
            (t for t in self.transactions if (t.batch_id, t.stan) == (batch_id, stan)), None
        )

    def transaction_by_id(self, transaction_id: int) -> TransactionRow | None:
        return next((t for t in self.transactions if t.transaction_id == transaction_id), None)

    def reversals_seen(
        self, terminal_id: str, batch_no: int, stan: int, original_kind: str
    ) -> list[tuple[int | None, int]]:
        return self.reversals_overtaken.get((terminal_id, batch_no, stan, original_kind), [])

    def reversal(
        self, terminal_id: str, batch_no: int, stan: int, original_kind: str, amount_fen: int
    ) -> ReversalRow | None:
        return self.reversals_done.get((terminal_id, batch_no, stan, original_kind, amount_fen))

    def counted_transactions(self, batch_id: int) -> Sequence[TransactionRow]:
        counted = (TransactionStatus.APPROVED, TransactionStatus.VOIDED)
        return sorted(
            (t for t in self.transactions if t.batch_id == batch_id and t.status in counted),
            key=lambda t: t.stan,
        )

    def batch_bound(self, batch_id: int) -> tuple[int, int]:
        rows = self.counted_transactions(batch_id)
        return len(rows), sum(t.amount_fen for t in rows)

    def batch_tally(self, batch_id: int) -> BatchTally:
        return tally_sums(
            (Kind(t.kind), CardType(t.card_type), 1, t.amount_fen)
            for t in self.counted_transactions(batch_id)
        )

    def earlier_answer(self, batch_id: int, terminal_totals: str) -> str | None:
        return self.settled.get((batch_id, terminal_totals))

    def upload_record_stans(self, batch_id: int, stans: Sequence[int]) -> set[int]:
        return {r.stan for r in self.uploads.get(batch_id, []) if r.stan in stans}

    def upload_records(self, batch_id: int) -> Sequence[UploadRecordRow]:
        return sorted(self.uploads.get(batch_id, []), key=lambda r: r.stan)

    def last_stan_in_batch(self, batch_id: int) -> int | None:
        rows = [t for t in self.transactions if t.batch_id == batch_id]
        return max(rows, key=lambda t: t.transaction_id).stan if rows else None


def _batch(batch_id: int, batch_no: int, state: BatchState, **values: str | int | None) -> BatchRow:
    closed = state == BatchState.CLOSED
    totals = encode_totals(_totals()) if closed else None  # a closed batch was settled balanced
    row = BatchRow(
        batch_id, TERMINAL_ID, batch_no, state, NOW, NOW if closed else None,
        CloseReason.BALANCED if closed else None, totals, totals, "00" if closed else None, None,
    )  # fmt: skip
    return dataclasses.replace(row, **values)  # type: ignore[arg-type]


def _sale_row(**values: Any) -> TransactionRow:
    row = TransactionRow(
        SALE_ID, CURRENT_ID, SALE_STAN, Kind.SALE, 1_000, CardType.DOMESTIC.value,
        _hmac(TEST_PAN_APPROVED), "622202******0128", TransactionStatus.APPROVED, "00",
        "000000000001", "000001", "103000", "0301", None, 0, "digest",
    )  # fmt: skip
    return row._replace(**values)


def _world(
    state: BatchState = BatchState.OPEN,
    *,
    current: int = CURRENT,
    transactions: Sequence[TransactionRow] = (),
    **view: object,
) -> tuple[Snapshot, View]:
    batches = [_batch(CLOSED_ID, current - 1 if current > 1 else BATCH_NO_MAX, BatchState.CLOSED)]
    batches.append(_batch(CURRENT_ID, current, state))
    records = View(batches, list(transactions), **view)  # type: ignore[arg-type]
    terminal = TerminalRow(
        TERMINAL_ID, MERCHANT_ID, b"k" * 16, "active", True, b"m" * 8, CURRENT_ID, current,
        state,
    )  # fmt: skip
    return Snapshot(terminal, records, NOW, terminal.mak), records


def _rules(*, batch_count_max: int = 999) -> Rules:
    return Rules(
        issuer=IssuerRules(),
        batch_count_max=batch_count_max,
        pan_hmac=_hmac,
        rrn=lambda: "000000000042",
        auth_code=lambda: "123456",
        working_keys=lambda: WorkingKeys(pik=b"p" * 16, mak=b"n" * 8),
    )


def _sale(amount_fen: int = 1_000, **values: object) -> SaleRequest:
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, 8, CURRENT, amount_fen, TEST_PAN_APPROVED)
    return dataclasses.replace(request, **values)  # type: ignore[arg-type]


def _void(amount_fen: int = 1_000, **values: object) -> VoidRequest:
    request = VoidRequest(
        TERMINAL_ID, MERCHANT_ID, 9, CURRENT, amount_fen, TEST_PAN_APPROVED,
        OriginalTransaction(CURRENT, SALE_STAN),
    )  # fmt: skip
    return dataclasses.replace(request, **values)  # type: ignore[arg-type]


def _refund(amount_fen: int = 400, **values: object) -> RefundRequest:
    request = RefundRequest(
        TERMINAL_ID, MERCHANT_ID, 9, CURRENT, amount_fen, TEST_PAN_APPROVED,
        OriginalTransaction(CURRENT, SALE_STAN),
    )  # fmt: skip
    return dataclasses.replace(request, **values)  # type: ignore[arg-type]


def _reversal(**values: object) -> ReversalRequest:
    request = ReversalRequest(
        TERMINAL_ID, MERCHANT_ID, SALE_STAN, CURRENT, 1_000, TEST_PAN_APPROVED, Kind.SALE
    )
    return dataclasses.replace(request, **values)  # type: ignore[arg-type]


def _totals(debit_fen: int = 1_000, debits: int = 1) -> SettlementTotals:
    return SettlementTotals(CardTotals(debit_fen, debits))


def _settle(totals: SettlementTotals | None = None, **values: object) -> SettlementRequest:
    request = SettlementRequest(TERMINAL_ID, MERCHANT_ID, 10, CURRENT, totals or _totals())
    return dataclasses.replace(request, **values)  # type: ignore[arg-type]


def _upload() -> BatchUploadRequest:
    record = UploadRecord(CardType.DOMESTIC, SALE_STAN, TEST_PAN_APPROVED, 1_000)
    return BatchUploadRequest(TERMINAL_ID, MERCHANT_ID, 11, CURRENT, (record,))


def _upload_end(total_records: int = 1) -> BatchUploadEndRequest:
    return BatchUploadEndRequest(TERMINAL_ID, MERCHANT_ID, 12, CURRENT, total_records)


SALE_IN_BATCH = (_sale_row(),)

# (case, request, batch state, transactions, expected code, expected effect types)
CODES: list[tuple[str, Request, BatchState, Sequence[TransactionRow], str, list[type]]] = [
    ("sign-on", SignOnRequest(TERMINAL_ID, MERCHANT_ID, 1, 1), BatchState.OPEN, (), "00",
     [SignOn]),
    ("sign-off", SignOffRequest(TERMINAL_ID, MERCHANT_ID, 2, 1), BatchState.OPEN, (), "00",
     [SignOff]),
    ("echo", EchoRequest(TERMINAL_ID, MERCHANT_ID, 3, 1), BatchState.OPEN, SALE_IN_BATCH, "00",
     []),
    ("sale approved", _sale(), BatchState.OPEN, (), "00", [InsertTransaction, NoteStan]),
    ("sale of 0 fen", _sale(0), BatchState.OPEN, (), "13", [InsertTransaction, NoteStan]),
    ("sale over the issuer's limit", _sale(5_000_001), BatchState.OPEN, (), "61",
     [InsertTransaction, NoteStan]),
    ("sale, check digit wrong", _sale(pan="6222021234567890127"), BatchState.OPEN, (), "14",
     [InsertTransaction, NoteStan]),
    ("sale, card expired", _sale(expiry="2001"), BatchState.OPEN, (), "54",
     [InsertTransaction, NoteStan]),
    ("sale, insufficient funds", _sale(pan=TEST_PAN_INSUFFICIENT_FUNDS), BatchState.OPEN, (),
     "51", [InsertTransaction, NoteStan]),
    ("sale in dollars", _sale(currency="840"), BatchState.OPEN, (), "40",
     [InsertTransaction, NoteStan]),
    ("sale, currency not digits", _sale(currency="AB1"), BatchState.OPEN, (), "30",
     [InsertTransaction, NoteStan]),
    ("sale repeated", _sale(stan=SALE_STAN), BatchState.OPEN,
     (_sale_row(request_digest="x"),), "94", []),
    ("sale in a batch behind", _sale(batch_no=CURRENT - 2), BatchState.OPEN, (), "77",
     [RecordBatchError]),
    ("sale in a batch ahead", _sale(batch_no=CURRENT + 1), BatchState.OPEN, (), "77",
     [RecordBatchError]),
    ("sale while settling", _sale(), BatchState.UPLOADING, (), "77", [RecordBatchError]),
    ("void approved", _void(), BatchState.OPEN, SALE_IN_BATCH, "00",
     [InsertTransaction, NoteStan, SetTransactionStatus]),
    ("void of nothing", _void(), BatchState.OPEN, (), "25", [InsertTransaction, NoteStan]),
    ("void of another amount", _void(999), BatchState.OPEN, SALE_IN_BATCH, "64",
     [InsertTransaction, NoteStan]),
    ("void with another card", _void(pan=OTHER_PAN), BatchState.OPEN, SALE_IN_BATCH, "14",
     [InsertTransaction, NoteStan]),
    ("void of a sale in another batch", _void(original=OriginalTransaction(CURRENT - 1, 3)),
     BatchState.OPEN, (_sale_row(batch_id=CLOSED_ID, stan=3, transaction_id=3),), "12",
     [InsertTransaction, NoteStan]),
    ("refund approved", _refund(), BatchState.OPEN, SALE_IN_BATCH, "00",
     [InsertTransaction, NoteStan, SetRefundedFen]),
    ("refund of more than the sale", _refund(1_001), BatchState.OPEN, SALE_IN_BATCH, "13",
     [InsertTransaction, NoteStan]),
    ("reversal applied", _reversal(), BatchState.OPEN, SALE_IN_BATCH, "00",
     [SetTransactionStatus, InsertReversal]),
    ("settlement balanced", _settle(), BatchState.OPEN, SALE_IN_BATCH, "00",
     [NoteStan, MoveBatch, OpenNextBatch, RecordSettlementTotals, AddSettlement]),
    ("settlement not balanced", _settle(_totals(999)), BatchState.OPEN, SALE_IN_BATCH, "00",
     [NoteStan, MoveBatch, RecordSettlementTotals, AddSettlement]),
    ("settlement in dollars", _settle(currency="840"), BatchState.OPEN, SALE_IN_BATCH, "40",
     [NoteStan]),
    ("settlement of a batch ahead", _settle(batch_no=CURRENT + 1), BatchState.OPEN, (), "77",
     [NoteStan, RecordBatchError]),
    ("upload before settlement", _upload(), BatchState.OPEN, SALE_IN_BATCH, "12", []),
    ("upload", _upload(), BatchState.UPLOADING, SALE_IN_BATCH, "00", [InsertUploadRecords]),
    ("upload end before settlement", _upload_end(), BatchState.OPEN, SALE_IN_BATCH, "12", []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "state", "transactions", "code", "effects"),
    [pytest.param(*case[1:], id=case[0]) for case in CODES],
)
def test_decide_answers_each_code(
    request_: Request,
    state: BatchState,
    transactions: Sequence[TransactionRow],
    code: str,
    effects: list[type],
) -> None:
    """Each response code decide() can give, with the writes it asks for, in order."""
    snapshot, _ = _world(state, transactions=transactions)
    decision = decide(request_, snapshot, _rules())
    assert (code, effects) == (decision.code, [type(effect) for effect in decision.effects])


PENDING = WorkingKeys(pik=b"q" * 16, mak=b"o" * 8)

# (case, how the terminal's row differs, the MAK the request verified under, request,
#  expected code, expected effect types): admission, before the batch rules
ADMISSION: list[tuple[str, dict[str, object] | None, bytes | None, Request, str, list[type]]] = [
    ("unknown terminal", None, None, _sale(), "97", []),
    ("unknown terminal signs on", None, None, SignOnRequest(TERMINAL_ID, MERCHANT_ID, 1, 1),
     "97", []),
    ("another merchant's id", {}, b"m" * 8, _sale(merchant_id="999999999999999"), "03", []),
    ("suspended", {"status": "suspended"}, b"m" * 8, _sale(), "58", []),
    ("suspended signs on", {"status": "suspended"}, None,
     SignOnRequest(TERMINAL_ID, MERCHANT_ID, 1, 1), "58", []),
    ("MAC does not verify, signed on", {}, None, _sale(), "A0", []),
    ("MAC does not verify, signed off", {"signed_on": False}, None, _sale(), "77",
     [RecordBatchError]),
    ("no keys at all", {"mak": None}, None, _sale(), "77", [RecordBatchError]),
    ("first request under a sign-on's keys", {"pending_keys": PENDING}, PENDING.mak, _sale(),
     "00", [BringKeysIntoForce, InsertTransaction, NoteStan]),
    ("signed off, MACs under its keys", {"signed_on": False}, b"m" * 8, _sale(), "00",
     [SignOnAgain, InsertTransaction, NoteStan]),
    ("signed off, MACs under its keys, batch behind", {"signed_on": False}, b"m" * 8,
     _sale(batch_no=CURRENT - 2), "77", [SignOnAgain, RecordBatchError]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("row", "proof", "request_", "code", "effects"),
    [pytest.param(*case[1:], id=case[0]) for case in ADMISSION],
)
def test_decide_admits_before_the_batch_rules(
    row: dict[str, object] | None,
    proof: bytes | None,
    request_: Request,
    code: str,
    effects: list[type],
) -> None:
    """97, 03, 58, then the MAC (77 not signed on, A0 signed on); a sign-on's keys come into
    force at their first use, a signed-off terminal that MACs under its keys is signed on."""
    snapshot, _ = _world()
    assert snapshot.terminal is not None
    terminal = None if row is None else snapshot.terminal._replace(**row)  # type: ignore[arg-type]
    admitted = dataclasses.replace(snapshot, terminal=terminal, proof=proof)
    decision = decide(request_, admitted, _rules())
    assert (code, effects) == (decision.code, [type(effect) for effect in decision.effects])
    asks_for_a_sign_on = code in {"77", "A0"}
    assert (decision.requirement == ProcessingRequirement.SIGN_ON) == asks_for_a_sign_on


def test_a_77_is_recorded_with_the_reason_its_field_63_gives() -> None:
    """The back office's record of a 77: the host's batch number and the reason (R=)."""
    snapshot, _ = _world()
    decision = decide(_sale(batch_no=CURRENT - 2), snapshot, _rules())
    record = decision.effects[-1]
    assert isinstance(record, RecordBatchError)
    assert (record.batch_no, record.host_batch_no, record.reason, record.kind, record.at) == (
        CURRENT - 2, CURRENT, "BEHIND", "sale", NOW,
    )  # fmt: skip
    assert (record.terminal_id, record.merchant_id, record.stan) == (TERMINAL_ID, MERCHANT_ID, 8)


def test_a_sale_into_a_full_batch_is_answered_95_and_says_which_counter() -> None:
    """The batch holds as many debits as the acquirer allows: 95, 63 names the counter."""
    snapshot, _ = _world(transactions=SALE_IN_BATCH)
    decision = decide(_sale(), snapshot, _rules(batch_count_max=1))
    assert decision.code == "95"
    assert decision.detail is not None and ";F=" in decision.detail
    assert [type(e) for e in decision.effects] == [InsertTransaction, NoteStan]


def test_a_repeated_sale_gets_its_original_answer_and_writes_nothing() -> None:
    """Same STAN, same content: the stored answer again (RRN and all), no new row."""
    snapshot, _ = _world(transactions=(_sale_row(request_digest="d"),))
    request = _sale(stan=SALE_STAN)
    rules = dataclasses.replace(_rules(), pan_hmac=_hmac)
    first = decide(request, snapshot, rules)
    assert first.code == "94"  # the stored digest is not this request's
    digest = _digest_of(request)
    snapshot, _ = _world(transactions=(_sale_row(request_digest=digest),))
    again = decide(request, snapshot, rules)
    assert (again.code, again.effects) == ("00", ())
    assert again.response.rrn == "000000000001"  # type: ignore[union-attr]


def _digest_of(request: SaleRequest) -> str:
    """The digest decide() gives a sale (read off the row it would insert)."""
    snapshot, _ = _world()
    insert = decide(request, snapshot, _rules()).effects[0]
    assert isinstance(insert, InsertTransaction)
    return insert.request_digest


@pytest.mark.parametrize(
    ("current", "batch_no", "reason"),
    [
        (CURRENT, CURRENT - 1, BatchReason.CLOSED),  # the batch before, closed
        (CURRENT, CURRENT - 2, BatchReason.BEHIND),
        (CURRENT, CURRENT + 1, BatchReason.AHEAD),
        (1, BATCH_NO_MAX - 1, BatchReason.BEHIND),  # across the wrap: 999998 is behind 1
        (BATCH_NO_MAX, 1, BatchReason.AHEAD),  # 000001 follows 999999
    ],
)
def test_a_77_says_behind_or_ahead_counting_the_wrap(
    current: int, batch_no: int, reason: BatchReason
) -> None:
    """Field 63 of a 77: the one wrap-aware definition of behind (counters.is_behind)."""
    snapshot, _ = _world(current=current)
    decision = decide(_sale(batch_no=batch_no), snapshot, _rules())
    assert decision.code == "77" and decision.detail is not None
    detail = decode_batch_detail(decision.detail)
    assert detail is not None
    assert (detail.reason, detail.host_batch_no) == (reason, current)
    assert decision.requirement == ProcessingRequirement.SIGN_ON


# (request, batch state) → (code, the state the batch moves to, or None when it stays)
STATES: list[tuple[str, Request, BatchState, str, BatchState | None]] = [
    ("sale", _sale(), BatchState.OPEN, "00", None),
    ("sale", _sale(), BatchState.UPLOADING, "77", None),
    ("sale", _sale(), BatchState.CLOSED, "77", None),
    ("settlement balanced", _settle(), BatchState.OPEN, "00", BatchState.CLOSED),
    ("settlement not balanced", _settle(_totals(1)), BatchState.OPEN, "00", BatchState.UPLOADING),
    ("settlement again", _settle(), BatchState.UPLOADING, "00", None),
    ("settlement again", _settle(), BatchState.CLOSED, "00", None),
    ("upload", _upload(), BatchState.OPEN, "12", None),
    ("upload", _upload(), BatchState.UPLOADING, "00", None),
    ("upload", _upload(), BatchState.CLOSED, "00", None),
    ("upload end", _upload_end(), BatchState.OPEN, "12", None),
    ("upload end", _upload_end(), BatchState.UPLOADING, "00", BatchState.CLOSED),
    ("upload end", _upload_end(), BatchState.CLOSED, "00", None),
    ("reversal", _reversal(), BatchState.OPEN, "00", None),
    ("reversal", _reversal(), BatchState.UPLOADING, "00", None),
    ("reversal", _reversal(), BatchState.CLOSED, "00", None),
]


@pytest.mark.parametrize(
    ("request_", "state", "code", "moved_to"),
    [pytest.param(*case[1:], id=f"{case[0]} in {case[2].value}") for case in STATES],
)
def test_decide_in_every_batch_state(
    request_: Request, state: BatchState, code: str, moved_to: BatchState | None
) -> None:
    """Every batch state: the answer, and the move the batch table returned (if any)."""
    settled = {"settle_response_code": "00", "host_totals": encode_totals(_totals()),
               "terminal_totals": encode_totals(_totals())}  # fmt: skip
    snapshot, view = _world(state, transactions=SALE_IN_BATCH)
    if state != BatchState.OPEN:
        view.batches[-1] = dataclasses.replace(view.batches[-1], **settled)  # type: ignore[arg-type]
    decision = decide(request_, snapshot, _rules())
    moves = [effect.state for effect in decision.effects if isinstance(effect, MoveBatch)]
    assert (code, moves) == (decision.code, [] if moved_to is None else [moved_to])


def test_an_upload_end_records_every_difference_and_closes_the_batch() -> None:
    """Host-only, amount differs and count differs become exception records; then close."""
    other = _sale_row(stan=8, transaction_id=701, amount_fen=500)
    uploaded = UploadRecordRow(SALE_STAN, "00", _hmac(TEST_PAN_APPROVED), "6222…", 900)
    snapshot, _ = _world(
        BatchState.UPLOADING, transactions=(_sale_row(), other), uploads={CURRENT_ID: [uploaded]}
    )
    decision = decide(_upload_end(total_records=3), snapshot, _rules())
    kinds = [e.kind for e in decision.effects if isinstance(e, AddException)]
    assert kinds == [
        ExceptionKind.AMOUNT_DIFFERS,
        ExceptionKind.HOST_ONLY,
        ExceptionKind.UPLOAD_COUNT_DIFFERS,
    ]
    assert [type(e) for e in decision.effects[3:]] == [RecordUploadEnd, MoveBatch, OpenNextBatch]
    move = decision.effects[4]
    assert isinstance(move, MoveBatch)
    assert (move.state, move.close_reason) == (BatchState.CLOSED, CloseReason.UPLOADED)


def test_a_late_reversal_of_a_closed_batch_is_an_exception_not_a_change() -> None:
    """The closed batch keeps the sale; the back office gets a late-reversal record."""
    closed_sale = _sale_row(batch_id=CLOSED_ID, transaction_id=3)
    snapshot, _ = _world(transactions=(closed_sale,))
    decision = decide(_reversal(batch_no=CURRENT - 1), snapshot, _rules())
    assert decision.code == "00"
    assert [type(e) for e in decision.effects] == [AddException, InsertReversal]
    reversal = decision.effects[1]
    assert isinstance(reversal, InsertReversal) and reversal.outcome == "late"


def test_a_repeated_reversal_gets_the_same_answer_and_writes_nothing() -> None:
    """Idempotent: the reversal already recorded under that batch answers again."""
    key = (TERMINAL_ID, CURRENT, SALE_STAN, Kind.SALE.value, 1_000)
    done = {key: ReversalRow(CURRENT_ID, "00")}
    snapshot, _ = _world(transactions=SALE_IN_BATCH, reversals_done=done)
    decision = decide(_reversal(), snapshot, _rules())
    assert (decision.code, decision.effects) == ("00", ())


def test_a_reversal_of_another_amount_under_that_stan_is_not_a_repeat() -> None:
    """Duplicates are the same terminal, batch, STAN and amount: a reversal recorded with
    another amount (a mismatch, not applied) does not make this one a repeat."""
    key = (TERMINAL_ID, CURRENT, SALE_STAN, Kind.SALE.value, 999)
    done = {key: ReversalRow(CURRENT_ID, "00")}
    snapshot, _ = _world(transactions=SALE_IN_BATCH, reversals_done=done)
    decision = decide(_reversal(), snapshot, _rules())
    assert decision.code == "00"
    assert any(isinstance(e, InsertReversal) and e.outcome == "applied" for e in decision.effects)


def test_a_sale_whose_reversal_overtook_it_is_recorded_reversed() -> None:
    """Approved by the issuer, but its reversal came first: the row says reversed."""
    overtaken = {(TERMINAL_ID, CURRENT, 8, Kind.SALE.value): [(None, 1_000)]}
    snapshot, _ = _world(reversals_overtaken=overtaken)
    insert = decide(_sale(), snapshot, _rules()).effects[0]
    assert isinstance(insert, InsertTransaction)
    assert (insert.response_code, insert.status) == ("00", TransactionStatus.REVERSED)


VOID_STAN = 9
VOID_ID = 900


def _void_row(**values: Any) -> TransactionRow:
    """An approved void of the sale of SALE_STAN, in the current batch."""
    return _sale_row(
        transaction_id=VOID_ID,
        stan=VOID_STAN,
        kind=Kind.VOID.value,
        original_transaction_id=SALE_ID,
        **values,
    )


def test_a_reversal_of_a_void_makes_its_sale_stand_again() -> None:
    """The void is reversed and its sale, voided, is approved again."""
    voided_sale = _sale_row(status=TransactionStatus.VOIDED)
    snapshot, _ = _world(transactions=(voided_sale, _void_row()))
    decision = decide(_reversal(stan=VOID_STAN, original_kind=Kind.VOID), snapshot, _rules())
    assert ("00", [(VOID_ID, "reversed"), (SALE_ID, "approved")]) == (
        decision.code,
        [
            (effect.transaction_id, effect.status)
            for effect in decision.effects
            if isinstance(effect, SetTransactionStatus)
        ],
    )


def test_a_reversal_of_a_void_whose_sale_is_not_voided_is_refused_by_the_table() -> None:
    """The sale's own status is checked: approved --unvoid--> is not in the table."""
    snapshot, _ = _world(transactions=(_sale_row(), _void_row()))
    with pytest.raises(
        IllegalTransition, match="host transaction: no transition from 'approved' on 'unvoid'"
    ):
        decide(_reversal(stan=VOID_STAN, original_kind=Kind.VOID), snapshot, _rules())


def test_the_back_office_advance_closes_by_the_table_and_opens_the_next() -> None:
    """advance(): exception for unsettled approvals, CLOSED (advanced), next batch."""
    snapshot, view = _world(transactions=SALE_IN_BATCH)
    assert snapshot.terminal is not None
    batch = view.batches[-1]
    effects = advance(snapshot.terminal, batch, view.batch_tally(CURRENT_ID), "test", now=NOW)
    assert [type(e) for e in effects] == [MoveBatch, RecordHostTotals, AddException, OpenNextBatch]
    move = effects[0]
    assert isinstance(move, MoveBatch)
    assert (move.state, move.close_reason) == (BatchState.CLOSED, CloseReason.ADVANCED)
    closed = dataclasses.replace(batch, state=BatchState.CLOSED)
    with pytest.raises(IllegalTransition):
        advance(snapshot.terminal, closed, view.batch_tally(CURRENT_ID), "again", now=NOW)


_ANSWERED = {"00", "12", "13", "14", "25", "30", "40", "51", "54", "61", "64", "77", "94", "95"}


@given(
    kind=st.sampled_from(["sale", "void", "refund", "reversal", "settle", "upload", "end"]),
    state=st.sampled_from(list(BatchState)),
    batch_offset=st.integers(min_value=-3, max_value=3),
    amount_fen=st.integers(min_value=0, max_value=6_000_000),
    with_sale=st.booleans(),
)
def test_decide_keeps_the_batch_rules_whatever_comes(
    kind: str, state: BatchState, batch_offset: int, amount_fen: int, with_sale: bool
) -> None:
    """Whatever the request, batch and state: a known code, moves only by the table,
    a transaction only in the current OPEN batch, and the same answer twice."""
    batch_no = CURRENT + batch_offset
    requests: dict[str, Request] = {
        "sale": _sale(amount_fen, batch_no=batch_no),
        "void": _void(amount_fen, batch_no=batch_no),
        "refund": _refund(amount_fen, batch_no=batch_no),
        "reversal": _reversal(batch_no=batch_no, amount_fen=amount_fen),
        "settle": _settle(_totals(amount_fen % 10_000), batch_no=batch_no),
        "upload": dataclasses.replace(_upload(), batch_no=batch_no),
        "end": dataclasses.replace(_upload_end(), batch_no=batch_no),
    }
    settled = {"settle_response_code": "00", "host_totals": encode_totals(_totals()),
               "terminal_totals": encode_totals(_totals())}  # fmt: skip
    snapshot, view = _world(state, transactions=SALE_IN_BATCH if with_sale else ())
    if state != BatchState.OPEN:
        view.batches[-1] = dataclasses.replace(view.batches[-1], **settled)  # type: ignore[arg-type]
    decision = decide(requests[kind], snapshot, _rules())
    assert decision.code in _ANSWERED
    assert decision == decide(requests[kind], snapshot, _rules())
    for effect in decision.effects:
        if isinstance(effect, MoveBatch):
            batch = next(b for b in view.batches if b.batch_id == effect.batch_id)
            moves = {to for (at, _), to in TRANSITIONS.items() if at == batch.state}
            assert effect.state in moves
        if isinstance(effect, InsertTransaction):
            assert (effect.batch_id, state) == (CURRENT_ID, BatchState.OPEN)
    if batch_no != CURRENT and kind in ("sale", "void", "refund", "settle"):
        assert decision.code == "77" or (kind == "settle" and batch_offset == -1)


@pytest.mark.parametrize("state", list(BatchState))
@pytest.mark.parametrize("event", list(BatchEvent))
def test_a_batch_moves_only_to_the_state_the_table_returns(
    state: BatchState, event: BatchEvent
) -> None:
    """move_batch(): the table's state (None when it stays), IllegalTransition off the table."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        with pytest.raises(IllegalTransition):
            move_batch(CURRENT_ID, state, event, at=NOW, close_reason=CloseReason.BALANCED)
        return
    move = move_batch(CURRENT_ID, state, event, at=NOW, close_reason=CloseReason.BALANCED)
    assert (None if after == state else after) == (None if move is None else move.state)


def test_the_first_sign_on_opens_batch_1_and_a_resend_hands_out_the_same_keys() -> None:
    """First sign-on: batch 000001 opens, new keys wait; again before use: the same keys."""
    snapshot, _ = _world()
    assert snapshot.terminal is not None
    first = snapshot.terminal._replace(current_batch_id=None, batch_no=None)
    unsigned = dataclasses.replace(snapshot, terminal=first)
    decision = decide(SignOnRequest(TERMINAL_ID, MERCHANT_ID, 1, 1), unsigned, _rules())
    assert [type(e) for e in decision.effects] == [OpenFirstBatch, SignOn]
    assert decision.response.batch_no == 1
    sign_on = decision.effects[1]
    assert isinstance(sign_on, SignOn)
    pending = first._replace(pending_keys=sign_on.pending_keys, current_batch_id=CURRENT_ID)
    again = decide(
        SignOnRequest(TERMINAL_ID, MERCHANT_ID, 5, 1),
        dataclasses.replace(snapshot, terminal=pending),
        dataclasses.replace(_rules(), working_keys=lambda: WorkingKeys(b"x" * 16, b"y" * 8)),
    )
    wrapped = [d.response.working_keys for d in (decision, again)]  # type: ignore[union-attr]
    keys = [unwrap_working_keys(b"k" * 16, field_62) for field_62 in wrapped if field_62]
    assert keys[0] == keys[1] == sign_on.pending_keys


def test_an_echo_says_the_last_stan_the_host_recorded() -> None:
    """Echo: 00, nothing written, 63 carries T= the last STAN of the current batch."""
    snapshot, _ = _world(transactions=SALE_IN_BATCH)
    view = snapshot.view
    decision = decide(EchoRequest(TERMINAL_ID, MERCHANT_ID, 3, 1), snapshot, _rules())
    assert (decision.code, decision.effects) == ("00", ())
    assert decision.detail is not None and f"T={SALE_STAN:06d}" in decision.detail
    assert view.last_stan_in_batch(CURRENT_ID) == SALE_STAN


def test_a_mismatched_reversal_says_both_amounts_in_yuan() -> None:
    """The back office reads the cause: the reversal's amount and the sale's, in yuan."""
    snapshot, _ = _world(transactions=SALE_IN_BATCH)
    decision = decide(_reversal(amount_fen=999), snapshot, _rules())
    (record,) = [e for e in decision.effects if isinstance(e, AddException)]
    assert record.cause.endswith("not applied: it is for 9.99, the sale for 10.00"), record.cause
