"""The diagnosis rules: a table of causes, each with what points to it, what rules it out,
the repairs doctor can do, the steps a person must do, and the prevention.

Theory of operation
-------------------
The taxonomy of DESIGN.md is the :class:`Cause` enum. Each :class:`Rule` in
``RULES`` looks at one :class:`~posbatch.doctor._evidence.Evidence` and returns
a :class:`Finding`:

- ``POINTS`` with the evidence lines that point to the cause and a strength:
  ``PROOF`` (the evidence can only mean this cause) or ``SIGN`` (consistent
  with it, not proof);
- ``RULED_OUT`` with the evidence lines that exclude it;
- ``NOT_CHECKED`` with what was missing to decide.

:func:`diagnose` applies the table. First it lists the *symptoms* (failed or
warning checks). No symptom and no cause pointed → ``HEALTHY``: doctor says
there is no failure and claims no cause. Otherwise the causes whose findings
point are ranked by strength; exactly one at the top → ``FOUND`` (with the
lines that rule out each other cause); several at the top → ``AMBIGUOUS``
with those candidates; none → ``UNEXPLAINED``, listing as candidates the
causes that could not be checked. A cause is never claimed from missing
evidence: a rule whose facts are unknown answers ``NOT_CHECKED``.

The repair plan is the chosen cause's repairs (or, when ambiguous, only the
repairs every candidate shares), with ``FLUSH_REVERSALS`` first whenever
reversals are pending: the terminal must send them before anything else.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from posbatch.batch.counters import is_behind
from posbatch.batch.model import beijing
from posbatch.doctor._checks import (
    CLOCK_SKEW_FAIL_S,
    STALE_AFTER,
    TCP_FAILURE_WORDS,
    Check,
    Status,
    batch_age,
    clock_skew_s,
    run_checks,
    stan_ahead,
)
from posbatch.doctor._evidence import (
    TCP_REFUSED,
    Evidence,
    HostEntry,
    HostSources,
    LocalBatchState,
)
from posbatch.doctor._words import (
    Line,
    batch_state_words,
    capacity_words,
    close_reason_words,
    count,
    duration,
    money,
    shown_at,
    stan,
)

__all__ = [
    "RULES",
    "Category",
    "Cause",
    "Diagnosis",
    "Finding",
    "Outcome",
    "Repair",
    "Rule",
    "Strength",
    "Verdict",
    "diagnose",
    "rule_for",
]


class Category(enum.StrEnum):
    INPUT = "input error"
    TERMINAL = "terminal fault"
    NETWORK = "network"
    MISMATCH = "mismatch after update or host change"
    INTERRUPTED = "settlement interrupted"
    STALE = "unsettled old batch"
    CAPACITY = "batch full"
    SETUP = "setup error"


class Cause(enum.StrEnum):
    MANUAL_BATCH_ENTRY = "manual_batch_entry"
    JOURNAL_DAMAGED = "journal_damaged"
    COUNTERS_RESET = "counters_reset"
    CLOCK_WRONG = "clock_wrong"
    LOST_RESPONSE = "lost_response"
    NETWORK_TIMEOUTS = "network_timeouts"
    DUPLICATES = "duplicates"
    SOFTWARE_UPDATE = "software_update"
    HOST_CHANGE = "host_change"
    SETTLEMENT_INTERRUPTED = "settlement_interrupted"
    STALE_BATCH = "stale_batch"
    BATCH_FULL = "batch_full"
    JOURNAL_REPLACED = "journal_replaced"
    HOST_NOT_LISTENING = "host_not_listening"
    DUPLICATE_TERMINAL_ID = "duplicate_terminal_id"


class Repair(enum.StrEnum):
    """What doctor can do by itself with ``--fix`` (each step confirmed unless ``--yes``)."""

    FLUSH_REVERSALS = "flush_reversals"
    RESTORE_BACKUP = "restore_backup"
    RESYNC_JOURNAL = "resync_journal"
    SIGN_ON_ADOPT = "sign_on_adopt"
    # Finishes a settlement already started (the terminal's step, or the host closed or
    # is uploading the batch the terminal still holds open); with none started it leaves
    # the batch open: settling is the shop's end-of-day decision, never a repair's.
    RESUME_SETTLEMENT = "resume_settlement"
    # Settles the open batch now: only for a batch whose end of day has passed (stale) or
    # that can count no more (full) — what the shop or the engine would do anyway.
    SETTLE_BATCH = "settle_batch"


REPAIR_TEXT: Final[dict[Repair, Line]] = {
    Repair.FLUSH_REVERSALS: Line("send the pending reversals to the host", "向主机发送待发冲正"),
    Repair.RESTORE_BACKUP: Line(
        "restore the journal from its last backup, keeping the damaged copy aside",
        "用最近的备份恢复流水日志(损坏的副本另行保留)",
    ),
    Repair.RESYNC_JOURNAL: Line(
        "mark the journal as restored, so that its next sign-on settles the host's open batch "
        "before any new sale (the host's approvals are counted once, none is lost)",
        "将流水日志标记为已恢复:下次签到时先结算主机的未结批次,再做新交易"
        "(主机上的交易只计一次,不会丢失)",
    ),
    Repair.SIGN_ON_ADOPT: Line(
        "sign on again: the terminal takes the host's batch number, first settling what the "
        "host closed or holds (nothing is deleted)",
        "重新签到:终端采用主机的批次号,并先结算主机已关闭或持有的批次(不删除任何交易)",
    ),
    Repair.RESUME_SETTLEMENT: Line(
        "finish a settlement already started, where it stopped (settlement request 0500, "
        "then batch upload when not balanced); a batch with no settlement started is left "
        "open for the shop to settle at the end of the day",
        "完成已开始的结算,从中断处继续(先发结算请求,对账不平时再批上送);"
        "尚未开始结算的批次保持不动,由商户在日终照常结算",
    ),
    Repair.SETTLE_BATCH: Line(
        "settle the open batch now (settlement request 0500, then batch upload when not balanced)",
        "立即结算当前批次(先发结算请求,对账不平时再批上送)",
    ),
}


class Verdict(enum.StrEnum):
    POINTS = "points"
    RULED_OUT = "ruled out"
    NOT_CHECKED = "not checked"


class Strength(enum.IntEnum):
    NONE = 0
    SIGN = 1  # consistent with the cause
    PROOF = 2  # only this cause explains it


@dataclass(frozen=True, slots=True)
class Finding:
    verdict: Verdict
    lines: tuple[Line, ...]
    strength: Strength = Strength.NONE


def _points(strength: Strength, *lines: Line) -> Finding:
    return Finding(Verdict.POINTS, lines, strength)


def _out(*lines: Line) -> Finding:
    return Finding(Verdict.RULED_OUT, lines)


def _unknown(*lines: Line) -> Finding:
    return Finding(Verdict.NOT_CHECKED, lines)


@dataclass(frozen=True, slots=True)
class Rule:
    cause: Cause
    category: Category
    title_en: str
    title_zh: str
    assess: Callable[[Evidence], Finding]
    repairs: tuple[Repair, ...]
    person_steps: tuple[Line, ...]
    prevention: tuple[Line, ...]


def _b(batch_no: int | None) -> str:
    return "?" if batch_no is None else f"{batch_no:06d}"


_NO_JOURNAL: Final = Line("needs the terminal journal", "需要终端流水日志")
_NO_HOST: Final = Line("needs the host's batch number", "需要主机批次号")
# How a batch closed when a terminal's settlement closed it (field 63 Q=, host records).
_SETTLED_BY_A_TERMINAL: Final = frozenset({"BALANCED", "UPLOADED"})


def _mismatch(evidence: Evidence) -> bool | None:
    """Do terminal and host disagree on the batch number? None when unknown."""
    journal = evidence.journal
    host_batch_no = evidence.host_batch_no
    if journal is None or host_batch_no is None:
        return None
    return journal.batch_no != host_batch_no


# Foreign transactions named one by one in a line (the rest are counted).
FOREIGN_SHOWN_MAX: Final = 8
_KIND_WORDS: Final = {
    "sale": ("sale", "消费"),
    "void": ("void", "撤销"),
    "refund": ("refund", "退货"),
}


def _interleaved(sources: HostSources) -> bool:
    """Does the batch hold another's transaction, then this journal's, then another's again?

    One journal that stopped and came back (an older copy put back, a reinstall) leaves the
    host one run of transactions it lacks, before or between its own; a run of another's
    AFTER one of its own that came after another's needs two devices trading at once.
    """
    seen_foreign = seen_own_after = False
    for entry in sources.entries:
        if not entry.in_journal and seen_own_after:
            return True
        if not entry.in_journal:
            seen_foreign = True
        elif seen_foreign:
            seen_own_after = True
    return False


# Two STANs this far apart, the later one lower, are the counter wrapping (999999 → 000001).
_STAN_WRAP_GAP: Final = 500_000
# From the host's records alone: one batch whose STANs go back this often is a sign of two
# devices (one journal that stopped and came back goes back once; a 94 stops it there).
STAN_DESCENTS_SIGN_MIN: Final = 2


def _descents(sources: HostSources) -> list[tuple[int, int]]:
    """The places where the batch's STANs, in the host's order, go back (not a wrap)."""
    stans = [entry.stan for entry in sources.entries]
    return [
        (before, after)
        for before, after in itertools.pairwise(stans)
        if after < before and before - after < _STAN_WRAP_GAP
    ]


def _stans_going_back(evidence: Evidence) -> list[Line]:
    """``posbatch host doctor``: host batches whose STANs go back and forth."""
    lines = []
    for sources in evidence.host_sources or ():
        descents = _descents(sources)
        if len(descents) < STAN_DESCENTS_SIGN_MIN:
            continue
        shown = ", ".join(f"{before:06d} → {after:06d}" for before, after in descents[:4])
        lines.append(
            Line(
                f"in batch {_b(sources.batch_no)} on the host the message numbers (STAN) go "
                f"back {count(len(descents), 'time')} ({shown}): two counters interleave",
                f"主机批次 {_b(sources.batch_no)} 中流水号 {len(descents)} 次倒退({shown}):"
                "两个计数器交替出现",
            )
        )
    return lines


def _second_device(evidence: Evidence) -> list[Line] | None:
    """The host's evidence that another device trades under this terminal ID now: a recent
    host batch where its transactions and this journal's interleave. None: not compared."""
    if evidence.host_sources is None or evidence.journal is None:
        return None
    lines: list[Line] = []
    for sources in _interleaved_batches(evidence):
        foreign = [entry for entry in sources.entries if not entry.in_journal]
        own = len(sources.entries) - len(foreign)
        shown = []
        for entry in foreign[:FOREIGN_SHOWN_MAX]:
            kind_en, kind_zh = _KIND_WORDS.get(entry.kind, (entry.kind, entry.kind))
            amount_en, amount_zh = money(entry.amount_fen)
            shown.append(
                (
                    f"{entry.stan:06d} {kind_en} {amount_en}",
                    f"{entry.stan:06d} {kind_zh} {amount_zh}",
                )
            )
        more = len(foreign) - len(shown)
        more_en = f" and {more} more" if more else ""
        more_zh = f" 等,另有 {more} 笔" if more else ""
        state_en, state_zh = batch_state_words(sources.state)
        lines.append(
            Line(
                f"batch {_b(sources.batch_no)} on the host ({state_en}) holds "
                f"{count(len(foreign), 'transaction')} this journal never made, between "
                f"{count(own, 'transaction')} it did: message numbers (STAN) "
                + ", ".join(en for en, _ in shown)
                + more_en,
                f"主机上的批次 {_b(sources.batch_no)}({state_zh})中,本日志的 {own} 笔交易之间"
                f"夹着 {len(foreign)} 笔本日志从未发出的交易:流水号 "
                + "、".join(zh for _, zh in shown)
                + more_zh,
            )
        )
    if not lines and (between := _answered_between(evidence)) is not None:
        lines.append(_answered_between_line(between))
    if not lines:
        return lines
    lines.append(
        Line(
            f"another device is trading under this terminal ID ({evidence.terminal_id}) at the "
            "same time: each device's settlement closes the other's batch, and the other's "
            "sales become exception records (差错) on the host — nothing is lost, but the "
            "day's totals are wrong on both",
            f"另一台设备正在同时使用本终端号({evidence.terminal_id})交易:每台设备结算时都会"
            "关闭另一台的批次,另一台的交易在主机上成为差错记录 —— 款项没有丢失,但两台设备"
            "当天的合计都不对",
        )
    )
    return lines


@dataclass(frozen=True, slots=True)
class _Own:
    """A request of this journal the host answered, within ``start``–``until`` (host clock)."""

    start: datetime
    until: datetime
    batch_no: int
    stan: int
    kind: str
    amount_fen: int
    how_en: str
    how_zh: str


@dataclass(frozen=True, slots=True)
class _AnsweredBetween:
    """This journal answered, then another's transaction, then this journal again, then
    another's again — by the host's clock."""

    first: _Own
    before: tuple[int, HostEntry]  # (batch_no, entry) of another's
    again: _Own
    after: tuple[int, HostEntry]


# An answer's time (fields 13/12) is to the second: it came within this of the time it says.
_ANSWER_TIME_RESOLUTION: Final = timedelta(seconds=1)


def _answered_between(evidence: Evidence) -> _AnsweredBetween | None:
    """By the host's clock, in one of its recent batches: this journal answered, then a
    transaction it never made, then this journal answered again, then another it never made.

    One journal that stopped and came back (an older copy put back, a reinstall) was
    answered before the transactions of the journal it stands in for, or after them, never
    before, between and after. Two devices at once are, even when none of one's kept
    transactions falls between two of the other's: a request of one met a 94 there (the
    host kept no transaction of it). Kept transactions count at the time the host recorded
    them; the others at the time their answers say, to the second (another's transaction in
    that second is neither before nor after). Within one batch only: read across the day's
    batches, turns split by a settlement are seen too, but so is a journal that came back
    more than once in a day (heavy seeds 27, 38, 57 of the simulator named copied-back
    journals two devices, docs/doctor.md). None: not shown (no host records, no journal,
    or no such run).
    """
    if evidence.host_sources is None or evidence.journal is None:
        return None
    for sources in evidence.host_sources:
        run = _turns(sources)
        if run is not None:
            return run
    return None


def _turns(sources: HostSources) -> _AnsweredBetween | None:
    """:func:`_answered_between` within one host batch."""
    foreign: list[tuple[datetime, int, HostEntry]] = []
    own: list[_Own] = []
    for entry in sources.entries:
        if entry.at is None or entry.in_journal is None:
            continue
        if not entry.in_journal:
            foreign.append((entry.at, sources.batch_no, entry))
            continue
        own.append(
            _Own(entry.at, entry.at, sources.batch_no, entry.stan, entry.kind,
                 entry.amount_fen, "recorded by the host", "主机已记录")
        )  # fmt: skip
    for answer in sources.answered:
        own.append(
            _Own(answer.at, answer.at + _ANSWER_TIME_RESOLUTION, sources.batch_no,
                 answer.stan, answer.kind, answer.amount_fen,
                 f"answered {answer.response_code}", f"主机应答 {answer.response_code}")
        )  # fmt: skip
    if len(foreign) < 2 or len(own) < 2:
        return None
    # Earliest choices at each step find the run whenever there is one.
    first = min(own, key=lambda item: item.until)
    before = min((f for f in foreign if f[0] >= first.until), key=_at, default=None)
    if before is None:
        return None
    again = min((o for o in own if o.start > before[0]), key=lambda o: o.until, default=None)
    if again is None:
        return None
    after = min((f for f in foreign if f[0] >= again.until), key=_at, default=None)
    if after is None:
        return None
    return _AnsweredBetween(first, before[1:], again, after[1:])


def _at(item: tuple[datetime, int, HostEntry]) -> datetime:
    return item[0]


def _own_words(own: _Own) -> tuple[str, str]:
    kind_en, kind_zh = _KIND_WORDS.get(own.kind, (own.kind, own.kind))
    amount_en, amount_zh = money(own.amount_fen)
    at = f"{beijing(own.start):%H:%M:%S}"
    return (
        f"its {kind_en} {own.stan:06d} {amount_en} (batch {_b(own.batch_no)}, {own.how_en} "
        f"at {at})",
        f"本日志的{kind_zh} {own.stan:06d} {amount_zh}(批次 {_b(own.batch_no)},{at} {own.how_zh})",
    )


def _entry_words(batch_no: int, entry: HostEntry) -> tuple[str, str]:
    kind_en, kind_zh = _KIND_WORDS.get(entry.kind, (entry.kind, entry.kind))
    amount_en, amount_zh = money(entry.amount_fen)
    at = f"{beijing(entry.at):%H:%M:%S}" if entry.at is not None else "?"
    return (
        f"{entry.stan:06d} {kind_en} {amount_en} (batch {_b(batch_no)}, {at})",
        f"{entry.stan:06d} {kind_zh} {amount_zh}(批次 {_b(batch_no)},{at})",
    )


def _answered_between_line(run: _AnsweredBetween) -> Line:
    first_en, first_zh = _own_words(run.first)
    again_en, again_zh = _own_words(run.again)
    before_en, before_zh = _entry_words(*run.before)
    after_en, after_zh = _entry_words(*run.after)
    return Line(
        f"by the host's clock this journal and another take turns: {first_en}, then "
        f"{before_en} which it never made, then {again_en}, then {after_en} which it never "
        "made — a journal that stopped and came back is never answered before, between and "
        "after another's transactions",
        f"按主机时间,本日志与另一方交替出现:{first_zh},随后是本日志从未发出的 {before_zh},"
        f"然后是{again_zh},之后又是本日志从未发出的 {after_zh} —— 停用后又恢复的同一份日志"
        "不会在另一方的交易之前、之间和之后都得到应答",
    )


def _interleaved_batches(evidence: Evidence) -> list[HostSources]:
    """The recent host batches where another device's transactions and this journal's
    interleave (none without the host's records or the journal)."""
    if evidence.host_sources is None or evidence.journal is None:
        return []
    return [sources for sources in evidence.host_sources if _interleaved(sources)]


def _defer_to_second_device(evidence: Evidence) -> Finding | None:
    """Ruled out when another device trading under this terminal ID explains the evidence
    (what the host holds that the journal lacks, the 94s): their repairs — a sign-on that
    settles the host's batch — would close the other device's batch once more."""
    if _interleaved_batches(evidence) or _answered_between(evidence) is not None:
        return _out(
            Line(
                "another device trades under this terminal ID (see that cause): what the host "
                "holds that this journal lacks is that device's",
                "另一台设备在使用本终端号交易(见该原因):主机上有而本日志没有的交易属于那台设备",
            )
        )
    return None


# --- the rules ------------------------------------------------------------------


def _manual_entry(evidence: Evidence) -> Finding:
    journal = evidence.journal
    if journal is None:
        return _unknown(_NO_JOURNAL)
    if journal.refused_manual_entries:
        entry = journal.refused_manual_entries[-1]
        return _points(
            Strength.PROOF,
            Line(
                f"{shown_at(entry.at)} batch number {_b(entry.new_batch_no)} was typed in by "
                f"hand; the host's is {_b(entry.old_batch_no)}",
                f"{shown_at(entry.at)} 手工输入批次号 {_b(entry.new_batch_no)};"
                f"主机批次号为 {_b(entry.old_batch_no)}",
            ),
            Line(
                "the host refused it (the 批次号错误 message); the terminal kept its own number",
                "主机拒绝了该批次号(即“批次号错误”提示);终端保留了原批次号",
            ),
        )
    if not journal.manual_edits:
        return _out(Line("no batch number was typed in by hand", "没有手工输入过批次号"))
    last = journal.manual_edits[-1]
    mismatch = _mismatch(evidence)
    if mismatch is None:
        return _unknown(_NO_HOST)
    host = evidence.host_batch_no
    if last.new_batch_no != journal.batch_no:
        return _out(
            Line(
                f"the typed batch {_b(last.new_batch_no)} is no longer in use",
                f"手工输入的批次号 {_b(last.new_batch_no)} 已不再使用",
            )
        )
    if not mismatch:
        return _out(
            Line(
                f"the typed batch {_b(last.new_batch_no)} matches the host",
                f"手工输入的批次号 {_b(last.new_batch_no)} 与主机一致",
            )
        )
    return _points(
        Strength.PROOF,
        Line(
            f"{shown_at(last.at)} the batch number was typed in by hand as "
            f"{_b(last.new_batch_no)} (was {_b(last.old_batch_no)})",
            f"{shown_at(last.at)} 批次号被手工输入为 {_b(last.new_batch_no)}"
            f"(原为 {_b(last.old_batch_no)})",
        ),
        Line(
            f"the host's batch is {_b(host)}: the typed number is wrong",
            f"主机批次号为 {_b(host)}:手工输入的批次号有误",
        ),
    )


def _journal_damaged(evidence: Evidence) -> Finding:
    journal = evidence.journal
    if journal is None:
        return _unknown(_NO_JOURNAL)
    if journal.chain_intact and journal.schema_version == journal.schema_version_expected:
        return _out(Line("the journal's hash chain is intact", "流水日志哈希链完整"))
    lines = []
    if not journal.chain_intact:
        row = journal.first_bad_row
        where = "" if row is None else f" at entry {row}"
        where_zh = "" if row is None else f"(第 {row} 条记录)"
        lines.append(
            Line(
                f"the journal's hash chain is broken{where}: entries were damaged or edited",
                f"流水日志哈希链断裂{where_zh}:记录被损坏或篡改",
            )
        )
    if journal.schema_version != journal.schema_version_expected:
        lines.append(
            Line(
                f"journal schema {journal.schema_version}, software expects "
                f"{journal.schema_version_expected}",
                f"日志结构版本 {journal.schema_version},软件需要 {journal.schema_version_expected}",
            )
        )
    return _points(Strength.PROOF, *lines)


def _newer_history(evidence: Evidence) -> list[Line] | None:
    """The host's evidence that another journal of this terminal traded after this one's
    last entry (an older copy, a reinstall, a second device); None when unknown.

    Every request leaves the terminal only after the journal wrote it, so whatever the
    host recorded from this terminal is in this journal — unless the journal is not the
    one that sent it. Only an OPEN batch is at risk: one being settled takes no new
    transaction, and its settlement puts what only the host holds into exceptions.
    """
    journal = evidence.journal
    assert journal is not None
    records = evidence.host_records
    known = evidence.host_batch_no is not None or records is not None
    lines: list[Line] = []
    if journal.batch_state != LocalBatchState.OPEN:
        return lines if known else None
    host_stan = evidence.host_last_stan_in_batch
    if evidence.host_last_stan_in_journal is False and host_stan is not None:
        host_en, host_zh = stan(host_stan)
        lines.append(
            Line(
                f"the host recorded {host_en} in batch {_b(journal.batch_no)}, the batch this "
                "terminal has open, and this journal has no such transaction",
                f"主机在本终端当前批次 {_b(journal.batch_no)} 中记录了{host_zh}的交易,"
                "而本日志中没有这笔交易",
            )
        )
        if stan_ahead(host_stan, journal.last_stan):
            mine_en, mine_zh = stan(journal.last_stan)
            mine_en, mine_zh = (
                (f"this journal's last is {mine_en}", f"本日志最后为{mine_zh}")
                if journal.last_stan
                # STANs run 000001–999999: a new journal has none yet, not "000000"
                else (
                    "this journal has used no message number (STAN) yet",
                    "本日志尚未使用任何流水号",
                )
            )
            lines.append(
                Line(
                    f"{mine_en}: its next sale would reuse a message number the host holds "
                    "and be answered 94 (duplicate transaction)",
                    f"{mine_zh}:下一笔消费会重复使用主机已有的流水号,被应答 94(重复交易)",
                )
            )
    if evidence.host_batch_no == journal.batch_no and evidence.host_batch_state == "UPLOADING":
        # A journal sends its 0500 only after its own batch left OPEN (settling): a batch the
        # host holds for upload while it is open here was settled by another journal.
        lines.append(
            Line(
                f"the host holds batch {_b(journal.batch_no)} waiting for batch upload: a "
                "settlement request (0500) for it reached the host, and this journal never "
                "sent one — its batch is still open here",
                f"主机上批次 {_b(journal.batch_no)} 处于批上送中:主机已收到该批次的结算请求,"
                "而本日志从未发出过,本地批次仍未结算",
            )
        )
    closed = evidence.host_last_closed_batch_no
    how = evidence.host_last_closed_reason
    # A batch the host closed that this journal never settled: by a terminal's settlement
    # (field 63 Q=, the records) — or, for a fresh journal, any batch after its own that
    # the back office did not close (a host that does not say how still closed it).
    settled_elsewhere = how in _SETTLED_BY_A_TERMINAL or (
        journal.fresh_start and how != "ADVANCED" and closed != journal.batch_no
    )
    if (
        closed is not None
        and settled_elsewhere
        and (closed == journal.batch_no or is_behind(journal.batch_no, closed))
    ):
        how_en, how_zh = close_reason_words(how) if how else ("closed", "已关闭")
        lines.append(
            Line(
                f"the host has closed batch {_b(closed)} ({how_en}), which this journal never "
                f"settled: its batch {_b(journal.batch_no)} is still open here",
                f"主机已关闭批次 {_b(closed)}({how_zh}),而本日志从未结算过它:"
                f"本地批次 {_b(journal.batch_no)} 仍未结算",
            )
        )
    if (
        records is not None
        and records.last_stan is not None
        and stan_ahead(records.last_stan, journal.last_stan)
    ):
        host_en, host_zh = stan(records.last_stan)
        mine_en, mine_zh = stan(journal.last_stan)
        lines.append(
            Line(
                f"the host last saw {host_en}, after this journal's last ({mine_en})",
                f"主机最后收到{host_zh},在本日志最后的{mine_zh}之后",
            )
            if journal.last_stan
            else Line(
                f"the host last saw {host_en}; this journal has used no message number yet",
                f"主机最后收到{host_zh};本日志尚未使用任何流水号",
            )
        )
    if not lines and not known:
        return None
    return lines


def _counters_reset(evidence: Evidence) -> Finding:
    journal = evidence.journal
    if journal is None:
        return _unknown(_NO_JOURNAL)
    if (deferred := _defer_to_second_device(evidence)) is not None:
        return deferred
    if any(update.changed_counters for update in journal.updates):
        return _out(
            Line(
                "the counters changed with a recorded software update (see that cause)",
                "计数器随已记录的软件升级而改变(见该原因)",
            )
        )
    if not journal.fresh_start or journal.settled_batches:
        return _out(
            Line(
                "the journal did not start over at batch 000001",
                "流水日志没有从批次号 000001 重新开始",
            )
        )
    history = _newer_history(evidence)
    if history is None:
        return _unknown(_NO_HOST)
    if not history:
        return _out(
            Line(
                "a new terminal: the host holds nothing of it this journal lacks",
                "新终端:主机上没有本日志缺少的记录",
            )
        )
    if journal.reinstalled:
        why = ("the journal says it was created by a reinstall", "日志记录显示为重装后新建")
    elif journal.restored_at is not None:
        # `terminal restore` of a backup taken in the journal's first batch: an older copy
        # put back, not a reset — the desk asks for the newer journal, not an older one.
        why = (
            f"restored on {shown_at(journal.restored_at)} from a backup taken before the "
            "host's last records of this terminal",
            f"于 {shown_at(journal.restored_at)} 从早于主机最新记录的备份恢复",
        )
    else:
        why = (
            "a reinstall, a reset, or an early copy of the journal put back",
            "重装、重置,或放回了早期的日志副本",
        )
    lines = [
        Line(
            "the journal started fresh at batch 000001 on "
            f"{shown_at(journal.journal_started_at)} ({why[0]})",
            f"流水日志于 {shown_at(journal.journal_started_at)} 从批次号 000001 重新开始({why[1]})",
        ),
        *history,
    ]
    if journal.resync_pending:
        lines.append(
            Line(
                "its next sign-on settles the host's open batch before any new sale, so the "
                "approvals made before the reinstall are counted once",
                "下次签到时会先结算主机的未结批次,再做新交易:重装前的交易只计一次",
            )
        )
    return _points(Strength.PROOF, *lines)


def _journal_replaced(evidence: Evidence) -> Finding:
    journal = evidence.journal
    if journal is None:
        return _unknown(_NO_JOURNAL)
    if (deferred := _defer_to_second_device(evidence)) is not None:
        return deferred
    if journal.fresh_start and not journal.settled_batches:
        return _out(
            Line(
                "a fresh journal, not an older copy (see counters reset)",
                "这是新建的日志,不是旧副本(见计数器被重置)",
            )
        )
    lines: list[Line] = []
    backup = journal.backup
    if backup is not None and backup.extends_journal:
        lines.append(
            Line(
                f"the backup {backup.location} holds this journal's whole history and "
                f"{count(backup.entries_beyond_journal, 'entry', 'entries')} after its end: "
                "the journal in use is an older copy",
                f"备份 {backup.location} 包含本日志的全部记录,并在其后多出 "
                f"{backup.entries_beyond_journal} 条:正在使用的日志是旧副本",
            )
        )
    history = _newer_history(evidence)
    if history:
        lines.extend(history)
    if not lines:
        if history is None:
            return _unknown(_NO_HOST)
        return _out(
            Line(
                "the host holds nothing from this terminal that the journal lacks",
                "主机上没有本日志缺少的本终端记录",
            )
        )
    if (later := _later_host_batch(evidence)) is not None:
        lines.append(later)
    if journal.restored_at is not None:
        lines.append(
            Line(
                f"the journal was restored from a backup on {shown_at(journal.restored_at)}",
                f"流水日志于 {shown_at(journal.restored_at)} 从备份恢复",
            )
        )
    else:
        lines.append(
            Line(
                "no restore is recorded: an older journal file was copied over the newer one "
                "by hand (or another device uses this terminal's ID)",
                "日志中没有恢复记录:较旧的日志文件被手工复制覆盖了较新的日志"
                "(或另一台设备在使用本终端号)",
            )
        )
    if journal.pending_reversals:
        lines.append(
            Line(
                f"this copy still has {count(journal.pending_reversals, 'reversal')} to send: "
                "the newer journal may have had their answers — check them on the receipts",
                f"本副本仍有 {journal.pending_reversals} 笔冲正待发:较新的日志可能已收到应答,"
                "请核对签购单",
            )
        )
    return _points(Strength.PROOF, *lines)


def _later_host_batch(evidence: Evidence) -> Line | None:
    """The host's open batch when it is later than any this journal knows (the newer journal
    settled the copy's batch and traded on), for the service desk: its number, what it holds
    (from the host store; from the echo, its last message number), and that the terminal
    settles it before any new sale — at the sign-on after a restore or the repair's mark."""
    journal = evidence.journal
    host_batch_no = evidence.host_batch_no
    if (
        journal is None
        or host_batch_no is None
        or evidence.host_batch_state not in ("OPEN", "UPLOADING")
        or not is_behind(journal.batch_no, host_batch_no)
    ):
        return None
    records = evidence.host_records
    held = records.batch(host_batch_no) if records is not None else None
    last_stan = evidence.host_last_stan_in_batch
    if held is not None:
        amount_en, amount_zh = money(held.approved_net_fen)
        holds_en = (
            f"it holds {count(held.approved_count, 'approval')} (net {amount_en}) this journal "
            "never made"
            if held.approved_count
            else "it holds no approval yet"
        )
        holds_zh = (
            f"其中 {held.approved_count} 笔成功交易(净额 {amount_zh})本日志中没有"
            if held.approved_count
            else "其中尚无成功交易"
        )
    elif last_stan is not None:
        stan_en, stan_zh = stan(last_stan)
        holds_en = f"its last transaction is {stan_en}, one this journal never made"
        holds_zh = f"其最后一笔交易为{stan_zh},本日志中没有"
    else:
        holds_en, holds_zh = "the host told of no transaction in it", "主机未告知其中有交易"
    holds_any = (held.approved_count > 0) if held is not None else last_stan is not None
    return Line(
        f"the host holds batch {_b(host_batch_no)} open, a later batch than this journal knows "
        f"(its own is {_b(journal.batch_no)}); {holds_en}: the terminal settles batch "
        f"{_b(host_batch_no)} at its next sign-on after the repair, before any new sale"
        + (
            " — what only the host holds becomes exception records (差错) for the back office"
            if holds_any
            else ""
        ),
        f"主机上批次 {_b(host_batch_no)} 未结算,比本日志所知的批次更新"
        f"(本地为 {_b(journal.batch_no)});{holds_zh}:修复后终端签到时先结算批次 "
        f"{_b(host_batch_no)},再做新交易"
        + (";仅主机有的交易记为差错,由后台处理" if holds_any else ""),
    )


def _clock_wrong(evidence: Evidence) -> Finding:
    skew = clock_skew_s(evidence)
    if skew is None:
        return _unknown(Line("needs the host's time from a response", "需要主机应答中的时间"))
    apart_en, apart_zh = duration(skew)
    if abs(skew) <= CLOCK_SKEW_FAIL_S:
        fine_en, fine_zh = duration(CLOCK_SKEW_FAIL_S, exact=False)
        return _out(
            Line(
                f"the clocks are {apart_en} apart (up to {fine_en} is fine)",
                f"终端与主机时钟相差 {apart_zh}(不超过 {fine_zh} 即可)",
            )
        )
    return _points(
        Strength.PROOF,
        Line(
            f"the terminal clock is off by {apart_en} against the host",
            f"终端时钟与主机相差 {apart_zh}",
        ),
    )


def _lost_response(evidence: Evidence) -> Finding:
    journal = evidence.journal
    if journal is None:
        return _unknown(_NO_JOURNAL)
    if not journal.settlement_request_unanswered:
        return _out(Line("no settlement request is waiting for an answer", "没有未应答的结算请求"))
    host_batch = evidence.host_batch_no
    closed = evidence.host_last_closed_batch_no
    records = evidence.host_records
    host_record = records.batch(journal.batch_no) if records is not None else None
    if host_batch is None and host_record is None:
        return _unknown(_NO_HOST)
    host_closed_it = (host_record is not None and host_record.state == "CLOSED") or (
        closed is not None and closed == journal.batch_no
    )
    if not host_closed_it:
        return _out(
            Line(
                f"the host has not closed batch {_b(journal.batch_no)}",
                f"主机尚未关闭批次 {_b(journal.batch_no)}",
            )
        )
    return _points(
        Strength.PROOF,
        Line(
            f"the terminal sent settlement of batch {_b(journal.batch_no)} "
            "and never got the answer",
            f"终端已发送批次 {_b(journal.batch_no)} 的结算请求,但未收到应答",
        ),
        Line(
            f"the host closed batch {_b(journal.batch_no)} and moved on to {_b(host_batch)}: "
            "the answer was lost on the way back",
            f"主机已关闭批次 {_b(journal.batch_no)} 并进入 {_b(host_batch)}:应答在返回途中丢失",
        ),
    )


def _network_timeouts(evidence: Evidence) -> Finding:
    probe = evidence.network
    journal = evidence.journal
    if probe is not None and probe.tcp_reachable is False:
        if probe.error == TCP_REFUSED:
            return _out(
                Line(
                    "the connection was refused: the line works, the host is not listening "
                    "(see that cause)",
                    "连接被拒绝:线路是通的,是主机没有在监听(见该原因)",
                )
            )
        en, zh = TCP_FAILURE_WORDS.get(probe.error or "", ("", ""))
        return _points(
            Strength.PROOF,
            Line(
                f"cannot connect to the host at {probe.address}" + (f": {en}" if en else ""),
                f"无法连接主机 {probe.address}" + (f":{zh}" if zh else ""),
            ),
        )
    if probe is not None and probe.echo_lost:
        lost = Line(
            f"{probe.echo_lost} of {count(probe.echo_sent, 'echo test')} got no answer",
            f"回响测试 {probe.echo_sent} 次中 {probe.echo_lost} 次无应答",
        )
        if probe.tcp_reachable and probe.echo_lost == probe.echo_sent:
            # The connection was accepted: the line works; the host program answers nothing.
            return _points(
                Strength.PROOF,
                lost,
                Line(
                    "the host's machine accepted the connection, so the line works: the host "
                    "program is stuck or overloaded — call the acquirer's service desk",
                    "主机接受了连接,线路是通的:是主机程序无响应或过载,请联系收单机构客服",
                ),
            )
        return _points(Strength.PROOF, lost)
    if journal is not None and journal.pending_reversals:
        signs = [
            Line(
                f"{count(journal.pending_reversals, 'transaction')} timed out and "
                f"{'waits' if journal.pending_reversals == 1 else 'wait'} for reversal",
                f"{journal.pending_reversals} 笔交易超时,等待冲正",
            )
        ]
        if probe is not None and probe.echo_sent:
            signs.append(
                Line(
                    "the network answers now: the timeouts happened earlier",
                    "当前网络正常:超时发生在之前",
                )
            )
        return _points(Strength.SIGN, *signs)
    if probe is None and journal is None:
        return _unknown(Line("needs echo tests or the journal", "需要回响测试或流水日志"))
    lines = []
    if probe is not None and probe.echo_sent:
        lines.append(
            Line(
                f"all {count(probe.echo_sent, 'echo test')} answered",
                f"{probe.echo_sent} 次回响测试全部应答",
            )
        )
    if journal is not None and journal.recovered_timeouts:
        lines.append(
            Line(
                f"{count(journal.recovered_timeouts, 'request')} timed out earlier and the "
                "terminal recovered by itself (reversed or resent): history, not a cause",
                f"之前有 {journal.recovered_timeouts} 笔请求超时,终端已自动处理(冲正或重发):"
                "属历史记录,不是故障原因",
            )
        )
    elif journal is not None:
        lines.append(
            Line("no request in the journal is left unanswered", "日志中没有未处理的超时请求")
        )
    return _out(*lines)


def _host_not_listening(evidence: Evidence) -> Finding:
    probe = evidence.network
    if probe is None or probe.tcp_reachable is None:
        return _unknown(Line("needs a connection attempt to the host", "需要尝试连接主机"))
    if probe.tcp_reachable or probe.error != TCP_REFUSED:
        return _out(
            Line(
                "the host accepted the connection" if probe.tcp_reachable else
                "the connection was not refused",
                "主机接受了连接" if probe.tcp_reachable else "连接没有被拒绝",
            )
        )  # fmt: skip
    return _points(
        Strength.PROOF,
        Line(
            f"the connection to {probe.address} was refused: {TCP_FAILURE_WORDS[TCP_REFUSED][0]}",
            f"连接 {probe.address} 被拒绝:{TCP_FAILURE_WORDS[TCP_REFUSED][1]}",
        ),
    )


def _duplicates(evidence: Evidence) -> Finding:
    journal = evidence.journal
    records = evidence.host_records
    if journal is None and records is None:
        return _unknown(Line("needs the journal or the host's records", "需要流水日志或主机记录"))
    if (deferred := _defer_to_second_device(evidence)) is not None:
        return deferred
    lines = []
    strength = Strength.NONE
    if records is not None:
        dup = [item for item in records.exceptions if "duplicate" in item.cause.lower()]
        if dup:
            strength = Strength.PROOF
            lines.append(
                Line(
                    f"the host recorded {count(len(dup), 'duplicate transaction')} as exceptions",
                    f"主机将 {len(dup)} 笔重复交易记为差错",
                )
            )
    if journal is not None and journal.duplicate_answers:
        strength = Strength.PROOF  # the host said 94 to a STAN this journal had not used
        lines.append(
            Line(
                f"the host answered {count(journal.duplicate_answers, 'request')} with 94 "
                "(duplicate transaction): a message number (STAN) was used twice in one batch",
                f"主机将 {journal.duplicate_answers} 笔请求应答为 94(重复交易):"
                "同一批次内流水号被重复使用",
            )
        )
    if lines:
        return _points(strength, *lines)
    return _out(Line("no duplicate was answered or recorded", "没有重复交易应答或记录"))


def _duplicate_terminal_id(evidence: Evidence) -> Finding:
    if evidence.journal is None:
        # From the host alone: STANs going back and forth in one batch are a sign (a
        # cloned install's 94s move its counter past the other's, so its absence proves
        # nothing: not checked).
        going_back = _stans_going_back(evidence)
        if going_back:
            return _points(
                Strength.SIGN,
                *going_back,
                Line(
                    f"two devices may be trading under terminal ID {evidence.terminal_id}: "
                    "run doctor on the terminal with the host's records (--host-db) to see "
                    "which transactions are whose",
                    f"可能有两台设备在使用终端号 {evidence.terminal_id} 交易:请在终端上"
                    "带主机记录(--host-db)运行 doctor,查明哪些交易属于哪台设备",
                ),
            )
        return _unknown(_NO_JOURNAL)
    lines = _second_device(evidence)
    if lines is None:
        return _unknown(
            Line(
                "needs the host's records of each transaction (the host store, --host-db)",
                "需要主机逐笔交易记录(主机数据库,--host-db)",
            )
        )
    if not lines:
        return _out(
            Line(
                "in the host's recent batches, no transaction of another device comes between "
                "this journal's own",
                "主机近期批次中,本日志的交易之间没有夹着其他设备的交易",
            )
        )
    return _points(Strength.PROOF, *lines)


def _software_update(evidence: Evidence) -> Finding:
    journal = evidence.journal
    if journal is None:
        return _unknown(_NO_JOURNAL)
    changed = [update for update in journal.updates if update.changed_counters]
    if not journal.updates:
        return _out(Line("no software update in the journal", "日志中没有软件升级记录"))
    if not changed:
        return _out(Line("software updates kept the counters", "软件升级保留了计数器"))
    mismatch = _mismatch(evidence)
    if mismatch is None:
        return _unknown(_NO_HOST)
    update = changed[-1]
    if not mismatch:
        return _out(
            Line(
                "an update changed the counters, but the batch number now matches the host",
                "软件升级改变了计数器,但当前批次号与主机一致",
            )
        )
    return _points(
        Strength.PROOF,
        Line(
            f"{shown_at(update.at)} software {update.from_version} → "
            f"{update.to_version} changed the batch number "
            f"{_b(update.batch_no_before)} → {_b(update.batch_no_after)}",
            f"{shown_at(update.at)} 软件 {update.from_version} → "
            f"{update.to_version} 改变了批次号 "
            f"{_b(update.batch_no_before)} → {_b(update.batch_no_after)}",
        ),
        Line(
            f"the host's batch is {_b(evidence.host_batch_no)}",
            f"主机批次号为 {_b(evidence.host_batch_no)}",
        ),
    )


def _host_lost_approvals(evidence: Evidence) -> list[Line]:
    """The host's evidence that it lacks approvals of the batch both have open — approvals it
    gave itself (a journal marks a row approved only on the host's MACed answer): its
    records went back, e.g. its store restored from an older backup while terminals traded.

    From the store: the journal counts more approvals in that batch than the host does.
    From the echo answer: the host's last transaction of the batch (``T=``) is one the
    journal holds, and the journal holds an approval after it.
    """
    journal = evidence.journal
    if journal is None:
        return []
    settled = journal.last_settled_by_host
    host_batch = evidence.host_batch_no
    if (
        settled is not None
        and host_batch is not None
        and evidence.host_batch_state == "OPEN"
        and is_behind(host_batch, journal.batch_no)
        and not is_behind(settled[0], host_batch)
        and not any(update.changed_counters for update in journal.updates)
    ):
        # The host settled (its own answer) a batch it now says is open, or one after it.
        return [
            Line(
                f"the host settled this terminal's batch {_b(settled[0])} on "
                f"{shown_at(settled[1])} (its own answer to the settlement request), yet now "
                f"says its batch {_b(host_batch)} is open, behind the terminal's "
                f"{_b(journal.batch_no)}: the host's records went back (its store restored "
                "from an older backup?)",
                f"主机已于 {shown_at(settled[1])} 结算本终端批次 {_b(settled[0])}(主机自己的"
                f"结算应答),现在却说其批次 {_b(host_batch)} 未结算,落后于终端的 "
                f"{_b(journal.batch_no)}:主机记录发生了回退(主机数据库从较早的备份恢复?)",
            ),
            Line(
                "what the host lost is in this journal: the acquirer recovers it from the "
                "journal (`posbatch terminal journal`) and the receipts — keep both",
                "主机丢失的交易仍在本日志中:收单机构可据本日志(posbatch terminal journal)"
                "和签购单找回——请保留",
            ),
        ]
    if (
        journal.batch_state != LocalBatchState.OPEN
        or not journal.approved_count
        or evidence.host_batch_no != journal.batch_no
        or evidence.host_batch_state != "OPEN"
    ):
        return []
    records = evidence.host_records
    held = records.batch(journal.batch_no) if records is not None else None
    if held is not None:
        if held.approved_count >= journal.approved_count:
            return []
        missing = journal.approved_count - held.approved_count
        mine_en, mine_zh = money(journal.approved_net_fen)
        host_en, host_zh = money(held.approved_net_fen)
        found = Line(
            f"this terminal's open batch {_b(journal.batch_no)} holds "
            f"{count(journal.approved_count, 'approval')} (net {mine_en}); the host's records "
            f"of it hold {held.approved_count} (net {host_en}): {count(missing, 'approval')} "
            "the host answered are gone from its records",
            f"本终端未结批次 {_b(journal.batch_no)} 有 {journal.approved_count} 笔成功交易"
            f"(净额 {mine_zh});主机记录中只有 {held.approved_count} 笔(净额 {host_zh}):"
            f"主机批准过的 {missing} 笔已不在其记录中",
        )
    else:
        last = journal.last_approved_stan
        host_stan = evidence.host_last_stan_in_batch
        if (
            records is not None
            or last is None
            or host_stan is None
            or evidence.host_last_stan_in_journal is not True
            or not stan_ahead(last, host_stan)
        ):
            return []
        host_en, host_zh = stan(host_stan)
        mine_en, mine_zh = stan(last)
        found = Line(
            f"the host's last transaction in batch {_b(journal.batch_no)} is {host_en} (its note "
            f"in the answer, field 63), yet it approved this terminal's {mine_en} after it: the "
            "host's records lack approvals it gave",
            f"主机应答中的说明(第63域)显示其批次 {_b(journal.batch_no)} 的最后一笔交易为{host_zh},"
            f"而主机此后还批准了本终端的{mine_zh}:主机记录缺少其批准过的交易",
        )
    return [
        found,
        Line(
            "the host's records went back (its store restored from an older backup, or "
            "another host answered): at settlement the terminal uploads these sales and the "
            "host records them as exceptions (差错) — keep their receipts",
            "主机记录发生了回退(主机数据库从较早的备份恢复,或由另一台主机应答):结算时终端会"
            "批上送这些交易,主机将其记为差错——请保留这些交易的签购单",
        ),
    ]


def _host_change(evidence: Evidence) -> Finding:
    journal = evidence.journal
    records = evidence.host_records
    lost = _host_lost_approvals(evidence)
    if lost:
        return _points(Strength.PROOF, *lost)
    if records is not None and records.advances:
        advance = records.advances[-1]
        advanced = records.batch(advance.from_batch_no)
        unsettled = advanced is None or not advanced.settled_by_terminal
        if (journal is None and unsettled) or (
            journal is not None and journal.batch_no != records.batch_no
        ):
            when = "" if advance.at is None else f"{shown_at(advance.at)} "
            return _points(
                Strength.PROOF,
                Line(
                    f"{when}the host's back office moved this terminal's batch "
                    f"{_b(advance.from_batch_no)} → {_b(advance.to_batch_no)}"
                    + (f" ({advance.reason})" if advance.reason else ""),
                    f"{when}主机后台将本终端批次号 {_b(advance.from_batch_no)} → "
                    f"{_b(advance.to_batch_no)}"
                    + (f"({advance.reason})" if advance.reason else ""),
                ),
            )
    mismatch = _mismatch(evidence)
    if mismatch is None:
        return _unknown(_NO_HOST if journal is not None else _NO_JOURNAL)
    if not mismatch:
        return _out(Line("terminal and host agree on the batch number", "终端与主机批次号一致"))
    assert journal is not None  # _mismatch knows both sides
    view = evidence.host_view
    if (
        view is not None
        and view.last_closed_reason == "ADVANCED"
        and view.last_closed_batch_no == journal.batch_no
        and journal.batch_state == LocalBatchState.OPEN
    ):
        return _points(
            Strength.PROOF,
            Line(
                f"the host says (its note in the answer, field 63) that its back office closed "
                f"batch {_b(journal.batch_no)} and opened {_b(view.batch_no)}",
                f"主机应答中的说明(第63域)显示:后台关闭了批次 {_b(journal.batch_no)},"
                f"并开启了 {_b(view.batch_no)}",
            ),
            Line(
                f"this terminal never settled batch {_b(journal.batch_no)}: it is still open here",
                f"本终端从未结算批次 {_b(journal.batch_no)}:本地仍未结算",
            ),
        )
    host_batch = evidence.host_batch_no
    closed = evidence.host_last_closed_batch_no
    never_settled_here = (
        evidence.host_last_closed_reason not in _SETTLED_BY_A_TERMINAL
        and journal.batch_state == LocalBatchState.OPEN
        and not journal.settlement_request_unanswered
        and not journal.manual_edits
        and not any(update.changed_counters for update in journal.updates)
        and not (journal.fresh_start and journal.settled_batches == 0)
    )
    if (
        never_settled_here
        and host_batch is not None
        and is_behind(journal.batch_no, host_batch)
        and closed is not None
        and (closed == journal.batch_no or is_behind(journal.batch_no, closed))
    ):
        return _points(
            Strength.SIGN,
            Line(
                f"the host closed batch {_b(journal.batch_no)} that this terminal never settled, "
                f"and is now at {_b(host_batch)}",
                f"主机关闭了本终端从未结算的批次 {_b(journal.batch_no)},现为 {_b(host_batch)}",
            ),
            Line(
                "nothing on the terminal changed its counters: the change came from the host side",
                "终端计数器没有被改动:变化来自主机一侧",
            ),
        )
    if records is not None:
        return _out(Line("the host's records show no back-office change", "主机记录中没有后台改动"))
    return _out(
        Line(
            "the terminal's own history explains the difference",
            "终端自身的记录可以解释批次号差异",
        )
    )


def _settlement_interrupted(evidence: Evidence) -> Finding:
    journal = evidence.journal
    records = evidence.host_records
    if journal is None and records is not None:
        if records.batch_state == "UPLOADING":
            return _points(
                Strength.PROOF,
                Line(
                    f"the host holds batch {_b(records.batch_no)} waiting for batch upload: "
                    "the terminal started batch upload and never ended it",
                    f"主机上批次 {_b(records.batch_no)} 处于批上送中:终端开始批上送后未完成",
                ),
            )
        return _out(Line("the host has no half-done settlement", "主机上没有未完成的结算"))
    if journal is None:
        return _unknown(_NO_JOURNAL)
    if journal.batch_state not in (LocalBatchState.SETTLING, LocalBatchState.UPLOADING):
        return _out(Line("no settlement is half-done on the terminal", "终端没有未完成的结算"))
    records = evidence.host_records
    host_record = records.batch(journal.batch_no) if records is not None else None
    host_batch = evidence.host_batch_no
    if host_record is None and host_batch is None:
        return _unknown(_NO_HOST)
    host_closed = (host_record is not None and host_record.state == "CLOSED") or (
        host_record is None and host_batch is not None and host_batch != journal.batch_no
    )
    if host_closed and journal.settlement_request_unanswered:
        return _out(
            Line(
                "the host finished this settlement; only its answer was missing",
                "主机已完成本次结算,只是应答丢失",
            )
        )
    state_en, state_zh = batch_state_words(journal.batch_state)
    lines = [
        Line(
            f"settlement of batch {_b(journal.batch_no)} stopped half-way on the terminal "
            f"({state_en})",
            f"批次 {_b(journal.batch_no)} 的结算在终端上中途停止({state_zh})",
        )
    ]
    if journal.upload_records_total:
        lines.append(
            Line(
                f"{journal.upload_records_acknowledged} of "
                f"{count(journal.upload_records_total, 'batch-upload record')} were acknowledged",
                f"批上送 {journal.upload_records_total} 笔,已确认 "
                f"{journal.upload_records_acknowledged} 笔",
            )
        )
    state = host_record.state if host_record is not None else evidence.host_batch_state
    if state is not None:
        host_en, host_zh = batch_state_words(state)
        lines.append(
            Line(
                f"the host holds batch {_b(journal.batch_no)} as {host_en}",
                f"主机上批次 {_b(journal.batch_no)} {host_zh}",
            )
        )
    return _points(Strength.PROOF, *lines)


def _stale_batch(evidence: Evidence) -> Finding:
    journal = evidence.journal
    records = evidence.host_records
    if journal is None and records is not None and records.now is not None:
        current = records.batch(records.batch_no)
        first = current.first_approval_at if current is not None else None
        if current is None or current.state != "OPEN" or first is None:
            return _out(Line("the host's open batch holds no approval", "主机当前批次没有交易"))
        host_age = records.now - first
        if host_age <= STALE_AFTER:
            hours = int(host_age.total_seconds() // 3600)
            return _out(
                Line(
                    f"the host's oldest unsettled approval is {count(hours, 'hour')} old",
                    f"主机上最早的未结算交易为 {hours} 小时前",
                )
            )
        return _points(
            Strength.PROOF,
            Line(
                f"the host's batch {_b(records.batch_no)} has held approvals since "
                f"{shown_at(first)} ({count(host_age.days, 'day')}) without settlement",
                f"主机批次 {_b(records.batch_no)} 自 {shown_at(first)} 起"
                f"({host_age.days} 天)有交易未结算",
            ),
        )
    if journal is None:
        return _unknown(_NO_JOURNAL)
    age = batch_age(evidence)
    if age is None or journal.batch_state == LocalBatchState.CLOSED:
        return _out(Line("the current batch holds no unsettled approval", "当前批次没有未结算交易"))
    if age <= STALE_AFTER:
        hours = int(age.total_seconds() // 3600)
        return _out(
            Line(
                f"the oldest unsettled approval is {count(hours, 'hour')} old",
                f"最早的未结算交易为 {hours} 小时前",
            )
        )
    days = age.days
    assert journal.oldest_unsettled_at is not None  # batch_age needs it
    return _points(
        Strength.PROOF,
        Line(
            f"batch {_b(journal.batch_no)} has been open since "
            f"{shown_at(journal.oldest_unsettled_at)} ({count(days, 'day')}) "
            "without settlement",
            f"批次 {_b(journal.batch_no)} 自 {shown_at(journal.oldest_unsettled_at)} 起"
            f"({days} 天)未结算",
        ),
    )


def _batch_full(evidence: Evidence) -> Finding:
    """交易笔数已满: a batch the settlement totals (field 48) cannot count — in the journal or
    on the host — is proof. One at the terminal's own limit is ruled out: the engine
    settles it by itself before the next sale or refund."""
    journal = evidence.journal
    records = evidence.host_records
    if journal is None and records is None:
        return _unknown(Line("needs the journal or the host's records", "需要流水日志或主机记录"))
    proof = []
    if journal is not None and journal.batch_over_capacity:
        en, zh = capacity_words(journal.batch_over_capacity)
        proof.append(
            Line(
                f"batch {_b(journal.batch_no)} holds more than the settlement totals (field 48) "
                f"can count ({en}): its totals cannot be sent as they are; only batch upload, "
                "record by record, can settle it",
                f"批次 {_b(journal.batch_no)} 超出结算总额的容量({zh}):"
                "总额无法按原样上送,只能通过批上送逐笔结算",
            )
        )
    for batch in records.batches if records is not None else ():
        if batch.over_capacity:
            en, zh = capacity_words(batch.over_capacity)
            state_en, state_zh = batch_state_words(batch.state)
            proof.append(
                Line(
                    f"the host's batch {_b(batch.batch_no)} ({state_en}) holds more than the "
                    f"settlement totals (field 48) can count: {en}",
                    f"主机批次 {_b(batch.batch_no)}({state_zh})超出结算总额的容量:{zh}",
                )
            )
    if proof:
        return _points(Strength.PROOF, *proof)
    if journal is not None and journal.batch_fullest >= journal.batch_limit:
        # Not a failure: the engine settles it before the next sale or refund (a settlement
        # of it that stopped half-way is settlement_interrupted; --fix does not settle a
        # shop's batch mid-day for it).
        return _out(
            Line(
                f"batch {_b(journal.batch_no)} is full at the terminal's limit "
                f"({count(journal.batch_fullest, 'transaction')} on one counter, the limit is "
                f"{journal.batch_limit}): the terminal settles it by itself before the next "
                "sale or refund — not a failure",
                f"批次 {_b(journal.batch_no)} 已达终端上限(单项 {journal.batch_fullest} 笔,"
                f"上限 {journal.batch_limit} 笔):下一笔消费或退货前终端会自动结算,不是故障",
            )
        )
    if journal is None:
        return _out(
            Line(
                "the host's unsettled batches fit the settlement totals",
                "主机未结算批次均在结算总额容量之内",
            )
        )
    return _out(
        Line(
            f"batch {_b(journal.batch_no)} has room: {journal.batch_fullest} of "
            f"{journal.batch_limit} on its fullest counter",
            f"批次 {_b(journal.batch_no)} 未满:单项最多 {journal.batch_fullest} 笔,"
            f"上限 {journal.batch_limit} 笔",
        )
    )


def _l(en: str, zh: str) -> Line:
    return Line(en, zh)


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        Cause.MANUAL_BATCH_ENTRY,
        Category.INPUT,
        "batch number typed in by hand",
        "手工输入批次号错误",
        _manual_entry,
        (Repair.SIGN_ON_ADOPT, Repair.RESUME_SETTLEMENT),
        (
            _l(
                # True before the repair as after it: a diagnosis alone changes nothing.
                "do not type batch numbers: `posbatch doctor --fix` signs on and takes the "
                "host's number",
                "请勿手工输入批次号:posbatch doctor --fix 会重新签到并采用主机的批次号",
            ),
        ),
        (
            _l(
                "stop manual batch edits; if a procedure asks for one, call the service desk",
                "停止手工修改批次号;如操作手册要求修改,请先联系服务商",
            ),
        ),
    ),
    Rule(
        Cause.JOURNAL_DAMAGED,
        Category.TERMINAL,
        "terminal journal damaged",
        "终端流水日志损坏",
        _journal_damaged,
        (Repair.RESTORE_BACKUP, Repair.SIGN_ON_ADOPT, Repair.RESUME_SETTLEMENT),
        (
            _l(
                "send the support bundle to the service desk; keep the damaged journal file",
                "将诊断包发送给服务商;保留损坏的日志文件",
            ),
            _l(
                "check the terminal's storage and power supply (sudden power loss damages files)",
                "检查终端存储和电源(突然断电会损坏文件)",
            ),
        ),
        (
            _l(
                "keep automatic journal backups on; use a UPS or shut down properly",
                "开启日志自动备份;使用不间断电源或正常关机",
            ),
        ),
    ),
    Rule(
        Cause.COUNTERS_RESET,
        Category.TERMINAL,
        "counters reset (reinstall or new journal)",
        "计数器被重置(重装或新日志)",
        _counters_reset,
        # The sign-on settles the host's batch of before the reset (the engine's resync;
        # a fresh journal that already signed on is marked for it again): nothing is left
        # to settle after it, so no settlement is planned.
        (Repair.RESTORE_BACKUP, Repair.RESYNC_JOURNAL, Repair.SIGN_ON_ADOPT),
        (
            _l(
                "if a backup of the old journal exists elsewhere, give it to the service desk",
                "如其他地方存有旧日志备份,请交给服务商",
            ),
        ),
        (
            _l(
                "before reinstalling, back up the journal and restore it first after; "
                "never start a terminal on an empty journal",
                "重装前先备份流水日志,重装后先恢复;不要用空日志启动终端",
            ),
        ),
    ),
    Rule(
        Cause.CLOCK_WRONG,
        Category.TERMINAL,
        "terminal clock wrong",
        "终端时钟错误",
        _clock_wrong,
        # A wrong clock is a person's fix; doctor finishes only a settlement already started
        # (the shop's open batch stays open: settling it is their end-of-day decision).
        (Repair.RESUME_SETTLEMENT,),
        (
            _l(
                "set the terminal's date and time (or turn on network time)",
                "请设置终端日期和时间(或开启网络校时)",
            ),
        ),
        (
            _l(
                "turn on network time; replace the clock battery if it keeps drifting",
                "开启网络校时;如时钟持续偏差请更换时钟电池",
            ),
        ),
    ),
    Rule(
        Cause.LOST_RESPONSE,
        Category.NETWORK,
        "settlement answer lost on the network",
        "结算应答在网络中丢失",
        _lost_response,
        # The 0500 went out: the settlement is under way, and finishing it is the repair.
        (Repair.RESUME_SETTLEMENT,),
        (
            _l(
                "nothing but `posbatch doctor --fix`: it asks the host again for the result",
                "只需运行 posbatch doctor --fix:它会向主机重新查询结算结果",
            ),
        ),
        (
            _l(
                "if it happens often, check the network (signal, router) before settling",
                "如经常发生,请在结算前检查网络(信号、路由器)",
            ),
        ),
    ),
    Rule(
        Cause.NETWORK_TIMEOUTS,
        Category.NETWORK,
        "network timeouts",
        "网络超时",
        _network_timeouts,
        # Settling is the shop's end-of-day decision, not a network repair.
        (Repair.FLUSH_REVERSALS,),
        (
            _l(
                "check the cable, router or SIM signal; call the network provider if echo "
                "tests keep getting no answer — or the acquirer, when the host accepts the "
                "connection and answers nothing",
                "检查网线、路由器或SIM卡信号;回响测试持续无应答时请联系网络运营商;"
                "主机接受连接却不应答时请联系收单机构",
            ),
        ),
        (
            _l(
                "move to a steadier line (wired rather than mobile) and keep reversals flowing",
                "改用更稳定的线路(有线优于移动网络)",
            ),
        ),
    ),
    Rule(
        Cause.DUPLICATES,
        Category.NETWORK,
        "duplicate transactions",
        "重复交易",
        _duplicates,
        (Repair.SIGN_ON_ADOPT, Repair.RESUME_SETTLEMENT),
        (
            _l(
                "the acquirer's back office reviews the duplicate exception records",
                "由收单机构后台核查重复交易差错记录",
            ),
        ),
        (
            _l(
                "never copy journal files by hand (use `posbatch terminal restore`), and do not "
                "repeat a transaction by hand after a timeout: the terminal resolves it",
                "不要手工复制流水日志文件(请使用 posbatch terminal restore);"
                "超时后不要手工重做交易:终端会自动处理",
            ),
        ),
    ),
    Rule(
        Cause.SOFTWARE_UPDATE,
        Category.MISMATCH,
        "mismatch after a software update",
        "软件升级后批次号不一致",
        _software_update,
        (Repair.SIGN_ON_ADOPT, Repair.RESUME_SETTLEMENT),
        (
            _l(
                "report the software version to the service desk: the update lost the counters",
                "将软件版本报告给服务商:本次升级丢失了计数器",
            ),
        ),
        (
            _l(
                "settle before every update; updates must carry the journal's counters over",
                "每次升级前先结算;升级必须保留日志计数器",
            ),
        ),
    ),
    Rule(
        Cause.HOST_CHANGE,
        Category.MISMATCH,
        "batch changed on the host side",
        "主机端批次号被改动",
        _host_change,
        (Repair.SIGN_ON_ADOPT, Repair.RESUME_SETTLEMENT),
        (
            _l(
                "ask the acquirer why its records of this terminal changed (a batch moved, or "
                "records gone back to an older copy); its back office reconciles the exceptions",
                "请向收单机构核实其本终端记录被改动的原因(批次号被改动,或记录回退到较早的副本);"
                "由其后台处理差错",
            ),
        ),
        (
            _l(
                "the acquirer should tell merchants before moving a terminal's batch, and "
                "never put an older copy of its records in place while terminals trade",
                "收单机构改动终端批次号前应通知商户;终端营业期间不应把主机记录恢复为较早的副本",
            ),
        ),
    ),
    Rule(
        Cause.SETTLEMENT_INTERRUPTED,
        Category.INTERRUPTED,
        "settlement interrupted half-way",
        "结算中途中断",
        _settlement_interrupted,
        (Repair.FLUSH_REVERSALS, Repair.RESUME_SETTLEMENT),
        (
            _l(
                "nothing but `posbatch doctor --fix`: it resumes the settlement where it stopped",
                "只需运行 posbatch doctor --fix:它会从中断处继续完成结算",
            ),
        ),
        (
            _l(
                "do not switch the terminal off or unplug it during settlement",
                "结算过程中不要关机或断开网络",
            ),
        ),
    ),
    Rule(
        Cause.BATCH_FULL,
        Category.CAPACITY,
        "batch full: settle first (the settlement totals, field 48, count at most 999)",
        "交易笔数已满,请先结算(结算总额最多 999 笔)",
        _batch_full,
        # The batch can count no more: settling it is the repair (the engine itself would
        # before the next sale or refund).
        (Repair.FLUSH_REVERSALS, Repair.SETTLE_BATCH),
        (
            _l(
                "nothing but `posbatch doctor --fix`: it settles the batch (a batch over "
                "capacity goes by batch upload, record by record; the host notes it for the "
                "back office)",
                "只需运行 posbatch doctor --fix:它会结算该批次(超出容量的批次通过批上送逐笔结算,"
                "主机记入差错由后台核对)",
            ),
        ),
        (
            _l(
                "keep automatic settlement on (`posbatch terminal settings --batch-limit`, "
                "default 500) and settle every day",
                "保持自动结算开启(posbatch terminal settings --batch-limit,默认 500 笔),并每日结算",
            ),
        ),
    ),
    Rule(
        Cause.STALE_BATCH,
        Category.STALE,
        "old batch left unsettled (day off)",
        "旧批次未结算(节假日后)",
        _stale_batch,
        # Its end of day has passed: settling it is the repair, not a mid-day decision.
        (Repair.FLUSH_REVERSALS, Repair.SETTLE_BATCH),
        (
            _l(
                "settle now; money of an unsettled batch is paid out only after settlement",
                "请立即结算;未结算批次的资金需结算后才会入账",
            ),
        ),
        (
            _l(
                "settle at the end of every business day, or turn on automatic settlement",
                "每个营业日结束时结算,或开启自动结算",
            ),
        ),
    ),
    Rule(
        Cause.JOURNAL_REPLACED,
        Category.TERMINAL,
        "journal replaced by an older copy",
        "流水日志被旧副本替换",
        _journal_replaced,
        # A newer backup puts the lost entries back; otherwise the sign-on settles the host's
        # batch first, so what only the host holds is settled once, never reused (no 94).
        (Repair.RESTORE_BACKUP, Repair.RESYNC_JOURNAL, Repair.SIGN_ON_ADOPT),
        (
            _l(
                "if the newer journal file still exists anywhere, give it to the service desk; "
                "keep the receipts of the day: the host's records are the reference",
                "如较新的日志文件仍在,请交给服务商;保留当天的签购单:以主机记录为准",
            ),
            _l(
                "if another device may be set up with this terminal ID (a replacement till, a "
                "copied install), take it out of service before `posbatch doctor --fix`: the "
                "repair settles the host's open batch, that device's sales with it (with the "
                "host's records, --host-db, doctor tells the two apart)",
                "如可能有另一台设备设置了本终端号(替换机或复制的安装),请先将其停用,"
                "再运行 posbatch doctor --fix:修复会结算主机的未结批次,连同那台设备的交易"
                "(带主机记录 --host-db 运行时,doctor 能区分两台设备)",
            ),
        ),
        (
            _l(
                "never copy journal files by hand: use `posbatch terminal backup` and "
                "`posbatch terminal restore`, which tell the terminal to resync with the host",
                "不要手工复制流水日志文件:请使用 posbatch terminal backup 和 "
                "posbatch terminal restore,恢复后终端会与主机重新同步",
            ),
        ),
    ),
    Rule(
        Cause.DUPLICATE_TERMINAL_ID,
        Category.SETUP,
        "two devices use one terminal ID",
        "两台设备使用同一个终端号",
        _duplicate_terminal_id,
        # Nothing: any repair on one device (a sign-on that settles the host's batch, a
        # settlement) closes the other device's batch once more. A person stops one first.
        (),
        (
            _l(
                "find the other device set up with this terminal ID (a replacement till set "
                "up while the old one still runs, or a copied install) and take it out of "
                "service: it must not take another sale",
                "找到另一台设置了本终端号的设备(旧机未停用就装好的替换机,或复制的安装),"
                "将其停用:不得再用它收款",
            ),
            _l(
                "then settle each device once, one after the other (`posbatch terminal "
                "settle`), and give the back office the message numbers (STAN) listed above: "
                "they say which exception records (差错) are the other device's sales",
                "然后逐台结算一次(posbatch terminal settle),并把上面列出的流水号交给后台:"
                "据此可知哪些差错记录是另一台设备的交易",
            ),
            _l(
                "until the other device is out of service, do not sign on again, and "
                "`posbatch doctor --fix` changes nothing for this cause: a sign-on or "
                "settlement on one device closes the other's batch again",
                "在另一台设备停用之前不要重新签到;posbatch doctor --fix 对此原因不做任何操作:"
                "在一台设备上签到或结算会再次关闭另一台的批次",
            ),
        ),
        (
            _l(
                "one terminal ID per device: a replacement till gets its own terminal ID from "
                "the acquirer, or the old one is switched off before the new one trades; never "
                "copy an installed terminal's data directory to another device",
                "一台设备一个终端号:替换机向收单机构申请自己的终端号,或在新机交易前先停用旧机;"
                "不要把已安装终端的数据目录复制到另一台设备",
            ),
        ),
    ),
    Rule(
        Cause.HOST_NOT_LISTENING,
        Category.NETWORK,
        "the host is not listening (connection refused)",
        "主机没有在监听(连接被拒绝)",
        _host_not_listening,
        (),
        (
            _l(
                "call the acquirer or the service desk: the host program is not running at the "
                "address set in the terminal; check the host address and port in the settings",
                "请联系收单机构或服务商:终端设置的地址上主机程序没有运行;"
                "并核对终端设置中的主机地址和端口",
            ),
        ),
        (
            _l(
                "the acquirer monitors its host; keep the terminal's host address up to date",
                "收单机构应监控主机运行;终端的主机地址应保持最新",
            ),
        ),
    ),
)

_BY_CAUSE: Final = {rule.cause: rule for rule in RULES}
# Causes a repair would make worse — not even pending reversals are sent: with two devices
# under one terminal ID, a reversal may meet the other device's transaction of that STAN.
_HANDS_OFF: Final = frozenset({Cause.DUPLICATE_TERMINAL_ID})


def rule_for(cause: Cause) -> Rule:
    return _BY_CAUSE[cause]


class Outcome(enum.StrEnum):
    HEALTHY = "healthy"  # nothing wrong, nothing for anyone to do
    ATTENTION = "attention"  # settlement works, but warnings need a person (差错, disk, clock)
    FOUND = "found"
    AMBIGUOUS = "ambiguous"
    UNEXPLAINED = "unexplained"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    outcome: Outcome
    checks: tuple[Check, ...]
    findings: tuple[tuple[Cause, Finding], ...]
    symptoms: tuple[Line, ...]
    cause: Cause | None
    candidates: tuple[Cause, ...]  # when ambiguous/unexplained: the causes still possible
    also_seen: tuple[Cause, ...]  # weaker causes that point too (contributing)
    repairs: tuple[Repair, ...]
    person_steps: tuple[Line, ...]
    prevention: tuple[Line, ...]
    attention: tuple[Line, ...] = ()  # warnings a person must act on, whatever the outcome

    def finding(self, cause: Cause) -> Finding:
        return dict(self.findings)[cause]

    @property
    def failed(self) -> bool:
        """A settlement failure (or one that could not be named): not merely attention."""
        return self.outcome in (Outcome.FOUND, Outcome.AMBIGUOUS, Outcome.UNEXPLAINED)

    @property
    def healthy(self) -> bool:
        """Nothing wrong and nothing for anyone to do (exit code 0)."""
        return self.outcome == Outcome.HEALTHY


def _symptoms(checks: tuple[Check, ...]) -> tuple[Line, ...]:
    return tuple(
        _summary(check)
        for check in checks
        if check.status == Status.FAILED
        or (check.status == Status.WARNING and check.key not in _ATTENTION)
    )


def _summary(check: Check) -> Line:
    summary = "; ".join(line.en for line in check.lines)
    summary_zh = ";".join(line.zh for line in check.lines)
    return Line(f"{check.title_en}: {summary}", f"{check.title_zh}:{summary_zh}")


# Warnings that do not stop settlement but need a person: the rules read some of them
# (duplicates, host change); on their own they make the outcome ATTENTION, never HEALTHY
# (money the back office must return is not "healthy"), with what the person must do.
_ATTENTION: Final[dict[str, Line]] = {
    "host.exceptions": Line(
        "the back office works off the exception records (差错): money to return to "
        "cardholders or to pay the merchant; the terminal settles normally meanwhile",
        "后台处理差错记录:需退还持卡人或付给商户的款项;在此期间终端可正常结算",
    ),
    "host.settlement": Line(
        "the back office compares the batch it closed with the terminal's records",
        "后台核对其关闭的批次与终端记录",
    ),
    "terminal.disk": Line(
        "free disk space where the journal lives: below 50 MiB the next sale may not be written",
        "清理日志所在磁盘:剩余空间低于 50 兆字节时,下一笔交易可能无法写入",
    ),
    "terminal.clock": Line(
        "set the terminal's date and time (or turn on network time)",
        "请设置终端日期和时间(或开启网络校时)",
    ),
}


def _plan(cause: Cause, evidence: Evidence) -> tuple[Repair, ...]:
    """The cause's repairs, kept to those that fit the evidence."""
    journal = evidence.journal
    backup = journal.backup if journal is not None else None
    repairs = rule_for(cause).repairs
    restore = backup is not None and (
        cause != Cause.JOURNAL_REPLACED or bool(backup.extends_journal)
    )
    if not restore:
        repairs = tuple(r for r in repairs if r != Repair.RESTORE_BACKUP)
    # A restore marks the journal for resync itself, and so does a reinstall.
    if restore or (journal is not None and journal.resync_pending):
        repairs = tuple(r for r in repairs if r != Repair.RESYNC_JOURNAL)
    return repairs


def diagnose(evidence: Evidence) -> Diagnosis:
    """Apply the rule table to ``evidence`` (pure)."""
    checks = run_checks(evidence)
    findings = tuple((rule.cause, rule.assess(evidence)) for rule in RULES)
    symptoms = _symptoms(checks)
    attention_checks = [
        check for check in checks if check.key in _ATTENTION and check.status == Status.WARNING
    ]
    attention = tuple(_summary(check) for check in attention_checks)
    attention_steps = tuple(_ATTENTION[check.key] for check in attention_checks)
    pointing = [(cause, f) for cause, f in findings if f.verdict == Verdict.POINTS]
    pending = evidence.journal.pending_reversals if evidence.journal is not None else 0

    hands_off = any(
        cause in _HANDS_OFF and f.verdict == Verdict.POINTS and f.strength == Strength.PROOF
        for cause, f in findings
    )

    def with_flush(repairs: tuple[Repair, ...]) -> tuple[Repair, ...]:
        """Reversals first when there are any; no flush step when there are none; no
        repair at all while a hands-off cause is proven."""
        if hands_off:
            return ()
        rest = tuple(r for r in repairs if r != Repair.FLUSH_REVERSALS)
        return (Repair.FLUSH_REVERSALS, *rest) if pending else rest

    if not symptoms and not pointing:
        if attention:
            return Diagnosis(
                Outcome.ATTENTION, checks, findings, attention, None, (), (), (),
                attention_steps, (), attention,
            )  # fmt: skip
        return Diagnosis(Outcome.HEALTHY, checks, findings, (), None, (), (), (), (), ())
    if not pointing:
        candidates = tuple(c for c, f in findings if f.verdict == Verdict.NOT_CHECKED)
        return Diagnosis(
            Outcome.UNEXPLAINED,
            checks,
            findings,
            symptoms,
            None,
            candidates,
            (),
            with_flush(()),
            (
                *_refused_steps(evidence),
                Line(
                    "send the support bundle to the service desk: "
                    "the evidence does not name a cause",
                    "请将诊断包发送给服务商:现有证据无法确定原因",
                ),
                *attention_steps,
            ),
            (),
            attention,
        )
    top = max(f.strength for _, f in pointing)
    leaders = tuple(cause for cause, f in pointing if f.strength == top)
    others = tuple(cause for cause, f in pointing if f.strength < top)
    if len(leaders) == 1:
        rule = rule_for(leaders[0])
        return Diagnosis(
            Outcome.FOUND,
            checks,
            findings,
            symptoms,
            leaders[0],
            (),
            others,
            with_flush(_plan(leaders[0], evidence)),
            tuple(dict.fromkeys((*rule.person_steps, *attention_steps))),
            rule.prevention,
            attention,
        )
    shared = [r for r in _plan(leaders[0], evidence) if r != Repair.RESTORE_BACKUP]
    for cause in leaders[1:]:
        shared = [r for r in shared if r in _plan(cause, evidence)]
    steps: list[Line] = [
        Line(
            "the evidence points to more than one cause: check each candidate below",
            "证据指向多个可能原因:请逐一核对下列原因",
        )
    ]
    prevention: list[Line] = []
    for cause in leaders:
        steps.extend(rule_for(cause).person_steps)
        prevention.extend(rule_for(cause).prevention)
    steps.extend(attention_steps)
    steps = list(dict.fromkeys(steps))
    return Diagnosis(
        Outcome.AMBIGUOUS,
        checks,
        findings,
        symptoms,
        None,
        leaders,
        others,
        with_flush(tuple(shared)),
        tuple(steps),
        tuple(prevention),
        attention,
    )


# The host answered the echo test but refused this terminal: no rule of the taxonomy
# names it, yet the code says who must act (a wrong host address or terminal ID, or
# a terminal the acquirer never registered or has suspended).
_REFUSED_STEPS: Final[dict[str, Line]] = {
    "97": Line(
        "the host does not know this terminal (97): check the terminal ID and the host "
        "address set in the terminal; if both are right, ask the acquirer to register it",
        "主机不认识本终端(97):请核对终端设置中的终端号和主机地址;如均无误,请收单机构登记本终端",
    ),
    "03": Line(
        "the host does not know this merchant (03): check the merchant ID set in the "
        "terminal, then ask the acquirer",
        "主机不认识本商户(03):请核对终端设置中的商户号,再联系收单机构",
    ),
    "58": Line(
        "the host has suspended this terminal (58): ask the acquirer why",
        "主机已停用本终端(58):请向收单机构询问原因",
    ),
}


def _refused_steps(evidence: Evidence) -> tuple[Line, ...]:
    view = evidence.host_view
    if view is None or not view.reached or view.response_code is None:
        return ()
    step = _REFUSED_STEPS.get(view.response_code)
    return (step,) if step is not None else ()
