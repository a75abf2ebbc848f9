"""``posbatch doctor``: a thin shell over posbatch.doctor (no business logic here).

Also :func:`host_doctor_command`, the body of ``posbatch host doctor TERMINAL_ID``
(mounted by the host CLI).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from posbatch.batch.cards import mask_card_numbers
from posbatch.batch.ids import not_registered
from posbatch.cli_support import TERMINAL_ID, count, error_line, shown_ids
from posbatch.doctor._gather import (
    ECHO_COUNT_DEFAULT,
    ECHO_COUNT_MAX,
    PROBE_ANSWER_WAIT_MS,
    PROBE_BUDGET_MS,
    PROBE_TIMEOUT_MS,
    tcp_probe,
)
from posbatch.doctor._net import ANSWER_TIMEOUT_MS_MAX, AnnouncedExchange, TcpExchange
from posbatch.doctor._repair import TerminalSite
from posbatch.doctor._report import (
    Report,
    allowed_ids,
    check_bundle_path,
    json_text,
    read_bundle,
    render,
    render_diagnosis,
    render_repairs,
    write_bundle,
)
from posbatch.doctor._rules import Repair
from posbatch.doctor._run import always_yes, diagnose_from_host, examine
from posbatch.doctor._words import Line
from posbatch.errors import ConfigError, PosbatchError
from posbatch.terminal import DEFAULT_DATA_DIR, Exchange, parse_address

__all__ = ["add_host_commands", "app", "host_doctor", "host_doctor_command"]

app = typer.Typer(add_completion=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _exit_code(report: Report) -> int:
    """0 when nothing is wrong and nothing needs a person (after --fix: nothing left),
    1 otherwise — a warning such as money the back office must return is not healthy."""
    final = report.after if report.after is not None else report.diagnosis
    return 0 if final.healthy else 1


def _output(
    report: Report,
    *,
    bundle: Path | None,
    json_out: bool,
    console: Console,
    shown: bool = False,
) -> None:
    """Print the report (``shown``: its diagnosis was printed already, before the repairs).

    Every way out goes through the card-number net: ``render*`` and ``json_text`` mask the
    report field by field, and the line naming the bundle is masked as a line."""
    if json_out:
        typer.echo(json_text(report))
    elif shown:
        render_repairs(report, console)
    else:
        render(report, console)
    if bundle is not None:
        written, summary = write_bundle(report, bundle)
        message = mask_card_numbers(
            f"support bundle 诊断包: {written} (+ {summary.name})", allowed=allowed_ids(report)
        )
        if json_out:
            typer.echo(message, err=True)
        else:
            console.print(message, markup=False, highlight=False)


class _Ask:
    """``--fix`` without ``--yes``: each step of the plan put to the person, numbered."""

    def __init__(self, *, err: bool) -> None:
        self.err = err
        self.asked = 0
        self.total = 0

    def __call__(self, repair: Repair, text: Line) -> bool:
        del repair
        self.asked += 1
        return typer.confirm(
            mask_card_numbers(
                f"step {self.asked} of {self.total}: {text.en}?\n"
                f"第 {self.asked} 步(共 {self.total} 步):{text.zh}?"
            ),
            default=False,
            err=self.err,
        )


@app.callback(invoke_without_command=True)
def doctor(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The terminal's data directory.")
    ] = DEFAULT_DATA_DIR,
    *,
    fix: Annotated[bool, typer.Option("--fix", help="Do the repairs doctor can do.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before each repair.")] = False,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Write a support bundle (JSON + .txt).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    read: Annotated[
        Path | None, typer.Option("--read", help="Show a support bundle instead.")
    ] = None,
    backup: Annotated[
        list[Path] | None, typer.Option("--backup", help="A journal backup doctor may restore.")
    ] = None,
    host_db: Annotated[
        str | None,
        typer.Option("--host-db", help="The host store's URL, when it is at hand (support desk)."),
    ] = None,
    echo_count: Annotated[
        int,
        typer.Option("--echo-count", parser=count(0, ECHO_COUNT_MAX), help="Echo tests to send."),
    ] = ECHO_COUNT_DEFAULT,
    passphrase_stdin: Annotated[
        bool,
        typer.Option(
            "--passphrase-stdin",
            help="Read a --backup's passphrase from standard input (else a hidden prompt asks, "
            "when the backup was taken before a reinstall). Never on the command line.",
        ),
    ] = False,
    wait: Annotated[
        int,
        typer.Option(
            "--wait",
            help="Seconds each echo test waits for the host's answer (all of them together "
            f"wait at most {PROBE_BUDGET_MS // PROBE_ANSWER_WAIT_MS} times this).",
            parser=count(1, ANSWER_TIMEOUT_MS_MAX // 1000),
        ),
    ] = PROBE_ANSWER_WAIT_MS // 1000,
) -> None:
    """Diagnose and repair settlement failures (批次号错误 and the rest).

    Checks the batch number, the terminal, the network and the host's view, names the
    cause with its evidence, and with --fix does the repairs it can: it shows the
    diagnosis and the plan first, then asks before each step. Without --fix nothing
    changes on the terminal or the host. Every wait for the host has a deadline and a
    progress line on standard error.

    Example: posbatch doctor --data-dir ./posbatch-terminal --fix --bundle support.json
    """
    console = Console()
    if read is not None:
        try:
            report = read_bundle(read)
        except PosbatchError as exc:
            typer.echo(error_line(str(exc), allowed=shown_ids(exc)), err=True)
            raise typer.Exit(2) from exc
        _output(report, bundle=None, json_out=json_out, console=console)
        raise typer.Exit(_exit_code(report))
    store = None
    site = None
    status = Console(stderr=True, highlight=False)
    asker = _Ask(err=json_out)
    shown = False

    def progress(line: Line) -> None:
        # A progress line may quote the journal (the host's address): through the net too.
        text = mask_card_numbers(f"{line.en} / {line.zh}")
        status.print(f"[dim]… {escape(text)}[/]", soft_wrap=True)

    def show_plan(report: Report) -> None:
        """--fix: the diagnosis and its plan, before the first question."""
        nonlocal shown
        asker.total = len(report.diagnosis.repairs)
        link.announce = progress
        if yes and json_out:
            return
        render_diagnosis(report, status if json_out else console)
        shown = not json_out

    link = _Link()
    try:
        if bundle is not None:  # before anything is looked at or repaired
            check_bundle_path(bundle)
        for path in backup or ():
            if not path.is_file():
                raise ConfigError(f"backup file {path} not found")
        if host_db is not None:
            from posbatch.host import HostStore  # noqa: PLC0415 - only with --host-db

            _refuse_a_password_in(host_db)
            store = HostStore.open(  # doctor reads: it never migrates, never makes a store
                host_db, migrate=False, create=False
            )
        site = TerminalSite.open(
            data_dir,
            link,
            clock=_now,
            backups=tuple(backup or ()),
            backup_passphrase=lambda: _backup_passphrase(passphrase_stdin),
        )
        address_text = site.terminal.state().host_address
        tcp = None
        try:
            host, port = parse_address(address_text)
        except ConfigError:
            host, port = "", 0  # no TCP host configured: the network is not checked
        if host:
            link.target = TcpExchange(host, port)
            progress(
                Line(
                    f"connecting to the host at {address_text} "
                    f"(waiting at most {PROBE_TIMEOUT_MS // 1000} s)",
                    f"正在连接主机 {address_text}(最多等待 {PROBE_TIMEOUT_MS // 1000} 秒)",
                )
            )
            tcp = tcp_probe(host, port)
        report = examine(
            site,
            fix=fix,
            confirm=always_yes if yes else asker,
            host_store=store,
            address=address_text,
            tcp=tcp,
            echo_count=echo_count,
            contact_host=bool(host),
            answer_wait_ms=wait * 1000,
            budget_ms=wait * 1000 * (PROBE_BUDGET_MS // PROBE_ANSWER_WAIT_MS),
            progress=progress,
            on_diagnosis=show_plan,
        )
    except PosbatchError as exc:
        typer.echo(error_line(str(exc), allowed=shown_ids(exc)), err=True)
        raise typer.Exit(2) from exc
    finally:
        if site is not None:
            site.close()
        if store is not None:
            store.close()
    _output(report, bundle=bundle, json_out=json_out, console=console, shown=shown)
    raise typer.Exit(_exit_code(report))


def _refuse_a_password_in(url: str) -> None:
    """A --host-db URL that carries a password is refused: ``ps`` shows it to every user."""
    import sqlalchemy as sa  # noqa: PLC0415 - only with --host-db

    try:
        password = sa.engine.make_url(url).password
    except sa.exc.ArgumentError:
        return  # not a URL at all: opening it says so
    if password:
        raise ConfigError(
            "--host-db with a password in it is refused: a command line is visible to every "
            "user of this machine (ps); leave the password out of the URL and give it in "
            "PGPASSWORD or ~/.pgpass"
        )


def _backup_passphrase(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        return str(typer.prompt("backup passphrase 备份密码", hide_input=True))
    except (typer.Abort, EOFError) as exc:
        raise ConfigError(
            "no backup passphrase given: type it at the prompt, or pipe it with --passphrase-stdin"
        ) from exc


class _Link:
    """The terminal's link; its target is set once the journal says where the host is.
    Once the repairs start (``announce`` set), each wait gets its progress lines."""

    def __init__(self) -> None:
        self.target: Exchange | None = None
        self.announce: Callable[[Line], None] | None = None

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        if self.target is None:
            return None
        if self.announce is not None:
            return AnnouncedExchange(self.target, self.announce)(frame, timeout_ms)
        return self.target(frame, timeout_ms)


def add_host_commands(host_app: typer.Typer) -> None:
    """Mount ``posbatch host doctor`` (the host's side of doctor) on ``posbatch host``.

    The arrow runs one way: doctor reads the host's store, the host never imports doctor.
    """
    host_app.command("doctor")(host_doctor)


def host_doctor(
    terminal_id: Annotated[str, typer.Argument(parser=TERMINAL_ID)],
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", help="Where the SQLite file, the PAN key and the KEK live."),
    ] = Path("posbatch-data"),
    bundle: Annotated[
        Path | None, typer.Option(help="Also write a support bundle to this file.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Diagnose a terminal's batch trouble from the host's records alone (posbatch.doctor).

    Example: posbatch host doctor 10000001 --bundle 10000001.json
    """
    from posbatch.host.cli import open_store  # noqa: PLC0415 - keep doctor importable without host

    try:
        if bundle is not None:
            check_bundle_path(bundle)
        with open_store(data_dir) as store:
            code = host_doctor_command(store, terminal_id, bundle=bundle, json_out=json_out)
    except PosbatchError as exc:
        typer.echo(error_line(str(exc), allowed=shown_ids(exc)), err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


def host_doctor_command(
    store: object,
    terminal_id: str,
    *,
    bundle: Path | None = None,
    json_out: bool = False,
    console: Console | None = None,
) -> int:
    """``posbatch host doctor TERMINAL_ID``: print (and bundle) the host-side diagnosis.

    ``store`` is an open :class:`posbatch.host.HostStore`; returns the exit code
    (0 nothing wrong, 1 a failure, 2 unknown terminal).
    """
    from posbatch.host import HostStore  # noqa: PLC0415 - keep doctor importable without host

    if not isinstance(store, HostStore):
        raise ConfigError("host doctor needs a HostStore")
    if store.terminal(terminal_id) is None:  # what was typed: a card number too, maybe
        typer.echo(error_line(not_registered(terminal_id)), err=True)
        return 2
    report = diagnose_from_host(store, terminal_id, now=_now())
    _output(report, bundle=bundle, json_out=json_out, console=console or Console())
    return _exit_code(report)
