"""Search filters as people type them into a URL: parsed strictly (one-line ConfigError
naming the field, never echoing what was typed), and written back to the URL unchanged
so that a refresh or a bookmark keeps them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Final

from posbatch.backoffice._time import beijing, parse_beijing
from posbatch.batch.ids import MERCHANT_ID_CHARS, TERMINAL_ID_CHARS
from posbatch.batch.model import Kind
from posbatch.batch.money import format_fen, parse_yuan
from posbatch.errors import ConfigError
from posbatch.host.store import TransactionStatus

__all__ = ["PARAM_CHARS_MAX", "Cursor", "Scope", "TransactionFilter"]

PARAM_CHARS_MAX: Final = 64
_ID: Final = re.compile(r"[A-Za-z0-9]+")
_CODE: Final = re.compile(r"[0-9A-Z]{2}")
_CURSOR: Final = re.compile(r"([0-9]{20})-([0-9]{1,18})")
STATUSES: Final = (
    TransactionStatus.APPROVED,
    TransactionStatus.DECLINED,
    TransactionStatus.REVERSED,
    TransactionStatus.VOIDED,
)
KINDS: Final = (Kind.SALE.value, Kind.VOID.value, Kind.REFUND.value)


@dataclass(frozen=True, slots=True)
class Scope:
    """What a user may see: every merchant (None) or one merchant's data only."""

    merchant_id: str | None = None


def _param(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if len(value) > PARAM_CHARS_MAX:
        raise ConfigError(f"{name}: longer than {PARAM_CHARS_MAX} characters")
    return value.strip()


def terminal_id_param(params: Mapping[str, str], name: str = "terminal_id") -> str | None:
    value = _param(params, name)
    if not value:
        return None
    if len(value) != TERMINAL_ID_CHARS or not _ID.fullmatch(value):
        raise ConfigError(f"{name}: a terminal id is {TERMINAL_ID_CHARS} letters or digits")
    return value


def merchant_id_param(params: Mapping[str, str], name: str = "merchant_id") -> str | None:
    value = _param(params, name)
    if not value:
        return None
    if len(value) != MERCHANT_ID_CHARS or not _ID.fullmatch(value):
        raise ConfigError(f"{name}: a merchant id is {MERCHANT_ID_CHARS} letters or digits")
    return value


def time_param(params: Mapping[str, str], name: str) -> datetime | None:
    value = _param(params, name)
    if not value:
        return None
    try:
        return parse_beijing(value)
    except ConfigError:
        raise ConfigError(f"{name}: Beijing time like 2026-12-05 23:30") from None


def number_param(params: Mapping[str, str], name: str, digits_max: int) -> int | None:
    value = _param(params, name)
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > digits_max:
        raise ConfigError(f"{name}: at most {digits_max} digits")
    return int(value)


def choice_param(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = _param(params, name)
    if not value:
        return None
    if value not in choices:
        raise ConfigError(f"{name}: one of {', '.join(choices)}")
    return value


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a keyset page starts: after (created_at, row id), newest first."""

    created_at: datetime
    row_id: int

    def encode(self) -> str:
        return f"{self.created_at.astimezone(UTC):%Y%m%d%H%M%S%f}-{self.row_id}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor | None:
        if not text:
            return None
        match = _CURSOR.fullmatch(text.strip()) if len(text) <= PARAM_CHARS_MAX else None
        if match is None:
            raise ConfigError("after: not a page cursor")
        try:
            moment = datetime.strptime(match[1], "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError("after: not a page cursor") from None
        return cls(moment, int(match[2]))


@dataclass(frozen=True, slots=True)
class TransactionFilter:
    """The transaction search: every field optional, all of them ANDed."""

    merchant_id: str | None = None
    terminal_id: str | None = None
    since: datetime | None = None  # Beijing time typed, kept as UTC
    until: datetime | None = None
    stan: int | None = None
    rrn: str | None = None
    last4: str | None = None
    amount_fen: int | None = None
    response_code: str | None = None
    status: str | None = None
    kind: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> TransactionFilter:
        rrn = _param(params, "rrn")
        if rrn and (len(rrn) > 12 or not _ID.fullmatch(rrn)):
            raise ConfigError("rrn: up to 12 letters or digits")
        last4 = _param(params, "last4")
        if last4 and not (len(last4) == 4 and last4.isascii() and last4.isdigit()):
            raise ConfigError("last4: the last 4 digits of the card")
        amount = _param(params, "amount")
        try:
            amount_fen = parse_yuan(amount) if amount else None
        except ConfigError:
            raise ConfigError("amount: yuan with at most 2 decimals, like 12.50") from None
        code = _param(params, "response_code").upper()
        if code and not _CODE.fullmatch(code):
            raise ConfigError("response_code: 2 letters or digits, like 00 or A0")
        since, until = time_param(params, "since"), time_param(params, "until")
        if since is not None and until is not None and until <= since:
            raise ConfigError("until: must be after since")
        return cls(
            merchant_id=merchant_id_param(params),
            terminal_id=terminal_id_param(params),
            since=since,
            until=until,
            stan=number_param(params, "stan", 6),
            rrn=rrn or None,
            last4=last4 or None,
            amount_fen=amount_fen,
            response_code=code or None,
            status=choice_param(params, "status", STATUSES),
            kind=choice_param(params, "kind", KINDS),
        )

    def query(self) -> dict[str, str]:
        """The URL parameters that give this filter back (empty ones left out)."""
        out: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if item.name in ("since", "until"):
                out[item.name] = f"{beijing(value):%Y-%m-%d %H:%M}"
            elif item.name == "amount_fen":
                out["amount"] = format_fen(value)
            elif item.name == "stan":
                out["stan"] = f"{value:06d}"
            else:
                out[item.name] = str(value)
        return out
