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

from posbatch.doctor._evidence import Evidence, LocalBatchState

__all__ = [
    "CLOCK_SKEW_FAIL_S",
    "CLOCK_SKEW_WARN_S",
    "ECHO_SLOW_MS",
    "LOW_DISK_BYTES",
    "STALE_AFTER",
    "Check",
    "Line",
    "Status",
    "run_checks",
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
class Line:
    """One line of evidence or advice, in English and Chinese."""

    en: str
    zh: str


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


def batch_age(evidence: Evidence) -> timedelta | None:
    journal = evidence.journal
    if journal is None or journal.oldest_unsettled_at is None:
        return None
    return journal.now - journal.oldest_unsettled_at


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
        if journal.batch_no < host_batch_no
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
    lines.append(
        Line(
            f"{journal.approved_count} approvals, net {journal.approved_net_fen} fen",
            f"{journal.approved_count} 笔成功交易,净额 {journal.approved_net_fen} 分",
        )
    )
    status = Status.PASSED
    if journal.batch_state in (LocalBatchState.SETTLING, LocalBatchState.UPLOADING):
        status = Status.FAILED
        if journal.settlement_request_unanswered:
            lines.append(
                Line(
                    "a settlement request (0500) went out and no answer came back",
                    "结算请求(0500)已发出,未收到应答",
                )
            )
        if journal.upload_records_total:
            lines.append(
                Line(
                    f"{journal.upload_records_acknowledged} of {journal.upload_records_total} "
                    "batch-upload records acknowledged",
                    f"批上送 {journal.upload_records_total} 笔,已确认 "
                    f"{journal.upload_records_acknowledged} 笔",
                )
            )
    host_state = evidence.host_batch_state
    if host_state is not None:
        lines.append(
            Line(
                f"the host's batch {_b(evidence.host_batch_no)} is {host_state}",
                f"主机批次 {_b(evidence.host_batch_no)} 状态 {host_state}",
            )
        )
        if host_state == "UPLOADING":
            status = Status.FAILED
    age = batch_age(evidence)
    if age is not None and age > STALE_AFTER and journal.batch_state != LocalBatchState.CLOSED:
        hours = int(age.total_seconds() // 3600)
        lines.append(
            Line(
                f"the first approval of this batch is {hours} hours old: "
                "not settled for over a day",
                f"本批次第一笔交易已过去 {hours} 小时:超过一天未结算",
            )
        )
        status = Status.FAILED
    return _check("batch.state", "batch", *title, status, *lines)


def _stan(evidence: Evidence) -> Check:
    title = ("STAN continuity", "流水号连续性")
    journal = evidence.journal
    if journal is None:
        return _check("batch.stan", "batch", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    lines = [Line(f"last STAN {journal.last_stan:06d}", f"最后流水号 {journal.last_stan:06d}")]
    status = Status.PASSED
    if journal.stan_gaps:
        status = Status.WARNING
        lines.append(
            Line(
                f"{journal.stan_gaps} STANs missing inside the journal",
                f"流水日志中缺少 {journal.stan_gaps} 个流水号",
            )
        )
    records = evidence.host_records
    if records is not None and records.last_stan is not None:
        lines.append(
            Line(
                f"the host last saw STAN {records.last_stan:06d}",
                f"主机最后流水号 {records.last_stan:06d}",
            )
        )
        if records.last_stan > journal.last_stan:
            status = Status.FAILED
            lines.append(
                Line(
                    "the host has seen STANs this journal never used: counters went back",
                    "主机收到过本日志未使用的流水号:计数器被回退",
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
            f"{entry.at:%Y-%m-%d %H:%M} batch {_b(entry.new_batch_no)} typed in by hand and "
            f"refused: the host has {_b(entry.old_batch_no)}",
            f"{entry.at:%Y-%m-%d %H:%M} 手工输入批次号 {_b(entry.new_batch_no)} 被拒绝:"
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
            f"{edit.at:%Y-%m-%d %H:%M} batch typed in by hand: {_b(edit.old_batch_no)} → "
            f"{_b(edit.new_batch_no)}",
            f"{edit.at:%Y-%m-%d %H:%M} 手工输入批次号:{_b(edit.old_batch_no)} → "
            f"{_b(edit.new_batch_no)}",
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
    where = "" if journal.first_bad_row is None else f" at row {journal.first_bad_row}"
    where_zh = "" if journal.first_bad_row is None else f"(第 {journal.first_bad_row} 行)"
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
        when = f"{update.at:%Y-%m-%d %H:%M}"
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
                f"{journal.journal_started_at:%Y-%m-%d %H:%M}",
                f"本日志于 {journal.journal_started_at:%Y-%m-%d %H:%M} 从批次号 000001 重新开始",
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
    line = Line(f"{mib} MiB free where the journal lives", f"日志所在磁盘剩余 {mib} MiB")
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
    line = Line(
        f"the terminal clock is {abs(skew)} s {direction[0]} the host",
        f"终端时钟{direction[1]}主机 {abs(skew)} 秒",
    )
    if abs(skew) > CLOCK_SKEW_FAIL_S:
        status = Status.FAILED
    elif abs(skew) > CLOCK_SKEW_WARN_S:
        status = Status.WARNING
    else:
        status = Status.PASSED
    return _check("terminal.clock", "terminal", *title, status, line)


def _reversals(evidence: Evidence) -> Check:
    title = ("pending reversals", "待发冲正")
    journal = evidence.journal
    if journal is None:
        return _check("terminal.reversals", "terminal", *title, Status.NOT_CHECKED, _NO_JOURNAL)
    lines = [
        Line(
            f"{journal.pending_reversals} reversals waiting to be sent",
            f"{journal.pending_reversals} 笔冲正待发送",
        )
    ]
    if journal.unanswered_requests:
        lines.append(
            Line(
                f"{journal.unanswered_requests} requests in the journal never got an answer",
                f"日志中有 {journal.unanswered_requests} 笔请求未收到应答",
            )
        )
    if journal.duplicate_answers:
        lines.append(
            Line(
                f"{journal.duplicate_answers} answers were duplicates of an earlier request",
                f"{journal.duplicate_answers} 笔应答为重复交易",
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
        Line(f"{event.at:%Y-%m-%d %H:%M} {event.kind}: {event.detail}",
             f"{event.at:%Y-%m-%d %H:%M} {event.kind}:{event.detail}")
        for event in shown
    )  # fmt: skip
    return _check("terminal.events", "terminal", *title, Status.PASSED, *lines)


def _tcp(evidence: Evidence) -> Check:
    title = ("host reachable (TCP)", "主机可达(TCP)")
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
    why = f" ({probe.error})" if probe.error else ""
    return _check(
        "network.tcp",
        "network",
        *title,
        Status.FAILED,
        Line(
            f"could not connect to {probe.address}{why}: check cable, router or SIM signal",
            f"无法连接 {probe.address}{why}:请检查网线、路由器或SIM卡信号",
        ),
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
    lines = [
        Line(
            f"{len(answered)} of {probe.echo_sent} echo tests answered, {probe.echo_lost} lost",
            f"回响测试 {probe.echo_sent} 次,应答 {len(answered)} 次,丢失 {probe.echo_lost} 次",
        )
    ]
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
        lines.append(Line("the host does not answer at all", "主机完全无应答"))
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
        result = last.settlement_result or "none"
        by = last.closed_by or "?"
        line = Line(
            f"batch {_b(last.batch_no)} closed ({by}), result {result}, "
            f"{last.approved_count} approvals, net {last.approved_net_fen} fen",
            f"批次 {_b(last.batch_no)} 已关闭({by}),结果 {result},"
            f"{last.approved_count} 笔,净额 {last.approved_net_fen} 分",
        )
        status = Status.WARNING if last.closed_by == "advanced" else Status.PASSED
        return _check("host.settlement", "host", *title, status, line)
    view = evidence.host_view
    if view is not None and view.reached and view.last_closed_batch_no is not None:
        return _check(
            "host.settlement",
            "host",
            *title,
            Status.PASSED,
            Line(
                f"sign-on says the host last closed batch {_b(view.last_closed_batch_no)}",
                f"签到应答显示主机最近关闭的批次为 {_b(view.last_closed_batch_no)}",
            ),
        )
    return _check(
        "host.settlement",
        "host",
        *title,
        Status.NOT_CHECKED,
        Line("the host's settlement records are not at hand", "未取得主机结算记录"),
    )


def _host_exceptions(evidence: Evidence) -> Check:
    title = ("host: exceptions (差错) for this terminal", "主机:本终端的差错记录")
    records = evidence.host_records
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
    lines = [
        Line(
            f"{len(records.exceptions)} records for the back office (each has its cause)",
            f"{len(records.exceptions)} 条差错记录待后台处理(均注明原因)",
        )
    ]
    for item in records.exceptions[-EXCEPTIONS_SHOWN_MAX:]:
        stan = "?" if item.stan is None else f"{item.stan:06d}"
        lines.append(
            Line(
                f"batch {_b(item.batch_no)} STAN {stan}: {item.cause}",
                f"批次 {_b(item.batch_no)} 流水号 {stan}:{item.cause}",
            )
        )
    return _check("host.exceptions", "host", *title, Status.WARNING, *lines)


def _host_registry(evidence: Evidence) -> Check:
    title = ("host: terminal registration and sign-on", "主机:终端登记与签到")
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
        code = view.response_code or "?"
        status = Status.PASSED if code == "00" else Status.FAILED
        return _check(
            "host.registry",
            "host",
            *title,
            status,
            Line(f"sign-on answered {code}", f"签到应答码 {code}"),
        )
    return _check(
        "host.registry",
        "host",
        *title,
        Status.NOT_CHECKED,
        Line("the host did not answer a sign-on", "主机未应答签到"),
    )


_CHECKS: Final = (
    _batch_number,
    _batch_state,
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
