"""The asyncio TCP shell around :class:`~posbatch.host.core.HostCore`: sockets only.

Theory of operation
-------------------
Each connection is an :class:`asyncio.Protocol` holding a
:class:`~posbatch.host.session.HostSession`. Whole frames go to one
:class:`GroupCommitter`, which hands everything that arrived since its last
commit — from every connection — to ``core.handle_decoded_frames`` in a
worker thread: one database transaction, one commit, then every answer of
the group is written. While a group commits, the next one gathers; that is
what makes many durable answers per second out of one fsync each.

Answers on one connection leave in request order (a delayed answer holds
back the ones after it, as on a real line). A graceful stop
(:meth:`HostServer.drain`, what ``serve(stop=…)`` does when ``stop`` is set)
stops listening and reading, lets the groups in flight commit and their
answers go out — an answer still leaves only after its commit — then closes
every connection. Named limits bound everything:
connections, frame size, idle time, requests in flight per connection.
One JSON log line per request (terminal_id, batch_no, stan, mti,
response_code, latency_ms; never a PAN). Lines are formatted from a fixed key
table (no dict, no json.dumps per line) and written together: every line of
one turn of the event loop goes out in one logging call, so one write, not
one per request.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import json.encoder
import logging
import os
import time
from dataclasses import dataclass, fields
from typing import Final

from posbatch.host.core import GROUP_MAX_REQUESTS, HostCore, HostReply, RequestLog
from posbatch.host.session import HostSession
from posbatch.wire import MAX_FRAME_BYTES, Frame

__all__ = [
    "CONNECTIONS_MAX",
    "DRAIN_TIMEOUT_MS",
    "IDLE_TIMEOUT_MS",
    "IN_FLIGHT_MAX",
    "LOG_LINES_MAX",
    "GroupCommitter",
    "HostServer",
    "RequestLogWriter",
    "ServerLimits",
    "request_log_line",
    "serve",
]

CONNECTIONS_MAX: Final = 10_000
IDLE_TIMEOUT_MS: Final = 300_000
IN_FLIGHT_MAX: Final = 32  # requests of one connection between arrival and answer
IDLE_SWEEP_INTERVAL_MS: Final = 1_000
# How long a group waits for more requests before it commits (latency traded for fsyncs).
GROUP_GATHER_MS: Final = 1
LISTEN_BACKLOG: Final = 4096
# Request log lines held before they are written even within one turn of the loop.
LOG_LINES_MAX: Final = 512
# A graceful stop waits at most this long for the answers in flight (a delay fault may
# hold one longer: it is then not sent; its request was committed, as after a lost answer).
DRAIN_TIMEOUT_MS: Final = 10_000
DRAIN_POLL_MS: Final = 10

log = logging.getLogger("posbatch.host")
# (attribute, '"key":', whether the value is text to escape) for each RequestLog field.
_LOG_KEYS: Final = tuple(
    (field.name, f'"{field.name}":', field.name not in ("batch_no", "stan"))
    for field in fields(RequestLog)
)
_json_string: Final = json.encoder.encode_basestring_ascii  # quoted and escaped


def request_log_line(entry: RequestLog, latency_ms: float, *, answered: bool = True) -> str:
    """The JSON line of one request: the set fields of ``entry``, then latency (never a PAN)."""
    parts = []
    for name, key, text in _LOG_KEYS:
        value = getattr(entry, name)
        if value is not None:
            parts.append(key + (_json_string(value) if text else str(value)))
    parts.append(f'"latency_ms":{round(latency_ms, 3)!r}')
    if not answered:
        parts.append('"answered":false')
    return "{" + ",".join(parts) + "}"


class RequestLogWriter:
    """Collects request log lines and writes those of one loop turn in one logging call."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._logger = logger
        self._lines: list[str] = []

    def add(self, reply: HostReply, arrived: float) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        latency_ms = (time.monotonic() - arrived) * 1000
        self._lines.append(request_log_line(reply.log, latency_ms, answered=bool(reply.frames)))
        if len(self._lines) == 1:
            asyncio.get_running_loop().call_soon(self.flush)
        elif len(self._lines) >= LOG_LINES_MAX:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self._logger.info("\n".join(lines))


@dataclass(frozen=True, slots=True)
class ServerLimits:
    connections_max: int = CONNECTIONS_MAX
    frame_bytes_max: int = MAX_FRAME_BYTES
    idle_timeout_ms: int = IDLE_TIMEOUT_MS
    in_flight_max: int = IN_FLIGHT_MAX


class _Slot:
    """One request's place in its connection's answer order."""

    __slots__ = ("arrived", "ready", "reply")

    def __init__(self, arrived: float) -> None:
        self.arrived = arrived
        self.reply: HostReply | None = None
        self.ready = False


class GroupCommitter:
    """Collects frames from all connections; one worker thread commits a group at a time."""

    def __init__(self, core: HostCore) -> None:
        self._core = core
        self._queue: list[tuple[Frame, _Slot, _Connection]] = []
        self._running = False
        # One writer: SQLite has one anyway, and order per terminal stays simple.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="host-commit"
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Requests wait for a group or a group is committing."""
        return self._running or bool(self._queue)

    def submit(self, frame: Frame, slot: _Slot, connection: _Connection) -> None:
        self._queue.append((frame, slot, connection))
        if not self._running:
            self._running = True
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if len(self._queue) < GROUP_MAX_REQUESTS:
                    # Let the requests already on their way join this group: one commit
                    # (one fsync) then serves them all instead of a group each.
                    await asyncio.sleep(GROUP_GATHER_MS / 1000)
                group = self._queue[:GROUP_MAX_REQUESTS]
                del self._queue[:GROUP_MAX_REQUESTS]
                frames = [frame for frame, _, _ in group]
                try:
                    replies = await loop.run_in_executor(
                        self._executor, self._core.handle_decoded_frames, frames
                    )
                except Exception as exc:  # the core must not raise; if it does, close lines
                    log.exception("group failed")
                    failed = HostReply(close=True, log=RequestLog(error=f"group failed: {exc}"))
                    replies = [failed] * len(group)
                for (_, slot, connection), reply in zip(group, replies, strict=True):
                    connection.answer(slot, reply)
        finally:
            self._running = False

    def close(self) -> None:
        self._executor.shutdown(wait=True)


class _Connection(asyncio.Protocol):
    def __init__(self, server: HostServer) -> None:
        self._server = server
        self._session = HostSession(server.core, max_frame_bytes=server.limits.frame_bytes_max)
        self._pending: collections.deque[_Slot] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._closing = False
        self._draining = False
        self.last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.last_activity = time.monotonic()
        if len(self._server.connections) >= self._server.limits.connections_max:
            log.warning(json.dumps({"event": "refused", "reason": "connections_max"}))
            transport.abort()
            return
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._closing = True

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        now = time.monotonic()
        self.last_activity = now
        frames, local = self._session.split(data)
        for reply in local:
            slot = _Slot(now)
            self._pending.append(slot)
            self.answer(slot, reply)
        for frame in frames:
            slot = _Slot(now)
            self._pending.append(slot)
            self._server.committer.submit(frame, slot, self)
        if len(self._pending) >= self._server.limits.in_flight_max and not self._paused:
            assert self._transport is not None
            self._transport.pause_reading()
            self._paused = True

    def stop_reading(self) -> None:
        """Graceful stop: read nothing more; what was read is still answered."""
        self._draining = True
        if self._transport is not None and not self._closing and not self._paused:
            self._transport.pause_reading()
            self._paused = True

    @property
    def in_flight(self) -> bool:
        return bool(self._pending) and not self._closing

    def answer(self, slot: _Slot, reply: HostReply) -> None:
        slot.reply = reply
        if reply.delay_ms > 0:
            asyncio.get_running_loop().call_later(reply.delay_ms / 1000, self._ready, slot)
        else:
            self._ready(slot)

    def _ready(self, slot: _Slot) -> None:
        slot.ready = True
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        while self._pending and self._pending[0].ready:
            slot = self._pending.popleft()
            reply = slot.reply
            assert reply is not None
            if reply.log.mti is not None or reply.log.error is not None:
                self._server.log_request(reply, slot.arrived)
            if transport is None or self._closing:
                continue
            for frame in reply.frames:
                transport.write(frame)
            if reply.close:
                self._closing = True
                transport.close()
        if (
            self._paused
            and not self._draining
            and len(self._pending) < self._server.limits.in_flight_max
        ):
            self._paused = False
            if transport is not None and not self._closing:
                transport.resume_reading()

    def idle_for(self, now: float) -> float:
        return now - self.last_activity if not self._pending else 0.0

    def close_idle(self) -> None:
        if self._transport is not None:
            self._closing = True
            self._transport.close()


class HostServer:
    def __init__(self, core: HostCore, *, limits: ServerLimits | None = None) -> None:
        self.core = core
        self.limits = limits or ServerLimits()
        self.committer = GroupCommitter(core)
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._log = RequestLogWriter()
        self.requests_answered = 0  # request log entries written (answered or dropped)

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Listen; ``reuse_port`` lets several host processes share the port (SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=LISTEN_BACKLOG, reuse_port=reuse_port
        )
        self._sweeper = loop.create_task(self._sweep_idle())
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_SWEEP_INTERVAL_MS / 1000)
            now = time.monotonic()
            for connection in list(self.connections):
                if connection.idle_for(now) * 1000 > self.limits.idle_timeout_ms:
                    connection.close_idle()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def drain(self, *, timeout_ms: int = DRAIN_TIMEOUT_MS) -> None:
        """Graceful stop: stop listening and reading, answer what was read (then :meth:`close`)."""
        if self._server is not None:
            self._server.close()  # no new connections; the open ones stay
        for connection in list(self.connections):
            connection.stop_reading()
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline and (
            self.committer.busy or any(c.in_flight for c in self.connections)
        ):
            await asyncio.sleep(DRAIN_POLL_MS / 1000)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.close_idle()
            await self._server.wait_closed()
        self.committer.close()
        self._log.flush()

    def log_request(self, reply: HostReply, arrived: float) -> None:
        self.requests_answered += 1
        self._log.add(reply, arrived)


async def serve(
    core: HostCore,
    host: str,
    port: int,
    *,
    limits: ServerLimits | None = None,
    ready: asyncio.Event | None = None,
    reuse_port: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the host until cancelled, or until ``stop`` is set: then stop gracefully (drain)."""
    server = HostServer(core, limits=limits)
    bound = await server.start(host, port, reuse_port=reuse_port)
    pid = os.getpid()
    log.warning(json.dumps({"event": "listening", "host": bound[0], "port": bound[1], "pid": pid}))
    if ready is not None:
        ready.set()
    try:
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()
            await server.drain()
    finally:
        await server.close()
        stopped = {"event": "stopped", "pid": pid, "requests": server.requests_answered}
        log.warning(json.dumps(stopped))
