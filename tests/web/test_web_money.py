"""The merchant's money in the console: the statement page and its CSV say what
``posbatch clearing statement`` says, a merchant sees only its own, and ops set a fee
schedule with ``host set-fees``' rules (a day under way or cleared is refused), audited."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa
from web_world import MERCHANT_A, MERCHANT_B, STANDARD_FEES, World, log_in, scan

from posbatch.backoffice import AuditFilter, fee_book, mask_card_numbers, trading_day
from posbatch.clearing import (
    CardClass,
    ClearingRules,
    FeeSchedule,
    MerchantTerms,
    SettlementCycle,
    cleared_note,
    parse_fee_schedule,
    render_statement,
    statement_csv,
)
from posbatch.errors import PosbatchError
from posbatch.host import ClearingStore
from posbatch.host import _schema as t

DAY = "2026-12-05"  # merchant A's trading day: seven sales, a declined one, an exception
RATES = {"debit": "0.55%", "credit": "0.50%", "foreign_debit": "2.50%", "foreign_credit": "2.50%"}


async def test_the_statement_page_shows_what_the_cli_prints(
    world: World, client: httpx.AsyncClient
) -> None:
    """mia's statement of 5 Dec: gross 120.30, fees 0.72 (0.60 %), net 119.58, money on
    Monday 7 Dec — and its text export, word for word, `posbatch clearing statement`."""
    await log_in(client, "mia")
    answer = await client.get("/statements", params={"merchant_id": MERCHANT_A, "date": DAY})
    assert 200 == answer.status_code
    expected = ClearingStore(world.store).statement(MERCHANT_A, date(2026, 12, 5))
    assert (12030, 72, 11958) == (expected.gross_fen, expected.fee_fen, expected.net_fen)
    for shown in ("¥120.30", "¥0.72", "¥119.58", "2026-12-07", "622202*********0128"):
        assert shown in answer.text
    assert 7 == answer.text.count("<td>消费 sale</td>")
    text = await client.get("/statements.txt", params={"merchant_id": MERCHANT_A, "date": DAY})
    printed = f"{render_statement(expected)}\n{cleared_note(date(2026, 12, 5), False)}\n"
    assert printed.encode("utf-8") == text.content  # as the CLI prints it, its last line too


async def test_a_statement_text_downloaded_before_the_clearing_run_says_so(
    world: World, client: httpx.AsyncClient
) -> None:
    """The text export of a day not cleared ended with the day's total and arrival, and
    nothing said the figures could still change (the CLI prints "not cleared yet" under
    them); once the day is cleared it says so, as the CLI does."""
    await log_in(client, "mia")
    params = {"merchant_id": MERCHANT_A, "date": DAY}
    before = (await client.get("/statements.txt", params=params)).text
    assert before.endswith(
        "未清算 not cleared yet: computed from the records as they are now "
        f"(posbatch clearing run --date {DAY} once the day has ended)\n"
    )
    ClearingStore(world.store).clear_day(date(2026, 12, 5), now=world.clock() + timedelta(days=3))
    after = (await client.get("/statements.txt", params=params)).text
    kept = f"已清算 cleared: these are the figures kept by the clearing run of {DAY}\n"
    assert after.endswith(kept)


async def test_a_statement_csv_downloaded_before_the_clearing_run_says_so(
    world: World, client: httpx.AsyncClient
) -> None:
    """The CSV export said nothing of whether the day was cleared (the text and the page
    did): its summary block now ends with `已清算 cleared,no`, then `yes` once cleared."""
    await log_in(client, "mia")
    params = {"merchant_id": MERCHANT_A, "date": DAY}

    async def cleared_cell() -> list[str]:
        text = (await client.get("/statements.csv", params=params)).text.lstrip("\ufeff")
        rows = list(csv.reader(io.StringIO(text)))
        return next(row for row in rows[: rows.index([])] if row[0] == "已清算 cleared")

    before = await cleared_cell()
    ClearingStore(world.store).clear_day(date(2026, 12, 5), now=world.clock() + timedelta(days=3))
    assert (["已清算 cleared", "no"], ["已清算 cleared", "yes"]) == (before, await cleared_cell())


async def test_the_overview_does_not_call_a_net_before_fees_what_the_statement_calls_net(
    client: httpx.AsyncClient,
) -> None:
    """mia's 5 Dec: the overview's card said '净额 net ¥120.30' (sales − credits) and the
    statement '净额 net ¥119.58' (after fees): two nets for one day. The overview's is now
    named for what it is."""
    await log_in(client, "mia")
    overview = (await client.get("/", params={"day": DAY})).text
    statement = (await client.get("/statements", params={"date": DAY})).text
    card = re.search(r'<div class="card" id="overview-net">(.*?)</div>', overview, re.S)
    assert card is not None and "¥120.30" in card[1] and "before fees" in card[1]
    assert "净额 <small>net</small>" not in overview and "¥119.58" in statement


async def test_the_statement_csv_is_the_cli_file(world: World, client: httpx.AsyncClient) -> None:
    """/statements.csv is byte for byte what `clearing statement --csv` writes (BOM, safe cells)."""
    await log_in(client, "sam")
    answer = await client.get("/statements.csv", params={"merchant_id": MERCHANT_A, "date": DAY})
    expected = statement_csv(ClearingStore(world.store).statement(MERCHANT_A, date(2026, 12, 5)))
    assert 200 == answer.status_code and answer.headers["content-type"].startswith("text/csv")
    assert expected.encode("utf-8-sig") == answer.content
    assert f"statement-{MERCHANT_A}-20261205.csv" in answer.headers["content-disposition"]


async def test_a_merchant_sees_only_its_own_statement(client: httpx.AsyncClient) -> None:
    """mia: her merchant by default; merchant B's statement and CSV are 404 and show nothing."""
    await log_in(client, "mia")
    own = await client.get("/statements", params={"date": DAY})
    assert 200 == own.status_code and "¥120.30" in own.text
    for url in ("/statements", "/statements.csv"):
        answer = await client.get(url, params={"merchant_id": MERCHANT_B, "date": "2026-12-06"})
        assert 404 == answer.status_code, url
        assert "77.00" not in answer.text and "4321" not in answer.text


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({}, 200, "choose a merchant"),
        ({"merchant_id": "898110054119999"}, 404, "no such merchant on this host"),
        ({"merchant_id": MERCHANT_A, "date": "2026-02-30"}, 400, "must be a real date written"),
        ({"merchant_id": "6222021234567890128"}, 400, "a merchant id is 15"),
    ],
)
async def test_statement_requests_staff_may_get_wrong(
    client: httpx.AsyncClient, params: dict[str, str], status: int, words: str
) -> None:
    await log_in(client, "olga")
    answer = await client.get("/statements", params=params)
    assert (status, True) == (answer.status_code, words in answer.text)
    assert "Traceback" not in answer.text


async def test_the_csv_without_a_merchant_is_a_clear_error(client: httpx.AsyncClient) -> None:
    await log_in(client, "olga")
    answer = await client.get("/statements.csv")
    assert 400 == answer.status_code and "choose the merchant" in answer.text


async def test_ops_set_a_fee_schedule_from_tomorrow(
    world: World, client: httpx.AsyncClient
) -> None:
    """The schedule is stored as `host set-fees` stores it, shown as upcoming, and audited
    with the schedule it replaces (the standard) and the new one."""
    csrf = await log_in(client, "olga")
    form = {"csrf_token": csrf, "merchant_id": MERCHANT_A, "effective_from": "2026-12-07",
            **RATES, "debit_cap": "18.00"}  # fmt: skip
    answer = await client.post("/fees", data=form)
    assert (303, "/fees?msg=fees-set") == (answer.status_code, answer.headers["location"])
    (saved,) = ClearingStore(world.store).fee_schedules(MERCHANT_A)
    assert (date(2026, 12, 7), Decimal("0.0055"), 1800, None) == (
        saved.effective_from, saved.rates[CardClass.DOMESTIC_DEBIT],
        saved.cap_fen(CardClass.DOMESTIC_DEBIT), saved.cap_fen(CardClass.DOMESTIC_CREDIT),
    )  # fmt: skip
    page = await client.get("/fees?msg=fees-set")
    assert "fee schedule set" in page.text and "upcoming 待生效" in page.text
    done = world.office.audit.search(AuditFilter(action="fees.set"))
    assert ["done", "requested"] == [entry.outcome for entry in done]
    assert (MERCHANT_A, "olga") == (done[0].target, done[0].actor)
    assert done[0].before is not None and done[0].before["merchant_id"] is None
    assert done[0].after is not None and "0.55% cap 18.00" == done[0].after["domestic-debit"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"effective_from": "2026-12-05"}, "earlier days are cleared"),
        ({"credit": "0.6"}, "must be a percentage with its sign"),
        ({"debit": "60%"}, "is over 10.00%: a typo?"),
        ({"debit_cap": "-1"}, "must be yuan with at most 2 decimals"),
        ({"foreign_credit": ""}, "setting fees needs foreign_credit"),
        ({"merchant_id": "123"}, "a merchant id is 15 letters or digits"),
        ({"effective_from": "tomorrow"}, "must be a real date written YYYY-MM-DD"),
    ],
)
async def test_a_refused_fee_schedule_is_one_line_on_the_page(
    world: World, client: httpx.AsyncClient, change: dict[str, str], words: str
) -> None:
    """400, the reason on the fee page with what was typed, nothing stored, no traceback."""
    csrf = await log_in(client, "olga")
    form = {"csrf_token": csrf, "merchant_id": MERCHANT_A, "effective_from": "2026-12-07",
            **RATES, **change}  # fmt: skip
    answer = await client.post("/fees", data=form)
    assert 400 == answer.status_code and "Traceback" not in answer.text
    assert words in answer.text and 'role="alert"' in answer.text
    assert [] == ClearingStore(world.store).fee_schedules(MERCHANT_A)


async def test_a_fee_schedule_for_a_merchant_the_host_does_not_have_is_refused(
    world: World, client: httpx.AsyncClient
) -> None:
    """A merchant id typed one digit wrong was stored as a schedule of nobody and the page
    said "fee schedule set" (the merchant meant kept its old rates): 400, the form as typed,
    nothing stored."""
    csrf = await log_in(client, "olga")
    typo = MERCHANT_A[:-1] + ("0" if MERCHANT_A[-1] != "0" else "1")
    form = {"csrf_token": csrf, "merchant_id": typo, "effective_from": "2026-12-07", **RATES}
    answer = await client.post("/fees", data=form)
    assert 400 == answer.status_code
    assert "no terminal of that merchant is registered on this host" in answer.text
    assert f'value="{mask_card_numbers(typo)}"' in answer.text  # as typed (a Luhn-valid id masked)
    assert [] == ClearingStore(world.store).fee_schedules(typo)


async def test_a_past_day_is_refused_and_audited(world: World, client: httpx.AsyncClient) -> None:
    csrf = await log_in(client, "olga")
    form = {"csrf_token": csrf, "merchant_id": MERCHANT_A, "effective_from": "2026-12-01",
            **RATES}  # fmt: skip
    assert 400 == (await client.post("/fees", data=form)).status_code
    refused = world.office.audit.search(AuditFilter(action="fees.set", outcome="refused"))
    assert 1 == len(refused) and "earlier days are cleared" in refused[0].detail


async def test_setting_fees_needs_the_csrf_token(world: World, client: httpx.AsyncClient) -> None:
    await log_in(client, "olga")
    form = {"merchant_id": MERCHANT_A, "effective_from": "2026-12-07", **RATES}
    assert 403 == (await client.post("/fees", data=form)).status_code
    assert [] == ClearingStore(world.store).fee_schedules(MERCHANT_A)


async def test_the_fee_page_shows_what_is_in_force(shared_client: httpx.AsyncClient) -> None:
    """support reads it (no form); the standard is in force for both merchants."""
    await log_in(shared_client, "sam")
    answer = await shared_client.get("/fees")
    assert 200 == answer.status_code and 'action="/fees"' not in answer.text
    assert 3 == answer.text.count("境内借记卡 domestic debit <strong>0.60%</strong> cap 20.00")
    assert [] == scan(answer.text)


# --- the pure pieces -------------------------------------------------------------------------

TODAY = date(2026, 12, 6)


def _schedule(merchant_id: str | None, day: int, schedule_id: int) -> FeeSchedule:
    rates = {card_class: Decimal("0.006") for card_class in CardClass}
    return FeeSchedule(merchant_id, date(2026, 12, day), rates, schedule_id=schedule_id)


@pytest.mark.parametrize(
    ("schedules", "merchant_states", "falls_back"),
    [
        ((), [], False),
        (((None, 1, 1),), [], True),
        (((None, 1, 1), (MERCHANT_A, 6, 2)), ["in force 生效中"], False),
        (((None, 1, 1), (MERCHANT_A, 7, 2)), ["upcoming 待生效"], True),
        (
            ((MERCHANT_A, 2, 1), (MERCHANT_A, 3, 2), (MERCHANT_A, 9, 3)),
            ["upcoming 待生效", "in force 生效中", "superseded 已替换"],
            False,
        ),
        (  # the same day twice: the later entered wins (a correction)
            ((MERCHANT_A, 4, 1), (MERCHANT_A, 4, 2)),
            ["in force 生效中", "superseded 已替换"],
            False,
        ),
        (  # …also before that day: the one corrected will never take effect (it read
            # "upcoming" beside its correction, two rates for one day)
            ((MERCHANT_A, 1, 1), (MERCHANT_A, 9, 2), (MERCHANT_A, 9, 3), (MERCHANT_A, 9, 4)),
            ["upcoming 待生效", "superseded 已替换", "superseded 已替换", "in force 生效中"],
            False,
        ),
    ],
)
def test_fee_book_states(
    schedules: tuple[tuple[str | None, int, int], ...],
    merchant_states: list[str],
    falls_back: bool,
) -> None:
    """Newest first: upcoming, in force today, superseded; the standard when none of its own."""
    rules = ClearingRules(fee_schedules=tuple(_schedule(*entry) for entry in schedules))
    book = fee_book(rules, [MERCHANT_A], TODAY)
    assert [None, MERCHANT_A] == [owner.merchant_id for owner in book]
    merchant = book[1]
    assert merchant_states == [entry.state for entry in merchant.schedules]
    assert falls_back == merchant.standard_applies
    assert (merchant.in_force is None) == (not schedules or schedules == ((MERCHANT_A, 7, 2),))


def test_fee_book_lists_merchants_with_terms_only() -> None:
    rules = ClearingRules(
        merchant_terms=(MerchantTerms(MERCHANT_B, date(2026, 12, 1), SettlementCycle.T0),)
    )
    book = fee_book(rules, [MERCHANT_A], TODAY)
    assert [None, MERCHANT_A, MERCHANT_B] == [owner.merchant_id for owner in book]
    assert SettlementCycle.T0 == book[2].terms_in_force.cycle
    assert ["in force 生效中"] == [entry.state for entry in book[2].terms]


def test_fee_book_shows_corrected_upcoming_terms_superseded() -> None:
    """Terms set twice for a coming day (T+0, then corrected to T+1): the page showed both
    "upcoming"; the one that day takes is, the other is superseded."""
    coming = date(2026, 12, 9)
    rules = ClearingRules(
        merchant_terms=(
            MerchantTerms(MERCHANT_A, coming, SettlementCycle.T0, terms_id=1),
            MerchantTerms(MERCHANT_A, coming, SettlementCycle.T1, terms_id=2),
        )
    )
    terms = fee_book(rules, [MERCHANT_A], TODAY)[1].terms
    assert [(SettlementCycle.T1, "upcoming 待生效"), (SettlementCycle.T0, "superseded 已替换")] == [
        (entry.terms.cycle, entry.state) for entry in terms
    ]


def test_parse_fee_schedule_reads_what_set_fees_reads() -> None:
    rates = {card_class: "0.60%" for card_class in CardClass}
    caps = {CardClass.DOMESTIC_DEBIT: "20.00"}
    assert STANDARD_FEES == parse_fee_schedule(None, "2026-12-05", rates, caps, "0.00%")


@pytest.mark.parametrize(
    ("rate", "cap", "day", "instant", "message"),
    [
        ("0.6", None, "2026-12-05", "0%", "rate '0.6' must be a percentage with its sign"),
        (
            "0.60%",
            "0",
            "2026-12-05",
            "0%",
            "a fee cap of 0.00 is refused (it would make every "
            "such fee 0.00): leave the cap out for no cap, or give the rate as 0% for no fee — "
            "the domestic-debit cap",
        ),
        ("0.60%", "0.00", "2026-12-05", "0%", "a fee cap of 0.00 is refused"),
        ("0.60%", "-0", "2026-12-05", "0%", "amount '-0' must be yuan"),
        ("0.60%", None, "2026-12-32", "0%", "date '2026-12-32' must be a real date"),
        ("0.60%", None, "2026-12-05", "0.00001%", "rate '0.00001%' has more than 4 decimals"),
    ],
)
def test_parse_fee_schedule_refusals(
    rate: str, cap: str | None, day: str, instant: str, message: str
) -> None:
    """The first value that does not parse is the one-line error (CLI and page alike)."""
    rates = {card_class: rate for card_class in CardClass}
    with pytest.raises(PosbatchError) as caught:
        parse_fee_schedule(MERCHANT_A, day, rates, {CardClass.DOMESTIC_DEBIT: cap}, instant)
    assert str(caught.value).startswith(message)


async def test_a_statement_without_fees_names_its_merchant_whole(
    world: World, client: httpx.AsyncClient
) -> None:
    """A day with sales and no fee schedule: the 409 page said `no fee schedule in force for
    merchant 898110*****0001` — the merchant id, read from the store and passing the card
    check, masked like a card number, where the CLI (rightly) shows it whole."""
    with world.store.engine.begin() as connection:
        connection.execute(sa.delete(t.fee_schedules))
    await log_in(client, "olga")
    answer = await client.get("/statements", params={"merchant_id": MERCHANT_A, "date": DAY})
    assert 409 == answer.status_code
    assert f"no fee schedule in force for merchant {MERCHANT_A} on {DAY}" in answer.text


async def test_the_statement_page_does_not_lead_into_a_day_not_begun(
    world: World, client: httpx.AsyncClient
) -> None:
    """The statement of today linked to tomorrow's, and tomorrow's read as a day to be paid
    ("to be paid 0.00 on …", "not cleared yet"); like the overview, the page goes no further
    than today, and a later day typed in says it has not begun."""
    await log_in(client, "mia")
    today = trading_day(world.clock(), cutoff=world.office.cutoff)
    tomorrow = (today + timedelta(days=1)).isoformat()
    yesterday = (await client.get("/statements", params={"date": str(today - timedelta(1))})).text
    assert f"date={today.isoformat()}" in yesterday
    shown = (await client.get("/statements", params={"date": today.isoformat()})).text
    assert f"date={tomorrow}" not in shown and "has not begun" not in shown
    later = (await client.get("/statements", params={"date": tomorrow})).text
    assert "交易日尚未开始 this trading day has not begun" in later
    assert "not cleared yet" not in later
