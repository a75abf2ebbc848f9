"""DESIGN.md's invariants, checked between a terminal journal and the host's records."""

from __future__ import annotations

from collections import Counter

from posbatch.batch.model import CardType, Kind
from posbatch.batch.totals import compute_totals
from posbatch.host import HostStore
from posbatch.terminal import Journal, Terminal, TxnState
from posbatch.wire import encode_totals

HOST_COUNTED = ("approved", "voided")


def problems(
    terminal: Terminal,
    store: HostStore,
    terminal_id: str,
    *,
    earlier: tuple[Journal, ...] = (),
) -> list[str]:
    """Every broken invariant, as a sentence (an empty list means all hold).

    ``earlier`` are journals this terminal wrote before a reinstall: their
    approvals count as the terminal's too.
    """
    found: list[str] = []
    journal = terminal.journal
    host_rows = store.transactions(terminal_id, limit=100_000)
    host_counted = Counter(
        (row.batch_no, row.stan, row.kind.value, row.amount_fen)
        for row in host_rows
        if row.status in HOST_COUNTED
    )
    local_rows = [row for row in journal.transactions() if not row.training]
    for old in earlier:
        local_rows += [row for row in old.transactions() if not row.training]
    local_counted = Counter(
        (row.batch_no, row.stan, row.kind, row.amount_fen) for row in local_rows if row.counted
    )
    # 1. every approval the terminal shows is in exactly one host batch, once
    for key, count in local_counted.items():
        if host_counted.get(key, 0) != 1 or count != 1:
            found.append(f"terminal approval {key} is in {host_counted.get(key, 0)} host batches")
    # 2. nothing the host counts is missing (or shown reversed) on the terminal
    # A difference the host recorded as an exception (差错) with its cause is accounted for.
    exceptions = {(row.batch_no, row.stan) for row in store.exceptions(terminal_id)}
    for key in host_counted:
        if key not in local_counted and (key[0], key[1]) not in exceptions:
            found.append(f"host counts {key} but the terminal does not, and no exception says why")
    # 2b. a reversed or voided sale nets to zero on the host
    for row in local_rows:
        if (
            row.state == TxnState.REVERSED
            and host_counted.get((row.batch_no, row.stan, row.kind, row.amount_fen))
            and (row.batch_no, row.stan) not in exceptions
        ):
            found.append(f"terminal reversed STAN {row.stan:06d} but the host still counts it")
    # 3. after settlement, totals agree for every batch closed on both sides
    host_batches = {batch.batch_no: batch for batch in store.batches(terminal_id)}
    for batch in journal.batches():
        if batch.step != "closed" or batch.close_reason == "set_aside":
            continue
        host = host_batches.get(batch.batch_no)
        if host is None or host.state.value != "CLOSED":
            found.append(f"batch {batch.batch_no:06d} closed on the terminal, not on the host")
            continue
        local = compute_totals(
            (Kind(row.kind), row.amount_fen, CardType(row.card_type))
            for row in journal.transactions(batch.batch_id)
            if row.counted
        )
        remote = compute_totals(
            (row.kind, row.amount_fen, row.card_type)
            for row in host_rows
            if row.batch_no == batch.batch_no and row.status in HOST_COUNTED
        )
        excused = any(number == batch.batch_no for number, _stan in exceptions)
        if not local.same_amounts(remote) and not excused:
            found.append(
                f"batch {batch.batch_no:06d}: terminal totals {encode_totals(local)} "
                f"host totals {encode_totals(remote)}"
            )
    # 4. no batch number reused while open: one open batch on the terminal
    open_batches = [batch for batch in journal.batches() if batch.step != "closed"]
    if len(open_batches) != 1:
        found.append(f"{len(open_batches)} batches open on the terminal")
    return found
