"""MAC (the CUP "ECB" style) and the working keys of field 62 (DESIGN.md, "Keys and MAC")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire_samples import KEYS, MAK, SAMPLES

from posbatch.errors import KeyCheckError, MacError
from posbatch.wire import (
    FIELD62_BYTES,
    WorkingKeys,
    check_mac,
    check_value,
    compute_mac,
    encode_message,
    generate_working_keys,
    unwrap_working_keys,
    verify_mac,
    wrap_working_keys,
)
from testbed import MASTER_KEY

SALE_BODY = encode_message(SAMPLES["sale"], mak=MAK)
MAC_INPUT = bytes.fromhex(
    "02007024048000C080111962220212345678901230000000000000001250000007301200210031303030"
    "303030313839383131303035343131303030313135360011220000010000"
)


def test_check_value_of_the_example_mak_is_D5D44FF7() -> None:
    """DESIGN.md: MAK 0123456789ABCDEF has check value D5D44FF7."""
    assert "D5D44FF7" == check_value(MAK).hex().upper()


def test_mac_of_the_worked_example() -> None:
    """DESIGN.md's MAC input under its MAK gives field 64 = ASCII 5D320AA1."""
    assert b"5D320AA1" == compute_mac(MAK, MAC_INPUT)


def test_verify_mac_accepts_the_worked_example() -> None:
    """verify_mac is silent on a right MAC."""
    verify_mac(MAK, MAC_INPUT, b"5D320AA1")


def test_verify_mac_refuses_a_wrong_mac() -> None:
    """A MAC that differs is a MacError."""
    with pytest.raises(MacError, match="MAC does not verify"):
        verify_mac(MAK, MAC_INPUT, b"5D320AA2")


def test_mac_input_already_a_multiple_of_eight_gets_no_padding_block() -> None:
    """Padding only fills to a multiple of 8: 8 bytes and the same 8 bytes + 8 zeros agree."""
    block = bytes(range(1, 9))
    assert compute_mac(MAK, block) == compute_mac(MAK, block + bytes(8))


@given(st.data())
def test_any_single_bit_flip_fails_the_mac(data: st.DataObject) -> None:
    """Flipping any one bit of a MACed sale body makes check_mac raise (or decode refuse)."""
    bit = data.draw(st.integers(0, len(SALE_BODY) * 8 - 1))
    flipped = bytearray(SALE_BODY)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(MacError):
        check_mac(bytes(flipped), MAK)


@given(st.binary(min_size=8, max_size=8).filter(lambda key: key != MAK))
def test_another_mak_fails_the_mac(other_mak: bytes) -> None:
    """A body MACed under one MAK does not verify under another (keys out of step → A0)."""
    if compute_mac(other_mak, SALE_BODY[:-8]) == compute_mac(MAK, SALE_BODY[:-8]):
        return  # DES parity bits: keys differing only there are the same key
    with pytest.raises(MacError):
        check_mac(SALE_BODY, other_mak)


def test_missing_field_64_is_a_mac_error() -> None:
    """A body without field 64 is a MacError: field 64 is missing."""
    with pytest.raises(MacError, match="field 64 is missing"):
        check_mac(encode_message(SAMPLES["sale"]), MAK)


def test_mac_error_maps_to_A0() -> None:
    """The host answers a MAC failure with A0."""
    assert "A0" == MacError.response_code


def test_working_keys_wrap_and_unwrap() -> None:
    """Field 62 built under the TMK gives back the same PIK and MAK."""
    field62 = wrap_working_keys(MASTER_KEY, KEYS)
    assert FIELD62_BYTES == len(field62)
    assert KEYS == unwrap_working_keys(MASTER_KEY, field62)


def test_field62_layout_carries_the_check_values() -> None:
    """Bytes 16..20 are the PIK check value, 36..40 the MAK check value."""
    field62 = wrap_working_keys(MASTER_KEY, KEYS)
    assert (check_value(KEYS.pik), check_value(KEYS.mak)) == (field62[16:20], field62[36:40])
    assert "D5D44FF7" == field62[36:40].hex().upper()


def test_generated_keys_wrap_and_unwrap() -> None:
    """Fresh random keys survive the trip through field 62."""
    keys = generate_working_keys()
    assert keys == unwrap_working_keys(MASTER_KEY, wrap_working_keys(MASTER_KEY, keys))


def test_wrong_tmk_is_a_key_check_error() -> None:
    """Unwrapping under another master key fails the check value."""
    field62 = wrap_working_keys(MASTER_KEY, KEYS)
    other_tmk = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
    with pytest.raises(KeyCheckError, match="PIK check value differs: wrong master key"):
        unwrap_working_keys(other_tmk, field62)


def test_damaged_mak_check_value_is_a_key_check_error() -> None:
    """A MAK check value that does not match is refused."""
    field62 = bytearray(wrap_working_keys(MASTER_KEY, KEYS))
    field62[39] ^= 0x01
    with pytest.raises(KeyCheckError, match="MAK check value differs"):
        unwrap_working_keys(MASTER_KEY, bytes(field62))


@pytest.mark.parametrize("length", [0, 39, 41, 512])
def test_field62_of_the_wrong_length_is_a_key_check_error(length: int) -> None:
    """Field 62 must be 40 bytes."""
    with pytest.raises(KeyCheckError, match=f"field 62 must be 40 bytes, got {length}"):
        unwrap_working_keys(MASTER_KEY, bytes(length))


@pytest.mark.parametrize("length", [8, 15, 17, 24])
def test_tmk_of_the_wrong_length_is_refused(length: int) -> None:
    """The TMK is 16 bytes."""
    with pytest.raises(ValueError, match=f"the TMK is 16 bytes, not {length}"):
        wrap_working_keys(bytes(length), KEYS)


@pytest.mark.parametrize(("pik", "mak"), [(bytes(8), bytes(8)), (bytes(16), bytes(16))])
def test_working_keys_of_the_wrong_length_are_refused(pik: bytes, mak: bytes) -> None:
    """The PIK is 16 bytes and the MAK 8."""
    with pytest.raises(ValueError, match="PIK is 16 bytes and MAK 8 bytes"):
        WorkingKeys(pik=pik, mak=mak)


def test_mak_of_the_wrong_length_is_refused() -> None:
    """compute_mac takes an 8-byte MAK only."""
    with pytest.raises(ValueError, match="the MAK is 8 bytes, not 16"):
        compute_mac(bytes(16), MAC_INPUT)


def test_working_keys_never_print() -> None:
    """repr of the keys hides both."""
    assert "WorkingKeys(pik=****, mak=****)" == repr(KEYS)
