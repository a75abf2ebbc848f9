"""Who sees the staff's work on an exception (差错): a merchant user sees the status and
the resolution of its own exceptions, never the remarks, assignees or staff names."""

from __future__ import annotations

import re

import httpx
from web_world import MERCHANT_A, MERCHANT_B, World, log_in

from posbatch.backoffice import Actor, ExceptionFilter, Scope

SAM = Actor("sam", "support", "10.0.0.9")
REMARKS = ("INTERNAL assign remark", "INTERNAL note about the merchant", "INTERNAL resolved")


def _worked(world: World) -> tuple[int, int]:
    """Merchant A's exception assigned, noted and resolved with remarks by sam; and the
    id of one of merchant B's."""
    items, _ = world.office.exceptions.queue(Scope(), ExceptionFilter(status=None))
    mine = next(i for i in items if i.merchant_id == MERCHANT_A).exception_id
    theirs = next(i for i in items if i.merchant_id == MERCHANT_B).exception_id
    exceptions = world.office.exceptions
    exceptions.assign(SAM, [mine], "sam", REMARKS[0], now=world.clock())
    exceptions.note(SAM, mine, REMARKS[1], now=world.clock())
    exceptions.resolve(
        SAM, [mine], "credit-merchant", REMARKS[2], amount_fen=500, now=world.clock()
    )
    return mine, theirs


def test_the_library_shows_a_merchant_the_outcome_not_the_staffs_work(world: World) -> None:
    mine, _ = _worked(world)
    item = world.office.exceptions.item(Scope(MERCHANT_A), mine)
    assert ("resolved", "credit-merchant", 500) == (item.status, item.resolution, item.amount_fen)
    assert (None, None) == (item.assignee, item.resolved_by)
    history = world.office.exceptions.history(Scope(MERCHANT_A), mine)
    assert [("resolve", "credit-merchant", 500, "", None)] == [
        (s.step, s.resolution, s.amount_fen, s.remark, s.assignee) for s in history
    ]
    assert "sam" not in {s.actor for s in history}
    staff = world.office.exceptions.history(Scope(), mine)  # staff still see everything
    assert list(REMARKS) == [s.remark for s in staff]


def test_a_merchant_cannot_find_its_exceptions_by_assignee(world: World) -> None:
    """A search by assignee would tell a merchant who works on what."""
    _worked(world)
    by_sam = ExceptionFilter(status=None, assignee="sam")
    by_nobody = ExceptionFilter(status=None, assignee="nobody")
    scope = Scope(MERCHANT_A)
    assert world.office.exceptions.queue(scope, by_sam) == world.office.exceptions.queue(
        scope, by_nobody
    )


async def test_a_merchants_pages_and_export_hold_no_staff_remarks(
    world: World, client: httpx.AsyncClient
) -> None:
    """The exception page, the queue and the CSV showed a merchant user the staff's
    remarks, the assignee and who resolved it."""
    mine, theirs = _worked(world)
    await log_in(client, "mia")
    urls = (f"/exceptions/{mine}", "/exceptions?status=all", "/exceptions.csv?status=all")
    pages = {url: await client.get(url) for url in urls}
    for url, answer in pages.items():
        assert 200 == answer.status_code, url
        for remark in REMARKS:
            assert remark not in answer.text, url
        assert not re.search(r"\bsam\b", answer.text), url
    item_page = pages[f"/exceptions/{mine}"].text
    assert "credit-merchant" in item_page and "5.00" in item_page  # the outcome is there
    assert 404 == (await client.get(f"/exceptions/{theirs}")).status_code
    csv = pages["/exceptions.csv?status=all"].text
    assert f"\r\n{theirs}," not in csv and MERCHANT_B not in csv


async def test_staff_still_see_remarks_and_assignees(
    world: World, client: httpx.AsyncClient
) -> None:
    mine, _ = _worked(world)
    await log_in(client, "olga")
    page = (await client.get(f"/exceptions/{mine}")).text
    for remark in REMARKS:
        assert remark in page
    assert re.search(r"\bsam\b", page)
