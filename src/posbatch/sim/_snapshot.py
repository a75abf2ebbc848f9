"""Copy both sides' records into a :class:`~posbatch.sim._model.Snapshot` for the checker.

The journals are read through their public read API (:class:`~posbatch.terminal.Journal`
``transactions``, ``batches``); the host's tables with bare SQL, once a night for every
terminal (:func:`~posbatch.sim._host_rows.read_host_rows`: its read API cost three
statements per terminal, built and compiled each time), the rows it gives converted as
the read API converts them. The simulator and the demo both check through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from posbatch.batch.model import CardType, Kind
from posbatch.host import HostStore, TransactionStatus
from posbatch.sim._host_rows import HostRows, read_host_rows
from posbatch.sim._model import (
    HostBatchRow,
    HostTxnRow,
    HostTxnStatus,
    Snapshot,
    TerminalBatchRow,
    TerminalTxnRow,
    TerminalTxnStatus,
)
from posbatch.terminal import Journal, TxnRow, TxnState
from posbatch.wire import decode_totals

__all__ = ["READ_ROWS_MAX", "take_snapshot"]

READ_ROWS_MAX: Final = 1_000_000

_HOST_STATUS: Final = {
    TransactionStatus.APPROVED: HostTxnStatus.APPROVED,
    TransactionStatus.VOIDED: HostTxnStatus.APPROVED,  # the sale still counts; its void credits
    TransactionStatus.DECLINED: HostTxnStatus.DECLINED,
    TransactionStatus.REVERSED: HostTxnStatus.REVERSED,
}

_TERMINAL_STATUS: Final = {
    TxnState.APPROVED: TerminalTxnStatus.APPROVED,
    TxnState.VOIDED: TerminalTxnStatus.APPROVED,
    TxnState.DECLINED: TerminalTxnStatus.DECLINED,
    TxnState.PENDING: TerminalTxnStatus.IN_FLIGHT,
    TxnState.RESEND_PENDING: TerminalTxnStatus.IN_FLIGHT,
    TxnState.REVERSAL_PENDING: TerminalTxnStatus.REVERSAL_PENDING,
    TxnState.REVERSED: TerminalTxnStatus.REVERSED,
    TxnState.TRAINING: TerminalTxnStatus.TRAINING,
}


def _terminal_txn(terminal_id: str, journal: int, row: TxnRow) -> TerminalTxnRow:
    status = TerminalTxnStatus.TRAINING if row.training else _TERMINAL_STATUS[row.state]
    return TerminalTxnRow(
        terminal_id,
        journal,
        row.batch_no,
        row.stan,
        Kind(row.kind),
        row.amount_fen,
        CardType(row.card_type),
        status,
        row.original_batch_no,
        row.original_stan,
        row.state,
    )


def take_snapshot(
    journals: Mapping[str, Sequence[Journal]],
    store: HostStore,
    *,
    day: int,
    failures: Iterable[tuple[str, str]] = (),
    final: bool = False,
    host_rows: HostRows | None = None,
) -> Snapshot:
    """Both sides of every terminal in ``journals`` (terminal_id → its journals, oldest first).

    ``host_rows``: the host's records already read this night (read here if not given).
    """
    host = read_host_rows(store.engine) if host_rows is None else host_rows
    terminal_txns: list[TerminalTxnRow] = []
    terminal_batches: list[TerminalBatchRow] = []
    host_txns: list[HostTxnRow] = []
    host_batches: list[HostBatchRow] = []
    for terminal_id, its_journals in journals.items():
        for number, journal in enumerate(its_journals):
            terminal_txns.extend(
                _terminal_txn(terminal_id, number, row) for row in journal.transactions()
            )
            for batch in journal.batches():
                terminal_batches.append(
                    TerminalBatchRow(
                        terminal_id,
                        number,
                        batch.batch_no,
                        batch.step,
                        batch.step == "closed",
                        batch.balanced,
                        batch.close_reason,
                        decode_totals(batch.terminal_totals) if batch.terminal_totals else None,
                    )
                )
        batch_key: dict[int, int] = {}
        for info in host.batches.get(terminal_id, ()):
            batch_key[info.batch_no] = info.batch_id  # the latest batch of a number wins
            host_batches.append(
                HostBatchRow(
                    terminal_id,
                    info.batch_id,
                    info.batch_no,
                    info.state,
                    info.close_reason,
                    None if info.host_totals is None else decode_totals(info.host_totals),
                )
            )
        for txn in host.transactions.get(terminal_id, ()):
            host_txns.append(
                HostTxnRow(
                    terminal_id,
                    txn.batch_no,
                    batch_key.get(txn.batch_no, -1),
                    txn.transaction_id,
                    txn.stan,
                    Kind(txn.kind),
                    txn.amount_fen,
                    CardType(txn.card_type),
                    _HOST_STATUS.get(txn.status, HostTxnStatus.DECLINED),
                    txn.response_code,
                    txn.original_transaction_id,
                )
            )
    exceptions = tuple(exc for exc in host.exceptions if exc.terminal_id in journals)
    return Snapshot(
        day,
        tuple(terminal_txns),
        tuple(terminal_batches),
        tuple(host_txns),
        tuple(host_batches),
        exceptions,
        tuple(failures),
        final,
    )
