"""Doctor names "batch full" (交易笔数已满) with its evidence — from the terminal and from the
host alone — and --fix ends with the batch settled (issue 11 §1)."""

from __future__ import annotations

from doctor_capacity import over_capacity
from doctor_world import PAN, World
from rich.console import Console

from posbatch.doctor import Cause, Outcome, account, diagnose_from_host
from posbatch.doctor._words import capacity_words
from posbatch.doctor.cli import host_doctor_command
from posbatch.host import ExceptionKind
from testbed import TERMINAL_ID


def _evidence_text(report: object) -> str:
    diagnosis = report.diagnosis  # type: ignore[attr-defined]
    return " ".join(line.en for line in diagnosis.finding(Cause.BATCH_FULL).lines)


def test_a_batch_over_capacity_is_named_and_fix_settles_it_by_upload(world: World) -> None:
    """1,001 domestic sales in one batch: 'batch full', proof, field 48 named with what the
    full counter holds (not the network); --fix settles it by batch upload, the host records
    batch-over-capacity, after the repair doctor finds no failure — only that record for the
    back office (attention) — every approval is accounted for, the terminal sells."""
    over_capacity(world)
    report = world.examine()
    capacity = next(check for check in report.diagnosis.checks if check.key == "batch.capacity")
    assert (Outcome.FOUND, Cause.BATCH_FULL, "failed") == (
        report.diagnosis.outcome, report.diagnosis.cause, capacity.status.value
    )  # fmt: skip
    assert "more than the settlement totals (field 48) can count" in _evidence_text(report)
    assert "domestic debits (sales): 1001 (at most 999)" in _evidence_text(report)
    fixed = world.examine(fix=True)
    kinds = {exc.kind for exc in world.store.exceptions(TERMINAL_ID)}
    assert fixed.after is not None and fixed.after.outcome == Outcome.ATTENTION, fixed.after
    assert not fixed.after.failed
    assert ExceptionKind.BATCH_OVER_CAPACITY in kinds
    assert [] == list(account(world.store, TERMINAL_ID, world.terminal.journal).problems)
    assert world.terminal.sale(500, PAN).approved


def test_host_doctor_sees_a_batch_over_capacity(world: World) -> None:
    """From the host's records alone: found, exit 1 (it said "healthy" before)."""
    over_capacity(world)
    report = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    code = host_doctor_command(world.store, TERMINAL_ID, console=Console(file=None, quiet=True))
    assert (Outcome.FOUND, Cause.BATCH_FULL, 1) == (
        report.diagnosis.outcome, report.diagnosis.cause, code
    )  # fmt: skip
    assert "the host's batch 000003" in _evidence_text(report)


def test_a_batch_at_the_terminals_limit_is_no_failure(world: World) -> None:
    """The limit reached: the engine settles by itself before the next sale, so doctor says
    so, finds no failure and --fix settles nothing mid-day; the next sale does settle the
    full batch first and is approved in the next one."""
    world.established(open_sales=0)
    world.terminal.set_batch_limit(2)
    world.sales(2)
    batch_no = world.terminal.current_batch().batch_no
    report = world.examine(fix=True)
    finding = report.diagnosis.finding(Cause.BATCH_FULL)
    assert (Outcome.HEALTHY, "ruled out", (), ()) == (
        report.diagnosis.outcome,
        finding.verdict.value,
        report.diagnosis.repairs,
        report.repairs_done,
    )
    assert "settles it by itself" in finding.lines[0].en
    sale = world.terminal.sale(500, PAN)
    assert (True, (batch_no,)) == (sale.approved, sale.settled_batch_nos)


def test_a_batch_with_room_rules_batch_full_out(world: World) -> None:
    """Two sales of 500 allowed: ruled out, with the counts."""
    world.established()
    report = world.examine()
    finding = report.diagnosis.finding(Cause.BATCH_FULL)
    assert ("ruled out", True) == (finding.verdict.value, "has room" in finding.lines[0].en)


def test_capacity_words_tell_counts_amounts_and_unknown_counters() -> None:
    """What a full counter holds, in both languages and in yuan; a counter name from a
    crafted support bundle is told as unknown, never a traceback."""
    held = (("DOMESTIC_DEBIT_COUNT", 1001), ("FOREIGN_CREDIT_AMOUNT", 1_000_000_000_000), ("X", 1))
    assert capacity_words(held) == (
        "domestic debits (sales): 1001 (at most 999); foreign credits (voids and refunds): "
        "RMB 10000000000.00 (at most RMB 9999999999.99); a counter this doctor does not know",
        "内卡借记(消费) 1001 笔(最多 999 笔);外卡贷记(撤销与退货) 10000000000.00 元"
        "(最多 9999999999.99 元);未知计数项",
    )
