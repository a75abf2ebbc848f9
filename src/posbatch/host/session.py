"""One connection's protocol state, in the style of h11: bytes in, replies out, no I/O.

A :class:`HostSession` splits the byte stream into frames with
:class:`~posbatch.wire.FrameReader` and hands whole frames to the shared
:class:`~posbatch.host.core.HostCore`. What a peer sends never raises out of
it:

- a bad length prefix (0, or above the frame limit) breaks the stream: the
  session answers a closing reply and ignores everything after;
- a frame with a bad TPDU or header is dropped (its length was sound, so the
  stream keeps its place);
- everything else is the core's business (30, 97, A0, 77, …).
"""

from __future__ import annotations

from typing import Final

from posbatch.errors import FrameError
from posbatch.host.core import HostCore, HostReply, RequestLog
from posbatch.wire import BUFFER_BYTES_MAX, FRAME_BYTES_MAX, Frame, FrameReader

__all__ = ["FRAMES_PER_READ_MAX", "HostSession"]

# Whole frames taken from one receive_data call; the rest waits in the reader.
FRAMES_PER_READ_MAX: Final = 64


class HostSession:
    def __init__(
        self,
        core: HostCore,
        *,
        max_frame_bytes: int = FRAME_BYTES_MAX,
        max_buffer_bytes: int = BUFFER_BYTES_MAX,
    ) -> None:
        self.core = core
        self._reader = FrameReader(
            max_frame_bytes=max_frame_bytes, max_buffer_bytes=max_buffer_bytes
        )
        self.closed = False

    @property
    def frame_started(self) -> bool:
        """Part of a frame is buffered and its end has not come (see FrameReader)."""
        return not self.closed and self._reader.frame_started

    def split(
        self, data: bytes, *, max_frames: int | None = None
    ) -> tuple[list[Frame], list[HostReply]]:
        """The whole frames in the stream so far, and replies owed without the core.

        The second list holds drops (bad TPDU/header) and, when the stream is
        broken, one closing reply (after which :attr:`closed` is true). At most
        ``max_frames`` frames are taken (drops count too); the rest stays in
        the reader, bounded by its buffer, until the next call — that is how a
        server keeps the requests of one connection in flight under a limit
        however many arrived in one read.
        """
        if self.closed:
            return [], []
        frames: list[Frame] = []
        local: list[HostReply] = []
        try:
            self._reader.receive_data(data)
        except FrameError as exc:
            return [], [self._close(exc)]
        while max_frames is None or len(frames) + len(local) < max_frames:
            try:
                frame = self._reader.next_frame()
            except FrameError as exc:
                if exc.field == "length":
                    local.append(self._close(exc))
                    break
                local.append(HostReply(log=RequestLog(error=str(exc))))
                continue
            if frame is None:
                break
            frames.append(frame)
        return frames, local

    def _close(self, exc: FrameError) -> HostReply:
        self.closed = True
        return HostReply(close=True, log=RequestLog(error=str(exc)))

    def receive_data(self, data: bytes) -> list[HostReply]:
        """Feed bytes; get the replies to every whole frame they completed, in order."""
        frames, local = self.split(data)
        replies = self.core.handle_decoded_frames(frames) if frames else []
        closing = [reply for reply in local if reply.close]
        dropped = [reply for reply in local if not reply.close]
        return dropped + replies + closing
