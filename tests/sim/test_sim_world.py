"""Seeded runs of the whole system: deterministic, checked, and the checker bites."""

from __future__ import annotations

import re

import pytest

import posbatch.doctor._report as doctor_report
import posbatch.terminal._financial as financial
from posbatch.sim import (
    Breakage,
    SimConfig,
    World,
    profile_named,
    replay,
    run_seed,
    run_seeds,
)
from posbatch.sim._faults import FaultKind
from posbatch.sim._report import minimal_trace

HEAVY = profile_named("heavy")
SMALL = SimConfig(terminals=2, days=2, transactions=6, faults=HEAVY)
BROKEN = SimConfig(
    terminals=2, days=2, transactions=6, faults=HEAVY, broken=frozenset({Breakage.SKIP_REVERSAL})
)
BROKEN_SEED = 2  # found by running seeds 1..5: every one but 3 catches the broken terminal


def test_same_seed_same_run_byte_for_byte() -> None:
    """Running a seed twice gives the same digest over every frame and the final states."""
    first = run_seed(11, SMALL)
    second = run_seed(11, SMALL)
    assert first.digest == second.digest
    assert (first.frames, first.faults, first.outcomes) == (
        second.frames,
        second.faults,
        second.outcomes,
    )


def test_different_seeds_differ() -> None:
    """Two seeds give two different runs (the digest is not a constant)."""
    assert run_seed(11, SMALL).digest != run_seed(12, SMALL).digest


def test_faults_are_injected_and_counted() -> None:
    """With the heavy profile a small run meets link faults, crashes and day-level faults."""
    result = run_seed(11, SMALL)
    assert sum(result.faults.values()) > 0
    assert result.transactions > 0


def test_checker_catches_a_terminal_that_skips_the_reversal() -> None:
    """A terminal that writes off a timed-out sale instead of reversing it breaks invariant 2."""
    result = run_seed(BROKEN_SEED, BROKEN)
    assert {2} == {violation.invariant for violation in result.violations}
    assert all("the terminal shows declined" in v.message for v in result.violations)


def test_same_seed_without_the_breakage_holds() -> None:
    """The very same seed with the real engine breaks nothing: the violation is the bug's."""
    assert [] == [violation.render() for violation in run_seed(BROKEN_SEED, SMALL).violations]


def test_violation_replays_with_its_trace() -> None:
    """Replaying the failing seed reproduces the digest and a trace that names the STAN."""
    first = run_seed(BROKEN_SEED, BROKEN)
    replayed, trace = replay(BROKEN_SEED, BROKEN)
    violation = replayed.violations[0]
    lines = minimal_trace(trace.events_of(violation.terminal_id, day=violation.day), violation)
    assert first.digest == replayed.digest
    assert any(f"stan={violation.stan} " in line for line in lines)
    assert any("!!" in line for line in lines)  # the fault that led to it


def test_batch_number_wraps_past_999999() -> None:
    """Started at 999998, three settled days wrap the batch number to 000001 and on."""
    config = SimConfig(terminals=2, days=3, transactions=3, faults=profile_named("none"),
                       start_batch_no=999_998)  # fmt: skip
    world = World(5, config)
    result = world.run()
    host_batch_nos = [info.batch_no for info in world.store.batches("10000001")]
    assert [] == [violation.render() for violation in result.violations]
    assert [999_998, 999_999, 1, 2] == host_batch_nos[:4]


@pytest.mark.slow
def test_fifty_seeds_with_every_fault_hold_the_invariants() -> None:
    """CI: 50 seeds x 3 days x 2 terminals, every fault kind on (heavy): invariants 1-6 hold.

    Two worker processes share the seeds (each seed is its own world).
    """
    config = SimConfig(terminals=2, days=3, transactions=4, faults=HEAVY, keep_trace=False)
    failures = {}
    for result in run_seeds(range(1, 51), config, jobs=2):
        seed = result.seed
        if result.violations:
            failures[seed] = [violation.render() for violation in result.violations[:3]]
    assert {} == failures


def test_worker_processes_give_the_same_runs() -> None:
    """Seeds run in two worker processes come back in order with the same digests."""
    config = SimConfig(terminals=1, days=1, transactions=2, faults=HEAVY)
    expected = [run_seed(seed, config).digest for seed in (1, 2, 3)]
    assert expected == [result.digest for result in run_seeds(range(1, 4), config, jobs=2)]


DOCTOR = SimConfig(terminals=2, days=2, transactions=6, faults=HEAVY)
DOCTOR_BROKEN = SimConfig(
    terminals=2,
    days=2,
    transactions=6,
    faults=HEAVY,
    broken=frozenset({Breakage.DOCTOR_TAKES_STANS}),
)


def test_copied_back_journals_and_mid_fault_diagnoses_are_drawn_and_hold() -> None:
    """Heavy faults draw older journals copied back and doctor runs (diagnosis only) through
    the faulty link: each diagnosis changed nothing and gave one verdict (invariant 9), and a
    copied-back journal is diagnosed at once."""
    result = run_seed(3, DOCTOR)
    diagnosed = {key.split(":")[0] for key in result.diagnoses}
    expected = ([], True, True, {"mid-faults", "after a copy-back"})
    assert expected == (
        [violation.render() for violation in result.violations],
        result.faults[FaultKind.JOURNAL_COPIED_BACK] > 0,
        result.faults[FaultKind.DOCTOR_DIAGNOSIS] > 0,
        diagnosed,
    )


def test_checker_catches_a_diagnosis_that_takes_stans() -> None:
    """Doctor's old echo tests (a STAN taken from the journal per echo) break invariant 9."""
    result = run_seed(3, DOCTOR_BROKEN)
    expected = {9}
    assert expected == {violation.invariant for violation in result.violations}
    assert all("state of the journal" in v.message for v in result.violations)


def test_checker_catches_a_bundle_net_that_misses_12_digit_cards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Doctor's old net (13–19 digits only) lets an operator's 12-digit card number in a
    back-office reason into the support bundle: invariant 10 bites; today's net holds."""
    config = SimConfig(terminals=2, days=3, transactions=6, faults=HEAVY)
    assert [] == [violation.render() for violation in run_seed(18, config).violations]
    old = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")

    def old_scrub(text: str, *, allowed: frozenset[str] = frozenset()) -> str:
        return old.sub(lambda m: m[0][:6] + "*" * (len(m[0]) - 10) + m[0][-4:], text)

    # the report's texts (masked) and the rendered bundle (scrub) both go through it
    monkeypatch.setattr(doctor_report, "mask_card_numbers", old_scrub)
    monkeypatch.setattr(doctor_report, "scrub", old_scrub)
    assert {10} == {violation.invariant for violation in run_seed(18, config).violations}


def test_checker_catches_a_terminal_that_sends_what_its_journal_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Invariant 11: a void of a sale the journal holds refunded (heavy seed 3 reaches it: a
    pending refund resent and approved first in the void's flow, the kill probe's finding)
    is refused by the terminal; a terminal that skips its checks sends it and the host
    declines it — the world says so."""
    config = SimConfig(terminals=3, days=2, transactions=15, faults=HEAVY)
    assert [] == [violation.render() for violation in run_seed(3, config).violations]
    monkeypatch.setattr(financial, "_refuse_void_if_refunded", lambda sale: None)
    monkeypatch.setattr(financial, "_refuse_refund_past_the_sale", lambda sale, amount: None)
    assert {11} == {violation.invariant for violation in run_seed(3, config).violations}
