"""What a shop owner reads: every line doctor writes, over every broken state, in Chinese
without English fragments, money in yuan, plurals right, jargon explained where it appears.

Not a storage test (the wording does not depend on the database): one SQLite world per
state, built through the engines, diagnosed with and without the host store, repaired
(including a repair that fails), and read from the host side.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_world import TERMINAL_ID, World
from test_causes import SCENARIOS
from test_doctor_evidence import STATES

from posbatch.doctor import Line, Report, diagnose_from_host, examine, render_text
from posbatch.doctor._rules import REPAIR_TEXT, RULES

pytestmark = pytest.mark.slow  # builds and repairs every broken state once (~4 s)

# ASCII words a Chinese line may carry: names of things (commands), not English prose.
# Abbreviations, and the words of posbatch's commands a Chinese line names (`posbatch
# doctor --fix`, `posbatch host doctor`, `posbatch terminal journal`).
ALLOWED_IN_ZH = frozenset(
    {
        "TCP", "SIM", "UPS", "posbatch", "terminal", "backup", "restore", "settings",
        "doctor", "host", "journal",
    }
)  # fmt: skip
# A token with a digit, a path or address character is data (an ID, a file, a revision).
_DATA = re.compile(r"\S*[0-9/.:_@\-]\S*")
_WORD = re.compile(r"[A-Za-z]{2,}")
_BAD_PLURAL = re.compile(r"(?<![\d.,])\b1 ([a-z]+s)\b")
_FEN = re.compile(r"\d+ ?(fen|分)\b")


def _lines(report: Report) -> Iterator[Line]:
    for diagnosis in (report.diagnosis, report.after):
        if diagnosis is None:
            continue
        for check in diagnosis.checks:
            yield Line(check.title_en, check.title_zh)
            yield from check.lines
        for _cause, finding in diagnosis.findings:
            yield from finding.lines
        yield from diagnosis.symptoms
        yield from diagnosis.person_steps
        yield from diagnosis.prevention
        yield from diagnosis.attention
    for result in report.repairs_done:
        yield from result.lines


def _reports(tmp_path: Path) -> Iterator[Report]:
    states = {**{cause.value: build for cause, build in SCENARIOS.items()}, **STATES}
    for index, (name, build) in enumerate(sorted(states.items())):
        home = tmp_path / f"world-{index}"
        world = World(f"sqlite:///{home / 'host.db'}", home / "terminal")
        try:
            build(world)
            yield world.examine(host_store=False)
            yield world.examine()
            if name in ("copied back", "lost_response", "journal_replaced"):
                yield world.examine(fix=True)
            if name == "stale_batch":

                def line_drops(_report: Report, world: World = world) -> None:
                    world.link.down = True  # the repair meets a dead line: its failure is told

                yield examine(world.site, fix=True, on_diagnosis=line_drops)
            yield diagnose_from_host(world.store, TERMINAL_ID, now=world.clock())
        finally:
            world.close()


@pytest.fixture(scope="module")
def every_line(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Line], str]:
    lines: list[Line] = [*REPAIR_TEXT.values()]
    for rule in RULES:
        lines += [Line(rule.title_en, rule.title_zh), *rule.person_steps, *rule.prevention]
    texts = []
    for report in _reports(tmp_path_factory.mktemp("wording")):
        lines.extend(_lines(report))
        texts.append(render_text(report, width=200))
    return lines, "\n".join(texts)


def test_chinese_lines_carry_no_english(every_line: tuple[list[Line], str]) -> None:
    """A Chinese line holds Chinese, numbers and names — no English fragment."""
    lines, _ = every_line
    english = sorted(
        {
            line.zh
            for line in lines
            if any(w not in ALLOWED_IN_ZH for w in _WORD.findall(_DATA.sub(" ", line.zh)))
        }
    )
    assert [] == english


def test_amounts_are_in_yuan(every_line: tuple[list[Line], str]) -> None:
    """Money reads as the terminal shows it (RMB 70.00 / 70.00 元), never in fen."""
    lines, _ = every_line
    in_fen = sorted({text for line in lines for text in (line.en, line.zh) if _FEN.search(text)})
    assert [] == in_fen


def test_english_plurals_are_right(every_line: tuple[list[Line], str]) -> None:
    """'1 request', never '1 requests'."""
    lines, _ = every_line
    wrong = sorted({m.group(0) for line in lines for m in _BAD_PLURAL.finditer(line.en)})
    assert [] == [w for w in wrong if w != "1 ms"]


def test_jargon_is_explained_where_it_first_appears(every_line: tuple[list[Line], str]) -> None:
    """In every report, the first STAN, 0500 and field 63 come with their plain words."""
    _, text = every_line
    unexplained = []
    for report in text.split("posbatch doctor — terminal")[1:]:
        for term, words in (
            ("STAN", "message number"),
            ("0500", "settlement request"),
            ("field 63", "note in the answer"),
        ):
            first = report.find(term)
            if first != -1 and words not in report[max(0, first - 40) : first]:
                unexplained.append(report[max(0, first - 40) : first + len(term)])
    assert [] == unexplained


def test_every_state_was_read(every_line: tuple[list[Line], str]) -> None:
    """The scan covered the repairs (done and failed) and the host's side, not only checks."""
    _, text = every_line
    expected = (True, True, True)
    assert expected == (
        "repairs 修复" in text,
        "failed: " in text,
        "(host)" in text,
    )
