"""The hash chain verified from a checkpoint: a reopen after a crash checks what follows it."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, TERMINAL_ID, StepClock

from posbatch.batch.model import Kind
from posbatch.errors import JournalIntegrityError
from posbatch.storage import create_engine
from posbatch.terminal import Journal, Terminal, TerminalSecrets
from posbatch.terminal._chain import (
    GENESIS,
    GENESIS_HASH,
    Checkpoint,
    canonical,
    entry_hash,
    verify_engine,
    verify_since,
)

# What payloads hold: row values and event details (text, integers, booleans, None,
# lists and nested objects), any Unicode, keys in any order.
_SCALARS = st.none() | st.booleans() | st.integers() | st.text() | st.floats()
_PAYLOADS = st.dictionaries(
    st.text(),
    st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    ),
)


@given(_PAYLOADS)
def test_canonical_is_the_stored_json(payload: dict[str, object]) -> None:
    """The encoder kept for every entry writes exactly what ``json.dumps`` with the stored
    options writes (files already hold that text, and their hashes cover it)."""
    expected = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(payload) == expected
    assert canonical(payload) == expected  # the encoder keeps nothing between calls


def _terminal(journal: Journal) -> Terminal:
    return Terminal(journal, TerminalSecrets(MASTER_KEY, b"p" * 32), clock=StepClock())


def _journal_with_sales(url: str, sales: int) -> Journal:
    journal = Journal.open(url)
    Terminal.initialize(
        journal,
        merchant_id=MERCHANT_ID,
        terminal_id=TERMINAL_ID,
        host_address="h:1",
        clock=StepClock(),
    )
    terminal = _terminal(journal)
    for _ in range(sales):
        terminal._ctx.financial.write_pending(Kind.SALE, 1250, PAN, None)
    return journal


def _reopened(journal: Journal) -> Journal:
    """The same database seen by a new process (no verification at open)."""
    return Journal.over(journal.engine, verify=False)


def _damage_entry(journal: Journal, seq: int) -> None:
    with journal.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE journal_entries SET at = '2000-01-01T00:00:00' WHERE seq = :seq"),
            {"seq": seq},
        )


@pytest.mark.parametrize(
    ("prev_hash", "seq", "at", "kind", "key", "payload"),
    [
        (GENESIS_HASH, 1, "2026-11-25T09:30:00.000000", "state", "1", '{"stan":0}'),
        ("a" * 64, 7, "2026-11-25T09:30:01.000000", "event", "sign_on", '{"message":"签到"}'),
    ],
)
def test_entry_hash_is_the_documented_formula(
    prev_hash: str, seq: int, at: str, kind: str, key: str, payload: str
) -> None:
    """sha256 over ``prev_hash|seq|at|kind|key|payload`` (UTF-8), as hex: what files hold."""
    text = f"{prev_hash}|{seq}|{at}|{kind}|{key}|{payload}".encode()
    expected = hashlib.sha256(text).hexdigest()
    assert expected == entry_hash(prev_hash, seq, at=at, kind=kind, key=key, payload=payload)


def test_checkpoint_is_the_tail_the_journal_wrote(db_url: str) -> None:
    """A journal's checkpoint is its last entry: seq and the hash stored for it."""
    journal = _journal_with_sales(db_url, 1)
    checkpoint = journal.checkpoint
    assert checkpoint.seq == journal.last_seq
    assert checkpoint.hash == journal.chain_hash(journal.last_seq)
    journal.engine.dispose()


def test_reopen_checks_only_what_follows_the_checkpoint(db_url: str) -> None:
    """Verifying from a checkpoint counts the entries written after it, not the whole chain."""
    journal = _journal_with_sales(db_url, 2)
    checkpoint = journal.checkpoint
    _terminal(journal)._ctx.financial.write_pending(Kind.SALE, 700, PAN, None)
    reopened = _reopened(journal)
    assert reopened.verify(since=checkpoint) == journal.last_seq - checkpoint.seq
    assert reopened.verify(since=reopened.checkpoint) == 0
    assert reopened.verify() == journal.last_seq
    journal.engine.dispose()


def test_damaged_entry_after_the_checkpoint_is_caught_at_reopen(db_url: str) -> None:
    """An entry changed after the checkpoint breaks the reopen's verification at that entry."""
    journal = _journal_with_sales(db_url, 1)
    checkpoint = journal.checkpoint
    _terminal(journal)._ctx.financial.write_pending(Kind.SALE, 700, PAN, None)
    damaged = checkpoint.seq + 2
    _damage_entry(journal, damaged)
    with pytest.raises(JournalIntegrityError, match=f"entry {damaged} was changed") as caught:
        _reopened(journal).verify(since=checkpoint)
    assert caught.value.first_bad_row == damaged
    journal.engine.dispose()


def test_damaged_entry_before_the_checkpoint_is_caught_by_a_full_verify(db_url: str) -> None:
    """The reopen trusts what it verified before; doctor's full verify still names the entry."""
    journal = _journal_with_sales(db_url, 2)
    checkpoint = journal.checkpoint
    _damage_entry(journal, 2)
    reopened = _reopened(journal)
    assert reopened.verify(since=checkpoint) == 0
    with pytest.raises(JournalIntegrityError, match="entry 2 was changed") as caught:
        reopened.verify()
    assert caught.value.first_bad_row == 2
    journal.engine.dispose()


def test_changed_checkpoint_entry_verifies_the_whole_file(db_url: str) -> None:
    """A file whose checkpoint entry changed is not the one verified: checked whole."""
    journal = _journal_with_sales(db_url, 1)
    checkpoint = journal.checkpoint
    _damage_entry(journal, checkpoint.seq)
    with pytest.raises(JournalIntegrityError, match=f"entry {checkpoint.seq} was changed"):
        _reopened(journal).verify(since=checkpoint)
    journal.engine.dispose()


def test_checkpoint_beyond_a_shorter_file_verifies_the_whole_file(db_url: str) -> None:
    """A checkpoint the file does not reach (an older copy put back) falls back to a full
    verify, which passes for a consistent older file."""
    journal = _journal_with_sales(db_url, 1)
    beyond = Checkpoint(journal.last_seq + 5, "f" * 64)
    assert _reopened(journal).verify(since=beyond) == journal.last_seq
    journal.engine.dispose()


def test_edited_row_snapshotted_after_the_checkpoint_is_caught(db_url: str) -> None:
    """A table row whose last snapshot follows the checkpoint must still be that snapshot."""
    journal = _journal_with_sales(db_url, 1)
    checkpoint = journal.checkpoint
    _terminal(journal)._ctx.financial.write_pending(Kind.SALE, 700, PAN, None)
    with journal.engine.begin() as connection:
        connection.execute(sa.text("UPDATE transactions SET amount_fen = 1 WHERE txn_id = 2"))
    with pytest.raises(JournalIntegrityError, match="transactions row 2 differs"):
        _reopened(journal).verify(since=checkpoint)
    journal.engine.dispose()


def test_genesis_checkpoint_is_a_full_verify(db_url: str) -> None:
    """From the empty chain, the reopen verifies everything (rows included)."""
    journal = _journal_with_sales(db_url, 1)
    with journal.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM journal_entries WHERE seq = 2"))
    with pytest.raises(JournalIntegrityError, match="entry 2 is missing"):
        _reopened(journal).verify(since=GENESIS)
    journal.engine.dispose()


@pytest.mark.parametrize("from_checkpoint", [False, True])
def test_verify_reads_one_moment_while_another_process_writes(
    db_url: str, from_checkpoint: bool
) -> None:
    """A verification (doctor, `backup` of a trading till, a reopen) reads the entries, then
    the rows: the till's process committing a sale in between must not make a row "differ
    from its journal entry" — every read sees the journal as it was at the first. (Before:
    each read saw its own moment, and `posbatch terminal backup` of a trading till failed
    with "terminal_state row 1 differs from journal entry …", found by the kill probe.)"""
    journal = _journal_with_sales(db_url, 2)
    checkpoint = journal.checkpoint
    _terminal(journal)._ctx.financial.write_pending(Kind.SALE, 700, PAN, None)
    written = journal.last_seq
    verifier = create_engine(db_url)  # another process's view of the same journal
    wrote: list[int] = []

    @sa.event.listens_for(verifier, "before_cursor_execute")
    def _the_till_commits(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "terminal_state" in statement and "journal_entries" not in statement and not wrote:
            _terminal(journal)._ctx.financial.write_pending(Kind.SALE, 900, PAN, None)
            wrote.append(journal.last_seq)

    try:
        if from_checkpoint:
            checked = verify_since(verifier, checkpoint)
            assert checked == written - checkpoint.seq
        else:
            assert verify_engine(verifier) == written
        assert wrote and wrote[0] > written  # the till did commit in between
        assert verify_engine(verifier) == wrote[0]
    finally:
        verifier.dispose()
        journal.engine.dispose()
