"""What the terminal tests share: a real host core joined to a terminal engine in-process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from posbatch.host import FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.terminal import InProcessLink, Journal, Terminal, TerminalSecrets

MERCHANT_ID = "898110054110001"
TERMINAL_ID = "10000001"
MASTER_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN = TEST_PAN_APPROVED
START = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


class StepClock:
    """A clock that moves one second per reading (shared by host and terminal)."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def skip(self, days: int) -> None:
        self.now += timedelta(days=days)


def counting_bytes() -> Callable[[int], bytes]:
    state = {"n": 0}

    def random_bytes(size: int) -> bytes:
        state["n"] += 1
        return bytes((state["n"] * 37 + i) % 256 for i in range(size))

    return random_bytes


class Link:
    """The in-process link, with a switch to lose every answer (a dead network)."""

    def __init__(self, core: HostCore) -> None:
        self.inner = InProcessLink(core)
        self.down = False
        self.sent: list[bytes] = []

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        self.sent.append(frame)
        if self.down:
            return None
        return self.inner(frame, timeout_ms)


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
