"""The console under attack: what a hostile outsider, merchant user or support agent found
(the probe of 2026-12-07), each a test that failed before its fix."""

from __future__ import annotations

import asyncio
import time

import argon2
import httpx
from web_world import LOGIN_TOKEN, World

from posbatch.backoffice import BackOffice
from posbatch.web import create_app


class SlowHasher(argon2.PasswordHasher):
    """argon2 as cheap as the tests' but as slow as a real one (~0.2 s a hash): every
    login holds its request's connection while it hashes, as in production."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        time.sleep(0.2)
        return super().verify(hash, password)


async def test_many_logins_at_once_do_not_stop_the_console(world: World) -> None:
    """30 logins at once with no account (an outsider's) used to take every pooled
    connection and wait for a second one: everyone got 503/500 after the pool's 30 s."""
    office = BackOffice(world.store, clock=world.clock, hasher=SlowHasher())
    app = create_app(office)

    async def attempt(number: int) -> int:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://console.test"
        ) as client:
            form = await client.get("/login")
            token = LOGIN_TOKEN.search(form.text)
            assert token is not None
            answer = await client.post(
                "/login",
                data={"name": f"nobody{number}", "password": "wrong password!",
                      "login_csrf": token[1]},
            )  # fmt: skip
            return answer.status_code

    started = time.monotonic()
    statuses = await asyncio.wait_for(
        asyncio.gather(*(attempt(number) for number in range(30))), timeout=25
    )
    assert statuses == [401] * 30
    assert time.monotonic() - started < 25
