"""The ``posbatch`` command: a thin shell over the library.

Each component owns its sub-command in ``posbatch/<component>/cli.py`` (a
``typer.Typer`` named ``app``); this module only mounts them.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="posbatch",
    help="POS card payments whose batches always settle (CUP-style ISO 8583).",
    no_args_is_help=True,
    add_completion=False,
)

# (module, sub-command name): mounted when the module exists in this build.
_SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("posbatch.host.cli", "host"),
    ("posbatch.terminal.cli", "terminal"),
    ("posbatch.catalog.cli", "catalog"),
    ("posbatch.doctor.cli", "doctor"),
)

for _module_name, _name in _SUBCOMMANDS:
    try:
        _module = importlib.import_module(_module_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module_name:
            raise
        continue
    app.add_typer(_module.app, name=_name)


@app.callback()
def _root() -> None:
    """POS card payments whose batches always settle (CUP-style ISO 8583)."""


@app.command()
def demo() -> None:
    """Run the main job a new user should see.

    Example: posbatch demo
    """
    from posbatch.demo import run_demo  # noqa: PLC0415 - keep `posbatch --help` fast

    raise typer.Exit(run_demo())


def main() -> None:
    app()
