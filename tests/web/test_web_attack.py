"""The console under an outside-in attack (the pass of 2026-12-07/08, after
test_web_hostile.py's): each test failed before its fix."""

from __future__ import annotations

import httpx
import pytest
from test_web_routes import EXPECTED, concrete
from web_world import LOGIN_TOKEN, PASSWORD, World, log_in, scan, scan_headers

from posbatch.backoffice import ADDRESS_FAILURES_MAX
from posbatch.web import create_app

NUL_POSTS = [
    ("/users/sa%00m/active", {"active": "0"}),
    ("/users/sa%00m/unlock", {}),
    ("/users/unlock-address", {"address": "10.0.0.9\x00"}),
    ("/exceptions/assign", {"id": "1", "assignee": "sam\x00", "remark": "take it"}),
    ("/exceptions/resolve", {"id": "1", "resolution": "confirm-host", "remark": "a\x00b"}),
    ("/fees", {"merchant_id": "898110054110001\x00", "debit": "0.50%"}),
]


def _refused_in_one_line(answer: httpx.Response) -> list[str]:
    """What is wrong with the answer to a value holding a NUL: anything but a 400, or an
    answer that shows a database's statement."""
    wrong = [] if answer.status_code == 400 else [f"status {answer.status_code}"]
    return wrong + [word for word in ("[SQL", "parameters:", "sqlalche.me") if word in answer.text]


@pytest.mark.parametrize("name", ["olga\x00", "\x00", "ol\x00ga"])
async def test_a_login_name_holding_a_nul_is_refused_not_a_500(
    client: httpx.AsyncClient, name: str
) -> None:
    """PostgreSQL refuses a NUL in any text: an anonymous login named `olga%00` escaped as
    a 500 (and was never counted by the login throttle)."""
    form = await client.get("/login")
    token = LOGIN_TOKEN.search(form.text)
    assert token is not None
    answer = await client.post(
        "/login", data={"name": name, "password": PASSWORD, "login_csrf": token[1]}
    )
    assert [] == _refused_in_one_line(answer)


@pytest.mark.parametrize(("path", "data"), NUL_POSTS, ids=[path for path, _ in NUL_POSTS])
async def test_a_nul_in_a_form_or_path_is_400_never_the_databases_words(
    client: httpx.AsyncClient, path: str, data: dict[str, str]
) -> None:
    """On PostgreSQL `/users/sa%00m/active` was a 503 whose page quoted the statement and
    its parameters (`[SQL: SELECT host_users… WHERE name = …]`)."""
    csrf = await log_in(client, "olga")
    answer = await client.post(path, data={**data, "csrf_token": csrf})
    assert [] == _refused_in_one_line(answer)


async def test_a_nul_in_any_query_is_400(world: World, client: httpx.AsyncClient) -> None:
    """Every GET route given a NUL in a parameter: one clear 400, whatever the database."""
    await log_in(client, "olga")
    wrong = []
    for method, path in sorted(EXPECTED):
        if method != "GET" or path == "/static/{path}":
            continue
        for params in ({"terminal_id": "\x00"}, {"actor": "olga\x00"}, {"x\x00": "1"}):
            answer = await client.get(concrete(world, path), params=params)
            wrong += [(path, str(params), why) for why in _refused_in_one_line(answer)]
    assert [] == wrong


@pytest.mark.parametrize(
    "url",
    [
        "/transactions/?last4=6222021234567890128",
        "/support/6222021234567890128/",
        "/static?x=6222021234567890128",
        "/login/?next=/transactions%3Flast4%3D6222021234567890128",
    ],
)
async def test_a_url_with_a_trailing_slash_is_not_redirected_with_its_card_number(
    world: World, url: str
) -> None:
    """Starlette answered `/transactions/?last4=6222…` with a 307 to
    `http://{Host}/transactions?last4=6222021234567890128`: the card number whole in a
    header, to anyone (no login), and to whatever host the Host header named."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(world.office)),
        base_url="https://console.test",
        headers={"host": "evil.example"},
    ) as client:
        answer = await client.get(url)
        assert (404, None) == (answer.status_code, answer.headers.get("location"))
        assert [] == scan(answer.text) + scan_headers(answer.headers.items())


async def test_a_card_number_as_the_client_address_is_not_listed_whole(world: World) -> None:
    """Behind --trust-proxy the client address is X-Forwarded-For, which uvicorn takes as
    it is, address or not: logins failed from "6222021234567890128" locked it, and /users
    listed it whole among the locked addresses."""
    app = create_app(world.office)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("6222021234567890128", 1)),
        base_url="https://console.test",
    ) as stranger:
        for number in range(ADDRESS_FAILURES_MAX):
            form = await stranger.get("/login")
            token = LOGIN_TOKEN.search(form.text)
            assert token is not None
            await stranger.post(
                "/login",
                data={"name": f"n{number}", "password": "wrong password", "login_csrf": token[1]},
            )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://console.test"
    ) as ops:
        await log_in(ops, "olga")
        page = await ops.get("/users")
        assert "locked" in page.text.lower()
        assert [] == scan(page.text)
