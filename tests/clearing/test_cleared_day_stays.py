"""A cleared day stays as it was cleared (SQLite and PostgreSQL): its arrival date, kept by
the clearing run, never moves with the calendar; and no rule re-prices a transaction
already made — of a cleared day, or of the day under way."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from clearing_world import (
    CREDIT_PAN,
    MERCHANT_ID,
    OTHER_MERCHANT_ID,
    UNKNOWN_BIN_PAN,
    World,
    beijing_time,
    standard_rates,
)

from posbatch.clearing import (
    CardBin,
    FeeSchedule,
    Funding,
    MerchantTerms,
    SettlementCycle,
)
from posbatch.errors import ClearingError
from posbatch.host import ClearingStore, HostStore
from posbatch.host import _schema as t
from posbatch.host.store import MIGRATIONS, VERSION_TABLE

SEP_30 = date(2026, 9, 30)
OCT_8 = date(2026, 10, 8)
OCT_9 = date(2026, 10, 9)
CLEARED_AT = beijing_time("2026-09-30 23:10")  # the nightly run, after the cut-off and grace
NEXT_MORNING = beijing_time("2026-10-01 10:00")


def _cleared_sep_30(world: World) -> None:
    """Two merchants trade on 30 Sep (T+1: money on 8 Oct, after the National Day holidays);
    the night's run clears the day."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    world.till("10000002", OTHER_MERCHANT_ID).sale(20_000, CREDIT_PAN)
    world.clearing.clear_day(SEP_30, now=CLEARED_AT)


def _shown_arrivals(clearing: ClearingStore, day: date) -> list[date]:
    """Every place a cleared day's arrival is shown: statement, summaries, clearing file,
    `clearing arrival --merchant-id`."""
    return [
        clearing.statement(MERCHANT_ID, day).arrival.arrival_date,
        *(summary.arrival.arrival_date for summary in clearing.summaries(day)),
        *(line.arrival.arrival_date for line in clearing.clearing_file(day).lines),
        clearing.arrival(day, merchant_id=MERCHANT_ID).arrival_date,
    ]


# --- 1. the arrival date of a cleared day -------------------------------------------------


def test_an_override_entered_after_the_run_does_not_move_a_cleared_days_arrival(
    world: World,
) -> None:
    """8 Oct made a day off the morning after the run: 30 Sep's money still arrives on 8 Oct
    everywhere it is shown; only a day not yet cleared computes 9 Oct."""
    _cleared_sep_30(world)
    world.clearing.set_working_day(OCT_8, False, note="typhoon", now=NEXT_MORNING)
    assert [OCT_8] * 6 == _shown_arrivals(world.clearing, SEP_30)
    assert OCT_9 == world.clearing.arrival(SEP_30).arrival_date  # no merchant: the calendar's
    assert OCT_9 == world.clearing.arrival(date(2026, 10, 1), merchant_id=MERCHANT_ID).arrival_date


def test_the_run_keeps_the_cycle_and_whether_the_arrival_was_provisional(world: World) -> None:
    """A T+0 merchant's 31 Dec: the run keeps (day, merchant, cycle, arrival, provisional)."""
    world.standard_rules()
    world.set_cycle(MERCHANT_ID, SettlementCycle.T0)
    world.at("2026-12-31 10:00").till().sale(10_000)
    day = date(2026, 12, 31)
    world.clearing.clear_day(day, now=beijing_time("2026-12-31 23:10"))
    world.clearing.publish_year(2027, note="notice entered", now=beijing_time("2027-01-01 09:00"))
    kept = world.clearing.statement(MERCHANT_ID, day).arrival
    assert (SettlementCycle.T0, date(2026, 12, 31), False) == (
        kept.cycle,
        kept.arrival_date,
        kept.provisional,
    )
    with world.store.engine.connect() as connection:
        rows = connection.execute(sa.select(t.clearing_arrivals)).all()
    assert [(day, MERCHANT_ID, "T+0", day, False)] == [
        (row.trading_day, row.merchant_id, row.cycle, row.arrival_date, row.provisional)
        for row in rows
    ]


def test_a_provisional_arrival_stays_provisional_once_cleared(world: World) -> None:
    """T+1 of 31 Dec 2026 is 4 Jan 2027, provisional; publishing 2027 afterwards changes
    what a new day computes, not what the cleared day promised."""
    world.standard_rules()
    world.at("2026-12-31 10:00").till().sale(10_000)
    day = date(2026, 12, 31)
    world.clearing.clear_day(day, now=beijing_time("2026-12-31 23:10"))
    world.clearing.publish_year(2027, note="notice entered", now=beijing_time("2027-01-01 09:00"))
    assert [(date(2027, 1, 4), True)] * 2 == [
        (arrival.arrival_date, arrival.provisional)
        for arrival in (
            world.clearing.statement(MERCHANT_ID, day).arrival,
            world.clearing.clearing_file(day).lines[0].arrival,
        )
    ]
    assert not world.clearing.arrival(day).provisional  # computed now: published


def test_clearing_again_keeps_the_recorded_arrival(world: World) -> None:
    """The run made again after the override returns the same run and keeps 8 Oct."""
    _cleared_sep_30(world)
    first = world.clearing.cleared_day(SEP_30)
    world.clearing.set_working_day(OCT_8, False, note="typhoon", now=NEXT_MORNING)
    assert first == world.clearing.clear_day(SEP_30, now=NEXT_MORNING)
    assert [OCT_8] * 6 == _shown_arrivals(world.clearing, SEP_30)


def _downgrade(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["version_table"] = VERSION_TABLE
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    engine.dispose()


def test_the_migration_upgrades_a_store_with_cleared_days(db_url: str) -> None:
    """A store at the previous head (login_throttle) holding a cleared day upgrades; the
    day reads as before (arrival computed: none was kept), and running it again keeps the
    arrival, which then no longer moves."""
    world = World(db_url)
    _cleared_sep_30(world)
    statement = world.clearing.statement(MERCHANT_ID, SEP_30)
    world.close()
    _downgrade(db_url, "login_throttle")
    engine = sa.create_engine(db_url)
    with engine.connect() as connection:
        assert "host_clearing_arrivals" not in sa.inspect(connection).get_table_names()
    engine.dispose()
    store = HostStore.open(db_url, pan_key=b"k" * 32)  # upgrades to the head
    clearing = ClearingStore(store)
    try:
        assert ({}, statement) == (
            clearing.kept_arrivals(SEP_30),
            clearing.statement(MERCHANT_ID, SEP_30),
        )
        cleared = clearing.cleared_day(SEP_30)
        assert cleared == clearing.clear_day(SEP_30, now=NEXT_MORNING)
        assert {MERCHANT_ID: OCT_8, OTHER_MERCHANT_ID: OCT_8} == {
            merchant_id: arrival.arrival_date
            for merchant_id, arrival in clearing.kept_arrivals(SEP_30).items()
        }
        clearing.set_working_day(OCT_8, False, note="typhoon", now=NEXT_MORNING)
        assert [OCT_8] * 6 == _shown_arrivals(clearing, SEP_30)
    finally:
        store.close()


# --- 2. no rule re-prices a transaction already made --------------------------------------


def test_a_fee_schedule_from_today_that_reprices_todays_sales_is_refused(world: World) -> None:
    """Two merchants sold on 30 Sep; a standard schedule with debit at 0.50 % from 30 Sep
    would re-price both sales: refused in one line (count, yuan, merchants, the next
    trading day), nothing kept, the statement as it was."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    world.till("10000002", OTHER_MERCHANT_ID).sale(20_000)
    before = world.clearing.statement(MERCHANT_ID, SEP_30)
    cheaper = FeeSchedule(None, SEP_30, standard_rates("0.50"))
    with pytest.raises(ClearingError) as refused:
        world.clearing.set_fee_schedule(cheaper, now=beijing_time("2026-09-30 11:00"))
    assert (
        "a fee schedule from 2026-09-30 would re-price 2 transaction(s) already made on trading "
        "day 2026-09-30 (gross 300.00, fees 1.80 -> 1.50) of merchant(s) 898110054110001, "
        "898110054110002: a transaction keeps the price it was made at; set it from 2026-10-01 "
        "(the next trading day)"
    ) == str(refused.value)
    assert (1, before) == (
        len(world.clearing.fee_schedules(every=True)),
        world.clearing.statement(MERCHANT_ID, SEP_30),
    )
    world.clearing.set_fee_schedule(
        FeeSchedule(None, date(2026, 10, 1), standard_rates("0.50")),
        now=beijing_time("2026-09-30 11:00"),
    )


def test_a_rule_from_today_that_reprices_nothing_made_is_taken(world: World) -> None:
    """Another merchant's own schedule from today, a BIN nobody used today, the first
    schedule of a host that has not priced anything: taken — and a sale made after it is
    priced by it."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(10_000)
    now = beijing_time("2026-09-30 11:00")
    world.clearing.set_fee_schedule(
        FeeSchedule(OTHER_MERCHANT_ID, SEP_30, standard_rates("0.38")), now=now
    )
    world.clearing.set_card_bins([CardBin("621700", Funding.DEBIT, SEP_30)], now=now)
    world.till("10000002", OTHER_MERCHANT_ID).sale(10_000, UNKNOWN_BIN_PAN)
    assert [38] == [
        line.fee_fen for line in world.clearing.statement(OTHER_MERCHANT_ID, SEP_30).lines
    ]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("bin", "BIN entries from 2026-09-30 would re-price 1 transaction(s)"),
        ("d0", "merchant terms from 2026-09-30 would re-price 1 transaction(s)"),
        ("t0", "merchant terms from 2026-09-30 would re-price 1 transaction(s)"),
    ],
)
def test_terms_and_bins_from_today_are_refused_when_they_reprice(
    world: World, change: str, words: str
) -> None:
    """A BIN entry that makes today's unknown card debit (capped at 20.00), or a D+0 / T+0
    cycle that moves today's money: each changes a sale already made."""
    world.standard_rules()
    world.at("2026-09-30 10:00").till().sale(1_000_000, UNKNOWN_BIN_PAN)  # credit: 60.00
    now = beijing_time("2026-09-30 11:00")
    with pytest.raises(ClearingError, match=words.replace("(", r"\(").replace(")", r"\)")):
        if change == "bin":
            world.clearing.set_card_bins([CardBin("6217", Funding.DEBIT, SEP_30)], now=now)
        elif change == "d0":
            world.clearing.set_merchant_terms(
                MerchantTerms(MERCHANT_ID, SEP_30, SettlementCycle.D0), now=now
            )
        else:
            world.clearing.set_merchant_terms(
                MerchantTerms(MERCHANT_ID, SEP_30, SettlementCycle.T0), now=now
            )
    assert ([], 3) == (world.clearing.merchant_terms(MERCHANT_ID), len(world.clearing.card_bins()))


def test_no_rule_takes_effect_on_a_cleared_day_even_with_a_clock_behind(world: World) -> None:
    """30 Sep is cleared; a clock still on 30 Sep cannot set anything from 30 Sep."""
    _cleared_sep_30(world)
    behind = beijing_time("2026-09-30 22:00")
    for attempt in (
        lambda: world.clearing.set_fee_schedule(FeeSchedule(None, SEP_30, standard_rates()),
                                                now=behind),
        lambda: world.clearing.set_merchant_terms(MerchantTerms(None, SEP_30), now=behind),
        lambda: world.clearing.set_card_bins([CardBin("62", Funding.DEBIT, SEP_30)], now=behind),
    ):  # fmt: skip
        with pytest.raises(ClearingError, match="trading day 2026-09-30 is cleared"):
            attempt()
    assert world.clearing.cleared_day(SEP_30) == world.clearing.clear_day(
        SEP_30, now=CLEARED_AT + timedelta(days=1)
    )
