"""An outside tester's attacks on the host over real loopback sockets.

The client (``attack_client.py``) was written from DESIGN.md alone, not from posbatch's
``wire`` or ``host``. Each attack says what DESIGN.md asks for (code, connection kept or
closed) and then checks that the host still approves a normal sale and that the store's money
did not move where it must not.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from attack_client import (
    Answer,
    Attacker,
    bitmap,
    body,
    closed_by_peer,
    connect,
    encode_field,
    frame,
    mac,
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

    def money(self, terminal_id: str = TERMINAL) -> tuple[str, str, str]:
        """Everything the store holds of a terminal's money, to compare before and after."""
        return (
            repr(self.store.transactions(terminal_id)),
            repr(self.store.batches(terminal_id)),
            repr(self.store.exceptions(terminal_id)),
        )


@pytest.fixture
def target(db_url: str, caplog: pytest.LogCaptureFixture) -> Iterator[Target]:
    caplog.set_level(logging.DEBUG)
    store = open_store(db_url, terminals=(TERMINAL, OTHER_TERMINAL))
    core = HostCore(store, clock=StepClock(), random_bytes=counting_bytes())
    limits = ServerLimits(
        frame_deadline_ms=FRAME_DEADLINE_MS, first_frame_timeout_ms=FIRST_FRAME_TIMEOUT_MS
    )
    with serving_in_thread(HostServer(core, limits=limits)) as (host, port):
        target = Target(host, port, store, [])
        yield target
        for sock in target.sockets:
            sock.close()
    store.close()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Traceback" not in text
    for pan in CARD_NUMBERS:
        for start in range(len(pan) - 11):
            assert pan[start : start + 12] not in text, "a card number reached the log"


CARD_NUMBERS = (PAN,)


def still_sells(target: Target) -> None:
    """A fresh connection signs on and a normal sale is approved, its answer MACed."""
    answer = target.signed_on(OTHER_TERMINAL).sale(100, PAN)
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


# --- probes ---------------------------------------------------------------------------------

FIELD_CASES = {
    "pan 99 digits claimed": {2: bytes.fromhex("99") + bytes.fromhex("62220212345678901280")},
    "pan with a D nibble": {2: bytes.fromhex("19") + bytes.fromhex("62220212D45678901280")},
    "pan with F nibbles": {2: bytes.fromhex("19") + bytes.fromhex("6222021234567890128F")},
    "pan 0 digits": {2: bytes.fromhex("00")},
    "amount with A nibble": {4: bytes.fromhex("00000000125A")},
    "amount 0": {4: "000000000000"},
    "stan 000000": {11: "000000"},
    "stan with nibble": {11: bytes.fromhex("00001F")},
    "expiry month 13": {14: "3013"},
    "expiry month 00": {14: "3000"},
    "expiry nibble": {14: bytes.fromhex("3A12")},
    "entry mode nibble": {22: bytes.fromhex("0F21")},
    "currency 840": {49: "840"},
    "currency abc": {49: "ABC"},
    "currency non-ascii": {49: b"\xff\xfe\x00"},
    "terminal id non-ascii": {41: b"\xff\x00\x80\x10\x00\x00\x00\x01"},
    "terminal id padded": {41: "1000001 "},
    "merchant id other": {42: "898110054110002"},
    "merchant id non-ascii": {42: b"\x00" * 15},
    "60 length 99": {60: bytes.fromhex("0099") + bytes.fromhex("220000010000")},
    "60 batch 000000": {60: "22000000000"},
    "60 batch 999999": {60: "22999999000"},
    "60 batch nibble": {60: bytes.fromhex("0011") + bytes.fromhex("2200A0010000")},
    "60.1 unknown": {60: "99000001000"},
    "60 length 0": {60: bytes.fromhex("0000")},
    "60 with sub-fields": {60: "220000010005"},
    "track 2 no separator": {35: "6222021234567890128301210100000"},
    "track 2 two separators": {35: "6222021234567890128=3012=101000"},
    "track 2 separator first": {35: "=6222021234567890128301210100"},
    "track 2 other pan": {35: "6222021234567890136=30121010000"},
    "track 2 38 digits": {35: "6222021234567890128=301210100000000000"},
    "track 2 E nibble": {35: bytes.fromhex("31") + bytes.fromhex("6222021234567890128E301210100000")},
    "field 63 length 999": {63: bytes.fromhex("0999") + b"01"},
    "field 48 on a sale": {48: "0123"},
    "field 61 on a sale": {61: "0000010000010101"},
    "pan 11 digits": {2: "62220212345"},
    "pan with spaces": {2: bytes.fromhex("19") + b"6222 0212345"},
}


@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_probe_field(target: Target, case: str) -> None:
    attacker = target.signed_on()
    before = target.money()
    fields = attacker.sale_fields(777, PAN)
    fields.update(FIELD_CASES[case])
    attacker.sock.sendall(frame(attacker.maced("0200", fields)))
    try:
        answer = read_answer(attacker.sock, attacker.mak)
        outcome = (answer.mti, answer.code, answer.mac_ok, str(answer.fields.get(63, "")))
    except (ConnectionError, TimeoutError, AssertionError, ValueError) as error:
        outcome = ("closed", repr(error))
    print("PROBE", case, outcome, before == target.money())
    still_sells(target)


def probe(name: str, attacker: Attacker, message: bytes) -> tuple[str, ...]:
    attacker.sock.sendall(frame(message))
    try:
        answer = read_answer(attacker.sock, attacker.mak)
        outcome: tuple[str, ...] = (answer.mti, answer.code, str(answer.mac_ok), str(answer.fields.get(63, "")), str(answer.fields.get(48, "")))
    except (ConnectionError, TimeoutError, AssertionError, ValueError) as error:
        outcome = ("closed", repr(error))
    print("PROBE", name, outcome)
    return outcome


def test_probe_macs(target: Target) -> None:
    a = target.signed_on()
    b = target.signed_on(OTHER_TERMINAL)
    sale = a.sale(1000, PAN)
    print("PROBE sale", sale.code)
    fields = a.sale_fields(500, PAN)
    probe("no 64", a, body("0200", fields))
    probe("zero 64", a, body("0200", {**fields, 64: bytes(8)}))
    good = a.maced("0200", fields)
    tampered = good.replace(bytes.fromhex("000000000500"), bytes.fromhex("000000000900"))
    probe("tampered", a, tampered)
    assert b.mak
    probe("other key", a, maced("0200", fields, b.mak))
    before = target.money()
    probe("good", a, good)
    probe("replay", a, good)
    print("PROBE money after replay same", before != target.money())
    mid = target.money()
    probe("replay on other conn", target.attacker(), good)
    print("PROBE money same", mid == target.money())
    same_stan = a.sale_fields(600, PAN, F11=fields[11])
    probe("same stan other amount", a, a.maced("0200", same_stan))
    rev = {**a.sale_fields(4242, PAN, F11="000500"), 39: "98"}
    probe("reversal of nothing", a, a.maced("0400", rev))
    void = a.void(1000, PAN, a.original(sale, "000001"))
    print("PROBE void", void.code)
    vv = a.void(1000, PAN, a.original(sale, f"{a.stan:06d}"))
    print("PROBE void of void", vv.code)
    sale2 = a.sale(300, PAN)
    r = a.refund(301, PAN, a.original(sale2, f"{a.stan:06d}"))
    print("PROBE refund above", r.code)
    r = a.refund(300, PAN, a.original(sale2, "000123"))
    print("PROBE refund of nothing", r.code)
    ss = a.settle(1, 1, 0, 0)
    print("PROBE settle lie", ss.code, ss.fields.get(48))
    print("PROBE money", target.money())
    st = a.settle(1, 1, 0, 0)
    print("PROBE settle again", st.code, st.fields.get(48))
    still_sells(target)


def test_probe_frames(target: Target) -> None:
    cases = {
        "length 0": b"\x00\x00",
        "length 1": b"\x00\x01\x60",
        "length 13": b"\x00\x0d" + bytes.fromhex("6000030000603100000000") + b"\x02\x00",
        "length max": b"\xff\xff" + b"\x60" * 100,
        "length 2049": b"\x08\x01" + b"\x60" * 100,
        "bad tpdu": frame(b"\x08\x20" + bytes(8), tpdu=bytes.fromhex("7000030000")),
        "bad header": frame(b"\x08\x20" + bytes(8), header=bytes.fromhex("613100000000")),
        "header req 9": frame(b"\x08\x20" + bytes(8), header=bytes.fromhex("603100900000")),
        "mti 9999": frame(bytes.fromhex("9999") + bytes(8)),
        "mti bcd junk": frame(bytes.fromhex("ABCD") + bytes(8)),
        "secondary bitmap": frame(bytes.fromhex("0820") + bytes.fromhex("80") + bytes(15)),
    }
    for name, data in cases.items():
        sock = target.connect()
        sock.sendall(data)
        sock.settimeout(3)
        try:
            got = sock.recv(4096)
            print("PROBE", name, "got", got[:40].hex(), len(got))
            got = sock.recv(4096)
            print("PROBE", name, "then", got[:40].hex())
        except TimeoutError:
            print("PROBE", name, "timeout")
        except ConnectionError as e:
            print("PROBE", name, "reset", e)
    still_sells(target)


def test_probe_bad_tpdu_then_echo(target: Target) -> None:
    a = target.signed_on()
    echo = body("0820", {11: "000009", **a.ids(), 60: f"00{a.batch_no}301"})
    for name, bad in {
        "tpdu": frame(echo, tpdu=bytes.fromhex("7000030000")),
        "header": frame(echo, header=bytes.fromhex("613100000000")),
        "req9": frame(echo, header=bytes.fromhex("603100900000")),
        "short": b"\x00\x01\x60",
        "thirteen": b"\x00\x0d" + bytes.fromhex("6000030000603100000000") + b"\x08\x20",
    }.items():
        sock = target.connect()
        start = time.monotonic()
        sock.sendall(bad + frame(echo))
        try:
            answer = read_answer(sock, None)
            print("PROBE", name, answer.mti, answer.code)
        except Exception as e:
            print("PROBE", name, "no answer", repr(e), time.monotonic() - start)


def test_probe_lifecycle(target: Target) -> None:
    a = target.signed_on()
    b = Attacker(target.connect(), TERMINAL, MERCHANT_ID, MASTER_KEY)
    b.mak, b.batch_no, b.stan = a.mak, a.batch_no, 500
    s1 = a.sale(1000, PAN); s1_stan = f"{a.stan:06d}"
    s2 = b.sale(2000, PAN); s2_stan = f"{b.stan:06d}"
    print("PROBE interleaved sales", s1.code, s2.code)
    v = b.void(1000, PAN, a.original(s1, s1_stan)); v_stan = f"{b.stan:06d}"
    print("PROBE void on other conn", v.code)
    print("PROBE void of void", a.void(1000, PAN, a.original(s1, v_stan)).code)
    print("PROBE void again", a.void(1000, PAN, a.original(s1, s1_stan)).code)
    print("PROBE void partial", a.void(500, PAN, a.original(s2, s2_stan)).code)
    print("PROBE refund of void", a.refund(100, PAN, a.original(s1, v_stan)).code)
    print("PROBE refund of voided sale", a.refund(100, PAN, a.original(s1, s1_stan)).code)
    r1 = a.refund(1500, PAN, a.original(s2, s2_stan))
    print("PROBE refund part", r1.code)
    print("PROBE refund rest+1", a.refund(501, PAN, a.original(s2, s2_stan)).code)
    print("PROBE void of refunded sale", a.void(2000, PAN, a.original(s2, s2_stan)).code)
    rev = {**a.sale_fields(2000, PAN, F11=s2_stan), 39: "98"}
    print("PROBE reversal of refunded sale", probe("rev", a, a.maced("0400", rev)))
    # wrong totals: counts right, amount wrong: host 2 sales 3000 debit; credits: void 1000 + refund 1500
    before = target.money()
    st = a.settle(3001, 2, 2500, 2)
    print("PROBE settle amounts lie", st.code, st.fields.get(48))
    up = a.upload([("00", int(s2_stan), PAN, 2000)])
    print("PROBE upload", up.code)
    end = a.upload_end(1, "207")
    print("PROBE upload end", end.code, end.fields.get(63))
    print("PROBE upload after close", a.upload([("00", int(s2_stan), PAN, 2000)]).code)
    print("PROBE end after close", a.upload_end(1, "207").code, a.upload_end(1, "202").code)
    print("PROBE settle closed again", a.settle(3001, 2, 2500, 2).code)
    print("PROBE exceptions", target.store.exceptions(TERMINAL))
    a.batch_no = "000050"
    print("PROBE settle never seen", a.settle(0, 0, 0, 0).code, a.sale(1, PAN).code)
    a.batch_no = "000002"
    print("PROBE late void", a.void(2000, PAN, a.original(s2, s2_stan, "000001")).code)
    print("PROBE late refund", a.refund(100, PAN, a.original(s2, s2_stan, "000001")).code)
    print("PROBE exceptions", target.store.exceptions(TERMINAL))
    print("PROBE batch 2 counts", a.settle(0, 0, 100, 1).code)
    still_sells(target)


def test_probe_reversal_after_void(target: Target) -> None:
    a = target.signed_on()
    s1 = a.sale(1000, PAN); s1_stan = f"{a.stan:06d}"
    print("PROBE void", a.void(1000, PAN, a.original(s1, s1_stan)).code)
    rev = {**a.sale_fields(1000, PAN, F11=s1_stan), 39: "98"}
    probe("reversal of voided sale", a, a.maced("0400", rev))
    print("PROBE txns", [(t.stan, t.kind, t.amount_fen, t.status) for t in target.store.transactions(TERMINAL)])
    st = a.settle(0, 0, 1000, 1)
    print("PROBE settle (void counted)", st.code, st.fields.get(48))
    st = a.settle(0, 0, 0, 0)
    s3 = a.sale(700, PAN); s3_stan = f"{a.stan:06d}"
    print("PROBE settle", a.settle(700, 1, 0, 0).fields.get(48))
    a.batch_no = "000002"
    v = a.void(700, PAN, a.original(s3, s3_stan, "000001"))
    print("PROBE late void in new batch", v.code, v.fields.get(63))
    print("PROBE exc", target.store.exceptions(TERMINAL))


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

F_PAD_PAN = {2: bytes.fromhex("19") + bytes.fromhex("6222021234567890128F")}
F_PAD_60 = {60: bytes.fromhex("0011") + bytes.fromhex("22000001000F")}
F_PADDED: dict[str, dict[int, bytes]] = {
    "fields 2 and 60": {**F_PAD_PAN, **F_PAD_60},
    "fields 2, 22 and 60": {**F_PAD_PAN, **F_PAD_60, 22: bytes.fromhex("F021")},
    "field 22 alone": {22: bytes.fromhex("F021")},
    "field 60 alone (a 12-digit PAN)": {2: "622202123456", **F_PAD_60},
}


@pytest.mark.parametrize("case", list(F_PADDED))
def test_a_sale_padded_with_f_is_answered_30_not_left_to_time_out(target: Target, case: str) -> None:
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
