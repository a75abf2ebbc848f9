"""Sample messages and hypothesis strategies for the wire tests.

``SAMPLES`` holds one message of every type ``encode_message`` knows (every
request and every response, every 60.3 variant); ``messages()`` builds any
valid typed message.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from posbatch.batch.model import CardTotals, CardType, Kind, Reconciliation, SettlementTotals
from posbatch.wire import (
    AdminResponse,
    BatchUploadEndRequest,
    BatchUploadRequest,
    BatchUploadResponse,
    EchoRequest,
    Message,
    OriginalTransaction,
    RefundRequest,
    ReversalReason,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SettlementResponse,
    SignOffRequest,
    SignOnRequest,
    SignOnResponse,
    TransactionResponse,
    UploadRecord,
    VoidRequest,
    WorkingKeys,
    wrap_working_keys,
)
from testbed import MASTER_KEY, MERCHANT_ID, TERMINAL_ID

PAN = "6222021234567890123"
MAK = bytes.fromhex("0123456789ABCDEF")
PIK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
KEYS = WorkingKeys(pik=PIK, mak=MAK)
FIELD62 = wrap_working_keys(MASTER_KEY, KEYS)
SALE_ORIGINAL = OriginalTransaction(batch_no=1, stan=7, date_mmdd="1125")
TOTALS = SettlementTotals(CardTotals(12500, 3, 1250, 1))
RECORD = UploadRecord(CardType.DOMESTIC, 7, PAN, 1250)

_ids = {"terminal_id": TERMINAL_ID, "merchant_id": MERCHANT_ID}

SAMPLES: dict[str, Message] = {
    "sign_on": SignOnRequest(**_ids, stan=1, batch_no=1),
    "sign_on_response": SignOnResponse(
        **_ids,
        stan=1,
        batch_no=1,
        response_code="00",
        local_time="101530",
        local_date="1125",
        working_keys=FIELD62,
        detail="B=000001;S=OPEN",
    ),
    "sign_off": SignOffRequest(**_ids, stan=2, batch_no=1),
    "sign_off_response": AdminResponse(
        Kind.SIGN_OFF, **_ids, stan=2, batch_no=1, response_code="00"
    ),
    "echo": EchoRequest(**_ids, stan=3, batch_no=1),
    "echo_response": AdminResponse(
        Kind.ECHO, **_ids, stan=3, batch_no=1, response_code="00", local_time="101530"
    ),
    "sale": SaleRequest(
        **_ids, stan=7, batch_no=1, amount_fen=1250, pan=PAN, expiry="3012", track2=PAN + "=3012"
    ),
    "sale_response": TransactionResponse(
        Kind.SALE,
        **_ids,
        stan=7,
        batch_no=1,
        response_code="00",
        amount_fen=1250,
        pan=PAN,
        rrn="000000000007",
        auth_code="A12345",
        local_time="101530",
        local_date="1125",
    ),
    "void": VoidRequest(
        **_ids,
        stan=8,
        batch_no=1,
        amount_fen=1250,
        pan=PAN,
        original=SALE_ORIGINAL,
        original_rrn="000000000007",
        original_auth_code="A12345",
    ),
    "void_response": TransactionResponse(
        Kind.VOID, **_ids, stan=8, batch_no=1, response_code="00", amount_fen=1250
    ),
    "refund": RefundRequest(
        **_ids, stan=9, batch_no=2, amount_fen=500, pan=PAN, original=SALE_ORIGINAL
    ),
    "refund_response": TransactionResponse(
        Kind.REFUND, **_ids, stan=9, batch_no=2, response_code="25", amount_fen=500
    ),
    "reversal_of_sale": ReversalRequest(
        **_ids, stan=7, batch_no=1, amount_fen=1250, pan=PAN, original_kind=Kind.SALE
    ),
    "reversal_of_void": ReversalRequest(
        **_ids,
        stan=8,
        batch_no=1,
        amount_fen=1250,
        pan=PAN,
        original_kind=Kind.VOID,
        reason=ReversalReason.FAULT,
        original=SALE_ORIGINAL,
    ),
    "reversal_response": TransactionResponse(
        Kind.REVERSAL,
        **_ids,
        stan=7,
        batch_no=1,
        response_code="00",
        amount_fen=1250,
        original_kind=Kind.SALE,
    ),
    "settlement": SettlementRequest(**_ids, stan=12, batch_no=1, totals=TOTALS),
    "settlement_response": SettlementResponse(
        **_ids,
        stan=12,
        batch_no=1,
        response_code="00",
        totals=TOTALS.with_reconciliation(Reconciliation.NOT_BALANCED),
    ),
    "settlement_response_77": SettlementResponse(
        **_ids,
        stan=12,
        batch_no=1,
        response_code="77",
        detail="R=BEHIND;B=000002;S=OPEN;L=000001",
    ),
    "batch_upload": BatchUploadRequest(**_ids, stan=13, batch_no=1, records=(RECORD,) * 8),
    "batch_upload_response": BatchUploadResponse(
        Kind.BATCH_UPLOAD, **_ids, stan=13, batch_no=1, response_code="00"
    ),
    "batch_upload_end": BatchUploadEndRequest(**_ids, stan=14, batch_no=1, total_records=9),
    "batch_upload_end_balanced": BatchUploadEndRequest(
        **_ids, stan=14, batch_no=1, total_records=0, after_balanced=True
    ),
    "batch_upload_end_response": BatchUploadResponse(
        Kind.BATCH_UPLOAD_END, **_ids, stan=14, batch_no=1, response_code="00"
    ),
    "batch_upload_end_balanced_response": BatchUploadResponse(
        Kind.BATCH_UPLOAD_END,
        **_ids,
        stan=14,
        batch_no=1,
        response_code="00",
        after_balanced=True,
        detail="S=CLOSED",
    ),
}


# --- strategies -------------------------------------------------------------------

PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))


def digits(min_size: int, max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(
        string.digits, min_size=min_size, max_size=min_size if max_size is None else max_size
    )


def ascii_text(min_size: int, max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(
        PRINTABLE, min_size=min_size, max_size=min_size if max_size is None else max_size
    )


stans = st.integers(1, 999_999)
batch_nos = st.integers(1, 999_999)
amounts = st.integers(0, 999_999_999_999)
pans = digits(12, 19)
upload_pans = st.builds(
    lambda first, rest: first + rest, st.sampled_from("123456789"), digits(11, 18)
)
track2s = st.builds(lambda pan, rest: f"{pan}={rest}"[:37], digits(12, 19), digits(0, 17)) | digits(
    1, 37
)
originals = st.builds(
    OriginalTransaction, st.integers(0, 999_999), st.integers(0, 999_999), st.none() | digits(4)
)
card_totals = st.builds(
    CardTotals,
    amounts,
    st.integers(0, 999),
    amounts,
    st.integers(0, 999),
    st.sampled_from(Reconciliation),
)
settlement_totals = st.builds(SettlementTotals, card_totals, card_totals)
upload_records = st.builds(
    UploadRecord, st.sampled_from(CardType), st.integers(0, 999_999), upload_pans, amounts
)
field63 = ascii_text(0, 163)

_common = {
    "terminal_id": ascii_text(8),
    "merchant_id": ascii_text(15),
    "stan": stans,
    "batch_no": batch_nos,
}
_card = {
    "amount_fen": amounts,
    "pan": pans,
    "expiry": st.none() | digits(4),
    "entry_mode": digits(3),
    "condition_code": digits(2),
    "track2": st.none() | track2s,
    "currency": ascii_text(3),
}
_times = {"local_time": st.none() | digits(6), "local_date": st.none() | digits(4)}
response_codes = ascii_text(2)

requests: st.SearchStrategy[Message] = st.one_of(
    st.builds(SignOnRequest, **_common, operator=field63),
    st.builds(SignOffRequest, **_common),
    st.builds(EchoRequest, **_common),
    st.builds(SaleRequest, **_common, **_card),
    st.builds(
        VoidRequest,
        **_common,
        **_card,
        original=originals,
        original_rrn=st.none() | ascii_text(12),
        original_auth_code=st.none() | ascii_text(6),
    ),
    st.builds(
        RefundRequest,
        **_common,
        **_card,
        original=originals,
        original_rrn=st.none() | ascii_text(12),
    ),
    st.builds(
        ReversalRequest,
        **_common,
        **_card,
        original_kind=st.sampled_from([Kind.SALE, Kind.VOID]),
        reason=st.sampled_from(ReversalReason),
        original=st.none() | originals,
    ),
    st.builds(
        SettlementRequest,
        **_common,
        totals=settlement_totals,
        operator=field63,
        currency=ascii_text(3),
    ),
    st.builds(
        BatchUploadRequest,
        **_common,
        records=st.lists(upload_records, min_size=1, max_size=8).map(tuple),
    ),
    st.builds(
        BatchUploadEndRequest,
        **_common,
        total_records=st.integers(0, 9999),
        after_balanced=st.booleans(),
    ),
)

_transaction_kinds = st.sampled_from([Kind.SALE, Kind.VOID, Kind.REFUND]).map(
    lambda kind: (kind, None)
) | st.sampled_from([Kind.SALE, Kind.VOID]).map(lambda kind: (Kind.REVERSAL, kind))


def _transaction_response(kinds: tuple[Kind, Kind | None], **values: object) -> TransactionResponse:
    kind, original_kind = kinds
    return TransactionResponse(kind, original_kind=original_kind, **values)  # type: ignore[arg-type]


responses: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        SignOnResponse,
        **_common,
        **_times,
        response_code=response_codes,
        working_keys=st.none() | st.binary(max_size=512),
        detail=st.none() | field63,
    ),
    st.builds(
        AdminResponse,
        st.sampled_from([Kind.SIGN_OFF, Kind.ECHO]),
        **_common,
        **_times,
        response_code=response_codes,
        detail=st.none() | field63,
    ),
    st.builds(
        _transaction_response,
        _transaction_kinds,
        **_common,
        **_times,
        response_code=response_codes,
        amount_fen=amounts,
        pan=st.none() | pans,
        rrn=st.none() | ascii_text(12),
        auth_code=st.none() | ascii_text(6),
        detail=st.none() | field63,
        currency=ascii_text(3),
    ),
    st.builds(
        SettlementResponse,
        **_common,
        **_times,
        response_code=response_codes,
        totals=st.none() | settlement_totals,
        detail=st.none() | field63,
        currency=ascii_text(3),
    ),
    st.builds(
        BatchUploadResponse,
        st.just(Kind.BATCH_UPLOAD),
        **_common,
        response_code=response_codes,
        after_balanced=st.just(False),
        detail=st.none() | field63,
    )
    | st.builds(
        BatchUploadResponse,
        st.just(Kind.BATCH_UPLOAD_END),
        **_common,
        response_code=response_codes,
        after_balanced=st.booleans(),
        detail=st.none() | field63,
    ),
)

messages: st.SearchStrategy[Message] = requests | responses
