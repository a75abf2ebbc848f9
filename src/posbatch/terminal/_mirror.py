"""The writer's mirror: what the one engine writing a journal reads without asking the database.

See :class:`~posbatch.terminal._journal.Journal` for what it holds and what it
assumes (a single writer). It changes only after a unit of work has committed,
with the rows that unit wrote (:meth:`Mirror.apply`); when it cannot follow
them it says so and the journal loads it afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from posbatch.batch.terminal_batch import SettleStep
from posbatch.batch.txn_lifecycle import TxnState
from posbatch.terminal._rows import AnyRow, BatchRow, StateRow, TxnRow

__all__ = ["CLOSED_BATCHES_MIRRORED_MAX", "OPEN_TXNS_MIRRORED_MAX", "Mirror"]

# Limits of the writer's mirror (see Journal): rows of the open batch kept in memory (a
# batch that grows past it is read from the database until the next batch opens), and
# closed batches kept after they close (the settlement result reads the last one).
OPEN_TXNS_MIRRORED_MAX: Final = 5_000
CLOSED_BATCHES_MIRRORED_MAX: Final = 2


@dataclass(slots=True)
class Mirror:
    """What the single writer knows of its journal without asking the database."""

    state: StateRow
    batches: dict[int, BatchRow]  # the open batch, every batch not closed, the last closed
    open_txns: dict[int, TxnRow] | None  # the open batch's rows by txn_id; None: too many
    outstanding: dict[int, TxnRow]  # rows in an OUTSTANDING state, of any batch
    top_txn_id: int
    top_batch_id: int

    def apply(self, written: Sequence[tuple[AnyRow, bool]], open_txns_max: int) -> bool:
        """Fold in the rows of a committed unit of work; False if it cannot follow them."""
        state = self.state
        inserted_batches: set[int] = set()
        for row, insert in written:
            if isinstance(row, StateRow):
                state = row
            elif isinstance(row, BatchRow):
                self.batches[row.batch_id] = row
                self.top_batch_id = max(self.top_batch_id, row.batch_id)
                if insert:
                    inserted_batches.add(row.batch_id)
        if state.batch_id != self.state.batch_id:
            if state.batch_id not in inserted_batches:
                return False  # moved to a batch it does not hold the rows of: reload
            self.open_txns = {}
        self.state = state
        for row, _insert in written:
            if not isinstance(row, TxnRow):
                continue
            self.top_txn_id = max(self.top_txn_id, row.txn_id)
            if row.state in TxnState.OUTSTANDING:
                self.outstanding[row.txn_id] = row
            else:
                self.outstanding.pop(row.txn_id, None)
            if self.open_txns is not None and row.batch_id == state.batch_id:
                self.open_txns[row.txn_id] = row
                if len(self.open_txns) > open_txns_max:
                    self.open_txns = None
        closed = [
            batch_id
            for batch_id, batch in self.batches.items()
            if batch.step == SettleStep.CLOSED.value and batch_id != state.batch_id
        ]
        for batch_id in closed[: max(0, len(closed) - CLOSED_BATCHES_MIRRORED_MAX)]:
            del self.batches[batch_id]
        return True
