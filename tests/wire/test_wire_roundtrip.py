"""Round trips: typed message → body → typed message, for every message type and sub-field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_samples import (
    MAK,
    SAMPLES,
    card_totals,
    digits,
    field63,
    messages,
    originals,
    settlement_totals,
    track2s,
    upload_records,
)

import posbatch.wire._messages as messages_module
from posbatch.batch.model import (
    BatchReason,
    BatchState,
    BatchStateDetail,
    CardTotals,
    SettlementTotals,
)
from posbatch.errors import EncodeError
from posbatch.wire import (
    EchoRequest,
    Field60,
    Message,
    OriginalTransaction,
    SignOnRequest,
    check_mac,
    decode_batch_detail,
    decode_detail,
    decode_message,
    decode_totals,
    encode_batch_detail,
    encode_detail,
    encode_message,
    encode_totals,
    has_mac,
)
from posbatch.wire._fields import (
    decode_track2,
    decode_upload_end,
    decode_upload_records,
    encode_track2,
    encode_upload_end,
    encode_upload_records,
)

NO_MAC_MTIS = {"0800", "0810", "0820", "0830"}


def _mti(body: bytes) -> str:
    return body[:2].hex()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_type_round_trips_without_mac(name: str) -> None:
    """Each sample decodes from its own encoding to an equal typed object."""
    message = SAMPLES[name]
    body = encode_message(message)
    assert message == decode_message(body)
    assert not has_mac(body)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_type_round_trips_with_mac(name: str) -> None:
    """With a MAK, 02xx-05xx carry a MAC that verifies; 08xx never carry one."""
    message = SAMPLES[name]
    body = encode_message(message, mak=MAK)
    assert message == decode_message(body)
    if _mti(body) in NO_MAC_MTIS:
        assert body == encode_message(message)
    else:
        assert has_mac(body)
        check_mac(body, MAK)


def test_samples_cover_every_message_class() -> None:
    """The samples hold every request and response class of the wire module."""
    classes = {
        getattr(messages_module, name)
        for name in messages_module.__all__
        if hasattr(getattr(messages_module, name), "to_fields")
    }
    assert classes == {type(message) for message in SAMPLES.values()}


@given(messages)
def test_any_valid_message_round_trips(message: Message) -> None:
    """Hypothesis: any valid typed message survives encode → decode unchanged."""
    assert message == decode_message(encode_message(message))


@given(messages, st.binary(min_size=8, max_size=8))
def test_any_valid_message_round_trips_with_a_mac_that_verifies(
    message: Message, mak: bytes
) -> None:
    """Hypothesis: with any MAK the message survives and its MAC verifies under that MAK."""
    body = encode_message(message, mak=mak)
    assert message == decode_message(body)
    if has_mac(body):
        check_mac(body, mak)


@given(
    st.sampled_from(["00", "22", "23", "25"]),
    st.integers(1, 999_999),
    digits(3),
    digits(0, 6),
)
def test_field60_round_trips(message_type: str, batch_no: int, network: str, extra: str) -> None:
    """Field 60: 60.1, 60.2 batch_no, 60.3 and the extra one-digit sub-fields survive."""
    field = Field60(message_type, batch_no, network, extra)
    assert field == Field60.decode(field.encode())


@given(originals)
def test_field61_round_trips(original: OriginalTransaction) -> None:
    """Field 61: batch, STAN and optional date survive."""
    assert original == OriginalTransaction.decode(original.encode())


@given(settlement_totals)
def test_field48_totals_round_trip(totals: SettlementTotals) -> None:
    """Field 48 of settlement: both halves and their reconciliation codes survive."""
    text = encode_totals(totals)
    assert 62 == len(text)
    assert totals == decode_totals(text)


@given(card_totals, card_totals)
def test_same_amounts_ignores_the_reconciliation_code(left: CardTotals, right: CardTotals) -> None:
    """same_amounts compares amounts and counts only."""
    assert left.same_amounts(right.with_reconciliation(left.reconciliation)) == (
        left == right.with_reconciliation(left.reconciliation)
    )


@given(st.lists(upload_records, min_size=1, max_size=8).map(tuple))
def test_field48_upload_records_round_trip(records: tuple) -> None:  # type: ignore[type-arg]
    """Field 48 of batch upload: count and every record survive."""
    assert records == decode_upload_records(encode_upload_records(records))


@given(st.integers(0, 9999))
def test_field48_upload_end_round_trips(total: int) -> None:
    """Field 48 of the upload end: the n4 record total survives."""
    assert total == decode_upload_end(encode_upload_end(total))


@given(
    st.dictionaries(
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=3),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789=-_ ", max_size=10),
        max_size=6,
    )
)
def test_field63_detail_round_trips(items: dict[str, str]) -> None:
    """Field 63 KEY=value;… items survive (when they fit in 163 bytes)."""
    text = encode_detail(items)
    assert items == decode_detail(text)


@given(
    st.none() | st.sampled_from(BatchReason),
    st.integers(1, 999_999),
    st.sampled_from(BatchState),
    st.none() | st.integers(1, 999_999),
)
def test_batch_state_detail_round_trips(
    reason: BatchReason | None, batch_no: int, state: BatchState, last: int | None
) -> None:
    """The 77 detail R=/B=/S=/L= survives."""
    detail = BatchStateDetail(reason, batch_no, state, last)
    assert detail == decode_batch_detail(encode_batch_detail(detail))


def test_batch_state_detail_text_is_the_documented_form() -> None:
    """R=BEHIND;B=000002;S=OPEN;L=000001 is what a 77 carries."""
    detail = BatchStateDetail(BatchReason.BEHIND, 2, BatchState.OPEN, 1)
    assert "R=BEHIND;B=000002;S=OPEN;L=000001" == encode_batch_detail(detail)


@given(field63)
def test_batch_state_detail_of_any_text_is_a_detail_or_none(text: str) -> None:
    """Any field 63 text gives a BatchStateDetail or None, never an exception."""
    detail = decode_batch_detail(text)
    assert detail is None or isinstance(detail, BatchStateDetail)


@given(track2s)
def test_track2_round_trips(track2: str) -> None:
    """Track 2: '=' travels as the nibble D and comes back."""
    packed = encode_track2(track2)
    assert "=" not in packed
    assert track2 == decode_track2(packed)


def test_a_sign_on_with_no_batch_yet_round_trips_and_nothing_else_does() -> None:
    """60.2 = 000000 is a sign-on's "no batch yet" (a new terminal's first sign-on): it
    encodes and decodes; in any other message it names no batch and is refused."""
    sign_on = SignOnRequest("10000001", "898110054110001", stan=1, batch_no=0)
    assert sign_on == decode_message(encode_message(sign_on))
    with pytest.raises(EncodeError, match=r"60\.2"):
        encode_message(EchoRequest("10000001", "898110054110001", stan=1, batch_no=0))
