"""The kill probe (killprobe.py) as tests: SIGKILL at random, real processes, real sockets.

Each round prints its seed; ``POSBATCH_KILLPROBE_SEED`` runs a given one again (the kill
schedule is the same, the instants it lands on are the operating system's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from killprobe import ProbeConfig, ProbeResult, check, run_round

from posbatch.host.cli import DB_FILE_NAME, kek, pan_key
from posbatch.host.store import HostStore

SEED_ENV = "POSBATCH_KILLPROBE_SEED"
TRADING_S = 12.0  # a round is about 35-45 s on a loaded 2-core machine


def _seed(default: int) -> int:
    return int(os.environ.get(SEED_ENV, default))


def _round(tmp_path: Path, config: ProbeConfig) -> ProbeResult:
    result = run_round(config, tmp_path)
    print(result.summary())  # the seed, the kills, what the journals had to recover
    for line in result.notes:
        print(f"  {line}")
    return result


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_on_sqlite_loses_and_doubles_nothing(tmp_path: Path, workers: int) -> None:
    """Host, workers, terminals and the cashier's CLI SIGKILLed at random, older journal
    copies put back (uploads follow): every approval is in the host's store once, in a
    closed batch, totals equal (or the difference named by exception records, after a
    put-back), doctor says healthy."""
    config = ProbeConfig(seed=_seed(20261207 + workers), workers=workers, trading_s=TRADING_S)
    result = _round(tmp_path, config)
    assert result.violations == []
    assert result.approvals > 0
    assert sum(result.kills.values()) > 0


@pytest.mark.slow
def test_sigkill_on_postgresql_loses_and_doubles_nothing(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    """The same round with two workers over PostgreSQL."""
    config = ProbeConfig(
        seed=_seed(20261210),
        workers=2,
        database_url=postgres_schema_url,
        trading_s=TRADING_S,
    )
    result = _round(tmp_path, config)
    assert result.violations == []
    assert result.approvals > 0


@pytest.mark.slow
def test_sigkill_mid_upload_after_an_older_journal_is_put_back(tmp_path: Path) -> None:
    """Every step puts back an older copy of a trading till's journal: its settlement is out
    of balance and uploads, and a kill is aimed at the upload. The host's records stand; what
    the copy lacks is named by exception records; nothing else differs."""
    config = ProbeConfig(seed=_seed(20261208), terminals=1, trading_s=6.0, put_back_share=1.0)
    result = _round(tmp_path, config)
    assert result.violations == []
    assert result.put_backs > 0
    assert result.uploads > 0


@pytest.mark.slow
def test_the_probe_sees_an_approval_the_host_lost(tmp_path: Path) -> None:
    """The check is not blind: a round's host row moved to another STAN is an approval
    the host lost and a transaction no journal knows of."""
    config = ProbeConfig(seed=_seed(20261211), terminals=1, trading_s=6.0, put_back_share=0.0)
    assert _round(tmp_path, config).violations == []
    url = f"sqlite:///{tmp_path / 'host' / DB_FILE_NAME}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        moved = connection.execute(
            sa.text(
                "SELECT transaction_id, stan FROM host_transactions "
                "WHERE kind = 'sale' AND status = 'approved' ORDER BY transaction_id LIMIT 1"
            )
        ).one()
        connection.execute(
            sa.text("UPDATE host_transactions SET stan = 999999 WHERE transaction_id = :id"),
            {"id": moved.transaction_id},
        )
    engine.dispose()
    store = HostStore.open(url, pan_key=pan_key(tmp_path / "host"), kek=kek(tmp_path / "host"))
    result = ProbeResult(config.seed)
    try:
        check(store, [tmp_path / "terminal-30000000"], result)
    finally:
        store.close()
    lost = [v for v in result.violations if f", {moved.stan}): 0 host rows" in v]
    phantom = [v for v in result.violations if "999999" in v and "journal lacks it" in v]
    assert (len(lost), len(phantom)) == (1, 1), result.violations
