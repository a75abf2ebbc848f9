"""The kill probe: real host and terminal processes, SIGKILLed at random, over real sockets.

The simulator proves the promise — *a terminal's batch always settles, and no transaction
is ever lost or counted twice* — in one process over an in-memory link, with crashes at
the points it names (``sim/_link.py`` ``crash_point``: before a request leaves, after the
host answered, around a journal commit). This probe reaches what it cannot: an operating
system's SIGKILL at any instant of a real ``posbatch host serve`` (one process, or
``--workers 2`` and its workers one at a time) and of real terminal processes (the engine
over ``TcpDriver``, ``killprobe_terminal.py``), mid-sale, mid-settlement, between a request
and its answer (the host's fault script delays a share of its answers after their commit, to
widen that window), on SQLite or PostgreSQL — and mid-upload: a batch upload follows only
a settlement the host answers not balanced, which a kill alone never causes, so the
operator's own action does (:func:`_put_back`): ``posbatch terminal backup``
while the till trades, a few seconds more of trading, then ``posbatch terminal restore`` of
that copy. The restored journal lacks what the host approved since; its first sign-on
settles the host's open batch, out of balance, and uploads — while the till's process, the
cashier's ``settle`` or the host is SIGKILLed a random instant later.

One round:

1. registers the terminals with the real CLIs of the README's tour (``posbatch host
   add-terminal``, ``posbatch terminal init``);
2. serves, trades for ``trading_s`` while a seeded schedule kills the host (or one of its
   workers) or a terminal and starts it again;
3. stops the killing, settles every terminal with ``posbatch terminal settle``;
4. checks from the outside, reading only the journals and the host's store
   (:func:`check`): every approval a journal holds is in the host's store exactly once
   and in a closed batch; the host counts nothing no journal knows of; each closed batch's
   totals are the same on both sides; nothing is left outstanding; ``posbatch doctor``
   on each terminal says healthy. After a put-back the journal lacks what the host
   approved since its copy: the host's records stand, and each such row must be named by
   an exception record (``host-only`` for its STAN, or ``settled-again-differs`` /
   ``settled-after-advance`` for its batch); the batch's totals then differ by exactly
   those rows.

The schedule of kills is seeded (``random.Random(seed)``) and printed; the instants they
land on are the operating system's, so a failing seed is a lead, not a replay.

Run rounds by hand: ``.venv/bin/python tests/host/killprobe.py --seed 1 --rounds 5
[--workers 2] [--db postgresql+psycopg://postgres@127.0.0.1:5432/test]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from posbatch.host.cli import DB_FILE_NAME, kek, pan_key
from posbatch.host.read_models import TransactionInfo
from posbatch.host.store import HostStore
from posbatch.storage import DATABASE_URL_ENV
from posbatch.terminal import Journal
from posbatch.terminal._files import journal_url

SRC = Path(__file__).resolve().parents[2] / "src"
DRIVER = Path(__file__).resolve().parent / "killprobe_terminal.py"
MERCHANT_ID = "898110054110001"
MASTER_KEY_HEX = "0123456789ABCDEFFEDCBA9876543210"
START_TIMEOUT_S = 90.0  # bounds for a failure only: a loaded 2-core machine is slow to start
CLI_TIMEOUT_S = 120.0
KILL_GAP_S = (0.2, 1.2)  # between two kills
HOST_DOWN_S = (0.0, 0.6)  # a killed host stays down this long before it is started again
SETTLE_ATTEMPTS_MAX = 3
ANSWER_DELAY_MS = 150  # the fault script's delay after a commit, before the answer
ANSWER_DELAY_SHARE = 0.3
LATE_DELAY_MS = 2500  # past the terminals' answer timeout (killprobe_terminal.py: 1.5 s)
LATE_SHARE = 0.02
CLOSE_SHARE = 0.02  # committed, then the connection closed instead of an answer
COUNTED = frozenset({"approved", "voided"})  # a row that counts in its batch (both sides)
CASHIER_SALE_SHARE = 0.6
CASHIER_CARD = "6222021234567890128"
CASHIER_KILL_AFTER_S = (0.3, 3.0)  # Python's start-up alone takes about 1 s here
OUTSTANDING = frozenset({"pending", "reversal_pending", "resend_pending"})
PUT_BACK_SHARE = 0.25  # of the schedule's steps: the operator puts back an older journal copy
PUT_BACK_TRADING_S = (0.2, 1.5)  # the till trades on between the copy and its put-back
UPLOAD_WAIT_S = 20.0  # the kill after a put-back waits for its upload this long at most
UPLOAD_POLL_S = 0.005
AFTER_UPLOAD_SEEN_S = (0.0, 0.08)  # and lands this much after the upload was seen
BACKUP_PASSPHRASE = "kill probe backup passphrase"
UPLOAD_STEPS = ("uploading", "ending")  # a journal batch's settlement steps of an upload
# The host's exception records that excuse, on a terminal an older journal copy was put back
# into, a host row that journal lacks: by STAN, or for the whole batch; and a row it says
# reversed that the host counts (its reversal came after the batch had closed).
EXCUSED_BY_STAN = frozenset({"host-only"})
EXCUSED_BY_BATCH = frozenset({"settled-again-differs", "settled-after-advance"})
EXCUSED_REVERSED = frozenset({"late-reversal"})


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    seed: int
    terminals: int = 3
    workers: int = 1
    database_url: str | None = None  # None: SQLite in the host's data directory
    trading_s: float = 20.0
    host_log_level: str = "warning"  # "info": one line per request in host.log
    cashier_alongside: bool = False  # the cashier's CLI runs while the engine's process trades
    put_back_share: float = PUT_BACK_SHARE  # of the schedule's steps, an older journal put back


@dataclass
class ProbeResult:
    seed: int
    kills: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    approvals: int = 0
    batches_closed: int = 0
    coverage: Counter[str] = field(default_factory=Counter)  # what the kills left to recover
    timeline: list[str] = field(default_factory=list)  # each kill, with the wall-clock time
    put_backs: int = 0  # older journal copies put back by the operator
    put_back_into: set[str] = field(default_factory=set)  # the data directories they went to
    uploads: int = 0  # journal batches closed by batch upload
    uploads_seen: int = 0  # put-backs whose upload the probe saw begin before its kill
    mid_upload: Counter[str] = field(default_factory=Counter)  # kills that met an upload

    def happened(self, what: str, *, mid_upload: bool = False) -> None:
        self.kills[what] += 1
        if mid_upload:
            self.mid_upload[what.split(" terminal-", maxsplit=1)[0]] += 1
        upload = " (mid-upload)" if mid_upload else ""
        self.timeline.append(f"{datetime.now(UTC):%H:%M:%S.%f} {what}{upload}")

    def summary(self) -> str:
        kinds = Counter(what.split(" terminal-")[0] for what in self.kills.elements())
        kills = ", ".join(f"{what} {n}" for what, n in sorted(kinds.items()))
        verdict = "OK" if not self.violations else f"{len(self.violations)} VIOLATIONS"
        seen = ", ".join(f"{what} {n}" for what, n in sorted(self.coverage.items()))
        mid = ", ".join(f"{what} {n}" for what, n in sorted(self.mid_upload.items()))
        return (
            f"seed {self.seed}: {verdict}; {self.approvals} approvals in "
            f"{self.batches_closed} closed batches; kills: {kills or 'none'}; "
            f"put-backs {self.put_backs} (upload seen {self.uploads_seen}), settlements "
            f"uploaded {self.uploads}, kills "
            f"mid-upload {sum(self.mid_upload.values())} ({mid or 'none'}); journals: {seen}"
        )


def _env(database_url: str | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop(DATABASE_URL_ENV, None)
    if database_url is not None:
        env[DATABASE_URL_ENV] = database_url
    return env


def _posbatch(args: Sequence[str], env: dict[str, str], *, stdin: str | None = None) -> str:
    """Run one `posbatch` command to its end; its output, or RuntimeError with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "posbatch", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"posbatch {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    with suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(word) for word in text.split()]
    return []


class HostProcess:
    """`posbatch host serve` (with its workers), started and SIGKILLed at will."""

    def __init__(self, work: Path, port: int, config: ProbeConfig) -> None:
        self.data_dir = work / "host"
        self.port = port
        self.config = config
        self.faults = work / "faults.json"
        self.log = work / "host.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, seed: int, *, quiet: bool = False) -> None:
        """Serve (``quiet``: without the fault script, as the simulator's closing settlement)."""
        rules = (
            []
            if quiet
            else [
                {"action": "delay", "delay_ms": LATE_DELAY_MS, "probability": LATE_SHARE},
                {"action": "close", "probability": CLOSE_SHARE},
                {"action": "delay", "delay_ms": ANSWER_DELAY_MS, "probability": ANSWER_DELAY_SHARE},
            ]
        )
        self.faults.write_text(json.dumps({"seed": seed, "rules": rules}))
        args = [
            sys.executable, "-m", "posbatch", "host", "serve",
            "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir),
            "--log-level", self.config.host_log_level, "--faults", str(self.faults),
            "--workers", str(self.config.workers),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                args, env=_env(self.config.database_url), stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._all_listening():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"host did not start: see {self.log}")
            time.sleep(0.05)

    def _all_listening(self) -> bool:
        """Every process of this start serves: a connection alone could be taken by a worker
        of a killed supervisor still draining (its kernel SIGTERM), about to stop."""
        assert self.process is not None
        pid = self.process.pid
        serving = set(_children(pid)) if self.config.workers > 1 else {pid}
        if len(serving) < self.config.workers:
            return False
        listening = set()
        for line in self.log.read_text(errors="replace").splitlines():
            with suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "listening":
                    listening.add(event.get("pid"))
        return serving <= listening

    def kill(self) -> None:
        """SIGKILL the host and every worker at once (a power cut, not a stop)."""
        if self.process is None:
            return
        pid = self.process.pid
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)  # it restarts no worker while they are killed
        for child in [*_children(pid), pid]:
            with suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def kill_supervisor(self) -> None:
        """SIGKILL the supervisor alone: its workers get SIGTERM from the kernel and drain
        while a new supervisor starts its own on the same port."""
        _sigkill(self.process)
        self.process = None

    def kill_worker(self, draw: random.Random) -> bool:
        """SIGKILL one worker; the supervisor starts another. False when none was found."""
        workers = _children(self.process.pid) if self.process is not None else []
        if not workers:
            return False
        with suppress(ProcessLookupError):
            os.kill(draw.choice(workers), signal.SIGKILL)
        return True

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None


def _sigkill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` (if any) and reap it."""
    if process is None:
        return
    with suppress(ProcessLookupError):
        process.send_signal(signal.SIGKILL)
    process.wait()


class TerminalProcess:
    """One `killprobe_terminal.py` trading in its own data directory."""

    def __init__(self, data_dir: Path, seed: int) -> None:
        self.data_dir = data_dir
        self.seed = seed
        self.incarnation = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.incarnation += 1
        with (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(DRIVER), str(self.data_dir), str(self.seed),
                 str(self.incarnation)],
                env=_env(None), stdout=log, stderr=log,
            )  # fmt: skip

    def kill(self) -> None:
        _sigkill(self.process)
        self.process = None

    def uploading(self) -> bool:
        """Whether the journal, as it is on disk now, holds a batch mid-upload (read-only: the
        till's process may be writing it)."""
        path = journal_url(self.data_dir).removeprefix("sqlite:///")
        try:
            with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
                steps = ", ".join("?" * len(UPLOAD_STEPS))
                found = db.execute(
                    f"SELECT count(*) FROM batches WHERE step IN ({steps})", UPLOAD_STEPS
                ).fetchone()
        except sqlite3.Error:
            return False
        return bool(found and found[0])

    def backup(self, destination: Path) -> None:
        """`posbatch terminal backup` while the till trades (an online copy)."""
        _posbatch(
            ["terminal", "backup", str(destination), "--data-dir", str(self.data_dir),
             "--passphrase-stdin"],
            _env(None), stdin=f"{BACKUP_PASSPHRASE}\n",
        )  # fmt: skip

    def restore(self, source: Path) -> None:
        """The till stopped, `posbatch terminal restore` of an older copy put in place."""
        self.kill()
        _posbatch(
            ["terminal", "restore", str(source), "--data-dir", str(self.data_dir),
             "--passphrase-stdin"],
            _env(None), stdin=f"{BACKUP_PASSPHRASE}\n",
        )  # fmt: skip

    def cashier(self, draw: random.Random, *, alongside: bool = False) -> str:
        """In place of the engine's process, the cashier's own `posbatch terminal sale` or
        `settle`, SIGKILLed after a random wait (from its start-up to past its answer).
        ``alongside``: while the engine's process trades on (two writers of one journal)."""
        if not alongside:
            self.kill()
        if draw.random() < CASHIER_SALE_SHARE:
            amount = f"{draw.randint(1, 50_000) / 100:.2f}"
            args, what = ["terminal", "sale", amount], "cli sale"
        else:
            args, what = ["terminal", "settle"], "cli settle"
        process = subprocess.Popen(
            [sys.executable, "-m", "posbatch", *args, "--data-dir", str(self.data_dir)],
            env=_env(None),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert process.stdin is not None
        process.stdin.write(f"{CASHIER_CARD}\n".encode())
        process.stdin.close()
        try:
            process.wait(draw.uniform(*CASHIER_KILL_AFTER_S))
            what += " (ended)"
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            what += " (killed)"
        if not alongside:
            self.start()
        return what + (" alongside" if alongside else "")


def _setup(work: Path, config: ProbeConfig, port: int) -> list[Path]:
    """Register the terminals on the host and initialise their journals, by the CLIs."""
    tmk = work / "tmk.hex"
    tmk.write_text(MASTER_KEY_HEX + "\n")
    tmk.chmod(0o600)
    env = _env(config.database_url)
    host_dir = work / "host"
    terminal_dirs = []
    for index in range(config.terminals):
        terminal_id = f"3000000{index}"
        _posbatch(
            ["host", "add-terminal", "--data-dir", str(host_dir), "--merchant-id", MERCHANT_ID,
             "--terminal-id", terminal_id, "--master-key-file", str(tmk)],
            env,
        )  # fmt: skip
        data_dir = work / f"terminal-{terminal_id}"
        _posbatch(
            ["terminal", "init", "--data-dir", str(data_dir), "--merchant-id", MERCHANT_ID,
             "--terminal-id", terminal_id, "--master-key-file", str(tmk),
             "--host", f"127.0.0.1:{port}"],
            _env(None),
        )  # fmt: skip
        terminal_dirs.append(data_dir)
    return terminal_dirs


def _put_back(
    host: HostProcess,
    terminal: TerminalProcess,
    draw: random.Random,
    result: ProbeResult,
    copies: Path,
) -> None:
    """The operator copies a trading till's journal, lets it trade on, puts the copy back
    and starts the till (or the cashier's `settle` in its place): its first sign-on settles
    out of balance and uploads. Once the journal shows the upload, a random instant later,
    a kill lands — the till's process, the cashier's `settle` or the host — counted
    mid-upload when, right after it, the journal holds a batch mid-upload."""
    copy = copies / f"{terminal.data_dir.name}-{result.put_backs + 1}.db"
    try:
        terminal.backup(copy)
        time.sleep(draw.uniform(*PUT_BACK_TRADING_S))
        terminal.restore(copy)
    except RuntimeError as exc:  # a refusal is one line; the round goes on
        result.notes.append(f"{terminal.data_dir.name}: put-back refused: {exc}")
        if terminal.process is None:
            terminal.start()
        return
    result.put_backs += 1
    result.put_back_into.add(terminal.data_dir.name)
    result.timeline.append(f"{datetime.now(UTC):%H:%M:%S.%f} put back {terminal.data_dir.name}")
    roll = draw.random()
    if roll < 0.3:  # the cashier settles at once, in place of the till's process
        cashier = subprocess.Popen(
            [sys.executable, "-m", "posbatch", "terminal", "settle",
             "--data-dir", str(terminal.data_dir)],
            env=_env(None), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        result.uploads_seen += _await_upload(terminal, draw, cashier)
        ended = cashier.poll() is not None
        _sigkill(cashier)
        mid_upload = terminal.uploading()
        terminal.start()
        what = f"cli settle ({'ended' if ended else 'killed'})"
        result.happened(f"{what} {terminal.data_dir.name}", mid_upload=mid_upload)
        return
    terminal.start()
    result.uploads_seen += _await_upload(terminal, draw, terminal.process)
    if roll < 0.65:
        terminal.kill()
        mid_upload = terminal.uploading()
        terminal.start()
        result.happened(f"terminal {terminal.data_dir.name}", mid_upload=mid_upload)
    else:
        host.kill()
        mid_upload = terminal.uploading()
        time.sleep(draw.uniform(*HOST_DOWN_S))
        host.start(draw.randrange(1 << 30))
        result.happened("host", mid_upload=mid_upload)


def _await_upload(
    terminal: TerminalProcess, draw: random.Random, process: subprocess.Popen[bytes] | None
) -> bool:
    """Until the journal shows a batch mid-upload (or ``process`` ended, or a bound passed),
    then a random instant more: where the kill that follows lands. Whether it was seen."""
    deadline = time.monotonic() + UPLOAD_WAIT_S
    seen = False
    while time.monotonic() < deadline and process is not None and process.poll() is None:
        if seen := terminal.uploading():
            break
        time.sleep(UPLOAD_POLL_S)
    time.sleep(draw.uniform(*AFTER_UPLOAD_SEEN_S))
    return seen


def _chaos(
    host: HostProcess,
    terminals: list[TerminalProcess],
    config: ProbeConfig,
    draw: random.Random,
    result: ProbeResult,
) -> None:
    """Trade for ``config.trading_s`` while killing, by the seeded schedule."""
    end = time.monotonic() + config.trading_s
    copies = terminals[0].data_dir.parent / "copies"
    copies.mkdir(exist_ok=True)

    def any_uploading() -> bool:
        return any(terminal.uploading() for terminal in terminals)

    while time.monotonic() < end:
        time.sleep(draw.uniform(*KILL_GAP_S))
        if config.put_back_share and draw.random() < config.put_back_share:
            _put_back(host, draw.choice(terminals), draw, result, copies)
            continue
        roll = draw.random()
        if roll < 0.35:
            terminal = draw.choice(terminals)
            terminal.kill()
            mid_upload = terminal.uploading()
            terminal.start()
            result.happened(f"terminal {terminal.data_dir.name}", mid_upload=mid_upload)
        elif roll < 0.5:
            terminal = draw.choice(terminals)
            what = terminal.cashier(draw, alongside=config.cashier_alongside)
            result.happened(f"{what} {terminal.data_dir.name}", mid_upload=terminal.uploading())
        elif config.workers > 1 and roll < 0.65:
            if host.kill_worker(draw):
                result.happened("worker", mid_upload=any_uploading())
        elif config.workers > 1 and roll < 0.75:
            host.kill_supervisor()
            mid_upload = any_uploading()
            host.start(draw.randrange(1 << 30))
            result.happened("supervisor", mid_upload=mid_upload)
        else:
            host.kill()
            mid_upload = any_uploading()
            time.sleep(draw.uniform(*HOST_DOWN_S))
            host.start(draw.randrange(1 << 30))
            result.happened("host", mid_upload=mid_upload)


def _settle_all(terminal_dirs: list[Path], result: ProbeResult) -> None:
    """`posbatch terminal settle` on every terminal, until it says settled."""
    for data_dir in terminal_dirs:
        for attempt in range(1, SETTLE_ATTEMPTS_MAX + 1):
            try:
                _posbatch(["terminal", "settle", "--data-dir", str(data_dir)], _env(None))
                break
            except RuntimeError as exc:
                if attempt == SETTLE_ATTEMPTS_MAX:
                    result.violations.append(f"{data_dir.name}: final settle failed: {exc}")
                else:
                    result.notes.append(f"{data_dir.name}: settle attempt {attempt}: {exc}")


def _doctor_all(terminal_dirs: list[Path], result: ProbeResult) -> None:
    for data_dir in terminal_dirs:
        done = subprocess.run(
            [sys.executable, "-m", "posbatch", "doctor", "--data-dir", str(data_dir),
             "--echo-count", "1", "--json"],
            env=_env(None), capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            result.violations.append(
                f"{data_dir.name}: doctor exit {done.returncode}: {done.stdout[-2000:]}"
                f"{done.stderr[-500:]}"
            )


Tally = tuple[int, int, int, int]  # debit amount, debit count, credit amount, credit count


def _tally(rows: Sequence[tuple[str, int]]) -> Tally:
    debits = [amount for kind, amount in rows if kind == "sale"]
    credits = [amount for kind, amount in rows if kind != "sale"]
    return sum(debits), len(debits), sum(credits), len(credits)


def _excused(key: tuple[int, int], stans: set[tuple[int, int]], batches: set[int]) -> bool:
    return key in stans or key[0] in batches


def check(store: HostStore, terminal_dirs: list[Path], result: ProbeResult) -> None:
    """The promise, from the outside: the journals against the host's store."""
    for data_dir in terminal_dirs:
        journal = Journal.open(journal_url(data_dir))
        terminal_id = journal.state().terminal_id
        batches = journal.batches()
        rows = [row for row in journal.transactions() if not row.training]
        result.coverage.update(f"{row.kind} {row.state}" for row in rows)
        result.coverage.update(f"event {event.type}" for event in journal.events())
        host_rows = store.transactions(terminal_id, limit=1_000_000)
        exceptions = store.exceptions(terminal_id, limit=100_000)
        result.notes.extend(
            f"{data_dir.name}: host exception {e.kind} batch {e.batch_no} stan {e.stan}"
            for e in exceptions
        )
        # What an older journal put back may lack: the host's records stand, named by these.
        put_back = data_dir.name in result.put_back_into
        excused_stans = {
            (e.batch_no, e.stan) for e in exceptions if put_back and e.kind in EXCUSED_BY_STAN
        }
        excused_batches = {
            e.batch_no for e in exceptions if put_back and e.kind in EXCUSED_BY_BATCH
        }
        late_reversals = {
            (e.batch_no, e.stan) for e in exceptions if put_back and e.kind in EXCUSED_REVERSED
        }

        host_batches = {
            batch.batch_no: batch for batch in store.batches(terminal_id, limit=100_000)
        }
        # A batch settled balanced after the copy was made, whose record went with the newer
        # journal: the host's and that journal's totals agreed; the copy never knew it.
        forgotten = (
            {
                batch_no for batch_no, batch in host_batches.items()
                if batch.close_reason == "balanced"
            } - {batch.batch_no for batch in batches}
            if put_back
            else set()
        )  # fmt: skip
        excused_batches |= forgotten

        by_key: dict[tuple[int, int], list[TransactionInfo]] = {}
        for host_row in host_rows:
            by_key.setdefault((host_row.batch_no, host_row.stan), []).append(host_row)
        mine = {(row.batch_no, row.stan): row for row in rows}
        name = data_dir.name
        for row in rows:
            key = (row.batch_no, row.stan)
            found = by_key.get(key, [])
            if row.state in OUTSTANDING:
                result.violations.append(f"{name}: {row.kind} {key} still {row.state}")
            elif row.state in COUNTED:
                result.approvals += 1
                if len(found) != 1:
                    result.violations.append(
                        f"{name}: journal {row.state} {row.kind} {key}: {len(found)} host rows"
                    )
                    continue
                host_row = found[0]
                # A sale the journal put back holds approved may since have been voided: its
                # void is a host row the journal lacks, named by an exception.
                voided_since = (row.state, host_row.status) == ("approved", "voided") and any(
                    _excused(k, excused_stans, excused_batches) for k in by_key
                    if k[0] == row.batch_no and k not in mine
                )  # fmt: skip
                if (host_row.kind.value, host_row.amount_fen, host_row.status) != (
                    row.kind, row.amount_fen, row.state,
                ) and not voided_since:  # fmt: skip
                    result.violations.append(
                        f"{name}: {key} journal {row.kind} {row.amount_fen} {row.state}, host "
                        f"{host_row.kind.value} {host_row.amount_fen} {host_row.status}"
                    )
                batch = host_batches.get(row.batch_no)
                if batch is None or batch.closed_at is None:
                    result.violations.append(f"{name}: {key} approved in an unclosed host batch")
            elif any(r.status in COUNTED for r in found) and not (
                row.state == "reversed" and key in late_reversals
            ):
                result.violations.append(
                    f"{name}: journal {row.state} {row.kind} {key}, host counts it "
                    f"({[r.status for r in found]})"
                )
        unknown: set[tuple[int, int]] = set()  # counted by the host alone, and excused
        for key, found in by_key.items():
            counted = [r for r in found if r.status in COUNTED]
            mine_row = mine.get(key)
            if counted and (mine_row is None or mine_row.state not in COUNTED):
                if (mine_row is None and _excused(key, excused_stans, excused_batches)) or (
                    mine_row is not None and mine_row.state == "reversed" and key in late_reversals
                ):
                    unknown.add(key)
                    continue
                result.violations.append(
                    f"{name}: host counts {key} ({[r.status for r in counted]}) but the "
                    f"journal {'lacks it' if mine_row is None else 'says ' + mine_row.state}"
                )
        for batch_row in batches:
            journal_tally = _tally(
                [(r.kind, r.amount_fen) for r in rows
                 if r.batch_no == batch_row.batch_no and r.state in COUNTED]
            )  # fmt: skip
            host_tally = _tally(
                [(r.kind.value, r.amount_fen) for r in host_rows
                 if r.batch_no == batch_row.batch_no and r.status in COUNTED
                 and (r.batch_no, r.stan) not in unknown]
            )  # fmt: skip
            if batch_row.close_reason == "uploaded":
                result.uploads += 1
            if batch_row.closed_at is None:
                if journal_tally != (0, 0, 0, 0) or host_tally != (0, 0, 0, 0):
                    result.violations.append(
                        f"{name}: batch {batch_row.batch_no} still open after the final settle: "
                        f"journal {journal_tally}, host {host_tally}"
                    )
                continue
            result.batches_closed += 1
            if journal_tally != host_tally:
                result.violations.append(
                    f"{name}: closed batch {batch_row.batch_no}: journal totals {journal_tally}, "
                    f"host {host_tally} ({batch_row.close_reason})"
                )
            if not batch_row.balanced:
                result.notes.append(
                    f"{name}: batch {batch_row.batch_no} closed {batch_row.close_reason}, "
                    f"balanced={batch_row.balanced}"
                )
        unclosed = {
            key[0] for key in unknown
            if (b := host_batches.get(key[0])) is None or b.closed_at is None
        }  # fmt: skip
        result.violations.extend(
            f"{name}: host batch {batch_no} holds rows the journal lacks and is not closed"
            for batch_no in sorted(unclosed)
        )


@contextmanager
def _stopping(host: HostProcess, terminals: list[TerminalProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for terminal in terminals:
            terminal.kill()
        host.stop()


def run_round(config: ProbeConfig, work: Path) -> ProbeResult:
    """One seeded round in ``work`` (an empty directory); the result says what it found."""
    draw = random.Random(config.seed)
    result = ProbeResult(config.seed)
    port = _free_port()
    terminal_dirs = _setup(work, config, port)
    host = HostProcess(work, port, config)
    terminals = [TerminalProcess(d, config.seed) for d in terminal_dirs]
    with _stopping(host, terminals):
        host.start(draw.randrange(1 << 30))
        for terminal in terminals:
            terminal.start()
        try:
            _chaos(host, terminals, config, draw, result)
        finally:
            (work / "chaos.log").write_text("".join(f"{line}\n" for line in result.timeline))
        for terminal in terminals:  # the last kill: the tills die wherever they are
            terminal.kill()
        host.kill()  # the last kill of the host; the closing settlement meets no faults
        host.start(draw.randrange(1 << 30), quiet=True)
        _settle_all(terminal_dirs, result)
        _doctor_all(terminal_dirs, result)
    url = config.database_url or f"sqlite:///{work / 'host' / DB_FILE_NAME}"
    store = HostStore.open(url, pan_key=pan_key(work / "host"), kek=kek(work / "host"))
    try:
        check(store, terminal_dirs, result)
    finally:
        store.close()
    return result


@contextmanager
def fresh_schema(base_url: str | None) -> Iterator[str | None]:
    """A URL on a brand-new PostgreSQL schema (dropped afterwards), or None for SQLite."""
    if base_url is None:
        yield None
        return
    schema = f"killprobe_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 20))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--terminals", type=int, default=3)
    parser.add_argument("--trading-s", type=float, default=20.0)
    parser.add_argument("--db", default=None, help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--alongside", action="store_true", help="cashier's CLI alongside")
    parser.add_argument(
        "--put-back-share",
        type=float,
        default=PUT_BACK_SHARE,
        help="share of the schedule's steps that put back an older journal copy (0: none)",
    )
    parser.add_argument("--host-log-level", default="warning")
    parser.add_argument("--keep", action="store_true", help="keep each round's directory")
    args = parser.parse_args()
    failed = 0
    for round_no in range(args.rounds):
        work = Path(tempfile.mkdtemp(prefix=f"killprobe-{args.seed + round_no}-"))
        started = time.monotonic()
        with fresh_schema(args.db) as database_url:
            config = ProbeConfig(
                seed=args.seed + round_no,
                terminals=args.terminals,
                workers=args.workers,
                database_url=database_url,
                trading_s=args.trading_s,
                cashier_alongside=args.alongside,
                put_back_share=args.put_back_share,
                host_log_level=args.host_log_level,
            )
            result = run_round(config, work)
        print(f"{result.summary()} ({time.monotonic() - started:.0f} s, {work})", flush=True)
        for line in [*result.violations, *result.notes]:
            print(f"  {line}", flush=True)
        failed += bool(result.violations)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
