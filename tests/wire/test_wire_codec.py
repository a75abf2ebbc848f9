"""The fast path of the codec against pyiso8583: the same bytes, the same dicts, or none.

``posbatch.wire._codec`` may only ever give what ``iso8583.decode`` /
``iso8583.encode`` with ``SPEC`` give; where it declines (None), the caller asks
pyiso8583. Every test here compares the two on the same input: every message
kind, hypothesis-drawn messages, mutated and random bodies, and dicts no
message would build. A fast path that declined everything would pass the
comparisons, so the plain cases must also be taken (``test_…_takes_…``).
"""

from __future__ import annotations

import random
import string
from typing import Any
from unittest import mock

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_samples import MAK, SAMPLES, messages

from posbatch.errors import DecodeError
from posbatch.wire import SPEC, Message, _codec, decode_message, encode_message

BODIES = [encode_message(message, mak=MAK) for message in SAMPLES.values()] + [
    encode_message(message) for message in SAMPLES.values()
]


def _pyiso_decode(body: bytes) -> dict[str, str] | None:
    try:
        return iso8583.decode(body, SPEC)[0]
    except (iso8583.DecodeError, KeyError):  # KeyError: a field outside the spec
        return None


def _pyiso_encode(doc: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
    copy = dict(doc)
    try:
        body, _ = iso8583.encode(copy, SPEC)
    except (iso8583.EncodeError, TypeError, ValueError, AttributeError):
        return None
    return bytes(body), copy


def _same_decode(body: bytes) -> bool:
    """Whether the fast path read ``body`` (True) — and, if so, read what pyiso8583 reads."""
    fast = _codec.decode(body)
    if fast is None:
        return False
    assert fast == _pyiso_decode(body), body.hex()
    return True


def _same_encode(doc: dict[str, Any]) -> bool:
    """Whether the fast path wrote ``doc`` (True) — and, if so, pyiso8583's bytes and dict."""
    copy = dict(doc)
    fast = _codec.encode(copy)
    if fast is None:
        return False
    expected = _pyiso_encode(doc)
    assert expected is not None, doc
    assert (bytes(fast), copy) == expected, doc
    return True


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("mak", [None, MAK])
def test_fast_path_takes_every_message_kind_both_ways(name: str, mak: bytes | None) -> None:
    message = SAMPLES[name]
    body = encode_message(message, mak=mak)
    assert _same_decode(body)
    doc = iso8583.decode(body, SPEC)[0]
    assert _same_encode(doc)
    assert decode_message(body) == decode_message(bytes(iso8583.encode(dict(doc), SPEC)[0]))


@settings(max_examples=400)
@given(messages, st.none() | st.binary(min_size=8, max_size=8))
def test_any_valid_message_takes_the_fast_path_to_the_same_bytes(
    message: Message, mak: bytes | None
) -> None:
    fields = message.to_fields()
    if mak is not None and fields["t"] not in ("0800", "0810", "0820", "0830"):
        fields["64"] = "0" * 16
    assert _same_encode(fields)
    body = bytes(iso8583.encode(dict(fields), SPEC)[0])
    assert _same_decode(body)


def _mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    kind = rng.randrange(6)
    if kind == 0 and data:
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1 and data:  # a nibble A-F
        index = rng.randrange(len(data))
        data[index] = (data[index] & 0x0F) | (rng.randrange(10, 16) << 4)
    elif kind == 2 and len(data) >= 10:  # bitmap bits
        data[2 + rng.randrange(8)] ^= 1 << rng.randrange(8)
    elif kind == 3 and len(data) > 10:  # a length byte, a pad nibble, a text byte
        data[rng.randrange(10, len(data))] = rng.choice([0x00, 0x01, 0x19, 0x99, 0xFF, 0x80])
    elif kind == 4:  # bytes inserted or removed
        index = rng.randrange(len(data) + 1)
        if rng.random() < 0.5:
            del data[index : index + rng.randrange(1, 4)]
        else:
            data[index:index] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    else:
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
    return bytes(data)


def test_seeded_mutations_decode_as_pyiso8583_or_are_left_to_it() -> None:
    rng = random.Random(20261207)
    taken = 0
    for _ in range(20_000):
        body = rng.choice(BODIES)
        for _ in range(rng.randrange(1, 4)):
            body = _mutate(rng, body)
        if _same_decode(body):
            taken += 1
        else:  # declined: pyiso8583 refuses it, or it is one of the cases left to it
            pass
    assert taken > 400  # mutations that stay readable (a digit, a bitmap bit, a length) are taken


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_random_bodies_decode_as_pyiso8583_or_are_left_to_it(body: bytes) -> None:
    _same_decode(body)
    _same_decode(BODIES[0][:10] + body)


def _outcome(body: bytes) -> object:
    try:
        return decode_message(body)
    except DecodeError as exc:
        return ("error", str(exc), exc.field, exc.position)


def test_decode_message_answers_the_same_with_and_without_the_fast_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Message or error (reason, field, byte), a body gets the same from decode_message."""
    rng = random.Random(7)
    bodies = list(BODIES)
    for _ in range(4_000):
        body = rng.choice(BODIES)
        for _ in range(rng.randrange(1, 3)):
            body = _mutate(rng, body)
        bodies.append(body)
    fast = [_outcome(body) for body in bodies]
    monkeypatch.setattr(_codec, "decode", lambda body: None)
    slow = [_outcome(body) for body in bodies]
    assert fast == slow
    assert sum(isinstance(outcome, tuple) for outcome in fast) > 1_000  # errors compared too


_values = st.sampled_from(
    ["", "0", "1", "12", "123", "D", "0123456789ABCDEF", "abcdef", "١٢٣", " 12", "12 ", "\x00",
     "é", "000000", "0000000000000000", "12345678", "898110054110001", "9" * 19, "9" * 38]
) | st.text(string.digits, max_size=24)  # fmt: skip
_keys = st.sampled_from([*(k for k in SPEC if k.isdigit()), "1", "65", "129", "h", "p", "x"])


@settings(max_examples=600)
@given(
    messages,
    st.sampled_from(["0200", "0210", "0800", "02", "020", "02000", "ABCD", "٠٢٠٠"]),
    st.lists(st.tuples(_keys, _values), max_size=3),
)
def test_hostile_dicts_encode_as_pyiso8583_or_are_left_to_it(
    message: Message, mti: str, changes: list[tuple[str, str]]
) -> None:
    fields: dict[str, str] = dict(message.to_fields())
    fields.update(changes)
    _same_encode(fields)
    fields["t"] = mti
    _same_encode(fields)


@pytest.mark.parametrize(
    "doc",
    [
        {"t": "0200", "4": 12},  # not a str
        {"t": "0200", "4": None},
        {"t": "0200", 4: "000000000001"},  # not a str key
        {"t": "0200", "65": "1"},
        {"t": "0200", "2": ""},  # a numeric field that holds no digit: our check decides
        {"t": "0200", "4": "00000000000A"},  # hex letters pyiso8583 takes and we refuse
        {"t": "0200", "39": "\x7f0"},
        {"p": "0000000000000000"},  # no MTI
    ],
)
def test_the_cases_left_to_pyiso8583_are_declined(doc: dict[Any, Any]) -> None:
    assert _codec.encode(dict(doc)) is None


@settings(max_examples=300)
@given(messages, st.none() | st.binary(min_size=8, max_size=8))
def test_encode_message_gives_the_same_bytes_with_and_without_the_fast_path(
    message: Message, mak: bytes | None
) -> None:
    fast = encode_message(message, mak=mak)
    with mock.patch.object(_codec, "encode", lambda doc: None):
        assert encode_message(message, mak=mak) == fast
