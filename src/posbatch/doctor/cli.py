"""``posbatch doctor``: a thin shell over posbatch.doctor (no business logic here).

Also :func:`host_doctor_command`, the body of ``posbatch host doctor TERMINAL_ID``
(mounted by the host CLI).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posbatch.doctor._checks import Line
from posbatch.doctor._codec import to_json
from posbatch.doctor._gather import ECHO_COUNT_DEFAULT, tcp_probe
from posbatch.doctor._net import TcpExchange
from posbatch.doctor._repair import TerminalSite
from posbatch.doctor._report import Report, read_bundle, render, scrub, write_bundle
from posbatch.doctor._rules import Outcome, Repair
from posbatch.doctor._run import always_yes, diagnose_from_host, examine
from posbatch.errors import ConfigError, PosbatchError
from posbatch.terminal import DEFAULT_DATA_DIR, Exchange, parse_address

__all__ = ["app", "host_doctor_command"]

app = typer.Typer(add_completion=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _exit_code(report: Report) -> int:
    """0 when nothing is wrong (after --fix: nothing left), 1 otherwise."""
    final = report.after if report.after is not None else report.diagnosis
    return 0 if final.outcome == Outcome.HEALTHY else 1


def _output(report: Report, *, bundle: Path | None, json_out: bool, console: Console) -> None:
    if json_out:
        allowed = frozenset({report.evidence.terminal_id})
        typer.echo(
            scrub(json.dumps(to_json(report), ensure_ascii=False, indent=2), allowed=allowed)
        )
    else:
        render(report, console)
    if bundle is not None:
        written, summary = write_bundle(report, bundle)
        message = f"support bundle 诊断包: {written} (+ {summary.name})"
        if json_out:
            typer.echo(message, err=True)
        else:
            console.print(message)


def _ask(repair: Repair, text: Line) -> bool:
    del repair
    return typer.confirm(f"{text.en} / {text.zh}?", default=False)


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
        int, typer.Option("--echo-count", help="Echo tests to send.")
    ] = ECHO_COUNT_DEFAULT,
) -> None:
    """Diagnose and repair settlement failures (批次号错误 and the rest).

    Checks the batch number, the terminal, the network and the host's view, names the
    cause with its evidence, and with --fix does the repairs it can (each confirmed).

    Example: posbatch doctor --data-dir ./posbatch-terminal --fix --bundle support.json
    """
    console = Console()
    if read is not None:
        try:
            report = read_bundle(read)
        except PosbatchError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        _output(report, bundle=None, json_out=json_out, console=console)
        raise typer.Exit(_exit_code(report))
    store = None
    site = None
    try:
        if host_db is not None:
            from posbatch.host import HostStore  # noqa: PLC0415 - only with --host-db

            store = HostStore.open(host_db, create=False)  # reading: never makes a store
        link = _Link()
        site = TerminalSite.open(data_dir, link, clock=_now, backups=tuple(backup or ()))
        address_text = site.terminal.state().host_address
        tcp = None
        try:
            host, port = parse_address(address_text)
        except ConfigError:
            host, port = "", 0  # no TCP host configured: the network is not checked
        if host:
            link.target = TcpExchange(host, port)
            tcp = tcp_probe(host, port)
        report = examine(
            site,
            fix=fix,
            confirm=always_yes if yes else _ask,
            host_store=store,
            address=address_text,
            tcp=tcp,
            echo_count=echo_count,
            contact_host=bool(host),
        )
    except PosbatchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        if site is not None:
            site.close()
        if store is not None:
            store.close()
    _output(report, bundle=bundle, json_out=json_out, console=console)
    raise typer.Exit(_exit_code(report))


class _Link:
    """The terminal's link; its target is set once the journal says where the host is."""

    def __init__(self) -> None:
        self.target: Exchange | None = None

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        return None if self.target is None else self.target(frame, timeout_ms)


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
    if store.terminal(terminal_id) is None:
        typer.echo(f"error: terminal {terminal_id} is not registered", err=True)
        return 2
    report = diagnose_from_host(store, terminal_id, now=_now())
    _output(report, bundle=bundle, json_out=json_out, console=console or Console())
    return _exit_code(report)
