"""Repairs: what ``posbatch doctor --fix`` does by itself, through the terminal engine.

Theory of operation
-------------------
A repair plan is the ordered tuple of :class:`~posbatch.doctor._rules.Repair`
a diagnosis gives. :func:`run_repairs` walks it: each step is put to the
person first (``confirm``; ``--yes`` answers yes), then done through the
terminal engine's own public operations — the same code a cashier's
"settle" button runs, so a repair can never do what the engine forbids:

- ``FLUSH_REVERSALS``  → ``Terminal.flush()`` (pending 0400s and refund resends)
- ``RESTORE_BACKUP``   → the damaged journal is kept aside (renamed, never
  deleted), ``restore_journal`` puts the backup in place, the terminal is
  reopened on it
- ``RESYNC_JOURNAL``   → ``Terminal.mark_restored()``: a journal older than the
  host's records (copied back by hand) is told so; its next sign-on settles
  the host's open batch before any new sale
- ``SIGN_ON_ADOPT``    → ``Terminal.sign_on()``: new keys, and the engine's
  recovery decides (adopt the host's number, settle a batch the host
  closed, or set a batch aside for the back office — never delete)
- ``RESUME_SETTLEMENT`` → ``Terminal.settle()`` only for a settlement already
  started: the terminal's batch is past OPEN (flushing, 0500 sent, batch upload,
  upload end), or the host has closed — or is taking the batch upload of — the
  batch the terminal still holds open (:func:`settlement_started_on_host`, from
  the evidence gathered before the repairs). With none started the step does
  nothing and says so: the batch stays open, every approval in it, for the shop
  to settle at the end of its day — so a second ``--fix`` never settles again.
- ``SETTLE_BATCH``     → ``Terminal.settle()``: settles the open batch now (only
  planned for a batch whose end of day has passed, or one that can count no more)

Every step, done, declined or failed, is written to the journal's event log
as a ``doctor`` event. A declined or failed step stops the plan: later steps
assume the earlier ones happened.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from posbatch.batch.model import beijing
from posbatch.batch.terminal_batch import SettleStep
from posbatch.doctor._evidence import Evidence
from posbatch.doctor._gather import Progress, backup_info
from posbatch.doctor._report import RepairResult, RepairStatus
from posbatch.doctor._rules import REPAIR_TEXT, Diagnosis, Repair
from posbatch.doctor._words import Line, close_reason_words, count, error_line
from posbatch.errors import ConfigError, PosbatchError
from posbatch.terminal import (
    JOURNAL_FILE_NAME,
    Exchange,
    Terminal,
    check_restore,
    open_terminal,
    restore_journal,
)

__all__ = ["DAMAGED_SUFFIX", "TerminalSite", "run_repairs", "settlement_started_on_host"]

# The damaged journal is renamed with this suffix (plus a timestamp), never deleted.
DAMAGED_SUFFIX: Final = ".damaged"

Confirm = Callable[[Repair, Line], bool]


@dataclass
class TerminalSite:
    """The terminal doctor works on: the open engine, its link, its clock and its files."""

    terminal: Terminal
    exchange: Exchange
    clock: Callable[[], datetime]
    data_dir: Path | None = None
    backups: tuple[Path, ...] = field(default=())
    # Asked (once) when a backup taken before a reinstall needs its passphrase to restore.
    backup_passphrase: Callable[[], str] | None = None

    @classmethod
    def open(
        cls,
        data_dir: Path,
        exchange: Exchange,
        *,
        clock: Callable[[], datetime],
        backups: tuple[Path, ...] = (),
        timeout_ms: int | None = None,
        backup_passphrase: Callable[[], str] | None = None,
    ) -> TerminalSite:
        """The terminal in ``data_dir``, opened WITHOUT refusing a damaged journal."""
        terminal = open_terminal(
            data_dir, clock=clock, exchange=exchange, verify=False, timeout_ms=timeout_ms
        )
        return cls(terminal, exchange, clock, data_dir, backups, _once(backup_passphrase))

    def close(self) -> None:
        self.terminal.journal.engine.dispose()

    def log(self, repair: Repair | None, status: str, message: str) -> None:
        """A ``doctor`` event in the journal's event log."""
        with self.terminal.journal.write(self.clock()) as writer:
            writer.event(
                "doctor",
                message,
                repair=None if repair is None else repair.value,
                status=status,
            )


def _flush(site: TerminalSite, _evidence: Evidence | None) -> tuple[Line, ...]:
    cleared = site.terminal.flush()
    return (
        Line(
            f"{count(cleared, 'outstanding item')} sent to the host",
            f"已向主机发送 {cleared} 笔待发交易",
        ),
    )


def _resync(site: TerminalSite, _evidence: Evidence | None) -> tuple[Line, ...]:
    site.terminal.mark_restored(
        "doctor: this journal is older than the host's records (copied back by hand); "
        "the next sign-on settles the host's open batch first"
    )
    return (
        Line(
            "the journal is marked as restored: its next sign-on settles the host's open batch "
            "before any new sale",
            "流水日志已标记为已恢复:下次签到时先结算主机的未结批次,再做新交易",
        ),
    )


def _restore(site: TerminalSite, _evidence: Evidence | None) -> tuple[Line, ...]:
    if site.data_dir is None:
        raise ConfigError("restore needs the terminal's data directory")
    readable = [
        (info, path)
        for path in site.backups
        if (info := backup_info(path, site.terminal.journal)) is not None
    ]
    if not readable:
        raise ConfigError("no intact journal backup to restore from")
    _info, backup = max(readable, key=lambda pair: pair[0].taken_at)
    # Every check of the restore (this terminal's backup, its card keys, the passphrase
    # of a backup taken before a reinstall) before anything is touched.
    check_restore(backup, site.data_dir, passphrase=site.backup_passphrase)
    journal_file = site.data_dir / JOURNAL_FILE_NAME
    # Beijing time, like every time doctor shows (a UTC stamp read 8 hours off the report).
    stamp = beijing(site.clock()).strftime("%Y%m%dT%H%M%S")
    kept = journal_file.with_name(f"{JOURNAL_FILE_NAME}{DAMAGED_SUFFIX}-{stamp}")
    site.close()
    shutil.copy2(journal_file, kept)
    report = restore_journal(backup, site.data_dir, passphrase=site.backup_passphrase)
    reopened = TerminalSite.open(
        site.data_dir, site.exchange, clock=site.clock, backups=site.backups,
        timeout_ms=site.terminal.timeout_ms, backup_passphrase=site.backup_passphrase,
    )  # fmt: skip
    site.terminal = reopened.terminal
    lines = [
        Line(
            f"journal restored from {backup.name}; the replaced journal is kept as {kept.name}",
            f"已用 {backup.name} 恢复流水日志;原日志保留为 {kept.name}",
        )
    ]
    if report.missing_entries:
        lines.append(
            Line(
                f"the backup lacks {count(report.missing_approvals, 'approval')} of the "
                "replaced journal: "
                "settlement reconciles them with the host (batch upload, exception records)",
                f"备份缺少原日志中的 {report.missing_approvals} 笔成功交易:"
                "结算时与主机核对(批上送,差错记录)",
            )
        )
    return tuple(lines)


def _once(ask: Callable[[], str] | None) -> Callable[[], str] | None:
    """``ask`` asked at most once (a check and the restore itself both may need it)."""
    if ask is None:
        return None
    answers: list[str] = []

    def once() -> str:
        if not answers:
            answers.append(ask())
        return answers[0]

    return once


_RECOVERY_ZH: Final = {
    "resume": "终端与主机批次号一致",
    "adopt": "采用主机批次号",
    "settle_closed": "先结算主机已关闭的批次",
    "set_aside": "本地批次留待后台处理",
}


def _sign_on(site: TerminalSite, _evidence: Evidence | None) -> tuple[Line, ...]:
    batches_before = site.terminal.journal.batches()
    closed_before = {row.batch_id for row in batches_before if row.closed_at}
    known_before = {row.batch_no for row in batches_before}
    result = site.terminal.sign_on()
    action = result.recovery.action.value
    lines = [
        Line(
            f"signed on: host batch {result.host_batch_no:06d}, terminal now at "
            f"{result.batch_no:06d} ({action}: {result.recovery.reason})",
            f"已签到:主机批次 {result.host_batch_no:06d},终端当前批次 {result.batch_no:06d}"
            f"({_RECOVERY_ZH.get(action, '已处理')})",
        )
    ]
    # The sign-on may settle batches itself (a batch the host closed; a new or restored
    # journal's resync of the host's open batch): say so, and how each closed.
    for row in site.terminal.journal.batches():
        if row.closed_at is None or row.batch_id in closed_before:
            continue
        lines.append(_closed_by_sign_on(row.batch_no, row.close_reason, row.uploaded_count))
        if row.batch_no not in known_before:  # the host's open batch, later than the journal's
            lines.append(
                Line(
                    f"batch {row.batch_no:06d} was the host's open batch, later than any this "
                    "journal knew: it is settled now, before any new sale",
                    f"批次 {row.batch_no:06d} 是主机上的未结批次,比本日志所知的批次更新:"
                    "现已结算,之后才做新交易",
                )
            )
    return tuple(lines)


def _closed_by_sign_on(batch_no: int, close_reason: str | None, uploaded: int) -> Line:
    how_en, how_zh = close_reason_words(close_reason)
    if close_reason == "uploaded":
        return Line(
            f"the sign-on settled batch {batch_no:06d} first: not balanced, "
            f"{count(uploaded, 'record')} uploaded; what only the host holds is now an "
            "exception record (差错) for the back office",
            f"签到时先结算了批次 {batch_no:06d}:对账不平,已批上送 {uploaded} 笔;"
            "仅主机有的交易已记为差错,由后台处理",
        )
    if close_reason == "set_aside":
        return Line(
            f"the sign-on set batch {batch_no:06d} aside for the back office, unsettled: the "
            "host holds no batch for it; its approvals stay in the journal",
            f"签到时批次 {batch_no:06d} 被留置,由后台处理(未结算):主机没有对应批次,"
            "其成功交易保留在日志中",
        )
    return Line(
        f"the sign-on settled batch {batch_no:06d} first ({how_en})",
        f"签到时先结算了批次 {batch_no:06d}({how_zh})",
    )


def settlement_started_on_host(evidence: Evidence | None, batch_no: int) -> bool:
    """Has the host closed batch ``batch_no``, or begun taking its batch upload? (pure)

    Then a settlement of it was started (by this terminal's 0500, or by the back office)
    even when the terminal holds it open: settling it finishes what the host has done.
    Read from the host's records when they hold the batch, else from its note in the
    echo answer (field 63); unknown counts as not started.
    """
    if evidence is None:
        return False
    records = evidence.host_records
    held = records.batch(batch_no) if records is not None else None
    if held is not None:
        return held.state in _HOST_SETTLING
    view = evidence.host_view
    if view is None or not view.reached:
        return False
    if view.batch_no == batch_no:
        return view.batch_state in _HOST_SETTLING
    return view.last_closed_batch_no == batch_no


# The host's batch states that mean a settlement of the batch was started.
_HOST_SETTLING: Final = frozenset({"CLOSED", "UPLOADING"})


def _resume(site: TerminalSite, evidence: Evidence | None) -> tuple[Line, ...]:
    """Finish a settlement already started; leave a batch none was started for open."""
    batch = site.terminal.current_batch()
    if batch.settle_step == SettleStep.OPEN and not settlement_started_on_host(
        evidence, batch.batch_no
    ):
        return (
            Line(
                f"batch {batch.batch_no:06d} left open: no settlement of it was started, and "
                "doctor does not close a shop's batch during the day; settle at the end of "
                "the day as usual",
                f"批次 {batch.batch_no:06d} 保持未结算:该批次尚未开始结算,"
                "诊断工具不会在营业中途结算商户的批次;请照常在日终结算",
            ),
        )
    return _settle(site, evidence)


def _settle(site: TerminalSite, _evidence: Evidence | None) -> tuple[Line, ...]:
    result = site.terminal.settle()
    if result.balanced:
        how_en, how_zh = "balanced", "对账平"
    elif result.close_reason == "uploaded":
        how_en = (
            f"not balanced: {count(result.uploaded_count, 'record')} uploaded, "
            "differences go to exceptions"
        )
        how_zh = f"对账不平:已批上送 {result.uploaded_count} 笔,差异记入差错"
    else:
        how_en, how_zh = close_reason_words(result.close_reason)
    return (
        Line(
            f"batch {result.batch_no:06d} settled ({how_en}); "
            f"next batch {result.next_batch_no:06d}",
            f"批次 {result.batch_no:06d} 已结算({how_zh});下一批次 {result.next_batch_no:06d}",
        ),
    )


_ACTIONS: Final[dict[Repair, Callable[[TerminalSite, Evidence | None], tuple[Line, ...]]]] = {
    Repair.FLUSH_REVERSALS: _flush,
    Repair.RESTORE_BACKUP: _restore,
    Repair.RESYNC_JOURNAL: _resync,
    Repair.SIGN_ON_ADOPT: _sign_on,
    Repair.RESUME_SETTLEMENT: _resume,
    Repair.SETTLE_BATCH: _settle,
}


def _no_progress(_line: Line) -> None:
    """No progress lines (the library default)."""


def run_repairs(
    site: TerminalSite,
    diagnosis: Diagnosis,
    *,
    confirm: Confirm,
    progress: Progress = _no_progress,
    evidence: Evidence | None = None,
) -> tuple[RepairResult, ...]:
    """Do the diagnosis's repair plan, step by step, each confirmed and journaled.

    ``evidence`` is what the diagnosis was made from: the host's view of the batch tells
    ``RESUME_SETTLEMENT`` whether a settlement was started (without it, only the
    terminal's own step does).
    """
    results: list[RepairResult] = []
    stopped = False
    total = len(diagnosis.repairs)
    for number, repair in enumerate(diagnosis.repairs, 1):
        text = REPAIR_TEXT[repair]
        if stopped:
            results.append(RepairResult(repair, RepairStatus.SKIPPED))
            continue
        if not confirm(repair, text):
            results.append(
                RepairResult(
                    repair,
                    RepairStatus.DECLINED,
                    (Line("declined: the later steps were not done", "已拒绝:后续步骤未执行"),),
                )
            )
            site.log(repair, RepairStatus.DECLINED.value, f"doctor: {text.en} — declined")
            stopped = True
            continue
        progress(
            Line(
                f"repair {number} of {total}: {text.en}",
                f"修复 第 {number} 步(共 {total} 步):{text.zh}",
            )
        )
        try:
            lines = _ACTIONS[repair](site, evidence)
        except PosbatchError as exc:
            results.append(RepairResult(repair, RepairStatus.FAILED, (error_line(exc),)))
            site.log(repair, RepairStatus.FAILED.value, f"doctor: {text.en} — failed: {exc}")
            stopped = True
            continue
        results.append(RepairResult(repair, RepairStatus.DONE, lines))
        site.log(
            repair,
            RepairStatus.DONE.value,
            f"doctor: {text.en} — " + "; ".join(x.en for x in lines),
        )
    return tuple(results)
