"""The response-code table: every code DESIGN.md lists, in Chinese and English."""

from __future__ import annotations

import pytest

from posbatch.batch.codes import APPROVED, CODES, Actor, describe, lookup

DESIGN_CODES = [
    "00",
    "03",
    "12",
    "13",
    "14",
    "22",
    "25",
    "30",
    "51",
    "54",
    "58",
    "61",
    "64",
    "68",
    "77",
    "90",
    "94",
    "96",
    "97",
    "A0",
]


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= character <= "\u9fff" for character in text)


@pytest.mark.parametrize("code", DESIGN_CODES)
def test_every_design_code_is_in_the_table(code: str) -> None:
    """Each code of DESIGN.md has a row with a Chinese and an English meaning and step."""
    row = CODES[code]
    assert code == row.code
    assert _has_chinese(row.meaning_zh)
    assert _has_chinese(row.step_zh)
    assert row.meaning_en and row.cause_en and row.step_en


def test_table_is_keyed_by_its_own_codes() -> None:
    """No row is filed under another code."""
    assert all(code == row.code for code, row in CODES.items())


@pytest.mark.parametrize("code", ["77", "A0", "22"])
def test_codes_that_need_a_new_sign_on_say_so(code: str) -> None:
    """77 (batch differs), A0 (MAC error) and 22 tell the terminal to sign on again."""
    assert (True, Actor.TERMINAL) == (lookup(code).sign_on_again, lookup(code).actor)


def test_approved_is_only_00() -> None:
    """Only 00 counts as approved."""
    assert [APPROVED] == [code for code, row in CODES.items() if row.approved]


def test_only_95_and_77_refuse_the_stan_as_sent() -> None:
    """95 is kept by the host for its STAN and 77 refuses the batch number; both are
    retry codes, and no other code says either (the outstanding queue reads these)."""
    assert (["95"], ["77"], True, True) == (
        [code for code, row in CODES.items() if row.stan_spent],
        [code for code, row in CODES.items() if row.batch_no_refused],
        lookup("95").retry,
        lookup("77").retry,
    )


def test_batch_number_error_reads_as_design_says() -> None:
    """77 is 'batch number differs from the centre — sign on again' / 批次号与中心不符."""
    assert (
        "77 批次号与中心不符，请重新签到 / batch number differs from the centre — sign on again"
        == (describe("77"))
    )


def test_unknown_code_gives_a_clear_unknown_row() -> None:
    """A code not in the table is reported as unknown, for the host side to explain."""
    row = lookup("Q7")
    assert (
        "Q7",
        "未知应答码 Q7",
        "unknown response code Q7",
        Actor.HOST,
        False,
        False,
    ) == (row.code, row.meaning_zh, row.meaning_en, row.actor, row.retry, row.sign_on_again)
    assert "Q7 未知应答码 Q7 / unknown response code Q7" == describe("Q7")
    assert not row.approved
