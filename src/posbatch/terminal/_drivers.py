"""Drivers: move the frames a flow yields, over TCP (asyncio) or an in-process link.

Both run the very same flow generators (:mod:`._flows`); neither holds any
business logic. The asyncio driver keeps one connection, one request in
flight (a lock around each flow), reconnects with a bounded backoff, and on a
timeout drops the connection so a late answer can never be taken for the
answer to the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Sequence
from typing import Final, Protocol, TypeVar

from posbatch.batch.addresses import split_host_port
from posbatch.errors import ConfigError
from posbatch.terminal._flows import TIMEOUT, Flow
from posbatch.wire import FRAME_BYTES_MAX, LENGTH_BYTES

__all__ = [
    "CONNECT_ATTEMPTS_MAX",
    "CONNECT_TIMEOUT_MS",
    "InProcessLink",
    "TcpDriver",
    "parse_address",
]

CONNECT_TIMEOUT_MS: Final = 5_000
CONNECT_ATTEMPTS_MAX: Final = 3
BACKOFF_FIRST_MS: Final = 100
BACKOFF_MS_MAX: Final = 2_000

_T = TypeVar("_T")


def parse_address(text: str) -> tuple[str, int]:
    """The host's ``HOST:PORT`` → (host, port), a client's rule: a host, and a port from 1
    (cut as a server's ``--listen`` is: :mod:`posbatch.batch.addresses`);
    :class:`ConfigError` when it is not one."""
    address = split_host_port(text, port_min=1)
    if address is None or not address[0]:
        raise ConfigError(f"{text!r} is not HOST:PORT")
    return address


class _Reply(Protocol):
    @property
    def frames(self) -> Sequence[bytes]: ...

    @property
    def delay_ms(self) -> int: ...


class _Core(Protocol):
    def handle_frame(self, frame: bytes) -> _Reply: ...


class InProcessLink:
    """``exchange(frame, timeout_ms)`` over a host core in the same process (no sockets).

    The first frame of the host's reply is the answer; a reply with no frame,
    or one the host delays past ``timeout_ms``, is a timeout (None).
    """

    def __init__(self, core: _Core) -> None:
        self._core = core

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        if not frame:  # "keep listening": an in-process host has nothing more to say
            return None
        reply = self._core.handle_frame(frame)
        if not reply.frames or reply.delay_ms > timeout_ms:
            return None
        return reply.frames[0]


class TcpDriver:
    """Runs flows over one TCP connection to the host (asyncio)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout_ms: int = CONNECT_TIMEOUT_MS,
        connect_attempts_max: int = CONNECT_ATTEMPTS_MAX,
    ) -> None:
        self.host = host
        self.port = port
        self._connect_timeout_ms = connect_timeout_ms
        self._connect_attempts_max = connect_attempts_max
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.connects = 0
        # Why the last connection attempt failed (None once one succeeds): a name that
        # does not resolve is not a host that is down, and the cashier is told which.
        self.connect_error: str | None = None

    async def run(self, flow: Flow[_T]) -> _T:
        """Drive ``flow`` to its end; one flow at a time on this connection."""
        async with self._lock:
            try:
                request = next(flow)
                while True:
                    answer = await self.exchange(request.frame, request.timeout_ms)
                    request = flow.send(TIMEOUT if answer is None else answer)
            except StopIteration as stop:
                result: _T = stop.value
                return result

    async def _connect(self) -> bool:
        backoff_ms = BACKOFF_FIRST_MS
        for attempt in range(self._connect_attempts_max):
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port),
                    self._connect_timeout_ms / 1000,
                )
                self.connects += 1
                self.connect_error = None
                return True
            except (OSError, TimeoutError) as exc:
                self.connect_error = self._why(exc)
                if attempt + 1 < self._connect_attempts_max:
                    await asyncio.sleep(backoff_ms / 1000)
                    backoff_ms = min(2 * backoff_ms, BACKOFF_MS_MAX)
        return False

    def _why(self, exc: OSError | TimeoutError) -> str:
        where = f"{self.host}:{self.port}"
        if isinstance(exc, socket.gaierror):
            return f"the host name {self.host!r} does not resolve (check the host address)"
        if isinstance(exc, ConnectionRefusedError):
            return f"nothing listens at {where} (connection refused: is the host running?)"
        if isinstance(exc, TimeoutError):
            return f"{where} did not accept a connection within {self._connect_timeout_ms} ms"
        return f"cannot connect to {where}: {exc.strerror or exc}"

    async def _read_frame(self) -> bytes:
        assert self._reader is not None
        prefix = await self._reader.readexactly(LENGTH_BYTES)
        length = int.from_bytes(prefix, "big")
        if not 0 < length <= FRAME_BYTES_MAX:
            raise ConnectionError(f"frame length {length}")
        return prefix + await self._reader.readexactly(length)

    async def exchange(self, frame: bytes, timeout_ms: int) -> bytes | None:
        """Send one frame and wait for one answer frame; None on timeout or a lost connection."""
        if frame and self._closed_by_peer():
            # The host closed the connection while it was idle (its idle limit, a restart):
            # nothing of this request has left, so a new connection carries it. Written
            # into the closed one it would meet EOF, and an approvable sale would be
            # reversed and shown failed.
            await self.close()
        if self._writer is None and not await self._connect():
            return None
        assert self._writer is not None
        try:
            if frame:  # an empty frame: only wait for the next answer frame
                self._writer.write(frame)
                await self._writer.drain()
            return await asyncio.wait_for(self._read_frame(), timeout_ms / 1000)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            return None

    def _closed_by_peer(self) -> bool:
        """Whether the open connection is known to be closed by the host: its end of file
        has arrived with nothing left to read, or the transport is closing."""
        if self._reader is None or self._writer is None:
            return False
        return self._reader.at_eof() or self._writer.is_closing()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
