"""Issue 11 on the terminal: card rules before a STAN is spent, a batch that settles by itself
before it is full (and on the host's 95), crash-safe, and a batch over capacity from before
the rules that still settles by batch upload."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import MERCHANT_ID, PAN, START, TERMINAL_ID, World, mti_of

from posbatch.batch.model import BatchState, CardType, Kind
from posbatch.batch.totals import TOTAL_AMOUNT_FEN_MAX
from posbatch.errors import ConfigError, Declined, TerminalError
from posbatch.host import ExceptionKind, FaultAction, FaultRule, IssuerRules
from posbatch.terminal import Journal, StateRow, Terminal, TxnRow, TxnState, render_receipt
from posbatch.terminal._journal import Writer
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    SaleRequest,
    Tpdu,
    decode_message,
    encode_frame,
    encode_message,
    mask_pan,
)

FOREIGN_PAN = "4111111111111111"


@pytest.fixture
def signed_on(world: World) -> World:
    world.terminal.sign_on()
    return world


def _sent_sales(world: World) -> list[SaleRequest]:
    found = []
    for frame in world.link.sent:
        if frame and mti_of(frame) == "0200":
            message = decode_message(FrameReader().feed(frame)[0].body)
            if isinstance(message, SaleRequest):
                found.append(message)
    return found


# --- card numbers, refused before a STAN is spent -----------------------------------------


@pytest.mark.parametrize(
    ("pan", "track2", "why"),
    [
        ("62220212345", None, "11 digits"),
        ("62220212345678901283", None, "20 digits"),
        ("0000000000000000", None, "starts with 0 (Luhn-valid)"),
        ("6222021234567890123", None, "check digit"),
        ("6222 021234567890128", None, "a space"),
        ("６２２２０２１２３４５６７８９０１２８", None, "full-width digits"),
        (PAN, "6222020000000000018=3012", "track 2 names another card"),
        (PAN, PAN, "track 2 without a separator"),
        (PAN, "0000000000000000=3012", "track 2's card starts with 0"),
    ],
)
def test_a_card_the_host_would_refuse_is_refused_before_a_stan(
    signed_on: World, pan: str, track2: str | None, why: str
) -> None:
    """14 on the terminal itself: no STAN taken, nothing journaled, nothing sent."""
    terminal = signed_on.terminal
    stan_before, sent_before = terminal.state().stan, len(signed_on.link.sent)
    with pytest.raises(Declined) as refused:
        terminal.sale(100, pan, track2=track2)
    assert (
        "14", stan_before, [], sent_before
    ) == (
        refused.value.response_code, terminal.state().stan, terminal.journal.transactions(),
        len(signed_on.link.sent),
    ), why  # fmt: skip
    assert pan[6:-4] not in str(refused.value) or len(pan) < 12


@pytest.mark.parametrize("expiry", ["9913", "3000", "301", "30120", "３０１２", "30-1", ""])
def test_an_expiry_that_is_not_a_month_is_refused_before_a_stan(
    signed_on: World, expiry: str
) -> None:
    """A typed expiry the issuer would refuse (54: month 13, month 00), or that is not four
    digits 0-9, is one line on the terminal: no STAN taken, nothing journaled or sent."""
    terminal = signed_on.terminal
    stan_before, sent_before = terminal.state().stan, len(signed_on.link.sent)
    with pytest.raises(ConfigError, match="YYMM"):
        terminal.sale(100, PAN, expiry=expiry)
    assert (stan_before, [], sent_before) == (
        terminal.state().stan, terminal.journal.transactions(), len(signed_on.link.sent)
    )  # fmt: skip
    assert terminal.sale(100, PAN, expiry="3012").approved


@pytest.mark.parametrize("pan", ["622202123452", "6222021234566", PAN])
def test_card_numbers_of_12_13_and_19_digits_are_sold(signed_on: World, pan: str) -> None:
    """The shortest and longest card numbers the upload record carries are approved."""
    assert signed_on.terminal.sale(100, pan).approved


def test_a_swiped_card_sends_track_2_and_keeps_it_out_of_the_journal(
    signed_on: World, tmp_path: Path
) -> None:
    """Track 2 goes in field 35 with entry mode 021 (expiry read from it); a key-entered
    card goes with 012 and no track 2; the journal never holds track 2."""
    terminal = signed_on.terminal
    swiped = terminal.sale(100, PAN, track2=f"{PAN}=3012101987654")
    keyed = terminal.sale(200, PAN)
    first, second = _sent_sales(signed_on)[-2:]
    journal_bytes = (tmp_path / "journal.db").read_bytes()
    assert (True, True) == (swiped.approved, keyed.approved)
    assert ("021", f"{PAN}=3012101987654", "3012") == (
        first.entry_mode, first.track2, first.expiry
    )  # fmt: skip
    assert ("012", None) == (second.entry_mode, second.track2)
    assert b"101987654" not in journal_bytes


# --- the batch limit: settle by itself before the batch is full ------------------------------


def test_the_batch_limit_is_a_stored_setting(world: World) -> None:
    """Default 500; 1..999 accepted and kept across a restart; 0 and 1000 refused."""
    default = world.terminal.balance().batch_limit
    world.terminal.set_batch_limit(3)
    kept = world.restart().balance().batch_limit
    for wrong in (0, 1000, -1):
        with pytest.raises(ConfigError):
            world.terminal.set_batch_limit(wrong)
    assert (500, 3) == (default, kept)


def test_a_sale_past_the_limit_settles_first_then_goes_in_the_next_batch(
    signed_on: World,
) -> None:
    """Limit 3: the 4th sale settles batch 1 (balanced) and is approved in batch 2 — one
    action for the cashier, and the receipt says a settlement happened."""
    terminal = signed_on.terminal
    terminal.set_batch_limit(3)
    for amount in (100, 200, 300):
        assert terminal.sale(amount, PAN).batch_no == 1
    fourth = terminal.sale(400, PAN)
    row = terminal.journal.transaction(fourth.txn_id)
    receipt = render_receipt(row, terminal.state(), notes=terminal.receipt_notes(row))
    host = {batch.batch_no: batch for batch in signed_on.store.batches(TERMINAL_ID)}
    assert (True, 2, (1,)) == (fourth.approved, fourth.batch_no, fourth.settled_batch_nos)
    assert ("balanced", BatchState.CLOSED) == (host[1].close_reason, host[1].state)
    assert "batch 000001 was full: settled automatically" in receipt
    assert [] == problems(terminal, signed_on.store, TERMINAL_ID)


def test_counters_are_per_card_class_and_per_side(signed_on: World) -> None:
    """Limit 2: two domestic sales leave room for a foreign sale and for credits."""
    terminal = signed_on.terminal
    terminal.set_batch_limit(2)
    first = terminal.sale(1_000, PAN)
    terminal.sale(1_000, PAN)
    foreign = terminal.sale(500, FOREIGN_PAN)
    refund = terminal.refund(first.stan, 100)
    assert [1, 1, 1] == [foreign.batch_no, refund.batch_no, terminal.current_batch().batch_no]
    third = terminal.refund(first.stan, 100)
    fourth = terminal.refund(first.stan, 100)  # the 3rd credit: settles first
    assert ((), 1, (1,), 2) == (
        third.settled_batch_nos, third.batch_no, fourth.settled_batch_nos, fourth.batch_no
    )  # fmt: skip


def test_a_void_never_leaves_its_sales_batch(signed_on: World) -> None:
    """Limit 1, the credit counter full (a refund): a void still goes in — field 48 takes
    999 — and no settlement takes its sale away."""
    terminal = signed_on.terminal
    earlier = terminal.sale(900, PAN)
    terminal.settle()
    terminal.set_batch_limit(1)
    sale = terminal.sale(700, PAN)
    refund = terminal.refund(earlier.stan, 100, original_batch_no=1)
    void = terminal.void(sale.stan)
    assert (2, 2, True, 2, ()) == (
        sale.batch_no, refund.batch_no, void.approved, void.batch_no, void.settled_batch_nos
    )  # fmt: skip


def test_an_amount_that_would_overflow_n12_settles_first(tmp_path: Path) -> None:
    """The amount counter counts too: after a sale of 999,999,999,999 fen the next one
    settles the batch first."""
    world = World(f"sqlite:///{tmp_path / 'journal.db'}")
    world.core._issuer = IssuerRules(amount_limit_fen=TOTAL_AMOUNT_FEN_MAX)
    terminal = world.terminal
    terminal.sign_on()
    big = terminal.sale(TOTAL_AMOUNT_FEN_MAX, PAN)
    small = terminal.sale(1, PAN)
    assert (1, True, 2, (1,)) == (
        big.batch_no,
        small.approved,
        small.batch_no,
        small.settled_batch_nos,
    )
    world.terminal.journal.engine.dispose()
    world.store.close()


# --- the host's 95 ----------------------------------------------------------------------


def test_a_95_from_the_host_settles_and_retries_in_the_next_batch(signed_on: World) -> None:
    """The host answers 95 (here by its fault script): the engine settles the batch and the
    sale is approved in the next one, under a new STAN; the declined STAN is not counted."""
    terminal = signed_on.terminal
    terminal.sale(100, PAN)
    signed_on.faults(FaultRule(action=FaultAction.FORCE, kind="sale", response_code="95", count=1))
    result = terminal.sale(250, PAN)
    declined = [row for row in terminal.journal.transactions() if row.response_code == "95"]
    assert (True, 2, (1,)) == (result.approved, result.batch_no, result.settled_batch_nos)
    assert [TxnState.DECLINED] == [row.state for row in declined]
    assert [] == problems(terminal, signed_on.store, TERMINAL_ID)


def test_a_real_95_when_the_host_holds_more_than_the_journal(signed_on: World) -> None:
    """The host's batch holds 999 sales this journal never saw (STANs of another life):
    the next sale meets a real 95 with 63 F=DOMESTIC_DEBIT_COUNT, the engine settles (not
    balanced: batch upload, the host's extra approvals become exceptions) and sells in
    the next batch."""
    terminal = signed_on.terminal
    terminal.set_batch_limit(999)
    frames = []
    for index in range(999):
        sale = SaleRequest(TERMINAL_ID, MERCHANT_ID, 500_000 + index, 1, 100, PAN)
        frames.append(
            encode_frame(Frame(Tpdu(), Header(), encode_message(sale, mak=signed_on.link.mak)))
        )
    for start in range(0, 999, 500):
        signed_on.core.handle_frames(frames[start : start + 500])
    result = terminal.sale(250, PAN)
    events = terminal.journal.events("batch_full")
    kinds = {exc.kind for exc in signed_on.store.exceptions(TERMINAL_ID)}
    assert (True, 2, (1,)) == (result.approved, result.batch_no, result.settled_batch_nos)
    assert ("host", "DOMESTIC_DEBIT_COUNT") == (
        events[-1].details["source"], events[-1].details["counter"]
    )  # fmt: skip
    assert {ExceptionKind.HOST_ONLY} == kinds


def test_a_void_answered_95_stays_declined(signed_on: World) -> None:
    """A void cannot move to the next batch: a 95 leaves it declined (the cashier refunds)."""
    terminal = signed_on.terminal
    sale = terminal.sale(700, PAN)
    signed_on.faults(FaultRule(action=FaultAction.FORCE, kind="void", response_code="95", count=1))
    void = terminal.void(sale.stan)
    assert ("95", 1, ()) == (
        void.response_code,
        terminal.current_batch().batch_no,
        void.settled_batch_nos,
    )


# --- crash-safe at every step ---------------------------------------------------------------


class SimulatedCrashError(Exception):
    """The terminal process dies here."""


def _crash_after_commits(terminal: Terminal, commits: int) -> Callable[[], int]:
    journal = terminal.journal
    original = journal.write
    count = {"n": 0}

    @contextmanager
    def write(moment: datetime) -> Iterator[Writer]:
        with original(moment) as writer:
            yield writer
        count["n"] += 1
        if count["n"] == commits:
            raise SimulatedCrashError

    journal.write = write  # type: ignore[method-assign]
    return lambda: count["n"]


def _full_world(tmp_path: Path, name: str) -> World:
    world = World(f"sqlite:///{tmp_path / name}")
    world.terminal.sign_on()
    world.terminal.set_batch_limit(2)
    world.terminal.sale(500, PAN)
    world.terminal.sale(600, PAN)
    return world


def test_the_automatic_settlement_survives_a_crash_at_every_commit(tmp_path: Path) -> None:
    """Die after each journal commit of "settle the full batch, then sell": after a restart
    the cashier sells again; nothing is lost or counted twice, every batch settles."""
    counting = _full_world(tmp_path, "count.db")
    commits = _crash_after_commits(counting.terminal, 10_000)
    counting.terminal.sale(1_250, PAN)
    total = commits()
    assert total >= 6
    for point in range(1, total + 1):
        world = _full_world(tmp_path, f"crash{point}.db")
        _crash_after_commits(world.terminal, point)
        with pytest.raises(SimulatedCrashError):
            world.terminal.sale(1_250, PAN)
        terminal = world.restart()
        terminal.flush()
        if not any(
            row.amount_fen == 1_250 and row.counted for row in terminal.journal.transactions()
        ):
            terminal.sale(1_250, PAN)  # the cashier saw no approval: sells again
        terminal.settle()
        counted = [
            row
            for row in terminal.journal.transactions()
            if row.amount_fen == 1_250 and row.counted
        ]
        host_batches = [b for b in world.store.batches(TERMINAL_ID) if b.state == BatchState.CLOSED]
        assert (1, [], 2) == (
            len(counted),
            problems(terminal, world.store, TERMINAL_ID),
            len(host_batches),
        ), f"crash after commit {point}"
        terminal.journal.engine.dispose()
        world.store.close()


# --- a batch over capacity, from before the rules ---------------------------------------------

OLD_SALES = 1_001


def _over_capacity_world(tmp_path: Path) -> World:
    """Journal and host both hold batch 000001 with 1,001 approved domestic sales (as an
    old version let happen), written behind the rules' back."""
    world = World(f"sqlite:///{tmp_path / 'journal.db'}")
    terminal = world.terminal
    terminal.sign_on()
    journal = terminal.journal
    batch = journal.current_batch()
    at = START.isoformat()
    host_batch_id = world.store.batches(TERMINAL_ID)[0].batch_id
    with journal.write(START) as writer:
        for index in range(OLD_SALES):
            stan = 10 + index
            writer.insert_txn(
                TxnRow(
                    txn_id=journal.next_txn_id() + index,
                    batch_id=batch.batch_id,
                    batch_no=batch.batch_no,
                    kind=Kind.SALE.value,
                    stan=stan,
                    amount_fen=100 + index,
                    pan_sealed=world.secrets.seal_pan(PAN, TERMINAL_ID),
                    pan_masked=mask_pan(PAN),
                    expiry=None,
                    card_type=CardType.DOMESTIC.value,
                    state=TxnState.APPROVED,
                    created_at=at,
                    updated_at=at,
                    response_code="00",
                )
            )
        writer.state(_with_stan(journal, 10 + OLD_SALES))
    with world.store.transaction() as tx:
        for index in range(OLD_SALES):
            tx.insert_transaction(
                batch_id=host_batch_id, terminal_id=TERMINAL_ID, stan=10 + index, kind="sale",
                amount_fen=100 + index, card_type="00", pan_hmac=world.store.pan_hmac(PAN),
                pan_masked=mask_pan(PAN), status="approved", response_code="00", rrn=None,
                auth_code=None, local_time=None, local_date=None, original_transaction_id=None,
                request_digest="old", created_at=START,
            )  # fmt: skip
            tx.note_approval(host_batch_id, 100 + index)
    return world


def _with_stan(journal: Journal, stan: int) -> StateRow:
    return replace(journal.state(), stan=stan)


def test_an_old_batch_over_capacity_shows_and_settles_by_upload(tmp_path: Path) -> None:
    """`status` reads it (capped, not an error); settle sends the 0500 marked code 3, the
    host answers not balanced, every record is uploaded, the 207 closes it on both sides
    with a batch-over-capacity exception; trading goes on in batch 000002."""
    world = _over_capacity_world(tmp_path)
    terminal = world.terminal
    balance = terminal.balance()
    result = terminal.settle()
    after = terminal.sale(300, PAN)
    kinds = [exc.kind for exc in world.store.exceptions(TERMINAL_ID)]
    host = {batch.batch_no: batch for batch in world.store.batches(TERMINAL_ID)}
    assert (1001, 999, 3) == (
        balance.tally.domestic.debit_count,
        balance.totals.domestic.debit_count,
        int(balance.totals.domestic.reconciliation),
    )
    assert ("uploaded", OLD_SALES, True, 2) == (
        result.close_reason, result.uploaded_count, after.approved, after.batch_no
    )  # fmt: skip
    assert ([ExceptionKind.BATCH_OVER_CAPACITY], BatchState.CLOSED) == (kinds, host[1].state)
    world.terminal.journal.engine.dispose()
    world.store.close()


def test_a_sale_on_an_old_full_batch_settles_it_first(tmp_path: Path) -> None:
    """A sale meets the over-full batch: the terminal settles it (by upload) by itself."""
    world = _over_capacity_world(tmp_path)
    result = world.terminal.sale(300, PAN)
    assert (True, 2, (1,)) == (result.approved, result.batch_no, result.settled_batch_nos)
    world.terminal.journal.engine.dispose()
    world.store.close()


def test_auto_settlements_are_bounded(signed_on: World) -> None:
    """A host that answers 95 to everything does not make the terminal settle forever."""
    terminal = signed_on.terminal
    signed_on.faults(FaultRule(action=FaultAction.FORCE, kind="sale", response_code="95"))
    result = terminal.sale(100, PAN)
    assert ("95", (1,)) == (result.response_code, result.settled_batch_nos)


def test_refusals_leave_the_terminal_trading(signed_on: World) -> None:
    """After a refused card the next good sale goes through with the next STAN."""
    terminal = signed_on.terminal
    with pytest.raises(Declined):
        terminal.sale(100, "0000000000000000")
    stan = terminal.state().stan
    assert terminal.sale(100, PAN).stan == stan + 1


def test_a_void_that_cannot_fit_field_48_is_refused_by_the_terminal(signed_on: World) -> None:
    """A void that would be the 1,000th credit: TerminalError (settle, then refund)."""
    terminal = signed_on.terminal
    sale = terminal.sale(700, PAN)
    journal = terminal.journal
    batch = journal.current_batch()
    at = START.isoformat()
    with journal.write(START) as writer:
        for index in range(999):
            writer.insert_txn(
                TxnRow(
                    txn_id=journal.next_txn_id() + index, batch_id=batch.batch_id,
                    batch_no=batch.batch_no, kind=Kind.REFUND.value, stan=100 + index,
                    amount_fen=1, pan_sealed=signed_on.secrets.seal_pan(PAN, TERMINAL_ID),
                    pan_masked=mask_pan(PAN), expiry=None, card_type=CardType.DOMESTIC.value,
                    state=TxnState.APPROVED, created_at=at, updated_at=at, response_code="00",
                )
            )  # fmt: skip
    with pytest.raises(TerminalError, match="refund instead"):
        terminal.void(sale.stan)
