"""A merchant with thousands of statement lines: the statement the store computes is the one
the pure functions compute from every record read naively (a differential test of the
store's reads), the page shows it a page of lines at a time with every figure of each line,
and its exports are the whole statement — the text as `posbatch clearing statement` prints
it, the CSV as `clearing statement --csv` writes it."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import unescape
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from web_world import MERCHANT_A, MERCHANT_B, TERMINAL_A1, TERMINAL_A2, World, log_in

from posbatch.backoffice import STATEMENT_PAGE_LINES, Actor, ExceptionFilter, Scope
from posbatch.batch.money import format_fen
from posbatch.clearing import (
    CardBin,
    CardClass,
    ClearingRecord,
    FeeSchedule,
    Funding,
    MerchantTerms,
    OriginalSale,
    SettlementCycle,
    build_statement,
    cleared_note,
    credit_pieces,
    render_statement,
    statement_csv,
    trading_day_bounds,
)
from posbatch.host import ClearingStore
from posbatch.host import _schema as t

DAYS = (date(2026, 12, 6), date(2026, 12, 7))  # the world's next trading day and the one after
SALES_A_DAY = 1_300  # merchant A's sales a day, over its two terminals
SEED = 5
PREFIXES = ("622202", "622588", "411111", "625800", "999999")  # 999999: no BIN entry


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _trade(world: World) -> None:
    """Two trading days of merchant A (and a little of merchant B) written in bulk: sales of
    every card class, voids, full and partial refunds (some of the day before's sales),
    reversals within the day and after the cut-off, resolved exceptions; merchant A's own
    fee schedule and T+0 from the second day, BIN entries."""
    clearing = ClearingStore(world.store)
    now = world.clock()
    clearing.set_card_bins(
        [CardBin("622202", Funding.DEBIT, DAYS[1]), CardBin("622588", Funding.CREDIT, DAYS[0]),
         CardBin("411111", Funding.CREDIT, DAYS[0]), CardBin("625800", Funding.DEBIT, DAYS[1])],
        now=now,
    )  # fmt: skip
    rates = {card_class: Decimal("0.0055") for card_class in CardClass}
    rates[CardClass.FOREIGN_CREDIT] = Decimal("0.025")
    clearing.set_fee_schedule(
        FeeSchedule(MERCHANT_A, DAYS[1], rates, {CardClass.DOMESTIC_DEBIT: 1500},
                    instant_rate=Decimal("0.0005")),
        now=now,
    )  # fmt: skip
    clearing.set_merchant_terms(MerchantTerms(MERCHANT_A, DAYS[1], SettlementCycle.T0), now=now)
    rng = random.Random(SEED)
    terminals = ((TERMINAL_A1, "01"), (TERMINAL_A2, "01"), ("20000001", "00"))
    stans: dict[str, int] = defaultdict(lambda: 500)
    reversals: list[tuple[dict[str, Any], datetime]] = []
    earlier: list[dict[str, Any]] = []  # the day before's standing sales
    with world.store.engine.begin() as connection:
        for day in DAYS:
            start, end = trading_day_bounds(day)
            batch_of = {}
            for terminal_id, _ in terminals:
                batch_of[terminal_id] = connection.execute(
                    t.batches.insert().values(
                        terminal_id=terminal_id,
                        batch_no=100 + day.day,
                        state="CLOSED",
                        opened_at=start.replace(tzinfo=None),
                        closed_at=end.replace(tzinfo=None),
                        close_reason="balanced",
                    )
                ).inserted_primary_key[0]
            moments = sorted(
                start + timedelta(seconds=rng.randrange(int((end - start).total_seconds()) - 120))
                for _ in range(SALES_A_DAY + 100)
            )
            sales: list[dict[str, Any]] = []
            for moment in moments:
                terminal_id = (TERMINAL_A1, TERMINAL_A2, TERMINAL_A1, "20000001")[rng.randrange(4)]
                stans[terminal_id] += 1
                row: dict[str, Any] = {
                    "batch_id": batch_of[terminal_id], "terminal_id": terminal_id,
                    "stan": stans[terminal_id], "kind": "sale",
                    "amount_fen": max(1, int(rng.lognormvariate(8.5, 1.3))),
                    "card_type": "01" if rng.random() < 0.1 else "00", "pan_hmac": "0" * 64,
                    "pan_masked": f"{rng.choice(PREFIXES)}*********{rng.randrange(10_000):04d}",
                    "status": "approved", "response_code": "00",
                    "rrn": f"{rng.randrange(10**12):012d}", "auth_code": "000001",
                    "original_transaction_id": None, "refunded_fen": 0,
                    "request_digest": "0" * 64, "created_at": moment.replace(tzinfo=None),
                }  # fmt: skip
                draw = rng.random()
                pool = [s for s in sales[-40:] if s["terminal_id"] == terminal_id]
                if draw < 0.06 and pool and pool[-1]["status"] == "approved":
                    sale = pool[-1]
                    if not sale["refunded_fen"]:
                        sale["status"] = "voided"
                        connection.execute(
                            t.transactions.update()
                            .where(t.transactions.c.transaction_id == sale["transaction_id"])
                            .values(status="voided")
                        )
                        row.update(
                            kind="void",
                            amount_fen=sale["amount_fen"],
                            original_transaction_id=sale["transaction_id"],
                            card_type=sale["card_type"],
                            pan_masked=sale["pan_masked"],
                        )
                elif draw < 0.12 and (pool or earlier):
                    # a sale of this terminal: of today, or of the day before
                    mine = [s for s in earlier if s["terminal_id"] == terminal_id]
                    sale = rng.choice(pool if pool and (rng.random() < 0.6 or not mine) else mine)
                    left = sale["amount_fen"] - sale["refunded_fen"]
                    if sale["status"] == "approved" and left > 0:
                        amount = left if rng.random() < 0.4 else rng.randint(1, left)
                        sale["refunded_fen"] += amount
                        row.update(kind="refund", amount_fen=amount,
                                   original_transaction_id=sale["transaction_id"],
                                   card_type=sale["card_type"],
                                   pan_masked=sale["pan_masked"])  # fmt: skip
                row["transaction_id"] = connection.execute(
                    t.transactions.insert().values(**row)
                ).inserted_primary_key[0]
                if row["kind"] == "sale":
                    sales.append(row)
                    if draw > 0.97:  # reversed within the day
                        reversals.append((row, moment + timedelta(seconds=60)))
                    elif draw > 0.95 and day == DAYS[0]:  # reversed the next day (batch open)
                        reversals.append((row, moment + timedelta(days=1)))
                elif row["kind"] == "void" and draw < 0.01:  # the void reversed: sale stands
                    reversals.append((row, moment + timedelta(seconds=30)))
            earlier = [s for s in sales if s["status"] == "approved" and s["kind"] == "sale"]
        for row, at in reversals:
            if row["kind"] == "sale" and (row["status"] != "approved" or row["refunded_fen"]):
                continue  # voided or refunded since: not reversed
            if row["kind"] == "void":
                connection.execute(
                    t.transactions.update()
                    .where(t.transactions.c.transaction_id == row["original_transaction_id"])
                    .values(status="approved")
                )
            connection.execute(
                t.transactions.update()
                .where(t.transactions.c.transaction_id == row["transaction_id"])
                .values(status="reversed")
            )
            connection.execute(
                t.reversals.insert().values(
                    terminal_id=row["terminal_id"],
                    batch_id=row["batch_id"],
                    batch_no=0,
                    stan=row["stan"],
                    original_kind=row["kind"],
                    amount_fen=row["amount_fen"],
                    reason_code="98",
                    outcome="applied",
                    transaction_id=row["transaction_id"],
                    response_code="00",
                    created_at=at.replace(tzinfo=None),
                )
            )
        for index in range(6):  # exceptions raised on the first day, resolved on the second
            connection.execute(
                t.exceptions.insert().values(
                    terminal_id=TERMINAL_A1,
                    merchant_id=MERCHANT_A,
                    kind="amount-differs",
                    cause=f"statement test {index}",
                    terminal_amount_fen=10_000 + index,
                    host_amount_fen=9_000,
                    created_at=(trading_day_bounds(DAYS[0])[0] + timedelta(hours=3)).replace(
                        tzinfo=None
                    ),
                )
            )
    items, _ = world.office.exceptions.queue(
        Scope(), ExceptionFilter(kind="amount-differs", merchant_id=MERCHANT_A)
    )
    staff = Actor("olga", "ops", "127.0.0.1")
    resolved_at = trading_day_bounds(DAYS[1])[0] + timedelta(hours=5)
    for item, resolution in zip(items, ("credit-merchant", "debit-merchant") * 3, strict=False):
        world.office.exceptions.resolve(
            staff, [item.exception_id], resolution, "statement test", now=resolved_at
        )


def _reference_records(world: World) -> list[ClearingRecord]:
    """Every record of the store, read the plainest way (whole tables, no day, no merchant):
    what the store's own reads must agree with."""
    with world.store.engine.connect() as connection:
        rows = connection.execute(sa.select(t.transactions)).all()
        batch_no = {
            row[0]: row[1]
            for row in connection.execute(sa.select(t.batches.c.batch_id, t.batches.c.batch_no))
        }
        terminals = sa.select(t.terminals.c.terminal_id, t.terminals.c.merchant_id)
        merchant_of = {row[0]: row[1] for row in connection.execute(terminals)}
        applied = connection.execute(
            sa.select(t.reversals.c.transaction_id, t.reversals.c.created_at).where(
                t.reversals.c.outcome == "applied"
            )
        ).all()
    taken_back: dict[int, datetime] = {}
    for transaction_id, created_at in applied:
        if transaction_id is not None:
            moment = _aware(created_at)
            taken_back[transaction_id] = min(moment, taken_back.get(transaction_id, moment))
    by_id = {row.transaction_id: row for row in rows}

    def reversed_at(row: Any) -> datetime | None:
        if row.status != "reversed":
            return None
        return taken_back.get(row.transaction_id, _aware(row.created_at))

    credits: dict[int, list[tuple[int, int, datetime, datetime | None]]] = defaultdict(list)
    for row in rows:
        credit = row.kind in ("void", "refund") and row.status in ("approved", "reversed")
        if row.original_transaction_id is not None and credit:
            credits[row.original_transaction_id].append(
                (row.transaction_id, row.amount_fen, _aware(row.created_at), reversed_at(row))
            )
    records = []
    for row in rows:
        if row.status not in ("approved", "voided", "reversed"):
            continue
        original = None
        pieces: tuple[tuple[int, int], ...] = ()
        if row.original_transaction_id is not None:
            sale = by_id[row.original_transaction_id]
            original = OriginalSale(
                sale.transaction_id, batch_no[sale.batch_id], sale.stan, sale.amount_fen,
                sale.card_type, sale.pan_masked, _aware(sale.created_at),
            )  # fmt: skip
            pieces = credit_pieces(
                row.transaction_id, sale.amount_fen, credits[sale.transaction_id]
            )
        records.append(
            ClearingRecord(
                row.transaction_id,
                merchant_of[row.terminal_id],
                row.terminal_id,
                row.batch_id,
                batch_no[row.batch_id],
                row.stan,
                row.rrn,
                row.kind,
                row.amount_fen,
                row.card_type,
                row.pan_masked,
                _aware(row.created_at),
                reversed_at(row),
                original,
                pieces,
            )
        )
    return records


@pytest.fixture
def traded(world: World) -> World:
    _trade(world)
    return world


def test_the_store_computes_the_statement_the_records_make(traded: World) -> None:
    """For each day, merchant A's statement from the store (its reads of one merchant's day)
    equals the pure statement of every record read whole — line for line, fee for fee —
    and it has thousands of lines, reversal lines of the day before and adjustments."""
    clearing = ClearingStore(traded.store)
    rules = clearing.rules()
    records = _reference_records(traded)
    kinds: set[str] = set()
    for day in DAYS:
        start, end = trading_day_bounds(day, rules.cutoffs)
        found = clearing.statement(MERCHANT_A, day)
        expected = build_statement(
            MERCHANT_A, day, records, rules,
            batches=clearing.batches({record.batch_id for record in records}),
            exceptions=clearing.exceptions(start, end),
            adjustments=clearing.adjustment_records(start, end),
        )  # fmt: skip
        assert expected == found
        assert render_statement(expected) == render_statement(found)
        assert statement_csv(expected) == statement_csv(found)
        assert len(found.lines) > 1_000
        kinds |= {line.kind.value for line in found.lines}
    assert {"sale", "void", "refund", "reversal"} == kinds
    assert found.adjustments and found.unknown_bins  # the second day: adjustments, no BIN


def test_a_cleared_day_keeps_the_statement_the_records_made(traded: World) -> None:
    """Once each day is cleared, the statement read from what the run kept is the one the
    records make, line for line — only marked cleared."""
    clearing = ClearingStore(traded.store)
    rules = clearing.rules()
    records = _reference_records(traded)
    for day in DAYS:
        start, end = trading_day_bounds(day, rules.cutoffs)
        expected = build_statement(
            MERCHANT_A, day, records, rules,
            batches=clearing.batches({record.batch_id for record in records}),
            exceptions=clearing.exceptions(start, end),
            adjustments=clearing.adjustment_records(start, end),
        )  # fmt: skip
        clearing.clear_day(day, now=end + timedelta(hours=1))
        kept = clearing.statement(MERCHANT_A, day)
        assert kept.cleared and len(kept.lines) > 1_000
        assert dataclasses.replace(expected, cleared=True) == kept
        assert render_statement(expected) == render_statement(kept)


def _shown_lines(page: str) -> list[tuple[str, ...]]:
    body = re.search(
        r'<table class="grid" id="statement-lines">.*?<tbody>(.*?)</tbody>', page, re.S
    )
    assert body is not None
    rows = re.findall(r"<tr>(.*?)</tr>", body[1], re.S)
    return [
        tuple(
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        )
        for row in rows
    ]


async def test_the_page_shows_every_line_a_page_at_a_time(
    traded: World, client: httpx.AsyncClient
) -> None:
    """Paging through the statement of the second day shows each line once, in order, with
    its time, terminal, batch, stan, card, amount, fee and net; the totals on every page are
    the whole statement's; the text export is what the CLI prints."""
    await log_in(client, "mia")
    day = DAYS[1]
    statement = ClearingStore(traded.store).statement(MERCHANT_A, day)
    pages = -(-len(statement.lines) // STATEMENT_PAGE_LINES)
    assert pages > 5
    shown: list[tuple[str, ...]] = []
    for number in range(1, pages + 1):
        answer = await client.get(
            "/statements", params={"date": day.isoformat(), "page": str(number)}
        )
        assert 200 == answer.status_code
        assert f"第 {number} / {pages} 页 page" in answer.text
        assert f"¥{format_fen(statement.total.fee_fen)}" in answer.text
        shown += _shown_lines(answer.text)
    assert len(statement.lines) == len(shown)
    for line, cells in zip(statement.lines, shown, strict=True):
        assert (line.terminal_id, f"{line.batch_no:06d}", f"{line.stan:06d}") == cells[1:4]
        assert line.pan_masked == cells[6].split()[0]
        money = (format_fen(line.amount_fen), format_fen(line.fee_fen), format_fen(line.net_fen))
        assert money == cells[8:11]
    text = await client.get("/statements.txt", params={"date": day.isoformat()})
    assert 200 == text.status_code and text.headers["content-type"].startswith("text/plain")
    printed = f"{render_statement(statement)}\n{cleared_note(day, statement.cleared)}\n"
    assert printed.encode("utf-8") == text.content
    assert f"statement-{MERCHANT_A}-{day:%Y%m%d}.txt" in text.headers["content-disposition"]
    csv = await client.get("/statements.csv", params={"date": day.isoformat()})
    assert statement_csv(statement).encode("utf-8-sig") == csv.content


async def test_the_page_says_where_each_exception_was_settled(
    traded: World, client: httpx.AsyncClient
) -> None:
    """The six exceptions raised on the first day and resolved on the second: the first
    day's page says so and links to the second day's statement, which carries them."""
    await log_in(client, "mia")
    answer = await client.get("/statements", params={"date": DAYS[0].isoformat()})
    body = re.search(r'id="statement-exceptions">.*?</table>', answer.text, re.S)
    assert body is not None
    link = f'href="/statements?merchant_id={MERCHANT_A}&amp;date={DAYS[1].isoformat()}"'
    assert 6 == body[0].count(link)
    assert 6 == body[0].count(f"on the statement of trading day {DAYS[1].isoformat()}")


async def test_the_exceptions_heading_does_not_deny_the_adjustments_in_the_net(
    traded: World, client: httpx.AsyncClient
) -> None:
    """The second day's page carries the six resolutions as adjustments in its net after
    adjustments, yet headed its exceptions "not in the net: the back office settles them"
    — read as money still to come. It now says what the text export says: an exception's
    amounts are not in the net, a resolution that moves money is an adjustment of the day
    it is resolved."""
    await log_in(client, "mia")
    answer = await client.get("/statements", params={"date": DAYS[1].isoformat()})
    title = re.search(r"<h2[^>]*>差错 <small>([^<]*)</small></h2>\s*<table[^>]*"
                      r'id="statement-exceptions"', answer.text)  # fmt: skip
    assert 'id="statement-net-adjusted"' in answer.text and title is not None
    assert "the back office settles them" not in title[1]
    assert "is an adjustment (差错调整) of the trading day it is resolved" in title[1]


@pytest.mark.parametrize(
    ("page", "words"),
    [("0", "a page number from 1"), ("two", "a page number from 1"),
     ("99", "this statement has 1 page(s) of lines"), ("1" * 7, "a page number from 1")],
)  # fmt: skip
async def test_a_page_the_statement_does_not_have_is_a_clear_error(
    shared_client: httpx.AsyncClient, page: str, words: str
) -> None:
    await log_in(shared_client, "olga")
    answer = await shared_client.get(
        "/statements", params={"merchant_id": MERCHANT_A, "date": "2026-12-05", "page": page}
    )
    assert (400, True) == (answer.status_code, words in answer.text)
    assert "Traceback" not in answer.text


async def test_a_merchant_cannot_read_anothers_statement_text(
    client: httpx.AsyncClient,
) -> None:
    await log_in(client, "mia")
    answer = await client.get(
        "/statements.txt", params={"merchant_id": MERCHANT_B, "date": "2026-12-06"}
    )
    assert 404 == answer.status_code and "77.00" not in answer.text
