"""``posbatch doctor`` and ``host doctor``: the thin shells over the library."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from doctor_world import World
from rich.console import Console
from test_causes import host_advanced, lost_settlement_answer
from typer.testing import CliRunner

from posbatch.cli import app
from posbatch.doctor import Cause, Line, Outcome, diagnose_from_host, write_bundle
from posbatch.doctor.cli import host_doctor_command
from testbed import TERMINAL_ID

runner = CliRunner()


def test_doctor_help_has_an_example() -> None:
    """Every command's help shows an example."""
    result = runner.invoke(app, ["doctor", "--help"])
    assert "Example: posbatch doctor" in result.output


def test_read_shows_a_bundle_and_exits_1_for_a_failure(world: World) -> None:
    """``--read`` renders a bundle; the exit code says a failure was found."""
    lost_settlement_answer(world)
    path, _ = write_bundle(world.examine(), world.data_dir.parent / "b.json")
    result = runner.invoke(app, ["doctor", "--read", str(path)])
    expected = (1, True)
    assert expected == (result.exit_code, "settlement answer lost" in result.output)


def test_read_json_prints_the_report(world: World) -> None:
    """``--read FILE --json`` prints the report as JSON with its diagnosis."""
    lost_settlement_answer(world)
    path, _ = write_bundle(world.examine(), world.data_dir.parent / "b.json")
    result = runner.invoke(app, ["doctor", "--read", str(path), "--json"])
    assert "lost_response" == json.loads(result.output)["diagnosis"]["cause"]


def test_read_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    """A bundle that is not there is an error message and exit code 2."""
    result = runner.invoke(app, ["doctor", "--read", str(tmp_path / "none.json")])
    assert 2 == result.exit_code


def test_doctor_without_a_host_address_claims_no_cause(world: World) -> None:
    """No host to ask (address not HOST:PORT): no cause claimed, the batch check not checked."""
    world.clock.now = datetime.now(UTC) - timedelta(hours=1)  # the CLI reads the real clock
    world.established()
    world.site.close()
    result = runner.invoke(app, ["doctor", "--data-dir", str(world.data_dir), "--json"])
    diagnosis = json.loads(result.output)["diagnosis"]
    number = next(c for c in diagnosis["checks"] if c["key"] == "batch.number")
    expected = (0, None, "not checked")
    assert expected == (result.exit_code, diagnosis["cause"], number["status"])


def test_host_doctor_names_a_back_office_advance(world: World) -> None:
    """From the host's records alone, a back-office advance is named."""
    host_advanced(world)
    report = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    assert Cause.HOST_CHANGE == report.diagnosis.cause


def test_host_doctor_of_a_healthy_terminal_finds_nothing(world: World) -> None:
    """Settled batches and a fresh open batch: the host side sees no failure."""
    world.established()
    report = diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
    assert Outcome.HEALTHY == report.diagnosis.outcome


def test_host_doctor_command_exits_2_for_an_unknown_terminal(world: World) -> None:
    """An unregistered terminal ID is an error, not an empty diagnosis."""
    assert 2 == host_doctor_command(world.store, "99999999", console=Console(file=None))


def test_host_doctor_command_writes_a_bundle(world: World) -> None:
    """``host doctor --bundle`` writes a bundle the support desk can read."""
    host_advanced(world)
    path = world.data_dir.parent / "host.json"
    host_doctor_command(world.store, TERMINAL_ID, bundle=path, console=Console(quiet=True))
    assert "host_change" == json.loads(path.read_text())["report"]["diagnosis"]["cause"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--wait", "0"], "--wait"),
        (["--wait", "31"], "--wait"),
        (["--wait", "soon"], "--wait"),
        (["--echo-count", "-1"], "--echo-count"),
        (["--echo-count", "21"], "--echo-count"),
        (["--backup", "missing-backup.db"], "missing-backup.db"),
        (["--host-db", "nosuchdb://x"], "database"),
        (["--host-db", "postgresql+psycopg://support:pw-in-ps@127.0.0.1:1/db"], "PGPASSWORD"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    world: World, args: list[str], says: str, tmp_path: Path
) -> None:
    """Bad values are refused before anything is sent: exit 2, a message naming them, no
    traceback."""
    world.site.close()
    argv = ["doctor", "--data-dir", str(world.data_dir), *args]
    argv = [str(tmp_path / a) if a.endswith(".db") and "://" not in a else a for a in argv]
    result = runner.invoke(app, argv)
    expected = (2, True, False)
    assert expected == (result.exit_code, says in result.output, "Traceback" in result.output)


def test_doctor_of_a_missing_terminal_is_exit_2(tmp_path: Path) -> None:
    """No journal in the data directory: one line, exit 2."""
    result = runner.invoke(app, ["doctor", "--data-dir", str(tmp_path / "none")])
    assert (2, "terminal init" in result.output) == (result.exit_code, True)


def test_a_bundle_with_markup_in_it_is_shown_as_text(world: World) -> None:
    """A bundle is outside input: '[/]' in its text is printed as is, never a traceback."""
    world.established()
    report = world.examine()
    check = replace(report.diagnosis.checks[0], lines=(Line("[/] [bold]x", "[/red]"),))
    crafted = replace(
        report, diagnosis=replace(report.diagnosis, checks=(check, *report.diagnosis.checks[1:]))
    )
    path, _ = write_bundle(crafted, world.data_dir.parent / "crafted.json")
    result = runner.invoke(app, ["doctor", "--read", str(path)])
    expected = (0, True, False)
    assert expected == (
        result.exit_code,
        "[/] [bold]x" in result.output,
        "Traceback" in result.output,
    )


def test_host_db_is_read_never_migrated(world: World, tmp_path: Path) -> None:
    """--host-db reads the host store as it is: a store at its head is read; an empty
    database is refused (exit 2) and left empty — doctor never migrates what it examines."""
    world.clock.now = datetime.now(UTC) - timedelta(hours=1)  # the CLI reads the real clock
    world.established()
    world.site.close()
    base = ["doctor", "--data-dir", str(world.data_dir), "--json", "--host-db"]
    read = runner.invoke(app, [*base, world.db_url])
    empty = tmp_path / "empty.db"
    refused = runner.invoke(app, [*base, f"sqlite:///{empty}"])
    engine = sa.create_engine(f"sqlite:///{empty}")
    with engine.connect() as connection:
        tables = sa.inspect(connection).get_table_names()
    engine.dispose()
    records = json.loads(read.stdout)["evidence"]["host_records"]
    expected = (0, True, 2, [])
    assert expected == (read.exit_code, records["registered"], refused.exit_code, tables)
