"""No answer of the console repeats a card number a request carried: in a path segment, a
query string or a form field, on a page, an error page, a 404 or a 405, logged in or not.

Every answer of these clients is scanned besides (``conftest._scanned``: no run of 13–19
digits but the merchant ids); here a card number typed in groups is looked for too.
"""

from __future__ import annotations

import httpx
import pytest
from web_world import log_in

PAN_16 = "6222029371586403"
PAN_19 = "6222028719463520178"
PAN_GROUPED = "6222 0212 3456 7890 128"
PANS = (PAN_16, PAN_19, PAN_GROUPED)


def leaks(text: str) -> list[str]:
    """The card numbers ``text`` shows beyond their first 6 and last 4 digits, whole, in
    their groups, or URL-encoded."""
    found = []
    for pan in PANS:
        digits = pan.replace(" ", "")
        forms = (pan, digits[6:-4], pan.replace(" ", "+"), pan.replace(" ", "%20"))
        if any(form in text for form in forms):
            found.append(pan)
    return found


PATHS = [
    "/{pan}",
    "/static/{pan}",
    "/terminals/{pan}",
    "/batches/{pan}",
    "/exceptions/{pan}",
    "/support/{pan}",
    "/support/{pan}/ticket",
    "/transactions?terminal_id={pan}&merchant_id={pan}&rrn={pan}&day={pan}&page={pan}",
    "/transactions.csv?terminal_id={pan}&stan={pan}",
    "/batches?terminal_id={pan}&batch_no={pan}",
    "/exceptions?cause={pan}&terminal_id={pan}&after={pan}",
    "/audit?actor={pan}&target={pan}&action={pan}",
    "/statements?merchant_id={pan}&day={pan}",
    "/statements.csv?merchant_id={pan}&day={pan}",
    "/?msg={pan}&day={pan}",
    "/login?next=/{pan}",
    # one field at a time: each is read (a page, or its own 400), not cut short by another
    "/transactions?terminal_id={pan}",
    "/transactions?rrn={pan}",
    "/transactions?merchant_id={pan}",
    "/exceptions?cause={pan}",
    "/exceptions?assignee={pan}",
    "/audit?target={pan}",
    "/support?terminal_id={pan}",
    "/statements?merchant_id={pan}",
]


@pytest.mark.parametrize("pan", PANS)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("logged_in", [False, True])
async def test_no_page_or_error_repeats_a_card_number_in_the_url(
    shared_client: httpx.AsyncClient, path: str, pan: str, logged_in: bool
) -> None:
    """A GET with a card number in its path or query: whatever the answer (page, 303 to
    the login, 400, 404), its body and headers show it masked at most."""
    shared_client.cookies.clear()
    if logged_in:
        await log_in(shared_client, "olga")
    answer = await shared_client.get(path.format(pan=pan))
    assert [] == leaks(answer.text + str(answer.headers))


@pytest.mark.parametrize("pan", PANS)
async def test_a_wrong_method_or_a_bad_form_repeats_no_card_number(
    shared_client: httpx.AsyncClient, pan: str
) -> None:
    """A 405 (POST to a page), a form a handler refuses, an unreadable body: no echo."""
    csrf = await log_in(shared_client, "olga")
    answers = [
        await shared_client.post(f"/transactions?terminal_id={pan}", data={"x": pan}),
        await shared_client.put(f"/exceptions/{pan}", data={"note": pan}),
        await shared_client.post(
            f"/terminals/{pan}/advance", data={"csrf_token": csrf, "reason": pan}
        ),
        await shared_client.post(
            "/exceptions/resolve",
            data={"csrf_token": csrf, "ids": pan, "resolution": pan, "amount": pan},
        ),
        await shared_client.post(
            "/terminals",
            data={"csrf_token": csrf, "terminal_id": pan, "merchant_id": pan, "tmk": pan},
        ),
        await shared_client.post(
            "/login",
            content=f"name={pan}&password=%ZZ{pan}",
            headers={"content-type": "multipart/form-data; boundary=" + pan},
        ),
    ]
    shown = [(a.status_code, leaks(a.text + str(a.headers))) for a in answers]
    assert [] == [(status, found) for status, found in shown if found]
