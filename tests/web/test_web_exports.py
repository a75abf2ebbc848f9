"""Streamed CSV exports are bounded per user: at most EXPORTS_PER_USER_MAX at once, each
given back when its stream ends, fails, is cut by the client, or runs past its deadline.

Before: nothing limited them — a merchant user who read exports slowly, or started many at
once, held the console's worker threads and store connections for as long as they liked.
The held exports here are driven by hand over ASGI (httpx's ASGITransport reads a body
whole), their client reading nothing until the test lets it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from web_world import MERCHANT_A, World, log_in

from posbatch.backoffice import _queries as queries_module
from posbatch.web import _app as app_module
from posbatch.web import create_app
from posbatch.web._app import EXPORT_BUSY, EXPORTS_PER_USER_MAX
from posbatch.web._security import SESSION_COOKIE

HANG_GUARD_S = 60  # only keeps a hang from stalling the suite; nothing is timed


class Held:
    """One export whose client reads its first piece and then nothing until let go (or
    until it disconnects): the slow reader of the attack."""

    def __init__(self, app: FastAPI, token: str, path: str, *, spec: str) -> None:
        self.spec = spec
        self.read_on = asyncio.Event()
        self.gone = asyncio.Event()
        self.first_piece = asyncio.Event()
        self.messages: list[dict[str, Any]] = []
        self._asked = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"console.test"),
                (b"cookie", f"{SESSION_COOKIE}={token}".encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("console.test", 443),
        }
        self.task = asyncio.create_task(app(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone.is_set():
            raise OSError("the client has gone")  # what a 2.4 server's send does
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("more_body"):
            self.first_piece.set()
            waits = [asyncio.ensure_future(self.read_on.wait())]
            waits.append(asyncio.ensure_future(self.gone.wait()))
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in pending:
                waiting.cancel()
            if self.gone.is_set() and self.spec == "2.4":
                raise OSError("the client has gone")

    async def streaming(self) -> None:
        """Until the export has sent its head and first piece and waits on its reader."""
        await asyncio.wait_for(self.first_piece.wait(), HANG_GUARD_S)
        assert self.messages[0]["status"] == 200, self.messages

    async def finished(self) -> None:
        try:
            await asyncio.wait_for(self.task, HANG_GUARD_S)
        except ClientDisconnect:
            assert self.gone.is_set()

    @property
    def whole(self) -> bool:
        last = self.messages[-1]
        return last["type"] == "http.response.body" and not last.get("more_body")


@pytest.fixture
async def app(world: World) -> FastAPI:
    return create_app(world.office)


@contextlib.asynccontextmanager
async def _client(app: FastAPI, name: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://console.test"
    ) as client:
        await log_in(client, name)
        yield client


@pytest.fixture
async def mia(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, "mia") as client:
        yield client


def _token(client: httpx.AsyncClient) -> str:
    token = client.cookies.get(SESSION_COOKIE)
    assert token
    return token


async def test_a_user_may_run_only_so_many_exports_at_once(
    app: FastAPI, mia: httpx.AsyncClient
) -> None:
    assert EXPORTS_PER_USER_MAX == 2
    held = [Held(app, _token(mia), "/transactions.csv", spec="2.0") for _ in range(2)]
    for export in held:
        await export.streaming()

    for path in ("/transactions.csv", "/exceptions.csv"):
        third = await mia.get(path)
        assert third.status_code == 429, third.text
        assert EXPORT_BUSY in third.text
        assert "text/csv" not in third.headers["content-type"]
    # Another session of the same user is the same user.
    async with _client(app, "mia") as again:
        assert (await again.get("/transactions.csv")).status_code == 429

    # Another user's export is not held up by hers.
    async with _client(app, "max") as other:
        theirs = await other.get("/transactions.csv")
        assert theirs.status_code == 200
        assert theirs.text.startswith("\ufefftime (Beijing)")

    held[0].read_on.set()
    await held[0].finished()
    assert held[0].whole
    assert MERCHANT_A in b"".join(m.get("body", b"") for m in held[0].messages).decode()
    after = await mia.get("/transactions.csv")
    assert after.status_code == 200, after.text
    # The slot that came back is hers again, and the bound holds with it taken.
    held.append(Held(app, _token(mia), "/exceptions.csv", spec="2.0"))
    await held[2].streaming()
    assert (await mia.get("/transactions.csv")).status_code == 429

    for export in held[1:]:
        export.read_on.set()
        await export.finished()
        assert export.whole
    assert app.state.exports.running("mia") == 0


@pytest.mark.parametrize("spec", ["2.0", "2.4"])
async def test_a_client_that_disconnects_mid_export_frees_its_slot(
    app: FastAPI, mia: httpx.AsyncClient, spec: str
) -> None:
    held = [Held(app, _token(mia), "/transactions.csv", spec=spec) for _ in range(2)]
    for export in held:
        await export.streaming()
    assert (await mia.get("/transactions.csv")).status_code == 429

    held[0].gone.set()  # the reader hangs up while the export waits on it
    await held[0].finished()
    assert not held[0].whole
    assert app.state.exports.running("mia") == 1
    assert (await mia.get("/transactions.csv")).status_code == 200

    held[1].gone.set()
    await held[1].finished()
    assert app.state.exports.running("mia") == 0


async def test_an_export_nobody_reads_ends_at_its_deadline(world: World) -> None:
    """A reader that never reads (and never hangs up) held its export, and its slot, for
    ever; the deadline cuts it — the body is left unfinished, never passed off as whole."""
    app = create_app(world.office, exports_per_user=1, export_deadline_s=0.05)
    async with _client(app, "mia") as client:
        held = Held(app, _token(client), "/transactions.csv", spec="2.0")
        await held.streaming()
        await held.finished()  # it ends though its reader neither reads nor goes
        assert not held.whole
        assert app.state.exports.running("mia") == 0
        assert (await client.get("/transactions.csv")).status_code == 200


async def test_a_transactions_export_cut_at_its_row_limit_says_so_in_its_last_row(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXPORT_ROWS_MAX an export stopped and ended like a whole file (its docstring
    promised an `export_truncated` that existed nowhere): a spreadsheet showed the newest
    rows as all of them. Now its last row says it was cut; an export that fits has none."""

    async def export_lines(limit: int | None) -> list[str]:
        if limit is not None:
            monkeypatch.setattr(queries_module, "EXPORT_ROWS_MAX", limit)
            monkeypatch.setattr(app_module, "EXPORT_ROWS_MAX", limit)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(world.office)),
            base_url="https://console.test",
        ) as client:
            await log_in(client, "olga")
            return (await client.get("/transactions.csv")).text.splitlines()

    matching = len(await export_lines(None)) - 1  # the header
    exact, cut = await export_lines(matching), await export_lines(matching - 1)
    assert matching > 1
    assert (len(exact), exact[-1].startswith("# cut")) == (1 + matching, False)
    assert len(cut) == 1 + (matching - 1) + 1  # the header, the newest rows, the note
    assert cut[-1].startswith(f"# cut: more than {matching - 1:,} transactions match")
