"""A host store filled through the real engines (host core + terminal engines joined
in-process): two merchants, three terminals, settled and open batches, declines, a batch
advanced by the back office (an exception) and the 77 that followed — then the users."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Final

import argon2
import httpx

from posbatch.backoffice import Actor, BackOffice
from posbatch.clearing import CardClass, FeeSchedule
from posbatch.host import ClearingStore, HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED, TEST_PAN_INSUFFICIENT_FUNDS
from posbatch.terminal import InProcessLink, Terminal, init_terminal, open_terminal
from testbed import MASTER_KEY, MASTER_KEY_HEX, MERCHANT_ID, TERMINAL_ID, StepClock

MERCHANT_A: Final = MERCHANT_ID
MERCHANT_B: Final = "898110054110002"
TERMINAL_A1: Final = TERMINAL_ID
TERMINAL_A2: Final = "10000002"
TERMINAL_B1: Final = "20000001"
PAN_A: Final = TEST_PAN_APPROVED  # 6222021234567890128
PAN_B: Final = "6222020000000044321"
PASSWORD: Final = "correct horse battery"
# 2026-12-05 09:00 Beijing time.
START: Final = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
USERS: Final = {
    "olga": ("ops", None),
    "sam": ("support", None),
    "mia": ("merchant", MERCHANT_A),
    "max": ("merchant", MERCHANT_B),
}
CHEAP_HASHER: Final = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
# The acquirer's standard fees from the first trading day: 0.60 %, domestic debit capped at 20.00.
STANDARD_FEES: Final = FeeSchedule(
    None,
    date(2026, 12, 5),
    {card_class: Decimal("0.006") for card_class in CardClass},
    {CardClass.DOMESTIC_DEBIT: 2000},
)
# Every key and card number the world knows, for the scans of what pages show.
SECRETS: Final = (PAN_A, PAN_B, TEST_PAN_INSUFFICIENT_FUNDS, MASTER_KEY_HEX)


@dataclass
class World:
    db_url: str
    root: Path
    clock: StepClock = field(default_factory=lambda: StepClock(START))
    terminals: dict[str, Terminal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = HostStore.open(self.db_url, pan_key=b"k" * 32)
        self.core = HostCore(self.store, clock=self.clock)
        self.office = BackOffice(self.store, clock=self.clock, hasher=CHEAP_HASHER)

    def close(self) -> None:
        for terminal in self.terminals.values():
            terminal.journal.engine.dispose()
        self.store.close()

    def terminal(self, merchant_id: str, terminal_id: str) -> Terminal:
        self.store.add_terminal(merchant_id, terminal_id, MASTER_KEY, now=self.clock())
        directory = self.root / terminal_id
        init_terminal(
            directory, merchant_id=merchant_id, terminal_id=terminal_id,
            master_key=MASTER_KEY, host_address="in-process", clock=self.clock,
        )  # fmt: skip
        terminal = open_terminal(directory, clock=self.clock, exchange=InProcessLink(self.core))
        self.terminals[terminal_id] = terminal
        return terminal

    def trade(self) -> World:
        """The day every web test starts from (under the standard fees)."""
        ClearingStore(self.store).set_fee_schedule(STANDARD_FEES, now=self.clock())
        a1 = self.terminal(MERCHANT_A, TERMINAL_A1)
        a2 = self.terminal(MERCHANT_A, TERMINAL_A2)
        b1 = self.terminal(MERCHANT_B, TERMINAL_B1)
        for amount_fen in (1250, 3000, 880):
            assert a1.sale(amount_fen, PAN_A).approved
        assert a1.settle().balanced  # batch 000001 closed balanced
        assert a1.sale(4500, PAN_A).approved
        assert a1.sale(1999, TEST_PAN_INSUFFICIENT_FUNDS).response_code == "51"
        assert a2.sale(700, PAN_A).approved
        assert a2.sale(800, PAN_A).approved
        # The back office closes a2's batch while it holds approvals: an exception…
        self.office.advance_batch(self.ops(), TERMINAL_A2, "cut-over fix")
        # …and a2's next sale meets a 77, recovers and is approved in the next batch.
        assert a2.sale(900, PAN_A).approved
        assert b1.sale(6600, PAN_B).approved
        self.office.advance_batch(self.ops(), TERMINAL_B1, "merchant closed early")
        self.clock.skip(hours=14, minutes=25)  # 23:25 Beijing: the next trading day
        assert b1.sale(7700, PAN_B).approved
        return self

    def ops(self) -> Actor:
        return Actor("olga", "ops", "127.0.0.1")

    def users(self) -> World:
        cli = Actor("cli:test", "cli", "local")
        for name, (role, merchant_id) in USERS.items():
            self.office.staff.add_user(
                cli, name, role, PASSWORD, merchant_id=merchant_id, now=self.clock.now
            )
        return self


LOGIN_TOKEN = re.compile(r'name="login_csrf" value="([^"]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def log_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> str:
    """Log ``client`` in as ``name``; return the session's CSRF token."""
    form = await client.get("/login")
    token = LOGIN_TOKEN.search(form.text)
    assert token is not None, form.text
    answer = await client.post(
        "/login", data={"name": name, "password": password, "login_csrf": token[1], "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/account")
    csrf = CSRF.search(page.text)
    assert csrf is not None
    return csrf[1]


def scan(text: str) -> list[str]:
    """What ``text`` shows that it must not: a card number beyond 6/4, a key."""
    found = [secret for secret in SECRETS if secret in text or secret.lower() in text]
    digits = re.findall(r"(?<!\d)\d{13,19}(?!\d)", text)
    allowed = {MERCHANT_A, MERCHANT_B}
    found += [run for run in digits if run not in allowed]
    return found


STATIC_ETAG = re.compile(r'"[0-9a-f]{32}"')


def scan_headers(headers: Iterable[tuple[str, str]]) -> list[str]:
    """What response headers show that they must not (see :func:`scan`).

    A static file's ETag is Starlette's MD5 of the file's mtime and size: it carries no data, and
    its hex holds a run of 13+ decimal digits for some mtimes (a clean checkout's), so it is not
    read as a card number.
    """
    return scan(
        "\n".join(
            f"{name}: {value}"
            for name, value in headers
            if not (name.lower() == "etag" and STATIC_ETAG.fullmatch(value))
        )
    )


def copied_world(template: tuple[Path, datetime], root: Path) -> World:
    """A world on a copy of a traded SQLite file, its clock where the original's stopped."""
    path, now = template
    shutil.copyfile(path, root / "copy.db")
    return World(f"sqlite:///{root / 'copy.db'}", root, clock=StepClock(now))
