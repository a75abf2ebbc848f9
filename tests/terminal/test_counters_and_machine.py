"""batch.counters arithmetic and the terminal settlement machine / recovery decision."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posbatch.batch import terminal_batch as tb
from posbatch.batch.counters import (
    batch_no_distance,
    next_batch_no,
    next_stan,
    parse_batch_no,
)
from posbatch.batch.model import BatchReason, BatchState, BatchStateDetail
from posbatch.batch.terminal_batch import (
    LocalBatchView,
    RecoveryAction,
    SettleEvent,
    SettleStep,
    decide_recovery,
)
from posbatch.errors import ConfigError, IllegalTransition

counter_values = st.integers(min_value=1, max_value=999_999)


def test_stan_wraps_to_one() -> None:
    """STAN 999999 is followed by 000001, never 000000."""
    assert next_stan(999_999) == 1


def test_batch_no_wraps_to_one() -> None:
    """batch_no 999999 is followed by 000001."""
    assert next_batch_no(999_999) == 1


@given(counter_values)
def test_next_values_stay_in_range(value: int) -> None:
    """Both counters always stay within 1..999999."""
    assert (1 <= next_stan(value) <= 999_999, 1 <= next_batch_no(value) <= 999_999) == (
        True,
        True,
    )


@given(counter_values)
def test_distance_to_the_next_batch_is_one(value: int) -> None:
    """batch_no_distance counts next_batch_no steps, across the wrap too."""
    assert batch_no_distance(value, next_batch_no(value)) == 1


def test_counters_refuse_zero() -> None:
    """000000 is not a STAN."""
    with pytest.raises(ValueError, match="outside"):
        next_stan(0)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "empty"),
        ("12a", "digits 0-9 only"),
        ("-5", "digits 0-9 only"),
        ("1.0", "digits 0-9 only"),
        ("１２", "digits 0-9 only"),
        ("1234567", "more than 6 digits"),
        ("000000", "000001..999999"),
    ],
)
def test_typed_batch_numbers_are_checked(typed: str, message: str) -> None:
    """A batch number typed by a person is refused with the reason."""
    with pytest.raises(ConfigError, match=message):
        parse_batch_no(typed)


def test_typed_batch_number_with_spaces_is_accepted() -> None:
    """Spaces around a typed batch number are forgiven."""
    assert parse_batch_no(" 000042 ") == 42


def test_settlement_walks_the_table_unbalanced() -> None:
    """open → flushing → settling → uploading → ending → closed."""
    step = SettleStep.OPEN
    for event in (
        SettleEvent.BEGIN,
        SettleEvent.FLUSHED,
        SettleEvent.NOT_BALANCED,
        SettleEvent.UPLOADED,
        SettleEvent.ENDED,
    ):
        step = tb.apply(step, event)
    assert step == SettleStep.CLOSED


def test_closed_batch_takes_no_event() -> None:
    """A closed batch never moves again: IllegalTransition names machine, step, event."""
    with pytest.raises(IllegalTransition, match="'closed' on 'begin'"):
        tb.apply(SettleStep.CLOSED, SettleEvent.BEGIN)


def test_uploading_cannot_be_balanced() -> None:
    """A 'balanced' answer is only legal while the 0500 is outstanding."""
    with pytest.raises(IllegalTransition):
        tb.apply(SettleStep.UPLOADING, SettleEvent.BALANCED)


def test_only_open_batches_take_transactions() -> None:
    """Sales are refused from the moment settlement begins."""
    assert [tb.accepts_transactions(step) for step in SettleStep] == [
        True,
        False,
        False,
        False,
        False,
        False,
    ]


def _view(batch_no: int, counted: int = 0, step: SettleStep = SettleStep.OPEN) -> LocalBatchView:
    return LocalBatchView(batch_no, step, counted, 0)


@pytest.mark.parametrize(
    ("local", "host_batch_no", "detail", "action"),
    [
        (_view(5, 3), 5, None, RecoveryAction.RESUME),
        (_view(1), 7, None, RecoveryAction.ADOPT),
        (_view(30), 3, BatchStateDetail(BatchReason.AHEAD, 3, BatchState.OPEN, 2), "adopt"),
        (
            _view(4, 2),
            5,
            BatchStateDetail(BatchReason.CLOSED, 5, BatchState.OPEN, 4),
            RecoveryAction.SETTLE_CLOSED,
        ),
        (_view(4, 2, SettleStep.SETTLING), 5, None, RecoveryAction.SETTLE_CLOSED),
        (_view(999_999, 2), 1, None, RecoveryAction.SETTLE_CLOSED),
        (_view(9, 2), 3, None, RecoveryAction.SET_ASIDE),
    ],
)
def test_recovery_decision_table(
    local: LocalBatchView,
    host_batch_no: int,
    detail: BatchStateDetail | None,
    action: str,
) -> None:
    """Each row of the recovery table picks its action."""
    assert decide_recovery(local, host_batch_no, detail).action == action


@pytest.mark.parametrize(
    ("counted", "said"), [(1, "holds 1 approval the"), (2, "holds 2 approvals")]
)
def test_a_batch_set_aside_counts_its_approvals_in_words(counted: int, said: str) -> None:
    """The recovery line a desk reads says '1 approval', not '1 approvals'."""
    assert said in decide_recovery(_view(9, counted), 3, None).reason
