"""The asyncio shell: limits and log lines (over a real loopback socket)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading

import pytest
from host_helpers import (
    MERCHANT_ID,
    PAN,
    TERMINAL_ID,
    Terminal,
    frame_of,
    new_core,
    open_store,
    read_frame,
)

from posbatch.host.core import OpenGroup, RequestLog
from posbatch.host.server import HostServer, ServerLimits, request_log_line
from posbatch.wire import EchoRequest


async def _start(db_url: str, limits: ServerLimits) -> tuple[HostServer, int]:
    server = HostServer(new_core(open_store(db_url)), limits=limits)
    _, port = await server.start("127.0.0.1", 0)
    return server, port


async def _stop(server: HostServer) -> None:
    await server.close()
    server.core.store.close()


def _exchange(port: int, frames: int = 1) -> tuple[list[str], list[bytes]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def send(frame: bytes) -> list[bytes]:
            sock.sendall(frame)
            return [read_frame(sock)]

        terminal = Terminal(send)
        codes = [terminal.sign_on().response_code]
        codes += [terminal.sale(100 + i).response_code for i in range(frames)]  # type: ignore[union-attr]
        return codes, []


async def test_idle_connection_is_closed(db_url: str) -> None:
    """A connection that sends nothing for idle_timeout_ms is closed by the host."""
    server, port = await _start(db_url, ServerLimits(idle_timeout_ms=200))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = await asyncio.wait_for(reader.read(10), timeout=10)
    writer.close()
    await _stop(server)
    assert data == b""


async def test_connections_over_the_limit_are_refused(db_url: str) -> None:
    """With connections_max=1 and a first connection that talks, a second is closed at once."""
    server, port = await _start(db_url, ServerLimits(connections_max=1))
    first_reader, first = await asyncio.open_connection("127.0.0.1", port)
    first.write(frame_of(EchoRequest(TERMINAL_ID, MERCHANT_ID, 1, 1), None))
    await asyncio.wait_for(first_reader.readexactly(2), timeout=10)  # it is answered: talking
    reader, second = await asyncio.open_connection("127.0.0.1", port)
    data = await asyncio.wait_for(reader.read(10), timeout=10)
    first.close()
    second.close()
    await _stop(server)
    assert data == b""


async def test_one_json_log_line_per_request_without_pan(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs terminal_id, batch_no, stan, mti, response_code, latency; no PAN."""
    server, port = await _start(db_url, ServerLimits())
    with caplog.at_level(logging.INFO, logger="posbatch.host"):
        codes, _ = await asyncio.to_thread(_exchange, port, 2)
        await _stop(server)
    lines = [
        json.loads(line)
        for record in caplog.records
        if record.name == "posbatch.host"
        for line in record.getMessage().splitlines()
    ]
    requests = [line for line in lines if "mti" in line]
    keys = {"terminal_id", "batch_no", "stan", "mti", "response_code", "latency_ms"}
    assert (codes, len(requests), all(keys <= set(line) for line in requests)) == (
        ["00", "00", "00"],
        3,
        True,
    )
    assert not any(PAN in record.getMessage() for record in caplog.records)


async def test_sqlite_commits_on_the_loop_thread_a_database_server_in_a_worker(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a group commits (docs/host.md): an embedded SQLite's COMMIT is this process's own
    work, done on the loop's thread; a server's is another process's, awaited in a thread."""
    threads: list[str] = []
    commit = OpenGroup.commit

    def recording(opened: OpenGroup) -> None:
        threads.append(threading.current_thread().name)
        commit(opened)

    monkeypatch.setattr(OpenGroup, "commit", recording)
    server, port = await _start(db_url, ServerLimits())
    loop_thread = threading.current_thread().name
    codes, _ = await asyncio.to_thread(_exchange, port, 2)
    await _stop(server)
    assert codes == ["00", "00", "00"]
    on_loop = {name == loop_thread for name in threads}
    assert on_loop == ({True} if db_url.startswith("sqlite") else {False})


def test_log_line_is_json_with_the_set_fields_in_order() -> None:
    """A request log line holds the fields that are set, in RequestLog order, then latency."""
    entry = RequestLog("10000001", 1, 7, "0200", "sale", "00")
    line = request_log_line(entry, 1.23456)
    assert line == (
        '{"terminal_id":"10000001","batch_no":1,"stan":7,"mti":"0200","kind":"sale",'
        '"response_code":"00","latency_ms":1.235}'
    )


def test_log_line_escapes_what_a_peer_sent() -> None:
    """A terminal id with quotes or backslashes (printable ascii, field 41) stays valid JSON."""
    entry = RequestLog('1"\\0000}', error='bad "thing"\nhere')
    line = request_log_line(entry, 0.5, answered=False)
    assert json.loads(line) == {
        "terminal_id": '1"\\0000}',
        "error": 'bad "thing"\nhere',
        "latency_ms": 0.5,
        "answered": False,
    }
