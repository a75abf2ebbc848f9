"""The salvage read of a request the profile cannot decode: only so that it can be answered 30.

:func:`posbatch.wire.decode_message` refuses anything outside the wire profile
(DESIGN.md): a field the profile does not define, a secondary bitmap, a field
longer than the profile allows. Such a request still deserves an answer (a
format error, 30) rather than silence, which leaves the terminal to time out
and reverse — if its terminal and merchant ids can be found. Finding them means
walking the whole body, so :data:`SALVAGE_SPEC` reads every field 1–128:

- the profile's own fields as :data:`~posbatch.wire.SPEC` reads them (packed
  decimal, pad nibbles, length prefixes), except that a variable field may be as
  long as its prefix can say (LLVAR 99, LLLVAR 999, digits or bytes as the profile
  counts them), a fixed numeric field is its bytes (whatever its pad nibble), a
  variable one's pad nibble may be 0 or F, each field's its own (:func:`salvage_read`
  finds which, with at most :data:`MAX_WALKS` walks), and a text field may hold any
  byte (latin-1: what is echoed is checked by the caller);
- every other field in its ISO 8583:1987 format, as CUP POS terminals send it:
  numeric fields packed decimal (a fixed one just its bytes, a variable one with
  a BCD length in digits), everything else bytes with a BCD length in bytes —
  23 n3, 26 n2, 52 b8, 53 n16, 55 LLLVAR b..999, the secondary bitmap (1), 65–128.

Only :func:`posbatch.host.core._format_error` uses it, for frames that already
failed to decode (never on the hot path), and it never answers with what it
read beyond the few fields the profile allows, checked. The errors pyiso8583
raises under this spec are never shown anywhere (they name only field, length
and position anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import iso8583

from posbatch.wire import SPEC

__all__ = ["MAX_WALKS", "PADDED_FIELDS", "SALVAGE_SPEC", "salvage_read"]

_LLVAR: Final = 1  # BCD length prefix bytes
_LLLVAR: Final = 2
_MAX_OF_PREFIX: Final = {_LLVAR: 99, _LLLVAR: 999}


def _bytes(size: int) -> dict[str, Any]:
    """A fixed field of ``size`` bytes (a fixed numeric field: its packed bytes, pad unread)."""
    return {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": size}


def _n(digits: int) -> dict[str, Any]:
    return _bytes((digits + 1) // 2)


def _var(prefix: int, *, digits: bool) -> dict[str, Any]:
    """A variable field: BCD length prefix of ``prefix`` bytes, counting digits or bytes."""
    spec: dict[str, Any] = {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": prefix,
        "max_len": _MAX_OF_PREFIX[prefix],
    }
    if digits:
        spec.update(len_count="nibbles", right_pad="0")
    return spec


def _widened(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A field of :data:`SPEC` as long as its prefix can say, any byte in a text field."""
    if not spec["len_type"] and spec.get("len_count") == "nibbles":
        return _n(spec["max_len"])  # fixed packed decimal: its bytes, whatever the pad nibble
    wide = dict(spec)
    if spec["len_type"]:
        wide["max_len"] = _MAX_OF_PREFIX[spec["len_type"]]
    if spec["data_enc"] == "ascii":
        wide["data_enc"] = "latin-1"
    return wide


_LL_N, _LLL_N = _var(_LLVAR, digits=True), _var(_LLLVAR, digits=True)
_LL_B, _LLL_B = _var(_LLVAR, digits=False), _var(_LLLVAR, digits=False)

# ISO 8583:1987 formats of the fields 1–128 (x+n amounts, 28–31 and 97, as 9 / 17 bytes).
_STANDARD: Final[dict[str, dict[str, Any]]] = {
    "1": _bytes(8),
    "2": _LL_N,
    **{str(f): _n(d) for f, d in ((3, 6), (4, 12), (5, 12), (6, 12), (7, 10), (8, 8))},
    **{str(f): _n(d) for f, d in ((9, 8), (10, 8), (11, 6), (12, 6))},
    **{str(f): _n(4) for f in range(13, 19)},
    **{str(f): _n(3) for f in range(19, 25)},
    "25": _n(2),
    "26": _n(2),
    "27": _n(1),
    **{str(f): _bytes(9) for f in range(28, 32)},
    "32": _LL_N,
    "33": _LL_N,
    "34": _LL_B,
    "35": _LL_N,
    "36": _LLL_N,
    **{str(f): _bytes(size) for f, size in ((37, 12), (38, 6), (39, 2), (40, 3))},
    **{str(f): _bytes(size) for f, size in ((41, 8), (42, 15), (43, 40))},
    "44": _LL_B,
    "45": _LL_B,
    **{str(f): _LLL_B for f in range(46, 49)},
    **{str(f): _bytes(3) for f in range(49, 52)},
    "52": _bytes(8),
    "53": _n(16),
    **{str(f): _LLL_B for f in range(54, 64)},
    "64": _bytes(8),
    "65": _bytes(8),
    **{str(f): _n(d) for f, d in ((66, 1), (67, 2), (68, 3), (69, 3), (70, 3), (71, 4))},
    **{str(f): _n(d) for f, d in ((72, 4), (73, 6))},
    **{str(f): _n(10) for f in range(74, 82)},
    **{str(f): _n(12) for f in range(82, 86)},
    **{str(f): _n(16) for f in range(86, 90)},
    "90": _n(42),
    **{str(f): _bytes(size) for f, size in ((91, 1), (92, 2), (93, 5), (94, 7), (95, 42))},
    **{str(f): _bytes(size) for f, size in ((96, 8), (97, 17), (98, 25))},
    "99": _LL_N,
    "100": _LL_N,
    **{str(f): _LL_B for f in range(101, 104)},
    **{str(f): _LLL_B for f in range(104, 128)},
    "128": _bytes(8),
}
assert _STANDARD.keys() == {str(f) for f in range(1, 129)}

SALVAGE_SPEC: Final[Mapping[str, Mapping[str, Any]]] = {
    **_STANDARD,
    **{key: _widened(spec) for key, spec in SPEC.items()},
}


# Some CUP terminal SDKs pad odd-length packed decimal with an F nibble, not DESIGN.md's 0, and
# not always in every field alike. The pad nibble never changes where a field ends (its length
# prefix says that), so each variable numeric field's pad is found by the walk itself: a walk
# that stops at a field whose pad nibble reads F is walked again with F for that field alone.
# Each field changes at most once, so a body is walked at most once per such field, plus one —
# never once per combination of pads (2^10 for the ten fields below). Only 0 and F are pads; a
# field padded with anything else stops the walk, and with it the answer.
PADDED_FIELDS: Final = frozenset(key for key, field in SALVAGE_SPEC.items() if "right_pad" in field)
MAX_WALKS: Final = len(PADDED_FIELDS) + 1
_OTHER_PAD: Final = "F"


def salvage_read(body: bytes) -> dict[str, str] | None:
    """Every field of ``body`` read under :data:`SALVAGE_SPEC`, each variable numeric field
    padded with 0 or F (found field by field, at most :data:`MAX_WALKS` walks), or None when
    no walk reads it to its end (the error is dropped: nothing of it is shown)."""
    spec = dict(SALVAGE_SPEC)
    for _ in range(MAX_WALKS):
        try:
            fields, _ = iso8583.decode(body, spec)
        except iso8583.DecodeError as error:  # a length past the end, a pad nibble, bytes left
            key = error.field
            if key is None or not _pad_reads_f(spec, key, error.doc_dec.get(key, "")):
                return None
            spec[key] = {**spec[key], "right_pad": _OTHER_PAD}
            continue
        except Exception:  # whatever else pyiso8583 raises on bytes it cannot take
            return None
        return dict(fields)
    return None  # unreachable: each walk but the last changes one more field's pad


def _pad_reads_f(spec: Mapping[str, Mapping[str, Any]], key: str, digits: str) -> bool:
    """Whether the walk stopped at ``key``'s pad nibble, which reads F where 0 was expected."""
    field = spec[key]
    return (
        key in PADDED_FIELDS
        and field.get("right_pad") != _OTHER_PAD
        and digits[-1:] == _OTHER_PAD  # its bytes as hex, pad still on
    )
