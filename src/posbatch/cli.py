"""The ``posbatch`` command: a thin shell over the library.

Each component owns its commands in ``posbatch/<component>/cli.py``; this
module only mounts them::

    posbatch host ...       the acquirer host (POSP)            posbatch.host.cli
    posbatch terminal ...   the terminal engine                 posbatch.terminal.cli
    posbatch catalog ...    products and lots (商品批次号)        posbatch.catalog.cli
    posbatch checkout       the cashier's interactive checkout  posbatch.catalog.cli
    posbatch doctor         diagnose and repair settlement      posbatch.doctor.cli
    posbatch clearing ...   fees, arrival dates, statements     posbatch.host.clearing_cli
    posbatch simulate       deterministic fault simulation      posbatch.sim.cli
    posbatch backoffice ... the web console                     posbatch.web.cli
    posbatch demo           the main job a new user sees        posbatch.demo
"""

from __future__ import annotations

from typing import Annotated

import typer

from posbatch.batch.addresses import PORT_MAX
from posbatch.catalog import cli as catalog_cli
from posbatch.cli_support import OneLineErrors, count
from posbatch.demo import run_demo, serve_demo
from posbatch.doctor import cli as doctor_cli
from posbatch.host import clearing_cli
from posbatch.host import cli as host_cli
from posbatch.sim import cli as sim_cli
from posbatch.terminal import cli as terminal_cli
from posbatch.web import cli as web_cli

__all__ = ["app", "main"]

app = typer.Typer(
    name="posbatch",
    help="POS card payments whose batches always settle (CUP-style ISO 8583).",
    no_args_is_help=True,
    add_completion=False,
    cls=OneLineErrors,  # a PosbatchError from any command: one line, exit 2
)
app.add_typer(host_cli.app, name="host")
app.add_typer(terminal_cli.app, name="terminal")
app.add_typer(catalog_cli.app, name="catalog")
# Commands, not groups: their usage said `posbatch doctor [OPTIONS] COMMAND [ARGS]...`
# while they have no sub-command (the typer apps of the modules stay, for their tests).
app.command("checkout")(catalog_cli.checkout)
app.command("doctor")(doctor_cli.doctor)
app.add_typer(clearing_cli.app, name="clearing")
clearing_cli.add_host_commands(host_cli.app)
doctor_cli.add_host_commands(host_cli.app)
app.command("simulate")(sim_cli.simulate)
app.add_typer(web_cli.app, name="backoffice")


def _version() -> str:
    """posbatch's version as installed (the package metadata), "unknown" when it is not."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("posbatch")
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"posbatch {_version()}")
        raise typer.Exit


@app.callback()
def _root(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print posbatch's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """POS card payments whose batches always settle (CUP-style ISO 8583)."""


@app.command()
def demo(
    serve: Annotated[
        bool, typer.Option(help="Then keep the day's store and show it in the web console.")
    ] = False,
    port: Annotated[
        int,
        typer.Option(parser=count(0, PORT_MAX), help="The console's port on 127.0.0.1 (0: any)."),
    ] = 8080,
) -> None:
    """Run the main job a new user should see.

    Example: posbatch demo --serve
    """
    if serve:
        raise typer.Exit(serve_demo("127.0.0.1", port))
    raise typer.Exit(run_demo())


def main() -> None:
    app()
