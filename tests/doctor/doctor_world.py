"""A real host core and a real terminal (journal file in a data directory), joined
in-process, for building each broken state through the engines themselves."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from posbatch.batch.model import Kind
from posbatch.doctor import Report, TerminalSite, examine
from posbatch.host import FaultAction, FaultRule, FaultScript, HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.terminal import JOURNAL_FILE_NAME, InProcessLink, Terminal, init_terminal
from testbed import MASTER_KEY, MERCHANT_ID, TERMINAL_ID, StepClock

PAN = TEST_PAN_APPROVED
START = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


class Link:
    """The in-process link: ``lose`` drops the next N requests of an MTI before the host
    sees them; ``down`` loses everything (a dead network)."""

    def __init__(self, core: HostCore) -> None:
        self.inner = InProcessLink(core)
        self.down = False
        self.lose: dict[str, int] = {}

    def __call__(self, frame: bytes, timeout_ms: int) -> bytes | None:
        mti = frame[13:15].hex()
        if self.down:
            return None
        if self.lose.get(mti, 0) > 0:
            self.lose[mti] -= 1
            return None
        return self.inner(frame, timeout_ms)


@dataclass
class World:
    """One host (store on SQLite or PostgreSQL) and one terminal in ``data_dir``."""

    db_url: str
    data_dir: Path
    clock: StepClock = field(default_factory=lambda: StepClock(START))
    terminal_offset: timedelta = timedelta(0)
    store: HostStore = field(init=False)
    core: HostCore = field(init=False)
    link: Link = field(init=False)
    site: TerminalSite = field(init=False)
    backups: list[Path] = field(default_factory=list)
    # What a TCP connect to the host gave (the CLI's probe); None: not tried (in-process).
    tcp: tuple[bool, int | None, str | None] | None = None
    # Other devices set up with this terminal's ID (second_device), closed with the world.
    others: list[TerminalSite] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = HostStore.open(self.db_url, pan_key=b"k" * 32)
        try:
            self.store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
            self.core = HostCore(self.store, clock=self.clock)
            self.link = Link(self.core)
            self._init()
            self.site = self._open()
        except BaseException:
            self.store.close()
            raise

    def terminal_clock(self) -> datetime:
        return self.clock() + self.terminal_offset

    def _init(self) -> None:
        init_terminal(
            self.data_dir,
            merchant_id=MERCHANT_ID,
            terminal_id=TERMINAL_ID,
            master_key=MASTER_KEY,
            host_address="in-process",
            clock=self.terminal_clock,
        )

    def _open(self) -> TerminalSite:
        return TerminalSite.open(
            self.data_dir, self.link, clock=self.terminal_clock, backups=tuple(self.backups)
        )

    @property
    def terminal(self) -> Terminal:
        return self.site.terminal

    def faults(self, *rules: FaultRule) -> None:
        self.core.set_faults(FaultScript(list(rules)))

    def drop_answer(self, kind: Kind, count: int = 1) -> None:
        """The host processes and commits, the answer is lost (fault script ``drop``)."""
        self.faults(FaultRule(FaultAction.DROP, kind=kind, count=count))

    def sales(self, count: int, amount_fen: int = 1000) -> None:
        for index in range(count):
            result = self.terminal.sale(amount_fen + index, PAN)
            assert result.approved, result

    def established(self, open_sales: int = 2) -> None:
        """Two settled days (host now at batch 000003), then ``open_sales`` in batch 3."""
        for _ in range(2):
            self.sales(2)
            assert self.terminal.settle().balanced
        self.sales(open_sales)

    def backup(self) -> Path:
        path = self.data_dir.parent / f"backup-{len(self.backups) + 1}.db"
        self.terminal.journal.backup(path)
        self.backups.append(path)
        self.site.backups = tuple(self.backups)
        return path

    def restart(self) -> None:
        """Power cycle: the engine and its keys are gone, the files stay."""
        self.site.close()
        self.site = self._open()

    def reinstall(self) -> None:
        """Reinstall the terminal software on an empty journal (the old one moved away)."""
        self.site.close()
        shutil.move(self.data_dir, self.data_dir.with_name(self.data_dir.name + "-old"))
        self._init()
        self.site = self._open()

    def examine(self, *, fix: bool = False, host_store: bool = True) -> Report:
        return examine(
            self.site, fix=fix, host_store=self.store if host_store else None, tcp=self.tcp
        )

    def copy_journal(self) -> Path:
        """A plain copy of the journal file (what a person makes by hand: no restore)."""
        path = self.data_dir.parent / f"copy-{len(list(self.data_dir.parent.iterdir()))}.db"
        self.terminal.journal.backup(path)
        return path

    def copy_back(self, copy: Path) -> None:
        """The copy put over the journal file by hand (the terminal restarts on it)."""
        self.site.close()
        journal_file = self.data_dir / JOURNAL_FILE_NAME
        for leftover in (journal_file.with_name(journal_file.name + s) for s in ("-wal", "-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(copy, journal_file)
        self.site = self._open()

    def second_device(self, *, cloned: bool) -> TerminalSite:
        """Another device set up with this terminal's ID, trading to the same host: a new
        install (its own empty journal), or ``cloned`` — this terminal's data directory
        copied onto it. The caller closes it."""
        other = self.data_dir.with_name(self.data_dir.name + "-second")
        if cloned:
            copy = self.copy_journal()
            shutil.copytree(self.data_dir, other)
            for leftover in other.glob(JOURNAL_FILE_NAME + "-*"):
                leftover.unlink()
            shutil.copyfile(copy, other / JOURNAL_FILE_NAME)
        else:
            init_terminal(
                other,
                merchant_id=MERCHANT_ID,
                terminal_id=TERMINAL_ID,
                master_key=MASTER_KEY,
                host_address="in-process",
                clock=self.terminal_clock,
            )
        site = TerminalSite.open(other, self.link, clock=self.terminal_clock)
        self.others.append(site)
        return site

    def close(self) -> None:
        for other in self.others:
            other.close()
        self.site.close()
        self.store.close()
