"""The exception queue's "largest first" sorts by the money at stake: the difference when
both sides have an amount and they differ, else the one amount there is — never by the
host's amount alone (an exception the host has no row of, or whose amounts differ, sank)."""

from __future__ import annotations

import httpx
from web_world import MERCHANT_A, TERMINAL_A1, World, log_in

from posbatch.backoffice import ExceptionFilter, Scope
from posbatch.host import _schema as t

KIND = "order-test"
# (terminal amount, host amount) → the money at stake
ROWS = (
    (None, 1_000),  # host only: 10.00
    (500_000, None),  # terminal only, the host has no row: 5,000.00
    (300_000, 100),  # amounts differ: 2,999.00 at stake (the host's 1.00 sorted it last)
    (20_000, 20_000),  # both sides agree (a late reversal): 200.00
    (None, None),  # no amount known: 0
    (-70_000, None),  # a credit on the terminal side only: 700.00
)
AT_STAKE_FEN = {0: 1_000, 1: 500_000, 2: 299_900, 3: 20_000, 4: 0, 5: 70_000}


def _raise(world: World) -> dict[int, int]:
    """The rows above as exceptions of merchant A; their ids → the row's index."""
    with world.store.engine.begin() as connection:
        ids = [
            connection.execute(
                t.exceptions.insert().values(
                    terminal_id=TERMINAL_A1,
                    merchant_id=MERCHANT_A,
                    kind=KIND,
                    cause=f"order test {index}",
                    terminal_amount_fen=terminal,
                    host_amount_fen=host,
                    created_at=world.clock().replace(tzinfo=None),
                )
            ).inserted_primary_key[0]
            for index, (terminal, host) in enumerate(ROWS)
        ]
    return {exception_id: index for index, exception_id in enumerate(ids)}


EXPECTED_ORDER = [1, 2, 5, 3, 0, 4]  # by money at stake, largest first; ties by id


def test_largest_first_is_the_money_at_stake_whichever_side_has_it(world: World) -> None:
    """The terminal-only 5,000.00 and the 2,999.00 difference come first; they sorted below
    the host-only 10.00 when the host's amount was the key."""
    index_of = _raise(world)
    items, _ = world.office.exceptions.queue(Scope(), ExceptionFilter(kind=KIND, sort="amount"))
    assert EXPECTED_ORDER == [index_of[item.exception_id] for item in items]
    assert [AT_STAKE_FEN[i] for i in EXPECTED_ORDER] == [item.at_stake_fen for item in items]


def test_pages_of_largest_first_continue_where_the_last_ended(world: World) -> None:
    """Keyset pages of two: each page starts after the last one's money at stake, so no
    exception is skipped or shown twice."""
    index_of = _raise(world)
    found: list[int] = []
    after = None
    for _ in range(len(ROWS)):
        items, after = world.office.exceptions.queue(
            Scope(), ExceptionFilter(kind=KIND, sort="amount"), after=after, limit=2
        )
        found += [index_of[item.exception_id] for item in items]
        if after is None:
            break
    assert EXPECTED_ORDER == found


async def test_the_queue_page_shows_and_sorts_by_the_money_at_stake(
    world: World, client: httpx.AsyncClient
) -> None:
    """The page's rows come largest at stake first, with the amount at stake shown."""
    index_of = _raise(world)
    await log_in(client, "olga")
    answer = await client.get("/exceptions", params={"kind": KIND, "sort": "amount"})
    assert 200 == answer.status_code
    shown = [
        index_of[int(found)]
        for found in dict.fromkeys(
            part.split('"', 1)[0] for part in answer.text.split('href="/exceptions/')[1:]
        )
        if found.isdigit()
    ]
    assert EXPECTED_ORDER == shown
    assert "at stake 涉及金额" in answer.text and ">2999.00<" in answer.text
