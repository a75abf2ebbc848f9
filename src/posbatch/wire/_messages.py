"""Typed messages of the wire profile and their encoding to/from ISO 8583 bodies.

Theory of operation
-------------------
Each message of DESIGN.md's table is a frozen dataclass. ``encode_message``
turns one into a body (MTI .. field 64) with pyiso8583 and, given a MAK,
fills field 64; ``decode_message`` does the reverse and dispatches on MTI,
processing code (3), 60.1 and 60.3. Neither checks the MAC: the adapter that
holds the key calls :func:`check_mac` (host: before acting; terminal: before
trusting an approval).

Nothing here raises anything but :class:`~posbatch.errors.DecodeError` on
bad bytes — pyiso8583's errors and every other surprise are translated, with
the field and byte position.

Integers are integers (``stan``, ``batch_no``, ``amount_fen``); times are the
wire's own strings (``hhmmss``, ``MMDD``) because this layer has no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias, TypedDict

import iso8583
import iso8583.decoder

from posbatch.errors import DecodeError, EncodeError, MacError
from posbatch.wire._crypto import MAC_BYTES, compute_mac, verify_mac
from posbatch.wire._fields import (
    BatchStateDetail,
    Field60,
    OriginalTransaction,
    SettlementTotals,
    UploadRecord,
    decode_track2,
    decode_upload_end,
    decode_upload_records,
    encode_track2,
    encode_upload_end,
    encode_upload_records,
    mask_pan,
)
from posbatch.wire._spec import NUMERIC_FIELDS, SPEC

__all__ = [
    "CURRENCY_CNY",
    "AdminResponse",
    "BatchUploadEndRequest",
    "BatchUploadRequest",
    "BatchUploadResponse",
    "EchoRequest",
    "Kind",
    "Message",
    "RefundRequest",
    "Request",
    "Response",
    "ReversalReason",
    "ReversalRequest",
    "SaleRequest",
    "SettlementRequest",
    "SettlementResponse",
    "SignOffRequest",
    "SignOnRequest",
    "SignOnResponse",
    "TransactionResponse",
    "VoidRequest",
    "check_mac",
    "decode_message",
    "encode_message",
    "has_mac",
]

CURRENCY_CNY: Final = "156"
PROCESSING_SALE: Final = "000000"
PROCESSING_CREDIT: Final = "200000"  # void and refund


class Kind(enum.StrEnum):
    """What a message is about: one word per function of DESIGN.md's table."""

    SIGN_ON = "sign_on"
    SIGN_OFF = "sign_off"
    ECHO = "echo"
    SALE = "sale"
    VOID = "void"
    REFUND = "refund"
    REVERSAL = "reversal"
    SETTLEMENT = "settlement"
    BATCH_UPLOAD = "batch_upload"
    BATCH_UPLOAD_END = "batch_upload_end"


# 60.1 message type codes and 60.3 network management codes.
TYPE_ADMIN: Final = "00"
TYPE_SALE: Final = "22"
TYPE_VOID: Final = "23"
TYPE_REFUND: Final = "25"
NET_SIGN_ON: Final = "003"
NET_SIGN_OFF: Final = "002"
NET_ECHO: Final = "301"
NET_FINANCIAL: Final = "000"
NET_SETTLE: Final = "201"
NET_UPLOAD_END_BALANCED: Final = "202"
NET_UPLOAD_END_UNBALANCED: Final = "207"

_TYPE_OF_KIND: Final = {Kind.SALE: TYPE_SALE, Kind.VOID: TYPE_VOID, Kind.REFUND: TYPE_REFUND}
_KIND_OF_TYPE: Final = {value: key for key, value in _TYPE_OF_KIND.items()}
_PROCESSING_OF_KIND: Final = {
    Kind.SALE: PROCESSING_SALE,
    Kind.VOID: PROCESSING_CREDIT,
    Kind.REFUND: PROCESSING_CREDIT,
}


def _n(value: int, width: int, field_number: str) -> str:
    if not 0 <= value < 10**width:
        raise EncodeError(f"{value} does not fit in {width} digits", field=field_number)
    return f"{value:0{width}d}"


def _stan(value: int) -> str:
    if not 1 <= value <= 999_999:
        raise EncodeError(f"STAN {value} outside 1..999999", field="11")
    return f"{value:06d}"


def _pan(value: str) -> str:
    if not (12 <= len(value) <= 19 and value.isdigit()):
        raise EncodeError("PAN must be 12..19 digits", field="2")
    return value


def _put(fields: dict[str, str], number: str, value: str | None) -> None:
    if value is not None:
        fields[number] = value


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignOnRequest:
    """0800 / 60.3 003. The terminal's own batch_no goes in 60.2; 63 = operator."""

    MTI: ClassVar[str] = "0800"
    KIND: ClassVar[Kind] = Kind.SIGN_ON
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    operator: str = "01"

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.MTI,
            "11": _stan(self.stan),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_SIGN_ON).encode(),
            "63": self.operator,
        }


@dataclass(frozen=True, slots=True)
class SignOffRequest:
    """0820 / 60.3 002."""

    MTI: ClassVar[str] = "0820"
    KIND: ClassVar[Kind] = Kind.SIGN_OFF
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.MTI,
            "11": _stan(self.stan),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_SIGN_OFF).encode(),
        }


@dataclass(frozen=True, slots=True)
class EchoRequest:
    """0820 / 60.3 301: network check (回响测试)."""

    MTI: ClassVar[str] = "0820"
    KIND: ClassVar[Kind] = Kind.ECHO
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.MTI,
            "11": _stan(self.stan),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_ECHO).encode(),
        }


@dataclass(frozen=True, slots=True, repr=False)
class SaleRequest:
    """0200 / 3 = 000000 / 60.1 22 (消费)."""

    MTI: ClassVar[str] = "0200"
    KIND: ClassVar[Kind] = Kind.SALE
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    amount_fen: int
    pan: str
    expiry: str | None = None  # YYMM
    entry_mode: str = "021"  # magnetic stripe, PIN capability unspecified
    condition_code: str = "00"
    track2: str | None = None
    currency: str = CURRENCY_CNY

    def __repr__(self) -> str:
        return (
            f"SaleRequest(terminal_id={self.terminal_id!r}, stan={self.stan}, "
            f"batch_no={self.batch_no}, amount_fen={self.amount_fen}, pan={mask_pan(self.pan)})"
        )

    def to_fields(self) -> dict[str, str]:
        fields = _card_fields(self, PROCESSING_SALE)
        fields["t"] = self.MTI
        fields["60"] = Field60(TYPE_SALE, self.batch_no, NET_FINANCIAL).encode()
        return fields


@dataclass(frozen=True, slots=True, repr=False)
class VoidRequest:
    """0200 / 3 = 200000 / 60.1 23 (消费撤销): full amount, same batch; 61 = the sale."""

    MTI: ClassVar[str] = "0200"
    KIND: ClassVar[Kind] = Kind.VOID
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    amount_fen: int
    pan: str
    original: OriginalTransaction
    original_rrn: str | None = None
    original_auth_code: str | None = None
    expiry: str | None = None
    entry_mode: str = "021"
    condition_code: str = "00"
    track2: str | None = None
    currency: str = CURRENCY_CNY

    def __repr__(self) -> str:
        return (
            f"VoidRequest(terminal_id={self.terminal_id!r}, stan={self.stan}, "
            f"batch_no={self.batch_no}, amount_fen={self.amount_fen}, "
            f"original={self.original}, pan={mask_pan(self.pan)})"
        )

    def to_fields(self) -> dict[str, str]:
        fields = _card_fields(self, PROCESSING_CREDIT)
        fields["t"] = self.MTI
        _put(fields, "37", self.original_rrn)
        _put(fields, "38", self.original_auth_code)
        fields["60"] = Field60(TYPE_VOID, self.batch_no, NET_FINANCIAL).encode()
        fields["61"] = self.original.encode()
        return fields


@dataclass(frozen=True, slots=True, repr=False)
class RefundRequest:
    """0220 / 3 = 200000 / 60.1 25 (退货): partial allowed; 61 = the sale (any batch)."""

    MTI: ClassVar[str] = "0220"
    KIND: ClassVar[Kind] = Kind.REFUND
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    amount_fen: int
    pan: str
    original: OriginalTransaction
    original_rrn: str | None = None
    expiry: str | None = None
    entry_mode: str = "021"
    condition_code: str = "00"
    track2: str | None = None
    currency: str = CURRENCY_CNY

    def __repr__(self) -> str:
        return (
            f"RefundRequest(terminal_id={self.terminal_id!r}, stan={self.stan}, "
            f"batch_no={self.batch_no}, amount_fen={self.amount_fen}, "
            f"original={self.original}, pan={mask_pan(self.pan)})"
        )

    def to_fields(self) -> dict[str, str]:
        fields = _card_fields(self, PROCESSING_CREDIT)
        fields["t"] = self.MTI
        _put(fields, "37", self.original_rrn)
        fields["60"] = Field60(TYPE_REFUND, self.batch_no, NET_FINANCIAL).encode()
        fields["61"] = self.original.encode()
        return fields


class ReversalReason(enum.StrEnum):
    """Field 39 of a 0400: why the terminal reverses."""

    TIMEOUT = "98"
    FAULT = "96"  # e.g. the approval's MAC failed, or the terminal could not finish


@dataclass(frozen=True, slots=True, repr=False)
class ReversalRequest:
    """0400 (冲正) of a sale or a void: the original's STAN, batch, amount, 3 and 60.1."""

    MTI: ClassVar[str] = "0400"
    KIND: ClassVar[Kind] = Kind.REVERSAL
    terminal_id: str
    merchant_id: str
    stan: int  # the STAN of the transaction reversed
    batch_no: int  # the batch of the transaction reversed
    amount_fen: int
    pan: str
    original_kind: Kind  # SALE or VOID
    reason: ReversalReason = ReversalReason.TIMEOUT
    original: OriginalTransaction | None = None  # for a void: the sale it voided
    expiry: str | None = None
    entry_mode: str = "021"
    condition_code: str = "00"
    currency: str = CURRENCY_CNY
    track2: str | None = None

    def __repr__(self) -> str:
        return (
            f"ReversalRequest(terminal_id={self.terminal_id!r}, stan={self.stan}, "
            f"batch_no={self.batch_no}, original_kind={self.original_kind.value}, "
            f"amount_fen={self.amount_fen}, reason={self.reason.value})"
        )

    def to_fields(self) -> dict[str, str]:
        if self.original_kind not in (Kind.SALE, Kind.VOID):
            raise EncodeError(f"cannot reverse a {self.original_kind.value}", field="60.1")
        fields = _card_fields(self, _PROCESSING_OF_KIND[self.original_kind])
        fields["t"] = self.MTI
        fields["39"] = self.reason.value
        fields["60"] = Field60(
            _TYPE_OF_KIND[self.original_kind], self.batch_no, NET_FINANCIAL
        ).encode()
        if self.original is not None:
            fields["61"] = self.original.encode()
        return fields


@dataclass(frozen=True, slots=True)
class SettlementRequest:
    """0500 / 60.3 201 (结算): the terminal's totals in 48; 63 = operator."""

    MTI: ClassVar[str] = "0500"
    KIND: ClassVar[Kind] = Kind.SETTLEMENT
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    totals: SettlementTotals
    operator: str = "01"
    currency: str = CURRENCY_CNY

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.MTI,
            "11": _stan(self.stan),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "48": self.totals.encode(),
            "49": self.currency,
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_SETTLE).encode(),
            "63": self.operator,
        }


@dataclass(frozen=True, slots=True)
class BatchUploadRequest:
    """0320 / 60.3 201 (批上送): 1..8 records of the batch."""

    MTI: ClassVar[str] = "0320"
    KIND: ClassVar[Kind] = Kind.BATCH_UPLOAD
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    records: tuple[UploadRecord, ...]

    def to_fields(self) -> dict[str, str]:
        return {
            "t": self.MTI,
            "11": _stan(self.stan),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "48": encode_upload_records(self.records),
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_SETTLE).encode(),
        }


@dataclass(frozen=True, slots=True)
class BatchUploadEndRequest:
    """0320 / 60.3 202 (after balanced) or 207 (after not balanced): 48 = n4 total records."""

    MTI: ClassVar[str] = "0320"
    KIND: ClassVar[Kind] = Kind.BATCH_UPLOAD_END
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    total_records: int
    after_balanced: bool = False

    def to_fields(self) -> dict[str, str]:
        code = NET_UPLOAD_END_BALANCED if self.after_balanced else NET_UPLOAD_END_UNBALANCED
        return {
            "t": self.MTI,
            "11": _stan(self.stan),
            "41": self.terminal_id,
            "42": self.merchant_id,
            "48": encode_upload_end(self.total_records),
            "60": Field60(TYPE_ADMIN, self.batch_no, code).encode(),
        }


# --- responses --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class SignOnResponse:
    """0810: 60.2 = the host's batch_no for this terminal; 62 = working keys under the TMK."""

    MTI: ClassVar[str] = "0810"
    KIND: ClassVar[Kind] = Kind.SIGN_ON
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    response_code: str
    local_time: str | None = None
    local_date: str | None = None
    working_keys: bytes | None = None  # field 62
    detail: str | None = None  # field 63: host batch state

    def __repr__(self) -> str:
        keys = "****" if self.working_keys else None
        return (
            f"SignOnResponse(terminal_id={self.terminal_id!r}, stan={self.stan}, "
            f"batch_no={self.batch_no}, response_code={self.response_code!r}, "
            f"working_keys={keys}, detail={self.detail!r})"
        )

    def to_fields(self) -> dict[str, str]:
        fields = {
            "t": self.MTI,
            "11": _stan(self.stan),
            "39": self.response_code,
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_SIGN_ON).encode(),
        }
        _put(fields, "12", self.local_time)
        _put(fields, "13", self.local_date)
        if self.working_keys is not None:
            fields["62"] = self.working_keys.hex()
        _put(fields, "63", self.detail)
        return fields

    @property
    def batch_state(self) -> BatchStateDetail | None:
        return BatchStateDetail.decode(self.detail) if self.detail else None


@dataclass(frozen=True, slots=True)
class AdminResponse:
    """0830: the answer to sign-off (60.3 002) and echo (60.3 301)."""

    MTI: ClassVar[str] = "0830"
    kind: Kind
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    response_code: str
    local_time: str | None = None
    local_date: str | None = None
    detail: str | None = None

    def to_fields(self) -> dict[str, str]:
        network = {Kind.SIGN_OFF: NET_SIGN_OFF, Kind.ECHO: NET_ECHO}.get(self.kind)
        if network is None:
            raise EncodeError(f"0830 answers sign-off or echo, not {self.kind}", field="60.3")
        fields = {
            "t": self.MTI,
            "11": _stan(self.stan),
            "39": self.response_code,
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": Field60(TYPE_ADMIN, self.batch_no, network).encode(),
        }
        _put(fields, "12", self.local_time)
        _put(fields, "13", self.local_date)
        _put(fields, "63", self.detail)
        return fields


_RESPONSE_MTI: Final = {"0200": "0210", "0220": "0230", "0400": "0410"}


@dataclass(frozen=True, slots=True, repr=False)
class TransactionResponse:
    """0210 / 0230 / 0410: the answer to a sale, void, refund or reversal.

    ``kind`` is the request's kind; for a reversal ``original_kind`` says what
    was reversed (its 3 and 60.1 are echoed).
    """

    kind: Kind
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    response_code: str
    amount_fen: int
    original_kind: Kind | None = None  # reversal only: SALE or VOID
    pan: str | None = None
    rrn: str | None = None  # 37, 12 ascii
    auth_code: str | None = None  # 38, 6 ascii
    local_time: str | None = None
    local_date: str | None = None
    detail: str | None = None
    currency: str = CURRENCY_CNY

    def __repr__(self) -> str:
        return (
            f"TransactionResponse(kind={self.kind.value}, terminal_id={self.terminal_id!r}, "
            f"stan={self.stan}, batch_no={self.batch_no}, "
            f"response_code={self.response_code!r}, amount_fen={self.amount_fen}, "
            f"rrn={self.rrn!r}, auth_code={self.auth_code!r})"
        )

    @property
    def mti(self) -> str:
        return {Kind.SALE: "0210", Kind.VOID: "0210", Kind.REFUND: "0230"}.get(self.kind, "0410")

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    def to_fields(self) -> dict[str, str]:
        transaction_kind = self.original_kind if self.kind == Kind.REVERSAL else self.kind
        if transaction_kind not in _TYPE_OF_KIND:
            raise EncodeError(f"no transaction response for {transaction_kind}", field="60.1")
        fields = {
            "t": self.mti,
            "3": _PROCESSING_OF_KIND[transaction_kind],
            "4": _n(self.amount_fen, 12, "4"),
            "11": _stan(self.stan),
            "39": self.response_code,
            "41": self.terminal_id,
            "42": self.merchant_id,
            "49": self.currency,
            "60": Field60(_TYPE_OF_KIND[transaction_kind], self.batch_no, NET_FINANCIAL).encode(),
        }
        if self.pan is not None:
            fields["2"] = _pan(self.pan)
        _put(fields, "12", self.local_time)
        _put(fields, "13", self.local_date)
        _put(fields, "37", self.rrn)
        _put(fields, "38", self.auth_code)
        _put(fields, "63", self.detail)
        return fields


@dataclass(frozen=True, slots=True)
class SettlementResponse:
    """0510: the host's totals in 48, each half's last digit 1 balanced / 2 not / 3 error."""

    MTI: ClassVar[str] = "0510"
    KIND: ClassVar[Kind] = Kind.SETTLEMENT
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    response_code: str
    totals: SettlementTotals | None = None
    local_time: str | None = None
    local_date: str | None = None
    detail: str | None = None
    currency: str = CURRENCY_CNY

    def to_fields(self) -> dict[str, str]:
        fields = {
            "t": self.MTI,
            "11": _stan(self.stan),
            "39": self.response_code,
            "41": self.terminal_id,
            "42": self.merchant_id,
            "49": self.currency,
            "60": Field60(TYPE_ADMIN, self.batch_no, NET_SETTLE).encode(),
        }
        if self.totals is not None:
            fields["48"] = self.totals.encode()
        _put(fields, "12", self.local_time)
        _put(fields, "13", self.local_date)
        _put(fields, "63", self.detail)
        return fields


@dataclass(frozen=True, slots=True)
class BatchUploadResponse:
    """0330: the answer to a batch-upload record message or to the upload end."""

    MTI: ClassVar[str] = "0330"
    kind: Kind  # BATCH_UPLOAD or BATCH_UPLOAD_END
    terminal_id: str
    merchant_id: str
    stan: int
    batch_no: int
    response_code: str
    after_balanced: bool = False  # for an end: 202 rather than 207
    detail: str | None = None

    def to_fields(self) -> dict[str, str]:
        if self.kind == Kind.BATCH_UPLOAD:
            network = NET_SETTLE
        elif self.kind == Kind.BATCH_UPLOAD_END:
            network = NET_UPLOAD_END_BALANCED if self.after_balanced else NET_UPLOAD_END_UNBALANCED
        else:
            raise EncodeError(f"0330 answers batch upload, not {self.kind}", field="60.3")
        fields = {
            "t": self.MTI,
            "11": _stan(self.stan),
            "39": self.response_code,
            "41": self.terminal_id,
            "42": self.merchant_id,
            "60": Field60(TYPE_ADMIN, self.batch_no, network).encode(),
        }
        _put(fields, "63", self.detail)
        return fields


Request: TypeAlias = (
    SignOnRequest
    | SignOffRequest
    | EchoRequest
    | SaleRequest
    | VoidRequest
    | RefundRequest
    | ReversalRequest
    | SettlementRequest
    | BatchUploadRequest
    | BatchUploadEndRequest
)
Response: TypeAlias = (
    SignOnResponse | AdminResponse | TransactionResponse | SettlementResponse | BatchUploadResponse
)
Message: TypeAlias = Request | Response

CardRequest: TypeAlias = SaleRequest | VoidRequest | RefundRequest | ReversalRequest


def _card_fields(message: CardRequest, processing_code: str) -> dict[str, str]:
    fields = {
        "2": _pan(message.pan),
        "3": processing_code,
        "4": _n(message.amount_fen, 12, "4"),
        "11": _stan(message.stan),
        "22": message.entry_mode,
        "25": message.condition_code,
        "41": message.terminal_id,
        "42": message.merchant_id,
        "49": message.currency,
    }
    _put(fields, "14", message.expiry)
    if message.track2 is not None:
        fields["35"] = encode_track2(message.track2)
    return fields


# --- encode -----------------------------------------------------------------------

_MAC_PLACEHOLDER: Final = "0" * (2 * MAC_BYTES)
_NO_MAC_MTIS: Final = frozenset({"0800", "0810", "0820", "0830"})


def encode_message(message: Message, *, mak: bytes | None = None) -> bytes:
    """The ISO 8583 body (MTI .. 64) of ``message``; field 64 is set when ``mak`` is given.

    08xx messages never carry a MAC. Raises :class:`EncodeError` (our bug) on
    a value the profile cannot carry.
    """
    fields = message.to_fields()
    with_mac = mak is not None and fields["t"] not in _NO_MAC_MTIS
    if with_mac:
        fields["64"] = _MAC_PLACEHOLDER
    try:
        body, _ = iso8583.encode(fields, SPEC)
    except iso8583.EncodeError as exc:
        raise EncodeError(exc.msg, field=exc.field) from None
    if with_mac:
        assert mak is not None
        body[-MAC_BYTES:] = compute_mac(mak, bytes(body[:-MAC_BYTES]))
    return bytes(body)


# --- decode -----------------------------------------------------------------------

_BITMAP_START: Final = 2
_BITMAP_END: Final = 10


def _allowed_mask() -> int:
    mask = 0
    for key in SPEC:
        if key.isdigit() and 2 <= int(key) <= 64:
            mask |= 1 << (64 - int(key))
    return mask


_ALLOWED_FIELDS_MASK: Final = _allowed_mask()


def has_mac(body: bytes) -> bool:
    """Whether bitmap bit 64 is set (the body must have decoded already)."""
    return len(body) >= _BITMAP_END and bool(body[_BITMAP_END - 1] & 1)


def check_mac(body: bytes, mak: bytes) -> None:
    """Raise :class:`MacError` unless ``body`` ends in a field 64 that verifies under ``mak``."""
    if not has_mac(body) or len(body) < _BITMAP_END + MAC_BYTES:
        raise MacError("field 64 is missing")
    verify_mac(mak, body[:-MAC_BYTES], body[-MAC_BYTES:])


def _field_position(body: bytes, encoded: dict[str, dict[str, bytes]], number: str) -> int:
    """Byte offset of field ``number`` in ``body`` (for error messages only)."""
    position = _BITMAP_END
    for key in sorted((k for k in encoded if k.isdigit()), key=int):
        if key == number:
            return position
        position += len(encoded[key]["len"]) + len(encoded[key]["data"])
    return min(position, len(body))


class _Reader:
    """What decoding needs while it builds one typed message: the fields and where they are."""

    __slots__ = ("body", "encoded", "fields")

    def __init__(
        self, body: bytes, fields: dict[str, str], encoded: dict[str, dict[str, bytes]]
    ) -> None:
        self.body = body
        self.fields = fields
        self.encoded = encoded

    def fail(self, number: str, reason: str, offset_digits: int = 0) -> DecodeError:
        base = number.split(".", maxsplit=1)[0]
        start = _field_position(self.body, self.encoded, base)
        if base in self.encoded:
            start += len(self.encoded[base]["len"])
        return DecodeError(reason, field=number, position=start + offset_digits // 2)

    def required(self, number: str) -> str:
        value = self.fields.get(number)
        if value is None:
            raise DecodeError(
                f"field {number} is required here", field=number, position=len(self.body)
            )
        return value

    def optional(self, number: str) -> str | None:
        return self.fields.get(number)

    def integer(self, number: str) -> int:
        return int(self.required(number))

    def field60(self) -> Field60:
        try:
            return Field60.decode(self.required("60"))
        except DecodeError as exc:
            raise self.fail(exc.field, exc.reason, exc.position) from None

    def text(self, number: str) -> str:
        return self.required(number)


def _decode_raw(body: bytes) -> _Reader:
    if len(body) < _BITMAP_END:
        raise DecodeError("body is shorter than MTI + bitmap", field="p", position=len(body))
    mti_digits = body[:_BITMAP_START].hex()
    if not mti_digits.isdigit():
        raise DecodeError(f"MTI is not packed decimal: {mti_digits}", field="t", position=0)
    bitmap = int.from_bytes(body[_BITMAP_START:_BITMAP_END], "big")
    extra = bitmap & ~_ALLOWED_FIELDS_MASK
    if extra:
        bit = 65 - extra.bit_length()  # the lowest-numbered field not in the profile
        name = "secondary bitmap" if bit == 1 else f"field {bit}"
        raise DecodeError(f"{name} is not in the wire profile", field="p", position=_BITMAP_START)
    try:
        fields, encoded = iso8583.decode(body, SPEC)
    except iso8583.DecodeError as exc:
        raise DecodeError(exc.msg, field=exc.field, position=exc.pos) from None
    except (UnicodeDecodeError, ValueError, KeyError, IndexError) as exc:
        raise DecodeError(f"unreadable: {exc}", field="?", position=0) from None
    reader = _Reader(body, fields, encoded)
    for number in NUMERIC_FIELDS:
        value = fields.get(number)
        if value is not None and not value.isdigit() and number != "35":
            raise reader.fail(number, f"not packed decimal: {value!r}")
    if "35" in fields:
        try:
            fields["35"] = decode_track2(fields["35"])
        except DecodeError as exc:
            raise reader.fail("35", exc.reason) from None
    for number in ("37", "38", "39", "41", "42", "49", "63"):
        value = fields.get(number)
        if value is not None and not (value.isascii() and value.isprintable()):
            raise reader.fail(number, f"not printable ascii: {value!r}")
    return reader


def decode_message(body: bytes) -> Message:
    """The typed message in an ISO 8583 body; :class:`DecodeError` on anything else."""
    reader = _decode_raw(body)
    mti = reader.fields["t"]
    decoder = _DECODERS.get(mti)
    if decoder is None:
        raise DecodeError(f"MTI {mti} is not in the wire profile", field="t", position=0)
    try:
        return decoder(reader)
    except DecodeError:
        raise
    except (ValueError, KeyError) as exc:  # a typed value refused what the field held
        raise DecodeError(f"unreadable: {exc}", field="?", position=0) from None


def _sub(reader: _Reader, number: str, decode: type[OriginalTransaction]) -> OriginalTransaction:
    try:
        return decode.decode(reader.required(number))
    except DecodeError as exc:
        if exc.field == number and exc.position == len(reader.body):
            raise
        raise reader.fail(exc.field, exc.reason, exc.position) from None


def _expect(reader: _Reader, f60: Field60, message_type: str, network: str) -> None:
    if f60.message_type != message_type:
        raise reader.fail("60.1", f"expected {message_type} here, got {f60.message_type}")
    if f60.network_code != network:
        raise reader.fail("60.3", f"expected {network} here, got {f60.network_code}", 8)


def _common(reader: _Reader) -> tuple[str, str, int]:
    return reader.text("41"), reader.text("42"), reader.integer("11")


def _decode_0800(reader: _Reader) -> SignOnRequest:
    f60 = reader.field60()
    _expect(reader, f60, TYPE_ADMIN, NET_SIGN_ON)
    terminal_id, merchant_id, stan = _common(reader)
    return SignOnRequest(terminal_id, merchant_id, stan, f60.batch_no, reader.optional("63") or "")


def _decode_0810(reader: _Reader) -> SignOnResponse:
    f60 = reader.field60()
    _expect(reader, f60, TYPE_ADMIN, NET_SIGN_ON)
    terminal_id, merchant_id, stan = _common(reader)
    keys = reader.optional("62")
    return SignOnResponse(
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.text("39"),
        reader.optional("12"),
        reader.optional("13"),
        bytes.fromhex(keys) if keys is not None else None,
        reader.optional("63"),
    )


def _decode_0820(reader: _Reader) -> SignOffRequest | EchoRequest:
    f60 = reader.field60()
    terminal_id, merchant_id, stan = _common(reader)
    if f60.message_type != TYPE_ADMIN:
        raise reader.fail("60.1", f"expected 00 here, got {f60.message_type}")
    if f60.network_code == NET_SIGN_OFF:
        return SignOffRequest(terminal_id, merchant_id, stan, f60.batch_no)
    if f60.network_code == NET_ECHO:
        return EchoRequest(terminal_id, merchant_id, stan, f60.batch_no)
    raise reader.fail("60.3", f"0820 with network code {f60.network_code}", 8)


def _decode_0830(reader: _Reader) -> AdminResponse:
    f60 = reader.field60()
    terminal_id, merchant_id, stan = _common(reader)
    kind = {NET_SIGN_OFF: Kind.SIGN_OFF, NET_ECHO: Kind.ECHO}.get(f60.network_code)
    if kind is None:
        raise reader.fail("60.3", f"0830 with network code {f60.network_code}", 8)
    return AdminResponse(
        kind,
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.text("39"),
        reader.optional("12"),
        reader.optional("13"),
        reader.optional("63"),
    )


def _transaction_kind(reader: _Reader, f60: Field60) -> Kind:
    kind = _KIND_OF_TYPE.get(f60.message_type)
    if kind is None:
        raise reader.fail("60.1", f"unknown message type {f60.message_type}")
    if f60.network_code != NET_FINANCIAL:
        raise reader.fail("60.3", f"expected 000 here, got {f60.network_code}", 8)
    if reader.text("3") != _PROCESSING_OF_KIND[kind]:
        raise reader.fail("3", f"processing code {reader.text('3')} does not fit {kind.value}")
    return kind


class _CardFields(TypedDict):
    pan: str
    expiry: str | None
    entry_mode: str
    condition_code: str
    track2: str | None
    currency: str


def _card(reader: _Reader) -> _CardFields:
    return {
        "pan": reader.text("2"),
        "expiry": reader.optional("14"),
        "entry_mode": reader.text("22"),
        "condition_code": reader.text("25"),
        "track2": reader.optional("35"),
        "currency": reader.text("49"),
    }


def _decode_0200(reader: _Reader) -> SaleRequest | VoidRequest:
    f60 = reader.field60()
    kind = _transaction_kind(reader, f60)
    terminal_id, merchant_id, stan = _common(reader)
    amount = reader.integer("4")
    card = _card(reader)
    if kind == Kind.SALE:
        return SaleRequest(terminal_id, merchant_id, stan, f60.batch_no, amount, **card)
    if kind == Kind.VOID:
        return VoidRequest(
            terminal_id,
            merchant_id,
            stan,
            f60.batch_no,
            amount,
            original=_sub(reader, "61", OriginalTransaction),
            original_rrn=reader.optional("37"),
            original_auth_code=reader.optional("38"),
            **card,
        )
    raise reader.fail("60.1", f"0200 cannot carry a {kind.value}")


def _decode_0220(reader: _Reader) -> RefundRequest:
    f60 = reader.field60()
    kind = _transaction_kind(reader, f60)
    if kind != Kind.REFUND:
        raise reader.fail("60.1", f"0220 cannot carry a {kind.value}")
    terminal_id, merchant_id, stan = _common(reader)
    return RefundRequest(
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.integer("4"),
        original=_sub(reader, "61", OriginalTransaction),
        original_rrn=reader.optional("37"),
        **_card(reader),
    )


def _decode_0400(reader: _Reader) -> ReversalRequest:
    f60 = reader.field60()
    kind = _transaction_kind(reader, f60)
    if kind not in (Kind.SALE, Kind.VOID):
        raise reader.fail("60.1", f"a {kind.value} cannot be reversed")
    terminal_id, merchant_id, stan = _common(reader)
    try:
        reason = ReversalReason(reader.text("39"))
    except ValueError:
        raise reader.fail("39", f"reversal reason {reader.text('39')!r}") from None
    original = _sub(reader, "61", OriginalTransaction) if "61" in reader.fields else None
    return ReversalRequest(
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.integer("4"),
        original_kind=kind,
        reason=reason,
        original=original,
        **_card(reader),
    )


def _decode_transaction_response(reader: _Reader) -> TransactionResponse:
    f60 = reader.field60()
    transaction_kind = _transaction_kind(reader, f60)
    mti = reader.fields["t"]
    kind = Kind.REVERSAL if mti == "0410" else transaction_kind
    expected_mti = {Kind.REFUND: "0230", Kind.REVERSAL: "0410"}.get(kind, "0210")
    if mti != expected_mti:
        raise reader.fail("60.1", f"{mti} cannot answer a {kind.value}")
    terminal_id, merchant_id, stan = _common(reader)
    return TransactionResponse(
        kind,
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.text("39"),
        reader.integer("4"),
        original_kind=transaction_kind if kind == Kind.REVERSAL else None,
        pan=reader.optional("2"),
        rrn=reader.optional("37"),
        auth_code=reader.optional("38"),
        local_time=reader.optional("12"),
        local_date=reader.optional("13"),
        detail=reader.optional("63"),
        currency=reader.text("49"),
    )


def _totals(reader: _Reader) -> SettlementTotals:
    try:
        return SettlementTotals.decode(reader.required("48"))
    except DecodeError as exc:
        if exc.position == len(reader.body) and exc.field == "48":
            raise
        raise reader.fail(exc.field, exc.reason, exc.position) from None


def _decode_0500(reader: _Reader) -> SettlementRequest:
    f60 = reader.field60()
    _expect(reader, f60, TYPE_ADMIN, NET_SETTLE)
    terminal_id, merchant_id, stan = _common(reader)
    return SettlementRequest(
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        _totals(reader),
        reader.optional("63") or "",
        reader.text("49"),
    )


def _decode_0510(reader: _Reader) -> SettlementResponse:
    f60 = reader.field60()
    _expect(reader, f60, TYPE_ADMIN, NET_SETTLE)
    terminal_id, merchant_id, stan = _common(reader)
    return SettlementResponse(
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.text("39"),
        _totals(reader) if "48" in reader.fields else None,
        reader.optional("12"),
        reader.optional("13"),
        reader.optional("63"),
        reader.text("49"),
    )


def _decode_0320(reader: _Reader) -> BatchUploadRequest | BatchUploadEndRequest:
    f60 = reader.field60()
    if f60.message_type != TYPE_ADMIN:
        raise reader.fail("60.1", f"expected 00 here, got {f60.message_type}")
    terminal_id, merchant_id, stan = _common(reader)
    text = reader.required("48")
    try:
        if f60.network_code == NET_SETTLE:
            return BatchUploadRequest(
                terminal_id, merchant_id, stan, f60.batch_no, decode_upload_records(text)
            )
        if f60.network_code in (NET_UPLOAD_END_BALANCED, NET_UPLOAD_END_UNBALANCED):
            return BatchUploadEndRequest(
                terminal_id,
                merchant_id,
                stan,
                f60.batch_no,
                decode_upload_end(text),
                after_balanced=f60.network_code == NET_UPLOAD_END_BALANCED,
            )
    except DecodeError as exc:
        raise reader.fail(exc.field, exc.reason, exc.position) from None
    raise reader.fail("60.3", f"0320 with network code {f60.network_code}", 8)


def _decode_0330(reader: _Reader) -> BatchUploadResponse:
    f60 = reader.field60()
    terminal_id, merchant_id, stan = _common(reader)
    if f60.network_code == NET_SETTLE:
        kind, after_balanced = Kind.BATCH_UPLOAD, False
    elif f60.network_code in (NET_UPLOAD_END_BALANCED, NET_UPLOAD_END_UNBALANCED):
        kind, after_balanced = Kind.BATCH_UPLOAD_END, f60.network_code == NET_UPLOAD_END_BALANCED
    else:
        raise reader.fail("60.3", f"0330 with network code {f60.network_code}", 8)
    return BatchUploadResponse(
        kind,
        terminal_id,
        merchant_id,
        stan,
        f60.batch_no,
        reader.text("39"),
        after_balanced,
        reader.optional("63"),
    )


_DECODERS: Final[dict[str, Callable[[_Reader], Message]]] = {
    "0800": _decode_0800,
    "0810": _decode_0810,
    "0820": _decode_0820,
    "0830": _decode_0830,
    "0200": _decode_0200,
    "0210": _decode_transaction_response,
    "0220": _decode_0220,
    "0230": _decode_transaction_response,
    "0400": _decode_0400,
    "0410": _decode_transaction_response,
    "0500": _decode_0500,
    "0510": _decode_0510,
    "0320": _decode_0320,
    "0330": _decode_0330,
}
