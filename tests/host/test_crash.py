"""Crash test: SIGKILL the host process under load, restart it, and check what it promised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from host_helpers import MASTER_KEY, MERCHANT_ID, START, Terminal, read_frame

from posbatch.batch.model import Kind
from posbatch.host.cli import DB_FILE_NAME, kek, pan_key
from posbatch.host.store import HostStore
from posbatch.storage import DATABASE_URL_ENV
from posbatch.wire import TransactionResponse

TERMINALS = 6
APPROVALS_BEFORE_KILL = 300
START_TIMEOUT_S = 90.0
SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def host_process(
    data_dir: Path, port: int, db_url: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    if db_url is not None:
        env[DATABASE_URL_ENV] = db_url
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "posbatch",
            "host",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("host did not start") from None
                time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@dataclass
class Outcome:
    approved: list[tuple[str, int, int]] = field(default_factory=list)  # terminal, batch, stan
    unanswered: list[tuple[str, int, int, int]] = field(default_factory=list)  # + amount


def _load(port: int, terminal_id: str, outcome: Outcome, lock: threading.Lock) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def send(frame: bytes) -> list[bytes]:
            sock.sendall(frame)
            return [read_frame(sock)]

        term = Terminal(send, terminal_id=terminal_id)
        term.sign_on()
        while True:
            amount = 100 + term.stan
            try:
                answer = term.sale(amount)
            except OSError:
                with lock:
                    outcome.unanswered.append((terminal_id, term.batch_no, term.stan, amount))
                return
            assert isinstance(answer, TransactionResponse)
            if answer.response_code == "00":
                with lock:
                    outcome.approved.append((terminal_id, term.batch_no, term.stan))


@pytest.fixture
def crash_db(db_url: str) -> str | None:
    """None for SQLite (the host's own file in its data dir), else the PostgreSQL URL."""
    return None if db_url.startswith("sqlite") else db_url


@pytest.mark.slow
def test_sigkill_under_load_loses_no_approval(tmp_path: Path, crash_db: str | None) -> None:
    """Every approval is in storage after SIGKILL; every unanswered sale is absent or reversible."""
    url = crash_db or f"sqlite:///{tmp_path / DB_FILE_NAME}"
    store = HostStore.open(url, pan_key=pan_key(tmp_path), kek=kek(tmp_path))
    terminal_ids = [f"2000000{i}" for i in range(TERMINALS)]
    for terminal_id in terminal_ids:
        store.add_terminal(MERCHANT_ID, terminal_id, MASTER_KEY, now=START)
    outcome, lock = Outcome(), threading.Lock()
    port = _free_port()
    with host_process(tmp_path, port, crash_db) as process:
        threads = [
            threading.Thread(target=_load, args=(port, terminal_id, outcome, lock), daemon=True)
            for terminal_id in terminal_ids
        ]
        for thread in threads:
            thread.start()
        while len(outcome.approved) < APPROVALS_BEFORE_KILL:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for thread in threads:
            thread.join(10)
    stored = {
        (row.terminal_id, row.batch_no, row.stan): row.status
        for terminal_id in terminal_ids
        for row in store.transactions(terminal_id, limit=100_000)
    }
    missing = [key for key in outcome.approved if stored.get(key) != "approved"]
    assert missing == []
    assert len(outcome.unanswered) == TERMINALS
    port = _free_port()
    with host_process(tmp_path, port, crash_db):
        for terminal_id, batch_no, stan, amount in outcome.unanswered:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

                def send(frame: bytes, sock: socket.socket = sock) -> list[bytes]:
                    sock.sendall(frame)
                    return [read_frame(sock)]

                term = Terminal(send, terminal_id=terminal_id, stan=stan + 1)
                term.sign_on()
                answer = term.reverse(stan, amount, kind=Kind.SALE, batch_no=batch_no)
                assert answer.response_code == "00"  # type: ignore[union-attr]
    after = {
        (row.terminal_id, row.batch_no, row.stan): row.status
        for terminal_id in terminal_ids
        for row in store.transactions(terminal_id, limit=100_000)
    }
    left = [after.get(key[:3]) for key in outcome.unanswered]
    assert set(left) <= {None, "reversed"}
    store.close()
