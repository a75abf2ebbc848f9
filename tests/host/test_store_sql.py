"""The host store's hand-written SQL helpers give what SQLAlchemy would."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from host_helpers import MERCHANT_ID, TERMINAL_ID, session_terminal
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from posbatch.batch.host_effects import BringKeysIntoForce, SignOnAgain
from posbatch.batch.host_records import TerminalRow
from posbatch.host import HostCore, HostStore
from posbatch.host._queries import _sqlite_datetime
from posbatch.host.read_models import naive_utc
from posbatch.host.unit_of_work import StoreTx
from posbatch.wire import SignOffRequest

_SQLALCHEMY_SQLITE_DATETIME = (
    sa.DateTime().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
)


@given(st.datetimes())
def test_the_sqlite_datetime_text_is_sqlalchemy_s(moment: datetime) -> None:
    assert _SQLALCHEMY_SQLITE_DATETIME is not None
    assert _sqlite_datetime(moment) == _SQLALCHEMY_SQLITE_DATETIME(moment)


@given(st.datetimes(), st.integers(-14 * 60, 14 * 60))
def test_naive_utc_is_the_same_instant_in_utc(moment: datetime, offset_minutes: int) -> None:
    zone = timezone(timedelta(minutes=offset_minutes))
    for aware in (moment.replace(tzinfo=UTC), moment.replace(tzinfo=zone)):
        try:
            expected = aware.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            continue
        assert naive_utc(aware) == expected
    assert naive_utc(moment) == moment


@given(st.text("0123456789", min_size=12, max_size=19))
def test_the_pan_hmac_is_hmac_sha256_under_the_pan_key(pan: str) -> None:
    key = bytes(range(32))
    store = HostStore(sa.create_engine("sqlite://"), pan_key=key)
    assert store.pan_hmac(pan) == hmac.digest(key, pan.encode("ascii"), "sha256").hex()
    store.close()


def _read_again(tx: StoreTx, terminal_id: str) -> TerminalRow | None:
    tx.connection  # noqa: B018 - reaching for it forgets the read-ahead
    return tx.terminal(terminal_id, for_update=True)


def test_keys_brought_into_force_are_kept_as_the_row_now_reads(
    store: HostStore, core: HostCore
) -> None:
    """The first request under a sign-on's keys: the row kept in memory (not read again) is
    exactly what reading the row gives, on SQLite and PostgreSQL."""
    assert session_terminal(core).sign_on().response_code == "00"
    with store.transaction() as tx:
        terminal = tx.terminal(TERMINAL_ID, for_update=True)
        assert terminal is not None and terminal.pending_keys is not None
        tx.apply((BringKeysIntoForce(TERMINAL_ID, terminal.pending_keys),))
        kept = tx.terminal(TERMINAL_ID)
        assert kept is not None
        assert (kept.mak, kept.pending_keys, kept.signed_on) == (
            terminal.pending_keys.mak,
            None,
            True,
        )
        assert kept == _read_again(tx, TERMINAL_ID)


def test_a_terminal_signed_on_again_is_kept_as_the_row_now_reads(
    store: HostStore, core: HostCore
) -> None:
    """A signed-off terminal that MACs under its keys in force: the row kept is the row read."""
    term = session_terminal(core)
    term.sign_on()
    assert term.sale(100).response_code == "00"  # type: ignore[union-attr]
    term.request(SignOffRequest(TERMINAL_ID, MERCHANT_ID, term.next_stan(), term.batch_no))
    with store.transaction() as tx:
        terminal = tx.terminal(TERMINAL_ID, for_update=True)
        assert terminal is not None and not terminal.signed_on
        tx.apply((SignOnAgain(TERMINAL_ID),))
        kept = tx.terminal(TERMINAL_ID)
        assert kept is not None
        assert kept.signed_on
        assert kept == _read_again(tx, TERMINAL_ID)
