"""The recovery table: each cause of a batch-number error (77), built for real, ends settled.

Every test starts from the state the cause leaves behind — made by driving the
engine and the host, not by writing rows — and ends with the batch settled,
every approval accounted for (DESIGN.md's invariants hold against the host's
records) and the journal's event log saying what recovery did and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID, World

from posbatch.batch.model import Kind
from posbatch.errors import HostUnreachable
from posbatch.host import FaultAction, FaultRule, HostCore, HostStore
from posbatch.terminal import KEY_FILE_NAME, InProcessLink, Journal, TxnState, restore_journal


def _events(world: World, event_type: str) -> list[str]:
    return [event.message for event in world.terminal.journal.events(event_type)]


def test_reinstall_restored_from_backup_settles_what_the_host_holds(
    world: World, tmp_path: Path
) -> None:
    """Backup, two more sales, disk lost, backup restored: the host's batch is settled first."""
    for amount_fen in (100, 200, 300):
        world.terminal.sale(amount_fen, PAN)
    world.terminal.journal.backup(tmp_path / "backup.db")
    unseen = {world.terminal.sale(400, PAN).stan, world.terminal.sale(500, PAN).stan}
    world.terminal.journal.engine.dispose()
    new_dir = tmp_path / "reinstalled"
    world.secrets.save(new_dir / KEY_FILE_NAME)  # the journal's disk was lost, its key kept
    report = restore_journal(tmp_path / "backup.db", new_dir, clock=world.clock)
    world.journal_url = f"sqlite:///{new_dir / 'journal.db'}"
    terminal = world.restart()
    sale = terminal.sale(600, PAN)
    first = terminal.journal.batches()[0]
    assert (report.chain_ok, first.close_reason, sale.approved, sale.batch_no) == (
        True,
        "uploaded",
        True,
        2,
    )
    host_only = {row.stan for row in world.store.exceptions(TERMINAL_ID)}
    assert host_only == unseen  # the two sales the backup never saw, kept by the host
    assert problems(terminal, world.store, TERMINAL_ID) == []
    assert len(_events(world, "resync")) == 1


def test_reinstall_with_counters_reset_recovers_from_the_host(world: World, tmp_path: Path) -> None:
    """A fresh journal (STAN 0, batch 1) adopts the host's batch and settles it before trading."""
    world.terminal.sale(100, PAN)
    world.terminal.settle()  # host batch 1 closed, batch 2 current
    kept = world.terminal.sale(250, PAN)  # in host batch 2; the new journal never sees it
    old_url = world.journal_url
    terminal = world.reinstall(f"sqlite:///{tmp_path / 'fresh.db'}")
    sale = terminal.sale(700, PAN)
    batches = terminal.journal.batches()
    assert [(b.batch_no, b.close_reason) for b in batches] == [(2, "uploaded"), (3, None)]
    assert (sale.approved, sale.batch_no) == (True, 3)
    old_journal = Journal.open(old_url)
    assert problems(terminal, world.store, TERMINAL_ID, earlier=(old_journal,)) == []
    old_journal.engine.dispose()
    assert [e.stan for e in world.store.exceptions(TERMINAL_ID)] == [kept.stan]


def test_lost_0510_is_finished_by_the_next_sale(world: World) -> None:
    """The host closed the batch but its 0510 was lost: the next sale settles it, no 77."""
    world.terminal.sale(1250, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SETTLEMENT, count=1))
    with pytest.raises(HostUnreachable):
        world.terminal.settle()
    sale = world.terminal.sale(300, PAN)
    first = world.terminal.journal.batches()[0]
    assert (first.close_reason, sale.batch_no, sale.approved) == ("balanced", 2, True)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_lost_0510_then_restart_recovers_at_sign_on(world: World) -> None:
    """Lost 0510 and a restart: sign-on sees the host ahead and asks again; nothing doubles."""
    world.terminal.sale(1250, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SETTLEMENT, count=1))
    with pytest.raises(HostUnreachable):
        world.terminal.settle()
    terminal = world.restart()
    result = terminal.settle()
    assert (result.batch_no, result.close_reason, result.next_batch_no) == (1, "balanced", 2)
    assert [e.split(":")[0] for e in _events(world, "recovery")] == [
        "local batch 000001 is behind the host's 000002"
    ]
    assert problems(terminal, world.store, TERMINAL_ID) == []


def test_batch_number_typed_wrong_is_adopted_from_the_host(world: World, tmp_path: Path) -> None:
    """A batch number typed at install (000030) meets 77 AHEAD; the host's 000001 is adopted."""
    terminal = world.reinstall(f"sqlite:///{tmp_path / 'typed.db'}", batch_no=30)
    terminal.run(terminal.sign_on_flow(reconcile=False))  # keys only, as old software did
    sale = terminal.sale(880, PAN)
    assert (sale.approved, sale.batch_no) == (True, 1)
    assert [t.response_code for t in terminal.journal.transactions()] == ["77", "00"]
    assert "adopting the host's batch 000001" in _events(world, "recovery")[0]
    terminal.settle()
    assert problems(terminal, world.store, TERMINAL_ID) == []


def test_host_advanced_by_the_back_office_is_settled_and_adopted(world: World) -> None:
    """The back office closed batch 1 under the terminal: 77 CLOSED, settle 1, trade in 2."""
    world.terminal.sale(1000, PAN)
    world.terminal.sale(2000, PAN)
    world.core.advance_batch(TERMINAL_ID, "back-office correction")
    sale = world.terminal.sale(300, PAN)
    first = world.terminal.journal.batches()[0]
    assert (first.close_reason, first.balanced, sale.batch_no, sale.approved) == (
        "balanced",
        True,
        2,
        True,
    )
    assert "77" in _events(world, "batch_error")[0]
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_refund_approved_then_batch_advanced_is_resent_and_counted_once(world: World) -> None:
    """A refund the host approved but whose answers were lost stays pending; the back office
    then closes its batch. Resent, it gets its original 00 (not 77): approved in batch 1 on
    both sides, and the next sale recovers into batch 2."""
    sale = world.terminal.sale(5000, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.REFUND, count=4))
    pending = world.terminal.refund(sale.stan, 1000)
    assert pending.state == TxnState.RESEND_PENDING
    world.core.advance_batch(TERMINAL_ID, "back-office correction")
    after = world.terminal.sale(300, PAN)
    refund = world.terminal.journal.transaction(pending.txn_id)
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    assert (refund.state, refund.batch_no, len(refunds), after.approved, after.batch_no) == (
        TxnState.APPROVED,
        1,
        1,
        True,
        2,
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_resend_answered_77_leaves_the_next_sale_signed_on(world: World) -> None:
    """A refund sent after the back office closed its batch is answered 77, and the 77s are
    lost; the next sale resends it first, gets the 77 (which drops the keys), then signs on
    again before its own request, recovers into batch 2 and is approved."""
    sale = world.terminal.sale(5000, PAN)
    world.core.advance_batch(TERMINAL_ID, "back-office correction")
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.REFUND, count=4))
    pending = world.terminal.refund(sale.stan, 1000)
    assert pending.state == TxnState.RESEND_PENDING
    after = world.terminal.sale(300, PAN)
    refund = world.terminal.journal.transaction(pending.txn_id)
    assert (refund.state, refund.response_code, after.approved, after.batch_no) == (
        TxnState.DECLINED,
        "77",
        True,
        2,
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_refund_whose_77_was_lost_is_made_again_in_the_hosts_batch(world: World) -> None:
    """The back office closed batch 1; a refund sent in it is answered 77 and the answer is
    lost. Resent as is, it meets the 77 again: the host never took it, so after recovery it
    is made again in batch 2 — approved once, nothing for the cashier to redo."""
    sale = world.terminal.sale(5000, PAN)
    world.core.advance_batch(TERMINAL_ID, "back-office correction")
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.REFUND, count=1))
    refund = world.terminal.refund(sale.stan, 1000)
    rows = [
        (row.batch_no, row.state, row.response_code)
        for row in world.terminal.journal.transactions()
        if row.kind == Kind.REFUND.value
    ]
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    assert (refund.approved, refund.batch_no, rows, len(refunds)) == (
        True,
        2,
        [(1, TxnState.DECLINED, "77"), (2, TxnState.APPROVED, "00")],
        1,
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_old_batch_left_over_a_holiday_is_settled_after_it(world: World) -> None:
    """Sales on day 1, host cut-over closes two batches over a holiday; day 5 settles day 1."""
    world.terminal.sale(1500, PAN)
    world.terminal.sale(2500, PAN)
    world.clock.skip(days=4)
    world.core.advance_batch(TERMINAL_ID, "holiday cut-over")
    world.core.advance_batch(TERMINAL_ID, "holiday cut-over")
    terminal = world.restart()  # the terminal is switched on again on day 5
    result = terminal.settle()
    assert (result.batch_no, result.close_reason, result.balanced, result.next_batch_no) == (
        1,
        "balanced",
        True,
        3,
    )
    sale = terminal.sale(300, PAN)
    assert (sale.approved, sale.batch_no) == (True, 3)
    assert problems(terminal, world.store, TERMINAL_ID) == []


def test_undetected_reinstall_on_batch_one_recovers_from_94(world: World, tmp_path: Path) -> None:
    """Reinstalled before any settlement (host still in 000001): 94 → settle that batch, retry."""
    world.terminal.sale(100, PAN)
    old_url = world.journal_url
    terminal = world.reinstall(f"sqlite:///{tmp_path / 'again.db'}")
    sale = terminal.sale(999, PAN)  # its STAN 000002 was used by the old journal's sale
    assert (sale.approved, sale.batch_no) == (True, 2)
    assert len(_events(world, "duplicate_stan")) == 1
    old_journal = Journal.open(old_url)
    assert problems(terminal, world.store, TERMINAL_ID, earlier=(old_journal,)) == []
    old_journal.engine.dispose()


def test_94_is_only_a_decline_without_the_policy(world: World, tmp_path: Path) -> None:
    """With settle_on_duplicate off the 94 is a decline (for doctor); nothing is charged."""
    world.terminal.sale(100, PAN)
    terminal = world.reinstall(f"sqlite:///{tmp_path / 'again.db'}")
    terminal.settle_on_duplicate = False
    sale = terminal.sale(999, PAN)
    assert (sale.approved, sale.response_code) == (False, "94")


def test_host_that_lost_its_batches_gets_the_local_batch_set_aside(world: World) -> None:
    """A host restored to an old state (terminal ahead with approvals): set aside, not dropped."""
    world.terminal.sale(100, PAN)
    world.terminal.settle()
    world.terminal.sale(200, PAN)
    world.terminal.sale(300, PAN)  # batch 2 holds two approvals the host is about to forget
    world.store.close()
    world.store = HostStore.open("sqlite://", pan_key=b"k" * 32)  # the host lost its data
    world.store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    world.core = HostCore(world.store, clock=world.clock)
    world.link.inner = InProcessLink(world.core)
    terminal = world.restart()
    terminal.sign_on()
    kept = terminal.journal.batches()[1]
    rows = terminal.journal.transactions(kept.batch_id)
    assert (kept.batch_no, kept.close_reason, [r.state for r in rows]) == (
        2,
        "set_aside",
        ["approved", "approved"],
    )
    assert (terminal.current_batch().batch_no, len(_events(world, "recovery"))) == (1, 1)
