"""The back office's two heaviest pages against the bare SQL for the same rows.

A host store is filled with 1,000,000 transactions over 2,000 terminals (400 merchants ×
5 terminals, 30 days, 11 batches per terminal, ~5 % declines) by bulk insert, then
migrated like any store. The console runs as its own process
(``python -m posbatch backoffice serve``) and this process, logged in as an ops user,
asks it over loopback HTTP (keep-alive) for

(a) the transaction search page, over a mix of searches a support desk makes (no filter;
    one merchant; a terminal over a trading day; the last 4 digits of a card; an RRN; an
    amount within a day; a response code within a day; declines of a merchant), and
(b) the batch page of random batches (header, totals as reported and as counted, the
    difference, settlement answers, upload records, the first 100 transactions);

and, in the same run, interleaved sample by sample, runs the bare SQL for the same rows
on a raw driver connection (sqlite3 / psycopg): the search page's own statement
(``posbatch.backoffice.search_statement``, compiled once) and, for a batch, the five
indexed queries its page needs. It prints p50/p95 of each and the ratio of the p95s —
and, to show where a page's time goes, the same page asked of the app in this process
(ASGI, no socket, no other process), a **reference page** (the least a page can do with
our libraries: a FastAPI route that runs that same bare SQL and renders its rows with
Jinja2, asked in-process too), and the machine's load average. ``--profile`` adds where an
in-process page's time goes, by package.

Targets: page p95 ≤ 150 ms, and ≤ 1.5 × the bare SQL's p95.

``--insert-cost`` measures instead what the search indexes cost the host: transactions
inserted per second, in commits of 500, at migration ``host0001`` and at the head; then,
at the head, what each search index whose key a sale draws at random costs on its own:
transactions from 200 terminals inserted in group commits of 100 into a table already
holding ``--prefill`` rows, without any of those four, with each alone and with all,
alternated over ``--rounds``: microseconds per row, wall and this process's CPU (on
PostgreSQL the server's CPU is not this process's: wall only).

Usage: ``PYTHONPATH=src python bench/backoffice.py [--db sqlite|postgresql|both]
[--transactions 1000000] [--terminals 2000] [--rounds 25] [--profile] [--insert-cost
[--prefill 200000]]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from unittest import mock

import httpx
import jinja2
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from posbatch.backoffice import (
    Actor,
    BackOffice,
    Scope,
    TransactionFilter,
    beijing,
    search_statement,
    trading_day_bounds,
)
from posbatch.backoffice._queries import MERCHANT_TERMINALS_UNION_MAX
from posbatch.backoffice._staff import Staff
from posbatch.batch.model import CardTotals, SettlementTotals
from posbatch.host.cli import DB_FILE_NAME, kek, pan_key
from posbatch.host.store import HostStore
from posbatch.storage import DATABASE_URL_ENV
from posbatch.web import create_app
from posbatch.wire import encode_totals

POSTGRES_URL = os.environ.get(
    "POSBATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DAYS = 30
BATCHES_PER_TERMINAL = 11
TERMINALS_PER_MERCHANT = 5
LAST_DAY = date(2026, 12, 5)
PASSWORD = "bench password 1"
CHUNK_ROWS = 20_000
TERMINAL_COLUMNS = ("terminal_id", "merchant_id", "master_key", "status", "signed_on",
                    "current_batch_id", "last_stan", "created_at")  # fmt: skip
BATCH_COLUMNS = ("batch_id", "terminal_id", "batch_no", "state", "opened_at", "closed_at",
                 "close_reason", "terminal_totals", "host_totals", "settle_response_code",
                 "upload_end_records")  # fmt: skip
PAGE_P95_MS_MAX = 150.0
RATIO_MAX = 1.5


# --- the store ---------------------------------------------------------------------------


def _terminal_id(index: int) -> str:
    return f"{30_000_000 + index:08d}"


def _merchant_id(index: int) -> str:
    return f"8981100{index // TERMINALS_PER_MERCHANT:08d}"


def fill(engine: sa.Engine, transactions: int, terminals: int, seed: int = 7) -> dict[str, Any]:
    """Bulk-insert terminals, batches and transactions; return what the searches need."""
    rng = random.Random(seed)
    first_day_start, _ = trading_day_bounds(LAST_DAY - timedelta(days=DAYS - 1))
    span_s = DAYS * 86_400
    per_terminal = transactions // terminals
    created = datetime(2026, 10, 1)
    batch_rows: list[tuple[Any, ...]] = []
    terminal_rows: list[tuple[Any, ...]] = []
    batch_id = 0
    samples: dict[str, Any] = {"rrn": [], "last4": [], "amount": [], "batch_ids": []}
    raw = engine.raw_connection()
    cursor = raw.cursor()
    mark = "%s" if engine.dialect.name == "postgresql" else "?"
    if engine.dialect.name == "sqlite":
        cursor.execute("BEGIN")  # the store's connections are in autocommit: one transaction

    def insert(table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join([mark] * len(columns))
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                rows,
            )

    tx_columns = ("transaction_id", "batch_id", "terminal_id", "stan", "kind", "amount_fen",
                  "card_type", "pan_hmac", "pan_masked", "status", "response_code", "rrn",
                  "auth_code", "local_time", "local_date", "original_transaction_id",
                  "refunded_fen", "request_digest", "created_at")  # fmt: skip
    tx_rows: list[tuple[Any, ...]] = []
    transaction_id = 0
    for index in range(terminals):
        terminal_id = _terminal_id(index)
        moments = sorted(rng.randrange(span_s) for _ in range(per_terminal))
        per_batch = -(-per_terminal // BATCHES_PER_TERMINAL)
        for batch_index in range(BATCHES_PER_TERMINAL):
            batch_id += 1
            chunk = moments[batch_index * per_batch : (batch_index + 1) * per_batch]
            opened = first_day_start + timedelta(seconds=chunk[0] if chunk else span_s)
            debit = [0, 0]
            current = batch_index == BATCHES_PER_TERMINAL - 1
            for offset in chunk:
                transaction_id += 1
                declined = rng.random() < 0.05
                amount_fen = rng.randrange(100, 100_000)
                last4 = f"{rng.randrange(10_000):04d}"
                rrn = f"{rng.randrange(10**12):012d}"
                at = first_day_start + timedelta(seconds=offset)
                if not declined:
                    debit[0] += amount_fen
                    debit[1] += 1
                tx_rows.append((
                    transaction_id, batch_id, terminal_id, (transaction_id % 999_999) + 1,
                    "sale", amount_fen, "00", f"{transaction_id:064x}",
                    f"622202*********{last4}", "declined" if declined else "approved",
                    rng.choice(("51", "14", "54")) if declined else "00", rrn,
                    None if declined else "123456", f"{at:%H%M%S}", f"{at:%m%d}", None, 0,
                    f"{transaction_id:064x}", at.replace(tzinfo=None),
                ))  # fmt: skip
                if rng.random() < 0.001:
                    samples["rrn"].append(rrn)
                    samples["last4"].append(last4)
                    samples["amount"].append(amount_fen)
            totals = encode_totals(SettlementTotals(CardTotals(debit[0], debit[1])))
            closed = None if current else opened + timedelta(days=3)
            batch_rows.append((
                batch_id, terminal_id, batch_index + 1, "OPEN" if current else "CLOSED",
                opened.replace(tzinfo=None),
                None if closed is None else closed.replace(tzinfo=None),
                None if current else "balanced", None if current else totals,
                None if current else totals, None if current else "00", None,
            ))  # fmt: skip
            if rng.random() < 0.01:
                samples["batch_ids"].append(batch_id)
        terminal_rows.append(
            (terminal_id, _merchant_id(index), b"\x01" * 16, "active", True, batch_id, 1, created)
        )
        if len(tx_rows) >= CHUNK_ROWS or index == terminals - 1:
            # Parents first (foreign keys): terminals, their batches, then the transactions.
            insert("host_terminals", TERMINAL_COLUMNS, terminal_rows)
            insert("host_batches", BATCH_COLUMNS, batch_rows)
            insert("host_transactions", tx_columns, tx_rows)
            terminal_rows, batch_rows, tx_rows = [], [], []
    if engine.dialect.name == "postgresql":
        for table, column in (
            ("host_transactions", "transaction_id"),
            ("host_batches", "batch_id"),
        ):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"(SELECT max({column}) FROM {table}))"
            )
    raw.commit()
    cursor.execute("ANALYZE")
    raw.commit()
    raw.close()
    samples["transaction_count"] = transaction_id
    samples["merchants"] = sorted({_merchant_id(i) for i in range(terminals)})
    samples["terminals"] = [_terminal_id(i) for i in range(terminals)]
    return samples


# --- the mix -----------------------------------------------------------------------------


SEARCH_NAMES = (
    "no filter (newest)",
    "one merchant",
    "terminal within a day",
    "card last 4",
    "RRN",
    "amount within a day",
    "response code within a day",
    "declines of a merchant",
)


def searches(samples: dict[str, Any], rng: random.Random) -> list[dict[str, str]]:
    """One round of the support desk's searches (URL parameters), in SEARCH_NAMES order."""
    day = LAST_DAY - timedelta(days=rng.randrange(DAYS))
    start, end = trading_day_bounds(day)
    since, until = f"{beijing(start):%Y-%m-%d %H:%M}", f"{beijing(end):%Y-%m-%d %H:%M}"
    merchant = rng.choice(samples["merchants"])
    return [
        {},
        {"merchant_id": merchant},
        {"terminal_id": rng.choice(samples["terminals"]), "since": since, "until": until},
        {"last4": rng.choice(samples["last4"])},
        {"rrn": rng.choice(samples["rrn"])},
        {"amount": f"{rng.choice(samples['amount']) / 100:.2f}", "since": since, "until": until},
        {"response_code": "51", "since": since, "until": until},
        {"merchant_id": merchant, "status": "declined"},
    ]


def bare_search(engine: sa.Engine) -> Callable[[dict[str, str]], Callable[[], list[Any]]]:
    """For URL parameters, the bare run of the search page's SQL on the raw driver
    connection: the merchant's terminals (when a merchant is searched) and the page's own
    statement, compiled before the clock starts."""
    raw = engine.raw_connection()
    dialect = engine.dialect
    mark = "%s" if dialect.name == "postgresql" else "?"
    terminals_sql = (
        f"SELECT terminal_id FROM host_terminals WHERE merchant_id = {mark} "
        f"ORDER BY terminal_id LIMIT {MERCHANT_TERMINALS_UNION_MAX + 1}"
    )

    def prepare(params: dict[str, str]) -> Callable[[], list[Any]]:
        search = TransactionFilter.parse(params)
        merchant = search.merchant_id if search.terminal_id is None else None
        compiled_by: dict[tuple[str, ...] | None, Any] = {}

        def compiled_for(terminals: tuple[str, ...] | None) -> Any:
            if terminals not in compiled_by:
                statement = search_statement(
                    Scope(), search, after=None, limit=51,
                    merchant_terminals=None if terminals is None else list(terminals),
                )  # fmt: skip
                compiled_by[terminals] = statement.compile(dialect=dialect)
            return compiled_by[terminals]

        if merchant is not None:  # compiled ahead for the merchant's terminals
            cursor = raw.cursor()
            cursor.execute(terminals_sql, (merchant,))
            ahead = tuple(row[0] for row in cursor.fetchall())
            compiled_for(ahead if len(ahead) <= MERCHANT_TERMINALS_UNION_MAX else None)
        else:
            compiled_for(None)

        def run() -> list[Any]:
            cursor = raw.cursor()
            terminals = None
            if merchant is not None:
                cursor.execute(terminals_sql, (merchant,))
                found = tuple(row[0] for row in cursor.fetchall())
                terminals = found if len(found) <= MERCHANT_TERMINALS_UNION_MAX else None
            compiled = compiled_for(terminals)
            if dialect.paramstyle in ("pyformat", "format"):
                cursor.execute(str(compiled), {k: _bind(v) for k, v in compiled.params.items()})
            else:
                positions = compiled.positiontup or []
                cursor.execute(str(compiled), [_bind(compiled.params[n]) for n in positions])
            rows = cursor.fetchall()
            cursor.close()
            return cast(list[Any], rows)  # fetchall gives a list: no copy in the timed run

        return run

    return prepare


def _bind(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo else value
    return value


BATCH_SQL = (
    "SELECT b.*, t.merchant_id FROM host_batches b JOIN host_terminals t "
    "ON t.terminal_id = b.terminal_id WHERE b.batch_id = {m}",
    "SELECT kind, card_type, count(*), sum(amount_fen) FROM host_transactions "
    "WHERE batch_id = {m} AND status IN ('approved', 'voided') GROUP BY kind, card_type",
    "SELECT stan, card_type, pan_masked, amount_fen, created_at FROM host_upload_records "
    "WHERE batch_id = {m} ORDER BY stan LIMIT 101",
    "SELECT settlement_id, stan, terminal_totals, host_totals, response_code, outcome, "
    "created_at FROM host_settlements WHERE batch_id = {m} ORDER BY settlement_id LIMIT 100",
    "SELECT x.transaction_id, x.created_at, x.terminal_id, t.merchant_id, x.batch_id, "
    "b.batch_no, x.stan, x.kind, x.amount_fen, x.card_type, x.pan_masked, x.status, "
    "x.response_code, x.rrn, x.auth_code FROM host_transactions x "
    "JOIN host_terminals t ON t.terminal_id = x.terminal_id "
    "JOIN host_batches b ON b.batch_id = x.batch_id WHERE x.batch_id = {m} "
    "ORDER BY x.stan LIMIT 101",
)


def bare_batch(engine: sa.Engine) -> Callable[[int], list[Any]]:
    raw = engine.raw_connection()
    mark = "%s" if engine.dialect.name == "postgresql" else "?"
    statements = [sql.format(m=mark) for sql in BATCH_SQL]

    def run(batch_id: int) -> list[Any]:
        rows: list[Any] = []
        cursor = raw.cursor()
        for sql in statements:
            cursor.execute(sql, (batch_id,))
            rows += cursor.fetchall()
        cursor.close()
        return rows

    return run


# --- the reference page: the least a page can do with our libraries --------------------

REFERENCE_TEMPLATE = (
    '<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>{{ title }}</title>'
    "</head><body><h1>{{ title }}</h1><table>{% for row in rows %}<tr>"
    "{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table></body></html>"
)


def reference_app() -> tuple[FastAPI, list[Callable[[], list[Any]]]]:
    """The floor under any page built on FastAPI + Jinja2: one route that runs the bare SQL
    (the very closure the bare figure times, on the raw driver connection) and renders its
    rows, autoescaped, as a table — no session, no middleware, no CSRF, no filter parsed, no
    money or time formatted, no menu. Asked in-process (ASGI), like the page's in-process
    figure. The closure to run is pushed on the returned list before each request."""
    template = jinja2.Environment(autoescape=True).from_string(REFERENCE_TEMPLATE)
    app = FastAPI()
    pending: list[Callable[[], list[Any]]] = []

    @app.get("/reference")
    async def reference() -> HTMLResponse:  # async: the raw connection stays on this thread
        rows = pending.pop()()
        return HTMLResponse(template.render(title="reference", rows=rows))

    return app, pending


_BUCKETS = (
    ("sqlalchemy", "SQLAlchemy"),
    ("jinja2", "Jinja2 (templates)"),
    ("markupsafe", "Jinja2 (templates)"),
    ("posbatch/web", "posbatch.web (routes, views)"),
    ("posbatch/backoffice", "posbatch.backoffice (library)"),
    ("posbatch", "posbatch (other)"),
    ("starlette", "FastAPI / Starlette / anyio / httpx"),
    ("fastapi", "FastAPI / Starlette / anyio / httpx"),
    ("anyio", "FastAPI / Starlette / anyio / httpx"),
    ("httpx", "FastAPI / Starlette / anyio / httpx"),
    ("httpcore", "FastAPI / Starlette / anyio / httpx"),
    ("pydantic", "FastAPI / Starlette / anyio / httpx"),
    ("asyncio", "asyncio"),
)


def _bucket(filename: str, name: str) -> str:
    if filename == "~":  # a builtin: the driver's calls are the SQL itself
        if "sqlite3" in name or "psycopg" in name or "execute" in name or "fetch" in name:
            return "driver (the SQL itself)"
        return "builtins"
    if "psycopg" in filename:
        return "driver (the SQL itself)"
    for needle, bucket in _BUCKETS:
        if f"/{needle}/" in filename or f"/{needle}." in filename:
            return bucket
    return "other"


def profile_pages(
    loop: asyncio.AbstractEventLoop, asgi: httpx.AsyncClient, paths: list[tuple[str, Any]]
) -> None:
    """Where an in-process page's time goes, by package (cProfile, own time).

    cProfile sees one thread: while it runs, the hop of a route's work to the thread pool
    (the console's own, and FastAPI's for a sync route or dependency) is made inline, so
    the route's own work is seen (the hop itself, about 0.1 ms, is then not).
    """

    async def inline(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    profiler = cProfile.Profile()
    with (
        mock.patch("fastapi.routing.run_in_threadpool", inline),
        mock.patch("fastapi.dependencies.utils.run_in_threadpool", inline),
        mock.patch("posbatch.web._app.run_in_threadpool", inline),
    ):
        profiler.enable()
        for path, params in paths:
            loop.run_until_complete(asgi.get(path, params=params))
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    spent: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.items():
        bucket = _bucket(filename, name)
        spent[bucket] = spent.get(bucket, 0.0) + own
    total = sum(spent.values())
    print(f"  where an in-process page's time goes ({len(paths)} pages, under cProfile, "
          f"{total / len(paths) * 1000:.2f} ms a page):")  # fmt: skip
    for bucket, own in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"    {bucket:<38} {own / total:6.1%}  {own / len(paths) * 1000:6.2f} ms")


# --- the console -------------------------------------------------------------------------


@contextmanager
def console(data_dir: Path, url: str | None) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    if url:
        env[DATABASE_URL_ENV] = url
    else:
        env.pop(DATABASE_URL_ENV, None)
    command = [sys.executable, "-m", "posbatch", "backoffice", "serve", "--listen",
               "127.0.0.1:0", "--data-dir", str(data_dir)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            yield json.loads(proc.stdout.readline())["url"].rstrip("/")
        finally:
            proc.terminate()
            proc.wait(30)


def log_in(client: httpx.Client) -> None:
    form = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = client.post(
        "/login", data={"name": "bench", "password": PASSWORD, "login_csrf": token[1]}
    )
    assert answer.status_code == 303, answer.text[:200]


async def _log_in_asgi(client: httpx.AsyncClient) -> None:
    form = await client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None
    answer = await client.post(
        "/login", data={"name": "bench", "password": PASSWORD, "login_csrf": token[1]}
    )
    assert answer.status_code == 303, answer.text[:200]


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def measure(name: str, url: str | None, data_dir: Path, args: argparse.Namespace) -> bool:
    engine_url = url or f"sqlite:///{data_dir / DB_FILE_NAME}"
    # The KEK in the data directory, where the console (its own process) looks for it.
    store = HostStore.open(engine_url, pan_key=pan_key(data_dir), kek=kek(data_dir))
    started = time.perf_counter()
    samples = fill(store.engine, args.transactions, args.terminals)
    filled = time.perf_counter() - started
    Staff(store).add_user(Actor("bench", "cli", "local"), "bench", "ops", PASSWORD,
                          now=datetime.now(UTC))  # fmt: skip
    print(f"\n[{name}] {samples['transaction_count']:,} transactions, {args.terminals:,} "
          f"terminals, filled in {filled:.0f} s")  # fmt: skip
    search_sql = bare_search(store.engine)
    batch_sql = bare_batch(store.engine)
    loop = asyncio.new_event_loop()
    asgi = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(BackOffice(store))), base_url="http://bench"
    )
    loop.run_until_complete(_log_in_asgi(asgi))
    inproc: dict[str, list[float]] = {"search": [], "batch": []}
    reference, pending = reference_app()
    floor = httpx.AsyncClient(transport=httpx.ASGITransport(app=reference), base_url="http://ref")
    floor_s: dict[str, list[float]] = {"search": [], "batch": []}
    asked: list[tuple[str, Any]] = []
    load_before = os.getloadavg()[0]
    rng = random.Random(11)
    page: dict[str, list[float]] = {"search": [], "batch": []}
    bare: dict[str, list[float]] = {"search": [], "batch": []}
    by_name: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in SEARCH_NAMES}
    with console(data_dir, url) as base, httpx.Client(base_url=base, timeout=60) as client:
        log_in(client)
        for round_index in range(args.rounds + 1):  # round 0 warms caches up, not counted
            work: list[tuple[str, Any, str]] = [
                ("search", p, n) for p, n in zip(searches(samples, rng), SEARCH_NAMES, strict=True)
            ]
            work += [("batch", rng.choice(samples["batch_ids"]), "batch") for _ in range(4)]
            for kind, item, name in work:
                bare_run = search_sql(item) if kind == "search" else partial(batch_sql, item)
                t0 = time.perf_counter()
                rows = bare_run()
                t1 = time.perf_counter()
                path = "/transactions" if kind == "search" else f"/batches/{item}"
                answer = client.get(path, params=item if kind == "search" else None)
                t2 = time.perf_counter()
                assert answer.status_code == 200, (path, answer.status_code)
                local = loop.run_until_complete(
                    asgi.get(path, params=item if kind == "search" else None)
                )
                t3 = time.perf_counter()
                assert local.status_code == 200, (path, local.status_code)
                pending.append(bare_run)
                t4 = time.perf_counter()
                floor_answer = loop.run_until_complete(floor.get("/reference"))
                t5 = time.perf_counter()
                assert floor_answer.status_code == 200
                asked.append((path, item if kind == "search" else None))
                if round_index:
                    floor_s[kind].append(t5 - t4)
                    inproc[kind].append(t3 - t2)
                    bare[kind].append(t1 - t0)
                    page[kind].append(t2 - t1)
                    if name in by_name:
                        by_name[name][0].append(t2 - t1)
                        by_name[name][1].append(t1 - t0)
                del rows
    if args.profile:
        profile_pages(loop, asgi, [a for a in asked if a[0] == "/transactions"][:200])
        profile_pages(loop, asgi, [a for a in asked if a[0] != "/transactions"][:100])
    loop.run_until_complete(asgi.aclose())
    loop.run_until_complete(floor.aclose())
    loop.close()
    store.close()
    print(f"  load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("  per search, p50 page / bare SQL (ms):")
    for name, (pages, bares) in by_name.items():
        print(f"    {name:<28} {_ms(pages)[0]:8.2f} / {_ms(bares)[0]:8.2f}"
              f"   p95 {_ms(pages)[1]:8.2f} / {_ms(bares)[1]:8.2f}")  # fmt: skip
    ok = True
    for kind, title in (("search", "(a) transaction search page"), ("batch", "(b) batch page")):
        page_p50, page_p95 = _ms(page[kind])
        bare_p50, bare_p95 = _ms(bare[kind])
        ratio = page_p95 / bare_p95 if bare_p95 else float("inf")
        met = page_p95 <= PAGE_P95_MS_MAX and ratio <= RATIO_MAX
        ok = ok and met
        print(f"  {title}: {len(page[kind])} samples")
        print(f"    page over HTTP   p50 {page_p50:7.2f} ms   p95 {page_p95:7.2f} ms")
        local_p50, local_p95 = _ms(inproc[kind])
        print(f"    page in-process  p50 {local_p50:7.2f} ms   p95 {local_p95:7.2f} ms"
              "   (ASGI, no socket)")  # fmt: skip
        floor_p50, floor_p95 = _ms(floor_s[kind])
        print(f"    reference page   p50 {floor_p50:7.2f} ms   p95 {floor_p95:7.2f} ms"
              "   (in-process: the bare SQL + FastAPI + Jinja2, nothing more)")  # fmt: skip
        print(f"    bare SQL         p50 {bare_p50:7.2f} ms   p95 {bare_p95:7.2f} ms")
        print(f"    ratio of p95s    {ratio:5.2f}  (target ≤ {RATIO_MAX}, page p95 ≤ "
              f"{PAGE_P95_MS_MAX:.0f} ms): {'met' if met else 'NOT met'}")  # fmt: skip
        print(f"    the floor        reference / bare SQL {floor_p95 / bare_p95:5.2f}; "
              f"page in-process / reference {local_p95 / floor_p95:5.2f} (p95s)")  # fmt: skip
    return ok


# --- what the indexes cost the host's inserts --------------------------------------------


def _store_at(revision: str, url: str) -> sa.Engine:
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    from posbatch import storage  # noqa: PLC0415
    from posbatch.host.store import MIGRATIONS, VERSION_TABLE  # noqa: PLC0415

    engine = storage.create_engine(url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["version_table"] = VERSION_TABLE
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return engine


def insert_rate(revision: str, url: str, groups: int = 100, per_group: int = 500) -> float:
    """Transactions inserted per second, in commits of ``per_group`` (the host's group size)."""
    engine = _store_at(revision, url)
    raw = engine.raw_connection()
    cursor = raw.cursor()
    mark = "%s" if engine.dialect.name == "postgresql" else "?"
    marks = ", ".join([mark] * 6)
    cursor.execute(
        f"INSERT INTO host_terminals (terminal_id, merchant_id, master_key, status, signed_on, "
        f"created_at) VALUES ({marks})",
        ("10000001", "898110054110001", b"k" * 16, "active", True, datetime(2026, 1, 1)),
    )
    cursor.execute(
        "INSERT INTO host_batches (batch_id, terminal_id, batch_no, state, opened_at) "
        f"VALUES (1, '10000001', 1, 'OPEN', {mark})",
        (datetime(2026, 1, 1),),
    )
    raw.commit()
    sql = _insert_transactions_sql(mark)
    rng = random.Random(1)
    count = 0
    started = time.perf_counter()
    for _ in range(groups):
        rows = []
        for _ in range(per_group):
            count += 1
            rows.append((
                1, "10000001", count, "sale", rng.randrange(100, 100_000), "00", f"{count:064x}",
                f"622202*********{rng.randrange(10_000):04d}", "approved", "00",
                f"{rng.randrange(10**12):012d}", "123456", "120000", "1205", None, 0,
                f"{count:064x}", datetime(2026, 12, 5) + timedelta(seconds=count),
            ))  # fmt: skip
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN")
        cursor.executemany(sql, rows)
        raw.commit()
    elapsed = time.perf_counter() - started
    raw.close()
    engine.dispose()
    return count / elapsed


def insert_cost(args: argparse.Namespace) -> None:
    """The host's transaction inserts at host0001 and with the back office's indexes."""
    print("\ninsert cost of the search indexes (transactions/s in commits of 500):")
    for name in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        rates: dict[str, list[float]] = {"host0001": [], "head": []}
        for revision in ("host0001", "head", "host0001", "head"):
            rates[revision].append(_on_scratch(name, partial(insert_rate, revision)))
        before, after = max(rates["host0001"]), max(rates["head"])
        print(f"  {name:<10} host0001 {before:9,.0f}/s   with the back office's indexes "
              f"{after:9,.0f}/s   ratio {after / before:4.2f}")  # fmt: skip


# The back office's search indexes whose keys a sale draws at random: every insert lands on a
# page of its own in each (ix_host_transactions_created is appended to in time order).
RANDOM_KEY_INDEXES: Final = {
    "terminal": "ix_host_transactions_terminal_created",
    "rrn": "ix_host_transactions_rrn",
    "amount": "ix_host_transactions_amount",
    "last4": "ix_host_transactions_last4",
}
COST_TERMINALS = 200  # as bench/host.py's closed loop
COST_GROUP_ROWS = 100
COST_GROUPS = 100


def _cost_rows(rng: random.Random, first: int, count: int) -> list[tuple[Any, ...]]:
    """Sales of random terminals (one open batch each), a fresh STAN each, 200 µs apart."""
    rows = []
    for number in range(first, first + count):
        terminal = rng.randrange(COST_TERMINALS)
        rows.append((
            terminal + 1, f"{10_000_000 + terminal}", number, "sale", rng.randrange(100, 100_000),
            "00", f"{number:064x}", f"622202*********{rng.randrange(10_000):04d}", "approved",
            "00", f"{rng.randrange(10**12):012d}", "123456", "120000", "1205", None, 0,
            f"{number:064x}", datetime(2026, 12, 1) + timedelta(microseconds=200 * number),
        ))  # fmt: skip
    return rows


def index_cost(url: str, kept: tuple[str, ...], prefill: int) -> tuple[float, float]:
    """(wall, CPU) µs per transaction inserted in group commits, with only ``kept`` of the
    random-key search indexes, into a table already holding ``prefill`` rows."""
    engine = _store_at("head", url)
    raw = engine.raw_connection()
    cursor = raw.cursor()
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    for name, index in RANDOM_KEY_INDEXES.items():
        if name not in kept:
            cursor.execute(f"DROP INDEX {index}")
    cursor.executemany(
        "INSERT INTO host_terminals (terminal_id, merchant_id, master_key, status, signed_on, "
        f"created_at) VALUES ({', '.join([mark] * 6)})",
        [(f"{10_000_000 + i}", "898110054110001", b"k" * 16, "active", True,
          datetime(2026, 1, 1)) for i in range(COST_TERMINALS)],
    )  # fmt: skip
    cursor.executemany(
        "INSERT INTO host_batches (batch_id, terminal_id, batch_no, state, opened_at) "
        f"VALUES ({mark}, {mark}, 1, 'OPEN', {mark})",
        [(i + 1, f"{10_000_000 + i}", datetime(2026, 1, 1)) for i in range(COST_TERMINALS)],
    )
    sql = _insert_transactions_sql(mark)
    rng = random.Random(1)
    for first in range(0, prefill, CHUNK_ROWS):
        cursor.executemany(sql, _cost_rows(rng, first, min(CHUNK_ROWS, prefill - first)))
    raw.commit()
    groups = [
        _cost_rows(rng, prefill + k * COST_GROUP_ROWS, COST_GROUP_ROWS) for k in range(COST_GROUPS)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for rows in groups:
        if sqlite:
            cursor.execute("BEGIN IMMEDIATE")
        cursor.executemany(sql, rows)
        raw.commit()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    raw.close()
    engine.dispose()
    count = COST_GROUPS * COST_GROUP_ROWS
    return wall / count * 1e6, cpu / count * 1e6


_Measured = TypeVar("_Measured")  # what a measure on a scratch database gives


def _on_scratch(name: str, measure: Callable[[str], _Measured]) -> _Measured:
    """``measure`` on a fresh SQLite file or PostgreSQL schema."""
    if name == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            return measure(f"sqlite:///{directory}/h.db")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        return measure(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def index_costs(args: argparse.Namespace) -> None:
    """Each random-key search index's own cost per transaction, alternated over the rounds."""
    variants: dict[str, tuple[str, ...]] = {
        "none of the four": (),
        **{f"{name} alone": (name,) for name in RANDOM_KEY_INDEXES},
        "all four (head)": tuple(RANDOM_KEY_INDEXES),
    }
    print(f"\nwhat each random-key search index costs (µs per transaction, group commits of "
          f"{COST_GROUP_ROWS} from {COST_TERMINALS} terminals, {args.prefill:,} rows before; "
          f"load average {os.getloadavg()[0]:.2f}):")  # fmt: skip
    for name in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        runs: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
        for _ in range(args.rounds):
            for label, kept in variants.items():
                runs[label].append(
                    _on_scratch(name, lambda url, kept=kept: index_cost(url, kept, args.prefill))
                )
        base_wall = min(wall for wall, _ in runs["none of the four"])
        base_cpu = min(cpu for _, cpu in runs["none of the four"])
        for label, figures in runs.items():
            wall, cpu = min(w for w, _ in figures), min(c for _, c in figures)
            cpu_text = "" if name != "sqlite" else f"   CPU {cpu:6.1f} (+{cpu - base_cpu:5.1f})"
            print(f"  {name:<10} {label:<17} wall {wall:7.1f} (+{wall - base_wall:6.1f})"
                  f"{cpu_text}")  # fmt: skip
    print(f"  load average at the end {os.getloadavg()[0]:.2f}")


def _insert_transactions_sql(mark: str) -> str:
    """The INSERT of one host_transactions row the insert-cost figures write (``mark``: the
    driver's placeholder)."""
    columns = ("batch_id", "terminal_id", "stan", "kind", "amount_fen", "card_type",
               "pan_hmac", "pan_masked", "status", "response_code", "rrn", "auth_code",
               "local_time", "local_date", "original_transaction_id", "refunded_fen",
               "request_digest", "created_at")  # fmt: skip
    return (
        f"INSERT INTO host_transactions ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--terminals", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument(
        "--profile", action="store_true",
        help="Also profile the in-process pages and print where their time goes, by package.",
    )  # fmt: skip
    parser.add_argument(
        "--insert-cost", action="store_true",
        help="Only measure what the search indexes cost the host's transaction inserts.",
    )  # fmt: skip
    parser.add_argument(
        "--prefill", type=int, default=200_000,
        help="--insert-cost: rows in the table before each index's cost is measured",
    )  # fmt: skip
    args = parser.parse_args()
    if args.insert_cost:
        insert_cost(args)
        index_costs(args)
        return 0
    ok = True
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-backoffice-") as directory:
            ok = measure("SQLite", None, Path(directory), args) and ok
    if args.db in ("postgresql", "both"):
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(POSTGRES_URL)
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in POSTGRES_URL else "?"
        url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        try:
            with tempfile.TemporaryDirectory(prefix="bench-backoffice-") as directory:
                ok = measure("PostgreSQL", url, Path(directory), args) and ok
        finally:
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
