"""Recall end to end: the record, quarantine, lifting, enforcement at the back office even
from a stale till, the recall report, and a trace that knows an unknown lot."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from catalog_samples import (
    BAG,
    MILK,
    NOW,
    PILLS,
    TODAY,
    ScriptedPayer,
    approved,
)
from typer.testing import CliRunner

from posbatch.batch.model import BEIJING
from posbatch.catalog import (
    CatalogStore,
    HttpOrderBook,
    LineRequest,
    Lot,
    LotSource,
    LotTake,
    OrderDraft,
    OrderLine,
    OrderRefused,
    TillCredential,
    pay_cart,
    price_cart,
    sync_replica,
    write_changes_file,
)
from posbatch.catalog.cli import app
from posbatch.errors import CatalogError, CheckoutRefused
from testbed import TERMINAL_ID

LATER = NOW + dt.timedelta(hours=1)
runner = CliRunner()


@pytest.fixture
def copy(tmp_path: Path) -> Iterator[CatalogStore]:
    store = CatalogStore.open(f"sqlite:///{tmp_path / 'till' / 'catalog.db'}")
    yield store
    store.close()


def milk(quantity: int, lot_no: str = "M-DEC15") -> LineRequest:
    return LineRequest(MILK, quantity, (LotTake(lot_no, quantity),), LotSource.SCAN)


def test_a_recall_is_recorded_with_who_when_and_why(back_office: CatalogStore) -> None:
    """The record names the lot, reason, actor and time; its stock goes to quarantine."""
    record = back_office.recall("M-DEC15", reason="NMPA notice 118", actor="qa-zhang", at=LATER)
    lot = back_office.snapshot().lot(MILK, "M-DEC15")
    assert lot is not None
    expected = (
        (MILK, "M-DEC15", "recall", "NMPA notice 118", "qa-zhang", LATER),
        (True, 0, 10),
    )
    assert expected == (
        (record.gtin, record.lot_no, record.action, record.reason, record.actor, record.at),
        (lot.recalled, lot.quantity_on_hand, lot.quarantined),
    )


def test_a_recall_reaches_the_till_at_its_next_sync(
    back_office: CatalogStore, copy: CatalogStore, tmp_path: Path
) -> None:
    """The recall is a new catalog version: the next sync marks the lot recalled on the till."""
    path = tmp_path / "changes.json"
    write_changes_file(back_office.changes_since(0), path)
    sync_replica(copy, str(path), now=NOW)
    back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)
    write_changes_file(back_office.changes_since(copy.version()), path)
    result = sync_replica(copy, str(path), now=LATER)
    lot = copy.snapshot().lot(MILK, "M-DEC15")
    assert lot is not None
    expected = (1, True)
    assert expected == (result.rows_applied, lot.recalled)


def test_recalling_twice_says_since_when(back_office: CatalogStore) -> None:
    """A second recall of the same lot is refused, naming the first one."""
    back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)
    with pytest.raises(CatalogError) as caught:
        back_office.recall("M-DEC15", reason="again", actor="qa2", at=LATER)
    shown = f"{LATER.astimezone(BEIJING):%Y-%m-%d %H:%M}"  # Beijing time, as every time shown
    expected = f"lot M-DEC15 of {MILK} is already recalled on {shown} by qa"
    assert expected == str(caught.value)


def test_lifting_releases_what_the_recall_set_aside(back_office: CatalogStore) -> None:
    """Lifting returns the recall's quarantine to stock on hand; history keeps both records."""
    back_office.adjust(MILK, "M-DEC15", delta=2, reason="found", actor="li", at=NOW)
    back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)
    back_office.adjust(
        MILK, "M-DEC15", delta=-3, quarantined=True, reason="destroyed 3", actor="qa", at=LATER
    )
    back_office.lift_recall("M-DEC15", reason="false alarm", actor="qa", at=LATER)
    lot = back_office.snapshot().lot(MILK, "M-DEC15")
    assert lot is not None
    expected = ((False, 9, 0), ["recall", "lift"])
    assert expected == (
        (lot.recalled, lot.quantity_on_hand, lot.quarantined),
        [r.action for r in back_office.recall_history(MILK, "M-DEC15")],
    )


def test_lifting_a_lot_that_is_not_recalled_is_refused(back_office: CatalogStore) -> None:
    with pytest.raises(CatalogError, match="is not recalled"):
        back_office.lift_recall("M-DEC15", reason="x", actor="qa", at=LATER)


def test_recall_of_an_unknown_lot_suggests_close_matches(back_office: CatalogStore) -> None:
    """A typo in the lot number is an error naming the lots it looks like."""
    with pytest.raises(CatalogError) as caught:
        back_office.recall("M-DEC1S", reason="notice", actor="qa", at=LATER)
    assert str(caught.value).startswith("no lot 'M-DEC1S' in the catalog; did you mean M-DEC15")


def test_a_lot_number_of_two_products_needs_the_gtin(back_office: CatalogStore) -> None:
    back_office.import_catalog(
        [], [Lot(PILLS, "M-DEC15", dt.date(2027, 1, 1), 4, False)], at=LATER, reason="x"
    )
    with pytest.raises(CatalogError, match="exists for several products"):
        back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)


def test_a_stale_till_cannot_sell_a_recalled_lot(
    back_office: CatalogStore, copy: CatalogStore, tmp_path: Path
) -> None:
    """The till's copy predates the recall and sells the lot: the back office refuses the
    order when it is written — before the card is charged — and says why in both languages."""
    path = tmp_path / "changes.json"
    write_changes_file(back_office.changes_since(0), path)
    sync_replica(copy, str(path), now=NOW)
    back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)
    cart = price_cart(copy.snapshot(), [milk(2)], today=TODAY, now=LATER)
    payer = ScriptedPayer(approved("000001"))
    with pytest.raises(OrderRefused) as caught:
        pay_cart(
            cart,
            payer=payer,
            orders=back_office,
            terminal_id=TERMINAL_ID,
            clock=lambda: LATER,
            today=TODAY,
        )
    expected = (
        f"the back office refused the order: line 1: lot M-DEC15 of Milk 1L ({MILK}) is "
        "recalled: do not sell it",
        "后台拒绝了此订单：第 1 行：Milk 1L 批次 M-DEC15 已召回，禁止销售",
        [],
        [],
    )
    assert expected == (
        caught.value.reason_en,
        caught.value.reason_zh,
        payer.amounts,
        back_office.trace_lot("M-DEC15", include_unpaid=True),
    )


def test_a_stale_till_over_http_is_shown_why(
    back_office: CatalogStore, served: str, till: TillCredential
) -> None:
    """Over HTTP the refusal arrives as CheckoutRefused, zh and en, for the cashier to read."""
    cart = price_cart(back_office.snapshot(), [milk(2)], today=TODAY, now=NOW)
    back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)
    with pytest.raises(CheckoutRefused) as caught:
        HttpOrderBook(served, till).open_order(cart, terminal_id=till.terminal_id, opened_at=NOW)
    expected = (True, True)
    assert expected == (
        "is recalled: do not sell it" in caught.value.reason_en,
        "已召回，禁止销售" in caught.value.reason_zh,
    )


def test_every_bad_line_is_refused_at_once(back_office: CatalogStore) -> None:
    """Unknown product, another product's lot, an expired lot, a wrong price: all named."""
    draft = OrderDraft(
        1,
        (
            OrderLine(1, "06900000000014", "Ghost", 100, None, 1, "none", None),
            OrderLine(2, MILK, "Milk 1L", 1250, "P1", 1, "manual", None),
            OrderLine(3, MILK, "Milk 1L", 1250, "M-OLD", 1, "manual", None),
            OrderLine(4, BAG, "Paper bag", 1, None, 1, "none", None),
        ),
    )
    with pytest.raises(OrderRefused) as caught:
        back_office.open_draft(draft, terminal_id=TERMINAL_ID, opened_at=NOW, today=TODAY)
    expected = [
        (1, "unknown product 06900000000014"),
        (2, f"lot 'P1' is a lot of {PILLS}, not of Milk 1L ({MILK})"),
        (3, f"lot M-OLD of Milk 1L ({MILK}) expired on 2026-11-24"),
        (4, f"price 1 fen of Paper bag ({BAG}) is not the catalog's 50"),
    ]
    assert expected == [(p.line_no, p.message_en) for p in caught.value.problems]


def test_the_recall_report_lists_sales_stock_and_returns(back_office: CatalogStore) -> None:
    """Each sale (receipt, terminal, batch_no, STAN, time, quantity), stock, what came back."""
    for stan, terminal_id in (("000011", TERMINAL_ID), ("000012", "10000002")):
        cart = price_cart(back_office.snapshot(), [milk(2)], today=TODAY, now=NOW)
        pay_cart(
            cart,
            payer=ScriptedPayer(approved(stan)),
            orders=back_office,
            terminal_id=terminal_id,
            clock=lambda: NOW,
            today=TODAY,
        )
    back_office.recall("M-DEC15", reason="notice", actor="qa", at=LATER)
    report = back_office.recall_report("M-DEC15")
    expected = (
        [
            ("10000001-N00000001", TERMINAL_ID, "000001", "000011", 2),
            ("10000002-N00000002", "10000002", "000001", "000012", 2),
        ],
        (0, 6),
        4,
        0,
        ["recall"],
    )
    assert expected == (
        [(r.receipt_no, r.terminal_id, r.batch_no, r.stan, r.quantity) for r in report.sales],
        (report.stock.on_hand, report.stock.quarantined),
        report.sold_quantity,
        report.returned_quantity,
        [r.action for r in report.recalls],
    )


# --- the commands ------------------------------------------------------------------------


CSV = (
    "gtin,name,price_fen,lot_tracked,lot_no,expiry,quantity_on_hand,recalled\n"
    "6901234567892,Milk 1L,1250,yes,L2611A,2026-12-31,40,no\n"
    "6901234567892,Milk 1L,1250,yes,L2612B,2027-01-15,60,no\n"
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)
    source = tmp_path / "in.csv"
    source.write_text(CSV)
    directory = tmp_path / "data"
    assert (
        0
        == runner.invoke(
            app, ["import", str(source), "--data-dir", str(directory), "--by", "li"]
        ).exit_code
    )
    return directory


def test_recall_command_and_lifting(data_dir: Path) -> None:
    """`catalog recall LOT --reason` records it; `--lift` lifts it; both say who."""
    recalled = runner.invoke(
        app, ["recall", "L2611A", "--reason", "notice 7", "--by", "qa", "--data-dir", str(data_dir)]
    )
    lifted = runner.invoke(
        app,
        [
            "recall",
            "L2611A",
            "--lift",
            "--reason",
            "cleared",
            "--by",
            "qa",
            "--data-dir",
            str(data_dir),
        ],
    )
    expected = (0, True, 0, True)
    assert expected == (
        recalled.exit_code,
        "recalled by qa" in recalled.stdout and "0 on hand, 40 quarantined" in recalled.stdout,
        lifted.exit_code,
        "recall lifted by qa" in lifted.stdout and "40 on hand, 0 quarantined" in lifted.stdout,
    )


def test_trace_of_an_unknown_lot_says_so_with_close_matches(data_dir: Path) -> None:
    """Not "0 sale lines": the lot is unknown, and the catalog's look-alikes are named."""
    result = runner.invoke(app, ["trace", "L2611", "--data-dir", str(data_dir)])
    expected = (2, "error: no lot 'L2611' in the catalog; did you mean L2611A, L2612B?\n")
    assert expected == (result.exit_code, result.stderr)


def test_recall_report_command_json(data_dir: Path) -> None:
    runner.invoke(
        app, ["recall", "L2612B", "--reason", "n", "--by", "qa", "--data-dir", str(data_dir)]
    )
    result = runner.invoke(app, ["recall-report", "L2612B", "--json", "--data-dir", str(data_dir)])
    document = json.loads(result.stdout)
    expected = (0, True, 0, 60, [], ["recall"])
    assert expected == (
        result.exit_code,
        document["recalled"],
        document["on_hand"],
        document["quarantined"],
        document["sales"],
        [r["action"] for r in document["recalls"]],
    )


def test_recall_without_a_reason_is_refused(data_dir: Path) -> None:
    result = runner.invoke(app, ["recall", "L2611A", "--reason", " ", "--data-dir", str(data_dir)])
    expected = (2, "error: the reason must not be empty\n")
    assert expected == (result.exit_code, result.stderr)
