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
  the terminal may be reinstalled (a new, empty journal: counters reset) —
  its old journal is kept for the checker, as the old device would be;
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
through their read APIs. After the last day a *quiet close* (no faults)
settles every terminal, and the checker runs once more with ``final``: by
then nothing may still be in flight.
"""

from __future__ import annotations

import concurrent.futures
import enum
import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from sqlalchemy.engine import Engine

from posbatch.batch.counters import BATCH_NO_MAX
from posbatch.doctor import RepairStatus, TerminalSite, examine
from posbatch.errors import (
    BatchError,
    ConfigError,
    Declined,
    HostError,
    HostUnreachable,
    TerminalError,
)
from posbatch.host import HostCore, HostSession, HostStore, IssuerRules
from posbatch.sim import _clearing
from posbatch.sim._checker import check
from posbatch.sim._clock import DAY_MS, VirtualClock
from posbatch.sim._faults import PROFILES, FaultCounter, FaultKind, FaultProfile
from posbatch.sim._link import HostNode, SimLink, SimulatedCrash
from posbatch.sim._memory import HOST, JOURNAL, MemoryDatabase
from posbatch.sim._model import Snapshot
from posbatch.sim._random import SimRandom
from posbatch.sim._result import SeedResult
from posbatch.sim._snapshot import READ_ROWS_MAX, take_snapshot
from posbatch.sim._trace import EventKind, Trace
from posbatch.sim._workload import Operation, OperationKind, draw_operation
from posbatch.terminal import (
    RESPONSE_TIMEOUT_MS,
    Journal,
    Terminal,
    TerminalSecrets,
    TxnRow,
    TxnState,
    Writer,
)
from posbatch.wire import Kind

__all__ = ["Breakage", "SimConfig", "World", "replay", "run_seed", "run_seeds"]

OPENING_MS: Final = 8 * 3_600_000
OPENING_SPREAD_MS: Final = 2 * 3_600_000
CLOSING_MS: Final = 21 * 3_600_000
CLOSING_SPREAD_MS: Final = 90 * 60_000
SETTLE_ATTEMPTS_MAX: Final = 3
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


class Breakage(enum.StrEnum):
    """Deliberately broken behaviour, to prove the checker bites (tests only)."""

    SKIP_REVERSAL = "skip-reversal"  # a request with no answer is written off, never reversed


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


@dataclass(order=True, frozen=True, slots=True)
class _Event:
    at_ms: int
    order: int
    node: int
    action: _Action = field(compare=False)
    operation: Operation | None = field(default=None, compare=False)


class _SkipReversalTerminal(Terminal):
    """Breakage.SKIP_REVERSAL: an unanswered request is marked declined — no 0400 ever goes."""

    def _unanswered(self, row: TxnRow, reason: object) -> TxnRow:
        changed = replace(row, state=TxnState.DECLINED, updated_at=self._now().isoformat())
        with self.journal.write(self._now()) as writer:
            writer.txn(changed)
        return changed


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
        self._failures: list[tuple[str, str]] = []
        self._seen: set[tuple[int, str, int | None, int | None, str]] = set()
        keys = self.random.stream("keys")
        self.host_database = MemoryDatabase(HOST)
        self.store = HostStore(self.host_database.engine(), pan_key=keys.randbytes(32))
        self._host_random_bytes = self.random.bytes_source("host")
        self.core = self._new_core()
        self.host = HostNode(lambda: HostSession(self.core), self._restart_host)
        self.nodes = [self._new_node(index, keys.randbytes(16), keys.randbytes(32))
                      for index in range(config.terminals)]  # fmt: skip
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
        )

    def _restart_host(self) -> None:
        self.core = self._new_core()

    def _new_node(self, index: int, master_key: bytes, pan_key: bytes) -> _Node:
        terminal_id = f"{FIRST_TERMINAL_ID + index:08d}"
        merchant_id = f"{MERCHANT_PREFIX}{index:05d}"
        self.store.add_terminal(merchant_id, terminal_id, master_key, now=self.clock.now())
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
        Terminal.initialize(
            journal,
            merchant_id=node.merchant_id,
            terminal_id=node.terminal_id,
            host_address=HOST_ADDRESS,
            clock=self.clock.view(lambda: node.skew_ms),
            batch_no=batch_no,
            reinstall=reinstall,
        )
        node.databases.append(database)
        node.journals.append(journal)
        node.engine = self._engine(node, journal)
        journal.armed = True

    def _engine(self, node: _Node, journal: Journal) -> Terminal:
        kind = _SkipReversalTerminal if Breakage.SKIP_REVERSAL in self.config.broken else Terminal
        return kind(
            journal,
            node.secrets,
            clock=self.clock.view(lambda: node.skew_ms),
            exchange=node.link.exchange,
            random_bytes=self.random.bytes_source(f"terminal:{node.terminal_id}"),
            timeout_ms=self.config.timeout_ms,
        )

    def _reopen(self, node: _Node) -> None:
        """After a crash: the process is gone, the journal file is not."""
        node.journal.engine.dispose()
        journal = _CrashingJournal(node.databases[-1].engine(), node.link)
        journal.verify()
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
            at = day_start + OPENING_MS + self._workload.randint(0, OPENING_SPREAD_MS)
            add(at, node, _Action.SIGN_ON)
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
            if not node.holiday:
                closing = max(at, day_start + CLOSING_MS)
                add(closing + self._workload.randint(0, CLOSING_SPREAD_MS), node, _Action.SETTLE)
        events.sort()
        return events

    # --- playing it ------------------------------------------------------------------

    def run_day(self) -> None:
        for event in self._plan_day():
            self.clock.advance_to(event.at_ms)
            node = self.nodes[event.node]
            if event.action is _Action.BACK_OFFICE:
                self._back_office(node)
            elif event.action is _Action.REINSTALL:
                self._reinstall(node)
            elif event.action is _Action.SETTLE:
                self._settle(node, attempts=SETTLE_ATTEMPTS_MAX)
            else:
                self._guarded(node, event)
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
                return self._outcome(terminal.void(sale.stan).state)
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
                return self._outcome(result.state)
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
        result = terminal.sale(operation.amount_fen, card.pan, expiry=card.expiry)
        if result.response_code and result.state == TxnState.DECLINED:
            self.result.outcomes[f"declined {result.response_code}"] += 1
            return f"declined {result.response_code}"
        return self._outcome(result.state)

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
            batch_no = self.core.advance_batch(node.terminal_id, "simulated back-office change")
        except (HostError, BatchError) as refused:
            self._note(node, EventKind.FAULT, f"back-office advance refused: {refused}")
            return
        self._fault(node, FaultKind.BACK_OFFICE_ADVANCE, f"host batch now {batch_no:06d}")

    def _reinstall(self, node: _Node) -> None:
        self._fault(node, FaultKind.TERMINAL_REINSTALL, f"journal {len(node.journals)} started")
        self._install(node, batch_no=1, reinstall=True)

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

    def snapshot(self, *, final: bool) -> Snapshot:
        failures = list(self._failures)
        failures.extend(
            (failure.terminal_id, f"host: {failure.error}") for failure in self.host.failures
        )
        snapshot = take_snapshot(
            {node.terminal_id: node.journals for node in self.nodes},
            self.store,
            day=self.day,
            failures=failures,
            final=final,
        )
        clearing = _clearing.take(
            self.store, [node.terminal_id for node in self.nodes], since=self._clearing_since,
            now=self.clock.now(), final=final,
        )  # fmt: skip
        return replace(snapshot, clearing=clearing)

    def _check(self, *, final: bool) -> None:
        # the acquirer's nightly clearing run (清算) of every trading day that has ended
        _clearing.clear_ended_days(self.store, self.clock.now(), since=self._clearing_since)
        for violation in check(self.snapshot(final=final)):
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
