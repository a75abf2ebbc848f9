"""What doctor prints holds no card number, whatever the journal, the host or a bundle holds.

A hostile or garbled journal can put a card number in any text field doctor reads (a
recovery event's detail, an id, a remark); the host store in an advance's reason typed by
the back office; a bundle from outside in anything. The console, ``--json`` and the bundle
show it as first 6 / last 4 only — even in a narrow terminal where rich folds a long cell
over two lines.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from doctor_samples import NOW, evidence, journal
from doctor_world import World
from rich.console import Console
from typer.testing import CliRunner

from posbatch.batch.cards import mask_pan
from posbatch.cli import app
from posbatch.doctor import Report, diagnose, masked, render
from posbatch.doctor._codec import to_json
from posbatch.doctor._evidence import HostException, HostRecords, RecoveryEvent
from posbatch.doctor._report import BUNDLE_FORMAT, bundle_text
from posbatch.doctor._words import Line
from posbatch.doctor.cli import host_doctor_command
from testbed import TERMINAL_ID

runner = CliRunner()

# Luhn-valid card numbers: 16 and 19 digits, and one typed in groups.
PAN_16 = "6222029371586403"
PAN_19 = "6222028719463520178"
PAN_GROUPED = "6222 0212 3456 7890 128"
PAN_TABBED = "62220293\t71586403"  # PAN_16 in two groups split by a tab (JSON writes \\t)
PANS = (PAN_16, PAN_19, PAN_GROUPED)


def _leaks(text: str) -> list[str]:
    """The card numbers (or the middle digits a mask hides) ``text`` shows."""
    found = []
    unescaped = text.replace("\\t", "")
    for pan in PANS:
        digits = pan.replace(" ", "")
        if pan in text or digits[6:-4] in text or digits[6:-4] in unescaped:
            found.append(pan)
    return found


def _hostile_report() -> Report:
    """A report whose every text field a journal, host or bundle could fill holds a PAN."""
    sample = evidence(
        journal=journal(
            merchant_id=PAN_16,  # a garbled id where the merchant id belongs
            recovery_events=(
                RecoveryEvent(NOW, "restore", f"restored by cashier, card {PAN_19} stuck"),
            ),
        ),
        host_records=HostRecords(
            terminal_id="10000001",
            registered=True,
            signed_on=True,
            batch_no=1,
            batch_state="OPEN",
            last_stan=1,
            exceptions=(HostException(1, 1, f"upload of {PAN_GROUPED} refused"),),
        ),
        notes=(f"remark: {PAN_GROUPED}", f"pasted: {PAN_TABBED}"),
    )
    diagnosis = diagnose(sample)
    attention = (Line(f"card {PAN_19} in a note", f"卡号 {PAN_16} 在备注中"),)
    checks = tuple(
        dataclasses.replace(check, lines=(*check.lines, Line(f"error {PAN_16}", PAN_19)))
        for check in diagnosis.checks
    )
    return Report(
        NOW,
        "terminal",
        sample,
        dataclasses.replace(diagnosis, attention=attention, checks=checks),
    )


def _raw_bundle(report: Report, path: Path) -> Path:
    """A bundle written as someone outside could write it: nothing masked."""
    document = {"format": BUNDLE_FORMAT, "summary": "", "report": to_json(report)}
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def test_the_hostile_report_does_hold_every_card_number() -> None:
    """The sample is hostile: its raw JSON carries each card number whole."""
    assert [] == [pan for pan in PANS if pan not in json.dumps(to_json(_hostile_report()))]


@pytest.mark.parametrize("columns", ["60", "200"])
def test_doctor_read_prints_no_card_number_on_the_console(tmp_path: Path, columns: str) -> None:
    """``posbatch doctor --read`` renders a hostile bundle with every card number masked, in
    a narrow terminal (cells folded) and a wide one."""
    path = _raw_bundle(_hostile_report(), tmp_path / "hostile.json")
    result = runner.invoke(app, ["doctor", "--read", str(path)], env={"COLUMNS": columns})
    assert (1, []) == (result.exit_code, _leaks(result.output))


def test_doctor_read_shows_first_6_and_last_4() -> None:
    """What is masked still shows its first 6 and last 4 digits (the console's rule keeps
    the merchant id of a real shape; a card number where the id belongs is masked)."""
    console = Console(file=io.StringIO(), width=200)
    render(_hostile_report(), console)
    assert isinstance(console.file, io.StringIO)
    output = console.file.getvalue()
    assert [mask_pan(PAN_16), mask_pan(PAN_19)] == [
        pan for pan in (mask_pan(PAN_16), mask_pan(PAN_19)) if pan in output
    ]


def test_doctor_read_json_prints_no_card_number(tmp_path: Path) -> None:
    """``posbatch doctor --read FILE --json`` masks the report before it is dumped."""
    path = _raw_bundle(_hostile_report(), tmp_path / "hostile.json")
    result = runner.invoke(app, ["doctor", "--read", str(path), "--json"])
    assert [] == _leaks(result.output)


def test_bundle_of_a_hostile_report_holds_no_card_number() -> None:
    """The bundle's JSON and summary mask a card number in any field."""
    assert [] == _leaks("".join(bundle_text(_hostile_report())))


def test_masked_keeps_a_report_without_card_numbers_as_it_is() -> None:
    """Nothing to mask: the very same report (the bundle of a clean shop is unchanged)."""
    sample = evidence()
    report = Report(NOW, "terminal", sample, diagnose(sample))
    assert masked(report) is report


def test_host_doctor_prints_no_card_number_of_an_advance_reason(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """``host doctor`` carries an advance's reason (typed by the back office) in the
    exception it records: a card number in it is masked on the console and in ``--json`` —
    also one whose groups a tab splits, which JSON writes as ``\\t`` (no separator for a
    net cast over the dumped text)."""
    world.established()
    reason = f"customer card {PAN_19} / {PAN_GROUPED} / {PAN_TABBED}"
    world.core.advance_batch(TERMINAL_ID, reason)
    console = Console(file=io.StringIO(), width=60)
    host_doctor_command(world.store, TERMINAL_ID, console=console)
    host_doctor_command(world.store, TERMINAL_ID, json_out=True)
    assert isinstance(console.file, io.StringIO)
    shown = console.file.getvalue() + capsys.readouterr().out
    assert (True, []) == (mask_pan(PAN_19) in shown, _leaks(shown))


def test_host_doctor_of_a_card_number_typed_as_terminal_id_masks_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unregistered terminal id that is a card number: the error line masks it."""
    code = host_doctor_command(world.store, PAN_19, console=Console(quiet=True))
    error = capsys.readouterr().err
    assert (2, [], True) == (code, _leaks(error), mask_pan(PAN_19) in error)
