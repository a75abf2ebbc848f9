"""Answers are believed only when their MAC checks: a damaged or forged answer is no answer.

Each test damages answers on their way back through the in-process link (one
bit of field 64, or one byte of the body with field 64 kept), forges them (an
unMACed answer in place of the host's), or has the host's fault script answer
without processing (MACed like any answer when the host holds the MAK), then
checks what the terminal believes and that DESIGN.md's invariants hold once
the link is clean again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from terminal_invariants import problems
from terminal_world import PAN, TERMINAL_ID, World, flip_body, flip_mac, forged, mti_of

from posbatch.batch.model import Kind
from posbatch.errors import HostUnreachable
from posbatch.host import FaultAction, FaultRule
from posbatch.host.issuer import TEST_PAN_INSUFFICIENT_FUNDS
from posbatch.terminal import TxnState

SEND_ATTEMPTS = 3  # posbatch.terminal._outstanding.SEND_ATTEMPTS_MAX
SETTLE_SENDS = 2  # one send, then one more after a sign-on (SIGN_ON_RETRIES_MAX)

DAMAGE = pytest.mark.parametrize("damage", [flip_mac, flip_body], ids=["field64", "body"])
SIGN_ON_CODES = pytest.mark.parametrize("code", ["A0", "77"])


def _sent(world: World, mti: str) -> int:
    return sum(1 for frame in world.link.sent if mti_of(frame) == mti)


def _host_status(world: World, stan: int) -> str:
    (row,) = [row for row in world.store.transactions(TERMINAL_ID) if row.stan == stan]
    return str(row.status)


def _lost_sale(world: World) -> int:
    """A sale the host approves whose answer is lost: the terminal must reverse it."""
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    result = world.terminal.sale(1250, PAN)
    world.faults()
    return result.txn_id


@DAMAGE
def test_damaged_reversal_answer_leaves_the_reversal_pending(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """A 0410 whose MAC fails is no answer: the reversal stays pending, then goes through."""
    world.terminal.sign_on()
    world.link.tamper("0410", damage, times=SEND_ATTEMPTS)
    txn_id = _lost_sale(world)
    row = world.terminal.journal.transaction(txn_id)
    assert (row.state, row.send_attempts, world.link.tampered) == (
        TxnState.REVERSAL_PENDING,
        SEND_ATTEMPTS,
        SEND_ATTEMPTS,
    )
    world.terminal.flush()
    assert world.terminal.journal.transaction(txn_id).state == TxnState.REVERSED
    assert _host_status(world, row.stan) == "reversed"
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_forged_reversal_approval_is_not_believed(world: World) -> None:
    """A 0410 "00" the host never sent (no MAC) does not make the sale count as reversed."""
    world.terminal.sign_on()
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    world.link.forge_reversal_approval(times=SEND_ATTEMPTS)
    lost = world.terminal.sale(1250, PAN)
    assert world.terminal.journal.transaction(lost.txn_id).state == TxnState.REVERSAL_PENDING
    assert _host_status(world, lost.stan) == "approved"  # the forger reversed nothing
    world.faults()
    next_sale = world.terminal.sale(300, PAN)
    assert (world.terminal.journal.transaction(lost.txn_id).state, next_sale.approved) == (
        TxnState.REVERSED,
        True,
    )
    assert _host_status(world, lost.stan) == "reversed"
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_reversal_answered_a0_is_sent_again_after_a_sign_on(world: World) -> None:
    """An A0 (sent by the host without a MAC) is the host's MAC error: sign on, send again."""
    world.terminal.sign_on()
    world.faults(
        FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1),
        FaultRule(FaultAction.FORCE, kind=Kind.REVERSAL, response_code="A0", count=1),
    )
    lost = world.terminal.sale(1250, PAN)
    assert (world.terminal.journal.transaction(lost.txn_id).state, _sent(world, "0800")) == (
        TxnState.REVERSED,
        2,
    )
    assert _host_status(world, lost.stan) == "reversed"
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_reversal_answered_77_is_sent_again(world: World) -> None:
    """A 77 to a reversal (not signed on: the host reversed nothing) is not a reversal done."""
    world.terminal.sign_on()
    world.faults(
        FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1),
        FaultRule(FaultAction.FORCE, kind=Kind.REVERSAL, response_code="77", count=1),
    )
    lost = world.terminal.sale(1250, PAN)
    assert world.terminal.journal.transaction(lost.txn_id).state == TxnState.REVERSED
    assert (_host_status(world, lost.stan), _sent(world, "0400")) == ("reversed", 2)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_a_sale_answered_a0_is_reversed_then_retried(world: World) -> None:
    """An A0 (never MACed) to a sale: sign on, reverse the STAN (96), retry under a new one."""
    world.terminal.sign_on()
    world.faults(FaultRule(FaultAction.FORCE, kind=Kind.SALE, response_code="A0", count=1))
    result = world.terminal.sale(1250, PAN)
    first, second = world.terminal.journal.transactions()
    assert (first.state, first.response_code, first.reversal_reason) == (
        TxnState.REVERSED,
        "A0",
        "96",
    )
    assert (second.state, result.approved, _sent(world, "0400")) == (TxnState.APPROVED, True, 1)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def _host_sales(world: World) -> list[tuple[int, str]]:
    return [
        (row.stan, str(row.status))
        for row in world.store.transactions(TERMINAL_ID)
        if row.kind == Kind.SALE
    ]


@SIGN_ON_CODES
def test_forged_sign_on_answer_to_an_approved_sale_is_counted_once(world: World, code: str) -> None:
    """The host approves, a forger answers an unMACed A0/77: the STAN is reversed, then retried."""
    world.terminal.sign_on()
    world.link.tamper("0210", forged(code))
    result = world.terminal.sale(1250, PAN)
    first, second = world.terminal.journal.transactions()
    assert (first.state, first.reversal_reason, second.state, result.approved) == (
        TxnState.REVERSED,
        "96",
        TxnState.APPROVED,
        True,
    )
    assert _host_sales(world) == [(first.stan, "reversed"), (second.stan, "approved")]
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


@SIGN_ON_CODES
def test_forged_sign_on_answer_to_an_approved_void_is_counted_once(world: World, code: str) -> None:
    """A forged A0/77 to an approved void: the void is reversed, then voided again, once."""
    sale = world.terminal.sale(1250, PAN)
    world.link.tamper("0210", forged(code))
    void = world.terminal.void(sale.stan)
    voids = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.VOID]
    assert (void.approved, [str(row.status) for row in voids]) == (True, ["reversed", "approved"])
    assert _host_status(world, sale.stan) == "voided"
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_verified_77_to_a_sale_needs_no_reversal(world: World) -> None:
    """A 77 whose MAC checks (the back office advanced the batch) is believed: no reversal."""
    world.terminal.sign_on()
    world.core.advance_batch(TERMINAL_ID, "cut-over")
    result = world.terminal.sale(1250, PAN)
    first, second = world.terminal.journal.transactions()
    assert (first.state, first.response_code, second.state, result.approved) == (
        TxnState.DECLINED,
        "77",
        TxnState.APPROVED,
        True,
    )
    assert _sent(world, "0400") == 0
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


@SIGN_ON_CODES
def test_forged_sign_on_answer_to_an_approved_refund_is_resent_not_retried(
    world: World, code: str
) -> None:
    """A forged A0/77 to an approved refund: resent as is (never under a new STAN), counted once."""
    sale = world.terminal.sale(5000, PAN)
    world.link.tamper("0230", forged(code))
    refund = world.terminal.refund(sale.stan, 1000)
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    assert (refund.approved, len(refunds), _sent(world, "0220")) == (True, 1, 2)
    assert world.terminal.journal.transaction(refund.txn_id).state == TxnState.APPROVED
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


@DAMAGE
def test_damaged_decline_is_reversed_not_believed(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """A decline whose MAC fails may hide an approval: the sale is reversed (reason 96)."""
    world.terminal.sign_on()
    world.link.tamper("0210", damage)
    result = world.terminal.sale(1250, TEST_PAN_INSUFFICIENT_FUNDS)
    row = world.terminal.journal.transaction(result.txn_id)
    assert (result.approved, row.state, row.reversal_reason) == (False, TxnState.REVERSED, "96")
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


@DAMAGE
def test_damaged_refund_answer_is_resent_and_counted_once(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """A 0230 whose MAC fails is no answer: the refund is resent as is and counted once."""
    sale = world.terminal.sale(5000, PAN)
    world.link.tamper("0230", damage)
    refund = world.terminal.refund(sale.stan, 1000)
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    assert (refund.state, len(refunds), _sent(world, "0220")) == (TxnState.APPROVED, 1, 2)
    assert world.terminal.journal.transaction(refund.txn_id).state == TxnState.APPROVED
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


@DAMAGE
def test_damaged_settlement_answer_is_asked_again(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """One 0510 whose MAC fails: sign on, send the 0500 again, settle balanced once."""
    world.terminal.sale(1250, PAN)
    world.link.tamper("0510", damage)
    result = world.terminal.settle()
    assert (result.balanced, result.close_reason, result.next_batch_no) == (True, "balanced", 2)
    assert (_sent(world, "0800"), _sent(world, "0500")) == (2, 2)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


@DAMAGE
def test_settlement_never_answered_authentically_stays_settling(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """Every 0510 damaged: the batch stays settling; the next settle closes it, once."""
    world.terminal.sale(1250, PAN)
    world.link.tamper("0510", damage, times=SETTLE_SENDS)
    with pytest.raises(HostUnreachable, match="MAC"):
        world.terminal.settle()
    assert world.terminal.current_batch().step == "settling"
    result = world.terminal.settle()
    assert (result.batch_no, result.close_reason, world.terminal.current_batch().batch_no) == (
        1,
        "balanced",
        2,
    )
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def _unbalanced(world: World) -> None:
    """Batch 1 with a sale the host keeps and the terminal reversed (a reversal never applied)."""
    world.terminal.sale(300, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    world.link.acknowledge_reversal()
    world.terminal.sale(999, PAN)
    world.faults()


@DAMAGE
def test_damaged_upload_answer_keeps_the_upload_step(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """Every 0330 of the first upload damaged: nothing is flagged uploaded; settle resumes."""
    _unbalanced(world)
    world.link.tamper("0330", damage, times=SETTLE_SENDS)
    with pytest.raises(HostUnreachable, match="MAC"):
        world.terminal.settle()
    batch = world.terminal.current_batch()
    rows = world.terminal.journal.transactions(batch.batch_id)
    assert (batch.step, [row.uploaded for row in rows]) == ("uploading", [False, False])
    result = world.terminal.settle()
    assert (result.balanced, result.close_reason, result.uploaded_count) == (False, "uploaded", 1)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_one_damaged_upload_answer_is_sent_again(world: World) -> None:
    """One 0330 damaged: sign on, send that upload again; the batch closes uploaded."""
    _unbalanced(world)
    world.link.tamper("0330", flip_mac)
    result = world.terminal.settle()
    assert (result.close_reason, _sent(world, "0320")) == ("uploaded", 3)  # 1 + 1 again + end
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_forged_77_to_an_upload_does_not_close_the_batch(world: World) -> None:
    """An unMACed 77 to a 0320 is not "closed by the host": sign on, send it again, uploaded."""
    _unbalanced(world)
    world.link.tamper("0330", forged("77"))
    result = world.terminal.settle()
    assert (result.close_reason, _sent(world, "0320")) == ("uploaded", 3)  # 1 + 1 again + end
    assert problems(world.terminal, world.store, TERMINAL_ID) == []
