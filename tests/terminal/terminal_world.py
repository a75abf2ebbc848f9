"""What the terminal tests share: a real host core joined to a terminal engine in-process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from posbatch.host import FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.terminal import InProcessLink, Journal, Terminal, TerminalSecrets
from posbatch.wire import (
    Frame,
    FrameReader,
    ReversalRequest,
    SignOnResponse,
    TransactionResponse,
    decode_message,
    encode_frame,
    encode_message,
    unwrap_working_keys,
)
from testbed import MASTER_KEY, MERCHANT_ID, START, TERMINAL_ID, StepClock, counting_bytes

PAN = TEST_PAN_APPROVED


# Where a frame (length prefix included) keeps its MTI: after length, TPDU and header.
_MTI_SLICE = slice(13, 15)


def mti_of(frame: bytes) -> str:
    """The message type of a whole frame, e.g. ``"0410"``."""
    return frame[_MTI_SLICE].hex()


def flip_mac(frame: bytes) -> bytes:
    """The frame with one bit of field 64 (its last byte) flipped: damage, or a forger."""
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


def flip_body(frame: bytes) -> bytes:
    """The frame with one byte of the body changed (a digit of field 42), field 64 kept."""
    at = frame.index(MERCHANT_ID.encode()) + len(MERCHANT_ID) - 1
    return frame[:at] + bytes([frame[at] ^ 0x01]) + frame[at + 1 :]


def forged(response_code: str) -> Callable[[bytes], bytes]:
    """A change for :meth:`Link.tamper`: the answer re-coded ``response_code``, without a MAC.

    What a forger on the line sends in place of the host's answer (or, for A0
    and 77, what a host sends that holds no key for the terminal).
    """

    def change(frame: bytes) -> bytes:
        (read,) = FrameReader().feed(frame)
        message = replace(decode_message(read.body), response_code=response_code)  # type: ignore[type-var]
        return encode_frame(Frame(read.tpdu, read.header, encode_message(message)))

    return change


class Link:
    """The in-process link, with a switch to lose every answer (a dead network).

    It also plays the man in the middle: :meth:`tamper` changes answers of one
    message type on their way back, :meth:`acknowledge_reversal` answers the
    next reversal with a correctly MACed 00 without passing it on (a host that
    acknowledges a reversal it never applies), :meth:`forge_reversal_approval`
    the next ones with an unMACed 00 (a forger: the host sees nothing). For
    that it reads the MAK out of every sign-on answer, as anyone holding the
    terminal's master key can.
    """

    def __init__(self, core: HostCore) -> None:
        self.inner = InProcessLink(core)
        self.down = False
        self.sent: list[bytes] = []
        self.mak: bytes | None = None
        self.tampered = 0
        self._tampers: dict[str, tuple[Callable[[bytes], bytes], int]] = {}
        self._acknowledge_reversals = 0
        self._forge_reversals = 0

    def tamper(self, mti: str, change: Callable[[bytes], bytes], *, times: int = 1) -> None:
        """Pass the next ``times`` answers of type ``mti`` through ``change``."""
        self._tampers[mti] = (change, times)

    def acknowledge_reversal(self) -> None:
        """Answer the next 0400 with a MACed 00 the host never sees."""
        self._acknowledge_reversals += 1

    def forge_reversal_approval(self, *, times: int = 1) -> None:
        """Answer the next ``times`` 0400s with an unMACed 00 the host never sees."""
        self._forge_reversals += times

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        self.sent.append(frame)
        if self.down:
            return None
        if frame and mti_of(frame) == "0400" and self._acknowledge_reversals:
            self._acknowledge_reversals -= 1
            return self._acknowledgement(frame, self.mak)
        if frame and mti_of(frame) == "0400" and self._forge_reversals:
            self._forge_reversals -= 1
            return self._acknowledgement(frame, None)
        answer = self.inner(frame, timeout_ms)
        if not answer:
            return answer
        mti = mti_of(answer)
        if mti == "0810":
            self._learn_keys(answer)
        change, times = self._tampers.get(mti, (None, 0))
        if change is not None and times > 0:
            self._tampers[mti] = (change, times - 1)
            self.tampered += 1
            return change(answer)
        return answer

    def _learn_keys(self, answer: bytes) -> None:
        (frame,) = FrameReader().feed(answer)
        response = decode_message(frame.body)
        if isinstance(response, SignOnResponse) and response.working_keys is not None:
            self.mak = unwrap_working_keys(MASTER_KEY, response.working_keys).mak

    def _acknowledgement(self, request_frame: bytes, mak: bytes | None) -> bytes:
        (frame,) = FrameReader().feed(request_frame)
        request = decode_message(frame.body)
        assert isinstance(request, ReversalRequest)
        response = TransactionResponse(
            request.KIND,
            request.terminal_id,
            request.merchant_id,
            request.stan,
            request.batch_no,
            "00",
            request.amount_fen,
            original_kind=request.original_kind,
        )
        body = encode_message(response, mak=mak)
        return encode_frame(Frame(frame.tpdu.reply(), frame.header, body))


@dataclass
class World:
    """One host, one terminal over a journal URL, joined by :class:`Link`."""

    journal_url: str
    clock: StepClock = field(default_factory=StepClock)
    store: HostStore = field(init=False)
    core: HostCore = field(init=False)
    link: Link = field(init=False)
    secrets: TerminalSecrets = field(init=False)
    terminal: Terminal = field(init=False)

    def __post_init__(self) -> None:
        self.store = HostStore.open("sqlite://", pan_key=b"k" * 32)
        self.store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
        self.core = HostCore(self.store, clock=self.clock, random_bytes=counting_bytes())
        self.link = Link(self.core)
        self.secrets = TerminalSecrets(MASTER_KEY, b"p" * 32)
        journal = Journal.open(self.journal_url)
        Terminal.initialize(
            journal,
            merchant_id=MERCHANT_ID,
            terminal_id=TERMINAL_ID,
            host_address="in-process",
            clock=self.clock,
        )
        self.terminal = self._terminal(journal)

    def _terminal(self, journal: Journal) -> Terminal:
        return Terminal(
            journal,
            self.secrets,
            clock=self.clock,
            exchange=self.link,
            random_bytes=counting_bytes(),
        )

    def restart(self) -> Terminal:
        """Kill the terminal process: drop engine and keys, reopen from the journal file."""
        self.terminal.journal.engine.dispose()
        self.terminal = self._terminal(Journal.open(self.journal_url))
        return self.terminal

    def reinstall(self, journal_url: str, *, batch_no: int = 1) -> Terminal:
        """The terminal software is reinstalled: a brand-new journal, counters from scratch."""
        self.terminal.journal.engine.dispose()
        self.journal_url = journal_url
        journal = Journal.open(journal_url)
        Terminal.initialize(
            journal,
            merchant_id=MERCHANT_ID,
            terminal_id=TERMINAL_ID,
            host_address="in-process",
            clock=self.clock,
            batch_no=batch_no,
        )
        self.terminal = self._terminal(journal)
        return self.terminal

    def faults(self, *rules: FaultRule) -> None:
        self.core.set_faults(FaultScript(list(rules)))

    def host_batches(self) -> list[object]:
        return list(self.store.batches(TERMINAL_ID))

    def host_transactions(self) -> list[object]:
        return list(self.store.transactions(TERMINAL_ID))
