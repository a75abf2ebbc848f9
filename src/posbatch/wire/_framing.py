"""Framing: ``[2-byte big-endian length][TPDU 5][header 6][ISO 8583 body]``.

Theory of operation
-------------------
A TCP stream carries frames back to back. :class:`FrameReader` is fed bytes as
they arrive (``feed``) and hands out every whole frame it holds; a partial
frame waits for more bytes. The length prefix counts everything after itself
(TPDU + header + body). A length of 0, one shorter than TPDU + header + MTI +
bitmap, or one above ``max_frame_bytes`` is a :class:`FrameError`: the stream
cannot be resynchronised after that, so the connection must be closed.

TPDU = ``60`` + destination (2 bytes) + source (2 bytes); the host answers
with the two addresses swapped (:meth:`Tpdu.reply`).

Header (12 BCD digits) = application type ``60`` + software version (2) +
terminal status (1) + processing requirement (1) + reserved (6). The
processing requirement in a response asks the terminal to act; the values we
use are :class:`ProcessingRequirement`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, NoReturn, TypeVar

from posbatch.errors import EncodeError, FrameError

__all__ = [
    "BODY_BYTES_MIN",
    "BUFFER_BYTES_MAX",
    "FRAME_BYTES_MAX",
    "HEADER_BYTES",
    "LENGTH_BYTES",
    "TPDU_BYTES",
    "Frame",
    "FrameReader",
    "Header",
    "ProcessingRequirement",
    "Tpdu",
    "decode_frame",
    "encode_frame",
]

LENGTH_BYTES: Final = 2
TPDU_BYTES: Final = 5
HEADER_BYTES: Final = 6
BODY_BYTES_MIN: Final = 2 + 8  # MTI + primary bitmap
# The largest legal message is far below this (48 ≤ 161 bytes, 62 ≤ 512, 63 ≤ 163);
# a length prefix above it is garbage or an attack, not a message.
FRAME_BYTES_MAX: Final = 2048
# Unread bytes a reader may hold: one whole frame and a socket read or two.
BUFFER_BYTES_MAX: Final = 256 * 1024

TPDU_ID: Final = 0x60
APPLICATION_TYPE: Final = "60"


class ProcessingRequirement(enum.StrEnum):
    """Header digit 6 (of 12): what a response asks the terminal to do next."""

    NONE = "0"
    SIGN_ON = "3"  # keys or batch out of step: sign on before the next request
    SETTLE = "5"  # the host wants this batch settled (e.g. cut-over)
    DOWNLOAD_CATALOG = "6"  # product catalog changed: sync before the next checkout


@dataclass(frozen=True, slots=True)
class Tpdu:
    destination: int = 0x0003
    source: int = 0x0000

    def reply(self) -> Tpdu:
        """The TPDU of an answer: addresses swapped."""
        return Tpdu(destination=self.source, source=self.destination)

    def encode(self) -> bytes:
        if not (0 <= self.destination <= 0xFFFF and 0 <= self.source <= 0xFFFF):
            raise EncodeError(
                f"TPDU addresses are 2 bytes: {self.destination}, {self.source}", field="tpdu"
            )
        return (
            bytes((TPDU_ID,)) + self.destination.to_bytes(2, "big") + self.source.to_bytes(2, "big")
        )


@dataclass(frozen=True, slots=True)
class Header:
    software_version: str = "31"
    terminal_status: str = "0"
    processing_requirement: ProcessingRequirement = ProcessingRequirement.NONE
    reserved: str = "000000"

    def encode(self) -> bytes:
        digits = (
            APPLICATION_TYPE
            + self.software_version
            + self.terminal_status
            + self.processing_requirement.value
            + self.reserved
        )
        if len(digits) != 12 or not (digits.isdigit() and digits.isascii()):
            raise EncodeError(f"header must be 12 digits, got {digits!r}", field="header")
        return bytes.fromhex(digits)

    def with_requirement(self, requirement: ProcessingRequirement) -> Header:
        return replace(self, processing_requirement=requirement)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: who it is for (TPDU), the header, and the ISO 8583 body (MTI onwards)."""

    tpdu: Tpdu
    header: Header
    body: bytes


def encode_frame(frame: Frame) -> bytes:
    payload_length = TPDU_BYTES + HEADER_BYTES + len(frame.body)
    if payload_length > FRAME_BYTES_MAX:
        raise EncodeError(
            f"frame of {payload_length} bytes is over {FRAME_BYTES_MAX}", field="length"
        )
    return (
        payload_length.to_bytes(LENGTH_BYTES, "big")
        + frame.tpdu.encode()
        + frame.header.encode()
        + frame.body
    )


def _decode_tpdu(data: bytes) -> Tpdu:
    if data[0] != TPDU_ID:
        raise FrameError(f"TPDU id must be 0x60, got 0x{data[0]:02X}", field="tpdu", position=0)
    return Tpdu(
        destination=int.from_bytes(data[1:3], "big"), source=int.from_bytes(data[3:5], "big")
    )


_REQUIREMENTS: Final = {member.value: member for member in ProcessingRequirement}


# Peers send a handful of distinct TPDUs and headers: each is read once, then looked up
# (bounded: past the limit a new one is read every time, as before).
_READ_MAX: Final = 1024
_T = TypeVar("_T")
_TPDUS_READ: Final[dict[bytes, Tpdu]] = {}
_HEADERS_READ: Final[dict[bytes, Header]] = {}


def _read_once(read: Callable[[bytes], _T], memo: dict[bytes, _T], data: bytes) -> _T:
    """``read(data)``, looked up in ``memo`` when it was read before (a bad one raises)."""
    value = memo.get(data)
    if value is None:
        value = read(data)
        if len(memo) < _READ_MAX:
            memo[data] = value
    return value


def _decode_header(data: bytes) -> Header:
    digits = data.hex()
    if not digits.isdigit():
        raise FrameError("header is not packed decimal", field="header", position=TPDU_BYTES)
    if digits[:2] != APPLICATION_TYPE:
        raise FrameError(
            f"application type must be 60, got {digits[:2]}", field="header", position=TPDU_BYTES
        )
    requirement = _REQUIREMENTS.get(digits[5])
    if requirement is None:
        raise FrameError(
            f"unknown processing requirement {digits[5]}",
            field="header",
            position=TPDU_BYTES + 2,
        )
    return Header(
        software_version=digits[2:4],
        terminal_status=digits[4],
        processing_requirement=requirement,
        reserved=digits[6:],
    )


def decode_frame(payload: bytes) -> Frame:
    """A frame from its payload (everything after the 2-byte length prefix)."""
    if len(payload) < TPDU_BYTES + HEADER_BYTES + BODY_BYTES_MIN:
        raise FrameError(
            f"frame of {len(payload)} bytes is shorter than TPDU + header + MTI + bitmap",
            field="length",
            position=0,
        )
    return Frame(
        tpdu=_read_once(_decode_tpdu, _TPDUS_READ, bytes(payload[:TPDU_BYTES])),
        header=_read_once(
            _decode_header, _HEADERS_READ, bytes(payload[TPDU_BYTES : TPDU_BYTES + HEADER_BYTES])
        ),
        body=bytes(payload[TPDU_BYTES + HEADER_BYTES :]),
    )


class FrameReader:
    """Incremental frame reader in the style of h11: no I/O, bounded buffers.

    ``receive_data(bytes)`` stores what arrived; ``next_frame()`` returns the
    next whole frame, or ``None`` when more bytes are needed.

    A bad length prefix (0 or above the limit), or more unread bytes than
    ``max_buffer_bytes``, is a :class:`FrameError` after which the reader is
    broken (the stream has lost its place) and every later call raises it
    again: close the connection. A frame whose TPDU or header is bad (or that
    is too short to hold an MTI and a bitmap) raises a :class:`FrameError`
    too, but that frame is consumed and the reader stays usable, because its
    length was sound: answer or drop it, then keep reading.
    """

    def __init__(
        self, *, max_frame_bytes: int = FRAME_BYTES_MAX, max_buffer_bytes: int = BUFFER_BYTES_MAX
    ) -> None:
        if not TPDU_BYTES + HEADER_BYTES + BODY_BYTES_MIN <= max_frame_bytes <= 0xFFFF:
            raise ValueError(f"max_frame_bytes out of range: {max_frame_bytes}")
        if max_buffer_bytes < LENGTH_BYTES + max_frame_bytes:
            raise ValueError("max_buffer_bytes must hold at least one whole frame")
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes
        self._max_buffer_bytes = max_buffer_bytes
        self._broken: FrameError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def frame_started(self) -> bool:
        """Part of the next frame is buffered: its first byte came, its last has not.

        The server times a frame from its first byte (``FRAME_DEADLINE_MS`` in
        posbatch.host.server): a peer that sends a frame one byte at a time must
        not hold a connection open with it. False when nothing is buffered and
        when the next frame is whole (it waits only for ``next_frame``).
        """
        buffered = len(self._buffer)
        if buffered == 0:
            return False
        if buffered < LENGTH_BYTES:
            return True
        return buffered < LENGTH_BYTES + int.from_bytes(self._buffer[:LENGTH_BYTES], "big")

    @property
    def broken(self) -> bool:
        """True after a bad length or buffer overflow: the connection must be closed."""
        return self._broken is not None

    def receive_data(self, data: bytes) -> None:
        if self._broken is not None:
            raise self._broken
        if len(self._buffer) + len(data) > self._max_buffer_bytes:
            self._break(
                f"{len(self._buffer) + len(data)} unread bytes exceed {self._max_buffer_bytes}"
            )
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, ``None`` when more bytes are needed, or a FrameError."""
        if self._broken is not None:
            raise self._broken
        if len(self._buffer) < LENGTH_BYTES:
            return None
        length = int.from_bytes(self._buffer[:LENGTH_BYTES], "big")
        if length == 0 or length > self._max_frame_bytes:
            self._break(f"frame length {length} is outside 1..{self._max_frame_bytes}")
        if len(self._buffer) < LENGTH_BYTES + length:
            return None
        payload = bytes(self._buffer[LENGTH_BYTES : LENGTH_BYTES + length])
        del self._buffer[: LENGTH_BYTES + length]
        return decode_frame(payload)

    def feed(self, data: bytes) -> list[Frame]:
        """``receive_data`` then every whole frame.

        A bad frame is never silently skipped, and never costs the good frames
        before it: when ``data`` completes good frames and then a bad one, the
        good ones are returned and the bad one raises on the next call
        (``feed(b"")`` or ``next_frame()``). A bad first frame raises at once.
        """
        self.receive_data(data)
        frames: list[Frame] = []
        while True:
            if frames and self._broken is None and self._next_is_bad():
                return frames
            try:
                frame = self.next_frame()
            except FrameError:
                if frames:
                    return frames  # the reader is broken: the next call raises
                raise
            if frame is None:
                return frames
            frames.append(frame)

    def _next_is_bad(self) -> bool:
        """Whether the next whole frame in the buffer would raise (it stays buffered)."""
        if len(self._buffer) < LENGTH_BYTES:
            return False
        length = int.from_bytes(self._buffer[:LENGTH_BYTES], "big")
        if length == 0 or length > self._max_frame_bytes:
            return False  # next_frame breaks the reader; feed handles that
        if len(self._buffer) < LENGTH_BYTES + length:
            return False
        try:
            decode_frame(bytes(self._buffer[LENGTH_BYTES : LENGTH_BYTES + length]))
        except FrameError:
            return True
        return False

    def _break(self, reason: str) -> NoReturn:
        self._broken = FrameError(reason, field="length", position=0)
        self._buffer.clear()
        raise self._broken
