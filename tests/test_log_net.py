"""The last net under every server's log lines: a card number in a message or a traceback
comes out as first 6 / last 4, whatever the code that logged it put there."""

from __future__ import annotations

import io
import json
import logging

import pytest

from posbatch.cli_support import CardNumberFilter, ForeignLinesAsJson

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


def test_a_drivers_warning_is_one_json_line_with_card_numbers_masked() -> None:
    """A server whose standard error is JSON lines (host serve) writes a driver's warning —
    psycopg's, over three lines, when PostgreSQL drops a connection — as one JSON line,
    masked, and leaves its own lines as they are."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CardNumberFilter())
    handler.addFilter(ForeignLinesAsJson(own_prefix="posbatch.test.json"))
    loggers = [logging.getLogger(name) for name in ("psycopg.test.json", "posbatch.test.json")]
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO)
    loggers[0].warning(
        "error ignored terminating %s: consuming input failed: server closed the connection"
        "\n\tThis probably means the server terminated abnormally\n\tcard %s",
        "<psycopg.Pipeline [BAD]>",
        PAN,
    )
    loggers[1].warning('{"event": "listening"}')
    lines = stream.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "event": "library",
            "logger": "psycopg.test.json",
            "level": "warning",
            "message": "error ignored terminating <psycopg.Pipeline [BAD]>: consuming input "
            "failed: server closed the connection This probably means the server terminated "
            "abnormally card 622202*********0128",
        },
        {"event": "listening"},
    ]
