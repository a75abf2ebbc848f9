"""A blocking TCP exchange for doctor's probes and repairs (one connection per message).

A CUP POS over GPRS or dial-up opens a connection per message; doctor does
the same so each echo measures what a transaction meets: connect, send one
frame, read one answer frame, hang up. Every wait has a limit, and the whole
answer — not each read — must come within it: a host that accepts and then
drips a byte now and then is cut off at the deadline like one that never
answers.

:class:`AnnouncedExchange` says what each wait is for and how long it may
last, before it starts (the "visible progress line" of a repair).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Final

from posbatch.doctor._words import Line
from posbatch.terminal import Exchange
from posbatch.wire import FRAME_BYTES_MAX, HEADER_BYTES, LENGTH_BYTES, TPDU_BYTES

__all__ = ["ANSWER_TIMEOUT_MS_MAX", "CONNECT_TIMEOUT_MS", "AnnouncedExchange", "TcpExchange"]

CONNECT_TIMEOUT_MS: Final = 5_000
# Doctor waits no longer than this for one answer, whatever the flow asks.
ANSWER_TIMEOUT_MS_MAX: Final = 30_000
# Where the MTI sits in a frame: after the length prefix, the TPDU and the header.
_MTI_OFFSET: Final = LENGTH_BYTES + TPDU_BYTES + HEADER_BYTES
# What a request is, by its MTI, for the progress lines (en, zh).
_MTI_WORDS: Final = {
    "0800": ("sign-on", "签到"),
    "0820": ("sign-off or echo test", "签退或回响测试"),
    "0200": ("sale or void", "消费或撤销"),
    "0220": ("refund", "退货"),
    "0400": ("reversal", "冲正"),
    "0500": ("settlement request", "结算请求"),
    "0320": ("batch upload", "批上送"),
}


# Doctor's own echo tests announce themselves ("echo test 2 of 5 …").
_ANNOUNCED_BY_DOCTOR: Final = frozenset({"0820"})


def answer_wait_ms(timeout_ms: int) -> int:
    """How long doctor really waits for an answer the flow gives ``timeout_ms``."""
    return min(timeout_ms, ANSWER_TIMEOUT_MS_MAX)


class TcpExchange:
    """``exchange(frame, timeout_ms) -> answer | None`` over a fresh TCP connection."""

    def __init__(self, host: str, port: int, *, connect_timeout_ms: int = CONNECT_TIMEOUT_MS):
        self.host = host
        self.port = port
        self.connect_timeout_ms = connect_timeout_ms

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        if not frame:
            return None  # "keep listening": a connection per message has nothing more to say
        deadline = time.monotonic() + answer_wait_ms(timeout_ms) / 1000
        try:
            with socket.create_connection(
                (self.host, self.port), timeout=self.connect_timeout_ms / 1000
            ) as connection:
                connection.sendall(frame)
                prefix = _read_exactly(connection, LENGTH_BYTES, deadline)
                length = int.from_bytes(prefix, "big")
                if not 0 < length <= FRAME_BYTES_MAX:
                    return None
                return prefix + _read_exactly(connection, length, deadline)
        except (OSError, ConnectionError):
            return None


def _read_exactly(connection: socket.socket, size: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError("the answer did not come in time")
        connection.settimeout(left_s)
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the host closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


class AnnouncedExchange:
    """Wraps an exchange: a progress line before each wait (what, at most how long) and one
    after it (answered in N ms, or no answer)."""

    def __init__(
        self,
        inner: Exchange,
        progress: Callable[[Line], None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.progress = progress
        self.monotonic = monotonic

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        mti = frame[_MTI_OFFSET : _MTI_OFFSET + 2].hex()
        if not frame or mti in _ANNOUNCED_BY_DOCTOR:
            return self.inner(frame, timeout_ms)  # still listening; or doctor says it itself
        wait_s = f"{answer_wait_ms(timeout_ms) / 1000:g}"
        en, zh = _MTI_WORDS.get(mti, ("message", "报文"))
        self.progress(
            Line(
                f"sent {en} ({mti}); waiting at most {wait_s} s for the host's answer",
                f"已发送{zh}({mti}),最多等待主机应答 {wait_s} 秒",
            )
        )
        started = self.monotonic()
        answer = self.inner(frame, timeout_ms)
        if answer is None:
            self.progress(Line(f"  no answer within {wait_s} s", f"  {wait_s} 秒内无应答"))
        else:
            elapsed_ms = round((self.monotonic() - started) * 1000)
            self.progress(Line(f"  answered in {elapsed_ms} ms", f"  {elapsed_ms} 毫秒后应答"))
        return answer
