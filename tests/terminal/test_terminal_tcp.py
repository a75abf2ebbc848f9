"""The same flows over loopback TCP against the real asyncio host server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID, StepClock

from posbatch.batch.model import Kind
from posbatch.errors import HostUnreachable
from posbatch.host import FaultAction, FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.server import HostServer
from posbatch.terminal import Journal, TcpDriver, Terminal, TerminalSecrets, TxnState


@dataclass
class Loopback:
    store: HostStore
    core: HostCore
    server: HostServer
    driver: TcpDriver
    terminal: Terminal


@pytest.fixture
async def loopback(tmp_path: Path) -> AsyncIterator[Loopback]:
    """A host server on 127.0.0.1, port 0, and a terminal with a TCP driver to it."""
    clock = StepClock()
    store = HostStore.open(f"sqlite:///{tmp_path / 'host.db'}", pan_key=b"k" * 32)
    store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    core = HostCore(store, clock=clock)
    server = HostServer(core)
    host, port = await server.start("127.0.0.1", 0)
    journal = Journal.open(f"sqlite:///{tmp_path / 'journal.db'}")
    Terminal.initialize(
        journal,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        host_address=f"{host}:{port}",
        clock=clock,
    )
    terminal = Terminal(journal, TerminalSecrets(MASTER_KEY, b"p" * 32), clock=clock)
    terminal.timeout_ms = 2_000
    driver = TcpDriver(host, port)
    yield Loopback(store, core, server, driver, terminal)
    await driver.close()
    await server.close()
    journal.engine.dispose()
    store.close()


async def test_sale_void_refund_and_settlement_over_tcp(loopback: Loopback) -> None:
    """Sign-on, sale, void, refund and a balanced settlement, all over one TCP connection."""
    terminal, driver = loopback.terminal, loopback.driver
    await driver.run(terminal.sign_on_flow())
    first = await driver.run(terminal.sale_flow(1250, PAN))
    second = await driver.run(terminal.sale_flow(4000, PAN))
    void = await driver.run(terminal.void_flow(first.stan))
    refund = await driver.run(terminal.refund_flow(second.stan, 1000))
    settled = await driver.run(terminal.settle_flow())
    assert (first.approved, void.approved, refund.approved) == (True, True, True)
    assert (settled.close_reason, settled.next_batch_no, driver.connects) == ("balanced", 2, 1)
    assert problems(terminal, loopback.store, TERMINAL_ID) == []


async def test_lost_answer_over_tcp_is_reversed_on_a_new_connection(loopback: Loopback) -> None:
    """A dropped answer times out, the connection is replaced, and the reversal goes first."""
    terminal, driver = loopback.terminal, loopback.driver
    await driver.run(terminal.sign_on_flow())
    loopback.core.set_faults(FaultScript([FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1)]))
    terminal.timeout_ms = 300
    lost = await driver.run(terminal.sale_flow(1250, PAN))
    assert (
        terminal.journal.transaction(lost.txn_id).state,
        driver.connects,
    ) == (TxnState.REVERSED, 2)
    assert problems(terminal, loopback.store, TERMINAL_ID) == []


async def test_unreachable_host_refuses_before_any_sale_is_written(tmp_path: Path) -> None:
    """With nobody listening, sign-on fails (bounded reconnects) and no sale row is written."""
    clock = StepClock()
    journal = Journal.open(f"sqlite:///{tmp_path / 'journal.db'}")
    Terminal.initialize(
        journal,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        host_address="127.0.0.1:9",
        clock=clock,
    )
    terminal = Terminal(journal, TerminalSecrets(MASTER_KEY, b"p" * 32), clock=clock)
    driver = TcpDriver("127.0.0.1", 9, connect_attempts_max=2)
    with pytest.raises(HostUnreachable, match="sign-on not answered"):
        await driver.run(terminal.sale_flow(1250, PAN))
    assert (terminal.journal.transactions(), driver.connects) == ([], 0)
    journal.engine.dispose()


async def test_duplicated_answer_is_not_taken_for_the_next_one(loopback: Loopback) -> None:
    """The host sends a sale's answer twice; the stale copy is skipped, the next sale is fine."""
    terminal, driver = loopback.terminal, loopback.driver
    await driver.run(terminal.sign_on_flow())
    loopback.core.set_faults(
        FaultScript([FaultRule(FaultAction.DUPLICATE, kind=Kind.SALE, count=1)])
    )
    first = await driver.run(terminal.sale_flow(1250, PAN))
    second = await driver.run(terminal.sale_flow(700, PAN))
    assert (first.approved, second.approved, driver.connects) == (True, True, 1)
    assert problems(terminal, loopback.store, TERMINAL_ID) == []


async def test_a_connection_the_host_closed_while_idle_is_replaced_before_the_sale(
    loopback: Loopback,
) -> None:
    """A quiet shop: the host closes the connection after its idle limit. The next sale goes
    on a new connection — approved, nothing reversed — instead of being written into the
    closed one, timing out and being reversed (the customer's payment failing)."""
    terminal, driver = loopback.terminal, loopback.driver
    await driver.run(terminal.sign_on_flow())
    assert (await driver.run(terminal.sale_flow(1250, PAN))).approved
    idle_s = loopback.server.limits.idle_timeout_ms / 1000
    loopback.server.sweep(time.monotonic() + idle_s + 1)  # the sweeper, after the idle limit
    await asyncio.sleep(0.2)  # the host's FIN reaches the terminal's socket
    assert loopback.server.connections == set()
    sale = await driver.run(terminal.sale_flow(700, PAN))
    states = [row.state for row in terminal.journal.transactions()]
    assert (sale.approved, states, driver.connects) == (
        True,
        [TxnState.APPROVED, TxnState.APPROVED],
        2,
    )
    assert problems(terminal, loopback.store, TERMINAL_ID) == []
