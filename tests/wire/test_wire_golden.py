"""Golden frames, written out byte by byte from DESIGN.md's field table.

Each frame is ``[length 2][TPDU 5][header 6][MTI 2 BCD][bitmap 8][fields]``;
every field line says its number, its format and its bytes, so a reader can
check it against the table without running anything. Bitmap bit n is byte
(n-1)//8, bit 7-(n-1)%8.
"""

from __future__ import annotations

import pytest
from wire_samples import FIELD62, MAK, TOTALS

from posbatch.batch.model import Reconciliation
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    Message,
    SaleRequest,
    SettlementRequest,
    SettlementResponse,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    check_mac,
    compute_mac,
    decode_message,
    encode_frame,
    encode_message,
)
from testbed import MERCHANT_ID, TERMINAL_ID

TPDU = "60 0003 0000"  # id 60, destination 0003, source 0000
HEADER = "60 31 0 0 000000"  # application 60, software 31, status 0, requirement 0, reserved
TID = "3130303030303031"  # 41 ans8 "10000001"
MID = "383938313130303534313130303031"  # 42 ans15 "898110054110001"


def _hex(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts).replace(" ", ""))


SIGN_ON_BODY = _hex(
    "0800",  # MTI
    "00 20 00 00 00 C0 00 12",  # bitmap: 11 | 41 42 | 60 63
    "000001",  # 11 n6 STAN 000001
    TID,
    MID,
    "0011 00 000001 003 0",  # 60 LLLVAR n11: 60.1 00, 60.2 batch 000001, 60.3 003, pad nibble 0
    "0002 3031",  # 63 LLLVAR ans: operator "01"
)

SIGN_ON_RESPONSE_BODY = _hex(
    "0810",  # MTI
    "00 38 00 00 02 C0 00 16",  # bitmap: 11 12 13 | 39 | 41 42 | 60 62 63
    "000001",  # 11 n6 STAN
    "101530",  # 12 n6 hhmmss
    "1125",  # 13 n4 MMDD
    "3030",  # 39 an2 "00"
    TID,
    MID,
    "0011 00 000001 003 0",  # 60: the host's batch 000001, 60.3 003
    "0040",  # 62 LLLVAR b, 40 bytes:
    "31A7364CAC91CA39C0489F69BEC54FA2",  # 3DES(TMK, PIK)
    "FB097599",  # PIK check value
    "1A4D672DCA6CB33508D7B4FB629D0885",  # 3DES(TMK, MAK ‖ 00×8)
    "D5D44FF7",  # MAK check value (DESIGN.md: D5D44FF7 for MAK 0123456789ABCDEF)
    "0015 423D3030303030313B533D4F50454E",  # 63 LLLVAR ans15 "B=000001;S=OPEN"
)

# DESIGN.md's worked example, field by field.
SALE_MAC_INPUT = _hex(
    "0200",  # MTI
    "70 24 04 80 00 C0 80 11",  # bitmap: 2 3 4 | 11 14 | 22 25 | 41 42 | 49 | 60 64
    "19 6222021234567890123 0",  # 2 LLVAR n19 PAN, pad nibble 0
    "000000",  # 3 n6 processing code: sale
    "000000001250",  # 4 n12 amount 12.50 yuan = 1250 fen
    "000007",  # 11 n6 STAN
    "3012",  # 14 n4 expiry YYMM
    "0021",  # 22 n3 entry mode 021, leading pad nibble 0
    "00",  # 25 n2 condition code
    TID,
    MID,
    "313536",  # 49 an3 "156"
    "0011 22 000001 000 0",  # 60: 60.1 22 sale, batch 000001, 60.3 000, pad 0
)
SALE_MAC = _hex("3544333230414131")  # 64 b8: ASCII "5D320AA1"
SALE_FRAME = _hex("005B", TPDU, HEADER) + SALE_MAC_INPUT + SALE_MAC

SETTLEMENT_MAC_INPUT = _hex(
    "0500",  # MTI
    "00 20 00 00 00 C1 80 13",  # bitmap: 11 | 41 42 48 | 49 | 60 63 64
    "000012",  # 11 n6 STAN
    TID,
    MID,
    "0062",  # 48 LLLVAR n62: domestic then foreign, 31 digits each
    "000000012500 003 000000001250 001 0",  # debit 125.00 ×3, credit 12.50 ×1, code 0 (request)
    "000000000000 000 000000000000 000 0",  # foreign: nothing
    "313536",  # 49 an3 "156"
    "0011 00 000001 201 0",  # 60: 60.1 00, batch 000001, 60.3 201 settlement
    "0002 3031",  # 63 operator "01"
)
SETTLEMENT_BODY = SETTLEMENT_MAC_INPUT + _hex("3230304541373044")  # 64: ASCII "200EA70D"

SETTLEMENT_RESPONSE_MAC_INPUT = _hex(
    "0510",  # MTI
    "00 38 00 00 02 C1 80 11",  # bitmap: 11 12 13 | 39 | 41 42 48 | 49 | 60 64
    "000012",  # 11 n6 STAN
    "235959",  # 12 n6
    "1125",  # 13 n4
    "3030",  # 39 an2 "00"
    TID,
    MID,
    "0062",  # 48: the host's totals
    "000000012500 003 000000001250 001 1",  # code 1: balanced 对账平
    "000000000000 000 000000000000 000 1",
    "313536",  # 49
    "0011 00 000001 201 0",  # 60
)
SETTLEMENT_RESPONSE_BODY = SETTLEMENT_RESPONSE_MAC_INPUT + _hex("3446383841353146")  # "4F88A51F"

GOLDEN: dict[str, tuple[bytes, Message]] = {
    "sign_on": (SIGN_ON_BODY, SignOnRequest(TERMINAL_ID, MERCHANT_ID, stan=1, batch_no=1)),
    "sign_on_response": (
        SIGN_ON_RESPONSE_BODY,
        SignOnResponse(
            TERMINAL_ID,
            MERCHANT_ID,
            stan=1,
            batch_no=1,
            response_code="00",
            local_time="101530",
            local_date="1125",
            working_keys=FIELD62,
            detail="B=000001;S=OPEN",
        ),
    ),
    "sale": (
        SALE_MAC_INPUT + SALE_MAC,
        SaleRequest(
            TERMINAL_ID,
            MERCHANT_ID,
            stan=7,
            batch_no=1,
            amount_fen=1250,
            pan="6222021234567890123",
            expiry="3012",
        ),
    ),
    "settlement": (
        SETTLEMENT_BODY,
        SettlementRequest(TERMINAL_ID, MERCHANT_ID, stan=12, batch_no=1, totals=TOTALS),
    ),
    "settlement_response": (
        SETTLEMENT_RESPONSE_BODY,
        SettlementResponse(
            TERMINAL_ID,
            MERCHANT_ID,
            stan=12,
            batch_no=1,
            response_code="00",
            totals=TOTALS.with_reconciliation(Reconciliation.BALANCED),
            local_time="235959",
            local_date="1125",
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_body_decodes_to_the_typed_message(name: str) -> None:
    """Decoding the hand-written body gives the expected typed object."""
    body, message = GOLDEN[name]
    assert message == decode_message(body)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_typed_message_encodes_to_the_golden_body(name: str) -> None:
    """Encoding the typed object (MAK 0123456789ABCDEF) gives the hand-written bytes."""
    body, message = GOLDEN[name]
    assert body.hex().upper() == encode_message(message, mak=MAK).hex().upper()


def test_worked_example_mac_input_is_designs() -> None:
    """The MAC input written out above is DESIGN.md's, character for character."""
    expected = (
        "02007024048000C080111962220212345678901230000000000000001250000007301200210031303030"
        "303030313839383131303035343131303030313135360011220000010000"
    )
    assert expected == SALE_MAC_INPUT.hex().upper()


def test_worked_example_mac_is_5D320AA1() -> None:
    """DESIGN.md: MAK 0123456789ABCDEF over the sale's MAC input gives ASCII 5D320AA1."""
    assert b"5D320AA1" == compute_mac(MAK, SALE_MAC_INPUT)


def test_worked_example_whole_frame_is_designs() -> None:
    """The whole sale frame (TPDU 6000030000, header 603100000000) is DESIGN.md's."""
    expected = (
        "005B600003000060310000000002007024048000C0801119622202123456789012300000000000000012"
        "500000073012002100313030303030303138393831313030353431313030303131353600112200000100"
        "003544333230414131"
    )
    sale = GOLDEN["sale"][1]
    frame = encode_frame(Frame(Tpdu(0x0003, 0x0000), Header(), encode_message(sale, mak=MAK)))
    assert expected == SALE_FRAME.hex().upper()
    assert expected == frame.hex().upper()


def test_worked_example_frame_reads_back_and_verifies() -> None:
    """The host side: read the frame, decode the sale, verify its MAC."""
    (frame,) = FrameReader().feed(SALE_FRAME)
    assert (Tpdu(0x0003, 0x0000), Header()) == (frame.tpdu, frame.header)
    assert GOLDEN["sale"][1] == decode_message(frame.body)
    check_mac(frame.body, MAK)


@pytest.mark.parametrize("name", ["sale", "settlement", "settlement_response"])
def test_golden_macs_verify(name: str) -> None:
    """Every golden 0200/0500/0510 carries a MAC that verifies under the MAK."""
    check_mac(GOLDEN[name][0], MAK)
