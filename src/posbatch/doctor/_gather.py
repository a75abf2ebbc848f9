"""Gatherers: the thin shell that turns a terminal journal, the host's answers and the host
store into :class:`~posbatch.doctor._evidence.Evidence`.

Nothing here judges; nothing here repairs. Gathering from the host sends
only what a terminal may always send (a sign-on that does NOT reconcile the
batch number, and echo tests): the terminal's batch, transactions and
settlement state are left exactly as they were. Each message takes its STAN
from the journal like any other, so STAN continuity stays intact.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from posbatch.batch.terminal_batch import SettleStep
from posbatch.doctor._evidence import (
    BackupInfo,
    BatchAdvance,
    Evidence,
    HostBatch,
    HostException,
    HostRecords,
    HostView,
    JournalEvidence,
    LocalBatchState,
    ManualEdit,
    NetworkProbe,
    RecoveryEvent,
    SoftwareUpdate,
)
from posbatch.errors import (
    DecodeError,
    JournalIntegrityError,
    PosbatchError,
    TerminalError,
)
from posbatch.terminal import (
    MIGRATIONS,
    EventRow,
    Exchange,
    Journal,
    Terminal,
    TxnState,
    run_flow,
)
from posbatch.wire import FrameReader, Kind, SignOnResponse, decode_detail, decode_message

__all__ = [
    "ECHO_COUNT_DEFAULT",
    "PROBE_TIMEOUT_MS",
    "RECOVERY_EVENTS_KEPT_MAX",
    "RecordingExchange",
    "backup_info",
    "gather_terminal",
    "host_records",
    "journal_evidence",
    "tcp_probe",
]

# Echo round trips per doctor run: enough to see loss, few enough to be quick.
ECHO_COUNT_DEFAULT: Final = 5
ECHO_COUNT_MAX: Final = 20
# How long a probe waits for a TCP connect or an answer.
PROBE_TIMEOUT_MS: Final = 5_000
# Timeouts and duplicates older than this are history, not a cause.
RECENT_WINDOW: Final = timedelta(hours=24)
# Recovery events copied into the evidence (the newest ones).
RECOVERY_EVENTS_KEPT_MAX: Final = 30
# Host batches read back for the host's view.
HOST_BATCHES_READ_MAX: Final = 20
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
    from alembic.config import Config  # noqa: PLC0415 - only doctor needs it
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head() or "?"
    current = journal.schema_revision()
    return (current or "none", head)


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


def backup_info(path: Path) -> BackupInfo | None:
    """What a journal backup file holds (its batch, STAN, last write), or None if unreadable."""
    if not path.is_file():
        return None
    try:
        backup = Journal.open(f"sqlite:///{path.resolve()}", verify=True)
        try:
            state = backup.state()
            batch = backup.current_batch()
            events = backup.events()
        finally:
            backup.engine.dispose()
    except PosbatchError:
        return None
    taken = _parse_at(events[-1].at) if events else _parse_at(state.created_at)
    return BackupInfo(taken, batch.batch_no, state.stan, str(path))


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
    accepted, refused = _manual(events, last_closed_at)
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
    # Network troubles count from the last day, or from doctor's last repair if later:
    # what a repair has dealt with is history, not a cause any more.
    repaired = [
        _parse_at(e.at) for e in events if e.type == "doctor" and e.details.get("status") == "done"
    ]
    since = max([now - RECENT_WINDOW, *repaired])
    recent = [e for e in events if _parse_at(e.at) > since]
    fresh_start = not closed and (initial_batch_no == 1 or reinstalled)
    backup_found = [info for info in (backup_info(p) for p in backups) if info is not None]
    recovery = tuple(
        RecoveryEvent(_parse_at(e.at), e.type, e.message)
        for e in events
        if e.type in _RECOVERY_TYPES
    )[-RECOVERY_EVENTS_KEPT_MAX:]
    upload_total = len(counted) if batch_state == LocalBatchState.UPLOADING else 0
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
        unanswered_requests=sum(1 for e in recent if e.type == "unanswered"),
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
    )


# --- the network -------------------------------------------------------------------------


@dataclass
class RecordingExchange:
    """Wraps an exchange: keeps the last answer and each round trip's time (ms, None = lost)."""

    inner: Exchange
    monotonic: Callable[[], float] = time.monotonic
    last_reply: bytes | None = None
    round_trips_ms: list[int | None] = field(default_factory=list)

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        started = self.monotonic()
        reply = self.inner(frame, timeout_ms)
        elapsed = round((self.monotonic() - started) * 1000)
        self.last_reply = reply
        self.round_trips_ms.append(None if reply is None else elapsed)
        return reply


def tcp_probe(
    host: str, port: int, *, timeout_ms: int = PROBE_TIMEOUT_MS
) -> tuple[bool, int | None, str | None]:
    """(reachable, connect time in ms, why not) for a plain TCP connect."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_ms / 1000):
            pass
    except OSError as exc:
        return False, None, exc.strerror or type(exc).__name__
    return True, round((time.monotonic() - started) * 1000), None


def _host_time(response: SignOnResponse, terminal_time: datetime) -> datetime | None:
    """Fields 13 (MMDD) and 12 (hhmmss) placed in the year nearest the terminal's clock."""
    if not response.local_time or not response.local_date:
        return None
    try:
        month, day = int(response.local_date[:2]), int(response.local_date[2:])
        hour, minute, second = (int(response.local_time[i : i + 2]) for i in (0, 2, 4))
        candidates = [
            terminal_time.replace(
                year=terminal_time.year + delta,
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


def _sign_on_view(
    terminal: Terminal, recorder: RecordingExchange, clock: Callable[[], datetime]
) -> HostView:
    try:
        run_flow(terminal.sign_on_flow(reconcile=False), recorder)
    except TerminalError as exc:
        if recorder.last_reply is None:
            return HostView(reached=False)
        code = getattr(exc, "response_code", None)
        return HostView(reached=True, response_code=code)
    terminal_time = clock()
    reply = recorder.last_reply
    if reply is None:
        return HostView(reached=False)
    try:
        message = decode_message(FrameReader().feed(reply)[0].body)
    except (DecodeError, ValueError, IndexError):
        return HostView(reached=True)
    if not isinstance(message, SignOnResponse):
        return HostView(reached=True)
    detail = message.batch_state
    return HostView(
        reached=True,
        response_code=message.response_code,
        batch_no=message.batch_no,
        batch_state=detail.host_batch_state.value if detail is not None else None,
        last_closed_batch_no=detail.last_closed_batch_no if detail is not None else None,
        reason=detail.reason.value if detail is not None and detail.reason else None,
        last_closed_reason=decode_detail(message.detail).get("Q") if message.detail else None,
        host_time=_host_time(message, terminal_time),
        terminal_time=terminal_time,
    )


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
) -> Evidence:
    """Everything doctor can learn about ``terminal``: journal, host view, network, store.

    ``contact_host=False`` (no host address configured) sends nothing: the host's view
    and the network are then unknown, and every rule that needs them says so.
    """
    echo_count = max(0, min(echo_count, ECHO_COUNT_MAX))
    # The records and the journal first: doctor's own sign-on and echoes take STANs.
    journal = journal_evidence(terminal.journal, now=clock(), data_dir=data_dir, backups=backups)
    records = None
    if host_store is not None:
        records = host_records(host_store, journal.terminal_id, now=clock())
    host_view: HostView | None = None
    probe: NetworkProbe | None
    if not contact_host:
        probe = None
    elif tcp is not None and not tcp[0]:
        probe = NetworkProbe(address, False, None, (), tcp[2])
        host_view = HostView(reached=False)
    else:
        recorder = RecordingExchange(exchange, monotonic)
        host_view = _sign_on_view(terminal, recorder, clock)
        echoes = RecordingExchange(exchange, monotonic)
        for _ in range(echo_count):
            with contextlib.suppress(TerminalError):  # recorded as a lost round trip
                run_flow(terminal.echo_flow(), echoes)
        probe = NetworkProbe(
            address,
            tcp[0] if tcp is not None else None,
            tcp[1] if tcp is not None else None,
            tuple(echoes.round_trips_ms),
        )
    return Evidence(
        terminal_id=journal.terminal_id,
        gathered_at=clock(),
        journal=journal,
        host_view=host_view,
        network=probe,
        host_records=records,
    )


# --- the host store -------------------------------------------------------------------------


def host_records(store: object, terminal_id: str, *, now: datetime) -> HostRecords:
    """The host store's records of ``terminal_id`` (``store`` is a ``posbatch.host.HostStore``)."""
    from posbatch.host.store import CloseReason, HostStore  # noqa: PLC0415 - host is optional

    assert isinstance(store, HostStore)
    info = store.terminal(terminal_id)
    if info is None:
        return HostRecords(terminal_id, False, False, 0, "NONE", None, now=now)
    batches = store.batches(terminal_id, limit=HOST_BATCHES_READ_MAX)
    settled_nos = {s.batch_no for s in store.settlements(terminal_id) if s.response_code == "00"}
    host_batches = []
    advances = []
    for index, batch in enumerate(batches):
        txns = store.transactions(terminal_id, batch.batch_no)
        counted = [
            tx
            for tx in txns
            if tx.status in ("approved", "voided")
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
        if batch.close_reason == CloseReason.ADVANCED:
            following = batches[index + 1].batch_no if index + 1 < len(batches) else batch.batch_no
            advances.append(BatchAdvance(batch.closed_at, batch.batch_no, following))
    exceptions = tuple(
        HostException(
            batch_no=item.batch_no or 0,
            stan=item.stan,
            cause=f"{item.kind}: {item.cause}",
            amount_fen=item.host_amount_fen
            if item.host_amount_fen is not None
            else item.terminal_amount_fen,
            at=item.created_at,
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
    )
