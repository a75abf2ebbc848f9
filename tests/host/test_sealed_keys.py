"""Keys sealed at rest: TMK, MAK and PIK under the KEK, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from host_helpers import (
    MASTER_KEY,
    MERCHANT_ID,
    START,
    TERMINAL_ID,
    TEST_KEK,
    new_core,
    open_store,
    session_terminal,
)

from posbatch.errors import ConfigError, KekMismatch, StorageError
from posbatch.host import HostStore, sealing
from posbatch.host.sealing import (
    KeyEncryptionKey,
    KeyKind,
    commit_rotation,
    read_kek_file,
    stage_rotation,
)
from posbatch.host.store import MIGRATIONS, VERSION_TABLE
from posbatch.storage import create_engine, write_private_file
from posbatch.wire import TransactionResponse

OTHER_KEK = KeyEncryptionKey(b"\x42" * 32, "another KEK")
SRC = Path(__file__).resolve().parents[2] / "src"


def _raw_keys(store: HostStore, terminal_id: str = TERMINAL_ID) -> tuple[bytes, ...]:
    """The key columns exactly as the database holds them."""
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT master_key, mak, pik FROM host_terminals WHERE terminal_id = :t"),
            {"t": terminal_id},
        ).one()
    return tuple(b"" if value is None else bytes(value) for value in row)


def _signed_on(store: HostStore) -> bytes:
    """Sign the test terminal on; its MAK as the terminal holds it."""
    term = session_terminal(new_core(store))
    assert term.sign_on().response_code == "00"
    assert term.mak is not None
    return term.mak


def _raw_pending_keys(store: HostStore) -> bytes:
    with store.engine.connect() as connection:
        value = connection.execute(
            sa.text("SELECT pending_keys FROM host_terminals WHERE terminal_id = :t"),
            {"t": TERMINAL_ID},
        ).scalar_one()
    return b"" if value is None else bytes(value)


def test_no_key_is_in_the_database_in_clear(db_url: str) -> None:
    """After sign-on the TMK and the sign-on's keys (pending until used), after the first
    sale the MAK and PIK in force: in the database only sealed, none in clear."""
    store = open_store(db_url)
    term = session_terminal(new_core(store))
    assert term.sign_on().response_code == "00" and term.mak is not None
    pending = _raw_pending_keys(store)
    assert isinstance(term.sale(100), TransactionResponse)
    master_key, sealed_mak, sealed_pik = _raw_keys(store)
    pending_after = _raw_pending_keys(store)
    store.close()
    assert MASTER_KEY not in master_key and term.mak not in sealed_mak + pending
    assert (len(master_key), len(pending), len(sealed_mak), len(sealed_pik)) == (53, 61, 45, 53)
    assert b"" == pending_after  # the sale brought them into force


def test_a_sale_after_sign_on_is_approved_with_sealed_keys(db_url: str) -> None:
    """The host opens the MAK it sealed: a MACed sale is approved."""
    store = open_store(db_url)
    term = session_terminal(new_core(store))
    term.sign_on()
    answer = term.sale(1250)
    store.close()
    assert isinstance(answer, TransactionResponse) and answer.response_code == "00"


def test_a_sealed_key_moved_to_another_row_does_not_open(db_url: str) -> None:
    """The terminal id is associated data: another terminal's sealed TMK is refused."""
    store = open_store(db_url, terminals=(TERMINAL_ID, "10000002"))
    _refused_with_master_key(store, _raw_keys(store, "10000002")[0])
    store.close()


def _refused_with_master_key(store: HostStore, sealed: bytes) -> None:
    """Put ``sealed`` in the terminal's TMK column: reading the terminal is refused."""
    with store.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE host_terminals SET master_key = :k WHERE terminal_id = :t"),
            {"k": sealed, "t": TERMINAL_ID},
        )
    with pytest.raises(StorageError, match="altered or moved"), store.transaction() as tx:
        tx.terminal(TERMINAL_ID)


def test_keys_opened_before_do_not_let_a_moved_or_altered_key_open(db_url: str) -> None:
    """The store remembers keys it opened (by their exact bytes, kind and terminal): a
    value moved from a row it already read, or altered, is still refused."""
    store = open_store(db_url, terminals=(TERMINAL_ID, "10000002"))
    with store.transaction() as tx:  # both rows opened once, so remembered
        tx.terminal(TERMINAL_ID)
        tx.terminal("10000002")
    foreign = _raw_keys(store, "10000002")[0]
    mine = bytes(_raw_keys(store, TERMINAL_ID)[0])
    altered = mine[:-1] + bytes([mine[-1] ^ 1])
    for value in (foreign, altered):
        _refused_with_master_key(store, value)
    store.close()


def test_a_sealed_pik_in_the_tmk_column_does_not_open() -> None:
    """The kind of key is associated data too: a PIK cannot stand in for the TMK."""
    sealed_pik = TEST_KEK.seal(MASTER_KEY, kind=KeyKind.PIK, terminal_id=TERMINAL_ID)
    with pytest.raises(StorageError, match="altered or moved"):
        TEST_KEK.open(sealed_pik, kind=KeyKind.TMK, terminal_id=TERMINAL_ID)


def test_a_store_opened_with_the_wrong_kek_is_refused_in_one_line(db_url: str) -> None:
    """Another KEK than the store's: KekMismatch at open, naming both KEK ids, one line."""
    open_store(db_url).close()
    with pytest.raises(KekMismatch) as error:
        HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK)
    message = str(error.value)
    assert (TEST_KEK.kek_id in message, OTHER_KEK.kek_id in message, "\n" in message) == (
        True,
        True,
        False,
    )


def test_the_kek_is_never_printed() -> None:
    """repr of a KEK shows its id and source, not the key."""
    assert TEST_KEK.key.hex() not in repr(TEST_KEK).lower()


# --- the migration of a store made before sealing ---------------------------------------


def _old_store_with_clear_keys(url: str) -> bytes:
    """A store at the first migration (no sealing) with a signed-on terminal: its clear MAK."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["version_table"] = VERSION_TABLE
    mak = bytes.fromhex("0123456789ABCDEF")
    pik = bytes(range(16))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "host0001")
        connection.execute(
            sa.text(
                "INSERT INTO host_terminals (terminal_id, merchant_id, master_key, status, "
                "signed_on, mak, pik, last_stan, created_at) "
                "VALUES (:t, :m, :k, 'active', :on, :mak, :pik, 1, :now)"
            ),
            {"t": TERMINAL_ID, "m": MERCHANT_ID, "k": MASTER_KEY, "on": True, "mak": mak,
             "pik": pik, "now": START.replace(tzinfo=None)},
        )  # fmt: skip
        batch_id = connection.execute(
            sa.text(
                "INSERT INTO host_batches (terminal_id, batch_no, state, opened_at) "
                "VALUES (:t, 1, 'OPEN', :now) RETURNING batch_id"
            ),
            {"t": TERMINAL_ID, "now": START.replace(tzinfo=None)},
        ).scalar_one()
        connection.execute(
            sa.text("UPDATE host_terminals SET current_batch_id = :b"), {"b": batch_id}
        )
    engine.dispose()
    return mak


def test_a_store_with_clear_keys_is_sealed_by_the_migration_and_works(db_url: str) -> None:
    """An old store's clear keys are sealed on open; its signed-on terminal trades on."""
    mak = _old_store_with_clear_keys(db_url)
    store = HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK)
    term = session_terminal(new_core(store), mak=mak, stan=1)
    answer = term.sale(1250)
    master_key, sealed_mak, _sealed_pik = _raw_keys(store)
    again = session_terminal(new_core(store), stan=2)
    signed_on = again.sign_on()  # the TMK opened: field 62 unwraps with the clear TMK
    store.close()
    assert isinstance(answer, TransactionResponse) and answer.response_code == "00"
    assert (MASTER_KEY in master_key, mak in sealed_mak, len(master_key)) == (False, False, 53)
    assert signed_on.response_code == "00"


def test_a_downgrade_below_sealing_gives_the_clear_keys_back(db_url: str) -> None:
    """Migration host_sec_keys_cli undone (with the KEK): the keys are clear again, and
    sealing them anew on the next open works."""
    store = open_store(db_url)
    term = session_terminal(new_core(store))
    assert term.sign_on().response_code == "00"
    assert term.sale(1_000).response_code == "00"  # the sign-on's keys are now the ones in force
    mak = term.mak
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes.update(version_table=VERSION_TABLE, host_kek=TEST_KEK)
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "host0001")
    clear = _raw_keys(store)
    store.close()
    again = HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK)
    sealed = _raw_keys(again)
    again.close()
    assert (clear[0], clear[1]) == (MASTER_KEY, mak)
    assert MASTER_KEY not in sealed[0] and len(sealed[0]) == 53


def test_a_store_with_clear_keys_is_not_migrated_without_its_kek(db_url: str) -> None:
    """Sealing needs the KEK: without one the migration refuses and changes nothing."""
    _old_store_with_clear_keys(db_url)
    with pytest.raises(ConfigError, match="needs its KEK"):
        HostStore.open(db_url, pan_key=b"k" * 32)
    store = HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK)  # still migratable
    store.close()


# --- rotation -----------------------------------------------------------------------------


def test_rotation_reseals_every_key_under_the_new_kek(db_url: str) -> None:
    """After rotate_kek the new KEK opens the store and trades; the old one is refused."""
    store = open_store(db_url, terminals=(TERMINAL_ID, "10000002", "10000003"))
    term = session_terminal(new_core(store))
    term.sign_on()
    count = store.rotate_kek(OTHER_KEK)
    headers = {  # every key of every terminal, signed on (TMK, MAK, PIK) or not (TMK)
        key[:9]
        for terminal_id in (TERMINAL_ID, "10000002", "10000003")
        for key in _raw_keys(store, terminal_id)
        if key
    }
    answer = term.sale(1250)  # the same store object seals and opens under the new KEK now
    store.close()
    assert headers == {b"\x01" + bytes.fromhex(OTHER_KEK.kek_id)}
    with pytest.raises(KekMismatch):
        HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK)
    reopened = HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK)
    again = session_terminal(new_core(reopened), mak=term.mak, stan=term.stan)
    later = again.sale(300)
    reopened.close()
    assert count == 3
    assert isinstance(answer, TransactionResponse) and answer.response_code == "00"
    assert isinstance(later, TransactionResponse) and later.response_code == "00"


def test_a_failure_in_the_middle_of_a_rotation_leaves_the_old_kek_working(db_url: str) -> None:
    """A rotation that fails after re-sealing some keys changes nothing: one transaction."""
    store = open_store(db_url, terminals=(TERMINAL_ID, "10000002", "10000003"))
    before = [_raw_keys(store, terminal_id) for terminal_id in (TERMINAL_ID, "10000002")]

    def crash_after_two(done: int) -> None:
        if done == 2:
            raise KeyboardInterrupt  # what a Ctrl-C, or any failure, does mid-way

    with pytest.raises(KeyboardInterrupt):
        store.rotate_kek(OTHER_KEK, progress=crash_after_two)
    after = [_raw_keys(store, terminal_id) for terminal_id in (TERMINAL_ID, "10000002")]
    term = session_terminal(new_core(store))
    code = term.sign_on().response_code
    store.close()
    with pytest.raises(KekMismatch):
        HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK)
    assert (after == before, code, store.kek_id) == (True, "00", TEST_KEK.kek_id)


KILLED_ROTATION = """
import os, signal, sys
from posbatch.host import HostStore
from posbatch.host.sealing import KeyEncryptionKey
store = HostStore.open(sys.argv[1], pan_key=b"k" * 32, kek=KeyEncryptionKey(bytes(range(32))))
def die(done):
    if done == 2:
        os.kill(os.getpid(), signal.SIGKILL)
store.rotate_kek(KeyEncryptionKey(b"\\x42" * 32), progress=die)
"""


def test_a_rotation_killed_mid_transaction_leaves_the_old_kek_working(db_url: str) -> None:
    """SIGKILL of the rotating process after two of three terminals: the old KEK opens all."""
    open_store(db_url, terminals=(TERMINAL_ID, "10000002", "10000003")).close()
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_ROTATION), db_url],
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        capture_output=True,
        check=False,
    )
    store = HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK)
    codes = [
        session_terminal(new_core(store), terminal_id=terminal_id).sign_on().response_code
        for terminal_id in (TERMINAL_ID, "10000002", "10000003")
    ]
    store.close()
    assert (process.returncode, codes) == (-signal.SIGKILL, ["00", "00", "00"])


def test_a_host_left_running_with_the_old_kek_seals_nothing_after_a_rotation(
    db_url: str,
) -> None:
    """A second process still on the old KEK cannot sign a terminal on: no key is sealed
    under a KEK the store has left (it is refused; the terminal gets no keys)."""
    stale = open_store(db_url)
    rotating = HostStore.open(db_url, pan_key=b"k" * 32, kek=TEST_KEK)
    rotating.rotate_kek(OTHER_KEK)
    rotating.close()
    with pytest.raises(KekMismatch), stale.transaction() as tx:
        tx.update_terminal(TERMINAL_ID, mak=b"\x01" * 8, pik=b"\x02" * 16)
    stale.close()
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK) as store:
        term = session_terminal(new_core(store))
        assert term.sign_on().response_code == "00"


# --- a serving host follows a rotation from its KEK file --------------------------------


def _kek_file(tmp_path: Path, kek: KeyEncryptionKey = TEST_KEK) -> KeyEncryptionKey:
    """``kek`` written to a private KEK file, and read back as a host reads it."""
    path = tmp_path / "host-kek.key"
    write_private_file(path, kek.hex() + "\n", exclusive=False)
    return read_kek_file(path)


def _rotate(db_url: str, kek: KeyEncryptionKey, *, finish: bool = True) -> None:
    """What ``posbatch host rotate-kek`` does, in another store (another process's):
    stage the new KEK beside the file, re-seal in one transaction, rename (``finish``)."""
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=kek) as rotating:
        stage_rotation(kek, OTHER_KEK)
        rotating.rotate_kek(OTHER_KEK)
        if finish:
            commit_rotation(kek)


@pytest.mark.parametrize("finish", [True, False], ids=["renamed", "still-staged"])
def test_a_serving_host_follows_a_rotation_from_its_kek_file(
    db_url: str, tmp_path: Path, finish: bool
) -> None:
    """rotate-kek against a live host: the host's next request meets keys sealed under
    the new KEK, reads it from its KEK file (or the staged .next, before the rename) and
    goes on — sales, a sign-on (keys sealed anew) and a new terminal, all under the new KEK."""
    kek = _kek_file(tmp_path)
    serving = HostStore.open(db_url, pan_key=b"k" * 32, kek=kek)
    serving.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    term = session_terminal(new_core(serving))
    assert term.sign_on().response_code == "00"
    _rotate(db_url, kek, finish=finish)
    sale = term.sale(1250)
    again = term.sign_on()
    serving.add_terminal(MERCHANT_ID, "10000002", MASTER_KEY, now=START)
    serving.close()
    assert isinstance(sale, TransactionResponse) and sale.response_code == "00"
    assert (again.response_code, serving.kek_id, serving.kek.path) == (
        "00",
        OTHER_KEK.kek_id,
        kek.path,
    )
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK) as store:  # all sealed anew
        codes = [
            session_terminal(new_core(store), terminal_id=terminal_id).sign_on().response_code
            for terminal_id in (TERMINAL_ID, "10000002")
        ]
    assert codes == ["00", "00"]


def test_a_host_whose_kek_file_does_not_hold_the_new_kek_is_refused_and_looks_once_a_second(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation whose new KEK went elsewhere (--new-kek-file, another machine): the host
    is refused as before (KekMismatch, nothing sealed), and does not read its files for
    every request of the second after it looked."""
    kek = _kek_file(tmp_path)
    serving = HostStore.open(db_url, pan_key=b"k" * 32, kek=kek)
    serving.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=kek) as rotating:
        rotating.rotate_kek(OTHER_KEK)  # nothing staged beside this host's file
    looks: list[str] = []
    follow = sealing.follow_rotation

    def counted(kek: KeyEncryptionKey, store_kek_id: str) -> KeyEncryptionKey | None:
        looks.append(store_kek_id)
        return follow(kek, store_kek_id)

    monkeypatch.setattr(sealing, "follow_rotation", counted)
    refused = 0
    for _ in range(3):
        with pytest.raises(KekMismatch), serving.transaction() as tx:
            tx.update_terminal(TERMINAL_ID, mak=b"\x01" * 8, pik=b"\x02" * 16)
        refused += 1
    serving.close()
    assert (refused, looks, serving.kek_id) == (3, [OTHER_KEK.kek_id], TEST_KEK.kek_id)


def test_a_terminal_added_first_after_a_rotation_is_sealed_under_the_new_kek(
    db_url: str, tmp_path: Path
) -> None:
    """The first unit of work after a rotation seals (a new terminal, a sign-on's keys):
    it follows the rotation before it seals, so nothing is written under the old KEK."""
    kek = _kek_file(tmp_path)
    serving = HostStore.open(db_url, pan_key=b"k" * 32, kek=kek)
    _rotate(db_url, kek)
    serving.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=START)
    serving.close()
    with HostStore.open(db_url, pan_key=b"k" * 32, kek=OTHER_KEK) as store:
        assert session_terminal(new_core(store)).sign_on().response_code == "00"
