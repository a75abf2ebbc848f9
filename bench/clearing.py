"""A statement run over one trading day, beside a bare SQL aggregate of the same rows.

The host store is filled (directly, in bulk: this measures clearing, not the
host's request path) with 1,000 merchants (1,500 terminals, a closed batch
each) and one trading day of 100,000 transactions — 90 % sales, 5 % voids
(their sales marked voided), 3 % refunds (half partial), 2 % sales reversed
the same day — plus the day before with as many, so the day's bounds matter.
Rules: a standard fee schedule (debit capped), 10 % of merchants with their
own schedule, 5 % on T+0, six BIN entries.

Measured, each the best of ``--repeat`` runs in this process, same store:

- baseline: the bare SQL aggregate of the day — count and signed sum of the
  standing sales, voids and refunds, grouped by merchant (one statement);
- statement run: ``ClearingStore.statements(day)`` — every merchant's
  statement (对账单) with every line, fee, total, batch and arrival date;
- clearing file: ``ClearingStore.clearing_file(day)``.

The target is statement run / baseline ≤ 2. The gross of every statement is
checked against the aggregate before anything is timed.

Then the statement page of the back office, for a merchant with thousands of lines
(another store: ``--page-transactions`` over ``--page-merchants``, by default 100,000
over 30 — about 3,300 lines a merchant with one terminal, 6,600 with two), each the
median of ``--repeat`` × 3 rounds, interleaved:

- bare query: that merchant's rows of the day on a raw driver cursor (the statement's
  own day query, for its terminals);
- statement: ``ClearingStore.statement`` — every line priced, totals, batches;
- page: ``GET /statements`` asked of the console app in this process (ASGI, logged in),
  first page of lines — and the ratio of page to bare query;
- text export: ``GET /statements.txt``, the whole statement;

first computed from the records (the day not cleared), then read from the clearing run.

Usage: ``PYTHONPATH=src python bench/clearing.py [--db sqlite|postgresql|both]
[--transactions 100000] [--merchants 1000] [--repeat 5] [--page-transactions 100000]
[--page-merchants 30]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from posbatch.backoffice import Actor, BackOffice
from posbatch.backoffice._staff import Staff
from posbatch.clearing import (
    CardBin,
    CardClass,
    FeeSchedule,
    Funding,
    MerchantTerms,
    SettlementCycle,
    trading_day_bounds,
)
from posbatch.host import ClearingStore, HostStore
from posbatch.host import _schema as t
from posbatch.host._clearing import _DAY_SQL
from posbatch.web import create_app

POSTGRES_URL = os.environ.get(
    "POSBATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TARGET_RATIO = 2.0
DAY = date(2026, 9, 30)
SEED = 14
INSERT_CHUNK_ROWS = 5_000
BINS = (
    ("622202", Funding.DEBIT, "00"),
    ("621700", Funding.DEBIT, "00"),
    ("622588", Funding.CREDIT, "00"),
    ("625800", Funding.CREDIT, "00"),
    ("411111", Funding.CREDIT, "01"),
    ("555555", Funding.CREDIT, "01"),
)

BASELINE_SQL = (
    "SELECT m.merchant_id, count(*), "
    "sum(CASE WHEN t.kind = 'sale' THEN t.amount_fen ELSE -t.amount_fen END) "
    "FROM host_transactions t JOIN host_terminals m ON m.terminal_id = t.terminal_id "
    "WHERE t.created_at >= :start AND t.created_at < :end "
    "AND t.status IN ('approved', 'voided') AND t.kind IN ('sale', 'void', 'refund') "
    "GROUP BY m.merchant_id"
)


def _rates(base: str) -> dict[CardClass, Decimal]:
    rate = Decimal(base)
    return {
        CardClass.DOMESTIC_DEBIT: rate,
        CardClass.DOMESTIC_CREDIT: rate,
        CardClass.FOREIGN_DEBIT: Decimal("0.025"),
        CardClass.FOREIGN_CREDIT: Decimal("0.025"),
    }


def fill(store: HostStore, *, transactions: int, merchants: int) -> None:
    """The rules and two trading days of records, written in bulk."""
    generator = random.Random(SEED)
    clearing = ClearingStore(store)
    since = DAY - timedelta(days=30)
    set_at = datetime.combine(since, datetime.min.time(), UTC)
    clearing.set_fee_schedule(
        FeeSchedule(None, since, _rates("0.006"), {CardClass.DOMESTIC_DEBIT: 2_000}),
        now=set_at,
    )
    clearing.set_card_bins(
        [CardBin(prefix, funding, since) for prefix, funding, _type in BINS], now=set_at
    )
    merchant_ids = [f"89811005{index:07d}" for index in range(merchants)]
    for index, merchant_id in enumerate(merchant_ids):
        if index % 10 == 0:
            clearing.set_fee_schedule(
                FeeSchedule(merchant_id, since, _rates("0.0055"), instant_rate=Decimal("0.0005")),
                now=set_at,
            )
        if index % 20 == 0:
            clearing.set_merchant_terms(
                MerchantTerms(merchant_id, since, SettlementCycle.T0), now=set_at
            )
    terminals = []
    for index, merchant_id in enumerate(merchant_ids):
        for number in range(1 + (index % 2)):
            terminals.append((f"{20_000_000 + index * 2 + number:08d}", merchant_id))
    key = bytes(16)
    rows_terminals = [
        {"terminal_id": terminal_id, "merchant_id": merchant_id, "master_key": key,
         "status": "active", "signed_on": False, "created_at": set_at.replace(tzinfo=None)}
        for terminal_id, merchant_id in terminals
    ]  # fmt: skip
    with store.engine.begin() as connection:
        connection.execute(t.terminals.insert(), rows_terminals)
        next_id = 1
        for offset in (-1, 0):  # the day before, then the day measured
            day = DAY + timedelta(days=offset)
            start, end = trading_day_bounds(day)
            span_s = int((end - start).total_seconds()) - 1
            batch_of: dict[str, int] = {}
            batch_rows = []
            for number, (terminal_id, _merchant) in enumerate(terminals):
                batch_id = (offset + 1) * len(terminals) + number + 1
                batch_of[terminal_id] = batch_id
                batch_rows.append(
                    {"batch_id": batch_id, "terminal_id": terminal_id, "batch_no": offset + 2,
                     "state": "CLOSED", "opened_at": start.replace(tzinfo=None),
                     "closed_at": end.replace(tzinfo=None), "close_reason": "balanced"}
                )  # fmt: skip
            connection.execute(t.batches.insert(), batch_rows)
            rows: list[dict[str, Any]] = []
            sales: list[dict[str, Any]] = []
            stans: dict[str, int] = {}
            # In time order, as the host writes them (transaction ids grow with time).
            moments = sorted(
                start + timedelta(seconds=generator.randint(0, span_s)) for _ in range(transactions)
            )
            for moment in moments:
                terminal_id = terminals[generator.randrange(len(terminals))][0]
                stans[terminal_id] = stans.get(terminal_id, 0) + 1
                prefix, _funding, card_type = BINS[generator.randrange(len(BINS))]
                draw = generator.random()
                row = {
                    "transaction_id": next_id, "batch_id": batch_of[terminal_id],
                    "terminal_id": terminal_id, "stan": stans[terminal_id], "kind": "sale",
                    "amount_fen": max(1, int(generator.lognormvariate(8.2, 1.1))),
                    "card_type": card_type, "pan_hmac": "0" * 64,
                    "pan_masked": f"{prefix}******1234", "status": "approved",
                    "response_code": "00", "rrn": f"{next_id:012d}", "auth_code": "000001",
                    "local_time": None, "local_date": None, "original_transaction_id": None,
                    "refunded_fen": 0, "request_digest": "0" * 64,
                    "created_at": moment.replace(tzinfo=None),
                }  # fmt: skip
                next_id += 1
                same_terminal = [sale for sale in sales[-50:] if sale["terminal_id"] == terminal_id]
                if draw < 0.05 and same_terminal and same_terminal[-1]["status"] == "approved":
                    sale = same_terminal[-1]
                    if not sale["refunded_fen"]:
                        sale["status"] = "voided"
                        row.update(kind="void", amount_fen=sale["amount_fen"],
                                   original_transaction_id=sale["transaction_id"],
                                   card_type=sale["card_type"],
                                   pan_masked=sale["pan_masked"])  # fmt: skip
                elif draw < 0.08 and same_terminal:
                    sale = same_terminal[0]
                    left = sale["amount_fen"] - sale["refunded_fen"]
                    if sale["status"] == "approved" and left > 0:
                        amount = left if generator.random() < 0.5 else generator.randint(1, left)
                        sale["refunded_fen"] += amount
                        row.update(kind="refund", amount_fen=amount,
                                   original_transaction_id=sale["transaction_id"],
                                   card_type=sale["card_type"],
                                   pan_masked=sale["pan_masked"])  # fmt: skip
                elif draw < 0.10:
                    row["status"] = "reversed"
                if row["kind"] == "sale":
                    sales.append(row)
                rows.append(row)
            for chunk in range(0, len(rows), INSERT_CHUNK_ROWS):
                connection.execute(t.transactions.insert(), rows[chunk : chunk + INSERT_CHUNK_ROWS])
            reversals = [
                {"terminal_id": row["terminal_id"], "batch_id": row["batch_id"],
                 "batch_no": offset + 2, "stan": row["stan"], "original_kind": "sale",
                 "amount_fen": row["amount_fen"], "reason_code": "98", "outcome": "applied",
                 "transaction_id": row["transaction_id"], "response_code": "00",
                 "created_at": min(row["created_at"] + timedelta(seconds=60),
                                   end.replace(tzinfo=None) - timedelta(seconds=1))}
                for row in rows if row["status"] == "reversed"
            ]  # fmt: skip
            if reversals:
                connection.execute(t.reversals.insert(), reversals)
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    else:
        with store.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def timed(action: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs (after one warm-up), and the last result.

    The best, not the median: the machine is shared, and the best of each is the figure
    least disturbed by others' load.
    """
    result = action()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - began)
    return min(times), result


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'host.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(kind: str, *, transactions: int, merchants: int, repeat: int) -> float:
    with database(kind) as url:
        store = HostStore.open(url, pan_key=b"k" * 32)
        try:
            began = time.perf_counter()
            fill(store, transactions=transactions, merchants=merchants)
            print(f"[{kind}] filled in {time.perf_counter() - began:.1f} s: "
                  f"{merchants:,} merchants, {transactions:,} transactions on {DAY} "
                  "(and as many the day before)")  # fmt: skip
            return measure(kind, store, repeat)
        finally:
            store.close()


def measure(kind: str, store: HostStore, repeat: int) -> float:
    clearing = ClearingStore(store)
    start, end = trading_day_bounds(DAY)
    parameters = {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)}

    def baseline() -> list[Any]:
        with store.engine.connect() as connection:
            return list(connection.execute(sa.text(BASELINE_SQL), parameters))

    base_s, aggregate = timed(baseline, repeat)
    live_s, live = timed(lambda: clearing.summaries(DAY), repeat)
    assert isinstance(live, list)
    first = live[0].merchant_id
    one_live_s, _statement = timed(lambda: clearing.statement(first, DAY), repeat)
    began = time.perf_counter()
    cleared = clearing.clear_day(DAY, now=end + timedelta(hours=1))
    clear_s = time.perf_counter() - began
    run_s, summaries = timed(lambda: clearing.summaries(DAY), repeat)
    file_s, _document = timed(lambda: clearing.clearing_file(DAY), repeat)
    one_s, _statement = timed(lambda: clearing.statement(first, DAY), repeat)
    assert isinstance(aggregate, list) and isinstance(summaries, list)
    expected = {row[0]: (row[1], row[2]) for row in aggregate}
    actual = {s.merchant_id: (s.total.count, s.total.gross_fen) for s in summaries}
    if expected != actual or live != summaries:
        raise SystemExit(f"[{kind}] statements disagree with the aggregate or with each other")
    print(f"[{kind}] checked: {len(summaries):,} statements, {cleared.totals.count:,} lines; "
          "gross = the aggregate for every merchant; computed = cleared; "
          f"fees {cleared.totals.fee_fen / 100:,.2f} yuan")  # fmt: skip
    ratio = run_s / base_s
    print(f"[{kind}] baseline: bare SQL aggregate of the day      {base_s * 1000:8.1f} ms")
    print(f"[{kind}] statement run, cleared day (all merchants) {run_s * 1000:8.1f} ms  "
          f"ratio {ratio:.2f} (target <= {TARGET_RATIO})")  # fmt: skip
    print(f"[{kind}] clearing file, cleared day                 {file_s * 1000:8.1f} ms  "
          f"ratio {file_s / base_s:.2f}")  # fmt: skip
    print(f"[{kind}] one statement with its lines, cleared day  {one_s * 1000:8.1f} ms")
    print(f"[{kind}] one statement, computed (day not cleared)  {one_live_s * 1000:8.1f} ms")
    print(f"[{kind}] clearing run (price and keep every line)   {clear_s * 1000:8.1f} ms  "
          f"ratio {clear_s / base_s:.2f} (once a day, after the cut-off)")  # fmt: skip
    print(f"[{kind}] statement run before clearing (computed)   {live_s * 1000:8.1f} ms  "
          f"ratio {live_s / base_s:.2f}")  # fmt: skip
    return ratio


PAGE_USER = "bench"
PAGE_PASSWORD = "bench password 1"


async def _log_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = await client.post(
        "/login", data={"name": PAGE_USER, "password": PAGE_PASSWORD, "login_csrf": token[1]}
    )
    assert answer.status_code == 303, answer.text[:200]


def page_run(kind: str, *, transactions: int, merchants: int, repeat: int) -> float:
    """The statement page of the merchant with the most lines, beside its bare query."""
    with database(kind) as url:
        store = HostStore.open(url, pan_key=b"k" * 32)
        try:
            fill(store, transactions=transactions, merchants=merchants)
            Staff(store).add_user(Actor("bench", "cli", "local"), PAGE_USER, "ops",
                                  PAGE_PASSWORD, now=datetime.now(UTC))  # fmt: skip
            return page_measure(kind, store, repeat)
        finally:
            store.close()


def page_measure(kind: str, store: HostStore, repeat: int) -> float:
    clearing = ClearingStore(store)
    start, end = trading_day_bounds(DAY)
    biggest = max(clearing.summaries(DAY), key=lambda summary: summary.total.count)
    merchant_id = biggest.merchant_id
    with store.engine.connect() as connection:
        terminal_ids = [
            row[0]
            for row in connection.execute(
                sa.select(t.terminals.c.terminal_id).where(t.terminals.c.merchant_id == merchant_id)
            )
        ]
    hot = store.sql
    marks = ", ".join("?" * len(terminal_ids))
    bare_sql = hot.sql(f"{_DAY_SQL} AND terminal_id IN ({marks})")
    parameters = (hot.datetime(start.replace(tzinfo=None)),
                  hot.datetime(end.replace(tzinfo=None)), *terminal_ids)  # fmt: skip

    def bare() -> list[Any]:
        with store.engine.connect() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(bare_sql, parameters)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    loop = asyncio.new_event_loop()
    app = create_app(BackOffice(store))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://bench")
    loop.run_until_complete(_log_in(client))
    params = {"merchant_id": merchant_id, "date": DAY.isoformat()}

    def get(path: str) -> httpx.Response:
        answer = loop.run_until_complete(client.get(path, params=params))
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        return answer

    actions: dict[str, Callable[[], object]] = {
        "bare": bare,
        "statement": lambda: clearing.statement(merchant_id, DAY),
        "page": lambda: get("/statements"),
        "text": lambda: get("/statements.txt"),
    }
    rows = len(bare())
    print(f"[{kind}] statement page of merchant {merchant_id}: {biggest.total.count:,} lines "
          f"({rows:,} rows of the day), medians of {repeat * 3} rounds")  # fmt: skip
    ratio = 0.0
    for state in ("computed (day not cleared)", "cleared day"):
        if state == "cleared day":
            clearing.clear_day(DAY, now=end + timedelta(hours=1))
        page_bytes = len(get("/statements").content)
        samples: dict[str, list[float]] = {name: [] for name in actions}
        for round_index in range(repeat * 3 + 1):  # round 0 warms up, not counted
            for name, action in actions.items():
                began = time.perf_counter()
                action()
                if round_index:
                    samples[name].append(time.perf_counter() - began)
        ms = {name: statistics.median(values) * 1000 for name, values in samples.items()}
        ratio = max(ratio, ms["page"] / ms["bare"])
        print(f"[{kind}]  {state}:")
        print(f"[{kind}]   bare query (its rows of the day)          {ms['bare']:8.1f} ms")
        print(f"[{kind}]   statement (ClearingStore.statement)       {ms['statement']:8.1f} ms  "
              f"ratio {ms['statement'] / ms['bare']:.2f}")  # fmt: skip
        print(f"[{kind}]   page GET /statements (in-process)         {ms['page']:8.1f} ms  "
              f"ratio {ms['page'] / ms['bare']:.2f}  ({page_bytes:,} bytes)")  # fmt: skip
        print(f"[{kind}]   text export GET /statements.txt           {ms['text']:8.1f} ms  "
              f"ratio {ms['text'] / ms['bare']:.2f}")  # fmt: skip
    loop.run_until_complete(client.aclose())
    loop.close()
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--merchants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--page-transactions", type=int, default=100_000)
    parser.add_argument("--page-merchants", type=int, default=30)
    options = parser.parse_args()
    kinds = ("sqlite", "postgresql") if options.db == "both" else (options.db,)
    for kind in kinds:
        run(kind, transactions=options.transactions, merchants=options.merchants,
            repeat=options.repeat)  # fmt: skip
        page_run(kind, transactions=options.page_transactions,
                 merchants=options.page_merchants, repeat=options.repeat)  # fmt: skip


if __name__ == "__main__":
    main()
