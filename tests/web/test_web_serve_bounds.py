"""The console served as `posbatch backoffice serve` serves it (uvicorn, the same config),
against peers that hold connections: silent ones, heads and bodies sent a byte at a time,
many connections from one address (the probe of 2026-12-07: 200 silent connections from
one machine, no byte sent and no login, answered every user 503 for as long as they stayed
open)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from web_world import World

from posbatch.cli_support import listening_socket
from posbatch.web import create_app
from posbatch.web.cli import console_config

# Only keeps a hang (a connection never closed) from stalling the suite: never a measure.
DEADLINE_S = 30


@contextlib.asynccontextmanager
async def serving(world: World, **options: object) -> AsyncIterator[int]:
    """The console on a port of 127.0.0.1, in this event loop, with ``options`` of
    :func:`console_config`; yields the port."""
    sock = listening_socket("127.0.0.1", 0, backlog=64)
    server = uvicorn.Server(console_config(create_app(world.office), **options))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, DEADLINE_S)
        sock.close()


async def held(
    port: int, sent: bytes = b"", source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    if sent:
        writer.write(sent)
        await writer.drain()
    return reader, writer


async def login_page(port: int) -> int:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        return (await client.get("/login", timeout=DEADLINE_S)).status_code


@pytest.mark.slow
async def test_a_peer_that_sends_too_slowly_is_closed_and_the_console_answers_again(
    world: World,
) -> None:
    """Silent connections, a head that never ends, a body that never comes: each used to
    be held for ever (uvicorn starts no timer until a first answer); with the console's
    connections all taken that way, every user got 503."""
    async with serving(world, read_s=1.0, connections_max=6) as port:
        peers = [await held(port) for _ in range(3)]  # not one byte
        peers.append(await held(port, b"GET /login HTTP/1.1\r\nHost: x\r\n"))  # no end of head
        peers.append(
            await held(
                port,
                b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
                b"urlencoded\r\nContent-Length: 100\r\n\r\nname=",
            )
        )
        peers.append(await held(port, b"G"))  # then the keep-alive timer is gone too
        for reader, writer in peers:
            await asyncio.wait_for(reader.read(), DEADLINE_S)  # closed by the console: EOF
            writer.close()
        assert 200 == await login_page(port)


@pytest.mark.slow
async def test_one_address_cannot_take_every_connection(world: World) -> None:
    """With no cap, one machine opening as many connections as the console takes left
    none for anyone else (503), however briefly it must hold each."""
    async with serving(world, read_s=DEADLINE_S * 4, connections_max=8, per_address_max=3) as port:
        peers = [await held(port, source="127.0.0.2") for _ in range(8)]
        refused = 0
        for reader, writer in peers[3:]:  # each beyond the cap is closed at once
            answer = await asyncio.wait_for(reader.read(), DEADLINE_S)
            refused += answer.startswith(b"HTTP/1.1 503")
            writer.close()
        assert 5 == refused
        assert 200 == await login_page(port)  # from 127.0.0.1: the console still answers
        for _, writer in peers[:3]:
            writer.close()
