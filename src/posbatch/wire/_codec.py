"""A straight-line codec for :data:`SPEC`, giving exactly what pyiso8583 gives, or nothing.

Theory of operation
-------------------
pyiso8583 stays the codec: it reads any spec, and every error a peer or our
own code meets is its message. What it spends per message (about 60 µs to
decode a sale, 60 µs to encode its answer, on a slow core) is mostly the
generality of reading a spec dict field by field. :data:`SPEC` never changes,
so this module compiles it once into a table and reads or writes a body in
one pass — but only the *plain case*: a body or a dict that pyiso8583 takes
without complaint and that holds nothing our own checks would refuse.

:func:`decode` returns pyiso8583's ``doc_dec`` (the same dict, key for key)
or None; :func:`encode` returns pyiso8583's bytes (and sets ``"p"`` in the
dict as pyiso8583 does) or None. None means "not the plain case": the caller
runs pyiso8583, which either takes it after all (a numeric field holding hex
letters, an empty variable field) or raises the error the caller reports. So
a frame never gets a different answer for taking the fast path, only a
cheaper one — the differential tests (tests/wire/test_wire_codec.py) hold
that for every message kind, hypothesis-drawn messages, mutated and random
bodies, and hostile dicts; ``bench/codec.py`` measures both.

The plain case of both is stricter than pyiso8583 where our own checks follow
it (``_check_values`` of :mod:`posbatch.wire._messages`): numeric fields
(:data:`NUMERIC_FIELDS`) hold ascii digits only and text fields
(:data:`TEXT_FIELDS`) printable ascii only, so what it returns needs no second
check — and what fails that check is left to pyiso8583 and the check, which
name the bad character and its place.
"""

from __future__ import annotations

import binascii
from typing import Final, NamedTuple

from posbatch.wire._spec import NUMERIC_FIELDS, SPEC, TEXT_FIELDS

__all__ = ["decode", "encode"]

_MTI_END: Final = 2
_BITMAP_END: Final = 10


class _Field(NamedTuple):
    """One numbered field of :data:`SPEC`, as the one pass needs it."""

    key: str
    bit: int  # its bit in the 64-bit primary bitmap
    len_type: int  # bytes of the length prefix (0: fixed)
    max_len: int  # digits when ``nibbles``, else bytes
    nibbles: bool  # the length counts digits (packed decimal)
    binary: bool  # data_enc "b": hex digits on our side, bytes on the wire
    left_pad: bool  # an odd count of digits starts with the pad nibble (else ends with it)
    digits_only: bool  # the plain case (both ways): ascii digits only
    printable: bool  # the plain case (both ways): printable ascii only


def _compile() -> tuple[_Field, ...]:
    fields = []
    for key, spec in SPEC.items():
        if not key.isdigit() or not 2 <= int(key) <= 64:
            continue
        # The one pass knows these encodings only; a spec change must come here first.
        assert spec["data_enc"] in ("b", "ascii"), key
        assert spec["len_type"] == 0 or spec["len_enc"] == "bcd", key
        fields.append(
            _Field(
                key=key,
                bit=1 << (64 - int(key)),
                len_type=spec["len_type"],
                max_len=spec["max_len"],
                nibbles=spec.get("len_count", "bytes") == "nibbles",
                binary=spec["data_enc"] == "b",
                left_pad=bool(spec.get("left_pad")),
                digits_only=key in NUMERIC_FIELDS,
                printable=key in TEXT_FIELDS,
            )
        )
    return tuple(sorted(fields, key=lambda field: int(field.key)))


_FIELDS: Final = _compile()
_BY_KEY: Final = {field.key: field for field in _FIELDS}
_ALLOWED_BITS: Final = sum(field.bit for field in _FIELDS)
# Keys besides the fields: pyiso8583 writes "p" itself and ignores "h" (max_len 0).
_ENCODE_KEYS: Final = frozenset({"t", "p", "h", *_BY_KEY})
assert SPEC["h"]["max_len"] == 0 and SPEC["t"]["max_len"] == 2 and SPEC["p"]["data_enc"] == "b"


def _present(bitmap: int) -> tuple[_Field, ...]:
    """The fields ``bitmap`` names, in order (kept per bitmap: a profile has a few dozen)."""
    fields = _PRESENT.get(bitmap)
    if fields is None:
        fields = tuple(field for field in _FIELDS if bitmap & field.bit)
        if len(_PRESENT) < _PRESENT_MAX:
            _PRESENT[bitmap] = fields
    return fields


_PRESENT: Final[dict[int, tuple[_Field, ...]]] = {}
_PRESENT_MAX: Final = 1024


def decode(body: bytes) -> dict[str, str] | None:
    """pyiso8583's decoded dict of ``body`` under :data:`SPEC` — whose numeric and text
    fields pass our checks — or None: ask pyiso8583."""
    size = len(body)
    if size < _BITMAP_END:
        return None
    bitmap = int.from_bytes(body[_MTI_END:_BITMAP_END], "big")
    if not bitmap or bitmap & ~_ALLOWED_BITS:
        return None  # a secondary bitmap, a field outside the profile, or none at all
    doc = {"t": body[:_MTI_END].hex().upper(), "p": body[_MTI_END:_BITMAP_END].hex().upper()}
    index = _BITMAP_END
    for key, _bit, len_type, max_len, nibbles, binary, left_pad, digits_only, printable in _present(
        bitmap
    ):
        if len_type:
            prefix = body[index : index + len_type].hex()
            if len(prefix) != 2 * len_type or not prefix.isdigit():
                return None
            length = int(prefix)
            if length > max_len:
                return None
            index += len_type
            if not length:
                doc[key] = ""
                continue
        else:
            length = max_len
        end = index + ((length + 1) // 2 if nibbles else length)
        if end > size:
            return None
        if binary:
            value = body[index:end].hex().upper()
            if digits_only and not value.isdigit():
                return None  # a nibble A-F: our check refuses it, with its place
            if nibbles and length & 1:
                if left_pad:
                    if value[0] != "0":
                        return None
                    value = value[1:]
                elif value[-1] != "0":
                    return None
                else:
                    value = value[:-1]
        else:
            try:
                value = body[index:end].decode("ascii")
            except UnicodeDecodeError:
                return None
            if printable and not value.isprintable():
                return None
        doc[key] = value
        index = end
    return doc if index == size else None


def encode(doc: dict[str, str]) -> bytearray | None:
    """pyiso8583's body of ``doc`` under :data:`SPEC` (setting ``doc["p"]`` as it does), or
    None: ask pyiso8583 — and our own checks, which the plain case already passed."""
    mti = doc.get("t")
    if type(mti) is not str or len(mti) != 2 * _MTI_END:
        return None
    if not (mti.isascii() and mti.isdigit()):
        return None
    if not doc.keys() <= _ENCODE_KEYS:
        return None  # a secondary bitmap's field, or a key pyiso8583 would refuse or ignore
    bitmap = 0
    for key in doc:
        bitmap |= _BIT_OF.get(key, 0)
    parts = [binascii.a2b_hex(mti), bitmap.to_bytes(_BITMAP_END - _MTI_END, "big")]
    for key, _bit, len_type, max_len, nibbles, binary, left_pad, digits_only, printable in _present(
        bitmap
    ):
        value = doc[key]
        if type(value) is not str or not value.isascii():
            return None
        if digits_only:
            if not value.isdigit():
                return None
        elif printable and not value.isprintable():
            return None
        if binary:
            length = len(value)
            if length & 1:
                if not nibbles:
                    return None
                value = "0" + value if left_pad else value + "0"
            try:
                data = binascii.a2b_hex(value)
            except binascii.Error:
                return None
            if not nibbles:
                length = len(data)
        else:
            data = value.encode("ascii")
            length = len(data)
        if len_type:
            if length > max_len:
                return None
            parts.append(_LENGTH_PREFIX[len_type][length])
        elif length != max_len:
            return None
        parts.append(data)
    doc["p"] = parts[1].hex().upper()
    return bytearray(b"".join(parts))


_BIT_OF: Final = {field.key: field.bit for field in _FIELDS}
# The packed-decimal length prefixes pyiso8583 writes, by prefix bytes and length.
_LENGTH_PREFIX: Final = {
    len_type: [
        binascii.a2b_hex(f"{length:0{2 * len_type}d}")
        for length in range(1 + max(f.max_len for f in _FIELDS if f.len_type == len_type))
    ]
    for len_type in {field.len_type for field in _FIELDS if field.len_type}
}
assert all(field.max_len < 10 ** (2 * field.len_type) for field in _FIELDS if field.len_type)
