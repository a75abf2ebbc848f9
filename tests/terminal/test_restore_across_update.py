"""A backup taken before a software update restores after it (found from outside: refused as
"not a posbatch journal backup", so a shop that updated could never use its backups).

The data in tests/terminal/data/before-t0003 was written by posbatch 07e2d54 (journal schema
t0002, host schema before v0006): a host, a terminal that made two sales, a backup
(before-update.db), then a third sale the backup does not hold.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from terminal_invariants import problems
from terminal_world import PAN, START, TERMINAL_ID, StepClock

from posbatch.batch.model import Kind
from posbatch.errors import ConfigError
from posbatch.host import HostCore
from posbatch.host.cli import open_store
from posbatch.storage import create_engine
from posbatch.terminal import (
    InProcessLink,
    check_restore,
    open_terminal,
    restore_journal,
    schema_head,
)
from posbatch.terminal._journal import schema_revision_of

BEFORE_UPDATE = Path(__file__).parent / "data" / "before-t0003"
OLD_SCHEMA = "t0002"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A private copy of the old shop (git keeps no file modes: 0700 / 0600 again)."""
    root = tmp_path / "shop"
    shutil.copytree(BEFORE_UPDATE, root)
    for path in root.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)
    root.chmod(0o700)
    return root


def _revision(path: Path) -> str | None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        return schema_revision_of(engine)
    finally:
        engine.dispose()


def test_the_fixture_is_from_before_the_update(shop: Path) -> None:
    """The backup really is at the old schema (else this file tests nothing)."""
    revision = _revision(shop / "before-update.db")
    assert (True, False) == (
        revision is not None and revision.startswith(OLD_SCHEMA),
        revision == schema_head(),
    )


def test_a_backup_from_before_the_update_restores_and_settles_balanced(shop: Path) -> None:
    """Update in place (the journal migrates), restore the older backup, settle: the host's
    three sales are settled (the one the backup lacks is uploaded as an exception), nothing
    lost or doubled, and the backup file itself is unchanged."""
    backup = shop / "before-update.db"
    digest = hashlib.sha256(backup.read_bytes()).hexdigest()
    clock = StepClock(START.replace(day=26))
    store = open_store(shop / "host")  # migrates the old host store
    core = HostCore(store, clock=clock)
    data_dir = shop / "terminal"
    open_terminal(data_dir, clock=clock, exchange=InProcessLink(core)).journal.engine.dispose()
    assert check_restore(backup, data_dir) is False  # the terminal's own key opens it

    report = restore_journal(backup, data_dir, clock=clock)
    terminal = open_terminal(data_dir, clock=clock, exchange=InProcessLink(core))
    result = terminal.settle()
    after = terminal.sale(100, PAN)

    host_only = {exc.stan for exc in store.exceptions(TERMINAL_ID)}
    sales = [row for row in terminal.journal.transactions() if row.kind == Kind.SALE]
    assert (12, (6,), 1) == (report.entries, report.missing_stans, report.missing_approvals)
    assert ("uploaded", {6}, True) == (result.close_reason, host_only, after.approved)
    assert 3 == len(sales)  # the two restored sales and the one after the restore
    assert [] == problems(terminal, store, TERMINAL_ID)
    assert schema_head() == _revision(data_dir / "journal.db")
    assert digest == hashlib.sha256(backup.read_bytes()).hexdigest()
    assert [] == sorted(p.name for p in data_dir.iterdir() if p.name.startswith(".restore-"))


def test_a_backup_that_cannot_be_migrated_is_refused_and_nothing_changes(shop: Path) -> None:
    """A journal whose tables the migrations cannot read: one line, the journal untouched."""
    backup = shop / "broken.db"
    shutil.copyfile(shop / "before-update.db", backup)
    engine = create_engine(f"sqlite:///{backup}")
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE terminal_state")  # the table t0003 alters
    engine.dispose()
    journal = shop / "terminal" / "journal.db"
    before = journal.read_bytes()
    with pytest.raises(ConfigError, match=r"older posbatch.*nothing was changed"):
        restore_journal(backup, shop / "terminal")
    assert before == journal.read_bytes()
    assert [] == [p.name for p in (shop / "terminal").iterdir() if p.name.startswith(".restore")]
