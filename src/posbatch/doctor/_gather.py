"""Gatherers: the thin shell that turns a terminal journal, the host's answers and the host
store into :class:`~posbatch.doctor._evidence.Evidence`.

Nothing here judges; nothing here repairs, and nothing here changes what it
looks at: a diagnosis run twice on the same state gives the same evidence.
Gathering from the host sends echo tests only (0820 / 60.3 301), and:

- an echo changes nothing on the host (no keys, no last STAN, no batch — the
  host's rule, docs/host.md) while its answer carries the host's view of the
  terminal in field 63 (current batch and its state, the last closed batch and
  how it closed, ``T=`` the last STAN recorded in the current batch) and the
  host's clock in fields 12/13: everything a sign-on used to tell doctor,
  without the new keys and the moved "last STAN" a sign-on leaves behind;
- its STAN is borrowed, not taken (:meth:`Terminal.probe_flow`): the journal
  is not written, so its STAN stays where the terminal left it (an echo that
  took the next STANs would hide the very 94 a copied-back journal is about
  to meet);
- every wait has a deadline (:data:`PROBE_ANSWER_WAIT_MS` per echo,
  :data:`PROBE_BUDGET_MS` for all of them) and is announced through
  ``progress`` before it starts.

The journal and its backups are read without migrating or writing them.
"""

from __future__ import annotations

import errno
import functools
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from posbatch.batch.model import CardType, Kind, beijing
from posbatch.batch.terminal_batch import SettleStep
from posbatch.batch.totals import BatchTally, tally
from posbatch.batch.txn_lifecycle import TransactionStatus
from posbatch.doctor._accounting import BATCH_ROWS_READ_MAX
from posbatch.doctor._evidence import (
    TCP_OTHER,
    TCP_REFUSED,
    TCP_TIMEOUT,
    TCP_UNREACHABLE,
    TCP_UNRESOLVED,
    BackupInfo,
    BatchAdvance,
    Evidence,
    HostBatch,
    HostEntry,
    HostException,
    HostRecords,
    HostSources,
    HostView,
    JournalAnswer,
    JournalEvidence,
    LocalBatchState,
    ManualEdit,
    NetworkProbe,
    RecoveryEvent,
    SoftwareUpdate,
)
from posbatch.doctor._words import Line, count
from posbatch.errors import JournalIntegrityError, PosbatchError
from posbatch.terminal import (
    EventRow,
    Exchange,
    Journal,
    Terminal,
    TxnRow,
    TxnState,
    run_flow,
    schema_head,
)
from posbatch.wire import DETAIL_LAST_STAN, AdminResponse, decode_batch_detail, decode_detail

if TYPE_CHECKING:
    from posbatch.host.store import BatchInfo, TransactionInfo

__all__ = [
    "ECHO_COUNT_DEFAULT",
    "PROBE_ANSWER_WAIT_MS",
    "PROBE_BUDGET_MS",
    "PROBE_TIMEOUT_MS",
    "RECOVERY_EVENTS_KEPT_MAX",
    "Progress",
    "backup_info",
    "gather_terminal",
    "host_evidence",
    "host_records",
    "journal_evidence",
    "tcp_probe",
]

# Echo round trips per doctor run: enough to see loss, few enough to be quick.
ECHO_COUNT_DEFAULT: Final = 5
ECHO_COUNT_MAX: Final = 20
# How long a probe waits for a TCP connect.
PROBE_TIMEOUT_MS: Final = 5_000
# How long each echo waits for its answer, and all the echoes of one run together: a host
# that accepts and never answers keeps doctor no longer than this.
PROBE_ANSWER_WAIT_MS: Final = 5_000
PROBE_BUDGET_MS: Final = 15_000
_UNREACHABLE_ERRNOS: Final = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
)
# Timeouts and duplicates older than this are history, not a cause.
RECENT_WINDOW: Final = timedelta(hours=24)
# Recovery events copied into the evidence (the newest ones).
RECOVERY_EVENTS_KEPT_MAX: Final = 30
# Host batches read back for the host's view.
HOST_BATCHES_READ_MAX: Final = 20
# Host batches whose transactions are compared with the journal, one by one (the open
# one and those closed within RECENT_WINDOW; the newest first): where two devices
# trading under one terminal ID show.
SOURCE_BATCHES_MAX: Final = 10
Progress = Callable[[Line], None]
# How the host says its last batch closed (field 63 Q=, docs/host.md).
_CLOSE_REASONS: Final = frozenset({"BALANCED", "UPLOADED", "ADVANCED"})


def _quiet(_line: Line) -> None:
    """No progress lines (the library default)."""


# Events that say what recovery (the engine's or doctor's) did.
_RECOVERY_TYPES: Final = frozenset(
    {
        "recovery",
        "batch_renumbered",
        "batch_closed",
        "closed_by_host",
        "reversed",
        "unanswered",
        "manual_batch_no",
        "manual_batch_no_refused",
        "restored",
        "reinstalled",
        "duplicate_stan",
        "resync",
        "settle_resumed",
        "software_update",
        "doctor",
    }
)


def _parse_at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _schema_versions(journal: Journal) -> tuple[str, str]:
    """(the journal's Alembic revision, the head this software ships)."""
    return (journal.schema_revision() or "none", schema_head())


@functools.cache  # the installed package's, fixed for the process
def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("posbatch")
    except PackageNotFoundError:
        return "unknown"


def _stan_history(journal: Journal) -> tuple[int, int]:
    """(STANs skipped, backward jumps) over the state snapshots of the journal."""
    gaps = 0
    backward = 0
    previous: int | None = None
    for stan in journal.stan_history():
        if previous is not None and stan != previous:
            if stan > previous + 1:
                gaps += stan - previous - 1
            elif stan < previous and not (previous > 999_000 and stan < 1_000):
                backward += 1
        previous = stan
    return gaps, backward


def _manual(
    events: Sequence[EventRow], since: datetime | None
) -> tuple[tuple[ManualEdit, ...], tuple[ManualEdit, ...]]:
    accepted: list[ManualEdit] = []
    refused: list[ManualEdit] = []
    last_renumber_from: int | None = None
    for event in events:
        at = _parse_at(event.at)
        if event.type == "batch_renumbered":
            last_renumber_from = _int(event.details.get("old_batch_no"))
        elif event.type == "manual_batch_no":
            typed = _int(event.details.get("typed"))
            if typed is not None:
                old = last_renumber_from if last_renumber_from is not None else typed
                accepted.append(ManualEdit(at, old, typed))
        elif event.type == "manual_batch_no_refused":
            typed = _int(event.details.get("typed"))
            host = _int(event.details.get("host_batch_no"))
            if typed is not None and host is not None and (since is None or at > since):
                refused.append(ManualEdit(at, host, typed))
    return tuple(accepted), tuple(refused)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _updates(events: Sequence[EventRow]) -> tuple[SoftwareUpdate, ...]:
    updates = []
    for event in events:
        if event.type != "software_update":
            continue
        d = event.details
        numbers = [
            _int(d.get(key))
            for key in ("batch_no_before", "batch_no_after", "stan_before", "stan_after")
        ]
        if any(n is None for n in numbers):
            continue
        b0, b1, s0, s1 = (n or 0 for n in numbers)
        updates.append(
            SoftwareUpdate(
                _parse_at(event.at),
                str(d.get("from_version", "?")),
                str(d.get("to_version", "?")),
                b0,
                b1,
                s0,
                s1,
            )
        )
    return tuple(updates)


def _read_only(path: Path) -> Journal:
    """A journal file opened for reading only: never migrated, never written (a backup
    must stay byte for byte what it was)."""
    engine = sa.create_engine(f"sqlite:///file:{path.resolve()}?mode=ro&uri=true")
    return Journal(engine)


def backup_info(path: Path, journal: Journal | None = None) -> BackupInfo | None:
    """What a journal backup file holds (its batch, STAN, last write), or None if unreadable.

    With ``journal`` (the one in use): whether the backup's hash chain holds the
    journal's whole chain and goes on past its end — the journal is then an older
    copy of the backup's history (copied back over a newer one).
    """
    if not path.is_file():
        return None
    try:
        backup = _read_only(path)
        try:
            backup.verify()
            state = backup.state()
            batch = backup.current_batch()
            events = backup.events()
            extends = None
            beyond = 0
            if journal is not None and journal.last_seq:
                mine = journal.chain_hash(journal.last_seq)
                extends = (
                    backup.last_seq > journal.last_seq
                    and mine is not None
                    and backup.chain_hash(journal.last_seq) == mine
                )
                beyond = backup.last_seq - journal.last_seq if extends else 0
        finally:
            backup.engine.dispose()
    except (PosbatchError, sa.exc.SQLAlchemyError):
        return None
    taken = _parse_at(events[-1].at) if events else _parse_at(state.created_at)
    return BackupInfo(taken, batch.batch_no, state.stan, str(path), extends, beyond)


def journal_evidence(
    journal: Journal,
    *,
    now: datetime,
    data_dir: Path | None = None,
    backups: Sequence[Path] = (),
) -> JournalEvidence:
    """Read-only facts of ``journal`` (no row is written)."""
    try:
        journal.verify()
        chain_intact, first_bad_row = True, None
    except JournalIntegrityError as exc:
        chain_intact, first_bad_row = False, exc.first_bad_row
    state = journal.state()
    batches = journal.batches()
    current = journal.current_batch()
    rows = journal.transactions(current.batch_id)
    events = journal.events()
    counted = [row for row in rows if row.counted]
    net = sum(row.amount_fen if row.kind == Kind.SALE.value else -row.amount_fen for row in counted)
    step = current.settle_step
    batch_state = {
        SettleStep.OPEN: LocalBatchState.OPEN,
        SettleStep.FLUSHING: LocalBatchState.SETTLING,
        SettleStep.SETTLING: LocalBatchState.SETTLING,
        SettleStep.UPLOADING: LocalBatchState.UPLOADING,
        SettleStep.ENDING: LocalBatchState.UPLOADING,
        SettleStep.CLOSED: LocalBatchState.CLOSED,
    }[step]
    closed = [batch for batch in batches if batch.settle_step == SettleStep.CLOSED]
    last_closed_at = max((_parse_at(b.closed_at) for b in closed if b.closed_at), default=None)
    all_rows = journal.transactions()
    gaps, _backward = _stan_history(journal)
    # Network troubles count from the last day, or from doctor's last repair if later:
    # what a repair has dealt with is history, not a cause any more.
    repaired = [
        _parse_at(e.at) for e in events if e.type == "doctor" and e.details.get("status") == "done"
    ]
    # A typed number the host refused changed nothing: it is history after the next
    # settlement, or after doctor's repair (its sign-on took the host's number; the batch
    # may stay open until the shop's end of day).
    manual_since = [*repaired, last_closed_at] if last_closed_at is not None else repaired
    accepted, refused = _manual(events, max(manual_since, default=None))
    schema, expected = _schema_versions(journal)
    free = shutil.disk_usage(data_dir).free if data_dir is not None and data_dir.exists() else None
    first_batch = batches[0] if batches else current
    renumbered_first = next((e for e in events if e.type == "batch_renumbered"), None)
    initial_batch_no = (
        _int(renumbered_first.details.get("old_batch_no"))
        if renumbered_first is not None and first_batch.batch_id == 1
        else first_batch.batch_no
    )
    reinstalled = any(e.type == "reinstalled" for e in events)
    since = max([now - RECENT_WINDOW, *repaired])
    recent = [e for e in events if _parse_at(e.at) > since]
    fresh_start = not closed and (initial_batch_no == 1 or reinstalled)
    backup_found = [info for info in (backup_info(p, journal) for p in backups) if info is not None]
    recovery = tuple(_recovery_event(e) for e in events if e.type in _RECOVERY_TYPES)[
        -RECOVERY_EVENTS_KEPT_MAX:
    ]
    # A request left unanswered is history once the engine has dealt with it (reversed, or
    # resent and answered): only the ones still outstanding point to the network.
    outstanding_ids = {row.txn_id for row in all_rows if row.state in TxnState.OUTSTANDING}
    unanswered = [e for e in recent if e.type == "unanswered"]
    recovered = [e for e in unanswered if _int(e.details.get("txn_id")) not in outstanding_ids]
    restores = [e for e in events if e.type == "restored"]
    upload_total = len(counted) if batch_state == LocalBatchState.UPLOADING else 0
    settled_by_host = [
        (b.batch_no, _parse_at(b.closed_at))
        for b in closed
        if b.closed_at is not None and b.close_reason in _SETTLED_BY_HOST_ANSWER
    ]
    counted_tally = tally(
        (Kind(row.kind), row.amount_fen, CardType(row.card_type)) for row in counted
    )
    return JournalEvidence(
        terminal_id=state.terminal_id,
        merchant_id=state.merchant_id,
        now=now,
        batch_no=current.batch_no,
        batch_state=batch_state,
        last_stan=state.stan,
        approved_count=len(counted),
        approved_net_fen=net,
        pending_reversals=sum(1 for row in all_rows if row.state in TxnState.OUTSTANDING),
        unanswered_requests=len(unanswered),
        duplicate_answers=max(
            sum(1 for e in recent if e.type == "duplicate_stan"),
            sum(
                1
                for row in all_rows
                if row.response_code == "94" and _parse_at(row.updated_at) > since
            ),
        ),
        settlement_request_unanswered=step == SettleStep.SETTLING,
        upload_records_total=upload_total,
        upload_records_acknowledged=sum(1 for row in counted if row.uploaded)
        if upload_total
        else 0,
        stan_gaps=gaps,
        settled_batches=len(closed),
        oldest_unsettled_at=min((_parse_at(row.created_at) for row in counted), default=None),
        last_settled_at=last_closed_at,
        journal_started_at=_parse_at(state.created_at),
        fresh_start=fresh_start,
        chain_intact=chain_intact,
        first_bad_row=first_bad_row,
        schema_version=schema,
        schema_version_expected=expected,
        software_version=_software_version(),
        free_disk_bytes=free,
        manual_edits=accepted,
        refused_manual_entries=refused,
        updates=_updates(events),
        recovery_events=recovery,
        backup=max(backup_found, key=lambda b: b.taken_at) if backup_found else None,
        batch_fullest=_fullest(counted_tally),
        batch_limit=state.batch_limit,
        batch_over_capacity=_overflows(counted_tally),
        recovered_timeouts=len(recovered),
        last_timeout_at=_parse_at(unanswered[-1].at) if unanswered else None,
        resync_pending=state.resync_pending,
        restored_at=_parse_at(restores[-1].at) if restores else None,
        reinstalled=reinstalled,
        last_approved_stan=counted[-1].stan if counted else None,
        last_settled_by_host=max(settled_by_host, key=lambda item: item[1], default=None),
        batch_opened_at=_parse_at(current.opened_at) if current.opened_at else None,
    )


# A journal's close reasons that mean the host's own settlement answer closed the batch.
_SETTLED_BY_HOST_ANSWER: Final = frozenset({"balanced", "uploaded"})


def _fullest(counted: BatchTally) -> int:
    return max(
        counted.domestic.debit_count,
        counted.domestic.credit_count,
        counted.foreign.debit_count,
        counted.foreign.credit_count,
    )


def _overflows(counted: BatchTally) -> tuple[tuple[str, int], ...]:
    """Each field-48 counter ``counted`` holds too much for, with what it holds (a count,
    or fen for an amount)."""
    return tuple((counter.value, counted.value_of(counter)) for counter in counted.overflows())


def _recovery_event(event: EventRow) -> RecoveryEvent:
    """An event of the log with the numbers it names (for telling it in Chinese)."""
    details = event.details
    batch_no = next(
        (
            _int(details.get(key))
            for key in ("batch_no", "old_batch_no", "local_batch_no", "typed", "batch_no_before")
            if _int(details.get(key)) is not None
        ),
        None,
    )
    other = next(
        (
            _int(details.get(key))
            for key in ("next_batch_no", "new_batch_no", "host_batch_no", "batch_no_after")
            if _int(details.get(key)) is not None
        ),
        None,
    )
    return RecoveryEvent(
        _parse_at(event.at), event.type, event.message, batch_no, other, _int(details.get("stan"))
    )


# --- the network -------------------------------------------------------------------------


def tcp_probe(
    host: str, port: int, *, timeout_ms: int = PROBE_TIMEOUT_MS
) -> tuple[bool, int | None, str | None]:
    """(reachable, connect time in ms, why not: one of the ``TCP_*`` words) for a TCP connect.

    The words matter to the person reading: *refused* means the host's machine
    answered and nothing listens on the port (the host program is down, or the
    port is wrong) — no cable or SIM card will fix that; *timeout* and
    *unreachable* are the line; *unresolved* is the address itself.
    """
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_ms / 1000):
            pass
    except ConnectionRefusedError:
        return False, None, TCP_REFUSED
    except socket.gaierror:
        return False, None, TCP_UNRESOLVED
    except TimeoutError:
        return False, None, TCP_TIMEOUT
    except OSError as exc:
        return False, None, TCP_UNREACHABLE if exc.errno in _UNREACHABLE_ERRNOS else TCP_OTHER
    return True, round((time.monotonic() - started) * 1000), None


def _host_time(
    local_time: str | None, local_date: str | None, terminal_time: datetime
) -> datetime | None:
    """Fields 13 (MMDD) and 12 (hhmmss), the host's Beijing time, placed in the year
    nearest the terminal's clock."""
    if not local_time or not local_date:
        return None
    local = beijing(terminal_time)
    try:
        month, day = int(local_date[:2]), int(local_date[2:])
        hour, minute, second = (int(local_time[i : i + 2]) for i in (0, 2, 4))
        candidates = [
            local.replace(
                year=local.year + delta,
                month=month,
                day=day,
                hour=hour,
                minute=minute,
                second=second,
                microsecond=0,
            )
            for delta in (-1, 0, 1)
        ]
    except ValueError:
        return None
    return min(candidates, key=lambda moment: abs(moment - terminal_time))


def _echo_view(answer: AdminResponse, terminal_time: datetime) -> HostView:
    """The host's view of the terminal, from the field 63 of an echo answer."""
    items = decode_detail(answer.detail) if answer.detail else {}
    detail = decode_batch_detail(answer.detail) if answer.detail else None
    last_stan = items.get(DETAIL_LAST_STAN, "")
    closed_how = items.get("Q")  # only the host's three words are believed
    return HostView(
        reached=True,
        response_code=answer.response_code,
        batch_no=detail.host_batch_no if detail is not None else None,
        batch_state=detail.host_batch_state.value if detail is not None else None,
        last_closed_batch_no=detail.last_closed_batch_no if detail is not None else None,
        last_closed_reason=closed_how if closed_how in _CLOSE_REASONS else None,
        host_time=_host_time(answer.local_time, answer.local_date, terminal_time),
        terminal_time=terminal_time,
        last_stan_in_batch=int(last_stan)
        if len(last_stan) == 6 and last_stan.isascii() and last_stan.isdigit()
        else None,
    )


def _probe(
    terminal: Terminal,
    exchange: Exchange,
    *,
    clock: Callable[[], datetime],
    echo_count: int,
    answer_wait_ms: int,
    budget_ms: int,
    monotonic: Callable[[], float],
    progress: Progress,
) -> tuple[HostView, tuple[int | None, ...], int]:
    """Echo tests that change nothing: (the host's view, round trips in ms, echoes not sent)."""
    view = HostView(reached=False)
    trips: list[int | None] = []
    started = monotonic()
    wait_s = _seconds(answer_wait_ms)
    for index in range(1, echo_count + 1):
        if (monotonic() - started) * 1000 >= budget_ms:
            progress(
                Line(
                    f"stopped after {_seconds(budget_ms)} s: "
                    f"{count(echo_count - index + 1, 'echo test')} not sent",
                    f"已用时 {_seconds(budget_ms)} 秒,停止测试:"
                    f"{echo_count - index + 1} 次回响测试未发送",
                )
            )
            return view, tuple(trips), echo_count - index + 1
        progress(
            Line(
                f"echo test {index} of {echo_count}: waiting at most {wait_s} s for the host",
                f"回响测试 第 {index} 次(共 {echo_count} 次):最多等待主机 {wait_s} 秒",
            )
        )
        sent_at = monotonic()
        answer = run_flow(terminal.probe_flow(index, answer_wait_ms), exchange)
        if answer is None:
            trips.append(None)
            progress(Line(f"  no answer within {wait_s} s", f"  {wait_s} 秒内无应答"))
            continue
        elapsed_ms = round((monotonic() - sent_at) * 1000)
        trips.append(elapsed_ms)
        progress(Line(f"  answered in {elapsed_ms} ms", f"  {elapsed_ms} 毫秒后应答"))
        if not view.reached:
            view = _echo_view(answer, clock())
    return view, tuple(trips), 0


def _seconds(milliseconds: int) -> str:
    """``5000`` → ``"5"``, ``1500`` → ``"1.5"`` (a deadline, in seconds)."""
    return f"{milliseconds / 1000:g}"


def gather_terminal(
    terminal: Terminal,
    exchange: Exchange,
    *,
    clock: Callable[[], datetime],
    address: str = "in-process",
    tcp: tuple[bool, int | None, str | None] | None = None,
    echo_count: int = ECHO_COUNT_DEFAULT,
    data_dir: Path | None = None,
    backups: Sequence[Path] = (),
    host_store: object | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    contact_host: bool = True,
    answer_wait_ms: int = PROBE_ANSWER_WAIT_MS,
    budget_ms: int = PROBE_BUDGET_MS,
    progress: Progress = _quiet,
) -> Evidence:
    """Everything doctor can learn about ``terminal``: journal, host view, network, store.

    Changes nothing on either side (see the module's docstring).
    ``contact_host=False`` (no host address configured) sends nothing: the host's view
    and the network are then unknown, and every rule that needs them says so.
    """
    echo_count = max(0, min(echo_count, ECHO_COUNT_MAX))
    journal = journal_evidence(terminal.journal, now=clock(), data_dir=data_dir, backups=backups)
    records = sources = None
    if host_store is not None:
        records, sources = host_evidence(
            host_store, terminal.journal, journal.terminal_id, now=clock()
        )
    host_view: HostView | None = None
    probe: NetworkProbe | None
    if not contact_host:
        probe = None
    elif tcp is not None and not tcp[0]:
        probe = NetworkProbe(address, False, None, (), tcp[2])
        host_view = HostView(reached=False)
    else:
        view, trips, not_sent = _probe(
            terminal,
            exchange,
            clock=clock,
            echo_count=echo_count,
            answer_wait_ms=answer_wait_ms,
            budget_ms=budget_ms,
            monotonic=monotonic,
            progress=progress,
        )
        host_view = view if echo_count else None
        probe = NetworkProbe(
            address,
            tcp[0] if tcp is not None else None,
            tcp[1] if tcp is not None else None,
            trips,
            answer_wait_ms=answer_wait_ms,
            echo_not_sent=not_sent,
        )
    evidence = Evidence(
        terminal_id=journal.terminal_id,
        gathered_at=clock(),
        journal=journal,
        host_view=host_view,
        network=probe,
        host_records=records,
    )
    return replace(
        evidence,
        host_last_stan_in_journal=_holds_host_last_stan(terminal.journal, evidence),
        host_sources=sources,
    )


def _holds_host_last_stan(journal: Journal, evidence: Evidence) -> bool | None:
    """Does the journal hold the last STAN the host recorded in the batch both have open?"""
    stan = evidence.host_last_stan_in_batch
    host_batch_no = evidence.host_batch_no
    if stan is None or evidence.journal is None or host_batch_no != evidence.journal.batch_no:
        return None
    return bool(journal.find(stan, host_batch_no))


# --- the host store -------------------------------------------------------------------------


@dataclass(frozen=True)
class _HostBatchRead:
    """One host batch of the terminal and its transactions, read once for a diagnosis."""

    batch: BatchInfo
    txns: list[TransactionInfo]


def read_host_batches(store: object, terminal_id: str) -> tuple[_HostBatchRead, ...]:
    """The last HOST_BATCHES_READ_MAX host batches of ``terminal_id``, oldest first, each with
    its transactions: what :func:`host_records` and :func:`host_sources` both tell from."""
    from posbatch.host.store import HostStore  # noqa: PLC0415 - host is optional

    assert isinstance(store, HostStore)
    return tuple(
        _HostBatchRead(
            batch, store.transactions(terminal_id, batch.batch_no, limit=BATCH_ROWS_READ_MAX)
        )
        for batch in store.batches(terminal_id, limit=HOST_BATCHES_READ_MAX)
    )


def host_evidence(
    store: object, journal: Journal | None, terminal_id: str, *, now: datetime
) -> tuple[HostRecords, tuple[HostSources, ...]]:
    """The host store's records of ``terminal_id`` and its recent batches' sources (see
    :func:`host_records`, :func:`host_sources`), from one read of the host's batches."""
    read = read_host_batches(store, terminal_id)
    return (
        host_records(store, terminal_id, now=now, read=read),
        host_sources(read, journal, now=now),
    )


def host_sources(
    read: Sequence[_HostBatchRead], journal: Journal | None, *, now: datetime
) -> tuple[HostSources, ...]:
    """The host's recent batches (of ``read``), each transaction told as ``journal``'s
    (same STAN, kind and amount in the same batch) or another's, in the host's order
    (``journal`` None: not told, the host's order alone).

    Recent: the batch the host holds open, and those it closed within RECENT_WINDOW of
    ``now`` — at most SOURCE_BATCHES_MAX. Copies no card number.
    """
    recent = [
        item
        for item in read
        if item.batch.closed_at is None or now - item.batch.closed_at <= RECENT_WINDOW
    ][-SOURCE_BATCHES_MAX:]
    if not recent:
        return ()
    wanted = {item.batch.batch_no for item in recent}
    rows: dict[int, list[TxnRow]] = {batch_no: [] for batch_no in wanted}
    if journal is not None:
        for row in journal.batches():
            if row.batch_no in wanted:
                rows[row.batch_no].extend(journal.transactions(row.batch_id))
    sources = []
    for item in recent:
        batch = item.batch
        made = {(txn.stan, txn.kind, txn.amount_fen) for txn in rows[batch.batch_no]}
        kept = {(tx.stan, tx.kind.value, tx.amount_fen) for tx in item.txns}
        entries = tuple(
            HostEntry(
                tx.stan,
                tx.kind.value,
                tx.amount_fen,
                None if journal is None else (tx.stan, tx.kind.value, tx.amount_fen) in made,
                tx.created_at,
            )
            for tx in item.txns
            if tx.kind in (Kind.SALE, Kind.VOID, Kind.REFUND)
        )
        answered = tuple(
            JournalAnswer(txn.stan, txn.kind, txn.amount_fen, txn.response_code or "", at)
            for txn in rows[batch.batch_no]
            if (txn.stan, txn.kind, txn.amount_fen) not in kept
            and (at := _host_time(txn.host_time, txn.host_date, now)) is not None
        )
        sources.append(HostSources(batch.batch_no, batch.state.value, entries, answered))
    return tuple(sources)


def host_records(
    store: object,
    terminal_id: str,
    *,
    now: datetime,
    read: Sequence[_HostBatchRead] | None = None,
) -> HostRecords:
    """The host store's records of ``terminal_id`` (``store`` is a ``posbatch.host.HostStore``;
    ``read``: its batches already read by :func:`read_host_batches`)."""
    from posbatch.host.store import CloseReason, HostStore  # noqa: PLC0415 - host is optional

    assert isinstance(store, HostStore)
    info = store.terminal(terminal_id)
    if info is None:
        return HostRecords(terminal_id, False, False, 0, "NONE", None, now=now)
    if read is None:
        read = read_host_batches(store, terminal_id)
    settled_nos = {s.batch_no for s in store.settlements(terminal_id) if s.response_code == "00"}
    host_batches = []
    advances = []
    last_stan_in_batch = None
    for index, (batch, txns) in enumerate((item.batch, item.txns) for item in read):
        if batch.current and txns:
            last_stan_in_batch = max(txns, key=lambda tx: tx.transaction_id).stan
        counted = [
            tx
            for tx in txns
            if tx.status in TransactionStatus.COUNTED
            and tx.kind in (Kind.SALE, Kind.VOID, Kind.REFUND)
        ]
        net = sum(tx.amount_fen if tx.kind == Kind.SALE else -tx.amount_fen for tx in counted)
        result = None
        if batch.host_totals is not None and batch.close_reason != CloseReason.ADVANCED:
            result = "balanced" if batch.host_totals.balanced else "not balanced"
        host_batches.append(
            HostBatch(
                batch_no=batch.batch_no,
                state=batch.state.value,
                approved_count=len(counted),
                approved_net_fen=net,
                settlement_result=result,
                closed_at=batch.closed_at,
                closed_by=batch.close_reason,
                first_approval_at=min((tx.created_at for tx in counted), default=None),
                settled_by_terminal=batch.batch_no in settled_nos,
            )
        )
        if batch.state.value != "CLOSED":  # capacity matters while it can still be settled
            over = _overflows(store.batch_tally(batch.batch_id))
            host_batches[-1] = replace(host_batches[-1], over_capacity=over)
        if batch.close_reason == CloseReason.ADVANCED:
            following = read[index + 1].batch.batch_no if index + 1 < len(read) else batch.batch_no
            advances.append(BatchAdvance(batch.closed_at, batch.batch_no, following))
    exceptions = tuple(
        HostException(
            batch_no=item.batch_no or 0,
            stan=item.stan,
            cause=f"{item.kind}: {item.cause}",
            amount_fen=_amount_in_question(item.terminal_amount_fen, item.host_amount_fen),
            at=item.created_at,
            kind=item.kind,
            resolved=item.resolved,
        )
        for item in store.exceptions(terminal_id)
    )
    return HostRecords(
        terminal_id=terminal_id,
        registered=True,
        signed_on=info.signed_on,
        batch_no=info.batch_no or 0,
        batch_state=info.batch_state.value if info.batch_state is not None else "NONE",
        last_stan=info.last_stan,
        batches=tuple(host_batches),
        exceptions=exceptions,
        advances=tuple(advances),
        now=now,
        last_stan_in_batch=last_stan_in_batch,
    )


def _amount_in_question(terminal_fen: int | None, host_fen: int | None) -> int | None:
    """What an exception is about in money, as the back office resolves it: the difference
    when both sides have an amount and they differ (terminal 25.00, host 20.00: 5.00), else
    the one amount there is (a late reversal of 9.00: 9.00)."""
    if terminal_fen is not None and host_fen is not None:
        return abs(terminal_fen - host_fen) or abs(host_fen)
    return host_fen if host_fen is not None else terminal_fen
