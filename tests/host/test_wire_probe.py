"""Defects found by probing the host from outside with a client written from DESIGN.md only.

Each test is the smallest reproduction of one finding; the probe's hex transcripts are in
its report.
"""

from __future__ import annotations

from datetime import UTC, datetime

from host_helpers import (
    MERCHANT_ID,
    PAN,
    TERMINAL_ID,
    Terminal,
    frame_of,
    session_terminal,
)

from posbatch.batch.model import BatchState, Kind
from posbatch.host import (
    ExceptionKind,
    FaultRule,
    FaultScript,
    HostCore,
    HostSession,
    HostStore,
)
from posbatch.host.faults import FaultAction
from posbatch.wire import (
    Frame,
    FrameReader,
    ProcessingRequirement,
    SaleRequest,
    TransactionResponse,
    decode_batch_detail,
    decode_message,
)
from testbed import StepClock, counting_bytes


def code(message: object) -> str:
    return str(message.response_code)  # type: ignore[attr-defined]


# --- a reversal is a duplicate only when its amount is the same too ---------------------------


def test_a_correct_reversal_after_a_mismatched_one_is_applied(
    store: HostStore, term: Terminal
) -> None:
    """DESIGN.md: duplicates are "same terminal, batch, STAN, amount". A reversal whose amount
    does not fit the sale is answered 00, not applied and recorded; the terminal's corrected
    reversal of the same STAN (the right amount) is not a duplicate of it and must reverse the
    sale. It used to be answered 00 as a repeat: not applied, not recorded, the sale stood."""
    sale = term.sale(2000)
    assert code(term.reverse(sale.stan, 1999)) == "00"  # mismatch: recorded, not applied
    assert code(term.reverse(sale.stan, 2000)) == "00"
    assert store.transactions(TERMINAL_ID)[0].status == "reversed"
    kinds = [row.kind for row in store.exceptions(TERMINAL_ID)]
    assert kinds == [ExceptionKind.REVERSAL_MISMATCH]


def test_the_same_reversal_twice_is_still_one_reversal(store: HostStore, term: Terminal) -> None:
    """The fix keeps the repeat harmless: the same reversal (same amount) again changes nothing
    and is answered the same."""
    sale = term.sale(2000)
    first = term.reverse(sale.stan, 2000)
    second = term.reverse(sale.stan, 2000)
    third = term.reverse(sale.stan, 1999)  # a stray different amount after it: recorded only
    assert (code(first), code(second), code(third)) == ("00", "00", "00")
    assert store.transactions(TERMINAL_ID)[0].status == "reversed"


def test_a_mismatched_reversal_repeated_is_recorded_once(store: HostStore, term: Terminal) -> None:
    sale = term.sale(2000)
    assert code(term.reverse(sale.stan, 1999)) == "00"
    assert code(term.reverse(sale.stan, 1999)) == "00"
    assert [row.kind for row in store.exceptions(TERMINAL_ID)] == [ExceptionKind.REVERSAL_MISMATCH]
    assert store.transactions(TERMINAL_ID)[0].status == "approved"


def test_a_void_reversal_with_the_right_amount_after_a_wrong_one_restores_the_sale(
    store: HostStore, term: Terminal
) -> None:
    sale = term.sale(900)
    void = term.void(sale.stan, 900)
    assert code(term.reverse(void.stan, 901, kind=Kind.VOID)) == "00"
    assert code(term.reverse(void.stan, 900, kind=Kind.VOID)) == "00"
    assert [row.status for row in store.transactions(TERMINAL_ID)] == ["approved", "reversed"]


# --- a swiped card's expiry is on track 2 -------------------------------------------------------


def test_a_swiped_expired_card_is_54(term: Terminal) -> None:
    """DESIGN.md lists 54 expired card. A swiped sale carries the expiry in track 2 (the
    YYMM after '='), often without field 14; the host used to read field 14 only and approved
    an expired card swiped."""
    answer = term.sale(100, track2=f"{PAN}=0001101")
    assert code(answer) == "54"


def test_a_swiped_card_in_date_is_approved(term: Terminal) -> None:
    assert code(term.sale(100, track2=f"{PAN}=9912101")) == "00"


def test_a_track_2_month_that_is_not_a_month_is_54_like_field_14s(term: Terminal) -> None:
    assert code(term.sale(100, track2=f"{PAN}=9913101")) == "54"
    assert code(term.sale(100, expiry="9913")) == "54"


def test_field_14_still_decides_when_sent(term: Terminal) -> None:
    """Field 14 sent (a key-entered card, or a terminal that copies it) keeps its meaning."""
    assert code(term.sale(100, expiry="0001")) == "54"
    assert code(term.sale(100, expiry="9912")) == "00"


def test_an_expired_track_is_54_even_when_field_14_says_otherwise(term: Terminal) -> None:
    """The card's own data wins over a field the terminal filled in: both are checked."""
    assert code(term.sale(100, expiry="9912", track2=f"{PAN}=0001101")) == "54"


# --- a forced 77 or A0 reads like the host's own ----------------------------------------------


def _forced_answer(core: HostCore, term: Terminal, response_code: str) -> Frame:
    core.set_faults(FaultScript([FaultRule(FaultAction.FORCE, response_code=response_code)]))
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, 300, PAN)
    (reply,) = HostSession(core).receive_data(frame_of(request, term.mak))
    (frame,) = FrameReader().feed(reply.frames[0])
    return frame


def test_a_forced_77_asks_for_a_sign_on_and_says_the_hosts_batch(
    core: HostCore, term: Terminal
) -> None:
    """DESIGN.md: "Field 63 of a 77 says why ... and the host's batch state"; the host's own
    77 sets the header's processing requirement to 3 (sign on). A scripted 77 — the fault a
    terminal developer forces to test that path — had neither: no 63, requirement 0."""
    frame = _forced_answer(core, term, "77")
    response = decode_message(frame.body)
    assert code(response) == "77"
    assert frame.header.processing_requirement == ProcessingRequirement.SIGN_ON
    assert isinstance(response, TransactionResponse) and response.detail is not None
    detail = decode_batch_detail(response.detail)
    assert (detail.host_batch_no, detail.host_batch_state) == (term.batch_no, BatchState.OPEN)


def test_a_forced_a0_asks_for_a_sign_on(core: HostCore, term: Terminal) -> None:
    """DESIGN.md: "A0 MAC error — sign on again"; the host's own A0 sets requirement 3."""
    frame = _forced_answer(core, term, "A0")
    assert code(decode_message(frame.body)) == "A0"
    assert frame.header.processing_requirement == ProcessingRequirement.SIGN_ON


def test_other_forced_codes_ask_nothing(core: HostCore, term: Terminal) -> None:
    frame = _forced_answer(core, term, "96")
    assert frame.header.processing_requirement == ProcessingRequirement.NONE


# --- the expiry month is Beijing's -------------------------------------------------------------

# 2026-11-30 17:00 UTC is 2026-12-01 01:00 in Beijing: the card's month there is December.
_NIGHT = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)


def _night_terminal(store: HostStore) -> Terminal:
    core = HostCore(store, clock=StepClock(_NIGHT), random_bytes=counting_bytes())
    terminal = session_terminal(core)
    assert terminal.sign_on().response_code == "00"
    return terminal


def test_a_card_that_expired_last_month_is_54_after_beijing_midnight(store: HostStore) -> None:
    """A card is good through its expiry month in the issuer's time, China's; the host compared
    it with the month of its UTC clock, so a card of 2611 stayed good until 08:00 on
    1 December in Beijing."""
    assert code(_night_terminal(store).sale(100, expiry="2611")) == "54"
