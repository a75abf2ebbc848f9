"""The checker bites: each invariant of DESIGN.md, violated by hand, is reported."""

from __future__ import annotations

from dataclasses import replace

from posbatch.batch.model import CardTotals, CardType, Kind, SettlementTotals
from posbatch.sim._checker import check
from posbatch.sim._model import (
    HostBatchRow,
    HostExceptionRow,
    HostTxnRow,
    HostTxnStatus,
    Snapshot,
    TerminalBatchRow,
    TerminalTxnRow,
    TerminalTxnStatus,
)
from testbed import TERMINAL_ID as TID

SALE_TOTALS = SettlementTotals(CardTotals(1250, 1, 0, 0))


def terminal_sale(stan: int = 1, status: TerminalTxnStatus = TerminalTxnStatus.APPROVED):
    return TerminalTxnRow(TID, 0, 1, stan, Kind.SALE, 1250, CardType.DOMESTIC, status)


def host_sale(stan: int = 1, status: HostTxnStatus = HostTxnStatus.APPROVED, txn_key: int = 1):
    return HostTxnRow(TID, 1, 1, txn_key, stan, Kind.SALE, 1250, CardType.DOMESTIC, status, "00")


def settled_day(**changes: object) -> Snapshot:
    """One sale, settled balanced on both sides: every invariant holds."""
    snapshot = Snapshot(
        day=0,
        terminal_txns=(terminal_sale(),),
        terminal_batches=(
            TerminalBatchRow(TID, 0, 1, "closed", True, True, "balanced", SALE_TOTALS),
            TerminalBatchRow(TID, 0, 2, "open", False, None, None, None),
        ),
        host_txns=(host_sale(),),
        host_batches=(
            HostBatchRow(TID, 1, 1, "CLOSED", "balanced", SALE_TOTALS),
            HostBatchRow(TID, 2, 2, "OPEN", None, None),
        ),
        host_exceptions=(),
        failures=(),
    )
    return replace(snapshot, **changes)  # type: ignore[arg-type]


def invariants(snapshot: Snapshot) -> list[int]:
    return sorted({violation.invariant for violation in check(snapshot)})


def test_a_clean_day_has_no_violation() -> None:
    """A sale approved and settled balanced on both sides breaks nothing."""
    expected: list[int] = []
    assert expected == invariants(settled_day())


def test_approval_missing_on_host_breaks_1() -> None:
    """A terminal approval the host does not hold is invariant 1 (and 3: totals differ)."""
    snapshot = settled_day(
        host_txns=(),
        host_batches=(
            HostBatchRow(TID, 1, 1, "CLOSED", "balanced", SettlementTotals()),
            HostBatchRow(TID, 2, 2, "OPEN", None, None),
        ),
    )
    expected = [1, 3]
    assert expected == invariants(snapshot)


def test_timed_out_sale_the_terminal_forgot_breaks_2() -> None:
    """The host charged a sale the terminal shows as declined (no reversal): invariant 2."""
    snapshot = settled_day(
        terminal_txns=(terminal_sale(status=TerminalTxnStatus.DECLINED),),
        terminal_batches=(TerminalBatchRow(TID, 0, 1, "open", False, None, None, None),),
    )
    expected = [2]
    assert expected == invariants(snapshot)


def test_pending_reversal_is_in_flight_until_the_end() -> None:
    """A queued reversal is fine at a day's end, a violation after the final close."""
    pending = settled_day(
        terminal_txns=(terminal_sale(status=TerminalTxnStatus.REVERSAL_PENDING),),
        terminal_batches=(TerminalBatchRow(TID, 0, 1, "open", False, None, None, None),),
        host_batches=(HostBatchRow(TID, 1, 1, "OPEN", None, None),),
    )
    expected: list[int] = []
    assert expected == invariants(pending)
    expected = [2]
    assert expected == invariants(replace(pending, final=True))


def test_reversal_never_sent_is_accounted_by_an_exception() -> None:
    """A reversal still queued at the end is fine only if an exception record names the sale."""
    stuck = settled_day(
        terminal_txns=(terminal_sale(status=TerminalTxnStatus.REVERSAL_PENDING),),
        final=True,
    )
    recorded = replace(
        stuck, host_exceptions=(HostExceptionRow(TID, 1, 1, "host-only", "not uploaded"),)
    )
    expected = [2, 3]
    assert expected == invariants(stuck)
    expected = []
    assert expected == invariants(recorded)


def test_late_reversal_needs_an_exception_record() -> None:
    """A reversal the host kept (batch closed) is fine only with an exception naming it."""
    reversed_day = settled_day(
        terminal_txns=(terminal_sale(status=TerminalTxnStatus.REVERSED),),
    )
    recorded = replace(
        reversed_day,
        host_exceptions=(HostExceptionRow(TID, 1, 1, "late-reversal", "batch closed"),),
    )
    expected = [2, 3]
    assert expected == invariants(reversed_day)
    expected: list[int] = []
    assert expected == invariants(recorded)


def test_refunds_beyond_the_sale_break_2() -> None:
    """Refunds adding up to more than their sale are invariant 2."""
    refund = HostTxnRow(
        TID, 2, 2, 2, 1, Kind.REFUND, 1000, CardType.DOMESTIC, HostTxnStatus.APPROVED, "00", 1
    )
    snapshot = settled_day(
        terminal_txns=(
            terminal_sale(),
            TerminalTxnRow(
                TID, 0, 2, 1, Kind.REFUND, 1000, CardType.DOMESTIC, TerminalTxnStatus.APPROVED
            ),
            TerminalTxnRow(
                TID, 0, 2, 2, Kind.REFUND, 1000, CardType.DOMESTIC, TerminalTxnStatus.APPROVED
            ),
        ),
        host_txns=(host_sale(), refund, replace(refund, stan=2, txn_key=3)),
    )
    expected = [2]
    assert expected == invariants(snapshot)


def test_changed_closed_batch_breaks_3() -> None:
    """A closed host batch whose rows no longer add up to its recorded totals: invariant 3."""
    snapshot = settled_day(
        host_batches=(
            HostBatchRow(TID, 1, 1, "CLOSED", "balanced", SettlementTotals()),
            HostBatchRow(TID, 2, 2, "OPEN", None, None),
        )
    )
    expected = [3]
    assert expected == invariants(snapshot)


def test_terminal_closed_batch_open_on_host_breaks_3() -> None:
    """The terminal closed a batch the host still holds open: invariant 3."""
    snapshot = settled_day(host_batches=(HostBatchRow(TID, 1, 1, "OPEN", None, None),))
    expected = [3]
    assert expected == invariants(snapshot)


def test_reused_batch_number_breaks_4() -> None:
    """The host opening batch 000001 again right after closing it: invariant 4.

    (3 too: the terminal's closed 000001 now meets an open host 000001.)
    """
    snapshot = settled_day(
        host_batches=(
            HostBatchRow(TID, 1, 1, "CLOSED", "balanced", SALE_TOTALS),
            HostBatchRow(TID, 2, 1, "OPEN", None, None),
        )
    )
    expected = [3, 4]
    assert expected == invariants(snapshot)


def test_two_open_batches_break_4() -> None:
    """Two open batches for one terminal on the host: invariant 4."""
    snapshot = settled_day(
        host_batches=(
            HostBatchRow(TID, 1, 1, "CLOSED", "balanced", SALE_TOTALS),
            HostBatchRow(TID, 2, 2, "OPEN", None, None),
            HostBatchRow(TID, 3, 3, "UPLOADING", None, None),
        )
    )
    expected = [4]
    assert expected == invariants(snapshot)


def test_exception_without_cause_breaks_5() -> None:
    """An exception record with an empty cause: invariant 5."""
    snapshot = settled_day(host_exceptions=(HostExceptionRow(TID, 1, None, "host-only", " "),))
    expected = [5]
    assert expected == invariants(snapshot)


def test_escaped_exception_breaks_6() -> None:
    """Anything that escaped the host core or the engine: invariant 6."""
    snapshot = settled_day(failures=(("host", "KeyError('x')"),))
    expected = [6]
    assert expected == invariants(snapshot)


def test_violation_names_where_it_happened() -> None:
    """A violation renders its invariant, day, terminal, batch and STAN."""
    snapshot = settled_day(host_txns=())
    rendered = check(snapshot)[0].render()
    assert rendered.startswith("invariant 1 (every approved transaction is in exactly one")
    assert "day 0, terminal 10000001 batch 000001 stan 000001" in rendered
