"""Host logic on the in-memory session: every row of issue 7, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from host_helpers import (
    MERCHANT_ID,
    PAN,
    START,
    TERMINAL_ID,
    Terminal,
    frame_of,
    new_core,
    session_terminal,
)

from posbatch.batch.model import (
    BatchReason,
    BatchState,
    BatchStateDetail,
    CardType,
    Kind,
    Reconciliation,
    SettlementTotals,
)
from posbatch.batch.totals import compute_totals
from posbatch.host import ExceptionKind, FaultRule, FaultScript, HostCore, HostSession, HostStore
from posbatch.host._schema import metadata
from posbatch.host.faults import FaultAction
from posbatch.host.issuer import TEST_PAN_INSUFFICIENT_FUNDS, TEST_PAN_NOT_ISSUED
from posbatch.wire import (
    EchoRequest,
    OriginalTransaction,
    SaleRequest,
    SettlementResponse,
    SignOffRequest,
    SignOnRequest,
    SignOnResponse,
    TransactionResponse,
    UploadRecord,
    VoidRequest,
    decode_batch_detail,
    encode_message,
    unwrap_working_keys,
)
from testbed import StepClock, counting_bytes

D = CardType.DOMESTIC


def totals(*entries: tuple[Kind, int]) -> SettlementTotals:
    return compute_totals([(kind, amount, D) for kind, amount in entries])


def code(message: object) -> str:
    return str(message.response_code)  # type: ignore[attr-defined]


def detail_of(message: object) -> BatchStateDetail:
    detail = decode_batch_detail(message.detail)  # type: ignore[attr-defined]
    assert detail is not None
    return detail


# --- registry and sign-on ---


def test_unknown_terminal_gets_97(core: HostCore) -> None:
    """A terminal id the host never registered is answered 97."""
    stranger = session_terminal(core, terminal_id="99999999")
    assert code(stranger.sign_on()) == "97"


def test_suspended_terminal_gets_58(store: HostStore, core: HostCore) -> None:
    """A suspended terminal's sign-on is answered 58."""
    store.suspend(TERMINAL_ID)
    assert code(session_terminal(core).sign_on()) == "58"


def test_wrong_merchant_gets_03(core: HostCore) -> None:
    """A registered terminal id under another merchant id is answered 03."""
    terminal = session_terminal(core, merchant_id="898110054119999")
    assert code(terminal.sign_on()) == "03"


def test_first_sign_on_opens_batch_1_with_state_in_63(core: HostCore) -> None:
    """The first sign-on opens batch 000001 and says so in 60.2 and 63."""
    answer = session_terminal(core, batch_no=7).sign_on()
    assert (1, BatchStateDetail(None, 1, BatchState.OPEN)) == (answer.batch_no, detail_of(answer))


def test_sign_on_reports_last_closed_batch_and_result(term: Terminal) -> None:
    """After a balanced settlement, sign-on's 63 names the closed batch and how it closed."""
    term.sale(100)
    term.settle(totals((Kind.SALE, 100)))
    answer = term.sign_on()
    assert answer.detail == "B=000002;S=OPEN;L=000001;Q=BALANCED"


def test_each_sign_on_hands_out_new_keys(term: Terminal) -> None:
    """A sign-on after the last keys were used gives a different MAK; the old one works
    until a request under the new one arrives, and no longer verifies after it."""
    assert code(term.sale(100)) == "00"  # the sign-on's keys are used: in force
    old_mak = term.mak
    term.sign_on()
    new_mak = term.mak
    before = code(_sale_with_mak(term, old_mak))
    under_new = code(term.sale(100))
    assert (old_mak != new_mak, before, under_new) == (True, "00", "00")
    assert code(_sale_with_mak(term, old_mak)) == "A0"


def test_a_repeated_sign_on_gets_the_same_keys(term: Terminal) -> None:
    """The same 0800 twice (a duplicate on the line): the same keys, whichever answer the
    terminal reads; a new STAN gets new keys."""
    request = SignOnRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no)
    first, second = term.request(request), term.request(request)
    assert isinstance(first, SignOnResponse) and isinstance(second, SignOnResponse)
    assert first.working_keys is not None and first.working_keys == second.working_keys
    term.mak = unwrap_working_keys(term.master_key, first.working_keys).mak
    assert code(term.sale(100)) == "00"
    old_mak = term.mak
    term.sign_on()
    assert old_mak != term.mak


def test_a_sign_on_repeating_an_older_stan_gets_new_keys(term: Terminal) -> None:
    """Only a repeat of the LAST request is a duplicate: after a sale, the sign-on's STAN again
    is a new sign-on (new keys)."""
    stan = term.stan
    old_mak = term.mak
    assert code(term.sale(100)) == "00"
    answer = term.request(SignOnRequest(TERMINAL_ID, MERCHANT_ID, stan, term.batch_no))
    assert isinstance(answer, SignOnResponse) and answer.working_keys is not None
    assert old_mak != unwrap_working_keys(term.master_key, answer.working_keys).mak


def _sale_with_mak(term: Terminal, mak: bytes | None) -> object:
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 100, PAN)
    return term.request(request, mak=mak)


def test_not_signed_on_gets_77_with_reason(core: HostCore) -> None:
    """A sale from a terminal that never signed on is 77 with R=NOT_SIGNED_ON."""
    terminal = session_terminal(core)
    terminal.mak = b"\x01" * 8
    answer = terminal.sale(100)
    assert (code(answer), detail_of(answer).reason) == ("77", BatchReason.NOT_SIGNED_ON)


def test_signed_off_terminal_gets_77(core: HostCore, term: Terminal) -> None:
    """After sign-off a request whose MAC the host cannot verify is 77 NOT_SIGNED_ON."""
    term.request(SignOffRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no))
    answer = _sale_with_mak(term, b"\x02" * 8)
    assert (code(answer), detail_of(answer).reason) == ("77", BatchReason.NOT_SIGNED_ON)


def test_after_sign_off_a_request_under_the_kept_keys_goes_on(term: Terminal) -> None:
    """An 0820 carries no MAC: a request MACed under the keys in force proves the terminal
    still holds them, and is processed (docs/host.md, sign-on and sign-off from someone else)."""
    term.request(SignOffRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no))
    assert code(term.sale(100)) == "00"


def test_echo_is_answered_00(term: Terminal) -> None:
    """An echo test (0820/301) is answered 00."""
    answer = term.request(EchoRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no))
    assert code(answer) == "00"


def test_mac_failure_gets_a0_without_mac(core: HostCore, term: Terminal) -> None:
    """A request MACed with the wrong key is answered A0, and the answer carries no MAC."""
    session = HostSession(core)
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, 50, term.batch_no, 100, PAN)
    (reply,) = session.receive_data(frame_of(request, b"\x02" * 8))
    body = reply.frames[0][13:]
    assert (reply.log.response_code, bool(body[9] & 1)) == ("A0", False)


# --- sale, duplicates, issuer ---


def test_sale_is_approved_with_rrn_and_auth_code(term: Terminal) -> None:
    """A good sale is approved with a 12-digit RRN and a 6-digit auth code."""
    answer = term.sale(1250)
    assert isinstance(answer, TransactionResponse)
    assert (
        answer.response_code,
        len(answer.rrn or ""),
        len(answer.auth_code or ""),
    ) == ("00", 12, 6)


def test_fields_12_and_13_are_beijing_time_whatever_the_host_clock_zone(
    store: HostStore,
) -> None:
    """DESIGN.md's fields 12/13 are the local time, Beijing time: a host clock in UTC (as
    ``posbatch host serve`` runs) at 16:30:00 UTC on 25 Nov answers 00:30:01 on 26 Nov —
    the date and time on the cardholder's receipt. (The simulator's clock runs in Beijing
    time, so it never saw a host that answered UTC.)"""
    clock = StepClock(datetime(2026, 11, 25, 16, 30, tzinfo=UTC))
    core = HostCore(store, clock=clock, random_bytes=counting_bytes())
    term = session_terminal(core)
    assert term.sign_on().response_code == "00"
    clock.now = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)
    answer = term.sale(1250)
    assert isinstance(answer, TransactionResponse)
    assert (answer.local_date, answer.local_time) == ("1126", "003001")


def test_duplicate_sale_gets_the_original_answer_once(store: HostStore, term: Terminal) -> None:
    """The same sale sent twice gets the same answer and is stored once."""
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 700, PAN)
    first = term.request(request)
    second = term.request(request)
    assert (first, 1) == (second, len(store.transactions(TERMINAL_ID)))


def test_same_stan_other_content_gets_94(term: Terminal) -> None:
    """A second request with a used STAN but another amount is answered 94."""
    stan = term.next_stan()
    term.request(SaleRequest(TERMINAL_ID, MERCHANT_ID, stan, term.batch_no, 700, PAN))
    answer = term.request(SaleRequest(TERMINAL_ID, MERCHANT_ID, stan, term.batch_no, 701, PAN))
    assert code(answer) == "94"


@pytest.mark.parametrize(
    ("pan", "amount_fen", "expiry", "expected"),
    [
        (PAN, 5_000_001, None, "61"),
        (PAN, 100, "2510", "54"),
        (TEST_PAN_INSUFFICIENT_FUNDS, 100, None, "51"),
        (TEST_PAN_NOT_ISSUED, 100, None, "14"),
        ("6222021234567890123", 100, None, "14"),
        (PAN, 100, "3012", "00"),
    ],
)
def test_issuer_rules(
    term: Terminal, pan: str, amount_fen: int, expiry: str | None, expected: str
) -> None:
    """Amount limit 61, expired 54, test ranges 51/14, Luhn failure 14, else 00."""
    assert expected == code(term.sale(amount_fen, pan=pan, expiry=expiry))


# --- batch number control ---


def test_behind_batch_gets_77_behind(term: Terminal, store: HostStore) -> None:
    """A batch number lower than the host's, never a batch of this terminal, is 77 BEHIND."""
    with store.transaction() as tx:
        tx.set_batch(store.batches(TERMINAL_ID)[0].batch_id, batch_no=5)
    term.batch_no = 2
    answer = term.sale(100)
    assert (code(answer), detail_of(answer).reason, detail_of(answer).host_batch_no) == (
        "77",
        BatchReason.BEHIND,
        5,
    )


def test_sale_in_batch_closed_by_back_office_gets_77_closed(
    term: Terminal, store: HostStore
) -> None:
    """After two back-office advances, a sale in batch 1 is 77 R=CLOSED naming batch 3."""
    store.advance_batch(TERMINAL_ID, "test", now=START)
    store.advance_batch(TERMINAL_ID, "test", now=START)
    answer = term.sale(100)
    assert (code(answer), detail_of(answer).reason, detail_of(answer).host_batch_no) == (
        "77",
        BatchReason.CLOSED,
        3,
    )


def test_ahead_batch_gets_77_ahead(term: Terminal) -> None:
    """A batch number the host has not reached is 77 with R=AHEAD and the host's batch."""
    term.batch_no = 5
    answer = term.sale(100)
    assert (
        code(answer),
        detail_of(answer).reason,
        detail_of(answer).host_batch_no,
        detail_of(answer).host_batch_state,
    ) == ("77", BatchReason.AHEAD, 1, BatchState.OPEN)


def test_closed_batch_gets_77_closed(term: Terminal) -> None:
    """A sale in a batch the host has closed is 77 with R=CLOSED."""
    term.settle(totals())
    answer = term.sale(100)
    assert (
        code(answer),
        detail_of(answer).reason,
        detail_of(answer).host_batch_no,
    ) == ("77", BatchReason.CLOSED, 2)


# --- void, refund, reversal ---


def test_void_of_approved_sale_is_approved(store: HostStore, term: Terminal) -> None:
    """A full-amount void of an approved sale in the same batch is 00; the sale shows voided."""
    sale = term.sale(900)
    assert code(term.void(sale.stan, 900)) == "00"
    assert store.transactions(TERMINAL_ID)[0].status == "voided"


@pytest.mark.parametrize(
    ("amount_fen", "original_stan_offset", "expected"),
    [(800, 0, "64"), (900, 40, "25")],
)
def test_void_refusals(
    term: Terminal, amount_fen: int, original_stan_offset: int, expected: str
) -> None:
    """Void for a different amount → 64; of an unknown STAN → 25."""
    sale = term.sale(900)
    assert expected == code(term.void(sale.stan + original_stan_offset, amount_fen))


def test_second_void_of_the_same_sale_gets_12(term: Terminal) -> None:
    """A sale already voided cannot be voided again: 12."""
    sale = term.sale(900)
    term.void(sale.stan, 900)
    assert code(term.void(sale.stan, 900)) == "12"


def test_void_of_a_refund_gets_12(term: Terminal) -> None:
    """Only a sale can be voided: a void naming a refund is 12."""
    sale = term.sale(900)
    refund = term.refund(term.batch_no, sale.stan, 100)
    assert code(term.void(refund.stan, 100)) == "12"


def test_void_of_a_sale_in_an_earlier_batch_gets_12(term: Terminal) -> None:
    """A void must be in the sale's own batch: naming a previous batch's sale is 12."""
    sale = term.sale(900)
    term.settle(totals((Kind.SALE, 900)))
    term.batch_no = 2
    answer = term.request(VoidRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), 2, 900, PAN,
                                      OriginalTransaction(1, sale.stan)))  # fmt: skip
    assert code(answer) == "12"


def test_refund_partial_and_repeated_up_to_the_original(term: Terminal) -> None:
    """Refunds of 300 + 600 of a 900 sale pass; one more fen is 13."""
    sale = term.sale(900)
    results = [code(term.refund(1, sale.stan, amount)) for amount in (300, 600, 1)]
    assert results == ["00", "00", "13"]


def test_refund_of_an_earlier_batch_counts_in_its_own_batch(
    store: HostStore, term: Terminal
) -> None:
    """A refund naming batch 1's sale is made in batch 2 and counted there."""
    sale = term.sale(900)
    term.settle(totals((Kind.SALE, 900)))
    term.batch_no = 2
    assert code(term.refund(1, sale.stan, 400)) == "00"
    answer = term.settle(totals((Kind.REFUND, 400)))
    assert isinstance(answer, SettlementResponse) and answer.totals is not None
    assert answer.totals.domestic.reconciliation == Reconciliation.BALANCED


def test_refund_of_unknown_original_gets_25(term: Terminal) -> None:
    """A refund naming a sale the host never had is 25."""
    assert code(term.refund(1, 4242, 100)) == "25"


def test_reversal_of_a_sale_removes_it_and_repeats_harmlessly(
    store: HostStore, term: Terminal
) -> None:
    """A reversal marks the sale reversed; sent again it is still 00 and changes nothing."""
    sale = term.sale(900)
    first, second = term.reverse(sale.stan, 900), term.reverse(sale.stan, 900)
    assert (
        code(first),
        code(second),
        store.transactions(TERMINAL_ID)[0].status,
    ) == ("00", "00", "reversed")


def test_reversal_of_a_void_restores_the_sale(store: HostStore, term: Terminal) -> None:
    """Reversing a void makes its sale approved again (and voidable)."""
    sale = term.sale(900)
    void = term.void(sale.stan, 900)
    assert code(term.reverse(void.stan, 900, kind=Kind.VOID)) == "00"
    statuses = [row.status for row in store.transactions(TERMINAL_ID)]
    assert statuses == ["approved", "reversed"]


def test_reversal_of_unknown_original_is_00_and_recorded(term: Terminal, store: HostStore) -> None:
    """A reversal whose original never arrived is answered 00; a later arrival is not counted."""
    stan = term.next_stan()
    assert code(term.reverse(stan, 500)) == "00"
    term.request(SaleRequest(TERMINAL_ID, MERCHANT_ID, stan, term.batch_no, 500, PAN))
    assert store.transactions(TERMINAL_ID)[0].status == "reversed"


def test_late_reversal_is_answered_and_recorded(store: HostStore, term: Terminal) -> None:
    """A reversal of a sale in a closed batch is 00, an exception, and the batch is unchanged."""
    sale = term.sale(900)
    term.settle(totals((Kind.SALE, 900)))
    assert code(term.reverse(sale.stan, 900, batch_no=1)) == "00"
    kinds = [row.kind for row in store.exceptions(TERMINAL_ID)]
    assert (
        kinds,
        store.transactions(TERMINAL_ID)[0].status,
    ) == ([ExceptionKind.LATE_REVERSAL], "approved")


def test_late_void_is_77_and_recorded(store: HostStore, term: Terminal) -> None:
    """A void sent in a batch the host already closed is 77 R=CLOSED and an exception."""
    sale = term.sale(900)
    term.settle(totals((Kind.SALE, 900)))
    answer = term.void(sale.stan, 900, batch_no=1)
    kinds = [row.kind for row in store.exceptions(TERMINAL_ID)]
    assert (code(answer), kinds) == ("77", [ExceptionKind.LATE_VOID])


# --- settlement ---


def test_balanced_settlement_closes_and_advances(store: HostStore, term: Terminal) -> None:
    """Balanced totals: 00 with code 1, batch 1 closed, batch 2 open."""
    term.sale(100)
    answer = term.settle(totals((Kind.SALE, 100)))
    assert isinstance(answer, SettlementResponse) and answer.totals is not None
    states = [(b.batch_no, b.state) for b in store.batches(TERMINAL_ID)]
    assert (
        answer.totals.domestic.reconciliation,
        states,
    ) == (Reconciliation.BALANCED, [(1, BatchState.CLOSED), (2, BatchState.OPEN)])


def test_repeated_settlement_of_closed_batch_gets_same_answer(term: Terminal) -> None:
    """A 0500 repeated for a closed batch gets the same totals again, never 77."""
    term.sale(100)
    first = term.settle(totals((Kind.SALE, 100)))
    second = term.settle(totals((Kind.SALE, 100)), batch_no=1)
    assert isinstance(first, SettlementResponse) and isinstance(second, SettlementResponse)
    assert ("00", first.totals) == (second.response_code, second.totals)


def test_upload_end_after_balanced_changes_nothing(store: HostStore, term: Terminal) -> None:
    """A 0320/202 for a batch closed balanced is 00 and adds no exception."""
    term.sale(100)
    term.settle(totals((Kind.SALE, 100)))
    assert code(term.upload_end(1, after_balanced=True)) == "00"
    assert store.exceptions(TERMINAL_ID) == []


def test_unbalanced_settlement_answers_host_totals_code_2(store: HostStore, term: Terminal) -> None:
    """Totals that differ: host totals with code 2, batch UPLOADING, sales refused."""
    term.sale(100)
    answer = term.settle(totals((Kind.SALE, 100), (Kind.SALE, 5)))
    assert isinstance(answer, SettlementResponse)
    assert (
        totals((Kind.SALE, 100)).with_reconciliation(Reconciliation.NOT_BALANCED) == answer.totals
    )
    assert (
        store.terminal(TERMINAL_ID).batch_state,
        code(term.sale(1)),
    ) == (BatchState.UPLOADING, "77")  # type: ignore[union-attr]


def _record(stan: int, amount_fen: int, pan: str = PAN) -> UploadRecord:
    return UploadRecord(D, stan, pan, amount_fen)


def test_batch_upload_reconciles_every_difference(store: HostStore, term: Terminal) -> None:
    """Upload then 207: terminal-only, host-only and amount-differs each become an exception."""
    a = term.sale(100)
    b = term.sale(200)
    term.settle(totals((Kind.SALE, 100), (Kind.SALE, 250), (Kind.SALE, 7)))
    term.upload((_record(a.stan, 100), _record(b.stan, 250), _record(777, 7)))
    term.upload((_record(777, 7),))  # resent: idempotent per STAN
    assert code(term.upload_end(3)) == "00"
    found = sorted((row.kind, row.stan) for row in store.exceptions(TERMINAL_ID))
    assert [(ExceptionKind.AMOUNT_DIFFERS, b.stan), (ExceptionKind.TERMINAL_ONLY, 777)] == found
    states = [(x.batch_no, x.state, x.close_reason) for x in store.batches(TERMINAL_ID)]
    assert states == [(1, BatchState.CLOSED, "uploaded"), (2, BatchState.OPEN, None)]


def test_host_only_transaction_becomes_exception(store: HostStore, term: Terminal) -> None:
    """A sale the host approved that the terminal does not upload is host-only."""
    a = term.sale(100)
    b = term.sale(200)
    term.settle(totals((Kind.SALE, 100)))
    term.upload((_record(a.stan, 100),))
    term.upload_end(1)
    found = [(row.kind, row.stan, row.host_amount_fen) for row in store.exceptions(TERMINAL_ID)]
    assert [(ExceptionKind.HOST_ONLY, b.stan, 200)] == found


def test_settlement_during_upload_gets_the_same_code_2(term: Terminal) -> None:
    """A terminal that resumes by resending 0500 mid-upload gets the same answer."""
    term.sale(100)
    first = term.settle(totals())
    second = term.settle(totals())
    assert isinstance(first, SettlementResponse) and isinstance(second, SettlementResponse)
    assert first.totals == second.totals


def test_batch_no_wraps_from_999999_to_1(store: HostStore, core: HostCore) -> None:
    """Settling batch 999999 opens batch 000001."""
    terminal = session_terminal(core)
    terminal.sign_on()
    with store.transaction() as tx:
        tx.set_batch(store.batches(TERMINAL_ID)[0].batch_id, batch_no=999_999)
    terminal.batch_no = 999_999
    terminal.settle(totals())
    assert terminal.sign_on().batch_no == 1


# --- back office, faults, robustness ---


def test_advance_batch_keeps_approvals_and_records_exception(
    core: HostCore, store: HostStore, term: Terminal
) -> None:
    """advance_batch keeps the sales, records batch-advanced; the terminal gets 77."""
    term.sale(100)
    assert core.advance_batch(TERMINAL_ID, "back-office change") == 2
    answer = term.sale(100)
    kinds = [row.kind for row in store.exceptions(TERMINAL_ID)]
    assert (
        code(answer),
        detail_of(answer).reason,
        kinds,
    ) == ("77", BatchReason.CLOSED, [ExceptionKind.BATCH_ADVANCED])


@pytest.mark.parametrize("kind", [Kind.SALE, Kind.VOID, Kind.REFUND])
def test_a_repeat_after_its_batch_closed_gets_the_original_answer(
    kind: Kind, core: HostCore, store: HostStore, term: Terminal
) -> None:
    """A request the host answered, sent again after its batch closed under it (a refund
    resent after a lost answer, a late duplicate), gets its original answer, not 77 — a 77
    would tell the terminal it was not processed while the host counts it."""
    sale = term.sale(900)
    if kind is Kind.SALE:
        first = sale
    elif kind is Kind.VOID:
        first = term.void(sale.stan, 900)
    else:
        first = term.refund(1, sale.stan, 400)
    request = term.sent[-1]
    core.advance_batch(TERMINAL_ID, "back-office change")
    again = term.request(request)
    rows = [row for row in store.transactions(TERMINAL_ID, 1) if row.kind is kind]
    exceptions = [row.kind for row in store.exceptions(TERMINAL_ID)]
    assert (code(first), again, len(rows), exceptions) == (
        "00",
        first,
        1,
        [ExceptionKind.BATCH_ADVANCED],
    )


def test_a_new_request_in_a_closed_batch_still_gets_77(term: Terminal, core: HostCore) -> None:
    """Only a repeat (same STAN, same content) is answered again: a new refund naming the
    closed batch, or another request under a used STAN, is 77."""
    sale = term.sale(900)
    core.advance_batch(TERMINAL_ID, "back-office change")
    refund = term.refund(1, sale.stan, 400)
    other = term.request(SaleRequest(TERMINAL_ID, MERCHANT_ID, sale.stan, 1, 901, PAN))
    assert (code(refund), code(other)) == ("77", "77")


def test_settlement_of_advanced_batch_balanced(term: Terminal, core: HostCore) -> None:
    """After an advance, the terminal's 0500 with equal totals is answered balanced."""
    term.sale(100)
    core.advance_batch(TERMINAL_ID, "cut-over")
    answer = term.settle(totals((Kind.SALE, 100)))
    assert isinstance(answer, SettlementResponse) and answer.totals is not None
    assert answer.totals.domestic.reconciliation == Reconciliation.BALANCED


def test_new_core_over_same_store_carries_on(store: HostStore, term: Terminal) -> None:
    """After a 'crash' a new HostCore knows the keys, batch and duplicates."""
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 300, PAN)
    first = term.request(request)
    fresh = session_terminal(new_core(store))
    fresh.mak, fresh.stan = term.mak, term.stan
    assert first == fresh.request(request)


@pytest.mark.parametrize(
    ("action", "frames", "close"),
    [(FaultAction.DROP, 0, False), (FaultAction.DUPLICATE, 2, False), (FaultAction.CLOSE, 0, True)],
)
def test_fault_rules_act_after_commit(
    store: HostStore, core: HostCore, term: Terminal, action: FaultAction, frames: int, close: bool
) -> None:
    """drop/duplicate/close still commit the sale; only the answer is changed."""
    core.set_faults(FaultScript([FaultRule(action, kind=Kind.SALE, count=1)]))
    session = HostSession(core)
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 300, PAN)
    (reply,) = session.receive_data(frame_of(request, term.mak))
    assert (frames, close, 1) == (
        len(reply.frames),
        reply.close,
        len(store.transactions(TERMINAL_ID)),
    )


def test_forced_code_does_not_process(store: HostStore, core: HostCore, term: Terminal) -> None:
    """A force rule answers its code and stores nothing."""
    core.set_faults(FaultScript([FaultRule(FaultAction.FORCE, response_code="96")]))
    assert (code(term.sale(100)), store.transactions(TERMINAL_ID)) == ("96", [])


def test_delay_rule_sets_delay(core: HostCore, term: Terminal) -> None:
    """A delay rule returns the answer with its delay_ms."""
    core.set_faults(FaultScript([FaultRule(FaultAction.DELAY, delay_ms=5000)]))
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 300, PAN)
    (reply,) = HostSession(core).receive_data(frame_of(request, term.mak))
    assert reply.delay_ms == 5000


def test_bad_field_with_readable_ids_gets_30(core: HostCore, term: Terminal) -> None:
    """A body whose 60.3 is wrong but whose 41/42 read is answered 30."""
    body = bytearray(encode_message(SaleRequest(TERMINAL_ID, MERCHANT_ID, 9, 1, 100, PAN)))
    index = body.index(bytes.fromhex("0011220000010000"))
    body[index + 6] = 0x99  # 60.3 "000" → "990"
    frame = (len(body) + 11).to_bytes(2, "big") + bytes.fromhex("6000030000603100000000") + body
    (reply,) = HostSession(core).receive_data(bytes(frame))
    assert reply.log.response_code == "30"


def test_bad_length_closes_and_bad_tpdu_drops(core: HostCore) -> None:
    """Length 0 closes the connection; a bad TPDU drops only that frame."""
    bad_tpdu = (21).to_bytes(2, "big") + b"\x61" + bytes(20)
    (dropped,) = HostSession(core).receive_data(bad_tpdu)
    (closing,) = HostSession(core).receive_data(b"\x00\x00")
    assert (dropped.frames, dropped.close, closing.close) == ((), False, True)


def test_group_of_frames_answers_each(core: HostCore, term: Terminal) -> None:
    """handle_frames answers many requests of one group in order."""
    requests = [
        SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 100 + i, PAN)
        for i in range(5)
    ]
    replies = core.handle_frames([frame_of(r, term.mak) for r in requests])
    assert [reply.log.response_code for reply in replies] == ["00"] * 5


def test_sign_on_response_parses(term: Terminal) -> None:
    """The sign-on answer is a SignOnResponse whose keys unwrap under the TMK."""
    assert isinstance(term.sign_on(), SignOnResponse) and term.mak is not None


def _host_table(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or (
        name is not None and name.startswith("host_") and name != "host_alembic_version"
    )


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_migrations_match_the_schema(store: HostStore) -> None:
    """The migrated database has exactly the tables, columns and indexes of _schema."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": _host_table})
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_no_table_holds_a_full_pan(store: HostStore, term: Terminal) -> None:
    """After sales, a void, a refund and an upload, the PAN is nowhere in the database."""
    sale = term.sale(900)
    other = term.sale(100)
    term.void(other.stan, 100)
    term.refund(1, sale.stan, 50)
    term.settle(totals())
    term.upload((_record(sale.stan, 900),))
    found = []
    with store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(table.select()):
                found += [table.name for value in row if PAN in str(value)]
    masked = {row.pan_masked for row in store.transactions(TERMINAL_ID)}
    assert (found, masked) == ([], {"622202*********0128"})
