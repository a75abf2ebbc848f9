"""Answers: send a request, find its answer, decide what that answer is worth.

Theory of operation
-------------------
:meth:`Answers.exchange` sends one request and listens for the frame that
answers it (same type, STAN, terminal and kind); anything else in the stream —
a duplicate of an earlier answer, garbage — is skipped, at most
``STALE_FRAMES_MAX`` times. No answer in time is ``None``.

Answers are believed only when they are authentic. Every answer except to
sign-on/sign-off/echo (08xx) carries field 64 (DESIGN.md "Keys and MAC"), so
the terminal checks it under the MAK of the sign-on the request was sent
under, for every code, and sorts the answer (:func:`authenticity`):

=========== ============================ =========================================
verdict     when                         what the flow does
=========== ============================ =========================================
VERIFIED    field 64 checks              acts on the answer
SIGN_ON     no good MAC, code A0 or 77   signs on, but believes nothing else of it
            (``SENT_WITHOUT_MAC``)       (the host sends these unMACed only when
                                         it cannot MAC: A0, our MAC failed; 77,
                                         we are not signed on and it has no MAK)
UNVERIFIED  field 64 wrong or missing,   not believed: what the answer claims may
            any other code               be damage or forgery
=========== ============================ =========================================

An UNVERIFIED answer is treated as no answer, and the keys are dropped (the
next request signs on first): a MAC that fails under our key is either damage
on the line or keys out of step with the host, and a sign-on repairs the
second for the price of one exchange in the first. A CUP terminal does this
for an approval (reversal reason 96: the MAC of an approval failed); here it
holds for every code, because that is the only reading that keeps the
promise: believing a forged 0410 "00" would show a sale as reversed that the
host still counts; believing a forged decline would hide an approval.

What each room then does with a verdict is its own: the financial flow looks
it up in its reaction table (:mod:`._financial`), the outstanding queue resends
(:mod:`._outstanding`), settlement signs on and sends again
(:mod:`._settlement`, :func:`acted_on`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from posbatch.batch.codes import MAC_ERROR, SENT_WITHOUT_MAC, lookup
from posbatch.errors import DecodeError, MacError, NotSignedOn
from posbatch.terminal._flows import Flow, Reply, Send, Timeout
from posbatch.wire import (
    Frame,
    FrameReader,
    Header,
    Message,
    ProcessingRequirement,
    Request,
    check_mac,
    decode_message,
    encode_frame,
    encode_message,
)

if TYPE_CHECKING:
    from posbatch.terminal._context import EngineContext

__all__ = [
    "STALE_FRAMES_MAX",
    "Answer",
    "Answers",
    "Authenticity",
    "acted_on",
    "authenticity",
    "response_code",
]

STALE_FRAMES_MAX: Final = 4  # frames read for one request before giving up on its answer

_M = TypeVar("_M")


@dataclass(frozen=True, slots=True)
class Answer:
    message: Message
    body: bytes
    header: Header
    mak: bytes | None  # the MAK its request was sent under (None: an 08xx exchange)


class Authenticity(enum.Enum):
    """What an answer of a MACed exchange is worth (see the theory of operation)."""

    VERIFIED = "verified"
    SIGN_ON = "sign_on"
    UNVERIFIED = "unverified"


def response_code(answer: Answer) -> str:
    code: str = getattr(answer.message, "response_code")  # noqa: B009  every answer type has one
    return code


def authenticity(answer: Answer) -> Authenticity:
    """Sort ``answer`` by its field 64 under the MAK its request was sent with."""
    if answer.mak is not None:
        try:
            check_mac(answer.body, answer.mak)
        except MacError:
            pass
        else:
            return Authenticity.VERIFIED
    if response_code(answer) in SENT_WITHOUT_MAC:
        return Authenticity.SIGN_ON
    return Authenticity.UNVERIFIED


def acted_on(answer: Answer) -> bool:
    """Whether a settlement or upload answer may be acted on: verified, or an unMACed A0.

    An unMACed 77 is not: the host MACs every 77 to a signed-on terminal, so
    one without a good MAC is either "not signed on" (signing on and sending
    again gets the real answer) or forged (it would close the batch as closed
    by the host without settling it).
    """
    verdict = authenticity(answer)
    if verdict == Authenticity.SIGN_ON:
        return response_code(answer) == MAC_ERROR
    return verdict == Authenticity.VERIFIED


class Answers:
    """The engine's side of the line: frames out, the matching answer in."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def frame(self, message: Request, *, mac: bool) -> bytes:
        mak = None
        if mac:
            if self.ctx.keys is None:
                raise NotSignedOn("no working keys: sign on first")
            mak = self.ctx.keys.mak
        body = encode_message(message, mak=mak)
        return encode_frame(Frame(self.ctx.tpdu, self.ctx.header, body))

    def exchange(
        self, message: Request, expected: type[_M], *, mac: bool = True
    ) -> Flow[Answer | None]:
        """Send ``message``; the answer if one of type ``expected`` for its STAN came in time.

        A frame that is not that answer (a duplicate of an earlier answer still in
        the stream, garbage) is skipped and the flow keeps listening
        (``Send(b"")``), at most ``STALE_FRAMES_MAX`` times.
        """
        frame = self.frame(message, mac=mac)
        mak = self.ctx.keys.mak if mac and self.ctx.keys is not None else None
        reply: Reply = yield Send(frame, self.ctx.timeout_ms)
        for _ in range(STALE_FRAMES_MAX):
            if isinstance(reply, Timeout):
                return None
            answer = self.match(reply, message, expected, mak)
            if answer is not None:
                return answer
            reply = yield Send(b"", self.ctx.timeout_ms)
        return None

    def match(
        self, reply: bytes, message: Request, expected: type[_M], mak: bytes | None
    ) -> Answer | None:
        """``reply`` as the answer to ``message`` if it is one (else None); a header asking
        for a sign-on drops the keys."""
        try:
            frames = FrameReader().feed(reply)
            if len(frames) != 1:
                return None
            frame = frames[0]
            answer = decode_message(frame.body)
        except (DecodeError, ValueError):
            return None
        if self.ctx.on_answer is not None:
            self.ctx.on_answer(answer)
        if not isinstance(answer, expected):
            return None
        if (
            getattr(answer, "stan", None) != message.stan
            or getattr(answer, "terminal_id", None) != message.terminal_id
            or getattr(answer, "kind", getattr(answer, "KIND", None)) != message.KIND
        ):
            return None
        if frame.header.processing_requirement == ProcessingRequirement.SIGN_ON:
            self.ctx.keys = None
        return Answer(answer, frame.body, frame.header, mak)

    def believed_code(self, answer: Answer | None) -> str | None:
        """The response code of ``answer`` if it is believed, else None (as no answer).

        Only a verified answer is believed; an unMACed A0/77 asks for a sign-on
        and says nothing about the request (sent again after it). Drops the
        working keys when the answer is not verified, or is a code whose row in
        :mod:`posbatch.batch.codes` says ``sign_on_again`` (77, A0, 22), so the
        next request signs on first.
        """
        if answer is None:
            return None
        verdict = authenticity(answer)
        code = response_code(answer)
        if verdict != Authenticity.VERIFIED or lookup(code).sign_on_again:
            self.ctx.keys = None
        return code if verdict == Authenticity.VERIFIED else None
