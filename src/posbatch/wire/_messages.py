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
import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple, TypeAlias, TypedDict, TypeVar

import iso8583
import iso8583.decoder

from posbatch.batch.cards import mask_pan
from posbatch.batch.limits import (
    BATCH_NO_MAX,
    PAN_DIGITS_MAX,
    PAN_DIGITS_MIN,
    STAN_FIRST,
    STAN_MAX,
)
from posbatch.batch.model import BatchStateDetail, Kind, SettlementTotals
from posbatch.errors import DecodeError, EncodeError, MacError
from posbatch.wire import _codec
from posbatch.wire._crypto import MAC_BYTES, compute_mac, verify_mac
from posbatch.wire._fields import (
    OriginalTransaction,
    UploadRecord,
    decode_batch_detail,
    decode_totals,
    decode_track2,
    decode_upload_end,
    decode_upload_records,
    encode_totals,
    encode_track2,
    encode_upload_end,
    encode_upload_records,
    non_digit_reason,
    parse_field60,
)
from posbatch.wire._spec import NUMERIC_FIELDS, SPEC, TEXT_FIELDS

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

_T = TypeVar("_T")

CURRENCY_CNY: Final = "156"
PROCESSING_SALE: Final = "000000"
PROCESSING_CREDIT: Final = "200000"  # void and refund


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
_REVERSIBLE: Final = frozenset({Kind.SALE, Kind.VOID})
_RESPONSE_MTI_OF_KIND: Final = {Kind.SALE: "0210", Kind.VOID: "0210", Kind.REFUND: "0230"}
_PROCESSING_OF_KIND: Final = {
    Kind.SALE: PROCESSING_SALE,
    Kind.VOID: PROCESSING_CREDIT,
    Kind.REFUND: PROCESSING_CREDIT,
}
# Decoding looks up by the wire's own strings: hashing an enum member is a Python call.
_PROCESSING_OF_TYPE: Final = {
    TYPE_SALE: PROCESSING_SALE,
    TYPE_VOID: PROCESSING_CREDIT,
    TYPE_REFUND: PROCESSING_CREDIT,
}
_REVERSIBLE_TYPES: Final = frozenset({TYPE_SALE, TYPE_VOID})
_RESPONSE_MTI_OF_TYPE: Final = {TYPE_SALE: "0210", TYPE_VOID: "0210", TYPE_REFUND: "0230"}


def _n(value: int, width: int, field_number: str) -> str:
    if not 0 <= value < 10**width:
        raise EncodeError(f"{value} does not fit in {width} digits", field=field_number)
    return f"{value:0{width}d}"


def _stan(value: int) -> str:
    if not STAN_FIRST <= value <= STAN_MAX:
        raise EncodeError(f"STAN {value} outside {STAN_FIRST}..{STAN_MAX}", field="11")
    return f"{value:06d}"


def _pan(value: str) -> str:
    if not (PAN_DIGITS_MIN <= len(value) <= PAN_DIGITS_MAX and value.isdigit()):
        raise EncodeError(f"PAN must be {PAN_DIGITS_MIN}..{PAN_DIGITS_MAX} digits", field="2")
    return value


def _field60(
    message_type: str, batch_no: int, network_code: str, *, no_batch_ok: bool = False
) -> str:
    """Field 60 of our own messages (60.1 and 60.3 are this module's constants); 60.2 is
    ``000000`` only where ``no_batch_ok`` (a sign-on from a terminal with no batch yet)."""
    low = 0 if no_batch_ok else 1
    if not low <= batch_no <= BATCH_NO_MAX:
        raise EncodeError(f"batch_no {batch_no} outside {low}..{BATCH_NO_MAX}", field="60.2")
    return f"{message_type}{batch_no:06d}{network_code}"


# --- requests -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignOnRequest:
    """0800 / 60.3 003. The terminal's own batch_no goes in 60.2 — ``000000`` (0) when it
    has none yet, a new terminal's first sign-on: the host does not read it, its answer
    names the batch; 63 = operator."""

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
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_SIGN_ON, no_batch_ok=True),
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
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_SIGN_OFF),
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
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_ECHO),
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
        fields["60"] = _field60(TYPE_SALE, self.batch_no, NET_FINANCIAL)
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
        if self.original_rrn is not None:
            fields["37"] = self.original_rrn
        if self.original_auth_code is not None:
            fields["38"] = self.original_auth_code
        fields["60"] = _field60(TYPE_VOID, self.batch_no, NET_FINANCIAL)
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
        if self.original_rrn is not None:
            fields["37"] = self.original_rrn
        fields["60"] = _field60(TYPE_REFUND, self.batch_no, NET_FINANCIAL)
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
        if self.original_kind not in _REVERSIBLE:
            raise EncodeError(f"cannot reverse a {self.original_kind.value}", field="60.1")
        fields = _card_fields(self, _PROCESSING_OF_KIND[self.original_kind])
        fields["t"] = self.MTI
        fields["39"] = self.reason.value
        fields["60"] = _field60(_TYPE_OF_KIND[self.original_kind], self.batch_no, NET_FINANCIAL)
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
            "48": encode_totals(self.totals),
            "49": self.currency,
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_SETTLE),
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
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_SETTLE),
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
            "60": _field60(TYPE_ADMIN, self.batch_no, code),
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
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_SIGN_ON, no_batch_ok=True),
        }
        if self.local_time is not None:
            fields["12"] = self.local_time
        if self.local_date is not None:
            fields["13"] = self.local_date
        if self.working_keys is not None:
            fields["62"] = self.working_keys.hex()
        if self.detail is not None:
            fields["63"] = self.detail
        return fields

    @property
    def batch_state(self) -> BatchStateDetail | None:
        return decode_batch_detail(self.detail) if self.detail else None


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
            "60": _field60(TYPE_ADMIN, self.batch_no, network),
        }
        if self.local_time is not None:
            fields["12"] = self.local_time
        if self.local_date is not None:
            fields["13"] = self.local_date
        if self.detail is not None:
            fields["63"] = self.detail
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
        return _RESPONSE_MTI_OF_KIND.get(self.kind, "0410")

    @property
    def approved(self) -> bool:
        return self.response_code == "00"

    def to_fields(self) -> dict[str, str]:
        if self.kind == Kind.REVERSAL:
            transaction_kind = self.original_kind
            if transaction_kind not in _REVERSIBLE:
                raise EncodeError(f"cannot reverse a {transaction_kind}", field="60.1")
        else:
            transaction_kind = self.kind
            if self.original_kind is not None:
                raise EncodeError("original_kind is for a reversal's answer only", field="60.1")
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
            "60": _field60(_TYPE_OF_KIND[transaction_kind], self.batch_no, NET_FINANCIAL),
        }
        if self.pan is not None:
            fields["2"] = _pan(self.pan)
        if self.local_time is not None:
            fields["12"] = self.local_time
        if self.local_date is not None:
            fields["13"] = self.local_date
        if self.rrn is not None:
            fields["37"] = self.rrn
        if self.auth_code is not None:
            fields["38"] = self.auth_code
        if self.detail is not None:
            fields["63"] = self.detail
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
            "60": _field60(TYPE_ADMIN, self.batch_no, NET_SETTLE),
        }
        if self.totals is not None:
            fields["48"] = encode_totals(self.totals)
        if self.local_time is not None:
            fields["12"] = self.local_time
        if self.local_date is not None:
            fields["13"] = self.local_date
        if self.detail is not None:
            fields["63"] = self.detail
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
            "60": _field60(TYPE_ADMIN, self.batch_no, network),
        }
        if self.detail is not None:
            fields["63"] = self.detail
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
    if message.expiry is not None:
        fields["14"] = message.expiry
    if message.track2 is not None:
        fields["35"] = encode_track2(message.track2)
    return fields


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _first_bad(
    fields: Mapping[str, str], numbers: frozenset[str], good: Callable[[str], bool]
) -> str:
    """The lowest-numbered of ``numbers`` in ``fields`` whose value is not ``good``."""
    return min((n for n in numbers & fields.keys() if not good(fields[n])), key=int)


# The checks run on every message, so the valid case must stay cheap: which numeric and
# which text fields a bitmap holds is worked out once per bitmap, as a C-level getter;
# gathering and testing the values is then two calls. Bitmaps repeat (one or two per kind
# of message), and a peer sending random ones only evicts entries of a bounded cache.
BITMAP_CACHE_MAX: Final = 256
_Getter: TypeAlias = Callable[[Mapping[str, str]], "tuple[str, ...] | str"]


def _getter(numbers: list[str]) -> _Getter | None:
    # itemgetter of one key returns the value itself; "".join of a str is that str.
    return operator.itemgetter(*numbers) if numbers else None


@functools.lru_cache(maxsize=BITMAP_CACHE_MAX)
def _getters(bitmap: int) -> tuple[_Getter | None, _Getter | None]:
    """Getters of the numeric and of the text fields present in a primary bitmap."""
    present = [str(number) for number in range(2, 65) if bitmap >> (64 - number) & 1]
    return (
        _getter([number for number in present if number in NUMERIC_FIELDS]),
        _getter([number for number in present if number in TEXT_FIELDS]),
    )


# Fixed-length numeric fields of an odd number of digits start with a pad nibble.
_LEAD_NIBBLES: Final = {number: 1 if "left_pad" in SPEC[number] else 0 for number in NUMERIC_FIELDS}


def _check_values(fields: Mapping[str, str], bitmap: int) -> tuple[str, str, int] | None:
    """None when every numeric field holds digits and every text field printable ascii.

    Otherwise (field, reason, nibbles from the start of the field's data to the
    bad character) for the lowest-numbered field that does not. The reason
    names the one bad character and where it is, never the field's value: a
    numeric field may carry a card number (2, 35, 48), and a text field
    whatever a peer put there.
    """
    numeric, text = _getters(bitmap)
    if numeric is not None and not "".join(numeric(fields)).isdigit():
        number = _first_bad(fields, NUMERIC_FIELDS, _decimal)
        reason, index = non_digit_reason(fields[number])
        return number, reason, index + _LEAD_NIBBLES[number]
    if text is not None:
        joined = "".join(text(fields))
        if not (joined.isascii() and joined.isprintable()):
            number = _first_bad(fields, TEXT_FIELDS, _printable_ascii)
            value = fields[number]
            index = next(i for i, char in enumerate(value) if not _printable_ascii(char))
            reason = f"not printable ascii: {value[index]!r} at character {index + 1}"
            return number, reason, 2 * index  # one byte (two nibbles) per character
    return None


def _decimal(text: str) -> bool:
    return text.isdigit() and text.isascii()


_BITMAP_START: Final = 2
_BITMAP_END: Final = 10

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
    body = _codec.encode(fields)  # the plain case: pyiso8583's bytes, our checks passed
    if body is None:
        try:
            body, _ = iso8583.encode(fields, SPEC)
        except iso8583.EncodeError as exc:
            raise EncodeError(exc.msg, field=exc.field) from None
        # The same checks decode makes, so that we never send what a peer must refuse.
        bad = _check_values(fields, int.from_bytes(body[_BITMAP_START:_BITMAP_END], "big"))
        if bad is not None:
            raise EncodeError(bad[1], field=bad[0])
    if with_mac:
        assert mak is not None
        body[-MAC_BYTES:] = compute_mac(mak, bytes(body[:-MAC_BYTES]))
    return bytes(body)


# --- decode -----------------------------------------------------------------------


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


class _Fields(dict[str, str]):
    """The decoded fields of one body, and where they came from.

    Reading a field the message needs is ``fields["41"]``: a missing one is a
    :class:`DecodeError` (``__missing__``), so the decoders read like the
    field table and the common case costs a plain dict lookup.
    """

    __slots__ = ("body", "encoded_by_pyiso8583")

    body: bytes
    encoded_by_pyiso8583: dict[str, dict[str, bytes]] | None  # None: the fast path read it

    @property
    def encoded(self) -> dict[str, dict[str, bytes]]:
        """pyiso8583's encoded parts (where each field lies), read again only on an error."""
        if self.encoded_by_pyiso8583 is None:
            self.encoded_by_pyiso8583 = iso8583.decode(self.body, SPEC)[1]
        return self.encoded_by_pyiso8583

    def __missing__(self, number: str) -> str:
        raise DecodeError(f"field {number} is required here", field=number, position=len(self.body))

    def position(self, number: str) -> int:
        """Byte offset in the body where the data of field ``number`` starts."""
        position = _BITMAP_END
        for key in sorted((k for k in self.encoded if k.isdigit()), key=int):
            if key == number:
                return position + len(self.encoded[key]["len"])
            position += len(self.encoded[key]["len"]) + len(self.encoded[key]["data"])
        return min(position, len(self.body))

    def fail(self, number: str, reason: str, offset_digits: int = 0) -> DecodeError:
        """A DecodeError for (sub-)field ``number``, ``offset_digits`` into its data."""
        base = number.split(".", maxsplit=1)[0]
        return DecodeError(reason, field=number, position=self.position(base) + offset_digits // 2)


_PAD_FAILURE: Final = re.compile(r"Field data is (\d+) nibbles, expecting (\d+)")


def _reason(exc: iso8583.DecodeError) -> str:
    """pyiso8583's message, except that a bad pad nibble says so."""
    found = _PAD_FAILURE.fullmatch(exc.msg)
    if found is not None and int(found[1]) == int(found[2]) + 1:
        # All the bytes are there: the odd-length field's pad nibble is not 0.
        return f"the pad nibble of {found[2]} digits is not 0"
    return str(exc.msg)


def _bad_mti(body: bytes) -> DecodeError:
    """Why the first two bytes of ``body`` are not an MTI of the profile."""
    if len(body) < _BITMAP_START:
        return DecodeError("body is shorter than an MTI", field="t", position=0)
    digits = body[:_BITMAP_START].hex().upper()
    if not digits.isdigit():
        return DecodeError(f"MTI is not packed decimal: {digits}", field="t", position=0)
    return DecodeError(f"MTI {digits} is not in the wire profile", field="t", position=0)


def _decode_raw(body: bytes) -> _Fields:
    """The checked fields of ``body``, whose MTI is known to be in the profile."""
    if len(body) < _BITMAP_END:
        raise DecodeError("body is shorter than MTI + bitmap", field="p", position=_BITMAP_START)
    bitmap = int.from_bytes(body[_BITMAP_START:_BITMAP_END], "big")
    extra = bitmap & ~_ALLOWED_FIELDS_MASK
    if extra:
        bit = 65 - extra.bit_length()  # the lowest-numbered field not in the profile
        name = "secondary bitmap" if bit == 1 else f"field {bit}"
        raise DecodeError(f"{name} is not in the wire profile", field="p", position=_BITMAP_START)
    decoded = _codec.decode(body)  # the plain case: pyiso8583's dict, our checks passed
    encoded = None
    if decoded is None:
        try:
            decoded, encoded = iso8583.decode(body, SPEC)
        except iso8583.DecodeError as exc:
            raise DecodeError(_reason(exc), field=exc.field, position=exc.pos) from None
    fields = _Fields(decoded)
    fields.body = body
    fields.encoded_by_pyiso8583 = encoded
    if encoded is not None:  # pyiso8583 read it: our checks are still to be made
        bad = _check_values(fields, bitmap)
        if bad is not None:
            raise fields.fail(*bad)
    if "35" in fields:
        try:
            fields["35"] = decode_track2(fields["35"])
        except DecodeError as exc:
            raise fields.fail("35", exc.reason, exc.position) from None
    return fields


def decode_message(body: bytes) -> Message:
    """The typed message in an ISO 8583 body; :class:`DecodeError` on anything else.

    Checks, in order: MTI and bitmap (only fields of the profile, no secondary
    bitmap), each field's length and packing (pyiso8583), packed decimal in
    every numeric field and printable ascii in every text field, then what the
    MTI needs: the fields it requires, 60.1 / 60.3 / 3 fitting together, and
    the sub-fields of 48, 60 and 61. Fields a message does not use are ignored.
    """
    decoder = _DECODER_OF_MTI.get(body[:_BITMAP_START])
    if decoder is None:
        raise _bad_mti(body)
    return decoder(_decode_raw(body))


def _sub_field(fields: _Fields, number: str, decode: Callable[[str], _T]) -> _T:
    """``decode(fields[number])`` with sub-field errors placed in the body."""
    text = fields[number]
    try:
        return decode(text)
    except DecodeError as exc:
        raise fields.fail(exc.field, exc.reason, exc.position) from None


class _F60(NamedTuple):
    """Field 60 while decoding (a tuple: cheaper than building a :class:`Field60`)."""

    message_type: str
    batch_no: int
    network_code: str
    extra: str


def _read_field60(fields: _Fields, *, no_batch_ok: bool = False) -> _F60:
    text = fields["60"]
    try:
        return tuple.__new__(_F60, parse_field60(text, no_batch_ok=no_batch_ok))
    except DecodeError as exc:
        raise fields.fail(exc.field, exc.reason, exc.position) from None


def _expect(fields: _Fields, f60: _F60, message_type: str, network: str | None) -> None:
    if f60.message_type != message_type:
        raise fields.fail("60.1", f"expected {message_type} here, got {f60.message_type}")
    if network is not None and f60.network_code != network:
        raise fields.fail("60.3", f"expected {network} here, got {f60.network_code}", 8)


def _stan_of(fields: _Fields) -> int:
    stan = int(fields["11"])
    if stan == 0:
        raise fields.fail("11", "STAN 000000 is not a STAN")
    return stan


def _pan_of(fields: _Fields) -> str:
    pan = fields["2"]
    if not PAN_DIGITS_MIN <= len(pan) <= PAN_DIGITS_MAX:
        raise fields.fail(
            "2", f"PAN must be {PAN_DIGITS_MIN}..{PAN_DIGITS_MAX} digits, has {len(pan)}"
        )
    return pan


def _decode_0800(fields: _Fields) -> SignOnRequest:
    f60 = _read_field60(fields, no_batch_ok=True)
    _expect(fields, f60, TYPE_ADMIN, NET_SIGN_ON)
    return SignOnRequest(
        fields["41"], fields["42"], _stan_of(fields), f60.batch_no, fields.get("63", "")
    )


def _decode_0810(fields: _Fields) -> SignOnResponse:
    f60 = _read_field60(fields)
    _expect(fields, f60, TYPE_ADMIN, NET_SIGN_ON)
    keys = fields.get("62")
    return SignOnResponse(
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        fields["39"],
        fields.get("12"),
        fields.get("13"),
        bytes.fromhex(keys) if keys is not None else None,
        fields.get("63"),
    )


_ADMIN_KIND_OF_NETWORK: Final = {NET_SIGN_OFF: Kind.SIGN_OFF, NET_ECHO: Kind.ECHO}


def _admin_kind(fields: _Fields, f60: _F60) -> Kind:
    _expect(fields, f60, TYPE_ADMIN, None)
    kind = _ADMIN_KIND_OF_NETWORK.get(f60.network_code)
    if kind is None:
        raise fields.fail("60.3", f"{fields['t']} with network code {f60.network_code}", 8)
    return kind


def _decode_0820(fields: _Fields) -> SignOffRequest | EchoRequest:
    f60 = _read_field60(fields)
    kind = _admin_kind(fields, f60)
    request = SignOffRequest if kind == Kind.SIGN_OFF else EchoRequest
    return request(fields["41"], fields["42"], _stan_of(fields), f60.batch_no)


def _decode_0830(fields: _Fields) -> AdminResponse:
    f60 = _read_field60(fields)
    kind = _admin_kind(fields, f60)
    return AdminResponse(
        kind,
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        fields["39"],
        fields.get("12"),
        fields.get("13"),
        fields.get("63"),
    )


def _transaction_kind(fields: _Fields, f60: _F60) -> Kind:
    kind = _KIND_OF_TYPE.get(f60.message_type)
    if kind is None:
        raise fields.fail("60.1", f"unknown message type {f60.message_type}")
    if f60.network_code != NET_FINANCIAL:
        raise fields.fail("60.3", f"expected 000 here, got {f60.network_code}", 8)
    if fields["3"] != _PROCESSING_OF_TYPE[f60.message_type]:
        raise fields.fail("3", f"processing code {fields['3']} does not fit {kind.value}")
    return kind


class _CardFields(TypedDict):
    pan: str
    expiry: str | None
    entry_mode: str
    condition_code: str
    track2: str | None
    currency: str


def _card(fields: _Fields) -> _CardFields:
    return {
        "pan": _pan_of(fields),
        "expiry": fields.get("14"),
        "entry_mode": fields["22"],
        "condition_code": fields["25"],
        "track2": fields.get("35"),
        "currency": fields["49"],
    }


def _original(fields: _Fields) -> OriginalTransaction:
    return _sub_field(fields, "61", OriginalTransaction.decode)


def _decode_0200(fields: _Fields) -> SaleRequest | VoidRequest:
    f60 = _read_field60(fields)
    kind = _transaction_kind(fields, f60)
    if kind == Kind.SALE:
        return SaleRequest(
            fields["41"],
            fields["42"],
            _stan_of(fields),
            f60.batch_no,
            int(fields["4"]),
            pan=_pan_of(fields),
            expiry=fields.get("14"),
            entry_mode=fields["22"],
            condition_code=fields["25"],
            track2=fields.get("35"),
            currency=fields["49"],
        )
    if kind == Kind.VOID:
        return VoidRequest(
            fields["41"],
            fields["42"],
            _stan_of(fields),
            f60.batch_no,
            int(fields["4"]),
            original=_original(fields),
            original_rrn=fields.get("37"),
            original_auth_code=fields.get("38"),
            **_card(fields),
        )
    raise fields.fail("60.1", f"0200 cannot carry a {kind.value}")


def _decode_0220(fields: _Fields) -> RefundRequest:
    f60 = _read_field60(fields)
    kind = _transaction_kind(fields, f60)
    if kind != Kind.REFUND:
        raise fields.fail("60.1", f"0220 cannot carry a {kind.value}")
    return RefundRequest(
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        int(fields["4"]),
        original=_original(fields),
        original_rrn=fields.get("37"),
        **_card(fields),
    )


def _decode_0400(fields: _Fields) -> ReversalRequest:
    f60 = _read_field60(fields)
    kind = _transaction_kind(fields, f60)
    if f60.message_type not in _REVERSIBLE_TYPES:
        raise fields.fail("60.1", f"a {kind.value} cannot be reversed")
    try:
        reason = ReversalReason(fields["39"])
    except ValueError:
        raise fields.fail("39", f"reversal reason {fields['39']!r}") from None
    return ReversalRequest(
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        int(fields["4"]),
        original_kind=kind,
        reason=reason,
        original=_original(fields) if "61" in fields else None,
        **_card(fields),
    )


def _decode_transaction_response(fields: _Fields) -> TransactionResponse:
    f60 = _read_field60(fields)
    transaction_kind = _transaction_kind(fields, f60)
    mti = fields["t"]
    if mti == "0410":
        if f60.message_type not in _REVERSIBLE_TYPES:
            raise fields.fail("60.1", f"a {transaction_kind.value} cannot be reversed")
        kind = Kind.REVERSAL
    elif _RESPONSE_MTI_OF_TYPE[f60.message_type] != mti:
        raise fields.fail("60.1", f"{mti} cannot answer a {transaction_kind.value}")
    else:
        kind = transaction_kind
    pan = _pan_of(fields) if "2" in fields else None
    return TransactionResponse(
        kind,
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        fields["39"],
        int(fields["4"]),
        original_kind=transaction_kind if kind == Kind.REVERSAL else None,
        pan=pan,
        rrn=fields.get("37"),
        auth_code=fields.get("38"),
        local_time=fields.get("12"),
        local_date=fields.get("13"),
        detail=fields.get("63"),
        currency=fields["49"],
    )


def _decode_0500(fields: _Fields) -> SettlementRequest:
    f60 = _read_field60(fields)
    _expect(fields, f60, TYPE_ADMIN, NET_SETTLE)
    return SettlementRequest(
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        _sub_field(fields, "48", decode_totals),
        fields.get("63", ""),
        fields["49"],
    )


def _decode_0510(fields: _Fields) -> SettlementResponse:
    f60 = _read_field60(fields)
    _expect(fields, f60, TYPE_ADMIN, NET_SETTLE)
    totals = _sub_field(fields, "48", decode_totals) if "48" in fields else None
    return SettlementResponse(
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        fields["39"],
        totals,
        fields.get("12"),
        fields.get("13"),
        fields.get("63"),
        fields["49"],
    )


def _upload_network(fields: _Fields, f60: _F60) -> tuple[Kind, bool]:
    """(BATCH_UPLOAD or BATCH_UPLOAD_END, after_balanced) from 60.1 / 60.3 of a 0320/0330."""
    _expect(fields, f60, TYPE_ADMIN, None)
    if f60.network_code == NET_SETTLE:
        return Kind.BATCH_UPLOAD, False
    if f60.network_code == NET_UPLOAD_END_BALANCED:
        return Kind.BATCH_UPLOAD_END, True
    if f60.network_code == NET_UPLOAD_END_UNBALANCED:
        return Kind.BATCH_UPLOAD_END, False
    raise fields.fail("60.3", f"{fields['t']} with network code {f60.network_code}", 8)


def _decode_0320(fields: _Fields) -> BatchUploadRequest | BatchUploadEndRequest:
    f60 = _read_field60(fields)
    kind, after_balanced = _upload_network(fields, f60)
    if kind == Kind.BATCH_UPLOAD:
        return BatchUploadRequest(
            fields["41"],
            fields["42"],
            _stan_of(fields),
            f60.batch_no,
            _sub_field(fields, "48", decode_upload_records),
        )
    return BatchUploadEndRequest(
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        _sub_field(fields, "48", decode_upload_end),
        after_balanced=after_balanced,
    )


def _decode_0330(fields: _Fields) -> BatchUploadResponse:
    f60 = _read_field60(fields)
    kind, after_balanced = _upload_network(fields, f60)
    return BatchUploadResponse(
        kind,
        fields["41"],
        fields["42"],
        _stan_of(fields),
        f60.batch_no,
        fields["39"],
        after_balanced,
        fields.get("63"),
    )


_DECODERS: Final[dict[str, Callable[[_Fields], Message]]] = {
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
_DECODER_OF_MTI: Final = {bytes.fromhex(mti): decoder for mti, decoder in _DECODERS.items()}
