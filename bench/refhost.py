"""The reference host: the least an honest host can do with posbatch's libraries.

``bench/host.py`` runs it under the same load generator as posbatch's host, in
the same run, and prints the ratios of issue #15 against it (approvals/s and
host CPU per approval). It is the floor posbatch is judged against, so it must
do for real what a terminal relies on — and nothing else:

- the same framing (2-byte length, TPDU answered with the addresses swapped,
  the request's header echoed), split by hand from the byte stream, with the
  frame size bounded by ``posbatch.wire.FRAME_BYTES_MAX``;
- ``iso8583.decode`` / ``iso8583.encode`` with ``posbatch.wire.SPEC``;
- sign-on (0800): fresh working keys (``posbatch.wire.generate_working_keys``)
  sent under the terminal's master key in field 62 and kept in the database;
- sale (0200, processing code 000000, 60.1 = 22): field 64 checked under the
  terminal's MAK (``posbatch.wire.verify_mac``: a bad one is answered A0 without
  a MAC), the PAN kept only as its HMAC-SHA256 under a key outside the database
  and its masked form, one row per approval in SQLite (WAL, ``synchronous=FULL``)
  under a unique (terminal, batch, STAN) key — a repeat gets the original
  answer, a different request under a taken key 94 — and a 0210 with RRN,
  authorisation code, time, date and a MAC under the MAK
  (``posbatch.wire.compute_mac``), which a posbatch terminal believes
  (``bench/host.py`` checks that with a real ``Terminal`` before it measures);
- durable before answering: every request read in one turn of the event loop
  is one group; its rows are committed (one fsync) before any of its answers is
  written. Nothing blocks on anything but that commit.

With ``create(..., searchable=True)`` its table also carries the indexes posbatch's
back office needs to find a transaction fast at any age (docs/backoffice.md): by RRN,
by amount, by the card's last four digits and by terminal, each with the time, and by
time alone. Each keeps its rows in the order of a key a sale draws at random, so a
group's rows land on as many pages as the group has rows and every such page is
written again at the commit: ``bench/host.py`` prints posbatch's ratios to this
variant beside the targets' — the least a host can do whose approvals can be searched.

What it does NOT do, and posbatch's host does: batch numbers and their rules
(77), voids, refunds, reversals, settlement, batch upload, issuer rules (Luhn,
expiry, limits), field checks beyond what pyiso8583 and ``int()`` refuse, fault
scripts, request log lines, idle and in-flight limits. Anything it does not
understand is not answered. It is a yardstick, not a product: never serve
terminals with it.

``--workers N`` runs N processes sharing the port (SO_REUSEPORT) and the SQLite
file; each takes the write lock (``BEGIN IMMEDIATE``) only for its inserts and
commit. The MAKs a group checks are read before the lock, in one statement per
group: a MAK only changes at its terminal's own sign-on, which a terminal does
not send while it waits for a sale's answer.

Usage (as bench/host.py runs it)::

    python bench/refhost.py serve --listen 127.0.0.1:5800 --data-dir DIR [--workers N]

where DIR was prepared by :func:`create` (``ref.db`` and ``ref-pan.key``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import iso8583

from posbatch.errors import MacError
from posbatch.wire import (
    FRAME_BYTES_MAX,
    MAC_BYTES,
    SPEC,
    SignOnResponse,
    compute_mac,
    encode_message,
    generate_working_keys,
    mask_pan,
    verify_mac,
    wrap_working_keys,
)

DB_FILE_NAME: Final = "ref.db"
PAN_KEY_FILE_NAME: Final = "ref-pan.key"
PAN_KEY_BYTES: Final = 32
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
LISTEN_BACKLOG: Final = 4096
# Unread bytes one connection may hold: a frame and a few more (then it is closed).
BUFFER_BYTES_MAX: Final = 64 * 1024
# Frames of one connection waiting for their group's commit (then reading pauses).
IN_FLIGHT_MAX: Final = 32
STOP_TIMEOUT_S: Final = 10.0
FIRST_BATCH_DETAIL: Final = "B=000001;S=OPEN"  # field 63 of a sign-on: batch 1, open
_LENGTH_BYTES: Final = 2
_TPDU_BYTES: Final = 5
_HEADER_BYTES: Final = 6
_BODY_START: Final = _LENGTH_BYTES + _TPDU_BYTES + _HEADER_BYTES
_MAC_PLACEHOLDER: Final = "0" * (2 * MAC_BYTES)

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS ref_terminals ("
    " terminal_id TEXT PRIMARY KEY, merchant_id TEXT NOT NULL,"
    " master_key BLOB NOT NULL, mak BLOB, pik BLOB)",
    "CREATE TABLE IF NOT EXISTS ref_approvals ("
    " terminal_id TEXT NOT NULL, batch_no INTEGER NOT NULL, stan INTEGER NOT NULL,"
    " amount_fen INTEGER NOT NULL, pan_hmac TEXT NOT NULL, pan_masked TEXT NOT NULL,"
    " rrn TEXT NOT NULL, auth_code TEXT NOT NULL, local_time TEXT NOT NULL,"
    " local_date TEXT NOT NULL, created_at TEXT NOT NULL,"
    " PRIMARY KEY (terminal_id, batch_no, stan))",
)
# The back office's searches (posbatch host migration v0005), for ``searchable``.
_SEARCH_INDEXES: Final = (
    "CREATE INDEX IF NOT EXISTS ix_ref_created ON ref_approvals (created_at)",
    "CREATE INDEX IF NOT EXISTS ix_ref_terminal_created ON ref_approvals (terminal_id, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_ref_rrn ON ref_approvals (rrn)",
    "CREATE INDEX IF NOT EXISTS ix_ref_amount ON ref_approvals (amount_fen, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_ref_last4 ON ref_approvals"
    " (substr(pan_masked, length(pan_masked) - 3), created_at)",
)
_INSERT: Final = (
    "INSERT OR IGNORE INTO ref_approvals (terminal_id, batch_no, stan, amount_fen, pan_hmac,"
    " pan_masked, rrn, auth_code, local_time, local_date, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_EXISTING: Final = (
    "SELECT amount_fen, pan_hmac, rrn, auth_code, local_time, local_date FROM ref_approvals"
    " WHERE terminal_id = ? AND batch_no = ? AND stan = ?"
)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=FULL."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return db


def create(
    data_dir: Path, terminals: Sequence[tuple[str, str, bytes]], *, searchable: bool = False
) -> None:
    """The database and PAN key of a reference host, with (merchant, terminal, TMK) rows
    (``searchable``: with the back office's search indexes too)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = data_dir / PAN_KEY_FILE_NAME
    if not key_path.exists():
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as key_file:
            key_file.write(os.urandom(PAN_KEY_BYTES).hex())
    db = connect(data_dir / DB_FILE_NAME)
    try:
        for statement in (*_SCHEMA, *(_SEARCH_INDEXES if searchable else ())):
            db.execute(statement)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO ref_terminals (terminal_id, merchant_id, master_key) VALUES (?, ?, ?)",
            [(terminal_id, merchant_id, key) for merchant_id, terminal_id, key in terminals],
        )
        db.execute("COMMIT")
    finally:
        db.close()


def add_history(data_dir: Path, rows: Iterable[tuple[object, ...]]) -> None:
    """Earlier approvals (rows of the approvals table): a day's table, not a fresh one."""
    db = connect(data_dir / DB_FILE_NAME)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(_INSERT, rows)
        db.execute("COMMIT")
    finally:
        db.close()


def approvals(data_dir: Path) -> int:
    """Rows in the approvals table (bench/host.py: every approval answered is one)."""
    db = connect(data_dir / DB_FILE_NAME)
    try:
        return int(db.execute("SELECT count(*) FROM ref_approvals").fetchone()[0])
    finally:
        db.close()


# --- one worker ----------------------------------------------------------------------


class _Line(asyncio.Protocol):
    """One terminal connection: frames out of the byte stream, answers back in order."""

    def __init__(self, host: RefHost) -> None:
        self.host = host
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.in_flight = 0
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        start = 0
        while len(buffer) - start >= _LENGTH_BYTES:
            size = _LENGTH_BYTES + int.from_bytes(buffer[start : start + _LENGTH_BYTES], "big")
            if size > _LENGTH_BYTES + FRAME_BYTES_MAX or size < _BODY_START + 10:
                self.close()  # the stream cannot be resynchronised
                return
            if len(buffer) - start < size:
                break
            self.host.submit(self, buffer[start : start + size])
            self.in_flight += 1
            start += size
        self.buffer = buffer[start:]
        if len(self.buffer) > BUFFER_BYTES_MAX:
            self.close()
        elif self.in_flight >= IN_FLIGHT_MAX and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def send(self, answer: bytes | None) -> None:
        self.in_flight -= 1
        if self.transport is None:
            return
        if answer is not None:
            self.transport.write(answer)
        if self.paused and self.in_flight < IN_FLIGHT_MAX:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _Sale:
    """A sale whose MAC checked, waiting for its row to commit."""

    __slots__ = ("answer", "fields", "frame", "line", "mak", "row")

    def __init__(
        self, line: _Line, frame: bytes, fields: dict[str, str], mak: bytes, row: tuple[object, ...]
    ) -> None:
        self.line = line
        self.frame = frame
        self.fields = fields
        self.mak = mak
        self.row = row
        self.answer = b""


class RefHost:
    """One worker: groups the frames of a loop turn, commits them, then answers."""

    def __init__(self, data_dir: Path) -> None:
        self.db = connect(data_dir / DB_FILE_NAME)
        self.pan_key = bytes.fromhex((data_dir / PAN_KEY_FILE_NAME).read_text().strip())
        self.group: list[tuple[_Line, bytes]] = []
        self.approved = 0
        self.unanswered = 0

    def submit(self, line: _Line, frame: bytes) -> None:
        if not self.group:
            asyncio.get_running_loop().call_soon(self.flush)
        self.group.append((line, frame))

    def flush(self) -> None:
        """Answer the group: decode and check outside the lock, insert and commit, then send."""
        group, self.group = self.group, []
        decoded: list[tuple[_Line, bytes, dict[str, str]] | None] = []
        for line, frame in group:
            try:
                fields, _ = iso8583.decode(frame[_BODY_START:], SPEC)
            except iso8583.DecodeError:
                decoded.append(None)
                continue
            decoded.append((line, frame, fields))
        try:
            keys = self.terminals({item[2].get("41", "") for item in decoded if item is not None})
        except sqlite3.Error as exc:  # the keys cannot be read: nothing can be answered
            _event(event="group failed", error=str(exc))
            decoded = [None] * len(group)
            keys = {}
        now = datetime.now(UTC)
        local_time, local_date = now.strftime("%H%M%S"), now.strftime("%m%d")
        created_at = now.isoformat()
        answers: list[bytes | None] = [None] * len(group)
        sales: list[tuple[int, _Sale]] = []
        sign_ons: list[tuple[int, _Line, bytes, dict[str, str], bytes]] = []
        for index, item in enumerate(decoded):
            if item is None:
                continue
            line, frame, fields = item
            terminal = keys.get(fields.get("41", ""))
            mti = fields["t"]
            if terminal is None or terminal[0] != fields.get("42"):
                answers[index] = self.refuse(frame, fields, "97" if terminal is None else "03")
            elif mti == "0800":
                sign_ons.append((index, line, frame, fields, terminal[1]))
            elif mti == "0200" and fields.get("3") == "000000" and fields.get("60", "")[:2] == "22":
                sale = self.check_sale(line, frame, fields, terminal[2], created_at,
                                       local_time, local_date)  # fmt: skip
                if isinstance(sale, _Sale):
                    sales.append((index, sale))
                else:
                    answers[index] = sale
        if sales or sign_ons:
            self.commit(sales, sign_ons, answers, local_time, local_date)
        for (line, _), answer in zip(group, answers, strict=True):
            if answer is None:
                self.unanswered += 1
            line.send(answer)

    def terminals(self, terminal_ids: set[str]) -> dict[str, tuple[str, bytes, bytes | None]]:
        """(merchant, TMK, MAK) of each registered terminal of the group, in one statement."""
        if not terminal_ids:
            return {}
        marks = ", ".join("?" * len(terminal_ids))
        rows = self.db.execute(
            "SELECT terminal_id, merchant_id, master_key, mak FROM ref_terminals "
            f"WHERE terminal_id IN ({marks})",
            tuple(terminal_ids),
        ).fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def check_sale(
        self,
        line: _Line,
        frame: bytes,
        fields: dict[str, str],
        mak: bytes | None,
        created_at: str,
        local_time: str,
        local_date: str,
    ) -> _Sale | bytes | None:
        """The sale with its row, or the answer already (A0, 77), or None (not answerable)."""
        if mak is None:
            return self.refuse(frame, fields, "77")  # not signed on: no MAK, no MAC
        body = frame[_BODY_START:]
        try:
            if "64" not in fields:
                raise MacError("field 64 is missing")
            verify_mac(mak, body[:-MAC_BYTES], body[-MAC_BYTES:])
            stan = int(fields["11"])
            amount_fen = int(fields["4"])
            batch_no = int(fields["60"][2:8])
            pan = fields["2"]
        except MacError:
            return self.refuse(frame, fields, "A0")
        except (KeyError, ValueError):
            return None
        random = int.from_bytes(os.urandom(8), "big")
        rrn = f"{random % 10**12:012d}"
        auth_code = f"{random // 10**12 % 10**6:06d}"
        pan_hmac = hmac.digest(self.pan_key, pan.encode("ascii"), "sha256").hex()
        row = (fields["41"], batch_no, stan, amount_fen, pan_hmac, mask_pan(pan), rrn,
               auth_code, local_time, local_date, created_at)  # fmt: skip
        return _Sale(line, frame, fields, mak, row)

    def commit(
        self,
        sales: list[tuple[int, _Sale]],
        sign_ons: list[tuple[int, _Line, bytes, dict[str, str], bytes]],
        answers: list[bytes | None],
        local_time: str,
        local_date: str,
    ) -> None:
        """Insert the group's rows and new keys, commit (one fsync), fill in the answers."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            db.executemany(_INSERT, [sale.row for _, sale in sales])
            all_new = db.total_changes - before == len(sales)
            for index, sale in sales:
                row = sale.row
                if not all_new:
                    row = self.original(sale)
                if row is None:
                    answers[index] = self.answer(sale, "94", None, local_time, local_date)
                else:
                    answers[index] = self.answer(sale, "00", row, local_time, local_date)
                    self.approved += row is sale.row
            for index, _line, frame, fields, master_key in sign_ons:
                answers[index] = self.sign_on(frame, fields, master_key, local_time, local_date)
            db.execute("COMMIT")
        except Exception as exc:  # nothing of the group is kept: nothing of it is answered
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            for index, _ in sales:
                answers[index] = None
            for index, *_ in sign_ons:
                answers[index] = None
            _event(event="group failed", error=str(exc))

    def original(self, sale: _Sale) -> tuple[object, ...] | None:
        """A key that was taken: the stored row if this sale repeats it, else None (94)."""
        terminal_id, batch_no, stan, amount_fen, pan_hmac = sale.row[:5]
        stored = self.db.execute(_EXISTING, (terminal_id, batch_no, stan)).fetchone()
        if stored is None or stored[:2] != (amount_fen, pan_hmac):
            return None
        if stored[2] == sale.row[6]:
            return sale.row  # inserted by this group
        return (*sale.row[:6], stored[2], stored[3], stored[4], stored[5], sale.row[10])

    def answer(
        self,
        sale: _Sale,
        code: str,
        row: tuple[object, ...] | None,
        local_time: str,
        local_date: str,
    ) -> bytes:
        """The MACed 0210 of ``sale``: its own fields echoed, RRN and auth code of ``row``."""
        request = sale.fields
        fields = {
            "t": "0210", "3": request["3"], "4": request["4"], "11": request["11"],
            "12": local_time, "13": local_date, "39": code, "41": request["41"],
            "42": request["42"], "49": request.get("49", "156"), "60": request["60"],
            "64": _MAC_PLACEHOLDER,
        }  # fmt: skip
        if row is not None:
            fields["37"], fields["38"] = str(row[6]), str(row[7])
            fields["12"], fields["13"] = str(row[8]), str(row[9])
        body, _ = iso8583.encode(fields, SPEC)
        body[-MAC_BYTES:] = compute_mac(sale.mak, bytes(body[:-MAC_BYTES]))
        return _frame(sale.frame, bytes(body))

    def refuse(self, frame: bytes, fields: dict[str, str], code: str) -> bytes | None:
        """An unMACed answer ``code`` (97, 03, 77, A0) echoing what the request had."""
        mti = fields["t"]
        if mti not in ("0800", "0200"):
            return None
        answer = {"t": "0810" if mti == "0800" else "0210", "39": code}
        for number in ("3", "4", "11", "41", "42", "49", "60"):
            if number in fields:
                answer[number] = fields[number]
        try:
            body, _ = iso8583.encode(answer, SPEC)
        except iso8583.EncodeError:
            return None
        return _frame(frame, bytes(body))

    def sign_on(
        self,
        frame: bytes,
        fields: dict[str, str],
        master_key: bytes,
        local_time: str,
        local_date: str,
    ) -> bytes | None:
        """New working keys, kept (inside the group's transaction) and sent under the TMK."""
        terminal_id = fields["41"]
        try:
            stan = int(fields["11"])
        except (KeyError, ValueError):
            return None
        keys = generate_working_keys()
        self.db.execute(
            "UPDATE ref_terminals SET mak = ?, pik = ? WHERE terminal_id = ?",
            (keys.mak, keys.pik, terminal_id),
        )
        response = SignOnResponse(
            terminal_id, fields["42"], stan, 1, "00", local_time, local_date,
            wrap_working_keys(master_key, keys), FIRST_BATCH_DETAIL,
        )  # fmt: skip
        return _frame(frame, encode_message(response))


def _frame(request: bytes, body: bytes) -> bytes:
    """The answer frame: length, the request's TPDU with the addresses swapped, its header."""
    tpdu = request[_LENGTH_BYTES : _LENGTH_BYTES + _TPDU_BYTES]
    header = request[_LENGTH_BYTES + _TPDU_BYTES : _BODY_START]
    length = _TPDU_BYTES + _HEADER_BYTES + len(body)
    return length.to_bytes(2, "big") + tpdu[:1] + tpdu[3:5] + tpdu[1:3] + header + body


def _event(**items: object) -> None:
    print(json.dumps(items), file=sys.stderr, flush=True)


async def _serve(data_dir: Path, host: str, port: int, *, reuse_port: bool) -> None:
    loop = asyncio.get_running_loop()
    ref = RefHost(data_dir)
    server = await loop.create_server(
        lambda: _Line(ref), host, port, backlog=LISTEN_BACKLOG, reuse_port=reuse_port
    )
    stop = asyncio.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    _event(event="listening", host=host, port=port, pid=os.getpid())
    await stop.wait()
    server.close()
    _event(event="stopped", pid=os.getpid(), approved=ref.approved, unanswered=ref.unanswered)
    ref.db.close()


def _supervise(args: argparse.Namespace) -> None:
    """N workers on one port; SIGTERM stops them all."""
    command = [sys.executable, str(Path(__file__).resolve()), "serve", "--listen", args.listen,
               "--data-dir", str(args.data_dir), "--reuse-port"]  # fmt: skip
    workers = [subprocess.Popen(command) for _ in range(args.workers)]
    stopping = False

    def stop(_signal: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(worker.poll() is None for worker in workers):
        time.sleep(0.05)
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--listen", required=True, help="HOST:PORT")
    serve.add_argument("--data-dir", type=Path, required=True)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    if args.workers > 1:
        _supervise(args)
        return
    host, _, port = args.listen.rpartition(":")
    asyncio.run(_serve(args.data_dir, host, int(port), reuse_port=args.reuse_port))


if __name__ == "__main__":
    main()
