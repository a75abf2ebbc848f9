"""The overview's chart of batch-number errors (77): drawn to the period's own scale, and
when the period has none, a sentence saying so instead of an axis for a count of one."""

from __future__ import annotations

import re
from datetime import date, timedelta

import httpx
from web_world import log_in

from posbatch.web._svg import batch_error_chart

DAY = "2026-12-05"  # the traded day: merchant A's terminal a2 met a 77


def _axis_top(page: str) -> str | None:
    """The number at the top of the chart's count axis, if a chart is drawn."""
    found = re.search(r'<text x="34" y="16" text-anchor="end" class="axis">(\d+)</text>', page)
    return None if found is None else found[1]


async def test_an_empty_period_says_so_instead_of_drawing_a_0_to_1_axis(
    client: httpx.AsyncClient,
) -> None:
    """Fourteen days before anything traded, the overview drew an axis 0–1 and a legend of
    three causes nobody met; it now says there were no batch-number errors, for which days."""
    await log_in(client, "olga")
    page = (await client.get("/", params={"day": "2026-11-01"})).text
    assert (None, False) == (_axis_top(page), 'class="chart"' in page)
    assert "no batch-number errors (77) in this period 2026-10-19 – 2026-11-01" in page
    assert "本期间 2026-10-19 – 2026-11-01 无批次号错误" in page
    assert "终端批次号落后" not in page  # no legend of causes that did not occur


async def test_a_period_with_errors_draws_them_to_its_own_scale(
    client: httpx.AsyncClient,
) -> None:
    """The traded day's 77 is drawn: an axis from 0 to the busiest day's count, no
    'none' sentence."""
    await log_in(client, "olga")
    page = (await client.get("/", params={"day": DAY})).text
    assert ("1", False) == (_axis_top(page), "no batch-number errors" in page)


def test_the_axis_tops_at_the_busiest_day() -> None:
    """Three days, the busiest with 5 (3 behind, 2 closed): the axis reads 0 to 5 and the
    tallest bar fills the plot."""
    first = date(2026, 12, 1)
    days = [(first + timedelta(days=n), counts) for n, counts in
            enumerate([{}, {"BEHIND": 3, "CLOSED": 2}, {"AHEAD": 1}])]  # fmt: skip
    chart = str(batch_error_chart(days))
    heights = [float(h) for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" '
                                             r'height="([\d.]+)"', chart)]  # fmt: skip
    assert ("5", 172.0) == (_axis_top(chart), round(sum(heights[:2]), 1))
