"""The bad invocations of issue #12 §5, each with the one line it must print (exit status 2)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from host_helpers import MASTER_KEY, MERCHANT_ID, START, TERMINAL_ID
from typer.testing import CliRunner, Result

from posbatch.cli import app
from posbatch.host.cli import open_store
from posbatch.host.sealing import KEK_ENV, KEK_FILE_ENV
from posbatch.storage import DATABASE_URL_ENV

runner = CliRunner()
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean working directory (the default data dirs land here) and no store variables."""
    monkeypatch.chdir(tmp_path)
    for name in (DATABASE_URL_ENV, KEK_ENV, KEK_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "afile").write_text("x")
    return tmp_path


@pytest.fixture
def registered(here: Path) -> Path:
    """A host store in ./posbatch-data with one terminal."""
    result = _posbatch("host", "add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id",
                       TERMINAL_ID, "--master-key-file", "-", input=MASTER_KEY.hex())  # fmt: skip
    assert result.exit_code == 0, result.output
    return here / "posbatch-data"


def _posbatch(*argv: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(argv), input=input)


def _refused(result: Result, message: str) -> None:
    """Exit 2, no exception, and ``message`` on the one error line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert (result.exit_code, len(lines)) == (2, 1), result.output
    assert message in lines[0], result.output


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (
            "127.0.0.1:99999",
            "--listen must be HOST:PORT with a port 0..65535, not '127.0.0.1:99999'",
        ),
        ("192.0.2.1:5899", "cannot listen on 192.0.2.1:5899"),
        ("nohost.invalid:5899", "cannot listen on nohost.invalid:5899"),
        ("5800", "--listen must be HOST:PORT"),
    ],
)
def test_serve_on_an_address_it_cannot_listen_on(here: Path, listen: str, message: str) -> None:
    """A port out of range, an address not on this machine, a name that does not resolve."""
    _refused(_posbatch("host", "serve", "--listen", listen, "--data-dir", "h"), message)


def test_serve_on_a_port_in_use(here: Path, busy_port: int) -> None:
    """A single worker on a port another socket listens on: one line, exit 2."""
    result = _posbatch("host", "serve", "--listen", f"127.0.0.1:{busy_port}", "--data-dir", "h")
    _refused(result, f"cannot listen on 127.0.0.1:{busy_port}")
    assert "address already in use" in result.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-level", "bogus"], "--log-level must be one of debug, info, warning"),
        (["--data-dir", "afile"], "afile is not a directory"),
        (["--connections-max", "-1"], "--connections-max"),
        (["--idle-timeout-ms", "0"], "--idle-timeout-ms"),
    ],
)
def test_serve_refuses_bad_settings(here: Path, argv: list[str], message: str) -> None:
    """Bad settings are refused before the host starts."""
    result = _posbatch("host", "serve", "--listen", "192.0.2.1:0", *argv)
    assert (result.exit_code, message in result.output) == (2, True), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql+psycopg://postgres@127.0.0.1:1/test",
            "cannot open the database postgresql+psycopg://postgres@127.0.0.1:1/test: "
            "connection failed",
        ),
        (
            "postgresql+psycopg://postgres:secret@127.0.0.1:1/test",
            "postgresql+psycopg://postgres:***@127.0.0.1:1/test",
        ),
        ("foo://bar", "unsupported database 'foo': use sqlite or postgresql+psycopg"),
        ("not a url", "not a database URL: 'not a url'"),
    ],
)
@pytest.mark.parametrize("command", [["list-terminals"], ["batches", TERMINAL_ID]])
def test_a_database_url_that_does_not_work_is_one_line(
    here: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str, command: list[str]
) -> None:
    """A PostgreSQL that is down, a URL of another database or no URL at all: one line."""
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    result = _posbatch("host", *command)
    _refused(result, message)
    assert "secret" not in result.output


def test_a_database_that_does_not_exist_is_one_line(
    here: Path, monkeypatch: pytest.MonkeyPatch, postgres_schema_url: str
) -> None:
    """A PostgreSQL database that does not exist: the server's reason, one line."""
    server = postgres_schema_url.split("?", 1)[0].rsplit("/", 1)[0]
    monkeypatch.setenv(DATABASE_URL_ENV, f"{server}/posbatch_no_such_database")
    _refused(_posbatch("host", "list-terminals"), 'database "posbatch_no_such_database"')


def test_a_reading_command_never_creates_a_store(here: Path) -> None:
    """list-terminals --data-dir TYPO: refused, and TYPO does not appear."""
    result = _posbatch("host", "list-terminals", "--data-dir", "TYPO")
    _refused(result, f"no host store at {here / 'TYPO' / 'host.db'}")
    assert not (here / "TYPO").exists()


def test_doctor_never_creates_a_host_store(here: Path) -> None:
    """doctor --host-db sqlite:////…/typo.db: refused, no typo.db appears."""
    typo = here / "typo" / "typo.db"
    result = _posbatch("doctor", "--host-db", f"sqlite:///{typo}")
    assert (result.exit_code, "no host store at" in result.output) == (2, True), result.output
    assert not typo.parent.exists()


@pytest.mark.parametrize(
    ("merchant_id", "terminal_id", "message"),
    [
        (" " * 15, TERMINAL_ID, "merchant ID '               ' must be 15 letters or digits"),
        (MERCHANT_ID, "3000 001", "terminal ID '3000 001' must be 8 letters or digits"),
        (MERCHANT_ID, "1000-001", "terminal ID '1000-001' must be 8 letters or digits"),
        ("89811005411000", TERMINAL_ID, "must be 15 letters or digits"),
    ],
)
def test_add_terminal_refuses_malformed_ids(
    here: Path, merchant_id: str, terminal_id: str, message: str
) -> None:
    """Fifteen spaces of merchant id, a terminal id with a space: refused, nothing created."""
    result = _posbatch("host", "add-terminal", "--merchant-id", merchant_id,
                       "--terminal-id", terminal_id)  # fmt: skip
    _refused(result, message)
    assert not (here / "posbatch-data").exists()


def test_add_terminal_refuses_a_master_key_on_the_command_line(here: Path) -> None:
    """--master-key is refused whatever it holds, saying why; nothing is registered."""
    result = _posbatch("host", "add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id",
                       TERMINAL_ID, "--master-key", MASTER_KEY.hex())  # fmt: skip
    _refused(result, "--master-key is refused: a command line is visible to every user")
    assert MASTER_KEY.hex() not in result.output


def test_add_terminal_reads_the_master_key_from_a_file(here: Path) -> None:
    """--master-key-file PATH: the terminal's sign-on answer unwraps with that key."""
    (here / "tmk.hex").write_text(MASTER_KEY.hex().upper() + "\n")
    result = _posbatch("host", "add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id",
                       TERMINAL_ID, "--master-key-file", "tmk.hex")  # fmt: skip
    with open_store(here / "posbatch-data") as store, store.transaction() as tx:
        terminal = tx.terminal(TERMINAL_ID)
    assert result.exit_code == 0 and terminal is not None
    assert terminal.master_key == MASTER_KEY


@pytest.mark.parametrize("command", ["batches", "transactions", "exceptions", "suspend", "doctor"])
def test_an_unknown_terminal_is_refused_not_an_empty_table(registered: Path, command: str) -> None:
    """A terminal id the host does not know: exit 2 with a message, not exit 0 and no rows."""
    result = _posbatch("host", command, "99999999")
    assert result.exit_code == 2, result.output
    assert "99999999" in result.output and "not registered" in result.output


def _many_transactions(data_dir: Path, count: int) -> None:
    """``count`` approved sales of the registered terminal, written in one unit of work."""
    with open_store(data_dir) as store, store.transaction() as tx:
        batch_id = tx.first_batch(TERMINAL_ID, now=START)
        for stan in range(1, count + 1):
            tx.insert_transaction(
                batch_id=batch_id, stan=stan, kind="sale", amount_fen=100 + stan,
                card_type="00", pan_hmac="0" * 64, pan_masked="622202******0128",
                status="approved", response_code="00", rrn=None, auth_code=None,
                local_time=None, local_date=None, original_transaction_id=None,
                refunded_fen=0, request_digest="0" * 64, terminal_id=TERMINAL_ID,
                created_at=START + timedelta(seconds=stan),
            )  # fmt: skip


def test_transactions_say_when_the_list_is_cut_and_page_on(registered: Path) -> None:
    """1,005 transactions: the default shows 1,000 and says so; --page 2 shows the last 5."""
    _many_transactions(registered, 1005)
    first = _posbatch("host", "transactions", TERMINAL_ID)
    second = _posbatch("host", "transactions", TERMINAL_ID, "--page", "2")
    first_lines, second_lines = first.output.splitlines(), second.output.splitlines()
    assert (first.exit_code, len(first_lines)) == (0, 1 + 1000 + 1)
    assert first_lines[-1] == "… rows 1-1000 of 1005 shown; next: --page 2"
    assert second_lines[-1] == "… rows 1001-1005 of 1005 shown"
    assert [line.split()[1] for line in second_lines[1:-1]] == [
        f"{n:06d}" for n in range(1001, 1006)
    ]


def test_transactions_with_a_limit_and_a_page_past_the_end(registered: Path) -> None:
    """--limit 2 --page 3 of 5 rows: the fifth; --page 4: refused, saying how many pages."""
    _many_transactions(registered, 5)
    last = _posbatch("host", "transactions", TERMINAL_ID, "--limit", "2", "--page", "3")
    past = _posbatch("host", "transactions", TERMINAL_ID, "--limit", "2", "--page", "4")
    assert last.output.splitlines()[-1] == "… rows 5-5 of 5 shown"
    _refused(past, "--page 4 is past the end: 5 transactions, 3 page(s) of 2")


def test_batches_say_when_older_ones_are_not_shown(registered: Path) -> None:
    """Three batches, --limit 2: the latest two and a line saying older ones were left out."""
    with open_store(registered) as store:
        with store.transaction() as tx:
            tx.first_batch(TERMINAL_ID, now=START)
        store.advance_batch(TERMINAL_ID, "test", now=START)
        store.advance_batch(TERMINAL_ID, "test", now=START)
    result = _posbatch("host", "batches", TERMINAL_ID, "--limit", "2")
    lines = result.output.splitlines()
    assert lines[1] == "… older batches not shown: only the latest 2 (--limit)"
    assert [line.split()[0] for line in lines[2:]] == ["000002", "000003"]


def test_a_whole_list_says_nothing_more(registered: Path) -> None:
    """A list that fits shows no 'cut' line."""
    _many_transactions(registered, 3)
    result = _posbatch("host", "transactions", TERMINAL_ID)
    assert (result.exit_code, len(result.output.splitlines())) == (0, 4)


# The sweep /work/shared/hooks/before-stop runs, in-process on the root app (the same
# OneLineErrors group the console script runs).
HOOK_INVOCATIONS = [
    "host serve --listen 127.0.0.1:99999 --data-dir h",
    "host serve --listen nohost.invalid:5899 --data-dir h",
    "host serve --listen 127.0.0.1:0 --data-dir afile",
    "host serve --listen 127.0.0.1:0 --log-level bogus --data-dir h",
    "host list-terminals --data-dir afile",
    "terminal sale abc --card 6222021234567890128",
    "terminal sale 12.345 --card 6222021234567890128",
    "terminal settle",
    "doctor --host-db foo://bar",
    "catalog import afile",
]


@pytest.mark.parametrize("args", HOOK_INVOCATIONS)
def test_the_before_stop_sweep_finds_no_traceback(here: Path, args: str) -> None:
    """Each invocation of the hook's sweep: exit 2 and an error line, no exception."""
    result = _posbatch(*args.split())
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert (result.exit_code, "rror" in result.output) == (2, True), result.output


@pytest.mark.slow
def test_the_console_script_ends_an_error_in_one_line(here: Path) -> None:
    """Through the real entry point (a process): one line, exit 2, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(SRC), **{DATABASE_URL_ENV: "not a url"})
    process = subprocess.run(
        [sys.executable, "-m", "posbatch", "host", "list-terminals"],
        cwd=here, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert (process.returncode, process.stdout, process.stderr) == (
        2,
        "",
        "error: not a database URL: 'not a url' "
        "(sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)\n",
    )
