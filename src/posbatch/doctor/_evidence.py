"""Evidence: the facts doctor gathered, before any judgement.

Theory of operation
-------------------
Doctor never reasons over a live terminal or a live host. Gatherers (thin,
in ``_gather.py`` and ``_host.py``) read the terminal journal, ask the host
(sign-on, echo round trips, a TCP connect) and, when it is at hand, read the
host store; each writes what it learned into the frozen dataclasses below.
Everything downstream — checks, the rule table, the report, the support
bundle — is a pure function of one :class:`Evidence`.

A fact that could not be gathered is ``None`` ("unknown"), never a guess:
a rule that needs an unknown fact says "not checked" instead of firing or
ruling itself out. That is what keeps doctor from claiming a cause without
evidence.

Nothing here holds a card number or a key: the journal gatherer counts and
summarises, it does not copy rows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

__all__ = [
    "TCP_OTHER",
    "TCP_REFUSED",
    "TCP_TIMEOUT",
    "TCP_UNREACHABLE",
    "TCP_UNRESOLVED",
    "BackupInfo",
    "BatchAdvance",
    "Evidence",
    "HostBatch",
    "HostEntry",
    "HostException",
    "HostRecords",
    "HostSources",
    "HostView",
    "JournalEvidence",
    "LocalBatchState",
    "ManualEdit",
    "NetworkProbe",
    "RecoveryEvent",
    "SoftwareUpdate",
]


# Why a TCP connect failed, in doctor's words (NetworkProbe.error).
TCP_REFUSED: Final = "refused"  # the address answers; nothing listens on the port
TCP_TIMEOUT: Final = "timeout"  # no answer at all within the deadline
TCP_UNREACHABLE: Final = "unreachable"  # no route: the terminal's own network is down
TCP_UNRESOLVED: Final = "unresolved"  # the host's name does not resolve
TCP_OTHER: Final = "other"


class LocalBatchState(enum.StrEnum):
    """Where the terminal's current batch is, in doctor's words."""

    OPEN = "open"  # taking transactions, no settlement started
    SETTLING = "settling"  # settlement started (reversals / 0500), not yet answered or done
    UPLOADING = "uploading"  # 0510 said not balanced: batch upload under way
    CLOSED = "closed"  # settled; the next batch has not taken a transaction yet


@dataclass(frozen=True, slots=True)
class ManualEdit:
    """A batch number typed in by hand (the journal's event log)."""

    at: datetime
    old_batch_no: int
    new_batch_no: int


@dataclass(frozen=True, slots=True)
class SoftwareUpdate:
    """A software update or reinstall seen by the journal, with the counters around it."""

    at: datetime
    from_version: str
    to_version: str
    batch_no_before: int
    batch_no_after: int
    stan_before: int
    stan_after: int

    @property
    def changed_counters(self) -> bool:
        return (self.batch_no_before, self.stan_before) != (self.batch_no_after, self.stan_after)


@dataclass(frozen=True, slots=True)
class RecoveryEvent:
    """One line of the journal's event log of recovery actions (doctor's own included).

    ``detail`` is the engine's own (English) message; ``batch_no``/``other_batch_no``/``stan``
    are the numbers it names, so the event can be told in Chinese too.
    """

    at: datetime
    kind: str
    detail: str
    batch_no: int | None = None
    other_batch_no: int | None = None
    stan: int | None = None


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """A journal backup the terminal could be restored from."""

    taken_at: datetime
    batch_no: int
    stan: int
    location: str
    # The backup's hash chain holds the journal's whole chain and goes on past its end:
    # the journal in use is an older copy of the backup's history (None: not compared).
    extends_journal: bool | None = None
    entries_beyond_journal: int = 0


@dataclass(frozen=True, slots=True)
class JournalEvidence:
    """What the terminal's own journal says."""

    terminal_id: str
    merchant_id: str
    now: datetime  # the terminal's clock when gathered
    batch_no: int
    batch_state: LocalBatchState
    last_stan: int
    approved_count: int  # approvals in the current batch (sales, voids, refunds)
    approved_net_fen: int  # debits minus credits of the current batch
    pending_reversals: int
    unanswered_requests: int  # requests whose answer never came (timeouts), recent ones
    duplicate_answers: int  # answers flagged as duplicates (94, or a repeated answer)
    settlement_request_unanswered: bool  # a 0500 went out and its 0510 never came
    upload_records_total: int  # records to batch-upload (0 when no upload is due)
    upload_records_acknowledged: int
    stan_gaps: int  # STANs skipped inside the journal (each a lost or unjournaled request)
    settled_batches: int  # batches this journal has closed
    oldest_unsettled_at: datetime | None  # first approval of the current batch
    last_settled_at: datetime | None
    journal_started_at: datetime
    fresh_start: bool  # the journal began at batch 000001 / STAN 000001 (install or reset)
    chain_intact: bool
    first_bad_row: int | None
    schema_version: str
    schema_version_expected: str
    software_version: str
    free_disk_bytes: int | None
    manual_edits: tuple[ManualEdit, ...] = ()
    # typed batch numbers the host refused since the last settlement (nothing changed)
    refused_manual_entries: tuple[ManualEdit, ...] = ()
    updates: tuple[SoftwareUpdate, ...] = ()
    recovery_events: tuple[RecoveryEvent, ...] = ()
    backup: BackupInfo | None = None
    # Batch capacity: the highest of the current batch's four field-48 counts, the
    # terminal's batch limit, and the counters field 48 cannot carry (over capacity).
    batch_fullest: int = 0
    batch_limit: int = 500
    batch_over_capacity: tuple[tuple[str, int], ...] = ()  # (counter, what it holds)
    # Of the recent unanswered requests, those the engine has dealt with itself (reversed,
    # resent and answered): history, not a cause.
    recovered_timeouts: int = 0
    last_timeout_at: datetime | None = None
    resync_pending: bool = False  # new or restored journal: the next sign-on settles first
    restored_at: datetime | None = None  # the last restore recorded in the event log
    reinstalled: bool = False  # the journal says it was created by a reinstall
    # The STAN of the current batch's last approval (sale, void, refund), None without one.
    last_approved_stan: int | None = None
    # The last batch the host's own settlement answer closed (balanced, or after batch
    # upload), and when: (batch number, closed at); None before the first.
    last_settled_by_host: tuple[int, datetime] | None = None
    batch_opened_at: datetime | None = None  # when the current batch opened (terminal clock)


@dataclass(frozen=True, slots=True)
class HostView:
    """What the host said over the network (sign-on, its field 63, the response time)."""

    reached: bool
    response_code: str | None = None
    batch_no: int | None = None  # 60.2 of the sign-on response: the host's batch for us
    batch_state: str | None = None  # OPEN / UPLOADING / CLOSED (field 63 S=)
    last_closed_batch_no: int | None = None  # field 63 L=
    reason: str | None = None  # field 63 R= when the host answered 77
    last_closed_reason: str | None = None  # field 63 Q=: BALANCED / UPLOADED / ADVANCED
    host_time: datetime | None = None  # fields 12/13 of the response
    terminal_time: datetime | None = None  # the terminal's clock when the answer came
    # field 63 T= of an echo answer: the STAN of the last transaction in the host's batch
    last_stan_in_batch: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkProbe:
    """TCP reachability and several echo round trips; ``None`` in a round trip = no answer."""

    address: str
    tcp_reachable: bool | None
    connect_ms: int | None
    echo_round_trips_ms: tuple[int | None, ...] = ()
    error: str | None = None  # why TCP failed: one of TCP_ERRORS (see _gather.tcp_probe)
    answer_wait_ms: int | None = None  # how long each echo waited for its answer
    echo_not_sent: int = 0  # echoes left out: the probe's time budget ran out

    @property
    def echo_sent(self) -> int:
        return len(self.echo_round_trips_ms)

    @property
    def echo_lost(self) -> int:
        return sum(1 for trip in self.echo_round_trips_ms if trip is None)


@dataclass(frozen=True, slots=True)
class HostBatch:
    """One batch of this terminal as the host store keeps it."""

    batch_no: int
    state: str  # OPEN / UPLOADING / CLOSED
    approved_count: int
    approved_net_fen: int
    settlement_result: str | None = None  # balanced / not_balanced / None (not settled)
    closed_at: datetime | None = None
    closed_by: str | None = None  # balanced / uploaded / advanced (the host's close reason)
    first_approval_at: datetime | None = None
    settled_by_terminal: bool = False  # a 0500 of the terminal reached the host for it
    # The field-48 counters this batch holds too much for, each with what it holds (a
    # count, or fen for an amount): posbatch.batch.totals.TotalsCounter names.
    over_capacity: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class HostException:
    """An exception (差错) record of the host for this terminal."""

    batch_no: int
    stan: int | None
    cause: str
    amount_fen: int | None = None
    at: datetime | None = None
    kind: str = ""  # posbatch.host.store.ExceptionKind
    resolved: bool = False  # the back office has worked it off (its record stays)


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One transaction (sale, void, refund) the host recorded in a batch of this terminal,
    and whether this journal made it: a transaction of the same kind and amount under the
    same message number (STAN) in the same batch (None: no journal to compare with, as for
    ``posbatch host doctor``). No card number: the STAN says which."""

    stan: int
    kind: str
    amount_fen: int
    in_journal: bool | None
    at: datetime | None = None  # when the host recorded it (the host's clock)


@dataclass(frozen=True, slots=True)
class JournalAnswer:
    """A request of this journal in a recent host batch that the host answered (the answer's
    MAC verified) without keeping a transaction of it — a 94, a decline it does not record —
    and when, by the host's clock (the answer's fields 13/12, to the second)."""

    stan: int
    kind: str
    amount_fen: int
    response_code: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HostSources:
    """A recent host batch of this terminal, its transactions in the order the host
    recorded them, each told as this journal's or not (``Evidence.host_sources``)."""

    batch_no: int
    state: str  # OPEN / UPLOADING / CLOSED
    entries: tuple[HostEntry, ...]
    # This journal's requests in this batch the host answered but kept no transaction of.
    answered: tuple[JournalAnswer, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchAdvance:
    """A back-office change of the terminal's batch number on the host."""

    at: datetime | None
    from_batch_no: int
    to_batch_no: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HostRecords:
    """The host store's records of this terminal (only where the store is at hand)."""

    terminal_id: str
    registered: bool
    signed_on: bool
    batch_no: int
    batch_state: str
    last_stan: int | None
    batches: tuple[HostBatch, ...] = ()
    exceptions: tuple[HostException, ...] = ()
    advances: tuple[BatchAdvance, ...] = ()
    now: datetime | None = None
    last_stan_in_batch: int | None = None  # the last transaction of the current batch

    def batch(self, batch_no: int) -> HostBatch | None:
        for host_batch in self.batches:
            if host_batch.batch_no == batch_no:
                return host_batch
        return None

    @property
    def last_settled(self) -> HostBatch | None:
        closed = [b for b in self.batches if b.state == "CLOSED" and b.closed_at is not None]
        if not closed:
            closed = [b for b in self.batches if b.state == "CLOSED"]
        return closed[-1] if closed else None


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything gathered for one terminal; any part may be missing."""

    terminal_id: str
    gathered_at: datetime
    journal: JournalEvidence | None = None
    host_view: HostView | None = None
    network: NetworkProbe | None = None
    host_records: HostRecords | None = None
    notes: tuple[str, ...] = field(default=())
    # Does the journal hold the host's last STAN of the batch both have open (T=)?
    # None when not compared (no T, or the host's batch is not the journal's).
    host_last_stan_in_journal: bool | None = None
    # Batches that this run's repairs closed otherwise than balanced, with the journal's
    # close reason: after batch upload or by the host with other totals (the host holds what
    # differs as exception records, 差错), or set aside (on no host batch: the back office
    # settles it from the journal) — known whether or not the host store is at hand. Only
    # the gathering after ``--fix`` fills it (doctor/_run.py).
    unbalanced_by_repair: tuple[tuple[int, str], ...] = ()
    # The host's recent batches (its open one, and those closed in the last day), each
    # transaction told as this journal's or another's: two devices trading under one
    # terminal ID interleave there. None when not read (no host store).
    host_sources: tuple[HostSources, ...] | None = None

    @property
    def host_batch_no(self) -> int | None:
        """The host's current batch for this terminal, from the store or the sign-on."""
        if self.host_records is not None:
            return self.host_records.batch_no
        if self.host_view is not None and self.host_view.reached:
            return self.host_view.batch_no
        return None

    @property
    def host_batch_state(self) -> str | None:
        if self.host_records is not None:
            return self.host_records.batch_state
        if self.host_view is not None and self.host_view.reached:
            return self.host_view.batch_state
        return None

    @property
    def host_last_stan_in_batch(self) -> int | None:
        """The STAN of the last transaction in the host's current batch, if known."""
        if self.host_records is not None:
            return self.host_records.last_stan_in_batch
        if self.host_view is not None and self.host_view.reached:
            return self.host_view.last_stan_in_batch
        return None

    @property
    def host_last_closed_reason(self) -> str | None:
        """How the host's last closed batch ended: BALANCED / UPLOADED / ADVANCED."""
        if self.host_records is not None:
            closed = [b for b in self.host_records.batches if b.state == "CLOSED"]
            if closed and closed[-1].closed_by:
                return closed[-1].closed_by.upper()
        if self.host_view is not None and self.host_view.reached:
            return self.host_view.last_closed_reason
        return None

    @property
    def host_last_closed_batch_no(self) -> int | None:
        if self.host_records is not None:
            closed = [b.batch_no for b in self.host_records.batches if b.state == "CLOSED"]
            if closed:
                return closed[-1]
        if self.host_view is not None and self.host_view.reached:
            return self.host_view.last_closed_batch_no
        return None
