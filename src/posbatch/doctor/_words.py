"""How doctor says things to a shop owner and a support desk, in English and Chinese.

One place for the words every line uses, so that the report reads the same
everywhere:

- times in Beijing time, as DESIGN.md shows every time (``shown_at``: stored in UTC);
- counts with their plural (``1 approval``, ``2 approvals``; Chinese has none);
- money in yuan as the terminal shows it (``RMB 70.00`` / ``70.00 元``), never fen;
- the protocol's jargon explained where it is used: the STAN is the
  terminal's "message number (STAN)" (流水号), 0500 a "settlement request
  (0500)", field 63 "the host's note in its answer (field 63)";
- the host's batch states, the journal's events, the host's exception kinds
  and the errors of a repair told in Chinese too — a Chinese line never
  carries an English fragment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from posbatch.batch.codes import lookup
from posbatch.batch.model import shown_at
from posbatch.batch.money import format_fen
from posbatch.batch.totals import TOTAL_AMOUNT_FEN_MAX, TOTAL_COUNT_MAX, TotalsCounter
from posbatch.errors import (
    ConfigError,
    Declined,
    HostUnreachable,
    JournalIntegrityError,
    NotSignedOn,
    PosbatchError,
    StorageError,
)

__all__ = [
    "Line",
    "batch_state_words",
    "capacity_words",
    "close_reason_words",
    "count",
    "duration",
    "error_line",
    "event_line",
    "exception_kind_words",
    "money",
    "response_words",
    "shown_at",
    "stan",
]


@dataclass(frozen=True, slots=True)
class Line:
    """One line of evidence or advice, in English and Chinese."""

    en: str
    zh: str


def count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 approval``, ``2 approvals`` (``plural`` when it is not noun + s)."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"


_UNITS: Final = (
    (86_400, "day", "天"),
    (3_600, "hour", "小时"),
    (60, "minute", "分钟"),
    (1, "second", "秒"),
)


def duration(seconds: int, *, exact: bool = True) -> tuple[str, str]:
    """A span people read at a glance, its exact seconds after it from a minute on (unless
    not ``exact``): (``3 days (259200 s)``, ``3 天(259200 秒)``); (``45 s``, ``45 秒``).
    Two units at most (``1 day 2 hours``, ``5 minutes 3 seconds``): the rest is in the
    seconds."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds} s", f"{seconds} 秒"
    parts: list[tuple[int, str, str]] = []
    rest = seconds
    for size, noun, zh in _UNITS:
        number, rest = divmod(rest, size)
        if number or parts:
            parts.append((number, noun, zh))
        if len(parts) == 2:
            break
    parts = [part for part in parts if part[0]]
    en = " ".join(count(number, noun) for number, noun, _zh in parts)
    zh = " ".join(f"{number} {unit}" for number, _noun, unit in parts)
    if not exact:
        return en, zh
    return f"{en} ({seconds} s)", f"{zh}({seconds} 秒)"


def money(amount_fen: int) -> tuple[str, str]:
    """(``RMB 70.00``, ``70.00 元``): yuan with two decimals, as the terminal shows it."""
    text = format_fen(amount_fen)
    return f"RMB {text}", f"{text} 元"


def stan(number: int | None) -> tuple[str, str]:
    """(``message number (STAN) 000014``, ``流水号 000014``)."""
    digits = "?" if number is None else f"{number:06d}"
    return f"message number (STAN) {digits}", f"流水号 {digits}"


def capacity_words(over: tuple[tuple[str, int], ...]) -> tuple[str, str]:
    """The field-48 counters a batch holds too much for, each with what it holds:
    (``domestic debits (sales): 1001 (at most 999)``, ``内卡借记(消费) 1001 笔(最多 999 笔)``).

    ``over`` may come from a support bundle: a name that is no counter is told as such.
    """
    en_parts, zh_parts = [], []
    for name, value in over:
        try:
            counter = TotalsCounter(name)
        except ValueError:
            en_parts.append("a counter this doctor does not know")
            zh_parts.append("未知计数项")
            continue
        what_en, what_zh = counter.words
        if name.endswith("_AMOUNT"):
            held_en, held_zh = money(value)
            most_en, most_zh = money(TOTAL_AMOUNT_FEN_MAX)
            en_parts.append(f"{what_en}: {held_en} (at most {most_en})")
            zh_parts.append(f"{what_zh} {held_zh}(最多 {most_zh})")
        else:
            en_parts.append(f"{what_en}: {value} (at most {TOTAL_COUNT_MAX})")
            zh_parts.append(f"{what_zh} {value} 笔(最多 {TOTAL_COUNT_MAX} 笔)")
    return "; ".join(en_parts), ";".join(zh_parts)


_BATCH_STATES: Final = {
    "OPEN": ("open", "未结算"),
    "UPLOADING": ("waiting for batch upload", "批上送中"),
    "CLOSED": ("closed", "已结算"),
    "NONE": ("not opened yet", "尚未开启"),
    "open": ("open", "未结算"),
    "settling": ("settling (not finished)", "结算中(未完成)"),
    "uploading": ("batch upload under way", "批上送中(未完成)"),
    "closed": ("closed", "已结算"),
}


def batch_state_words(state: str | None) -> tuple[str, str]:
    """A batch state (the host's OPEN/UPLOADING/CLOSED or the journal's) in plain words."""
    if state is None:
        return "unknown", "未知"
    return _BATCH_STATES.get(state, (state.lower(), "状态未知"))


_CLOSE_REASONS: Final = {
    "BALANCED": ("settled, balanced", "结算平账"),
    "UPLOADED": ("settled after batch upload", "批上送后结算"),
    "ADVANCED": ("closed by the host's back office", "由主机后台关闭"),
    "balanced": ("settled, balanced", "结算平账"),
    "uploaded": ("settled after batch upload", "批上送后结算"),
    "advanced": ("closed by the host's back office", "由主机后台关闭"),
    "host_closed": ("closed by the host", "由主机关闭"),
    "set_aside": ("set aside for the back office", "留待后台处理"),
    "not balanced": ("not balanced", "对账不平"),
}


def close_reason_words(reason: str | None) -> tuple[str, str]:
    """How a batch closed (the host's Q= or close reason, the journal's close reason)."""
    if reason is None:
        return "not settled", "未结算"
    return _CLOSE_REASONS.get(reason, (reason.replace("_", " "), "其他方式关闭"))


_EXCEPTION_KINDS: Final = {
    "terminal-only": (
        "uploaded by the terminal, not approved on the host",
        "终端上送但主机未批准的交易",
    ),
    "host-only": (
        "approved on the host, missing from the terminal's upload",
        "主机已批准但终端未上送的交易",
    ),
    "amount-differs": ("amounts differ between terminal and host", "终端与主机金额不一致"),
    "pan-differs": ("card numbers differ between terminal and host", "终端与主机卡号不一致"),
    "upload-count-differs": ("batch upload count differs", "批上送笔数不一致"),
    "late-reversal": (
        "reversal after the batch closed: the cardholder was charged",
        "批次关闭后才到的冲正:持卡人已被扣款",
    ),
    "late-void": (
        "void after the batch closed: the sale stands, refund instead",
        "批次关闭后才到的撤销:原消费有效,需改做退货",
    ),
    "reversal-mismatch": ("reversal that does not fit its original", "与原交易不符的冲正"),
    "batch-advanced": (
        "batch closed by the back office with approvals in it",
        "后台关闭了含有成功交易的批次",
    ),
    "settled-after-advance": (
        "settlement that differs from a batch the back office closed",
        "与后台关闭批次不一致的结算",
    ),
    "settled-again-differs": (
        "a closed batch settled again with other totals (an older copy of the journal?)",
        "已结算的批次再次结算且金额不符(可能是日志的旧副本)",
    ),
    "batch-over-capacity": (
        "a batch that held more than the settlement totals can count, closed record by record "
        "(its recorded totals are capped: the records are the truth)",
        "超出结算总额容量的批次,已逐笔关闭(记录的总额被截断,以逐笔记录为准)",
    ),
}


def exception_kind_words(kind: str) -> tuple[str, str]:
    """An exception (差错) kind of the host store, in plain words."""
    return _EXCEPTION_KINDS.get(kind, (kind.replace("-", " ") or "exception", "差错记录"))


def response_words(code: str | None) -> tuple[str, str]:
    """(``97 terminal not registered``, ``97 终端未登记``) for a response code."""
    if code is None:
        return "no response code", "无应答码"
    row = lookup(code)
    return f"{code} {row.meaning_en}", f"{code} {row.meaning_zh}"


# The journal's events, in Chinese (the English line keeps the engine's own message).
_EVENTS_ZH: Final = {
    "recovery": "批次号恢复",
    "batch_renumbered": "批次号已更改",
    "batch_closed": "批次已关闭",
    "closed_by_host": "批次由主机关闭",
    "reversed": "冲正已完成",
    "unanswered": "请求未收到应答",
    "manual_batch_no": "手工输入批次号(主机已确认)",
    "manual_batch_no_refused": "手工输入批次号被拒绝",
    "restored": "日志已恢复",
    "reinstalled": "软件重装",
    "duplicate_stan": "主机应答重复交易(94)",
    "resync": "新日志与主机同步",
    "settle_resumed": "继续未完成的结算",
    "software_update": "软件升级",
    "doctor": "诊断工具修复记录",
}


def event_line(
    at: str,
    kind: str,
    detail: str,
    *,
    batch_no: int | None = None,
    other_batch_no: int | None = None,
    stan_number: int | None = None,
) -> Line:
    """One event of the journal's log: the engine's message in English, told in Chinese."""
    zh = _EVENTS_ZH.get(kind, "其他记录")
    numbers = []
    if batch_no is not None:
        numbers.append(f"批次 {batch_no:06d}")
    if other_batch_no is not None:
        numbers.append(f"→ {other_batch_no:06d}")
    if stan_number is not None:
        numbers.append(f"流水号 {stan_number:06d}")
    suffix = ("(" + " ".join(numbers) + ")") if numbers else ""
    return Line(f"{at} {kind.replace('_', ' ')}: {detail}", f"{at} {zh}{suffix}")


def error_line(error: PosbatchError) -> Line:
    """Why a repair failed, in both languages (the English keeps the error's own text)."""
    if isinstance(error, HostUnreachable):
        zh = "主机无应答(网络或主机故障)"
    elif isinstance(error, Declined):
        zh = "主机拒绝:" + response_words(error.response_code)[1]
    elif isinstance(error, NotSignedOn):
        zh = "终端未签到"
    elif isinstance(error, JournalIntegrityError):
        zh = "流水日志损坏"
    elif isinstance(error, StorageError):
        zh = "流水日志读写失败"
    elif isinstance(error, ConfigError):
        zh = "设置或文件有误"
    else:
        zh = "操作未能完成"
    return Line(f"failed: {error}", f"失败:{zh}(详情见英文说明)")
