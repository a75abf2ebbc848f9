"""Sign-on and sign-off from someone else cannot make the real terminal's next request fail.

0800 and 0820 carry no MAC (the wire profile), and a terminal's ids are on every
receipt. Before this defence a forged 0820 signed the terminal off (its next sale
77) and a forged 0800 replaced its working keys (its next sale A0). Now a sign-on
hands out keys without taking the ones in force away — they wait until a request
MACed under them arrives, and every sign-on until then hands out the same ones —
and a sign-off takes nothing away: a request MACed under the keys in force goes on.

The attacks, and the legitimate cases the rule must keep: a duplicated sign-on,
a sign-on whose answer was lost, a host restart between sign-on and first sale,
old keys refused once the new ones are used. On SQLite and PostgreSQL; the last
tests run the real terminal engine against the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from host_helpers import (
    MASTER_KEY,
    MERCHANT_ID,
    PAN,
    TERMINAL_ID,
    StepClock,
    Terminal,
    frame_of,
    new_core,
    read_reply,
    session_terminal,
)

from posbatch.batch.model import BatchReason
from posbatch.errors import MacError
from posbatch.host import HostCore, HostSession, HostStore
from posbatch.terminal import InProcessLink, Journal, TerminalSecrets
from posbatch.terminal import Terminal as TerminalEngine
from posbatch.wire import (
    FrameReader,
    Message,
    SaleRequest,
    SignOffRequest,
    SignOnRequest,
    SignOnResponse,
    TransactionResponse,
    check_mac,
    decode_batch_detail,
    decode_message,
    unwrap_working_keys,
)


def _attacker_sends(core: HostCore, message: SignOnRequest | SignOffRequest) -> Message:
    """Someone who read the terminal's ids off a receipt sends an 08xx on its own line."""
    (reply,) = HostSession(core).receive_data(frame_of(message, None))
    return read_reply(reply)


def _spoof_sign_on(core: HostCore, stan: int = 424_242) -> SignOnResponse:
    answer = _attacker_sends(core, SignOnRequest(TERMINAL_ID, MERCHANT_ID, stan, 1))
    assert isinstance(answer, SignOnResponse) and answer.response_code == "00"
    return answer


def _spoof_sign_off(core: HostCore, stan: int = 434_343) -> None:
    answer = _attacker_sends(core, SignOffRequest(TERMINAL_ID, MERCHANT_ID, stan, 1))
    assert "00" == getattr(answer, "response_code", None)


def _sale(term: Terminal, amount_fen: int = 100) -> tuple[str, bool]:
    """The sale's code, and whether its answer's MAC checks under the terminal's key."""
    request = SaleRequest(
        TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, amount_fen, PAN
    )
    frames = term.send(frame_of(request, term.mak))
    assert len(frames) == 1
    body = FrameReader().feed(frames[0])[0].body
    answer = decode_message(body)
    assert isinstance(answer, TransactionResponse)
    assert term.mak is not None
    try:
        check_mac(body, term.mak)
    except MacError:
        return answer.response_code, False
    return answer.response_code, True


def _signed_on(store: HostStore) -> bool:
    info = store.terminal(TERMINAL_ID)
    assert info is not None
    return info.signed_on


# --- the attacks ------------------------------------------------------------------------------


def test_a_spoofed_sign_off_does_not_fail_the_next_sale(core: HostCore, term: Terminal) -> None:
    """After a forged 0820 the terminal's next sale is approved, its answer MACed; the
    terminal counts as signed on again (its MAC proved it)."""
    assert ("00", True) == _sale(term)
    _spoof_sign_off(core)
    signed_off = not _signed_on(core.store)
    assert (True, ("00", True), True) == (signed_off, _sale(term), _signed_on(core.store))


def test_a_spoofed_sign_on_does_not_fail_the_next_sale(core: HostCore, term: Terminal) -> None:
    """After a forged 0800 (new STAN) the terminal's next sale, under its keys, is approved."""
    assert ("00", True) == _sale(term)
    _spoof_sign_on(core)
    assert ("00", True) == _sale(term)


def test_spoofed_sign_on_before_the_first_sale_hands_out_the_same_keys(
    core: HostCore, term: Terminal
) -> None:
    """Between the real sign-on and its first sale a forged 0800 gets the very same field 62
    (the attacker learns nothing new: it is under the TMK) and the sale is approved."""
    real = term.sign_on()
    forged = [_spoof_sign_on(core, stan) for stan in (7, 8, 999_999)]
    assert [real.working_keys] * 3 == [answer.working_keys for answer in forged]
    assert ("00", True) == _sale(term)


def test_many_spoofed_sign_ons_and_offs_change_nothing_for_the_terminal(
    core: HostCore, term: Terminal
) -> None:
    """Forged 0800s and 0820s in any order, as often as the attacker likes: every sale of the
    terminal is approved with a MAC it can check."""
    results = []
    for round_no in range(4):
        _spoof_sign_on(core, 500_000 + round_no)
        _spoof_sign_off(core, 600_000 + round_no)
        _spoof_sign_on(core, 700_000 + round_no)
        results.append(_sale(term, 100 + round_no))
    assert [("00", True)] * 4 == results


def test_the_real_sign_on_after_a_spoofed_one_gets_keys_that_work(
    core: HostCore, term: Terminal
) -> None:
    """A forged 0800 waits with keys nobody used; the terminal's own next sign-on is handed
    those (it unwraps them with its TMK), its sale brings them into force, the old keys end."""
    assert ("00", True) == _sale(term)
    old_mak = term.mak
    forged = _spoof_sign_on(core)
    real = term.sign_on()
    assert real.working_keys == forged.working_keys and term.mak != old_mak
    assert ("00", True) == _sale(term)
    term_old = Terminal(term.send, stan=term.stan, mak=old_mak, batch_no=term.batch_no)
    assert "A0" == _sale(term_old)[0]


def test_a_request_under_no_known_key_is_a0_signed_on_and_77_signed_off(
    core: HostCore, term: Terminal
) -> None:
    """The defence accepts exactly the keys in force and those of the last sign-on."""
    stranger = Terminal(term.send, stan=900_000, mak=b"\x05" * 8, batch_no=term.batch_no)
    signed_on_code = _sale(stranger)[0]
    _spoof_sign_off(core)
    request = SaleRequest(TERMINAL_ID, MERCHANT_ID, 900_100, term.batch_no, 100, PAN)
    answer = stranger.request(request)
    assert isinstance(answer, TransactionResponse) and answer.detail is not None
    detail = decode_batch_detail(answer.detail)
    assert ("A0", "77", BatchReason.NOT_SIGNED_ON) == (
        signed_on_code,
        answer.response_code,
        detail.reason if detail else None,
    )


# --- the legitimate cases ----------------------------------------------------------------------


def test_a_lost_sign_on_answer_then_a_new_sign_on_gets_the_same_keys(
    core: HostCore, term: Terminal
) -> None:
    """The answer of a sign-on lost, the terminal signs on again with a new STAN: it gets the
    keys of the first (nobody used them), and they work."""
    assert ("00", True) == _sale(term)
    lost = term.request(SignOnRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no))
    again = term.sign_on()
    assert isinstance(lost, SignOnResponse) and lost.working_keys == again.working_keys
    assert ("00", True) == _sale(term)


def test_the_new_keys_survive_a_host_restart(store: HostStore, term: Terminal) -> None:
    """Sign-on, host restart (a new core over the same store), then the first sale: 00."""
    assert ("00", True) == _sale(term)
    term.sign_on()
    restarted = new_core(store)
    session = HostSession(restarted)
    term.send = lambda data: [f for reply in session.receive_data(data) for f in reply.frames]
    assert ("00", True) == _sale(term)


def test_keys_come_into_force_with_the_first_request_under_them(
    store: HostStore, term: Terminal
) -> None:
    """The sign-on leaves the keys in force alone; the first request under its keys replaces
    them (and the keys of the next sign-on are new ones)."""
    assert ("00", True) == _sale(term)
    first = term.mak
    answer = term.sign_on()
    assert answer.working_keys is not None
    second = unwrap_working_keys(MASTER_KEY, answer.working_keys).mak
    assert ("00", True) == _sale(term)
    third = term.sign_on()
    assert third.working_keys is not None
    assert len({first, second, unwrap_working_keys(MASTER_KEY, third.working_keys).mak}) == 3


# --- the real terminal engine -----------------------------------------------------------------


class _CountingLink:
    """The in-process link, counting the message types the terminal sends."""

    def __init__(self, core: HostCore) -> None:
        self.inner = InProcessLink(core)
        self.sent: list[str] = []

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        if frame:
            self.sent.append(frame[13:15].hex())  # after length, TPDU and header: the MTI
        return self.inner(frame, timeout_ms)


@pytest.fixture
def engine(
    store: HostStore, tmp_path: Path
) -> Iterator[tuple[TerminalEngine, HostCore, _CountingLink]]:
    """The terminal engine over a journal file, joined in-process to a host core."""
    core = new_core(store)
    link = _CountingLink(core)
    journal = Journal.open(f"sqlite:///{tmp_path / 'journal.db'}")
    clock = StepClock()
    TerminalEngine.initialize(
        journal, merchant_id=MERCHANT_ID, terminal_id=TERMINAL_ID,
        host_address="in-process", clock=clock,
    )  # fmt: skip
    terminal = TerminalEngine(
        journal, TerminalSecrets(MASTER_KEY, b"p" * 32), clock=clock, exchange=link
    )
    yield terminal, core, link
    journal.engine.dispose()


def test_the_terminal_engine_sells_through_spoofed_sign_on_and_sign_off(
    engine: tuple[TerminalEngine, HostCore, _CountingLink],
) -> None:
    """A real terminal: sign-on, sale, forged 0800 and 0820, sale — both approved at once:
    no reversal, no second sign-on; the host counts both."""
    terminal, core, link = engine
    terminal.sign_on()
    first = terminal.sale(1250, PAN)
    _spoof_sign_on(core)
    _spoof_sign_off(core)
    second = terminal.sale(800, PAN)
    approved = [row for row in core.store.transactions(TERMINAL_ID) if row.status == "approved"]
    assert (True, True, 2) == (first.approved, second.approved, len(approved))
    assert ["0800", "0200", "0200"] == link.sent


def test_the_terminal_engine_sells_when_a_forged_sign_on_races_its_own(
    engine: tuple[TerminalEngine, HostCore, _CountingLink],
) -> None:
    """A forged 0800 just after the terminal's own (before its first sale): approved at once."""
    terminal, core, link = engine
    terminal.sign_on()
    _spoof_sign_on(core)
    assert (True, ["0800", "0200"]) == (terminal.sale(1250, PAN).approved, link.sent)


def test_a_plain_session_terminal_still_gets_77_before_any_sign_on(core: HostCore) -> None:
    """No sign-on ever (no keys at all): 77 NOT_SIGNED_ON, as before."""
    terminal = session_terminal(core)
    terminal.mak = b"\x01" * 8
    assert "77" == getattr(terminal.sale(100), "response_code", None)
