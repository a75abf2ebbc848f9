"""The host over real loopback sockets: whole days of a terminal, and a resumed upload."""

from __future__ import annotations

from host_helpers import PAN, TERMINAL_ID, RunningHost

from posbatch.batch.model import BatchState, CardType, Kind, Reconciliation
from posbatch.batch.totals import compute_totals
from posbatch.host import ExceptionKind
from posbatch.wire import SettlementResponse, UploadRecord

D = CardType.DOMESTIC


def test_sign_on_sell_void_refund_settle_balanced(running_host: RunningHost) -> None:
    """A terminal on a socket signs on, sells, voids, refunds and settles balanced."""
    with running_host.connect() as sock:
        term = running_host.terminal(sock)
        codes = [term.sign_on().response_code]
        sale = term.sale(1250)
        other = term.sale(800)
        codes += [sale.response_code, other.response_code]  # type: ignore[union-attr]
        codes.append(term.void(other.stan, 800).response_code)  # type: ignore[union-attr]
        codes.append(term.refund(1, sale.stan, 250).response_code)  # type: ignore[union-attr]
        totals = compute_totals(
            [(Kind.SALE, 1250, D), (Kind.SALE, 800, D), (Kind.VOID, 800, D), (Kind.REFUND, 250, D)]
        )
        answer = term.settle(totals)
    assert isinstance(answer, SettlementResponse) and answer.totals is not None
    assert (codes, answer.totals.domestic.reconciliation) == (["00"] * 5, Reconciliation.BALANCED)
    batches = [(b.batch_no, b.state) for b in running_host.store.batches(TERMINAL_ID)]
    assert batches == [(1, BatchState.CLOSED), (2, BatchState.OPEN)]


def test_unbalanced_settlement_and_batch_upload(running_host: RunningHost) -> None:
    """Totals that differ get code 2; the upload and 207 close the batch with one exception."""
    with running_host.connect() as sock:
        term = running_host.terminal(sock)
        term.sign_on()
        stans = [term.sale(100 * (i + 1)).stan for i in range(10)]  # type: ignore[union-attr]
        records = [UploadRecord(D, stan, PAN, 100 * (i + 1)) for i, stan in enumerate(stans)]
        records.append(UploadRecord(D, 999, PAN, 5))
        claimed = compute_totals([(Kind.SALE, r.amount_fen, D) for r in records])
        answer = term.settle(claimed)
        assert isinstance(answer, SettlementResponse) and answer.totals is not None
        code = answer.totals.domestic.reconciliation
        acks = [term.upload(tuple(records[i : i + 8])).response_code for i in (0, 8)]  # type: ignore[union-attr]
        end = term.upload_end(len(records))
    kinds = [(e.kind, e.stan) for e in running_host.store.exceptions(TERMINAL_ID)]
    assert (code, acks, end.response_code, kinds) == (  # type: ignore[union-attr]
        Reconciliation.NOT_BALANCED,
        ["00", "00"],
        "00",
        [(ExceptionKind.TERMINAL_ONLY, 999)],
    )


def test_upload_killed_midway_resumes_on_a_new_connection(running_host: RunningHost) -> None:
    """A terminal that drops the socket mid-upload resumes on a new one and closes the batch."""
    with running_host.connect() as sock:
        term = running_host.terminal(sock)
        term.sign_on()
        stans = [term.sale(100).stan for _ in range(12)]  # type: ignore[union-attr]
        records = [UploadRecord(D, stan, PAN, 100) for stan in stans]
        term.settle(compute_totals([(Kind.SALE, 1, D)]))
        term.upload(tuple(records[:8]))
    # The connection is gone; the host keeps the batch UPLOADING with 8 records.
    assert running_host.store.terminal(TERMINAL_ID).batch_state == BatchState.UPLOADING  # type: ignore[union-attr]
    with running_host.connect() as sock:
        again = running_host.terminal(sock, stan=term.stan)
        sign_on = again.sign_on()
        again.upload(tuple(records[4:12]))  # resends 4 already acknowledged: idempotent
        end = again.upload_end(12)
    assert (sign_on.batch_state.host_batch_state, end.response_code) == (  # type: ignore[union-attr]
        BatchState.UPLOADING,
        "00",
    )
    assert running_host.store.exceptions(TERMINAL_ID) == []
    assert running_host.store.terminal(TERMINAL_ID).batch_no == 2  # type: ignore[union-attr]
