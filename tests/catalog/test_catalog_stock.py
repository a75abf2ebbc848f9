"""Stock as movements: goods in, adjustments, imports that never overwrite counted stock,
the stock report as of any time, and the migration that carries old stock over."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from catalog_samples import (
    BAG,
    MILK,
    NOW,
    PILLS,
    TODAY,
    ScriptedPayer,
    approved,
    catalog_lots,
    catalog_products,
)

from posbatch.catalog import (
    CatalogStore,
    LineRequest,
    Lot,
    LotSource,
    LotTake,
    Product,
    parse_catalog_csv,
    pay_cart,
    price_cart,
    write_catalog_csv,
)
from posbatch.catalog._stock import stock_by_product
from posbatch.errors import CatalogError
from posbatch.storage import create_engine
from testbed import TERMINAL_ID

LATER = NOW + dt.timedelta(hours=2)


@pytest.fixture
def store(db_url: str) -> Iterator[CatalogStore]:
    opened = CatalogStore.open(db_url)
    opened.import_catalog(catalog_products(), catalog_lots(), at=NOW, reason="sample")
    yield opened
    opened.close()


def on_hand(store: CatalogStore, gtin: str, lot_no: str | None) -> tuple[int, int]:
    snapshot = store.snapshot()
    if lot_no is None:
        product = snapshot.product(gtin)
        assert product is not None
        return product.quantity_on_hand, product.quarantined
    lot = snapshot.lot(gtin, lot_no)
    assert lot is not None
    return lot.quantity_on_hand, lot.quarantined


def sell(store: CatalogStore, request: LineRequest, stan: str, at: dt.datetime = NOW) -> None:
    cart = price_cart(store.snapshot(), [request], today=TODAY, now=at)
    pay_cart(
        cart,
        payer=ScriptedPayer(approved(stan)),
        orders=store,
        terminal_id=TERMINAL_ID,
        clock=lambda: at,
        today=TODAY,
    )


def test_export_sale_edit_import_keeps_the_sale(store: CatalogStore) -> None:
    """Export, sell 2, edit a price in the export and import it: the 2 sold stay sold."""
    out = io.StringIO()
    write_catalog_csv(*store.products_and_lots(), out)
    sell(store, LineRequest(MILK, 2, (LotTake("M-DEC15", 2),), LotSource.SCAN), "000001")
    edited = out.getvalue().replace(",1250,", ",1300,")
    summary = store.import_catalog(*parse_catalog_csv(edited), at=LATER, reason="prices")
    product = store.snapshot().product(MILK)
    assert product is not None
    expected = ((8, 0), 1300, ("lot M-DEC15 of 06901234567892: the file says 10, 8 counted",))
    assert expected == (
        on_hand(store, MILK, "M-DEC15"),
        product.price_fen,
        tuple(note.split(" — ")[0] for note in summary.notes),
    )


def test_products_without_lots_have_stock(store: CatalogStore) -> None:
    """A product without lots starts at its imported quantity and each sale takes from it."""
    sell(store, LineRequest(BAG, 3), "000001")
    expected = ((497, 0), [(BAG, None, 497)])
    assert expected == (
        on_hand(store, BAG, None),
        [(r.gtin, r.lot_no, r.on_hand) for r in store.stock_report(gtin=BAG)],
    )


def test_goods_received_into_a_new_lot(store: CatalogStore) -> None:
    """Receiving creates the lot with its expiry and records who and why."""
    row = store.receive(
        MILK, "M-JAN31", 24, at=LATER, actor="li", reason="delivery 88", expiry=dt.date(2027, 1, 31)
    )
    movement = store.movements(gtin=MILK, lot_no="M-JAN31")[0]
    expected = ((24, 0), ("received", 24, "delivery 88", "li"))
    assert expected == (
        (row.on_hand, row.quarantined),
        (movement.kind, movement.on_hand_delta, movement.reason, movement.actor),
    )


def test_adjustment_needs_a_reason_and_keeps_history(store: CatalogStore) -> None:
    """A stocktake sets the count through a movement; the old count is still in the history."""
    store.adjust(MILK, "M-DEC15", counted=7, reason="stocktake", actor="wang", at=LATER)
    with pytest.raises(CatalogError, match="the reason must not be empty"):
        store.adjust(MILK, "M-DEC15", delta=1, reason="  ", actor="wang", at=LATER)
    history = [(m.kind, m.on_hand_delta) for m in store.movements(gtin=MILK, lot_no="M-DEC15")]
    expected = ((7, 0), [("received", 10), ("adjustment", -3)])
    assert expected == (on_hand(store, MILK, "M-DEC15"), history)


def test_adjustment_cannot_make_stock_negative(store: CatalogStore) -> None:
    """Removing more than is on hand is refused, naming both figures."""
    with pytest.raises(CatalogError) as caught:
        store.adjust(MILK, "M-DEC01", delta=-4, reason="broken", actor="wang", at=LATER)
    assert "3 on hand: a change of -4 would leave -1" == str(caught.value)


def test_stock_report_as_of_any_time(store: CatalogStore) -> None:
    """The report sums the movements up to the moment asked: before and after a sale."""
    sell(store, LineRequest(MILK, 2, (LotTake("M-DEC15", 2),), LotSource.SCAN), "000001", LATER)

    def at(moment: dt.datetime) -> int:
        rows = store.stock_report(at=moment, gtin=MILK)
        return next(row.on_hand for row in rows if row.lot_no == "M-DEC15")

    expected = ([], 10, 8, 8)
    assert expected == (
        store.stock_report(at=NOW - dt.timedelta(seconds=1), gtin=MILK),
        at(NOW),
        at(LATER),
        at(LATER + dt.timedelta(days=30)),
    )


def test_cached_stock_is_always_the_sum_of_movements(store: CatalogStore) -> None:
    """After sales, receipts, adjustments and a recall no item's total differs from its sum."""
    sell(store, LineRequest(MILK, 1, (LotTake("M-DEC01", 1),), LotSource.SCAN), "000001")
    store.receive(PILLS, "P1", 5, at=LATER, actor="li")
    store.adjust(BAG, None, delta=-10, reason="wet", actor="li", at=LATER)
    store.recall("P1", reason="notice", actor="qa", at=LATER)
    assert [] == store.stock_discrepancies()


def test_import_does_not_lift_or_set_a_recall(store: CatalogStore) -> None:
    """A file saying recalled=no for a recalled lot changes nothing (recall lifts are records)."""
    products, lots = catalog_products(), catalog_lots()
    lots = [dataclasses.replace(lot, recalled=False) for lot in lots]
    summary = store.import_catalog(products, lots, at=LATER, reason="old file")
    lot = store.snapshot().lot(MILK, "M-RECALL")
    assert lot is not None
    expected = (True, True)
    assert expected == (lot.recalled, any("recalled=False" in note for note in summary.notes))


def test_new_recalled_lot_in_an_import_is_quarantined(store: CatalogStore) -> None:
    """A lot the file introduces as recalled arrives in quarantine, with a recall record."""
    store.import_catalog(
        [],
        [Lot(PILLS, "P-BAD", dt.date(2027, 1, 1), 12, True)],
        at=LATER,
        reason="supplier list",
        actor="import-bot",
    )
    history = store.recall_history(PILLS, "P-BAD")
    expected = ((0, 12), [("recall", "import-bot")])
    assert expected == (
        on_hand(store, PILLS, "P-BAD"),
        [(record.action, record.actor) for record in history],
    )


def test_a_product_with_lots_stays_lot_tracked(store: CatalogStore) -> None:
    """Importing lot_tracked=no for a product that has lots is refused (its export would not
    import back)."""
    products = [
        dataclasses.replace(p, lot_tracked=False) if p.gtin == MILK else p
        for p in catalog_products()
    ]
    with pytest.raises(CatalogError) as caught:
        store.import_catalog(products, [], at=LATER, reason="file")
    expected = (
        "1 problem(s), nothing imported:\nGTIN 06901234567892 has 5 lot(s): it stays lot-tracked"
    )
    assert expected == str(caught.value)


def test_stock_without_a_lot_blocks_becoming_lot_tracked(store: CatalogStore) -> None:
    """A product with units counted without a lot cannot start needing lots until they are 0."""
    products = [
        dataclasses.replace(p, lot_tracked=True) if p.gtin == BAG else p for p in catalog_products()
    ]
    with pytest.raises(CatalogError, match="has 500 unit\\(s\\) counted without a lot"):
        store.import_catalog(products, [], at=LATER, reason="file")


def test_one_drug_identification_code_names_one_product(store: CatalogStore) -> None:
    """Two products may not share a trace_prefix."""
    products = [
        dataclasses.replace(p, trace_prefix="8612345") if p.gtin in (MILK, PILLS) else p
        for p in catalog_products()
    ]
    with pytest.raises(
        CatalogError, match="trace_prefix 8612345 of GTIN 09501101530003 is already"
    ):
        store.import_catalog(products, [], at=LATER, reason="file")


def test_export_then_import_into_an_empty_store_gives_the_same_stock(
    store: CatalogStore, tmp_path: Path
) -> None:
    """An export (recalled lots with their quarantined units) imports back as it was."""
    store.recall("P1", gtin=PILLS, reason="notice", actor="qa", at=LATER)
    out = io.StringIO()
    write_catalog_csv(*store.products_and_lots(), out)
    other = CatalogStore.open(f"sqlite:///{tmp_path / 'other.db'}")
    other.import_catalog(*parse_catalog_csv(out.getvalue()), at=LATER, reason="copy")
    stock = {(r.gtin, r.lot_no): (r.on_hand, r.quarantined) for r in store.stock_report()}
    copied = {(r.gtin, r.lot_no): (r.on_hand, r.quarantined) for r in other.stock_report()}
    other.close()
    assert stock == copied


# --- the migration -------------------------------------------------------------------------


def test_migration_carries_old_stock_over(db_url: str) -> None:
    """A store made before stock movements: quantities become opening movements, recalled
    stock goes to quarantine, a product with lots but marked untracked is tracked again."""
    engine = create_engine(db_url)
    config = Config()
    config.set_main_option("script_location", "posbatch.catalog:migrations")
    config.attributes["version_table"] = "catalog_alembic_version"
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "c0001")
        connection.execute(
            sa.text("INSERT INTO catalog_versions (created_at, reason) VALUES (:at, 'old import')"),
            {"at": NOW},
        )
        connection.execute(
            sa.text(
                "INSERT INTO catalog_products (gtin, name, price_fen, lot_tracked, version) "
                "VALUES (:milk, 'Milk', 1250, true, 1), (:bag, 'Bag', 50, false, 1)"
            ),
            {"milk": MILK, "bag": BAG},
        )
        connection.execute(
            sa.text(
                "INSERT INTO catalog_lots (gtin, lot_no, expiry, quantity_on_hand, recalled, "
                "version) VALUES (:milk, 'A', NULL, 40, false, 1), (:milk, 'R', NULL, 7, true, 1), "
                "(:bag, 'B', NULL, 3, false, 1)"
            ),
            {"milk": MILK, "bag": BAG},
        )
    engine.dispose()
    store = CatalogStore.open(db_url)
    snapshot = store.snapshot()
    bag = snapshot.product(BAG)
    expected = (
        {"A": (40, 0), "R": (0, 7), "B": (3, 0)},
        True,
        [("recall", "migration")],
        [],
        36,
    )
    actual = (
        {
            lot_no: (lot.quantity_on_hand, lot.quarantined)
            for gtin in (MILK, BAG)
            for lot_no, lot in snapshot.lots.get(gtin, {}).items()
        },
        bag is not None and bag.lot_tracked,
        [(r.action, r.actor) for r in store.recall_history(MILK, "R")],
        store.stock_discrepancies(),
        len(store.store_id()),
    )
    store.close()
    assert expected == actual


def test_unchanged_product_fields_keep_their_version(store: CatalogStore) -> None:
    """Re-importing the same file creates no version (stock notes aside)."""
    version = store.version()
    summary = store.import_catalog(catalog_products(), catalog_lots(), at=LATER, reason="again")
    expected = (version, 0, 0)
    assert expected == (summary.version, summary.products_changed, summary.lots_changed)


def test_product_rows_carry_their_new_fields(store: CatalogStore) -> None:
    """Products keep stock and trace_prefix through the store."""
    store.import_catalog(
        [Product("06970000000000", "Amoxicillin 0.25g×24", 1590, True, trace_prefix="8612345")],
        [],
        at=LATER,
        reason="drugs",
    )
    product = store.snapshot().product_for_trace_prefix("8612345")
    assert product is not None and "06970000000000" == product.gtin


def test_stock_report_per_product_adds_up_its_lots(store: CatalogStore) -> None:
    """`--by-product`: one line per product, its lots (on hand, quarantined) added up."""
    rows = stock_by_product(store.stock_report(gtin=MILK))
    expected = [(MILK, None, 18, 50, True)]
    assert expected == [(r.gtin, r.lot_no, r.on_hand, r.quarantined, r.recalled) for r in rows]
