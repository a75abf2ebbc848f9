"""Is a card payment a till reports real? Ask the host's store.

A till tells the back office "order R is paid: batch_no B, STAN S" (or
"return N is refunded"). Over HTTP anyone could say that. Where the host's
store is reachable — the catalog shares the host's database
(``POSBATCH_DATABASE_URL``) or the back office's data directory holds the
host's ``host.db`` — the back office looks the transaction up: same
terminal, batch_no, STAN, kind and amount, approved. Then:

- found → ``verified``;
- the host holds no such approval → ``mismatch``: the order or return is
  *not* completed (it stays pending, shown so; stock does not move);
- the host's store cannot be read → ``unverified``: completed (the money may
  well be taken; refusing would lose the sale's record) and shown as
  unverified until ``posbatch catalog verify-payments`` checks it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from posbatch import storage
from posbatch.batch.money import format_fen
from posbatch.errors import PosbatchError
from posbatch.host import HostStore
from posbatch.host.store import TransactionStatus

__all__ = [
    "HOST_BATCH_ROWS_MAX",
    "HOST_DB_FILE_NAME",
    "CardTransaction",
    "HostStoreVerifier",
    "PaymentCheck",
    "PaymentVerifier",
    "host_verifier_for",
]

HOST_DB_FILE_NAME = "host.db"
HOST_BATCH_ROWS_MAX = 20_000
"""Most host rows read for one batch (999 debits + 999 credits per card class, declines)."""


class PaymentCheck(StrEnum):
    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class CardTransaction:
    """What a till says the terminal did: a sale (order paid) or a void/refund (return)."""

    kind: str
    terminal_id: str
    batch_no: str
    stan: str
    amount_fen: int

    def describe(self) -> str:
        return (
            f"{self.kind} STAN {self.stan} in batch {self.batch_no} of terminal "
            f"{self.terminal_id} for {format_fen(self.amount_fen)}"
        )


class PaymentVerifier(Protocol):
    def check(self, transaction: CardTransaction) -> tuple[PaymentCheck, str]:
        """The verdict and a one-line reason."""
        ...


_STANDING = {
    "sale": frozenset({TransactionStatus.APPROVED, TransactionStatus.VOIDED}),
    "void": frozenset({TransactionStatus.APPROVED}),
    "refund": frozenset({TransactionStatus.APPROVED}),
}


class HostStoreVerifier:
    """Looks card transactions up in the host's store (opened on first use).

    ``owned``: the verifier opened the store and closes it (False: a store
    shared with its owner, e.g. a host in the same process, is left open).
    """

    def __init__(self, connect: Callable[[], HostStore], *, owned: bool = True) -> None:
        self._connect = connect
        self._owned = owned
        self._store: HostStore | None = None
        self._lock = threading.Lock()  # catalog serve checks from several threads

    @classmethod
    def over(cls, store: HostStore) -> HostStoreVerifier:
        """A verifier reading an open host store it does not own."""
        return cls(lambda: store, owned=False)

    def check(self, transaction: CardTransaction) -> tuple[PaymentCheck, str]:
        try:
            with self._lock:
                if self._store is None:
                    self._store = self._connect()
                store = self._store
            rows = store.transactions(
                transaction.terminal_id, int(transaction.batch_no), limit=HOST_BATCH_ROWS_MAX
            )
        except (PosbatchError, sa.exc.SQLAlchemyError, OSError, ValueError) as exc:
            self.close()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return PaymentCheck.UNVERIFIED, f"host store unreachable: {reason}"
        for row in rows:
            if (
                f"{row.stan:06d}" == transaction.stan
                and str(row.kind) == transaction.kind
                and row.amount_fen == transaction.amount_fen
                and row.status in _STANDING.get(transaction.kind, frozenset())
            ):
                return PaymentCheck.VERIFIED, f"the host approved the {transaction.describe()}"
        return (
            PaymentCheck.MISMATCH,
            f"the host holds no approved {transaction.describe()}",
        )

    def close(self) -> None:
        with self._lock:
            if self._store is not None and self._owned:
                self._store.close()
            self._store = None


def host_verifier_for(data_dir: Path) -> HostStoreVerifier | None:
    """The verifier of a back office in ``data_dir`` (None: no host store there to ask).

    The host's store is the shared database of ``POSBATCH_DATABASE_URL``, or
    ``data_dir``/host.db when that file exists.
    """
    url = storage.database_url(data_dir, file_name=HOST_DB_FILE_NAME)
    if url.startswith("sqlite") and not (data_dir / HOST_DB_FILE_NAME).exists():
        return None
    return HostStoreVerifier(lambda: HostStore.open(url, migrate=False))
