"""Backup → reinstall → restore → settle ends balanced with nothing lost (issue 11 §3), or
restore refuses with one line before changing anything; a failed init leaves nothing (§4)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import MASTER_KEY, MERCHANT_ID, PAN, START, TERMINAL_ID, StepClock

from posbatch.doctor import TerminalSite, account, examine
from posbatch.errors import ConfigError, StorageError
from posbatch.host import HostCore, HostStore
from posbatch.storage import create_engine
from posbatch.terminal import (
    JOURNAL_FILE_NAME,
    KEY_FILE_NAME,
    InProcessLink,
    Terminal,
    TerminalSecrets,
    backup_terminal,
    init_terminal,
    open_terminal,
    read_backup_key,
    restore_journal,
)

PASSPHRASE = "correct horse battery"
FAST_SCRYPT_N = 2**10  # the tests' backups: the KDF's cost is recorded in the file
STRANGER_UID = 65534  # nobody


@dataclass
class Shop:
    """A host and one terminal kept in a data directory, joined in-process."""

    root: Path
    clock: StepClock = field(default_factory=StepClock)
    store: HostStore = field(init=False)
    core: HostCore = field(init=False)
    terminal: Terminal = field(init=False)

    def __post_init__(self) -> None:
        self.store = HostStore.open("sqlite://", pan_key=b"k" * 32)
        self.store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
        self.core = HostCore(self.store, clock=self.clock)
        self.install(reinstall=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "terminal"

    def install(self, *, reinstall: bool) -> None:
        init_terminal(
            self.data_dir, merchant_id=MERCHANT_ID, terminal_id=TERMINAL_ID,
            master_key=MASTER_KEY, host_address="in-process", clock=self.clock,
            reinstall=reinstall,
        )  # fmt: skip
        self.open()

    def open(self) -> Terminal:
        self.terminal = open_terminal(
            self.data_dir, clock=self.clock, exchange=InProcessLink(self.core)
        )
        return self.terminal

    def close(self) -> None:
        self.terminal.journal.engine.dispose()

    def reinstall(self) -> None:
        """The data directory is lost (or wiped) and `terminal init --reinstall` runs again."""
        self.close()
        shutil.rmtree(self.data_dir)
        self.install(reinstall=True)

    def backup(self, name: str = "backup.db") -> Path:
        path = self.root / name
        backup_terminal(self.data_dir, path, passphrase=PASSPHRASE, scrypt_n=FAST_SCRYPT_N)
        return path

    def files(self) -> tuple[str, str]:
        """Digests of the journal and key files (to prove a refusal changed nothing)."""
        return tuple(  # type: ignore[return-value]
            hashlib.sha256((self.data_dir / name).read_bytes()).hexdigest()
            for name in (JOURNAL_FILE_NAME, KEY_FILE_NAME)
        )


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    built = Shop(tmp_path)
    yield built
    built.close()
    built.store.close()


def test_a_backup_is_private_and_carries_its_key_sealed(shop: Shop) -> None:
    """Mode 0600; the PAN key is inside only sealed (its bytes never appear in clear)."""
    shop.terminal.sale(100, PAN)
    path = shop.backup()
    secrets = TerminalSecrets.load(shop.data_dir / KEY_FILE_NAME)
    raw = path.read_bytes()
    engine = create_engine(f"sqlite:///{path}")
    key = read_backup_key(engine)
    engine.dispose()
    assert (0o600, True) == (stat.S_IMODE(path.stat().st_mode), key is not None)
    assert secrets.pan_key not in raw and secrets.pan_key.hex().encode() not in raw
    assert PAN.encode() not in raw


def test_backup_reinstall_restore_settle_ends_balanced_with_nothing_lost(shop: Shop) -> None:
    """Sales, a backup, more sales, the data directory lost, reinstall (new PAN key),
    restore with the passphrase: the terminal signs on, settles what the host holds
    (batch upload: the host's extra approvals become exceptions), and trades again."""
    for amount in (100, 200, 300):
        assert shop.terminal.sale(amount, PAN).approved
    backup = shop.backup()
    unseen = {shop.terminal.sale(amount, PAN).stan for amount in (400, 500)}
    old_key = TerminalSecrets.load(shop.data_dir / KEY_FILE_NAME).pan_key
    shop.reinstall()
    new_key = TerminalSecrets.load(shop.data_dir / KEY_FILE_NAME).pan_key
    shop.close()
    asked: list[str] = []
    report = restore_journal(
        backup, shop.data_dir, clock=shop.clock, passphrase=lambda: asked.append("x") or PASSPHRASE
    )
    terminal = shop.open()
    result = terminal.settle()
    after = terminal.sale(600, PAN)
    host_only = {exc.stan for exc in shop.store.exceptions(TERMINAL_ID)}
    assert (True, ["x"], True) == (report.key_restored, asked, old_key != new_key)
    assert ("uploaded", True) == (result.close_reason, after.approved)
    assert unseen == host_only
    assert [] == problems(terminal, shop.store, TERMINAL_ID)
    secrets = TerminalSecrets.load(shop.data_dir / KEY_FILE_NAME)
    assert (old_key, (new_key,)) == (secrets.pan_key, secrets.older_pan_keys)


def test_restore_after_reinstall_then_settle_balanced(shop: Shop) -> None:
    """Nothing after the backup: the restored terminal settles balanced at once."""
    shop.terminal.sale(100, PAN)
    shop.terminal.sale(250, PAN)
    backup = shop.backup()
    shop.reinstall()
    shop.close()
    restore_journal(backup, shop.data_dir, clock=shop.clock, passphrase=lambda: PASSPHRASE)
    terminal = shop.open()
    terminal.sign_on()
    settled = [batch for batch in terminal.journal.batches() if batch.close_reason]
    assert ["balanced"] == [batch.close_reason for batch in settled]
    assert [] == problems(terminal, shop.store, TERMINAL_ID)


@pytest.mark.parametrize(
    ("passphrase", "message"),
    [
        (lambda: "wrong passphrase!", "wrong passphrase"),
        (None, "its passphrase is needed"),
    ],
)
def test_restore_without_the_right_passphrase_changes_nothing(
    shop: Shop, passphrase: object, message: str
) -> None:
    """A wrong or missing passphrase: one line, and journal and key file are untouched."""
    shop.terminal.sale(100, PAN)
    backup = shop.backup()
    shop.reinstall()
    shop.terminal.sale(700, PAN)
    shop.close()
    before = shop.files()
    with pytest.raises(ConfigError, match=message) as refused:
        restore_journal(backup, shop.data_dir, passphrase=passphrase)  # type: ignore[arg-type]
    assert (before, 1) == (shop.files(), len(str(refused.value).splitlines()))
    assert shop.open().sale(800, PAN).approved  # the reinstalled terminal trades on


def test_a_plain_copy_cannot_be_restored_after_a_reinstall(shop: Shop) -> None:
    """A journal copy without its key (taken with the engine's raw copy) is refused on a
    reinstalled terminal, before anything changes — never restored into a brick."""
    shop.terminal.sale(100, PAN)
    copy = shop.root / "copy.db"
    shop.terminal.journal.backup(copy)
    shop.reinstall()
    shop.close()
    before = shop.files()
    with pytest.raises(ConfigError, match="carries no key of its own"):
        restore_journal(copy, shop.data_dir, passphrase=lambda: PASSPHRASE)
    assert before == shop.files()


def test_a_backup_of_another_terminal_is_refused(shop: Shop, tmp_path: Path) -> None:
    """Restoring terminal 10000002's backup over 10000001 is refused, nothing changed."""
    other = tmp_path / "other"
    init_terminal(
        other, merchant_id=MERCHANT_ID, terminal_id="10000002", master_key=MASTER_KEY,
        host_address="in-process", clock=StepClock(),
    )  # fmt: skip
    backup = tmp_path / "other.db"
    backup_terminal(other, backup, passphrase=PASSPHRASE, scrypt_n=FAST_SCRYPT_N)
    shop.close()
    before = shop.files()
    with pytest.raises(ConfigError, match="of terminal 10000002"):
        restore_journal(backup, shop.data_dir, passphrase=lambda: PASSPHRASE)
    assert before == shop.files()


def test_restore_on_the_same_installation_asks_nothing(shop: Shop) -> None:
    """The key file opens the backup already: no passphrase is asked, the keys stay."""
    shop.terminal.sale(100, PAN)
    backup = shop.backup()
    shop.terminal.sale(200, PAN)
    shop.close()
    key_before = (shop.data_dir / KEY_FILE_NAME).read_bytes()

    def never() -> str:
        raise AssertionError("the passphrase was asked")

    report = restore_journal(backup, shop.data_dir, passphrase=never)
    assert (False, key_before) == (
        report.key_restored,
        (shop.data_dir / KEY_FILE_NAME).read_bytes(),
    )


def test_a_crash_between_the_key_file_and_the_journal_loses_nothing(shop: Shop) -> None:
    """The key file is written first and keeps the terminal's own key: if the process dies
    before the journal is replaced, the reinstalled journal still opens and trades."""
    shop.terminal.sale(100, PAN)
    backup_secrets = TerminalSecrets.load(shop.data_dir / KEY_FILE_NAME)
    shop.reinstall()
    sale = shop.terminal.sale(300, PAN)
    mine = TerminalSecrets.load(shop.data_dir / KEY_FILE_NAME)
    shop.close()
    mine.with_pan_keys((backup_secrets.pan_key,)).replace_file(shop.data_dir / KEY_FILE_NAME)
    terminal = shop.open()
    row = terminal.journal.transaction(sale.txn_id)
    assert (PAN, True) == (terminal.pan_of(row), terminal.sale(400, PAN).approved)


def test_a_pan_that_opens_with_no_key_is_a_storage_error() -> None:
    """(the engine's read of a sealed PAN) a key list without the sealing key fails loudly."""
    sealing = TerminalSecrets(MASTER_KEY, b"a" * 32)
    sealed = sealing.seal_pan(PAN, TERMINAL_ID)
    other = TerminalSecrets(MASTER_KEY, b"b" * 32, (b"c" * 32,))
    with pytest.raises(StorageError):
        other.open_pan(sealed, TERMINAL_ID)
    assert PAN == other.with_pan_keys((b"a" * 32,)).open_pan(sealed, TERMINAL_ID)


@pytest.mark.parametrize("passphrase", ["short", "x" * 1025])
def test_a_backup_passphrase_has_8_to_1024_characters(shop: Shop, passphrase: str) -> None:
    """Too short or too long: refused, and no backup file is left."""
    with pytest.raises(ConfigError, match="8 to 1024"):
        backup_terminal(shop.data_dir, shop.root / "b.db", passphrase=passphrase)
    assert not (shop.root / "b.db").exists()


def test_doctor_restores_a_backup_taken_before_a_reinstall(shop: Shop) -> None:
    """doctor --backup b.db --fix --yes after a reinstall: restore (the passphrase asked
    once), sign on, settle — ends healthy, every approval on the host."""
    for amount in (100, 200):
        shop.terminal.sale(amount, PAN)
    shop.terminal.settle()
    shop.terminal.sale(300, PAN)
    backup = shop.backup()
    shop.reinstall()
    shop.close()
    asked: list[int] = []
    site = TerminalSite.open(
        shop.data_dir, InProcessLink(shop.core), clock=shop.clock, backups=(backup,),
        backup_passphrase=lambda: asked.append(1) or PASSPHRASE,
    )  # fmt: skip
    report = examine(site, fix=True, host_store=shop.store, echo_count=0)
    terminal = site.terminal
    assert 1 == len(asked)
    assert report.after is not None and not report.after.failed, report.after
    assert [] == problems(terminal, shop.store, TERMINAL_ID)
    assert terminal.sale(400, PAN).approved
    site.close()


def test_doctor_refuses_to_restore_without_the_passphrase(shop: Shop) -> None:
    """No passphrase to give: the restore step fails with one line, the journal untouched."""
    shop.terminal.sale(100, PAN)
    backup = shop.backup()
    shop.reinstall()
    shop.close()
    before = shop.files()
    site = TerminalSite.open(
        shop.data_dir, InProcessLink(shop.core), clock=shop.clock, backups=(backup,)
    )
    report = examine(site, fix=True, host_store=shop.store, echo_count=0)
    site.close()
    failed = [result for result in report.repairs_done if result.status.value == "failed"]
    assert 1 == len(failed)
    assert "passphrase" in failed[0].lines[0].en
    assert before[1] == shop.files()[1]
    shop.open()


def test_init_failing_after_the_journal_was_created_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If writing the key file fails (disk full), the journal made a moment before goes too:
    the next init starts clean."""
    data_dir = tmp_path / "terminal"

    def disk_full(self: TerminalSecrets, path: Path) -> None:
        raise StorageError("disk full")

    arguments = {
        "merchant_id": MERCHANT_ID, "terminal_id": TERMINAL_ID, "master_key": MASTER_KEY,
        "host_address": "in-process", "clock": StepClock(),
    }  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(TerminalSecrets, "save", disk_full)
        with pytest.raises(StorageError):
            init_terminal(data_dir, **arguments)  # type: ignore[arg-type]
    gone = not data_dir.exists()
    init_terminal(data_dir, **arguments)  # type: ignore[arg-type]
    assert (True, True) == (gone, (data_dir / JOURNAL_FILE_NAME).is_file())


def test_a_backup_older_than_a_settled_batch_is_reconciled_on_record(shop: Shop) -> None:
    """Backup mid-batch, one more sale, the batch settled; reinstall, restore: the restored
    journal settles that batch again with fewer sales — the host keeps what it settled and
    records the difference (found by the simulator, seed 49)."""
    shop.terminal.sale(100, PAN)
    backup = shop.backup()
    shop.terminal.sale(200, PAN)
    assert shop.terminal.settle().balanced
    shop.reinstall()
    shop.close()
    restore_journal(backup, shop.data_dir, clock=shop.clock, passphrase=lambda: PASSPHRASE)
    terminal = shop.open()
    terminal.sign_on()
    kinds = {exc.kind for exc in shop.store.exceptions(TERMINAL_ID)}
    assert "settled-again-differs" in kinds
    # every approval of the journal is on the host; the host's extra one is in a batch it
    # settled (balanced), with the difference on record
    assert [] == list(account(shop.store, TERMINAL_ID, terminal.journal).problems)
    assert terminal.sale(300, PAN).approved


def _listing(root: Path) -> list[tuple[str, int, int, int, str]]:
    """Every file under ``root``: name, size, owner, mode and digest (to prove nothing moved)."""
    return sorted(
        (
            str(p),
            p.stat().st_size,
            p.stat().st_uid,
            stat.S_IMODE(p.stat().st_mode),
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "",
        )
        for p in [root, *root.rglob("*")]
    )


@pytest.mark.parametrize(
    ("loosen", "says"),
    [
        (lambda d: d.chmod(0o755), r"is open to other users \(mode 755\)"),
        (lambda d: (d / JOURNAL_FILE_NAME).chmod(0o644), r"is open to other users \(mode 644\)"),
    ],
    ids=["directory 0755", "journal 0644"],
)
def test_restore_and_backup_refuse_a_terminal_others_can_read_and_change_nothing(
    shop: Shop, loosen: object, says: str
) -> None:
    """`terminal restore` into a directory of mode 0755 went ahead, and over a journal of
    mode 0644 left the restored journal (card numbers, sealed) readable by every user;
    `terminal backup` copied such a journal. Both now refuse, as every other command does,
    with the chmod — before asking the passphrase or writing anything."""
    shop.terminal.sale(100, PAN)
    backup = shop.backup()
    shop.reinstall()
    shop.close()
    loosen(shop.data_dir)  # type: ignore[operator]
    before = _listing(shop.data_dir)
    asked: list[str] = []
    with pytest.raises(ConfigError, match=says):
        restore_journal(backup, shop.data_dir, passphrase=lambda: asked.append("?") or PASSPHRASE)
    with pytest.raises(ConfigError, match=says):
        backup_terminal(shop.data_dir, shop.root / "b2.db", passphrase=PASSPHRASE)
    assert (before, asked) == (_listing(shop.data_dir), [])
    assert not (shop.root / "b2.db").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another user")
def test_restore_refuses_another_users_terminal_and_changes_nothing(shop: Shop) -> None:
    """As root, `terminal restore` into another user's terminal directory went ahead and
    rewrote that user's key file as root's (0600): its owner could no longer open its own
    terminal. It is refused, naming the owner, with nothing changed."""
    shop.terminal.sale(100, PAN)
    backup = shop.backup()
    shop.reinstall()
    shop.close()
    for path in [shop.data_dir, *shop.data_dir.iterdir()]:
        os.chown(path, STRANGER_UID, STRANGER_UID)
    before = _listing(shop.data_dir)
    with pytest.raises(ConfigError, match="belongs to another user"):
        restore_journal(backup, shop.data_dir, passphrase=lambda: PASSPHRASE)
    assert before == _listing(shop.data_dir)
