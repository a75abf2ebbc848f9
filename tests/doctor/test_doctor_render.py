"""The report's rendering: each table cell made into rich's Text once (``_report._cell``)
prints exactly what rich prints from the cell's markup string, byte for byte.

Differential: every report of every broken state (test_doctor_wording's worlds: every
cause, repairs done and failed, the host side), and a quarter of them again with evidence
lines a peer could send (markup, emoji codes, wide characters, card-number digits, a
line longer than any column), rendered plain at two widths and in colour (styles are
compared as well as text) — once through ``_cell`` and once with ``_cell`` handing rich
the string, as rendering did before.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace

import pytest
from rich.console import Console
from rich.text import Text
from test_doctor_wording import _reports

from posbatch.doctor import Line, RepairResult, Report, render
from posbatch.doctor import _report as report_module

pytestmark = pytest.mark.slow  # every broken state built once, ~120 renders each way (~18 s)

HOSTILE_EVERY = 4  # every 4th report again with hostile evidence (each renders 6 times)
HOSTILE_LINES = (
    Line("[/] [bold]not markup[/bold] \\[x] [link=http://x]y[/link]", "中文[/dim]【批次】"),
    Line(":smile: :warning: :thumbs_up: at :00: 12:30:", "表情 :smile: 时间 23:00:59"),
    Line("card 6225881234567890 and 622588 1234 5678 9012", "卡号 6225881234567890"),
    Line("x" * 300, "批" * 200),
    Line("", " leading and trailing spaces  "),
    Line("tab\there\r\nand a carriage return", "全角空格　和\u200b零宽"),
)


def _hostile(report: Report) -> Report:
    """``report`` with every check's and repair's evidence replaced by what a peer could
    send (the evidence carries text from outside: field 63, the journal's events)."""
    diagnosis = report.diagnosis
    checks = tuple(replace(check, lines=HOSTILE_LINES) for check in diagnosis.checks)
    repairs = tuple(
        RepairResult(result.repair, result.status, HOSTILE_LINES) for result in report.repairs_done
    )
    return replace(report, diagnosis=replace(diagnosis, checks=checks), repairs_done=repairs)


def _consoles() -> Iterator[tuple[Console, io.StringIO]]:
    for width in (110, 80):
        buffer = io.StringIO()
        yield Console(file=buffer, width=width, no_color=True, color_system=None), buffer
    buffer = io.StringIO()
    colour = Console(file=buffer, width=110, color_system="truecolor", force_terminal=True)
    yield colour, buffer


def _rendered(report: Report) -> list[str]:
    outputs = []
    for console, buffer in _consoles():
        render(report, console)
        outputs.append(buffer.getvalue())
    return outputs


def _as_rich_did(_console: Console, markup: str) -> str:
    return markup  # the cell as a string: rich parses it (to measure, then to render)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[Report]:
    found = list(_reports(tmp_path_factory.mktemp("render")))
    return found + [_hostile(report) for report in found[::HOSTILE_EVERY]]


def test_cells_made_once_render_as_rich_renders_their_markup(
    reports: list[Report], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every report, plain at 110 and 80 columns and in colour: the same bytes both ways."""
    assert len(reports) > 40
    assert any(report.repairs_done for report in reports)
    ours = [_rendered(report) for report in reports]
    monkeypatch.setattr(report_module, "_cell", _as_rich_did)
    assert ours == [_rendered(report) for report in reports]


def test_a_cell_is_a_text_rich_will_not_parse_again() -> None:
    """``_cell`` gives rich a Text (a string would be parsed to measure and again to
    render), and the markup's escapes stay literal."""
    console = Console(file=io.StringIO(), width=80)
    cell = report_module._cell(console, report_module._both(HOSTILE_LINES[0]))
    assert isinstance(cell, Text)
    assert cell.plain == f"{HOSTILE_LINES[0].en}\n{HOSTILE_LINES[0].zh}"
