"""`posbatch checkout` end to end: a cashier session paying over TCP to a real host."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from catalog_samples import PILLS
from typer.testing import CliRunner

from posbatch.catalog import CatalogStore, Lot, Product, write_changes_file, write_credential
from posbatch.catalog.cli import app as catalog_cli
from posbatch.catalog.cli import checkout_app
from posbatch.host import HostCore, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.host.server import HostServer
from posbatch.terminal import init_terminal, open_terminal
from posbatch.terminal.cli import app as terminal_cli
from testbed import MASTER_KEY, MERCHANT_ID, TERMINAL_ID, serving_in_thread

START_TIMEOUT_S = 10
FAR_EXPIRY = dt.date(2049, 12, 31)  # the CLI reads the real clock: keep lots unexpired


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Shop:
    data_dir: Path
    terminal_dir: Path
    changes_file: Path


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    """A host on a loopback port, a terminal set up for it, a back office with one product."""
    monkeypatch.delenv("POSBATCH_DATABASE_URL", raising=False)
    host_store = HostStore.open(f"sqlite:///{tmp_path / 'host.db'}", pan_key=b"k" * 32)
    host_store.add_terminal(MERCHANT_ID, TERMINAL_ID, MASTER_KEY, now=now())
    server = HostServer(HostCore(host_store, clock=now))
    with serving_in_thread(server) as (_host, port):
        terminal_dir = tmp_path / "terminal"
        init_terminal(
            terminal_dir,
            merchant_id=MERCHANT_ID,
            terminal_id=TERMINAL_ID,
            master_key=MASTER_KEY,
            host_address=f"127.0.0.1:{port}",
            clock=now,
        )
        data_dir = tmp_path / "data"
        back_office = CatalogStore.open(f"sqlite:///{data_dir / 'catalog.db'}")
        back_office.import_catalog(
            [Product(PILLS, "Vitamin C", 3890, True)],
            [
                Lot(PILLS, "P9", FAR_EXPIRY, 20, False),
                Lot(PILLS, "P8", FAR_EXPIRY - dt.timedelta(days=1), 1, False),
            ],
            at=now(),
            reason="test",
        )
        changes_file = tmp_path / "changes.json"
        write_changes_file(back_office.changes_since(0), changes_file)
        credential = back_office.add_till(TERMINAL_ID, issued_by="test", at=now())
        write_credential(credential, terminal_dir / "catalog-till.json")
        back_office.close()
        yield Shop(data_dir, terminal_dir, changes_file)
    host_store.close()


def run_session(shop: Shop, keystrokes: list[str], sync_from: str | None = None) -> str:
    result = CliRunner().invoke(
        checkout_app,
        [
            "--data-dir",
            str(shop.data_dir),
            "--terminal-dir",
            str(shop.terminal_dir),
            "--sync-from",
            sync_from or str(shop.changes_file),
            "--separator",
            "|",
        ],
        input="".join(line + "\n" for line in keystrokes),
    )
    assert 0 == result.exit_code, result.output
    return result.output


def test_cashier_session_sells_scanned_lot_by_card(shop: Shop) -> None:
    """Scan two packs, pay by card over TCP: the receipt shows the lot, the order is paid."""
    output = run_session(
        shop,
        [f"2*]C101{PILLS}10P9|17491231", "pay", TEST_PAN_APPROVED, "3012", "quit"],
    )
    back_office = CatalogStore.open(f"sqlite:///{shop.data_dir / 'catalog.db'}")
    trace = back_office.trace_lot("P9")
    lot = back_office.snapshot().lot(PILLS, "P9")
    back_office.close()
    expected = (True, True, [("paid", 2)], 18)
    assert expected == (
        "合计 TOTAL  77.80" in output,
        "批次 lot P9 x2" in output,
        [(row.status, row.quantity) for row in trace],
        lot.quantity_on_hand if lot else None,
    )
    assert trace[0].stan is not None and trace[0].batch_no == "000001"


def test_refused_line_then_fefo_choice(shop: Shop) -> None:
    """A plain EAN of a lot-tracked product is refused; choosing FEFO adds the earliest lot."""
    output = run_session(shop, ["9501101530003", "f", "list", "quit"])
    expected = (True, True)
    assert expected == ("需要批次号" in output, "P8 x1" in output)


def test_unreachable_sync_source_only_warns(shop: Shop) -> None:
    """With a copy already synced, a dead sync source warns and the till still works."""
    run_session(shop, ["quit"])
    output = run_session(
        shop, [f"]C101{PILLS}10P9|17491231", "list", "quit"], sync_from="http://127.0.0.1:9"
    )
    expected = (True, True)
    assert expected == ("warning: catalog not synced" in output, "P9 x1" in output)


def test_a_scan_typed_at_the_lot_prompt_is_the_next_line(shop: Shop) -> None:
    """The cashier scans the next item instead of answering t/f/s: it is not lost."""
    output = run_session(shop, ["9501101530003", f"]C101{PILLS}10P9|17491231", "list", "quit"])
    expected = (True, True, True)
    assert expected == (
        "需要批次号" in output,
        "is read as the next line" in output,
        "P9 x1" in output,
    )


def test_a_command_typed_at_the_lot_prompt_is_that_command(shop: Shop) -> None:
    """`quit` answered to t/f/s after a refused line quits (it was read as a barcode)."""
    output = run_session(shop, ["9501101530003", "quit", "list"])
    expected = (True, True, False)
    assert expected == (
        "需要批次号" in output,
        "'quit' is not t, f or s" in output,
        "unknown application identifier" in output,
    )
    assert "cart" not in output.split("'quit' is not t, f or s")[1]  # `list` never ran


@pytest.mark.parametrize(
    "keystrokes",
    [[], ["9501101530003"], ["9501101530003", "t"], [f"]C101{PILLS}10P9|17491231", "pay"]],
    ids=["at the scan prompt", "at the lot prompt", "at the typed lot", "at the card"],
)
def test_input_ending_at_any_prompt_closes_the_checkout(shop: Shop, keystrokes: list[str]) -> None:
    """A script's last line (or Ctrl-D) anywhere: exit 0, a line saying so, nothing charged."""
    output = run_session(shop, keystrokes)  # run_session asserts exit status 0
    back_office = CatalogStore.open(f"sqlite:///{shop.data_dir / 'catalog.db'}")
    trace = back_office.trace_lot("P9")
    back_office.close()
    assert ("Aborted" in output, [r.status for r in trace if r.status == "paid"]) == (False, [])
    assert "input ended" in output or "no card number" in output


def test_return_by_scanning_the_receipt(shop: Shop) -> None:
    """Sell two packs, then `return` and scan the receipt's barcode: voided, stock back."""
    run_session(shop, [f"2*]C101{PILLS}10P9|17491231", "pay", TEST_PAN_APPROVED, "3012", "quit"])
    output = run_session(shop, ["return", f"]C0{TERMINAL_ID}-N00000001", "all", "y", "quit"])
    back_office = CatalogStore.open(f"sqlite:///{shop.data_dir / 'catalog.db'}")
    detail = back_office.order_detail(f"{TERMINAL_ID}-N00000001")
    lot = back_office.snapshot().lot(PILLS, "P9")
    back_office.close()
    assert detail is not None and lot is not None
    expected = (True, True, "voided", 20)
    assert expected == (
        "消费撤销 VOID" in output,
        "退款 REFUNDED  77.80" in output,
        detail.status,
        lot.quantity_on_hand,
    )


def test_partial_return_typed_by_line_and_quantity(shop: Shop) -> None:
    """`return RECEIPT` then `1x1`: one pack back as a refund of its price."""
    run_session(shop, [f"2*]C101{PILLS}10P9|17491231", "pay", TEST_PAN_APPROVED, "3012", "quit"])
    output = run_session(shop, [f"return {TERMINAL_ID}-N00000001", "1x1", "y", "quit"])
    expected = (True, True)
    assert expected == ("退货 REFUND" in output, "退款 REFUNDED  38.90" in output)


def test_terminal_void_is_reconciled_into_the_back_office(shop: Shop) -> None:
    """`posbatch terminal void` of a checkout sale, then `catalog reconcile`: goods back."""
    run_session(shop, [f"2*]C101{PILLS}10P9|17491231", "pay", TEST_PAN_APPROVED, "3012", "quit"])
    terminal = open_terminal(shop.terminal_dir, clock=now)
    sale = next(row for row in terminal.journal.transactions() if row.kind == "sale")
    terminal.journal.engine.dispose()
    voided = CliRunner().invoke(
        terminal_cli, ["void", str(sale.stan), "--data-dir", str(shop.terminal_dir)]
    )
    result = CliRunner().invoke(
        catalog_cli,
        ["reconcile", "--terminal-dir", str(shop.terminal_dir), "--data-dir", str(shop.data_dir)],
    )
    back_office = CatalogStore.open(f"sqlite:///{shop.data_dir / 'catalog.db'}")
    lot = back_office.snapshot().lot(PILLS, "P9")
    detail = back_office.order_detail(f"{TERMINAL_ID}-N00000001")
    back_office.close()
    assert lot is not None and detail is not None
    expected = (0, 0, True, "voided", 20)
    assert expected == (
        voided.exit_code,
        result.exit_code,
        "all lines back" in result.stdout,
        detail.status,
        lot.quantity_on_hand,
    )


def test_a_refusal_from_the_back_office_is_shown_through_the_net() -> None:
    """A refusal comes from a remote back office (HttpOrderBook reads its 422): its words
    are a peer's — a card number in them is masked, a "[/]" in them prints as it is (rich
    took it for markup and stopped the till with MarkupError); a GTIN no card could be stays
    whole, one a card could be (6901234567892 is Luhn-valid) is masked like a card."""
    import io  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    from posbatch.catalog.cli import _refused  # noqa: PLC0415
    from posbatch.errors import CheckoutRefused  # noqa: PLC0415

    console = Console(file=io.StringIO(), width=200)
    refusal = CheckoutRefused(
        "card 6222028719463520178 [/] for 09501101530003 and 6901234567892",
        reason_zh="卡号 6222 0212 3456 7890 128",
    )
    _refused(console, refusal)
    assert isinstance(console.file, io.StringIO)
    expected = (
        "拒绝 卡号 622202*********0128\n"
        "refused: card 622202*********0178 [/] for 09501101530003 and 690123***7892\n"
    )
    assert expected == console.file.getvalue()


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("622202123452", "622202**3452"),  # 12 digits, Luhn right, GS1 check digit wrong
        ("6222021234566", "622202***4566"),  # 13
        ("62220212345671", "622202****5671"),  # 14
    ],
    ids=["12 digits", "13 digits", "14 digits"],
)
def test_card_number_typed_at_the_scan_prompt_is_masked(shop: Shop, typed: str, shown: str) -> None:
    """A cashier who types the card at the scan prompt instead of the card prompt: the
    line refusing it ("GTIN … has a bad check digit") shows only the first 6 and last 4 —
    a run whose GS1 check digit is wrong but which the host would take as a card number is
    a card number, not a GTIN."""
    output = run_session(shop, [typed, "quit"])
    echo = f"scan 扫码: {typed}"  # the test runner echoes what was typed at the prompt
    whole = [line for line in output.splitlines() if typed in line and line != echo]
    expected: tuple[list[str], bool] = ([], True)
    assert expected == (whole, f"GTIN {shown} has a bad check digit" in output)


@pytest.mark.parametrize(
    "typed",
    ["62220212-34567890128", "6222021234567 890128", "622202123456 7890128"],
    ids=["8 + 11", "13 + 6", "12 + 7"],
)
def test_card_number_typed_in_two_halves_at_the_receipt_prompt_is_masked(
    shop: Shop, typed: str
) -> None:
    """A card typed at the receipt prompt in two groups, one of a GTIN's length: the line
    "no receipt … in the back office" shows it as a card, first 6 and last 4 — the group
    of a GTIN's length was shown whole and the rest judged alone, too short to be a card."""
    output = run_session(shop, ["return", typed, "quit"])
    echo = f"receipt 小票 (scan or type): {typed}"  # the runner echoes the typed line
    shown = [line for line in output.splitlines() if "0128" in line and not line.startswith(echo)]
    assert shown and all("622202*********0128" in line for line in shown), output


def test_an_expiry_month_13_is_asked_again_not_declined_as_expired(shop: Shop) -> None:
    """Expiry 2613 typed at the till: asked again on the till (nothing sent), then paid
    with the right one — not sent and declined 54 "expired card"."""
    scan = f"]C101{PILLS}10P9|17491231"
    keystrokes = [scan, "pay", TEST_PAN_APPROVED, "2613", TEST_PAN_APPROVED, "3012", "quit"]
    output = run_session(shop, keystrokes)
    expected = (True, False, True)
    assert expected == (
        "month 13 is not 01..12" in output,
        "expired" in output,
        "流水号 stan 000002" in " ".join(output.split()),
    ), output


def receipt_numbers(shop: Shop) -> list[str]:
    back_office = CatalogStore.open(f"sqlite:///{shop.data_dir / 'catalog.db'}")
    numbers = [row.receipt_no for row in back_office.trace_lot("P9", include_unpaid=True)]
    back_office.close()
    return numbers


def test_a_refusal_naming_a_receipt_shows_its_number_whole(shop: Shop) -> None:
    """Return a receipt twice: the second refusal ("receipt … is voided") names the receipt
    number whole — the old ``10000001-00000001`` was 8 + 8 digits, which the card-number
    net showed as ``100000******0001``, and the cashier could not read which receipt."""
    run_session(shop, [f"]C101{PILLS}10P9|17491231", "pay", TEST_PAN_APPROVED, "3012", "quit"])
    [receipt_no] = receipt_numbers(shop)
    run_session(shop, ["return", f"]C0{receipt_no}", "all", "y", "quit"])
    output = run_session(shop, [f"return {receipt_no}", "all", "y", "quit"])
    refusals = [line for line in output.splitlines() if line.startswith("refused")]
    expected = [
        f"refused: receipt {TERMINAL_ID}-N00000001 is voided: only a paid order can be returned"
    ]
    assert expected == refusals, output


def test_a_receipt_printed_with_the_old_number_is_still_returned(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sale made before receipt numbers had their N (stored, and referenced in the
    terminal journal, as ``10000001-00000001``): its old barcode is found and refunded,
    the new return gets the readable number, and the N form typed finds it too."""
    with monkeypatch.context() as before:  # the number the till gave out until 2026-12
        before.setattr(
            "posbatch.catalog._orders_store.receipt_number", lambda tid, oid: f"{tid}-{oid:08d}"
        )
        scan = f"2*]C101{PILLS}10P9|17491231"
        run_session(shop, [scan, "pay", TEST_PAN_APPROVED, "3012", "quit"])
    old = f"{TERMINAL_ID}-00000001"
    assert receipt_numbers(shop) == [old]
    first = run_session(shop, ["return", f"]C0{old}", "1x1", "y", "quit"])
    second = run_session(shop, [f"return {TERMINAL_ID}-N00000001", "1x1", "y", "quit"])
    back_office = CatalogStore.open(f"sqlite:///{shop.data_dir / 'catalog.db'}")
    detail = back_office.order_detail(old)
    back_office.close()
    assert detail is not None
    expected = (
        True,
        True,
        True,
        "refunded",
        [f"{TERMINAL_ID}-N00000001-R1", f"{TERMINAL_ID}-N00000001-R2"],
    )
    assert expected == (
        "退款 REFUNDED  38.90" in first,
        "退款 REFUNDED  38.90" in second,
        f"receipt {TERMINAL_ID}-N00000001 (paid)" in first,
        detail.status,
        [item.return_no for item in detail.returns],
    ), first + second


def test_a_card_typed_8_dash_8_at_the_receipt_prompt_is_masked(shop: Shop) -> None:
    """A 16-digit card typed as two groups of 8, like an old receipt number: the refusal
    names it masked, and it is never given the receipt's N (which would show it whole)."""
    output = run_session(shop, ["return", "62220212-34567894", "quit"])
    echo = "receipt 小票 (scan or type): 62220212-34567894"
    shown = [line for line in output.splitlines() if "7894" in line and not line.startswith(echo)]
    assert shown and all("622202******7894" in line for line in shown), output
    assert "34567894" not in output.replace(echo, ""), output
