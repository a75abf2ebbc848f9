"""Doctor keeps its evidence: a diagnosis changes nothing it diagnoses, and the causes that
need the host's evidence (reinstall, a journal copied back) are named from it.

Each broken state is built through the real engines (doctor_world); the diagnosis talks
to the live host in-process (echo tests), with and without the host store at hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from doctor_world import PAN, TERMINAL_ID, World
from rich.console import Console
from test_causes import (
    copied_back,
    counters_reset,
    day_off,
    host_advanced,
    lost_settlement_answer,
    network_timeouts,
    typed_batch_number,
)

from posbatch.batch.model import Kind
from posbatch.doctor import (
    Cause,
    Outcome,
    RepairStatus,
    Report,
    Status,
    Verdict,
    account,
    diagnose_from_host,
    render_text,
)
from posbatch.doctor._report import json_text
from posbatch.doctor._rules import Repair
from posbatch.doctor.cli import host_doctor_command
from posbatch.host.store import BatchInfo, ExceptionInfo, TerminalInfo
from posbatch.terminal import restore_journal

# --- the state doctor must leave alone -------------------------------------------------------


@dataclass(frozen=True)
class State:
    """Everything a later diagnosis reads, on both sides."""

    journal_entries: int
    journal_head: str | None
    journal_stan: int
    host_terminal: TerminalInfo | None
    host_batches: tuple[BatchInfo, ...]
    host_exceptions: tuple[ExceptionInfo, ...]
    host_transactions: int


def state_of(world: World) -> State:
    journal = world.terminal.journal
    return State(
        journal.last_seq,
        journal.chain_hash(journal.last_seq),
        journal.state().stan,
        world.store.terminal(TERMINAL_ID),
        tuple(world.store.batches(TERMINAL_ID)),
        tuple(world.store.exceptions(TERMINAL_ID)),
        len(world.store.transactions(TERMINAL_ID, limit=100_000)),
    )


def verdict(report: Report) -> tuple[object, ...]:
    """What a person acts on: outcome, cause, plan, and every rule's and check's verdict."""
    diagnosis = report.diagnosis
    return (
        diagnosis.outcome,
        diagnosis.cause,
        diagnosis.candidates,
        diagnosis.repairs,
        tuple((cause, finding.verdict) for cause, finding in diagnosis.findings),
        tuple((check.key, check.status) for check in diagnosis.checks),
    )


def reinstall_after_first_settlement(world: World) -> None:
    """Sale, settle, sale; then the software is reinstalled on an empty journal."""
    world.sales(1)
    assert world.terminal.settle().balanced
    world.sales(1)
    world.reinstall()


def recovered_timeout(world: World) -> None:
    """A sale's answer is lost; the engine reverses it at the next sale, which is approved."""
    world.established()
    world.drop_answer(Kind.SALE)
    assert not world.terminal.sale(777, PAN).approved
    world.faults()
    world.sales(1, amount_fen=3000)


def healthy(world: World) -> None:
    world.established()


STATES: dict[str, Callable[[World], None]] = {
    "healthy": healthy,
    "copied back": copied_back,
    "reinstalled": counters_reset,
    "reinstall after first settlement": reinstall_after_first_settlement,
    "lost settlement answer": lost_settlement_answer,
    "pending reversal": network_timeouts,
    "back-office advance": host_advanced,
    "day off": day_off,
    "typed batch number": typed_batch_number,
    "recovered timeout": recovered_timeout,
}


# Every state over the live host alone (echo tests); the ones the store changes most, also
# with the host store at hand (--host-db).
RUNS = [(name, False) for name in sorted(STATES)] + [
    (name, True) for name in ("copied back", "reinstall after first settlement", "day off")
]


@pytest.mark.parametrize(
    ("name", "store"), RUNS, ids=[f"{n}-{'store' if s else 'echo'}" for n, s in RUNS]
)
def test_diagnosis_twice_changes_nothing_and_gives_the_same_verdict(
    world: World, name: str, store: bool
) -> None:
    """Without --fix, doctor leaves the journal and the host exactly as it found them (no
    STAN taken, no sign-on on the host), so the same state run twice gives the same verdict."""
    STATES[name](world)
    before = state_of(world)
    first = world.examine(host_store=store)
    middle = state_of(world)
    second = world.examine(host_store=store)
    expected = (before, before, verdict(first))
    assert expected == (middle, state_of(world), verdict(second))


def test_diagnosis_does_not_hide_the_94_a_copied_back_journal_is_about_to_meet(
    world: World,
) -> None:
    """Doctor's echo tests borrow their STANs: after it ran, the next sale still meets the 94
    the copied-back journal holds in store (doctor used to take 5 STANs and hide it)."""
    copied_back(world)
    world.examine(host_store=False)
    world.terminal.sale(6000, "6222021234567890128")
    assert 1 == len(world.terminal.journal.events("duplicate_stan"))


# --- reinstall right after the first settlement ------------------------------------------------


def test_reinstall_after_the_first_settlement_is_a_counters_reset(world: World) -> None:
    """The host closed batch 000001 (a terminal's 0500) that the new journal — still at an OPEN
    000001 that never sent one — cannot have settled: reinstall, not 'unexplained'."""
    reinstall_after_first_settlement(world)
    report = world.examine(host_store=False)
    expected = (Outcome.FOUND, Cause.COUNTERS_RESET, (Repair.SIGN_ON_ADOPT,))
    assert expected == (report.diagnosis.outcome, report.diagnosis.cause, report.diagnosis.repairs)


def test_fix_of_a_reinstall_after_the_first_settlement_settles_the_old_sale_once(
    world: World,
) -> None:
    """--fix signs on: the engine settles the host's batch holding the old sale (an exception
    for the back office, nothing lost: "attention", not healthy), and the next sale goes
    through without a 94."""
    reinstall_after_first_settlement(world)
    report = world.examine(fix=True, host_store=False)
    sale = world.terminal.sale(4200, PAN)
    assert report.after is not None
    expected = ([RepairStatus.DONE], Outcome.ATTENTION, True, [], [])
    assert expected == (
        [result.status for result in report.repairs_done],
        report.after.outcome,
        sale.approved,
        [e.message for e in world.terminal.journal.events("duplicate_stan")],
        list(account(world.store, TERMINAL_ID, world.terminal.journal).problems),
    )


def test_fix_that_leaves_exception_records_says_so_without_the_host_store(world: World) -> None:
    """A reinstall fixed from the terminal alone (no host store): the sign-on settles the host's
    batch not balanced, so the verdict after names that batch's exception records for the back
    office — "attention", exit 1 — never "No failure found" (it was, with RMB 3.30 of sales
    waiting in exception records: found by the desk probe)."""
    counters_reset(world)
    report = world.examine(fix=True, host_store=False)
    assert report.after is not None
    check = next(c for c in report.after.checks if c.key == "host.exceptions")
    text = render_text(report)
    expected = (Outcome.ATTENTION, Status.WARNING, True, True, False)
    assert expected == (
        report.after.outcome,
        check.status,
        "the repairs settled batch 000003 without balancing" in check.lines[0].en,
        "posbatch host doctor" in check.lines[0].en,
        "No failure found" in text.split("after repair")[-1],
    )


def test_a_new_journal_has_no_message_number_rather_than_000000(world: World) -> None:
    """A reinstalled journal has used no STAN yet: doctor says so, never "message number
    (STAN) 000000" (STANs run 000001–999999; a desk reading 000000 asks what it means)."""
    counters_reset(world)
    report = world.examine()
    text = render_text(report)
    found = [line.en for line in report.diagnosis.finding(Cause.COUNTERS_RESET).lines]
    stan_check = next(c for c in report.diagnosis.checks if c.key == "batch.stan")
    expected = (False, False, True, "the terminal has used no message number (STAN) yet")
    assert expected == (
        "(STAN) 000000" in text,
        "流水号 000000" in text,
        "the host last saw message number (STAN) 000009; this journal has used no message "
        "number yet" in found,
        stan_check.lines[0].en,
    )


def test_fix_that_settles_balanced_is_healthy_after(world: World) -> None:
    """A lost settlement answer resumed by --fix closes balanced: no exception record is made,
    and the verdict after is healthy (the warning above is only for unbalanced closes)."""
    lost_settlement_answer(world)
    report = world.examine(fix=True, host_store=False)
    assert report.after is not None
    assert (Outcome.HEALTHY, []) == (
        report.after.outcome,
        [e.kind for e in world.store.exceptions(TERMINAL_ID)],
    )


# --- a journal copied back by hand --------------------------------------------------------------


@pytest.mark.parametrize("store", [False, True], ids=["echo only", "with host store"])
def test_copied_back_journal_is_named_before_the_next_sale(world: World, store: bool) -> None:
    """An older journal.db over the current one: named from the host's evidence (its last STAN
    of the open batch is not in the journal), with the 94 it would meet and the repair."""
    copied_back(world)
    report = world.examine(host_store=store)
    lines = " ".join(line.en for line in report.diagnosis.finding(Cause.JOURNAL_REPLACED).lines)
    expected = (
        Cause.JOURNAL_REPLACED,
        (Repair.RESYNC_JOURNAL, Repair.SIGN_ON_ADOPT),
        True,
        True,
    )
    assert expected == (
        report.diagnosis.cause,
        report.diagnosis.repairs,
        "answered 94" in lines,
        "copied over the newer one by hand" in lines,
    )


def test_fix_of_a_copied_back_journal_settles_the_hosts_batch_before_any_sale(
    world: World,
) -> None:
    """--fix marks the journal restored and signs on: the host's batch is settled first (its
    two sales the journal lost become exceptions, counted once: "attention" after, not
    healthy), the next sale meets no 94."""
    copied_back(world)
    report = world.examine(fix=True, host_store=False)
    sale = world.terminal.sale(6000, "6222021234567890128")
    exceptions = [e.kind for e in world.store.exceptions(TERMINAL_ID)]
    assert report.after is not None
    expected = (Outcome.ATTENTION, True, [], ["host-only", "host-only"], [])
    assert expected == (
        report.after.outcome,
        sale.approved,
        world.terminal.journal.events("duplicate_stan"),
        exceptions,
        list(account(world.store, TERMINAL_ID, world.terminal.journal).problems),
    )


def test_journal_copied_back_across_a_settlement_is_named(world: World) -> None:
    """The copy was taken before a settlement: the host closed that batch by a terminal's 0500
    that this journal, still holding it open, never sent."""
    world.established()
    copy = world.copy_journal()
    assert world.terminal.settle().balanced
    world.sales(1, amount_fen=5000)
    world.copy_back(copy)
    report = world.examine(host_store=False)
    assert Cause.JOURNAL_REPLACED == report.diagnosis.cause


@pytest.mark.parametrize("store", [False, True], ids=["echo only", "with host store"])
def test_a_copy_from_before_a_settlement_names_the_hosts_later_open_batch(
    world: World, store: bool
) -> None:
    """The newer journal settled batch N and sold in N+1; the copy still holds N open. The
    service desk reads which batch the host holds open (N+1), what it holds, and that the
    terminal settles it before the next sale — in the diagnosis, in the repair that settles
    it, and in --json (found by reading the report of this state: none of it was said)."""
    world.established()
    copy = world.copy_journal()
    mine = world.terminal.current_batch().batch_no
    assert world.terminal.settle().balanced
    world.sales(1, amount_fen=5000)
    world.copy_back(copy)
    report = world.examine(fix=True, host_store=store)
    later = f"{mine + 1:06d}"
    finding = [line.en for line in report.diagnosis.finding(Cause.JOURNAL_REPLACED).lines]
    told = next(text for text in finding if f"the host holds batch {later} open" in text)
    sign_on = next(r for r in report.repairs_done if r.repair == Repair.SIGN_ON_ADOPT)
    settled = [line.en for line in sign_on.lines]
    expected = (
        True,
        True,
        True,
        True,
        True,
    )
    assert expected == (
        f"a later batch than this journal knows (its own is {mine:06d})" in told,
        ("1 approval (net RMB 50.00)" if store else "its last transaction is") in told,
        f"settles batch {later} at its next sign-on after the repair, before any new sale" in told,
        f"batch {later} was the host's open batch, later than any this journal knew: it is "
        "settled now, before any new sale" in settled,
        told in json_text(report) and settled[-1] in json_text(report),
    )


def test_copied_back_journal_with_a_newer_backup_plans_the_restore(world: World) -> None:
    """A backup whose hash chain holds the whole journal and goes on past it is newer: the
    plan restores it (then signs on) instead of settling without the lost entries."""
    world.established()
    copy = world.copy_journal()
    world.sales(2, amount_fen=5000)
    world.backup()
    world.copy_back(copy)
    report = world.examine(host_store=False)
    backup = report.evidence.journal.backup if report.evidence.journal else None
    expected = (
        Cause.JOURNAL_REPLACED,
        (Repair.RESTORE_BACKUP, Repair.SIGN_ON_ADOPT),
        True,
    )
    assert expected == (
        report.diagnosis.cause,
        report.diagnosis.repairs,
        backup is not None and backup.extends_journal,
    )


def test_a_legitimate_restore_in_progress_is_not_a_copied_back_journal(world: World) -> None:
    """An older backup restored with `terminal restore` and already resynced (settled) leaves
    no trace doctor would take for a copy: healthy."""
    world.established()
    world.backup()
    world.sales(2, amount_fen=5000)
    world.site.close()
    restore_journal(world.backups[-1], world.data_dir)
    world.restart()
    world.terminal.sign_on()  # the engine resyncs: settles the host's batch first
    report = world.examine(host_store=False)
    assert Verdict.RULED_OUT == report.diagnosis.finding(Cause.JOURNAL_REPLACED).verdict


# --- timeouts the engine recovered from ----------------------------------------------------------


def test_recovered_timeout_is_history_not_a_cause(world: World) -> None:
    """A timeout the engine reversed by itself: no cause, exit 0, nothing to repair (no
    mid-day settlement) — and the report still shows it, as history."""
    recovered_timeout(world)
    report = world.examine(host_store=False)
    reversals = next(c for c in report.diagnosis.checks if c.key == "terminal.reversals")
    expected = (Outcome.HEALTHY, (), Status.PASSED, True)
    assert expected == (
        report.diagnosis.outcome,
        report.diagnosis.repairs,
        reversals.status,
        any("history" in line.en for line in reversals.lines),
    )


def test_fix_after_a_recovered_timeout_settles_nothing(world: World) -> None:
    """--fix has nothing to do: the open batch stays open (the shop settles at day's end)."""
    recovered_timeout(world)
    before = world.terminal.current_batch()
    report = world.examine(fix=True, host_store=False)
    assert ((), before) == (report.repairs_done, world.terminal.current_batch())


def test_pending_reversal_repair_sends_it_and_does_not_settle(world: World) -> None:
    """A reversal still pending is a network sign: the repair sends it, and stops there."""
    network_timeouts(world)
    report = world.examine(fix=True, host_store=False)
    balance = world.terminal.balance()
    expected = ((Repair.FLUSH_REVERSALS,), 0, "open", 2)
    assert expected == (
        report.diagnosis.repairs,
        balance.outstanding_count,
        balance.step,
        balance.approved_count,
    )


# --- host doctor: warnings are not "healthy" -----------------------------------------------------


def test_host_doctor_with_money_to_return_is_not_healthy(world: World) -> None:
    """Exception records (money the back office must return or pay) make the host-side
    diagnosis 'attention': not 'No failure found', exit 1, with what a person must do."""
    copied_back(world)
    world.examine(fix=True, host_store=False)  # settles: the lost sales become exceptions
    report = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    text = render_text(report)
    expected = (Outcome.ATTENTION, False, True, True)
    assert expected == (
        report.diagnosis.outcome,
        "No failure found" in text,
        "back office" in " ".join(line.en for line in report.diagnosis.person_steps),
        "RMB 100.01" in text,  # 50.00 + 50.01 in question
    )


def test_host_doctor_exit_status_agrees_with_its_warnings(world: World) -> None:
    """`posbatch host doctor`: exit 1 while exception records wait for the back office (as
    docs/doctor.md says: warnings are not healthy), 0 for a terminal with nothing to do."""
    world.clock.now = datetime.now(UTC) - timedelta(hours=1)  # the command reads the real clock
    world.established()
    quiet = Console(quiet=True)
    clean = host_doctor_command(world.store, TERMINAL_ID, console=quiet)
    copied_back(world)
    world.examine(fix=True, host_store=False)
    assert (0, 1) == (clean, host_doctor_command(world.store, TERMINAL_ID, console=quiet))


def test_host_doctor_twice_changes_nothing_and_gives_the_same_verdict(world: World) -> None:
    """The host-side diagnosis only reads the store: run twice, same store, same verdict."""
    copied_back(world)
    world.examine(fix=True, host_store=False)
    world.clock.skip(days=2)
    before = state_of(world)
    first = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    second = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    assert (before, verdict(first)) == (state_of(world), verdict(second))


def test_stale_host_batch_is_found_twice_the_same(world: World) -> None:
    """An open host batch with approvals over a day old: found, the same both times."""
    world.established()
    world.clock.skip(days=2, hours=1)
    first = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    second = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock() + timedelta(0))
    assert (Cause.STALE_BATCH, verdict(first)) == (second.diagnosis.cause, verdict(second))


def test_journal_evidence_names_the_last_approval_of_the_open_batch(world: World) -> None:
    """The STAN of the open batch's last approval is gathered (the host-side check compares it
    with the host's T=); a declined sale after it does not move it."""
    world.established(open_sales=2)
    last = world.terminal.journal.transactions(world.terminal.current_batch().batch_id)[-1].stan
    assert not world.terminal.sale(500, "6222028880000000007").approved  # 51: declined
    report = world.examine()
    assert report.evidence.journal is not None
    assert last == report.evidence.journal.last_approved_stan
