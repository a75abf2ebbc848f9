"""Checks: each fact of the evidence judged passed / warning / failed, with its evidence lines.

Pure functions of :class:`~posbatch.doctor._evidence.Evidence`. A check whose
facts are missing is ``not checked`` and says what was missing; it never
passes by default.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from posbatch.batch.counters import STAN_MAX, is_behind
from posbatch.batch.totals import TOTAL_COUNT_MAX
from posbatch.doctor._evidence import (
    TCP_REFUSED,
    TCP_TIMEOUT,
    TCP_UNREACHABLE,
    TCP_UNRESOLVED,
    Evidence,
    LocalBatchState,
)
from posbatch.doctor._words import (
    Line,
    batch_state_words,
    capacity_words,
    close_reason_words,
    count,
    duration,
    event_line,
    exception_kind_words,
    money,
    response_words,
    shown_at,
    stan,
)

__all__ = [
    "CLOCK_SKEW_FAIL_S",
    "CLOCK_SKEW_WARN_S",
    "ECHO_SLOW_MS",
    "LOW_DISK_BYTES",
    "STALE_AFTER",
    "TCP_FAILURE_WORDS",
    "Check",
    "Line",
    "Status",
    "run_checks",
    "stan_ahead",
]

# Past this the terminal's dates (receipts, field 13, the day boundary) are wrong.
CLOCK_SKEW_FAIL_S: Final = 300
CLOCK_SKEW_WARN_S: Final = 60
# A batch whose first approval is older than this was left over a day off.
STALE_AFTER: Final = timedelta(hours=24)
# Below this the journal may fail to commit the next transaction.
LOW_DISK_BYTES: Final = 50 * 1024 * 1024
# Recovery events of the journal listed (the newest).
EVENTS_SHOWN_MAX: Final = 8
# Exception records listed one by one (the newest); the rest are counted.
EXCEPTIONS_SHOWN_MAX: Final = 5
# An echo round trip above this is slow enough for a cashier to notice.
ECHO_SLOW_MS: Final = 2_000


class Status(enum.StrEnum):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"
    NOT_CHECKED = "not checked"


@dataclass(frozen=True, slots=True)
class Check:
    key: str
    area: str  # batch / terminal / network / host
    title_en: str
    title_zh: str
    status: Status
    lines: tuple[Line, ...]


def _b(batch_no: int | None) -> str:
    return "?" if batch_no is None else f"{batch_no:06d}"


def _check(
    key: str, area: str, title_en: str, title_zh: str, status: Status, *lines: Line
) -> Check:
    return Check(key, area, title_en, title_zh, status, tuple(lines))


_NO_JOURNAL: Final = Line("the terminal journal was not read", "未读取终端流水日志")
_NO_HOST: Final = Line(
    "the host's batch number is not known (no answer)", "未取得主机批次号(无应答)"
)


def clock_skew_s(evidence: Evidence) -> int | None:
    """Terminal clock minus host clock, in seconds (None when not measured)."""
    view = evidence.host_view
    if view is None or view.host_time is None or view.terminal_time is None:
        return None
    return round((view.terminal_time - view.host_time).total_seconds())


def stan_ahead(stan_number: int, of: int) -> bool:
    """Is ``stan_number`` after ``of`` in the terminal's count (within half a turn: 999999
    wraps to 000001, so 000003 is after 999998)? ``of`` 0 means none used yet."""
    if of == 0:
        return stan_number != 0
    distance = (stan_number - of) % STAN_MAX
    return 0 < distance <= STAN_MAX // 2


def batch_age(evidence: Evidence) -> timedelta | None:
    """How long the current batch has held its oldest unsettled approval — never more than
    the evidence allows, since a batch found too old is settled by ``--fix`` in the shop's day.

    The journal's times are the terminal clock's: an approval stamped before its batch opened
    was sold after the clock was set back, so the batch counts from its opening; and the
    host's own record of the batch's first approval (its store, its clock) caps the age.
    """
    journal = evidence.journal
    if journal is None or journal.oldest_unsettled_at is None:
        return None
    since = journal.oldest_unsettled_at
    if journal.batch_opened_at is not None and journal.batch_opened_at > since:
        since = journal.batch_opened_at
    age = journal.now - since
    records = evidence.host_records
    held = records.batch(journal.batch_no) if records is not None else None
    if (
        records is not None
        and records.now is not None
        and held is not None
        and held.state == "OPEN"
        and held.first_approval_at is not None
    ):
        age = min(age, records.now - held.first_approval_at)
    return age


def _batch_number(evidence: Evidence) -> Check:
    title = ("batch number: terminal vs host", "批次号:终端与主机")
    journal = evidence.journal
    host_batch_no = evidence.host_batch_no
    if journal is None:
        return _check("batch.number", "batch", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    if host_batch_no is None:
        return _check("batch.number", "batch", *title, Status.NOT_CHECKED, _NO_HOST)
    line = Line(
        f"terminal batch {_b(journal.batch_no)}, host batch {_b(host_batch_no)}",
        f"终端批次号 {_b(journal.batch_no)},主机批次号 {_b(host_batch_no)}",
    )
    if journal.batch_no == host_batch_no:
        return _check("batch.number", "batch", *title, Status.PASSED, line)
    side = (
        ("the terminal is behind the host", "终端落后于主机")
        if is_behind(journal.batch_no, host_batch_no)
        else ("the terminal is ahead of the host", "终端超前于主机")
    )
    return _check("batch.number", "batch", *title, Status.FAILED, line, Line(*side))


_STATE_WORDS: Final = {
    LocalBatchState.OPEN: ("open", "未结算"),
    LocalBatchState.SETTLING: (
        "half-settled: settlement started, not finished",
        "结算进行中(未完成)",
    ),
    LocalBatchState.UPLOADING: ("half-settled: batch upload under way", "批上送进行中(未完成)"),
    LocalBatchState.CLOSED: ("closed (settled)", "已结算"),
}


def _batch_state(evidence: Evidence) -> Check:
    title = ("batch state", "批次状态")
    journal = evidence.journal
    if journal is None:
        return _check("batch.state", "batch", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    en, zh = _STATE_WORDS[journal.batch_state]
    lines = [
        Line(
            f"terminal batch {_b(journal.batch_no)} is {en}",
            f"终端批次 {_b(journal.batch_no)} {zh}",
        )
    ]
    net_en, net_zh = money(journal.approved_net_fen)
    lines.append(
        Line(
            f"{count(journal.approved_count, 'approval')}, net {net_en}",
            f"{journal.approved_count} 笔成功交易,净额 {net_zh}",
        )
    )
    status = Status.PASSED
    if journal.batch_state in (LocalBatchState.SETTLING, LocalBatchState.UPLOADING):
        status = Status.FAILED
        if journal.settlement_request_unanswered:
            lines.append(
                Line(
                    "a settlement request (0500) went out and no answer came back",
                    "结算请求已发出,未收到应答",
                )
            )
        if journal.upload_records_total:
            lines.append(
                Line(
                    f"{journal.upload_records_acknowledged} of "
                    f"{count(journal.upload_records_total, 'batch-upload record')} acknowledged",
                    f"批上送 {journal.upload_records_total} 笔,已确认 "
                    f"{journal.upload_records_acknowledged} 笔",
                )
            )
    host_state = evidence.host_batch_state
    if host_state is not None:
        state_en, state_zh = batch_state_words(host_state)
        lines.append(
            Line(
                f"the host's batch {_b(evidence.host_batch_no)} is {state_en}",
                f"主机批次 {_b(evidence.host_batch_no)} {state_zh}",
            )
        )
        if host_state == "UPLOADING":
            status = Status.FAILED
    age = batch_age(evidence)
    if age is not None and age > STALE_AFTER and journal.batch_state != LocalBatchState.CLOSED:
        hours = int(age.total_seconds() // 3600)
        lines.append(
            Line(
                f"the first approval of this batch is {count(hours, 'hour')} old: "
                "not settled for over a day",
                f"本批次第一笔交易已过去 {hours} 小时:超过一天未结算",
            )
        )
        status = Status.FAILED
    return _check("batch.state", "batch", *title, status, *lines)


def _stan(evidence: Evidence) -> Check:
    title = ("message numbers (STAN) in order", "流水号连续性")
    journal = evidence.journal
    if journal is None:
        return _check("batch.stan", "batch", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    mine_en, mine_zh = stan(journal.last_stan)
    lines = [
        Line(f"the terminal's last {mine_en}", f"终端最后{mine_zh}")
        if journal.last_stan
        else Line(  # STANs run 000001–999999: a new journal has none yet, not "000000"
            "the terminal has used no message number (STAN) yet", "终端尚未使用任何流水号"
        )
    ]
    status = Status.PASSED
    if journal.stan_gaps:
        status = Status.WARNING
        lines.append(
            Line(
                f"{count(journal.stan_gaps, 'message number')} skipped inside the journal",
                f"流水日志中缺少 {journal.stan_gaps} 个流水号",
            )
        )
    records = evidence.host_records
    if records is not None and records.last_stan is not None:
        host_en, host_zh = stan(records.last_stan)
        lines.append(Line(f"the host last saw {host_en}", f"主机最后收到{host_zh}"))
        if stan_ahead(records.last_stan, journal.last_stan):
            status = Status.FAILED
            lines.append(
                Line(
                    "the host has seen message numbers this journal never used: "
                    "the journal's counter went back",
                    "主机收到过本日志未使用的流水号:终端计数器被回退",
                )
            )
    host_stan = evidence.host_last_stan_in_batch
    held = evidence.host_last_stan_in_journal
    if host_stan is not None and held is not None:
        host_en, host_zh = stan(host_stan)
        where = _b(evidence.host_batch_no)
        if held:
            lines.append(
                Line(
                    f"the host's last transaction in batch {where}, {host_en}, is in the journal",
                    f"主机批次 {where} 的最后一笔交易({host_zh})在本日志中",
                )
            )
        else:
            status = Status.FAILED
            lines.append(
                Line(
                    f"the host's last transaction in batch {where}, {host_en}, "
                    "is missing from the journal",
                    f"主机批次 {where} 的最后一笔交易({host_zh})不在本日志中",
                )
            )
    return _check("batch.stan", "batch", *title, status, *lines)


def _manual_edits(evidence: Evidence) -> Check:
    title = ("manual batch number entries", "手工输入批次号")
    journal = evidence.journal
    if journal is None:
        return _check("batch.manual", "batch", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    refused = tuple(
        Line(
            f"{shown_at(entry.at)} batch {_b(entry.new_batch_no)} typed in by hand and "
            f"refused: the host has {_b(entry.old_batch_no)}",
            f"{shown_at(entry.at)} 手工输入批次号 {_b(entry.new_batch_no)} 被拒绝:"
            f"主机批次号为 {_b(entry.old_batch_no)}",
        )
        for entry in journal.refused_manual_entries
    )
    if refused:
        return _check("batch.manual", "batch", *title, Status.FAILED, *refused)
    if not journal.manual_edits:
        return _check(
            "batch.manual",
            "batch",
            *title,
            Status.PASSED,
            Line("none in the journal", "日志中没有"),
        )
    lines = tuple(
        Line(
            f"{shown_at(edit.at)} batch typed in by hand: {_b(edit.old_batch_no)} → "
            f"{_b(edit.new_batch_no)}",
            f"{shown_at(edit.at)} 手工输入批次号:{_b(edit.old_batch_no)} → {_b(edit.new_batch_no)}",
        )
        for edit in journal.manual_edits
    )
    # Accepted entries were checked against the host (double entry + sign-on): history only.
    return _check("batch.manual", "batch", *title, Status.PASSED, *lines)


def _chain(evidence: Evidence) -> Check:
    title = ("journal integrity (hash chain)", "流水日志完整性(哈希链)")
    journal = evidence.journal
    if journal is None:
        return _check("terminal.chain", "terminal", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    if journal.chain_intact:
        return _check(
            "terminal.chain",
            "terminal",
            *title,
            Status.PASSED,
            Line("every row links to the one before", "每一行都与上一行链接一致"),
        )
    where = "" if journal.first_bad_row is None else f" at entry {journal.first_bad_row}"
    where_zh = "" if journal.first_bad_row is None else f"(第 {journal.first_bad_row} 条记录)"
    return _check(
        "terminal.chain",
        "terminal",
        *title,
        Status.FAILED,
        Line(
            f"the hash chain is broken{where}: rows were damaged or edited",
            f"哈希链断裂{where_zh}:记录被损坏或篡改",
        ),
    )


def _schema(evidence: Evidence) -> Check:
    title = ("journal schema and software version", "日志结构与软件版本")
    journal = evidence.journal
    if journal is None:
        return _check("terminal.schema", "terminal", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    lines = [
        Line(
            f"schema {journal.schema_version} "
            f"(this software expects {journal.schema_version_expected}),"
            f" software {journal.software_version}",
            f"日志结构版本 {journal.schema_version}(本软件需要 {journal.schema_version_expected}),"
            f"软件版本 {journal.software_version}",
        )
    ]
    status = Status.PASSED
    if journal.schema_version != journal.schema_version_expected:
        status = Status.FAILED
    for update in journal.updates:
        when = f"{shown_at(update.at)}"
        versions = f"{update.from_version} → {update.to_version}"
        if update.changed_counters:
            status = Status.FAILED
            lines.append(
                Line(
                    f"{when} update {versions} changed the counters: batch "
                    f"{_b(update.batch_no_before)} → {_b(update.batch_no_after)}, "
                    f"STAN {update.stan_before:06d} → {update.stan_after:06d}",
                    f"{when} 软件升级 {versions} 改变了计数器:批次号 "
                    f"{_b(update.batch_no_before)} → {_b(update.batch_no_after)},"
                    f"流水号 {update.stan_before:06d} → {update.stan_after:06d}",
                )
            )
        else:
            lines.append(
                Line(
                    f"{when} update {versions} kept the counters",
                    f"{when} 软件升级 {versions} 保留了计数器",
                )
            )
    if journal.fresh_start and journal.settled_batches == 0:
        lines.append(
            Line(
                "this journal started fresh at batch 000001 on "
                f"{shown_at(journal.journal_started_at)}",
                f"本日志于 {shown_at(journal.journal_started_at)} 从批次号 000001 重新开始",
            )
        )
    return _check("terminal.schema", "terminal", *title, status, *lines)


def _disk(evidence: Evidence) -> Check:
    title = ("free disk space", "剩余磁盘空间")
    journal = evidence.journal
    if journal is None or journal.free_disk_bytes is None:
        return _check(
            "terminal.disk",
            "terminal",
            *title,
            Status.NOT_CHECKED,
            Line("free space not measured", "未测量剩余空间"),
        )
    mib = journal.free_disk_bytes // (1024 * 1024)
    line = Line(f"{mib} MiB free where the journal lives", f"日志所在磁盘剩余 {mib} 兆字节")
    status = Status.PASSED if journal.free_disk_bytes >= LOW_DISK_BYTES else Status.WARNING
    return _check("terminal.disk", "terminal", *title, status, line)


def _clock(evidence: Evidence) -> Check:
    title = ("terminal clock vs host clock", "终端时钟与主机时钟")
    skew = clock_skew_s(evidence)
    if skew is None:
        return _check(
            "terminal.clock",
            "terminal",
            *title,
            Status.NOT_CHECKED,
            Line("the host's time was not received", "未收到主机时间"),
        )
    direction = ("ahead of", "快于") if skew > 0 else ("behind", "慢于")
    apart_en, apart_zh = duration(skew)
    line = Line(
        f"the terminal clock is {apart_en} {direction[0]} the host",
        f"终端时钟{direction[1]}主机 {apart_zh}",
    )
    if abs(skew) > CLOCK_SKEW_FAIL_S:
        status = Status.FAILED
    elif abs(skew) > CLOCK_SKEW_WARN_S:
        status = Status.WARNING
    else:
        status = Status.PASSED
    return _check("terminal.clock", "terminal", *title, status, line)


def _reversals(evidence: Evidence) -> Check:
    title = ("pending reversals and unanswered requests", "待发冲正与未应答请求")
    journal = evidence.journal
    if journal is None:
        return _check("terminal.reversals", "terminal", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    lines = [
        Line(
            f"{count(journal.pending_reversals, 'reversal')} waiting to be sent",
            f"{journal.pending_reversals} 笔冲正待发送",
        )
    ]
    still_open = journal.unanswered_requests - journal.recovered_timeouts
    if journal.recovered_timeouts:
        when = (
            ""
            if journal.last_timeout_at is None
            else f" (the last at {shown_at(journal.last_timeout_at)})"
        )
        when_zh = (
            ""
            if journal.last_timeout_at is None
            else f"(最近一次 {shown_at(journal.last_timeout_at)})"
        )
        lines.append(
            Line(
                f"history: {count(journal.recovered_timeouts, 'request')} got no answer "
                f"earlier{when}; the terminal reversed or resent "
                f"{'it' if journal.recovered_timeouts == 1 else 'them'} itself — "
                "nothing left to repair",
                f"历史记录:之前有 {journal.recovered_timeouts} 笔请求未收到应答{when_zh};"
                "终端已自动冲正或重发,无需修复",
            )
        )
    if still_open > 0:
        lines.append(
            Line(
                f"{count(still_open, 'request')} without an answer still to be cleared",
                f"{still_open} 笔未应答请求尚待处理",
            )
        )
    if journal.duplicate_answers:
        lines.append(
            Line(
                f"{count(journal.duplicate_answers, 'answer')} said 94 (duplicate transaction: "
                "the host already holds that message number in this batch)",
                f"{journal.duplicate_answers} 笔应答为 94(重复交易:主机本批次已有该流水号)",
            )
        )
    status = Status.WARNING if journal.pending_reversals else Status.PASSED
    return _check("terminal.reversals", "terminal", *title, status, *lines)


def _events(evidence: Evidence) -> Check:
    title = ("recovery events in the journal", "日志中的恢复记录")
    journal = evidence.journal
    if journal is None:
        return _check("terminal.events", "terminal", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    shown = journal.recovery_events[-EVENTS_SHOWN_MAX:]
    if not shown:
        return _check("terminal.events", "terminal", *title, Status.PASSED, Line("none", "无"))
    lines = tuple(
        event_line(
            f"{shown_at(event.at)}",
            event.kind,
            event.detail,
            batch_no=event.batch_no,
            other_batch_no=event.other_batch_no,
            stan_number=event.stan,
        )
        for event in shown
    )
    return _check("terminal.events", "terminal", *title, Status.PASSED, *lines)


# Why a TCP connect failed (NetworkProbe.error, from _gather.tcp_probe), for a shop owner.
TCP_FAILURE_WORDS: Final = {
    TCP_REFUSED: (
        "the host's machine answered but nothing listens on that port: the host program is "
        "not running, or the port set in the terminal is wrong",
        "主机所在机器有响应,但该端口没有服务在监听:主机程序未运行,或终端设置的端口有误",
    ),
    TCP_TIMEOUT: (
        "no answer at all within the deadline: the line to the host drops everything "
        "(check cable, router or SIM signal; a firewall)",
        "在时限内没有任何响应:到主机的线路不通(请检查网线、路由器或SIM卡信号;防火墙)",
    ),
    TCP_UNREACHABLE: (
        "no route to the host: the terminal's own network is down "
        "(check cable, router or SIM signal)",
        "没有到主机的路由:终端本身的网络不通(请检查网线、路由器或SIM卡信号)",
    ),
    TCP_UNRESOLVED: (
        "the host's name does not resolve: check the host address set in the terminal",
        "无法解析主机名称:请检查终端设置的主机地址",
    ),
}
_TCP_OTHER_WORDS: Final = (
    "the connection failed: check the host address and the network",
    "连接失败:请检查主机地址和网络",
)


def _tcp(evidence: Evidence) -> Check:
    title = ("host reachable (TCP)", "主机可达(TCP连接)")
    probe = evidence.network
    if probe is None or probe.tcp_reachable is None:
        return _check(
            "network.tcp",
            "network",
            *title,
            Status.NOT_CHECKED,
            Line("no connection was tried", "未尝试连接"),
        )
    if probe.tcp_reachable:
        return _check(
            "network.tcp",
            "network",
            *title,
            Status.PASSED,
            Line(
                f"{probe.address} answered; connecting took {probe.connect_ms} ms",
                f"{probe.address} 可连接,建立连接用时 {probe.connect_ms} 毫秒",
            ),
        )
    en, zh = TCP_FAILURE_WORDS.get(probe.error or "", _TCP_OTHER_WORDS)
    return _check(
        "network.tcp",
        "network",
        *title,
        Status.FAILED,
        Line(f"could not connect to {probe.address}: {en}", f"无法连接 {probe.address}:{zh}"),
    )


def _echo(evidence: Evidence) -> Check:
    title = ("echo test round trips", "回响测试往返")
    probe = evidence.network
    if probe is None or not probe.echo_sent:
        return _check(
            "network.echo",
            "network",
            *title,
            Status.NOT_CHECKED,
            Line("no echo test was sent", "未发送回响测试"),
        )
    answered = [trip for trip in probe.echo_round_trips_ms if trip is not None]
    wait = "" if probe.answer_wait_ms is None else f" within {probe.answer_wait_ms / 1000:g} s"
    wait_zh = "" if probe.answer_wait_ms is None else f"({probe.answer_wait_ms / 1000:g} 秒内)"
    lines = [
        Line(
            f"{len(answered)} of {count(probe.echo_sent, 'echo test')} answered{wait}, "
            f"{probe.echo_lost} lost",
            f"回响测试 {probe.echo_sent} 次,应答{wait_zh} {len(answered)} 次,"
            f"丢失 {probe.echo_lost} 次",
        )
    ]
    if probe.echo_not_sent:
        lines.append(
            Line(
                f"{count(probe.echo_not_sent, 'echo test')} not sent: doctor stops waiting "
                "for an unanswering host after its time limit",
                f"{probe.echo_not_sent} 次回响测试未发送:主机无应答,已达到等待时限",
            )
        )
    if answered:
        slowest = max(answered)
        lines.append(
            Line(
                f"round trips {min(answered)}–{slowest} ms",
                f"往返时间 {min(answered)}–{slowest} 毫秒",
            )
        )
    if probe.echo_lost == probe.echo_sent:
        status = Status.FAILED
        lines.append(
            Line(
                "the host accepts connections but does not answer at all",
                "主机接受连接,但完全不应答",
            )
            if probe.tcp_reachable
            else Line("the host does not answer at all", "主机完全无应答")
        )
    elif probe.echo_lost:
        status = Status.FAILED
        lines.append(
            Line(
                "some messages are lost on the way: a transaction may time out and be reversed",
                "部分报文在网络中丢失:交易可能超时并被冲正",
            )
        )
    elif answered and max(answered) > ECHO_SLOW_MS:
        status = Status.WARNING
        lines.append(Line("the network is slow", "网络较慢"))
    else:
        status = Status.PASSED
        lines.append(Line("the network is fine", "网络正常"))
    return _check("network.echo", "network", *title, status, *lines)


def _host_settlement(evidence: Evidence) -> Check:
    title = ("host: last settlement of this terminal", "主机:本终端最近一次结算")
    records = evidence.host_records
    if records is not None:
        last = records.last_settled
        if last is None:
            return _check(
                "host.settlement",
                "host",
                *title,
                Status.PASSED,
                Line(
                    "the host has not closed a batch of this terminal yet",
                    "主机尚未结算过本终端的批次",
                ),
            )
        how_en, how_zh = close_reason_words(last.closed_by)
        result_en, result_zh = close_reason_words(last.settlement_result)
        net_en, net_zh = money(last.approved_net_fen)
        lines = [
            Line(
                f"batch {_b(last.batch_no)} {how_en} (result: {result_en}), "
                f"{count(last.approved_count, 'approval')}, net {net_en}",
                f"批次 {_b(last.batch_no)} {how_zh}(结果:{result_zh}),"
                f"{last.approved_count} 笔,净额 {net_zh}",
            )
        ]
        status = Status.PASSED
        if last.closed_by == "advanced":
            status = Status.WARNING
            lines.append(
                Line(
                    "the terminal did not settle it: the back office compares its approvals "
                    "with the terminal's",
                    "该批次不是终端结算的:需由后台核对其交易与终端记录",
                )
            )
        return _check("host.settlement", "host", *title, status, *lines)
    view = evidence.host_view
    if view is not None and view.reached and view.last_closed_batch_no is not None:
        how_en, how_zh = close_reason_words(view.last_closed_reason)
        return _check(
            "host.settlement",
            "host",
            *title,
            Status.PASSED,
            Line(
                f"the host says its last closed batch is {_b(view.last_closed_batch_no)} "
                f"({how_en})",
                f"主机显示最近关闭的批次为 {_b(view.last_closed_batch_no)}({how_zh})",
            ),
        )
    return _check(
        "host.settlement",
        "host",
        *title,
        Status.NOT_CHECKED,
        Line("the host's settlement records are not at hand", "未取得主机结算记录"),
    )


def _repaired_unbalanced(evidence: Evidence, title: tuple[str, str]) -> Check:
    """What the repairs left the back office, told from the journal (no host store at hand):
    a batch settled not balanced has exception records on the host; a batch set aside is on
    no host batch at all."""
    command = f"posbatch host doctor {evidence.terminal_id}"
    settled = [no for no, reason in evidence.unbalanced_by_repair if reason != _SET_ASIDE]
    aside = [no for no, reason in evidence.unbalanced_by_repair if reason == _SET_ASIDE]
    lines = []
    if settled:
        which = "batch" if len(settled) == 1 else "batches"
        batches = ", ".join(_b(batch_no) for batch_no in settled)
        lines.append(
            Line(
                f"the repairs settled {which} {batches} without balancing: the host keeps what "
                "differs as exception records the back office must work off (money to return "
                f"to cardholders or to pay the merchant); see them with `{command}` or in the "
                "back office",
                f"修复时结算的批次 {batches} 对账不平:差异已由主机记为差错记录,待后台处理"
                f"(需退还持卡人或付给商户的款项);可用 {command} 或在后台查看",
            )
        )
    if aside:
        which = "batch" if len(aside) == 1 else "batches"
        batches = ", ".join(_b(batch_no) for batch_no in aside)
        lines.append(
            Line(
                f"the repairs set {which} {batches} aside, unsettled: the host holds no batch "
                "for its approvals, which are in this journal only — the acquirer's back office "
                "settles them from the journal (`posbatch terminal journal`) and the receipts",
                f"修复时批次 {batches} 被留置(未结算):主机没有对应批次,其成功交易只在本日志中——"
                "由收单机构后台据本日志(posbatch terminal journal)和签购单处理",
            )
        )
    return _check("host.exceptions", "host", *title, Status.WARNING, *lines)


# The journal's close reason of a batch the terminal set aside (ahead of the host).
_SET_ASIDE: Final = "set_aside"


def _host_exceptions(evidence: Evidence) -> Check:
    title = ("host: exceptions (差错) for this terminal", "主机:本终端的差错记录")
    records = evidence.host_records
    if records is None and evidence.unbalanced_by_repair:
        return _repaired_unbalanced(evidence, title)
    if records is None:
        return _check(
            "host.exceptions",
            "host",
            *title,
            Status.NOT_CHECKED,
            Line("the host store is not at hand", "未取得主机记录"),
        )
    if not records.exceptions:
        return _check("host.exceptions", "host", *title, Status.PASSED, Line("none", "无"))
    waiting = [item for item in records.exceptions if not item.resolved]
    worked = len(records.exceptions) - len(waiting)
    if not waiting:  # every record worked off by the back office: nothing left to do
        return _check(
            "host.exceptions",
            "host",
            *title,
            Status.PASSED,
            Line(
                f"{count(worked, 'record')}, all resolved by the back office",
                f"{worked} 条差错记录,后台均已处理",
            ),
        )
    total = sum(item.amount_fen or 0 for item in waiting)
    total_en, total_zh = money(total)
    lines = [
        Line(
            f"{count(len(waiting), 'record')} the back office must work off "
            f"({total_en} in question: money to return to cardholders or to pay the merchant)"
            + (f"; {worked} more resolved already" if worked else ""),
            f"{len(waiting)} 条差错记录待后台处理(涉及金额 {total_zh}:"
            "需退还持卡人或付给商户)" + (f";另有 {worked} 条已处理" if worked else ""),
        )
    ]
    for item in waiting[-EXCEPTIONS_SHOWN_MAX:]:
        stan_en, stan_zh = stan(item.stan)
        kind_en, kind_zh = exception_kind_words(item.kind or item.cause.split(":", 1)[0])
        amount_en, amount_zh = ("", "") if item.amount_fen is None else money(item.amount_fen)
        lines.append(
            Line(
                f"batch {_b(item.batch_no)} {stan_en}: {kind_en}"
                + (f", {amount_en}" if amount_en else ""),
                f"批次 {_b(item.batch_no)} {stan_zh}:{kind_zh}"
                + (f",{amount_zh}" if amount_zh else ""),
            )
        )
    return _check("host.exceptions", "host", *title, Status.WARNING, *lines)


def _host_registry(evidence: Evidence) -> Check:
    title = ("host: terminal registration", "主机:终端登记")
    records = evidence.host_records
    view = evidence.host_view
    if records is not None:
        if not records.registered:
            return _check(
                "host.registry",
                "host",
                *title,
                Status.FAILED,
                Line("the host does not know this terminal", "主机未登记此终端"),
            )
        signed = ("signed on", "已签到") if records.signed_on else ("not signed on", "未签到")
        return _check(
            "host.registry",
            "host",
            *title,
            Status.PASSED,
            Line(f"registered, {signed[0]}", f"已登记,{signed[1]}"),
        )
    if view is not None and view.reached:
        code_en, code_zh = response_words(view.response_code)
        status = Status.PASSED if view.response_code == "00" else Status.FAILED
        return _check(
            "host.registry",
            "host",
            *title,
            status,
            Line(f"the host answered the echo test: {code_en}", f"主机应答回响测试:{code_zh}"),
        )
    return _check(
        "host.registry",
        "host",
        *title,
        Status.NOT_CHECKED,
        Line("the host did not answer", "主机未应答"),
    )


def _batch_capacity(evidence: Evidence) -> Check:
    """The settlement totals (field 48) count at most 999 debits and 999 credits per card
    class, in at most 12 digits of fen: a batch past that cannot be settled by its totals."""
    title = ("batch capacity (the settlement totals, field 48)", "批次容量(结算总额,第48域)")
    journal = evidence.journal
    records = evidence.host_records
    over_on_host = [b for b in records.batches if b.over_capacity] if records is not None else []
    if journal is None and records is None:
        return _check("batch.capacity", "batch", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    failed = []
    if journal is not None and journal.batch_over_capacity:
        en, zh = capacity_words(journal.batch_over_capacity)
        failed.append(
            Line(
                f"batch {_b(journal.batch_no)} holds more than the settlement totals (field "
                f"48) can count: {en}",
                f"批次 {_b(journal.batch_no)} 超出结算总额的容量:{zh}",
            )
        )
    for batch in over_on_host:
        en, zh = capacity_words(batch.over_capacity)
        state_en, state_zh = batch_state_words(batch.state)
        failed.append(
            Line(
                f"the host's batch {_b(batch.batch_no)} ({state_en}) holds more than the "
                f"settlement totals (field 48) can count: {en}",
                f"主机批次 {_b(batch.batch_no)}({state_zh})超出结算总额的容量:{zh}",
            )
        )
    if failed:
        return _check("batch.capacity", "batch", *title, Status.FAILED, *failed)
    if journal is None:
        return _check(
            "batch.capacity", "batch", *title, Status.PASSED,
            Line("the host's unsettled batches fit the settlement totals",
                 "主机未结算批次均在结算总额容量之内"),
        )  # fmt: skip
    lines = [
        Line(
            f"batch {_b(journal.batch_no)}: {journal.batch_fullest} on its fullest counter; "
            f"the terminal settles by itself at {journal.batch_limit} (the totals count at "
            f"most {TOTAL_COUNT_MAX})",
            f"批次 {_b(journal.batch_no)}:单项最多 {journal.batch_fullest} 笔;终端在 "
            f"{journal.batch_limit} 笔时自动结算(结算总额最多 {TOTAL_COUNT_MAX} 笔)",
        )
    ]
    if journal.batch_fullest >= journal.batch_limit:
        lines.append(_AT_THE_LIMIT)
    return _check("batch.capacity", "batch", *title, Status.PASSED, *lines)


# A batch at the terminal's own limit is not a failure: the engine settles it before the
# next sale or refund and carries on in the next batch (a settlement that fails on the
# way is another cause: interrupted, lost answer, network).
_AT_THE_LIMIT: Final = Line(
    "full at the terminal's limit: it settles this batch by itself before the next sale or "
    "refund, then carries on in the next batch (nothing to repair)",
    "已达终端的笔数上限:下一笔消费或退货前终端会自动结算本批次,再在新批次中继续(无需修复)",
)


_CHECKS: Final = (
    _batch_number,
    _batch_state,
    _batch_capacity,
    _stan,
    _manual_edits,
    _chain,
    _schema,
    _disk,
    _clock,
    _reversals,
    _events,
    _tcp,
    _echo,
    _host_registry,
    _host_settlement,
    _host_exceptions,
)


def run_checks(evidence: Evidence) -> tuple[Check, ...]:
    """Every check, in the order a support desk reads them."""
    return tuple(check(evidence) for check in _CHECKS)
