"""``posbatch simulate``: many seeded runs with faults, a progress bar, a closing table.

A thin shell over :mod:`posbatch.sim`: it parses options, loops over the
seeds with :func:`~posbatch.sim.run_seeds`, and prints. A violation is printed
at once with its seed, day, terminal and minimal trace — obtained by running
that seed again with its trace kept, which also proves the failure
reproduces (the digests must match).
"""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from posbatch.cli_support import BATCH_NO, count, settle_the_heap
from posbatch.errors import ConfigError
from posbatch.sim._faults import PROFILES, profile_named
from posbatch.sim._report import closing_table, minimal_trace, replay_command
from posbatch.sim._result import RunTotals, SeedResult
from posbatch.sim._world import JOBS_MAX, SimConfig, replay, run_seeds

__all__ = ["app", "simulate"]

SEEDS_MAX = 1_000_000
VIOLATIONS_PRINTED_MAX = 5

app = typer.Typer(
    name="simulate",
    help="Deterministic fault-injection simulation of host and terminals.",
    add_completion=False,
)


def _options(config: SimConfig, faults: str) -> str:
    text = (
        f"--terminals {config.terminals} --days {config.days} "
        f"--transactions {config.transactions} --faults {faults}"
    )
    if config.start_batch_no != 1:
        text += f" --start-batch-no {config.start_batch_no}"
    return text


def _print_violations(console: Console, result: SeedResult, config: SimConfig, faults: str) -> None:
    replayed, trace = replay(result.seed, config)
    same = "reproduced" if replayed.digest == result.digest else "DID NOT REPRODUCE"
    for violation in result.violations[:VIOLATIONS_PRINTED_MAX]:
        console.print(
            f"[bold red]VIOLATION[/] seed {result.seed}, day {violation.day}, "
            f"terminal {violation.terminal_id} ({same}):"
        )
        console.print(f"  {violation.render()}", markup=False, highlight=False)
        events = trace.events_of(violation.terminal_id, day=violation.day)
        for line in minimal_trace(events, violation):
            console.print(f"    {line}", markup=False, highlight=False)
        console.print(f"  replay: {replay_command(result.seed, _options(config, faults))}")


@app.command()
def simulate(  # noqa: PLR0917 - typer options are parameters
    terminals: int = typer.Option(
        10, parser=count(1), help="Terminals trading against the one host."
    ),
    days: int = typer.Option(3, parser=count(1), help="Trading days per seed."),
    transactions: int = typer.Option(
        30, parser=count(0), help="Transactions per terminal and day."
    ),
    seeds: int = typer.Option(1, parser=count(1, SEEDS_MAX), help="How many seeds: --seed and on."),
    seed: int = typer.Option(1, parser=count(0), help="The first seed."),
    faults: str = typer.Option("default", help=f"Fault profile: {', '.join(PROFILES)}."),
    start_batch_no: int = typer.Option(
        1, parser=BATCH_NO, metavar="BATCH_NO", help="First batch number (999990 to see it wrap)."
    ),
    replay_seed: bool = typer.Option(
        False, "--replay", help="Run --seed once and print the failing terminal's trace."
    ),
    terminal: str | None = typer.Option(
        None, help="With --replay: print this terminal's trace even if nothing failed."
    ),
    jobs: int = typer.Option(1, parser=count(1, JOBS_MAX), help="Worker processes running seeds."),
) -> None:
    """Trade simulated days with faults injected everywhere; check invariants 1–6 and 8 nightly.

    Example: posbatch simulate --terminals 100 --days 5 --seeds 200 --seed 1 --faults default
    """
    console = Console()
    if terminal is not None and not replay_seed:
        raise typer.BadParameter("--terminal goes with --replay (it picks the trace to print)")
    try:
        config = SimConfig(
            terminals=terminals,
            days=days,
            transactions=transactions,
            faults=profile_named(faults),
            start_batch_no=start_batch_no,
            keep_trace=False,
        )
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if replay_seed:
        raise typer.Exit(_replay(console, seed, config, terminal))
    totals = RunTotals()
    started = time.perf_counter()
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[violations]} violations"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    settle_the_heap()  # before the workers fork: they inherit it
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("seeds", total=seeds, violations=0)
        for result in run_seeds(range(seed, seed + seeds), config, jobs=jobs):
            totals.add(result)
            if result.violations:
                progress.stop()
                _print_violations(console, result, config, faults)
                progress.start()
            progress.update(task, advance=1, violations=len(totals.violations))
    wall_s = time.perf_counter() - started
    console.print(closing_table(totals, wall_s=wall_s))
    console.print(
        f"{totals.seeds} seeds in {wall_s:.1f} s: {totals.seeds / wall_s:.2f} seeds/s, "
        f"{totals.transactions / wall_s:,.0f} simulated transactions per wall second"
    )
    raise typer.Exit(1 if totals.violations else 0)


def _replay(console: Console, seed: int, config: SimConfig, terminal: str | None) -> int:
    result, trace = replay(seed, config)
    console.print(f"seed {seed}: digest {result.digest}, {result.transactions} transactions")
    if not result.violations:
        console.print("[green]invariants 1–6 held after every day[/]")
        if terminal is not None:
            for event in trace.events_of(terminal):
                console.print(event.render(), markup=False, highlight=False)
        return 0
    violation = result.violations[0]
    console.print(f"[bold red]{len(result.violations)} violation(s)[/]; the first:")
    console.print(violation.render(), markup=False, highlight=False)
    shown = terminal or violation.terminal_id
    console.print(f"trace of terminal {shown}, day {violation.day}:")
    for event in trace.events_of(shown, day=violation.day):
        console.print(event.render(), markup=False, highlight=False)
    return 1
