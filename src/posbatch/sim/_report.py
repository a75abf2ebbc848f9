"""What a person reads: the closing table, a violation with its minimal trace.

Presentation only (rich renderables and plain lines); the figures come from
:class:`~posbatch.sim._result.RunTotals` and the trace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from rich.table import Table

from posbatch.sim._checker import INVARIANTS, Violation
from posbatch.sim._faults import FaultKind
from posbatch.sim._result import RunTotals
from posbatch.sim._trace import EventKind, TraceEvent

__all__ = ["MINIMAL_TRACE_LINES_MAX", "closing_table", "minimal_trace", "replay_command"]

MINIMAL_TRACE_LINES_MAX: Final = 60


def replay_command(seed: int, options: str) -> str:
    return f"posbatch simulate --seed {seed} --replay {options}".rstrip()


def closing_table(totals: RunTotals, *, wall_s: float) -> Table:
    """The closing table of ``posbatch simulate``."""
    table = Table(title=f"posbatch simulate — {totals.seeds} seeds", show_lines=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    table.add_column("detail")

    def row(what: str, count: int | str, detail: str = "") -> None:
        table.add_row(what, str(count), detail)

    rate = totals.transactions / wall_s if wall_s > 0 else 0.0
    row("transactions rung up", totals.transactions, _counts(totals.operations))
    row("  outcomes", sum(totals.outcomes.values()), _counts(totals.outcomes))
    row("frames exchanged", totals.frames, f"{rate:,.0f} transactions per wall second")
    row("faults injected", sum(totals.faults.values()), "")
    for kind in FaultKind:
        row(f"  {kind.value}", totals.faults.get(kind, 0))
    row("batch-number errors met", totals.batch_errors, _counts(totals.batch_error_causes))
    row("  resolved", sum(totals.resolved.values()), _counts(totals.resolved))
    row("doctor runs (--fix)", sum(totals.doctor_runs.values()), _counts(totals.doctor_runs))
    row("doctor runs (diagnosis only)", sum(totals.diagnoses.values()), _counts(totals.diagnoses))
    row("settlements", sum(totals.settlements.values()), _counts(totals.settlements))
    row("exceptions (差错) recorded", sum(totals.exceptions.values()), _counts(totals.exceptions))
    row("workload kinds met", sum(totals.workload.values()), "")
    for name, count in sorted(totals.workload.items()):
        row(f"  {name}", count)
    style = "green" if not totals.violations else "bold red"
    failed = ", ".join(str(seed) for seed in totals.failed_seeds[:10])
    table.add_row(
        "invariant violations",
        f"[{style}]{len(totals.violations)}[/]",
        f"seeds {failed}"
        if failed
        else "invariants 1–6 held after every day, and 9 at every diagnosis",
    )
    return table


def _counts(counter: Mapping[Any, int]) -> str:
    items = sorted(counter.items(), key=lambda item: (-item[1], str(item[0])))
    return ", ".join(f"{name}: {count}" for name, count in items)


def minimal_trace(events: Sequence[TraceEvent], violation: Violation) -> list[str]:
    """The cashier actions of the violation's day that touched its STAN (or batch).

    Events are grouped by the action that caused them (an ``op`` event opens a
    group); a group is kept when one of its lines names the violation's STAN
    (or, for a batch-level violation, its batch number), or holds a fault.
    """
    groups: list[list[TraceEvent]] = [[]]
    for event in events:
        if event.kind is EventKind.OPERATION and groups[-1]:
            groups.append([])
        groups[-1].append(event)
    needles: tuple[str, ...] = ()
    if violation.stan is not None:
        needles = (f"stan={violation.stan} ", f"STAN {violation.stan:06d}")
    elif violation.batch_no is not None:
        needles = (f"batch_no={violation.batch_no} ", f"batch {violation.batch_no:06d}")
    kept: list[str] = []
    for group in groups:
        lines = [event.render() for event in group]
        wanted = any(needle in line for line in lines for needle in needles) or any(
            event.kind is EventKind.FAULT for event in group
        )
        if wanted or not needles:
            kept.extend(lines)
    if len(kept) > MINIMAL_TRACE_LINES_MAX:
        skipped = len(kept) - MINIMAL_TRACE_LINES_MAX
        kept = [f"… {skipped} earlier lines (see --replay)", *kept[-MINIMAL_TRACE_LINES_MAX:]]
    return kept


def invariant_names() -> list[str]:
    return [f"{number}. {text}" for number, text in INVARIANTS.items()]
