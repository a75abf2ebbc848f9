"""A blocking TCP exchange for doctor's probes and repairs (one connection per message).

A CUP POS over GPRS or dial-up opens a connection per message; doctor does
the same so each echo measures what a transaction meets: connect, send one
frame, read one answer frame, hang up. Every wait has a limit.
"""

from __future__ import annotations

import socket
from typing import Final

from posbatch.wire import MAX_FRAME_BYTES

__all__ = ["CONNECT_TIMEOUT_MS", "TcpExchange"]

CONNECT_TIMEOUT_MS: Final = 5_000
LENGTH_BYTES: Final = 2
# Doctor waits no longer than this for one answer, whatever the flow asks.
ANSWER_TIMEOUT_MS_MAX: Final = 30_000


class TcpExchange:
    """``exchange(frame, timeout_ms) -> answer | None`` over a fresh TCP connection."""

    def __init__(self, host: str, port: int, *, connect_timeout_ms: int = CONNECT_TIMEOUT_MS):
        self.host = host
        self.port = port
        self.connect_timeout_ms = connect_timeout_ms

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        wait_s = min(timeout_ms, ANSWER_TIMEOUT_MS_MAX) / 1000
        try:
            with socket.create_connection(
                (self.host, self.port), timeout=self.connect_timeout_ms / 1000
            ) as connection:
                connection.settimeout(wait_s)
                connection.sendall(frame)
                prefix = _read_exactly(connection, LENGTH_BYTES)
                length = int.from_bytes(prefix, "big")
                if not 0 < length <= MAX_FRAME_BYTES:
                    return None
                return prefix + _read_exactly(connection, length)
        except (OSError, ConnectionError):
            return None


def _read_exactly(connection: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("the host closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)
