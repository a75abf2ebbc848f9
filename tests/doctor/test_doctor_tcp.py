"""``posbatch doctor`` over loopback TCP against the real asyncio host server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from doctor_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID
from typer.testing import CliRunner

from posbatch.cli import app
from posbatch.doctor import TcpExchange
from posbatch.errors import HostUnreachable
from posbatch.host import FaultAction, FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.server import HostServer
from posbatch.terminal import init_terminal, open_terminal
from posbatch.wire import Kind

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
        return result.exit_code, json.loads(result.output)


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
