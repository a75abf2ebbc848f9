"""The support bundle: readable back, and free of card numbers and keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from doctor_samples import NOW, evidence
from doctor_world import MASTER_KEY, MERCHANT_ID, PAN, World
from hypothesis import given
from hypothesis import strategies as st

from posbatch.doctor import Report, diagnose, read_bundle, scrub, write_bundle
from posbatch.doctor._codec import from_json, to_json
from posbatch.errors import ConfigError
from posbatch.terminal import KEY_FILE_NAME, TerminalSecrets


def _report() -> Report:
    sample = evidence()
    return Report(NOW, "terminal", sample, diagnose(sample))


def test_report_round_trips_through_json() -> None:
    """A report written as JSON and read back is the same report."""
    report = _report()
    assert report == from_json(Report, json.loads(json.dumps(to_json(report))))


def test_bundle_is_read_back(tmp_path: Path) -> None:
    """``--read`` of a written bundle gives the report that was written."""
    report = _report()
    path, _summary = write_bundle(report, tmp_path / "support.json")
    assert report == read_bundle(path)


def test_bundle_has_a_text_summary(tmp_path: Path) -> None:
    """The bundle comes with a plain-text summary a service desk can open anywhere."""
    _path, summary = write_bundle(_report(), tmp_path / "support.json")
    assert "diagnosis" in summary.read_text(encoding="utf-8")


def test_bundle_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Both files are 0600, also when an older bundle of looser mode was there (were 0644)."""
    older = tmp_path / "support.json"
    older.write_text("{}", encoding="utf-8")
    older.chmod(0o644)
    path, summary = write_bundle(_report(), older)
    assert [0o600, 0o600] == [stat.S_IMODE(p.stat().st_mode) for p in (path, summary)]


def test_a_bundle_in_a_missing_directory_is_refused_and_makes_none(tmp_path: Path) -> None:
    """``--bundle typo/support.json``: refused as every export is, the directory not made
    (it was made, 0700, where a typo sent it)."""
    with pytest.raises(ConfigError, match=r"typo does not exist"):
        write_bundle(_report(), tmp_path / "typo" / "support.json")
    assert list(tmp_path.iterdir()) == []


def test_a_bundle_named_as_a_directory_is_refused(tmp_path: Path) -> None:
    """A directory given as the bundle's file is one error line, not IsADirectoryError."""
    with pytest.raises(ConfigError, match=r"it is a directory"):
        write_bundle(_report(), tmp_path)


def test_reading_something_else_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not a bundle is refused with a clear error, not a traceback."""
    path = tmp_path / "other.json"
    path.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a posbatch-doctor-bundle"):
        read_bundle(path)


@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_scrub_masks_every_card_number_length(pan: str) -> None:
    """Any run of 13–19 digits is masked to first 6 / last 4."""
    assert pan not in scrub(f"card {pan} paid")


def test_scrub_keeps_the_merchant_id() -> None:
    """The 15-digit merchant ID is an allowed identifier, not a card number."""
    assert MERCHANT_ID in scrub(f"merchant {MERCHANT_ID}", allowed=frozenset({MERCHANT_ID}))


def test_bundle_of_a_journal_holding_pans_has_no_pan_and_no_key(world: World) -> None:
    """A bundle of a real terminal (PANs in its journal) holds no PAN digits and no key bytes."""
    world.established()
    world.backup()
    report = world.examine()
    path, summary = write_bundle(report, world.data_dir.parent / "bundle.json")
    text = path.read_text(encoding="utf-8") + summary.read_text(encoding="utf-8")
    secrets = TerminalSecrets.load(world.data_dir / KEY_FILE_NAME)
    with world.store.engine.connect() as connection:
        working = connection.execute(sa.text("SELECT mak, pik FROM host_terminals")).one()
    keys = [MASTER_KEY, secrets.pan_key, bytes(working.mak), bytes(working.pik)]
    leaks = [PAN] * (PAN in text) + [
        form for key in keys for form in (key.hex(), key.hex().upper()) if form in text
    ]
    assert [] == leaks
