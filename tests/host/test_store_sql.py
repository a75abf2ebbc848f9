"""The host store's hand-written SQL helpers give what SQLAlchemy would."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from posbatch.host import HostStore
from posbatch.host._queries import _sqlite_datetime
from posbatch.host.read_models import naive_utc

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
