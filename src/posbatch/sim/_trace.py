"""What happened, in order: every frame exchanged, every fault, every operation.

The trace serves two readers. The determinism check folds every event into
one SHA-256 digest (same seed → same digest, byte for byte). A person reading
a violation gets the events of the failing terminal, frames decoded to one
line each (MTI, kind, STAN, batch, amount, response code) — never a full PAN.

Events are stored raw (bytes and short strings) and decoded only when printed,
so tracing costs little when nothing goes wrong. Each terminal keeps at most
:data:`TRACE_EVENTS_PER_TERMINAL_MAX` events (the oldest are dropped and
counted); the digest still covers every event.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Final

from posbatch.errors import PosbatchError
from posbatch.wire import FrameReader, decode_message, mask_pan

__all__ = ["TRACE_EVENTS_PER_TERMINAL_MAX", "EventKind", "Trace", "TraceEvent", "describe_frame"]

TRACE_EVENTS_PER_TERMINAL_MAX: Final = 20_000


class EventKind(enum.StrEnum):
    SENT = ">>"  # terminal → host, as the terminal sent it
    DELIVERED = "->"  # bytes the host received (may be a prefix, or a second copy)
    ANSWERED = "<-"  # host → terminal, as the host answered
    RECEIVED = "<<"  # what the terminal was given back
    TIMEOUT = ".."  # the terminal got nothing in time
    FAULT = "!!"
    OPERATION = "op"
    OUTCOME = "=>"
    CHECK = "ck"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    at_ms: int
    day: int
    terminal_id: str
    kind: EventKind
    text: str = ""
    frame: bytes = b""

    def render(self) -> str:
        seconds, milliseconds = divmod(self.at_ms, 1000)
        minutes, second = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        stamp = f"d{self.day} {hours % 24:02d}:{minute:02d}:{second:02d}.{milliseconds:03d}"
        body = self.text
        if self.frame:
            body = (body + " " if body else "") + describe_frame(self.frame)
        return f"{stamp} {self.terminal_id} {self.kind.value} {body}"


def describe_frame(frame: bytes) -> str:
    """One line for a frame: MTI, kind, STAN, batch, amount, code — PAN masked."""
    try:
        frames = FrameReader().feed(frame)
    except PosbatchError as exc:
        return f"[{len(frame)} bytes, not a whole frame: {exc}]"
    if not frames:
        return f"[{len(frame)} bytes, a partial frame]"
    try:
        message = decode_message(frames[0].body)
    except PosbatchError as exc:
        return f"[undecodable: {exc}]"
    parts = [type(message).__name__]
    for name in ("stan", "batch_no", "amount_fen", "response_code", "original", "detail"):
        value = getattr(message, name, None)
        if value is not None:
            parts.append(f"{name}={value}")
    pan = getattr(message, "pan", None)
    if isinstance(pan, str):
        parts.append(f"pan={mask_pan(pan)}")
    return " ".join(parts)


class Trace:
    """Per-terminal event logs plus one running digest over everything."""

    def __init__(self, *, keep_events: bool = True) -> None:
        self._digest = hashlib.sha256()
        self._keep = keep_events
        self._events: dict[str, deque[TraceEvent]] = {}
        self.dropped = 0
        self.frames = 0

    def record(
        self,
        at_ms: int,
        day: int,
        terminal_id: str,
        kind: EventKind,
        *,
        text: str = "",
        frame: bytes = b"",
    ) -> None:
        digest = self._digest
        digest.update(f"{at_ms}|{terminal_id}|{kind.value}|{text}|{len(frame)}|".encode())
        if frame:
            digest.update(frame)
            if kind is EventKind.SENT:
                self.frames += 1  # each request once, whatever happened to it
        if not self._keep:
            return
        events = self._events.get(terminal_id)
        if events is None:
            events = self._events[terminal_id] = deque(maxlen=TRACE_EVENTS_PER_TERMINAL_MAX)
        if len(events) == TRACE_EVENTS_PER_TERMINAL_MAX:
            self.dropped += 1
        events.append(TraceEvent(at_ms, day, terminal_id, kind, text, frame))

    def fold(self, text: str) -> None:
        """Fold a final-state line into the digest (not an event of any terminal)."""
        self._digest.update(b"state|" + text.encode() + b"\n")

    def hexdigest(self) -> str:
        return self._digest.hexdigest()

    def events_of(self, terminal_id: str, *, day: int | None = None) -> list[TraceEvent]:
        events = self._events.get(terminal_id, ())
        return [event for event in events if day is None or event.day == day]
