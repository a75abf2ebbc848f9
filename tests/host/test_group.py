"""One group commit: requests that meet inside one transaction see each other.

The core reads a group's terminals, duplicates and reversals ahead and
writes its new transactions in one insert; these tests put the requests that
depend on each other into ONE ``handle_frames`` call, and an admin change from
another store (another process) between two groups.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from host_helpers import (
    MASTER_KEY,
    MERCHANT_ID,
    PAN,
    START,
    TERMINAL_ID,
    TEST_KEK,
    frame_of,
    open_store,
)

from posbatch.batch.model import Kind
from posbatch.host import HostCore, HostReply, HostStore
from posbatch.host.store import TransactionStatus
from posbatch.wire import (
    FrameReader,
    OriginalTransaction,
    RefundRequest,
    Request,
    ReversalRequest,
    SaleRequest,
    SignOnRequest,
    SignOnResponse,
    TransactionResponse,
    VoidRequest,
    decode_message,
    unwrap_working_keys,
)

OTHER_TERMINAL_ID = "10000002"


@pytest.fixture
def store(db_url: str) -> Iterator[HostStore]:
    store = open_store(db_url, terminals=(TERMINAL_ID, OTHER_TERMINAL_ID))
    yield store
    store.close()


def _answer(reply: HostReply) -> TransactionResponse:
    (frame,) = FrameReader().feed(reply.frames[0])
    message = decode_message(frame.body)
    assert isinstance(message, TransactionResponse)
    return message


def _sign_on(core: HostCore, terminal_id: str = TERMINAL_ID) -> bytes:
    reply = core.handle_frame(frame_of(SignOnRequest(terminal_id, MERCHANT_ID, 1, 1), None))
    (frame,) = FrameReader().feed(reply.frames[0])
    answer = decode_message(frame.body)
    assert isinstance(answer, SignOnResponse) and answer.working_keys is not None
    return unwrap_working_keys(MASTER_KEY, answer.working_keys).mak


def _group(core: HostCore, mak: bytes, *requests: Request) -> list[str | None]:
    return [
        reply.log.response_code
        for reply in core.handle_frames([frame_of(r, mak) for r in requests])
    ]


def _sale(stan: int, amount_fen: int, terminal_id: str = TERMINAL_ID) -> SaleRequest:
    return SaleRequest(terminal_id, MERCHANT_ID, stan, 1, amount_fen, PAN)


def test_duplicate_in_one_group_gets_the_first_answer(core: HostCore, store: HostStore) -> None:
    """The same sale twice in one group: one transaction, the same answer twice."""
    mak = _sign_on(core)
    first, second = core.handle_frames([frame_of(_sale(2, 500), mak)] * 2)
    rows = store.transactions(TERMINAL_ID)
    assert (_answer(first).rrn, len(rows)) == (_answer(second).rrn, 1)


def test_same_stan_other_amount_in_one_group_gets_94(core: HostCore, store: HostStore) -> None:
    """Two sales under one STAN with other amounts in one group: the second is 94."""
    mak = _sign_on(core)
    assert _group(core, mak, _sale(2, 500), _sale(2, 600)) == ["00", "94"]
    assert [row.amount_fen for row in store.transactions(TERMINAL_ID)] == [500]


def test_void_of_a_sale_of_the_same_group(core: HostCore, store: HostStore) -> None:
    """A sale and its void in one group: both 00, the sale is voided."""
    mak = _sign_on(core)
    void = VoidRequest(TERMINAL_ID, MERCHANT_ID, 3, 1, 500, PAN, OriginalTransaction(1, 2))
    assert _group(core, mak, _sale(2, 500), void) == ["00", "00"]
    statuses = [row.status for row in store.transactions(TERMINAL_ID)]
    assert statuses == [TransactionStatus.VOIDED, TransactionStatus.APPROVED]


def test_refund_of_a_sale_of_the_same_group(core: HostCore, store: HostStore) -> None:
    """A sale and a partial refund of it in one group: the refund counts against the sale."""
    mak = _sign_on(core)
    refund = RefundRequest(TERMINAL_ID, MERCHANT_ID, 3, 1, 200, PAN, OriginalTransaction(1, 2))
    assert _group(core, mak, _sale(2, 500), refund) == ["00", "00"]
    assert [row.refunded_fen for row in store.transactions(TERMINAL_ID)] == [200, 0]


def test_reversal_before_its_sale_in_one_group(core: HostCore, store: HostStore) -> None:
    """A reversal that overtakes its sale inside one group leaves the sale reversed."""
    mak = _sign_on(core)
    reversal = ReversalRequest(TERMINAL_ID, MERCHANT_ID, 2, 1, 500, PAN, original_kind=Kind.SALE)
    assert _group(core, mak, reversal, _sale(2, 500)) == ["00", "00"]
    assert [row.status for row in store.transactions(TERMINAL_ID)] == [TransactionStatus.REVERSED]


def test_reversal_after_its_sale_in_one_group(core: HostCore, store: HostStore) -> None:
    """A sale and then its reversal in one group: the sale ends reversed."""
    mak = _sign_on(core)
    reversal = ReversalRequest(TERMINAL_ID, MERCHANT_ID, 2, 1, 500, PAN, original_kind=Kind.SALE)
    assert _group(core, mak, _sale(2, 500), reversal) == ["00", "00"]
    assert [row.status for row in store.transactions(TERMINAL_ID)] == [TransactionStatus.REVERSED]


def test_two_terminals_in_one_group_keep_their_own_rows(core: HostCore, store: HostStore) -> None:
    """Sales of two terminals under the same STAN in one group are two transactions."""
    mak = _sign_on(core)
    other_mak = _sign_on(core, OTHER_TERMINAL_ID)
    frames = [frame_of(_sale(2, 500), mak), frame_of(_sale(2, 700, OTHER_TERMINAL_ID), other_mak)]
    codes = [reply.log.response_code for reply in core.handle_frames(frames)]
    amounts = [
        [row.amount_fen for row in store.transactions(terminal_id)]
        for terminal_id in (TERMINAL_ID, OTHER_TERMINAL_ID)
    ]
    assert (codes, amounts) == (["00", "00"], [[500], [700]])


def test_suspend_from_another_process_applies_to_the_next_group(
    db_url: str, core: HostCore
) -> None:
    """A terminal suspended through another store (the CLI) gets 58 from the next group on."""
    mak = _sign_on(core)
    assert _group(core, mak, _sale(2, 500)) == ["00"]
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK) as other:
        other.suspend(TERMINAL_ID)
    assert _group(core, mak, _sale(3, 500)) == ["58"]


def test_advance_from_another_process_applies_to_the_next_group(
    db_url: str, core: HostCore
) -> None:
    """A batch advanced through another store gets 77 for the old batch from the next group on."""
    mak = _sign_on(core)
    assert _group(core, mak, _sale(2, 500)) == ["00"]
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK) as other:
        other.advance_batch(TERMINAL_ID, "cut-over", now=START)
    assert _group(core, mak, _sale(3, 500)) == ["77"]
