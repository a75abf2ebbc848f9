"""Journeys in a real browser (Debian's chromium via pytest-playwright) against the console
served over a loopback socket — and, for a terminal's suspension, beside a live host on the
same store with a terminal speaking ISO 8583 to it over TCP."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserType, Page, Playwright, expect, sync_playwright
from web_world import (
    MASTER_KEY,
    MASTER_KEY_HEX,
    MERCHANT_A,
    PAN_A,
    PASSWORD,
    TERMINAL_A1,
    TERMINAL_A2,
    World,
    copied_world,
    scan,
)

from posbatch.backoffice import BackOffice
from posbatch.host.server import HostServer
from posbatch.terminal import TcpDriver, Terminal, init_terminal, open_terminal
from posbatch.web import create_app
from posbatch.web.cli import console_config
from testbed import serving_in_thread

# The journeys run in `make test` (issue #13): ten of them cost about 20 s of CPU in all.
START_TIMEOUT_S = 10


# pytest-playwright's playwright/browser fixtures are session-scoped: their event loop would
# stay running in the main thread after this module, and every asyncio test collected after
# it would fail ("cannot be called from a running event loop"). Here they live per module.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    kind: BrowserType = getattr(playwright, browser_name)
    return kind


@pytest.fixture(scope="module")
def browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@contextmanager
def serving(office: BackOffice) -> Iterator[str]:
    """The console on 127.0.0.1, a free port, in a thread of this process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = console_config(create_app(office))  # as `backoffice serve` serves it
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        sock.close()


@contextmanager
def live_host(world: World) -> Iterator[tuple[str, int]]:
    """A HostServer over the world's store, on 127.0.0.1 (free port), in its own thread."""
    with serving_in_thread(HostServer(world.core)) as address:
        yield address


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: tuple[Path, datetime]
) -> Iterator[str]:
    """The console over one traded world on SQLite for this module's journeys that need no
    live host (the one that does runs on both databases, on a world of its own)."""
    built = copied_world(sqlite_template, tmp_path_factory.mktemp("console"))
    try:
        with serving(built.office) as url:
            yield url
    finally:
        built.close()


@pytest.fixture(autouse=True)
def every_answer_scanned(page: Page) -> Iterator[None]:
    """Every document, fragment and file the browser receives: no PAN beyond 6/4, no key."""
    shown: list[tuple[str, list[str]]] = []

    def check(response: Any) -> None:
        if response.request.resource_type in ("document", "xhr", "fetch"):
            try:
                found = scan(response.text())
            except Exception:  # a redirect or a download has no body to read here
                return
            if found:
                shown.append((response.url, found))

    page.on("response", check)
    yield
    assert [] == shown


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(url + "/login?next=%2F")
    page.get_by_label("用户名 Name").fill(name)
    page.get_by_label("密码 Password").fill(PASSWORD)
    page.get_by_role("button", name="登录 Log in").click()
    expect(page.locator("h1")).to_contain_text("交易日概览")


@pytest.mark.parametrize(
    ("name", "shown", "hidden"),
    [
        ("olga", ["用户 Users", "审计 Audit log", "客服 Support desk"], []),
        ("sam", ["审计 Audit log", "客服 Support desk"], ["用户 Users"]),
        ("mia", ["交易 Transactions"], ["用户 Users", "审计 Audit log", "客服 Support desk"]),
    ],
)
def test_each_role_logs_in_and_sees_its_menu(
    page: Page, console: str, name: str, shown: list[str], hidden: list[str]
) -> None:
    log_in(page, console, name)
    nav = page.locator("header nav")
    for text in shown:
        expect(nav).to_contain_text(text)
    for text in hidden:
        expect(nav).not_to_contain_text(text)
    assert [] == scan(page.content())
    page.get_by_role("button", name="退出 Log out").click()
    expect(page.locator("h1")).to_contain_text("登录")


def test_search_with_filters_then_refresh_keeps_them(page: Page, console: str) -> None:
    log_in(page, console, "sam")
    page.get_by_role("link", name="交易 Transactions").click()
    page.get_by_label("终端号 terminal_id").fill(TERMINAL_A1)
    page.get_by_label("卡号后四位 card last 4").fill(PAN_A[-4:])
    page.get_by_label("状态 status").select_option("approved")
    page.get_by_role("button", name="查询 Search").click()
    rows = page.locator("#transaction-rows tbody tr")
    expect(rows).to_have_count(4)  # a1's four approved sales (the declined one is filtered)
    assert f"terminal_id={TERMINAL_A1}" in page.url and "last4=0128" in page.url
    page.reload()
    expect(page.get_by_label("终端号 terminal_id")).to_have_value(TERMINAL_A1)
    expect(page.get_by_label("卡号后四位 card last 4")).to_have_value("0128")
    expect(page.get_by_label("状态 status")).to_have_value("approved")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("622202*********0128")
    assert [] == scan(page.content())


def test_a_search_the_console_refuses_says_why_instead_of_keeping_the_old_rows(
    page: Page, console: str
) -> None:
    """With htmx, a refused search (400, its one-line error in the results) was not swapped
    in: the rows of the search before stayed on screen as if they answered the new one."""
    log_in(page, console, "sam")
    page.get_by_role("link", name="交易 Transactions").click()
    page.get_by_label("卡号后四位 card last 4").fill(PAN_A[-4:])
    page.get_by_role("button", name="查询 Search").click()
    rows = page.locator("#transaction-rows tbody tr")
    expect(rows.first).to_contain_text("622202*********0128")
    page.get_by_label("卡号后四位 card last 4").fill("12")
    page.get_by_role("button", name="查询 Search").click()
    expect(page.locator("#results .error")).to_contain_text("last4: the last 4 digits of the card")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("no transactions")
    page.get_by_label("卡号后四位 card last 4").fill(PAN_A[-4:])  # and it recovers
    page.get_by_role("button", name="查询 Search").click()
    expect(page.locator("#results .error")).to_have_count(0)
    expect(rows.first).to_contain_text("622202*********0128")


def test_resolve_an_exception_and_see_it_in_the_audit_log(page: Page, console: str) -> None:
    log_in(page, console, "sam")
    page.get_by_role("link", name="差错 Exceptions").click()
    page.locator("tbody a").first.click()
    expect(page.locator("#exception-status")).to_contain_text("open")
    page.locator("#resolve").get_by_label("处理方式 resolution").select_option("confirm-host")
    page.locator("#resolve").get_by_label("备注 remark").fill("merchant confirmed by phone")
    page.once("dialog", lambda dialog: dialog.accept())  # a resolution is final: it asks
    page.locator("#resolve").get_by_role("button", name="处理 Resolve").click()
    expect(page.locator(".notice")).to_contain_text("exceptions resolved")
    expect(page.locator("#exception-status")).to_contain_text("resolved · confirm-host")
    expect(page.locator("#history")).to_contain_text("merchant confirmed by phone")
    page.get_by_role("link", name="审计 Audit log").click()
    row = page.locator("#audit tbody tr").first
    expect(row).to_contain_text("exception.resolve")
    expect(row).to_contain_text("sam")
    expect(row).to_contain_text("merchant confirmed by phone")


@pytest.fixture
def own_console(tmp_path: Path, sqlite_template: tuple[Path, datetime]) -> Iterator[str]:
    """The console over a traded world of this test's own (for journeys that change it)."""
    built = copied_world(sqlite_template, tmp_path)
    try:
        with serving(built.office) as url:
            yield url
    finally:
        built.close()


def _open_exception_of(page: Page, url: str, terminal_id: str) -> None:
    page.goto(f"{url}/exceptions?terminal_id={terminal_id}&status=open")
    page.locator("tbody a[href^='/exceptions/']").first.click()
    expect(page.locator("#exception-status")).to_contain_text("open")


def test_resolving_asks_first_and_a_no_changes_nothing(page: Page, own_console: str) -> None:
    """A resolution is final and may move the merchant's money: the page asks before it is
    sent, on the exception's page and for the bulk step (not for assigning); "no" sends
    nothing."""
    log_in(page, own_console, "sam")
    _open_exception_of(page, own_console, TERMINAL_A2)
    asked: list[str] = []

    def refuse(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    page.locator("#resolve").get_by_label("备注 remark").fill("pressed by mistake")
    page.locator("#resolve").get_by_role("button", name="处理 Resolve").click()
    expect(page.locator("#exception-status")).to_contain_text("open")
    page.goto(f"{own_console}/exceptions?status=open")
    page.locator("tbody input[name='id']").first.check()
    page.locator("#bulk").get_by_label("备注 remark").fill("pressed by mistake")
    page.locator("#bulk-resolve").click()
    expect(page.locator("tbody")).not_to_contain_text("resolved")
    page.locator("#bulk-assign").click()  # assigning is not final: it does not ask
    expect(page.locator(".notice")).to_contain_text("exceptions assigned")
    assert 2 == len(asked) and all("final" in text for text in asked), asked
    page.goto(f"{own_console}/exceptions?status=resolved")
    expect(page.locator("tbody")).to_contain_text("no exceptions")


def test_the_support_desk_no_longer_sends_the_merchant_to_a_resolved_exception(
    page: Page, own_console: str
) -> None:
    """The desk resolves the exception of a2's advanced batch; the host-side diagnosis on
    the support page then says it is worked off, not that the back office must still do it
    (it did, before: the host's exception rows never change, their resolution is beside)."""
    log_in(page, own_console, "sam")
    page.goto(f"{own_console}/support/{TERMINAL_A2}")
    expect(page.locator("main")).to_contain_text("the back office must work off")
    _open_exception_of(page, own_console, TERMINAL_A2)
    page.locator("#resolve").get_by_label("处理方式 resolution").select_option("confirm-host")
    page.locator("#resolve").get_by_label("备注 remark").fill("merchant agreed on the phone")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#resolve").get_by_role("button", name="处理 Resolve").click()
    expect(page.locator("#exception-status")).to_contain_text("resolved")
    page.goto(f"{own_console}/support/{TERMINAL_A2}")
    main = page.locator("main")
    expect(main).to_contain_text("1 record, all resolved by the back office")
    expect(main).not_to_contain_text("must work off")
    expect(main).not_to_contain_text("the back office works off the exception records")


def test_export_csv(page: Page, console: str, tmp_path: Path) -> None:
    log_in(page, console, "mia")
    page.get_by_role("link", name="交易 Transactions").click()
    with page.expect_download() as caught:
        page.locator("#export-csv").click()
    path = tmp_path / "export.csv"
    caught.value.save_as(path)
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "time (Beijing) 时间"
    assert {MERCHANT_A} == {row[2] for row in rows[1:]}  # mia's merchant only
    assert 8 == len(rows) - 1 and [] == scan(text)


def _sale(host: tuple[str, int], terminal: Terminal, amount_fen: int) -> str:
    """One sale over a fresh TCP connection; the response code the terminal shows."""

    async def run() -> str:
        driver = TcpDriver(*host)
        try:
            result = await driver.run(terminal.sale_flow(amount_fen, PAN_A))
        finally:
            await driver.close()
        return result.response_code

    # Playwright's sync API holds this thread's event loop: the terminal runs in another.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=START_TIMEOUT_S)


def test_register_and_suspend_a_terminal_then_its_next_sale_gets_58(
    page: Page, world: World, tmp_path: Path
) -> None:
    """Ops registers a terminal (TMK masked, KCV shown), it trades with the running host,
    ops suspends it in the browser, and the host answers its next sale 58."""
    with serving(world.office) as url, live_host(world) as host:
        log_in(page, url, "olga")
        page.get_by_role("link", name="终端 Terminals").click()
        page.get_by_label("商户号 merchant_id").last.fill(MERCHANT_A)
        page.get_by_label("终端号 terminal_id").fill("30000001")
        key = page.get_by_label("主密钥 TMK (32 hex)")
        assert "password" == key.get_attribute("type")
        key.fill(MASTER_KEY_HEX)
        page.get_by_role("button", name="登记 Register").click()
        expect(page.locator(".kcv")).to_have_text("08D7B4FB")
        assert MASTER_KEY_HEX not in page.content()

        directory = tmp_path / "terminal"
        init_terminal(
            directory, merchant_id=MERCHANT_A, terminal_id="30000001", master_key=MASTER_KEY,
            host_address=f"{host[0]}:{host[1]}", clock=world.clock,
        )  # fmt: skip
        terminal = open_terminal(directory, clock=world.clock)
        assert "00" == _sale(host, terminal, 1234)

        page.goto(url + "/terminals/30000001")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="停用 Suspend").click()
        expect(page.locator("#terminal-status")).to_have_text("suspended")
        assert "58" == _sale(host, terminal, 555)
        terminal.journal.engine.dispose()


def test_ops_set_a_fee_from_tomorrow_and_the_merchant_sees_its_statement(
    page: Page, world: World
) -> None:
    """olga sets merchant A's fees from the next trading day on the fee page (credit 0.50 %);
    on that day a 100.00 sale is on mia's statement with a fee of 0.50, net 99.50."""
    with serving(world.office) as url:
        log_in(page, url, "olga")
        page.get_by_role("link", name="费率 Fees").click()
        form = page.locator("#set-fees")
        form.get_by_label("商户号 merchant_id").fill(MERCHANT_A)
        expect(form.get_by_label("生效交易日 effective from")).to_have_value("2026-12-07")
        for name, rate in (("debit", "0.45%"), ("credit", "0.50%"), ("foreign_debit", "2.50%"),
                           ("foreign_credit", "2.50%")):  # fmt: skip
            form.locator(f'input[name="{name}"]').fill(rate)
        asked: list[str] = []

        def accept(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.accept()

        # a day's sales keep the price they were made at: the page asks first (it set the
        # fees on a click, with nothing between a slip of the finger and a day's prices)
        page.once("dialog", accept)
        form.get_by_role("button", name="设置 Set fees").click()
        expect(page.locator(".notice")).to_contain_text("fee schedule set")
        assert ["set these fees?"] == [message.split("/ ")[1][:15] for message in asked]
        expect(page.locator(f"#fees-{MERCHANT_A}")).to_contain_text("upcoming 待生效")
        page.get_by_role("button", name="退出 Log out").click()

        world.clock.skip(days=1)  # 6 Dec 23:25 Beijing: trading day 7 December
        terminal = world.terminal(MERCHANT_A, "30000002")
        assert terminal.sale(10_000, PAN_A).approved

        log_in(page, url, "mia")
        page.get_by_role("link", name="对账单 Statements").click()
        expect(page.locator("#statement-facts")).to_contain_text("2026-12-07")
        expect(page.locator("#statement-schedule")).to_contain_text("merchant's own")
        line = page.locator("#statement-lines tbody tr")
        expect(line).to_have_count(1)
        expect(line).to_contain_text("622202*********0128")
        expect(page.locator("#statement-fees")).to_have_text("¥0.50")
        expect(page.locator("#statement-net")).to_have_text("¥99.50")
        expect(page.locator("header nav")).not_to_contain_text("费率 Fees")
