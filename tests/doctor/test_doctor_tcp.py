"""``posbatch doctor`` over loopback TCP against the real asyncio host server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from doctor_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID
from typer.testing import CliRunner

from posbatch.batch.model import BEIJING, Kind
from posbatch.cli import app
from posbatch.doctor import TcpExchange
from posbatch.errors import HostUnreachable
from posbatch.host import FaultAction, FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.server import HostServer
from posbatch.terminal import init_terminal, open_terminal
from posbatch.wire import (
    AdminResponse,
    EchoRequest,
    Frame,
    FrameReader,
    decode_message,
    encode_frame,
    encode_message,
)

runner = CliRunner()
# How long the till waits for an answer the host's fault script drops.
ANSWER_WAIT_MS = 1_000


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Loopback:
    store: HostStore
    core: HostCore
    data_dir: Path
    exchange: TcpExchange

    def till(self, amount_fen: int) -> None:
        """A sale from the terminal in its own process (a fresh engine over the files)."""
        terminal = open_terminal(self.data_dir, clock=_now, exchange=self.exchange)
        try:
            assert terminal.sale(amount_fen, PAN).approved
        finally:
            terminal.journal.engine.dispose()

    def settle(self) -> None:
        terminal = open_terminal(
            self.data_dir, clock=_now, exchange=self.exchange, timeout_ms=ANSWER_WAIT_MS
        )
        try:
            terminal.settle()
        finally:
            terminal.journal.engine.dispose()

    def doctor(self, *args: str) -> tuple[int, dict[str, object]]:
        result = runner.invoke(app, ["doctor", "--data-dir", str(self.data_dir), "--json", *args])
        return result.exit_code, json.loads(result.stdout)


@pytest.fixture
async def loopback(tmp_path: Path) -> AsyncIterator[Loopback]:
    """A host server on 127.0.0.1 (port 0) and a terminal data directory pointing at it."""
    store = HostStore.open(f"sqlite:///{tmp_path / 'host.db'}", pan_key=b"k" * 32)
    store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    core = HostCore(store, clock=_now)
    server = HostServer(core)
    host, port = await server.start("127.0.0.1", 0)
    data_dir = tmp_path / "terminal"
    init_terminal(
        data_dir,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        master_key=MASTER_KEY,
        host_address=f"{host}:{port}",
        clock=_now,
    )
    yield Loopback(store, core, data_dir, TcpExchange(host, port))
    await server.close()
    store.close()


def _check(report: dict[str, object], key: str) -> str:
    diagnosis = report["diagnosis"]
    assert isinstance(diagnosis, dict)
    return str(next(c["status"] for c in diagnosis["checks"] if c["key"] == key))


async def test_doctor_over_tcp_finds_a_healthy_terminal(loopback: Loopback) -> None:
    """Over a real socket: TCP reachable, every echo answered, no failure, exit code 0."""
    await asyncio.to_thread(loopback.till, 1250)
    code, report = await asyncio.to_thread(loopback.doctor)
    expected = (0, "passed", "passed", "healthy")
    assert expected == (
        code,
        _check(report, "network.tcp"),
        _check(report, "network.echo"),
        report["diagnosis"]["outcome"],  # type: ignore[index]
    )


async def test_doctor_fix_over_tcp_recovers_a_lost_settlement_answer(loopback: Loopback) -> None:
    """A 0510 lost on the wire: doctor names it, --fix --yes settles, exit code 0."""
    await asyncio.to_thread(loopback.till, 1250)
    loopback.core.set_faults(
        FaultScript([FaultRule(FaultAction.DROP, kind=Kind.SETTLEMENT, count=1)])
    )
    with pytest.raises(HostUnreachable):
        await asyncio.to_thread(loopback.settle)
    code, report = await asyncio.to_thread(loopback.doctor, "--fix", "--yes")
    expected = (0, "lost_response", "healthy")
    assert expected == (
        code,
        report["diagnosis"]["cause"],  # type: ignore[index]
        report["after"]["outcome"],  # type: ignore[index]
    )


# --- a diagnosis that changes nothing, over a real socket -------------------------------------


def _state(loopback: Loopback) -> tuple[object, ...]:
    """What a later diagnosis reads: the journal's last entry and STAN, the host's records."""
    terminal = open_terminal(loopback.data_dir, clock=_now)
    try:
        journal = terminal.journal
        mine = (journal.last_seq, journal.chain_hash(journal.last_seq), journal.state().stan)
    finally:
        terminal.journal.engine.dispose()
    store = loopback.store
    return (
        mine,
        store.terminal(TERMINAL_ID),
        tuple(store.batches(TERMINAL_ID)),
        len(store.transactions(TERMINAL_ID)),
    )


def _verdict(report: dict[str, object]) -> tuple[object, ...]:
    diagnosis = report["diagnosis"]
    assert isinstance(diagnosis, dict)
    return (
        diagnosis["outcome"],
        diagnosis["cause"],
        diagnosis["repairs"],
        [(check["key"], check["status"]) for check in diagnosis["checks"]],
    )


async def test_doctor_twice_over_tcp_changes_nothing(loopback: Loopback) -> None:
    """`posbatch doctor` against the live host, twice: the host's last STAN, keys and batch and
    the journal stay as they were (no sign-on, no STAN taken), and the verdict is the same."""
    await asyncio.to_thread(loopback.till, 1250)
    loopback.core.set_faults(
        FaultScript([FaultRule(FaultAction.DROP, kind=Kind.SETTLEMENT, count=1)])
    )
    with pytest.raises(HostUnreachable):
        await asyncio.to_thread(loopback.settle)
    loopback.core.set_faults(None)
    before = await asyncio.to_thread(_state, loopback)
    code, first = await asyncio.to_thread(loopback.doctor)
    middle = await asyncio.to_thread(_state, loopback)
    again, second = await asyncio.to_thread(loopback.doctor)
    expected = (before, before, (1, _verdict(first)), "lost_response")
    assert expected == (
        middle,
        await asyncio.to_thread(_state, loopback),
        (again, _verdict(second)),
        first["diagnosis"]["cause"],  # type: ignore[index]
    )
    assert code == 1


async def test_doctor_fix_shows_the_diagnosis_and_plan_before_asking(loopback: Loopback) -> None:
    """--fix prints the cause and the numbered plan first, then asks step 1 (and a 'no'
    changes nothing)."""
    await asyncio.to_thread(loopback.till, 1250)
    loopback.core.set_faults(
        FaultScript([FaultRule(FaultAction.DROP, kind=Kind.SETTLEMENT, count=1)])
    )
    with pytest.raises(HostUnreachable):
        await asyncio.to_thread(loopback.settle)
    loopback.core.set_faults(None)
    result = await asyncio.to_thread(
        runner.invoke, app, ["doctor", "--data-dir", str(loopback.data_dir), "--fix"], "n\n"
    )
    out = result.output
    cause, plan, question = (
        out.find("Cause: settlement answer lost"),
        out.find("doctor can repair"),
        out.find("step 1 of 1"),
    )
    expected = (True, 1)
    assert expected == (-1 < cause < plan < question, result.exit_code)


# --- every wait has a deadline ---------------------------------------------------------------


@pytest.fixture
async def silent_host(tmp_path: Path) -> AsyncIterator[Path]:
    """A 'host' that accepts every connection and never answers, and a terminal pointing at it."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # keep it open; say nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    data_dir = tmp_path / "terminal"
    init_terminal(
        data_dir,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        master_key=MASTER_KEY,
        host_address=f"127.0.0.1:{port}",
        clock=_now,
    )
    yield data_dir
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.mark.slow  # waits out its 3 s budget
async def test_a_host_that_never_answers_gets_deadlines_and_progress_lines(
    silent_host: Path,
) -> None:
    """Each echo waits at most --wait seconds, all of them at most 3 × that (the rest are not
    sent), and each wait is announced on standard error before it starts."""
    args = ["doctor", "--data-dir", str(silent_host), "--json", "--wait", "1"]
    result = await asyncio.to_thread(runner.invoke, app, args)
    report = json.loads(result.stdout)
    network = report["evidence"]["network"]
    announced = result.stderr.count("waiting at most 1 s for the host")
    expected = (1, True, "network_timeouts", len(network["echo_round_trips_ms"]))
    assert expected == (
        result.exit_code,
        network["echo_not_sent"] >= 1 and all(t is None for t in network["echo_round_trips_ms"]),
        report["diagnosis"]["cause"],
        announced,
    )


async def test_refused_connection_names_the_host_not_the_cable(tmp_path: Path) -> None:
    """Nothing listens on the port: 'the host is not listening', not 'check cable, router or
    SIM', and no repair doctor could do."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    data_dir = tmp_path / "terminal"
    init_terminal(
        data_dir,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        master_key=MASTER_KEY,
        host_address=f"127.0.0.1:{port}",
        clock=_now,
    )
    result = await asyncio.to_thread(
        runner.invoke, app, ["doctor", "--data-dir", str(data_dir), "--json"]
    )
    report = json.loads(result.stdout)
    tcp = next(c for c in report["diagnosis"]["checks"] if c["key"] == "network.tcp")
    expected = ("host_not_listening", [], False, True)
    assert expected == (
        report["diagnosis"]["cause"],
        report["diagnosis"]["repairs"],
        "SIM" in json.dumps(tcp),
        "nothing listens" in json.dumps(tcp),
    )


@pytest.fixture
async def hostile_host(tmp_path: Path) -> AsyncIterator[Path]:
    """A 'host' that answers every echo with markup and junk in field 63."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            prefix = await reader.readexactly(2)
            body = await reader.readexactly(int.from_bytes(prefix, "big"))
        except asyncio.IncompleteReadError:  # doctor's TCP probe: connect, hang up
            writer.close()
            return
        frame = FrameReader().feed(prefix + body)[0]
        request = decode_message(frame.body)
        assert isinstance(request, EchoRequest)
        now = _now().astimezone(BEIJING)  # fields 12/13: the host's local (Beijing) time
        reply = AdminResponse(
            Kind.ECHO, request.terminal_id, request.merchant_id, request.stan,
            request.batch_no, "00", f"{now:%H%M%S}", f"{now:%m%d}",
            "B=000001;S=OPEN;Q=[/];T=[bold]x;X=[red]",
        )  # fmt: skip
        writer.write(encode_frame(Frame(frame.tpdu, frame.header, encode_message(reply))))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    data_dir = tmp_path / "terminal"
    init_terminal(
        data_dir,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        master_key=MASTER_KEY,
        host_address=f"127.0.0.1:{port}",
        clock=_now,
    )
    yield data_dir
    server.close()
    await server.wait_closed()


async def test_markup_from_a_hostile_host_is_printed_not_obeyed(hostile_host: Path) -> None:
    """Field 63 text like '[/]' is shown as text (no traceback), an unknown Q= is not
    believed, and a T= that is not 6 digits is ignored."""
    result = await asyncio.to_thread(
        runner.invoke, app, ["doctor", "--data-dir", str(hostile_host)]
    )
    json_result = await asyncio.to_thread(
        runner.invoke, app, ["doctor", "--data-dir", str(hostile_host), "--json"]
    )
    view = json.loads(json_result.stdout)["evidence"]["host_view"]
    expected = (0, False, None, None, 1)
    assert expected == (
        result.exit_code,
        "Traceback" in result.output,
        view["last_closed_reason"],
        view["last_stan_in_batch"],
        view["batch_no"],
    )
