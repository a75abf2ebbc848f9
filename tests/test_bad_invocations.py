"""Bad input on EVERY command: one line and exit status 2, never a traceback.

The commands are found by walking the ``posbatch`` typer app, so a command that
another part of posbatch adds later is swept too, with no change here. Each
one meets: an option it does not have; for each of its visible parameters in
turn, hostile values (empty, negative, not a number, huge, a file where a
directory belongs and the other way round, a NUL byte, a very long string)
while its other required parameters get plausible values; and a data
directory that does not exist, which a command that only reads must not
create. They run in a working directory holding a host store with one
terminal, an initialised terminal (whose host address is a closed port) and
a catalog the terminal holds a copy of, made before any test runs, so that a
hostile value meets a real command, not a missing store — whatever order the
tests run in (checkout met its catalog-age option only when an earlier test
had left a copy).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final

import pytest
import typer
from typer.testing import CliRunner, Result

from posbatch.cli import app
from posbatch.host.sealing import KEK_ENV, KEK_FILE_ENV
from posbatch.storage import DATABASE_URL_ENV
from testbed import MASTER_KEY_HEX, MERCHANT_ID, TERMINAL_ID

PAN: Final = "6222021234567890128"
# An invocation running longer than this is a command that took a hostile value and went on
# working (serving, simulating) instead of refusing it.
INVOCATION_TIMEOUT_S: Final = 30
# A server that accepts every other value fails to bind here (TEST-NET-1, not on this
# machine) and says so in one line, instead of serving on its default port.
UNBINDABLE: Final = "192.0.2.1:0"
STRANGER_UID: Final = 65534  # nobody
# A simulation that accepts the other values runs one small day, not the default three.
ALWAYS_GIVEN: Final = {"listen", "terminals", "days", "transactions"}
# Commands that make their data directory by design; every other one must not.
CREATING: Final = {
    ("host", "serve"),
    ("host", "add-terminal"),
    ("terminal", "init"),
    ("terminal", "restore"),
    ("catalog", "import"),
    ("catalog", "serve"),
    ("catalog", "sync"),
    ("catalog", "add-till"),
    ("backoffice", "add-user"),
    # the acquirer's clearing rules may be set before the first terminal is registered
    ("host", "set-fees"),
    ("host", "set-terms"),
    ("host", "set-card-bin"),
    ("host", "load-card-bins"),
    ("host", "set-cutoff"),
    ("clearing", "calendar", "set"),
    ("clearing", "calendar", "publish"),
}
# Commands whose exit status 1 means an answer, not an error (a declined sale, a diagnosis
# that found a failure); bad input still ends in 2.
ONE_IS_AN_ANSWER: Final = {("doctor",), ("terminal", "sale"), ("terminal", "void"),
                           ("terminal", "refund"), ("host", "doctor")}  # fmt: skip
# Hidden options are posbatch's own plumbing (serve --worker): not typed by people.
SHOP_CATALOG: Final = (
    "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled,trace_prefix\n"
    "6901234567892,Milk 1L,1250,yes,M-DEC15,2026-12-15,10,no,\n"
)

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command reachable from ``command``: (its path of names, the click command)."""
    children = getattr(command, "commands", None)
    if not children or getattr(command, "invoke_without_command", False):
        yield path, command
    for name, child in (children or {}).items():
        yield from _walk(child, (*path, name))


COMMANDS: Final = [path for path, _ in _walk(typer.main.get_command(app)) if path]
_BY_PATH: Final = dict(_walk(typer.main.get_command(app)))


def _parameters(path: tuple[str, ...]) -> list[Any]:
    return [p for p in _BY_PATH[path].params if not getattr(p, "hidden", False)]


def _is_flag(parameter: Any) -> bool:
    return bool(getattr(parameter, "is_flag", False))


class _Hung(Exception):  # noqa: N818 - what happened
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise _Hung(f"still running after {INVOCATION_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with a host store, a terminal and a catalog in their default dirs."""
    root = tmp_path_factory.mktemp("world")
    (root / "afile").write_text("not a directory, not a database\n")
    (root / "adir").mkdir(mode=0o700)
    (root / "tmk.hex").write_text(MASTER_KEY_HEX + "\n")
    (root / "catalog.csv").write_text("not,a,catalog\n")
    (root / "shop.csv").write_text(SHOP_CATALOG)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name in (DATABASE_URL_ENV, KEK_ENV, KEK_FILE_ENV):
            patch.delenv(name, raising=False)
        results = [
            runner.invoke(app, ["host", "add-terminal", "--merchant-id", MERCHANT_ID,
                                "--terminal-id", TERMINAL_ID, "--master-key-file", "tmk.hex"]),
            runner.invoke(app, ["terminal", "init", "--merchant-id", MERCHANT_ID,
                                "--terminal-id", TERMINAL_ID, "--master-key-file", "tmk.hex",
                                "--host", f"127.0.0.1:{_closed_port()}"]),
            # a catalog, and the terminal's copy of it: checkout's values meet a real cart
            runner.invoke(app, ["catalog", "import", "shop.csv"]),
            runner.invoke(app, ["catalog", "changes", "--output", "changes.json"]),
            runner.invoke(app, ["catalog", "sync", "--from", "changes.json"]),
            # a real backup: a restore into another user's terminal meets its directory,
            # not a missing file (it went ahead and rewrote that user's key file as root's)
            runner.invoke(app, ["terminal", "backup", "world-backup.db", "--passphrase-stdin"],
                          input="correct horse battery\n"),
        ]  # fmt: skip
    assert [r.exit_code for r in results] == [0] * 6, [r.output for r in results]
    return root


@pytest.fixture
def in_world(world: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(world)
    for name in (DATABASE_URL_ENV, KEK_ENV, KEK_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous = signal.signal(signal.SIGALRM, _alarm)
    yield world
    signal.signal(signal.SIGALRM, previous)
    for signum, handler in handlers.items():  # a command may have set its own
        signal.signal(signum, handler)


def _plausible(parameter: Any, world: Path) -> str:
    """A value that lets a command get past its parameter checks, by the parameter's name."""
    by_name = {
        "merchant_id": MERCHANT_ID, "terminal_id": TERMINAL_ID, "master_key_file": "tmk.hex",
        "host": f"127.0.0.1:{_closed_port()}", "amount": "12.50", "stan": "1",
        "reason": "a test", "destination": str(world / "new-backup.db"),
        "source": str(world / "no-such-backup.db"), "mode": "on", "csv_file": "catalog.csv",
        "output": str(world / "out.csv"), "raw": "]C10109501101530003", "lot_no": "ABC123",
        "listen": UNBINDABLE, "terminals": "1", "days": "1", "transactions": "1",
    }  # fmt: skip
    return by_name.get(parameter.name, "x")


def _argv(path: tuple[str, ...], world: Path, **override: str) -> list[str]:
    """``path`` with every required parameter (and those in ``override``) given a value."""
    options: list[str] = []
    arguments: list[str] = []
    for parameter in _parameters(path):
        always = parameter.name in ALWAYS_GIVEN
        if parameter.name not in override and not parameter.required and not always:
            continue
        value = override.get(parameter.name) or _plausible(parameter, world)
        if parameter.name in override:
            value = override[parameter.name]
        if getattr(parameter, "opts", None) and parameter.opts[0].startswith("-"):
            options += [parameter.opts[0]] if _is_flag(parameter) else [parameter.opts[0], value]
        else:
            arguments.append(value)
    return [*path, *arguments, *options]


def _run(argv: list[str]) -> Result:
    signal.alarm(INVOCATION_TIMEOUT_S)
    try:
        return runner.invoke(app, argv, input="")
    finally:
        signal.alarm(0)


def _assert_one_line_refusal(path: tuple[str, ...], argv: list[str], result: Result) -> None:
    """No traceback; a refusal exits 2 and says why on one line (click's usage errors aside)."""
    shown = " ".join(repr(a) if (" " in a or not a) else a for a in argv)
    exception = result.exception
    assert exception is None or isinstance(exception, SystemExit), (
        f"posbatch {shown}: {type(exception).__name__}: {exception}"
    )
    assert "Traceback (most recent call last)" not in result.output, f"posbatch {shown}"
    allowed = {0, 2} | ({1} if path in ONE_IS_AN_ANSWER else set())
    assert result.exit_code in allowed, f"posbatch {shown}: exit {result.exit_code}"
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, f"posbatch {shown}: {result.output}"


# (No NUL byte: a command line cannot carry one, every argv string ends at the first.)
HOSTILE: Final = ("", "-1", "abc", "99999999999999999999", "afile", "adir",
                  "typo/missing", "9" * 5000)  # fmt: skip


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_an_option_the_command_does_not_have_is_a_usage_error(
    in_world: Path, path: tuple[str, ...]
) -> None:
    """--no-such-option: exit 2, click's usage message, no traceback."""
    result = _run([*path, "--no-such-option"])
    assert (result.exit_code, "No such option" in result.output) == (2, True), result.output


# The quick run gives each parameter the two values that broke commands most often
# (a word where a number or path belongs, and a value far too long); `make test-slow` all.
HOSTILE_QUICK: Final = ("abc", "9" * 5000)


def _hostile(in_world: Path, path: tuple[str, ...], values: tuple[str, ...]) -> None:
    for parameter in _parameters(path):
        if _is_flag(parameter):
            continue
        for value in values:
            argv = _argv(path, in_world, **{parameter.name: value})
            _assert_one_line_refusal(path, argv, _run(argv))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_a_word_and_a_huge_value_for_every_parameter(in_world: Path, path: tuple[str, ...]) -> None:
    """Each visible parameter in turn gets "abc" and 5,000 nines: no traceback, exit 0 or 2."""
    _hostile(in_world, path, HOSTILE_QUICK)


@pytest.mark.slow  # every command × every parameter × 8 values: ~4 min of CPU
@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_hostile_values_for_every_parameter(in_world: Path, path: tuple[str, ...]) -> None:
    """Each visible parameter in turn gets each hostile value: never a traceback, exit 0 or 2."""
    _hostile(in_world, path, HOSTILE)


@pytest.mark.parametrize("path", [p for p in COMMANDS if p not in CREATING], ids=" ".join)
def test_a_command_that_does_not_create_leaves_a_missing_directory_missing(
    in_world: Path, path: tuple[str, ...]
) -> None:
    """Each directory option pointed at a typo: refused in one line, and nothing is created."""
    directories = [p for p in _parameters(path) if p.name.endswith("dir")]
    for parameter in directories:
        typo = in_world / f"typo-{'-'.join(path)}-{parameter.name}"
        argv = _argv(path, in_world, **{parameter.name: str(typo)})
        result = _run(argv)
        _assert_one_line_refusal(path, argv, result)
        assert not typo.exists(), f"posbatch {' '.join(argv)} created {typo}"


DATA_DIRECTORIES: Final = {"data_dir", "terminal_dir"}
_WITH_DATA_DIRECTORIES: Final = [
    p for p in COMMANDS if any(q.name in DATA_DIRECTORIES for q in _parameters(p))
]


@pytest.mark.parametrize("path", _WITH_DATA_DIRECTORIES, ids=" ".join)
def test_a_data_directory_that_is_a_file_is_one_line_and_left_as_it_is(
    in_world: Path, path: tuple[str, ...]
) -> None:
    """--data-dir /etc/passwd (a file): exit 2, one error line, the file unchanged
    (terminal status said "no terminal in /etc/passwd: run `posbatch terminal init`")."""
    before = (in_world / "afile").read_bytes()
    for parameter in [p for p in _parameters(path) if p.name in DATA_DIRECTORIES]:
        argv = _argv(path, in_world, **{parameter.name: str(in_world / "afile")})
        result = _run(argv)
        _assert_one_line_refusal(path, argv, result)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert (result.exit_code, len(errors)) == (2, 1), f"posbatch {argv}: {result.output}"
        # (the missing-store family, "no terminal in …/afile: run init", misled)
        assert "afile: run" not in errors[0], f"posbatch {argv}: {errors[0]}"
    assert before == (in_world / "afile").read_bytes()


@pytest.fixture(scope="module")
def strangers(world: Path) -> Path:
    """Copies of the world's data directories, every file of them another user's."""
    if os.geteuid() != 0:
        pytest.skip("only root can give files to another user")
    root = world / "strangers"
    for name in ("posbatch-data", "posbatch-terminal"):
        shutil.copytree(world / name, root / name)
    for directory, _, files in os.walk(root):
        for name in [directory, *(os.path.join(directory, f) for f in files)]:
            os.chown(name, STRANGER_UID, STRANGER_UID)
    return root


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_uid) for p in root.rglob("*"))


@pytest.mark.parametrize("path", _WITH_DATA_DIRECTORIES, ids=" ".join)
def test_another_users_data_directory_is_refused_and_left_as_it_is(
    in_world: Path, strangers: Path, path: tuple[str, ...]
) -> None:
    """A data directory whose files are another user's: exit 2, one line naming the owner,
    and no file of ours left in it (SQLite's -wal and -shm beside a journal would lock that
    user out of their own terminal)."""
    before = _listing(strangers)
    for parameter in [p for p in _parameters(path) if p.name in DATA_DIRECTORIES]:
        kind = "posbatch-terminal" if "terminal" in (parameter.name, path[0]) else "posbatch-data"
        given = {parameter.name: str(strangers / kind)}
        if path == ("terminal", "restore"):
            given["source"] = str(in_world / "world-backup.db")
        argv = _argv(path, in_world, **given)
        result = _run(argv)
        _assert_one_line_refusal(path, argv, result)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert (result.exit_code, len(errors)) == (2, 1), f"posbatch {argv}: {result.output}"
        if path == ("terminal", "restore"):
            assert "another user" in errors[0], f"posbatch {argv}: {errors[0]}"
    assert before == _listing(strangers)


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("afile", "afile is not a directory: --data-dir names a data directory"),
        ("strangers/posbatch-terminal", "belongs to another user (nobody): posbatch uses only"),
        ("strangers/posbatch-data", "belongs to another user (nobody): posbatch uses only"),
    ],
)
def test_terminal_status_names_what_is_wrong_with_its_data_directory(
    in_world: Path, strangers: Path, where: str, says: str
) -> None:
    """`terminal status --data-dir /etc/passwd` said "no terminal in /etc/passwd: run
    `posbatch terminal init` first"; another user's terminal was opened (as root) and left
    with files of ours in it."""
    del strangers
    result = _run(["terminal", "status", "--data-dir", str(in_world / where)])
    lines = result.output.strip().splitlines()
    assert (2, 1) == (result.exit_code, len(lines)), result.output
    assert says in lines[0], lines[0]


# The options that name a file a command writes (an export, a bundle, a backup): a missing
# directory in them is refused, as a typo, never made (doctor --bundle made it).
WRITTEN_FILES: Final = {"bundle", "output", "csv_file", "destination"}


@pytest.mark.parametrize(
    "path",
    [p for p in COMMANDS if any(q.name in WRITTEN_FILES for q in _parameters(p))],
    ids=" ".join,
)
def test_a_file_in_a_missing_directory_is_refused_and_the_directory_is_not_made(
    in_world: Path, path: tuple[str, ...]
) -> None:
    """Each file option pointed into a directory that is not there: exit 2, one error line,
    and the directory still missing (every export and --bundle alike)."""
    for parameter in [p for p in _parameters(path) if p.name in WRITTEN_FILES]:
        typo = in_world / f"typo-{'-'.join(path)}-{parameter.name}"
        argv = _argv(path, in_world, **{parameter.name: str(typo / "file")})
        result = _run(argv)
        _assert_one_line_refusal(path, argv, result)
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert (result.exit_code, len(errors)) == (2, 1), f"posbatch {argv}: {result.output}"
        assert not typo.exists(), f"posbatch {' '.join(argv)} created {typo}"


def test_the_walk_finds_the_commands_of_every_component() -> None:
    """The sweep covers host, terminal, catalog, checkout, doctor and simulate at least."""
    tops = {path[0] for path in COMMANDS}
    assert {"host", "terminal", "catalog", "checkout", "doctor", "simulate"} <= tops
    assert ("host", "rotate-kek") in COMMANDS and len(COMMANDS) >= 30


def test_simulate_refuses_a_terminal_without_replay(in_world: Path) -> None:
    """--terminal picks the trace --replay prints; alone it was ignored and a full run made."""
    result = _run(["simulate", "--terminal", "abc", "--days", "1"])
    assert (result.exit_code, "--terminal goes with --replay" in result.output) == (2, True)


@pytest.mark.parametrize(
    "path", [("host", "serve"), ("catalog", "serve"), ("backoffice", "serve")], ids=" ".join
)
def test_a_server_on_a_port_in_use_says_so_in_one_line(
    in_world: Path, path: tuple[str, ...]
) -> None:
    """Every server binds before it starts: a port in use is one line and exit 2 (catalog
    serve printed uvicorn's log and exited 3)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run([*path, "--listen", f"127.0.0.1:{port}"])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert (2, 1) == (result.exit_code, len(errors)), result.output
    assert "in use" in errors[0]


SERVERS: Final = [("host", "serve"), ("catalog", "serve"), ("backoffice", "serve")]


@pytest.mark.parametrize("listen", ["127.0.0.1:²", "127.0.0.1:99999", "nowhere", "127.0.0.1:"])
@pytest.mark.parametrize("path", SERVERS, ids=" ".join)
def test_every_server_refuses_a_bad_listen_address_in_the_same_words(
    in_world: Path, path: tuple[str, ...], listen: str
) -> None:
    """One rule and one message for --listen (each server had its own; "²" passed
    ``str.isdigit`` and ``int()`` raised a traceback in all three)."""
    result = _run([*path, "--listen", listen])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert (2, 1) == (result.exit_code, len(errors)), result.output
    assert "--listen must be HOST:PORT with a port 0..65535" in errors[0]


def test_a_terminals_host_address_with_a_digit_int_refuses_is_one_line(in_world: Path) -> None:
    """terminal init --host 127.0.0.1:² raised ValueError (a traceback)."""
    result = _run(["terminal", "init", "--merchant-id", MERCHANT_ID, "--terminal-id",
                   TERMINAL_ID, "--master-key-file", "tmk.hex", "--host", "127.0.0.1:²",
                   "--data-dir", str(in_world / "typo-init")])  # fmt: skip
    assert (2, True) == (result.exit_code, "'127.0.0.1:²' is not HOST:PORT" in result.output)
    assert not (in_world / "typo-init").exists()


def test_checkout_refuses_a_catalog_age_no_timedelta_can_hold(in_world: Path) -> None:
    """--max-catalog-age-min had no upper bound: 10**20 minutes reached ``timedelta`` and
    raised OverflowError, whenever the world held a catalog copy by then (the sweep above
    met it only in some orders of the module's tests). Now click refuses it first."""
    result = _run(["checkout", "--max-catalog-age-min", "99999999999999999999"])
    assert (result.exit_code, "--max-catalog-age-min" in result.output) == (2, True)
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("limit", ["0", "-1", "100001"])
def test_the_journal_refuses_a_limit_it_cannot_show(in_world: Path, limit: str) -> None:
    """--limit -1 showed every row but the oldest and --limit 0 every row, silently (a slice
    from the end); now a row count outside 1..100000 is a usage error naming --limit."""
    result = _run(["terminal", "journal", "--limit", limit])
    assert (result.exit_code, "--limit" in result.output) == (2, True), result.output


FULL_WIDTH_PAN: Final = "６２２２０２１２３４５６７８９０１２８"
NEGATIVE: Final = "amounts must be positive yuan like 12.50"
SET_FEES: Final = ["host", "set-fees", "--merchant-id", MERCHANT_ID, "--debit", "0.60%",
                   "--credit", "0.60%", "--foreign-debit", "1.00%", "--foreign-credit", "1.00%",
                   "--from", "2026-12-01"]  # fmt: skip
# (arguments, standard input, what the one error line says). Amounts, counts and card
# numbers as people get them wrong: a sign (click took "-1" for an option and answered
# "No such option: -1"), too many decimals, more than field 4 carries, digits of another
# script, letters, and a card number typed where an amount or a STAN belongs.
BAD_NUMBERS: Final = [
    (["terminal", "sale", "-1"], "", f"-1 is refused: {NEGATIVE}"),
    (["terminal", "sale", "-12.50"], "", f"-12.50 is refused: {NEGATIVE}"),
    (["terminal", "refund", "1", "-0.5"], "", f"-0.5 is refused: {NEGATIVE}"),
    (["terminal", "void", "-1"], "", f"-1 is refused: {NEGATIVE}"),
    (["catalog", "receive", "6901234567892", "-1"], "", f"-1 is refused: {NEGATIVE}"),
    (["terminal", "sale", "12.505"], "", "must be yuan with at most 2 decimals, like 12.50"),
    (["terminal", "sale", "10000000000.00"], "", "is too large: at most 10 digits of yuan"),
    (["terminal", "sale", "１２.５０"], "", "must be yuan with at most 2 decimals, like 12.50"),
    (["terminal", "sale", PAN], "", "amount is too large: at most 10 digits of yuan"),
    (["terminal", "refund", PAN, "5.00"], "", "STAN must be 1 to 6 digits 0-9"),
    (["catalog", "receive", "6901234567892", PAN], "", "quantity must be a whole number"),
    ([*SET_FEES, "--debit-cap", "-1"], "", "like 12.50"),
    ([*SET_FEES, "--debit-cap", "0.001"], "", "at most 2 decimals"),
    ([*SET_FEES, "--debit-cap", PAN], "", "amount is too large: at most 10 digits of yuan"),
    (["terminal", "sale", "12.50"], "6222abc1234567890128\n", "12 to 19 digits 0-9"),
    (["terminal", "sale", "12.50"], FULL_WIDTH_PAN + "\n", "12 to 19 digits 0-9"),
    ([PAN], "", "No such command '622202*********0128'"),
    # a GTIN is as long as a card number: a catalog error names it whole when it is one
    (["catalog", "receive", "4006381333931", "5"], "", "unknown product 04006381333931"),
    # a receipt the journal does not hold is not a usage error ("Invalid value … see --help")
    # and names the batch asked for, as void's and refund's errors do
    (["terminal", "receipt", "5", "--batch", "7"], "",
     "error: no transaction with STAN 000005 in batch 000007 in the journal"),
    (["terminal", "receipt", "5"], "", "error: no transaction with STAN 000005 in the journal"),
    # the sweep gives --port its values without --serve, which alone reads it: a traceback
    (["demo", "--serve", "--port", "99999"], "", "--port '99999' must be a whole number"),
    (["demo", "--serve", "--port", PAN], "", "--port must be a whole number"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "typed", "says"), BAD_NUMBERS, ids=" ".join)
def test_a_bad_number_is_one_line_without_the_card_number(
    in_world: Path, argv: list[str], typed: str, says: str
) -> None:
    """Each bad amount, count or card number: exit 2, one line that says what is wrong and
    how it is written, never a traceback, never the card number beyond its first 6 / last 4
    (in ASCII digits or full-width)."""
    signal.alarm(INVOCATION_TIMEOUT_S)
    try:
        result = runner.invoke(app, argv, input=typed)
    finally:
        signal.alarm(0)
    lines = result.output.strip().splitlines()
    assert (2, 1) == (result.exit_code, len(lines)), result.output
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert PAN not in result.output and FULL_WIDTH_PAN not in result.output


TID: Final = "must be 8 letters or digits (A-Z, a-z, 0-9), no spaces or other characters"
MID: Final = "must be 15 letters or digits (A-Z, a-z, 0-9), no spaces or other characters"
SIX: Final = "must be 1 to 6 digits 0-9, from 1 to 999999"
UNKNOWN: Final = "terminal ID 20000002 is not registered (see: posbatch host list-terminals)"
FEES: Final = ["--from", "2026-12-01", "--debit", "1%", "--credit", "1%",
               "--foreign-debit", "1%", "--foreign-credit", "1%"]  # fmt: skip
# (arguments, the one error line's text): every command that takes a terminal id, a merchant
# id, a batch number or a STAN says what is wrong with it in the same words (posbatch.batch.ids)
# — they said "terminal 'abc' is not registered", "terminal abc is not registered",
# "terminal ID 'abc' must be 8 printable ascii characters", "merchant_id must be 15 ascii
# characters", "a merchant user needs --merchant-id", "Input should be a valid integer".
BAD_IDS: Final = [
    (["host", "suspend", "abc"], f"terminal ID 'abc' {TID}"),
    (["host", "batches", "１２３４５６７８"], f"terminal ID {TID}"),
    (["host", "transactions", "1234567"], f"terminal ID '1234567' {TID}"),
    (["host", "exceptions", "٣٠٠٠٠٠٠١"], f"terminal ID {TID}"),
    (["host", "advance-batch", "", "--reason", "x"], f"terminal ID '' {TID}"),
    (["host", "doctor", PAN], f"terminal ID {TID}"),
    (["host", "add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", "1 2 3 4",
      "--master-key-file", "tmk.hex"], f"terminal ID '1 2 3 4' {TID}"),
    (["terminal", "init", "--merchant-id", MERCHANT_ID, "--terminal-id", "abc",
      "--master-key-file", "tmk.hex", "--host", "127.0.0.1:5800"], f"terminal ID 'abc' {TID}"),
    (["catalog", "add-till", "abc", "--output", "till.json"], f"terminal ID 'abc' {TID}"),
    (["catalog", "revoke-till", "abc"], f"terminal ID 'abc' {TID}"),
    (["host", "suspend", "20000002"], UNKNOWN),
    (["host", "batches", "20000002"], UNKNOWN),
    (["host", "transactions", "20000002"], UNKNOWN),
    (["host", "exceptions", "20000002"], UNKNOWN),
    (["host", "advance-batch", "20000002", "--reason", "x"], UNKNOWN),
    (["host", "doctor", "20000002"], UNKNOWN),
    (["host", "add-terminal", "--merchant-id", "abc", "--terminal-id", TERMINAL_ID,
      "--master-key-file", "tmk.hex"], f"merchant ID 'abc' {MID}"),
    (["terminal", "init", "--merchant-id", "８９８１１００５４１１０００１",
      "--terminal-id", TERMINAL_ID, "--master-key-file", "tmk.hex", "--host", "127.0.0.1:5800"],
     f"merchant ID {MID}"),
    (["clearing", "statement", "--merchant-id", "abc", "--date", "2026-12-01"],
     f"merchant ID 'abc' {MID}"),
    (["clearing", "arrival", "2026-09-30T10:00", "--merchant-id", "12"], f"merchant ID '12' {MID}"),
    (["host", "set-fees", "--merchant-id", "abc", *FEES], f"merchant ID 'abc' {MID}"),
    (["host", "fees", "--merchant-id", PAN], f"merchant ID {MID}"),
    (["backoffice", "add-user", "bob", "--role", "merchant", "--merchant-id", "12"],
     f"merchant ID '12' {MID}"),
    (["terminal", "void", "abc"], f"STAN 'abc' {SIX}"),
    (["terminal", "void", "0"], f"STAN '0' {SIX}"),
    (["terminal", "void", "١٢٣"], f"STAN {SIX}"),
    (["terminal", "refund", "1000000", "1.00"], f"STAN '1000000' {SIX}"),
    (["terminal", "receipt", ""], f"STAN '' {SIX}"),
    (["terminal", "refund", "1", "1.00", "--batch", "１２"], f"batch number {SIX}"),
    (["terminal", "receipt", "1", "--batch", "0"], f"batch number '0' {SIX}"),
    (["host", "transactions", TERMINAL_ID, "--batch-no", "abc"], f"batch number 'abc' {SIX}"),
    (["simulate", "--start-batch-no", "9999999", "--days", "1"], f"batch number '9999999' {SIX}"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "says"), BAD_IDS, ids=" ".join)
def test_a_bad_id_is_one_line_in_the_same_words_everywhere(
    in_world: Path, argv: list[str], says: str
) -> None:
    """Each bad terminal id, merchant id, batch number or STAN: exit 2, one error line
    holding the one message for it, no card number beyond its first 6 / last 4, and no
    data directory made (a refused init or add-terminal)."""
    result = _run([*argv, "--data-dir", str(in_world / "typo-ids")] if _has_data_dir(argv)
                  else argv)  # fmt: skip
    lines = result.output.strip().splitlines()
    assert (2, 1) == (result.exit_code, len(lines)), result.output
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert PAN not in result.output
    assert not (in_world / "typo-ids").exists()


WHOLE: Final = "must be a whole number in digits 0-9"
ROWS: Final = f"{WHOLE}, from 1 to 100000"
# (arguments, the one error line's text): every count a command takes — rows, pages, days,
# seeds, units, timeouts — says what is wrong with it in the same words (cli_support.count),
# its name first. They said click's "Invalid value for '--limit': Input should be a valid
# integer, unable to parse string as an integer", whatever was typed.
BAD_COUNTS: Final = [
    (["host", "batches", TERMINAL_ID, "--limit", "١٢"], f"--limit {ROWS}"),
    (["host", "transactions", TERMINAL_ID, "--limit", "0"], f"--limit '0' {ROWS}"),
    (["host", "transactions", TERMINAL_ID, "--page", "１"], f"--page {ROWS}"),
    (["host", "exceptions", TERMINAL_ID, "--limit", "abc"], f"--limit 'abc' {ROWS}"),
    (["terminal", "journal", "--limit", "²"], f"--limit {WHOLE}, from 1 to 10000"),
    (["terminal", "receipt", "1", "--width", "٣٢"], f"--width {WHOLE}"),
    (["terminal", "settings", "--batch-limit", "5e2"],
     f"--batch-limit '5e2' {WHOLE}, from 1 to 999"),
    (["simulate", "--days", "٣"], f"--days {WHOLE}, 1 or more"),
    (["simulate", "--seeds", "0"], f"--seeds '0' {WHOLE}, from 1 to 1000000"),
    (["simulate", "--jobs", "1.5"], f"--jobs '1.5' {WHOLE}, from 1 to 64"),
    (["simulate", "--terminals", "９"], f"--terminals {WHOLE}, 1 or more"),
    (["simulate", "--transactions", "x"], f"--transactions 'x' {WHOLE}"),
    (["simulate", "--seed", "٧"], f"--seed {WHOLE}"),
    (["doctor", "--echo-count", "٥"], f"--echo-count {WHOLE}, from 0 to 20"),
    (["doctor", "--wait", "99"], f"--wait '99' {WHOLE}, from 1 to"),
    (["host", "serve", "--connections-max", "٨"], f"--connections-max {WHOLE}, from 1 to"),
    (["host", "serve", "--idle-timeout-ms", "0"], f"--idle-timeout-ms '0' {WHOLE}, from 1 to"),
    (["host", "serve", "--connections-per-address-max", "²"],
     f"--connections-per-address-max {WHOLE}"),
    (["host", "serve", "--frame-deadline-ms", "1s"], f"--frame-deadline-ms '1s' {WHOLE}"),
    (["host", "serve", "--first-frame-timeout-ms", "٥"], f"--first-frame-timeout-ms {WHOLE}"),
    (["host", "serve", "--unsent-bytes-max", "1k"], f"--unsent-bytes-max '1k' {WHOLE}"),
    (["host", "serve", "--workers", "二"], f"--workers {WHOLE}"),
    (["demo", "--serve", "--port", "٨٠"], f"--port {WHOLE}, from 0 to 65535"),
    (["catalog", "receive", "6901234567892", "١٢"], f"quantity {WHOLE}, 1 or more"),
    (["catalog", "adjust", "6901234567892", "--change", "-٣", "--reason", "x"],
     f"--change {WHOLE}, a - before it to take away"),
    (["catalog", "adjust", "6901234567892", "--counted", "١"], f"--counted {WHOLE}"),
    (["catalog", "changes", "--output", "c.json", "--since", "٣"], f"--since {WHOLE}, from 0 to"),
    (["checkout", "--max-catalog-age-min", "٦٠"],
     f"--max-catalog-age-min {WHOLE}, from 1 to"),
    (["checkout", "--near-expiry-days", "٣"], f"--near-expiry-days {WHOLE}, from 0 to"),
    (["clearing", "calendar", "show", "٢٠٢٦"], f"year {WHOLE}"),
    (["clearing", "calendar", "publish", "٢٠٢٦", "--note", "x"], f"year {WHOLE}"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "says"), BAD_COUNTS, ids=" ".join)
def test_a_bad_count_is_one_line_in_the_same_words_everywhere(
    in_world: Path, argv: list[str], says: str
) -> None:
    """Each bad count (digits of another script, letters, out of range): exit 2, one error
    line naming the option and the rule, never click's "Input should be a valid integer"."""
    result = _run(argv)
    lines = result.output.strip().splitlines()
    assert (2, 1) == (result.exit_code, len(lines)), result.output
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert "Input should be" not in result.output


def _has_data_dir(argv: list[str]) -> bool:
    """Whether the command takes --data-dir and the id is checked before it is used (a
    registered-or-not answer needs the world's own store)."""
    return "20000002" not in argv and argv[0] not in {"simulate", "catalog"}


# Card numbers whose last digit is also their GS1 check digit (one card in ten), and how the
# catalog names each: zero-filled to GTIN-14, masked like a card.
GS1_VALID_CARDS: Final = [("6222021234095", "062220****4095"), ("62220212345069", "622202****5069")]


@pytest.mark.parametrize(("card", "masked"), GS1_VALID_CARDS)
def test_a_card_that_is_a_valid_gtin_is_masked_by_the_catalog(
    in_world: Path, tmp_path: Path, card: str, masked: str
) -> None:
    """`catalog receive CARD` and `recall --reason CARD`: the catalog showed a card number
    whole when its last digit fitted as a GS1 check digit ("unknown product 06222021234095"):
    the error names it masked, and the reason is recorded masked."""
    data = ["--data-dir", str(tmp_path / "shop")]
    steps = [
        ["catalog", "import", "shop.csv", *data],
        ["catalog", "recall", "M-DEC15", "--reason", f"card {card}", *data],
    ]
    assert [0, 0] == [_run(step).exit_code for step in steps]
    received = _run(["catalog", "receive", card, "1", *data])
    report = _run(["catalog", "recall-report", "M-DEC15", *data])
    assert (2, f"error: unknown product {masked}: not in the catalog", False, True) == (
        received.exit_code,
        received.output.strip(),
        card in report.output,
        f"card {card[:6]}{'*' * (len(card) - 10)}{card[-4:]}" in report.output,
    ), report.output


def test_a_card_number_typed_as_a_reason_or_a_name_is_recorded_masked(
    in_world: Path, tmp_path: Path
) -> None:
    """`catalog recall --reason PAN --by PAN` recorded both whole, and recall-report, its
    --json and the stock history gave them back whole: free text is masked as it is typed."""
    data = ["--data-dir", str(tmp_path / "shop")]
    steps = [
        ["catalog", "import", "shop.csv", "--by", PAN, *data],
        ["catalog", "recall", "M-DEC15", "--reason", f"card {PAN}", "--by", PAN, *data],
    ]
    assert [0, 0] == [_run(step).exit_code for step in steps]
    shown = [
        _run(["catalog", "recall-report", "M-DEC15", *data]),
        _run(["catalog", "recall-report", "M-DEC15", "--json", *data]),
        _run(["catalog", "stock", "--history", "--gtin", "6901234567892", "--json", *data]),
    ]
    assert [0, 0, 0] == [result.exit_code for result in shown]
    assert "622202*********0128" in shown[0].output
    assert [] == [result.output for result in shown if PAN in result.output]
