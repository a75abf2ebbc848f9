"""The catalog's HTTP API never sends back a card number a till put in a request.

FastAPI's own 422 listed each problem with the ``input`` it refused: a card number posted
in any field (even the wrong one) came back whole. Its other errors quoted a receipt
number, a lot or a serial as sent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from catalog_samples import MILK, NOW

from posbatch.catalog import CatalogStore, TillCredential, create_app
from posbatch.catalog._orders_http import _masked, shown_gtins, validation_lines
from posbatch.serving import CONNECTIONS_PER_ADDRESS_MAX
from posbatch.storage import DATABASE_URL_ENV

# Luhn-valid card numbers: 16 and 19 digits, and one typed in groups.
PAN_16 = "6222029371586403"
PAN_19 = "6222028719463520178"
PAN_GROUPED = "6222 0212 3456 7890 128"
PANS = (PAN_16, PAN_19, PAN_GROUPED)


def leaks(text: str) -> list[str]:
    """The card numbers ``text`` shows beyond their first 6 and last 4 digits."""
    found = []
    for pan in PANS:
        digits = pan.replace(" ", "")
        if pan in text or digits[6:-4] in text:
            found.append(pan)
    return found


@pytest.fixture
async def client(
    back_office: CatalogStore, till: TillCredential
) -> AsyncIterator[httpx.AsyncClient]:
    """A till's client of the catalog API (no socket), its credential sent."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(back_office, clock=lambda: NOW)),
        base_url="http://back-office.test",
        headers={"Authorization": f"Bearer {till.token}"},
    ) as c:
        yield c


def _line(**changes: object) -> dict[str, Any]:
    line: dict[str, Any] = {
        "line_no": 1,
        "gtin": MILK,
        "product_name": "Milk",
        "price_fen": 1250,
        "quantity": 1,
        "lot_source": "none",
    }
    return {**line, **changes}


def _order(**changes: object) -> dict[str, Any]:
    order: dict[str, Any] = {
        "terminal_id": "10000009",
        "opened_at": NOW.isoformat(),
        "catalog_version": 1,
        "lines": [_line()],
    }
    return {**order, **changes}


def _closing(**changes: object) -> dict[str, Any]:
    body: dict[str, Any] = {
        "payment": {"approved": True, "response_code": "00", "stan": "000001"},
        "closed_at": NOW.isoformat(),
    }
    return {**body, **changes}


# (method, path, JSON body or None): each carries the card numbers where a till could.
HOSTILE_REQUESTS = [
    ("POST", "/catalog/orders", _order(terminal_id=PAN_19)),
    ("POST", "/catalog/orders", _order(opened_at=f"{PAN_16} {PAN_GROUPED}")),
    ("POST", "/catalog/orders", _order(catalog_version=PAN_GROUPED)),
    ("POST", "/catalog/orders", _order(lines=[_line(gtin=PAN_19, price_fen=PAN_16)])),
    ("POST", "/catalog/orders", _order(lines=[_line(gtin=PAN_16)])),
    ("POST", "/catalog/orders", _order(lines=[_line(lot_no=PAN_GROUPED)])),
    ("POST", "/catalog/orders", _order(lines=[_line(serial="6222 0293 7158 6403")])),
    ("POST", "/catalog/orders", _order(lines=[_line(trace_code=PAN_19)])),
    ("POST", "/catalog/orders", _order(lines=[_line(lot_source=PAN_GROUPED)])),
    ("POST", "/catalog/orders", _order(lines={PAN_19: PAN_16})),
    ("POST", "/catalog/orders", [PAN_19, PAN_GROUPED]),
    ("POST", "/catalog/orders/1/paid", _closing(payment={"approved": PAN_19})),
    ("POST", "/catalog/orders/1/paid", _closing(closed_at=PAN_GROUPED)),
    ("POST", "/catalog/orders/1/unpaid", _closing(note=PAN_19 * 20)),
    ("POST", f"/catalog/orders/{PAN_GROUPED}/paid", _closing()),
    ("POST", f"/catalog/orders/{PAN_19}x/paid", _closing()),
    ("POST", f"/catalog/returns/{PAN_16}a/done", _closing()),
    ("POST", "/catalog/returns", {"receipt_no": PAN_19, "opened_at": PAN_16}),
    (
        "POST",
        "/catalog/returns/from-journal",
        {"returns": [{"receipt_no": PAN_19, "kind": PAN_16, "stan": PAN_GROUPED}]},
    ),
    ("GET", f"/catalog/orders/by-receipt?receipt_no={PAN_19}", None),
    ("GET", f"/catalog/orders/by-receipt?receipt_no={PAN_GROUPED}", None),
    ("GET", f"/catalog/orders/by-receipt?receipt_no={PAN_19 * 3}", None),
    ("GET", f"/catalog/changes?since={PAN_19}", None),
    ("GET", f"/catalog/changes?since={PAN_GROUPED}", None),
    ("GET", f"/catalog/{PAN_19}", None),
    ("GET", f"/catalog/orders/{PAN_16}/paid", None),
    ("DELETE", f"/catalog/orders?card={PAN_19}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE_REQUESTS)
async def test_no_answer_repeats_a_card_number_a_till_sent(
    client: httpx.AsyncClient, method: str, path: str, body: object
) -> None:
    """A card number in a JSON field, a query string or a path segment is refused or not
    found — and the answer, whatever its status, never shows it whole."""
    answer = await client.request(method, path, json=body)
    assert (True, []) == (answer.status_code >= 400, leaks(answer.text + str(answer.headers)))


async def test_a_body_that_is_not_json_is_422_without_its_text(
    client: httpx.AsyncClient,
) -> None:
    """A body that is not JSON is named as such; the text around the error is not quoted."""
    answer = await client.post(
        "/catalog/orders",
        content=f'{{"terminal_id": "{PAN_19}", {PAN_GROUPED}',
        headers={"Content-Type": "application/json"},
    )
    assert (422, []) == (answer.status_code, leaks(answer.text))


async def test_a_422_names_each_field_and_why_in_one_line(client: httpx.AsyncClient) -> None:
    """A request FastAPI cannot take: one line per problem, where and why, no value."""
    answer = await client.post(
        "/catalog/orders", json=_order(terminal_id=PAN_19, lines=[_line(gtin=PAN_16)])
    )
    expected = (
        422,
        {
            "detail": [
                "body terminal_id: String should have at most 8 characters",
                "body lines[0].gtin: String should have at most 14 characters",
            ]
        },
    )
    assert expected == (answer.status_code, answer.json())


async def test_a_card_number_in_a_lot_is_masked_in_the_refusal(
    client: httpx.AsyncClient,
) -> None:
    """The lot's own error (not in GS1 character set 82) still says which line and why, the
    card number in it masked to its first 6 and last 4."""
    lot = "6222 0293 7158 6403"  # PAN_16 in groups: 19 characters, a lot's 20 would take it
    answer = await client.post("/catalog/orders", json=_order(lines=[_line(lot_no=lot)]))
    expected = (422, "line 1: lot '622202******6403' is not in GS1 character set 82")
    assert expected == (answer.status_code, answer.json()["detail"])


async def test_an_unknown_receipt_is_404_with_its_number_masked(
    client: httpx.AsyncClient,
) -> None:
    """``by-receipt`` of a card number: 404 naming it masked."""
    answer = await client.get("/catalog/orders/by-receipt", params={"receipt_no": PAN_19})
    expected = (404, "no receipt 622202*********0178 of till 10000009")
    assert expected == (answer.status_code, answer.json()["detail"])


def test_a_gtin_is_quoted_whole_only_when_it_could_not_be_a_card_number() -> None:
    """A 13/14-digit run an error quotes is left whole only when no card could be it, as it
    is or without its leading zeros: 6901234567891 fails Luhn, 09501101530003 too without
    its 0; 06901234567892 is the 13-digit card 6901234567892 zero-filled to a GTIN-14."""
    text = "GTIN 6901234567891, 09501101530003, 06901234567892, 6222021234566 and 62220212345671"
    assert frozenset({"6901234567891", "09501101530003"}) == shown_gtins(text)


# Card numbers whose last digit is also their GS1 check digit: a card scanned or typed as a
# GTIN passes every GTIN check (one card in ten does).
GS1_VALID_CARD_13 = "6222021234095"
GS1_VALID_CARD_14 = "62220212345069"


@pytest.mark.parametrize("card", [GS1_VALID_CARD_13, GS1_VALID_CARD_14])
async def test_a_card_that_is_a_valid_gtin_is_masked_in_the_refusal(
    client: httpx.AsyncClient, card: str
) -> None:
    """An order line whose GTIN is a card number with a valid GS1 check digit: 422 naming the
    line, the card masked (the 13-digit one came back whole, zero-filled to GTIN-14)."""
    answer = await client.post("/catalog/orders", json=_order(lines=[_line(gtin=card)]))
    detail = str(answer.json()["detail"])
    assert (422, False, True) == (
        answer.status_code,
        card in detail or card[6:-4] in detail,
        f"{card[-4:]}" in detail and "line 1" in detail,
    ), detail


def test_validation_lines_are_bounded() -> None:
    """However many problems a request has, the 422 lists at most 20 and counts the rest."""
    errors = [
        {"loc": ("body", "lines", i, "gtin"), "msg": "bad", "input": PAN_19} for i in range(25)
    ]
    lines = validation_lines(errors)
    assert (21, "… 5 more problems", []) == (len(lines), lines[-1], leaks("".join(lines)))


SERVE_TIMEOUT_S = 20


def test_a_card_number_in_a_request_url_never_reaches_the_servers_log(tmp_path: Path) -> None:
    """The real `posbatch catalog serve` (a subprocess: its logging set up as in use) asked
    for URLs holding card numbers — in the query, in the path, typed in groups and URL-encoded:
    its standard error holds none of them and no access line, no "Logging error" (it logged
    uvicorn's access lines — the URL whole when encoded, and a logging traceback when masked).
    SIGTERM stops it gracefully, exit 0 (it ended with -15, as uvicorn re-raises the signal)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    env.pop(DATABASE_URL_ENV, None)
    command = [sys.executable, "-m", "posbatch", "catalog", "serve", "--listen", "127.0.0.1:0",
               "--data-dir", str(tmp_path / "data")]  # fmt: skip
    grouped = urllib.parse.quote(PAN_GROUPED)
    paths = [f"/catalog/version?card={PAN_16}", f"/orders/{PAN_19}", f"/x?pan={grouped}"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["url"].rstrip("/")
            for path in paths:
                with pytest.raises(urllib.error.HTTPError):  # no credential: 401, or 404
                    urllib.request.urlopen(url + path, timeout=SERVE_TIMEOUT_S)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, errors = proc.communicate(timeout=SERVE_TIMEOUT_S)
    logged = errors.decode("utf-8", "replace")
    unencoded = urllib.parse.unquote(logged)
    assert ([], [], False, False, 0) == (
        leaks(logged),
        leaks(unencoded),
        "HTTP/1.1" in logged,
        "Logging error" in logged,
        proc.returncode,
    ), logged


def test_a_card_sent_in_two_halves_is_masked_whole() -> None:
    """A card number split where a GTIN's length ends (13 + 6, "6222021234560 890128" — its
    first half fails Luhn, so alone it could be a GTIN) is one card to the net, masked whole;
    the half is not a GTIN the answer may show."""
    text = "no receipt 6222021234560 890128 of till 10000009"
    expected = (frozenset(), "no receipt 622202*********0128 of till 10000009")
    assert expected == (shown_gtins(text), _masked(text))


def test_one_address_cannot_hold_every_connection_of_catalog_serve(tmp_path: Path) -> None:
    """`posbatch catalog serve` is bounded as the back office is (posbatch.serving): one
    address holding connections past CONNECTIONS_PER_ADDRESS_MAX gets 503 on each one more,
    and a till from another address is still answered (it took every connection uvicorn
    allows, silently, and held the shop's tills out for as long as it liked)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    env.pop(DATABASE_URL_ENV, None)
    command = [sys.executable, "-m", "posbatch", "catalog", "serve", "--listen", "127.0.0.1:0",
               "--data-dir", str(tmp_path / "data")]  # fmt: skip
    held: list[socket.socket] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            url = json.loads(proc.stdout.readline())["url"].rstrip("/")
            port = int(url.rsplit(":", 1)[1])
            for _ in range(CONNECTIONS_PER_ADDRESS_MAX + 2):
                peer = socket.create_connection(
                    ("127.0.0.1", port), timeout=SERVE_TIMEOUT_S, source_address=("127.0.0.2", 0)
                )
                held.append(peer)
            extra = [peer.recv(64) for peer in held[-2:]]  # closed at once, after a 503
            with pytest.raises(urllib.error.HTTPError) as answer:  # a till elsewhere: 401
                urllib.request.urlopen(url + "/catalog/version", timeout=SERVE_TIMEOUT_S)
        finally:
            for peer in held:
                peer.close()
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=SERVE_TIMEOUT_S)
    answer.value.close()
    assert [True, True] == [reply.startswith(b"HTTP/1.1 503") for reply in extra]
    assert answer.value.code in (401, 404)
