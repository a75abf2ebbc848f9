"""The terminal's secrets off the command line, its files private, its errors one line."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, TERMINAL_ID
from typer.testing import CliRunner, Result

from posbatch.cli import app

runner = CliRunner()


def _terminal(*arguments: str, input: str | None = None) -> Result:
    return runner.invoke(app, ["terminal", *arguments], input=input)


def _init(data_dir: Path, host: str = "127.0.0.1:9", **ids: str) -> Result:
    return _terminal(
        "init", "--merchant-id", ids.get("merchant_id", MERCHANT_ID),
        "--terminal-id", ids.get("terminal_id", TERMINAL_ID), "--master-key-file", "-",
        "--host", host, "--data-dir", str(data_dir),
        input=MASTER_KEY.hex() + "\n",
    )  # fmt: skip


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_card_number_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """--card is refused before anything happens, saying why and what to do instead."""
    _init(tmp_path)
    result = _terminal("sale", "12.50", "--card", PAN, "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "visible to every user" in result.output and PAN not in result.output


def test_a_master_key_on_the_command_line_is_refused(tmp_path: Path) -> None:
    """terminal init --master-key is refused: use --master-key-file PATH or -."""
    result = _terminal(
        "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
        "--master-key", MASTER_KEY.hex(), "--host", "127.0.0.1:9", "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert (result.exit_code, "--master-key-file" in result.output) == (2, True)
    assert not (tmp_path / "journal.db").exists()


def test_the_master_key_from_a_file(tmp_path: Path) -> None:
    """--master-key-file PATH reads the TMK from that file."""
    key_file = tmp_path / "tmk.hex"
    key_file.write_text(MASTER_KEY.hex().upper() + "\n")
    result = _terminal(
        "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
        "--master-key-file", str(key_file), "--host", "127.0.0.1:9",
        "--data-dir", str(tmp_path / "t"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "holds no master key"), ("0123", "32 hex digits"), ("zz" * 16, "hex digits")],
)
def test_a_bad_master_key_on_standard_input_is_one_line(
    tmp_path: Path, content: str, reason: str
) -> None:
    """An empty, short or non-hex key: exit 2 and what is wrong."""
    result = _terminal(
        "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID,
        "--master-key-file", "-", "--host", "127.0.0.1:9", "--data-dir", str(tmp_path),
        input=content,
    )  # fmt: skip
    assert (result.exit_code, reason in result.output) == (2, True), result.output


def test_no_card_number_on_standard_input_is_refused(tmp_path: Path) -> None:
    """A sale with nothing on standard input asks for the card, and does not trade."""
    _init(tmp_path)
    result = _terminal("sale", "12.50", "--data-dir", str(tmp_path), input="")
    assert (result.exit_code, "no card number" in result.output) == (2, True)


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        ({"terminal_id": "3000 001"}, "terminal ID '3000 001' must be 8 letters or digits"),
        ({"merchant_id": " " * 15}, "must be 15 letters or digits"),
        ({"terminal_id": "1000000"}, "must be 8 letters or digits"),
    ],
)
def test_malformed_ids_are_refused_at_init(
    tmp_path: Path, ids: dict[str, str], reason: str
) -> None:
    """A terminal id with a space, fifteen spaces of merchant id: refused, nothing created."""
    result = _init(tmp_path / "t", **ids)
    assert (result.exit_code, reason in result.output) == (2, True), result.output
    assert not (tmp_path / "t").exists()


def test_the_terminal_files_are_private(tmp_path: Path) -> None:
    """init: directory 0700, journal and key file 0600; a backup 0600 too, and a restore on
    a reinstalled terminal (in a directory of its own) writes 0600 files."""
    data_dir = tmp_path / "t"
    _init(data_dir)
    backup = _terminal("backup", str(tmp_path / "b" / "copy.db"), "--passphrase-stdin",
                       "--data-dir", str(data_dir), input="shop passphrase 1\n")  # fmt: skip
    _terminal(
        "init", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID, "--reinstall",
        "--master-key-file", "-", "--host", "127.0.0.1:9", "--data-dir", str(tmp_path / "r"),
        input=MASTER_KEY.hex() + "\n",
    )  # fmt: skip
    restored = _terminal("restore", str(tmp_path / "b" / "copy.db"), "--passphrase-stdin",
                         "--data-dir", str(tmp_path / "r"),
                         input="shop passphrase 1\n")  # fmt: skip
    assert (backup.exit_code, restored.exit_code) == (0, 0), restored.output
    files = {path.name: _mode(path) for path in data_dir.iterdir()}
    assert _mode(data_dir) == 0o700 and set(files.values()) == {0o600}
    assert (_mode(tmp_path / "b" / "copy.db"), _mode(tmp_path / "r" / "journal.db")) == (
        0o600,
        0o600,
    )
    assert (_mode(tmp_path / "b"), _mode(tmp_path / "r")) == (0o700, 0o700)


@pytest.mark.parametrize("target", ["dir", "journal.db", "terminal.key"])
def test_a_terminal_open_to_other_users_is_refused(tmp_path: Path, target: str) -> None:
    """A terminal directory or file that others can read: exit 2, one line."""
    data_dir = tmp_path / "t"
    _init(data_dir)
    path = data_dir if target == "dir" else data_dir / target
    path.chmod(0o755 if target == "dir" else 0o644)
    result = _terminal("status", "--data-dir", str(data_dir))
    assert (result.exit_code, str(path) in result.output) == (2, True), result.output


def test_an_unresolvable_host_name_says_so(tmp_path: Path) -> None:
    """A host name that does not resolve: not only "not answered", but why."""
    _init(tmp_path, "nohost.invalid:5800")
    result = _terminal("sign-on", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "'nohost.invalid' does not resolve" in " ".join(result.output.split())


def test_a_closed_port_says_nothing_listens(tmp_path: Path) -> None:
    """A host address where nothing listens: connection refused, is the host running?"""
    port = _closed_port()
    _init(tmp_path, f"127.0.0.1:{port}")
    result = _terminal("sign-on", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert f"nothing listens at 127.0.0.1:{port}" in " ".join(result.output.split())


def test_a_host_that_takes_the_connection_and_says_nothing_says_what_to_do(
    tmp_path: Path,
) -> None:
    """A host that accepts and closes without an answer (killed or restarting mid-request):
    one line that says where and what to do, not a bare "sign-on not answered"."""
    import threading  # noqa: PLC0415

    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def accept_and_close() -> None:
        for _ in range(8):  # the driver's bounded reconnects
            try:
                connection, _address = listener.accept()
            except OSError:
                return
            connection.recv(4096)
            connection.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    _init(tmp_path, f"127.0.0.1:{port}")
    try:
        result = _terminal("sign-on", "--data-dir", str(tmp_path))
    finally:
        listener.close()
    line = " ".join(result.output.split())
    expected = (2, True, True)
    assert expected == (
        result.exit_code,
        f"127.0.0.1:{port} took the connection but sent no answer" in line,
        "run the command again" in line,
    ), line
