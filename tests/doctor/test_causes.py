"""Each cause of the taxonomy, built for real through the terminal engine and the host core,
then diagnosed; and ``--fix`` ending with the batch settled and every approval accounted for.

The broken states come from what happens in the field: a typed batch number,
a damaged journal file, a reinstall on an empty journal, a wrong clock, a
lost 0510, a lost 0210 with its reversal, a journal restored from an old
backup (STANs reused), a software update that re-created the journal, a
back-office advance, a batch upload cut off, and a batch left over a day off.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from datetime import timedelta

import pytest
from doctor_capacity import over_capacity
from doctor_world import PAN, World

from posbatch.batch.model import Kind
from posbatch.doctor import (
    Cause,
    Outcome,
    Repair,
    RepairStatus,
    Report,
    Verdict,
    account,
    examine,
    rule_for,
)
from posbatch.errors import ConfigError, HostUnreachable
from posbatch.terminal import JOURNAL_FILE_NAME, restore_journal
from testbed import TERMINAL_ID

# --- the broken states ------------------------------------------------------------------


def typed_batch_number(world: World) -> None:
    """The cashier types the batch number by hand, with a typo (000030 for 000003)."""
    world.established(open_sales=0)
    with pytest.raises(ConfigError):
        world.terminal.set_batch_no("000030", "000030")
    world.sales(2)


def damaged_journal(world: World) -> None:
    """A backup, more sales, then the journal file is damaged (a row changed on disk)."""
    world.established()
    world.backup()
    world.sales(3)
    world.site.close()
    with sqlite3.connect(world.data_dir / JOURNAL_FILE_NAME) as raw:
        raw.execute("UPDATE transactions SET amount_fen = 1 WHERE txn_id = 2")
    world.restart()


def counters_reset(world: World) -> None:
    """The terminal software is reinstalled on an empty journal mid-day."""
    world.established()
    world.reinstall()


def clock_wrong(world: World) -> None:
    """The terminal's clock is three days ahead of the host's."""
    world.terminal_offset = timedelta(days=3)
    world.established()


def lost_settlement_answer(world: World) -> None:
    """The host closes the batch, the 0510 never reaches the terminal."""
    world.established()
    world.drop_answer(Kind.SETTLEMENT)
    with pytest.raises(HostUnreachable):
        world.terminal.settle()
    world.faults()


def network_timeouts(world: World) -> None:
    """A 0210 is lost and so is every try of its reversal: one reversal left pending."""
    world.established()
    world.drop_answer(Kind.SALE)
    world.link.lose["0400"] = 3
    result = world.terminal.sale(777, "6222021234567890128")
    assert not result.approved
    world.faults()


def reused_stans(world: World) -> None:
    """An old journal copied back by hand (not restored): the next sale reuses a STAN the
    host holds with another amount; the host answers 94 and the engine settles that batch
    (the host's extra approvals become exceptions) before retrying the sale."""
    world.established()
    backup = world.backup()
    world.sales(2, amount_fen=5000)
    world.site.close()
    journal_file = world.data_dir / JOURNAL_FILE_NAME
    for leftover in (journal_file.with_name(journal_file.name + s) for s in ("-wal", "-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(backup, journal_file)
    world.restart()
    result = world.terminal.sale(6000, "6222021234567890128")
    assert [True, 1] == [result.approved, len(world.terminal.journal.events("duplicate_stan"))]


def copied_back(world: World) -> None:
    """A copy of the journal is put back by hand over the newer one: the host holds two sales
    of the open batch the journal lacks (their STANs are the next ones the terminal takes)."""
    world.established()
    copy = world.copy_journal()
    world.sales(2, amount_fen=5000)
    world.copy_back(copy)


def host_not_listening(world: World) -> None:
    """The host program is down: the terminal's connection is refused."""
    world.established()
    world.link.down = True
    world.tcp = (False, None, "refused")


def software_update(world: World) -> None:
    """The update installer re-created the journal and recorded the update (counters lost)."""
    world.established()
    before = world.terminal.state().stan, world.terminal.current_batch().batch_no
    world.reinstall()
    with world.terminal.journal.write(world.terminal_clock()) as writer:
        writer.event(
            "software_update",
            "posbatch 0.1.0 → 0.2.0",
            from_version="0.1.0",
            to_version="0.2.0",
            batch_no_before=before[1],
            batch_no_after=world.terminal.current_batch().batch_no,
            stan_before=before[0],
            stan_after=world.terminal.state().stan,
        )


def host_advanced(world: World) -> None:
    """The acquirer's back office advances the terminal's batch (advance_batch)."""
    world.established()
    world.core.advance_batch(TERMINAL_ID, "cut-over")


def upload_cut_off(world: World) -> None:
    """Not balanced (journal restored from a backup), and the batch upload is cut off."""
    world.established(open_sales=9)
    backup = world.backup()
    world.sales(3, amount_fen=2000)
    world.site.close()
    restore_journal(backup, world.data_dir)
    world.restart()
    world.drop_answer(Kind.BATCH_UPLOAD)
    with pytest.raises(HostUnreachable):
        world.terminal.settle()
    world.faults()


def day_off(world: World) -> None:
    """Sales on Friday evening; nobody settles; doctor runs on Monday."""
    world.established()
    world.clock.skip(days=3)


def two_devices(world: World) -> None:
    """A replacement till set up with the terminal's ID while the old one still sells."""
    world.established()
    other = world.second_device(cloned=False)
    for index in range(2):
        world.sales(1, amount_fen=2000 + index)
        assert other.terminal.sale(3000 + index, PAN).approved


SCENARIOS: dict[Cause, Callable[[World], None]] = {
    Cause.MANUAL_BATCH_ENTRY: typed_batch_number,
    Cause.JOURNAL_DAMAGED: damaged_journal,
    Cause.COUNTERS_RESET: counters_reset,
    Cause.CLOCK_WRONG: clock_wrong,
    Cause.LOST_RESPONSE: lost_settlement_answer,
    Cause.NETWORK_TIMEOUTS: network_timeouts,
    Cause.DUPLICATES: reused_stans,
    Cause.SOFTWARE_UPDATE: software_update,
    Cause.HOST_CHANGE: host_advanced,
    Cause.SETTLEMENT_INTERRUPTED: upload_cut_off,
    Cause.STALE_BATCH: day_off,
    Cause.BATCH_FULL: over_capacity,
    Cause.JOURNAL_REPLACED: copied_back,
    Cause.HOST_NOT_LISTENING: host_not_listening,
    Cause.DUPLICATE_TERMINAL_ID: two_devices,
}

CAUSES = sorted(SCENARIOS)
# Causes doctor can repair by itself (the others are a person's work: --fix plans nothing).
REPAIRABLE = [cause for cause in CAUSES if rule_for(cause).repairs]


def _fixed(world: World) -> Report:
    return world.examine(fix=True)


# Causes whose repair leaves the shop's batch open, every approval in it: no settlement
# of it was started (mid-day), and settling stays the shop's end-of-day decision. The
# others end settled: a settlement was under way (lost answer, upload cut off), the host
# closed or holds the batch (sign-on settles it first), or the batch is a day old or full.
LEFT_OPEN = frozenset(
    {Cause.CLOCK_WRONG, Cause.DUPLICATES, Cause.MANUAL_BATCH_ENTRY, Cause.NETWORK_TIMEOUTS}
)


def _unsettled(world: World, *, left_open: bool = False) -> list[str]:
    """What is still not settled: the terminal's batch must be empty (or, ``left_open``, hold
    nothing outstanding) and in step with the host."""
    problems = []
    balance = world.terminal.balance()
    if (
        balance.step != "open"
        or (balance.approved_count and not left_open)
        or balance.outstanding_count
    ):
        problems.append(f"terminal batch {balance.batch_no:06d}: {balance}")
    info = world.store.terminal(TERMINAL_ID)
    assert info is not None
    if info.batch_no != balance.batch_no:
        problems.append(f"host batch {info.batch_no} vs terminal {balance.batch_no}")
    return problems


def _settled_batches(world: World) -> list[int]:
    """The batch numbers the terminal's journal holds as closed."""
    return [row.batch_no for row in world.terminal.journal.batches() if row.closed_at]


# --- the tests ----------------------------------------------------------------------------


def test_every_cause_has_a_real_scenario() -> None:
    """The taxonomy is covered: one broken state per cause."""
    assert sorted(Cause) == CAUSES


@pytest.mark.parametrize("cause", CAUSES)
def test_doctor_names_the_cause(world: World, cause: Cause) -> None:
    """Doctor's diagnosis of the broken state names the cause that made it."""
    SCENARIOS[cause](world)
    report = world.examine()
    expected = (Outcome.FOUND, cause)
    assert expected == (report.diagnosis.outcome, report.diagnosis.cause)


@pytest.mark.parametrize("cause", REPAIRABLE)
def test_fix_repairs_and_accounts_for_every_approval(world: World, cause: Cause) -> None:
    """--fix --yes does every planned repair; the batch ends settled — or, where no
    settlement was started (LEFT_OPEN), open with nothing outstanding — in step with the
    host, and every approval is settled, in the open batch or an exception record on both
    sides (nothing lost)."""
    SCENARIOS[cause](world)
    report = _fixed(world)
    expected = ([RepairStatus.DONE] * len(report.diagnosis.repairs), [], [])
    assert expected == (
        [result.status for result in report.repairs_done],
        _unsettled(world, left_open=cause in LEFT_OPEN),
        list(account(world.store, TERMINAL_ID, world.terminal.journal).problems),
    )


@pytest.mark.parametrize("cause", sorted(LEFT_OPEN))
def test_fix_leaves_a_batch_no_settlement_was_started_for_open(world: World, cause: Cause) -> None:
    """Where no settlement was started, --fix closes no batch: the open batch keeps every
    approval it held."""
    SCENARIOS[cause](world)
    before = (_settled_batches(world), world.terminal.balance().approved_count)
    _fixed(world)
    assert before == (_settled_batches(world), world.terminal.balance().approved_count)


def test_clock_wrong_fix_leaves_the_days_batch_open(world: World) -> None:
    """A wrong clock at mid-day: --fix leaves batch 000003 open with both approvals, in
    step with the host, and says so in both languages."""
    clock_wrong(world)
    report = _fixed(world)
    resumed = [r for r in report.repairs_done if r.repair == Repair.RESUME_SETTLEMENT]
    balance = world.terminal.balance()
    info = world.store.terminal(TERMINAL_ID)
    assert info is not None
    expected = (
        [RepairStatus.DONE],
        "batch 000003 left open",
        "批次 000003 保持未结算",
        (3, "open", 2, 2001),
        (3, "OPEN"),
        [1, 2],
    )
    assert expected == (
        [r.status for r in resumed],
        resumed[0].lines[0].en.split(":")[0],
        resumed[0].lines[0].zh.split(":")[0],
        (
            balance.batch_no,
            balance.step,
            balance.approved_count,
            balance.tally.domestic.debit_amount_fen,
        ),
        (info.batch_no, info.batch_state),
        _settled_batches(world),
    )


@pytest.mark.parametrize("cause", sorted(LEFT_OPEN))
def test_second_fix_does_not_settle(world: World, cause: Cause) -> None:
    """doctor --fix run twice in a row (support desks do): the second run settles nothing
    and changes nothing of the batch."""
    SCENARIOS[cause](world)
    _fixed(world)
    before = (_settled_batches(world), world.terminal.balance())
    _fixed(world)
    assert before == (_settled_batches(world), world.terminal.balance())


def test_typed_batch_number_is_history_after_the_fix(world: World) -> None:
    """A typed batch number the host refused is history once doctor's sign-on has taken the
    host's number, though the day's batch stays open: the diagnosis after the repair no
    longer names it."""
    typed_batch_number(world)
    report = _fixed(world)
    assert report.after is not None
    assert Verdict.RULED_OUT == report.after.finding(Cause.MANUAL_BATCH_ENTRY).verdict


def test_lost_response_fix_still_settles(world: World) -> None:
    """A settlement whose answer was lost was under way: --fix finishes it (batch 000003
    closed balanced on both sides, the terminal in the next batch)."""
    lost_settlement_answer(world)
    assert world.terminal.current_batch().settle_step != "open"
    report = _fixed(world)
    info = world.store.terminal(TERMINAL_ID)
    assert info is not None
    expected = ([RepairStatus.DONE], [1, 2, 3], (4, 4))
    assert expected == (
        [r.status for r in report.repairs_done],
        _settled_batches(world),
        (world.terminal.current_batch().batch_no, info.batch_no),
    )


def test_fix_logs_each_repair_in_the_journal(world: World) -> None:
    """Each repair doctor does is a ``doctor`` event in the journal's event log."""
    lost_settlement_answer(world)
    report = _fixed(world)
    logged = [e.details.get("repair") for e in world.terminal.journal.events("doctor")]
    assert [r.repair.value for r in report.repairs_done] == logged


def test_declined_repair_changes_nothing(world: World) -> None:
    """Saying no to the first step stops the plan and leaves the batch as it was."""
    lost_settlement_answer(world)
    before = world.terminal.current_batch()
    report = examine(
        world.site, fix=True, confirm=lambda _repair, _text: False, host_store=world.store
    )
    expected = ([RepairStatus.DECLINED], before)
    assert expected == (
        [result.status for result in report.repairs_done],
        world.terminal.current_batch(),
    )


def test_restore_keeps_the_damaged_journal(world: World) -> None:
    """Restoring from a backup keeps the damaged journal file aside, never deletes it."""
    damaged_journal(world)
    _fixed(world)
    kept = sorted(p.name for p in world.data_dir.iterdir() if ".damaged" in p.name)
    assert 1 == len(kept)


def test_fix_of_a_damaged_journal_leaves_an_intact_chain(world: World) -> None:
    """After restore and settlement the journal's hash chain verifies again."""
    damaged_journal(world)
    report = _fixed(world)
    assert report.after is not None
    assert report.after.finding(Cause.JOURNAL_DAMAGED).verdict.value == "ruled out"


def test_lost_settlement_fix_gets_the_hosts_first_answer(world: World) -> None:
    """Resuming a settlement the host closed gets the host's result again, balanced."""
    lost_settlement_answer(world)
    _fixed(world)
    closed = world.terminal.journal.batches()[-2]
    expected = (3, True)
    assert expected == (closed.batch_no, closed.balanced)
