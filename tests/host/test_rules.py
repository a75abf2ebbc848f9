"""Pure pieces of the host: batch state machine, issuer rules, fault scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from posbatch.batch.host_batch import TRANSITIONS, BatchEvent, allows, apply, next_batch_no
from posbatch.batch.model import BatchState, Kind
from posbatch.errors import ConfigError, IllegalTransition
from posbatch.host.faults import FaultAction, FaultRule, FaultScript, load_fault_script
from posbatch.host.issuer import (
    TEST_PAN_APPROVED,
    TEST_PAN_INSUFFICIENT_FUNDS,
    TEST_PAN_NOT_ISSUED,
    IssuerRules,
    luhn_valid,
)
from testbed import TERMINAL_ID

NOW = datetime(2026, 11, 25, tzinfo=UTC)


# --- host batch state machine ---


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (BatchState.OPEN, BatchEvent.SETTLE_BALANCED, BatchState.CLOSED),
        (BatchState.OPEN, BatchEvent.SETTLE_UNBALANCED, BatchState.UPLOADING),
        (BatchState.UPLOADING, BatchEvent.UPLOAD_RECORD, BatchState.UPLOADING),
        (BatchState.UPLOADING, BatchEvent.UPLOAD_END, BatchState.CLOSED),
        (BatchState.UPLOADING, BatchEvent.ADVANCE, BatchState.CLOSED),
        (BatchState.CLOSED, BatchEvent.SETTLE_AGAIN, BatchState.CLOSED),
    ],
)
def test_allowed_transitions(state: BatchState, event: BatchEvent, after: BatchState) -> None:
    """The table's moves of the batch lifecycle."""
    assert apply(state, event) == after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (BatchState.CLOSED, BatchEvent.TRANSACTION),
        (BatchState.CLOSED, BatchEvent.UPLOAD_END),
        (BatchState.CLOSED, BatchEvent.REVERSE),
        (BatchState.UPLOADING, BatchEvent.TRANSACTION),
        (BatchState.OPEN, BatchEvent.UPLOAD_RECORD),
    ],
)
def test_illegal_transitions_raise(state: BatchState, event: BatchEvent) -> None:
    """A closed batch never changes; upload only after a not-balanced settlement."""
    with pytest.raises(IllegalTransition):
        apply(state, event)


def test_every_state_event_pair_is_decided() -> None:
    """allows() agrees with apply() for every pair of state and event."""
    for state in BatchState:
        for event in BatchEvent:
            assert allows(state, event) == ((state, event) in TRANSITIONS)


@pytest.mark.parametrize(("batch_no", "following"), [(1, 2), (41, 42), (999_999, 1)])
def test_batch_number_advances_and_wraps(batch_no: int, following: int) -> None:
    """999999 wraps to 000001."""
    assert next_batch_no(batch_no) == following


# --- issuer rules ---


def test_test_cards_pass_luhn() -> None:
    """The documented test cards are Luhn-valid, so only their range decides."""
    cards = (TEST_PAN_APPROVED, TEST_PAN_INSUFFICIENT_FUNDS, TEST_PAN_NOT_ISSUED)
    assert all(luhn_valid(pan) for pan in cards)


def test_issuer_rules_are_configurable() -> None:
    """A lower limit declines what the default allows."""
    rules = IssuerRules(amount_limit_fen=1_000)
    decisions = (
        rules.decide(pan=TEST_PAN_APPROVED, amount_fen=1_001, expiry=None, now=NOW),
        IssuerRules().decide(pan=TEST_PAN_APPROVED, amount_fen=1_001, expiry=None, now=NOW),
    )
    assert decisions == ("61", "00")


@pytest.mark.parametrize(("expiry", "code"), [("2611", "00"), ("2610", "54"), ("2613", "54")])
def test_expiry_against_the_injected_clock(expiry: str, code: str) -> None:
    """The card's month counts until its end; a month 13 is no date."""
    assert IssuerRules().decide(pan=TEST_PAN_APPROVED, amount_fen=1, expiry=expiry, now=NOW) == code


# --- fault scripts ---


def test_fault_script_from_json_file(tmp_path: Path) -> None:
    """A JSON script loads its rules and seed."""
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"seed": 3, "rules": [
        {"terminal_id": TERMINAL_ID, "kind": "sale", "action": "drop", "count": 1}]}))  # fmt: skip
    script = load_fault_script(path)
    assert (script.seed, script.rules) == (
        3,
        (FaultRule(FaultAction.DROP, terminal_id=TERMINAL_ID, kind=Kind.SALE, count=1),),
    )


def test_fault_script_from_toml_file(tmp_path: Path) -> None:
    """A TOML script with [[rules]] loads the same way."""
    path = tmp_path / "faults.toml"
    path.write_text('seed = 1\n[[rules]]\naction = "force"\nresponse_code = "77"\n')
    assert load_fault_script(path).rules == (FaultRule(FaultAction.FORCE, response_code="77"),)


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "explode"},
        {"action": "force"},
        {"action": "delay"},
        {"action": "drop", "probability": 2},
        {"action": "drop", "colour": "red"},
    ],
)
def test_bad_fault_rules_are_refused(tmp_path: Path, rule: dict[str, object]) -> None:
    """Unknown actions, missing codes/delays, bad probabilities and keys are ConfigError."""
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"rules": [rule]}))
    with pytest.raises(ConfigError):
        load_fault_script(path)


def test_fault_count_is_used_up() -> None:
    """A rule with count 2 acts twice, then never again."""
    script = FaultScript([FaultRule(FaultAction.DROP, count=2)])
    picks = [script.pick(TERMINAL_ID, Kind.SALE) is not None for _ in range(4)]
    assert picks == [True, True, False, False]


def test_fault_draws_repeat_with_the_same_seed() -> None:
    """Two scripts with one seed pick the same requests."""

    def draws(seed: int) -> list[bool]:
        script = FaultScript([FaultRule(FaultAction.DROP, probability=0.5)], seed=seed)
        return [script.pick(TERMINAL_ID, Kind.SALE) is not None for _ in range(50)]

    assert draws(7) == draws(7)


def test_fault_rule_matches_terminal_and_kind() -> None:
    """A rule for one terminal's settlements leaves its sales and other terminals alone."""
    rule = FaultRule(FaultAction.DROP, terminal_id=TERMINAL_ID, kind=Kind.SETTLEMENT)
    matches = (
        rule.matches(TERMINAL_ID, Kind.SETTLEMENT),
        rule.matches(TERMINAL_ID, Kind.SALE),
        rule.matches("10000002", Kind.SETTLEMENT),
    )
    assert matches == (True, False, False)
