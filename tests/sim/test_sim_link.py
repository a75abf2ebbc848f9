"""The in-memory link: each fault does to the bytes what its name says, and is counted."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from posbatch.sim._clock import VirtualClock
from posbatch.sim._faults import FaultCounter, FaultKind, FaultProfile
from posbatch.sim._link import HostNode, SimLink, SimulatedCrash
from posbatch.sim._trace import Trace
from testbed import TERMINAL_ID

REQUEST = b"\x00\x05hello"
ANSWER = b"\x00\x03ok!"
TIMEOUT_MS = 30_000


@dataclass
class _Log:
    error: str | None = None
    response_code: str | None = None


@dataclass
class _Reply:
    frames: tuple[bytes, ...]
    close: bool = False
    delay_ms: int = 0
    log: _Log = field(default_factory=_Log)


@dataclass
class _RecordingHost:
    """A host that answers every whole request with ANSWER and remembers what it received."""

    received: list[bytes] = field(default_factory=list)
    restarts: int = 0

    def session(self) -> _Session:
        return _Session(self)


@dataclass
class _Session:
    host: _RecordingHost

    def receive_data(self, data: bytes) -> list[_Reply]:
        self.host.received.append(data)
        return [_Reply((ANSWER,))] if data == REQUEST else []


def make_link(kind: FaultKind | None) -> tuple[SimLink, _RecordingHost, FaultCounter, VirtualClock]:
    host = _RecordingHost()
    counter = FaultCounter()
    clock = VirtualClock()
    profile = FaultProfile("one", {kind: 1.0} if kind is not None else {})
    node = HostNode(host.session, lambda: None)
    link = SimLink(
        TERMINAL_ID,
        host=node,
        clock=clock,
        profile=profile,
        generator=random.Random(1),
        counter=counter,
        trace=Trace(),
        day=lambda: 0,
    )
    return link, host, counter, clock


def test_no_fault_delivers_and_answers() -> None:
    """Without faults the host receives the request once and the terminal gets the answer."""
    link, host, counter, _ = make_link(None)
    assert ANSWER == link.exchange(REQUEST, TIMEOUT_MS)
    assert [REQUEST] == host.received
    assert 0 == counter.total


def test_request_lost_never_reaches_the_host() -> None:
    """Request lost: the host sees nothing, the terminal waits its whole timeout."""
    link, host, counter, clock = make_link(FaultKind.REQUEST_LOST)
    assert link.exchange(REQUEST, TIMEOUT_MS) is None
    assert [] == host.received
    assert 1 == counter.counts[FaultKind.REQUEST_LOST]
    assert clock.now_ms >= TIMEOUT_MS


def test_response_lost_after_the_host_processed() -> None:
    """Response lost: the host received (and committed) the request; the terminal gets None."""
    link, host, counter, _ = make_link(FaultKind.RESPONSE_LOST)
    assert link.exchange(REQUEST, TIMEOUT_MS) is None
    assert [REQUEST] == host.received
    assert 1 == counter.counts[FaultKind.RESPONSE_LOST]


def test_delayed_response_comes_too_late() -> None:
    """Response delayed past the timeout: processed by the host, a timeout for the terminal."""
    link, host, counter, _ = make_link(FaultKind.RESPONSE_DELAYED)
    assert link.exchange(REQUEST, TIMEOUT_MS) is None
    assert [REQUEST] == host.received
    assert 1 == counter.counts[FaultKind.RESPONSE_DELAYED]


def test_duplicate_delivery_reaches_the_host_twice() -> None:
    """Duplicate delivery: the host receives the same request twice, the terminal one answer."""
    link, host, counter, _ = make_link(FaultKind.DUPLICATE_DELIVERY)
    assert ANSWER == link.exchange(REQUEST, TIMEOUT_MS)
    assert [REQUEST, REQUEST] == host.received
    assert 1 == counter.counts[FaultKind.DUPLICATE_DELIVERY]


def test_reset_mid_frame_delivers_a_prefix() -> None:
    """Connection reset mid-frame: the host gets a proper prefix of the frame, no answer."""
    link, host, counter, _ = make_link(FaultKind.CONNECTION_RESET)
    assert link.exchange(REQUEST, TIMEOUT_MS) is None
    assert 1 == len(host.received)
    assert REQUEST.startswith(host.received[0])
    assert 0 < len(host.received[0]) < len(REQUEST)
    assert 1 == counter.counts[FaultKind.CONNECTION_RESET]


def test_terminal_crash_is_raised_through_the_engine() -> None:
    """A terminal crash is a BaseException raised out of exchange(), counted as a fault."""
    link, host, counter, _ = make_link(FaultKind.TERMINAL_CRASH)
    with pytest.raises(SimulatedCrash):
        link.exchange(REQUEST, TIMEOUT_MS)
    assert 1 == counter.counts[FaultKind.TERMINAL_CRASH]
    assert [] == host.received  # it struck before the request left


def test_host_failure_is_recorded_not_raised() -> None:
    """An exception escaping the host is recorded for invariant 6; the terminal times out."""

    def broken_session() -> _Session:
        raise_on = _Session(_RecordingHost())

        def receive_data(data: bytes) -> list[_Reply]:
            raise KeyError("boom")

        raise_on.receive_data = receive_data  # type: ignore[method-assign]
        return raise_on

    node = HostNode(broken_session, lambda: None)
    link = SimLink(
        TERMINAL_ID,
        host=node,
        clock=VirtualClock(),
        profile=FaultProfile("none"),
        generator=random.Random(1),
        counter=FaultCounter(),
        trace=Trace(),
        day=lambda: 0,
    )
    assert link.exchange(REQUEST, TIMEOUT_MS) is None
    expected = ["KeyError('boom')"]
    assert expected == [failure.error for failure in node.failures]
