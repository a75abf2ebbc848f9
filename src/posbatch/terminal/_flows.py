"""The sans-IO protocol of the terminal: what a flow yields and what it is resumed with.

A flow is a generator. It yields :class:`Send` (one request frame and how long
to wait for its answer) and is resumed with the answer frame's bytes, or with
:data:`TIMEOUT` when none came in time. Its return value is the flow's result.
Drivers (:mod:`posbatch.terminal._drivers`) move the bytes; flows never do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeVar

__all__ = ["TIMEOUT", "Exchange", "Flow", "Reply", "Send", "Timeout", "run_flow"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``frame`` (length prefix included) and wait ``timeout_ms`` for one answer frame.

    An empty ``frame`` sends nothing: wait for the next frame on the line (the
    flow skipped a frame that was not its answer).
    """

    frame: bytes
    timeout_ms: int


class Timeout:
    """The marker a flow is resumed with when no answer came in time."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TIMEOUT"


TIMEOUT: Final = Timeout()

Reply: TypeAlias = bytes | Timeout
_T = TypeVar("_T")
Flow: TypeAlias = Generator[Send, Reply, _T]
# The synchronous link: send a frame, get the answer frame or None on timeout.
Exchange: TypeAlias = Callable[[bytes, int], bytes | None]


def run_flow(flow: Flow[_T], exchange: Exchange) -> _T:
    """Drive ``flow`` to its end over a synchronous ``exchange`` callable."""
    try:
        request = next(flow)
        while True:
            answer = exchange(request.frame, request.timeout_ms)
            request = flow.send(TIMEOUT if answer is None else answer)
    except StopIteration as stop:
        result: _T = stop.value
        return result
