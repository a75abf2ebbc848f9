"""The catalog CLI: documented commands, import/export, scan output, recall trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from catalog_samples import PILLS
from typer.main import get_command
from typer.testing import CliRunner

from posbatch.catalog.cli import app, checkout_app

CSV = (
    "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled,trace_prefix\n"
    "6901234567892,Milk 1L,1250,yes,M-DEC15,2026-12-15,10,no,\n"
    "6909876543212,Paper bag,50,no,,,300,,\n"
)
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests use the --data-dir SQLite file, whatever the environment says."""
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)


def command_helps(typer_app: typer.Typer) -> dict[str, str]:
    command = get_command(typer_app)
    commands = getattr(command, "commands", None)
    if commands is None:
        return {"checkout": command.help or ""}
    return {name: sub.help or "" for name, sub in commands.items()}


@pytest.mark.parametrize("typer_app", [app, checkout_app], ids=["catalog", "checkout"])
def test_every_command_has_an_example(typer_app: typer.Typer) -> None:
    """Each command's help carries an `Example:` line."""
    helps = command_helps(typer_app)
    expected: list[str] = []
    assert expected == [name for name, text in helps.items() if "Example: posbatch" not in text]


def test_import_then_export_round_trips(tmp_path: Path) -> None:
    """`catalog import` then `catalog export` gives the rows back (14-digit GTINs)."""
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    data_dir = str(tmp_path / "data")
    imported = runner.invoke(app, ["import", str(source), "--data-dir", data_dir])
    exported = runner.invoke(app, ["export", "--data-dir", data_dir])
    expected = (0, CSV.replace(",69", ",069").replace("\n69", "\n069"))
    assert expected == (imported.exit_code, exported.stdout)


def test_import_of_bad_csv_exits_2_and_names_the_row(tmp_path: Path) -> None:
    """A bad row makes import fail with exit code 2 and the row number on stderr."""
    source = tmp_path / "bad.csv"
    source.write_text(CSV.replace("1250", "12,50", 1))
    result = runner.invoke(app, ["import", str(source), "--data-dir", str(tmp_path / "d")])
    expected = (2, "error: 1 bad row(s), nothing imported:\nrow 2: 10 columns, expected 9\n")
    assert expected == (result.exit_code, result.stderr)


def test_scan_json_output() -> None:
    """`catalog scan --json` prints the readings as JSON."""
    result = runner.invoke(
        app, ["scan", f"]C101{PILLS}|10A1|17291200", "--separator", "|", "--json"]
    )
    document = json.loads(result.stdout)
    expected = (0, [{"lot": "A1", "expiry": "2029-12-31"}])
    assert expected == (
        result.exit_code,
        [{"lot": r["lot"], "expiry": r["expiry"]} for r in document["readings"]],
    )


def test_scan_error_json_output() -> None:
    """A bad scan with --json prints the exact error and exits 2."""
    result = runner.invoke(app, ["scan", "0109501101530004", "--json"])
    expected = (
        2,
        {
            "raw": "0109501101530004",
            "error": "(01) GTIN 09501101530004 has a bad check digit: expected 3, got 4",
        },
    )
    assert expected == (result.exit_code, json.loads(result.stdout))


def test_trace_json_of_unsold_lot_is_empty(tmp_path: Path) -> None:
    """`catalog trace LOT --json` prints a JSON list (empty when nothing sold a known lot)."""
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    runner.invoke(app, ["import", str(source), "--data-dir", str(tmp_path)])
    result = runner.invoke(app, ["trace", "M-DEC15", "--json", "--data-dir", str(tmp_path)])
    expected = (0, [])
    assert expected == (result.exit_code, json.loads(result.stdout))


def test_trace_in_a_data_dir_without_a_catalog_creates_none(tmp_path: Path) -> None:
    """A reading command on a typo'd data dir: exit 2, and no empty catalog appears."""
    result = runner.invoke(app, ["trace", "NOPE", "--data-dir", str(tmp_path / "typo")])
    assert (result.exit_code, (tmp_path / "typo").exists()) == (2, False)


def test_changes_file_then_sync(tmp_path: Path) -> None:
    """`catalog changes` writes a file that `catalog sync --from FILE` applies to a copy."""
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    data_dir = str(tmp_path / "data")
    changes_file = str(tmp_path / "changes.json")
    runner.invoke(app, ["import", str(source), "--data-dir", data_dir])
    runner.invoke(app, ["changes", "--output", changes_file, "--data-dir", data_dir])
    result = runner.invoke(
        app, ["sync", "--from", changes_file, "--terminal-dir", str(tmp_path / "t")]
    )
    expected = (0, "catalog copy: version 0 → 1 (3 row(s) applied)\n")
    assert expected == (result.exit_code, result.stdout)
