"""Framing: length prefix, TPDU, header, and the incremental FrameReader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_samples import MAK, SAMPLES

from posbatch.errors import EncodeError, FrameError
from posbatch.wire import (
    FRAME_BYTES_MAX,
    Frame,
    FrameReader,
    Header,
    ProcessingRequirement,
    Tpdu,
    decode_frame,
    encode_frame,
    encode_message,
)

SALE = Frame(Tpdu(0x0003, 0x0000), Header(), encode_message(SAMPLES["sale"], mak=MAK))
SETTLE = Frame(Tpdu(0x0003, 0x0001), Header(), encode_message(SAMPLES["settlement"], mak=MAK))
ANSWER = Frame(
    Tpdu(0x0000, 0x0003),
    Header(processing_requirement=ProcessingRequirement.SIGN_ON),
    encode_message(SAMPLES["sale_response"]),
)
FRAMES = [SALE, SETTLE, ANSWER]
STREAM = b"".join(encode_frame(frame) for frame in FRAMES)


def _bad_tpdu_frame() -> bytes:
    wire = bytearray(encode_frame(SETTLE))
    wire[2] = 0x70  # TPDU id must be 0x60
    return bytes(wire)


def test_tpdu_reply_swaps_the_addresses() -> None:
    """The host answers with destination and source swapped."""
    assert Tpdu(destination=0x0000, source=0x0003) == Tpdu(0x0003, 0x0000).reply()


def test_frame_round_trips() -> None:
    """encode_frame then decode_frame (payload after the length) gives the same frame."""
    assert ANSWER == decode_frame(encode_frame(ANSWER)[2:])


@pytest.mark.parametrize("requirement", list(ProcessingRequirement))
def test_processing_requirement_round_trips(requirement: ProcessingRequirement) -> None:
    """Every processing requirement we use survives the header."""
    frame = Frame(Tpdu(), Header(processing_requirement=requirement), SALE.body)
    assert requirement == decode_frame(encode_frame(frame)[2:]).header.processing_requirement


def test_length_prefix_counts_tpdu_header_and_body() -> None:
    """The 2-byte big-endian length counts everything after itself."""
    wire = encode_frame(SALE)
    assert len(wire) - 2 == int.from_bytes(wire[:2], "big")


def test_whole_stream_in_one_chunk_gives_every_frame() -> None:
    """Several frames in one chunk come out in order."""
    assert FRAMES == FrameReader().feed(STREAM)


def test_byte_by_byte_feeding_gives_the_same_frames() -> None:
    """Feeding one byte at a time gives the same frames as one chunk."""
    reader = FrameReader()
    frames = [
        frame for index in range(len(STREAM)) for frame in reader.feed(STREAM[index : index + 1])
    ]
    assert FRAMES == frames
    assert 0 == reader.buffered_bytes


@given(st.lists(st.integers(1, len(STREAM)), max_size=20))
def test_any_chunking_gives_the_same_frames(cuts: list[int]) -> None:
    """Hypothesis: however the stream is cut, the frames are the same."""
    reader = FrameReader()
    frames: list[Frame] = []
    start = 0
    for end in [*sorted(cuts), len(STREAM)]:
        frames += reader.feed(STREAM[start:end])
        start = max(start, end)
    assert FRAMES == frames


def test_partial_frame_waits() -> None:
    """A frame missing its last byte gives nothing, and holds its bytes."""
    wire = encode_frame(SALE)
    reader = FrameReader()
    assert [] == reader.feed(wire[:-1])
    assert len(wire) - 1 == reader.buffered_bytes
    assert [SALE] == reader.feed(wire[-1:])


def test_half_a_length_prefix_waits() -> None:
    """One byte of the length prefix is not enough to decide anything."""
    reader = FrameReader()
    assert reader.next_frame() is None
    reader.receive_data(b"\x00")
    assert reader.next_frame() is None


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (b"\x00\x00", "frame length 0 is outside 1..2048: field length at byte 0"),
        (b"\x08\x01", "frame length 2049 is outside 1..2048: field length at byte 0"),
        (b"\xff\xff", "frame length 65535 is outside 1..2048: field length at byte 0"),
    ],
)
def test_bad_length_prefix_breaks_the_reader(prefix: bytes, message: str) -> None:
    """Length 0 or over the limit is a FrameError, and every later call raises it too."""
    reader = FrameReader()
    with pytest.raises(FrameError) as first:
        reader.feed(prefix + bytes(20))
    assert message == str(first.value)
    with pytest.raises(FrameError) as again:
        reader.feed(encode_frame(SALE))
    assert message == str(again.value)
    with pytest.raises(FrameError):
        reader.next_frame()


def test_length_limit_is_configurable() -> None:
    """A reader built with a smaller limit refuses a frame above it."""
    reader = FrameReader(max_frame_bytes=64)
    wire = encode_frame(SALE)
    with pytest.raises(FrameError) as error:
        reader.feed(wire)
    assert f"frame length {len(wire) - 2} is outside 1..64: field length at byte 0" == str(
        error.value
    )


def test_bad_tpdu_consumes_that_frame_only() -> None:
    """A bad TPDU raises for its own frame; the frame after it still comes out."""
    reader = FrameReader()
    with pytest.raises(FrameError) as error:
        reader.feed(_bad_tpdu_frame() + encode_frame(ANSWER))
    assert ("tpdu", 0, "TPDU id must be 0x60, got 0x70") == (
        error.value.field,
        error.value.position,
        error.value.reason,
    )
    assert [ANSWER] == reader.feed(b"")


@pytest.mark.parametrize(
    ("header", "reason", "position"),
    [
        ("613100000000", "application type must be 60, got 61", 5),
        ("60310A000000", "header is not packed decimal", 5),
        ("603101000000", "unknown processing requirement 1", 7),
    ],
)
def test_bad_header_consumes_that_frame_only(header: str, reason: str, position: int) -> None:
    """A bad header raises with where it is; the reader stays usable."""
    wire = bytearray(encode_frame(SALE))
    wire[7:13] = bytes.fromhex(header)
    reader = FrameReader()
    with pytest.raises(FrameError) as error:
        reader.feed(bytes(wire))
    assert (reason, "header", position) == (
        error.value.reason,
        error.value.field,
        error.value.position,
    )
    assert [SALE] == reader.feed(encode_frame(SALE))


def test_frame_too_short_for_an_mti_and_bitmap_is_refused() -> None:
    """A sound length with less than TPDU + header + MTI + bitmap behind it is a FrameError."""
    reader = FrameReader()
    with pytest.raises(FrameError, match="frame of 11 bytes is shorter than TPDU"):
        reader.feed(b"\x00\x0b" + Tpdu().encode() + Header().encode())
    assert [SALE] == reader.feed(encode_frame(SALE))


def test_good_frames_before_a_bad_one_are_not_lost() -> None:
    """feed returns the good frames first; the bad one raises on the next call."""
    reader = FrameReader()
    assert [SALE] == reader.feed(encode_frame(SALE) + _bad_tpdu_frame() + encode_frame(ANSWER))
    with pytest.raises(FrameError, match="TPDU id must be 0x60"):
        reader.feed(b"")
    assert [ANSWER] == reader.feed(b"")


def test_good_frames_before_a_bad_length_are_not_lost() -> None:
    """A good frame before a length of 0 comes out; then the reader is broken."""
    reader = FrameReader()
    assert [SALE] == reader.feed(encode_frame(SALE) + b"\x00\x00")
    with pytest.raises(FrameError, match="frame length 0"):
        reader.feed(b"")


def test_buffer_limit_breaks_the_reader() -> None:
    """More unread bytes than max_buffer_bytes is a FrameError; the reader is broken."""
    reader = FrameReader(max_frame_bytes=FRAME_BYTES_MAX, max_buffer_bytes=FRAME_BYTES_MAX + 2)
    reader.receive_data(b"\x08\x00" + bytes(100))  # a frame of 2048 bytes, still incomplete
    with pytest.raises(FrameError, match="2151 unread bytes exceed 2050"):
        reader.receive_data(bytes(2049))
    with pytest.raises(FrameError, match="unread bytes exceed"):
        reader.next_frame()
    assert 0 == reader.buffered_bytes


def test_buffer_must_hold_one_whole_frame() -> None:
    """A reader whose buffer cannot hold its largest frame is refused."""
    with pytest.raises(ValueError, match="max_buffer_bytes must hold at least one whole frame"):
        FrameReader(max_frame_bytes=100, max_buffer_bytes=101)


def test_encode_frame_over_the_limit_is_an_encode_error() -> None:
    """We never send a frame the peer's reader must refuse."""
    with pytest.raises(EncodeError, match="frame of 2049 bytes is over 2048: field length"):
        encode_frame(Frame(Tpdu(), Header(), bytes(FRAME_BYTES_MAX - 10)))


def test_header_that_is_not_twelve_digits_is_an_encode_error() -> None:
    """A software version that is not two digits cannot be sent."""
    with pytest.raises(
        EncodeError, match="header must be 12 digits, got '60X100000000': field header"
    ):
        Header(software_version="X1").encode()


def test_tpdu_address_over_two_bytes_is_an_encode_error() -> None:
    """TPDU addresses are 2 bytes each."""
    with pytest.raises(EncodeError, match="field tpdu"):
        Tpdu(destination=0x10000).encode()


def _started_after(*chunks: bytes) -> bool:
    reader = FrameReader()
    for chunk in chunks:
        reader.receive_data(chunk)
    return reader.frame_started


def test_frame_started_says_whether_an_unfinished_frame_is_buffered() -> None:
    """The server times a frame from its first byte: frame_started is true exactly while
    the next frame has begun and not ended (whole frames waiting do not count)."""
    frame = encode_frame(Frame(Tpdu(), Header(), encode_message(SAMPLES["sale"], mak=MAK)))
    reader = FrameReader()
    reader.receive_data(frame + frame[:5])
    taken = reader.next_frame() is not None
    assert (False, True, True, False, False, True, True) == (
        _started_after(),
        _started_after(frame[:1]),
        _started_after(frame[:-1]),
        _started_after(frame),
        _started_after(frame + frame),
        _started_after(frame[:3], frame[3:-1]),
        taken and reader.frame_started,
    )
