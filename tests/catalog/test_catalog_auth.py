"""`catalog serve` is not an open door: tills authenticate, lines are checked, "paid" names an
approval the host knows, and a till takes changes only from its own back office."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from catalog_samples import MILK, NOW, TODAY, ScriptedPayer, approved
from catalog_shop import TERMINAL_ID, Shop, open_shop
from fastapi.routing import APIRoute
from typer.testing import CliRunner

from posbatch.batch.model import BEIJING
from posbatch.catalog import (
    CardTransaction,
    CatalogStore,
    HttpOrderBook,
    LineRequest,
    LotSource,
    LotTake,
    PaymentCheck,
    PaymentMismatch,
    TillCredential,
    create_app,
    host_verifier_for,
    pay_cart,
    price_cart,
    read_credential,
    sync_replica,
    write_changes_file,
    write_credential,
)
from posbatch.catalog.cli import app as catalog_cli
from posbatch.catalog.payer import recover_pending_orders
from posbatch.errors import CatalogError, ConfigError
from posbatch.host.issuer import TEST_PAN_APPROVED

runner = CliRunner()


def call(
    served: str, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{served}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        answer = exc.read()
        exc.close()
        return exc.code, json.loads(answer) if answer else None


def milk_cart(store: CatalogStore, quantity: int = 2) -> Any:
    request = LineRequest(MILK, quantity, (LotTake("M-DEC15", quantity),), LotSource.SCAN)
    return price_cart(store.snapshot(), [request], today=TODAY, now=NOW)


def routes(store: CatalogStore) -> list[tuple[str, str]]:
    """Every route of the app (a new one cannot be forgotten), with a concrete path."""
    found = []
    for route in create_app(store).routes:
        if isinstance(route, APIRoute):
            path = route.path.replace("{order_id}", "1").replace("{return_id}", "1")
            found.extend((method, path) for method in sorted(route.methods))
    return found


def test_every_route_wants_a_credential(back_office: CatalogStore, served: str) -> None:
    """Without a credential, or with a made-up one, every route answers 401."""
    answers = {
        (method, path): (
            call(served, method, path, {} if method == "POST" else None)[0],
            call(served, method, path, {} if method == "POST" else None, "pbt_madeup")[0],
        )
        for method, path in routes(back_office)
    }
    assert len(answers) >= 12
    assert {key: (401, 401) for key in answers} == answers


def test_a_revoked_till_is_refused_at_once(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    before = call(served, "GET", "/catalog/version", token=till.token)[0]
    back_office.revoke_till(till.terminal_id, at=NOW)
    after = call(served, "GET", "/catalog/version", token=till.token)[0]
    assert (200, 401) == (before, after)


def test_a_till_cannot_write_as_another_terminal(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """The credential names the till: an order for another terminal ID is 403."""
    orders = HttpOrderBook(served, till)
    with pytest.raises(CatalogError, match="HTTP 403"):
        orders.open_order(milk_cart(back_office), terminal_id=TERMINAL_ID, opened_at=NOW)


def test_a_till_cannot_touch_another_tills_order(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """Another till's pending order is not found for this till (nor listed, nor closed)."""
    other = back_office.add_till("10000002", issued_by="test", at=NOW)
    order = HttpOrderBook(served, other).open_order(
        milk_cart(back_office), terminal_id="10000002", opened_at=NOW
    )
    mine = HttpOrderBook(served, till)
    with pytest.raises(CatalogError, match="HTTP 404"):
        mine.close_unpaid(order.order_id, payment=None, note="x", closed_at=NOW)
    assert [] == mine.pending_orders()


def test_hostile_order_changes_no_stock(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """Recalled lots ×50 at 1 fen and an unknown GTIN: refused line by line, stock untouched."""
    status, answer = call(
        served,
        "POST",
        "/catalog/orders",
        {
            "terminal_id": till.terminal_id,
            "opened_at": NOW.isoformat(),
            "catalog_version": 1,
            "lines": [
                {
                    "line_no": 1,
                    "gtin": MILK,
                    "product_name": "Milk 1L",
                    "price_fen": 1,
                    "lot_no": "M-RECALL",
                    "quantity": 50,
                    "lot_source": "manual",
                },
                {
                    "line_no": 2,
                    "gtin": "06900000000014",
                    "product_name": "x",
                    "price_fen": 1,
                    "quantity": 1,
                    "lot_source": "none",
                },
            ],
        },
        till.token,
    )
    lot = back_office.snapshot().lot(MILK, "M-RECALL")
    assert lot is not None
    expected = (422, [1, 1, 2], (0, 50), [])
    assert expected == (
        status,
        [problem["line_no"] for problem in answer["detail"]["problems"]],
        (lot.quantity_on_hand, lot.quarantined),
        back_office.trace_lot("M-RECALL", include_unpaid=True),
    )


@pytest.fixture
def shop(tmp_path: Path, db_url: str) -> Any:
    opened = open_shop(tmp_path, db_url)
    yield opened
    opened.close()


def test_invented_stan_does_not_complete_an_order(shop: Shop) -> None:
    """ "Paid" with a STAN the host never approved: refused, the order stays pending."""
    order = shop.store.open_order(
        milk_cart(shop.store), terminal_id=TERMINAL_ID, opened_at=shop.clock()
    )
    with pytest.raises(PaymentMismatch, match="the host holds no approved sale STAN 000777"):
        shop.store.complete_order(order.order_id, approved("000777"), closed_at=shop.clock())
    lot = shop.store.snapshot().lot(MILK, "M-DEC15")
    assert lot is not None
    expected = (["pending"], 10)
    assert expected == (
        [row.status for row in shop.store.trace_lot("M-DEC15")],
        lot.quantity_on_hand,
    )


def test_one_approval_pays_one_order(shop: Shop) -> None:
    """A real approval already used by one order cannot complete a second one."""
    receipt = shop.pay([LineRequest(MILK, 2, (LotTake("M-DEC15", 2),), LotSource.SCAN)])
    second = shop.store.open_order(
        milk_cart(shop.store), terminal_id=TERMINAL_ID, opened_at=shop.clock()
    )
    with pytest.raises(PaymentMismatch, match="already completed order"):
        shop.store.complete_order(second.order_id, receipt.payment, closed_at=shop.clock())


def test_without_the_host_store_a_payment_is_unverified_and_shown_so(
    back_office: CatalogStore, tmp_path: Path
) -> None:
    """No host store to ask: the order completes, marked unverified (trace shows it)."""
    pay_cart(
        milk_cart(back_office),
        payer=ScriptedPayer(approved("000005")),
        orders=back_office,
        terminal_id=TERMINAL_ID,
        clock=lambda: NOW,
        today=TODAY,
    )
    assert ["unverified"] == [row.payment_check for row in back_office.trace_lot("M-DEC15")]


def test_unverified_payments_are_checked_again(shop: Shop) -> None:
    """verify-payments asks the host again: a real approval becomes verified, a fake mismatch."""
    shop.store.payment_verifier, verifier = None, shop.store.payment_verifier
    receipt = shop.pay([LineRequest(MILK, 1, (LotTake("M-DEC15", 1),), LotSource.SCAN)])
    fake = shop.store.open_order(
        milk_cart(shop.store, 1), terminal_id=TERMINAL_ID, opened_at=shop.clock()
    )
    shop.store.complete_order(fake.order_id, approved("000999"), closed_at=shop.clock())
    shop.store.payment_verifier = verifier
    results = {number: verdict for number, verdict, _ in shop.store.verify_payments()}
    expected = {receipt.receipt_no: "verified", fake.receipt_no: "mismatch"}
    assert expected == results


def test_request_bodies_are_bounded(served: str, till: TillCredential) -> None:
    """A body over the limit is 413 before it is read whole.

    A raw socket: the client declares 3 MiB and sends only its first KiB, then reads. (A
    client that writes the whole body first may meet a closed socket, EPIPE, before it
    reads the 413 — that race, not the server, failed this test under load.)
    """
    host, port = served.removeprefix("http://").split(":")
    declared = 3 * 1024 * 1024
    head = (
        f"POST /catalog/orders HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {till.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as peer:
        peer.sendall(head.encode() + b'{"terminal_id": "' + b"x" * 1024)
        answer = b""
        while b"\r\n" not in answer:
            chunk = peer.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]


def test_a_till_refuses_changes_from_another_back_office(
    back_office: CatalogStore, tmp_path: Path, db_url: str
) -> None:
    """A copy follows the back office it first synced from (or its credential names)."""
    copy = CatalogStore.open(f"sqlite:///{tmp_path / 'till.db'}")
    first = tmp_path / "ours.json"
    write_changes_file(back_office.changes_since(0), first)
    sync_replica(copy, str(first), now=NOW)
    stranger = CatalogStore.open(f"sqlite:///{tmp_path / 'other-shop.db'}")
    theirs = tmp_path / "theirs.json"
    write_changes_file(stranger.changes_since(0), theirs)
    with pytest.raises(CatalogError) as caught:
        sync_replica(copy, str(theirs), now=NOW)
    credential = TillCredential(TERMINAL_ID, stranger.store_id(), "pbt_x")
    fresh = CatalogStore.open(f"sqlite:///{tmp_path / 'fresh.db'}")
    with pytest.raises(CatalogError, match="this till's credential names back office"):
        sync_replica(fresh, str(first), now=NOW, credential=credential)
    message = str(caught.value)
    for store in (copy, stranger, fresh):
        store.close()
    assert f"this copy follows back office {back_office.store_id()}: refused" in message


def test_credential_file_is_private_and_never_printed(
    back_office: CatalogStore, tmp_path: Path
) -> None:
    """Written 0600; its repr hides the token; a damaged file is a one-line error."""
    credential = back_office.add_till("10000003", issued_by="test", at=NOW)
    path = tmp_path / "catalog-till.json"
    write_credential(credential, path)
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{}")
    with pytest.raises(ConfigError, match="is not a till credential"):
        read_credential(damaged)
    expected = (0o600, credential, False)
    assert expected == (
        stat.S_IMODE(os.stat(path).st_mode),
        read_credential(path),
        credential.token in repr(credential),
    )


def test_http_sync_without_a_credential_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(
        catalog_cli,
        ["sync", "--from", "http://127.0.0.1:9", "--terminal-dir", str(tmp_path / "t")],
    )
    assert 2 == result.exit_code
    assert result.stderr.startswith("error: this till has no credential")
    assert 1 == len(result.stderr.strip().splitlines())


def test_add_till_command_writes_the_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`catalog add-till` registers the till and writes its credential; twice is refused."""
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)
    data_dir = str(tmp_path / "data")
    out = tmp_path / "till.json"
    first = runner.invoke(
        catalog_cli,
        ["add-till", TERMINAL_ID, "--output", str(out), "--by", "li", "--data-dir", data_dir],
    )
    again = runner.invoke(
        catalog_cli,
        [
            "add-till",
            TERMINAL_ID,
            "--output",
            str(tmp_path / "b.json"),
            "--by",
            "li",
            "--data-dir",
            data_dir,
        ],
    )
    listed = runner.invoke(catalog_cli, ["tills", "--data-dir", data_dir])
    expected = (0, TERMINAL_ID, 2, True)
    assert expected == (
        first.exit_code,
        read_credential(out).terminal_id,
        again.exit_code,
        "10000001  active" in listed.stdout,
    )


class MismatchFor:
    """A verifier that disowns one STAN and asks the real host about the others."""

    def __init__(self, stan: str, real: Any) -> None:
        self.stan, self.real = stan, real

    def check(self, transaction: Any) -> tuple[PaymentCheck, str]:
        if transaction.stan == self.stan:
            return PaymentCheck.MISMATCH, "the host holds no such sale"
        verdict: tuple[PaymentCheck, str] = self.real.check(transaction)
        return verdict


def test_recovery_goes_on_past_an_order_the_back_office_will_not_take(shop: Shop) -> None:
    """Two orders left pending by a crash; the host disowns the first: the second completes."""
    references = []
    for _ in range(2):
        order = shop.store.open_order(
            milk_cart(shop.store, 1), terminal_id=TERMINAL_ID, opened_at=shop.clock()
        )
        shop.terminal.sale(1250, TEST_PAN_APPROVED, reference=order.receipt_no)
        references.append(order.receipt_no)
    first_stan = f"{shop.terminal.journal.transactions()[-2].stan:06d}"
    shop.store.payment_verifier = MismatchFor(first_stan, shop.store.payment_verifier)
    done = dict(
        recover_pending_orders(
            shop.store, shop.terminal.journal, terminal_id=TERMINAL_ID, closed_at=shop.clock()
        )
    )
    expected = (True, True, [references[0]])
    assert expected == (
        done[references[0]].startswith("left pending: order"),
        done[references[1]].startswith("paid: STAN"),
        [order.receipt_no for order in shop.store.pending_orders()],
    )


def test_a_streamed_body_is_bounded_too(served: str, till: TillCredential) -> None:
    """Chunked, without a Content-Length: cut off at the limit with 413 all the same."""
    host, port = served.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/catalog/orders")
    connection.putheader("Authorization", f"Bearer {till.token}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    chunk = b"x" * 65536
    try:
        for _ in range(48):  # 3 MiB
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may stop reading once it has answered
    response = connection.getresponse()
    status = response.status
    connection.close()
    assert 413 == status


def test_the_back_office_finds_the_hosts_store_in_its_data_directory(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """host.db beside catalog.db is asked (as `catalog serve` does); without it, nothing is."""
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shop = open_shop(tmp_path, db_url, host_url=f"sqlite:///{data_dir / 'host.db'}")
    try:
        receipt = shop.pay([LineRequest(MILK, 2, (LotTake("M-DEC15", 2),), LotSource.SCAN)])
    finally:
        shop.close()
    payment = receipt.payment
    verifier = host_verifier_for(data_dir)
    assert verifier is not None
    sale = CardTransaction("sale", TERMINAL_ID, payment.batch_no or "", payment.stan or "", 2500)
    verdicts = (
        verifier.check(sale)[0],
        verifier.check(dataclasses.replace(sale, amount_fen=2499))[0],
        verifier.check(dataclasses.replace(sale, terminal_id="10000002"))[0],
    )
    verifier.close()
    (data_dir / "host.db").write_bytes(b"not a database at all")
    broken = host_verifier_for(data_dir)
    assert broken is not None
    expected = (
        (PaymentCheck.VERIFIED, PaymentCheck.MISMATCH, PaymentCheck.MISMATCH),
        PaymentCheck.UNVERIFIED,
        None,
    )
    assert expected == (verdicts, broken.check(sale)[0], host_verifier_for(tmp_path / "empty"))


HOSTILE_BODIES: list[Any] = [
    {},
    [],
    "x",
    {"receipt_no": "1" * 5000},
    {"returns": [{"receipt_no": "10000009-00000001", "kind": "void", "stan": "1"}]},
    {"payment": {"approved": True, "response_code": "00", "stan": "abc"}, "closed_at": "now"},
    {"lines": [{"line_no": -1}], "terminal_id": "10000009", "opened_at": "2026-11-25T10:00:00"},
]


def test_no_body_makes_the_server_fail(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """Every POST route with every malformed body: 4xx naming the problem, never a 500."""
    statuses = {
        (path, index): call(served, method, path, body, till.token)[0]
        for method, path in routes(back_office)
        if method == "POST"
        for index, body in enumerate(HOSTILE_BODIES)
    }
    assert {key: True for key in statuses} == {
        key: 400 <= status < 500 for key, status in statuses.items()
    }


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Shanghai"])
def test_catalog_commands_show_beijing_time_whatever_the_machine_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    """DESIGN.md: times are shown in Beijing time — not the machine's zone (a shop's PC
    set to UTC printed its tills' times eight hours off)."""
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        data_dir = str(tmp_path / "data")
        before = datetime.now(BEIJING)
        added = runner.invoke(
            catalog_cli,
            ["add-till", TERMINAL_ID, "--output", str(tmp_path / "t.json"), "--by", "li",
             "--data-dir", data_dir],
        )  # fmt: skip
        listed = runner.invoke(catalog_cli, ["tills", "--data-dir", data_dir])
        after = datetime.now(BEIJING)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert (0, 0) == (added.exit_code, listed.exit_code)
    shown = {f"issued {moment:%Y-%m-%d %H:%M}" for moment in (before, after)}
    assert any(text in listed.stdout for text in shown), listed.stdout
