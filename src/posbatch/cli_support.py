"""What every ``posbatch`` command shares: one-line errors, and secrets read off the command line.

One-line errors. :class:`OneLineErrors` is the click group class of the
``posbatch`` command and of its sub-commands: a :class:`~posbatch.errors.PosbatchError`
that escapes a command — a store that does not open, a bad value found by the
library — is printed as ``error: <what is wrong>`` on one line, exit status 2,
never a traceback. An :class:`OSError` that no layer translated (a path that
cannot be used) is printed the same way. Commands keep only the try/except that adds
something a person needs (a different exit status, a hint).

A cut output is no error. When the reader of standard output or standard error has
gone (``posbatch host fees | head -1``), the next write fails with a broken pipe
(Python ignores SIGPIPE); the command then ends quietly, exit status 1 as click and
rich do, with the cut stream pointed at ``/dev/null`` so that the interpreter's final
flush does not fail again (the Python docs' recipe, "Note on SIGPIPE"). A broken pipe
on a socket or a file a command opened is still an error line: only a stream whose
reader is really gone is silenced.

Secrets off the command line. A command line is visible to every user of the
machine (``ps``, ``/proc/PID/cmdline``) and lands in shell history, so a key or
a card number never travels on it: keys are read from a file or standard input
(:func:`read_secret_file`), card numbers from a hidden prompt or standard input
(:func:`read_secret_line`). A script pipes the secret in: that is the way for
scripts and tests.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import logging
import os
import re
import select
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

import typer

# typer vendors click (typer._click) and exports none of its usage errors but BadParameter.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError
from typer.core import TyperGroup

from posbatch.batch.addresses import PORT_MAX, split_host_port
from posbatch.batch.cards import mask_card_numbers, quoted_as_typed, ungrouped
from posbatch.batch.ids import check_batch_no, check_merchant_id, check_stan, check_terminal_id
from posbatch.errors import ConfigError, PosbatchError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "BATCH_NO",
    "CARD_PROMPT",
    "GC_THRESHOLDS",
    "MERCHANT_ID",
    "SECRET_BYTES_MAX",
    "STAN",
    "STDIN",
    "TERMINAL_ID",
    "CountError",
    "IdError",
    "OneLineErrors",
    "count",
    "one_line",
    "parse_listen",
    "print_table",
    "read_card_number",
    "read_secret_file",
    "read_secret_line",
    "refuse_secret_option",
    "serve_uvicorn",
    "settle_the_heap",
]

_T = TypeVar("_T")

STDIN: Final = "-"
# A key file or a piped secret longer than this is not one (a wrong file was given).
SECRET_BYTES_MAX: Final = 4096
EXIT_BAD_INPUT: Final = 2
# Standard output or error cut (their reader gone): what click, rich and the Python docs use.
EXIT_OUTPUT_CUT: Final = 1


class CardNumberFilter(logging.Filter):
    """The last net under every log line a server writes: card numbers masked to their
    first 6 and last 4 (:func:`posbatch.batch.cards.mask_card_numbers`), in the message and
    in a traceback, whatever the code that logged them put there."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_card_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_card_numbers(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_card_numbers(record.stack_info)
        return True


class ForeignLinesAsJson(logging.Filter):
    """A record of a logger outside posbatch (a driver's, a library's) written as ONE JSON
    line, as the host writes its own: ``{"event": "library", "logger": …, "level": …,
    "message": …}``, the message and any traceback's last line joined into one line.

    A server's standard error is read by machines, a line at a time; psycopg's warning
    when PostgreSQL drops a connection ("error ignored terminating <psycopg.Pipeline>:
    consuming input failed: server closed the connection unexpectedly …") came over
    three lines of plain text. Put it after :class:`CardNumberFilter` (the message is
    masked first)."""

    def __init__(self, own_prefix: str = "posbatch") -> None:
        super().__init__()
        self._own_prefix = own_prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == self._own_prefix or record.name.startswith(self._own_prefix + "."):
            return True
        text = one_line_text(record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            last = record.exc_text.strip().splitlines()[-1:]
            text = f"{text}: {mask_card_numbers(last[0].strip())}" if last else text
        line = {
            "event": "library",
            "logger": record.name,
            "level": record.levelname.lower(),
            "message": text,
        }
        record.msg, record.args = json.dumps(line, ensure_ascii=False), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def one_line_text(text: str) -> str:
    """``text``'s lines joined with one space (blank ones dropped)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def log_to_stderr(level: int | str, *, loggers: tuple[str, ...] = ()) -> None:
    """Log lines (the message only) to standard error at ``level``, through
    :class:`CardNumberFilter`; ``loggers`` with handlers of their own (uvicorn's) get it too."""
    logging.basicConfig(stream=sys.stderr, format="%(message)s", level=level)
    net = CardNumberFilter()
    for name in ("", *loggers):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, CardNumberFilter) for f in handler.filters):
                handler.addFilter(net)


def log_foreign_lines_as_json() -> None:
    """Every handler of the root logger writes other loggers' records as one JSON line
    (:class:`ForeignLinesAsJson`), after the card-number net: for a server whose standard
    error is JSON lines (``host serve``)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ForeignLinesAsJson) for f in handler.filters):
            handler.addFilter(ForeignLinesAsJson())


def listening_socket(host: str, port: int, *, backlog: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening, for a server to serve on.

    Bound here, before any server starts, so that a port in use or an address that is not
    this machine's is one line (ConfigError: exit 2), and port 0 becomes a real port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a response's head and body go out at once instead of
    # the body waiting ~40 ms for the client's delayed ACK of the head (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:  # OverflowError: a port past 65535
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from exc
    sock.listen(backlog)
    return sock


def parse_listen(listen: str) -> tuple[str, int]:
    """A server's ``--listen HOST:PORT`` → (host, port), the one rule of every server: HOST
    may be empty (127.0.0.1) or an IPv6 address in brackets, PORT is 0..65535 in ASCII
    digits (0 picks a free one). ConfigError otherwise. Cut as a client's address is
    (:mod:`posbatch.batch.addresses`)."""
    address = split_host_port(listen, port_min=0)
    if address is None:
        raise ConfigError(f"--listen must be HOST:PORT with a port 0..{PORT_MAX}, not {listen!r}")
    host, port = address
    return host or "127.0.0.1", port


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: its lines joined (a driver's message may hold several)."""
    return one_line_text(str(exc)) or type(exc).__name__


def _reader_gone(stream: TextIO) -> bool:
    """Whether ``stream`` is a pipe or socket whose reader has gone (poll says so at once,
    without writing). False for anything without a file descriptor (a test's capture)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # None, closed, or no descriptor
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def output_cut(exc: OSError) -> bool:
    """Whether ``exc`` is a broken pipe because standard output or standard error lost
    its reader, not a socket's or a file's that a command opened."""
    return exc.errno == errno.EPIPE and any(map(_reader_gone, (sys.stdout, sys.stderr)))


def end_quietly() -> typer.Exit:
    """The exit for a cut output: each cut stream now writes to /dev/null, so the
    interpreter's final flush of what is still buffered does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            if _reader_gone(stream):
                os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
    return typer.Exit(EXIT_OUTPUT_CUT)


# A value click took for an option because it starts with "-": a negative number.
_NEGATIVE_NUMBER: Final = re.compile(r"-\.?[0-9]")


def shown_ids(exc: BaseException) -> frozenset[str]:
    """The ids an error names that its raiser read from a store (never typed): an error
    line shows them whole (see :class:`~posbatch.errors.PosbatchError`)."""
    return exc.shown_ids if isinstance(exc, PosbatchError) else frozenset()


def error_line(text: str, *, allowed: frozenset[str] = frozenset()) -> str:
    """``error: <text>``, card numbers in it masked to their first 6 and last 4 (but the
    ``allowed`` ids): an error may quote what was typed (an amount field given a card
    number)."""
    return f"error: {mask_card_numbers(text, allowed=allowed)}"


class IdError(typer.BadParameter):
    """An id refused as it was typed (terminal id, merchant id, batch number, STAN): its own
    one line (:mod:`posbatch.batch.ids`), the same whichever command or layer refused it —
    without click's "Invalid value for …" before it."""


def _id_parser(check: Callable[[str], _T]) -> Callable[[object], _T]:
    def parse(text: object) -> _T:
        if not isinstance(text, str):  # a default, already a value (click converts it too)
            return text  # type: ignore[return-value]
        try:
            return check(text)
        except ConfigError as exc:
            raise IdError(str(exc)) from exc

    return parse


# A count typed has at most this many digits: int() of thousands of digits is a ValueError
# (Python's 4300-digit limit), and no count of ours is near 10**18.
COUNT_DIGITS_MAX: Final = 18


class CountError(IdError):
    """A count refused as it was typed (``--limit``, ``--days``, a quantity): the one line
    for every count option, its name first — click's "Input should be a valid integer" said
    nothing of digits, and Python's ``int()`` took "١٢" as 12 for some options."""

    def __init__(self, typed: str, rule: str) -> None:
        super().__init__(rule)
        self.typed = typed
        self.rule = rule

    def line(self) -> str:
        """``--limit '0' must be a whole number in digits 0-9, from 1 to 100000``."""
        name = self.param.opts[0] if self.param is not None and self.param.opts else "count"
        if self.param is not None and getattr(self.param, "param_type_name", "") != "option":
            name = (self.param.name or name).replace("_", " ")
        return f"{name}{quoted_as_typed(self.typed)} {self.rule}"


def count(
    least: int | None = 0, most: int | None = None, *, signed: bool = False
) -> Callable[[object], int]:
    """``typer.Option(parser=count(1, ROWS_MAX))``: the one parser of every count a command
    takes — ASCII digits only (a leading ``-`` when ``signed``), from ``least`` to ``most``
    (None: no bound here; the library checks its own)."""
    if least is not None and most is not None:
        where = f"from {least} to {most}"
    elif least:
        where = f"{least} or more"
    elif most is not None:
        where = f"at most {most}"
    else:
        where = ""
    kind = "a whole number in digits 0-9" + (", a - before it to take away" if signed else "")
    rule = f"must be {kind}" + (f", {where}" if where else "")

    def parse(text: object) -> int:
        if not isinstance(text, str):  # a default, already a value (click converts it too)
            return text  # type: ignore[return-value]
        body = text[1:] if signed and text.startswith("-") else text
        if not (body.isascii() and body.isdigit()) or len(body) > COUNT_DIGITS_MAX:
            raise CountError(text, rule)
        value = int(text)
        if (least is not None and value < least) or (most is not None and value > most):
            raise CountError(text, rule)
        return value

    return parse


# ``typer.Argument(parser=STAN)``: every id a command takes goes through these.
TERMINAL_ID: Final = _id_parser(check_terminal_id)
MERCHANT_ID: Final = _id_parser(check_merchant_id)
BATCH_NO: Final = _id_parser(check_batch_no)
STAN: Final = _id_parser(check_stan)


def usage_error_line(exc: UsageError, typed: list[str]) -> str:
    """A usage error (a value click or a command refused, an unknown option or command) as
    one error line that names the command's help. ``typed`` are the arguments the command
    was given: click names only the first character of "-0.5" (as the option "-0")."""
    if isinstance(exc, NoSuchOption) and _NEGATIVE_NUMBER.match(exc.option_name):
        number = next((a for a in typed if a.startswith(exc.option_name)), exc.option_name)
        text = (
            f"{number} is refused: amounts must be positive yuan like 12.50, and "
            "counts, STANs and batch numbers positive whole numbers (no sign)"
        )
    elif isinstance(exc, CountError):
        text = one_line(ClickException(exc.line()))
    elif isinstance(exc, IdError):
        text = one_line(ClickException(exc.message))
    else:
        text = one_line(ClickException(exc.format_message()))
    if exc.ctx is not None:
        text += f" (see: {exc.ctx.command_path} --help)"
    return error_line(text)


class OneLineErrors(TyperGroup):
    """A typer group whose commands end in one line and exit 2 on a PosbatchError or a usage
    error, and end quietly when their output is cut. Every error line goes through the card
    number net (:func:`error_line`)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:  # typer.core.Context: the root's own options and arguments are parsed here
        typed = list(args)
        try:
            return super().make_context(info_name, args, parent, **extra)
        except NoArgsIsHelpError:  # help, not an error
            raise
        except UsageError as exc:
            typer.echo(usage_error_line(exc, typed), err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc

    def invoke(self, ctx: Any) -> Any:  # typer.core.Context (typer vendors click)
        typed = list(ctx.args)  # the sub-command's arguments (invoke empties ctx.args)
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:  # help, not an error
            raise
        except UsageError as exc:  # a sub-command's parameters, or no such command
            typer.echo(usage_error_line(exc, typed), err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc
        except PosbatchError as exc:
            typer.echo(error_line(one_line(exc), allowed=shown_ids(exc)), err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc
        except OSError as exc:  # a path or address no layer translated: still the input's
            if output_cut(exc):  # `posbatch ... | head`: the reader has what it wanted
                raise end_quietly() from exc
            where = f" ({exc.filename})" if exc.filename else ""
            typer.echo(error_line(f"{exc.strerror or one_line(exc)}{where}"), err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc


def refuse_secret_option(value: str | None, *, option: str, instead: str) -> None:
    """A secret given on the command line is refused, whatever it is, with the safe way."""
    if value is not None:
        raise ConfigError(
            f"{option} is refused: a command line is visible to every user of this machine "
            f"(ps); use {instead}"
        )


def read_secret_file(path: str, *, what: str) -> str:
    """The secret text held in the file ``path``, or on standard input for ``-`` (stripped)."""
    if path == STDIN:
        text = sys.stdin.read(SECRET_BYTES_MAX + 1)
        source = "standard input"
    else:
        file = Path(path)
        try:
            with file.open(encoding="ascii") as handle:
                text = handle.read(SECRET_BYTES_MAX + 1)
        except FileNotFoundError:
            raise ConfigError(f"no {what} file at {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the {what} file {path}: {one_line(exc)}") from exc
        source = path
    if len(text) > SECRET_BYTES_MAX:
        raise ConfigError(f"{source} holds more than a {what}")
    if not text.strip():
        raise ConfigError(f"{source} holds no {what}")
    return text.strip()


def read_secret_line(prompt: str) -> str:
    """One secret line: a hidden prompt on a terminal, else the first line of standard input."""
    if sys.stdin.isatty():
        text = str(typer.prompt(prompt, hide_input=True))
    else:
        text = sys.stdin.readline(SECRET_BYTES_MAX + 1)
        if len(text) > SECRET_BYTES_MAX:
            raise ConfigError(f"standard input holds more than a {prompt}")
    if not text.strip():
        raise ConfigError(f"no {prompt} given (type it at the prompt, or pipe it in)")
    return text.strip()


CARD_PROMPT: Final = "card number 卡号"


def read_card_number() -> str:
    """A card number from the hidden prompt or standard input (:func:`read_secret_line`),
    typed whole or in its printed groups (:func:`~posbatch.batch.cards.ungrouped`)."""
    return ungrouped(read_secret_line(CARD_PROMPT))


# A table is measured at this width to learn the least it needs (rich clamps a measurement
# to the width it is given).
TABLE_MEASURE_WIDTH_MAX: Final = 10_000


def print_table(console: Console, table: Table) -> None:
    """``table`` as it is when it fits the console; else one block of "name value" pairs
    per row. A table wider than the console cuts its columns to "…" — at 80 columns the
    batch_no and STAN of a trace, and in a file (``trace > recall.txt``, 80 columns too)
    for good — where a recall needs every one of them whole."""
    from rich.measure import Measurement  # noqa: PLC0415 - rich only for the commands that print
    from rich.text import Text  # noqa: PLC0415

    unbounded = console.options.update_width(TABLE_MEASURE_WIDTH_MAX)
    if Measurement.get(console, unbounded, table).minimum <= console.width:
        console.print(table)
        return
    if table.title:
        console.print(table.title, highlight=False)
    headers = [str(column.header) for column in table.columns]
    cells = [[str(cell) for cell in column.cells] for column in table.columns]
    room = max(1, console.width - 2)
    for index in range(table.row_count):
        lines: list[str] = []
        for header, values in zip(headers, cells, strict=True):
            if not values[index]:
                continue
            pair = f"{header} {values[index]}"
            if lines and Text(f"{lines[-1]}   {pair}").cell_len <= room:
                lines[-1] = f"{lines[-1]}   {pair}"
            else:
                lines.append(pair)
        for line in lines:
            console.print(Text("  " + line), overflow="fold")
        if index < table.row_count - 1:
            console.print()


# The cyclic garbage collector's thresholds for a long-running command (gc.set_threshold):
# its young generation is collected every 10,000 net allocations instead of CPython's 700,
# the older ones as before relative to it.
GC_THRESHOLDS: Final = (10_000, 10, 10)


def settle_the_heap() -> None:
    """For a long-running command (a host serving, a simulation), once everything it runs
    on is made (the modules, a store and its engine): the collector never looks at those
    objects again, and runs less often.

    Measured (docs/host.md, "The garbage collector"): without this, each full collection
    of the host walked every object of every imported module, ≈ 77 ms with the event loop
    stopped — an answer late by that much; a simulation spent ≈ 15 % of its CPU collecting.
    Only garbage in cycles waits for the collector; everything else is freed when its
    last reference goes. Worker processes forked afterwards inherit it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve_uvicorn(config: Any, sock: socket.socket) -> None:
    """Serve ``config`` (a ``uvicorn.Config``) on ``sock`` until SIGTERM or SIGINT, then return:
    the command exits 0 after a graceful shutdown (uvicorn's own ``Server.run`` re-raises the
    signal after its shutdown, and the process ended with -15)."""
    import asyncio  # noqa: PLC0415 - only the servers need these
    import signal  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the signals are this loop's handlers below

        def stop(self) -> None:
            self.should_exit = True

    server = Server(config)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, server.stop)
        await server.serve(sockets=[sock])

    asyncio.run(run())
