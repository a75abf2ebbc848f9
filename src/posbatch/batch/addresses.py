"""``HOST:PORT`` as a person types it: one splitter and one port parser, for the servers'
``--listen`` (:func:`posbatch.cli_support.parse_listen`) and the terminal's host address
(:func:`posbatch.terminal.parse_address`) alike.

Each caller keeps its own rule on top: a server may listen on an empty host (its default)
and on port 0 (a free one); a client needs a host and a port from 1. What they share is
how the text is cut — at the last ``:``, an IPv6 host in brackets (``[::1]:5800``) — and
that a port is ASCII digits only: "²" and "٣" pass ``str.isdigit`` and ``int()`` turned
the first into a traceback.

Pure: strings in, values (or None) out; the caller words its own error.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PORT_MAX", "parse_port", "split_host_port"]

PORT_MAX: Final = 65_535
_PORT_DIGITS_MAX: Final = len(str(PORT_MAX))


def parse_port(text: str, *, port_min: int) -> int | None:
    """``text`` as a TCP port from ``port_min`` to :data:`PORT_MAX`, or None: ASCII digits
    only (no sign, no space, no other script's digits)."""
    if not (text.isascii() and text.isdigit()) or len(text) > _PORT_DIGITS_MAX:
        return None
    port = int(text)
    return port if port_min <= port <= PORT_MAX else None


def split_host_port(text: str, *, port_min: int) -> tuple[str, int] | None:
    """``HOST:PORT`` → (host, port), the host without the brackets of an IPv6 address
    (possibly empty: the caller decides), or None when ``text`` has no ``:`` or its port is
    not one (:func:`parse_port`)."""
    host, separator, port_text = text.rpartition(":")
    port = parse_port(port_text, port_min=port_min)
    if not separator or port is None:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port
