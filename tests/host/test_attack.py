"""An outside tester's attacks on the host over real loopback sockets.

The client (``attack_client.py``) was written from DESIGN.md alone, not from posbatch's
``wire`` or ``host``. Each attack says what DESIGN.md asks for (code, connection kept or
closed) and then checks that the host still approves a normal sale and that the store's money
did not move where it must not.
"""

from __future__ import annotations

import itertools
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from attack_client import (
    READ_TIMEOUT_S,
    Attacker,
    Value,
    bitmap,
    body,
    closed_by_peer,
    connect,
    frame,
    maced,
    read_answer,
)
from host_helpers import open_store

from posbatch.host import HostCore, HostStore
from posbatch.host.server import HostServer, ServerLimits
from testbed import MASTER_KEY, MERCHANT_ID, StepClock, counting_bytes, serving_in_thread

PAN = "6222021234567890128"  # Luhn-valid, approved by the default issuer
TERMINAL = "10000001"
OTHER_TERMINAL = "10000002"
FRAME_DEADLINE_MS = 400
FIRST_FRAME_TIMEOUT_MS = 1_000


@dataclass
class Target:
    host: str
    port: int
    store: HostStore
    sockets: list[socket.socket]

    def connect(self) -> socket.socket:
        sock = connect(self.host, self.port)
        self.sockets.append(sock)
        return sock

    def attacker(self, terminal_id: str = TERMINAL) -> Attacker:
        return Attacker(self.connect(), terminal_id, MERCHANT_ID, MASTER_KEY)

    def signed_on(self, terminal_id: str = TERMINAL) -> Attacker:
        attacker = self.attacker(terminal_id)
        assert attacker.sign_on().code == "00"
        return attacker

    def money(self, terminal_id: str = TERMINAL) -> tuple[object, ...]:
        """What the store holds of a terminal's money (declined requests left out: they
        are kept to answer repeats, and move nothing), to compare before and after."""
        rows = self.store.transactions(terminal_id)
        counted = [(t.stan, t.kind, t.amount_fen, t.status, t.refunded_fen) for t in rows
                   if t.status != "declined"]  # fmt: skip
        batches = [(b.batch_no, b.state, b.host_totals) for b in self.store.batches(terminal_id)]
        exceptions = [(e.kind, e.stan) for e in self.store.exceptions(terminal_id)]
        return counted, batches, exceptions


class _Collected(logging.Handler):
    """Every line a logger wrote, exception text included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(logging.Formatter().format(record))


@pytest.fixture
def target(db_url: str) -> Iterator[Target]:
    """A host on a loopback port; after the test, everything it logged is scanned."""
    log = _Collected()
    host_logger = logging.getLogger("posbatch.host")
    host_logger.addHandler(log)
    level = host_logger.level
    # setLevel, not the attribute: it clears isEnabledFor's cache, which an earlier test of
    # the same process (a CLI run at --log-level warning) may have left saying "no"
    host_logger.setLevel(logging.DEBUG)
    store = open_store(db_url, terminals=(TERMINAL, OTHER_TERMINAL))
    core = HostCore(store, clock=StepClock(), random_bytes=counting_bytes())
    limits = ServerLimits(
        frame_deadline_ms=FRAME_DEADLINE_MS, first_frame_timeout_ms=FIRST_FRAME_TIMEOUT_MS
    )
    try:
        with serving_in_thread(HostServer(core, limits=limits)) as (host, port):
            target = Target(host, port, store, [])
            yield target
            for sock in target.sockets:
                sock.close()
    finally:
        store.close()
        host_logger.removeHandler(log)
        host_logger.setLevel(level)
    text = "\n".join(log.lines)
    assert '"kind":"sign_on"' in text, "the host's request log was not captured"
    assert "Traceback" not in text
    for pan in CARD_NUMBERS:
        for start in range(len(pan) - 11):
            assert pan[start : start + 12] not in text, "a card number reached the log"


CARD_NUMBERS = (PAN, "6222021234567890136")


_STILL_SELLS_STANS = itertools.count(900_000, 10)


def still_sells(target: Target) -> None:
    """A fresh connection signs on and a normal sale is approved, its answer MACed (STANs
    of their own, so that a test's earlier requests of that terminal are no repeats)."""
    attacker = target.attacker(OTHER_TERMINAL)
    attacker.stan = next(_STILL_SELLS_STANS)
    assert attacker.sign_on().code == "00"
    answer = attacker.sale(100, PAN)
    assert (answer.code, answer.mac_ok) == ("00", True)


# --- the client against DESIGN.md's worked example ------------------------------------------


def test_client_matches_designs_worked_example() -> None:
    """The MAC and the whole frame of DESIGN.md's example sale, byte for byte."""
    fields = {2: "6222021234567890123", 3: "000000", 4: "000000001250", 11: "000007",
              14: "3012", 22: "021", 25: "00", 41: "10000001", 42: "898110054110001",
              49: "156", 60: "22000001000"}  # fmt: skip
    message = maced("0200", fields, bytes.fromhex("0123456789ABCDEF"))
    expected = (
        "005B600003000060310000000002007024048000C0801119622202123456789012300000000000000012"
        "500000073012002100313030303030303138393831313030353431313030303131353600112200000100"
        "003544333230414131"
    )
    assert expected == frame(message).hex().upper()


def test_baseline_sale(target: Target) -> None:
    """Sign-on and a sale from the attacker's own client are approved and MACed."""
    answer = target.signed_on().sale(1250, PAN)
    assert (answer.mti, answer.code, answer.mac_ok) == ("0210", "00", True)
    still_sells(target)


# --- lifecycle ------------------------------------------------------------------------------


def test_a_reversal_of_a_partly_refunded_sale_is_not_applied(target: Target) -> None:
    """A sale, a refund of part of it (approved), then a reversal of the sale — from a second
    connection of the same terminal, or a terminal that reverses late: the sale must not be
    taken back while its refund stands (the card would be credited for a sale it never paid).
    The reversal is answered 00 and recorded as a mismatch, like a reversal of a voided sale."""
    first = target.signed_on()
    second = Attacker(target.connect(), TERMINAL, MERCHANT_ID, MASTER_KEY)
    second.mak, second.batch_no, second.stan = first.mak, first.batch_no, 500
    sale = first.sale(2000, PAN)
    sale_stan = f"{first.stan:06d}"
    assert "00" == second.refund(1500, PAN, second.original(sale, sale_stan)).code
    reversal = {**first.sale_fields(2000, PAN, F11=sale_stan), 39: "98"}
    answer = first.send(first.maced("0400", reversal))
    statuses = [(t.kind.value, t.status) for t in target.store.transactions(TERMINAL)]
    kinds = [e.kind for e in target.store.exceptions(TERMINAL)]
    assert (answer.code, statuses, kinds) == (
        "00",
        [("sale", "approved"), ("refund", "approved")],
        ["reversal-mismatch"],
    )
    settled = first.settle(2000, 1, 1500, 1)  # what the terminals hold: balanced
    assert settled.code == "00" and str(settled.fields[48])[30] == "1"
    still_sells(target)


# --- fields the profile refuses: answered 30, or dropped only when no ids can be read --------

TRACK_ODD = "6222021234567890128=30121010000"  # 31 digits: its pad nibble is 0 here
F_PAD_PAN = {2: bytes.fromhex("19") + bytes.fromhex("6222021234567890128F")}
F_PAD_60 = {60: bytes.fromhex("0011") + bytes.fromhex("22000001000F")}
F_PADDED: dict[str, dict[int, Value]] = {
    "fields 2 and 60": {**F_PAD_PAN, **F_PAD_60},
    "fields 2, 22 and 60": {**F_PAD_PAN, **F_PAD_60, 22: bytes.fromhex("F021")},
    "field 22 alone": {22: bytes.fromhex("F021")},
    "field 60 alone (a 12-digit PAN)": {2: "622202123456", **F_PAD_60},
    # mixed: one variable field padded F, another (odd length too) padded 0
    "field 2 with F, field 60 with 0": {**F_PAD_PAN, 60: "22000001000"},
    "field 2 with 0, field 60 with F": {2: PAN, **F_PAD_60},
    "fields 2 and 60 with F, track 2 with 0": {**F_PAD_PAN, **F_PAD_60, 35: TRACK_ODD},
}


@pytest.mark.parametrize("case", list(F_PADDED))
def test_a_sale_padded_with_f_is_answered_30_not_left_to_time_out(
    target: Target, case: str
) -> None:
    """Odd-length packed decimal padded with an F nibble (some CUP terminal SDKs do; DESIGN.md
    says 0) is outside the profile, but every length in it is right and 41/42 can be read:
    answered 30 at once, MACed, and nothing stored — not silence, which leaves the terminal to
    time out and reverse."""
    attacker = target.signed_on()
    before = target.money()
    fields = attacker.sale_fields(777, PAN)
    fields.update(F_PADDED[case])
    attacker.sock.settimeout(3)
    answer = attacker.send(attacker.maced("0200", fields))
    assert (answer.mti, answer.code, answer.mac_ok) == ("0210", "30", True)
    assert before == target.money()
    still_sells(target)


DROPPED = "dropped"  # no answer, the connection goes on (the next request is answered)
TRACK = "6222021234567890128=30121010000"
FIELD_ATTACKS: dict[str, tuple[dict[int, Value], str]] = {
    # field 2
    "PAN length prefix 99 (more than the frame holds)": (
        {2: bytes.fromhex("99") + bytes.fromhex("62220212345678901280")}, DROPPED),
    "PAN length prefix 0": ({2: bytes.fromhex("00")}, "30"),
    "PAN of 11 digits": ({2: "62220212345"}, "30"),
    "PAN with a D nibble (an = inside)": (
        {2: bytes.fromhex("19") + bytes.fromhex("62220212D45678901280")}, "30"),
    "PAN in ascii with a space (lengths no longer add up)": (
        {2: bytes.fromhex("19") + b"6222 0212345"}, DROPPED),
    # amounts, STAN, dates
    "amount 0": ({4: "000000000000"}, "13"),
    "amount with an A nibble": ({4: bytes.fromhex("00000000125A")}, "30"),
    "STAN 000000": ({11: "000000"}, "30"),
    "STAN with an F nibble": ({11: bytes.fromhex("00001F")}, "30"),
    "expiry month 13": ({14: "3013"}, "54"),
    "expiry month 00": ({14: "3000"}, "54"),
    "expiry with an A nibble": ({14: bytes.fromhex("3A12")}, "30"),
    "entry mode with an F nibble": ({22: bytes.fromhex("0F21")}, "30"),
    # currency
    "currency 840": ({49: "840"}, "40"),
    "currency ABC": ({49: "ABC"}, "30"),
    "currency not ascii": ({49: b"\xff\xfe\x00"}, "30"),
    # ids
    "terminal id not ascii": ({41: b"\xff\x00\x80\x10\x00\x00\x00\x01"}, DROPPED),
    "terminal id padded with a space": ({41: "1000001 "}, "97"),
    "merchant id of another merchant": ({42: "898110054110002"}, "03"),
    "merchant id of NUL bytes": ({42: b"\x00" * 15}, "30"),
    # field 60
    "60 length prefix 99": ({60: bytes.fromhex("0099") + bytes.fromhex("220000010000")}, DROPPED),
    "60 length prefix 0": ({60: bytes.fromhex("0000")}, "30"),
    "60.1 unknown (99)": ({60: "99000001000"}, "30"),
    "60.2 batch 000000": ({60: "22000000000"}, "30"),
    "60.2 batch 999999 (not the host's)": ({60: "22999999000"}, "77"),
    "60.2 with an A nibble": ({60: bytes.fromhex("0011") + bytes.fromhex("2200A0010000")}, "30"),
    # track 2
    "track 2 without a separator": ({35: TRACK.replace("=", "")}, "14"),
    "track 2 with two separators": ({35: "6222021234567890128=3012=101000"}, "30"),
    "track 2 starting with its separator": ({35: "=" + TRACK.replace("=", "")[:-2]}, "14"),
    "track 2 of another card": ({35: "6222021234567890136=30121010000"}, "14"),
    "track 2 of 38 digits": ({35: TRACK + "0000000"}, "30"),
    "track 2 with an E nibble": (
        {35: bytes.fromhex("31") + bytes.fromhex("6222021234567890128E301210100000")}, "30"),
    # field 63
    "63 length prefix 999 (more than the frame holds)": (
        {63: bytes.fromhex("0999") + b"01"}, DROPPED),
}  # fmt: skip
DROP_WAIT_S = 1.0


@pytest.mark.parametrize("case", list(FIELD_ATTACKS))
def test_a_malformed_sale_is_refused_and_moves_no_money(target: Target, case: str) -> None:
    """Each malformed field of a MACed sale gets DESIGN.md's refusal (MACed, except 97 which
    has no key), or is dropped when not even the terminal id can be read — and then the same
    connection still works; nothing is approved, no money moves, no card number is logged."""
    fields, expected = FIELD_ATTACKS[case]
    attacker = target.signed_on()
    before = target.money()
    attacker.sock.sendall(
        frame(attacker.maced("0200", {**attacker.sale_fields(777, PAN), **fields}))
    )
    if expected == DROPPED:
        attacker.sock.settimeout(DROP_WAIT_S)
        with pytest.raises(TimeoutError):
            read_answer(attacker.sock, attacker.mak)
        attacker.sock.settimeout(READ_TIMEOUT_S)
        assert attacker.echo().code == "00"
    else:
        answer = read_answer(attacker.sock, attacker.mak)
        maced_answer = None if expected == "97" else True  # no key for an unknown terminal
        assert (answer.mti, answer.code, answer.mac_ok) == ("0210", expected, maced_answer)
    assert before == target.money()
    still_sells(target)


# --- the MAC, replays and duplicates --------------------------------------------------------


def _mac_attacks(attacker: Attacker, other_mak: bytes) -> dict[str, bytes]:
    fields = attacker.sale_fields(500, PAN)
    good = attacker.maced("0200", fields)
    return {
        "no field 64": body("0200", fields),
        "field 64 of zeros": body("0200", {**fields, 64: bytes(8)}),
        "the right MAC over a changed amount": good.replace(
            bytes.fromhex("000000000500"), bytes.fromhex("000000090500")
        ),
        "a MAC under another terminal's MAK": maced("0200", fields, other_mak),
    }


@pytest.mark.parametrize("case", ["no field 64", "field 64 of zeros",
                                  "the right MAC over a changed amount",
                                  "a MAC under another terminal's MAK"])  # fmt: skip
def test_a_sale_whose_mac_fails_is_a0_without_a_mac_and_moves_nothing(
    target: Target, case: str
) -> None:
    """DESIGN.md: a request whose MAC fails is answered A0 without a valid MAC; the connection
    stays and the terminal's next (right) sale is approved."""
    attacker = target.signed_on()
    other = target.signed_on(OTHER_TERMINAL)
    assert other.mak is not None
    before = target.money()
    answer = attacker.send(_mac_attacks(attacker, other.mak)[case])
    assert (answer.code, answer.mac_ok) == ("A0", None)
    assert before == target.money()
    assert "00" == attacker.sale(100, PAN).code


def test_a_replayed_frame_gets_the_same_answer_and_counts_once(target: Target) -> None:
    """The same bytes again, on the same connection and on a new one: the original answer
    (same RRN and authorisation code), one sale in the store."""
    attacker = target.signed_on()
    sale = attacker.maced("0200", attacker.sale_fields(1250, PAN))
    first = attacker.send(sale)
    after_first = target.money()
    again = attacker.send(sale)
    stranger = target.connect()
    stranger.sendall(frame(sale))
    elsewhere = read_answer(stranger, attacker.mak)
    assert [(a.code, a.fields[37], a.fields[38], a.mac_ok) for a in (again, elsewhere)] == [
        ("00", first.fields[37], first.fields[38], True)
    ] * 2
    assert after_first == target.money()


def test_the_same_stan_with_another_amount_is_94(target: Target) -> None:
    """Same terminal, batch and STAN but another amount: not a repeat, not a new sale — 94."""
    attacker = target.signed_on()
    assert "00" == attacker.sale(1000, PAN).code
    after = target.money()
    answer = attacker.sale(1001, PAN, F11=f"{attacker.stan:06d}")
    assert (answer.code, answer.mac_ok, after) == ("94", True, target.money())


# --- lifecycle attacks ----------------------------------------------------------------------


def test_a_reversal_of_a_sale_that_never_existed_changes_nothing(target: Target) -> None:
    """0400 for a STAN the host never saw: answered 00 (the terminal may stop retrying) and
    nothing is counted."""
    attacker = target.signed_on()
    before = target.money()
    reversal = {**attacker.sale_fields(4242, PAN, F11="000500"), 39: "98"}
    answer = attacker.send(attacker.maced("0400", reversal))
    assert (answer.mti, answer.code, answer.mac_ok, before) == ("0410", "00", True, target.money())


def test_voids_and_refunds_that_must_not_be(target: Target) -> None:
    """Void of a void (12), a partial void (64), a refund of a void (12), of a voided sale
    (12), of a STAN never seen (25), above what is left of the sale (13): none moves money;
    the refund that fits is approved."""
    attacker = target.signed_on()
    voided = attacker.sale(1000, PAN)
    voided_stan = f"{attacker.stan:06d}"
    kept = attacker.sale(2000, PAN)
    kept_stan = f"{attacker.stan:06d}"
    assert "00" == attacker.void(1000, PAN, attacker.original(voided, voided_stan)).code
    void_stan = f"{attacker.stan:06d}"
    before = target.money()
    codes = [
        attacker.void(1000, PAN, attacker.original(voided, void_stan)).code,
        attacker.void(1000, PAN, attacker.original(voided, voided_stan)).code,
        attacker.void(500, PAN, attacker.original(kept, kept_stan)).code,
        attacker.refund(100, PAN, attacker.original(voided, void_stan)).code,
        attacker.refund(100, PAN, attacker.original(voided, voided_stan)).code,
        attacker.refund(100, PAN, attacker.original(kept, "000321")).code,
        attacker.refund(2001, PAN, attacker.original(kept, kept_stan)).code,
    ]
    assert (codes, before) == (["12", "12", "64", "12", "12", "25", "13"], target.money())
    assert "00" == attacker.refund(1500, PAN, attacker.original(kept, kept_stan)).code
    assert "13" == attacker.refund(501, PAN, attacker.original(kept, kept_stan)).code


@pytest.mark.parametrize(
    ("case", "claimed"),
    [
        ("amounts lie, counts right", (3001, 2, 1000, 1)),
        ("counts lie, amounts right", (3000, 3, 1000, 2)),
    ],
)
def test_settlement_totals_that_lie_are_answered_with_the_hosts(
    target: Target, case: str, claimed: tuple[int, int, int, int]
) -> None:
    """Code 2 with the host's own totals; the upload of what really happened and 207 close
    the batch; a repeated 0500, 0320 or 0320/202 after that changes nothing."""
    attacker = target.signed_on()
    sales = [attacker.sale(1000, PAN), attacker.sale(2000, PAN)]
    stans = [attacker.stan - 1, attacker.stan]
    assert "00" == attacker.void(1000, PAN, attacker.original(sales[0], f"{stans[0]:06d}")).code
    settled = attacker.settle(*claimed)
    host_half = f"{3000:012d}{2:03d}{1000:012d}{1:03d}2"
    assert (settled.code, str(settled.fields[48])[:31]) == ("00", host_half)
    records = [("00", stans[0], PAN, 1000), ("00", stans[1], PAN, 2000)]
    assert "00" == attacker.upload(records).code
    assert "00" == attacker.upload_end(2, "207").code
    closed = target.money()
    again = [
        attacker.settle(*claimed).code,
        attacker.upload(records).code,
        attacker.upload_end(2, "207").code,
        attacker.upload_end(2, "202").code,
    ]
    assert (again, closed) == (["00"] * 4, target.money())
    still_sells(target)


def test_a_settlement_of_a_batch_never_seen_is_77(target: Target) -> None:
    """60.2 names a batch the host never opened: 77 with the reason, nothing closes."""
    attacker = target.signed_on()
    assert "00" == attacker.sale(100, PAN).code
    before = target.money()
    attacker.batch_no = "000050"
    answer = attacker.settle(100, 1, 0, 0)
    assert (answer.code, answer.mac_ok, before) == ("77", True, target.money())
    assert str(answer.fields[63]).startswith("R=AHEAD;B=000001")


def test_two_connections_of_one_terminal_interleave(target: Target) -> None:
    """The same terminal on two sockets (same keys): sales on both, a void on one of a sale
    made on the other, settlement on the first balances the lot."""
    first = target.signed_on()
    second = Attacker(target.connect(), TERMINAL, MERCHANT_ID, MASTER_KEY)
    second.mak, second.batch_no, second.stan = first.mak, first.batch_no, 500
    one = first.sale(1000, PAN)
    two = second.sale(2000, PAN)
    void = second.void(1000, PAN, second.original(one, f"{first.stan:06d}"))
    settled = first.settle(3000, 2, 1000, 1)
    assert [one.code, two.code, void.code, settled.code] == ["00"] * 4
    assert str(settled.fields[48])[30] == "1"


OTHER_CARD = "6222021234567890136"  # Luhn-valid, another card


def test_a_void_or_refund_of_another_terminals_sale_or_to_another_card_is_refused(
    target: Target,
) -> None:
    """Terminal B cannot void or refund terminal A's sale (25: not its STAN); A cannot void it
    or refund it to another card (14): no money goes to a card that did not pay."""
    seller = target.signed_on()
    other = target.signed_on(OTHER_TERMINAL)
    sale = seller.sale(1000, PAN)
    original = seller.original(sale, f"{seller.stan:06d}")
    before = target.money(), target.money(OTHER_TERMINAL)
    codes = [
        other.void(1000, PAN, original).code,
        other.refund(100, PAN, original).code,
        seller.void(1000, OTHER_CARD, original).code,
        seller.refund(100, OTHER_CARD, original).code,
    ]
    after = target.money(), target.money(OTHER_TERMINAL)
    assert (codes, after) == (["25", "25", "14", "14"], before)


def _settlement(attacker: Attacker, field48: str, currency: str = "156") -> bytes:
    fields: dict[int, Value] = {11: attacker.next_stan(), **attacker.ids(), 48: field48}
    fields.update({49: currency, 60: attacker.field60("00", "201"), 63: "01"})
    return attacker.maced("0500", fields)


def _upload(attacker: Attacker, field48: str) -> bytes:
    fields: dict[int, Value] = {11: attacker.next_stan(), **attacker.ids(), 48: field48,
                                60: attacker.field60("00", "201")}  # fmt: skip
    return attacker.maced("0320", fields)


def _records(count: int) -> str:
    return "".join(f"00{stan:06d}{PAN:0>20}{1:012d}" for stan in range(1, count + 1))


def test_malformed_settlements_and_uploads_are_30_and_close_nothing(target: Target) -> None:
    """Field 48 of 30 digits, a reconciliation code 9, currency 840 (40); an upload of 9
    records, one whose count says 3 for 2, a card type 07, a PAN of zeros: refused, the
    batch stays open and its money where it was."""
    attacker = target.signed_on()
    assert "00" == attacker.sale(1000, PAN).code
    before = target.money()
    settlements = [
        attacker.send(_settlement(attacker, "0" * 30)).code,
        attacker.send(_settlement(attacker, "9" * 62)).code,
        attacker.send(_settlement(attacker, "0" * 62, currency="840")).code,
    ]
    assert (settlements, before) == (["30", "30", "40"], target.money())
    assert "00" == attacker.settle(1, 1, 0, 0).code  # not balanced: upload expected
    uploading = target.money()
    uploads = [
        attacker.send(_upload(attacker, "09" + _records(9))).code,
        attacker.send(_upload(attacker, "03" + _records(2))).code,
        attacker.upload([("07", 2, PAN, 1000)]).code,
        attacker.upload([("00", 2, "0" * 20, 1000)]).code,
    ]
    assert (uploads, uploading) == (["30"] * 4, target.money())
    still_sells(target)


def test_an_upload_end_whose_count_lies_closes_with_an_exception(target: Target) -> None:
    """0320/207 saying 50 records after 1 was uploaded: answered 00, the batch closes, and the
    difference is an exception for the back office (never silently fixed)."""
    attacker = target.signed_on()
    sale_stan = attacker.stan + 1
    assert "00" == attacker.sale(1000, PAN).code
    assert "00" == attacker.settle(1, 1, 0, 0).code
    assert "00" == attacker.upload([("00", sale_stan, PAN, 999)]).code
    assert "00" == attacker.upload_end(50, "207").code
    kinds = [(e.kind, e.stan) for e in target.store.exceptions(TERMINAL)]
    states = [b.state.value for b in target.store.batches(TERMINAL)]
    assert (kinds, states) == (
        [("amount-differs", sale_stan), ("upload-count-differs", None)],
        ["CLOSED", "OPEN"],
    )


# --- frames ---------------------------------------------------------------------------------

CLOSING_PREFIXES = {
    "length 0": b"\x00\x00",
    "length 1": b"\x00\x01\x60",
    "length 13 (no room for a bitmap)": b"\x00\x0d" + bytes.fromhex("60000300006031000000000820"),
    "length 65535": b"\xff\xff" + b"\x60" * 100,
    "length 2049": b"\x08\x01" + b"\x60" * 100,
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLOSING_PREFIXES))
def test_a_length_prefix_that_cannot_be_a_frame_closes_at_once(target: Target, case: str) -> None:
    """No frame can be read after a bad length prefix: the host closes at once, the frames
    sent after it unanswered, and the host goes on serving others."""
    attacker = target.signed_on()
    attacker.sock.sendall(
        CLOSING_PREFIXES[case] + frame(body("0820", {11: "000009", **attacker.ids()}))
    )
    assert closed_by_peer(attacker.sock, timeout_s=1.0)
    still_sells(target)


@pytest.mark.parametrize(
    "tpdu_header",
    [bytes.fromhex("7000030000603100000000"), bytes.fromhex("6000030000613100000000"),
     bytes.fromhex("6000030000603109000000")],
    ids=["TPDU id 70", "application type 61", "processing requirement 9"],
)  # fmt: skip
def test_a_frame_with_a_bad_tpdu_or_header_is_dropped_alone(
    target: Target, tpdu_header: bytes
) -> None:
    """The bad frame gets no answer; the sale sent behind it in the same write is approved."""
    attacker = target.signed_on()
    sale = attacker.maced("0200", attacker.sale_fields(300, PAN))
    bad = frame(sale, tpdu=tpdu_header[:5], header=tpdu_header[5:])
    attacker.sock.sendall(bad + frame(attacker.maced("0200", attacker.sale_fields(400, PAN))))
    answer = read_answer(attacker.sock, attacker.mak)
    assert (answer.code, answer.fields[4]) == ("00", "000000000400")


@pytest.mark.parametrize(
    "message",
    [bytes.fromhex("9999") + bytes(8), bytes.fromhex("0820") + bytes.fromhex("80") + bytes(15),
     bytes.fromhex("0200") + bitmap([2, 3, 4])],
    ids=["MTI 9999", "secondary bitmap and nothing", "bitmap claiming absent fields"],
)  # fmt: skip
def test_a_body_without_ids_is_dropped_and_the_connection_goes_on(
    target: Target, message: bytes
) -> None:
    """Nobody to answer (41/42 unreadable): no answer, and the next echo is answered."""
    attacker = target.signed_on()
    attacker.sock.sendall(frame(message))
    assert "00" == attacker.echo().code


def test_a_length_that_promises_more_than_is_sent_is_cut_off_at_the_deadline(
    target: Target,
) -> None:
    """A prefix of 200 and 50 bytes: the frame's deadline (400 ms here, checked each second)
    ends the connection; other terminals trade on."""
    sock = target.connect()
    sock.sendall(b"\x00\xc8" + bytes(50))
    started = time.monotonic()
    assert closed_by_peer(sock, timeout_s=5.0)
    assert time.monotonic() - started < 3.0
    still_sells(target)


def test_a_length_shorter_than_the_frame_is_not_processed(target: Target) -> None:
    """A prefix that stops 8 bytes short (the MAC cut off): that body cannot be walked to its
    end (bitmap bit 64, no field 64), so it is dropped unprocessed; the 8 leftover ASCII bytes
    then read as a length prefix over 2,048 and the host closes the connection."""
    attacker = target.signed_on()
    sale = frame(attacker.maced("0200", attacker.sale_fields(300, PAN)))
    short = (int.from_bytes(sale[:2], "big") - 8).to_bytes(2, "big") + sale[2:]
    before = target.money()
    attacker.sock.sendall(short)
    assert closed_by_peer(attacker.sock, timeout_s=2.0)
    assert before == target.money()
    still_sells(target)
