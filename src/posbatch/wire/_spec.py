"""The field spec of our wire profile as a pyiso8583 spec dict (DESIGN.md, "Wire profile").

Packed decimal (``data_enc="b"``): pyiso8583 writes and reads it as hex digits,
so numeric fields come back as strings of ``0-9`` that we check ourselves
(a nibble ``A-F`` in a numeric field is bad BCD, a format error).

Odd-length packing: fixed numeric fields are right-aligned with a leading 0
nibble (``left_pad``), variable ones are left-aligned with a trailing 0
nibble (``right_pad``); the length prefix of a numeric variable field counts
digits (``len_count="nibbles"``), of ascii or binary fields bytes.

The header ``h`` is empty here: TPDU and header are framing (``_framing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FIELD_NAMES", "NUMERIC_FIELDS", "SPEC", "TEXT_FIELDS"]


def _fixed_bcd(digits: int, name: str) -> dict[str, Any]:
    if digits % 2:
        return {
            "data_enc": "b",
            "len_enc": "b",
            "len_type": 0,
            "max_len": digits,
            "len_count": "nibbles",
            "left_pad": "0",
            "desc": name,
        }
    return {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": digits // 2, "desc": name}


def _var_bcd(len_bytes: int, max_digits: int, name: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": len_bytes,
        "max_len": max_digits,
        "len_count": "nibbles",
        "right_pad": "0",
        "desc": name,
    }


def _fixed_ascii(size: int, name: str) -> dict[str, Any]:
    return {"data_enc": "ascii", "len_enc": "b", "len_type": 0, "max_len": size, "desc": name}


SPEC: Final[Mapping[str, Mapping[str, Any]]] = {
    "h": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 0, "desc": "none"},
    "t": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 2, "desc": "MTI"},
    "p": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "Bitmap"},
    "1": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "Bitmap 2"},
    "2": _var_bcd(1, 19, "PAN"),
    "3": _fixed_bcd(6, "Processing code"),
    "4": _fixed_bcd(12, "Amount, fen"),
    "11": _fixed_bcd(6, "STAN"),
    "12": _fixed_bcd(6, "Local time hhmmss"),
    "13": _fixed_bcd(4, "Local date MMDD"),
    "14": _fixed_bcd(4, "Expiry YYMM"),
    "22": _fixed_bcd(3, "POS entry mode"),
    "25": _fixed_bcd(2, "POS condition code"),
    "35": _var_bcd(1, 37, "Track 2"),
    "37": _fixed_ascii(12, "Retrieval reference number"),
    "38": _fixed_ascii(6, "Authorisation code"),
    "39": _fixed_ascii(2, "Response code"),
    "41": _fixed_ascii(8, "Terminal ID"),
    "42": _fixed_ascii(15, "Merchant ID"),
    "48": _var_bcd(2, 322, "Settlement totals / batch upload"),
    "49": _fixed_ascii(3, "Currency"),
    "60": _var_bcd(2, 17, "Reserved: message type, batch_no, network code"),
    "61": _var_bcd(2, 29, "Original transaction"),
    "62": {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 2,
        "max_len": 512,
        "desc": "Working keys",
    },
    "63": {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": 2,
        "max_len": 163,
        "desc": "Private: operator / batch state / detail",
    },
    "64": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 8, "desc": "MAC"},
}

# Packed decimal fields that must hold digits only (35, track 2, may also hold D).
NUMERIC_FIELDS: Final[frozenset[str]] = frozenset(
    {"2", "3", "4", "11", "12", "13", "14", "22", "25", "48", "60", "61"}
)

# Ascii fields that must hold printable ascii only.
TEXT_FIELDS: Final[frozenset[str]] = frozenset({"37", "38", "39", "41", "42", "49", "63"})

FIELD_NAMES: Final[Mapping[str, str]] = {k: str(v["desc"]) for k, v in SPEC.items()}
