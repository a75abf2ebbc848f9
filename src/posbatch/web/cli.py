"""``posbatch backoffice …``: run the console, add its users (a thin shell, no rules here)."""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import ssl
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from posbatch.backoffice import BackOffice, parse_cutoff
from posbatch.backoffice._audit import Actor
from posbatch.backoffice._staff import PASSWORD_CHARS_MAX, check_new_user
from posbatch.cli_support import (
    MERCHANT_ID,
    error_line,
    listening_socket,
    log_to_stderr,
    parse_listen,
    serve_uvicorn,
    shown_ids,
)
from posbatch.errors import ConfigError, PosbatchError
from posbatch.host.cli import DATA_DIR_DEFAULT, open_store

__all__ = ["app", "console_config", "serve_console"]

LISTEN_DEFAULT: Final = "127.0.0.1:8080"
CONNECTIONS_MAX: Final = 200  # uvicorn answers 503 above this many at once
KEEP_ALIVE_S: Final = 5
HEADER_BYTES_MAX: Final = 16 * 1024  # h11's limit on a request's head
BACKLOG: Final = 128

app = typer.Typer(
    help="The back office: a web console over the host's store.",
    no_args_is_help=True,
    add_completion=False,
)

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="The host's data directory (or POSBATCH_DATABASE_URL).")
]


def _fail(exc: PosbatchError) -> typer.Exit:
    typer.echo(error_line(str(exc), allowed=shown_ids(exc)), err=True)
    return typer.Exit(2)


def serve_console(
    office: BackOffice,
    host: str,
    port: int,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    trust_proxy: bool = False,
    on_listening: object = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve the console until SIGINT/SIGTERM (uvicorn), on a socket bound here (or
    ``sock``, bound by the caller) so that port 0 becomes a real port, printed as one
    JSON line."""
    from posbatch.web import create_app  # noqa: PLC0415

    # Connections made once the URL is printed wait in the backlog, not fail.
    if sock is None:
        sock = listening_socket(host, port, backlog=BACKLOG)
    bound_port = sock.getsockname()[1]
    scheme = "https" if tls_cert else "http"
    typer.echo(json.dumps({"event": "listening", "url": f"{scheme}://{host}:{bound_port}/"}))
    if callable(on_listening):
        on_listening(bound_port)
    config = console_config(
        create_app(office), tls_cert=tls_cert, tls_key=tls_key, trust_proxy=trust_proxy
    )
    # uvicorn set up its loggers above, with handlers of their own: an error it logs (an
    # exception's message, a traceback) goes through the card-number net as ours do.
    log_to_stderr(logging.WARNING, loggers=("uvicorn", "uvicorn.error", "uvicorn.access"))
    serve_uvicorn(config, sock)


def console_config(
    app: Any,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    trust_proxy: bool = False,
    read_s: float | None = None,
    per_address_max: int | None = None,
    connections_max: int = CONNECTIONS_MAX,
) -> Any:
    """The ``uvicorn.Config`` the console is served with (tests serve it the same way):
    bounded heads and bodies, connections, a request's arrival (``read_s``) and the
    connections one client address holds (``per_address_max``; none behind a trusted
    proxy, which bounds its own clients) — see :mod:`posbatch.serving`."""
    import uvicorn  # noqa: PLC0415 - keep `posbatch --help` fast

    from posbatch.serving import (  # noqa: PLC0415
        CONNECTIONS_PER_ADDRESS_MAX,
        REQUEST_READ_S,
        bounded_protocol,
    )

    if per_address_max is None and not trust_proxy:
        per_address_max = CONNECTIONS_PER_ADDRESS_MAX
    return uvicorn.Config(
        app,
        http=bounded_protocol(
            read_s=REQUEST_READ_S if read_s is None else read_s,
            per_address_max=per_address_max,
        ),
        log_level="warning",
        access_log=False,
        proxy_headers=trust_proxy,
        forwarded_allow_ips="127.0.0.1" if trust_proxy else "",
        ssl_certfile=None if tls_cert is None else str(tls_cert),
        ssl_keyfile=None if tls_key is None else str(tls_key),
        limit_concurrency=connections_max,
        timeout_keep_alive=KEEP_ALIVE_S,
        h11_max_incomplete_event_size=HEADER_BYTES_MAX,
        server_header=False,
    )


def check_tls_pair(cert: Path, key: Path) -> None:
    """Load the certificate and its key now, before anything listens: uvicorn loads them
    only after the URL is printed, and a missing file then ended in ``error: No such file or
    directory`` naming neither file. Neither file's content is ever shown."""
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise ConfigError(f"{option} {path}: no such file")
    try:
        # A key under a passphrase would make OpenSSL ask for it on the terminal: refuse it.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert, key, password=lambda: b""
        )
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise ConfigError(
            f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its "
            f"private key without a passphrase ({reason})"
        ) from None


@app.command("serve")
def serve(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = LISTEN_DEFAULT,
    data_dir: DataDir = DATA_DIR_DEFAULT,
    *,
    cutoff: Annotated[
        str | None,
        typer.Option(
            help="Fix the trading day's cut-off (日切), Beijing time HH:MM. Without it the "
            "console follows the acquirer's schedule (`posbatch host set-cutoff`, 23:00 unless "
            "set), as the statements do."
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's private key.")] = None,
    trust_proxy: Annotated[
        bool,
        typer.Option(help="Behind a TLS proxy on 127.0.0.1: trust its X-Forwarded-* headers."),
    ] = False,
) -> None:
    """Run the back office console (it can run while the host serves on the same store).

    Example: posbatch backoffice serve --listen 127.0.0.1:8080 --data-dir ./posbatch-data
    """
    log_to_stderr(logging.WARNING)
    try:
        host, port = parse_listen(listen)
        day_end = None if cutoff is None else parse_cutoff(cutoff)
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("--tls-cert and --tls-key go together")
        if tls_cert is not None and tls_key is not None:
            check_tls_pair(tls_cert, tls_key)
        store = open_store(data_dir)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    try:
        serve_console(
            BackOffice(store, cutoff=day_end), host, port,
            tls_cert=tls_cert, tls_key=tls_key, trust_proxy=trust_proxy,
        )  # fmt: skip
    except PosbatchError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()


def _read_password() -> str:
    """From a hidden prompt (twice) on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ")
        return first
    line = sys.stdin.readline(PASSWORD_CHARS_MAX + 2)
    return line.rstrip("\r\n")


@app.command("add-user")
def add_user(
    name: str,
    role: Annotated[str, typer.Option(help="ops, support or merchant.")],
    merchant_id: Annotated[
        str | None,
        typer.Option(parser=MERCHANT_ID, help="The merchant a merchant user sees (only theirs)."),
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Add a console user; the password comes from a hidden prompt or standard input.

    Example: printf '%s\\n' "$PASSWORD" | posbatch backoffice add-user alice --role ops
    """
    try:
        password = _read_password()
        check_new_user(name, role, password, merchant_id=merchant_id)  # before a store is made
        with open_store(data_dir, create=True) as store:  # the first user may come first
            office = BackOffice(store)
            actor = _cli_actor()
            office.staff.add_user(
                actor, name, role, password, merchant_id=merchant_id, now=datetime.now(UTC)
            )
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"user {name} ({role}{' of ' + merchant_id if merchant_id else ''}) added")


@app.command("set-password")
def set_password(name: str, data_dir: DataDir = DATA_DIR_DEFAULT) -> None:
    """Give a console user a new password (hidden prompt or standard input); their sessions
    end and their lock is cleared.

    Example: posbatch backoffice set-password alice
    """
    try:
        password = _read_password()
        with open_store(data_dir) as store:
            BackOffice(store).staff.set_password(
                _cli_actor(), name, password,
                now=datetime.now(UTC),
            )  # fmt: skip
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"user {name}: new password set")


@app.command("unlock-address")
def unlock_address(
    address: Annotated[
        str | None,
        typer.Argument(help="The client address (an IPv6 address or its /64); none: list them."),
    ] = None,
    data_dir: DataDir = DATA_DIR_DEFAULT,
) -> None:
    """Let console logins from a client address start again (its own throttle and each
    name's lock from it); without an address, list the addresses a lock holds.

    For an office behind one address (NAT): one person's or a stranger's failures lock
    everyone there, ops included, until the lock ends.

    Example: posbatch backoffice unlock-address 203.0.113.7
    """
    now = datetime.now(UTC)
    try:
        with open_store(data_dir) as store:
            staff = BackOffice(store).staff
            if address is None:
                locked = staff.locked_addresses(now=now)
                for held in locked:
                    until = (
                        f"address locked until {held.locked_until:%Y-%m-%d %H:%M:%S} UTC"
                        if held.locked_until is not None
                        else "address not locked"
                    )
                    typer.echo(f"{held.address}: {until}; {held.names_locked} name(s) locked")
                if not locked:
                    typer.echo("no client address is locked")
                return
            where = staff.unlock_address(_cli_actor(), address, now=now)
    except PosbatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"address {where}: logins from it may start again")


def _cli_actor() -> Actor:
    """Who acts from the host's command line: the login name, role ``cli``."""
    return Actor(f"cli:{_login_name()}", "cli", "local")


def _login_name() -> str:
    try:
        return os.getlogin()
    except OSError:
        return str(os.getuid())
