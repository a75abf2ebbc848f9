"""The simulator's issue-11 world: busy days that fill a batch, hosts that cap batches (95),
cards at the edges, third-party probes, backup → reinstall → restore — met, checked, and
able to catch the defects they were added for."""

from __future__ import annotations

from collections import Counter

import pytest

from posbatch.batch import host_rules
from posbatch.sim import SimConfig, profile_named, run_seed
from posbatch.terminal import _files as terminal_files

HEAVY = SimConfig(terminals=2, days=2, transactions=10, faults=profile_named("heavy"))
# Seeds that between them meet every new kind (found by running seeds 1-60; three since
# the third-party terminal also swipes expired cards and corrects reversals, 7 Dec 2026).
COVERING_SEEDS = (1, 8, 18)


def _met(seeds: tuple[int, ...], config: SimConfig = HEAVY) -> tuple[Counter[str], list[str]]:
    workload: Counter[str] = Counter()
    violations: list[str] = []
    for seed in seeds:
        result = run_seed(seed, config)
        workload.update(result.workload)
        violations.extend(violation.render() for violation in result.violations)
    return workload, violations


def test_every_new_kind_is_met_and_the_invariants_hold() -> None:
    """Three seeds of two terminals and two heavy days meet every kind; 0 violations."""
    workload, violations = _met(COVERING_SEEDS)
    assert [] == violations
    required = (
        "busy day: batch limit lowered",
        "batch full met (the terminal's limit)",
        "batch full met (the host's 95)",
        "batch full: settled by itself, then sold",
        "host caps batches at",
        "edge card: card starting with 0",
        "edge card: 12-digit card",
        "third-party probe: currency",
        "third-party probe: card starting with 0",
        "third-party probe: swiped",
        "third-party corrected reversal: balanced",
        "third-party reversal under a refund: balanced",
        "restored after a reinstall (the backup's keys)",
    )
    assert [] == [kind for kind in required if not any(name.startswith(kind) for name in workload)]


def test_a_host_without_the_card_and_currency_rules_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host of before (no card-number or currency rule): the third-party probes are
    approved, and the run fails — the simulator now draws what it missed."""
    monkeypatch.setattr(host_rules, "check_currency", lambda currency: None)
    monkeypatch.setattr(host_rules, "check_track2", lambda pan, track2: None)
    _workload, violations = _met(range(1, 4))
    assert any(
        "third-party probe" in violation and "answered 00" in violation for violation in violations
    )


def test_a_backup_without_its_key_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup that does not carry its keys (as before) cannot come back after a reinstall:
    the run says so."""
    monkeypatch.setattr(terminal_files, "read_backup_key", lambda engine: None)
    _workload, violations = _met((8,))
    assert any("restore refused" in violation for violation in violations)
