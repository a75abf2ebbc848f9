"""The asyncio TCP shell around :class:`~posbatch.host.core.HostCore`: sockets only.

Theory of operation
-------------------
Each connection is an :class:`asyncio.Protocol` holding a
:class:`~posbatch.host.session.HostSession`. Whole frames go to one
:class:`GroupCommitter`, which hands everything that arrived since its last
commit — from every connection — to ``core.open_group`` (the group's Python
work, on the loop's thread, in one open database transaction), commits it, then
writes every answer of the group; one commit (one fsync) serves the whole group,
which is what makes many durable answers per second. Where the commit runs
depends on who does its work (measured, docs/host.md): an embedded SQLite
commits on the loop's thread — its COMMIT is this process's own work and one
fsync, and handing it to a thread costs more (two threads taking turns at the
GIL) than the fsync the loop waits for; a database server's commit is another
process's work, so it waits in a worker thread while the loop reads the next
group's requests, and the groups are larger. With several worker processes on
one SQLite file a group does not wait in SQLite's busy handler for the write
lock (it sleeps 1, 2, 5, 10, 15… ms, the loop stopped): it tries again every
``LOCK_RETRY_MS`` while the loop reads on.

Answers on one connection leave in request order (a delayed answer holds
back the ones after it, as on a real line). A graceful stop
(:meth:`HostServer.drain`, what ``serve(stop=…)`` does when ``stop`` is set)
stops listening and reading, lets the groups in flight commit and their
answers go out — an answer still leaves only after its commit — then closes
every connection.

No peer can starve the others (every limit is a named constant, a field of
:class:`ServerLimits`, and in docs/host.md's table):

- a frame must be whole ``FRAME_DEADLINE_MS`` after its first byte (a peer
  sending one byte a second is cut off, whatever it sends); idle time counts
  from the last whole frame or answer, not from any byte;
- a connection that has not sent one whole frame ``FIRST_FRAME_TIMEOUT_MS``
  after it opened is closed (silent and slow sockets go long before a
  terminal's own timeout, tens of seconds);
- one peer address (IPv6: its /64) holds at most
  ``CONNECTIONS_PER_ADDRESS_MAX`` connections, all peers ``CONNECTIONS_MAX``;
  when either is full a new connection takes the place of the oldest one that
  never sent a whole frame, and is refused only when there is none — so
  sockets that say nothing can never keep out a terminal that talks;
- requests of one connection between arrival and answer are at most
  ``IN_FLIGHT_MAX``; frames beyond that wait in the connection's reader and
  the socket is not read;
- answers a peer does not read: above ``UNSENT_BYTES_MAX`` unsent bytes the
  connection is not read any more (its requests stay in its own socket
  buffers, not in our memory) until they drain; stuck above it for
  ``UNSENT_STALL_TIMEOUT_MS`` it is cut off.

Closures and refusals are counted and logged once per sweep (one line a
second at most), never one line per socket: a flood must not flood the log.

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
import dataclasses
import ipaddress
import json
import json.encoder
import logging
import os
import resource
import socket
import time
from dataclasses import dataclass, fields
from typing import Any, Final

from posbatch.errors import ConfigError
from posbatch.host.core import GROUP_REQUESTS_MAX, HostCore, HostReply, OpenGroup, RequestLog
from posbatch.host.session import HostSession
from posbatch.storage import SQLITE_BUSY_TIMEOUT_MS, is_sqlite
from posbatch.wire import FRAME_BYTES_MAX, LENGTH_BYTES, Frame

__all__ = [
    "CONNECTIONS_MAX",
    "CONNECTIONS_PER_ADDRESS_MAX",
    "DRAIN_TIMEOUT_MS",
    "FIRST_FRAME_TIMEOUT_MS",
    "FRAME_DEADLINE_MS",
    "IDLE_TIMEOUT_MS",
    "IN_FLIGHT_MAX",
    "LOG_LINES_MAX",
    "SOCKET_SEND_BUFFER_BYTES",
    "UNSENT_BYTES_MAX",
    "UNSENT_STALL_TIMEOUT_MS",
    "GroupCommitter",
    "HostServer",
    "RequestLogWriter",
    "ServerLimits",
    "request_log_line",
    "serve",
]

CONNECTIONS_MAX: Final = 10_000
# One peer address (an IPv6 /64): a shop's or a carrier's NAT may put many terminals
# behind one address, so this is generous — but far below CONNECTIONS_MAX.
CONNECTIONS_PER_ADDRESS_MAX: Final = 256
IDLE_TIMEOUT_MS: Final = 300_000  # from the last whole frame or answer
# A frame is a few hundred bytes sent in one write; even over GPRS it is whole in a
# second or two. Counted from its first byte, while the host reads the connection.
FRAME_DEADLINE_MS: Final = 10_000
# From the connection's opening to its first whole frame (a terminal sends at once).
FIRST_FRAME_TIMEOUT_MS: Final = 10_000
IN_FLIGHT_MAX: Final = 32  # requests of one connection between arrival and answer
# Answers written but not yet taken by the peer's TCP stack (asyncio's write buffer);
# above it the connection is not read. Resume below a quarter of it.
UNSENT_BYTES_MAX: Final = 64 * 1024
# A connection whose unsent answers stay above UNSENT_BYTES_MAX this long is cut off.
UNSENT_STALL_TIMEOUT_MS: Final = 30_000
# The kernel's send buffer of each connection (SO_SNDBUF; Linux doubles it for its own
# bookkeeping). Answers are a few hundred bytes: without this a peer that never reads
# lets the kernel queue megabytes per connection (tcp_wmem autotuning) before the host
# even sees the backpressure.
SOCKET_SEND_BUFFER_BYTES: Final = 64 * 1024
# Descriptors kept for what is not a connection: the listening socket, the database,
# the log, epoll, the commit thread's files.
FILE_DESCRIPTORS_RESERVED: Final = 64
IDLE_SWEEP_INTERVAL_MS: Final = 1_000
# asyncio's socket transport hands over at most this much per data_received call. A
# connection's reader holds at most one such read of frames not yet taken (reading
# stops until they are) plus one unfinished frame, so this bounds its buffer.
SOCKET_READ_BYTES_MAX: Final = 256 * 1024
# How long a group waits for more requests before it commits (latency traded for fsyncs).
GROUP_GATHER_MS: Final = 1
# How often a group tries again for SQLite's write lock that another worker holds.
LOCK_RETRY_MS: Final = 0.5
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
    (name, f'"{name}":', name not in ("batch_no", "stan")) for name in RequestLog._fields
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerLimits:
    """What one host process allows its peers (docs/host.md, "Limits")."""

    connections_max: int = CONNECTIONS_MAX
    # 0: CONNECTIONS_PER_ADDRESS_MAX, but at most half of connections_max, so that one
    # address can never hold every connection of a host set up small.
    connections_per_address_max: int = 0
    frame_bytes_max: int = FRAME_BYTES_MAX
    idle_timeout_ms: int = IDLE_TIMEOUT_MS
    frame_deadline_ms: int = FRAME_DEADLINE_MS
    first_frame_timeout_ms: int = FIRST_FRAME_TIMEOUT_MS
    in_flight_max: int = IN_FLIGHT_MAX
    unsent_bytes_max: int = UNSENT_BYTES_MAX
    unsent_stall_timeout_ms: int = UNSENT_STALL_TIMEOUT_MS
    socket_send_buffer_bytes: int = SOCKET_SEND_BUFFER_BYTES

    def __post_init__(self) -> None:
        if self.connections_per_address_max == 0 and isinstance(self.connections_max, int):
            derived = max(1, min(CONNECTIONS_PER_ADDRESS_MAX, self.connections_max // 2))
            object.__setattr__(self, "connections_per_address_max", derived)
        for limit in fields(self):
            value = getattr(self, limit.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{limit.name} must be a whole number ≥ 1, got {value!r}")
        if self.connections_per_address_max > self.connections_max:
            raise ConfigError(
                f"connections_per_address_max ({self.connections_per_address_max}) must not "
                f"exceed connections_max ({self.connections_max})"
            )


def peer_key(peername: Any) -> str:
    """The address a per-peer limit counts: IPv4 as is, IPv6 by its /64 (one site)."""
    if not isinstance(peername, tuple) or not peername:
        return str(peername)
    try:
        address = ipaddress.ip_address(str(peername[0]).partition("%")[0])
    except ValueError:
        return str(peername[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def fit_file_descriptors(connections_max: int) -> int:
    """Raise this process's descriptor limit for ``connections_max``; the most it can hold.

    A full descriptor table stops ``accept`` altogether (asyncio then waits a
    second before trying again), and with it every terminal, so the host must
    never let its connections reach it: when the hard limit is too low the
    connection limit is lowered to fit, and the caller says so.
    """
    needed = connections_max + FILE_DESCRIPTORS_RESERVED
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return connections_max
    return max(1, soft - FILE_DESCRIPTORS_RESERVED)


class _Slot:
    """One request's place in its connection's answer order."""

    __slots__ = ("arrived", "ready", "reply")

    def __init__(self, arrived: float) -> None:
        self.arrived = arrived
        self.reply: HostReply | None = None
        self.ready = False


class GroupCommitter:
    """Collects frames from all connections; commits one group at a time.

    A group is processed on the loop's thread in an open transaction
    (:meth:`HostCore.open_group`), committed — on the loop's thread, or in a worker
    thread when ``commit_in_thread`` — then answered.
    """

    def __init__(self, core: HostCore, *, commit_in_thread: bool) -> None:
        self._core = core
        self._queue: list[tuple[Frame, _Slot, _Connection]] = []
        self._running = False
        # A database server's commits: one thread, so groups commit in order and order per
        # terminal stays simple. SQLite commits on the loop's thread (measured, docs/host.md).
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-commit")
            if commit_in_thread
            else None
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
                if len(self._queue) < GROUP_REQUESTS_MAX:
                    # Let the requests already on their way join this group: one commit
                    # (one fsync) then serves them all instead of a group each.
                    await asyncio.sleep(GROUP_GATHER_MS / 1000)
                group = self._queue[:GROUP_REQUESTS_MAX]
                del self._queue[:GROUP_REQUESTS_MAX]
                frames = [frame for frame, _, _ in group]
                try:
                    # The Python work on the loop's thread: two threads taking turns at
                    # the GIL cost more than any of it.
                    opened = self._core.open_group(frames, wait=False)
                    if opened.waiting:
                        await self._wait_for_the_lock(opened)
                    if self._executor is None:
                        opened.commit()
                    else:
                        await loop.run_in_executor(self._executor, opened.commit)
                    replies = opened.replies()
                except Exception as exc:  # the core must not raise; if it does, close lines
                    log.exception("group failed")
                    failed = HostReply(close=True, log=RequestLog(error=f"group failed: {exc}"))
                    replies = [failed] * len(group)
                for (_, slot, connection), reply in zip(group, replies, strict=True):
                    connection.answer(slot, reply)
        finally:
            self._running = False

    async def _wait_for_the_lock(self, opened: OpenGroup) -> None:
        """Another worker process holds SQLite's write lock: try again every
        ``LOCK_RETRY_MS`` while the loop goes on reading (SQLite's own busy handler would
        sleep 1, 2, 5, 10, 15… ms with the loop stopped), then wait as everyone else does."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SQLITE_BUSY_TIMEOUT_MS / 1000
        while opened.waiting and loop.time() < deadline:
            await asyncio.sleep(LOCK_RETRY_MS / 1000)
            opened.begin(wait=False)
        if opened.waiting:
            opened.begin(wait=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


class _Connection(asyncio.Protocol):
    """One peer: its session, its answers in request order, and what it is allowed."""

    def __init__(self, server: HostServer) -> None:
        self._server = server
        frame_max = server.limits.frame_bytes_max
        self._session = HostSession(
            server.core,
            max_frame_bytes=frame_max,
            max_buffer_bytes=SOCKET_READ_BYTES_MAX + LENGTH_BYTES + frame_max,
        )
        self._pending: collections.deque[_Slot] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._reading = True
        self._taking = False
        self._closing = False
        self._draining = False
        self._peer_done = False  # the peer half-closed: it sends nothing more
        self.address = ""
        self.connected_at = 0.0
        self.last_activity = 0.0  # the last whole frame taken or answer written
        self.framed = False  # one whole frame has come: the peer talks
        self.frame_started_at: float | None = None  # first byte of an unfinished frame
        self.unsent_since: float | None = None  # unsent answers above the limit since

    # --- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.connected_at = self.last_activity = time.monotonic()
        self.address = peer_key(transport.get_extra_info("peername"))
        if not self._server.admit(self):
            self._closing = True
            transport.abort()
            return
        limits = self._server.limits
        transport.set_write_buffer_limits(
            high=limits.unsent_bytes_max, low=limits.unsent_bytes_max // 4
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, limits.socket_send_buffer_bytes
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.forget(self)
        self._closing = True

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._take(data, time.monotonic())

    def eof_received(self) -> bool:
        """asyncio: the peer closed its sending side (a half-close, ``shutdown(SHUT_WR)``
        after its last request). What it sent is still answered, then the connection
        closes; True keeps the transport open for those answers. (asyncio's default
        closed at once: the requests were processed and committed, their answers
        dropped, and the terminal reversed approved sales.)"""
        self._peer_done = True
        self._close_when_answered()
        return True

    def _close_when_answered(self) -> None:
        """Once a half-closed peer has every answer it is owed, close (an unfinished
        frame it left can never complete)."""
        if self._peer_done and not self._pending and not self._closing:
            self._closing = True
            if self._transport is not None:
                self._transport.close()

    def pause_writing(self) -> None:
        """asyncio: the unsent answers passed UNSENT_BYTES_MAX — read nothing more."""
        self.unsent_since = time.monotonic()
        self._update_reading()

    def resume_writing(self) -> None:
        """asyncio: they drained below a quarter of it."""
        self.unsent_since = None
        if not self._closing:
            self._take(b"", time.monotonic())  # frames read before the pause come first
        self._update_reading()

    # --- requests in -----------------------------------------------------------------------

    def _take(self, data: bytes, now: float) -> None:
        """Feed ``data``; take whole frames while the in-flight limit allows (the rest waits)."""
        if self._taking:
            return  # an answer given while taking: the loop below goes on by itself
        self._taking = True
        try:
            chunk = data
            while not self._closing:
                budget = self._server.limits.in_flight_max - len(self._pending)
                if self.unsent_since is not None:
                    budget = 0  # answers pile up unread: take no more requests either
                frames, local = self._session.split(chunk, max_frames=max(budget, 0))
                chunk = b""
                if not frames and not local:
                    break
                self._took_frames(now, talking=bool(frames))
                self._admit_frames(frames, local, now)
            if not self._session.frame_started:
                self.frame_started_at = None
            elif self.frame_started_at is None:
                self.frame_started_at = now
        finally:
            self._taking = False
        self._update_reading()

    def _took_frames(self, now: float, *, talking: bool) -> None:
        self.last_activity = now
        self.frame_started_at = None  # the frame ended; a new one starts with its first byte
        if talking and not self.framed:
            # A frame for the core (sound TPDU and header), not only dropped garbage.
            self.framed = True
            self._server.talking(self)

    def _admit_frames(self, frames: list[Frame], local: list[HostReply], now: float) -> None:
        """Slots in stream order: drops, then the frames for the core, then a closing reply."""
        closing = [reply for reply in local if reply.close]
        for reply in local:
            if not reply.close:
                self._answer_now(reply, now)
        for frame in frames:
            slot = _Slot(now)
            self._pending.append(slot)
            self._server.committer.submit(frame, slot, self)
        for reply in closing:
            self._answer_now(reply, now)

    def _answer_now(self, reply: HostReply, now: float) -> None:
        slot = _Slot(now)
        self._pending.append(slot)
        self.answer(slot, reply)

    def _update_reading(self) -> None:
        """Read the socket only when this peer may send more (one place decides)."""
        transport = self._transport
        if transport is None or self._closing:
            return
        want = (
            not self._draining
            and self.unsent_since is None
            and len(self._pending) < self._server.limits.in_flight_max
        )
        if want and not self._reading:
            self._reading = True
            if self._session.frame_started:
                # Its bytes waited on us, not on the peer: the frame's clock starts again.
                self.frame_started_at = time.monotonic()
            transport.resume_reading()
        elif not want and self._reading:
            self._reading = False
            transport.pause_reading()

    def stop_reading(self) -> None:
        """Graceful stop: read nothing more; what was read is still answered."""
        self._draining = True
        self._update_reading()

    @property
    def reading(self) -> bool:
        return self._reading and not self._closing

    @property
    def in_flight(self) -> bool:
        return bool(self._pending) and not self._closing

    # --- answers out ---------------------------------------------------------------------------

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
        answered = False
        while self._pending and self._pending[0].ready:
            slot = self._pending.popleft()
            answered = True
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
        if answered and not self._closing:
            now = time.monotonic()
            self.last_activity = now
            self._take(b"", now)  # frames that waited for room in flight
            self._close_when_answered()
        self._update_reading()

    # --- limits -------------------------------------------------------------------------------

    def idle_for(self, now: float) -> float:
        return now - self.last_activity if not self._pending else 0.0

    def overdue(self, now: float) -> str | None:
        """Why this connection must be cut off now (a ServerLimits field), or None."""
        limits = self._server.limits
        if self.unsent_since is not None:
            if (now - self.unsent_since) * 1000 > limits.unsent_stall_timeout_ms:
                return "unsent_stall_timeout_ms"
            return None
        if (
            not self.framed
            and not self._pending
            and (now - self.connected_at) * 1000 > limits.first_frame_timeout_ms
        ):
            return "first_frame_timeout_ms"
        if (
            self._reading
            and self.frame_started_at is not None
            and (now - self.frame_started_at) * 1000 > limits.frame_deadline_ms
        ):
            return "frame_deadline_ms"
        if self.idle_for(now) * 1000 > limits.idle_timeout_ms:
            return "idle_timeout_ms"
        return None

    def close_idle(self) -> None:
        """Close after what is written has gone (idle, or a graceful stop)."""
        if self._transport is not None:
            self._closing = True
            self._transport.close()

    def cut_off(self) -> None:
        """Close now, dropping what is unsent (a peer that broke a limit)."""
        if self._transport is not None:
            self._closing = True
            self._transport.abort()


class HostServer:
    def __init__(self, core: HostCore, *, limits: ServerLimits | None = None) -> None:
        self.core = core
        self.limits = limits or ServerLimits()
        self.committer = GroupCommitter(core, commit_in_thread=not is_sqlite(core.store.engine))
        self.connections: set[_Connection] = set()
        # Per peer address, its connections in the order they came (oldest first).
        self._by_address: dict[str, dict[_Connection, None]] = {}
        # Connections that have not sent a whole frame yet, oldest first: the ones a
        # new connection may take the place of when a limit is full.
        self._silent: dict[_Connection, None] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._log = RequestLogWriter()
        self.requests_answered = 0  # request log entries written (answered or dropped)
        # Refusals and closures since the last sweep, by reason (logged once per sweep).
        self.closed_by_limit: collections.Counter[str] = collections.Counter()
        self.closed_by_limit_total: collections.Counter[str] = collections.Counter()

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        """Listen; ``reuse_port`` lets several host processes share the port (SO_REUSEPORT)."""
        fitted = fit_file_descriptors(self.limits.connections_max)
        if fitted < self.limits.connections_max:
            log.warning(json.dumps({
                "event": "connections_max_lowered", "requested": self.limits.connections_max,
                "connections_max": fitted, "reason": "file descriptor limit (ulimit -n)",
            }))  # fmt: skip
            self.limits = dataclasses.replace(
                self.limits,
                connections_max=fitted,
                connections_per_address_max=min(fitted, self.limits.connections_per_address_max),
            )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=LISTEN_BACKLOG, reuse_port=reuse_port
        )
        self._sweeper = loop.create_task(self._sweep())
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    # --- admission -----------------------------------------------------------------------------

    def admit(self, connection: _Connection) -> bool:
        """Take ``connection`` in, in the place of a silent one if a limit is full."""
        limits = self.limits
        same = self._by_address.get(connection.address, {})
        if len(same) >= limits.connections_per_address_max:
            victim = next((c for c in same if c in self._silent), None)
            if victim is None:
                self.closed_by_limit["refused_connections_per_address_max"] += 1
                return False
            self._evict(victim, "evicted_connections_per_address_max")
        if len(self.connections) >= limits.connections_max:
            victim = next(iter(self._silent), None)
            if victim is None:
                self.closed_by_limit["refused_connections_max"] += 1
                return False
            self._evict(victim, "evicted_connections_max")
        self.connections.add(connection)
        self._by_address.setdefault(connection.address, {})[connection] = None
        self._silent[connection] = None
        return True

    def talking(self, connection: _Connection) -> None:
        """``connection`` sent its first whole frame: it is no longer one to evict."""
        self._silent.pop(connection, None)

    def forget(self, connection: _Connection) -> None:
        """``connection`` is gone (idempotent: an eviction forgets before the close lands)."""
        self.connections.discard(connection)
        self._silent.pop(connection, None)
        same = self._by_address.get(connection.address)
        if same is not None:
            same.pop(connection, None)
            if not same:
                del self._by_address[connection.address]

    def _evict(self, connection: _Connection, reason: str) -> None:
        self.closed_by_limit[reason] += 1
        self.forget(connection)
        connection.cut_off()

    def connections_of(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    # --- the sweep -----------------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(IDLE_SWEEP_INTERVAL_MS / 1000)
            try:
                self.sweep(time.monotonic())
            except Exception:  # a bug here must not end the limits for good: log, go on
                log.exception("sweep failed")

    def sweep(self, now: float) -> None:
        """Close what broke a time limit; log what limits did since the last sweep."""
        for connection in list(self.connections):
            reason = connection.overdue(now)
            if reason == "idle_timeout_ms":
                self.closed_by_limit[reason] += 1
                self.forget(connection)
                connection.close_idle()
            elif reason is not None:
                self._evict(connection, reason)
        if self.closed_by_limit:
            counts = dict(sorted(self.closed_by_limit.items()))
            self.closed_by_limit_total.update(self.closed_by_limit)
            self.closed_by_limit.clear()
            level = logging.INFO if set(counts) == {"idle_timeout_ms"} else logging.WARNING
            log.log(level, json.dumps({"event": "limits", **counts}))

    # --- lifecycle -------------------------------------------------------------------------------

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
