"""Which answers carry field 64: every one, whenever the host holds the terminal's MAK.

A terminal believes only answers whose MAC checks (docs/terminal.md), so a 77,
a forced code, a 96 after a failure, a 03, 58 or 30 to a signed-on terminal
must be MACed under its MAK. Without a MAC go only A0, the 77 to a terminal
that is not signed on, and answers to a terminal the host does not know (97).
Each test runs on SQLite and PostgreSQL over the in-memory session.
"""

from __future__ import annotations

from datetime import datetime

import iso8583
import pytest
from host_helpers import (
    MERCHANT_ID,
    PAN,
    TERMINAL_ID,
    StepClock,
    Terminal,
    frame_of,
    session_terminal,
)

from posbatch.batch.model import CardType, Kind
from posbatch.batch.totals import compute_totals
from posbatch.errors import MacError
from posbatch.host import FaultRule, FaultScript, HostCore, HostSession, HostStore
from posbatch.host.faults import FaultAction
from posbatch.wire import (
    SPEC,
    BatchUploadRequest,
    FrameReader,
    OriginalTransaction,
    Request,
    SaleRequest,
    SettlementRequest,
    UploadRecord,
    VoidRequest,
    check_mac,
    encode_message,
    has_mac,
)

OTHER_MERCHANT_ID = "898110054119999"


def _answer_frame(core: HostCore, frame: bytes) -> tuple[str, bytes]:
    """The response code and body of the one answer to ``frame``.

    Read field by field: a 30 echoes what it could salvage, which need not decode
    as a message.
    """
    (reply,) = HostSession(core).receive_data(frame)
    (answer,) = FrameReader().feed(reply.frames[0])
    fields, _ = iso8583.decode(answer.body, SPEC)
    return fields["39"], answer.body


def _answer(core: HostCore, request: Request, mak: bytes | None) -> tuple[str, bytes]:
    return _answer_frame(core, frame_of(request, mak))


def _mac_checks(body: bytes, mak: bytes | None) -> bool:
    assert mak is not None
    try:
        check_mac(body, mak)
    except MacError:
        return False
    return True


def _sale(
    term: Terminal, *, batch_no: int | None = None, merchant_id: str = MERCHANT_ID
) -> Request:
    batch = term.batch_no if batch_no is None else batch_no
    return SaleRequest(TERMINAL_ID, merchant_id, term.next_stan(), batch, 1250, PAN)


# --- answers the host MACs now ---


def test_77_to_a_signed_on_terminal_is_maced(core: HostCore, term: Terminal) -> None:
    """A sale naming another batch gets a 77 MACed under the terminal's MAK."""
    code, body = _answer(core, _sale(term, batch_no=term.batch_no + 1), term.mak)
    assert (code, _mac_checks(body, term.mak)) == ("77", True)


def test_77_to_a_late_void_is_maced(core: HostCore, term: Terminal) -> None:
    """A void in a batch the host closed (a late void) gets a MACed 77."""
    sale = term.sale(500)
    term.settle(compute_totals([(Kind.SALE, 500, CardType.DOMESTIC)]))
    void = VoidRequest(
        TERMINAL_ID, MERCHANT_ID, term.next_stan(), 1, 500, PAN,
        OriginalTransaction(1, sale.stan),  # type: ignore[attr-defined]
    )  # fmt: skip
    code, body = _answer(core, void, term.mak)
    assert (code, _mac_checks(body, term.mak)) == ("77", True)


def test_77_to_a_settlement_of_another_batch_is_maced(core: HostCore, term: Terminal) -> None:
    """A 0500 naming a batch the host does not have gets a MACed 77."""
    request = SettlementRequest(
        TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no + 1, compute_totals([])
    )
    code, body = _answer(core, request, term.mak)
    assert (code, _mac_checks(body, term.mak)) == ("77", True)


def test_77_to_an_upload_of_another_batch_is_maced(core: HostCore, term: Terminal) -> None:
    """A 0320 naming a batch the host does not have gets a MACed 77."""
    record = UploadRecord(CardType.DOMESTIC, 1, PAN, 1250)
    request = BatchUploadRequest(
        TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no + 1, (record,)
    )
    code, body = _answer(core, request, term.mak)
    assert (code, _mac_checks(body, term.mak)) == ("77", True)


@pytest.mark.parametrize("forced", ["00", "94", "96", "77"])
def test_forced_answer_to_a_signed_on_terminal_is_maced(
    store: HostStore, core: HostCore, term: Terminal, forced: str
) -> None:
    """A code forced by a fault script looks like a real answer: MACed, and nothing stored."""
    core.set_faults(FaultScript([FaultRule(FaultAction.FORCE, response_code=forced, count=1)]))
    code, body = _answer(core, _sale(term), term.mak)
    assert (code, _mac_checks(body, term.mak), store.transactions(TERMINAL_ID)) == (
        forced,
        True,
        [],
    )


class _BrokenIssuer:
    """An issuer link that fails: processing the sale raises, the host answers 96."""

    def decide(self, *, pan: str, amount_fen: int, expiry: str | None, now: datetime) -> str:
        raise RuntimeError("issuer link down")


def test_96_after_a_processing_failure_is_maced(store: HostStore) -> None:
    """A 96 for a request whose processing failed is MACed under the terminal's MAK."""
    core = HostCore(store, clock=StepClock(), issuer=_BrokenIssuer())
    term = session_terminal(core)
    term.sign_on()
    code, body = _answer(core, _sale(term), term.mak)
    assert (code, _mac_checks(body, term.mak), store.transactions(TERMINAL_ID)) == (
        "96",
        True,
        [],
    )


def test_58_to_a_suspended_signed_on_terminal_is_maced(
    store: HostStore, core: HostCore, term: Terminal
) -> None:
    """A terminal suspended while signed on gets its 58 MACed."""
    store.suspend(TERMINAL_ID)
    code, body = _answer(core, _sale(term), term.mak)
    assert (code, _mac_checks(body, term.mak)) == ("58", True)


def test_03_for_a_signed_on_terminal_is_maced(core: HostCore, term: Terminal) -> None:
    """A request under another merchant id gets 03 MACed under the terminal's MAK."""
    code, body = _answer(core, _sale(term, merchant_id=OTHER_MERCHANT_ID), term.mak)
    assert (code, _mac_checks(body, term.mak)) == ("03", True)


def _unreadable_sale_frame(stan: int, batch_no: int) -> bytes:
    """A sale whose 60.3 is wrong ("990"): the body fails to decode, 41 and 42 still read."""
    body = bytearray(
        encode_message(SaleRequest(TERMINAL_ID, MERCHANT_ID, stan, batch_no, 100, PAN))
    )
    index = body.index(bytes.fromhex("0011220000010000"))
    body[index + 6] = 0x99
    return (len(body) + 11).to_bytes(2, "big") + bytes.fromhex("6000030000603100000000") + body


def test_30_to_a_signed_on_terminal_is_maced(core: HostCore, term: Terminal) -> None:
    """A body that cannot be read, from a signed-on terminal, gets a MACed 30."""
    code, body = _answer_frame(core, _unreadable_sale_frame(term.next_stan(), term.batch_no))
    assert (code, _mac_checks(body, term.mak)) == ("30", True)


# --- answers that stay unMACed ---


def test_a0_carries_no_mac(core: HostCore, term: Terminal) -> None:
    """A request MACed under another key gets A0 without field 64."""
    code, body = _answer(core, _sale(term), b"\x02" * 8)
    assert (code, has_mac(body)) == ("A0", False)


def test_forced_a0_carries_no_mac(core: HostCore, term: Terminal) -> None:
    """A0 is never MACed, forced or not."""
    core.set_faults(FaultScript([FaultRule(FaultAction.FORCE, response_code="A0", count=1)]))
    code, body = _answer(core, _sale(term), term.mak)
    assert (code, has_mac(body)) == ("A0", False)


def test_77_to_a_terminal_not_signed_on_carries_no_mac(core: HostCore) -> None:
    """A terminal that never signed on has no MAK: its 77 is unMACed."""
    term = session_terminal(core)
    code, body = _answer(core, _sale(term), b"\x01" * 8)
    assert (code, has_mac(body)) == ("77", False)


def test_forced_answer_to_a_terminal_not_signed_on_carries_no_mac(core: HostCore) -> None:
    """Without a sign-on the host holds no MAK, so even a forced 00 goes unMACed."""
    core.set_faults(FaultScript([FaultRule(FaultAction.FORCE, response_code="00", count=1)]))
    term = session_terminal(core)
    code, body = _answer(core, _sale(term), b"\x01" * 8)
    assert (code, has_mac(body)) == ("00", False)


def test_97_to_an_unknown_terminal_carries_no_mac(core: HostCore) -> None:
    """A terminal the host never registered has no key: 97 unMACed."""
    term = session_terminal(core, terminal_id="99999999")
    request = SaleRequest("99999999", MERCHANT_ID, term.next_stan(), 1, 100, PAN)
    code, body = _answer(core, request, b"\x01" * 8)
    assert (code, has_mac(body)) == ("97", False)


def test_30_to_a_terminal_not_signed_on_carries_no_mac(core: HostCore) -> None:
    """A body that cannot be read, from a terminal not signed on, gets 30 unMACed."""
    code, body = _answer_frame(core, _unreadable_sale_frame(5, 1))
    assert (code, has_mac(body)) == ("30", False)
