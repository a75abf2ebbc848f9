"""One trading day for the console and the statements: the back office names each
transaction's day with clearing's function and the acquirer's cut-off schedule
(``posbatch host set-cutoff``), so a sale shown on day D is on the statement of day D.

Found from outside: the console decided the day with its own fixed 23:00 (and its own
rule, which even took a 01:30 cut-off clearing refuses), so after the acquirer moved its
cut-off the console and the statement named different days for the same sale.
"""

from __future__ import annotations

from datetime import date, time, timedelta

import httpx
import pytest
from web_world import MERCHANT_B, PAN_B, World, log_in

from posbatch.backoffice import BackOffice, parse_cutoff
from posbatch.clearing import trading_day
from posbatch.errors import ConfigError
from posbatch.host import ClearingStore
from posbatch.web import create_app

NEW_TERMINAL = "20000009"


async def _export_day(office: BackOffice) -> str:
    """The trading day the console's export gives the newest sale of merchant B."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(office)), base_url="https://console.test"
    ) as client:
        await log_in(client, "sam")
        answer = await client.get("/transactions.csv", params={"merchant_id": MERCHANT_B})
    return answer.content.decode("utf-8").splitlines()[1].split(",")[1]


async def test_the_console_and_the_statement_name_the_same_day(world: World) -> None:
    """The acquirer moves its cut-off to 21:00 from trading day 7 December; a sale at 21:30
    Beijing on the 7th is on day 8 for clearing — and in the console, unless a fixed
    --cutoff overrides the schedule."""
    clearing = ClearingStore(world.store)
    clearing.set_cutoff(date(2026, 12, 7), time(21, 0), now=world.clock.now)
    # 5 Dec 23:25 Beijing (15:25 UTC) → 7 Dec 21:30 Beijing (13:30 UTC).
    world.clock.skip(days=1, hours=22, minutes=5)
    terminal = world.terminal(MERCHANT_B, NEW_TERMINAL)
    assert terminal.sale(1234, PAN_B).approved
    approved_at = world.store.transactions(NEW_TERMINAL)[-1].created_at

    following = BackOffice(world.store, clock=world.clock)  # reads the schedule now
    fixed = BackOffice(world.store, clock=world.clock, cutoff=time(23, 0))

    assert date(2026, 12, 8) == trading_day(approved_at, clearing.cutoffs())
    assert ("2026-12-08", "2026-12-07") == (
        await _export_day(following),
        await _export_day(fixed),
    )
    assert approved_at - world.clock.now < timedelta(minutes=1)


@pytest.mark.parametrize("text", ["01:30", "11:59", "06:00"])
def test_a_cutoff_clearing_refuses_is_refused_by_the_console(text: str) -> None:
    """`backoffice serve --cutoff` takes what `host set-cutoff` takes: 00:00 or 12:00–23:59."""
    with pytest.raises(ConfigError, match="before 12:00"):
        parse_cutoff(text)
