"""One doctor run: gather → diagnose → (with ``--fix``) repair → gather and diagnose again.

Also the host-side run (``posbatch host doctor TERMINAL_ID``): the same rule
table over the host store's records alone, for a support desk that cannot
reach the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Final

from posbatch.doctor._evidence import Evidence
from posbatch.doctor._gather import (
    ECHO_COUNT_DEFAULT,
    PROBE_ANSWER_WAIT_MS,
    PROBE_BUDGET_MS,
    Progress,
    gather_terminal,
    host_evidence,
)
from posbatch.doctor._repair import Confirm, TerminalSite, run_repairs
from posbatch.doctor._report import Report
from posbatch.doctor._rules import Repair, diagnose
from posbatch.doctor._words import Line

__all__ = ["always_yes", "diagnose_from_host", "examine"]

SOURCE_TERMINAL: Final = "terminal"
SOURCE_HOST: Final = "host"


def always_yes(_repair: Repair, _text: Line) -> bool:
    """The confirmation of ``--yes``."""
    return True


def _quiet(_line: Line) -> None:
    """No progress lines (the library default)."""


def _nothing(_report: Report) -> None:
    """No one to show the diagnosis to before the repairs (the library default)."""


def examine(
    site: TerminalSite,
    *,
    fix: bool = False,
    confirm: Confirm = always_yes,
    host_store: object | None = None,
    address: str = "in-process",
    tcp: tuple[bool, int | None, str | None] | None = None,
    echo_count: int = ECHO_COUNT_DEFAULT,
    monotonic: Callable[[], float] | None = None,
    contact_host: bool = True,
    answer_wait_ms: int = PROBE_ANSWER_WAIT_MS,
    budget_ms: int = PROBE_BUDGET_MS,
    progress: Progress = _quiet,
    on_diagnosis: Callable[[Report], None] = _nothing,
) -> Report:
    """Diagnose the terminal of ``site``; with ``fix``, repair and diagnose again.

    Without ``fix`` nothing changes on the terminal or the host (docs/doctor.md).
    With it, ``on_diagnosis`` is shown the diagnosis and its plan before the first
    repair is put to ``confirm``.
    """

    def gather() -> Evidence:
        return gather_terminal(
            site.terminal,
            site.exchange,
            clock=site.clock,
            address=address,
            tcp=tcp,
            echo_count=echo_count,
            data_dir=site.data_dir,
            backups=site.backups,
            host_store=host_store,
            monotonic=monotonic or time.monotonic,
            contact_host=contact_host,
            answer_wait_ms=answer_wait_ms,
            budget_ms=budget_ms,
            progress=progress,
        )

    evidence = gather()
    diagnosis = diagnose(evidence)
    report = Report(site.clock(), SOURCE_TERMINAL, evidence, diagnosis)
    if not fix or not diagnosis.repairs:
        return report
    on_diagnosis(report)
    closed_before = _closed_batches(site)
    done = run_repairs(site, diagnosis, confirm=confirm, progress=progress, evidence=evidence)
    # A repair that settled a batch without balancing left exception records on the host:
    # the verdict after it says so even when the host store is not at hand (no "healthy"
    # while the back office has money to return or pay).
    after = diagnose(replace(gather(), unbalanced_by_repair=_unbalanced_since(site, closed_before)))
    return Report(site.clock(), SOURCE_TERMINAL, evidence, diagnosis, done, after)


def _closed_batches(site: TerminalSite) -> frozenset[tuple[int, str]]:
    """The journal's closed batches, as (batch number, when closed)."""
    return frozenset(
        (row.batch_no, row.closed_at)
        for row in site.terminal.journal.batches()
        if row.closed_at is not None
    )


def _unbalanced_since(
    site: TerminalSite, closed_before: frozenset[tuple[int, str]]
) -> tuple[tuple[int, str], ...]:
    """The batches closed since ``closed_before`` otherwise than balanced (a restore repair
    may have put another journal in place: batches are told apart by number and close time)."""
    return tuple(
        (row.batch_no, row.close_reason or "")
        for row in site.terminal.journal.batches()
        if row.closed_at is not None
        and (row.batch_no, row.closed_at) not in closed_before
        and row.close_reason != _BALANCED
    )


# How a journal's batch closes when terminal and host totals agree.
_BALANCED: Final = "balanced"


def diagnose_from_host(store: object, terminal_id: str, *, now: datetime) -> Report:
    """``posbatch host doctor TERMINAL_ID``: the diagnosis from the host store alone.

    ``store`` is a :class:`posbatch.host.HostStore`. Causes that need the
    terminal's journal answer "not checked"; nothing is claimed without it.
    """
    records, sources = host_evidence(store, None, terminal_id, now=now)
    evidence = Evidence(
        terminal_id=terminal_id, gathered_at=now, host_records=records, host_sources=sources
    )
    return Report(now, SOURCE_HOST, evidence, diagnose(evidence))
