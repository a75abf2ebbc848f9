"""Accounting: is every approval accounted for, on both sides, after a repair?

"Accounted for" (DESIGN.md's promise, the way ``--fix`` is judged):

- every approval the host holds for this terminal is in a host batch that is
  either closed balanced, or closed after batch upload / by the back office
  with each difference an exception (差错) record — or still in the open
  current batch;
- every approval in the terminal journal is on the host in the batch of the
  same number with the same STAN and amount, or has an exception record —
  nothing lost.

Reads only (the host store and the journal); returns the problems found, in
words, so an empty list means accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from posbatch.batch.txn_lifecycle import TransactionStatus
from posbatch.terminal import Journal

__all__ = ["Accounting", "account"]

# Exception kinds that cover a whole batch rather than one STAN.
_BATCH_WIDE: Final = frozenset({"batch-advanced", "settled-after-advance", "settled-again-differs"})
# Rows of one host batch read at once: a batch counts at most 4 × 999 transactions in
# field 48 (declines come on top), so the store's default page of 1,000 is not enough.
BATCH_ROWS_READ_MAX: Final = 100_000


@dataclass(frozen=True, slots=True)
class Accounting:
    host_approvals: int
    journal_approvals: int
    exceptions: int
    problems: tuple[str, ...]

    @property
    def accounted(self) -> bool:
        return not self.problems


def account(store: object, terminal_id: str, journal: Journal | None = None) -> Accounting:
    """Check every approval of ``terminal_id`` (``store`` is a ``posbatch.host.HostStore``)."""
    from posbatch.host.store import HostStore  # noqa: PLC0415 - host is optional for doctor

    assert isinstance(store, HostStore)
    problems: list[str] = []
    exceptions = store.exceptions(terminal_id)
    covered = {(item.batch_no, item.stan) for item in exceptions}
    batch_wide = {item.batch_no for item in exceptions if item.kind in _BATCH_WIDE}
    host_seen: dict[tuple[int, int], int] = {}
    host_count = 0
    for batch in store.batches(terminal_id):
        txns = store.transactions(terminal_id, batch.batch_no, limit=BATCH_ROWS_READ_MAX)
        counted = [tx for tx in txns if tx.status in TransactionStatus.COUNTED]
        host_count += len(counted)
        for tx in counted:
            host_seen[(batch.batch_no, tx.stan)] = tx.amount_fen
        if batch.state.value != "CLOSED":
            continue
        balanced = batch.close_reason == "balanced"
        for tx in counted:
            if balanced or (batch.batch_no, tx.stan) in covered or batch.batch_no in batch_wide:
                continue
            if journal is not None and _in_journal(journal, batch.batch_no, tx.stan, tx.amount_fen):
                continue
            problems.append(
                f"host batch {batch.batch_no:06d} ({batch.close_reason}): {tx.kind.value} "
                f"STAN {tx.stan:06d} {tx.amount_fen} fen is neither settled nor an exception"
            )
    journal_count = 0
    if journal is not None:
        for row in journal.transactions():
            if not row.counted:
                continue
            journal_count += 1
            key = (row.batch_no, row.stan)
            if key in host_seen and host_seen[key] == row.amount_fen:
                continue
            if key in covered or row.batch_no in batch_wide:
                continue
            problems.append(
                f"journal {row.kind} STAN {row.stan:06d} of batch {row.batch_no:06d} "
                f"({row.amount_fen} fen) is not on the host and has no exception record"
            )
    return Accounting(host_count, journal_count, len(exceptions), tuple(problems))


def _in_journal(journal: Journal, batch_no: int, stan: int, amount_fen: int) -> bool:
    return any(row.counted and row.amount_fen == amount_fen for row in journal.find(stan, batch_no))
