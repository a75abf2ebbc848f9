"""What uvicorn does not bound about a peer, bounded: how long a request takes to arrive,
and how many connections one client address may hold. Both HTTP servers use it: the back
office (``posbatch backoffice serve``) and the catalog (``posbatch catalog serve``).

uvicorn (0.55, h11) starts no timer when a connection opens, and stops its keep-alive
timer at the first byte that arrives: a connection that sends nothing, or a request head
(or body) a byte at a time, was held for ever. ``limit_concurrency`` counts connections,
so 200 of them from one machine — no byte sent, no login — answered every user 503 for as
long as they stayed open (the back office's; the catalog's tills likewise).

- :data:`REQUEST_READ_S`: a request's head and body must have arrived this long after the
  connection opened, or after the answer to the previous request on it; else the
  connection is closed. The time the server then takes to answer is not counted.
- :data:`CONNECTIONS_PER_ADDRESS_MAX`: connections one client address (an IPv6 address by
  its /64, as logins are counted) may hold at once; one more is closed at once. Behind a
  proxy (``--trust-proxy``) every connection is the proxy's: the proxy bounds its clients.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["CONNECTIONS_PER_ADDRESS_MAX", "REQUEST_READ_S", "address_key", "bounded_protocol"]

REQUEST_READ_S: Final = 20.0
CONNECTIONS_PER_ADDRESS_MAX: Final = 50
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\nconnection: close\r\n\r\n503 too many connections from this address\n"
)


def bounded_protocol(
    *, read_s: float = REQUEST_READ_S, per_address_max: int | None = CONNECTIONS_PER_ADDRESS_MAX
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with these bounds (``per_address_max`` None: no cap, as
    behind a trusted proxy). Pass it as ``uvicorn.Config(http=...)``."""
    import h11  # noqa: PLC0415 - only the servers need these (keep `posbatch --help` fast)
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415

    class BoundedH11Protocol(H11Protocol):
        _read_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if per_address_max is not None and self.client is not None:
                where = address_key(self.client[0])
                held = sum(_address_of(other) == where for other in self.connections)
                if held > per_address_max:  # this connection is among them
                    transport.write(_BUSY)
                    transport.close()
                    return
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
            self._read_deadline = self.loop.call_later(read_s, self._read_too_slow)

        def _read_too_slow(self) -> None:
            self._read_deadline = None
            # IDLE: no whole head yet; SEND_BODY: the body is still coming. DONE: the
            # request is whole and the console is answering it — not the peer's time.
            if not self.transport.is_closing() and self.conn.their_state in (
                h11.IDLE,
                h11.SEND_BODY,
            ):
                self.transport.close()

    return BoundedH11Protocol


def _address_of(connection: object) -> str | None:
    """The client address of one of uvicorn's connections, as counted (None: unknown)."""
    client = getattr(connection, "client", None)
    return address_key(client[0]) if isinstance(client, tuple) and client else None


def address_key(address: str) -> str | None:
    """A client address as counted: an IPv6 address by its /64 (one host's share of a
    network), an IPv4-mapped one as IPv4, None for what is not an address."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
