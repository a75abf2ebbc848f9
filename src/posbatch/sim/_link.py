"""The in-memory link between terminal cores and the host core, with faults on it.

Theory of operation
-------------------
Each terminal gets a :class:`SimLink` whose :meth:`SimLink.exchange` is the
``exchange(frame, timeout_ms) -> bytes | None`` callable of the terminal's
synchronous driver. An exchange is one short connection, as a CUP POS over
GPRS or dial-up makes it: connect, send the request, read one answer, hang
up. Inside it, in this order, drawing from the ``faults`` stream:

1. the host may crash and restart (a new ``HostCore`` over the same store:
   what was committed survives, sessions and memory do not);
2. the terminal may crash before its request leaves (its journal already
   holds the transaction: DESIGN.md's "journal first");
3. at most one link fault: the request is lost; the connection is reset
   after a part of the request (the host sees a partial frame, then the
   close); the request is delivered twice (the terminal reads one of the two
   answers); the response is lost; the response arrives after the terminal's
   timeout;
4. the terminal may crash after the host committed but before the answer is
   read.

Every fault is counted and traced. Time moves on the virtual clock only:
a network latency per leg, the whole timeout when nothing comes back, and
whatever delay the host itself asks for (``HostReply.delay_ms``, the host's
own fault scripts).

An exception escaping the host core is DESIGN.md invariant 6 broken: it is
recorded (not raised), the connection drops, and the terminal sees a timeout.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from posbatch.sim._clock import VirtualClock
from posbatch.sim._faults import FaultCounter, FaultKind, FaultProfile
from posbatch.sim._trace import EventKind, Trace
from posbatch.wire import Message, decode_batch_detail

__all__ = [
    "LATENCY_MS_MAX",
    "LATENCY_MS_MIN",
    "HostFailure",
    "HostNode",
    "SimLink",
    "SimulatedCrash",
]

LATENCY_MS_MIN: Final = 20
LATENCY_MS_MAX: Final = 400
# How late a delayed answer comes, beyond the terminal's timeout.
DELAY_BEYOND_TIMEOUT_MS_MAX: Final = 30_000
HOST_FAILURES_KEPT_MAX: Final = 100
BATCH_ERROR_REASONS_KEPT_MAX: Final = 1_000
# HostReply.log.error of a request the host could not process (it answered 96).
HOST_FAILURE_PREFIX: Final = "processing failed"


class LogLike(Protocol):
    @property
    def error(self) -> str | None: ...
    @property
    def response_code(self) -> str | None: ...


class ReplyLike(Protocol):
    @property
    def frames(self) -> Sequence[bytes]: ...
    @property
    def close(self) -> bool: ...
    @property
    def delay_ms(self) -> int: ...
    @property
    def log(self) -> LogLike: ...


class SessionLike(Protocol):
    def receive_data(self, data: bytes, /) -> Sequence[ReplyLike]: ...


class SimulatedCrash(BaseException):
    """The terminal's process dies here: raised through the engine, caught by the world.

    A ``BaseException`` on purpose: no ``except Exception`` in the engine may
    swallow a power cut.
    """

    def __init__(self, terminal_id: str, where: str) -> None:
        super().__init__(f"terminal {terminal_id} crashed {where}")
        self.terminal_id = terminal_id
        self.where = where


@dataclass(frozen=True, slots=True)
class HostFailure:
    """An exception that escaped the host core (invariant 6)."""

    at_ms: int
    terminal_id: str
    error: str
    detail: str


class HostNode:
    """The host as the link sees it: a session factory that can crash and restart."""

    def __init__(
        self,
        make_session: Callable[[], SessionLike],
        restart: Callable[[], None],
    ) -> None:
        self._make_session = make_session
        self._restart = restart
        self.restarts = 0
        self.failures: list[HostFailure] = []

    def session(self) -> SessionLike:
        return self._make_session()

    def restart(self) -> None:
        self.restarts += 1
        self._restart()

    def fail(self, at_ms: int, terminal_id: str, exc: Exception) -> None:
        if len(self.failures) < HOST_FAILURES_KEPT_MAX:
            detail = "".join(traceback.format_exception(exc))
            self.failures.append(HostFailure(at_ms, terminal_id, repr(exc), detail))


class SimLink:
    """One terminal's line to the host; ``exchange`` plugs into the terminal's driver."""

    def __init__(
        self,
        terminal_id: str,
        *,
        host: HostNode,
        clock: VirtualClock,
        profile: FaultProfile,
        generator: random.Random,
        counter: FaultCounter,
        trace: Trace,
        day: Callable[[], int],
    ) -> None:
        self.terminal_id = terminal_id
        self._host = host
        self._clock = clock
        self._profile = profile
        self._random = generator
        self._counter = counter
        self._trace = trace
        self._day = day
        self.exchanges = 0
        self.batch_errors = 0  # 77 answers the terminal received
        self.batch_error_reasons: list[str] = []  # field 63 R= of each (the last ones kept)

    def crash_point(self, where: str) -> None:
        """The terminal's process may die here (an exchange or a journal commit): raise, or not."""
        if self._profile.strikes(FaultKind.TERMINAL_CRASH, self._random):
            self._fault(FaultKind.TERMINAL_CRASH, where)
            raise SimulatedCrash(self.terminal_id, where)

    def quiet(self) -> None:
        """No more faults on this line (the simulation's closing settlement)."""
        self._profile = FaultProfile("none")

    def _record(self, kind: EventKind, text: str = "", frame: bytes = b"") -> None:
        self._trace.record(
            self._clock.now_ms, self._day(), self.terminal_id, kind, text=text, frame=frame
        )

    def _fault(self, kind: FaultKind, text: str = "") -> None:
        self._counter.add(kind)
        self._record(EventKind.FAULT, f"{kind.value}{': ' + text if text else ''}")

    def _latency(self) -> None:
        self._clock.advance(self._random.randint(LATENCY_MS_MIN, LATENCY_MS_MAX))

    def _timeout(self, timeout_ms: int) -> None:
        self._clock.advance(timeout_ms)
        self._record(EventKind.TIMEOUT, f"no answer in {timeout_ms} ms")

    def _deliver(self, session: SessionLike, data: bytes) -> list[bytes] | None:
        """Hand ``data`` to the host; its answer frames, or None if the host blew up."""
        self._record(EventKind.DELIVERED, frame=data)
        try:
            replies = session.receive_data(data)
        except Exception as exc:  # invariant 6: recorded, never raised into the sim
            self._host.fail(self._clock.now_ms, self.terminal_id, exc)
            self._record(EventKind.FAULT, f"HOST RAISED {exc!r}")
            return None
        frames: list[bytes] = []
        delay_ms = 0
        for reply in replies:
            frames.extend(reply.frames)
            delay_ms = max(delay_ms, reply.delay_ms)
            error = reply.log.error
            if error is not None and error.startswith(HOST_FAILURE_PREFIX):
                # The host caught something unexpected and answered 96: still invariant 6.
                self._host.fail(self._clock.now_ms, self.terminal_id, RuntimeError(error))
                self._record(EventKind.FAULT, f"HOST FAILED: {error}")
        if delay_ms:
            self._clock.advance(delay_ms)
        for frame in frames:
            self._record(EventKind.ANSWERED, frame=frame)
        return frames

    def exchange(self, frame: bytes, timeout_ms: int) -> bytes | None:
        """One request, at most one answer; None when the terminal's timeout passes."""
        self.exchanges += 1
        profile, generator = self._profile, self._random
        self._record(EventKind.SENT, frame=frame)
        if profile.strikes(FaultKind.HOST_RESTART, generator):
            self._fault(FaultKind.HOST_RESTART)
            self._host.restart()
        self.crash_point("before the request left")
        link_fault = profile.link_fault(generator)
        session = self._host.session()
        self._latency()
        if link_fault is FaultKind.REQUEST_LOST:
            self._fault(link_fault)
            self._timeout(timeout_ms)
            return None
        if link_fault is FaultKind.CONNECTION_RESET:
            cut = generator.randint(1, max(1, len(frame) - 1))
            self._fault(link_fault, f"after {cut} of {len(frame)} bytes")
            self._deliver(session, frame[:cut])
            self._timeout(timeout_ms)
            return None
        answers = self._deliver(session, frame)
        if link_fault is FaultKind.DUPLICATE_DELIVERY:
            self._fault(link_fault)
            second = self._deliver(self._host.session(), frame)
            if answers is not None and second is not None and generator.random() < 0.5:
                answers = second
        self.crash_point("after the host answered, before reading it")
        if link_fault is FaultKind.RESPONSE_LOST:
            self._fault(link_fault)
            self._timeout(timeout_ms)
            return None
        if link_fault is FaultKind.RESPONSE_DELAYED:
            late_ms = generator.randint(1, DELAY_BEYOND_TIMEOUT_MS_MAX)
            self._fault(link_fault, f"{late_ms} ms after the timeout")
            self._timeout(timeout_ms)
            return None
        if not answers:
            self._timeout(timeout_ms)
            return None
        self._latency()
        answer = answers[0]
        self._record(EventKind.RECEIVED, frame=answer)
        return answer

    def count_answer(self, message: Message) -> None:
        """The terminal's ``on_answer``: every answer it decoded, decoded once (by it). A 77
        (批次号错误) reaching the terminal is counted, with field 63's reason."""
        if getattr(message, "response_code", None) != "77":
            return
        self.batch_errors += 1
        detail_text = getattr(message, "detail", None)
        detail = decode_batch_detail(detail_text) if detail_text else None
        reason = detail.reason.value if detail and detail.reason else "no reason given"
        if len(self.batch_error_reasons) >= BATCH_ERROR_REASONS_KEPT_MAX:
            del self.batch_error_reasons[: BATCH_ERROR_REASONS_KEPT_MAX // 2]
        self.batch_error_reasons.append(f"77 {reason}")
