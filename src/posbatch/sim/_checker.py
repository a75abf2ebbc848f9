"""The checker: DESIGN.md's six invariants over one :class:`~posbatch.sim._model.Snapshot`.

Theory of operation
-------------------
After every simulated day the world copies the terminal journals and the host
store into a snapshot; :func:`check` is a pure function of it and returns
every violation it finds (an empty tuple when the promise held). How each
invariant is read here:

1. *Every transaction the terminal shows as approved is in exactly one host
   batch, once*: each approved sale, void and refund of every journal
   (reinstalled terminals keep their old journals in the snapshot) matches
   exactly one approved host row with the same terminal, batch_no, STAN, kind
   and amount.
2. *No card is charged twice; every reversed or voided sale nets to zero*: a
   host row that stands approved must be approved on the terminal too —
   unless the terminal is still taking it back (a reversal queued, not yet
   acknowledged: only while the run is not final), or it did take it back (or
   was still trying to when its journal was replaced) and the host kept it
   because the batch was already closed — then an exception record must name
   it; a replaced journal's request still in flight in a batch the back
   office closed (or one settled again with other totals) is named by that
   batch's batch-wide record (``batch-advanced``, ``settled-after-advance``,
   ``settled-again-differs``: it puts every approval of the batch before the
   back office, and no journal is left to take the request back); one in a
   host batch still open at the end is not named yet, as the replaced
   journal's approvals there are not: the current journal's totals lack it, so
   that batch's settlement uploads and records it (or the back office closes
   the batch, a batch-wide record). A terminal that simply forgets
   a timed-out sale breaks this. Voids equal their sale; refunds never exceed it.
3. *After settlement, terminal totals equal host totals for every closed
   batch*: for each batch both sides closed, the totals computed from the
   approved rows agree, or the host holds an exception record for that batch
   (the back office owns the difference). A closed host batch's recorded
   totals still equal its rows (a closed batch never changes).
4. *No batch number is reused while its batch is open or recently closed*:
   per terminal, at most one open batch on each side, and no batch number
   repeats among the last :data:`BATCH_REUSE_WINDOW` batches of the host or
   of a journal.
5. *Every exception record has a cause*.
6. *No unhandled exception in host or terminal*: anything that escaped the
   host core or the terminal engine (other than the engine's own
   TerminalError answers) is a violation.
8. *Statements reconcile*: for every trading day, each merchant's statement
   gross equals the host's approved transactions of that day, fees + net =
   gross, and a cleared day computed again is what the clearing run kept
   (:mod:`posbatch.sim._clearing`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from posbatch.batch.model import CardType, Kind, SettlementTotals
from posbatch.batch.totals import tally
from posbatch.sim import _clearing
from posbatch.sim._model import (
    HostBatchRow,
    HostTxnRow,
    HostTxnStatus,
    Snapshot,
    TerminalTxnRow,
    TerminalTxnStatus,
)
from posbatch.wire import encode_totals

__all__ = ["BATCH_REUSE_WINDOW", "INVARIANTS", "Violation", "check"]

BATCH_REUSE_WINDOW: Final = 50
COUNTED_KINDS: Final = frozenset({Kind.SALE, Kind.VOID, Kind.REFUND})
# Exception records that put a whole batch on the back office's desk (it closed a batch
# holding approvals, a terminal settled one it had closed, or settled a closed one again
# with other totals): each approval of that batch is on record for a journal since
# replaced, as posbatch.doctor.account reads them too.
BATCH_WIDE_EXCEPTIONS: Final = frozenset(
    {"batch-advanced", "settled-after-advance", "settled-again-differs"}
)

INVARIANTS: Final = {
    1: "every approved transaction is in exactly one host batch, once",
    2: "no card is charged twice; reversed and voided sales net to zero",
    3: "terminal totals equal host totals for every closed batch",
    4: "no batch number reused while open or recently closed",
    5: "every exception record has a cause",
    6: "no unhandled exception in host or terminal",
    8: "statements reconcile with the host's approved transactions",
    # Checked by the world at each diagnosis-only doctor run, not in snapshots (DESIGN.md:
    # "Diagnosis never changes what it diagnoses").
    9: "a diagnosis changes nothing it diagnoses, and gives the same verdict twice",
    # Checked by the world on the support bundle of each diagnosis (the security rule:
    # no card number beyond its first 6 and last 4 in any bundle).
    10: "a support bundle holds no card number",
    # Checked by the world after each void and refund the host declined: the terminal checks
    # a void or refund against its sale before a STAN is spent, and must not send what its
    # own journal shows it would refuse (a sale refunded, voided, or refunded in full).
    11: "the terminal sends no void or refund its own journal refuses",
}


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: int
    day: int
    terminal_id: str
    message: str
    batch_no: int | None = None
    stan: int | None = None

    def render(self) -> str:
        where = f"terminal {self.terminal_id}"
        if self.batch_no is not None:
            where += f" batch {self.batch_no:06d}"
        if self.stan is not None:
            where += f" stan {self.stan:06d}"
        title = INVARIANTS[self.invariant]
        return f"invariant {self.invariant} ({title}), day {self.day}, {where}: {self.message}"


_Key = tuple[str, int, int]  # terminal_id, batch_no, stan


def _totals(rows: Iterable[tuple[Kind, int, CardType]]) -> SettlementTotals:
    """Field 48 of ``rows`` (capped where a batch holds more than it counts: the host
    records such a batch capped too)."""
    return tally(rows).capped_totals()


def check(snapshot: Snapshot) -> tuple[Violation, ...]:
    """Every violation of invariants 1–6 and 8 in ``snapshot`` (empty when all hold)."""
    day = snapshot.day
    found: list[Violation] = []

    host_by_key: dict[_Key, list[HostTxnRow]] = defaultdict(list)
    for row in snapshot.host_txns:
        host_by_key[(row.terminal_id, row.batch_no, row.stan)].append(row)
    terminal_by_key: dict[_Key, list[TerminalTxnRow]] = defaultdict(list)
    for trow in snapshot.terminal_txns:
        if trow.status is not TerminalTxnStatus.TRAINING:
            terminal_by_key[(trow.terminal_id, trow.batch_no, trow.stan)].append(trow)
    exception_keys: set[_Key] = set()
    exception_batches: set[tuple[str, int]] = set()
    batch_wide: set[tuple[str, int]] = set()
    for exc in snapshot.host_exceptions:
        if exc.batch_no is not None:
            exception_batches.add((exc.terminal_id, exc.batch_no))
            if exc.kind in BATCH_WIDE_EXCEPTIONS:
                batch_wide.add((exc.terminal_id, exc.batch_no))
            if exc.stan is not None:
                exception_keys.add((exc.terminal_id, exc.batch_no, exc.stan))
    # Host batches still open: what a replaced journal left in flight there is named when
    # the batch is settled (the current journal's totals lack it: upload, then an exception
    # for each host-only row) or closed by the back office (a batch-wide record).
    host_open = {
        (batch.terminal_id, batch.batch_no)
        for batch in snapshot.host_batches
        if batch.state != "CLOSED"
    }
    current_journal: dict[str, int] = defaultdict(int)
    for trow in snapshot.terminal_txns:
        current_journal[trow.terminal_id] = max(current_journal[trow.terminal_id], trow.journal)
    for tbatch in snapshot.terminal_batches:
        current_journal[tbatch.terminal_id] = max(
            current_journal[tbatch.terminal_id], tbatch.journal
        )

    # 1. every terminal approval is on the host exactly once
    for trow in snapshot.terminal_txns:
        if trow.status is not TerminalTxnStatus.APPROVED or trow.kind not in COUNTED_KINDS:
            continue
        key = (trow.terminal_id, trow.batch_no, trow.stan)
        matches = [
            row
            for row in host_by_key.get(key, ())
            if row.status is HostTxnStatus.APPROVED
            and row.kind is trow.kind
            and row.amount_fen == trow.amount_fen
        ]
        if len(matches) != 1:
            seen = ", ".join(
                f"{r.kind}/{r.status}/{r.amount_fen}" for r in host_by_key.get(key, ())
            )
            found.append(
                Violation(
                    1,
                    day,
                    trow.terminal_id,
                    f"{trow.kind} of {trow.amount_fen} fen approved on the terminal, "
                    f"{len(matches)} approved host rows (host has: {seen or 'nothing'})",
                    trow.batch_no,
                    trow.stan,
                )
            )

    # 2. what the host charged, the terminal knows about (or is taking back)
    for key, rows in host_by_key.items():
        standing = [row for row in rows if row.status is HostTxnStatus.APPROVED]
        if len(standing) > 1 and len({row.batch_key for row in standing}) < len(standing):
            found.append(Violation(2, day, key[0], "charged twice on the host", key[1], key[2]))
        for row in standing:
            terminal_rows = terminal_by_key.get(key, [])
            statuses = {t.status for t in terminal_rows if t.kind is row.kind}
            if TerminalTxnStatus.APPROVED in statuses:
                continue
            taking_back = statuses & {
                TerminalTxnStatus.REVERSAL_PENDING,
                TerminalTxnStatus.IN_FLIGHT,
            }
            if taking_back and not snapshot.final:
                continue
            if (taking_back or TerminalTxnStatus.REVERSED in statuses) and key in exception_keys:
                continue  # taken back too late, or by a journal since replaced: on record
            replaced = all(
                t.journal < current_journal[key[0]]
                for t in terminal_rows
                if t.kind is row.kind and t.status in taking_back
            )
            if taking_back and replaced and key[:2] in batch_wide:
                continue  # in flight in a journal since replaced; its batch is on record
            if taking_back and replaced and key[:2] in host_open:
                continue  # in flight in a journal since replaced; its host batch still open
            shown = ", ".join(sorted(status.value for status in statuses)) or "no journal row"
            why = (
                "; no exception records the late reversal"
                if TerminalTxnStatus.REVERSED in statuses
                else ""
            )
            found.append(
                Violation(
                    2,
                    day,
                    row.terminal_id,
                    f"host charged a {row.kind} of {row.amount_fen} fen; the terminal shows "
                    f"{shown}{why}",
                    row.batch_no,
                    row.stan,
                )
            )
    by_txn_key = {row.txn_key: row for row in snapshot.host_txns}
    refunded_fen: dict[int, int] = defaultdict(int)
    for row in snapshot.host_txns:
        if row.status is not HostTxnStatus.APPROVED or row.original_key is None:
            continue
        original = by_txn_key.get(row.original_key)
        if original is None:
            found.append(
                Violation(
                    2,
                    day,
                    row.terminal_id,
                    f"{row.kind} without its original",
                    row.batch_no,
                    row.stan,
                )
            )
        elif row.kind is Kind.VOID and row.amount_fen != original.amount_fen:
            found.append(
                Violation(
                    2,
                    day,
                    row.terminal_id,
                    f"void of {row.amount_fen} fen for a sale of {original.amount_fen}",
                    row.batch_no,
                    row.stan,
                )
            )
        elif row.kind is Kind.REFUND:
            refunded_fen[original.txn_key] += row.amount_fen
            if refunded_fen[original.txn_key] > original.amount_fen:
                found.append(
                    Violation(
                        2,
                        day,
                        row.terminal_id,
                        f"refunds of {refunded_fen[original.txn_key]} fen exceed the sale of "
                        f"{original.amount_fen}",
                        row.batch_no,
                        row.stan,
                    )
                )

    # 3. closed batches agree
    host_batches_by_no: dict[tuple[str, int], HostBatchRow] = {}
    for batch in snapshot.host_batches:
        host_batches_by_no[(batch.terminal_id, batch.batch_no)] = batch  # latest wins
    host_rows_by_batch: dict[int, list[HostTxnRow]] = defaultdict(list)
    for row in snapshot.host_txns:
        if row.status is HostTxnStatus.APPROVED and row.kind in COUNTED_KINDS:
            host_rows_by_batch[row.batch_key].append(row)
    terminal_rows_by_batch: dict[tuple[str, int, int], list[TerminalTxnRow]] = defaultdict(list)
    for trow in snapshot.terminal_txns:
        if trow.status is TerminalTxnStatus.APPROVED and trow.kind in COUNTED_KINDS:
            terminal_rows_by_batch[(trow.terminal_id, trow.journal, trow.batch_no)].append(trow)
    for batch in snapshot.host_batches:
        if batch.state != "CLOSED" or batch.host_totals is None:
            continue
        rows_totals = _totals(
            (r.kind, r.amount_fen, r.card_type) for r in host_rows_by_batch[batch.batch_key]
        )
        if not rows_totals.same_amounts(batch.host_totals) and (
            (batch.terminal_id, batch.batch_no) not in exception_batches
        ):
            found.append(
                Violation(
                    3,
                    day,
                    batch.terminal_id,
                    f"closed host batch changed: recorded {encode_totals(batch.host_totals)}, "
                    f"rows now {encode_totals(rows_totals)}",
                    batch.batch_no,
                )
            )
    for tbatch in snapshot.terminal_batches:
        if not tbatch.closed:
            continue
        host_batch = host_batches_by_no.get((tbatch.terminal_id, tbatch.batch_no))
        if host_batch is None or host_batch.state != "CLOSED":
            if tbatch.close_reason and "aside" in tbatch.close_reason:
                continue  # set aside for the back office: no host batch to compare
            state = "missing" if host_batch is None else host_batch.state
            found.append(
                Violation(
                    3,
                    day,
                    tbatch.terminal_id,
                    f"closed on the terminal ({tbatch.close_reason}), host batch {state}",
                    tbatch.batch_no,
                )
            )
            continue
        terminal_totals = _totals(
            (r.kind, r.amount_fen, r.card_type)
            for r in terminal_rows_by_batch[(tbatch.terminal_id, tbatch.journal, tbatch.batch_no)]
        )
        host_totals = _totals(
            (r.kind, r.amount_fen, r.card_type) for r in host_rows_by_batch[host_batch.batch_key]
        )
        if not terminal_totals.same_amounts(host_totals) and (
            (tbatch.terminal_id, tbatch.batch_no) not in exception_batches
        ):
            found.append(
                Violation(
                    3,
                    day,
                    tbatch.terminal_id,
                    f"terminal totals {encode_totals(terminal_totals)} != host totals "
                    f"{encode_totals(host_totals)} and no exception record",
                    tbatch.batch_no,
                )
            )

    # 4. batch numbers
    host_batches_of: dict[str, list[HostBatchRow]] = defaultdict(list)
    for batch in sorted(snapshot.host_batches, key=lambda b: b.batch_key):
        host_batches_of[batch.terminal_id].append(batch)
    for terminal_id, batches in host_batches_of.items():
        open_batches = [b for b in batches if b.state != "CLOSED"]
        if len(open_batches) > 1:
            numbers = ", ".join(f"{b.batch_no:06d}" for b in open_batches)
            found.append(
                Violation(4, day, terminal_id, f"host has several open batches: {numbers}")
            )
        for index, batch in enumerate(batches):
            recent = batches[max(0, index - BATCH_REUSE_WINDOW) : index]
            if any(b.batch_no == batch.batch_no for b in recent):
                found.append(
                    Violation(4, day, terminal_id, "host reused a batch number", batch.batch_no)
                )
    terminal_batches_of: dict[tuple[str, int], list[int]] = defaultdict(list)
    open_of: dict[tuple[str, int], int] = defaultdict(int)
    for tbatch in snapshot.terminal_batches:
        journal_key = (tbatch.terminal_id, tbatch.journal)
        if not tbatch.closed:
            open_of[journal_key] += 1
        if terminal_rows_by_batch.get((tbatch.terminal_id, tbatch.journal, tbatch.batch_no)):
            terminal_batches_of[journal_key].append(tbatch.batch_no)
    for (terminal_id, _journal), count in open_of.items():
        if count > 1:
            found.append(Violation(4, day, terminal_id, f"journal has {count} open batches"))
    for (terminal_id, _journal), batch_numbers in terminal_batches_of.items():
        for index, number in enumerate(batch_numbers):
            if number in batch_numbers[max(0, index - BATCH_REUSE_WINDOW) : index]:
                found.append(
                    Violation(
                        4, day, terminal_id, "journal reused a batch number with approvals", number
                    )
                )

    # 5. exceptions have causes
    for exc in snapshot.host_exceptions:
        if not exc.cause.strip() or not exc.kind.strip():
            found.append(
                Violation(
                    5,
                    day,
                    exc.terminal_id,
                    f"exception {exc.kind!r} without a cause",
                    exc.batch_no,
                    exc.stan,
                )
            )

    # 6. nothing escaped
    for where, what in snapshot.failures:
        found.append(Violation(6, day, where, f"unhandled exception: {what}"))

    # 8. the merchant's money reconciles
    if snapshot.clearing is not None:
        for where, what in _clearing.violations(snapshot.clearing):
            found.append(Violation(8, day, where, what))
    return tuple(found)
