"""Kill the terminal at every step of a sale and of settlement; restart; invariants hold.

Two kinds of crash point, each tried at every position:

- after the N-th journal commit of the flow (the process dies between two
  writes, or just before a request leaves);
- after the host processed the K-th request but before its answer reached the
  terminal (the answer is lost and the process dies).

After each crash the terminal is rebuilt from its journal file (new engine, no
keys), finishes the job (``flush``/``settle``), and DESIGN.md's invariants are
checked against the host's records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import PAN, TERMINAL_ID, World

from posbatch.batch.model import Kind
from posbatch.host import FaultAction, FaultRule
from posbatch.terminal import Terminal, TxnState
from posbatch.terminal._journal import Writer


class SimulatedCrashError(Exception):
    """The terminal process dies here."""


def _crash_after_commits(terminal: Terminal, commits: int) -> Callable[[], int]:
    """Make the terminal die right after its ``commits``-th journal commit from now."""
    journal = terminal.journal
    original = journal.write
    count = {"n": 0}

    @contextmanager
    def write(moment: datetime) -> Iterator[Writer]:
        with original(moment) as writer:
            yield writer
        count["n"] += 1
        if count["n"] == commits:
            raise SimulatedCrashError

    journal.write = write  # type: ignore[method-assign]
    return lambda: count["n"]


def _crash_after_host(world: World, sends: int) -> None:
    """Let the host process the ``sends``-th request from now, then die before its answer."""
    inner = world.link.inner
    count = {"n": 0}

    def exchange(frame: bytes, timeout_ms: int) -> bytes | None:
        count["n"] += 1
        answer = inner(frame, timeout_ms)
        if count["n"] == sends:
            raise SimulatedCrashError
        return answer

    world.link.inner = exchange  # type: ignore[assignment]


def _count_commits_and_sends(
    make: Callable[[], World], job: Callable[[World], object]
) -> tuple[int, int]:
    world = make()
    commits = _crash_after_commits(world.terminal, 10_000)
    before = len(world.link.sent)
    job(world)
    return commits(), len(world.link.sent) - before


def _sale_world(tmp_path: Path, name: str) -> World:
    world = World(f"sqlite:///{tmp_path / name}")
    world.terminal.sign_on()
    world.terminal.sale(500, PAN)
    return world


def _sale(world: World) -> object:
    return world.terminal.sale(1250, PAN)


def _check_after_sale_crash(world: World) -> None:
    terminal = world.restart()
    terminal.flush()
    terminal.sale(300, PAN)  # trading goes on after the restart
    terminal.settle()
    assert problems(terminal, world.store, TERMINAL_ID) == []
    states = {row.state for row in terminal.journal.transactions() if row.amount_fen == 1250}
    assert states <= {TxnState.APPROVED, TxnState.REVERSED}


@pytest.mark.slow
def test_sale_survives_a_crash_after_every_commit(tmp_path: Path) -> None:
    """For every journal commit of a sale, dying right after it loses and doubles nothing."""
    commits, _sends = _count_commits_and_sends(lambda: _sale_world(tmp_path, "count.db"), _sale)
    assert commits >= 2  # pending row (with its STAN), then the outcome
    for point in range(1, commits + 1):
        world = _sale_world(tmp_path, f"commit{point}.db")
        _crash_after_commits(world.terminal, point)
        with pytest.raises(SimulatedCrashError):
            _sale(world)
        _check_after_sale_crash(world)


@pytest.mark.slow
def test_sale_survives_a_lost_answer_and_a_crash(tmp_path: Path) -> None:
    """The host approves, the answer never arrives, the terminal dies: the sale is reversed."""
    world = _sale_world(tmp_path, "lost.db")
    _crash_after_host(world, 1)
    with pytest.raises(SimulatedCrashError):
        _sale(world)
    _check_after_sale_crash(world)
    host = {row.amount_fen: row.status for row in world.store.transactions(TERMINAL_ID)}
    assert host[1250] == "reversed"


def _settle_world(tmp_path: Path, name: str, *, unbalanced: bool) -> World:
    world = World(f"sqlite:///{tmp_path / name}")
    world.terminal.sign_on()
    for index in range(9):  # 9 records: two upload messages (8 + 1)
        world.terminal.sale(100 + index, PAN)
    if unbalanced:
        # A reversal the host never applied (acknowledged 00, correctly MACed, on the
        # way): the host keeps the sale, the terminal does not — settlement is not
        # balanced and needs the upload.
        world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
        world.link.acknowledge_reversal()
        world.terminal.sale(999, PAN)
        world.faults()
    return world


def _settle(world: World) -> object:
    return world.terminal.settle()


def _check_after_settle_crash(world: World, expected_reason: str) -> None:
    terminal = world.restart()
    if terminal.current_batch().batch_no == 1:  # the crash came before the batch closed
        result = terminal.settle()
        assert (result.batch_no, result.next_batch_no) == (1, 2)
    first = terminal.journal.batches()[0]
    assert (first.batch_no, first.step, first.close_reason) == (1, "closed", expected_reason)
    assert terminal.current_batch().batch_no == 2
    assert problems(terminal, world.store, TERMINAL_ID) == []
    host_batch = next(batch for batch in world.store.batches(TERMINAL_ID) if batch.batch_no == 1)
    assert host_batch.state.value == "CLOSED"


@pytest.mark.slow
@pytest.mark.parametrize(("unbalanced", "reason"), [(False, "balanced"), (True, "uploaded")])
def test_settlement_survives_a_crash_after_every_commit(
    tmp_path: Path, unbalanced: bool, reason: str
) -> None:
    """For every journal commit of settlement, dying after it still settles batch 1 once."""
    commits, _sends = _count_commits_and_sends(
        lambda: _settle_world(tmp_path, "count.db", unbalanced=unbalanced), _settle
    )
    assert commits >= (8 if unbalanced else 4)
    for point in range(1, commits + 1):
        world = _settle_world(tmp_path, f"commit{point}.db", unbalanced=unbalanced)
        _crash_after_commits(world.terminal, point)
        with pytest.raises(SimulatedCrashError):
            _settle(world)
        _check_after_settle_crash(world, reason)


@pytest.mark.slow
@pytest.mark.parametrize(("unbalanced", "reason"), [(False, "balanced"), (True, "uploaded")])
def test_settlement_survives_every_lost_answer(
    tmp_path: Path, unbalanced: bool, reason: str
) -> None:
    """For every settlement message, the host acts, the answer is lost, the terminal dies."""
    _commits, sends = _count_commits_and_sends(
        lambda: _settle_world(tmp_path, "count.db", unbalanced=unbalanced), _settle
    )
    assert sends == (4 if unbalanced else 1)  # 0500, 0320 ×2, 0320/207
    for point in range(1, sends + 1):
        world = _settle_world(tmp_path, f"lost{point}.db", unbalanced=unbalanced)
        _crash_after_host(world, point)
        with pytest.raises(SimulatedCrashError):
            _settle(world)
        _check_after_settle_crash(world, reason)
