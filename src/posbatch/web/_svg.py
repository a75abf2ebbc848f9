"""Server-rendered SVG charts (no JavaScript): batch-number errors by cause, per day."""

from __future__ import annotations

from datetime import date
from typing import Final

from markupsafe import Markup, escape

__all__ = ["REASON_TEXT", "batch_error_chart"]

REASON_TEXT: Final[dict[str, tuple[str, str, str]]] = {
    # reason: (English, 中文, colour)
    "BEHIND": ("terminal behind the host", "终端批次号落后", "#d9822b"),
    "AHEAD": ("terminal ahead of the host", "终端批次号超前", "#8f398f"),
    "CLOSED": ("batch already closed on the host", "批次已在主机关闭", "#2b6cb0"),
    "NOT_SIGNED_ON": ("not signed on", "未签到", "#718096"),
    "FORCED": ("forced by a fault script", "故障脚本强制", "#c53030"),
}
_OTHER: Final = ("other", "其他", "#4a5568")
WIDTH: Final = 720
HEIGHT: Final = 220
LEFT: Final = 40
BOTTOM: Final = 36
TOP: Final = 12


def batch_error_chart(days: list[tuple[date, dict[str, int]]]) -> Markup:
    """A stacked bar per trading day, one colour per cause, with a legend — or, when the
    period has none, one sentence saying so: an empty chart drew a 0–1 axis (a scale for a
    count nobody had) and a legend of causes that did not occur."""
    most = max((sum(counts.values()) for _, counts in days), default=0)
    if not most:
        return _no_errors(days)
    scale_max = most
    plot_height = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT - 10) / max(len(days), 1)
    bar = slot * 0.7
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} '
        f'{HEIGHT + 40}" role="img" aria-labelledby="chart-title">',
        '<title id="chart-title">batch-number errors (77) per trading day, by cause / '
        "每个交易日的批次号错误（77），按原因</title>",
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - 5}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#888"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" class="axis">{scale_max}</text>',
        f'<text x="{LEFT - 6}" y="{HEIGHT - BOTTOM}" text-anchor="end" class="axis">0</text>',
    ]
    seen: list[str] = []
    for index, (day, counts) in enumerate(days):
        x = LEFT + index * slot + (slot - bar) / 2
        y = float(HEIGHT - BOTTOM)
        for reason in sorted(counts):
            count = counts[reason]
            if reason not in seen:
                seen.append(reason)
            en, zh, colour = REASON_TEXT.get(reason, _OTHER)
            height = plot_height * count / scale_max
            y -= height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colour}"><title>{escape(day.isoformat())} {escape(en)} / '
                f"{escape(zh)}: {count}</title></rect>"
            )
        total = sum(counts.values())
        if total:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'class="value">{total}</text>'
            )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
            f'class="axis">{day:%m-%d}</text>'
        )
    legend_x = LEFT
    for reason in seen or ["BEHIND", "AHEAD", "CLOSED"]:
        en, zh, colour = REASON_TEXT.get(reason, _OTHER)
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT + 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT + 17}" class="legend">{escape(zh)} '
            f"{escape(en)}</text>"
        )
        legend_x += 20 + 7 * (len(en) + 2 * len(zh))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text part above is escaped


def _no_errors(days: list[tuple[date, dict[str, int]]]) -> Markup:
    """The sentence in place of a chart with nothing to draw, naming the period it covers."""
    period = ""
    if days:
        first, last = days[0][0], days[-1][0]
        period = f" {first.isoformat()} – {last.isoformat()}"
    text = (
        f"no batch-number errors (77) in this period{period} / "
        f"本期间{period and period + ' '}无批次号错误"
    )
    return Markup('<p class="muted chart-empty">{}</p>').format(text)
