"""Hypothesis: any day of sales, voids, refunds, lost answers and restarts ends consistent."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from terminal_invariants import problems
from terminal_world import MERCHANT_ID, PAN, TERMINAL_ID, World

from posbatch.batch.model import Kind
from posbatch.errors import ConfigError, TerminalError
from posbatch.host import FaultAction, FaultRule
from posbatch.terminal import Journal, Terminal, TerminalSecrets, TxnState

_runs = itertools.count()

operations = st.lists(
    st.one_of(
        st.tuples(st.just("sale"), st.integers(min_value=1, max_value=99_999)),
        st.tuples(st.just("void"), st.integers(min_value=0, max_value=9)),
        st.tuples(st.just("refund"), st.integers(min_value=1, max_value=5_000)),
        st.tuples(st.just("lose"), st.sampled_from([Kind.SALE, Kind.VOID, Kind.SETTLEMENT])),
        st.tuples(st.just("restart"), st.just(0)),
        st.tuples(st.just("settle"), st.just(0)),
    ),
    max_size=12,
)


def _apply(world: World, operation: tuple[str, object]) -> None:
    name, value = operation
    terminal = world.terminal
    approved = [
        row
        for row in terminal.journal.transactions(terminal.current_batch().batch_id)
        if row.kind == "sale" and row.state == TxnState.APPROVED and not row.refunded_fen
    ]
    try:
        if name == "sale":
            terminal.sale(int(value), PAN)  # type: ignore[call-overload]
        elif name == "void" and approved:
            terminal.void(approved[int(value) % len(approved)].stan)  # type: ignore[call-overload]
        elif name == "refund" and approved:
            sale = approved[0]
            terminal.refund(sale.stan, min(int(value), sale.amount_fen))  # type: ignore[call-overload]
        elif name == "lose":
            world.faults(FaultRule(FaultAction.DROP, kind=value, count=1))  # type: ignore[arg-type]
        elif name == "restart":
            world.restart()
        elif name == "settle":
            terminal.settle()
    except (TerminalError, ConfigError):
        pass  # a refused operation (e.g. settlement not answered) is part of the day


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations)
def test_any_day_settles_with_every_approval_once(
    tmp_path: Path, day: list[tuple[str, object]]
) -> None:
    """Whatever happens in the day, flushing and settling at night leaves the invariants whole."""
    world = World(f"sqlite:///{tmp_path / f'journal{next(_runs)}.db'}")
    try:
        for operation in day:
            _apply(world, operation)
        world.faults()
        world.terminal.flush()
        world.terminal.settle()
        assert problems(world.terminal, world.store, TERMINAL_ID) == []
        assert world.terminal.journal.outstanding() == []
    finally:
        world.terminal.journal.engine.dispose()
        world.store.close()


def test_in_memory_journal_survives_a_simulated_crash() -> None:
    """The simulator's way: keep the in-memory engine, drop the Journal and Terminal, rebuild."""
    moment = datetime(2026, 11, 25, tzinfo=UTC)
    journal = Journal.open("sqlite://")
    Terminal.initialize(
        journal,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        host_address="sim",
        clock=lambda: moment,
    )
    with journal.write(moment) as writer:
        writer.event("marker", "before the crash")
    engine = journal.engine
    del journal
    reopened = Journal.over(engine)
    terminal = Terminal(reopened, TerminalSecrets(b"m" * 16, b"p" * 32), clock=lambda: moment)
    assert ([e.type for e in reopened.events()], terminal.current_batch().batch_no) == (
        ["initialized", "marker"],
        1,
    )
    engine.dispose()


def test_garbage_answer_is_treated_as_no_answer(world: World) -> None:
    """Bytes that are not a frame for our request never become an approval: the sale is reversed."""
    world.terminal.sign_on()
    inner = world.link.inner

    def garbage(frame: bytes, timeout_ms: int) -> bytes | None:
        answer = inner(frame, timeout_ms)
        if frame[13:15] == b"\x02\x00":
            return b"\x00\x05garbage"
        return answer

    world.link.inner = garbage  # type: ignore[assignment]
    result = world.terminal.sale(1250, PAN)
    assert (result.approved, world.terminal.journal.transaction(result.txn_id).state) == (
        False,
        TxnState.REVERSED,
    )
