"""The last net under every server's log lines: a card number in a message or a traceback
comes out as first 6 / last 4, whatever the code that logged it put there."""

from __future__ import annotations

import io
import logging

import pytest

from posbatch.cli_support import CardNumberFilter

PAN = "6222021234567890128"
PAN_12 = "622202123452"


@pytest.fixture
def captured() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CardNumberFilter())
    logger = logging.getLogger("posbatch.test.lognet")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_a_card_number_in_a_message_is_masked(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("field 2 was %s and %s", PAN, PAN_12)
    assert "field 2 was 622202*********0128 and 622202**3452\n" == stream.getvalue()


def test_a_card_number_in_a_traceback_is_masked(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise ValueError(f"bad card {PAN}")
    except ValueError:
        logger.exception("group failed")
    text = stream.getvalue()
    assert (PAN in text, "622202*********0128" in text, "Traceback" in text) == (False, True, True)
