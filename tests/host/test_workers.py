"""Several host processes on one port and one store (``posbatch host serve --workers N``).

Real processes over real loopback sockets: the supervisor, its workers, and
terminals whose consecutive connections may land on either worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from host_helpers import MASTER_KEY, MERCHANT_ID, START, TERMINAL_ID, TEST_KEK
from workers_helpers import (
    ANSWER_TIMEOUT_S,
    SRC,
    START_TIMEOUT_S,
    new_connection_terminal,
    supervised,
)

from posbatch.batch import host_rules
from posbatch.batch.model import CardType, Kind, Reconciliation
from posbatch.batch.totals import compute_totals
from posbatch.errors import StorageError
from posbatch.host.cli import DB_FILE_NAME, PAN_KEY_FILE_NAME, kek, pan_key
from posbatch.host.store import HostStore
from posbatch.host.supervisor import RESTART_BACKOFF_MS, RESTARTS_MAX, restart_delay_ms
from posbatch.storage import DATABASE_URL_ENV
from posbatch.wire import SettlementResponse, TransactionResponse

D = CardType.DOMESTIC
SPREAD_CONNECTIONS = 40  # enough that the kernel gives both workers some (2**-39 that not)


@pytest.fixture
def data_dir(tmp_path: Path, db_url: str) -> Iterator[Path]:
    """A data dir whose store (a SQLite file, or db_url's PostgreSQL schema) has 3 terminals."""
    directory = tmp_path / "data"
    url = db_url if db_url.startswith("postgresql") else f"sqlite:///{directory / DB_FILE_NAME}"
    store = HostStore.open(url, pan_key=pan_key(directory), kek=kek(directory))
    for terminal_id in (TERMINAL_ID, "10000002", "10000003"):
        store.add_terminal(MERCHANT_ID, terminal_id, MASTER_KEY, now=START)
    store.close()
    yield directory


def _echo_codes(port: int, terminal_id: str, count: int) -> list[str]:
    """``count`` sign-ons of ``terminal_id``, each on a new connection: their codes."""
    terminal = new_connection_terminal(port, terminal_id=terminal_id)
    return [terminal.sign_on().response_code for _ in range(count)]


def test_a_terminal_whose_connections_land_on_both_workers_settles_balanced(
    data_dir: Path, db_url: str
) -> None:
    """Sign-on, sales, void, refund, reversal and a balanced settlement, a new connection each."""
    with supervised(data_dir, db_url) as host:
        port = host.wait_listening(2)
        term = new_connection_terminal(port)
        codes = [term.sign_on().response_code]
        sale = term.sale(1250)
        other = term.sale(800)
        dropped = term.sale(300)
        assert isinstance(sale, TransactionResponse) and isinstance(other, TransactionResponse)
        assert isinstance(dropped, TransactionResponse)
        codes += [sale.response_code, other.response_code, dropped.response_code]
        codes.append(term.reverse(dropped.stan, 300).response_code)  # type: ignore[union-attr]
        codes.append(term.void(other.stan, 800).response_code)  # type: ignore[union-attr]
        codes.append(term.refund(1, sale.stan, 250).response_code)  # type: ignore[union-attr]
        codes += _echo_codes(port, "10000002", SPREAD_CONNECTIONS)
        totals = compute_totals(
            [(Kind.SALE, 1250, D), (Kind.SALE, 800, D), (Kind.VOID, 800, D), (Kind.REFUND, 250, D)]
        )
        answer = term.settle(totals)
        exit_code = host.stop()
    served = {event["pid"]: event["requests"] for event in host.named("stopped")}
    assert isinstance(answer, SettlementResponse) and answer.totals is not None
    assert codes == ["00"] * (7 + SPREAD_CONNECTIONS)
    assert answer.totals.domestic.reconciliation == Reconciliation.BALANCED
    assert (exit_code, len(served), min(served.values()) > 0) == (0, 2, True)


@pytest.mark.slow  # real worker processes, restarts and backoff
def test_a_duplicate_on_the_other_worker_gets_the_original_answer(
    data_dir: Path, db_url: str
) -> None:
    """The same sale sent again on new connections is answered as the first time, once."""
    with supervised(data_dir, db_url) as host:
        port = host.wait_listening(2)
        term = new_connection_terminal(port)
        term.sign_on()
        first = term.sale(1250)
        repeated = [term.request(term.sent[-1]) for _ in range(SPREAD_CONNECTIONS // 2)]
        with open_store_of(data_dir, db_url) as store:
            transactions = store.transactions(TERMINAL_ID)
        host.stop()
    assert isinstance(first, TransactionResponse) and first.response_code == "00"
    answers = {(a.response_code, a.rrn, a.auth_code) for a in repeated}  # type: ignore[union-attr]
    assert answers == {("00", first.rrn, first.auth_code)}
    assert [(row.stan, row.amount_fen) for row in transactions] == [(first.stan, 1250)]
    assert len({event["pid"] for event in host.named("stopped") if event["requests"]}) == 2


@pytest.mark.slow  # real worker processes, restarts and backoff
def test_a_killed_worker_is_restarted_and_the_service_keeps_answering(
    data_dir: Path, db_url: str
) -> None:
    """SIGKILL to one worker: the supervisor logs it, starts another; answers keep coming."""
    with supervised(data_dir, db_url) as host:
        port = host.wait_listening(2)
        victim = sorted(host.live_pids())[0]
        os.kill(victim, signal.SIGKILL)
        host.wait_for(lambda events: any(e["event"] == "worker_exited" for e in events))
        during = _echo_codes(port, "10000002", SPREAD_CONNECTIONS // 2)  # the survivor answers
        host.wait_for(lambda events: sum(e["event"] == "listening" for e in events) >= 3)
        after = _echo_codes(port, "10000003", SPREAD_CONNECTIONS)
        exit_code = host.stop()
    (exited,) = host.named("worker_exited")
    served = {event["pid"]: event["requests"] for event in host.named("stopped")}
    assert (exited["pid"], exited["returncode"]) == (victim, -signal.SIGKILL)
    assert during + after == ["00"] * (SPREAD_CONNECTIONS // 2 + SPREAD_CONNECTIONS)
    assert (exit_code, len(served), victim in served, min(served.values()) > 0) == (
        0,
        2,
        False,
        True,
    )


@pytest.mark.slow  # real worker processes and a rotate-kek process
def test_rotate_kek_while_two_workers_serve_is_followed_without_a_restart(
    data_dir: Path, db_url: str
) -> None:
    """``posbatch host rotate-kek`` against a live host (docs/host.md, "Rotation"): each
    worker meets keys sealed under the new KEK, reads it from the KEK file and goes on —
    sales, sign-ons and a settlement answered 00 on connections landing on both workers."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop(DATABASE_URL_ENV, None)
    if db_url.startswith("postgresql"):
        env[DATABASE_URL_ENV] = db_url
    with supervised(data_dir, db_url) as host:
        port = host.wait_listening(2)
        term = new_connection_terminal(port)
        codes = [term.sign_on().response_code, *_echo_codes(port, "10000002", 4)]
        rotation = subprocess.run(
            [sys.executable, "-m", "posbatch", "host", "rotate-kek", "--data-dir", str(data_dir)],
            env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False,
        )  # fmt: skip
        sale = term.sale(1250)
        assert isinstance(sale, TransactionResponse)
        codes += [sale.response_code, *_echo_codes(port, "10000002", SPREAD_CONNECTIONS)]
        answer = term.settle(compute_totals([(Kind.SALE, 1250, D)]))
        exit_code = host.stop()
    followed = {event["pid"] for event in host.named("kek-followed")}
    assert rotation.returncode == 0, rotation.stderr
    assert codes == ["00"] * (6 + SPREAD_CONNECTIONS)
    assert isinstance(answer, SettlementResponse) and answer.response_code == "00"
    assert (exit_code, len(followed)) == (0, 2)
    assert kek(data_dir).kek_id in rotation.stdout  # the file holds what it re-sealed under


@pytest.mark.slow  # real worker processes, restarts and backoff
def test_sigterm_answers_what_was_committed_then_exits_0(data_dir: Path, db_url: str) -> None:
    """A sale committed but not yet answered (delay fault) is answered during the stop."""
    faults = data_dir / "faults.json"
    faults.write_text('{"rules": [{"kind": "sale", "action": "delay", "delay_ms": 3000}]}')
    with supervised(data_dir, db_url, extra=["--faults", str(faults)]) as host:
        port = host.wait_listening(2)
        term = new_connection_terminal(port)
        term.sign_on()
        answers: list[object] = []
        selling = threading.Thread(target=lambda: answers.append(term.sale(1250)))
        selling.start()
        store = open_store_of(data_dir, db_url)
        _wait_until(lambda: bool(store.transactions(TERMINAL_ID)))  # committed, not answered
        host.process.send_signal(signal.SIGTERM)
        selling.join(ANSWER_TIMEOUT_S)
        exit_code = host.process.wait(START_TIMEOUT_S)
        store.close()
    (answer,) = answers
    assert isinstance(answer, TransactionResponse)
    assert (answer.response_code, exit_code) == ("00", 0)
    assert [event["returncode"] for event in host.named("worker_stopped")] == [0, 0]


def test_one_process_without_a_supervisor_stops_gracefully_on_sigterm(
    data_dir: Path, db_url: str
) -> None:
    """--workers 1 is one process (no supervisor); SIGTERM ends it with exit code 0."""
    with supervised(data_dir, db_url, workers=1) as host:
        port = host.wait_listening(1)
        codes = _echo_codes(port, TERMINAL_ID, 3)
        exit_code = host.stop()
    (listening,) = host.named("listening")
    (stopped,) = host.named("stopped")
    assert (codes, exit_code, host.named("supervising")) == (["00"] * 3, 0, [])
    assert (listening["pid"], stopped["pid"], stopped["requests"]) == (
        host.process.pid,
        host.process.pid,
        3,
    )


@pytest.mark.slow  # real worker processes, restarts and backoff
def test_workers_stop_when_the_supervisor_is_killed(data_dir: Path, db_url: str) -> None:
    """SIGKILL to the supervisor: its workers stop gracefully instead of serving on, orphaned."""
    with supervised(data_dir, db_url) as host:
        host.wait_listening(2)
        workers = host.live_pids()
        host.process.kill()
        host.wait_for(lambda events: sum(e["event"] == "stopped" for e in events) == 2)
        host.close()  # the pipe ends when the last worker has exited
    assert {event["pid"] for event in host.named("stopped")} == workers


@pytest.mark.slow  # real worker processes, restarts and backoff
def test_the_supervisor_gives_up_when_a_worker_keeps_dying(tmp_path: Path) -> None:
    """A worker that cannot start (its PAN key file went bad) is retried, then exit 1."""
    data_dir = tmp_path / "data"
    with supervised(data_dir, "sqlite") as host:
        host.wait_listening(2)
        (data_dir / PAN_KEY_FILE_NAME).write_text("not hex")
        os.kill(sorted(host.live_pids())[0], signal.SIGKILL)
        exit_code = host.process.wait(START_TIMEOUT_S * 2)
    exits = host.named("worker_exited")
    assert exit_code == 1
    assert [event["restart_in_ms"] for event in exits][-RESTARTS_MAX:] == [
        *RESTART_BACKOFF_MS[: RESTARTS_MAX - 1],
        None,
    ]
    assert len(host.named("giving_up")) == 1


@pytest.mark.parametrize("read", ["group", "one"])
def test_a_unit_of_work_waiting_for_a_terminal_reads_what_its_holder_committed(
    db_url: str, tmp_path: Path, read: str
) -> None:
    """Another process's store that waits for a terminal's lock sees the batch opened meanwhile.

    (PostgreSQL: one statement that joined and locked read the terminal's new row beside
    its old batch, or none; SQLite: BEGIN IMMEDIATE waits out the busy timeout.)
    """
    url = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'shared.db'}"
    first = HostStore.open(url, pan_key=b"k" * 32, kek=TEST_KEK)
    first.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    second = HostStore.open(url, pan_key=b"k" * 32, kek=TEST_KEK, migrate=False)
    with first.transaction() as tx:
        tx.first_batch(TERMINAL_ID, now=START)
    seen = []

    def read_in_second() -> None:
        with second.transaction() as tx:
            if read == "group":
                seen.append(tx.read_terminals([TERMINAL_ID])[TERMINAL_ID])
            else:
                seen.append(tx.terminal(TERMINAL_ID, for_update=True))

    reader = threading.Thread(target=read_in_second)
    with first.transaction() as tx:
        terminal = tx.terminal(TERMINAL_ID, for_update=True)
        batch = tx.current_batch(terminal)
        # The back office's advance (HostStore.advance_batch), inside this unit of work.
        tx.apply(
            host_rules.advance(
                terminal, batch, tx.batch_tally(batch.batch_id), "advanced", now=START
            )
        )
        reader.start()
        reader.join(1.0)  # most likely waiting for the lock by now; the outcome must not differ
    reader.join(ANSWER_TIMEOUT_S)
    first.close()
    second.close()
    (row,) = seen
    assert row is not None and (row.batch_no, row.batch_state) == (2, "OPEN")


def test_restart_delays_grow_then_give_up() -> None:
    """The n-th death in a row waits RESTART_BACKOFF_MS[n-1]; RESTARTS_MAX deaths give up."""
    delays = [restart_delay_ms(n) for n in range(1, RESTARTS_MAX + 1)]
    assert delays == [*RESTART_BACKOFF_MS, None]


def test_a_worker_store_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    """migrate=False (a worker) checks the migrations instead of running them."""
    with pytest.raises(StorageError, match="migrate it first"):
        HostStore.open(f"sqlite:///{tmp_path / 'empty.db'}", pan_key=b"k" * 32, migrate=False)


def open_store_of(data_dir: Path, db_url: str) -> HostStore:
    url = db_url if db_url.startswith("postgresql") else f"sqlite:///{data_dir / DB_FILE_NAME}"
    return HostStore.open(url, pan_key=pan_key(data_dir), kek=kek(data_dir), migrate=False)


def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (a bound for failure only)."""
    pause = threading.Event()
    for _ in range(int(START_TIMEOUT_S * 20)):
        if condition():
            return
        pause.wait(0.05)
    raise AssertionError("condition never held")


def test_a_terminal_another_session_holds_locked_is_answered_96_and_stops_no_one(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    """PostgreSQL: while a stuck session (psql, a back-office transaction left open) holds a
    terminal's row locked, that terminal's sale is answered 96 with nothing kept once the
    host's lock timeout has passed, and another terminal on the same process is approved
    meanwhile. (The host waited for the lock on its event loop's thread for as long as it
    was held: that terminal and every other connection of the worker got nothing.)"""
    directory = tmp_path / "data"
    store = HostStore.open(postgres_schema_url, pan_key=pan_key(directory), kek=kek(directory))
    for terminal_id in (TERMINAL_ID, "10000002"):
        store.add_terminal(MERCHANT_ID, terminal_id, MASTER_KEY, now=START)
    with supervised(directory, postgres_schema_url, workers=1) as host:
        port = host.wait_listening(1)
        locked, other = (
            new_connection_terminal(port, terminal_id=terminal_id)
            for terminal_id in (TERMINAL_ID, "10000002")
        )
        locked.sign_on()
        other.sign_on()
        holder = store.engine.connect()
        holder.begin()
        holder.execute(
            sa.text("SELECT 1 FROM host_terminals WHERE terminal_id = :id FOR UPDATE"),
            {"id": TERMINAL_ID},
        )
        refused = locked.sale(1250)
        approved = other.sale(1250)
        holder.rollback()
        holder.close()
        kept = [row.terminal_id for row in store.transactions(TERMINAL_ID)]
        host.stop()
    store.close()
    assert (refused.response_code, approved.response_code, kept) == ("96", "00", [])  # type: ignore[union-attr]
