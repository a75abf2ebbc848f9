"""Host throughput and latency over loopback, each beside a reference host and a bare server.

The load generator (this process, one asyncio loop) signs every terminal on,
then pre-builds every request frame — STAN and MAC included — before the
clock starts, and only reads field 39 of each answer. Every host under test
runs as its own process(es):

- **posbatch**: ``python -m posbatch host serve [--workers N]``;
- **the reference host** (``bench/refhost.py``): the least an honest host can
  do with our libraries — same framing, pyiso8583 with ``posbatch.wire.SPEC``,
  MAC checked and computed, PAN HMAC, one row per approval in SQLite (WAL,
  ``synchronous=FULL``) committed per loop turn before answering. Issue #15's
  speed targets are ratios to it: approvals/s ≥ 0.85× and host CPU per
  approval ≤ 1.15×, with 1 worker and with 2;
- **bare**: an asyncio server that only frames and answers one canned 0210
  (the generator's ceiling).

Before measuring a host, a real posbatch ``Terminal`` signs on and makes a sale
against it over TCP and must believe the approval (MAC, STAN, terminal, kind);
after, every approval the generator saw must be a row in the host's database.

(a) throughput: 200 terminals over loopback, each sending its next sale as
    soon as the last is answered; approvals/s, host CPU per approval (user +
    system CPU of the host's processes, summed over its workers, read from
    /proc) and the cores it kept busy.
(b) latency: 2,000 connected terminals together sending 2,000 sales/s on a
    schedule (open loop, latency counted from the scheduled send time);
    p50/p99/max.
(c) memory: posbatch's RSS with 5,000 idle connections.

Each round runs (a) and (b) for the reference host and for posbatch (on each
``--db``) with each worker count of ``--workers``, the order of the hosts
alternating between rounds; the ratios are per round (the two hosts measured
minutes apart under the same load), then summarised as ranges over the rounds.
The reference host always runs on SQLite: a PostgreSQL ratio compares
posbatch on PostgreSQL with it.

Targets (2-core machine): (a) ≥ 0.85× the reference host's approvals/s and
≤ 1.15× its CPU per approval (the old absolute one: ≥ 5,000 durable
approvals/s on SQLite); (b) p99 ≤ 20 ms with 2 workers; (c) ≤ 300 MB.

Usage: ``PYTHONPATH=src python bench/host.py [--db sqlite|postgresql|both]
[--seconds 10] [--workers 1 2] [--rounds 2] [--skip-memory] [--without-search-indexes]
[--history 0]``
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import refhost
import sqlalchemy as sa

from posbatch.batch.model import Kind
from posbatch.host.cli import DB_FILE_NAME, kek, pan_key
from posbatch.host.store import HostStore
from posbatch.storage import DATABASE_URL_ENV
from posbatch.terminal import Journal, TcpDriver, Terminal, TerminalSecrets
from posbatch.wire import (
    Frame,
    Header,
    SaleRequest,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    TransactionResponse,
    decode_message,
    encode_frame,
    encode_message,
    unwrap_working_keys,
)

MERCHANT_ID = "898110054110001"
MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = "6222021234567890128"
TARGET_APPROVALS_PER_S = 5_000
TARGET_RATE_RATIO = 0.85  # posbatch approvals/s over the reference host's, at least
TARGET_CPU_RATIO = 1.15  # posbatch host CPU per approval over the reference host's, at most
TARGET_P99_MS = 20.0
TARGET_RSS_MB = 300
REFERENCE = "reference"
# The back office's search indexes on host_transactions whose keys a sale draws at random
# (each insert lands on its own page); ``--without-search-indexes`` runs posbatch without them.
RANDOM_KEY_SEARCH_INDEXES = (
    "ix_host_transactions_terminal_created",
    "ix_host_transactions_rrn",
    "ix_host_transactions_amount",
    "ix_host_transactions_last4",
)
WITHOUT_SEARCH = "-search"  # the label's suffix of that variant
# ``--history N``: N earlier approvals of the throughput terminals in every host's table
# before it is measured (a fresh table is small: a random-key index insert then shares
# its page with the group's others, which a day's table does not allow).
HISTORY_TERMINAL_ID = "49999999"  # posbatch: the history's batch is this terminal's
HISTORY_DAYS = 30
HISTORY_SEED = 15
HISTORY_CHUNK_ROWS = 20_000
SEARCHABLE_REFERENCE = "searchable ref"  # the reference with the back office's search indexes
THROUGHPUT_TERMINALS = 200
LATENCY_TERMINALS = 2_000
LATENCY_RATE_PER_S = 2_000
IDLE_CONNECTIONS = 5_000
BELIEVED_TERMINAL_ID = "70000001"  # the real Terminal that checks a host's answers
BELIEVED_TIMEOUT_MS = 5_000
WARMUP_S = 1.0
START_TIMEOUT_S = 60.0
POSTGRES_URL = os.environ.get(
    "POSBATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SRC = Path(__file__).resolve().parents[1] / "src"

# --- answers: only field 39 is read ---

_FIXED = {3: 3, 4: 6, 11: 3, 12: 3, 13: 2, 14: 2, 22: 2, 25: 1, 37: 12, 38: 6}
_LLVAR_BCD = {2, 35}


def field39(frame: bytes) -> bytes:
    """Field 39 of a response frame (length prefix, TPDU, header, MTI, bitmap, fields)."""
    bitmap = frame[15:23]
    start = _FIELD39_START.get(bitmap)
    if start is None:
        start = 13 + _field39_position(frame[13:])
        if not any(int.from_bytes(bitmap, "big") >> (64 - n) & 1 for n in _LLVAR_BCD):
            _FIELD39_START[bitmap] = start  # no variable field before 39: fixed per bitmap
    return frame[start : start + 2]


# Where field 39 starts in the frame, per bitmap without a variable field before it.
_FIELD39_START: dict[bytes, int] = {}


def _field39_position(body: bytes) -> int:
    bitmap = int.from_bytes(body[2:10], "big")
    position = 10
    for number in range(2, 39):
        if not bitmap >> (64 - number) & 1:
            continue
        if number in _LLVAR_BCD:
            digits = int(body[position : position + 1].hex())
            position += 1 + (digits + 1) // 2
        else:
            position += _FIXED[number]
    return position


def frame_of(message: object, mak: bytes | None) -> bytes:
    return encode_frame(Frame(Tpdu(), Header(), encode_message(message, mak=mak)))  # type: ignore[arg-type]


# --- the bare baseline server ---


def canned_answer() -> bytes:
    response = TransactionResponse(
        Kind.SALE, "10000001", MERCHANT_ID, 7, 1, "00", 1250, rrn="000000000001",
        auth_code="000001", local_time="120000", local_date="1125",
    )  # fmt: skip
    return encode_frame(
        Frame(Tpdu(0, 3), Header(), encode_message(response, mak=bytes.fromhex("0123456789ABCDEF")))
    )


class _Bare(asyncio.Protocol):
    answer = canned_answer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        answers = 0
        while len(buffer) >= 2:
            size = 2 + int.from_bytes(buffer[:2], "big")
            if len(buffer) < size:
                break
            buffer = buffer[size:]
            answers += 1
        self.buffer = buffer
        if answers:
            self.transport.write(self.answer * answers)


def run_bare_server(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            _Bare, "127.0.0.1", port, backlog=4096
        )
        await server.serve_forever()

    asyncio.run(main())


# --- processes ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(
    port: int, process: subprocess.Popen[bytes], log: Path | None = None, workers: int = 1
) -> None:
    """Until ``port`` answers and, with a log, ``workers`` processes said they listen."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if log is None or log.read_text().count('"event": "listening"') >= workers:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("server did not start") from None
        time.sleep(0.05)


@contextmanager
def server_process(
    args: list[str], port: int, env: dict[str, str], *, log: Path | None = None, workers: int = 1
) -> Iterator[int]:
    with open(log or os.devnull, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        wait_listening(port, process, log, workers)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def host_process(data_dir: Path, port: int, db_url: str | None, workers: int = 1) -> Iterator[int]:
    """The host (its supervisor with ``workers`` > 1); its request lines go to a file."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop(DATABASE_URL_ENV, None)
    if db_url is not None:
        env[DATABASE_URL_ENV] = db_url
    args = ["-m", "posbatch", "host", "serve", "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(data_dir), "--log-level", "info",
            "--workers", str(workers),
            # every generated terminal comes from 127.0.0.1: one address, thousands of them
            "--connections-per-address-max", str(IDLE_CONNECTIONS)]  # fmt: skip
    log = data_dir / f"host-{port}.log"
    with server_process(args, port, env, log=log, workers=workers) as pid:
        yield pid
    if workers > 1:
        served = [line for line in log.read_text().splitlines() if '"event": "stopped"' in line]
        print(f"    per worker: {'; '.join(served)}")


@contextmanager
def bare_process(port: int) -> Iterator[int]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    with server_process(
        [str(Path(__file__).resolve()), "--bare-server", str(port)], port, env
    ) as pid:
        yield pid


@contextmanager
def reference_process(data_dir: Path, port: int, workers: int = 1) -> Iterator[int]:
    """The reference host (bench/refhost.py; a parent of ``workers`` processes when > 1)."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    args = [str(Path(__file__).resolve().parent / "refhost.py"), "serve",
            "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
            "--workers", str(workers)]  # fmt: skip
    log = data_dir / f"ref-{port}.log"
    with server_process(args, port, env, log=log, workers=workers) as pid:
        yield pid
    if workers > 1:
        stopped = [line for line in log.read_text().splitlines() if '"event": "stopped"' in line]
        print(f"    per worker: {'; '.join(stopped)}")


@contextmanager
def postgres_schema() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def register(
    data_dir: Path,
    db_url: str | None,
    terminal_ids: list[str],
    *,
    drop_search: bool = False,
    history: int = 0,
) -> None:
    url = db_url or f"sqlite:///{data_dir / DB_FILE_NAME}"
    store = HostStore.open(url, pan_key=pan_key(data_dir), kek=kek(data_dir))
    now = datetime.now(UTC)
    store.add_terminals(
        [(MERCHANT_ID, terminal_id, MASTER_KEY) for terminal_id in terminal_ids], now=now
    )
    if history:
        store.add_terminal(MERCHANT_ID, HISTORY_TERMINAL_ID, MASTER_KEY, now=now)
    with store.engine.begin() as connection:
        if drop_search:  # a diagnostic: what the random-key search indexes cost posbatch
            for name in RANDOM_KEY_SEARCH_INDEXES:
                connection.execute(sa.text(f"DROP INDEX {name}"))
        if history:
            connection.execute(
                sa.text(
                    "INSERT INTO host_batches (terminal_id, batch_no, state, opened_at) "
                    "VALUES (:terminal, 1, 'CLOSED', :at)"
                ),
                {"terminal": HISTORY_TERMINAL_ID, "at": now.replace(tzinfo=None)},
            )
            batch_id = connection.execute(
                sa.text("SELECT batch_id FROM host_batches WHERE terminal_id = :terminal"),
                {"terminal": HISTORY_TERMINAL_ID},
            ).scalar_one()
            columns = ("batch_id", "terminal_id", "stan", "kind", "amount_fen", "card_type",
                       "pan_hmac", "pan_masked", "status", "response_code", "rrn", "auth_code",
                       "local_time", "local_date", "refunded_fen", "request_digest",
                       "created_at")  # fmt: skip
            insert = sa.text(
                f"INSERT INTO host_transactions ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + name for name in columns)})"
            )
            for row in history_rows(terminal_ids[1 : THROUGHPUT_TERMINALS + 1], history, now):
                connection.execute(
                    insert,
                    [dict(zip(columns, (batch_id, *values), strict=True)) for values in row],
                )
    store.close()


def history_rows(
    terminal_ids: list[str], count: int, now: datetime
) -> Iterator[list[tuple[object, ...]]]:
    """``count`` earlier approvals of these terminals over the last 30 days, in chunks, in
    time order: (terminal, STAN, amount, PAN HMAC, masked PAN, RRN, auth code, time, date,
    refunded, digest, created at) for posbatch (bench/refhost.py takes the same values)."""
    rng = random.Random(HISTORY_SEED)
    start = now.replace(tzinfo=None) - timedelta(days=HISTORY_DAYS)
    step = timedelta(days=HISTORY_DAYS) / count
    for first in range(0, count, HISTORY_CHUNK_ROWS):
        chunk = []
        for number in range(first, min(count, first + HISTORY_CHUNK_ROWS)):
            at = start + step * number
            chunk.append((
                rng.choice(terminal_ids), number + 1, "sale", rng.randrange(100, 100_000), "00",
                f"{number:064x}", f"622202*********{rng.randrange(10_000):04d}", "approved",
                "00", f"{rng.randrange(10**12):012d}", "123456", f"{at:%H%M%S}", f"{at:%m%d}",
                0, f"{number:064x}", at,
            ))  # fmt: skip
        yield chunk


# --- the load generator ---


class Client(asyncio.Protocol):
    """One terminal's connection: a request/answer mode for sign-on, then pre-built load."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.buffer = b""
        self.waiter: asyncio.Future[bytes] | None = None
        self.frames: list[bytes] = []
        self.next_index = 0
        self.cycle = False
        self.sent_at: collections.deque[float] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost += 1

    async def request(self, frame: bytes) -> bytes:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(frame)
        answer = await self.waiter
        self.waiter = None
        return answer

    def send_next(self, scheduled: float) -> bool:
        if self.next_index >= len(self.frames):
            if not self.cycle:
                return False
            self.next_index = 0
        assert self.transport is not None
        self.sent_at.append(scheduled)
        self.transport.write(self.frames[self.next_index])
        self.next_index += 1
        return True

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while len(buffer) >= 2:
            size = 2 + int.from_bytes(buffer[:2], "big")
            if len(buffer) < size:
                break
            frame, buffer = buffer[:size], buffer[size:]
            if self.waiter is not None:
                self.waiter.set_result(frame)
            else:
                self.run.answer(self, frame)
        self.buffer = buffer


class Run:
    def __init__(self, *, closed_loop: bool) -> None:
        self.closed_loop = closed_loop
        self.measuring = False
        self.stopping = False
        self.approvals = 0
        self.approvals_seen = 0  # every "00" answer, outside the measured window too
        self.answers = 0
        self.declines: collections.Counter[bytes] = collections.Counter()
        self.latencies_ms: list[float] = []
        self.lost = 0

    def answer(self, client: Client, frame: bytes) -> None:
        now = time.perf_counter()
        scheduled = client.sent_at.popleft() if client.sent_at else now
        code = field39(frame)
        self.approvals_seen += code == b"00"
        if self.measuring:
            self.answers += 1
            if code == b"00":
                self.approvals += 1
            else:
                self.declines[code] += 1
            self.latencies_ms.append((now - scheduled) * 1000)
        if self.closed_loop and not self.stopping:
            client.send_next(now)


async def connect(port: int, run: Run, count: int) -> list[Client]:
    loop = asyncio.get_running_loop()
    clients = []
    for start in range(0, count, 200):
        batch = [
            loop.create_connection(lambda: Client(run), "127.0.0.1", port)
            for _ in range(min(200, count - start))
        ]
        for _, protocol in await asyncio.gather(*batch):
            clients.append(protocol)
    return clients


async def sign_on_all(clients: list[Client], terminal_ids: list[str]) -> list[bytes]:
    async def one(client: Client, terminal_id: str) -> bytes:
        request = SignOnRequest(terminal_id, MERCHANT_ID, 1, 1)
        answer = decode_message((await client.request(frame_of(request, None)))[13:])
        assert isinstance(answer, SignOnResponse) and answer.working_keys is not None, answer
        return unwrap_working_keys(MASTER_KEY, answer.working_keys).mak

    return list(
        await asyncio.gather(*(one(c, t) for c, t in zip(clients, terminal_ids, strict=True)))
    )


def build_frames(terminal_id: str, mak: bytes, count: int) -> list[bytes]:
    return [
        frame_of(SaleRequest(terminal_id, MERCHANT_ID, stan, 1, 100 + stan % 900, PAN), mak)
        for stan in range(2, 2 + count)
    ]


@dataclass(frozen=True)
class Throughput:
    """(a) of one host: approvals per second and what they cost the host's processes."""

    approvals_per_s: float
    cpu_ms_per_approval: float | None  # None for the bare server (not measured)
    cores_busy: float | None
    approvals_seen: int  # every approval answered, warm-up and drain included


async def closed_loop(port: int, terminal_ids: list[str], frames_each: int, seconds: float,
                      *, cycle: bool, pid: int | None = None) -> Throughput:  # fmt: skip
    run = Run(closed_loop=True)
    clients = await connect(port, run, len(terminal_ids))
    if cycle:  # bare server: one set of frames, sent round and round
        frames = build_frames(terminal_ids[0], bytes(8), frames_each)
        for client in clients:
            client.frames, client.cycle = frames, True
    else:
        maks = await sign_on_all(clients, terminal_ids)
        for client, terminal_id, mak in zip(clients, terminal_ids, maks, strict=True):
            client.frames = build_frames(terminal_id, mak, frames_each)
    for client in clients:
        client.send_next(time.perf_counter())
    await asyncio.sleep(WARMUP_S)
    run.measuring = True
    started = time.perf_counter()
    cpu_started = cpu_s(pid) if pid is not None else 0.0
    await asyncio.sleep(seconds)
    run.measuring = False
    elapsed = time.perf_counter() - started
    cpu_ms = cores = None
    if pid is not None and run.approvals:
        cpu_used = cpu_s(pid) - cpu_started
        cpu_ms, cores = cpu_used / run.approvals * 1000, cpu_used / elapsed
    run.stopping = True
    await asyncio.sleep(0.5)
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    if run.declines:
        print(f"    declines: {dict(run.declines)}")
    if any(c.next_index >= len(c.frames) and not c.cycle for c in clients):
        print("    warning: some terminals ran out of pre-built frames; raise --frames")
    return Throughput(run.approvals / elapsed, cpu_ms, cores, run.approvals_seen)


async def open_loop(
    port: int, terminal_ids: list[str], seconds: float, rate: int = LATENCY_RATE_PER_S
) -> tuple[list[float], int, int]:
    """(latencies in ms, requests unanswered, approvals seen) of ``rate`` sales/s."""
    run = Run(closed_loop=False)
    clients = await connect(port, run, len(terminal_ids))
    maks = await sign_on_all(clients, terminal_ids)
    per_terminal = int(seconds * rate / len(terminal_ids)) + 3
    for client, terminal_id, mak in zip(clients, terminal_ids, maks, strict=True):
        client.frames = build_frames(terminal_id, mak, per_terminal)
    total = int(seconds * rate)
    interval = 1.0 / rate
    run.measuring = True
    start = time.perf_counter()
    index = 0
    while index < total:
        now = time.perf_counter()
        while index < total and start + index * interval <= now:
            clients[index % len(clients)].send_next(start + index * interval)
            index += 1
        await asyncio.sleep(0.0005)
    await asyncio.sleep(2.0)  # let the last answers arrive
    run.measuring = False
    missing = total - run.answers
    if run.declines:
        print(f"    (b) declines: {dict(run.declines)}")
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    return run.latencies_ms, missing, run.approvals_seen


def cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and its children (workers)."""
    total = 0
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(stat_path.parent.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def idle_connections(port: int, pid: int) -> tuple[float, float]:
    before = rss_mb(pid)
    run = Run(closed_loop=False)
    clients = await connect(port, run, IDLE_CONNECTIONS)
    await asyncio.sleep(2.0)
    after = rss_mb(pid)
    alive = IDLE_CONNECTIONS - run.lost
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    if alive != IDLE_CONNECTIONS:
        print(f"    only {alive} of {IDLE_CONNECTIONS} connections stayed open")
    return before, after


# --- one host under test ---


async def check_believed(port: int, journal_url: str) -> None:
    """A real posbatch Terminal signs on and sells over TCP; it must believe the approval."""

    def clock() -> datetime:
        return datetime.now(UTC)

    journal = Journal.open(journal_url)
    Terminal.initialize(journal, merchant_id=MERCHANT_ID, terminal_id=BELIEVED_TERMINAL_ID,
                        host_address=f"127.0.0.1:{port}", clock=clock)  # fmt: skip
    terminal = Terminal(journal, TerminalSecrets(MASTER_KEY, bytes(32)), clock=clock)
    terminal.timeout_ms = BELIEVED_TIMEOUT_MS
    driver = TcpDriver("127.0.0.1", port)
    try:
        await driver.run(terminal.sign_on_flow())
        sale = await driver.run(terminal.sale_flow(1250, PAN))
    finally:
        await driver.close()
        journal.engine.dispose()
    if not (sale.approved and sale.rrn and sale.auth_code):
        raise RuntimeError(f"a posbatch terminal did not believe the host's approval: {sale}")


def approved_rows(url: str, history: int = 0) -> int:
    """Approved transactions in posbatch's host database at ``url`` (less the history)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return (
                int(
                    connection.execute(
                        sa.text("SELECT count(*) FROM host_transactions WHERE response_code = '00'")
                    ).scalar_one()
                )
                - history
            )
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Figures:
    """What one host process (or one set of workers) did in (a) and (b)."""

    throughput: Throughput
    p50_ms: float
    p99_ms: float
    max_ms: float
    unanswered: int


def measure_host(
    start: Callable[[Path, int], AbstractContextManager[int]],
    prepare: Callable[[Path, list[str]], Callable[[], int]],
    options: argparse.Namespace,
) -> Figures:
    """(a) and (b) of one host: ``prepare`` registers the terminals in a fresh data directory
    and returns how to count its approved rows; ``start`` runs it on a port."""
    with tempfile.TemporaryDirectory(prefix="posbatch-bench-") as tmp:
        data_dir = Path(tmp)
        throughput_ids = [f"5{i:07d}" for i in range(THROUGHPUT_TERMINALS)]
        latency_ids = [f"6{i:07d}" for i in range(LATENCY_TERMINALS)]
        count_rows = prepare(data_dir, [BELIEVED_TERMINAL_ID, *throughput_ids, *latency_ids])
        port = free_port()
        with start(data_dir, port) as pid:
            asyncio.run(check_believed(port, f"sqlite:///{data_dir / 'believer.db'}"))
            throughput = asyncio.run(
                closed_loop(port, throughput_ids, options.frames, options.seconds,
                            cycle=False, pid=pid)
            )  # fmt: skip
            latencies, unanswered, seen = asyncio.run(
                open_loop(port, latency_ids, options.seconds, options.rate)
            )
        rows = count_rows()
        answered = 1 + throughput.approvals_seen + seen  # the believed sale, (a), (b)
        if rows < answered:
            raise RuntimeError(f"{answered} approvals answered but only {rows} rows stored")
    return Figures(throughput, percentile(latencies, 0.5), percentile(latencies, 0.99),
                   max(latencies), unanswered)  # fmt: skip


def prepare_reference(
    searchable: bool, history: int = 0
) -> Callable[[Path, list[str]], Callable[[], int]]:
    def prepare(data_dir: Path, terminal_ids: list[str]) -> Callable[[], int]:
        terminals = [(MERCHANT_ID, terminal, MASTER_KEY) for terminal in terminal_ids]
        refhost.create(data_dir, terminals, searchable=searchable)
        if history:  # batch 0 of the throughput terminals: the bench's sales are in batch 1
            rows = history_rows(terminal_ids[1:THROUGHPUT_TERMINALS + 1], history,
                                datetime.now(UTC))  # fmt: skip
            refhost.add_history(
                data_dir,
                ((terminal, 0, stan, amount, pan_hmac, masked, rrn, auth, local_time,
                  local_date, at.isoformat())
                 for chunk in rows
                 for (terminal, stan, _kind, amount, _card, pan_hmac, masked, _status, _code,
                      rrn, auth, local_time, local_date, _refunded, _digest, at) in chunk),
            )  # fmt: skip
        return lambda: refhost.approvals(data_dir) - history

    return prepare


def prepare_posbatch(
    db_url: str | None, *, drop_search: bool = False, history: int = 0
) -> Callable[[Path, list[str]], Callable[[], int]]:
    def prepare(data_dir: Path, terminal_ids: list[str]) -> Callable[[], int]:
        register(data_dir, db_url, terminal_ids, drop_search=drop_search, history=history)
        url = db_url or f"sqlite:///{data_dir / DB_FILE_NAME}"
        return lambda: approved_rows(url, history)

    return prepare


def run_posbatch(
    db: str, workers: int, options: argparse.Namespace, *, drop_search: bool = False
) -> Figures:
    if db == "sqlite":
        return measure_host(
            lambda data_dir, port: host_process(data_dir, port, None, workers),
            prepare_posbatch(None, drop_search=drop_search, history=options.history),
            options,
        )
    with postgres_schema() as url:
        return measure_host(
            lambda data_dir, port: host_process(data_dir, port, url, workers),
            prepare_posbatch(url, drop_search=drop_search, history=options.history),
            options,
        )


def run_reference(workers: int, options: argparse.Namespace, *, searchable: bool) -> Figures:
    return measure_host(
        lambda data_dir, port: reference_process(data_dir, port, workers),
        prepare_reference(searchable, options.history),
        options,
    )


# --- main ---


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(label: str, workers: int, figures: Figures) -> str:
    a = figures.throughput
    cpu = "" if a.cpu_ms_per_approval is None else (
        f", {a.cpu_ms_per_approval:.3f} ms CPU per approval ({a.cores_busy:.2f} cores busy)"
    )  # fmt: skip
    lost = f", {figures.unanswered} unanswered" if figures.unanswered else ""
    return (f"  {label:<27} {workers} worker(s): (a) {a.approvals_per_s:,.0f} durable "
            f"approvals/s{cpu}; (b) p50 {figures.p50_ms:.1f} / p99 {figures.p99_ms:.1f} / "
            f"max {figures.max_ms:.1f} ms{lost}")  # fmt: skip


def ratios(figures: Figures, reference: Figures) -> tuple[float, float | None]:
    """(approvals/s ratio, CPU-per-approval ratio) of ``figures`` to ``reference``."""
    ours, theirs = figures.throughput, reference.throughput
    rate = ours.approvals_per_s / theirs.approvals_per_s
    if ours.cpu_ms_per_approval is None or theirs.cpu_ms_per_approval is None:
        return rate, None
    return rate, ours.cpu_ms_per_approval / theirs.cpu_ms_per_approval


def span(values: list[float], form: str) -> str:
    low, high = min(values), max(values)
    return format(low, form) if low == high else f"{low:{form}}–{high:{form}}"


def summarise(results: dict[tuple[str, int], list[Figures]], workers: list[int]) -> None:
    print("\nsummary (ranges over the rounds; ratios per round, to the reference host "
          "of the same round, and to its searchable variant):")  # fmt: skip
    print(f"  {'host':<27} {'workers':>7}  {'approvals/s':>15}  {'CPU ms/approval':>15}  "
          f"{'(b) p99 ms':>13}  {'rate ratio':>11}  {'CPU ratio':>11}  "
          f"{'to searchable: rate':>19}  {'CPU':>11}")  # fmt: skip
    for count in workers:
        reference = results[(REFERENCE, count)]
        searchable = results.get((SEARCHABLE_REFERENCE, count))
        for (label, worker_count), runs in results.items():
            if worker_count != count:
                continue
            rates = [run.throughput.approvals_per_s for run in runs]
            cpus = [run.throughput.cpu_ms_per_approval or 0.0 for run in runs]
            p99s = [run.p99_ms for run in runs]
            columns = [span_ratios(runs, reference) if label != REFERENCE else ("", "")]
            if searchable is not None and label.startswith("posbatch"):
                columns.append(span_ratios(runs, searchable))
            cells = "".join(
                f"  {rate:>{width}}  {cpu:>11}"
                for (rate, cpu), width in zip(columns, (11, 19), strict=False)
            )
            print(f"  {label:<27} {count:>7}  {span(rates, ',.0f'):>15}  "
                  f"{span(cpus, '.3f'):>15}  {span(p99s, '.1f'):>13}{cells}")  # fmt: skip
    print(f"  targets: rate ratio ≥ {TARGET_RATE_RATIO}, CPU ratio ≤ {TARGET_CPU_RATIO} "
          f"(1 and 2 workers); (b) p99 ≤ {TARGET_P99_MS:.0f} ms with 2 workers; "
          f"(a) ≥ {TARGET_APPROVALS_PER_S:,} approvals/s")  # fmt: skip


def span_ratios(runs: list[Figures], references: list[Figures]) -> tuple[str, str]:
    """The ranges of the per-round (rate, CPU) ratios of ``runs`` to ``references``."""
    pairs = [ratios(run, ref) for run, ref in zip(runs, references, strict=True)]
    return (
        span([rate for rate, _ in pairs], ".2f"),
        span([cpu for _, cpu in pairs if cpu is not None], ".2f"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=600, help="pre-built sales per terminal")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="host processes of (a) and (b); each count in turn")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="runs of every host and count")
    parser.add_argument("--rate", type=int, default=LATENCY_RATE_PER_S, help="sales/s of (b)")
    parser.add_argument(
        "--no-searchable",
        action="store_true",
        help="skip the reference host with the back office's search indexes",
    )
    parser.add_argument(
        "--without-search-indexes",
        action="store_true",
        help="also run posbatch without the back office's four random-key search indexes "
        "(a diagnostic of what they cost; its database cannot serve those searches fast)",
    )
    parser.add_argument(
        "--history", type=int, default=0,
        help="earlier approvals in every host's table before it is measured (default 0)",
    )  # fmt: skip
    options = parser.parse_args()
    if options.bare_server is not None:
        run_bare_server(options.bare_server)
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    print(f"posbatch host bench: {os.cpu_count()} cores, {options.seconds:.0f} s per figure, "
          f"{options.rounds} round(s), load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    port = free_port()
    with bare_process(port):
        ids = [f"5{i:07d}" for i in range(THROUGHPUT_TERMINALS)]
        bare = asyncio.run(closed_loop(port, ids, 64, options.seconds, cycle=True))
    print(f"[bare] (a) bare asyncio server, canned 0210: {bare.approvals_per_s:,.0f} answers/s "
          f"(the generator's ceiling is at least this)")  # fmt: skip
    databases = ["sqlite", "postgresql"] if options.db == "both" else [options.db]
    references = [REFERENCE] if options.no_searchable else [REFERENCE, SEARCHABLE_REFERENCE]
    labels = [*references, *(f"posbatch {db}" for db in databases)]
    if options.without_search_indexes:
        labels += [f"posbatch {db} {WITHOUT_SEARCH}" for db in databases]
    results: dict[tuple[str, int], list[Figures]] = {
        (label, count): [] for count in options.workers for label in labels
    }
    for round_number in range(1, options.rounds + 1):
        for count in options.workers:
            print(f"[round {round_number}, {count} worker(s)] load average "
                  f"{os.getloadavg()[0]:.2f}")  # fmt: skip
            order = labels if round_number % 2 else list(reversed(labels))
            for label in order:
                if label in references:
                    figures = run_reference(count, options, searchable=label != REFERENCE)
                else:
                    figures = run_posbatch(label.split()[1], count, options,
                                           drop_search=label.endswith(WITHOUT_SEARCH))  # fmt: skip
                results[(label, count)].append(figures)
                print(describe(label, count, figures))
            for label in labels[1:]:
                latest = results[(label, count)][-1]
                for name in references if label.startswith("posbatch") else [REFERENCE]:
                    rate, cpu = ratios(latest, results[(name, count)][-1])
                    cpu_text = "" if cpu is None else f", CPU per approval {cpu:.2f}×"
                    targets = ""
                    if name == REFERENCE and label.startswith("posbatch"):
                        targets = f" (targets ≥ {TARGET_RATE_RATIO}, ≤ {TARGET_CPU_RATIO})"
                    print(f"  {label} / {name}: approvals/s {rate:.2f}×{cpu_text}{targets}")
                if label.startswith("posbatch"):
                    to_bare = latest.throughput.approvals_per_s / bare.approvals_per_s
                    print(f"  {label} / bare {to_bare:.3f}")
    summarise(results, options.workers)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if not options.skip_memory:
        with tempfile.TemporaryDirectory(prefix="posbatch-bench-") as tmp:
            port = free_port()
            register(Path(tmp), None, [])
            with host_process(Path(tmp), port, None) as pid:
                before, after = asyncio.run(idle_connections(port, pid))
        print(f"[memory] host RSS {before:.0f} MB idle → {after:.0f} MB with "
              f"{IDLE_CONNECTIONS:,} idle connections (target ≤ {TARGET_RSS_MB} MB)")  # fmt: skip


if __name__ == "__main__":
    main()
