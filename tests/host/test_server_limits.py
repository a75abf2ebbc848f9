"""No peer can starve the others (issue #12 §4): slow, silent, flooding and non-reading peers.

Over a real loopback socket, with the server in the test's event loop. Time
limits are checked by calling ``HostServer.sweep(now)`` with a ``now`` in the
future (what the once-a-second sweeper does with the real clock), so the
tests do not wait for the limits; the limits themselves are set long enough
that the real sweeper cannot act first on a loaded machine. Extra loopback
addresses (127.0.0.2 …) stand for other peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from host_helpers import MERCHANT_ID, PAN, TERMINAL_ID, frame_of, new_core, open_store
from typer.testing import CliRunner

from posbatch.errors import ConfigError
from posbatch.host import server as server_module
from posbatch.host.cli import app
from posbatch.host.server import (
    CONNECTIONS_PER_ADDRESS_MAX,
    FILE_DESCRIPTORS_RESERVED,
    IN_FLIGHT_MAX,
    HostServer,
    ServerLimits,
    fit_file_descriptors,
    peer_key,
)
from posbatch.wire import (
    AdminResponse as EchoResponse,
)
from posbatch.wire import (
    EchoRequest,
    Frame,
    FrameReader,
    SaleRequest,
    SignOnRequest,
    SignOnResponse,
    TransactionResponse,
    decode_message,
    encode_frame,
    unwrap_working_keys,
)

LONG_MS = 600_000  # a limit the real sweeper cannot reach during a test
ANSWER_TIMEOUT_S = 10.0
QUIET_S = 0.2  # how long "nothing comes" is watched


async def _start(db_url: str, **limits: int) -> HostServer:
    values = {
        "idle_timeout_ms": LONG_MS,
        "frame_deadline_ms": LONG_MS,
        "first_frame_timeout_ms": LONG_MS,
        **limits,
    }
    server = HostServer(new_core(open_store(db_url)), limits=ServerLimits(**values))
    await server.start("127.0.0.1", 0)
    return server


async def _stop(server: HostServer) -> None:
    await server.close()
    server.core.store.close()


_OPEN_PEERS: list[Peer] = []


def _close_all() -> None:
    while _OPEN_PEERS:
        _OPEN_PEERS.pop().close()


@pytest.fixture
async def host(db_url: str, request: pytest.FixtureRequest) -> AsyncIterator[HostServer]:
    limits: dict[str, int] = getattr(request, "param", {})
    server = await _start(db_url, **limits)
    yield server
    _close_all()
    await asyncio.sleep(0)
    await _stop(server)


def _port(server: HostServer) -> int:
    assert server._server is not None
    return int(server._server.sockets[0].getsockname()[1])


class Peer:
    """One client connection from a chosen loopback address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.stan = 0
        self.mak: bytes | None = None

    @classmethod
    async def connect(cls, server: HostServer, address: str = "127.0.0.1") -> Peer:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", _port(server), local_addr=(address, 0)
        )
        await asyncio.sleep(0.02)  # let the server take it in (admission happens on accept)
        peer = cls(reader, writer)
        _OPEN_PEERS.append(peer)
        return peer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> Any:
        while True:
            frame = self.frames.next_frame()
            if frame is not None:
                return decode_message(frame.body)
            chunk = await asyncio.wait_for(self.reader.read(4096), ANSWER_TIMEOUT_S)
            if not chunk:
                raise ConnectionError("closed by the host")
            self.frames.receive_data(chunk)

    async def sign_on(self) -> None:
        self.stan += 1
        await self.send(frame_of(SignOnRequest(TERMINAL_ID, MERCHANT_ID, self.stan, 1), None))
        answer = await self.answer()
        assert isinstance(answer, SignOnResponse) and answer.working_keys is not None
        from host_helpers import MASTER_KEY  # noqa: PLC0415 - only here

        self.mak = unwrap_working_keys(MASTER_KEY, answer.working_keys).mak

    async def sale(self) -> str:
        self.stan += 1
        sale = SaleRequest(TERMINAL_ID, MERCHANT_ID, self.stan, 1, 100, PAN)
        await self.send(frame_of(sale, self.mak))
        answer = await self.answer()
        assert isinstance(answer, TransactionResponse)
        return answer.response_code

    async def closed_by_host(self) -> bool:
        """True when the host closed the connection (EOF); False when it stays open."""
        try:
            chunk = await asyncio.wait_for(self.reader.read(4096), QUIET_S)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return chunk == b""

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


def _count(server: HostServer, reason: str) -> int:
    """Closures or refusals for ``reason`` so far (logged by a sweep or not yet)."""
    return server.closed_by_limit[reason] + server.closed_by_limit_total[reason]


def _sign_on_frame(stan: int = 1) -> bytes:
    return frame_of(SignOnRequest(TERMINAL_ID, MERCHANT_ID, stan, 1), None)


# --- slowloris: a frame has a deadline from its first byte ------------------------------------


@pytest.mark.parametrize("host", [{"frame_deadline_ms": 60_000}], indirect=True)
async def test_a_frame_sent_byte_by_byte_is_cut_off_at_its_deadline(host: HostServer) -> None:
    """Each byte does not buy time: 60 s after the frame's first byte the connection goes."""
    peer = await Peer.connect(host)
    await peer.sign_on()  # a terminal that talks, then turns slow
    frame = _sign_on_frame(2)
    first_byte_at = time.monotonic()
    await peer.send(frame[:1])
    await asyncio.sleep(0.05)
    await peer.send(frame[1:3])
    await asyncio.sleep(0.05)
    host.sweep(first_byte_at + 59.0)
    still_open = not await peer.closed_by_host()
    await peer.send(frame[3:5])  # more bytes, same unfinished frame
    await asyncio.sleep(0.05)
    host.sweep(first_byte_at + 61.0)
    assert (True, True) == (still_open, await peer.closed_by_host())
    assert 1 == _count(host, "frame_deadline_ms")


@pytest.mark.parametrize("host", [{"frame_deadline_ms": 60_000}], indirect=True)
async def test_whole_frames_far_apart_are_never_cut_off(host: HostServer) -> None:
    """A terminal whose frames are whole is never timed by the frame deadline."""
    peer = await Peer.connect(host)
    await peer.sign_on()
    host.sweep(time.monotonic() + 500)  # long past the deadline, no unfinished frame
    alive = not await peer.closed_by_host()
    assert (True, "00") == (alive, await peer.sale())
    peer.close()


@pytest.mark.parametrize("host", [{"idle_timeout_ms": 60_000}], indirect=True)
async def test_idle_time_counts_from_the_last_whole_frame_not_any_byte(host: HostServer) -> None:
    """Bytes of an unfinished frame do not keep a connection from its idle timeout."""
    peer = await Peer.connect(host)
    await peer.sign_on()
    answered_at = time.monotonic()
    await asyncio.sleep(0.5)
    await peer.send(_sign_on_frame(2)[:3])  # 0.5 s after the last answer: one byte-run
    await asyncio.sleep(0.05)
    host.sweep(answered_at + 60.2)  # 59.7 s after those bytes, 60.2 s after the last frame
    assert await peer.closed_by_host()
    assert 1 == _count(host, "idle_timeout_ms")


# --- silent connections --------------------------------------------------------------------------


@pytest.mark.parametrize("host", [{"first_frame_timeout_ms": 5_000}], indirect=True)
async def test_a_connection_without_a_whole_frame_goes_at_the_first_frame_timeout(
    host: HostServer,
) -> None:
    """Silent and half-a-frame connections go 5 s after they opened; a talking one stays."""
    opened_at = time.monotonic()
    silent = await Peer.connect(host)
    slow = await Peer.connect(host)
    await slow.send(_sign_on_frame()[:4])
    talking = await Peer.connect(host)
    await talking.sign_on()
    host.sweep(opened_at + 4.0)
    early = [await peer.closed_by_host() for peer in (silent, slow, talking)]
    host.sweep(time.monotonic() + 5.5)
    late = [await peer.closed_by_host() for peer in (silent, slow, talking)]
    assert ([False, False, False], [True, True, False]) == (early, late)
    talking.close()


# --- connection floods ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", [{"connections_max": 10, "connections_per_address_max": 2}], indirect=True
)
async def test_one_address_cannot_take_more_than_its_share(host: HostServer) -> None:
    """Two talking connections from 127.0.0.2 fill its share; a third is refused, others not."""
    first, second = [await Peer.connect(host, "127.0.0.2") for _ in range(2)]
    for peer in (first, second):
        await peer.sign_on()
    third = await Peer.connect(host, "127.0.0.2")
    refused = await third.closed_by_host()
    other = await Peer.connect(host, "127.0.0.1")
    await other.sign_on()
    assert (True, "00") == (refused, await other.sale())
    assert 1 == _count(host, "refused_connections_per_address_max")
    for peer in (first, second, other):
        peer.close()


@pytest.mark.parametrize(
    "host", [{"connections_max": 10, "connections_per_address_max": 2}], indirect=True
)
async def test_a_new_connection_takes_the_place_of_a_silent_one_of_its_address(
    host: HostServer,
) -> None:
    """At its address's limit, a newcomer evicts that address's oldest silent connection."""
    silent = await Peer.connect(host, "127.0.0.2")
    talking = await Peer.connect(host, "127.0.0.2")
    await talking.sign_on()
    newcomer = await Peer.connect(host, "127.0.0.2")
    await newcomer.sign_on()
    assert (True, False) == (await silent.closed_by_host(), await talking.closed_by_host())
    talking.close()
    newcomer.close()


@pytest.mark.parametrize(
    "host", [{"connections_max": 4, "connections_per_address_max": 2}], indirect=True
)
@pytest.mark.parametrize("flood_sends", [0, 5], ids=["silent", "slowloris"])
async def test_silent_sockets_filling_every_slot_cannot_keep_a_terminal_out(
    host: HostServer, flood_sends: int
) -> None:
    """Every slot held by silent sockets of two peers, or by slowloris ones that sent part of
    a frame (the issue's case: 50 slots, 50 peers at 1 byte/s): a terminal still gets in."""
    flood = [await Peer.connect(host, address) for address in ("127.0.0.2", "127.0.0.3") * 2]
    for peer in flood:
        await peer.send(_sign_on_frame()[:flood_sends])
    assert 4 == len(host.connections)
    terminal = await Peer.connect(host, "127.0.0.1")
    await terminal.sign_on()
    code = await terminal.sale()
    evicted = [await peer.closed_by_host() for peer in flood]
    assert ("00", [True, False, False, False]) == (code, evicted)  # the oldest silent one
    assert 4 == len(host.connections)
    terminal.close()


@pytest.mark.parametrize("host", [{"connections_max": 2}], indirect=True)
async def test_when_every_slot_talks_a_newcomer_is_refused(host: HostServer) -> None:
    """Nobody silent to evict: the new connection is closed at once, the others keep on."""
    talking = [await Peer.connect(host, address) for address in ("127.0.0.2", "127.0.0.3")]
    for peer in talking:
        await peer.sign_on()
    newcomer = await Peer.connect(host, "127.0.0.4")
    refused = await newcomer.closed_by_host()
    assert (True, ["00", "00"]) == (refused, [await peer.sale() for peer in talking])


async def test_limits_are_logged_once_per_sweep_not_once_per_socket(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Six refusals and evictions make one log line with the counts."""
    server = await _start(db_url, connections_max=2, connections_per_address_max=1)
    with caplog.at_level(logging.INFO, logger="posbatch.host"):
        talking = await Peer.connect(server, "127.0.0.2")
        await talking.sign_on()
        peers = [await Peer.connect(server, "127.0.0.2") for _ in range(3)]  # refused
        peers += [await Peer.connect(server, "127.0.0.3") for _ in range(3)]  # evict, evict
        server.sweep(time.monotonic())
        server.sweep(time.monotonic())  # nothing new: no line
    _close_all()
    await asyncio.sleep(0)
    await _stop(server)
    lines = [
        json.loads(line)
        for record in caplog.records
        for line in record.getMessage().splitlines()
        if '"limits"' in line
    ]
    totals: dict[str, int] = {}
    for line in lines:
        for key, value in line.items():
            if key != "event":
                totals[key] = totals.get(key, 0) + value
    # One line per sweep: the real one-second sweeper may have taken a part before ours.
    assert 1 <= len(lines) <= 2
    assert {
        "evicted_connections_per_address_max": 2,
        "refused_connections_per_address_max": 3,
    } == totals


# --- requests in flight and answers nobody reads ------------------------------------------------


@pytest.mark.parametrize("host", [{"in_flight_max": 4}], indirect=True)
async def test_many_frames_in_one_read_are_taken_a_few_at_a_time_and_all_answered(
    host: HostServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 echoes in one write: groups of at most 4 reach the core; 60 answers, in order."""
    groups: list[int] = []
    handle = host.core.open_group

    def counting(frames: Sequence[Frame], *, wait: bool = True) -> Any:
        groups.append(len(frames))
        return handle(frames, wait=wait)

    monkeypatch.setattr(host.core, "open_group", counting)
    peer = await Peer.connect(host)
    echoes = [
        frame_of(EchoRequest(TERMINAL_ID, MERCHANT_ID, stan, 1), None) for stan in range(1, 61)
    ]
    await peer.send(b"".join(echoes))
    stans = [(await peer.answer()).stan for _ in range(60)]
    assert (list(range(1, 61)), True) == (stans, max(groups) <= 4)
    peer.close()


async def _send_until_host_stops(host: HostServer, sock: socket.socket, stream: bytes) -> int:
    """Send ``stream`` as fast as the kernel takes it, never reading, until the host has
    answered nothing new for a while (the client's own buffers hold what the host does
    not read); how many bytes went."""
    sent = 0
    answered = [host.requests_answered]
    while sent < len(stream) and not (len(answered) > 10 and answered[-1] == answered[-10]):
        with contextlib.suppress(BlockingIOError):
            sent += sock.send(stream[sent : sent + 8192])
        await asyncio.sleep(0.02)
        answered.append(host.requests_answered)
    assert sent < len(stream), "the host answered everything it was sent: it never stopped"
    return sent


def _echo_frames(count: int) -> bytes:
    return b"".join(
        frame_of(EchoRequest(TERMINAL_ID, MERCHANT_ID, stan % 999_999 + 1, 1), None)
        for stan in range(count)
    )


SMALL_BUFFERS = {"unsent_bytes_max": 4096, "socket_send_buffer_bytes": 4096}


@pytest.mark.slow  # fills the kernel's buffers of a client that never reads
@pytest.mark.parametrize("host", [SMALL_BUFFERS], indirect=True)
async def test_a_client_that_never_reads_stops_being_read_and_nothing_is_lost(
    host: HostServer,
) -> None:
    """Requests without reading: the host stops reading, its unsent answers stay bounded,
    the count of answered requests stops growing — and once the client reads, every
    request is answered once, in order."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, to be quick
    sock.connect(("127.0.0.1", _port(host)))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    frame_bytes = len(_echo_frames(1))
    stream = _echo_frames(20_000)
    sent = await _send_until_host_stops(host, sock, stream)
    connection = next(iter(host.connections))
    transport = connection._transport
    assert transport is not None
    answered_then = host.requests_answered
    await asyncio.sleep(0.5)
    unsent = transport.get_write_buffer_size()
    state = (connection.reading, host.requests_answered == answered_then)
    # Now the client reads: it finishes the frame it was in, and every request is answered.
    sent_frames = -(-sent // frame_bytes)
    rest = loop.create_task(loop.sock_sendall(sock, stream[sent : sent_frames * frame_bytes]))
    reader = FrameReader()
    stans: list[int] = []
    answer_bytes = 0
    while len(stans) < sent_frames:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), ANSWER_TIMEOUT_S)
        assert chunk, "the host closed the connection"
        for frame in reader.feed(chunk):
            answer = decode_message(frame.body)
            assert isinstance(answer, EchoResponse)
            stans.append(answer.stan)
            answer_bytes = max(answer_bytes, len(encode_frame(frame)))
    await rest
    sock.close()
    assert (False, True) == state
    # the limit, plus at most one in-flight round of answers
    assert unsent <= 4096 + IN_FLIGHT_MAX * answer_bytes
    assert [n % 999_999 + 1 for n in range(sent_frames)] == stans


@pytest.mark.parametrize(
    "host", [{**SMALL_BUFFERS, "unsent_stall_timeout_ms": 30_000}], indirect=True
)
async def test_a_client_that_never_reads_is_cut_off_after_the_stall_timeout(
    host: HostServer,
) -> None:
    """Stuck above the unsent limit for 30 s, the connection is cut off (its fd and buffer go)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", _port(host)))
    sock.setblocking(False)
    await _send_until_host_stops(host, sock, _echo_frames(20_000))
    connection = next(iter(host.connections), None)
    assert connection is not None and connection.unsent_since is not None
    host.sweep(connection.unsent_since + 29.0)
    kept = len(host.connections)
    host.sweep(connection.unsent_since + 31.0)
    sock.close()
    assert (1, 0) == (kept, len(host.connections))
    assert 1 == _count(host, "unsent_stall_timeout_ms")


# --- the limits themselves ------------------------------------------------------------------------


BAD_LIMITS = {
    "negative connections": ({"connections_max": -1}, "connections_max must be a whole number"),
    "zero frame deadline": ({"frame_deadline_ms": 0}, "frame_deadline_ms must be a whole number"),
    "per address above all": (
        {"connections_max": 10, "connections_per_address_max": 11},
        "connections_per_address_max (11) must not exceed connections_max (10)",
    ),
    "unsent not a number": ({"unsent_bytes_max": "64k"}, "unsent_bytes_max must be a whole"),
}


@pytest.mark.parametrize("case", sorted(BAD_LIMITS))
def test_bad_limits_are_refused(case: str) -> None:
    """A limit of 0, below 0 or not a number is a ConfigError naming it."""
    values, message = BAD_LIMITS[case]
    with pytest.raises(ConfigError) as error:
        ServerLimits(**values)  # type: ignore[arg-type]
    assert message in str(error.value)


def test_per_address_limit_defaults_to_at_most_half_of_all() -> None:
    """One address never gets every slot of a host set up small; big hosts get the constant."""
    assert (CONNECTIONS_PER_ADDRESS_MAX, 25, 1) == (
        ServerLimits().connections_per_address_max,
        ServerLimits(connections_max=50).connections_per_address_max,
        ServerLimits(connections_max=1).connections_per_address_max,
    )


PEERS = {
    "ipv4": (("192.0.2.7", 4000), "192.0.2.7"),
    "ipv6 by /64": (("2001:db8:1:2:aa::1", 4000, 0, 0), "2001:db8:1:2::/64"),
    "ipv6 same /64": (("2001:db8:1:2:ffff::9", 4000, 0, 0), "2001:db8:1:2::/64"),
    "ipv4-mapped": (("::ffff:192.0.2.7", 4000, 0, 0), "192.0.2.7"),
    "unix socket": ("", ""),
}


@pytest.mark.parametrize("case", sorted(PEERS))
def test_peer_key(case: str) -> None:
    """Per-address limits count IPv4 addresses, IPv6 /64 networks, mapped IPv4 as IPv4."""
    peername, key = PEERS[case]
    assert key == peer_key(peername)


def test_connections_are_fitted_to_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ulimit -n 1,000 (hard) a host asked for 10,000 connections raises the soft
    limit as far as it may and keeps its connections below it."""
    limits = {"soft": 256, "hard": 1_000}

    def getrlimit(_: int) -> tuple[int, int]:
        return limits["soft"], limits["hard"]

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        limits["soft"] = value[0]

    monkeypatch.setattr(server_module.resource, "getrlimit", getrlimit)
    monkeypatch.setattr(server_module.resource, "setrlimit", setrlimit)
    fitted = fit_file_descriptors(10_000)
    assert (1_000 - FILE_DESCRIPTORS_RESERVED, 1_000) == (fitted, limits["soft"])
    assert 500 == fit_file_descriptors(500)


CLI_BAD = {
    "frame deadline 0": (["--frame-deadline-ms", "0"], "--frame-deadline-ms must be"),
    "unsent -5": (["--unsent-bytes-max", "-5"], "--unsent-bytes-max '-5' must be"),
    "first frame 0": (["--first-frame-timeout-ms", "0"], "--first-frame-timeout-ms must be"),
    "per address over max": (
        ["--connections-max", "10", "--connections-per-address-max", "20"],
        "--connections-per-address-max (20) must not exceed --connections-max (10)",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_BAD))
def test_serve_refuses_bad_limits_in_one_line(case: str, tmp_path: Any) -> None:
    """Bad limit options: one line naming the option, exit 2, nothing created."""
    options, message = CLI_BAD[case]
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "d"), *options])
    assert (2, 1, True, False) == (
        result.exit_code,
        len(result.output.strip().splitlines()),
        message in result.output,
        (tmp_path / "d").exists(),
    )
