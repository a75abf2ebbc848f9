"""HostCore.open_group: the server's way through a group (Python work, then the commit on
another thread, then answers) gives what handle_decoded_frames gives, failures included."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from host_helpers import (
    MERCHANT_ID,
    PAN,
    TERMINAL_ID,
    TEST_KEK,
    Terminal,
    frame_of,
    new_core,
    open_store,
    session_terminal,
)

from posbatch.errors import StorageError, StoreBusyError
from posbatch.host import HostCore, HostStore
from posbatch.host.unit_of_work import StoreTx
from posbatch.wire import (
    Frame,
    FrameReader,
    SaleRequest,
    TransactionResponse,
    decode_frame,
    decode_message,
)

BROKEN_AMOUNT_FEN = 666


def _sales(term: Terminal, amounts: list[int]) -> list[Frame]:
    assert term.mak is not None
    return [
        decode_frame(
            frame_of(
                SaleRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no, amount, PAN),
                term.mak,
            )[2:]
        )
        for amount in amounts
    ]


def _codes(replies: list) -> list[str]:  # type: ignore[type-arg]
    codes = []
    for reply in replies:
        (frame,) = FrameReader().feed(reply.frames[0])
        answer = decode_message(frame.body)
        assert isinstance(answer, TransactionResponse)
        codes.append(answer.response_code)
    return codes


def _through_two_threads(core: HostCore, frames: list[Frame]) -> list:  # type: ignore[type-arg]
    opened = core.open_group(frames)
    worker = threading.Thread(target=opened.commit)
    worker.start()
    worker.join()
    return opened.replies()


def test_a_group_is_committed_on_another_thread_and_answered_after(
    store: HostStore, core: HostCore, term: Terminal
) -> None:
    term.sign_on()
    frames = _sales(term, [100, 200, 300])
    opened = core.open_group(frames)
    assert store.transactions(TERMINAL_ID) == []  # nothing is kept before the commit
    worker = threading.Thread(target=opened.commit)
    worker.start()
    worker.join()
    assert _codes(opened.replies()) == ["00", "00", "00"]
    assert [row.amount_fen for row in store.transactions(TERMINAL_ID)] == [100, 200, 300]


def test_a_commit_that_fails_does_the_group_again_request_by_request(
    store: HostStore, core: HostCore, term: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's writes fail once: rolled back, each request done alone, each kept once."""
    term.sign_on()
    flush = StoreTx.flush
    failures = [RuntimeError("disk full")]

    def failing_once(tx: StoreTx) -> None:
        if failures:
            raise failures.pop()
        flush(tx)

    monkeypatch.setattr(StoreTx, "flush", failing_once)
    replies = _through_two_threads(core, _sales(term, [100, 200, 300]))
    assert _codes(replies) == ["00", "00", "00"]
    assert [row.amount_fen for row in store.transactions(TERMINAL_ID)] == [100, 200, 300]


class _BrokenForOneAmount:
    """An issuer link that fails for one amount: that sale's processing raises."""

    def decide(self, *, pan: str, amount_fen: int, expiry: str | None, now: datetime) -> str:
        if amount_fen == BROKEN_AMOUNT_FEN:
            raise RuntimeError("issuer link down")
        return "00"


def test_a_request_that_fails_is_answered_96_and_the_others_go_through(
    store: HostStore,
) -> None:
    core = new_core(store)
    core._issuer = _BrokenForOneAmount()
    term = session_terminal(core)
    term.sign_on()
    replies = _through_two_threads(core, _sales(term, [100, BROKEN_AMOUNT_FEN, 300]))
    assert _codes(replies) == ["00", "96", "00"]
    assert [row.amount_fen for row in store.transactions(TERMINAL_ID)] == [100, 300]


def test_open_group_and_handle_decoded_frames_answer_alike(store: HostStore) -> None:
    core = new_core(store)
    term = session_terminal(core)
    term.sign_on()
    first = _codes(_through_two_threads(core, _sales(term, [100, 0, 99_999_999_999])))
    second = _codes(core.handle_decoded_frames(_sales(term, [100, 0, 99_999_999_999])))
    assert first == second == ["00", "13", "61"]


def test_a_group_with_nothing_to_process_opens_no_transaction(
    store: HostStore, core: HostCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame answered already (an unreadable body): no unit of work is begun, none is
    left open, and the replies are still given."""
    unreadable = decode_frame(
        frame_of(SaleRequest(TERMINAL_ID, MERCHANT_ID, 1, 1, 100, PAN), None)[2:]
    )
    unreadable = Frame(unreadable.tpdu, unreadable.header, unreadable.body[:-3])
    begun: list[object] = []
    transaction = store.transaction
    monkeypatch.setattr(store, "transaction", lambda: begun.append(1) or transaction())
    opened = core.open_group([unreadable, unreadable])
    opened.commit()
    replies = opened.replies()
    assert (begun, len(replies)) == ([], 2)


def test_a_group_that_may_not_wait_does_nothing_while_another_process_writes(
    tmp_path: Path,
) -> None:
    """SQLite, two stores on one file (two worker processes): while one holds the write lock,
    the other's group begins nothing, keeps nothing, and is done in full once it is free."""
    url = f"sqlite:///{tmp_path / 'host.db'}"
    store = open_store(url)
    other = HostStore.open(url, pan_key=b"k" * 32, kek=TEST_KEK)
    try:
        core = new_core(store)
        term = session_terminal(core)
        term.sign_on()
        frames = _sales(term, [100, 200])
        with other.transaction():  # the other worker's group, holding the lock
            opened = core.open_group(frames, wait=False)
            assert opened.waiting
            with pytest.raises(StoreBusyError), store.transaction(wait=False):
                pass
            opened.begin(wait=False)
            assert opened.waiting
        assert store.transactions(TERMINAL_ID) == []
        opened.begin(wait=False)
        assert not opened.waiting
        opened.commit()
        assert _codes(opened.replies()) == ["00", "00"]
        assert [row.amount_fen for row in store.transactions(TERMINAL_ID)] == [100, 200]
    finally:
        other.close()
        store.close()


def test_a_store_error_other_than_busy_is_not_taken_for_busy(
    store: HostStore, core: HostCore, term: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only SQLITE_BUSY means "try again": any other failure to begin is a failed group,
    done request by request as before."""
    broken: list[int] = []
    transaction = store.transaction

    @contextlib.contextmanager
    def failing_once(*, wait: bool = True) -> Iterator[StoreTx]:
        if not broken:  # as BEGIN failing for another reason than the lock
            broken.append(1)
            raise StorageError("host store: disk I/O error")
        with transaction(wait=wait) as tx:
            yield tx

    monkeypatch.setattr(store, "transaction", failing_once)
    opened = core.open_group(_sales(term, [100, 200]), wait=False)
    assert not opened.waiting
    opened.commit()
    assert _codes(opened.replies()) == ["00", "00"]
    assert [row.amount_fen for row in store.transactions(TERMINAL_ID)] == [100, 200]
