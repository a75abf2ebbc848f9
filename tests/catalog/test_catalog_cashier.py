"""Small things a cashier and a back-office clerk meet: files from Chinese Excel, every error
of a row, plurals, a trace that keeps receipt numbers whole, expiry warnings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest
from catalog_samples import (
    MILK,
    NOW,
    PILLS,
    TODAY,
    ScriptedPayer,
    approved,
    catalog_lots,
    catalog_products,
    sample_snapshot,
)
from typer.testing import CliRunner

from posbatch.catalog import (
    CatalogSnapshot,
    CatalogStore,
    LineRequest,
    LotSource,
    LotTake,
    parse_catalog_csv,
    parse_scan,
    pay_cart,
    price_cart,
)
from posbatch.catalog.cli import app, open_back_office
from posbatch.errors import CatalogError, CheckoutRefused
from testbed import TERMINAL_ID

runner = CliRunner()
HEADER = "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled\n"


@pytest.fixture(autouse=True)
def no_shared_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)


def test_a_csv_saved_by_chinese_excel_imports(tmp_path: Path) -> None:
    """GBK bytes (what Excel saves as CSV on a Chinese Windows) import, names intact."""
    source = tmp_path / "商品.csv"
    source.write_bytes(
        (HEADER + "6901234567892,纯牛奶 1L,1250,yes,L2611A,2026-12-31,40,no\n").encode("gbk")
    )
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["import", str(source), "--data-dir", str(data_dir), "--by", "li"])
    exported = runner.invoke(app, ["export", "--data-dir", str(data_dir)])
    expected = (0, True, True)
    assert expected == (
        result.exit_code,
        "the file is GB18030 text" in result.stdout,
        "纯牛奶 1L" in exported.stdout,
    )


def test_a_file_of_neither_encoding_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "broken.csv"
    source.write_bytes(HEADER.encode() + b"6901234567892,\x81\xff milk,1,no,,,,\n")
    result = runner.invoke(app, ["import", str(source), "--data-dir", str(tmp_path / "d")])
    expected = (
        2,
        "error: row 2: byte 0x81 at offset 86 is not utf-8-sig or gb18030 text: "
        "save the file as CSV UTF-8 (or give --encoding)\n",
    )
    assert expected == (result.exit_code, result.stderr)


def test_every_problem_of_a_row_is_reported() -> None:
    """Not only the first: GTIN, price and expiry of one row, each on its own line."""
    with pytest.raises(CatalogError) as caught:
        parse_catalog_csv(HEADER + "6901234567891,Milk,12.50,yes,L1,2026-13-01,3,no\n")
    expected = (
        "1 bad row(s), nothing imported:\n"
        "row 2: GTIN 6901234567891 has a bad check digit: expected 2, got 1\n"
        "row 2: price_fen '12.50' is not a whole number (fen, no decimal point)\n"
        "row 2: expiry '2026-13-01' is not a date YYYY-MM-DD"
    )
    assert expected == str(caught.value)


def test_the_export_of_a_product_untracked_with_lots_imports_back(tmp_path: Path) -> None:
    """The state "lot_tracked=no with lots" cannot be made any more, so exports import back."""
    data_dir = tmp_path / "data"
    first = tmp_path / "a.csv"
    first.write_text(HEADER + "6901234567892,Milk,1250,yes,L1,2026-12-31,3,no\n")
    runner.invoke(app, ["import", str(first), "--data-dir", str(data_dir)])
    second = tmp_path / "b.csv"
    second.write_text(HEADER + "6901234567892,Milk,1250,no,,,,\n")
    refused = runner.invoke(app, ["import", str(second), "--data-dir", str(data_dir)])
    exported = tmp_path / "out.csv"
    runner.invoke(app, ["export", "--output", str(exported), "--data-dir", str(data_dir)])
    again = runner.invoke(app, ["import", str(exported), "--data-dir", str(data_dir)])
    expected = (2, "it stays lot-tracked", 0)
    assert expected == (
        refused.exit_code,
        "it stays lot-tracked" if "it stays lot-tracked" in refused.stderr else refused.stderr,
        again.exit_code,
    )


def test_one_minute_is_singular() -> None:
    """'synced 1 minute ago (limit 1 minute)', not '1 minutes'."""
    snapshot = dataclasses.replace(sample_snapshot(), synced_at=NOW - dt.timedelta(seconds=90))
    request = LineRequest(PILLS, 1, (LotTake("P1", 1),), LotSource.SCAN)
    cart = price_cart(
        snapshot, [request], today=TODAY, now=NOW, max_catalog_age=dt.timedelta(minutes=1)
    )
    assert cart.warnings[0].message_en.startswith(
        "the catalog on this terminal was last synced 1 minute ago (limit 1 minute)"
    )


def test_trace_keeps_receipt_numbers_whole_at_80_columns(tmp_path: Path) -> None:
    """On an 80-column terminal the receipt number is printed whole (the product name wraps)."""
    data_dir = tmp_path / "data"
    store = CatalogStore.open(f"sqlite:///{data_dir / 'catalog.db'}")
    products = [
        dataclasses.replace(p, name="Vitamin C effervescent tablets 1000 mg orange flavour")
        if p.gtin == PILLS
        else p
        for p in catalog_products()
    ]
    store.import_catalog(products, catalog_lots(), at=NOW, reason="sample")
    request = LineRequest(PILLS, 1, (LotTake("P1", 1),), LotSource.SCAN)
    receipt = pay_cart(
        price_cart(store.snapshot(), [request], today=TODAY, now=NOW),
        payer=ScriptedPayer(approved("000001")),
        orders=store,
        terminal_id=TERMINAL_ID,
        clock=lambda: NOW,
        today=TODAY,
    )
    store.close()
    result = runner.invoke(app, ["trace", "P1", "--data-dir", str(data_dir)], env={"COLUMNS": "80"})
    assert 0 == result.exit_code
    assert receipt.receipt_no in result.stdout
    assert "1 sale line" in result.stdout and "1 sale lines" not in result.stdout


@pytest.mark.parametrize("command", ["trace", "recall-report"])
def test_a_lot_s_sales_keep_batch_no_and_stan_whole_at_80_columns(
    tmp_path: Path, command: str
) -> None:
    """What a recall needs from each sale (batch_no, STAN, status, time, product) is printed
    whole at 80 columns, and so in a file (80 columns too): the table cut them to "…"."""
    data_dir = tmp_path / "data"
    store = CatalogStore.open(f"sqlite:///{data_dir / 'catalog.db'}")
    store.import_catalog(catalog_products(), catalog_lots(), at=NOW, reason="sample")
    request = LineRequest(PILLS, 1, (LotTake("P1", 1),), LotSource.SCAN)
    receipt = pay_cart(
        price_cart(store.snapshot(), [request], today=TODAY, now=NOW),
        payer=ScriptedPayer(approved("000123", batch_no="000045")),
        orders=store,
        terminal_id=TERMINAL_ID,
        clock=lambda: NOW,
        today=TODAY,
    )
    name = store.snapshot().products[PILLS].name
    store.close()
    result = runner.invoke(app, [command, "P1", "--data-dir", str(data_dir)], env={"COLUMNS": "80"})
    shown = [
        f"receipt {receipt.receipt_no}",
        "status paid",
        "batch_no 000045",
        "STAN 000123",
        f"product {name}",
    ]
    assert (0, [True] * len(shown), "…" in result.stdout) == (
        result.exit_code,
        [part in result.stdout for part in shown],
        False,
    ), result.stdout


def test_stock_keeps_expiry_dates_and_gtins_whole_at_80_columns(tmp_path: Path) -> None:
    """A folded cell read "2027-06-3" on one line and "0" on the next: at 80 columns each lot's
    GTIN, lot and expiry are printed whole (only a product name may wrap)."""
    source = tmp_path / "shop.csv"
    source.write_text(
        HEADER + "6920000000012,阿莫西林胶囊 0.25g×24粒,1590,yes,A2611,2027-06-30,20,no\n",
        encoding="utf-8",
    )
    data_dir = tmp_path / "data"
    imported = runner.invoke(app, ["import", str(source), "--data-dir", str(data_dir)])
    result = runner.invoke(app, ["stock", "--data-dir", str(data_dir)], env={"COLUMNS": "80"})
    shown = ["06920000000012", "A2611", "2027-06-30", "on hand 20"]
    assert (0, 0, [True] * len(shown)) == (
        imported.exit_code,
        result.exit_code,
        [part in result.stdout for part in shown],
    ), result.stdout


def test_near_expiry_is_warned_with_the_days_left() -> None:
    """A lot expiring within the configured days sells with a warning (zh + en)."""
    request = LineRequest(MILK, 1, (LotTake("M-DEC01", 1),), LotSource.SCAN)
    cart = price_cart(sample_snapshot(), [request], today=TODAY, now=NOW, near_expiry_days=10)
    later = price_cart(sample_snapshot(), [request], today=TODAY, now=NOW, near_expiry_days=5)
    expected = (
        [
            (
                "near_expiry",
                "lot M-DEC01 of Milk 1L expires on 2026-12-01, in 6 days",
                "Milk 1L 批次 M-DEC01 有效期至 2026-12-01，还有 6 天到期",
            )
        ],
        [],
    )
    assert expected == (
        [(w.code, w.message_en, w.message_zh) for w in cart.warnings],
        list(later.warnings),
    )


def test_a_barcode_expiry_unlike_the_catalogs_is_flagged() -> None:
    """The pack says 2026-12-20, the catalog says 2026-12-15 for that lot: a warning."""
    scan = parse_scan(f"]C101{MILK}17261220\x1d10M-DEC15", today=TODAY)
    request = LineRequest.from_scan(scan.reading(), raw=scan.raw)
    cart = price_cart(sample_snapshot(), [request], today=TODAY, now=NOW, near_expiry_days=0)
    assert [
        (
            "expiry_mismatch",
            "the barcode of Milk 1L lot M-DEC15 says it expires 2026-12-20, the catalog says "
            "2026-12-15: check the pack",
        )
    ] == [(w.code, w.message_en) for w in cart.warnings]


def test_a_best_before_date_in_the_past_is_refused_when_there_is_no_expiry() -> None:
    """(15) counts when (17) is absent: a pack whose best-before passed is not sold."""
    scan = parse_scan(f"]C101{MILK}15261101\x1d10M-DEC15", today=TODAY)
    request = LineRequest.from_scan(scan.reading(), raw=scan.raw)
    with pytest.raises(CheckoutRefused, match="says it expired on 2026-11-01"):
        price_cart(sample_snapshot(), [request], today=TODAY, now=NOW)


def test_the_stock_short_warning_of_a_product_without_lots() -> None:
    """A product without lots sells beyond its count, with a warning to count it."""
    snapshot = CatalogSnapshot.build(
        [dataclasses.replace(p, quantity_on_hand=1) for p in catalog_products()],
        catalog_lots(),
        version=1,
    )
    cart = price_cart(
        snapshot,
        [LineRequest("06909876543212", 3)],
        today=TODAY,
        now=NOW,
    )
    assert ["stock_short"] == [w.code for w in cart.warnings]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["stock", "--at", "yesterday"],
            "error: --at 'yesterday' is not YYYY-MM-DD or YYYY-MM-DD HH:MM\n",
        ),
        (["stock", "--history"], "error: --history lists one product's movements: give --gtin\n"),
        (
            ["adjust", "6901234567892", "--reason", "x"],
            "error: give either a change (delta) or the counted quantity, not both\n",
        ),
        (
            ["receive", "6901234567891", "3"],
            "error: GTIN 6901234567891 has a bad check digit: expected 2, got 1\n",
        ),
        (
            ["receive", "6901234567892", "3", "--expiry", "31/12/2026"],
            "error: --expiry '31/12/2026' is not YYYY-MM-DD\n",
        ),
        (["trace"], "error: give a LOT or --code CODE (a serial or drug traceability code)\n"),
        (
            ["revoke-till", "10000009"],
            "error: till 10000009 is not registered (or revoked already)\n",
        ),
        # a bad terminal id: tests/test_bad_invocations.py BAD_IDS (through `posbatch`)
        (
            ["verify-payments"],
            "error: no host store to ask: neither POSBATCH_DATABASE_URL nor {data}/host.db\n",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    """Every new command answers bad input with one line and exit code 2, never a traceback."""
    data_dir = tmp_path / "data"
    open_back_office(data_dir, create=True).close()  # a catalog exists: the input is what is wrong
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    assert (2, message.replace("{data}", str(data_dir))) == (result.exit_code, result.stderr)


@pytest.mark.parametrize("command", [["stock"], ["trace", "L1"], ["tills"], ["pending"]])
def test_a_file_given_as_data_directory_is_one_line(tmp_path: Path, command: list[str]) -> None:
    """`--data-dir` naming a file: one line, exit 2 (it was a FileExistsError traceback)."""
    afile = tmp_path / "afile"
    afile.touch()
    result = runner.invoke(app, [*command, "--data-dir", str(afile)])
    expected = (2, f"error: {afile} is not a directory: --data-dir names a data directory\n")
    assert expected == (result.exit_code, result.stderr)


def _milk_in_stock(tmp_path: Path) -> list[str]:
    """A catalog with Milk, lot L1 (10 on hand, expiring 2027-01-31): its --data-dir."""
    data = ["--data-dir", str(tmp_path / "data")]
    source = tmp_path / "in.csv"
    source.write_text(HEADER + "6901234567892,Milk,1250,yes,L1,2027-01-31,10,no\n")
    runner.invoke(app, ["import", str(source), "--by", "li", *data])
    return data


def test_goods_in_and_a_stocktake_through_the_commands(tmp_path: Path) -> None:
    """receive, adjust --counted, then stock --json and --history: the movements add up."""
    data = _milk_in_stock(tmp_path)
    received = runner.invoke(
        app, ["receive", "6901234567892", "5", "--lot", "L1", "--by", "li", *data]
    )
    counted = runner.invoke(
        app,
        [
            "adjust",
            "6901234567892",
            "--lot",
            "L1",
            "--counted",
            "14",
            "--reason",
            "count",
            "--by",
            "wang",
            *data,
        ],
    )
    report = runner.invoke(app, ["stock", "--json", *data])
    history = runner.invoke(app, ["stock", "--history", "--gtin", "6901234567892", "--json", *data])
    expected = (
        "Milk (06901234567892) lot L1: 15 on hand, 0 quarantined\n",
        "Milk (06901234567892) lot L1: 14 on hand, 0 quarantined\n",
        [("L1", 14, 0)],
        [("received", 10, "li"), ("received", 5, "li"), ("adjustment", -1, "wang")],
    )
    assert expected == (
        received.stdout,
        counted.stdout,
        [(r["lot_no"], r["on_hand"], r["quarantined"]) for r in json.loads(report.stdout)],
        [(m["kind"], m["on_hand_delta"], m["actor"]) for m in json.loads(history.stdout)],
    )


def test_receiving_a_lot_without_an_expiry_or_already_expired_says_so(tmp_path: Path) -> None:
    """A new lot received without --expiry is never refused as expired at checkout, and one
    already expired is always refused: both are received, each with a note on stderr."""
    data = _milk_in_stock(tmp_path)
    undated = runner.invoke(
        app, ["receive", "6901234567892", "5", "--lot", "NEW1", "--by", "li", *data]
    )
    expired = runner.invoke(
        app,
        ["receive", "6901234567892", "5", "--lot", "OLD1", "--expiry", "2020-01-31",
         "--by", "li", *data],
    )  # fmt: skip
    dated = runner.invoke(
        app,
        ["receive", "6901234567892", "5", "--lot", "NEW2", "--expiry", "2099-01-31",
         "--by", "li", *data],
    )  # fmt: skip
    assert (0, 0, 0) == (undated.exit_code, expired.exit_code, dated.exit_code)
    assert "note: lot NEW1 has no expiry date" in undated.stderr
    assert "note: lot OLD1 expired on 2020-01-31" in expired.stderr
    assert "" == dated.stderr


def test_importing_lots_already_expired_names_them(tmp_path: Path) -> None:
    """An import is all rows or none, and a lot already past its expiry is imported — with
    a note naming it, as checkout will refuse it."""
    data = ["--data-dir", str(tmp_path / "data")]
    source = tmp_path / "in.csv"
    source.write_text(
        HEADER
        + "6901234567892,Milk,1250,yes,OLD1,2020-01-31,10,no\n"
        + "6901234567892,Milk,1250,yes,NEW1,2099-01-31,10,no\n"
    )
    result = runner.invoke(app, ["import", str(source), "--by", "li", *data])
    assert 0 == result.exit_code, result.output
    assert "note: 1 lot already expired, refused at checkout: OLD1 (2020-01-31)" in result.stderr
    assert "NEW1" not in result.stderr
