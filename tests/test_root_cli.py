"""The command line: every command is documented with an example (sqlite-utils style), and
a command whose output is cut (`posbatch ... | head`) ends quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from posbatch.cli import app
from posbatch.cli_support import listening_socket
from posbatch.demo import invoked_as, next_steps
from posbatch.errors import ConfigError
from posbatch.host.sealing import KEK_ENV, KEK_FILE_ENV
from posbatch.storage import DATABASE_URL_ENV
from testbed import MERCHANT_ID, TERMINAL_ID

SRC = Path(__file__).resolve().parents[1] / "src"


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every leaf command below ``command``, with its full name (a group that runs by
    itself, like ``checkout``, is a leaf)."""
    children = getattr(command, "commands", None)
    if not children:
        return [(" ".join(path), command)]
    found: list[tuple[str, Any]] = []
    for name, child in sorted(children.items()):
        found.extend(_commands(child, (*path, name)))
    return found


def test_every_command_has_an_example() -> None:
    """A command whose help has no `Example:` line is undocumented: the test names it
    (`checkout`, a group that runs by itself, was not looked at)."""
    root = typer.main.get_command(app)
    undocumented = [
        name for name, command in _commands(root) if "Example:" not in (command.help or "")
    ]
    assert [] == undocumented


def test_the_demo_command_exists() -> None:
    """`posbatch demo` is what `make demo` runs."""
    names = [name for name, _ in _commands(typer.main.get_command(app))]
    assert "demo" in names


def _run(
    argv: list[str], *, cwd: Path, stdout: int, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``python <argv>`` in a process, on this checkout's source, with no shared store
    and ``env`` added: its exit status and standard error."""
    unshared = {
        name: value
        for name, value in os.environ.items()
        if name not in {DATABASE_URL_ENV, KEK_ENV, KEK_FILE_ENV}
    }
    process = subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=dict(unshared, **(env or {}), PYTHONPATH=str(SRC)),
        stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    return process.returncode, process.stderr


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--help"], {}),
        (["simulate", "--help"], {}),  # printed inside the OneLineErrors group, by rich
        (["simulate", "--help"], {"TYPER_USE_RICH": "0"}),  # by click: was "error: Broken pipe"
        # typer.echo after the store committed: it said "error: Broken pipe" of a job done
        (["host", "add-terminal", "--merchant-id", MERCHANT_ID, "--terminal-id", TERMINAL_ID],
         {}),
    ],
)  # fmt: skip
def test_a_cut_output_ends_quietly(tmp_path: Path, argv: list[str], env: dict[str, str]) -> None:
    """`posbatch ... | true`: the reader is gone before the command writes, and the
    command ends with exit status 1 and nothing on standard error (no error line, no
    traceback, no "Exception ignored" from the final flush)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        expected = (1, "")
        assert expected == _run(["-m", "posbatch", *argv], cwd=tmp_path, stdout=write_end, env=env)
    finally:
        os.close(write_end)


# A command of a OneLineErrors group whose socket's peer has gone, printing as it goes.
SOCKET_PEER_GONE = """
import socket
import typer
from posbatch.cli_support import OneLineErrors
app = typer.Typer(cls=OneLineErrors)
@app.command()
def send() -> None:
    typer.echo("sending")
    mine, peer = socket.socketpair()
    peer.close()
    mine.sendall(b"x")
@app.command()
def other() -> None:
    pass
app(["send"])
"""


def test_a_broken_pipe_on_a_socket_is_still_an_error(tmp_path: Path) -> None:
    """A socket's broken pipe is no cut output (standard output is still read): one
    error line, exit status 2. In a process: the check needs real descriptors."""
    expected = (2, "error: Broken pipe\n")
    assert expected == _run(["-c", SOCKET_PEER_GONE], cwd=tmp_path, stdout=subprocess.PIPE)


def test_the_demo_names_the_command_the_user_can_type(tmp_path: Path) -> None:
    """After `make demo` the program is `.venv/bin/posbatch`, not on PATH: the demo's
    closing hint said `posbatch demo --serve`, which a newcomer's shell does not find."""
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    program = venv_bin / "posbatch"
    program.write_text("")
    from_make = invoked_as(str(program), None, tmp_path)
    on_path = invoked_as(str(program), str(program), tmp_path)
    elsewhere = invoked_as(str(program), "/usr/bin/posbatch", tmp_path / ".venv")
    assert (from_make, on_path, elsewhere) == (".venv/bin/posbatch", "posbatch", "bin/posbatch")
    hint = "\n".join(next_steps(from_make))
    assert ".venv/bin/posbatch demo --serve" in hint
    assert "README.md" in hint


def test_a_port_past_65535_is_a_config_error_not_an_overflow() -> None:
    """socket.bind raises OverflowError (not OSError) for a port past 65535: it went up as a
    traceback from `posbatch demo --serve --port 99999`."""
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1:99999"):
        listening_socket("127.0.0.1", 99999, backlog=1)


@pytest.mark.parametrize("command", ["doctor", "checkout"])
def test_a_command_without_sub_commands_does_not_promise_one(command: str) -> None:
    """`posbatch doctor --help` said `Usage: posbatch doctor [OPTIONS] COMMAND [ARGS]...`
    and listed no command: a newcomer looked for the sub-command to type."""
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "120"})
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert (0, f"Usage: posbatch {command} [OPTIONS]") == (result.exit_code, usage.strip())


def test_version_prints_the_installed_version() -> None:
    """`posbatch --version` prints the version from the package metadata (there was none:
    "No such option: --version")."""
    from importlib.metadata import version  # noqa: PLC0415

    result = CliRunner().invoke(app, ["--version"])
    assert (0, f"posbatch {version('posbatch')}\n") == (result.exit_code, result.output)
