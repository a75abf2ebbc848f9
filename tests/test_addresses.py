"""HOST:PORT, one splitter below the servers' --listen and the terminal's host address.

``cli_support.parse_listen`` (a server: empty host, port 0) and
``terminal.parse_address`` (a client: a host, port from 1) cut the text alike and keep
their own rules; a port of thousands of digits reached ``int()`` in both (a traceback).
"""

from __future__ import annotations

from typing import Final

import pytest

from posbatch.batch.addresses import parse_port, split_host_port
from posbatch.cli_support import parse_listen
from posbatch.errors import ConfigError
from posbatch.terminal import parse_address

HUGE_PORT: Final = "127.0.0.1:" + "9" * 5000  # past int()'s 4300 digits: ValueError


@pytest.mark.parametrize(
    ("text", "port_min", "port"),
    [("5800", 1, 5800), ("0", 0, 0), ("0", 1, None), ("65535", 0, 65535), ("65536", 0, None),
     ("05800", 1, 5800), ("²", 0, None), ("٣٠", 0, None), ("+80", 0, None), (" 80", 0, None),
     ("", 0, None), ("9" * 5000, 0, None)],
)  # fmt: skip
def test_a_port_is_ascii_digits_within_its_range(
    text: str, port_min: int, port: int | None
) -> None:
    """A port is ASCII digits from ``port_min`` to 65535; anything else is None."""
    assert port == parse_port(text, port_min=port_min)


@pytest.mark.parametrize(
    ("text", "split"),
    [("127.0.0.1:5800", ("127.0.0.1", 5800)), ("[::1]:5800", ("::1", 5800)),
     (":5800", ("", 5800)), ("pos.example:0", ("pos.example", 0)), ("nowhere", None),
     ("127.0.0.1:", None), (HUGE_PORT, None)],
)  # fmt: skip
def test_host_and_port_are_cut_at_the_last_colon(text: str, split: tuple[str, int] | None) -> None:
    """The last ":" cuts, an IPv6 host loses its brackets, an empty host is the caller's."""
    assert split == split_host_port(text, port_min=0)


@pytest.mark.parametrize(
    ("listen", "address"),
    [(":5800", ("127.0.0.1", 5800)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:80", ("::1", 80))],
)
def test_a_server_may_listen_on_no_host_and_port_0(listen: str, address: tuple[str, int]) -> None:
    """A server's --listen: an empty host is 127.0.0.1, port 0 picks a free one."""
    assert address == parse_listen(listen)


@pytest.mark.parametrize("listen", ["nowhere", "127.0.0.1:65536", "127.0.0.1:²", HUGE_PORT])
def test_a_bad_listen_address_is_one_config_error(listen: str) -> None:
    """Each bad --listen is the one ConfigError, never a ValueError."""
    with pytest.raises(ConfigError, match=r"--listen must be HOST:PORT with a port 0\.\.65535"):
        parse_listen(listen)


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:5800", ("127.0.0.1", 5800)), ("[::1]:5800", ("::1", 5800))],
)
def test_a_client_address_names_a_host_and_a_port(text: str, address: tuple[str, int]) -> None:
    """The terminal's host address: a host and a port from 1 (an IPv6 host unbracketed)."""
    assert address == parse_address(text)


@pytest.mark.parametrize(
    "text", [":5800", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:²", "nowhere", HUGE_PORT]
)
def test_a_client_refuses_no_host_port_0_and_a_bad_port(text: str) -> None:
    """A client needs a host and a port from 1: each bad one is the one ConfigError."""
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        parse_address(text)
