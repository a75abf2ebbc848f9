"""Whatever a peer sends, the session answers or drops it — it never raises."""

from __future__ import annotations

from host_helpers import MERCHANT_ID, PAN, TERMINAL_ID, frame_of, new_core, open_store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posbatch.batch.model import SettlementTotals
from posbatch.host import HostReply, HostSession
from posbatch.host.server import request_log_line
from posbatch.wire import SaleRequest, SettlementRequest

STORE = open_store("sqlite://")
CORE = new_core(STORE)
SEEDS = [
    frame_of(SaleRequest(TERMINAL_ID, MERCHANT_ID, 5, 1, 100, PAN), b"\x01" * 8),
    frame_of(SettlementRequest(TERMINAL_ID, MERCHANT_ID, 6, 1, SettlementTotals()), b"\x01" * 8),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    """Arbitrary bytes give HostReply objects, never an exception."""
    replies = HostSession(CORE).receive_data(data)
    assert all(isinstance(reply, HostReply) for reply in replies)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_frames_never_raise(seed: bytes, data: st.DataObject) -> None:
    """A valid frame with bytes changed (length kept) is answered or dropped, never raises,
    and its log line never carries the card number."""
    frame = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(2, len(frame) - 1))
        frame[index] = data.draw(st.integers(0, 255))
    replies = HostSession(CORE).receive_data(bytes(frame))
    assert len(replies) == 1
    # What the host logs of it holds no run of 12 digits of the card (issue #12 §2).
    line = request_log_line(replies[0].log, 0.0)
    assert [] == [PAN[i : i + 12] for i in range(len(PAN) - 11) if PAN[i : i + 12] in line]
