"""The report: evidence + diagnosis + what ``--fix`` did, rendered for people (rich) and
kept as a support bundle (JSON + a text summary) a service desk can open.

The bundle holds no card number and no key: the evidence never copies them,
and :func:`scrub` masks any run of 13–19 digits that is not a known
identifier (terminal or merchant ID) before anything is written.

What a person sees holds none either: every render (the console, the bundle's
summary, ``--json``) starts from :func:`masked` — the report with each of its texts
through the card-number net, field by field, before rich lays it out (a card number a
hostile journal put in a field, folded by a narrow table column over two lines, would
no longer be one run of digits for a net cast over the finished text).
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from posbatch.batch.cards import mask_card_numbers
from posbatch.batch.ids import MERCHANT_ID_CHARS, TERMINAL_ID_CHARS
from posbatch.doctor._checks import Status
from posbatch.doctor._codec import from_json, to_json
from posbatch.doctor._evidence import Evidence
from posbatch.doctor._rules import (
    REPAIR_TEXT,
    Cause,
    Diagnosis,
    Outcome,
    Repair,
    Verdict,
    rule_for,
)
from posbatch.doctor._words import Line, count, shown_at
from posbatch.errors import ConfigError
from posbatch.storage import write_owner_only

__all__ = [
    "BUNDLE_FORMAT",
    "RepairResult",
    "RepairStatus",
    "Report",
    "allowed_ids",
    "bundle_text",
    "check_bundle_path",
    "json_text",
    "masked",
    "read_bundle",
    "render",
    "render_diagnosis",
    "render_repairs",
    "render_text",
    "scrub",
    "write_bundle",
]

BUNDLE_FORMAT: Final = "posbatch-doctor-bundle/1"
# A bundle is small (a few kB); refuse to read something far larger than any bundle.
BUNDLE_BYTES_MAX: Final = 4 * 1024 * 1024


class RepairStatus(enum.StrEnum):
    DONE = "done"
    DECLINED = "declined"  # the person said no
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to do


@dataclass(frozen=True, slots=True)
class RepairResult:
    repair: Repair
    status: RepairStatus
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    generated_at: datetime
    source: str  # "terminal" or "host"
    evidence: Evidence
    diagnosis: Diagnosis
    repairs_done: tuple[RepairResult, ...] = ()
    after: Diagnosis | None = None  # diagnosis again after --fix


_STATUS_STYLE: Final = {
    Status.PASSED: ("[green]✔ passed 通过[/]"),
    Status.WARNING: ("[yellow]! warning 警告[/]"),
    Status.FAILED: ("[red]✘ failed 失败[/]"),
    Status.NOT_CHECKED: ("[dim]- not checked 未检查[/]"),
}


def _both(line: Line) -> str:
    # Evidence carries text from outside (the host's field 63, the journal's events, a
    # bundle): never markup — "[/]" from a peer must print, not break the report.
    return f"{escape(line.en)}\n[dim]{escape(line.zh)}[/]"


def _cell(console: Console, markup: str) -> Text:
    """A table cell's markup as the Text rich would make of it, made once.

    A cell given as a string is parsed by rich twice, once to measure the column widths
    and once to render it: made once, a report renders in about a ninth less time (the
    simulator's bundles, 16 checks each: 11.3 → 10.0 ms, best of 5). What is left is
    rich's own work — wrapping every cell's text (``Text.wrap``, about half of it) and
    measuring the columns; making the Console costs microseconds. rich makes a cell's
    Text with ``console.render_str`` without highlighting (a table's default), and so does
    this: the output is the same byte for byte, styles included
    (tests/doctor/test_doctor_render.py compares the two over every kind of report).
    """
    return console.render_str(markup, highlight=False)


def _headline(diagnosis: Diagnosis) -> tuple[str, str, str]:
    if diagnosis.outcome == Outcome.ATTENTION:
        things = len(diagnosis.attention)
        return (
            "yellow",
            f"No settlement failure, but {count(things, 'warning')} "
            f"{'needs' if things == 1 else 'need'} a person (see below): not healthy yet.",
            f"结算没有故障,但有 {things} 项警告需要人工处理(见下文):尚不算正常。",
        )
    if diagnosis.outcome == Outcome.HEALTHY:
        # A second device under this terminal ID shows only in the host store's records
        # (--host-db): not having them is no reason to call a working terminal unchecked.
        unknown = [
            c
            for c, f in diagnosis.findings
            if f.verdict == Verdict.NOT_CHECKED and c != Cause.DUPLICATE_TERMINAL_ID
        ]
        if not unknown:
            return (
                "green",
                "No failure found: settlement should work.",
                "未发现故障:可以正常结算。",
            )
        names = ", ".join(rule_for(c).title_en for c in unknown)
        names_zh = "、".join(rule_for(c).title_zh for c in unknown)
        return (
            "yellow",
            f"No failure found in what could be checked; not checked: {names}",
            f"已检查部分未发现故障;未能检查:{names_zh}",
        )
    if diagnosis.outcome == Outcome.FOUND:
        assert diagnosis.cause is not None
        rule = rule_for(diagnosis.cause)
        return (
            "red",
            f"Cause: {rule.title_en} ({rule.category})",
            f"原因:{rule.title_zh}",
        )
    if diagnosis.outcome == Outcome.AMBIGUOUS:
        names = ", ".join(rule_for(c).title_en for c in diagnosis.candidates)
        names_zh = "、".join(rule_for(c).title_zh for c in diagnosis.candidates)
        return (
            "yellow",
            f"Ambiguous: the evidence fits more than one cause: {names}",
            f"无法确定:证据符合多个原因:{names_zh}",
        )
    names = ", ".join(rule_for(c).title_en for c in diagnosis.candidates) or "none left"
    names_zh = "、".join(rule_for(c).title_zh for c in diagnosis.candidates) or "无"
    return (
        "yellow",
        f"Something is wrong but the evidence names no cause; not checked: {names}",
        f"存在故障但证据无法确定原因;未能检查:{names_zh}",
    )


def render(report: Report, console: Console) -> None:
    """Print ``report`` for a person, in English and Chinese (card numbers masked)."""
    _render_shown(masked(report), console)


def render_diagnosis(report: Report, console: Console) -> None:
    """The checks and the diagnosis with its plan: what ``--fix`` shows before it asks
    (card numbers masked)."""
    _render_checks(masked(report), console)


def render_repairs(report: Report, console: Console) -> None:
    """What ``--fix`` did, and the diagnosis after it (card numbers masked)."""
    _render_repairs(masked(report), console)


def _render_shown(shown: Report, console: Console) -> None:
    """:func:`render` of a report already :func:`masked`."""
    _render_checks(shown, console)
    _render_repairs(shown, console)


def _render_checks(report: Report, console: Console) -> None:
    evidence = report.evidence
    console.rule(
        escape(
            f"posbatch doctor — terminal {evidence.terminal_id} — "
            f"{shown_at(report.generated_at, seconds=True)} ({report.source})"
        )
    )
    _render_diagnosis(report.diagnosis, console, title="diagnosis 诊断")


def _render_repairs(report: Report, console: Console) -> None:
    if report.repairs_done:
        table = Table(title="repairs 修复", show_lines=True)
        table.add_column("repair 修复项", overflow="fold")
        table.add_column("result 结果", overflow="fold")
        table.add_column("evidence 说明", overflow="fold")
        for result in report.repairs_done:
            text = REPAIR_TEXT[result.repair]
            table.add_row(
                _cell(console, _both(text)),
                _cell(console, result.status.value),
                _cell(console, "\n".join(_both(x) for x in result.lines)),
            )
        console.print(table)
    if report.after is not None:
        _render_diagnosis(report.after, console, title="after repair 修复后", checks=False)


def _render_diagnosis(
    diagnosis: Diagnosis, console: Console, *, title: str, checks: bool = True
) -> None:
    if checks:
        # overflow="fold": a Chinese line has no spaces to wrap at, and rich would cut it
        # with "…" where the column is narrow (an 80-column terminal).
        table = Table(title="checks 检查", show_lines=True)
        table.add_column("area 范围", overflow="fold")
        table.add_column("check 检查项", overflow="fold")
        table.add_column("status 结果", overflow="fold")
        table.add_column("evidence 证据", overflow="fold")
        for check in diagnosis.checks:
            table.add_row(
                _cell(console, escape(check.area)),
                _cell(console, _both(Line(check.title_en, check.title_zh))),
                _cell(console, _STATUS_STYLE[check.status]),
                _cell(console, "\n".join(_both(line) for line in check.lines)),
            )
        console.print(table)
    colour, en, zh = _headline(diagnosis)
    body = [f"[bold]{en}[/]", zh]
    if diagnosis.cause is not None:
        finding = diagnosis.finding(diagnosis.cause)
        body.append("\n[bold]points to it 支持证据[/]")
        body.extend(f"• {_both(line)}" for line in finding.lines)
        ruled = [(cause, f) for cause, f in diagnosis.findings if f.verdict == Verdict.RULED_OUT]
        if ruled:
            body.append("\n[bold]rules out the others 排除其他原因[/]")
            for cause, f in ruled:
                rule = rule_for(cause)
                reasons = escape("; ".join(line.en for line in f.lines))
                reasons_zh = escape(";".join(line.zh for line in f.lines))
                body.append(
                    f"• not {rule.title_en}: {reasons}\n  [dim]非{rule.title_zh}:{reasons_zh}[/]"
                )
        unknown = [cause for cause, f in diagnosis.findings if f.verdict == Verdict.NOT_CHECKED]
        if unknown:
            body.append(
                "\n[dim]not checked: "
                + ", ".join(rule_for(c).title_en for c in unknown)
                + "\n未检查:"
                + "、".join(rule_for(c).title_zh for c in unknown)
                + "[/]"
            )
    for cause in diagnosis.candidates if diagnosis.outcome == Outcome.AMBIGUOUS else ():
        rule = rule_for(cause)
        body.append(f"\n[bold]candidate 可能原因: {rule.title_en} / {rule.title_zh}[/]")
        body.extend(f"• {_both(line)}" for line in diagnosis.finding(cause).lines)
    if diagnosis.also_seen:
        body.append(
            "\n[bold]also seen 同时发现[/]: "
            + ", ".join(
                f"{rule_for(c).title_en} / {rule_for(c).title_zh}" for c in diagnosis.also_seen
            )
        )
    if diagnosis.symptoms and diagnosis.outcome not in (Outcome.HEALTHY, Outcome.ATTENTION):
        body.append("\n[bold]symptoms 现象[/]")
        body.extend(f"• {_both(line)}" for line in diagnosis.symptoms)
    if diagnosis.attention:
        body.append("\n[bold]warnings that need a person 需人工处理的警告[/]")
        body.extend(f"• {_both(line)}" for line in diagnosis.attention)
    if diagnosis.repairs:
        body.append("\n[bold]doctor can repair (posbatch doctor --fix) 可自动修复[/]")
        body.extend(f"{i}. {_both(REPAIR_TEXT[r])}" for i, r in enumerate(diagnosis.repairs, 1))
    if diagnosis.person_steps:
        body.append("\n[bold]a person must 需人工处理[/]")
        body.extend(f"• {_both(line)}" for line in diagnosis.person_steps)
    if diagnosis.prevention:
        body.append("\n[bold]prevention 预防[/]")
        body.extend(f"• {_both(line)}" for line in diagnosis.prevention)
    console.print(Panel("\n".join(body), title=title, border_style=colour))


def render_text(report: Report, *, width: int = 110) -> str:
    """The report as plain text (the bundle's summary), card numbers masked."""
    return _plain_text(masked(report), width=width)


def _plain_text(shown: Report, *, width: int = 110) -> str:
    """``shown`` (already :func:`masked`) as plain text."""
    buffer = io.StringIO()
    _render_shown(shown, Console(file=buffer, width=width, no_color=True, color_system=None))
    return buffer.getvalue()


def scrub(text: str, *, allowed: frozenset[str] = frozenset()) -> str:
    """Mask every possible card number (:func:`~posbatch.batch.cards.mask_card_numbers`)
    except the ``allowed`` IDs."""
    return mask_card_numbers(text, allowed=allowed)


def allowed_ids(report: Report) -> frozenset[str]:
    """The ids ``report`` shows whole: its terminal id and its journal's merchant id, each
    only when it has an id's shape (8 and 15 characters) — a card number a hostile journal
    wrote where an id belongs is masked like any other text."""
    ids = set()
    if len(report.evidence.terminal_id) == TERMINAL_ID_CHARS:
        ids.add(report.evidence.terminal_id)
    journal = report.evidence.journal
    if journal is not None and len(journal.merchant_id) == MERCHANT_ID_CHARS:
        ids.add(journal.merchant_id)
    return frozenset(ids)


def masked(report: Report) -> Report:
    """``report`` with every text in it (evidence, findings, repairs, notes) through the
    card-number net, but the ids of :func:`allowed_ids` whole: what every render starts
    from. The same report when nothing in it looks like a card number."""
    return _masked(report, allowed_ids(report))


_Value = TypeVar("_Value")


def _masked(value: _Value, allowed: frozenset[str]) -> _Value:
    # The shapes a report is made of (those of _codec): dataclasses, tuples, str, and
    # leaves that hold no text of their own (enums — str ones too —, numbers, datetimes).
    if isinstance(value, enum.Enum):
        return value
    if isinstance(value, str):
        return mask_card_numbers(value, allowed=allowed)  # type: ignore[return-value]
    if isinstance(value, tuple):
        items = tuple(_masked(item, allowed) for item in value)
        same = all(new is old for new, old in zip(items, value, strict=True))
        return value if same else items  # type: ignore[return-value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _masked(old, allowed)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value


def bundle_text(report: Report) -> tuple[str, str]:
    """(the bundle's JSON, its text summary): what leaves the shop, card numbers masked."""
    report = masked(report)
    allowed = allowed_ids(report)
    summary = scrub(_plain_text(report), allowed=allowed)
    document = {"format": BUNDLE_FORMAT, "summary": summary, "report": to_json(report)}
    return scrub(json.dumps(document, ensure_ascii=False, indent=2), allowed=allowed), summary


def json_text(report: Report) -> str:
    """``report`` as the JSON ``--json`` prints, card numbers masked."""
    report = masked(report)
    text = json.dumps(to_json(report), ensure_ascii=False, indent=2)
    return scrub(text, allowed=allowed_ids(report))


def check_bundle_path(path: Path) -> None:
    """ConfigError unless a bundle can be written at ``path``: its directory is there (a
    bundle makes none, as no export does: a typo in it is refused, not made) and ``path``
    is not a directory. Checked before doctor looks or repairs anything."""
    directory = path.parent
    if not directory.is_dir():
        why = "is not a directory" if directory.exists() else "does not exist"
        raise ConfigError(f"cannot write the support bundle {path}: {directory} {why}")
    if path.is_dir():
        raise ConfigError(f"cannot write the support bundle {path}: it is a directory")


def write_bundle(report: Report, path: Path) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and ``path`` + ``.txt`` (summary); return both paths.

    The directory must be there (:func:`check_bundle_path`); ConfigError when it cannot be
    written."""
    text, summary = bundle_text(report)
    check_bundle_path(path)
    summary_path = path.with_name(path.name + ".txt")
    try:
        write_owner_only(path, text)  # no card number or key in it, but the shop's own data
        write_owner_only(summary_path, summary)
    except OSError as exc:
        where = exc.filename or path
        raise ConfigError(f"cannot write the support bundle {where}: {exc.strerror}") from exc
    return path, summary_path


def read_bundle(path: Path) -> Report:
    """The report kept in a bundle written by :func:`write_bundle`."""
    try:
        if path.stat().st_size > BUNDLE_BYTES_MAX:
            raise ConfigError(f"{path} is over {BUNDLE_BYTES_MAX} bytes: not a doctor bundle")
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a doctor bundle (not JSON)") from exc
    if not isinstance(document, dict) or document.get("format") != BUNDLE_FORMAT:
        raise ConfigError(f"{path} is not a {BUNDLE_FORMAT} bundle")
    return from_json(Report, document.get("report"), "report")
