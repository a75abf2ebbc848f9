"""The writer's in-memory mirror: it answers as the database does, and only after a commit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import PAN, TERMINAL_ID, World

from posbatch.batch.model import Kind
from posbatch.errors import StorageError
from posbatch.host import FaultAction, FaultRule
from posbatch.terminal import Journal, TxnState
from posbatch.terminal._journal import CLOSED_BATCHES_MIRRORED_MAX, SECOND_WRITER

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class BodyFailedError(Exception):
    """Raised inside a unit of work, after it wrote rows."""


def _reads(journal: Journal) -> dict[str, object]:
    """Everything the engine reads from a journal, as plain values."""
    batches = journal.batches()
    transactions = journal.transactions()
    return {
        "initialized": journal.initialized,
        "state": journal.state(),
        "current_batch": journal.current_batch(),
        "batch": [journal.batch(batch.batch_id) for batch in batches],
        "batch_transactions": [journal.transactions(batch.batch_id) for batch in batches],
        "transaction": [journal.transaction(row.txn_id) for row in transactions],
        "outstanding": journal.outstanding(),
        "next_txn_id": journal.next_txn_id(),
        "next_batch_id": journal.next_batch_id(),
        "last_seq": journal.last_seq,
    }


def _database_reads(journal: Journal) -> dict[str, object]:
    """The same reads from a journal object that has never written (no mirror)."""
    reader = Journal(journal.engine)
    assert reader.mirrored_rows == 0
    return _reads(reader)


def test_mirror_answers_as_the_database_through_every_flow(db_url: str) -> None:
    """Sales, a reversal, a void, refunds, an unanswered refund, settlements: same answers."""
    world = World(db_url)
    terminal = world.terminal
    journal = terminal.journal
    first = terminal.sale(1_000, PAN)
    second = terminal.sale(2_000, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    assert terminal.sale(3_000, PAN).state == TxnState.REVERSED
    assert journal.mirrored_rows > 0
    assert _reads(journal) == _database_reads(journal)
    terminal.void(first.stan)
    assert _reads(journal) == _database_reads(journal)
    terminal.settle()
    world.link.down = True
    refund = terminal.refund(second.stan, 500)  # of a sale in the closed batch
    assert refund.state == TxnState.RESEND_PENDING
    assert [row.txn_id for row in journal.outstanding()] == [refund.txn_id]
    assert _reads(journal) == _database_reads(journal)
    world.link.down = False
    terminal.sale(4_000, PAN)  # the refund is resent first
    assert journal.outstanding() == []
    terminal.settle()
    assert _reads(journal) == _database_reads(journal)
    assert journal.verify() == journal.last_seq
    assert problems(terminal, world.store, TERMINAL_ID) == []
    journal.engine.dispose()
    world.store.close()


def test_mirror_answers_as_the_database_after_batch_upload(world: World, tmp_path: Path) -> None:
    """A reinstalled journal settles the host's batch by upload: same answers as the database."""
    world.terminal.sale(100, PAN)
    world.terminal.settle()
    world.terminal.sale(250, PAN)
    terminal = world.reinstall(f"sqlite:///{tmp_path / 'fresh.db'}")
    terminal.sale(700, PAN)
    terminal.sale(800, PAN)
    assert [batch.close_reason for batch in terminal.journal.batches()] == ["uploaded", None]
    assert _reads(terminal.journal) == _database_reads(terminal.journal)


def test_reader_opened_before_the_writes_sees_them(world: World) -> None:
    """A journal object that only reads (status, doctor) sees what the writer committed later."""
    reader = Journal(world.terminal.journal.engine)
    before = reader.state().stan
    sale = world.terminal.sale(1_250, PAN)
    assert (before, reader.state().stan) == (0, sale.stan)
    assert reader.transaction(sale.txn_id).state == TxnState.APPROVED
    assert reader.mirrored_rows == 0


def test_failed_unit_of_work_leaves_the_mirror_as_the_database(world: World) -> None:
    """An exception inside a unit of work rolls it back; the mirror keeps the committed rows."""
    journal = world.terminal.journal
    sale = world.terminal.sale(1_250, PAN)
    committed = _reads(journal)
    with pytest.raises(BodyFailedError), journal.write(AT) as writer:
        writer.state(replace(journal.state(), stan=journal.state().stan + 5))
        writer.txn(replace(journal.transaction(sale.txn_id), state=TxnState.DECLINED))
        writer.event("note", "written, then rolled back")
        raise BodyFailedError
    assert _reads(journal) == committed == _database_reads(journal)
    assert journal.transaction(sale.txn_id).state == TxnState.APPROVED


def test_database_error_leaves_the_mirror_as_the_database(db_url: str) -> None:
    """A write the database refuses (a txn_id used twice) changes nothing the journal answers."""
    world = World(db_url)
    journal = world.terminal.journal
    sale = world.terminal.sale(1_250, PAN)
    committed = _reads(journal)
    with pytest.raises(StorageError, match="journal write failed"), journal.write(AT) as writer:
        writer.state(replace(journal.state(), stan=99))
        writer.insert_txn(replace(journal.transaction(sale.txn_id), stan=99))
    assert _reads(journal) == committed == _database_reads(journal)
    assert world.terminal.sale(500, PAN).approved
    assert journal.verify() == journal.last_seq
    journal.engine.dispose()
    world.store.close()


def test_second_writer_cannot_build_on_a_stale_mirror(world: World) -> None:
    """Another journal object appends: the first one's next write is refused, then it reloads."""
    journal = world.terminal.journal
    world.terminal.sale(1_250, PAN)
    intruder = Journal(journal.engine)
    intruder_stan = intruder.state().stan + 10
    with intruder.write(AT) as writer:
        writer.state(replace(intruder.state(), stan=intruder_stan))
    with pytest.raises(StorageError) as refused, journal.write(AT) as writer:
        writer.event("note", "built on what the mirror said")
    # one line a cashier can act on, not the driver's UNIQUE constraint
    assert str(refused.value) == SECOND_WRITER
    assert _reads(journal) == _database_reads(journal)
    after = world.terminal.sale(500, PAN)
    assert (after.approved, after.stan) == (True, intruder_stan + 1)
    assert journal.verify() == journal.last_seq


def test_mirror_of_a_long_batch_is_bounded(tmp_path: Path) -> None:
    """Past its limit the open batch is read from the database; settled batches are dropped."""
    world = World(f"sqlite:///{tmp_path / 'journal.db'}")
    journal = Journal(world.terminal.journal.engine, open_txns_mirrored_max=3)
    terminal = world.terminal
    terminal.journal = journal
    sizes = []
    for _day in range(3):
        for amount_fen in range(100, 600, 100):
            terminal.sale(amount_fen, PAN)
            sizes.append(journal.mirrored_rows)
        assert _reads(journal) == _database_reads(journal)
        terminal.settle()
        sizes.append(journal.mirrored_rows)
    # the state, the open batch and the last closed ones, at most 3 rows of the open batch
    assert max(sizes) <= 1 + 1 + CLOSED_BATCHES_MIRRORED_MAX + 3
    assert len(journal.transactions()) == 15
    assert problems(terminal, world.store, TERMINAL_ID) == []
    journal.engine.dispose()
    world.store.close()


def test_read_api_for_doctor(world: World) -> None:
    """Schema revision and STAN history come from the journal file, without its internals."""
    journal = world.terminal.journal
    sales = [world.terminal.sale(amount_fen, PAN).stan for amount_fen in (100, 200)]
    history = list(Journal(journal.engine).stan_history())
    assert history[0] == 0  # the state row as initialised
    assert history[-2:] == sales
    assert history == sorted(history)
    assert journal.schema_revision() == Journal(journal.engine).schema_revision() is not None
