"""Fuzz: random and mutated frames give DecodeError (FrameError included) and nothing else.

Every input goes through the path a server takes — FrameReader, then
decode_message on each frame's body — fed whole and byte by byte. Whatever
decodes must also encode again (a host echoes what it read), so the fuzz
also proves decode accepts nothing encode would refuse.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from wire_samples import MAK, SAMPLES

from posbatch.errors import DecodeError
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    Tpdu,
    decode_message,
    encode_frame,
    encode_message,
)

VALID_FRAMES = [
    encode_frame(Frame(Tpdu(), Header(), encode_message(message, mak=MAK)))
    for message in SAMPLES.values()
]
SEEDED_CASES = 1500  # per seed run; each case is read whole and byte by byte
LENGTH_AND_BITMAP_OFFSETS = (0, 1, 13, 14, 15, 16, 17, 18, 19, 20)  # prefix, MTI, bitmap


def _decode_all(reader: FrameReader, data: bytes) -> int:
    """Feed ``data``, decode every frame, keep reading after a frame-level error.

    Returns how many messages decoded. DecodeError ends a frame (the server
    answers 30 or drops it); any other exception escapes and fails the test.
    """
    decoded = 0
    chunk = data
    while not reader.broken:
        try:
            frames = reader.feed(chunk)
        except DecodeError:
            chunk = b""
            continue  # a bad frame was consumed, or the reader is broken now
        chunk = b""
        if not frames:
            break
        for frame in frames:
            try:
                message = decode_message(frame.body)
            except DecodeError:
                continue
            encode_message(message, mak=MAK)  # what we accept, we can send back
            decoded += 1
    return decoded


def _read_whole_and_byte_by_byte(data: bytes) -> None:
    """Both ways of feeding read the same number of messages (and raise nothing else)."""
    whole = _decode_all(FrameReader(), data)
    reader = FrameReader()
    one_by_one = 0
    for index in range(len(data)):
        if reader.broken:
            break
        one_by_one += _decode_all(reader, data[index : index + 1])
    assert whole == one_by_one


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    if len(data) < 24:
        return bytes(data) + bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
    kind = rng.randrange(8)
    if kind == 0:  # truncation
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1:  # wrong length prefix
        data[0:2] = rng.randrange(0x10000).to_bytes(2, "big")
    elif kind == 2:  # bad BCD: a nibble A-F anywhere
        index = rng.randrange(2, len(data))
        if rng.random() < 0.5:
            data[index] = (data[index] & 0x0F) | (rng.randrange(10, 16) << 4)
        else:
            data[index] = (data[index] & 0xF0) | rng.randrange(10, 16)
    elif kind == 3:  # flipped bitmap bits
        for _ in range(rng.randrange(1, 4)):
            data[15 + rng.randrange(8)] ^= 1 << rng.randrange(8)
    elif kind == 4:  # random bytes overwritten
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 5:  # a field length byte changed (bytes after the bitmap)
        index = rng.randrange(23, len(data))
        data[index] = rng.choice([0x00, 0x01, 0x19, 0x20, 0x99, rng.randrange(256)])
    elif kind == 6:  # bytes inserted or removed, length prefix kept or fixed
        index = rng.randrange(2, len(data))
        if rng.random() < 0.5:
            del data[index : index + rng.randrange(1, 4)]
        else:
            data[index:index] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        if rng.random() < 0.5:
            data[0:2] = (len(data) - 2).to_bytes(2, "big")
    else:  # the prefix or header bytes
        data[rng.choice(LENGTH_AND_BITMAP_OFFSETS)] = rng.randrange(256)
    return bytes(data)


def test_valid_frames_all_decode() -> None:
    """The fuzz corpus itself is valid: every sample frame decodes."""
    assert len(VALID_FRAMES) == _decode_all(FrameReader(), b"".join(VALID_FRAMES))


def test_seeded_mutations_raise_only_decode_errors() -> None:
    """1500 seeded mutations of valid frames: only DecodeError, whole and byte by byte."""
    rng = random.Random(20261125)
    for _ in range(SEEDED_CASES):
        frame = rng.choice(VALID_FRAMES)
        mutated = _mutate(rng, frame)
        if rng.random() < 0.3:
            mutated = _mutate(rng, mutated)
        _read_whole_and_byte_by_byte(mutated + rng.choice(VALID_FRAMES))


@settings(max_examples=300)
@given(st.data())
def test_hypothesis_mutations_raise_only_decode_errors(data: st.DataObject) -> None:
    """Hypothesis picks a frame and a mutation seed; only DecodeError escapes."""
    frame = data.draw(st.sampled_from(VALID_FRAMES))
    seed = data.draw(st.integers(0, 2**32 - 1))
    _read_whole_and_byte_by_byte(_mutate(random.Random(seed), frame))


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    """Arbitrary bytes on the stream: only DecodeError escapes."""
    _read_whole_and_byte_by_byte(data)


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=300))
def test_random_bodies_raise_only_decode_errors(body: bytes) -> None:
    """Arbitrary bytes given straight to decode_message: a message or a DecodeError."""
    try:
        message = decode_message(body)
    except DecodeError:
        return
    encode_message(message)


@settings(max_examples=300)
@given(st.sampled_from(VALID_FRAMES), st.binary(min_size=1, max_size=40), st.data())
def test_random_bytes_after_a_valid_prefix_raise_only_decode_errors(
    frame: bytes, tail: bytes, data: st.DataObject
) -> None:
    """A valid MTI + bitmap + some fields, then garbage: only DecodeError escapes."""
    body = frame[13:]
    cut = data.draw(st.integers(10, len(body)))
    try:
        message = decode_message(body[:cut] + tail)
    except DecodeError:
        return
    encode_message(message)
