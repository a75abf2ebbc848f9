"""One seeded run: a host, N terminals, D trading days, faults everywhere, checked every night.

Theory of operation
-------------------
:func:`run_seed` builds the world from one seed (:class:`SimRandom`): a host
store in memory, a :class:`~posbatch.host.HostCore` over it whose clock is
the virtual clock and whose random bytes come from the seed, and N terminal
engines (:class:`~posbatch.terminal.Terminal`), each over its own in-memory
journal and joined to the host by a :class:`SimLink`.

Each trading day is planned first (from the ``workload`` and ``faults``
streams), then played as a list of timed events in virtual-time order, so
the host sees the terminals' traffic interleaved as a real acquirer does:

- at opening time (08:00 plus up to two hours) each terminal signs on; now
  and then the cashier then types the batch number by hand, with a typo
  (the engine's manual entry, double entry, checked against the host);
- its transactions follow, each after the cashier's pause: sales, voids of
  a sale of the same batch, refunds of any earlier sale, training sales;
- at some moment the back office may advance the terminal's host batch, and
  the terminal may be reinstalled (a new, empty journal: counters reset, a new
  PAN key) — its old journal is kept for the checker, as the old device would
  be; or the journal is backed up (its keys sealed under the merchant's
  passphrase), the terminal reinstalled later and the backup restored;
- a busy day lowers the terminal's batch limit, so its batch fills and it
  settles by itself; some seeds' hosts cap batches lower than field 48 does,
  so terminals meet the host's 95 and settle on it; a third-party terminal
  probes the host with what must never be approved;
- someone may copy the journal file (with its key file) by hand and later put
  that older copy back over the newer one (the newer journal is kept for the
  checker: its approvals are on the host); doctor then diagnoses the terminal
  at once;
- a support desk may run doctor (diagnosis only) at any moment, its echo
  tests going through the same faulty link: the world checks that it changed
  nothing on either side and that the same state gives the same verdict
  (invariant 9, :meth:`World._diagnose`), and that the support bundle it would
  send holds no card number the cashiers (or an operator, in a back-office reason)
  typed, at any length the profile accepts (invariant 10);
- at closing time (from 21:00) the cashier settles, pressing the key again
  up to :data:`SETTLE_ATTEMPTS_MAX` times if the host does not answer —
  unless it is a holiday for that shop.

Crashes (:class:`SimulatedCrash`, raised through the engine) strike at every
step that matters: at each exchange, from the link (before the request leaves,
after the host answered), and at each of the journal's units of work, from a
:class:`_CrashingJournal` (before its commit — rolled back — or just after it).
The world then drops the engine and reopens the same journal (the working keys
are lost with the process). A host restart is a new HostCore
over the same store.

After each day the checker (:mod:`posbatch.sim._checker`) reads both sides
(the journals through their read API, the host's tables once with bare SQL,
:mod:`posbatch.sim._host_rows`). After the last day a *quiet close* (no faults)
settles every terminal, and the checker runs once more with ``final``: by
then nothing may still be in flight.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy.engine import Engine

from posbatch.batch.counters import BATCH_NO_MAX
from posbatch.batch.model import Kind
from posbatch.batch.totals import TOTAL_COUNT_MAX
from posbatch.batch.txn_lifecycle import TxnEvent
from posbatch.clearing import ClearingRules
from posbatch.doctor import RepairStatus, Report, TerminalSite, bundle_text, examine
from posbatch.errors import (
    BatchError,
    ConfigError,
    Declined,
    HostError,
    HostUnreachable,
    StorageError,
    TerminalError,
)
from posbatch.host import ClearingStore, HostCore, HostSession, HostStore, IssuerRules
from posbatch.sim import _clearing
from posbatch.sim._checker import Violation, check
from posbatch.sim._clock import DAY_MS, VirtualClock
from posbatch.sim._faults import PROFILES, FaultCounter, FaultKind, FaultProfile
from posbatch.sim._host_rows import read_host_rows
from posbatch.sim._link import HostNode, SimLink, SimulatedCrash
from posbatch.sim._memory import HOST, JOURNAL, MemoryDatabase
from posbatch.sim._model import Snapshot
from posbatch.sim._random import SimRandom
from posbatch.sim._result import SeedResult
from posbatch.sim._snapshot import READ_ROWS_MAX, take_snapshot
from posbatch.sim._third_party import THIRD_PARTY_TERMINAL_ID, ThirdParty
from posbatch.sim._trace import EventKind, Trace
from posbatch.sim._workload import (
    BUSY_BATCH_LIMITS,
    BUSY_DAY_SHARE,
    CARD_NUMBERS,
    CORRECTED_REVERSAL_SHARE,
    LOW_HOST_CAP_SHARE,
    LOW_HOST_CAPS,
    PROBE_SHARE,
    PROBES,
    Operation,
    OperationKind,
    draw_operation,
)
from posbatch.terminal import (
    BATCH_LIMIT_DEFAULT,
    RESPONSE_TIMEOUT_MS,
    SCRYPT_N_MIN,
    BackupKey,
    Journal,
    Terminal,
    TerminalSecrets,
    TransactionResult,
    TxnRow,
    TxnState,
    Writer,
    mark_restored,
    secrets_for_backup,
    write_backup_key,
)
from posbatch.terminal._outstanding import Outstanding

__all__ = ["Breakage", "SimConfig", "World", "replay", "run_seed", "run_seeds"]

OPENING_MS: Final = 8 * 3_600_000
OPENING_SPREAD_MS: Final = 2 * 3_600_000
CLOSING_MS: Final = 21 * 3_600_000
CLOSING_SPREAD_MS: Final = 90 * 60_000
SETTLE_ATTEMPTS_MAX: Final = 3
# Sales of a second device under a terminal's ID (opt-in profile "second-device").
SECOND_SALES: Final = 3
# A refund is of a sale in one of the journal's last batches (the open one included).
REFUND_BATCHES_BACK: Final = 4
QUIET_CLOSE_ATTEMPTS_MAX: Final = 5
TERMINALS_MAX: Final = 10_000
JOBS_MAX: Final = 64
DAYS_MAX: Final = 366
TRANSACTIONS_PER_DAY_MAX: Final = 2_000
# Clock errors a terminal may show for a day (DESIGN.md: "clock wrong").
CLOCK_SKEWS_MS: Final = (-3 * DAY_MS, -3_600_000, -600_000, 600_000, DAY_MS, 365 * DAY_MS)
FIRST_TERMINAL_ID: Final = 10_000_001
MERCHANT_PREFIX: Final = "8981100541"
HOST_ADDRESS: Final = "sim:0"
# What the engine says when its own recovery cannot go on (posbatch.terminal).
DOCTOR_HINT: Final = "posbatch doctor"
# Backup → reinstall → restore: how often the cashier first types a wrong passphrase.
WRONG_PASSPHRASE_SHARE: Final = 0.25
BACKUP_KEY_TABLE: Final = "backup_key"
# Echo tests of a diagnosis-only doctor run (through the faulty link).
DOCTOR_ECHOES: Final = 3
# Host rows read back to compare the host's state before and after a diagnosis.
STATE_ROWS_MAX: Final = 1_000_000


class Breakage(enum.StrEnum):
    """Deliberately broken behaviour, to prove the checker bites (tests only)."""

    SKIP_REVERSAL = "skip-reversal"  # a request with no answer is written off, never reversed
    # doctor's old diagnosis: its echo tests take STANs from the journal (and hide 94s)
    DOCTOR_TAKES_STANS = "doctor-takes-stans"


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What to simulate; the seed is given separately (:func:`run_seed`)."""

    terminals: int = 4
    days: int = 3
    transactions: int = 40  # per terminal and trading day
    faults: FaultProfile = PROFILES["default"]
    start_batch_no: int = 1  # near 999999 to see the batch number wrap
    broken: frozenset[Breakage] = frozenset()
    keep_trace: bool = True
    timeout_ms: int = RESPONSE_TIMEOUT_MS

    def __post_init__(self) -> None:
        if not 1 <= self.terminals <= TERMINALS_MAX:
            raise ConfigError(f"terminals must be 1..{TERMINALS_MAX}")
        if not 1 <= self.days <= DAYS_MAX:
            raise ConfigError(f"days must be 1..{DAYS_MAX}")
        if not 0 <= self.transactions <= TRANSACTIONS_PER_DAY_MAX:
            raise ConfigError(f"transactions must be 0..{TRANSACTIONS_PER_DAY_MAX}")
        if not 1 <= self.start_batch_no <= BATCH_NO_MAX:
            raise ConfigError(f"start_batch_no must be 1..{BATCH_NO_MAX}")


class _Action(enum.IntEnum):
    # The value orders events that fall on the same millisecond.
    BACK_OFFICE = 0
    SIGN_ON = 1
    TYPO = 2
    REINSTALL = 3
    OPERATION = 4
    SETTLE = 5
    BACKUP = 6
    RESTORE = 7
    PROBE = 8
    COPY = 9  # someone copies the journal file (and its key file)
    COPY_BACK = 10  # ... and later puts the copy back over the newer journal
    DOCTOR = 11  # a support desk runs doctor (diagnosis only)
    SECOND_DEVICE_ON = 12  # a second device with this terminal's ID starts trading
    SECOND_DEVICE_SALE = 13  # ... sells, between the terminal's own operations
    SECOND_DEVICE_OFF = 14  # doctor on the terminal; the second device settles once and goes


@dataclass(order=True, frozen=True, slots=True)
class _Event:
    at_ms: int
    order: int
    node: int
    action: _Action = field(compare=False)
    operation: Operation | None = field(default=None, compare=False)


class _SkipReversal(Outstanding):
    """Breakage.SKIP_REVERSAL: an unanswered request is marked declined — no 0400 ever goes."""

    def unanswered(self, row: TxnRow, reason: object) -> TxnRow:
        changed = row.moved(TxnEvent.DECLINED, updated_at=self.ctx.now().isoformat())
        with self.ctx.journal.write(self.ctx.now()) as writer:
            writer.txn(changed)
        return changed


class _SkipReversalTerminal(Terminal):
    """A terminal whose outstanding queue is :class:`_SkipReversal`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ctx.outstanding = _SkipReversal(self._ctx)


class _CrashingJournal(Journal):
    """A journal whose process may die at any unit of work: before its commit (the work
    is rolled back, as a power cut before the disk write) or just after it (the work is on
    disk, the engine never learnt it). ``armed`` once the terminal is installed."""

    def __init__(self, engine: Engine, link: SimLink) -> None:
        super().__init__(engine)
        self._link = link
        self.armed = False

    @contextmanager
    def write(self, moment: datetime) -> Iterator[Writer]:
        with super().write(moment) as writer:
            yield writer
            if self.armed:
                self._link.crash_point("before a journal commit")
        if self.armed:
            self._link.crash_point("after a journal commit")


@dataclass
class _Node:
    """One simulated terminal: its identity, its journal(s), its engine, its line."""

    index: int
    terminal_id: str
    merchant_id: str
    secrets: TerminalSecrets
    link: SimLink
    databases: list[MemoryDatabase] = field(default_factory=list)  # one per install
    journals: list[Journal] = field(default_factory=list)  # the last one is in use
    engine: Terminal | None = None
    skew_ms: int = 0
    holiday: bool = False
    busy_limit: int | None = None  # a busy day's batch limit (None: the default)
    backup: MemoryDatabase | None = None  # the last backup taken, until it is restored
    # a hand copy of the journal file, waiting to go back, and the keys it was sealed with
    copy: tuple[MemoryDatabase, TerminalSecrets] | None = None
    second: Terminal | None = None  # a second device under this terminal ID, while it trades

    @property
    def journal(self) -> Journal:
        return self.journals[-1]

    @property
    def terminal(self) -> Terminal:
        assert self.engine is not None
        return self.engine


class World:
    """Everything of one seeded run. Use :func:`run_seed` unless you need the parts."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.config = config
        self.random = SimRandom(seed)
        self.clock = VirtualClock()
        self.trace = Trace(keep_events=config.keep_trace)
        self.faults = FaultCounter()
        self.result = SeedResult(seed, config.days, config.terminals)
        self.day = 0
        self._workload = self.random.stream("workload")
        self._fault_random = self.random.stream("faults")
        self._third_random = self.random.stream("third-party")
        self._reinstall_keys = self.random.stream("reinstall-keys")
        self._failures: list[tuple[str, str]] = []
        self._seen: set[tuple[int, str, int | None, int | None, str]] = set()
        keys = self.random.stream("keys")
        self.host_database = MemoryDatabase(HOST)
        self.store = HostStore(self.host_database.engine(), pan_key=keys.randbytes(32))
        self._host_random_bytes = self.random.bytes_source("host")
        self.host_cap = TOTAL_COUNT_MAX
        if self._third_random.random() < LOW_HOST_CAP_SHARE:
            self.host_cap = self._third_random.choice(LOW_HOST_CAPS)
            self.result.workload[f"host caps batches at {self.host_cap}"] += 1
        self.core = self._new_core()
        self.third_party = ThirdParty(self.store, self._third_random, now=self.clock.now())
        self.host = HostNode(lambda: HostSession(self.core), self._restart_host)
        drawn = [(keys.randbytes(16), keys.randbytes(32)) for _ in range(config.terminals)]
        # every terminal registered in one unit of work (one each cost 0.5 ms a terminal)
        self.store.add_terminals(
            [(_merchant_id(index), _terminal_id(index), master_key)
             for index, (master_key, _pan_key) in enumerate(drawn)],
            now=self.clock.now(),
        )  # fmt: skip
        self.nodes = [self._new_node(index, master_key, pan_key)
                      for index, (master_key, pan_key) in enumerate(drawn)]  # fmt: skip
        self._clearing_since = _clearing.set_up(
            self.store, self.random.stream("clearing"), [node.merchant_id for node in self.nodes],
            start=self.clock.now(),
        )  # fmt: skip

    # --- building --------------------------------------------------------------------

    def _new_core(self) -> HostCore:
        return HostCore(
            self.store,
            clock=self.clock.now,
            random_bytes=self._host_random_bytes,
            issuer=IssuerRules(),
            batch_count_max=self.host_cap,
        )

    def _restart_host(self) -> None:
        self.core = self._new_core()

    def _new_node(self, index: int, master_key: bytes, pan_key: bytes) -> _Node:
        """Terminal ``index`` (registered on the host already) with its line and journal."""
        terminal_id, merchant_id = _terminal_id(index), _merchant_id(index)
        if self.config.start_batch_no != 1:
            with self.store.transaction() as tx:
                tx.open_batch(terminal_id, self.config.start_batch_no, now=self.clock.now())
        link = SimLink(
            terminal_id,
            host=self.host,
            clock=self.clock,
            profile=self.config.faults,
            generator=self._fault_random,
            counter=self.faults,
            trace=self.trace,
            day=lambda: self.day,
        )
        node = _Node(index, terminal_id, merchant_id, TerminalSecrets(master_key, pan_key), link)
        self._install(node, batch_no=self.config.start_batch_no)
        return node

    def _install(self, node: _Node, *, batch_no: int, reinstall: bool = False) -> None:
        """A new journal (first install, or a reinstall: counters reset) and its engine."""
        database = MemoryDatabase(JOURNAL)
        journal = _CrashingJournal(database.engine(), node.link)
        self._initialize(node, journal, batch_no=batch_no, reinstall=reinstall)
        node.databases.append(database)
        node.journals.append(journal)
        node.engine = self._engine(node, journal)
        journal.armed = True

    def _initialize(self, node: _Node, journal: Journal, *, batch_no: int, reinstall: bool) -> None:
        """``posbatch terminal init`` of ``node``'s identity on an empty ``journal``."""
        Terminal.initialize(
            journal,
            merchant_id=node.merchant_id,
            terminal_id=node.terminal_id,
            host_address=HOST_ADDRESS,
            clock=self.clock.view(lambda: node.skew_ms),
            batch_no=batch_no,
            reinstall=reinstall,
        )

    def _engine(self, node: _Node, journal: Journal) -> Terminal:
        kind = _SkipReversalTerminal if Breakage.SKIP_REVERSAL in self.config.broken else Terminal
        return kind(
            journal,
            node.secrets,
            clock=self.clock.view(lambda: node.skew_ms),
            exchange=node.link.exchange,
            random_bytes=self.random.bytes_source(f"terminal:{node.terminal_id}"),
            timeout_ms=self.config.timeout_ms,
            on_answer=node.link.count_answer,
        )

    def _reopen(self, node: _Node) -> None:
        """After a crash: the process is gone, the journal file is not. The chain is
        verified from the checkpoint the terminal kept (what it verified or wrote itself)."""
        checkpoint = node.journal.checkpoint
        node.journal.engine.dispose()
        journal = _CrashingJournal(node.databases[-1].engine(), node.link)
        journal.verify(since=checkpoint)
        node.journals[-1] = journal
        node.engine = self._engine(node, journal)
        journal.armed = True

    # --- tracing --------------------------------------------------------------------

    def _note(self, node: _Node, kind: EventKind, text: str) -> None:
        self.trace.record(self.clock.now_ms, self.day, node.terminal_id, kind, text=text)

    def _fault(self, node: _Node, kind: FaultKind, text: str = "") -> None:
        self.faults.add(kind)
        self._note(node, EventKind.FAULT, kind.value + (f": {text}" if text else ""))

    # --- planning a day ---------------------------------------------------------------

    def _plan_day(self) -> list[_Event]:
        profile, chance = self.config.faults, self._fault_random
        day_start = self.day * DAY_MS
        events: list[_Event] = []
        order = 0

        def add(
            at_ms: int, node: _Node, action: _Action, operation: Operation | None = None
        ) -> None:
            nonlocal order
            order += 1
            events.append(_Event(at_ms, action * 1_000_000 + order, node.index, action, operation))

        for node in self.nodes:
            node.skew_ms = 0
            if profile.strikes(FaultKind.CLOCK_SKEW, chance):
                node.skew_ms = chance.choice(CLOCK_SKEWS_MS)
                self._fault(node, FaultKind.CLOCK_SKEW, f"{node.skew_ms:+d} ms for the day")
            node.holiday = profile.strikes(FaultKind.HOLIDAY, chance)
            if node.holiday:
                self._fault(node, FaultKind.HOLIDAY)
            node.busy_limit = None
            if self._workload.random() < BUSY_DAY_SHARE:
                node.busy_limit = self._workload.choice(BUSY_BATCH_LIMITS)
            at = day_start + OPENING_MS + self._workload.randint(0, OPENING_SPREAD_MS)
            add(at, node, _Action.SIGN_ON)
            if self._third_random.random() < PROBE_SHARE:
                add(
                    at + self._third_random.randint(1, CLOSING_MS - OPENING_MS), node, _Action.PROBE
                )
            if profile.strikes(FaultKind.BATCH_TYPO, chance):
                add(at + 1_000, node, _Action.TYPO)
            times = []
            for _ in range(self.config.transactions):
                operation = draw_operation(self._workload)
                at += operation.think_ms
                times.append(at)
                add(at, node, _Action.OPERATION, operation)
            if profile.strikes(FaultKind.BACK_OFFICE_ADVANCE, chance):
                # While the shop trades, so that the terminal meets it (a 77) before settling.
                add(chance.randint(day_start + OPENING_MS, at), node, _Action.BACK_OFFICE)
            if profile.strikes(FaultKind.TERMINAL_REINSTALL, chance):
                add(chance.choice(times) - 1 if times else at, node, _Action.REINSTALL)
            if profile.strikes(FaultKind.BACKUP_RESTORE, chance):
                # backup before one operation, reinstall before a later one, restore at once
                # or before one later still (the trading in between is the host's alone)
                moments = sorted(chance.sample(times, 3)) if len(times) >= 3 else [at, at, at]
                add(moments[0] - 2, node, _Action.BACKUP)
                add(moments[1] - 2, node, _Action.REINSTALL)
                add(chance.choice((moments[1], moments[2])) - 1, node, _Action.RESTORE)
            closing = max(at, day_start + CLOSING_MS)
            settle_at = closing + self._workload.randint(0, CLOSING_SPREAD_MS)
            if not node.holiday:
                add(settle_at, node, _Action.SETTLE)
            if profile.strikes(FaultKind.JOURNAL_COPIED_BACK, chance) and times:
                # Copied between two operations; put back later the same day — between two
                # later operations, or after the settlement (a batch older than the host's).
                copy_at = chance.choice(times) + 1
                add(copy_at, node, _Action.COPY)
                later = [t for t in times if t > copy_at]
                add(chance.choice([*later, settle_at]) + 2, node, _Action.COPY_BACK)
            if profile.strikes(FaultKind.DOCTOR_DIAGNOSIS, chance):
                # After some operation, or after the settlement: wherever the day's faults left it.
                add(chance.choice([*times, settle_at]) + 3, node, _Action.DOCTOR)
            if profile.strikes(FaultKind.SECOND_DEVICE, chance) and len(times) >= SECOND_SALES + 1:
                # Starts after one operation, sells after each of the next ones, and is found
                # (doctor) and taken out of service after the last of them.
                first = chance.randrange(len(times) - SECOND_SALES)
                add(times[first] + 1, node, _Action.SECOND_DEVICE_ON)
                for at_ms in times[first + 1 : first + 1 + SECOND_SALES]:
                    add(at_ms + 1, node, _Action.SECOND_DEVICE_SALE)
                add(times[first + SECOND_SALES] + 2, node, _Action.SECOND_DEVICE_OFF)
        events.sort()
        return events

    # --- playing it ------------------------------------------------------------------

    def run_day(self) -> None:
        handlers: dict[_Action, Callable[[_Node], None]] = {
            _Action.BACK_OFFICE: self._back_office,
            _Action.REINSTALL: self._reinstall,
            _Action.BACKUP: self._backup,
            _Action.RESTORE: self._restore,
            _Action.PROBE: lambda _node: self._probe(),
            _Action.SETTLE: lambda node: self._settle(node, attempts=SETTLE_ATTEMPTS_MAX),
            _Action.COPY: self._copy,
            _Action.COPY_BACK: self._copy_back,
            _Action.DOCTOR: self._doctor_mid_faults,
            _Action.SECOND_DEVICE_ON: self._second_device_on,
            _Action.SECOND_DEVICE_SALE: self._second_device_sale,
            _Action.SECOND_DEVICE_OFF: self._second_device_off,
        }
        for event in self._plan_day():
            self.clock.advance_to(event.at_ms)
            node = self.nodes[event.node]
            handler = handlers.get(event.action)
            if handler is None:
                self._guarded(node, event)  # a cashier's operation
            else:
                handler(node)
        self._check(final=False)
        self.day += 1
        self.clock.advance_to(self.day * DAY_MS)

    def _guarded(self, node: _Node, event: _Event) -> None:
        """Run one cashier action; whatever the engine says is counted, nothing escapes."""
        errors_before = node.link.batch_errors
        outcome = "ok"
        try:
            if event.action is _Action.SIGN_ON:
                outcome = self._sign_on(node)
            elif event.action is _Action.TYPO:
                outcome = self._typo(node)
            else:
                assert event.operation is not None
                outcome = self._operate(node, event.operation)
        except SimulatedCrash as crash:
            outcome = f"crashed {crash.where}"
            self._reopen(node)
        except HostUnreachable:
            outcome = "no answer"
        except Declined as declined:
            outcome = f"declined {declined.response_code}"
            if "nothing was sent" in str(declined):  # a card refused before a STAN was spent
                self.result.outcomes[f"refused on the terminal {declined.response_code}"] += 1
        except (TerminalError, ConfigError) as refused:
            outcome = "refused: " + str(refused)
            self.result.outcomes[f"refused ({type(refused).__name__})"] += 1
            if DOCTOR_HINT in outcome:
                outcome += "; " + self._doctor(node)
        except Exception as exc:  # invariant 6: the engine blew up
            self._engine_failure(node, exc)
            outcome = "ENGINE RAISED"
        self._resolve(node, errors_before, outcome)
        self._note(node, EventKind.OUTCOME, outcome)

    def _doctor(self, node: _Node) -> str:
        """The engine gave up and asked for doctor: run ``doctor --fix --yes`` on it."""
        site = TerminalSite(
            node.terminal, node.link.exchange, self.clock.view(lambda: node.skew_ms)
        )
        try:
            report = examine(site, fix=True, host_store=self.store, echo_count=0)
        except SimulatedCrash:
            self._reopen(node)
            return "doctor interrupted by a crash"
        except (TerminalError, ConfigError) as refused:
            return f"doctor could not run: {refused}"
        done = [r.repair.value for r in report.repairs_done if r.status is RepairStatus.DONE]
        healthy = report.after is not None and not report.after.failed
        self.result.doctor_runs["repaired" if healthy else "not repaired"] += 1
        return f"doctor: {report.diagnosis.cause}; repaired by {', '.join(done) or 'nothing'}"

    def _resolve(self, node: _Node, errors_before: int, outcome: str) -> None:
        met = node.link.batch_errors - errors_before
        if not met:
            return
        self.result.batch_errors += met
        for reason in node.link.batch_error_reasons[-met:]:
            self.result.batch_error_causes[reason] += 1
        if "doctor:" in outcome and "repaired by" in outcome:
            self.result.resolved["doctor"] += met
        elif DOCTOR_HINT in outcome:
            self.result.resolved["unresolved (needs a person)"] += met
        else:
            self.result.resolved["automatic"] += met

    def _engine_failure(self, node: _Node, exc: BaseException) -> None:
        self._failures.append((node.terminal_id, f"{type(exc).__name__}: {exc}"))
        self._note(node, EventKind.FAULT, f"ENGINE RAISED {exc!r}")
        self._reopen(node)

    def _sign_on(self, node: _Node) -> str:
        self._note(node, EventKind.OPERATION, "sign on")
        limit = node.busy_limit or BATCH_LIMIT_DEFAULT
        if node.journal.state().batch_limit != limit:
            node.terminal.set_batch_limit(limit)
            if node.busy_limit is not None:
                self.result.workload["busy day: batch limit lowered"] += 1
        result = node.terminal.sign_on()
        return f"signed on, batch {result.batch_no:06d} (host {result.host_batch_no:06d})"

    def _typo(self, node: _Node) -> str:
        """The cashier types the batch number twice, with the same slip both times."""
        true_batch_no = node.journal.current_batch().batch_no
        digits = list(f"{true_batch_no:06d}")
        position = self._fault_random.randrange(6)
        digits[position] = str((int(digits[position]) + self._fault_random.randint(1, 9)) % 10)
        typed = "".join(digits)
        self._fault(node, FaultKind.BATCH_TYPO, f"typed {typed} for {true_batch_no:06d}")
        self.result.batch_errors += 1
        self.result.batch_error_causes["typo at manual entry"] += 1
        resolution = "interrupted (crash)"
        try:
            node.terminal.set_batch_no(typed, typed)
            resolution = "typed number matched the host"
        except ConfigError as refused:
            resolution = "automatic"
            return "typo refused: " + str(refused)
        except TerminalError:
            resolution = "interrupted (no answer)"
            raise
        finally:
            self.result.resolved[resolution] += 1
        return f"typed {typed} accepted: the host has that number"

    def _operate(self, node: _Node, operation: Operation) -> str:
        kind = operation.kind
        terminal = node.terminal
        self.result.operations[kind.value] += 1
        if kind is OperationKind.VOID:
            sale = self._voidable(node)
            if sale is not None:
                self._note(node, EventKind.OPERATION, f"void of STAN {sale.stan:06d}")
                result = self._settled_first(terminal.void(sale.stan))
                self._check_sent_refusable(node, sale, result, amount_fen=None)
                return self._outcome(result.state)
            kind = OperationKind.SALE
        if kind is OperationKind.REFUND:
            original = self._refundable(node)
            if original is not None:
                left = original.amount_fen - original.refunded_fen
                amount = left if self._workload.random() < 0.5 else self._workload.randint(1, left)
                self._note(node, EventKind.OPERATION,
                           f"refund {amount} of STAN {original.stan:06d} "
                           f"batch {original.batch_no:06d}")  # fmt: skip
                result = terminal.refund(original.stan, amount, original_batch_no=original.batch_no)
                self._check_sent_refusable(node, original, result, amount_fen=amount)
                return self._outcome(self._settled_first(result).state)
            kind = OperationKind.SALE
        card = operation.card
        if kind is OperationKind.TRAINING:
            self._note(node, EventKind.OPERATION, f"training sale {operation.amount_fen}")
            terminal.set_training(True)
            try:
                result = terminal.sale(operation.amount_fen, card.pan, expiry=card.expiry)
            finally:
                terminal.set_training(False)
            return self._outcome(result.state)
        self._note(node, EventKind.OPERATION, f"sale {operation.amount_fen} on {card.label}")
        if card.edge:
            self.result.workload[f"edge card: {card.label}"] += 1
        result = self._settled_first(
            terminal.sale(operation.amount_fen, card.pan, expiry=card.expiry)
        )
        if result.response_code and result.state == TxnState.DECLINED:
            self.result.outcomes[f"declined {result.response_code}"] += 1
            return f"declined {result.response_code}"
        return self._outcome(result.state)

    def _check_sent_refusable(
        self, node: _Node, sale: TxnRow, result: TransactionResult, *, amount_fen: int | None
    ) -> None:
        """Invariant 11: a void (``amount_fen`` None) or refund the host declined was not one
        the terminal's own journal refuses — the sale, as the journal holds it once the flow
        is over, neither voided nor refunded (a void), nor left with less than the refund.
        A refund of it left pending goes first in the flow and may be approved before the
        void or refund is written: the terminal must check again then (the kill probe's
        finding; the host declined 12 or 61 what the terminal should not have sent)."""
        if result.state != TxnState.DECLINED:
            return
        now = node.terminal.journal.transaction(sale.txn_id)
        if amount_fen is None:
            refusable = now.refunded_fen > 0 or now.state == TxnState.VOIDED
        else:
            refusable = (
                now.state == TxnState.VOIDED or now.refunded_fen + amount_fen > now.amount_fen
            )
        if not refusable:
            return
        what = "void" if amount_fen is None else f"refund of {amount_fen}"
        violation = Violation(
            11, self.day, node.terminal_id,
            f"a {what} of STAN {sale.stan:06d} was sent and declined {result.response_code}: "
            f"the journal holds the sale {now.state}, {now.refunded_fen} refunded",
            batch_no=now.batch_no, stan=now.stan,
        )  # fmt: skip
        self.result.violations.append(violation)
        self._note(node, EventKind.CHECK, violation.render())

    def _settled_first(self, result: TransactionResult) -> TransactionResult:
        """Count the batches the engine settled by itself before ``result`` (batch full)."""
        if result.settled_batch_nos:
            self.result.workload["batch full: settled by itself, then sold"] += len(
                result.settled_batch_nos
            )
        return result

    def _outcome(self, state: str) -> str:
        self.result.outcomes[state] += 1
        return state

    def _voidable(self, node: _Node) -> TxnRow | None:
        journal = node.journal
        batch = journal.current_batch()
        rows = [
            row
            for row in journal.transactions(batch.batch_id)
            if row.kind == Kind.SALE.value
            and row.state == TxnState.APPROVED
            and not row.refunded_fen
            and not row.training
        ]
        return self._workload.choice(rows) if rows else None

    def _refundable(self, node: _Node) -> TxnRow | None:
        # Sales of the open batch and the last closed ones (customers bring goods back within
        # days): reading every row of a journal at each refund made long runs quadratic.
        journal = node.journal
        recent = journal.batches()[-REFUND_BATCHES_BACK:]
        rows = [
            row
            for batch in recent
            for row in journal.transactions(batch.batch_id)
            if row.kind == Kind.SALE.value
            and row.state == TxnState.APPROVED
            and row.refunded_fen < row.amount_fen
            and not row.training
        ]
        return self._workload.choice(rows) if rows else None

    def _back_office(self, node: _Node) -> None:
        try:
            batch_no = self.core.advance_batch(node.terminal_id, self._back_office_reason(node))
        except (HostError, BatchError) as refused:
            self._note(node, EventKind.FAULT, f"back-office advance refused: {refused}")
            return
        self._fault(node, FaultKind.BACK_OFFICE_ADVANCE, f"host batch now {batch_no:06d}")

    def _back_office_reason(self, node: _Node) -> str:
        """What an operator types as the reason; every other day it names the cardholder's
        card number in full, as people do — the shortest or the longest the profile takes
        (no draw: the seeds' runs stay as they were). The reason reaches the exception
        record and doctor's bundle (invariant 10)."""
        turn = self.day + int(node.terminal_id)
        if turn % 2:
            return "simulated back-office change"
        shortest, longest = min(CARD_NUMBERS, key=len), max(CARD_NUMBERS, key=len)
        return f"cardholder {shortest if turn % 4 else longest} disputes a sale"

    def _reinstall(self, node: _Node) -> None:
        """A new, empty journal and a new PAN key (a reinstall makes both, as `terminal init
        --reinstall` does); the master key is the acquirer's and stays."""
        if node.backup is None:
            self._fault(node, FaultKind.TERMINAL_REINSTALL, f"journal {len(node.journals)} started")
        else:
            self._note(node, EventKind.FAULT, f"reinstall: journal {len(node.journals)} started")
        node.secrets = TerminalSecrets(node.secrets.master_key, self._reinstall_keys.randbytes(32))
        self._install(node, batch_no=1, reinstall=True)

    def _passphrase(self, node: _Node) -> str:
        return f"backup of {node.terminal_id}, seed {self.seed}"

    def _backup(self, node: _Node) -> None:
        """`terminal backup`: a copy of the journal carrying its keys, sealed under the
        merchant's passphrase (the cheapest scrypt cost a backup may record)."""
        backup = node.databases[-1].copy()
        engine = backup.engine()
        try:
            key = BackupKey.seal(
                node.secrets,
                node.terminal_id,
                self._passphrase(node),
                n=SCRYPT_N_MIN,
                random_bytes=self._third_random.randbytes,
            )
            write_backup_key(engine, key)
        finally:
            engine.dispose()
        if node.backup is not None:
            node.backup.close()
        node.backup = backup
        state = node.journal.state()
        self._fault(
            node,
            FaultKind.BACKUP_RESTORE,
            f"backup taken (batch {node.journal.current_batch().batch_no:06d}, STAN "
            f"{state.stan:06d}); a reinstall follows",
        )

    def _restore(self, node: _Node) -> None:
        """`terminal restore` on the reinstalled terminal: every check first (a wrong
        passphrase must change nothing), then the backup's keys and journal in place."""
        backup = node.backup
        if backup is None:
            return
        node.backup = None
        engine = backup.engine()
        old_secrets = node.secrets
        try:
            if self._fault_random.random() < WRONG_PASSPHRASE_SHARE:
                try:
                    opened = secrets_for_backup(
                        engine, node.secrets, passphrase=lambda: "not the passphrase",
                        terminal_id=node.terminal_id,
                    )  # fmt: skip
                except ConfigError:
                    self.result.workload["restore refused: wrong passphrase (nothing changed)"] += 1
                else:  # the terminal's own keys opened it: no passphrase was asked
                    if opened != node.secrets:
                        self._failures.append(
                            (node.terminal_id, "a wrong passphrase opened the backup's keys")
                        )
            secrets = secrets_for_backup(
                engine,
                node.secrets,
                passphrase=lambda: self._passphrase(node),
                terminal_id=node.terminal_id,
            )
        except (ConfigError, StorageError) as refused:
            self._failures.append((node.terminal_id, f"restore refused: {refused}"))
            backup.close()
            return
        finally:
            engine.dispose()
        database = backup.copy()
        backup.close()
        engine = database.engine()
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {BACKUP_KEY_TABLE}")
        engine.dispose()
        node.secrets = secrets
        journal = _CrashingJournal(database.engine(), node.link)
        journal.verify()
        mark_restored(
            journal,
            self.clock.view(lambda: node.skew_ms)(),
            source="the simulated backup",
            key_restored=secrets != old_secrets,
        )
        node.databases.append(database)
        node.journals.append(journal)
        node.engine = self._engine(node, journal)
        journal.armed = True
        restored = "the backup's keys" if secrets != old_secrets else "the same keys"
        self.result.workload[f"restored after a reinstall ({restored})"] += 1
        self._note(node, EventKind.FAULT, f"restored from the backup with {restored}")

    def _probe(self) -> None:
        """The third-party terminal sends what must never be approved; it must be refused.
        Now and then it corrects a reversal instead (the sale must end reversed), then
        reverses a sale under its refund (the sale must stand)."""
        if self._third_random.random() < CORRECTED_REVERSAL_SHARE:
            # then a reversal under a refund (no draw of its own: the probes drawn stay)
            scenarios = (
                ("corrected reversal", self.third_party.corrected_reversal),
                ("reversal under a refund", self.third_party.reversal_under_a_refund),
            )
            for label, scenario in scenarios:
                outcome = scenario(lambda: self.core)
                self.result.workload[f"third-party {label}: {outcome}"] += 1
                if outcome != "balanced":
                    self._failures.append(("host", f"third-party {label}: {outcome}"))
            return
        probe = self._third_random.choice(PROBES)
        code = self.third_party.probe(lambda: self.core, probe)
        self.result.workload[f"third-party probe: {probe.label} → {code}"] += 1
        if code != probe.expected:
            self._failures.append(
                (
                    "host",
                    f"third-party probe {probe.label}: answered {code}, expected {probe.expected}",
                )
            )

    def _copy(self, node: _Node) -> None:
        """Someone copies the terminal's journal (and key) files by hand, for later."""
        if node.copy is not None:
            node.copy[0].close()
        node.copy = (node.databases[-1].copy(), node.secrets)
        self._note(node, EventKind.OPERATION, "journal file copied by hand")

    def _doctor_mid_faults(self, node: _Node) -> None:
        self._fault(node, FaultKind.DOCTOR_DIAGNOSIS)
        self._diagnose(node, "mid-faults")

    def _copy_back(self, node: _Node) -> None:
        """The older copy is put over the journal file; the terminal starts again on it.

        The person copied the terminal's files, the key file with the journal: after a
        reinstall in between (a new PAN key) the copy's card numbers open with the key
        it was sealed with, as a hand copy of the whole folder would.
        """
        copied, node.copy = node.copy, None
        if copied is None:
            return
        copy, node.secrets = copied
        self._fault(node, FaultKind.JOURNAL_COPIED_BACK, f"journal {len(node.journals)} replaced")
        node.journal.engine.dispose()
        journal = _CrashingJournal(copy.engine(), node.link)
        node.databases.append(copy)
        node.journals.append(journal)  # the newer one stays for the checker: its approvals count
        node.engine = self._engine(node, journal)
        journal.armed = True
        self._diagnose(node, "after a copy-back")

    def _second_device_on(self, node: _Node) -> None:
        """A second device set up with this terminal's ID: a new install (its own empty
        journal) or a copy of the terminal's journal and keys. Its journal stays for the
        checker (before the one in use): its approvals are on the host too."""
        cloned = self._fault_random.random() < 0.5
        database = node.databases[-1].copy() if cloned else MemoryDatabase(JOURNAL)
        journal = _CrashingJournal(database.engine(), node.link)  # never armed: no crashes
        if not cloned:
            self._initialize(node, journal, batch_no=1, reinstall=False)
        node.databases.insert(len(node.databases) - 1, database)
        node.journals.insert(len(node.journals) - 1, journal)
        node.second = self._engine(node, journal)
        how = "a copy of its journal" if cloned else "a new install"
        self._fault(node, FaultKind.SECOND_DEVICE, how)

    def _second_device_sale(self, node: _Node) -> None:
        if node.second is None:
            return
        operation = draw_operation(self._workload)
        card = operation.card
        outcome = "ok"
        try:
            result = node.second.sale(operation.amount_fen, card.pan, expiry=card.expiry)
            outcome = self._outcome(result.state)
        except HostUnreachable:
            outcome = "no answer"
        except (TerminalError, ConfigError, Declined) as refused:
            outcome = f"refused: {refused}"
        except Exception as exc:  # invariant 6
            self._failures.append((node.terminal_id, f"second device: {type(exc).__name__}: {exc}"))
            outcome = "ENGINE RAISED"
        self._note(
            node, EventKind.OUTCOME, f"second device: sale {operation.amount_fen}: {outcome}"
        )

    def _second_device_off(self, node: _Node) -> None:
        """The desk runs doctor on the terminal (it must name the second device); then the
        second device settles once, as the person steps say, and is taken out of service."""
        if node.second is None:
            return
        self._diagnose(node, "second device")
        second, node.second = node.second, None
        outcome = "settled"
        for _attempt in range(SETTLE_ATTEMPTS_MAX):
            try:
                second.settle()
                outcome = "settled"
                break
            except HostUnreachable:
                outcome = "no answer"
            except (TerminalError, ConfigError) as refused:
                outcome = f"refused: {refused}"
                break
            except Exception as exc:  # invariant 6
                self._failures.append(
                    (node.terminal_id, f"second device: {type(exc).__name__}: {exc}")
                )
                outcome = "ENGINE RAISED"
                break
        self._note(node, EventKind.OUTCOME, f"second device taken out of service: {outcome}")

    def _state(self, node: _Node) -> tuple[object, ...]:
        """What a later diagnosis reads, on both sides (invariant 9 compares it)."""
        journal = node.journal
        terminal_id = node.terminal_id
        return (
            journal.last_seq,
            journal.chain_hash(journal.last_seq),
            journal.state(),
            self.store.terminal(terminal_id),
            tuple(self.store.batches(terminal_id, limit=STATE_ROWS_MAX)),
            self.store.count_transactions(terminal_id),
            len(self.store.exceptions(terminal_id, limit=STATE_ROWS_MAX)),
        )

    def _diagnose(self, node: _Node, when: str) -> None:
        """``posbatch doctor`` without --fix, as a support desk runs it at any moment.

        Three runs at one frozen instant: one from the journal and the host store, one
        that also sends echo tests through the faulty link (they may be lost, delayed,
        duplicated, crash the terminal), then the first again. Invariant 9: the state of
        both sides is what it was before, and the first and last verdicts agree.
        """
        frozen = self.clock.view(lambda: node.skew_ms)()
        before = self._state(node)
        verdicts = []
        first: Report | None = None
        outcome = "ok"
        for echoes in (0, DOCTOR_ECHOES, 0):
            site = TerminalSite(node.terminal, node.link.exchange, lambda: frozen)
            try:
                if echoes and Breakage.DOCTOR_TAKES_STANS in self.config.broken:
                    with contextlib.suppress(HostUnreachable):
                        node.terminal.echo()
                report = examine(site, host_store=self.store, echo_count=echoes)
            except SimulatedCrash as crash:
                outcome = f"interrupted by a crash {crash.where}"
                self._reopen(node)
                continue
            except (TerminalError, ConfigError) as refused:
                outcome = f"could not run: {refused}"
                continue
            if not echoes:
                verdicts.append(_verdict(report))
                if first is not None and report == first:
                    continue  # the same report renders the same bundle: checked already
                first = first or report
            self._check_bundle(node, when, report)
        # Counted by the verdict from the journal and the host's records (what --host-db
        # gives; the echoes' verdict depends on which of them the faults took).
        named = "could not run" if first is None else _named(first)
        self.result.diagnoses[f"{when}: {named}"] += 1
        self._note(node, EventKind.OUTCOME, f"doctor (diagnosis only) {when}: {named}; {outcome}")
        problems = []
        if self._state(node) != before:
            problems.append("the state of the journal or the host changed")
        if len(verdicts) == 2 and verdicts[0] != verdicts[1]:
            problems.append(f"two verdicts: {verdicts[0][:2]} then {verdicts[1][:2]}")
        for problem in problems:
            violation = Violation(9, self.day, node.terminal_id, f"doctor {when}: {problem}")
            self.result.violations.append(violation)
            self._note(node, EventKind.CHECK, violation.render())

    def _check_bundle(self, node: _Node, when: str, report: Report) -> None:
        """Invariant 10: the support bundle a desk would send on holds no card number the
        world's cashiers used — at every length the profile accepts, edge cards included.

        A bundle is a pure function of its report (``bundle_text``): when the third run's
        report equals the first's, as it does whenever invariant 9 holds, its bundle is the
        first's and is not rendered again (rendering one costs about 10 ms, rich's table layout)."""
        text = "".join(bundle_text(report))
        for pan in CARD_NUMBERS:
            if pan in text:
                violation = Violation(
                    10, self.day, node.terminal_id, f"doctor {when}: a card number in the bundle"
                )
                self.result.violations.append(violation)
                self._note(node, EventKind.CHECK, violation.render())
                return

    def _settle(self, node: _Node, *, attempts: int) -> None:
        errors_before = node.link.batch_errors
        outcome = "not settled"
        for _attempt in range(attempts):
            self._note(node, EventKind.OPERATION, "settle")
            try:
                result = node.terminal.settle()
            except SimulatedCrash as crash:
                outcome = f"crashed {crash.where}"
                self._reopen(node)
                continue
            except HostUnreachable:
                outcome = "no answer"
                continue
            except (TerminalError, ConfigError) as refused:
                outcome = "refused: " + str(refused)
                self.result.outcomes[f"refused ({type(refused).__name__})"] += 1
                if DOCTOR_HINT in outcome:
                    outcome += "; " + self._doctor(node)
                break
            except Exception as exc:  # invariant 6
                self._engine_failure(node, exc)
                outcome = "ENGINE RAISED"
                break
            if result.close_reason == "balanced":
                first = result.resumed_from in ("open", "flushing", "settling")
                key = "balanced first time" if first else "balanced after resume"
            elif result.close_reason == "uploaded":
                key = "balanced after upload"
            else:
                key = result.close_reason.replace("_", " ")
            self.result.settlements[key] += 1
            outcome = f"settled batch {result.batch_no:06d}: {key}"
            break
        else:
            self.result.settlements["left unsettled (no answer)"] += 1
        self._resolve(node, errors_before, outcome)
        self._note(node, EventKind.OUTCOME, outcome)

    # --- checking ---------------------------------------------------------------------

    def snapshot(self, *, final: bool, rules: ClearingRules | None = None) -> Snapshot:
        """Both sides as they are now, for the checker; ``rules``: the clearing rules read
        this night (read here if not given)."""
        failures = list(self._failures)
        failures.extend(
            (failure.terminal_id, f"host: {failure.error}") for failure in self.host.failures
        )
        host_rows = read_host_rows(self.store.engine)  # one read for both (invariants 1-5, 8)
        snapshot = take_snapshot(
            {node.terminal_id: node.journals for node in self.nodes},
            self.store,
            day=self.day,
            failures=failures,
            final=final,
            host_rows=host_rows,
        )
        # the third party's money too: a reversal under a refund leaves a sale and a refund
        terminal_ids = [*(node.terminal_id for node in self.nodes), THIRD_PARTY_TERMINAL_ID]
        clearing = _clearing.take(
            self.store, terminal_ids, since=self._clearing_since,
            now=self.clock.now(), final=final, host_rows=host_rows, rules=rules,
        )  # fmt: skip
        return replace(snapshot, clearing=clearing)

    def _check(self, *, final: bool) -> None:
        # The clearing rules, read once a night: neither the clearing run nor the back
        # office's resolutions change them.
        rules = ClearingStore(self.store).rules()
        # the acquirer's nightly clearing run (清算) of every trading day that has ended
        _clearing.clear_ended_days(
            self.store, self.clock.now(), since=self._clearing_since, rules=rules
        )
        # then the back office works its exception queue (差错): resolutions are adjustments
        _clearing.work_exceptions(self.store, self.random.stream("backoffice"), self.clock.now())
        for violation in check(self.snapshot(final=final, rules=rules)):
            key = (
                violation.invariant,
                violation.terminal_id,
                violation.batch_no,
                violation.stan,
                violation.message,
            )
            if key in self._seen:
                continue
            self._seen.add(key)
            self.result.violations.append(violation)
            self.trace.record(
                self.clock.now_ms,
                self.day,
                violation.terminal_id,
                EventKind.CHECK,
                text=violation.render(),
            )

    # --- the whole run ----------------------------------------------------------------

    def quiet_close(self) -> None:
        """After the last day: no more faults; every terminal settles what it holds."""
        for node in self.nodes:
            node.link.quiet()
            node.skew_ms = 0
        self.clock.advance_to(self.day * DAY_MS + OPENING_MS)
        for node in self.nodes:
            self._settle(node, attempts=QUIET_CLOSE_ATTEMPTS_MAX)
        self._check(final=True)

    def run(self) -> SeedResult:
        for _ in range(self.config.days):
            self.run_day()
        self.quiet_close()
        return self.finish()

    def close(self) -> None:
        """Free every simulated database (the results and the trace stay)."""
        self.store.engine.dispose()
        self.host_database.close()
        for node in self.nodes:
            if node.backup is not None:
                node.backup.close()
            if node.copy is not None:
                node.copy[0].close()
            for journal in node.journals:
                journal.engine.dispose()
            for database in node.databases:
                database.close()

    def finish(self) -> SeedResult:
        result = self.result
        result.faults.update(self.faults.counts)
        for exc in self.store.exceptions(limit=READ_ROWS_MAX):
            result.exceptions[exc.kind] += 1
        for node in self.nodes:
            for journal in node.journals:
                for event in journal.events("batch_full"):
                    source = event.details.get("source")
                    what = "the host's 95" if source == "host" else "the terminal's limit"
                    result.workload[f"batch full met ({what})"] += 1
        for node in self.nodes:
            state = node.journal.state()
            info = self.store.terminal(node.terminal_id)
            self.trace.fold(
                f"{node.terminal_id} journals={len(node.journals)} stan={state.stan} "
                f"batch={node.journal.current_batch().batch_no} "
                f"host_batch={info.batch_no if info else None} "
                f"host_state={info.batch_state if info else None}"
            )
        for violation in result.violations:
            self.trace.fold(violation.render())
        result.digest = self.trace.hexdigest()
        result.frames = self.trace.frames
        return result


def _terminal_id(index: int) -> str:
    return f"{FIRST_TERMINAL_ID + index:08d}"


def _merchant_id(index: int) -> str:
    return f"{MERCHANT_PREFIX}{index:05d}"


def _named(report: Report) -> str:
    """The verdict in a few words: the cause, or the outcome (with the candidates)."""
    diagnosis = report.diagnosis
    if diagnosis.cause is not None:
        return str(diagnosis.cause)
    if diagnosis.candidates and diagnosis.outcome.value == "ambiguous":
        return f"ambiguous ({' + '.join(sorted(diagnosis.candidates))})"
    return str(diagnosis.outcome)


def _verdict(report: Report) -> tuple[object, ...]:
    """What a person acts on: outcome, cause, plan, and every rule's and check's verdict."""
    diagnosis = report.diagnosis
    return (
        diagnosis.outcome,
        diagnosis.cause,
        diagnosis.candidates,
        diagnosis.repairs,
        tuple((cause, finding.verdict) for cause, finding in diagnosis.findings),
        tuple((check.key, check.status) for check in diagnosis.checks),
    )


def run_seed(seed: int, config: SimConfig | None = None) -> SeedResult:
    """One seeded run of ``config`` (defaults: :class:`SimConfig`), checked after every day."""
    world = World(seed, config or SimConfig())
    try:
        return world.run()
    finally:
        world.close()


def replay(seed: int, config: SimConfig) -> tuple[SeedResult, Trace]:
    """Run ``seed`` again keeping every trace event (what ``--replay`` prints)."""
    world = World(seed, replace(config, keep_trace=True))
    try:
        return world.run(), world.trace
    finally:
        world.close()


def run_seeds(seeds: Iterable[int], config: SimConfig, *, jobs: int = 1) -> Iterator[SeedResult]:
    """:func:`run_seed` for each seed, in seed order (the loop of ``posbatch simulate``).

    With ``jobs`` > 1 the seeds run in that many worker processes (seeds are
    independent worlds); results still come back in seed order, and each is the
    same as a run in this process would give (its digest says so).
    """
    if not 1 <= jobs <= JOBS_MAX:
        raise ConfigError(f"jobs must be 1..{JOBS_MAX}")
    if jobs == 1:
        for seed in seeds:
            yield run_seed(seed, config)
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(run_seed, seeds, itertools.repeat(config), chunksize=1)
