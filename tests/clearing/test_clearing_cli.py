"""``posbatch clearing …`` and the host's clearing settings: what a user types and sees."""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from clearing_world import MERCHANT_ID, TERMINAL_ID, World, beijing_time
from typer.testing import CliRunner

from posbatch.backoffice import Actor, ExceptionWork
from posbatch.batch.host_effects import AddException
from posbatch.cli import app
from posbatch.errors import ConfigError
from posbatch.host import clearing_cli
from posbatch.host import cli as host_cli
from posbatch.host.cli import open_store
from testbed import cli_database

runner = CliRunner()
FUTURE = "2099-01-05"


@pytest.fixture
def data_dir(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A data dir; on the PostgreSQL run the store is the fresh schema of db_url."""
    cli_database(db_url, monkeypatch)
    return str(tmp_path / "data")


@pytest.fixture
def traded(data_dir: str, db_url: str) -> Iterator[World]:
    """The host of ``data_dir`` after a day of trading on 30 Sep 2026 (rules set before)."""
    url = db_url if db_url.startswith("postgresql") else f"sqlite:///{Path(data_dir) / 'host.db'}"
    Path(data_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    # the data dir's own keys, as `host serve` would make them: the CLI refuses a store
    # whose PAN key is missing
    data = Path(data_dir)
    pan_key = host_cli.pan_key(data)
    assert pan_key is not None
    world = World(url, kek=host_cli.kek(data), pan_key=pan_key)
    world.standard_rules()
    till = world.at("2026-09-30 10:00").till()
    till.sale(10_000)
    till.sale(1_000_000)
    yield world
    world.close()


def invoke(*arguments: str, data_dir: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*arguments, "--data-dir", data_dir])
    return result.exit_code, result.stdout, result.stderr


def test_arrival_prints_the_trading_day_and_the_arrival_date(data_dir: str) -> None:
    """The issue's example: 30 Sep 10:00 trades that day and arrives on 8 Oct."""
    code, out, _err = invoke("clearing", "arrival", "2026-09-30T10:00", data_dir=data_dir)
    assert (0, True, True) == (
        code,
        "trading day 交易日   2026-09-30 (cut-off 日切 23:00 Beijing)" in out,
        "arrival 到账日       2026-10-08 (T+1)" in out,
    )


def test_arrival_shows_the_moment_to_the_second(data_dir: str) -> None:
    """A second before the cut-off is another trading day: the moment is shown whole (it was
    cut to the minute, 22:59, right where the seconds decide)."""
    _code, before, _err = invoke("clearing", "arrival", "2026-09-29T22:59:59", data_dir=data_dir)
    _code, after, _err = invoke("clearing", "arrival", "2026-09-29T23:00:00", data_dir=data_dir)
    assert "2026-09-29 22:59:59 Beijing (2026-09-29 14:59:59 UTC)" in before
    assert "2026-09-29 23:00:00 Beijing" in after
    assert "2026-09-29 (cut-off" in before and "2026-09-30 (cut-off" in after


def test_arrival_takes_a_pasted_iso_time_with_a_fraction(data_dir: str) -> None:
    """What `date --iso-8601=ns` or JavaScript print: a fraction of a second and an offset
    (it was refused); the fraction is shown, and a fraction before the cut-off is that day."""
    code, out, err = invoke(
        "clearing", "arrival", "2026-09-29T22:59:59,999999999+08:00", data_dir=data_dir
    )
    assert (0, "") == (code, err)
    assert "2026-09-29 22:59:59.999999 Beijing (2026-09-29 14:59:59.999999 UTC)" in out
    assert "2026-09-29 (cut-off" in out
    _code, utc, _err = invoke("clearing", "arrival", "2026-09-29T15:00:00.000Z", data_dir=data_dir)
    assert "2026-09-29 23:00:00 Beijing" in utc and "2026-09-30 (cut-off" in utc


def test_arrival_into_2027_says_provisional(data_dir: str) -> None:
    """31 Dec 2026 arrives on 4 Jan 2027, marked provisional in both languages."""
    _code, out, _err = invoke("clearing", "arrival", "2026-12-31T10:00", data_dir=data_dir)
    assert "2027-01-04 (T+1) 暂定 provisional" in out


def test_set_fees_then_list_them(data_dir: str) -> None:
    """An operator sets the standard schedule; `fees` shows it with its rates and cap."""
    code, _out, err = invoke(
        "host", "set-fees", "--standard", "--from", FUTURE, "--debit", "0.60%",
        "--debit-cap", "20.00", "--credit", "0.60%", "--foreign-debit", "2.50%",
        "--foreign-credit", "2.50%", data_dir=data_dir,
    )  # fmt: skip
    _code, out, _err = invoke("host", "fees", data_dir=data_dir)
    assert (0, "", True) == (
        code,
        err,
        "domestic-debit 0.60% cap 20.00; domestic-credit 0.60%; foreign-debit 2.50%" in out,
    )


def test_set_terms_keeps_what_is_not_given(data_dir: str) -> None:
    """Changing the cycle keeps the void and refund rules in force."""
    invoke("host", "set-terms", "--merchant-id", MERCHANT_ID, "--from", FUTURE,
           "--refund-fee", "returned", data_dir=data_dir)  # fmt: skip
    invoke("host", "set-terms", "--merchant-id", MERCHANT_ID, "--from", "2099-02-01",
           "--cycle", "t+0", data_dir=data_dir)  # fmt: skip
    _code, out, _err = invoke("host", "terms", "--merchant-id", MERCHANT_ID, data_dir=data_dir)
    assert out.splitlines()[-1].endswith("cycle T+0, void fee returned, refund fee returned")


_SET_FEES = ["host", "set-fees", "--standard", "--from", FUTURE, "--debit", "0.60%",
             "--credit", "0.60%", "--foreign-debit", "2.50%",
             "--foreign-credit", "2.50%"]  # fmt: skip


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["clearing", "arrival", "2026-02-30T10:00"], "must be YYYY-MM-DDTHH:MM"),
        (["clearing", "arrival", "2026-09-30T10:00", "--cycle", "T+2"], "--cycle is T+1"),
        (["clearing", "arrival", "2026-09-30", "--merchant-id", "short"],
         "merchant ID 'short' must be 15 letters or digits"),
        (["clearing", "statement", "--merchant-id", MERCHANT_ID, "--date", "30-09-2026"],
         "YYYY-MM-DD"),
        (["clearing", "statement", "--merchant-id", "898110054119999", "--date", "2026-09-30"],
         "has no terminal on this host"),
        (["clearing", "file", "--date", "2026-09-31"], "must be a real date"),
        (["clearing", "file", "--date", "0001-01-01"], "outside the days clearing covers"),
        (["clearing", "statement", "--merchant-id", MERCHANT_ID, "--date", "9999-12-31"],
         "outside the days clearing covers"),
        (["clearing", "arrival", "9999-12-31T23:30"], "outside the days clearing covers"),
        (["clearing", "arrival", "2099-12-31T23:30"],
         "2100-01-01 is outside the days clearing covers (from 2000-01-01 to 2099-12-31)"),
        (["clearing", "arrival", "0001-01-01T00:30+14:00"], "must be YYYY-MM-DDTHH:MM"),
        (["clearing", "run", "--date", "2099-01-01"], "can be cleared from"),
        (["clearing", "calendar", "show", "1999"], "not one this calendar covers"),
        (["clearing", "calendar", "set", "2099-01-01", "--working", "--note", "x" * 201],
         "at most 200 printable"),
        (["clearing", "calendar", "set", "2020-01-01", "--day-off", "--note", "old"],
         "cannot take effect on 2020-01-01"),
        (_SET_FEES[:-2], "set-fees needs --foreign-credit"),
        ([*_SET_FEES[:6], "60", *_SET_FEES[7:]], "must be a percentage with its sign"),
        ([*_SET_FEES, "--debit-cap", "-1"], "must be yuan"),
        ([*_SET_FEES[:-1], "0.6"], "rate '0.6' must be a percentage with its sign, like 0.60% "
         "(no exponent, no separators) — the foreign-credit rate"),
        ([*_SET_FEES, "--credit-cap", "20.005"], "— the domestic-credit cap"),
        ([*_SET_FEES, "--instant", "100%"],
         "rate '100%' is over 10.00%: a typo? — the instant rate"),
        ([*_SET_FEES, "--debit-cap", "100000.01"],
         "a fee cap is 0.01..100000.00 yuan, not 100000.01"),
        ([*_SET_FEES, "--debit-cap", "0.00"],
         "a fee cap of 0.00 is refused (it would make every such fee 0.00): leave the cap out "
         "for no cap, or give the rate as 0% for no fee — the domestic-debit cap"),
        ([*_SET_FEES, "--merchant-id", MERCHANT_ID], "give --merchant-id ID or --standard"),
        ([*_SET_FEES[:4], "2020-01-01", *_SET_FEES[5:]], "cannot take effect on 2020-01-01"),
        ([*_SET_FEES[:2], "--merchant-id", "=1+2+3+4+5+6+78", *_SET_FEES[3:]],
         "merchant ID '=1+2+3+4+5+6+78' must be 15 letters or digits"),
        (["host", "set-terms", "--merchant-id", "898110054 10001", "--from", FUTURE,
          "--cycle", "D+0"], "merchant ID must be 15 letters or digits"),
        (["host", "set-terms", "--standard", "--from", FUTURE, "--void-fee", "maybe"],
         "--void-fee/--refund-fee returned or kept"),
        (["host", "set-card-bin", "62a", "debit", "--from", FUTURE], "a BIN prefix is 2..6"),
        (["host", "set-card-bin", "622202", "prepaid", "--from", FUTURE], "debit or credit"),
        (["host", "set-cutoff", "02:00", "--from", FUTURE], "before 12:00"),
        (["host", "set-cutoff", "23:00"], "set-cutoff needs --from"),
        (["host", "load-card-bins", "/nonexistent/bins.csv", "--from", FUTURE], "cannot read"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    data_dir: str, arguments: list[str], message: str
) -> None:
    """Every bad value gets one line on stderr naming the problem, exit 2, no traceback."""
    open_store(Path(data_dir), create=True).close()  # a host exists: the values are what is wrong
    code, _out, err = invoke(*arguments, data_dir=data_dir)
    assert (2, True, 1) == (code, message in err, len(err.strip().splitlines())), err


def test_a_bin_file_with_a_bad_line_loads_nothing(data_dir: str, tmp_path: Path) -> None:
    """load-card-bins is all or none: a bad line names its number and nothing is kept."""
    open_store(Path(data_dir), create=True).close()
    bins = tmp_path / "bins.csv"
    bins.write_text("prefix,funding\n622202,debit\n622588,gold\n", encoding="utf-8")
    code, _out, err = invoke("host", "load-card-bins", str(bins), "--from", FUTURE,
                             data_dir=data_dir)  # fmt: skip
    _c, out, _e = invoke("host", "card-bins", data_dir=data_dir)
    assert (2, True, True) == (code, "line 3" in err, out.startswith("no BIN entries"))


def test_statement_prints_and_writes_a_private_csv(
    traded: World, data_dir: str, tmp_path: Path
) -> None:
    """The statement is printed in Chinese and English and written to a 0600 CSV that a
    spreadsheet opens in UTF-8 (BOM), with cards masked 6/4."""
    target = tmp_path / "statement.csv"
    code, out, _err = invoke("clearing", "statement", "--merchant-id", MERCHANT_ID,
                             "--date", "2026-09-30", "--csv", str(target),
                             data_dir=data_dir)  # fmt: skip
    raw = target.read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    details = [row for row in rows if len(row) > 10 and row[1] == TERMINAL_ID]
    assert 0 == code
    assert "对账单 Statement" in out and "应付商户 to be paid to the merchant: 10079.40" in out
    assert (0o600, b"\xef\xbb\xbf") == (stat.S_IMODE(target.stat().st_mode), raw[:3])
    assert [("622202*********0128", "100.00", "0.60"), ("622202*********0128", "10000.00",
            "20.00")] == [(row[7], row[9], row[10]) for row in details]  # fmt: skip
    assert b"6222021234567890128" not in raw


@pytest.mark.parametrize(
    "command",
    [["statement", "--merchant-id", MERCHANT_ID, "--date", "2026-09-30"],
     ["file", "--date", "2026-09-30"]],
    ids=["statement", "file"],
)  # fmt: skip
def test_a_csv_that_cannot_be_written_is_the_only_line(
    traded: World, data_dir: str, tmp_path: Path, command: list[str]
) -> None:
    """`--csv` into a missing directory printed the whole statement, then the error at its
    foot: an operator saw a statement and missed that its file was never written."""
    target = tmp_path / "missing" / "x.csv"
    code, out, err = invoke("clearing", *command, "--csv", str(target), data_dir=data_dir)
    assert (2, "") == (code, out), out
    assert [f"error: cannot write {target}: No such file or directory"] == err.splitlines()


def _credit_merchant_25(traded: World, *, resolved_at: str) -> int:
    """An exception of 25.00 the terminal holds alone, resolved credit-merchant by ops at
    ``resolved_at`` (Beijing): an adjustment (差错调整) of that trading day. Its id."""
    with traded.store.transaction() as tx:
        tx.apply([AddException(
            terminal_id=TERMINAL_ID, merchant_id=MERCHANT_ID, batch_id=None, batch_no=1, stan=9,
            kind="terminal-only", cause="uploaded, not on the host", terminal_amount_fen=2_500,
            host_amount_fen=None, at=traded.clock(),
        )])  # fmt: skip
    (exception,) = traded.store.exceptions()
    ExceptionWork(traded.store).resolve(
        Actor("olga", "ops", "127.0.0.1"), [exception.exception_id], "credit-merchant",
        "paid after checking the terminal's journal", now=beijing_time(resolved_at),
    )  # fmt: skip
    return exception.exception_id


def test_statement_and_run_show_an_adjustment(traded: World, data_dir: str, tmp_path: Path) -> None:
    """An exception resolved credit-merchant 25.00 that day: the statement prints it under
    差错调整, pays it in the net, writes it to the CSV; the clearing run says so too."""
    exception_id = _credit_merchant_25(traded, resolved_at="2026-09-30 16:00")
    target = tmp_path / "statement.csv"
    code, out, _err = invoke("clearing", "statement", "--merchant-id", MERCHANT_ID,
                             "--date", "2026-09-30", "--csv", str(target),
                             data_dir=data_dir)  # fmt: skip
    rows = list(csv.reader(io.StringIO(target.read_bytes().decode("utf-8-sig"))))
    _c, ran, _e = invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    assert 0 == code
    assert f"差错 #{exception_id}" in out
    assert "adjustments 差错调整 25.00 (1), net 净额 10104.40" in out
    assert "应付商户 to be paid to the merchant: 10104.40" in out
    assert (["差错调整 adjustments", "25.00"] in rows, ["净额 net", "10104.40"] in rows) == (
        True,
        True,
    )
    assert ["terminal-only", "credit-merchant", "25.00", "0.00"] in [row[3:] for row in rows]
    assert "fees 20.60, adjustments 差错调整 25.00, net 10104.40" in ran


def test_a_hostile_terminal_id_cannot_reach_a_statement(traded: World) -> None:
    """A terminal id like '=HYPERLN' is refused when it is registered (ids are letters and
    digits), so it never reaches a CSV cell; cells that still begin with = + - @ (exception
    texts) are escaped by the export (test_clearing_export)."""
    with pytest.raises(ConfigError, match="must be 8 letters or digits"):
        traded.till("=HYPERLN", MERCHANT_ID)


def test_the_clearing_file_then_a_clearing_run(traded: World, data_dir: str) -> None:
    """Before the run the file says 'not cleared yet'; the run keeps the day; after it the
    file says 'cleared' with the same figures, and `days` lists it."""
    _c, before, _e = invoke("clearing", "file", "--date", "2026-09-30", data_dir=data_dir)
    code, ran, err = invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    _c, after, _e = invoke("clearing", "file", "--date", "2026-09-30", data_dir=data_dir)
    _c, days, _e = invoke("clearing", "days", data_dir=data_dir)
    line = f"{MERCHANT_ID}       2      10100.00       20.60      10079.40  T+1    2026-10-08"
    assert (0, "", True, True) == (code, err, line in before, line in after)
    assert ("未清算" in before, "已清算" in after) == (True, True)
    assert "2 lines, gross 10100.00, fees 20.60, net 10079.40" in ran
    assert days.startswith("2026-09-30")


def test_calendar_show_lists_make_up_days(data_dir: str) -> None:
    """2026: published; 14 Feb (a Saturday) is a make-up working day; 1 Oct a day off."""
    _code, out, _err = invoke("clearing", "calendar", "show", "2026", data_dir=data_dir)
    assert ("2026: published" in out, "2026-02-14 Sat  working day 上班" in out,
            "2026-10-01 Thu  day off 休息" in out) == (True, True, True)  # fmt: skip


def test_calendar_publish_and_override(data_dir: str) -> None:
    """An operator enters a 2099 day off and publishes the year; `show` says both."""
    invoke("clearing", "calendar", "set", "2099-02-02", "--day-off", "--note", "notice 1",
           data_dir=data_dir)  # fmt: skip
    invoke("clearing", "calendar", "publish", "2099", "--note", "notice 1", data_dir=data_dir)
    _code, out, _err = invoke("clearing", "calendar", "show", "2099", data_dir=data_dir)
    assert ("2099: published" in out, "2099-02-02 Mon  day off 休息" in out) == (True, True)


def test_arrival_without_a_host_store_uses_the_default_rules_and_creates_nothing(
    data_dir: str,
) -> None:
    """Before any host exists, arrival answers from the defaults, says so, and makes no store."""
    code, out, _err = invoke("clearing", "arrival", "2026-09-29T23:30", data_dir=data_dir)
    assert (0, True, True, False) == (
        code,
        "arrival 到账日       2026-10-08 (T+1)" in out,
        "default rules" in out,
        (Path(data_dir) / "host.db").exists(),
    )


def test_days_lists_the_net_paid_with_the_adjustments(traded: World, data_dir: str) -> None:
    """`clearing days` shows the net the run paid (adjustments included, as `run` and `file`
    say), not the lines' net alone: a day of adjustments only is not a day of 0.00."""
    _credit_merchant_25(traded, resolved_at="2026-10-01 10:00")
    invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    _c, ran_oct, _e = invoke("clearing", "run", "--date", "2026-10-01", data_dir=data_dir)
    code, days, err = invoke("clearing", "days", data_dir=data_dir)
    sep_30, oct_1 = days.splitlines()
    assert (0, "", "net 25.00" in ran_oct) == (code, err, True)
    assert "net       10079.40" in sep_30 and "差错调整" not in sep_30
    assert "net          25.00" in oct_1 and "差错调整 adjustments 25.00" in oct_1


def test_a_statement_says_whether_its_day_is_cleared(traded: World, data_dir: str) -> None:
    """The statement, like the clearing file, says whether its figures are the ones a
    clearing run kept (已清算) or computed from the records as they are (未清算)."""
    arguments = ("clearing", "statement", "--merchant-id", MERCHANT_ID, "--date", "2026-09-30")
    _c, before, _e = invoke(*arguments, data_dir=data_dir)
    invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    _c, after, _e = invoke(*arguments, data_dir=data_dir)
    assert ("未清算 not cleared yet" in before, "已清算 cleared" in after) == (True, True)


def _summary(path: Path) -> dict[str, str]:
    """The summary block of a statement CSV (the rows before the first blank one), by name."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    block = rows[: rows.index([])]
    return {row[0]: row[1] for row in block}


def test_a_statement_csv_says_whether_its_day_is_cleared(
    traded: World, data_dir: str, tmp_path: Path
) -> None:
    """The printed statement ends 'not cleared yet' / 'cleared'; its CSV said neither, so a
    file written during the day read as final. Its summary block now ends with the row
    `已清算 cleared`, no before the run and yes after, the rows before it where they were."""
    arguments = ("clearing", "statement", "--merchant-id", MERCHANT_ID, "--date", "2026-09-30")
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    invoke(*arguments, "--csv", str(before), data_dir=data_dir)
    invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    invoke(*arguments, "--csv", str(after), data_dir=data_dir)
    first, second = _summary(before), _summary(after)
    assert ("no", "yes") == (first["已清算 cleared"], second["已清算 cleared"])
    names = list(first)
    assert ["对账单 statement", "已清算 cleared"] == [names[0], names[-1]]
    assert first["净额 net"] == second["净额 net"]


def test_a_clearing_file_csv_says_whether_its_day_is_cleared(
    traded: World, data_dir: str, tmp_path: Path
) -> None:
    """The clearing file's CSV said nothing of it either (and the command asked whether the
    day was cleared after reading the figures, so a run in between labelled computed figures
    cleared): a last column 已清算 cleared on every row, read with the figures."""
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    invoke("clearing", "file", "--date", "2026-09-30", "--csv", str(before), data_dir=data_dir)
    invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    invoke("clearing", "file", "--date", "2026-09-30", "--csv", str(after), data_dir=data_dir)
    first, second = (list(csv.reader(io.StringIO(path.read_text()))) for path in (before, after))
    assert ["已清算 cleared"] + ["no"] * (len(first) - 1) == [row[-1] for row in first]
    assert ["已清算 cleared"] + ["yes"] * (len(second) - 1) == [row[-1] for row in second]
    assert [row[:-1] for row in first] == [row[:-1] for row in second]


def test_set_fees_from_today_refuses_to_reprice_todays_sales(
    traded: World, data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 11:00 on 30 Sep, a standard schedule from 30 Sep with debit at 0.50 % would re-price
    the morning's 100.00 sale (the 10,000.00 one stays at its 20.00 cap): one line on stderr
    with the count, the yuan and the merchant, exit 2; from the next trading day it is taken."""
    monkeypatch.setattr(clearing_cli, "_now", lambda: beijing_time("2026-09-30 11:00"))
    fees = ["--debit", "0.50%", "--debit-cap", "20.00", "--credit", "0.60%",
            "--foreign-debit", "2.50%", "--foreign-credit", "2.50%"]  # fmt: skip
    code, out, err = invoke("host", "set-fees", "--standard", "--from", "2026-09-30", *fees,
                            data_dir=data_dir)  # fmt: skip
    assert (2, "") == (code, out)
    assert [
        "error: a fee schedule from 2026-09-30 would re-price 1 transaction(s) already made on "
        f"trading day 2026-09-30 (gross 100.00, fees 0.60 -> 0.50) of merchant(s) "
        f"{MERCHANT_ID}: a transaction keeps the price it was made at; set it from 2026-10-01 "
        "(the next trading day)"
    ] == err.splitlines()
    code, out, err = invoke("host", "set-fees", "--standard", "--from", "2026-10-01", *fees,
                            data_dir=data_dir)  # fmt: skip
    assert (0, "", False) == (code, err, "trading day under way" in out)


def test_arrival_of_a_cleared_day_is_the_one_kept(traded: World, data_dir: str) -> None:
    """`clearing arrival 2026-09-30 --merchant-id` after the run and an override of 8 Oct:
    still 8 Oct (what the merchant was promised); without a merchant, the calendar's 9 Oct."""
    assert 0 == invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)[0]
    traded.clearing.set_working_day(
        date(2026, 10, 8), False, note="typhoon", now=beijing_time("2026-10-01 09:00")
    )
    _c, kept, _e = invoke("clearing", "arrival", "2026-09-30", "--merchant-id", MERCHANT_ID,
                          data_dir=data_dir)  # fmt: skip
    _c, computed, _e = invoke("clearing", "arrival", "2026-09-30", data_dir=data_dir)
    assert ("2026-10-08 (T+1)" in kept, "2026-10-09 (T+1)" in computed) == (True, True)


def test_a_missing_fee_schedule_names_the_merchant(data_dir: str, db_url: str) -> None:
    """A day traded before any fee schedule: the statement, the file and the run refuse in one
    line that names the merchant whole (it was masked like a card number: 898110*****0001)."""
    url = db_url if db_url.startswith("postgresql") else f"sqlite:///{Path(data_dir) / 'host.db'}"
    data = Path(data_dir)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    pan_key = host_cli.pan_key(data)
    assert pan_key is not None
    world = World(url, kek=host_cli.kek(data), pan_key=pan_key)
    world.at("2026-09-30 10:00").till().sale(10_000)
    world.close()
    found = [
        invoke(*arguments, data_dir=data_dir)
        for arguments in (
            ["clearing", "statement", "--merchant-id", MERCHANT_ID, "--date", "2026-09-30"],
            ["clearing", "file", "--date", "2026-09-30"],
            ["clearing", "run", "--date", "2026-09-30"],
        )
    ]
    expected = (
        f"error: no fee schedule in force for merchant {MERCHANT_ID} on 2026-09-30: set one "
        "with posbatch host set-fees (--merchant-id, or --standard for all)\n"
    )
    assert [(2, expected)] * 3 == [(code, err) for code, _out, err in found]


def test_a_second_clearing_run_says_the_day_was_cleared_already(
    traded: World, data_dir: str
) -> None:
    """Running the nightly job again for a cleared day changes nothing and says so: the first
    run's time and figures, 'cleared already' (it read like a new clearing), one day listed."""
    _c, first, _e = invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    code, again, err = invoke("clearing", "run", "--date", "2026-09-30", data_dir=data_dir)
    _c, days, _e = invoke("clearing", "days", data_dir=data_dir)
    figures = "2 lines, gross 10100.00, fees 20.60, net 10079.40"
    assert (0, "", 1) == (code, err, len(days.splitlines()))
    assert (" cleared at " in first, "was cleared already" in first) == (True, False)
    assert [
        again.splitlines()[0].replace("was cleared already at", "cleared at"),
        "the records still give these figures: nothing was changed or paid again",
    ] == [first.strip(), again.splitlines()[1]]
    assert figures in again


def test_a_bin_file_that_never_ends_is_refused(data_dir: str) -> None:
    """A device or a pipe given as the BIN file (its stat() size is 0) is read up to the limit
    and refused in one line: /dev/zero was read whole, until a MemoryError traceback."""
    open_store(Path(data_dir), create=True).close()
    code, _out, err = invoke("host", "load-card-bins", "/dev/zero", "--from", FUTURE,
                             data_dir=data_dir)  # fmt: skip
    assert (
        2,
        f"error: /dev/zero is over {clearing_cli.BIN_FILE_BYTES_MAX} bytes: not a BIN file\n",
    ) == (code, err)


def test_an_export_to_a_pipe_leaves_its_mode_alone(
    traded: World, data_dir: str, tmp_path: Path
) -> None:
    """--csv naming a pipe or a device (/dev/stdout, /dev/null) writes the CSV to it and leaves
    its mode as it was: only a file the export makes or replaces is made 0600 (run as root,
    `--csv /dev/full` had turned the system's /dev/full to 0600)."""
    pipe = tmp_path / "statement.pipe"
    os.mkfifo(pipe)
    pipe.chmod(0o644)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer may open it
    try:
        code, _out, err = invoke("clearing", "statement", "--merchant-id", MERCHANT_ID,
                                 "--date", "2026-09-30", "--csv", str(pipe),
                                 data_dir=data_dir)  # fmt: skip
        written = os.read(reader, 65_536)
    finally:
        os.close(reader)
    assert (0, "", 0o644) == (code, err, stat.S_IMODE(pipe.stat().st_mode))
    assert written.startswith("\ufeff对账单 statement,".encode())


def test_a_bin_file_that_contradicts_itself_loads_nothing(data_dir: str, tmp_path: Path) -> None:
    """A prefix listed as debit and again as credit is refused, naming both lines (the later
    line won silently: every such card priced by the other rate); the same line twice is one
    entry."""
    open_store(Path(data_dir), create=True).close()
    bins = tmp_path / "bins.csv"
    bins.write_text("622202,debit\n622588,credit\n622588,credit\n", encoding="utf-8")
    _c, loaded, _e = invoke("host", "load-card-bins", str(bins), "--from", FUTURE,
                            data_dir=data_dir)  # fmt: skip
    bins.write_text("622848,debit\n622202,debit\n622848,credit\n", encoding="utf-8")
    code, _out, err = invoke("host", "load-card-bins", str(bins), "--from", FUTURE,
                             data_dir=data_dir)  # fmt: skip
    _c, listed, _e = invoke("host", "card-bins", data_dir=data_dir)
    assert loaded.startswith("loaded 2 BIN entries from 2099-01-05")
    assert (2, f"error: {bins} line 3: BIN 622848 is credit here and debit on line 1\n") == (
        code,
        err,
    )
    assert ["622202", "622588"] == [line.split()[1] for line in listed.splitlines()]


def test_publishing_a_year_without_its_make_up_days_says_so(data_dir: str) -> None:
    """Marking 2027 published with none of its make-up working days entered turns the library's
    guess into final dates: the command says so (it said only 'published'); once a weekend
    day of 2027 is entered as worked, it does not."""
    open_store(Path(data_dir), create=True).close()
    _c, bare, _e = invoke("clearing", "calendar", "publish", "2027", "--note", "notice",
                          data_dir=data_dir)  # fmt: skip
    invoke("clearing", "calendar", "set", "2027-02-20", "--working", "--note", "notice",
           data_dir=data_dir)  # fmt: skip
    _c, entered, _e = invoke("clearing", "calendar", "publish", "2027", "--note", "notice",
                             data_dir=data_dir)  # fmt: skip
    warning = "注意 note: no make-up working day (调休上班) of 2027 is entered"
    assert (["2027: published", True], ["2027: published"]) == (
        [bare.splitlines()[0], bare.splitlines()[1].startswith(warning)],
        entered.splitlines(),
    )
