"""Where terminals and hosts disagree in real life (批次号错误), driven by a terminal written
from DESIGN.md alone (``design_client.py``) against a real ``HostServer`` on loopback.

Each test is one flow a third-party terminal meets at the end of the day: settlement out of
balance and batch upload, a settlement retried after its answer was lost, a settlement of
a batch the host already closed, a sign-on while a batch is open or uploading, a batch
number behind or ahead (across 999999 → 000001), STAN wrap during upload, an upload cut
off and resumed on a new connection, duplicate and unknown upload records. Every answer is
checked against DESIGN.md's bytes: MTI, TPDU swap, 39, 48, 60, 63 and the MAC.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from design_client import (
    Answer,
    DesignTerminal,
    connect,
    field48_totals,
    totals_half,
)
from host_helpers import open_store

from posbatch.host import HostCore, HostStore
from posbatch.host.server import HostServer
from testbed import MASTER_KEY, MERCHANT_ID, StepClock, counting_bytes, serving_in_thread

PAN = "6222021234567890128"  # Luhn-valid, approved by the default issuer
OTHER_PAN = "6222020000000000006"  # Luhn-valid too
TERMINAL = "10000001"
SWAPPED_TPDU = bytes.fromhex("6000000003")  # the request's 6000030000, addresses swapped


@dataclass
class Host:
    host: str
    port: int
    store: HostStore
    sockets: list[socket.socket]

    def terminal(self, **kwargs: int) -> DesignTerminal:
        sock = connect(self.host, self.port)
        self.sockets.append(sock)
        return DesignTerminal(sock, TERMINAL, MERCHANT_ID, MASTER_KEY, **kwargs)

    def signed_on(self, **kwargs: int) -> DesignTerminal:
        terminal = self.terminal(**kwargs)
        assert terminal.sign_on().code == "00"
        return terminal

    def set_batch_no(self, batch_no: int) -> None:
        with self.store.transaction() as tx:
            tx.set_batch(self.store.batches(TERMINAL)[0].batch_id, batch_no=batch_no)

    def exception_kinds(self) -> list[str]:
        return sorted(record.kind for record in self.store.exceptions(TERMINAL))


@pytest.fixture
def host(db_url: str) -> Iterator[Host]:
    store = open_store(db_url, terminals=(TERMINAL,))
    core = HostCore(store, clock=StepClock(), random_bytes=counting_bytes())
    with serving_in_thread(HostServer(core)) as (address, port):
        served = Host(address, port, store, [])
        yield served
        for sock in served.sockets:
            sock.close()
    store.close()


def designs(answer: Answer, mti: str, code: str) -> None:
    """An answer as DESIGN.md writes it: the response MTI, TPDU swapped, header application
    type 60, the code, and a MAC that verifies under the sign-on's MAK."""
    assert (answer.mti, answer.code, answer.tpdu, answer.header[:1]) == (
        mti,
        code,
        SWAPPED_TPDU,
        b"\x60",
    )
    assert answer.mac_ok is True


def requirement(answer: Answer) -> str:
    """The header's processing requirement: DESIGN.md's 60 + version (2) + status (1) +
    requirement (1) + reserved (6), so digit 6 of 12."""
    return answer.header.hex()[5]


def sales(terminal: DesignTerminal, *amounts: int, pan: str = PAN) -> list[tuple[int, str, int]]:
    """Approved sales, as upload records (STAN, PAN, amount)."""
    records = []
    for amount in amounts:
        answer = terminal.sale(amount, pan)
        designs(answer, "0210", "00")
        records.append((int(answer.text(11)), pan, amount))
    return records


def unbalanced(terminal: DesignTerminal, claimed_fen: int, claimed_count: int) -> Answer:
    return terminal.settle(field48_totals(totals_half(claimed_fen, claimed_count, 0, 0)))


# --- out of balance → upload → 207 ----------------------------------------------------------


def test_out_of_balance_uploads_and_207_closes_and_advances(host: Host) -> None:
    """0500 with wrong totals: 0510 00 with the host's totals and code 2 in 48, 60 as sent;
    nine records go in two 0320/201 (8 + 1), each 0330 00; 0320/207 with n4 = 0009 is 0330 00;
    the host's batch is then 000002 (sign-on 60.2), with no exception."""
    terminal = host.signed_on()
    records = sales(terminal, *range(101, 110))
    settled = unbalanced(terminal, 1, 1)
    designs(settled, "0510", "00")
    assert settled.text(48) == totals_half(945, 9, 0, 0, 2) + totals_half(0, 0, 0, 0, 2)
    assert settled.text(60) == "00000001201"
    first, second = terminal.upload(records[:8]), terminal.upload(records[8:])
    designs(first, "0330", "00")
    designs(second, "0330", "00")
    assert first.text(60)[:8] == second.text(60)[:8] == "00000001"
    end = terminal.upload_end(9)
    designs(end, "0330", "00")
    assert end.text(60) == "00000001207"
    again = host.terminal(stan=terminal.stan)
    assert again.sign_on().text(60)[2:8] == "000002"
    assert host.exception_kinds() == []


def test_settlement_retried_after_a_lost_answer_gets_the_same_answer(host: Host) -> None:
    """The 0510 lost: the same 0500 sent again (same STAN, or a new one) is answered the same,
    code 1 and 60.2 = the closed batch, never 77; the batch advances once."""
    terminal = host.signed_on()
    sales(terminal, 500, 700)
    totals = field48_totals(totals_half(1200, 2, 0, 0))
    first = terminal.settle(totals)
    designs(first, "0510", "00")
    terminal.send(terminal.sent[-1])  # the same bytes again: the answer was lost
    repeat = terminal.receive()
    retried = terminal.settle(totals)  # a new STAN
    for answer in (repeat, retried):
        designs(answer, "0510", "00")
        assert (answer.text(48), answer.text(60)[:8]) == (first.text(48), "00000001")
    assert first.text(48)[30] == first.text(48)[61] == "1"
    again = host.terminal(stan=terminal.stan)
    assert again.sign_on().text(60)[2:8] == "000002"


def test_an_unbalanced_settlement_retried_during_upload_gets_code_2_again(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, 300)
    first = unbalanced(terminal, 1, 1)
    retried = unbalanced(terminal, 1, 1)
    designs(retried, "0510", "00")
    assert retried.text(48) == first.text(48)
    designs(terminal.upload(records), "0330", "00")
    designs(terminal.upload_end(1), "0330", "00")
    after = unbalanced(terminal, 1, 1)  # closed by upload now: still the same answer
    designs(after, "0510", "00")
    assert after.text(48) == first.text(48)
    assert host.exception_kinds() == []


def test_upload_end_202_after_balanced_is_00_and_changes_nothing(host: Host) -> None:
    terminal = host.signed_on()
    sales(terminal, 400)
    designs(terminal.settle(field48_totals(totals_half(400, 1, 0, 0))), "0510", "00")
    end = terminal.upload_end(0, after_balanced=True)
    designs(end, "0330", "00")
    assert host.exception_kinds() == []
    terminal.batch_no = 2
    designs(terminal.sale(100, PAN), "0210", "00")


# --- sign-on while a batch is open or uploading --------------------------------------------


def test_sign_on_while_a_batch_is_open_names_it(host: Host) -> None:
    terminal = host.signed_on()
    sales(terminal, 100)
    again = host.terminal(stan=terminal.stan, batch_no=7)  # a terminal that lost its counter
    answer = again.sign_on()
    assert (answer.mti, answer.code, answer.tpdu, 64 in answer.fields) == (
        "0810",
        "00",
        SWAPPED_TPDU,
        False,
    )
    assert answer.text(60)[:8] == "00000001"
    assert (answer.detail["B"], answer.detail["S"], "R" not in answer.detail) == (
        "000001",
        "OPEN",
        True,
    )
    designs(again.sale(100, PAN), "0210", "00")  # the open batch goes on


def test_sign_on_while_uploading_asks_to_settle(host: Host) -> None:
    terminal = host.signed_on()
    sales(terminal, 100)
    unbalanced(terminal, 1, 1)
    again = host.terminal(stan=terminal.stan)
    answer = again.sign_on()
    assert (answer.code, answer.text(60)[2:8], answer.detail["S"]) == ("00", "000001", "UPLOADING")
    assert requirement(answer) == "5"
    sale = again.sale(100, PAN)  # a new sale while batch 1 waits for its upload
    designs(sale, "0210", "77")
    assert (sale.detail["R"], sale.detail["S"], requirement(sale)) == ("CLOSED", "UPLOADING", "5")


# --- batch number behind / ahead, across the wrap -----------------------------------------


@pytest.mark.parametrize(
    ("host_batch", "terminal_batch", "why"),
    [
        (5, 4, "BEHIND"),
        (5, 6, "AHEAD"),
        (1, 999_999, "BEHIND"),
        (999_999, 1, "AHEAD"),
    ],
)
def test_a_batch_number_out_of_step_is_77_with_why(
    host: Host, host_batch: int, terminal_batch: int, why: str
) -> None:
    terminal = host.signed_on()
    host.set_batch_no(host_batch)
    answer = terminal.sale(100, PAN, batch_no=terminal_batch)
    designs(answer, "0210", "77")
    assert answer.text(60)[2:8] == f"{terminal_batch:06d}"
    assert (answer.detail["R"], answer.detail["B"], answer.detail["S"]) == (
        why,
        f"{host_batch:06d}",
        "OPEN",
    )
    assert requirement(answer) == "3"
    terminal.batch_no = terminal_batch
    settled = unbalanced(terminal, 100, 1)
    designs(settled, "0510", "77")
    assert settled.detail["R"] == why
    assert host.store.transactions(TERMINAL) == []


def test_settlement_of_a_closed_batch_after_the_next_opened_is_not_77(host: Host) -> None:
    """The 0510 of batch 1 lost, the line dropped: the terminal reconnects, signs on (60.2 =
    000002, 63 L=000001), a sale is made in batch 2, and the terminal — still unsure of batch
    1 — sends its 0500 for batch 1 again under the new keys: the stored answer (code 1), not
    77 R=BEHIND, and batch 2 is left as it was."""
    terminal = host.signed_on()
    sales(terminal, 250)
    totals = field48_totals(totals_half(250, 1, 0, 0))
    first = terminal.settle(totals)
    terminal.sock.close()
    again = host.terminal(stan=terminal.stan)
    answer = again.sign_on()
    assert (answer.text(60)[2:8], answer.detail["S"], answer.detail["L"]) == (
        "000002",
        "OPEN",
        "000001",
    )
    assert answer.detail.get("Q") == "BALANCED"
    sales(again, 900)
    again.batch_no = 1
    repeat = again.settle(totals)
    designs(repeat, "0510", "00")
    assert (repeat.text(48), repeat.text(60)) == (first.text(48), "00000001201")
    again.batch_no = 2
    designs(again.settle(field48_totals(totals_half(900, 1, 0, 0))), "0510", "00")


def test_a_new_sale_in_a_closed_batch_is_77_closed_or_behind(host: Host) -> None:
    terminal = host.signed_on()
    sales(terminal, 250)
    terminal.settle(field48_totals(totals_half(250, 1, 0, 0)))
    late = terminal.sale(300, PAN)
    designs(late, "0210", "77")
    # DESIGN.md's reasons include both "behind" and "batch already closed": the host names
    # the more precise one when it holds the batch named, closed (docs/host.md).
    assert (late.detail["R"], late.detail["B"], late.detail["S"]) == ("CLOSED", "000002", "OPEN")
    assert (late.detail["L"], late.detail["Q"]) == ("000001", "BALANCED")


# --- upload: STAN wrap, interrupted and resumed, duplicates, unknown --------------------------


def test_stan_wraps_during_upload(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, *range(200, 210))
    unbalanced(terminal, 1, 1)
    terminal.stan = 999_998  # the upload messages take 999999, 000001 and the 207 000002
    first, second = terminal.upload(records[:8]), terminal.upload(records[8:])
    assert (first.text(11), second.text(11)) == ("999999", "000001")
    designs(first, "0330", "00")
    designs(second, "0330", "00")
    end = terminal.upload_end(10)
    designs(end, "0330", "00")
    assert host.exception_kinds() == []


def test_an_upload_cut_off_resumes_on_a_new_connection(host: Host) -> None:
    """Three records acknowledged, then the line drops while the fourth message is on its
    way (sent, no answer read); the terminal reconnects, signs on (batch 000001, UPLOADING),
    sends the unacknowledged message again and the rest, and 207 with the total closes."""
    terminal = host.signed_on()
    records = sales(terminal, *range(10, 30))
    unbalanced(terminal, 1, 1)
    designs(terminal.upload(records[:8]), "0330", "00")
    terminal.send(_upload_body(terminal, records[8:16]))
    terminal.sock.close()
    resumed = host.terminal(stan=terminal.stan)
    answer = resumed.sign_on()
    assert (answer.text(60)[2:8], answer.detail["S"]) == ("000001", "UPLOADING")
    designs(resumed.upload(records[8:16]), "0330", "00")
    designs(resumed.upload(records[16:]), "0330", "00")
    designs(resumed.upload_end(20), "0330", "00")
    assert host.exception_kinds() == []
    assert host.terminal(stan=resumed.stan).sign_on().text(60)[2:8] == "000002"


def _upload_body(terminal: DesignTerminal, records: list[tuple[int, str, int]]) -> bytes:
    data = f"{len(records):02d}" + "".join(
        f"00{stan:06d}{pan:0>20}{amount:012d}" for stan, pan, amount in records
    )
    return terminal.body(
        "0320", {11: terminal.next_stan(), 48: data, 60: f"00{terminal.batch_no:06d}201"}
    )


def test_duplicate_upload_messages_count_once(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, 10, 20, 30)
    unbalanced(terminal, 1, 1)
    designs(terminal.upload(records), "0330", "00")
    terminal.send(terminal.sent[-1])  # the very same frame again
    designs(terminal.receive(), "0330", "00")
    designs(terminal.upload(records[1:]), "0330", "00")  # again under a new STAN
    designs(terminal.upload_end(3), "0330", "00")
    assert host.exception_kinds() == []


def test_upload_of_a_transaction_the_host_never_saw_is_an_exception(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, 10, 20)
    unbalanced(terminal, 1, 1)
    ghost = (records[-1][0] + 50, OTHER_PAN, 999)
    designs(terminal.upload([*records, ghost]), "0330", "00")
    designs(terminal.upload_end(3), "0330", "00")
    assert host.exception_kinds() == ["terminal-only"]
    assert host.terminal(stan=terminal.stan).sign_on().text(60)[2:8] == "000002"


def test_a_host_only_transaction_missing_from_the_upload_is_an_exception(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, 10, 20)
    unbalanced(terminal, 10, 1)
    designs(terminal.upload(records[:1]), "0330", "00")
    designs(terminal.upload_end(1), "0330", "00")
    assert host.exception_kinds() == ["host-only"]


def test_upload_records_before_settlement_are_refused(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, 10)
    answer = terminal.upload(records)
    assert (answer.mti, answer.mac_ok) == ("0330", True)
    assert answer.code != "00"
    end = terminal.upload_end(1)
    assert end.code != "00"
    designs(terminal.settle(field48_totals(totals_half(10, 1, 0, 0))), "0510", "00")


def test_upload_messages_for_a_closed_batch_are_00_and_change_nothing(host: Host) -> None:
    """DESIGN.md promises 00 to a 0320/202 for a batch closed balanced. The host reads its
    batch-number rule so that every 0320 naming a batch it closed — records (201), 202 or
    207 — is answered 00 and changes nothing (docs/host.md): a 77 would tell a terminal
    whose 207 answer was lost that its batch is not closed."""
    terminal = host.signed_on()
    records = sales(terminal, 10)
    designs(terminal.settle(field48_totals(totals_half(10, 1, 0, 0))), "0510", "00")
    designs(terminal.upload([*records, (999, OTHER_PAN, 5)]), "0330", "00")
    designs(terminal.upload_end(0, after_balanced=True), "0330", "00")
    designs(terminal.upload_end(2), "0330", "00")
    assert host.exception_kinds() == []
    assert host.terminal(stan=terminal.stan).sign_on().text(60)[2:8] == "000002"


def test_a_207_resent_after_its_answer_was_lost_closes_once(host: Host) -> None:
    terminal = host.signed_on()
    records = sales(terminal, 10, 20)
    unbalanced(terminal, 1, 1)
    designs(terminal.upload(records[:1]), "0330", "00")
    designs(terminal.upload_end(1), "0330", "00")
    terminal.send(terminal.sent[-1])  # the same 207 again: its answer was lost
    designs(terminal.receive(), "0330", "00")
    designs(terminal.upload_end(1), "0330", "00")  # and once more under a new STAN
    assert host.exception_kinds() == ["host-only"]
    assert host.terminal(stan=terminal.stan).sign_on().text(60)[2:8] == "000002"


def test_a_terminal_never_signed_on_gets_77_not_signed_on(host: Host) -> None:
    """No sign-on, no MAK: the sale goes without 64, the answer is 77 without 64, and 63
    says NOT_SIGNED_ON with the host's batch state."""
    terminal = host.terminal()
    answer = terminal.sale(100, PAN)
    assert (answer.mti, answer.code, answer.mac_ok) == ("0210", "77", None)
    assert answer.detail["R"] == "NOT_SIGNED_ON"
    assert host.store.transactions(TERMINAL) == []


def test_a_batch_number_wrapping_onto_an_old_000001_is_a_new_batch(host: Host) -> None:
    """999999 → 000001 when the terminal's first batch 000001 is still on record: the sale
    with the STAN and amount of a sale in the old 000001 is a new sale (new RRN), and the new
    000001 settles balanced on its own totals — neither is taken for the old batch."""
    terminal = host.signed_on()
    old = terminal.sale(500, PAN, stan="000100")
    designs(terminal.settle(field48_totals(totals_half(500, 1, 0, 0))), "0510", "00")
    with host.store.transaction() as tx:
        tx.set_batch(host.store.batches(TERMINAL)[-1].batch_id, batch_no=999_999)
    terminal.batch_no = 999_999
    sales(terminal, 700)
    designs(terminal.settle(field48_totals(totals_half(700, 1, 0, 0))), "0510", "00")
    assert terminal.sign_on().text(60)[2:8] == "000001"
    new = terminal.sale(500, PAN, stan="000100")
    designs(new, "0210", "00")
    assert new.text(37) != old.text(37)
    sales(terminal, 600)
    settled = terminal.settle(field48_totals(totals_half(1100, 2, 0, 0)))
    designs(settled, "0510", "00")
    assert settled.text(48) == totals_half(1100, 2, 0, 0, 1) + totals_half(0, 0, 0, 0, 1)
    assert terminal.sign_on().text(60)[2:8] == "000002"
    assert host.exception_kinds() == []


def test_voids_and_refunds_upload_as_records_of_their_own(host: Host) -> None:
    """Debits are sales (a voided one included), credits voids and refunds: the upload of
    every approved transaction — the voided sale, the void, the refund — closes the batch
    without an exception; a reversed sale is neither counted nor uploaded."""
    terminal = host.signed_on()
    voided, refunded, reversed_ = sales(terminal, 100, 200, 300)
    void = terminal.void(100, PAN, voided[0])
    refund = terminal.refund(50, PAN, 1, refunded[0])
    designs(void, "0210", "00")
    designs(refund, "0230", "00")
    reversal = _reversal(terminal, reversed_[0], 300)
    designs(reversal, "0410", "00")
    settled = unbalanced(terminal, 1, 1)
    assert settled.text(48) == totals_half(300, 2, 150, 2, 2) + totals_half(0, 0, 0, 0, 2)
    records = [voided, refunded, (int(void.text(11)), PAN, 100), (int(refund.text(11)), PAN, 50)]
    designs(terminal.upload(records), "0330", "00")
    designs(terminal.upload_end(4), "0330", "00")
    assert host.exception_kinds() == []


def _reversal(terminal: DesignTerminal, stan: int, amount: int) -> Answer:
    """0400 of a sale (reason 98, timeout) under the sale's STAN."""
    fields: dict[int, str | bytes] = {
        2: PAN,
        3: "000000",
        4: f"{amount:012d}",
        11: f"{stan:06d}",
        22: "012",
        25: "00",
        39: "98",
        49: "156",
        60: f"22{terminal.batch_no:06d}000",
    }
    return terminal.exchange(terminal.body("0400", fields))
