"""``posbatch demo``: the main job a new user sees (``make demo``).

An embedded host on SQLite and four shops' terminals over real loopback
sockets trade a day in which the four common causes of batch-number errors
(批次号错误) are injected — a typo at manual entry, a terminal fault, the
network, a mismatch after a host-side change — each met, diagnosed by doctor
and resolved on screen; then every batch settles balanced and the report
proves nothing was lost. The day itself lives in :mod:`posbatch.sim._demo`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from rich.console import Console

__all__ = ["run_demo", "serve_demo"]

DEMO_USER: Final = "demo"
ONE_TIME_PASSWORD_BYTES: Final = 12


def invoked_as(argv0: str, on_path: str | None, cwd: Path) -> str:
    """How the user can type this program again: ``posbatch`` when that name on PATH is
    this very program, else the path it was started by (``.venv/bin/posbatch`` after
    ``make demo``, whose venv is not on PATH) — a hint saying ``posbatch`` to someone
    without it on PATH ends in "command not found"."""
    started = Path(argv0)
    if on_path is not None and Path(on_path).resolve() == started.resolve():
        return "posbatch"
    if started.name != "posbatch":  # python -m posbatch, a test runner: the name is fine
        return "posbatch"
    try:
        return str(started.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(started.resolve())


def next_steps(command: str) -> list[str]:
    """What the demo's last lines tell a newcomer to try next (console markup)."""
    return [
        f"to look at this day in the back office (web console): [bold]{command} demo --serve[/]",
        "next: the tour in README.md runs a host, a terminal, doctor, the back office, the "
        f"catalog and clearing yourself, step by step; [bold]{command} --help[/] lists every "
        "command",
    ]


def run_demo(console: Console | None = None, *, keep_dir: Path | None = None) -> int:
    """Run the demo day; 0 when every cause was resolved and every check held."""
    from posbatch.sim._demo import run_main_job  # noqa: PLC0415 - keep `posbatch --help` fast

    code = run_main_job(console, keep_dir=keep_dir)
    if keep_dir is None:
        command = invoked_as(sys.argv[0], shutil.which("posbatch"), Path(os.getcwd()))
        for line in next_steps(command):
            (console or Console()).print(line)
    return code


def serve_demo(listen_host: str, port: int, console: Console | None = None) -> int:
    """Run the demo day in a kept directory, then serve the console over its store on
    ``listen_host`` (loopback) with a user ``demo`` (ops) whose password is made now,
    printed once and stored only as its argon2 hash."""
    from posbatch.backoffice import Actor, BackOffice  # noqa: PLC0415
    from posbatch.cli_support import listening_socket  # noqa: PLC0415
    from posbatch.errors import ConfigError  # noqa: PLC0415
    from posbatch.host.cli import open_store  # noqa: PLC0415
    from posbatch.web.cli import BACKLOG, serve_console  # noqa: PLC0415

    out = console or Console()
    # The port first: a port in use is said before the day is traded, with what to do.
    try:
        sock = listening_socket(listen_host, port, backlog=BACKLOG)
    except ConfigError as exc:
        raise ConfigError(f"{exc}: choose another with --port (0: any free port)") from exc
    with sock:  # closed however the day or the console ends
        data_dir = Path(tempfile.mkdtemp(prefix="posbatch-demo-"))
        code = run_demo(out, keep_dir=data_dir)
        if code != 0:
            return code
        password = secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)
        with open_store(data_dir) as store:
            office = BackOffice(store)
            office.staff.add_user(
                Actor("cli:demo", "cli", "local"), DEMO_USER, "ops", password, now=datetime.now(UTC)
            )

            def listening(bound_port: int) -> None:
                out.rule("the back office 后台")
                out.print(f"open [bold]http://{listen_host}:{bound_port}/[/] and log in as")
                out.print(
                    f"  name [bold]{DEMO_USER}[/]   password [bold]{password}[/]"
                    "  (made for this run)"
                )
                out.print(f"the day's store is kept in {data_dir}; Ctrl-C stops the console")

            serve_console(office, listen_host, port, on_listening=listening, sock=sock)
        return 0
