"""A busy shop at the limits of the rules, over real sockets, with a terminal from DESIGN.md.

The client (``design_client.py``) imports nothing of posbatch: its packed-decimal fields,
framing, MAC and key unwrap are written from DESIGN.md alone, so every answer here is
checked against the contract — fields present, response codes, the MAC under the key of the
sign-on — not against the host's own encoder. The host is a real ``HostServer`` on a
loopback port in its own thread, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from design_client import (
    Answer,
    DesignTerminal,
    connect,
    decode_body,
    field48_totals,
    frame,
    read_frame,
    totals_half,
)
from host_helpers import ANSWER_TIMEOUT_S, open_store

from posbatch.host import HostCore, HostStore
from posbatch.host.issuer import IssuerRules
from posbatch.host.server import HostServer, ServerLimits
from testbed import MASTER_KEY, MERCHANT_ID, StepClock, counting_bytes, serving_in_thread

PAN = "6222021234567890128"  # Luhn-valid, approved by the default issuer
TERMINALS = tuple(f"1000{number:04d}" for number in range(1, 9))
# The fields DESIGN.md's answers carry (the request's, 39, 12/13, 37/38 of an approval, 64).
SALE_APPROVED_FIELDS = {3, 4, 11, 12, 13, 37, 38, 39, 41, 42, 49, 60, 64}
FRAME_DEADLINE_MS = 400


@dataclass
class Shop:
    host: str
    port: int
    store: HostStore
    server: HostServer
    sockets: list[socket.socket]

    def connect(self) -> socket.socket:
        sock = connect(self.host, self.port)
        self.sockets.append(sock)
        return sock

    def terminal(self, terminal_id: str = TERMINALS[0], **kwargs: int) -> DesignTerminal:
        sock = self.connect()
        return DesignTerminal(sock, terminal_id, MERCHANT_ID, MASTER_KEY, **kwargs)

    def signed_on(self, terminal_id: str = TERMINALS[0]) -> DesignTerminal:
        terminal = self.terminal(terminal_id)
        assert terminal.sign_on().code == "00"
        return terminal


def _serve(db_url: str, core_options: dict[str, object]) -> Iterator[Shop]:
    store = open_store(db_url, terminals=TERMINALS)
    core = HostCore(store, clock=StepClock(), random_bytes=counting_bytes(), **core_options)  # type: ignore[arg-type]
    limits = ServerLimits(frame_deadline_ms=FRAME_DEADLINE_MS)
    server = HostServer(core, limits=limits)
    with serving_in_thread(server) as (host, port):
        shop = Shop(host, port, store, server, [])
        yield shop
        for sock in shop.sockets:
            sock.close()
    store.close()


@pytest.fixture
def shop(db_url: str) -> Iterator[Shop]:
    yield from _serve(db_url, {})


@pytest.fixture
def rich_shop(db_url: str) -> Iterator[Shop]:
    """A host whose issuer approves up to field 4's maximum (999,999,999,999 fen)."""
    yield from _serve(db_url, {"issuer": IssuerRules(amount_limit_fen=999_999_999_999)})


def approved(answer: Answer) -> bool:
    return answer.code == "00" and answer.mac_ok is True


def pipelined_sales(terminal: DesignTerminal, amounts: list[int], pan: str = PAN) -> list[Answer]:
    """Every sale sent at once, then every answer read (the host answers in order)."""
    bodies = [terminal.sale_body(amount, pan) for amount in amounts]
    terminal.sock.sendall(b"".join(frame(body) for body in bodies))
    return [terminal.receive() for _ in bodies]


# --- the contract, byte for byte -----------------------------------------------------------


def test_sign_on_answer_is_designs(shop: Shop) -> None:
    """0810: TPDU addresses swapped, header kept, 60.2 = 000001, 62 opens under the TMK
    with both check values, no 64."""
    terminal = shop.terminal()
    answer = terminal.sign_on()
    assert (answer.code, answer.tpdu.hex(), answer.header.hex(), answer.text(60)) == (
        "00",
        "6000000003",
        "603100000000",
        "00000001003",
    )
    assert 64 not in answer.fields and terminal.mak is not None


def test_a_new_terminal_signs_on_with_no_batch_yet(shop: Shop) -> None:
    """A terminal built from DESIGN.md that holds no batch before its first sign-on sends
    60.2 = 000000: it is answered 00 with the batch the first sign-on opens, 000001 (it was
    answered 30, "batch_no 000000 is not a batch", and such a terminal could never sign on),
    and its first sale in that batch is approved."""
    terminal = shop.terminal()
    terminal.batch_no = 0
    answer = terminal.sign_on()
    assert (answer.code, answer.text(60)) == ("00", "00000001003")
    assert approved(terminal.sale(1_250, PAN))


def test_one_fen_sale_is_approved_with_designs_fields(shop: Shop) -> None:
    """A 1-fen sale: 0210, 00, the fields DESIGN.md lists, MAC right under the new MAK."""
    terminal = shop.signed_on()
    answer = terminal.sale(1, PAN)
    assert (answer.mti, approved(answer), set(answer.fields)) == (
        "0210",
        True,
        SALE_APPROVED_FIELDS,
    )
    assert (answer.text(4), answer.text(11), answer.text(60)) == (
        "000000000001",
        "000002",
        "22000001000",
    )


# --- a full batch ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_batch_refuses_the_next_sale_and_settles_after_a_full_upload(
    shop: Shop,
) -> None:
    """999 sales fill the batch's debit count; the 1,000th is 95 (63 R=FULL, F=…); the
    settlement with other totals is answered with the host's (999 debits) and code 2; the
    upload of all 999 records in 125 messages and 207 close the batch, and the next batch
    takes the refused sale."""
    terminal = shop.signed_on()
    answers = pipelined_sales(terminal, [100] * 999)
    assert all(approved(answer) for answer in answers)
    full = terminal.sale(100, PAN)
    assert (full.code, full.mac_ok, full.detail.get("R"), full.detail.get("F")) == (
        "95",
        True,
        "FULL",
        "DOMESTIC_DEBIT_COUNT",
    )
    settled = terminal.settle(field48_totals(totals_half(99_800, 998, 0, 0)))
    assert (settled.code, settled.mac_ok, settled.text(48)) == (
        "00",
        True,
        totals_half(99_900, 999, 0, 0, 2) + totals_half(0, 0, 0, 0, 2),
    )
    records = [(int(answer.text(11)), PAN, 100) for answer in answers]
    acks = {terminal.upload(records[i : i + 8]).code for i in range(0, len(records), 8)}
    end = terminal.upload_end(len(records))
    assert (acks, end.code, end.mac_ok) == ({"00"}, "00", True)
    assert shop.store.exceptions(TERMINALS[0]) == []
    terminal.batch_no = 2
    assert approved(terminal.sale(100, PAN))


@pytest.mark.slow
def test_a_full_batch_settles_balanced(shop: Shop) -> None:
    """999 sales and 999 refunds: both counters full, balanced at once (code 1)."""
    terminal = shop.signed_on()
    sales = pipelined_sales(terminal, [100] * 999)
    bodies = [terminal.refund_body(1, PAN, 1, int(sale.text(11))) for sale in sales]
    terminal.sock.sendall(b"".join(frame(body) for body in bodies))
    refunds = [terminal.receive() for _ in bodies]
    assert all(approved(answer) for answer in sales + refunds)
    assert terminal.refund(1, PAN, 1, int(sales[0].text(11))).code == "95"
    settled = terminal.settle(field48_totals(totals_half(99_900, 999, 999, 999)))
    assert (settled.code, settled.text(48)[30]) == ("00", "1")


# --- amounts at the limits -------------------------------------------------------------------


def test_the_maximum_amount_is_approved_and_the_batch_total_never_overflows(
    rich_shop: Shop,
) -> None:
    """999,999,999,999 fen fits field 4 and field 48 alone; one fen more in the same batch
    would not fit n12: 95 F=DOMESTIC_DEBIT_AMOUNT, and the batch settles balanced."""
    terminal = rich_shop.signed_on()
    assert approved(terminal.sale(999_999_999_999, PAN))
    more = terminal.sale(1, PAN)
    assert (more.code, more.mac_ok, more.detail.get("F")) == ("95", True, "DOMESTIC_DEBIT_AMOUNT")
    settled = terminal.settle(field48_totals(totals_half(999_999_999_999, 1, 0, 0)))
    assert (settled.code, settled.text(48)[:31]) == (
        "00",
        totals_half(999_999_999_999, 1, 0, 0, 1),
    )


def test_over_field_4_is_a_format_error_not_a_crash(shop: Shop) -> None:
    """Field 4 with 13 digits cannot be sent (n12); amount 0 is 13, over the issuer's
    limit 61 — each answered and MACed."""
    terminal = shop.signed_on()
    codes = [terminal.sale(amount, PAN) for amount in (0, 5_000_001, 5_000_000)]
    assert [(a.code, a.mac_ok) for a in codes] == [("13", True), ("61", True), ("00", True)]


def test_a_net_negative_day_settles(shop: Shop) -> None:
    """Sales in batch 1, refunds of all of them (and more sales refunded) in batch 2: batch 2
    is net negative (credits > debits) and settles balanced."""
    terminal = shop.signed_on()
    sales = pipelined_sales(terminal, [10_000] * 20)
    totals = field48_totals(totals_half(200_000, 20, 0, 0))
    assert terminal.settle(totals).text(48)[30] == "1"
    terminal.batch_no = 2
    refunds = [terminal.refund(10_000, PAN, 1, int(sale.text(11))) for sale in sales]
    small = terminal.sale(1, PAN)
    assert all(approved(answer) for answer in [*refunds, small])
    settled = terminal.settle(field48_totals(totals_half(1, 1, 200_000, 20)))
    assert (settled.code, settled.text(48)[:31]) == ("00", totals_half(1, 1, 200_000, 20, 1))


# --- STAN and batch number wraps ---------------------------------------------------------------


def test_stan_wraps_inside_one_batch_and_the_batch_uploads(shop: Shop) -> None:
    """STANs 999998, 999999, 000001, 000002 in one batch: all approved, a full upload with
    those STANs closes it without exceptions."""
    terminal = shop.signed_on()
    terminal.stan = 999_997
    answers = [terminal.sale(100 + i, PAN) for i in range(4)]
    assert [a.text(11) for a in answers] == ["999998", "999999", "000001", "000002"]
    assert all(approved(answer) for answer in answers)
    settled = terminal.settle(field48_totals(totals_half(1, 1, 0, 0)))
    assert settled.text(48)[30] == "2"
    records = [(int(a.text(11)), PAN, 100 + i) for i, a in enumerate(answers)]
    assert terminal.upload(records).code == "00"
    assert terminal.upload_end(4).code == "00"
    assert shop.store.exceptions(TERMINALS[0]) == []


def test_the_same_stan_in_a_new_batch_is_a_new_sale(shop: Shop) -> None:
    """A STAN reused in the next batch (after a wrap, or a terminal that restarts its STAN
    at settlement) is a new sale, not a duplicate of the one in the closed batch."""
    terminal = shop.signed_on()
    first = terminal.sale(500, PAN, stan="000100")
    assert terminal.settle(field48_totals(totals_half(500, 1, 0, 0))).text(48)[30] == "1"
    terminal.batch_no = 2
    again = terminal.sale(500, PAN, stan="000100")
    assert approved(first) and approved(again) and first.text(37) != again.text(37)
    assert [t.batch_no for t in shop.store.transactions(TERMINALS[0])] == [1, 2]


def test_batch_number_wraps_at_settlement(shop: Shop) -> None:
    """Settling batch 999999 opens 000001 (not 1,000,000): the sign-on says so, and a sale in
    the new batch 000001 is approved."""
    terminal = shop.signed_on()
    with shop.store.transaction() as tx:
        tx.set_batch(shop.store.batches(TERMINALS[0])[0].batch_id, batch_no=999_999)
    terminal.batch_no = 999_999
    assert approved(terminal.sale(700, PAN))
    settled = terminal.settle(field48_totals(totals_half(700, 1, 0, 0)))
    assert (settled.code, settled.text(60), settled.text(48)[30]) == ("00", "00999999201", "1")
    again = shop.terminal(stan=terminal.stan)
    assert (again.sign_on().text(60), again.batch_no) == ("00000001003", 1)
    assert approved(again.sale(100, PAN))


# --- card numbers at the limits ----------------------------------------------------------------


def _luhn(body: str) -> str:
    """``body`` with its Luhn check digit."""
    total = 0
    for index, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str(-total % 10)


@pytest.mark.parametrize(
    ("pan", "expected"),
    [
        (_luhn("62220212345"), "00"),  # 12 digits
        (_luhn("622202123456789012"), "00"),  # 19 digits
        (_luhn("91234567890123"), "00"),  # a BIN starting with 9
        (_luhn("02220212345678"), "14"),  # starting with 0: batch upload could not carry it
        (_luhn("622202123456789012")[:-1] + "0", "14"),  # 19 digits, check digit wrong
    ],
)
def test_card_numbers_at_the_limits(shop: Shop, pan: str, expected: str) -> None:
    """12 and 19 digits, a BIN of 9 are approved; a leading 0 or a bad check digit is 14."""
    terminal = shop.signed_on()
    answer = terminal.sale(100, pan)
    assert (answer.code, answer.mac_ok) == (expected, True)


@pytest.mark.parametrize(
    ("length", "expected"),
    [(11, "30"), (20, "30")],
)
def test_card_numbers_outside_field_2(shop: Shop, length: int, expected: str) -> None:
    """11 and 20 digits cannot be a card in this profile: 30 (format), MACed."""
    terminal = shop.signed_on()
    answer = terminal.exchange(terminal.sale_body(100, "6" * length))
    assert (answer.code, answer.mac_ok) == (expected, True)


def test_a_19_digit_card_uploads_and_closes_the_batch(shop: Shop) -> None:
    """Batch upload carries a 19-digit PAN as n20 (one zero of fill) and a 12-digit one with
    eight: both match the approvals, no exception."""
    terminal = shop.signed_on()
    long_pan, short_pan = _luhn("622202123456789012"), _luhn("62220212345")
    first, second = terminal.sale(100, long_pan), terminal.sale(200, short_pan)
    assert terminal.settle(field48_totals(totals_half(1, 1, 0, 0))).text(48)[30] == "2"
    records = [(int(first.text(11)), long_pan, 100), (int(second.text(11)), short_pan, 200)]
    assert terminal.upload(records).code == "00"
    assert terminal.upload_end(2).code == "00"
    assert shop.store.exceptions(TERMINALS[0]) == []


@pytest.mark.parametrize("expiry", [None, "3012"])
def test_track_2_with_and_without_field_14(shop: Shop, expiry: str | None) -> None:
    """A swiped sale (22 = 021, track 2 with its own expiry) is approved with or without 14."""
    terminal = shop.signed_on()
    answer = terminal.sale(100, PAN, expiry=expiry, track2=f"{PAN}=30121010000000000")
    assert (answer.code, answer.mac_ok) == ("00", True)


def test_track_2_alone_without_field_2(shop: Shop) -> None:
    """A swiped sale that carries only track 2 (no field 2): the host reads its PAN, or
    refuses it with a code — never a crash, always a MACed answer."""
    terminal = shop.signed_on()
    answer = terminal.sale(100, None, expiry=None, track2=f"{PAN}=30121010000000000")
    assert answer.mac_ok is True and answer.code in {"00", "30"}


def test_an_expired_track_2_is_54_even_with_a_good_field_14(shop: Shop) -> None:
    """Track 2's expiry is the card's own: expired there → 54 whatever field 14 says."""
    terminal = shop.signed_on()
    answer = terminal.sale(100, PAN, expiry="3012", track2=f"{PAN}=20011010000000000")
    assert (answer.code, answer.mac_ok) == ("54", True)


# --- many terminals, pipelining, split segments, idle and silent peers ----------------------


def test_every_terminal_of_a_merchant_settles_at_the_same_moment(shop: Shop) -> None:
    """Eight terminals of one merchant sell, then send 0500 at the same moment: every one is
    balanced and every batch number advances."""
    terminals = [shop.signed_on(terminal_id) for terminal_id in TERMINALS]
    for index, terminal in enumerate(terminals):
        assert all(approved(a) for a in pipelined_sales(terminal, [100 + index] * 5))
    bodies = [
        terminal.body(
            "0500",
            {
                11: terminal.next_stan(),
                48: field48_totals(totals_half(5 * (100 + index), 5, 0, 0)),
                49: "156",
                60: f"00{terminal.batch_no:06d}201",
            },
        )
        for index, terminal in enumerate(terminals)
    ]
    barrier = threading.Barrier(len(terminals))

    def settle(pair: tuple[DesignTerminal, bytes]) -> Answer:
        terminal, body = pair
        barrier.wait(ANSWER_TIMEOUT_S)
        return terminal.exchange(body)

    with ThreadPoolExecutor(len(terminals)) as pool:
        answers = list(pool.map(settle, zip(terminals, bodies, strict=True)))
    assert [(a.code, a.mac_ok, a.text(48)[30]) for a in answers] == [("00", True, "1")] * 8
    assert {shop.store.terminal(t).batch_no for t in TERMINALS} == {2}  # type: ignore[union-attr]


def test_two_requests_pipelined_on_one_connection(shop: Shop) -> None:
    """A sale and a second sale sent without waiting: two answers, in order, each MACed."""
    terminal = shop.signed_on()
    first, second = pipelined_sales(terminal, [111, 222])
    assert [(a.text(4), approved(a)) for a in (first, second)] == [
        ("000000000111", True),
        ("000000000222", True),
    ]


def test_a_request_split_byte_by_byte(shop: Shop) -> None:
    """A sale written one byte per TCP segment is answered as if sent whole."""
    terminal = shop.signed_on()
    data = frame(terminal.sale_body(333, PAN))
    for byte in data:
        terminal.sock.send(bytes([byte]))
        time.sleep(0.001)
    answer = terminal.receive()
    assert (answer.text(4), approved(answer)) == ("000000000333", True)


def test_a_connection_held_open_idle_still_works(shop: Shop) -> None:
    """Signed on, then quiet for a few sweeps of the server: the next sale is answered."""
    terminal = shop.signed_on()
    time.sleep(1.5)  # the server's sweeper runs once a second
    assert approved(terminal.sale(100, PAN))


def test_a_length_prefix_and_then_nothing_is_cut_off_and_others_go_on(shop: Shop) -> None:
    """A peer that sends a length prefix and nothing more is disconnected after the frame
    deadline; a terminal beside it is served all the while."""
    silent = shop.connect()
    silent.sendall(b"\x00\x40")
    terminal = shop.signed_on()
    assert approved(terminal.sale(100, PAN))
    started = time.monotonic()
    assert silent.recv(1) == b""  # closed by the host, nothing answered
    waited_s = time.monotonic() - started
    assert waited_s < FRAME_DEADLINE_MS / 1000 + 2.5
    assert approved(terminal.sale(100, PAN))


@pytest.mark.slow
def test_a_thousand_connections_opened_and_dropped(shop: Shop) -> None:
    """1,000 connections opened and dropped (some closed at once, some reset, some after a
    partial frame): none of them keeps a slot, and a terminal is served afterwards."""
    for index in range(1_000):
        sock = socket.create_connection((shop.host, shop.port), timeout=ANSWER_TIMEOUT_S)
        if index % 3 == 1:
            reset = struct.pack("ii", 1, 0)  # linger on, 0 s: close() sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
        elif index % 3 == 2:
            sock.sendall(b"\x00\x40\x60")
        sock.close()
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while len(shop.server.connections) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(shop.server.connections) == 0
    terminals = [shop.signed_on() for _ in range(10)]
    assert all(approved(t.sale(100, PAN)) for t in terminals)


def test_decode_of_each_answer_is_exact(shop: Shop) -> None:
    """Every answer body decodes to its end with DESIGN.md's table (no stray bytes)."""
    terminal = shop.signed_on()
    terminal.send(terminal.sale_body(100, PAN))
    whole = read_frame(terminal.sock)
    mti, fields = decode_body(whole[11:])
    assert (mti, fields[39]) == ("0210", "00")


# --- foreign cards: the half of field 48 a card counts in --------------------------------------

VISA = "4111111111111111"


def test_a_foreign_card_counts_in_the_second_half(shop: Shop) -> None:
    """A Visa sale counts in the foreign half (docs/wire.md: 62… and 9… domestic): totals
    split that way are balanced."""
    terminal = shop.signed_on()
    assert approved(terminal.sale(100, VISA)) and approved(terminal.sale(200, PAN))
    totals = field48_totals(totals_half(200, 1, 0, 0), totals_half(100, 1, 0, 0))
    settled = terminal.settle(totals)
    assert (settled.code, settled.text(48)[30], settled.text(48)[61]) == ("00", "1", "1")


def test_a_foreign_card_in_the_domestic_half_uploads_without_an_exception(shop: Shop) -> None:
    """A terminal that puts every card in the domestic half is answered code 2 with the
    host's split; its upload (card type 00 for the Visa) closes the batch, no exception."""
    terminal = shop.signed_on()
    visa, unionpay = terminal.sale(100, VISA), terminal.sale(200, PAN)
    settled = terminal.settle(field48_totals(totals_half(300, 2, 0, 0)))
    assert settled.text(48) == totals_half(200, 1, 0, 0, 2) + totals_half(100, 1, 0, 0, 2)
    records = [(int(visa.text(11)), VISA, 100), (int(unionpay.text(11)), PAN, 200)]
    assert (terminal.upload(records).code, terminal.upload_end(2).code) == ("00", "00")
    assert shop.store.exceptions(TERMINALS[0]) == []


# --- one write, many requests: the group's rules see what the group did ----------------------


def _void_body(terminal: DesignTerminal, original_stan: int, amount_fen: int) -> bytes:
    fields: dict[int, str | bytes] = {
        2: PAN,
        3: "200000",
        4: f"{amount_fen:012d}",
        11: terminal.next_stan(),
        22: "012",
        25: "00",
        49: "156",
        60: f"23{terminal.batch_no:06d}000",
        61: f"{terminal.batch_no:06d}{original_stan:06d}1207",
    }
    return terminal.body("0200", fields)


def _pipelined(terminal: DesignTerminal, bodies: list[bytes]) -> list[str]:
    terminal.sock.sendall(b"".join(frame(body) for body in bodies))
    answers = [terminal.receive() for _ in bodies]
    assert all(answer.mac_ok for answer in answers)
    return [answer.code for answer in answers]


def test_pipelined_requests_see_each_other(shop: Shop) -> None:
    """In one write: a full refund then one fen more (13); a void twice (12); a void then a
    refund of the voided sale (12); a sale then its exact repeat (the same answer, once)."""
    terminal = shop.signed_on()
    stans = [int(terminal.sale(1_000, PAN).text(11)) for _ in range(3)]
    refunds = [
        terminal.refund_body(1_000, PAN, 1, stans[0]),
        terminal.refund_body(1, PAN, 1, stans[0]),
    ]
    voids = [_void_body(terminal, stans[1], 1_000), _void_body(terminal, stans[1], 1_000)]
    void_refund = [_void_body(terminal, stans[2], 1_000), terminal.refund_body(5, PAN, 1, stans[2])]
    sale = terminal.sale_body(77, PAN)
    codes = [_pipelined(terminal, pair) for pair in (refunds, voids, void_refund, [sale, sale])]
    assert codes == [["00", "13"], ["00", "12"], ["00", "12"], ["00", "00"]]
    assert shop.store.count_transactions(TERMINALS[0]) == 3 + 2 + 2 + 2 + 1


@pytest.mark.slow
def test_the_thousandth_sale_of_one_write_is_95(shop: Shop) -> None:
    """1,005 sales in one write: 999 approved, then 95 — the count is checked inside the
    host's group, not only between groups."""
    terminal = shop.signed_on()
    codes = _pipelined(terminal, [terminal.sale_body(100, PAN) for _ in range(1_005)])
    assert (codes.count("00"), codes[999:]) == (999, ["95"] * 6)


def test_the_amount_limit_holds_inside_one_write(rich_shop: Shop) -> None:
    """Three sales of 5,000,000,000.00 CNY in one write: the second would overflow n12 — 95,
    and so the third."""
    terminal = rich_shop.signed_on()
    codes = _pipelined(terminal, [terminal.sale_body(500_000_000_000, PAN) for _ in range(3)])
    assert codes == ["00", "95", "95"]


@pytest.mark.slow
def test_a_thousand_silent_connections_do_not_keep_a_terminal_out(shop: Shop) -> None:
    """1,000 connections held open and silent from one address: a terminal from the same
    address still signs on and sells (a silent connection gives up its place)."""
    held = [shop.connect() for _ in range(1_000)]
    terminal = shop.signed_on()
    assert approved(terminal.sale(100, PAN))
    assert len(held) == 1_000


def test_a_half_closed_connection_gets_its_answers_then_is_closed(shop: Shop) -> None:
    """A terminal (or a one-shot tool) that sends two sales and closes its sending side
    (``shutdown(SHUT_WR)``) still reads both answers, then the host closes. Before, the host
    closed at the peer's end of file: both sales were committed, their answers dropped, and
    the terminal reversed two approved sales."""
    terminal = shop.signed_on()
    terminal.sock.sendall(frame(terminal.sale_body(100, PAN)) + frame(terminal.sale_body(200, PAN)))
    terminal.sock.shutdown(socket.SHUT_WR)
    answers = [terminal.receive(), terminal.receive()]
    assert [(a.text(4), approved(a)) for a in answers] == [
        ("000000000100", True),
        ("000000000200", True),
    ]
    assert terminal.sock.recv(1) == b""  # then the host closes


def test_a_half_close_with_nothing_owed_closes_at_once(shop: Shop) -> None:
    """A peer that half-closes with no request in flight (and one unfinished frame, which can
    never complete now) is closed at once: no slot kept until the idle limit."""
    terminal = shop.signed_on()
    terminal.sock.sendall(b"\x00\x40\x60")
    terminal.sock.shutdown(socket.SHUT_WR)
    started = time.monotonic()
    assert terminal.sock.recv(1) == b""
    assert time.monotonic() - started < 1.0
