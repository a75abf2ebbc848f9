"""Each flow of the terminal engine against the real host core over the in-process link."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import PAN, TERMINAL_ID, World

from posbatch.batch.model import Kind
from posbatch.errors import ConfigError, TerminalError
from posbatch.host import FaultAction, FaultRule
from posbatch.host.issuer import TEST_PAN_INSUFFICIENT_FUNDS
from posbatch.terminal import TxnState


def test_sign_on_adopts_the_hosts_first_batch(world: World) -> None:
    """The first sign-on gets keys and batch 000001 from the host."""
    result = world.terminal.sign_on()
    assert (result.batch_no, result.host_batch_no, world.terminal.signed_on) == (1, 1, True)


def test_sale_is_approved_and_journaled(world: World) -> None:
    """A sale signs on by itself, is approved, and the journal row says so with RRN and auth."""
    result = world.terminal.sale(1250, PAN)
    row = world.terminal.journal.transaction(result.txn_id)
    assert (
        result.approved,
        result.response_code,
        row.state,
        row.amount_fen,
    ) == (True, "00", TxnState.APPROVED, 1250)
    assert row.rrn is not None and row.auth_code is not None


def test_journal_never_holds_the_clear_pan(world: World) -> None:
    """The PAN is sealed in the journal; only the masked form is readable."""
    world.terminal.sale(1250, PAN)
    path = Path(world.journal_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in path.parent.glob("journal.db*"))
    assert (len(stored) > 0, PAN.encode() in stored) == (True, False)
    assert world.terminal.journal.transactions()[0].pan_masked == "622202*********0128"


def test_declined_sale_is_not_counted(world: World) -> None:
    """A 51 from the issuer is a declined row that settlement ignores."""
    result = world.terminal.sale(1000, TEST_PAN_INSUFFICIENT_FUNDS)
    assert (
        result.approved,
        result.response_code,
        world.terminal.balance().approved_count,
    ) == (False, "51", 0)


def test_stan_increases_per_message(world: World) -> None:
    """Every message takes the next STAN: sign-on 1, sales 2 and 3."""
    first = world.terminal.sale(100, PAN)
    second = world.terminal.sale(200, PAN)
    assert (first.stan, second.stan) == (2, 3)


def test_void_marks_the_sale_voided(world: World) -> None:
    """An approved void turns its sale to voided on both sides."""
    sale = world.terminal.sale(1250, PAN)
    void = world.terminal.void(sale.stan)
    assert (
        void.approved,
        world.terminal.journal.transaction(sale.txn_id).state,
    ) == (True, TxnState.VOIDED)
    host = {row.stan: row.status for row in world.store.transactions(TERMINAL_ID)}
    assert host[sale.stan] == "voided"


def test_void_of_a_voided_sale_is_refused_locally(world: World) -> None:
    """A second void of the same sale never leaves the terminal."""
    sale = world.terminal.sale(1250, PAN)
    world.terminal.void(sale.stan)
    with pytest.raises(TerminalError, match="voided"):
        world.terminal.void(sale.stan)


def test_partial_refund_counts_as_credit(world: World) -> None:
    """A partial refund is approved and shows as a credit in the batch balance."""
    sale = world.terminal.sale(5000, PAN)
    refund = world.terminal.refund(sale.stan, 1200)
    totals = world.terminal.balance().totals.domestic
    assert (
        refund.approved,
        totals.debit_amount_fen,
        totals.debit_count,
        totals.credit_amount_fen,
        totals.credit_count,
    ) == (True, 5000, 1, 1200, 1)


def test_refund_above_what_is_left_is_refused_locally(world: World) -> None:
    """Refunds never exceed the sale: the second one asks for more than is left."""
    sale = world.terminal.sale(5000, PAN)
    world.terminal.refund(sale.stan, 4000)
    with pytest.raises(ConfigError) as too_much:
        world.terminal.refund(sale.stan, 1001)
    expected = f"refund 10.01: at most 10.00 of sale STAN {sale.stan:06d} (50.00) is left to refund"
    assert expected == str(too_much.value)


def test_a_sale_refunded_in_full_says_so_in_yuan(world: World) -> None:
    """The cashier typed yuan: the refusal speaks yuan too, not "1..0 fen of the sale is left"."""
    sale = world.terminal.sale(1250, PAN)
    world.terminal.refund(sale.stan, 1250)
    with pytest.raises(TerminalError) as nothing_left:
        world.terminal.refund(sale.stan, 1)
    expected = (
        f"sale STAN {sale.stan:06d} (12.50) was refunded in full already: nothing is left to refund"
    )
    assert expected == str(nothing_left.value)


def test_balanced_settlement_closes_and_advances(world: World) -> None:
    """Settling matching totals is balanced; the next batch is 000002 on both sides."""
    world.terminal.sale(1250, PAN)
    world.terminal.sale(800, PAN)
    result = world.terminal.settle()
    assert (result.balanced, result.close_reason, result.next_batch_no) == (True, "balanced", 2)
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_sale_timeout_becomes_a_reversal_that_is_sent_first(world: World) -> None:
    """No answer → pending reversal; the next sale sends the 0400 first and the host nets 0."""
    world.terminal.sign_on()
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.SALE, count=1))
    lost = world.terminal.sale(1250, PAN)
    assert world.terminal.journal.transaction(lost.txn_id).state == TxnState.REVERSED
    assert world.store.transactions(TERMINAL_ID)[0].status == "reversed"
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_reversal_waits_while_the_network_is_down(world: World) -> None:
    """With the link down the reversal stays pending and goes first once it is back."""
    world.terminal.sign_on()
    world.link.down = True
    lost = world.terminal.sale(1250, PAN)
    assert lost.state == TxnState.REVERSAL_PENDING
    world.link.down = False
    next_sale = world.terminal.sale(300, PAN)
    assert (
        world.terminal.journal.transaction(lost.txn_id).state,
        next_sale.approved,
    ) == (TxnState.REVERSED, True)


def test_a_reversal_not_yet_sent_is_not_told_as_done(world: World) -> None:
    """The host dies mid-sale and the reversal finds no host either: the cashier is told
    the reversal is still to go (by itself, before the next transaction), not that it
    happened — the host may hold the approval until then. Once sent, it is told done."""
    world.terminal.sign_on()
    world.link.down = True
    lost = world.terminal.sale(1250, PAN)
    world.link.down = False
    world.terminal.sale(300, PAN)
    done = world.terminal.journal.transaction(lost.txn_id)
    expected = (
        TxnState.REVERSAL_PENDING,
        "无应答，待冲正 / no valid answer: not done; the terminal reverses it by itself "
        "before the next transaction",
        TxnState.REVERSED,
        "无应答，已冲正 / no valid answer: the transaction is reversed",
    )
    assert expected == (
        lost.state,
        lost.message,
        done.state,
        replace(lost, state=done.state).message,
    )


def test_approval_with_a_bad_mac_is_reversed(world: World) -> None:
    """An approval whose MAC fails is reversed with reason 96, never shown approved."""
    world.terminal.sign_on()
    original = world.link.inner

    def corrupt(frame: bytes, timeout_ms: int) -> bytes | None:
        answer = original(frame, timeout_ms)
        if answer is not None and answer[13:15] == b"\x02\x10":
            return answer[:-1] + bytes([answer[-1] ^ 1])
        return answer

    world.link.inner = corrupt  # type: ignore[assignment]
    result = world.terminal.sale(1250, PAN)
    row = world.terminal.journal.transaction(result.txn_id)
    assert (result.approved, row.state, row.reversal_reason) == (False, TxnState.REVERSED, "96")
    assert problems(world.terminal, world.store, TERMINAL_ID) == []


def test_refund_without_answer_is_resent_not_doubled(world: World) -> None:
    """A refund whose answer is lost is resent as is (same STAN); the host counts it once."""
    sale = world.terminal.sale(5000, PAN)
    world.faults(FaultRule(FaultAction.DROP, kind=Kind.REFUND, count=1))
    refund = world.terminal.refund(sale.stan, 1000)
    refunds = [row for row in world.store.transactions(TERMINAL_ID) if row.kind == Kind.REFUND]
    sent_0220 = [frame for frame in world.link.sent if frame[13:15] == b"\x02\x20"]
    assert (refund.state, len(refunds), len(sent_0220)) == (TxnState.APPROVED, 1, 2)


def test_training_sale_never_reaches_the_host(world: World) -> None:
    """Training mode: the sale is journaled as training, nothing is sent, totals stay 0."""
    world.terminal.set_training(True)
    result = world.terminal.sale(1250, PAN)
    balance = world.terminal.balance()
    assert (
        result.approved,
        result.training,
        world.link.sent,
        balance.approved_count,
        balance.training_count,
    ) == (True, True, [], 0, 1)


def test_echo_and_sign_off(world: World) -> None:
    """Echo answers 00; sign-off answers 00 and drops the working keys."""
    assert world.terminal.echo() == "00"
    world.terminal.sign_on()
    assert (world.terminal.sign_off(), world.terminal.signed_on) == ("00", False)


def test_manual_batch_number_must_match_the_host(world: World) -> None:
    """A mistyped batch number is refused after asking the host; nothing changes."""
    world.terminal.sign_on()
    with pytest.raises(ConfigError, match="host's batch number is 000001"):
        world.terminal.set_batch_no("000010", "000010")
    assert world.terminal.current_batch().batch_no == 1


def test_manual_batch_number_needs_double_entry(world: World) -> None:
    """Two different entries are refused before anything is sent."""
    with pytest.raises(ConfigError, match="differ"):
        world.terminal.set_batch_no("000002", "000020")
    assert world.link.sent == []


def test_journal_survives_a_restart_with_its_counters(world: World) -> None:
    """After a restart the STAN and batch continue from the journal."""
    world.terminal.sale(100, PAN)
    world.terminal.settle()
    terminal = world.restart()
    result = terminal.sale(100, PAN)
    assert (result.batch_no, result.stan > 4) == (2, True)


def test_stan_wraps_from_999999_to_000001(world: World) -> None:
    """After STAN 999999 the next message uses 000001; the host accepts it."""
    journal = world.terminal.journal
    with journal.write(world.clock()) as writer:
        writer.state(replace(journal.state(), stan=999_998))
    result = world.terminal.sale(100, PAN)  # sign-on takes 999999, the sale wraps
    assert (result.stan, result.approved) == (1, True)


@pytest.mark.parametrize("expiry", ["2613", "2600", "9999"])
def test_a_keyed_expiry_that_is_not_a_month_is_refused_before_anything_is_sent(
    world: World, expiry: str
) -> None:
    """A keyed-in expiry with month 13 or 00 is a typing slip: refused on the terminal,
    one line, no STAN taken, nothing sent — the host answered 54 and the cashier told the
    customer the card was expired."""
    world.terminal.sign_on()
    stan_before = world.terminal.journal.state().stan
    with pytest.raises(ConfigError, match=f"expiry {expiry}: month {expiry[2:]} is not 01..12"):
        world.terminal.sale(1250, PAN, expiry=expiry)
    expected = (stan_before, [], [])
    assert expected == (
        world.terminal.journal.state().stan,
        world.terminal.journal.transactions(),
        world.store.transactions(TERMINAL_ID),
    )
